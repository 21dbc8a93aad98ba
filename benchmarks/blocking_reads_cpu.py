"""Issue 18, tenth session: CPU per call of the reads the sync facade makes on the
calling thread (the store's blocking reads), against the same reads through the loop
thread (``blocking_reads=False``) and against tasks on the async store.

Reads: ``get_session``, ``get_sessions`` of 10 ids, ``get_events(last=20)`` and
``get_events(after_seq=100, limit=20)`` (plain windows: plain commands in one
``MULTI``/``EXEC``), ``get_events(types=["a"], last=20)`` (``lua/events.lua``),
``get_event(key=)`` (``lua/event.lua``), each on a session of 201 events. Sides, for
each read, ``--threads`` workers x ``--calls``:

- ``tasks``: that many tasks on the async store, one loop (the reference);
- ``facade``: threads on the facade, the default (blocking reads);
- ``facade-loop``: threads on the facade with ``blocking_reads=False`` (the loop thread).

The sides are timed in interleaved rounds (the order reversed every other round); CPU is
the process's user + system time (``getrusage``), medians. A private ``redis-server``.

Run: ``.venv/bin/python -m benchmarks.blocking_reads_cpu [--rounds 7] [--calls 300]
[--threads 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import statistics
import uuid
from collections.abc import Callable
from typing import Any

from .bench_redis import private_servers
from .bench_sync import _run_threads


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(args: argparse.Namespace) -> None:
    from sessionstore import EventInput, open_store
    from sessionstore.sync import open_sync_store

    with private_servers(single=True, cluster=False) as urls:
        url = urls["single"]
        namespace = f"brc-{uuid.uuid4().hex[:8]}"
        store: Any = open_store(url, namespace=namespace)
        await store.initialize()
        facade = await asyncio.to_thread(open_sync_store, url, namespace=namespace)
        facade_loop = await asyncio.to_thread(
            functools.partial(open_sync_store, url, namespace=namespace, blocking_reads=False)
        )
        s = await store.create_session(data={"x": 1})
        for i in range(10):
            batch = [{"type": "ab"[j % 2], "data": {"i": i * 20 + j}} for j in range(20)]
            await store.append_events(s.id, batch)
        await store.append_events(s.id, [EventInput("a", {"i": 200}, key="k")])
        ids = [(await store.create_session(data={"i": i})).id for i in range(10)]
        reads: dict[str, Callable[[Any], Any]] = {
            "get_session": lambda on: on.get_session(s.id),
            "get_sessions(10 ids)": lambda on: on.get_sessions(ids),
            "get_events(last=20)": lambda on: on.get_events(s.id, last=20),
            "get_events(after_seq, limit=20)": lambda on: on.get_events(
                s.id, after_seq=100, limit=20
            ),
            "get_events(types, last=20)": lambda on: on.get_events(s.id, types=["a"], last=20),
            "get_event(key=)": lambda on: on.get_event(s.id, key="k"),
        }
        loop = asyncio.get_running_loop()
        calls, threads = args.calls, args.threads

        def tasks(read: Callable[[Any], Any]) -> None:
            async def work() -> None:
                for _ in range(calls):
                    await read(store)

            async def all_of_them() -> None:
                await asyncio.gather(*(work() for _ in range(threads)))

            asyncio.run_coroutine_threadsafe(all_of_them(), loop).result()

        def on_threads(which: Any, read: Callable[[Any], Any]) -> None:
            def work() -> None:
                for _ in range(calls):
                    read(which)

            _run_threads([work for _ in range(threads)])

        def run_all() -> None:
            print(f"{threads} workers x {calls} calls, {args.rounds} rounds; CPU per call, medians")
            print(f"{'read':34} {'tasks':>8} {'facade':>8} {'loop':>8}  facade/loop  facade/tasks")
            for name, read in reads.items():
                sides: dict[str, Callable[[], None]] = {
                    "tasks": functools.partial(tasks, read),
                    "facade": functools.partial(on_threads, facade, read),
                    "facade-loop": functools.partial(on_threads, facade_loop, read),
                }
                got: dict[str, list[float]] = {k: [] for k in sides}
                for fn in sides.values():
                    fn()  # warm-up
                for r in range(args.rounds):
                    order = list(sides.items())
                    if r % 2:
                        order.reverse()
                    for side, fn in order:
                        before = _cpu()
                        fn()
                        got[side].append(_cpu() - before)
                per = {k: statistics.median(v) / (calls * threads) * 1e6 for k, v in got.items()}
                print(
                    f"{name:34} {per['tasks']:6.1f}us {per['facade']:6.1f}us"
                    f" {per['facade-loop']:6.1f}us  {per['facade'] / per['facade-loop']:10.2f}x"
                    f"  {per['facade'] / per['tasks']:11.2f}x",
                    flush=True,
                )

        await asyncio.to_thread(run_all)
        await asyncio.to_thread(facade.shutdown)
        await asyncio.to_thread(facade_loop.shutdown)
        await store.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
