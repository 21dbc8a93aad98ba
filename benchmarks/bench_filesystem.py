"""Benchmark of the file driver (``file://``) against raw floors measured in the same run.

Run::

    .venv/bin/python -m benchmarks.bench_filesystem            # full sizes (100k sessions)
    .venv/bin/python -m benchmarks.bench_filesystem --quick    # small sizes, ~20 s
    .venv/bin/python -m benchmarks.bench_filesystem --json out.json --dir /var/tmp
    .venv/bin/python -m benchmarks.bench_filesystem --million --dir /var/tmp  # + 1M: long
    .venv/bin/python -m benchmarks.bench_filesystem --part create --dir /var/tmp  # row 6 only

The store lives in a fresh directory under ``--dir`` (default: the system temp dir), which
should be on the disk you care about: a tmpfs makes every fsync free.

Targets (ratios to floors, never absolute times: docs/performance.md, "Method"). Every
floor does its I/O in one ``asyncio.to_thread`` hop, as the driver does. The rows are
numbered as the benchmark prints them (docs/performance.md uses the same numbers):

1. durable save (``update_session(data=<2 KB>)``) <= 1.5x the raw floor: temp file,
   write, fsync, ``os.replace``, fsync(directory);
2. ``get_session`` <= 2x raw open + read + ``orjson.loads`` of the same document;
3. durable ``append_events`` (one small event) <= 1.5x raw open(O_APPEND) + write +
   fdatasync + close of one event line;
4. the same append on a session with 10,000 events <= 1.3x on one with 10 events;
5. aggregate durable saves of 8 concurrent tasks (8 sessions) >= 1.2x the throughput of
   one task doing the same saves one after another;
6. durable ``create_session`` + ``get_session`` of a 2 KB session <= 1.5x a raw floor of
   one new durable file read back: temp file, write, fsync, rename into place,
   fsync(directory), then open + read + ``orjson.loads`` (issue 21 item 2), each side in
   two hops as the store's; a durable SQLite insert + commit + select (WAL,
   ``synchronous=FULL``) of the same document is reported beside it;
7-10. the four event-log rows shared with the other drivers (``_event_log``):
   ``pop_events(n=1)``, ``get_event(key=)``, ``get_events(types=, last=20)`` and a
   backwards page on a session with 10,000 events <= 1.3x the same on a short one
   (issue 17);
11. ``get_events(last=20)`` <= 1.5x one worker-thread hop that reads the log's last 8 KiB
    and decodes those 20 lines (issue 21; the liveness check is part of the driver's hop);
12. the first page (100) of a tag + ``created_at`` range query over 100,000 sessions >= 50x
    faster than reading every session file (``BaseSessionStore.list_sessions``: every
    session read through ``_iter_sessions`` and filtered by ``sessionstore.query.evaluate``);
13. (issue 21) the 100 newest (``updated_at`` desc) of one processor's 1,000 sessions
    among 10,000 (``_million``'s sessions, loaded with ``durability="none"``, the store
    reopened durable) <= 2x an on-disk SQLite table of the same sessions with a
    ``(processor, updated)`` index, the same 100 rows selected and each row's document
    decoded with ``orjson``, in one hop; beside it (no target: ``meta["small_pages"]``)
    the 1 and the 10 newest against the same floor with that ``LIMIT``;
14. (``--million`` only; the first row with ``--million-only``) the steps of
    ``_million.py`` at 1,000,000 sessions on durable stores: load by ``commit()`` of 1,000
    creates, the bytes allocated on disk under the root (and the index's share), the
    listing against an on-disk SQLite floor of every session read in one hop, counts,
    backup and restore.

The plan sweep (issue 21, ``--part sweep``; 2,000 sessions with ``--quick``): ``bench_memory``'s
10,000 sessions and filters (a tag on 0.01 % ... 100 %, and a processor + that tag) on a
store loaded with ``durability="none"`` and reopened durable, ``updated_at`` desc, 100 a
page; the store's ``list_sessions`` <= 3x the best of every other plan SQLite can run the
driver's own SQL by (each set condition written to drive or to check, times ``INDEXED BY``
each usable index or ``NOT INDEXED``), each forced plan in the store's hop with the rows
decoded by the store's decoder; printed per filter, in ``meta["plan_sweep"]``.

The script exits 0 when it ran (a missed target is a finding, not a crash); it exits
non-zero only if the indexed query and the full scan disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import re
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, Final

import orjson
from sessionstore_filesystem import FileStore

from sessionstore import CreateOp, ManualClock, NewSession, QueryOptions, SessionFilter

from . import _million, bench_memory
from ._event_log import event_log_rows
from ._harness import (
    Report,
    Row,
    Target,
    append_flatness_row,
    compare,
    format_seconds,
    indexed_query_row,
    measure,
)
from .bench_memory import EVENT, NewMillisecondClock, load_sessions, session_doc


@dataclass(frozen=True)
class Sizes:
    """How big and how long each part runs."""

    repeat: int
    save_number: int
    append_number: int
    big_log: int
    small_log: int
    sessions: int
    query_repeat: int
    concurrent_saves: int
    listing: int
    sweep: int
    sweep_rounds: int
    sweep_batch: float


FULL = Sizes(
    repeat=9,
    save_number=40,
    append_number=60,
    big_log=10_000,
    small_log=10,
    sessions=100_000,
    query_repeat=3,
    concurrent_saves=25,
    listing=10_000,
    sweep=10_000,
    sweep_rounds=9,
    sweep_batch=0.005,
)
QUICK = Sizes(
    repeat=5,
    save_number=20,
    append_number=30,
    big_log=10_000,
    small_log=10,
    sessions=5_000,
    query_repeat=3,
    concurrent_saves=10,
    listing=2_000,
    sweep=2_000,
    sweep_rounds=3,
    sweep_batch=0.001,
)


# --------------------------------------------------------------------------- raw floors


def raw_save(directory: str, name: str, data: bytes, *, new: bool = False) -> None:
    """The durable-replace floor: temp, write, fsync, replace, fsync(dir). ``new``: the
    create floor (the temp file must not exist; the name is new)."""
    tmp = os.path.join(directory, f".tmp.{name}")
    mode = os.O_EXCL if new else os.O_TRUNC
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, name))
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def raw_get(path: str) -> Any:
    """The read floor: open, read, close, decode."""
    fd = os.open(path, os.O_RDONLY)
    try:
        raw = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    return orjson.loads(raw)


def raw_append(path: str, line: bytes) -> None:
    """The append floor: open(O_APPEND), write one line, fdatasync, close."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fdatasync(fd)
    finally:
        os.close(fd)


