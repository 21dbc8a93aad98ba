"""Issue 20, eleventh session (the `pgtimer` branch): client CPU per call of the two
PostgreSQL rows that sat at their 1.5x targets, with ``command_timeout`` as asyncpg's
timer per statement (``main``) against the server's ``statement_timeout`` (this tree),
in one process against one private server, interleaved.

Sides, each on a connection of its own (one per store, ``max_size=1``):

- ``timer``: a store whose connection runs as on ``main``: asyncpg's
  ``command_timeout=30`` (a ``call_later`` timer armed and cancelled per statement) and no
  ``statement_timeout``;
- ``server``: a store as this tree opens it (``statement_timeout``, no client timer);
- ``raw``: the benchmark's floor, raw asyncpg (no timeout), the same statements as
  ``bench_postgres`` (an ``INSERT`` of the event row; the indexed ``SELECT`` of the last
  20 + decoding).

Rows: ``append_events`` of one event to a session of 10,000 events (2 KB document), and
``get_events(last=20)`` of it; then ``SELECT $1::bigint, $2::text`` on two raw
connections, with and without asyncpg's ``command_timeout=30``. Per round each side
makes ``--calls`` calls, the sides' order rotating; client CPU is
``time.process_time()``, the server's is the backend's ``utime + stime`` from
``/proc/<pid>/stat`` (clock ticks: coarse; Linux only). Medians.

``--canned``: the store's own Python of ``get_events(last=20)`` (the round trip replaced
by the stored reply, as the `pgtrim` profile did), with the store's memo of decoded event
times and with it emptied before each call (as ``main`` decoded them), against the raw
floor's decoding of the same rows, and a cProfile of it.

Run: ``.venv/bin/python -m benchmarks.pg_timer_cpu [--rounds 9] [--calls 1000]
[--canned]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from tests.postgres.servers import durable_server_url

from .bench_memory import EVENT, NewMillisecondClock, session_doc
from .bench_postgres import _connect_args, floor_sql

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _server_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK


async def _pid(store: Any) -> int:
    return int(await store._pools.get().run(lambda c: c.fetchval("SELECT pg_backend_pid()")))


async def _as_on_main(store: Any) -> None:
    """The store's connection as ``main`` opened it: asyncpg's timer, no server timeout."""

    async def patch(conn: asyncpg.Connection) -> None:
        conn._config = conn._config._replace(command_timeout=30.0)
        await conn.execute("SET statement_timeout = 0")

    await store._pools.get().run(patch)


async def _big_session(store: Any, big_log: int) -> str:
    sid: str = (
        await store.create_session(processor_id="agent-7", data=session_doc(), metadata={"u": 1})
    ).id
    for start in range(0, big_log, 1000):
        await store.append_events(sid, [EVENT] * min(1000, big_log - start))
    return sid


Call = Callable[[], Awaitable[object]]


async def _rounds(
    name: str, sides: dict[str, tuple[Call, int]], rounds: int, calls: int
) -> dict[str, float]:
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    srv: dict[str, list[float]] = {side: [] for side in sides}
    wall: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for r in range(rounds):
        turn = order[r % len(order) :] + order[: r % len(order)]
        for side in turn:
            call, pid = sides[side]
            for _ in range(20):
                await call()
            s0, c0, w0 = _server_cpu(pid), time.process_time(), time.perf_counter()
            for _ in range(calls):
                await call()
            w1, c1, s1 = time.perf_counter(), time.process_time(), _server_cpu(pid)
            cpu[side].append((c1 - c0) / calls * 1e6)
            srv[side].append((s1 - s0) / calls * 1e6)
            wall[side].append((w1 - w0) / calls * 1e6)
    medians = {side: statistics.median(v) for side, v in cpu.items()}
    for side in sides:
        print(
            f"{name} {side}: client CPU {medians[side]:.1f} us "
            f"(min {min(cpu[side]):.1f}, max {max(cpu[side]):.1f}), server CPU "
            f"{statistics.median(srv[side]):.1f} us, wall {statistics.median(wall[side]):.1f} us"
        )
    return medians


async def _canned(store: Any, conn: asyncpg.Connection, sid: str, calls: int) -> None:
    """The store's Python of ``get_events(last=20)`` with the round trip's reply canned."""
    pool = store._pools.get()
    reply: list[Any] = []
    real_run = pool.run

    async def capture(call: Any, **kw: Any) -> Any:
        rows = await real_run(call, **kw)
        reply[:] = [rows]
        return rows

    pool.run = capture
    await store.get_events(sid, last=20)

    async def canned(call: Any, **kw: Any) -> Any:
        return reply[0]

    pool.run = canned
    raw_rows = await conn.fetch(
        f"SELECT seq, type, at, data FROM {store._t_events} WHERE ns = $1 AND session_id = $2 "
        "ORDER BY seq DESC LIMIT 20",
        store.namespace,
        sid,
    )

    async def raw_decode() -> object:
        return [orjson.loads(r[3]) for r in raw_rows]

    async def fresh_times() -> object:  # as on main: the event times decoded per call
        store._event_times.clear()
        return await store.get_events(sid, last=20)

    try:
        for name, call in (
            ("store get_events(last=20), canned reply", lambda: store.get_events(sid, last=20)),
            ("the same, event times decoded per call (main)", fresh_times),
            ("raw floor's decoding of the same 20 rows", raw_decode),
        ):
            per: list[float] = []
            for _ in range(7):
                c0 = time.process_time()
                for _ in range(calls):
                    await call()
                per.append((time.process_time() - c0) / calls * 1e6)
            print(f"{name}: {statistics.median(per):.2f} us (min {min(per):.2f})")
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for _ in range(calls):
            await store.get_events(sid, last=20)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    finally:
        pool.run = real_run


async def main(args: argparse.Namespace) -> None:
    from sessionstore import open_store

    with durable_server_url() as url:
        run = uuid.uuid4().hex[:8]
        stores: dict[str, Any] = {}
        for side in ("timer", "server"):
            store = open_store(
                url, namespace=f"ptc-{side}-{run}", clock=NewMillisecondClock(), max_size=1
            )
            await store.initialize()
            stores[side] = store
        await _as_on_main(stores["timer"])
        raw = await asyncpg.connect(**_connect_args(stores["server"]))
        try:
            sids = {side: await _big_session(s, args.big_log) for side, s in stores.items()}
            pids = {side: await _pid(s) for side, s in stores.items()}
            raw_pid = int(await raw.fetchval("SELECT pg_backend_pid()"))
            t_events = stores["server"]._t_events
            # statistics first: on a never-analysed table a generic plan of the raw floor's
            # SELECT may read the whole log (one run: 9.5 ms of server CPU a call)
            await raw.execute(f"ANALYZE {t_events}")
            raw_seq = itertools.count(1)
            raw_log = f"raw-{run}"
            event_json = orjson.dumps(EVENT["data"]).decode()
            insert_sql, last_sql = floor_sql(t_events)
            ns = stores["server"].namespace

            def raw_insert() -> Awaitable[object]:
                call: Awaitable[object] = raw.execute(
                    insert_sql, ns, raw_log, next(raw_seq), "tool_call", 0, event_json
                )
                return call

            async def raw_last() -> object:
                rows = await raw.fetch(last_sql, ns, sids["server"])
                return [orjson.loads(r[3]) for r in rows]

            def appender(side: str) -> Call:
                store, sid = stores[side], sids[side]
                return lambda: store.append_events(sid, [EVENT])

            def reader(side: str) -> Call:
                store, sid = stores[side], sids[side]
                return lambda: store.get_events(sid, last=20)

            medians: dict[str, dict[str, float]] = {}
            for name, side_call, floor in (
                ("append", appender, raw_insert),
                ("last-20", reader, raw_last),
            ):
                sides = {side: (side_call(side), pids[side]) for side in ("timer", "server")}
                sides["raw"] = (floor, raw_pid)
                medians[name] = await _rounds(name, sides, args.rounds, args.calls)
            timed = await asyncpg.connect(**_connect_args(stores["server"]), command_timeout=30)
            try:
                timed_pid = int(await timed.fetchval("SELECT pg_backend_pid()"))
                q = await _rounds(
                    "select",
                    {
                        "timer": (
                            lambda: timed.fetchrow("SELECT $1::bigint, $2::text", 1, "a"),
                            timed_pid,
                        ),
                        "raw": (
                            lambda: raw.fetchrow("SELECT $1::bigint, $2::text", 1, "a"),
                            raw_pid,
                        ),
                    },
                    args.rounds,
                    args.calls,
                )
            finally:
                await timed.close()
            print(f"select: asyncpg's timer costs {q['timer'] - q['raw']:.1f} us a statement")
            for name, m in medians.items():
                saved = m["timer"] - m["server"]
                print(
                    f"{name} client CPU / raw: timer {m['timer'] / m['raw']:.2f}x, "
                    f"server {m['server'] / m['raw']:.2f}x (saved {saved:.1f} us)"
                )
            if args.canned:
                await _canned(stores["server"], raw, sids["server"], args.calls * 10)
        finally:
            await raw.close()
            for store in stores.values():
                await store.shutdown()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--big-log", type=int, default=10_000)
    parser.add_argument("--canned", action="store_true")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
