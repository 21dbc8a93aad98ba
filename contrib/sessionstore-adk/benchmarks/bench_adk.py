"""How ``SessionStoreService`` scales with history, as ratios measured in one run.

For each store URL (default: ``memory://``, a file store and a SQLite store in a temporary
directory; add ``--url redis://...`` and ``--url postgresql://...``):

* ``append_event`` on a session of ``N`` events / on a session of 100 events (flat: the
  target is <= 1.3), and ``append_event`` / the store's own ``append_events`` of the same
  stored event at ``N`` events (what the adapter adds: the state deltas' commit);
* ``get_session(num_recent_events=20)`` of ``N`` events / of 100 events (O(20): <= 1.3),
  and / the store's own ``get_sessions`` + ``get_raw_events(last=20)`` at ``N`` with the
  20 events decoded into ADK ``Event`` objects (what any read must do).

ADK's own ``InMemorySessionService`` runs the same two flatness rows for comparison.

A PostgreSQL URL is measured twice, each time on tables of its own (a fresh
``table_prefix``, dropped afterwards): ``never analysed`` (autovacuum off for the events
table, so PostgreSQL plans with no statistics, as on a store whose table autovacuum has
not analysed yet) and ``analysed`` (``ANALYZE`` after the fill, as autovacuum keeps a
grown table and as ``benchmarks/bench_postgres.py`` does). The driver's lookups by key
and seq must be index-driven either way (docs/postgres.md, "Event-log indexes").
Each pair is timed in interleaved batches (a, b, b, a, ...), each side's figure being the
median over the batches of the mean time per call. ``N`` is 10,000 (``--quick``: 1,000).

``--vs sqlite`` and ``--vs postgresql`` add side-by-side rows: the adapter against the
services of ADK's own a user would pick for that backend, on the same backend, each
ratio ours / theirs (below 1: we are faster) with both times per call:

* ``sqlite``: ADK's ``SqliteSessionService`` (aiosqlite, a connection per call) and its
  ``DatabaseSessionService`` on ``sqlite+aiosqlite://`` (SQLAlchemy 2 asyncio), each on
  a file of its own in one temporary directory, against ``sqlite://`` files with
  ``durability=fsync`` (the default: WAL, ``synchronous=FULL``) and ``durability=none``
  (``synchronous=NORMAL``). ADK's services leave SQLite's defaults (rollback journal,
  ``synchronous`` as compiled, FULL in CPython's builds); the labels print what each
  file runs with.
* ``postgresql``: ADK's ``DatabaseSessionService`` on ``postgresql+asyncpg://`` against
  ``postgresql://`` (tables of its own, dropped afterwards) on the same server: a private
  one with the default durability (fsync, synchronous commit), started as
  ``benchmarks/bench_postgres.py`` does, or ``--vs-url``.

The rows: ``create_session`` with session, ``app:`` and ``user:`` state; ``append_event``
(an event with text content and a session, ``app:`` and ``user:`` delta) on a session of
100 and of 2,000 events; ``get_session`` of that session whole and with
``num_recent_events=20``; ``list_sessions(app, user)`` of 200 sessions; ``delete_session``
of a session of 3 events. Each service builds its own sessions through its own API
(``--quick``: 10 and 100 events, 10 sessions, fewer rounds). With ``--vs`` and no
``--url`` only the side-by-side rows run.

    python benchmarks/bench_adk.py [--quick] [--url URL ...] [--json FILE]
    python benchmarks/bench_adk.py [--quick] --vs sqlite --vs postgresql [--vs-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.genai import types
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
            for stored in await store.get_raw_events(sid, last=RECENT):
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


# -- side by side: ADK's own services on the same backend


@dataclass(frozen=True)
class VsSizes:
    small: int  # events of the small session
    big: int  # events of the big one
    sessions: int  # sessions of the listed user
    rounds: int
    number: int  # calls per batch
    heavy: int  # calls per batch of get_session(all events)


VS_FULL = VsSizes(small=100, big=2_000, sessions=200, rounds=8, number=10, heavy=2)
VS_QUICK = VsSizes(small=10, big=100, sessions=10, rounds=2, number=2, heavy=1)
#: create_session's state: session, app: and user: keys (temp: is never stored)
VS_STATE: dict[str, Any] = {
    "topic": "billing",
    "lang": "en",
    "step": 0,
    "app:model": "m-1",
    "user:tier": "pro",
    "temp:draft": "...",
}


def _vs_event(i: int) -> Event:
    # a model turn of ~200 characters with a delta in every scope
    return Event(
        author="agent",
        invocation_id=f"inv-{i}",
        content=types.Content(role="model", parts=[types.Part(text=f"step {i} " + "x" * 200)]),
        actions=EventActions(state_delta={"step": i, "app:calls": i, "user:seen": i}),
        timestamp=time.time(),
    )


@dataclass
class Side:
    """One service with its sessions, built through its own API."""

    label: str
    service: BaseSessionService
    app: str
    small: Session
    big: Session
    doomed: list[str]  # sessions for the delete row
    counter: Any

    @classmethod
    async def build(
        cls, label: str, service: BaseSessionService, sizes: VsSizes, doomed: int
    ) -> Side:
        app = f"vs-{uuid.uuid4().hex[:8]}"
        counter = iter(range(10**9))

        async def session_of(n: int, app_name: str = app) -> Session:
            session = await service.create_session(app_name=app_name, user_id="u", state=VS_STATE)
            for _ in range(n):
                await service.append_event(session, _vs_event(next(counter)))
            return session

        small = await session_of(sizes.small)
        big = await session_of(sizes.big)
        for _ in range(sizes.sessions):
            await session_of(0, f"{app}-list")
        for user in ("v", "w"):  # other users' sessions of the same app
            for _ in range(sizes.sessions // 4):
                await service.create_session(app_name=f"{app}-list", user_id=user)
        pool = [(await session_of(3, f"{app}-del")).id for _ in range(doomed)]
        return cls(label, service, app, small, big, pool, counter)

    def ops(self, sizes: VsSizes) -> list[tuple[str, Call, bool]]:
        """(row name, call, heavy) for each row."""
        svc, app = self.service, self.app
        recent = GetSessionConfig(num_recent_events=RECENT)

        def append(session: Session) -> Call:
            return lambda: svc.append_event(session, _vs_event(next(self.counter)))

        async def delete() -> None:
            name = self.doomed.pop()
            await svc.delete_session(app_name=f"{app}-del", user_id="u", session_id=name)

        big = self.big.id
        return [
            (
                "create_session (session, app: and user: state)",
                lambda: svc.create_session(app_name=f"{app}-new", user_id="u", state=VS_STATE),
                False,
            ),
            (f"append_event at {sizes.small:,} events", append(self.small), False),
            (f"append_event at {sizes.big:,} events", append(self.big), False),
            (
                f"get_session, all {sizes.big:,} events",
                lambda: svc.get_session(app_name=app, user_id="u", session_id=big),
                True,
            ),
            (
                f"get_session(num_recent_events=20) at {sizes.big:,}",
                lambda: svc.get_session(app_name=app, user_id="u", session_id=big, config=recent),
                False,
            ),
            (
                f"list_sessions(app, user), {sizes.sessions:,} sessions",
                lambda: svc.list_sessions(app_name=f"{app}-list", user_id="u"),
                False,
            ),
            ("delete_session (3 events)", delete, False),
        ]


def _doomed(sizes: VsSizes, pairs: int) -> int:
    """Sessions a side deletes in ``pairs`` comparisons (each warms up with one call)."""
    return pairs * (sizes.rounds * sizes.number + 1)


async def side_by_side(ours: Side, theirs: Side, sizes: VsSizes) -> list[Row]:
    """Every row of one pair, with the objects alive before it (the fixtures: every
    service's sessions, their events held in ADK's ``Session`` objects, ~270,000 objects
    after the ``--vs sqlite`` fills) frozen out of the garbage collector's scans.

    Without that, whether a batch of the whole-history read pays a full collection of the
    fixtures' heap depended on the heap's size, not on the call: each batch starts after a
    ``gc.collect()``, and CPython collects the oldest generation once the objects promoted
    into it since then exceed a quarter of it. Two reads of 2,000 events promote ~70,000
    objects with the adapter (the store's decoded events and ADK's ``Event`` objects) and
    fewer with ADK's own services, so at ~273,000 fixture objects every batch of ours paid
    a full collection (~120 ms of 204) and theirs none, and a few thousand objects more
    turned that off (docs/performance.md, the ``sqlside`` subsection). Frozen, a
    collection costs what the measured calls' own objects cost, on both sides."""
    rows = []
    label = f"{ours.label} / {theirs.label}"
    gc.collect()
    gc.freeze()
    try:
        for (name, mine, heavy), (_, other, _) in zip(
            ours.ops(sizes), theirs.ops(sizes), strict=True
        ):
            number = sizes.heavy if heavy else sizes.number
            op, floor = await compare(mine, other, rounds=sizes.rounds, number=number)
            rows.append(Row(label, name, op, floor, None))
    finally:
        gc.unfreeze()
    return rows


