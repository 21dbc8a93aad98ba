"""Benchmark of the PostgreSQL driver against raw asyncpg on the same server, same run.

Run::

    .venv/bin/python -m benchmarks.bench_postgres            # full sizes (10,000 sessions)
    .venv/bin/python -m benchmarks.bench_postgres --quick    # small sizes, ~15 s
    .venv/bin/python -m benchmarks.bench_postgres --json out.json
    .venv/bin/python -m benchmarks.bench_postgres --url postgresql://u@127.0.0.1:5544/db
    .venv/bin/python -m benchmarks.bench_postgres --million  # + row 4 at 1,000,000 sessions

Without ``--url`` it starts a private server (initdb + pg_ctl on a free loopback port, as
the tests do). Floors are the same statements issued raw through asyncpg on the driver's
own tables, plus the JSON decoding the result needs (issue 20):

1. ``create_session`` + ``get_session`` of a 2 KB session <= 1.5x the raw write-function
   call + the raw SELECT of the row (+ decoding data and metadata);
2. ``append_events`` (one event, 10,000 in the log) <= 1.5x a raw INSERT of the event row
   (autocommit: insert + commit);
3. ``get_events(last=20)`` of 10,000 events <= 1.5x the raw indexed SELECT (+ decoding);
4. the 100 newest of a processor's 1,000 sessions among 10,000 <= 2x the raw indexed
   SELECT (+ decoding);
5. append flat in history (10,000 vs 10 events <= 1.3x);
6. 8 writers on distinct sessions >= 0.7x the throughput of 8 raw connections issuing the
   same write statement (time <= 1/0.7 = 1.43x);
7. the event log (issue 17, ``_event_log.py``): ``pop_events(n=1)``,
   ``get_event(key=)``, ``get_events(types=, last=20)``, a backwards page and a keyed
   append on a session of 10,000 events <= 1.3x the same on one of 10 events;
8. (``--million`` only, minutes) the steps of ``_million.py`` at 1,000,000 sessions in a
   fresh namespace: load by ``commit()`` of 1,000 creates per transaction, the growth of
   the sessions table (``pg_total_relation_size``: heap, TOAST and every index), the
   listing (``updated_at`` desc) against the raw indexed ``SELECT`` + decoding, counts,
   backup, and restore into another fresh namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from sessionstore import (
    ManualClock,
    Mutation,
    QueryOptions,
    Session,
    SessionFilter,
    SessionRecord,
    Status,
    open_store,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.codec import new_id
from sessionstore.planning import new_session, prepare

from . import _million
from ._event_log import event_log_rows, keyed_append_row
from ._harness import Report, Row, Target, append_flatness_row, compare
from .bench_memory import EVENT, NewMillisecondClock, session_doc


@dataclass(frozen=True)
class Sizes:
    repeat: int
    op_number: int
    big_log: int
    small_log: int
    sessions: int
    hot: int  # sessions of the queried processor
    writes_per_writer: int


#: Fresh namespaces per run (``--url`` may name a server that ran this before).
RUN = new_id()[-8:].lower()
FULL = Sizes(21, 50, 10_000, 10, 10_000, 1_000, 50)
QUICK = Sizes(3, 10, 2_000, 10, 1_000, 200, 10)


@contextmanager
def private_server() -> Iterator[str]:
    """A private PostgreSQL on a free loopback port (never 5432) with the default
    durability settings (fsync, synchronous commit), stopped afterwards."""
    from tests.postgres.servers import private_url

    with private_url() as url:
        yield url


def _connect_args(store: Any) -> dict[str, Any]:
    o = store.options
    return {
        "host": o.host,
        "port": o.port,
        "user": o.user,
        "password": o.password,
        "database": o.database,
    }


def floor_sql(t_events: str) -> tuple[str, str]:
    """The raw floors of rows 2 and 3: the event row's ``INSERT`` (``$1``-``$6``: ns,
    session, seq, type, at, data) and the last 20 events of ``$1``/``$2`` by the primary
    key."""
    return (
        f"INSERT INTO {t_events} (ns, session_id, seq, type, at, data) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        f"SELECT seq, type, at, data FROM {t_events} WHERE ns = $1 AND session_id = $2 "
        "ORDER BY seq DESC LIMIT 20",
    )


def _decode_row(row: Any) -> object:
    return orjson.loads(row[3]), orjson.loads(row[4])


async def bench_single_ops(report: Report, url: str, sizes: Sizes) -> None:
    from sessionstore_postgres import PostgresStore

    doc = session_doc()
    store = open_store(url, namespace=f"bench-ops-{RUN}", clock=NewMillisecondClock())
    assert isinstance(store, PostgresStore)
    async with store:
        conn = await asyncpg.connect(**_connect_args(store))
        try:
            await _ops(report, store, conn, doc, sizes)
        finally:
            await conn.close()


async def _ops(
    report: Report, store: Any, conn: asyncpg.Connection, doc: dict[str, Any], sizes: Sizes
) -> None:
    from sessionstore import CreateOp, NewSession

    fields: dict[str, Any] = {"processor_id": "agent-7", "data": doc, "tags": {"prod", "eu"},
                              "metadata": {"user": "u1"}}  # fmt: skip
    prepared = prepare(CreateOp(NewSession(**fields)), store._limits)
    assert prepared.data is not None and prepared.metadata is not None
    data_json, meta_json = prepared.data[0], prepared.metadata[0]
    write_sql, load_sql = store._sql_write, store._sql_load_one

    async def create_get() -> object:
        s = await store.create_session(**fields)
        return await store.get_session(s.id)

    async def raw_create_get() -> object:
        s = new_session(prepared, store.clock.now())
        object.__setattr__(s, "id", new_id())
        mut = Mutation(s.id, 0, s, data_json, meta_json, created=True)
        await conn.fetchval(write_sql, *store._args(mut, None, "raw-token"))
        return _decode_row(await conn.fetchrow(load_sql, store.namespace, s.id))

    op, floor = await compare(
        create_get, raw_create_get, number=sizes.op_number, floor_number=sizes.op_number,
        repeat=sizes.repeat,
    )  # fmt: skip
    report.add(Row("create + get (2 KB session)", op, "raw write call + SELECT + decode",
                   floor, Target.at_most(1.5)))  # fmt: skip

    big = (await store.create_session(processor_id="agent-7", data={"n": 1})).id
    small = (await store.create_session(processor_id="agent-7", data={"n": 2})).id
    for start in range(0, sizes.big_log, 1000):
        await store.append_events(big, [EVENT] * min(1000, sizes.big_log - start))
    await store.append_events(small, [EVENT] * sizes.small_log)
    t_events = store._t_events
    raw_seq = itertools.count(1)
    raw_log = f"raw-{new_id()}"
    event_json = orjson.dumps(EVENT["data"]).decode()
    insert_sql, last_sql = floor_sql(t_events)

    def raw_insert() -> object:
        return conn.execute(
            insert_sql, store.namespace, raw_log, next(raw_seq), "tool_call", 0, event_json
        )

    op, floor = await compare(
        lambda: store.append_events(big, [EVENT]), raw_insert,
        number=sizes.op_number, floor_number=sizes.op_number, repeat=sizes.repeat,
        op_setup=lambda: store.trim_events(big, keep_last=sizes.big_log),
    )  # fmt: skip
    report.add(Row(f"append_events (1 event, {sizes.big_log:,} in the log)", op,
                   "raw INSERT + commit", floor, Target.at_most(1.5)))  # fmt: skip

    async def raw_last() -> object:
        rows = await conn.fetch(last_sql, store.namespace, big)
        return [orjson.loads(r[3]) for r in rows]

    op, floor = await compare(
        lambda: store.get_events(big, last=20), raw_last,
        number=sizes.op_number, floor_number=sizes.op_number, repeat=sizes.repeat,
    )  # fmt: skip
    report.add(Row(f"get_events last 20 of {sizes.big_log:,}", op,
                   "raw indexed SELECT + decode", floor, Target.at_most(1.5)))  # fmt: skip

    await append_flatness_row(
        report, store, big, small, EVENT,
        name=f"append flatness {sizes.big_log:,} vs {sizes.small_log}",
        big_log=sizes.big_log, small_log=sizes.small_log, number=sizes.op_number,
        repeat=sizes.repeat,
    )  # fmt: skip
    # statistics as autovacuum keeps them (the table holds the logs of the rows above):
    # on a never-analysed table PostgreSQL expects one event per session, every index on
    # (ns, session_id) looks alike, and get_event may filter the log instead of using the
    # key index (docs/postgres.md, "Event-log indexes")
    await conn.execute(f"ANALYZE {t_events}")
    await event_log_rows(
        report, store, big_log=sizes.big_log, small_log=sizes.small_log,
        number=sizes.op_number, repeat=sizes.repeat,
    )  # fmt: skip
    await keyed_append_row(
        report, store, big_log=sizes.big_log, small_log=sizes.small_log,
        number=sizes.op_number, repeat=sizes.repeat,
    )  # fmt: skip


def _records(total: int, hot: int, start_ms: int, rnd: random.Random) -> Iterator[SessionRecord]:
    """``total`` sessions, ``hot`` of them (evenly spread) of ``agent-hot``, ~1 s apart."""
    clock = ManualClock(from_ms(start_ms))
    every = total // hot
    for i in range(total):
        clock.advance(timedelta(milliseconds=rnd.randrange(1, 2_000)))
        now = clock.now()
        proc = "agent-hot" if i % every == 0 else f"agent-{i % 9}"
        session = Session(new_id(), proc, Status.ACTIVE,
                          {"goal": "answer", "summary": "y" * rnd.randrange(100, 400)},
                          {"user": f"u-{rnd.randrange(500)}"}, frozenset({"t"}), now, now,
                          None, 1)  # fmt: skip
        yield SessionRecord(session)


async def _load_records(store: Any, total: int, hot: int, clock: ManualClock) -> None:
    """The 10,000-session row's data: whole records (each its own time) by ``put_records``
    in calls of 500 (which writes them one transaction each)."""
    records = _records(total, hot, to_ms(clock.now()), random.Random(42))
    while chunk := list(itertools.islice(records, 500)):
        await store.put_records(chunk)


async def bench_query(report: Report, url: str, sizes: Sizes) -> None:
    from sessionstore_postgres import PostgresStore

    total, hot = sizes.sessions, sizes.hot
    clock = ManualClock()
    store = open_store(url, namespace=f"bench-q{total}-{RUN}", clock=clock)
    assert isinstance(store, PostgresStore)
    async with store:
        started = time.perf_counter()
        await _load_records(store, total, hot, clock)
        load = time.perf_counter() - started
        report.info[f"load {total:,}"] = (
            f"{total:,} sessions through put_records() (one transaction per record): "
            f"{load:.1f} s ({total / load:,.0f} sessions/s)"
        )
        flt = SessionFilter(processor_id="agent-hot")
        opts = QueryOptions(sort_by="created_at", order="desc", limit=100)
        page = await store.list_sessions(flt, opts)
        if len(page) != 100 or await store.count_sessions(flt) != hot:
            raise SystemExit("BUG: unexpected page or count")
        conn = await asyncpg.connect(**_connect_args(store))
        from sessionstore_postgres._store import _COLS

        sql = (
            f"SELECT {_COLS} FROM {store._t_sessions} WHERE ns = $1 AND processor_id = $2 "
            "ORDER BY created_at DESC, id DESC LIMIT 100"
        )
        if [r[0] for r in await conn.fetch(sql, store.namespace, "agent-hot")] != page.ids:
            raise SystemExit("BUG: the driver's page and the raw indexed SELECT disagree")

        async def raw_page() -> object:
            rows = await conn.fetch(sql, store.namespace, "agent-hot")
            return [_decode_row(r) for r in rows]

        try:
            op, floor = await compare(
                lambda: store.list_sessions(flt, opts), raw_page,
                number=sizes.op_number, floor_number=sizes.op_number, repeat=sizes.repeat,
            )  # fmt: skip
        finally:
            await conn.close()
        report.add(Row(f"100 newest of a processor's {hot:,} among {total:,}",
                       op, "raw indexed SELECT + decode", floor, Target.at_most(2.0)))  # fmt: skip


async def bench_million(report: Report, url: str, total: int, workdir: str) -> None:
    """Row 8: ``_million.py``'s steps in fresh namespaces of this server."""
    from sessionstore_postgres._store import _COLS

    async def table_size(store: Any) -> int:
        async def size(c: asyncpg.Connection) -> int:
            return int(await c.fetchval("SELECT pg_total_relation_size($1::regclass)",
                                        store._t_sessions))  # fmt: skip

        return int(await store._pools.get().run(size))

    async def floor(store: Any, _hot: object) -> _million.Floor:
        conn = await asyncpg.connect(**_connect_args(store))
        await conn.execute(f"ANALYZE {store._t_sessions}")  # as autovacuum would by now
        sql = (
            f"SELECT {_COLS} FROM {store._t_sessions} WHERE ns = $1 AND processor_id = $2 "
            "ORDER BY updated_at DESC, id DESC LIMIT 100"
        )
        args = (store.namespace, _million.HOT)

        async def ids() -> list[str]:
            return [r[0] for r in await conn.fetch(sql, *args)]

        async def raw_page() -> object:
            return [_decode_row(r) for r in await conn.fetch(sql, *args)]

        return _million.Floor("raw indexed SELECT + decode", ids, raw_page, conn.close)

    run = new_id()[-8:].lower()
    await _million.run_million(
        report,
        _million.MillionSteps(
            label="postgres",
            open_source=lambda clock: open_store(url, namespace=f"million-{run}", clock=clock),
            open_target=lambda: open_store(url, namespace=f"million-restored-{run}"),
            floor=floor,
            footprint=_million.Footprint(
                "sessions table with TOAST and every index (pg_total_relation_size)", table_size
            ),
            workdir=workdir,
            total=total,
        ),
    )


