"""The file driver's worker threads (``_threads.HotThreads``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sessionstore_filesystem._threads import HotThreads


@pytest.mark.asyncio
async def test_sequential_calls_stay_on_one_thread() -> None:
    pool = HotThreads("t")
    try:
        names = {await pool.run(lambda: threading.get_ident()) for _ in range(50)}
        assert len(names) == 1
        assert threading.get_ident() not in names
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_concurrent_calls_run_in_parallel() -> None:
    pool = HotThreads("t", max_workers=4)
    barrier = threading.Barrier(4, timeout=5)
    try:
        # all four must be inside the call at once for the barrier to open
        idents = await asyncio.gather(
            *(pool.run(lambda: (barrier.wait(), threading.get_ident())[1]) for _ in range(4))
        )
        assert len(set(idents)) == 4
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_results_exceptions_and_arguments() -> None:
    pool = HotThreads("t")
    try:
        assert await pool.run(divmod, 17, 5) == (3, 2)
        with pytest.raises(ZeroDivisionError):
            await pool.run(divmod, 1, 0)
        assert await pool.run(lambda: "still works") == "still works"
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_beyond_max_workers_calls_queue_in_order() -> None:
    pool = HotThreads("t", max_workers=1)
    order: list[int] = []
    try:

        def job(i: int) -> int:
            time.sleep(0.002)
            order.append(i)
            return i

        assert await asyncio.gather(*(pool.run(job, i) for i in range(10))) == list(range(10))
        assert order == list(range(10))
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_a_call_cancelled_while_queued_never_runs() -> None:
    pool = HotThreads("t", max_workers=1)
    release = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(pool.run(release.wait, 5))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(pool.run(ran.append, "queued"))
        await asyncio.sleep(0.01)
        queued.cancel()
        release.set()
        assert await blocker is True
        with pytest.raises(asyncio.CancelledError):
            await queued
        await pool.run(ran.append, "after")
        assert ran == ["after"]
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_a_running_call_that_is_cancelled_still_finishes() -> None:
    pool = HotThreads("t")
    done = threading.Event()
    try:

        def slow() -> None:
            time.sleep(0.05)
            done.set()

        task = asyncio.ensure_future(pool.run(slow))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done.wait(5)
        assert await pool.run(lambda: 1) == 1  # the worker went back to the pool
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_shutdown_stops_the_workers_and_refuses_new_calls() -> None:
    pool = HotThreads("t", max_workers=3)
    await asyncio.gather(*(pool.run(time.sleep, 0.01) for _ in range(3)))
    threads = [w.thread for w in pool._workers]
    assert threads
    pool.shutdown()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        await pool.run(lambda: None)
    pool.shutdown()  # idempotent


def test_a_running_call_finishes_before_the_interpreter_exits(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    script = (
        "import asyncio, sys, time\n"
        "from sessionstore_filesystem._threads import HotThreads\n"
        "pool = HotThreads('x')\n"
        "def slow():\n"
        "    time.sleep(0.3)\n"
        f"    open({str(flag)!r}, 'w').write('done')\n"
        "async def main():\n"
        "    asyncio.ensure_future(pool.run(slow))\n"
        "    await asyncio.sleep(0.05)\n"
        "asyncio.run(main())\n"
    )
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert flag.read_text() == "done"
    assert time.monotonic() - began < 30  # and idle workers did not hold the exit up
