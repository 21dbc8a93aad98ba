"""Issue 18, step 1 of the tenth session: the raw ceiling of a caller thread that does
its Redis round trip itself on a blocking socket (no loop, no hand-off).

Sides, each 8 x N reads of one ~2 KB session per worker (``lua/read.lua`` by EVALSHA,
then the driver's ``decode_doc``), timed in interleaved batches (wall and the process's
user + system CPU, ``getrusage``):

- ``store-tasks``: 8 tasks x N ``RedisStore.get_session`` on one loop (bench_sync's
  denominator: the driver's lean request path);
- ``aio-tasks``: 8 tasks on ``redis.asyncio`` (one client, its pool), EVALSHA + decode;
- ``sync-threads``: 8 threads, each its own ``redis.Redis`` (redis-py's blocking
  client), EVALSHA + decode;
- ``sock-threads``: 8 threads, each its own blocking socket, the request packed as the
  driver packs it (``_lane.pack_call``), the reply read by a minimal bulk-string reader,
  + decode: the leanest blocking transport there could be;
- ``facade``: 8 threads x N ``SyncSessionStore.get_session`` (the default: the store's
  blocking reads; their pure-Python reply reader);
- ``facade-loop``: the same with ``blocking_reads=False`` (every call on the loop thread);
- ``facade-hiredis``: ``facade`` with its connections' replies parsed by ``hiredis.Reader``
  (``_wire.py``; only when hiredis is importable).

Each side's figures are medians of the process's CPU (user + system), wall time and
context switches (voluntary + involuntary, ``getrusage``) a call.

Run: ``.venv/bin/python -m benchmarks.raw_blocking_ceiling [--rounds 9] [--calls 400]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from .bench_memory import session_doc
from .bench_redis import private_servers
from .bench_sync import _run_threads


def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, time.perf_counter(), r.ru_nvcsw + r.ru_nivcsw


def _read_exact_bulk(sock: socket.socket, buf: bytearray) -> bytes:
    """A minimal RESP bulk-string reply reader (``$len\\r\\n...\\r\\n``)."""
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n")
    if head[:1] != b"$":
        raise RuntimeError(head)
    n = int(head[1:])
    while len(rest) < n + 2:
        rest += sock.recv(65536)
    buf[:] = rest[n + 2 :]
    return rest[:n]


async def main(args: argparse.Namespace) -> None:
    import redis
    import redis.asyncio as aioredis
    from sessionstore_redis._blocking_reads import BlockingConnections
    from sessionstore_redis._encoding import decode_doc
    from sessionstore_redis._lane import pack_call
    from sessionstore_redis._scripts import READ
    from sessionstore_redis._wire import HIREDIS

    from sessionstore import open_store
    from sessionstore.sync import open_sync_store

    print("redis-py:", redis.__version__)

    with private_servers(single=True, cluster=False) as urls:
        url = urls["single"]
        host, port = url.removeprefix("redis://").split("/")[0].split(":")
        namespace = f"raw-{uuid.uuid4().hex[:8]}"
        store: Any = open_store(url, namespace=namespace)
        await store.initialize()
        facade = await asyncio.to_thread(open_sync_store, url, namespace=namespace)
        facade_loop = await asyncio.to_thread(
            functools.partial(open_sync_store, url, namespace=namespace, blocking_reads=False)
        )
        facade_hiredis: Any = None
        if HIREDIS:  # "facade" with the pure-Python reader, "facade-hiredis" with hiredis's
            facade._direct.connections = BlockingConnections(facade._direct._backend, "python")
            facade_hiredis = await asyncio.to_thread(open_sync_store, url, namespace=namespace)
            reads = facade_hiredis._direct
            reads.connections = BlockingConnections(reads._backend, "hiredis")
        ids = [(await store.create_session(data=session_doc(512, seed=n))).id for n in range(8)]
        keys = [store._writes.loc(sid).doc for sid in ids]
        calls = args.calls
        aio: Any = aioredis.Redis(host=host, port=int(port))
        await aio.script_load(READ.source)
        syncs: list[Any] = [redis.Redis(host=host, port=int(port)) for _ in ids]
        socks = []
        for _ in ids:
            s = socket.create_connection((host, int(port)))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        loop = asyncio.get_running_loop()

        async def store_tasks() -> None:
            async def work(sid: str) -> None:
                for _ in range(calls):
                    await store.get_session(sid)

            await asyncio.gather(*(work(sid) for sid in ids))

        async def aio_tasks() -> None:
            async def work(sid: str, key: str) -> None:
                for _ in range(calls):
                    decode_doc(await aio.execute_command("EVALSHA", READ.sha, 1, key), sid)

            await asyncio.gather(*(work(sid, k) for sid, k in zip(ids, keys, strict=True)))

        def on_loop(coro_fn: Callable[[], Any]) -> Callable[[], None]:
            return lambda: asyncio.run_coroutine_threadsafe(coro_fn(), loop).result()

        def sync_threads() -> None:
            def work(i: int) -> None:
                c, sid, key = syncs[i], ids[i], keys[i]
                for _ in range(calls):
                    decode_doc(c.execute_command("EVALSHA", READ.sha, 1, key), sid)

            _run_threads([functools.partial(work, i) for i in range(8)])

        def sock_threads() -> None:
            def work(i: int) -> None:
                s, sid, key = socks[i], ids[i], keys[i]
                buf = bytearray()
                for _ in range(calls):
                    s.sendall(pack_call("EVALSHA", READ.sha, [key], []))
                    decode_doc(_read_exact_bulk(s, buf), sid)

            _run_threads([functools.partial(work, i) for i in range(8)])

        def facade_threads(which: Any) -> None:
            def work(sid: str) -> None:
                for _ in range(calls):
                    which.get_session(sid)

            _run_threads([functools.partial(work, sid) for sid in ids])

        sides: dict[str, Callable[[], None]] = {
            "store-tasks": on_loop(store_tasks),
            "aio-tasks": on_loop(aio_tasks),
            "sync-threads": sync_threads,
            "sock-threads": sock_threads,
            "facade": functools.partial(facade_threads, facade),
            "facade-loop": functools.partial(facade_threads, facade_loop),
        }
        if facade_hiredis is not None:
            sides["facade-hiredis"] = functools.partial(facade_threads, facade_hiredis)
        if args.only:
            sides = {k: v for k, v in sides.items() if k in args.only or k == "store-tasks"}
        results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}

        def run_rounds() -> None:
            for fn in sides.values():  # warm-up
                fn()
            for r in range(args.rounds):
                order = list(sides.items())
                if r % 2:
                    order.reverse()
                for name, fn in order:
                    cpu0, wall0, csw0 = _usage()
                    fn()
                    cpu1, wall1, csw1 = _usage()
                    results[name].append((cpu1 - cpu0, wall1 - wall0, csw1 - csw0))

        await asyncio.to_thread(run_rounds)
        n = 8 * calls
        base_cpu = statistics.median(r[0] for r in results["store-tasks"])
        base_wall = statistics.median(r[1] for r in results["store-tasks"])
        aio_rows = results.get("aio-tasks", [(1.0, 1.0, 0)])
        aio_cpu = statistics.median(r[0] for r in aio_rows)
        aio_wall = statistics.median(r[1] for r in aio_rows)
        print(
            f"{'side':14} {'cpu/call':>9} {'wall/call':>9} {'csw/call':>8}"
            "  vs store-tasks (cpu, wall)  vs aio"
        )
        for name, rows in results.items():
            cpu = statistics.median(r[0] for r in rows)
            wall = statistics.median(r[1] for r in rows)
            csw = statistics.median(r[2] for r in rows)
            print(
                f"{name:14} {cpu / n * 1e6:7.1f}us {wall / n * 1e6:7.1f}us {csw / n:8.2f}"
                f"  {cpu / base_cpu:5.2f}x {wall / base_wall:5.2f}x"
                f"              {cpu / aio_cpu:5.2f}x {wall / aio_wall:5.2f}x"
            )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        await asyncio.to_thread(facade.shutdown)
        await asyncio.to_thread(facade_loop.shutdown)
        if facade_hiredis is not None:
            await asyncio.to_thread(facade_hiredis.shutdown)
        await store.shutdown()
        await aio.aclose()
        for c in syncs:
            c.close()
        for s in socks:
            s.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--only", nargs="*")
    asyncio.run(main(parser.parse_args()))
