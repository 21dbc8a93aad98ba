"""The drivers' worker threads (``sessionstore.worker_threads.HotThreads``, and the
``EngineThreads`` the file and SQLite stores hold around theirs)."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore

from sessionstore import StoreUnavailableError
from sessionstore.worker_threads import EngineThreads, HotThreads


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
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    try:

        def slow() -> None:
            started.set()
            release.wait(10)
            done.set()

        task = asyncio.ensure_future(pool.run(slow))
        # running, not still queued (a call cancelled while queued never runs): a fixed
        # sleep here can lose the race to a worker thread slow to start on a loaded machine
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not done.is_set()
        release.set()
        assert done.wait(10)
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


@pytest.mark.asyncio
async def test_engine_threads_map_the_engines_errors_and_restart_after_close() -> None:
    def unavailable(exc: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(f"mapped: {exc.strerror}")

    def fail(exc: BaseException) -> None:
        raise exc

    hop = EngineThreads("t", (OSError,), unavailable)
    before = hop.pool
    assert before is None  # nothing started before the first call
    assert await hop.run(lambda a, b: a + b, 2, 3) == 5
    first = hop.pool
    assert first is not None
    with pytest.raises(StoreUnavailableError, match="mapped: gone") as caught:
        await hop.run(fail, FileNotFoundError(2, "gone"))
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    with pytest.raises(KeyError):  # not one of the engine's errors: unchanged
        await hop.run(fail, KeyError("k"))
    closed: list[str] = []
    await hop.close(lambda: closed.append(threading.current_thread().name))
    stopped = hop.pool
    assert stopped is None and closed and closed[0] != threading.current_thread().name
    with pytest.raises(RuntimeError):  # the old pool is shut down
        await first.run(int)
    assert await hop.run(int, "7") == 7  # a store initialised again: a new pool
    again = hop.pool
    assert again is not None and again is not first
    await hop.close(lambda: None)


@pytest.mark.integration
def test_a_running_call_finishes_before_the_interpreter_exits(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    script = (
        "import asyncio, sys, threading, time\n"
        "from sessionstore.worker_threads import HotThreads\n"
        "pool = HotThreads('x')\n"
        "started = threading.Event()\n"
        "def slow():\n"
        "    started.set()\n"
        "    time.sleep(0.3)\n"
        f"    open({str(flag)!r}, 'w').write('done')\n"
        "async def main():\n"
        "    asyncio.ensure_future(pool.run(slow))\n"
        # running when the loop ends (a call still queued then is cancelled, never run)
        "    await asyncio.to_thread(started.wait, 30)\n"
        "asyncio.run(main())\n"
    )
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert flag.read_text() == "done"
    assert time.monotonic() - began < 30  # and idle workers did not hold the exit up


_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.mark.asyncio
async def test_a_call_sees_the_callers_context_variables() -> None:
    """As with asyncio.to_thread, a worker runs in a copy of the caller's context."""
    pool = HotThreads("t")
    try:
        token = _REQUEST_ID.set("req-1")
        assert await pool.run(_REQUEST_ID.get) == "req-1"
        _REQUEST_ID.reset(token)
        assert await pool.run(_REQUEST_ID.get) == "unset"  # same warm thread, fresh copy

        def set_inside() -> str:
            _REQUEST_ID.set("changed-in-worker")
            return _REQUEST_ID.get()

        assert await pool.run(set_inside) == "changed-in-worker"
        assert _REQUEST_ID.get() == "unset"  # a copy: the caller's context is untouched
    finally:
        pool.shutdown()


@pytest.mark.asyncio
async def test_a_file_store_operation_runs_in_the_callers_context(tmp_path: Path) -> None:
    store = FileStore(root=str(tmp_path))
    async with store:
        s = await store.create_session()
        seen: list[str] = []
        load = store._engine.load

        def observed_load(*args: Any, **kwargs: Any) -> Any:
            seen.append(_REQUEST_ID.get())
            return load(*args, **kwargs)

        store._engine.load = observed_load  # type: ignore[method-assign]
        _REQUEST_ID.set("req-42")
        assert await store.get_session(s.id) is not None
        assert seen == ["req-42"]


@pytest.mark.asyncio
async def test_a_sqlite_store_operation_runs_in_the_callers_context(tmp_path: Path) -> None:
    from sessionstore import open_store

    store: Any = open_store(f"sqlite://{tmp_path}/s.db")
    async with store:
        s = await store.create_session()
        seen: list[str] = []
        run = store._threads.run

        async def observed_run(fn: Any, *args: Any) -> Any:
            def inside(*a: Any) -> Any:
                seen.append(_REQUEST_ID.get())
                return fn(*a)

            return await run(inside, *args)

        store._threads.run = observed_run
        _REQUEST_ID.set("req-7")
        assert await store.get_session(s.id) is not None
        assert seen and set(seen) == {"req-7"}