class SqliteCreate:
    """The durable SQLite row beside the create floor: insert + commit (WAL, FULL), then
    select + ``orjson.loads``, each on one worker-thread hop."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE s (id TEXT PRIMARY KEY, doc BLOB NOT NULL)")

    def insert(self, sid: str, data: bytes) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO s VALUES (?, ?)", (sid, data))
        self.conn.execute("COMMIT")

    def select(self, sid: str) -> Any:
        row = self.conn.execute("SELECT doc FROM s WHERE id = ?", (sid,)).fetchone()
        return orjson.loads(row[0])


async def bench_create(report: Report, sizes: Sizes, base: str) -> None:
    """Row 6: create + get of a new 2 KB session against one new durable file."""
    doc = session_doc()
    floor_dir = os.path.join(base, "create-floor")
    os.makedirs(floor_dir)
    sql = SqliteCreate(os.path.join(base, "create.sqlite3"))
    names = iter(range(10**9))
    async with FileStore(root=os.path.join(base, "create"), clock=NewMillisecondClock()) as store:
        # the steady state: every shard directory and lock stripe exists (4,096 random
        # ids leave ~2% of the 1,024 stripes unmade; batches share their syncs)
        for _ in range(41):
            await store.commit([CreateOp(NewSession(processor_id="warm")) for _ in range(100)])
        doc_bytes = orjson.dumps(
            {"v": 1, "id": "01J9", "processor_id": "agent-7", "data": doc, "x": "y" * 300}
        )
        report.info["create document"] = f"{len(doc_bytes)} bytes of JSON (floor)"

        async def create_get() -> None:
            s = await store.create_session(processor_id="agent-7", data=doc, tags={"prod"})
            await store.get_session(s.id)

        async def floor_create_get() -> None:
            name = f"{next(names)}.json"
            await asyncio.to_thread(raw_save, floor_dir, name, doc_bytes, new=True)
            await asyncio.to_thread(raw_get, os.path.join(floor_dir, name))

        async def sqlite_create_get() -> None:
            sid = f"s{next(names)}"
            await asyncio.to_thread(sql.insert, sid, doc_bytes)
            await asyncio.to_thread(sql.select, sid)

        op, floor = await compare(
            create_get,
            floor_create_get,
            number=sizes.save_number,
            floor_number=sizes.save_number,
            repeat=sizes.repeat,
        )
        lite, floor2 = await compare(
            sqlite_create_get,
            floor_create_get,
            number=sizes.save_number,
            floor_number=sizes.save_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                "durable create_session + get_session (2 KB)",
                op,
                "new file+fsync+rename+fsync(dir), read+orjson.loads; 2 hops",
                floor,
                Target.at_most(1.5),
                note=(
                    f"beside it: durable SQLite insert+commit+select (WAL, FULL), 2 hops: "
                    f"{lite.median * 1e6:.0f} us, {lite.median / floor2.median:.2f}x the "
                    f"floor ({floor2.median * 1e6:.0f} us) in its own interleaved run"
                ),
            )
        )
    sql.conn.close()


# --------------------------------------------------------------------------- 1-5


async def bench_single_ops(report: Report, sizes: Sizes, base: str) -> None:
    doc = session_doc()
    floor_dir = os.path.join(base, "floor")
    os.makedirs(floor_dir)
    async with FileStore(root=os.path.join(base, "ops"), clock=NewMillisecondClock()) as store:
        s = await store.create_session(processor_id="agent-7", data=doc, tags={"prod"})
        sid = s.id
        doc_bytes = orjson.dumps(doc)
        report.info["document"] = f"{len(doc_bytes)} bytes of JSON data"
        variants = [dict(doc, step=n) for n in range(2)]
        flip = iter(range(10**9))

        op, floor = await compare(
            lambda: store.update_session(sid, data=variants[next(flip) % 2]),
            lambda: asyncio.to_thread(raw_save, floor_dir, "doc.json", doc_bytes),
            number=sizes.save_number,
            floor_number=sizes.save_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                "durable save (update_session data=2 KB)",
                op,
                "temp+write+fsync+replace+fsync(dir), 1 hop",
                floor,
                Target.at_most(1.5),
            )
        )

        raw_save(floor_dir, "get.json", orjson.dumps({"v": 1, "data": doc, "x": "y" * 300}))
        get_path = os.path.join(floor_dir, "get.json")
        op, floor = await compare(
            lambda: store.get_session(sid),
            lambda: asyncio.to_thread(raw_get, get_path),
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                "get_session (~2 KB)", op, "open+read+orjson.loads, 1 hop", floor, Target.at_most(2)
            )
        )

        line = orjson.dumps({"v": 1, "seq": 1, **EVENT, "sha256": "0" * 64}) + b"\n"
        log_path = os.path.join(floor_dir, "events.jsonl")
        small = (await store.create_session(processor_id="agent-7", data={"n": 1})).id
        await store.append_events(small, [EVENT] * sizes.small_log)
        op, floor = await compare(
            lambda: store.append_events(small, [EVENT]),
            lambda: asyncio.to_thread(raw_append, log_path, line),
            number=sizes.append_number,
            floor_number=sizes.append_number,
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                "durable append_events (1 event)",
                op,
                "open+append+fdatasync+close, 1 hop",
                floor,
                Target.at_most(1.5),
            )
        )

        big = (await store.create_session(processor_id="agent-7", data={"n": 2})).id
        for start in range(0, sizes.big_log, 1000):
            await store.append_events(big, [EVENT] * min(1000, sizes.big_log - start))
        await append_flatness_row(
            report,
            store,
            big,
            small,
            EVENT,
            name=f"append_events, {sizes.big_log:,} events",
            big_log=sizes.big_log,
            small_log=sizes.small_log,
            number=sizes.append_number,
            repeat=sizes.repeat,
        )

        writers = [(await store.create_session(processor_id="w", data=doc)).id for _ in range(8)]
        n = sizes.concurrent_saves

        async def concurrent() -> None:
            async def one(w: str) -> None:
                for i in range(n):
                    await store.update_session(w, data=variants[i % 2])

            await asyncio.gather(*(one(w) for w in writers))

        async def sequential() -> None:
            for w in writers:
                for i in range(n):
                    await store.update_session(w, data=variants[i % 2])

        op, floor = await compare(
            concurrent, sequential, number=1, floor_number=1, repeat=sizes.repeat
        )
        report.add(
            Row(
                "8 concurrent durable savers (throughput)",
                op,
                "the same saves by 1 task",
                floor,
                Target.faster_by(1.2),
                note=f"8 sessions x {n} saves of 2 KB each; ratio = sequential / concurrent time",
            )
        )


# --------------------------------------------------------------------------- 7-11: event log


def raw_last_lines(path: str, n: int) -> list[Any]:
    """The last-``n``-events floor: open, read the log's last 8 KiB, split, decode ``n``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunk = os.pread(fd, 8192, max(0, size - 8192))
    finally:
        os.close(fd)
    return [orjson.loads(line) for line in chunk.split(b"\n")[-n - 1 : -1]]


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _event(i: int) -> dict[str, Any]:
    return {"type": "message", "key": f"k{i}", "data": {"i": i, "text": "x" * 60}}


