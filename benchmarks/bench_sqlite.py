"""Benchmark of the SQLite driver (``sqlite://``) against raw ``sqlite3`` floors, same run.

Run::

    .venv/bin/python -m benchmarks.bench_sqlite            # full sizes
    .venv/bin/python -m benchmarks.bench_sqlite --quick    # fewer repetitions, ~20 s
    .venv/bin/python -m benchmarks.bench_sqlite --json out.json --dir /var/tmp
    .venv/bin/python -m benchmarks.bench_sqlite --million  # + row 4 at 1,000,000 sessions

The database lives in a fresh directory under ``--dir`` (default: the system temp dir),
which should be on the disk you care about: a tmpfs makes every fsync free.

Every floor is the stdlib ``sqlite3`` module issuing the statements the driver issues for
the operation, with the same durability (``synchronous=FULL``, WAL), on the database the
driver uses (10,000 sessions, a 10,000-event log), in one ``asyncio.to_thread`` hop per
call, as the driver makes one worker-thread hop. Targets (ratios, never absolute times):

1. ``create_session`` + ``get_session`` of a 2 KB session <= 1.5x the raw
   ``BEGIN IMMEDIATE; INSERT session; INSERT tags; COMMIT`` + ``SELECT`` and decode;
2. durable ``append_events`` (one event) <= 1.5x a raw ``INSERT`` of the event +
   ``COMMIT`` (the driver also reads the session and updates its head in the same
   transaction), and <= 1.5x the raw transaction of the driver's own statements
   (``SELECT``, ``INSERT``, ``UPDATE`` of the head, ``COMMIT``);
3. ``get_events(last=20)`` on a session of 10,000 events <= 1.5x the raw indexed
   ``SELECT ... ORDER BY seq DESC LIMIT 20`` and decode;
4. the 100 newest (``updated_at`` desc) of a processor's 1,000 sessions among 10,000
   <= 2x the raw indexed ``SELECT ... LIMIT 100`` and decode;
5. the one-event append on a session with 10,000 events <= 1.3x on one with 10 events;
6. the event log (issue 17, ``_event_log.py``), durable: ``pop_events(n=1)``,
   ``get_event(key=)``, ``get_events(types=, last=20)``, a backwards page and a keyed
   append on a session of 10,000 events <= 1.3x the same on one of 10 events;
7. (``--million`` only, minutes) the steps of ``_million.py`` at 1,000,000 sessions on a
   fresh database: load by ``commit()`` in durable batches of 2,000 creates, the
   database's size (+ WAL, checkpointed), row 4 for the processor with 1,000 of them
   against the same raw ``SELECT``, counts, backup, and restore into a second database.

The script exits 0 when it ran (a missed target is a finding, not a crash); it exits
non-zero only if the native query and the reference evaluator disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sessionstore_sqlite import SqliteStore

from sessionstore import BaseSessionStore, QueryOptions, SessionFilter
from sessionstore.codec import new_id

from . import _million
from ._event_log import event_log_rows, keyed_append_row
from ._harness import Report, Row, Target, append_flatness_row, compare
from .bench_memory import EVENT, NewMillisecondClock, session_doc


@dataclass(frozen=True)
class Sizes:
    """How big and how long each part runs."""

    repeat: int
    create_number: int
    append_number: int
    big_log: int
    small_log: int
    sessions: int
    processors: int


FULL = Sizes(
    repeat=9,
    create_number=40,
    append_number=60,
    big_log=10_000,
    small_log=10,
    sessions=10_000,
    processors=10,
)
QUICK = Sizes(
    repeat=5,
    create_number=20,
    append_number=30,
    big_log=10_000,
    small_log=10,
    sessions=10_000,
    processors=10,
)

_COLS = (
    "sk, id, processor_id, status, session_group, created_ms, updated_ms, expires_ms, "
    "version, event_count, last_seq, tags, data, metadata"
)


class Raw:
    """The floors: plain ``sqlite3`` on a database the driver created (same schema)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA synchronous = FULL")

    def create(self, sid: str, doc: bytes, ms: int) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        sk = conn.execute(
            "INSERT INTO sessions(namespace, id, processor_id, status, session_group, "
            "created_ms, updated_ms, expires_ms, version, event_count, last_seq, tags, data, "
            "metadata) VALUES ('', ?, 'agent-7', 'active', NULL, ?, ?, NULL, 1, 0, 0, ?, ?, ?)",
            (sid, ms, ms, b'["prod"]', doc, b"{}"),
        ).lastrowid
        conn.execute(
            "INSERT INTO tags(sk, tag, namespace, created_ms, id) VALUES (?, 'prod', '', ?, ?)",
            (sk, ms, sid),
        )
        conn.execute("COMMIT")

    def get(self, sid: str) -> Any:
        row = self.conn.execute(
            f"SELECT {_COLS} FROM sessions WHERE namespace = '' AND id = ?", (sid,)
        ).fetchone()
        return orjson.loads(row[12]), orjson.loads(row[13]), orjson.loads(row[11])

    def append(self, sk: int, seq: int, event: bytes, ms: int) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events(sk, seq, type, at_ms, data) VALUES (?, ?, 'tool_call', ?, ?)",
            (sk, seq, ms, event),
        )
        conn.execute("COMMIT")

    def append_head(self, sk: int, seq: int, event: bytes, ms: int) -> None:
        """The statements of the driver's append: read the session, insert the event,
        update the head's four changed columns, commit."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"SELECT {_COLS} FROM sessions WHERE namespace = '' AND id = 'events'"
        ).fetchone()
        conn.execute(
            "INSERT INTO events(sk, seq, type, at_ms, data) VALUES (?, ?, 'tool_call', ?, ?)",
            (sk, seq, ms, event),
        )
        conn.execute(
            "UPDATE sessions SET updated_ms = ?, version = version + 1, "
            "event_count = event_count + 1, last_seq = ? WHERE sk = ?",
            (ms + seq, seq, sk),
        )
        conn.execute("COMMIT")

    def last_events(self, sk: int, n: int) -> list[Any]:
        rows = self.conn.execute(
            "SELECT seq, type, at_ms, data FROM events WHERE sk = ? AND seq > 0 "
            "ORDER BY seq DESC LIMIT ?",
            (sk, n),
        ).fetchall()
        rows.reverse()
        return [(seq, etype, at, orjson.loads(data)) for seq, etype, at, data in rows]

    def newest(self, processor: str, n: int) -> list[Any]:
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM sessions WHERE namespace = '' AND processor_id = ? "
            "ORDER BY updated_ms DESC, id DESC LIMIT ?",
            (processor, n),
        ).fetchall()
        return [(orjson.loads(r[12]), orjson.loads(r[13]), orjson.loads(r[11])) for r in rows]

    def newest_ids(self, processor: str, n: int) -> list[Any]:
        """The page's rows undecoded (``[3]`` is the id), to check the driver's page."""
        return self.conn.execute(
            "SELECT updated_ms, sk, processor_id, id FROM sessions WHERE namespace = '' "
            "AND processor_id = ? ORDER BY updated_ms DESC, id DESC LIMIT ?",
            (processor, n),
        ).fetchall()


async def bench(report: Report, sizes: Sizes, base: str) -> None:
    doc = session_doc()
    doc_bytes = orjson.dumps(doc)
    report.info["document"] = f"{len(doc_bytes)} bytes of JSON data"
    floor_path = os.path.join(base, "bench.db")
    async with SqliteStore(path=floor_path) as floor_store:  # the schema, then raw access
        s = await floor_store.create_session(id="events", processor_id="agent-7")
        for start in range(0, sizes.big_log, 1000):
            await floor_store.append_events(s.id, [EVENT] * min(1000, sizes.big_log - start))
        await _load(floor_store, sizes)
    raw = Raw(floor_path)
    sk = raw.conn.execute("SELECT sk FROM sessions WHERE id = 'events'").fetchone()[0]
    event_bytes = orjson.dumps(EVENT["data"])
    seqs = iter(range(sizes.big_log + 1, 10**9))
    ms = 1_700_000_000_000

    # the driver and the floors share the database (and so its WAL, warm and full-size as
    # in long use: a fresh WAL that still grows makes each fsync flush its size too)
    async with SqliteStore(path=floor_path, clock=NewMillisecondClock()) as store:

        async def create_get() -> None:
            made = await store.create_session(processor_id="agent-7", data=doc, tags={"prod"})
            await store.get_session(made.id)

        async def raw_create_get() -> None:
            sid = new_id()
            await asyncio.to_thread(raw.create, sid, doc_bytes, ms)
            await asyncio.to_thread(raw.get, sid)

        op, floor = await compare(
            create_get, raw_create_get, number=sizes.create_number,
            floor_number=sizes.create_number, repeat=sizes.repeat,
        )  # fmt: skip
        report.add(
            Row(
                "create_session + get_session (2 KB)", op,
                "BEGIN IMMEDIATE+INSERT session+INSERT tag+COMMIT, SELECT+decode; 2 hops",
                floor, Target.at_most(1.5),
            )
        )  # fmt: skip

        small = (await store.create_session(processor_id="agent-7", data={"n": 1})).id
        await store.append_events(small, [EVENT] * sizes.small_log)
        op, floor = await compare(
            lambda: store.append_events(small, [EVENT]),
            lambda: asyncio.to_thread(raw.append, sk, next(seqs), event_bytes, ms),
            number=sizes.append_number, floor_number=sizes.append_number, repeat=sizes.repeat,
        )  # fmt: skip
        report.add(
            Row(
                "durable append_events (1 event)", op,
                "BEGIN IMMEDIATE+INSERT event+COMMIT, 1 hop", floor, Target.at_most(1.5),
                note="the driver also reads the session and updates its head (version, "
                "counters) in the same transaction",
            )
        )  # fmt: skip

        op, floor = await compare(
            lambda: store.append_events(small, [EVENT]),
            lambda: asyncio.to_thread(raw.append_head, sk, next(seqs), event_bytes, ms),
            number=sizes.append_number, floor_number=sizes.append_number, repeat=sizes.repeat,
        )  # fmt: skip
        report.add(
            Row(
                "durable append_events (1 event), same statements", op,
                "BEGIN IMMEDIATE+SELECT+INSERT event+UPDATE head+COMMIT, 1 hop", floor,
                Target.at_most(1.5),
                note="the floor issues the driver's own statements: what is left is the "
                "driver's CPU (validation, planning, decoding, the hop)",
            )
        )  # fmt: skip

        big = (await store.create_session(processor_id="agent-7", data={"n": 2})).id
        for start in range(0, sizes.big_log, 1000):
            await store.append_events(big, [EVENT] * min(1000, sizes.big_log - start))
        await append_flatness_row(
            report, store, big, small, EVENT, name=f"append_events, {sizes.big_log:,} events",
            big_log=sizes.big_log, small_log=sizes.small_log, number=sizes.append_number,
            repeat=sizes.repeat,
        )  # fmt: skip

        await store.trim_events(big, keep_last=sizes.big_log)
        op, floor = await compare(
            lambda: store.get_events(big, last=20),
            lambda: asyncio.to_thread(raw.last_events, sk, 20),
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                f"get_events(last=20) of {sizes.big_log:,}", op,
                "SELECT .. ORDER BY seq DESC LIMIT 20 + decode, 1 hop", floor,
                Target.at_most(1.5), note="the driver also checks the session exists and is live",
            )
        )  # fmt: skip
        await event_log_rows(
            report, store, big_log=sizes.big_log, small_log=sizes.small_log,
            number=sizes.append_number, repeat=sizes.repeat,
        )  # fmt: skip
        await keyed_append_row(
            report, store, big_log=sizes.big_log, small_log=sizes.small_log,
            number=sizes.append_number, repeat=sizes.repeat,
        )  # fmt: skip

    async with SqliteStore(path=floor_path) as store:  # the same database, through the driver
        await _page_row(report, store, raw, "agent-3", sizes.sessions, sizes)
    raw.conn.close()


async def _page_row(
    report: Report, store: SqliteStore, raw: Raw, processor: str, total: int, sizes: Sizes
) -> None:
    """Row 4: the 100 newest of ``processor``'s sessions, checked against the reference
    evaluator first, then timed against the raw indexed ``SELECT``."""
    flt = SessionFilter(processor_id=processor)
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
    page = await store.list_sessions(flt, opts)
    if total <= 10_000:  # the reference evaluator scans every session
        reference = await BaseSessionStore.list_sessions(store, flt, opts)
        if page.ids != reference.ids or page.next_cursor != reference.next_cursor:
            raise SystemExit("BUG: the native query and the reference evaluator disagree")
    raw_ids = [s[3] for s in await asyncio.to_thread(raw.newest_ids, processor, 100)]
    if page.ids != raw_ids:
        raise SystemExit("BUG: the driver's page and the raw indexed SELECT disagree")
    matching = await store.count_sessions(flt)
    op, floor = await compare(
        lambda: store.list_sessions(flt, opts),
        lambda: asyncio.to_thread(raw.newest, processor, 100),
        repeat=sizes.repeat,
    )
    report.add(
        Row(
            f"100 newest of a processor's {matching:,} among {total:,}", op,
            "SELECT .. WHERE processor_id ORDER BY updated_ms DESC LIMIT 100 + decode, 1 hop",
            floor, Target.at_most(2),
            note=f"absolute {op.median * 1e3:.3f} ms; the driver also excludes expired "
            "sessions and builds Session objects and the next cursor",
        )
    )  # fmt: skip


async def _load(store: SqliteStore, sizes: Sizes) -> None:
    """``sizes.sessions`` sessions, an equal share per processor, with a 300-byte doc."""
    from sessionstore import CreateOp, NewSession

    for start in range(0, sizes.sessions, 500):
        await store.commit([
            CreateOp(NewSession(
                processor_id=f"agent-{n % sizes.processors}", tags=[f"tag-{n % 7}"],
                data={"summary": "y" * 300, "n": n}, metadata={"user": f"u-{n % 97}"},
            ))
            for n in range(start, min(start + 500, sizes.sessions))
        ])  # fmt: skip


async def bench_million(report: Report, base: str, total: int) -> None:
    """Row 7: ``_million.py``'s steps on fresh databases under ``base``."""
    source, target = os.path.join(base, "million.db"), os.path.join(base, "million-restored.db")

    async def on_disk(_store: object) -> int:
        def checkpointed() -> int:
            if os.path.exists(source):
                with sqlite3.connect(source) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return _size_or_zero(source) + _size_or_zero(source + "-wal")

        return await asyncio.to_thread(checkpointed)

    async def floor(_store: object, _hot: object) -> _million.Floor:
        raw = Raw(source)

        async def ids() -> list[str]:
            return [r[3] for r in await asyncio.to_thread(raw.newest_ids, _million.HOT, 100)]

        async def close() -> None:
            raw.conn.close()

        return _million.Floor(
            "SELECT .. WHERE processor_id ORDER BY updated_ms DESC LIMIT 100 + decode, 1 hop",
            ids, lambda: asyncio.to_thread(raw.newest, _million.HOT, 100), close,
        )  # fmt: skip

    await _million.run_million(
        report,
        _million.MillionSteps(
            label="sqlite",
            open_source=lambda clock: SqliteStore(path=source, clock=clock),
            open_target=lambda: SqliteStore(path=target),
            floor=floor,
            footprint=_million.Footprint("database file + WAL (checkpointed)", on_disk),
            workdir=base,
            total=total,
            batch=2_000,
        ),
    )


def _size_or_zero(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


async def run(
    quick: bool, directory: str | None, million: int | None = None, only: bool = False
) -> Report:
    sizes = QUICK if quick else FULL
    report = Report("sessionstore sqlite:// benchmark" + (" (quick)" if quick else ""))
    report.meta.update({"quick": quick, "million": million, "sizes": asdict(sizes),
                        "sqlite": sqlite3.sqlite_version})  # fmt: skip
    base = tempfile.mkdtemp(prefix="sessionstore-bench-sqlite-", dir=directory)
    report.info["directory"] = base
    print(report.title, flush=True)
    try:
        if not only:
            await bench(report, sizes, base)
        if million:
            await bench_million(report, base, million)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sqlite")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--dir", help="where to create the databases (default: temp dir)")
    _million.add_arguments(parser, "minutes, ~2 GB of disk")
    args = parser.parse_args(argv)
    million = _million.million_size(args)
    return asyncio.run(run(args.quick, args.dir, million, args.million_only)).publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