def _sqlite_mode(path: Path) -> str:
    """What a new connection to ``path`` runs with, as ADK's services leave it."""
    with sqlite3.connect(path) as conn:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return f"{journal}, {['OFF', 'NORMAL', 'FULL', 'EXTRA'][sync]}"


async def run_vs_sqlite(
    sizes: VsSizes, tmp: Path, durabilities: Sequence[str] = ("fsync", "none")
) -> list[Row]:
    from google.adk.sessions.database_session_service import DatabaseSessionService
    from google.adk.sessions.sqlite_session_service import SqliteSessionService

    async with AsyncExitStack() as stack:
        ours: list[Side] = []
        for durability in durabilities:
            file = tmp / f"ours-{durability}.db"
            store = await stack.enter_async_context(
                open_store(f"sqlite://{file}", durability=durability)
            )
            side = await Side.build("", SessionStoreService(store), sizes, _doomed(sizes, 2))
            # the driver sets synchronous on each of its connections (docs/sqlite.md)
            sync = {"fsync": "FULL", "none": "NORMAL"}[durability]
            journal = _sqlite_mode(file).split(",")[0]
            side.label = f"sqlite: ours, durability={durability} ({journal}, {sync})"
            ours.append(side)
        theirs: list[Side] = []
        adk_sqlite = SqliteSessionService(str(tmp / "adk-sqlite.db"))
        stack.push_async_callback(adk_sqlite.close)
        adk_db = DatabaseSessionService(f"sqlite+aiosqlite:///{tmp}/adk-database.db")
        stack.push_async_callback(adk_db.close)
        for name, db_file, service in (
            ("SqliteSessionService", "adk-sqlite.db", adk_sqlite),
            ("DatabaseSessionService(aiosqlite)", "adk-database.db", adk_db),
        ):
            side = await Side.build(name, service, sizes, _doomed(sizes, len(durabilities)))
            side.label = f"{name} ({_sqlite_mode(tmp / db_file)})"
            theirs.append(side)
        rows: list[Row] = []
        for mine in ours:
            for other in theirs:
                rows += await side_by_side(mine, other, sizes)
        return rows