async def bench_event_log(report: Report, sizes: Sizes, base: str) -> None:
    """Issue 17's flatness rows (shared with the other drivers, ``_event_log``; durable
    here) and issue 21's last-20 read against one hop that reads and decodes 20 lines."""
    async with FileStore(root=os.path.join(base, "events"), clock=NewMillisecondClock()) as store:
        await event_log_rows(
            report,
            store,
            big_log=sizes.big_log,
            small_log=sizes.small_log,
            number=sizes.append_number,
            repeat=sizes.repeat,
        )
        big = (await store.create_session(processor_id="agent-7")).id
        for start in range(0, sizes.big_log, 1000):
            chunk = [_event(i) for i in range(start, min(sizes.big_log, start + 1000))]
            await store.append_events(big, chunk)
        line = orjson.dumps({"v": 2, "seq": 1, **_event(1), "at": "2030-01-01T00:00:00Z"})
        sealed = line[:-1] + b',"sha256":"' + b"0" * 64 + b'"}\n'
        floor_path = os.path.join(base, "events-floor.jsonl")
        await asyncio.to_thread(_write_file, floor_path, sealed * 200)
        op, floor = await compare(
            lambda: store.get_events(big, last=20),
            lambda: asyncio.to_thread(raw_last_lines, floor_path, 20),
            repeat=sizes.repeat,
        )
        report.add(
            Row(
                f"get_events(last=20), {sizes.big_log:,} events",
                op,
                "1 hop: open+pread 8 KiB+orjson.loads of 20 lines",
                floor,
                Target.at_most(1.5),
                note="issue 21: the liveness check is in the same hop",
            )
        )


