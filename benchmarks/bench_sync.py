"""Benchmark of the sync facade (``sessionstore.sync``) against floors in the same run.

Run::

    .venv/bin/python -m benchmarks.bench_sync            # full
    .venv/bin/python -m benchmarks.bench_sync --quick    # a few seconds
    .venv/bin/python -m benchmarks.bench_sync --json out.json [--url redis://...]

Targets:

1. a facade call (``get_session`` on ``memory://``) costs <= 1.2x the floor of any
   sync-over-async design: a bare ``asyncio.run_coroutine_threadsafe(store.get_session(id),
   loop).result()`` on a private loop thread, from a thread with no event loop;
2. 8 threads calling the facade on Redis reach >= 0.8x the throughput of 8 concurrent
   tasks on the async store (shown as time for the same work, target <= 1.25x).

Both rows are measured twice: with the facade's loop thread (the default) and with
``per_thread_loops=True`` (each call on the calling thread's own event loop). The Redis
row runs three ways: with the store's blocking reads (the default: ``get_session`` made
by the calling thread on a blocking connection, see ``docs/sync.md``), and with
``blocking_reads=False`` on the loop thread and on per-thread loops (every call on a loop).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import statistics
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sessionstore import SessionStore, open_store
from sessionstore.sync import SyncSessionStore, open_sync_store

from ._harness import Report, Row, Target, compare
from .bench_memory import session_doc
from .bench_redis import private_servers


@dataclass(frozen=True)
class Sizes:
    """How long each part runs."""

    repeat: int
    threads: int
    calls_per_thread: int


FULL = Sizes(repeat=15, threads=8, calls_per_thread=400)
QUICK = Sizes(repeat=5, threads=8, calls_per_thread=100)


class RawLoopThread:
    """The floor's own loop thread: nothing but a loop running forever."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def _mode(per_thread_loops: bool, blocking_reads: bool = False) -> str:
    """The row's label suffix: none for the default (on Redis, with blocking reads)."""
    if per_thread_loops:
        return ", per-thread loops"
    return "" if blocking_reads else ", loop thread only"


async def bench_call_overhead(report: Report, sizes: Sizes, per_thread_loops: bool) -> None:
    """Target 1: one facade call against a bare run_coroutine_threadsafe(...).result()."""
    from sessionstore_memory import MemoryBackend, MemoryStore

    backend = MemoryBackend()
    facade = SyncSessionStore(MemoryStore(backend=backend), per_thread_loops=per_thread_loops)
    raw = RawLoopThread()
    raw_store = MemoryStore(backend=backend)
    try:
        await asyncio.to_thread(facade.initialize)
        await asyncio.to_thread(raw.run, raw_store.initialize())
        sid = (await asyncio.to_thread(facade.create_session, data=session_doc())).id
        get = facade.get_session
        store_get = raw_store.get_session
        run = raw.run
        op, floor = await compare(
            lambda: get(sid),
            lambda: run(store_get(sid)),
            repeat=sizes.repeat,
            blocking=True,
        )
        report.add(
            Row(
                f"facade get_session (memory{_mode(per_thread_loops, True)})",
                op,
                "run_coroutine_threadsafe(...).result()",
                floor,
                Target.at_most(1.2),
            )
        )
    finally:
        await asyncio.to_thread(facade.shutdown)
        await asyncio.to_thread(raw.run, raw_store.shutdown())
        raw.close()