async def run_vs_postgres(sizes: VsSizes, url: str) -> list[Row]:
    from google.adk.sessions.database_session_service import DatabaseSessionService

    async with _postgres_tables(url) as (store, conn, _events):
        mine = await Side.build(
            "postgresql: ours", SessionStoreService(store), sizes, _doomed(sizes, 1)
        )
        # ADK's tables in a schema of their own, dropped afterwards
        schema = f"adkbench_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE SCHEMA {schema}")
        o = store.options  # type: ignore[attr-defined]  # the PostgreSQL driver's options
        auth = o.user if not o.password else f"{o.user}:{o.password}"
        adk = DatabaseSessionService(
            f"postgresql+asyncpg://{auth}@{o.host}:{o.port}/{o.database}",
            connect_args={"server_settings": {"search_path": schema}},
        )
        try:
            other = await Side.build(
                "ADK DatabaseSessionService(asyncpg)", adk, sizes, _doomed(sizes, 1)
            )
            return await side_by_side(mine, other, sizes)
        finally:
            await adk.close()
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


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
    parser.add_argument(
        "--vs",
        action="append",
        default=[],
        choices=("sqlite", "postgresql"),
        help="side by side with ADK's own services on this backend (repeatable)",
    )
    parser.add_argument("--vs-url", help="the PostgreSQL server of --vs postgresql")
    parser.add_argument("--json", type=Path, help="write the rows there")
    args = parser.parse_args(argv)
    n = 1_000 if args.quick else 10_000
    sizes = VS_QUICK if args.quick else VS_FULL
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.url or not args.vs:
            urls = args.url or ["memory://", f"file://{tmp}/files", f"sqlite://{tmp}/s.db"]
            rows += asyncio.run(run(urls, n, args.quick))
        if "sqlite" in args.vs:
            rows += asyncio.run(run_vs_sqlite(sizes, Path(tmp)))
        if "postgresql" in args.vs:
            if args.vs_url:
                rows += asyncio.run(run_vs_postgres(sizes, args.vs_url))
            else:
                from tests.postgres.servers import durable_server_url

                with durable_server_url() as url:
                    rows += asyncio.run(run_vs_postgres(sizes, url))
    store_width = max(len(r.store) for r in rows)
    width = max(len(r.name) for r in rows)
    for row in rows:
        verdict = "" if row.target is None else ("  ok" if row.ratio <= row.target else "  MISSED")
        target = "" if row.target is None else f" (target <= {row.target})"
        print(
            f"{row.store:{store_width}} {row.name:{width}}"
            f"  {row.op * 1e6:9.1f} us / {row.floor * 1e6:9.1f} us"
            f" = {row.ratio:5.2f}x{target}{verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows], indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