# --------------------------------------------------------------------------- 12-13: queries


async def bench_query(report: Report, sizes: Sizes, base: str) -> None:
    t0 = ManualClock().now()
    clock = ManualClock(t0)
    root = os.path.join(base, "query")
    async with FileStore(root=root, clock=clock, durability="none") as store:
        load = bench_memory.Sizes(1, 1, 1, 1, sizes.sessions, 100, 1)
        seconds = await load_sessions(store, clock, load)
        report.info["load"] = (
            f"{sizes.sessions:,} sessions via commit() in batches of 100 "
            f"(durability=none): {seconds:.1f} s ({sizes.sessions / seconds:,.0f} sessions/s)"
        )
        report.meta["load_seconds"] = seconds
    async with FileStore(root=root, clock=clock) as store:  # reopened: a cold page
        span = clock.now() - t0
        flt = SessionFilter(
            tags_all={"tag-07"}, created_after=t0 + span * 0.25, created_before=t0 + span * 0.75
        )
        opts = QueryOptions(sort_by="created_at", order="desc", limit=100)
        await indexed_query_row(
            report,
            store,
            flt,
            opts,
            name=f"list_sessions tag+range, {sizes.sessions:,}",
            floor_name="read every file + evaluate",
            target=Target.faster_by(50),
            orientation="orientation: <= 20 ms at 100k",
            repeat=sizes.query_repeat,
        )


