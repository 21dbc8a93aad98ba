"""How ``SessionStoreService`` scales with history, as ratios measured in one run.

For each store URL (default: ``memory://``, a file store and a SQLite store in a temporary
directory; add ``--url redis://...`` and ``--url postgresql://...``):

* ``append_event`` on a session of ``N`` events / on a session of 100 events (flat: the
  target is <= 1.3), and ``append_event`` / the store's own ``append_events`` of the same
  stored event at ``N`` events (what the adapter adds: the state deltas' commit);
* ``get_session(num_recent_events=20)`` of ``N`` events / of 100 events (O(20): <= 1.3),
  and / the store's own ``get_sessions`` + ``get_events(last=20)`` at ``N`` with the 20
  events decoded into ADK ``Event`` objects (what any read must do).

ADK's own ``InMemorySessionService`` runs the same two flatness rows for comparison.

A PostgreSQL URL is measured twice, each time on tables of its own (a fresh
``table_prefix``, dropped afterwards): ``never analysed`` (autovacuum off for the events
table, so PostgreSQL plans with no statistics, as on a store whose table autovacuum has
not analysed yet) and ``analysed`` (``ANALYZE`` after the fill, as autovacuum keeps a
grown table and as ``benchmarks/bench_postgres.py`` does). The driver's lookups by key
and seq must be index-driven either way (docs/postgres.md, "Event-log indexes").
Each pair is timed in interleaved batches (a, b, b, a, ...), each side's figure being the
median over the batches of the mean time per call. ``N`` is 10,000 (``--quick``: 1,000).

    python benchmarks/bench_adk.py [--quick] [--url URL ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from sessionstore_adk import SessionStoreService, _ids
from sessionstore_adk.service import EVENT_TYPE, _at, _decode, _event_key, _event_record

from sessionstore import EventInput, SessionStore, open_store

APP = "bench"
RECENT = 20
Call = Callable[[], Awaitable[object]]


@dataclass
class Row:
    """One measured ratio: ``op`` / ``floor`` seconds per call, and the target if any."""

    store: str
    name: str
    op: float
    floor: float
    target: float | None

    @property
    def ratio(self) -> float:
        return self.op / self.floor


async def _batch(fn: Call, number: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        await fn()
    return (time.perf_counter() - start) / number


async def compare(a: Call, b: Call, *, rounds: int, number: int) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed in interleaved batches."""
    await a()
    await b()  # warm both up (connections, caches, code paths)
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(rounds):
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, out in order:
            out.append(await _batch(fn, number))
    return statistics.median(times_a), statistics.median(times_b)


def _event(i: int) -> Event:
    # about 300 bytes stored, a session-scoped delta on every event (a typical tool step)
    return Event(
        author="agent",
        invocation_id=f"inv-{i}",
        actions=EventActions(state_delta={"step": i, "note": "x" * 100}),
        timestamp=time.time(),
    )


async def _fill(service: BaseSessionService, store: SessionStore | None, n: int) -> Session:
    """A session of ``n`` events (written straight to the store in batches when there is
    one: the same records ``append_event`` writes, without n round trips)."""
    session = await service.create_session(app_name=APP, user_id="u")
    if store is None or n == 0:
        for i in range(n):
            await service.append_event(session, _event(i))
        return session
    sid = _ids.session_id(APP, "u", session.id)
    batch: list[EventInput] = []
    for i in range(n):
        raw, record = _event_record(_event(i))
        key = _event_key(_event(i), raw)
        batch.append(EventInput(type=EVENT_TYPE, data=record, key=key, at=_at(record["timestamp"])))
        if len(batch) == 1000 or i == n - 1:
            await store.append_events(sid, batch)
            batch = []
    fresh = await service.get_session(
        app_name=APP,
        user_id="u",
        session_id=session.id,
        config=GetSessionConfig(num_recent_events=0),
    )
    assert fresh is not None
    return fresh


