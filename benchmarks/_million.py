"""The ``--million`` steps every driver's benchmark runs (issue 21, item 5).

One generator of sessions and one sequence of steps, shared by ``bench_memory``,
``bench_filesystem``, ``bench_redis`` (single server and Cluster), ``bench_sqlite`` and
``bench_postgres``; each benchmark supplies only what is its driver's own: how to open a
fresh store, the listing's raw floor, and how to size what the store holds.

1. **load** ``size`` sessions (default 1,000,000) in batches (``commit()`` of
   ``batch`` creates, or ``put_records`` of ``batch`` whole records), 1,000 of them the
   queried processor's (``agent-hot``), spread evenly; the others share 9 processors;
   each a ~300-byte document. Sessions are generated one batch at a time: never a list
   of them all. Reported: seconds and sessions/s.
2. **footprint**: what the store holds per session, as the driver's benchmark measures it
   (RSS delta for memory, bytes on disk for file and SQLite, ``used_memory`` delta for
   Redis, table + index size for PostgreSQL), before the floor is built.
3. **listing**: the 100 newest (``updated_at`` desc) of ``agent-hot``'s 1,000 sessions
   among all of them, against the driver's raw floor (its page must equal the floor's ids
   before anything is timed); target <= 2x (<= 3x on Redis Cluster).
4. **count**: ``count_sessions`` of that processor (must be 1,000) and of all (must be
   ``size``), each timed (median of 3 calls).
5. **backup** of the whole namespace with ``sessionstore.backup.create_backup`` (plain
   JSON Lines in the work directory), then the source is closed (and, where the
   benchmark says so, dropped, so two copies never share the machine's memory), then
   **restore** with ``restore_from_backup`` into a fresh store, checked by counting it.
   Reported: seconds and sessions/s each.

Each timed step also reports this process's CPU time (``time.process_time``): on a
shared machine the wall time is mostly waiting for a core (a server's own CPU is not in
it).

After the load the interpreter's objects are moved out of the garbage collector's view
(``gc.freeze()``): the harness runs ``gc.collect()`` before every timed batch, and with a
million sessions in memory each of those would take a second (the timed calls themselves
are not affected: generation-2 collections are as rare either way).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal

import orjson

from sessionstore import (
    CreateOp,
    ManualClock,
    NewSession,
    QueryOptions,
    Session,
    SessionFilter,
    SessionRecord,
    SessionStore,
    Status,
)
from sessionstore.backup import create_backup, restore_from_backup
from sessionstore.clock import to_ms
from sessionstore.codec import new_id

from ._harness import Report, Row, Target, compare, format_seconds, measure

#: Sessions in the full run, of which the queried processor's.
MILLION: Final = 1_000_000
HOT_SESSIONS: Final = 1_000
HOT: Final = "agent-hot"
#: The listing every driver times, and its filter.
LISTING_FILTER: Final = SessionFilter(processor_id=HOT)
LISTING_OPTIONS: Final = QueryOptions(sort_by="updated_at", order="desc", limit=100)

Via = Literal["commit", "put_records"]


def _fields(i: int, every: int, rnd: random.Random) -> tuple[str, dict[str, Any], dict[str, Any]]:
    processor = HOT if i % every == 0 else f"agent-{i % 9}"
    data = {"goal": "answer", "n": i, "summary": "y" * rnd.randrange(100, 400)}
    return processor, data, {"user": f"u-{rnd.randrange(500)}"}


def create_batches(total: int, batch: int, seed: int = 42) -> Iterator[list[CreateOp]]:
    """``total`` creates in lists of ``batch`` (``agent-hot`` on every
    ``total // 1000``-th)."""
    rnd = random.Random(seed)
    every = max(1, total // HOT_SESSIONS)
    for start in range(0, total, batch):
        ops = []
        for i in range(start, min(start + batch, total)):
            processor, data, metadata = _fields(i, every, rnd)
            ops.append(CreateOp(NewSession(processor_id=processor, data=data,
                                           metadata=metadata, tags={"t"})))  # fmt: skip
        yield ops


def record_batches(
    total: int, batch: int, clock: ManualClock, seed: int = 42
) -> Iterator[list[SessionRecord]]:
    """The same sessions as whole records, each its own instant (~1 s apart)."""
    rnd = random.Random(seed)
    every = max(1, total // HOT_SESSIONS)
    for start in range(0, total, batch):
        records = []
        for i in range(start, min(start + batch, total)):
            clock.advance(timedelta(milliseconds=rnd.randrange(1, 2_000)))
            now = clock.now()
            processor, data, metadata = _fields(i, every, rnd)
            session = Session(new_id(), processor, Status.ACTIVE, data, metadata,
                              frozenset({"t"}), now, now, None, 1)  # fmt: skip
            records.append(SessionRecord(session))
        yield records


async def load(
    store: SessionStore, total: int, batch: int, clock: ManualClock, via: Via
) -> tuple[float, list[Session]]:
    """Write ``total`` sessions in batches; returns the seconds it took and the queried
    processor's sessions as written (for floors kept beside the store)."""
    started = time.perf_counter()
    done = 0
    hot: list[Session] = []
    if via == "commit":
        for ops in create_batches(total, batch):
            written = await store.commit(ops)
            hot.extend(s for s in written if isinstance(s, Session) and s.processor_id == HOT)
            clock.advance(timedelta(seconds=len(ops)))  # one commit is one instant
            done = _progress(done, len(ops), started)
    else:
        for records in record_batches(total, batch, clock):
            result = await store.put_records(records)
            if result.created != len(records):
                raise SystemExit(f"BUG: put_records created {result.created} of {len(records)}")
            hot.extend(r.session for r in records if r.session.processor_id == HOT)
            done = _progress(done, len(records), started)
    return time.perf_counter() - started, hot


def _progress(done: int, more: int, started: float) -> int:
    now = done + more
    if now // 100_000 != done // 100_000:
        took = time.perf_counter() - started
        print(f"  loaded {now:,} sessions ({now / took:,.0f}/s)", flush=True)
    return now


@dataclass(frozen=True)
class Floor:
    """The listing's raw floor: its ids (checked against the page) and the timed call."""

    name: str
    ids: Callable[[], Awaitable[list[str]]]
    call: Callable[[], object]
    close: Callable[[], Awaitable[None]] | None = None
    #: The same floor for the ``n`` newest (the small pages beside row 13), where built.
    page: Callable[[int], Callable[[], object]] | None = None


@dataclass(frozen=True)
class Footprint:
    """How to size what the store holds: ``measure(store)`` in bytes, before and after
    the load (the difference, per session, is reported) and what it measures."""

    what: str
    measure: Callable[[SessionStore], Awaitable[int]]
    #: after the load, more to report (e.g. the size of the index alone)
    detail: Callable[[SessionStore], Awaitable[str]] | None = None


@dataclass(frozen=True)
class MillionSteps:
    """One driver's ``--million`` run."""

    label: str
    open_source: Callable[[ManualClock], AbstractAsyncContextManager[SessionStore]]
    open_target: Callable[[], AbstractAsyncContextManager[SessionStore]]
    #: the listing's floor, given the store (loaded) and the queried processor's sessions
    floor: Callable[[SessionStore, list[Session]], Awaitable[Floor]]
    footprint: Footprint
    workdir: str
    total: int = MILLION
    batch: int = 1_000
    via: Via = "commit"
    target: float = 2.0
    repeat: int = 9
    #: called after the source store is closed, before the restore (frees its memory)
    drop_source: Callable[[], Awaitable[None]] | None = None
    #: the server's CPU seconds so far (e.g. ``INFO cpu``), to report each step's share
    server_cpu: Callable[[SessionStore], Awaitable[float]] | None = None
    #: more listing rows after the listing (Redis Cluster: against a per-shard floor),
    #: given the store and the queried processor's sessions
    more_listings: Callable[[SessionStore, list[Session]], Awaitable[None]] | None = None


async def run_million(report: Report, steps: MillionSteps) -> None:
    """Load, size, list, count, back up and restore (see the module docstring)."""
    total, label = steps.total, steps.label
    print(f"  [{label}] --million: {total:,} sessions", flush=True)
    clock = ManualClock()
    backup = os.path.join(steps.workdir, f"million-{label}.jsonl")
    async with steps.open_source(clock) as store:
        gc.collect()
        before = await steps.footprint.measure(store)
        cpu, server = time.process_time(), await _server(steps, store)
        seconds, hot = await load(store, total, steps.batch, clock, steps.via)
        cpu = time.process_time() - cpu
        server = await _server(steps, store, server)
        how = f"{steps.via}() of {steps.batch:,}" if steps.via == "commit" else (
            f"put_records() of {steps.batch:,}")  # fmt: skip
        _note(
            report,
            f"[{label}] {total:,} load",
            f"{total:,} sessions by {how}: {seconds:.1f} s ({total / seconds:,.0f} sessions/s); "
            f"{_cpu(cpu, total, server)}",
        )
        gc.collect()
        gc.freeze()
        after = await steps.footprint.measure(store)
        grown = after - before
        detail = steps.footprint.detail
        more = f"; {await detail(store)}" if detail is not None else ""
        _note(
            report,
            f"[{label}] {total:,} footprint",
            f"{steps.footprint.what}: +{grown / 2**20:,.1f} MiB, "
            f"{grown / total:,.0f} bytes a session{more}",
        )
        report.meta[f"million_{label}"] = {"total": total, "load_s": seconds,
                                           "bytes_per_session": grown / total}  # fmt: skip
        await _listing(report, store, steps, hot)
        if steps.more_listings is not None:
            await steps.more_listings(store, hot)
        del hot
        await _counts(report, store, steps)
        if not _RUN.copy:
            return
        server = await _server(steps, store)
        started, cpu = time.perf_counter(), time.process_time()
        made = await create_backup(store, backup)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        server = await _server(steps, store, server)
        if made.sessions != total:
            raise SystemExit(f"BUG [{label}]: the backup holds {made.sessions} of {total}")
        _note(
            report,
            f"[{label}] {total:,} backup",
            f"create_backup of {total:,} sessions ({made.size / 2**20:,.0f} MiB "
            f"JSON Lines): {took:.1f} s ({total / took:,.0f} sessions/s); "
            f"{_cpu(cpu, total, server)}",
        )
    del store
    gc.unfreeze()
    gc.collect()
    if steps.drop_source is not None:
        await steps.drop_source()
    async with steps.open_target() as target:
        server = await _server(steps, target)
        started, cpu = time.perf_counter(), time.process_time()
        result = await restore_from_backup(target, backup)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        server = await _server(steps, target, server)
        if result.restored != total or await target.count_sessions() != total:
            raise SystemExit(f"BUG [{label}]: restored {result.restored} of {total}")
        _note(
            report,
            f"[{label}] {total:,} restore",
            f"restore_from_backup of {total:,} sessions into a fresh store: {took:.1f} s "
            f"({total / took:,.0f} sessions/s); {_cpu(cpu, total, server)}",
        )
    os.unlink(backup)
    gc.collect()


def _note(report: Report, key: str, text: str) -> None:
    """Record a finding and print it at once (a long run stopped early keeps it)."""
    report.info[key] = text
    print(f"  {key}: {text}", flush=True)


def _cpu(seconds: float, total: int, server: float | None = None) -> str:
    """This process's CPU time for a step (on a shared machine the wall time is mostly
    waiting for a core) and, where the benchmark reads it, the server's."""
    out = f"CPU of this process {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} sessions/CPU-s)"
    if server is not None:
        out += f"; server CPU {server:.1f} s ({server / total * 1e6:,.0f} µs a session)"
    return out


async def _server(
    steps: MillionSteps, store: SessionStore, since: float | None = None
) -> float | None:
    """The server's CPU seconds (``steps.server_cpu``), less ``since`` when given."""
    if steps.server_cpu is None:
        return None
    now = await steps.server_cpu(store)
    return now if since is None else now - since


async def _listing(
    report: Report, store: SessionStore, steps: MillionSteps, hot: list[Session]
) -> None:
    floor = await steps.floor(store, hot)
    page = await store.list_sessions(LISTING_FILTER, LISTING_OPTIONS)
    want = await floor.ids()
    if len(page) != 100 or page.ids != want:
        raise SystemExit(
            f"BUG [{steps.label}]: the page and the floor disagree: {page.ids[:3]} vs {want[:3]}"
        )
    try:
        op, low = await compare(
            lambda: store.list_sessions(LISTING_FILTER, LISTING_OPTIONS), floor.call,
            repeat=steps.repeat,
        )  # fmt: skip
    finally:
        if floor.close is not None:
            await floor.close()
    report.add(
        Row(
            f"[{steps.label}] 100 newest of a processor's {HOT_SESSIONS:,} among {steps.total:,}",
            op, floor.name, low, Target.at_most(steps.target),
            note=f"absolute {format_seconds(op.median)} vs {format_seconds(low.median)}",
        )
    )  # fmt: skip


async def _counts(report: Report, store: SessionStore, steps: MillionSteps) -> None:
    """Both counts, checked, then timed; a count that fails is reported, not fatal (the
    backup and restore still run)."""
    calls: dict[str, tuple[Callable[[], Awaitable[int]], int]] = {
        "count_sessions(processor)": (lambda: store.count_sessions(LISTING_FILTER), HOT_SESSIONS),
        "count_sessions()": (lambda: store.count_sessions(), steps.total),
    }
    parts = []
    for name, (call, want) in calls.items():
        try:
            got = await call()
            if got != want:
                raise SystemExit(f"BUG [{steps.label}]: {name} = {got:,}, not {want:,}")
            timing = await measure(call, number=1, repeat=3)
        except Exception as exc:  # a finding (e.g. a server busy past its script limit)
            parts.append(f"{name} FAILED: {type(exc).__name__}: {exc}")
            print(f"  [{steps.label}] {name} failed: {exc}", flush=True)
            await _until_answering(store)
            continue
        parts.append(f"{name} = {want:,}: {format_seconds(timing.median)}")
    _note(report, f"[{steps.label}] {steps.total:,} count", "; ".join(parts) + " (medians of 3)")


async def _until_answering(store: SessionStore, seconds: float = 600) -> None:
    """After a failed call, wait (up to ``seconds``) until the store answers again (a
    Redis server running a script past its time limit answers ``BUSY`` meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await store.get_session("no-such-session")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


# ------------------------------------------------------------------ footprints


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS``, Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def disk_bytes(root: str) -> int:
    """Bytes allocated on disk (``st_blocks``) under ``root``, every file and directory
    counted once (the file driver's documents, logs, locks, directories and index)."""
    total = 0
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def size_arg(value: str) -> int:
    """``--million-size``: a positive count of sessions, a multiple of 1,000 (so the
    queried processor has exactly 1,000)."""
    n = int(value)
    if n < 2_000 or n % HOT_SESSIONS:
        raise ValueError("--million-size must be a multiple of 1,000, at least 2,000")
    return n


async def aiter_chunks(store: SessionStore, size: int = 10_000) -> AsyncIterator[list[Session]]:
    """Every session of ``store`` (``scan``), in lists of ``size`` (to build a floor)."""
    chunk: list[Session] = []
    async for record in store.scan():
        chunk.append(record.session)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def sqlite_floor(store: SessionStore, path: str = ":memory:", *, hop: bool = False) -> Floor:
    """The listing's floor for the in-process drivers: SQLite (in memory, or a file) with
    every session of ``store`` in one table, a ``(processor, updated)`` index, the same
    100 rows selected and each row's document decoded with ``orjson`` (as
    ``bench_memory``'s floor at 10,000); ``hop``: in one ``asyncio.to_thread`` hop, as
    the file driver reads."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("CREATE TABLE s (id TEXT PRIMARY KEY, processor TEXT, updated INT, doc BLOB)")
    db.execute("CREATE INDEX s_proc_updated ON s (processor, updated)")
    async for chunk in aiter_chunks(store):
        db.executemany(
            "INSERT INTO s VALUES (?, ?, ?, ?)",
            [(s.id, s.processor_id, to_ms(s.updated_at),
              orjson.dumps({"data": s.data, "metadata": s.metadata, "tags": sorted(s.tags)}))
             for s in chunk],
        )  # fmt: skip
        db.commit()
    query = "SELECT id, doc FROM s WHERE processor = ? ORDER BY updated DESC, id DESC LIMIT ?"
    loads = orjson.loads

    async def ids() -> list[str]:
        return [sid for sid, _ in db.execute(query, (HOT, 100))]

    def page_of(n: int) -> Callable[[], object]:
        def page() -> object:
            return [(sid, loads(doc)) for sid, doc in db.execute(query, (HOT, n))]

        def in_hop() -> object:
            return asyncio.to_thread(page)

        return in_hop if hop else page

    async def close() -> None:
        db.close()

    where = "in memory" if path == ":memory:" else "on disk"
    name = f"SQLite {where}, (processor, updated) index + orjson" + (", 1 hop" if hop else "")
    return Floor(name, ids, page_of(100), close, page_of)


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--million`` (and the hidden ``--million-size`` the tests use)."""
    parser.add_argument(
        "--million", action="store_true",
        help=f"also load 1,000,000 sessions and list, count, back up and restore ({what})",
    )  # fmt: skip
    parser.add_argument(
        "--million-only", action="store_true",
        help="run only the --million steps (none of the other rows)",
    )  # fmt: skip
    parser.add_argument(
        "--million-no-copy", action="store_true",
        help="skip the backup and restore steps (load, footprint, listing and counts only)",
    )  # fmt: skip
    parser.add_argument("--million-size", type=size_arg, default=MILLION, help=argparse.SUPPRESS)


@dataclass
class _Run:
    """What the command line chose for this process's ``--million`` steps."""

    copy: bool = True


_RUN = _Run()


def million_size(args: argparse.Namespace) -> int | None:
    """The ``--million`` run's size, or ``None`` without ``--million`` / ``--million-only``
    (also takes ``--million-no-copy``: no backup and restore)."""
    _RUN.copy = not getattr(args, "million_no_copy", False)
    return int(args.million_size) if args.million or args.million_only else None