async def bench_listing(report: Report, sizes: Sizes, base: str) -> None:
    """Row 13: the 100 newest of a processor's 1,000 (issue 21) against SQLite + orjson."""
    root, total = os.path.join(base, "listing"), sizes.listing
    clock = ManualClock()
    async with FileStore(root=root, clock=clock, durability="none") as store:
        await _million.load(store, total, 1_000, clock, "commit")
    async with FileStore(root=root, clock=clock) as store:
        floor = await _million.sqlite_floor(store, os.path.join(base, "listing.db"), hop=True)
        try:
            page = await store.list_sessions(_million.LISTING_FILTER, _million.LISTING_OPTIONS)
            if page.ids != await floor.ids():
                raise SystemExit("BUG: the listing and its floor disagree")
            op, low = await compare(
                lambda: store.list_sessions(_million.LISTING_FILTER, _million.LISTING_OPTIONS),
                floor.call,
                repeat=sizes.repeat,
            )
            small = await _small_pages(store, floor, sizes.repeat, page.ids)
        finally:
            if floor.close is not None:
                await floor.close()
    report.add(
        Row(
            f"100 newest of a processor's 1,000 among {total:,}",
            op,
            floor.name,
            low,
            Target.at_most(2),
            note="issue 21: one indexed query, every session decoded from its index row",
        )
    )
    report.meta["small_pages"] = small
    report.info["listing, small pages"] = ", ".join(
        f"{n} newest {v['ratio']:.2f}x the floor" for n, v in small.items()
    )


async def _small_pages(
    store: FileStore, floor: _million.Floor, repeat: int, newest: list[str]
) -> dict[int, dict[str, float]]:
    """Beside row 13 (issue 21): the 1 and the 10 newest of the same processor against
    the same floor with that ``LIMIT``, where the listing's fixed cost (the hop, the
    plan, the next page's cursor) weighs most; in ``meta["small_pages"]``."""
    assert floor.page is not None
    out: dict[int, dict[str, float]] = {}
    for n in (1, 10):
        opts = replace(_million.LISTING_OPTIONS, limit=n)
        if (await store.list_sessions(_million.LISTING_FILTER, opts)).ids != newest[:n]:
            raise SystemExit("BUG: a small page and its floor disagree")
        op, low = await compare(
            functools.partial(store.list_sessions, _million.LISTING_FILTER, opts),
            floor.page(n),
            repeat=repeat,
        )
        out[n] = {"op_s": op.median, "floor_s": low.median, "ratio": op.median / low.median}
        print(
            f"  (small page) {n} newest of a processor's 1,000: {format_seconds(op.median)} "
            f"vs {format_seconds(low.median)} -> {op.median / low.median:.2f}x",
            flush=True,
        )
    return out