async def bench_threads_vs_tasks(
    report: Report, url: str, sizes: Sizes, per_thread_loops: bool, blocking_reads: bool
) -> None:
    """Target 2: 8 threads on the facade against 8 tasks on the async store (Redis)."""
    namespace = f"bench-sync-{uuid.uuid4().hex[:8]}"
    facade = await asyncio.to_thread(
        functools.partial(
            open_sync_store,
            url,
            namespace=namespace,
            per_thread_loops=per_thread_loops,
            blocking_reads=blocking_reads,
        )
    )
    mode = _mode(per_thread_loops, blocking_reads)
    store: SessionStore = open_store(url, namespace=namespace)
    await store.initialize()
    try:
        ids = [
            (await store.create_session(data=session_doc(512, seed=n))).id
            for n in range(sizes.threads)
        ]
        calls = sizes.calls_per_thread

        def threaded() -> None:
            def work(sid: str) -> None:
                get = facade.get_session
                for _ in range(calls):
                    get(sid)

            _run_threads([functools.partial(work, sid) for sid in ids])

        async def tasks() -> None:
            async def work(sid: str) -> None:
                get = store.get_session
                for _ in range(calls):
                    await get(sid)

            await asyncio.gather(*(work(sid) for sid in ids))

        loop = asyncio.get_running_loop()

        def tasks_from_a_thread() -> None:  # the tasks run on this loop, free meanwhile
            asyncio.run_coroutine_threadsafe(tasks(), loop).result()

        # both sides run the same 8 x calls reads, the facade side from 8 threads, in
        # interleaved batches (a noisy spell of the machine hits both); the process's CPU
        # time and context switches per call are counted too: on a loaded machine they
        # say more than the wall time, which the other processes' share decides
        per_call = sizes.threads * calls
        facade_usage, tasks_usage = Usage(per_call), Usage(per_call)
        op, floor = await compare(
            facade_usage.counting(threaded),
            tasks_usage.counting(tasks_from_a_thread),
            number=1,
            repeat=sizes.repeat,
            blocking=True,
        )
        report.meta[f"threads_vs_tasks_usage_per_call{mode}"] = {
            "facade": facade_usage.medians(),
            "tasks": tasks_usage.medians(),
        }
        report.add(
            Row(
                f"{sizes.threads} threads x {calls} facade get_session (Redis{mode})",
                op,
                f"{sizes.threads} tasks on the async store",
                floor,
                Target.at_most(1.25),
                note=(
                    "time for the same work; <= 1.25x time is >= 0.8x throughput. Per call, "
                    f"facade / tasks: {facade_usage.summary()} / {tasks_usage.summary()}"
                ),
            )
        )
    finally:
        await asyncio.to_thread(facade.shutdown)
        await store.shutdown()


class Usage:
    """The process's CPU time (user, system) and context switches per call, over the
    batches of one side (``getrusage``, the whole process: each side runs alone)."""

    def __init__(self, calls_per_batch: int) -> None:
        self.calls = calls_per_batch
        self.samples: list[tuple[float, float, float]] = []

    def counting(self, body: Callable[[], None]) -> Callable[[], None]:
        """``body``, counted."""

        def counted() -> None:
            before = resource.getrusage(resource.RUSAGE_SELF)
            body()
            after = resource.getrusage(resource.RUSAGE_SELF)
            switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
            self.samples.append(
                (
                    (after.ru_utime - before.ru_utime) / self.calls,
                    (after.ru_stime - before.ru_stime) / self.calls,
                    switches / self.calls,
                )
            )

        return counted

    def medians(self) -> dict[str, float]:
        """Median user and system seconds and context switches per call."""
        if not self.samples:
            return {}
        columns = zip(*self.samples, strict=True)
        user, system, switches = (statistics.median(column) for column in columns)
        return {"user_s": user, "system_s": system, "context_switches": switches}

    def summary(self) -> str:
        m = self.medians()
        if not m:
            return "-"
        return (
            f"{m['user_s'] * 1e6:.0f} us user + {m['system_s'] * 1e6:.0f} us system, "
            f"{m['context_switches']:.1f} switches"
        )


def _run_threads(bodies: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def run(args: argparse.Namespace) -> Report:
    sizes = QUICK if args.quick else FULL
    report = Report("sessionstore sync facade benchmark" + (" (quick)" if args.quick else ""))
    report.meta.update({"quick": args.quick, "sizes": asdict(sizes)})
    print(report.title, flush=True)
    for per_thread_loops in (False, True):
        await bench_call_overhead(report, sizes, per_thread_loops)
    modes = [(False, True), (False, False), (True, False)]  # (per-thread loops, blocking reads)
    if args.url:
        for per_thread_loops, blocking_reads in modes:
            await bench_threads_vs_tasks(report, args.url, sizes, per_thread_loops, blocking_reads)
    else:
        with private_servers(single=True, cluster=False) as urls:
            for per_thread_loops, blocking_reads in modes:
                await bench_threads_vs_tasks(
                    report, urls["single"], sizes, per_thread_loops, blocking_reads
                )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sync")
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--url", help="an existing Redis server (default: a private one)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args)).publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