async def bench_service(
    label: str,
    service: BaseSessionService,
    store: SessionStore | None,
    n: int,
    quick: bool,
    filled: Callable[[], Awaitable[None]] | None = None,
) -> list[Row]:
    """The rows of one service; ``filled`` runs once every session is written."""
    rounds, number = (5, 20) if quick else (9, 50)
    small = await _fill(service, store, 100)
    big = await _fill(service, store, n)
    tiny = await _fill(service, store, 100)
    # the store floors append to a twin of ``big`` (appending to ``big`` itself behind
    # the service's back would make its session object stale)
    twin = None if store is None else await _fill(service, store, n)
    if filled is not None:
        await filled()
    counter = iter(range(10**9))

    def append_to(session: Session) -> Call:
        return lambda: service.append_event(session, _event(next(counter)))

    def recent(session: Session) -> Call:
        config = GetSessionConfig(num_recent_events=RECENT)
        return lambda: service.get_session(
            app_name=APP, user_id="u", session_id=session.id, config=config
        )

    rows = []
    at_n, at_100 = await compare(append_to(big), append_to(small), rounds=rounds, number=number)
    rows.append(Row(label, f"append_event at {n:,} events / at 100", at_n, at_100, 1.3))
    big_n, tiny_n = await compare(recent(big), recent(tiny), rounds=rounds, number=number)
    rows.append(
        Row(label, f"get_session(num_recent_events=20) of {n:,} / of 100", big_n, tiny_n, 1.3)
    )
    if store is not None and twin is not None:
        sid = _ids.session_id(APP, "u", twin.id)
        scoped = [sid, _ids.app_state_id(APP), _ids.user_state_id(APP, "u")]

        async def raw_append() -> None:
            i = next(counter)
            raw, record = _event_record(_event(i))
            stored = EventInput(
                type=EVENT_TYPE, data=record, key=_event_key(_event(i), raw), at=_at(time.time())
            )
            await store.append_events(sid, [stored])

        async def raw_recent() -> None:
            await store.get_sessions(scoped)
            for stored in await store.get_events(sid, last=RECENT):
                _decode(stored)  # building ADK's Event objects is part of any read

        op, floor = await compare(append_to(big), raw_append, rounds=rounds, number=number)
        rows.append(Row(label, f"append_event / store.append_events at {n:,}", op, floor, None))
        op, floor = await compare(recent(big), raw_recent, rounds=rounds, number=number)
        rows.append(
            Row(label, "get_session(20) / store reads + decoding 20 events", op, floor, None)
        )
    return rows


async def run(urls: list[str], n: int, quick: bool) -> list[Row]:
    rows: list[Row] = []
    rows += await bench_service(
        "ADK InMemorySessionService", InMemorySessionService(), None, n, quick
    )
    for url in urls:
        scheme = url.split("://")[0]
        if scheme not in ("postgresql", "postgres"):
            store = open_store(url)
            async with store:
                service = SessionStoreService(store)
                rows += await bench_service(f"{scheme}://", service, store, n, quick)
            continue
        for analyse in (False, True):
            async with _postgres_tables(url) as (pg_store, conn, events):
                await conn.execute(f"ALTER TABLE {events} SET (autovacuum_enabled = off)")

                async def filled(analyse: bool = analyse, events: str = events) -> None:
                    if analyse:
                        await conn.execute(f"ANALYZE {events}")

                label = f"{scheme}:// ({'analysed' if analyse else 'never analysed'})"
                service = SessionStoreService(pg_store)
                rows += await bench_service(label, service, pg_store, n, quick, filled)
    return rows


@asynccontextmanager
async def _postgres_tables(url: str) -> AsyncIterator[tuple[SessionStore, Any, str]]:
    """A store on tables of its own (dropped on exit), a raw connection to the same
    database (asyncpg, from the store's own options) and the events table's name."""
    import asyncpg  # type: ignore[import-untyped]  # the PostgreSQL driver's dependency

    prefix = f"adkbench{uuid.uuid4().hex[:8]}_"
    store = open_store(url, table_prefix=prefix)
    where = {k: getattr(store.options, k) for k in ("host", "port", "user", "password", "database")}
    conn = await asyncpg.connect(**where)
    try:
        async with store:
            yield store, conn, f"{prefix}events"
    finally:
        try:
            for table in ("events", "checkpoints", "sessions", "schema"):
                await conn.execute(f"DROP TABLE IF EXISTS {prefix}{table} CASCADE")
            for function in ("events_op", "write_or_raise", "write"):
                await conn.execute(f"DROP FUNCTION IF EXISTS {prefix}{function}")
        finally:
            await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 events, fewer rounds")
    parser.add_argument("--url", action="append", default=[], help="a store URL (repeatable)")
    parser.add_argument("--json", type=Path, help="write the rows there")
    args = parser.parse_args(argv)
    n = 1_000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.url or ["memory://", f"file://{tmp}/files", f"sqlite://{tmp}/s.db"]
        rows = asyncio.run(run(urls, n, args.quick))
    width = max(len(r.name) for r in rows)
    for row in rows:
        verdict = "" if row.target is None else ("  ok" if row.ratio <= row.target else "  MISSED")
        target = "" if row.target is None else f" (target <= {row.target})"
        print(
            f"{row.store:28} {row.name:{width}}  {row.op * 1e6:9.1f} us / {row.floor * 1e6:9.1f} us"
            f" = {row.ratio:5.2f}x{target}{verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows], indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