def _index_of(store: FileStore) -> tuple[Any, Callable[[Any], Any], Any]:
    """The store's index (``_index.Index``: its ``select`` and a thread's ``conn``), the
    decoder its listing runs on each row (``_index.session_of``) and its worker threads'
    ``run`` (the hop a listing takes): the plan sweep's one reach into the driver."""
    from sessionstore_filesystem._index import session_of

    return store._engine.index, session_of, store._threads.run


# The two forms the driver writes a set condition in (``_index._where``): one that lets
# SQLite drive the query by it, one that only checks it row by row ({}: the value).
_FORMS: Final = (
    ("processor_id = {}", "+processor_id = {}"),
    (
        "id IN (SELECT id FROM tags WHERE tag = {})",
        "EXISTS (SELECT 1 FROM tags t WHERE t.tag = {} AND t.id = sessions.id)",
    ),
)


def _form_pattern(form: str) -> re.Pattern[str]:
    """``form`` with its value inlined (a quoted literal), as a whole condition."""
    return re.compile(r"(?<![\w+.])" + re.escape(form).replace(r"\{\}", "('[^']*')"))


#: How the forced plans may read ``sessions``: SQLite's choice, each index a listing
#: sorted by ``updated_at`` can use, or none (a scan of the table).
_HINTS: Final = (
    "",
    " INDEXED BY sessions_updated",
    " INDEXED BY sessions_proc_updated",
    " INDEXED BY sqlite_autoindex_sessions_1",
    " NOT INDEXED",
)


def _forced_sql(conn: sqlite3.Connection, sql: str) -> dict[str, str]:
    """Every plan SQLite can run ``sql`` (the driver's listing, parameters inlined) by:
    each set condition written to drive or to check, times each of ``_HINTS``; one SQL
    per distinct query plan, keyed by that plan (EXPLAIN QUERY PLAN, one line)."""
    slots: list[tuple[str, str, str]] = []  # (text in sql, driving form, checking form)
    for forms in _FORMS:
        for form in forms:
            for m in _form_pattern(form).finditer(sql):
                slots.append((m[0], forms[0].format(m[1]), forms[1].format(m[1])))
    plans: dict[str, str] = {}
    for choice in itertools.product((0, 1), repeat=len(slots)):
        text = sql
        for (found, drives, checks), pick in zip(slots, choice, strict=True):
            text = text.replace(found, checks if pick else drives, 1)
        for hint in _HINTS:
            forced = text.replace("FROM sessions WHERE", f"FROM sessions{hint} WHERE", 1)
            try:
                plan = _plan_of(conn, forced)
            except sqlite3.OperationalError:  # "no query solution": the index cannot serve
                continue
            plans.setdefault(plan, forced)
    return plans


def _plan_of(conn: Any, sql: str) -> str:
    """``sql``'s query plan on one line (``conn``: a connection, or the ``Index``)."""
    if not isinstance(conn, sqlite3.Connection):
        conn = conn.conn()
    return "; ".join(step[-1] for step in conn.execute("EXPLAIN QUERY PLAN " + sql))