async def bench_writers(report: Report, url: str, sizes: Sizes) -> None:
    from sessionstore_postgres import PostgresStore

    store = open_store(url, namespace=f"bench-w-{RUN}", max_size=8, min_size=8,
                       clock=NewMillisecondClock())  # fmt: skip
    assert isinstance(store, PostgresStore)
    async with store:
        doc = {"step": 0, "pad": "z" * 500}
        mine = [(await store.create_session(data=doc)).id for _ in range(8)]
        raw_ids = [(await store.create_session(data=doc)).id for _ in range(8)]
        conns = [await asyncpg.connect(**_connect_args(store)) for _ in range(8)]
        versions = dict.fromkeys(raw_ids, 1)
        step = itertools.count()
        base = await store.get_sessions(raw_ids)

        async def driver_writer(sid: str) -> None:
            for _ in range(sizes.writes_per_writer):
                await store.update_session(sid, merge_data={"step": next(step)})

        async def raw_writer(conn: asyncpg.Connection, sid: str) -> None:
            s = base[sid]
            for _ in range(sizes.writes_per_writer):
                v = versions[sid]
                new = Session(s.id, s.processor_id, s.status, {}, {}, s.tags, s.created_at,
                              store.clock.now(), None, v + 1)  # fmt: skip
                data = orjson.dumps({**doc, "step": next(step)})
                mut = Mutation(sid, v, new, data, b"{}")
                await conn.fetchval(store._sql_write, *store._args(mut, None, "raw"))
                versions[sid] = v + 1

        try:
            op, floor = await compare(
                lambda: asyncio.gather(*(driver_writer(sid) for sid in mine)),
                lambda: asyncio.gather(*(raw_writer(c, sid) for c, sid in zip(conns, raw_ids,
                                                                             strict=True))),
                number=1, floor_number=1, repeat=sizes.repeat,
            )  # fmt: skip
        finally:
            for c in conns:
                await c.close()
        report.add(Row(f"8 writers x {sizes.writes_per_writer} updates, distinct sessions",
                       op, "8 raw connections, same statement", floor,
                       Target.at_most(round(1 / 0.7, 2)),
                       note="throughput >= 0.7x raw is time <= 1.43x raw"))  # fmt: skip


async def run(args: argparse.Namespace) -> Report:
    sizes = QUICK if args.quick else FULL
    report = Report("sessionstore postgres benchmark" + (" (quick)" if args.quick else ""))
    million = _million.million_size(args)
    report.meta.update({"quick": args.quick, "million": million, "sizes": asdict(sizes)})
    report.info["client"] = f"asyncpg {asyncpg.__version__}"
    print(report.title, flush=True)
    if args.url:
        await _all(report, args.url, sizes, million, args.million_only)
    else:
        with private_server() as url:
            await _all(report, url, sizes, million, args.million_only)
    return report


async def _all(
    report: Report, url: str, sizes: Sizes, million: int | None = None, only: bool = False
) -> None:
    if not only:
        await bench_single_ops(report, url, sizes)
        await bench_query(report, url, sizes)
        await bench_writers(report, url, sizes)
    if million:
        with tempfile.TemporaryDirectory(prefix="sessionstore-bench-million-") as workdir:
            await bench_million(report, url, million, workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_postgres")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--url", help="an existing server (default: a private one)")
    _million.add_arguments(parser, "minutes")
    args = parser.parse_args(argv)
    return asyncio.run(run(args)).publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