async def bench_sweep(report: Report, sizes: Sizes, base: str) -> None:
    """The plan sweep (issue 21; ``bench_memory``'s sessions and filters): for each
    filter, the store's ``list_sessions`` (the driver's SQL, the plan SQLite picks for it)
    against every other plan forced on that SQL on the same index database, each forced
    plan in one hop that decodes its 100 rows with the driver's decoder as the store's
    listing does (the store's side also pays its choice: the counts that pick the driving
    condition)."""
    root, total = os.path.join(base, "sweep"), sizes.sweep
    clock = ManualClock()
    started = time.perf_counter()
    async with FileStore(root=root, clock=clock, durability="none") as store:
        for start in range(0, total, 500):
            await store.commit(bench_memory.sweep_ops(start, start + 500, total))
            clock.advance(timedelta(seconds=1))
    report.info["plan sweep load"] = (
        f"{total:,} sessions via commit() of 500 (durability=none): "
        f"{time.perf_counter() - started:.1f} s"
    )
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
    sweep: dict[str, dict[str, Any]] = {}
    async with FileStore(root=root, clock=clock) as store:  # reopened durable, as row 13
        index, decode, hop = _index_of(store)
        now = clock.now()

        def statements(flt: SessionFilter) -> tuple[str, dict[str, str]]:
            conn = index.conn()
            traced: list[str] = []
            conn.set_trace_callback(traced.append)
            try:
                with index.snapshot():  # as ``list_page``: the SQL the store runs
                    for _ in index.select(flt, now, opts, limit=opts.limit + 8, full=True):
                        break
            finally:
                conn.set_trace_callback(None)
            (sql,) = [s for s in traced if s.startswith("SELECT id, processor_id,")]
            return sql, _forced_sql(conn, sql)

        def page(sql: str) -> list[Any]:
            # as ``list_page``: the first 100 rows decoded, one more read (a next page)
            cur = index.conn().execute(sql)
            items = [decode(row) for row in itertools.islice(cur, opts.limit)]
            cur.fetchone()
            return items

        for label, flt in bench_memory.sweep_filters(total):
            chosen_sql, forced = await hop(statements, flt)
            want = (await store.list_sessions(flt, opts)).ids
            for plan, sql in forced.items():
                got = [s.id for s in await hop(page, sql)]
                if got != want:
                    raise SystemExit(f"BUG: plan {plan!r} disagrees with the store on {label}")
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "chosen": functools.partial(store.list_sessions, flt, opts),
                **{plan: functools.partial(hop, page, sql) for plan, sql in forced.items()},
            }
            # every plan in interleaved rounds (a noisy spell hits them all), medians; the
            # process's CPU time beside the wall clock (on a loaded machine the wall clock
            # also counts the waits for a core)
            once = {
                name: (await measure(call, repeat=1, min_batch_seconds=sizes.sweep_batch)).median
                for name, call in calls.items()
            }
            number = {name: max(1, round(sizes.sweep_batch / t)) for name, t in once.items()}
            samples: dict[str, list[float]] = {name: [] for name in calls}
            cpu_samples: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(sizes.sweep_rounds):
                for name, call in calls.items():
                    wall, used = time.perf_counter(), time.process_time()
                    for _ in range(number[name]):
                        await call()
                    samples[name].append((time.perf_counter() - wall) / number[name])
                    cpu_samples[name].append((time.process_time() - used) / number[name])
            seconds = {name: statistics.median(values) for name, values in samples.items()}
            cpu = {name: statistics.median(values) for name, values in cpu_samples.items()}
            best_plan = min((k for k in seconds if k != "chosen"), key=seconds.__getitem__)
            best = seconds[best_plan]
            ratio = seconds["chosen"] / best
            cpu_ratio = cpu["chosen"] / min(v for k, v in cpu.items() if k != "chosen")
            chosen = await hop(_plan_of, index, chosen_sql)
            sweep[label] = {
                "plan": chosen, "best_plan": best_plan, "ratio_to_best": ratio,
                "seconds": seconds, "plans": len(forced), "cpu_seconds": cpu,
                "cpu_ratio_to_best": cpu_ratio,
            }  # fmt: skip
            print(
                f"  {'PASS' if ratio <= 3 else 'FAIL'}  plan sweep {label}: [{chosen}] "
                f"{format_seconds(seconds['chosen'])}, best of {len(forced)} forced "
                f"[{best_plan}] {format_seconds(best)} -> {ratio:.2f}x (target <= 3x; "
                f"CPU time {cpu_ratio:.2f}x)",
                flush=True,
            )
    report.meta["plan_sweep"] = sweep
    worst = max(v["ratio_to_best"] for v in sweep.values())
    worst_cpu = max(v["cpu_ratio_to_best"] for v in sweep.values())
    report.info["plan sweep"] = (
        f"worst chosen/best ratio {worst:.2f}x over {len(sweep)} filters "
        f"(CPU time {worst_cpu:.2f}x)"
    )


async def bench_million(report: Report, base: str, total: int) -> None:
    """Row 14 (row 1 with ``--million-only``): ``_million.py``'s steps on fresh durable
    stores under ``base``."""
    source, target = os.path.join(base, "million"), os.path.join(base, "million-restored")

    async def on_disk(_store: object) -> int:
        return await asyncio.to_thread(_million.disk_bytes, source)

    def index_files() -> dict[str, int]:
        return {
            os.path.relpath(os.path.join(parent, name), source): os.lstat(
                os.path.join(parent, name)).st_blocks * 512
            for parent, _, files in os.walk(source) for name in files
            if name.startswith("index.sqlite3")
        }  # fmt: skip

    async def index(_store: object) -> str:
        files = await asyncio.to_thread(index_files)
        size = sum(files.values())
        return (
            f"of which the index ({', '.join(sorted(files))}) {size / 2**20:,.1f} MiB, "
            f"{size / total:,.0f} bytes a session"
        )

    async def floor(store: Any, _hot: object) -> _million.Floor:
        return await _million.sqlite_floor(store, os.path.join(base, "floor.db"), hop=True)

    async def drop() -> None:
        await asyncio.to_thread(shutil.rmtree, source)

    await _million.run_million(
        report,
        _million.MillionSteps(
            label="file",
            open_source=lambda clock: FileStore(root=source, clock=clock),
            open_target=lambda: FileStore(root=target),
            floor=floor,
            footprint=_million.Footprint(
                "bytes allocated on disk under the store's root", on_disk, index
            ),
            workdir=base,
            total=total,
            drop_source=drop,
        ),
    )
    # absent with --million-no-copy (nothing restored)
    await asyncio.to_thread(shutil.rmtree, target, ignore_errors=True)


#: ``--part``: the groups of rows, in the order a full run runs them.
PARTS: dict[str, Callable[[Report, Sizes, str], Awaitable[None]]] = {
    "single": bench_single_ops,  # rows 1-5
    "create": bench_create,  # row 6
    "events": bench_event_log,
    "query": bench_query,
    "listing": bench_listing,
    "sweep": bench_sweep,
}


async def run(
    quick: bool,
    directory: str | None,
    million: int | None = None,
    only: bool = False,
    parts: Sequence[str] | None = None,
) -> Report:
    sizes = QUICK if quick else FULL
    report = Report("sessionstore file:// benchmark" + (" (quick)" if quick else ""))
    report.meta.update({"quick": quick, "million": million, "sizes": asdict(sizes)})
    if parts is not None:
        report.meta["parts"] = list(parts)
    base = tempfile.mkdtemp(prefix="sessionstore-bench-", dir=directory)
    report.info["directory"] = base
    print(report.title, flush=True)
    try:
        if not only:
            for name, part in PARTS.items():
                if parts is None or name in parts:
                    await part(report, sizes, base)
        if million:
            await bench_million(report, base, million)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_filesystem")
    parser.add_argument("--quick", action="store_true", help="small sizes (5k sessions)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--dir", help="where to create the store (default: system temp dir)")
    parser.add_argument(
        "--part", action="append", choices=list(PARTS),
        help="run only this group of rows (repeatable): single (rows 1-5), create (row 6), "
        "events, query, listing, sweep (the plan sweep)",
    )  # fmt: skip
    _million.add_arguments(parser, "durable: long; see docs/performance.md")
    args = parser.parse_args(argv)
    million = _million.million_size(args)
    report = asyncio.run(run(args.quick, args.dir, million, args.million_only, args.part))
    return report.publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
