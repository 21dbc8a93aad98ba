"""Where a durable ``add_items`` on ``sqlite://`` spends its time, against the SDK's
``SQLiteSession`` (issue 19, the ``sqlside`` branch).

Both on database files of their own in one directory (``--dir``, the disk you care
about), both WAL with ``synchronous=FULL`` (the SDK's session keeps SQLite's default,
``FULL`` in CPython's builds; ours is ``durability="fsync"``, the default): the
durability is printed as each connection reports it. A session of ``--history`` items on
each side, then:

- **WAL**: ``--calls`` calls of each write after ``wal_checkpoint(TRUNCATE)``; the WAL
  file read frame by frame: distinct pages per commit, KiB of WAL per call.
- **Time**: interleaved batches (the sides' order reversed every round), medians of the
  wall-clock and CPU time (this process, all threads) per call, of: the adapter's
  ``add_items([item])``, the store's own ``append_events`` under it, the driver's SQL
  statements for that append issued raw (``sqlite3``, one ``asyncio.to_thread`` hop),
  the same raw statements on a copy of our file without the four indexes an append
  rewrites beyond the SDK's three pages (``events_type``, ``events_at``,
  ``sessions_updated``, ``sessions_status_updated``), and ``SQLiteSession.add_items``;
  then the reads: ``get_items(limit=20)`` on both sides, the store's ``get_events`` under
  ours, and each side's read without its hand-off run on the other's (the engine's read
  on ``asyncio.to_thread``, the SDK's query on the driver's hot thread): at a low
  scheduling priority (``nice 19``) on a busy machine the hand-off, not the read, makes
  the difference (docs/performance.md).

No target: it apportions the ratio ``bench_openai_agents.py --versus sqlite`` reports.

Run (in the adapters environment, from contrib/sessionstore-openai-agents/)::

    ../../.venv-adapters/bin/python benchmarks/sqlite_append_probe.py --dir /var/tmp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
from agents import SQLiteSession, TResponseInputItem
from sessionstore_openai_agents import SessionStoreSession

from sessionstore import open_store

# the repository's benchmarks package (the WAL reader of the schema-5 probe), which the
# adapters environment does not install: found from here at run time, untyped for mypy
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.sqlite_partial_probe import _pages_per_commit  # type: ignore[import-not-found, import-untyped, unused-ignore]

ITEM: TResponseInputItem = {
    "role": "user",
    "content": "What is the weather like in Paris today? Please answer briefly.",
}
NAMESPACE = "probe"
#: The indexes whose entries an append to a session without a processor rewrites besides
#: the event row, the session row and nothing else (6 pages); SQLiteSession's 3 pages are
#: its message row, its (session_id, id) index entry and its session row.
EXTRA_INDEXES = ("events_type", "events_at", "sessions_updated", "sessions_status_updated")
Call = Callable[[], Awaitable[object]]


def _raw_append(conn: sqlite3.Connection, sid: str) -> Callable[[], None]:
    """The driver's statements of a one-event append, as ``_engine.py`` issues them."""
    data = orjson.dumps(ITEM)

    def run() -> None:
        conn.execute("BEGIN IMMEDIATE")
        sk, version, count, last = conn.execute(
            "SELECT sk, version, event_count, last_seq FROM sessions "
            "WHERE namespace = ? AND id = ?",
            (NAMESPACE, sid),
        ).fetchone()
        now = int(time.time() * 1000)
        conn.execute(
            "UPDATE sessions SET updated_ms = ?, version = ?, event_count = ?, last_seq = ? "
            "WHERE sk = ?",
            (now, version + 1, count + 1, last + 1, sk),
        )
        conn.executemany(
            "INSERT INTO events(sk, seq, type, at_ms, data, key) VALUES (?, ?, ?, ?, ?, ?)",
            [(sk, last + 1, "item", now, data, None)],
        )
        conn.execute("COMMIT")

    return run


def _reads(
    store: Any, sid: str, theirs: SQLiteSession
) -> tuple[Callable[[], object], Callable[[], object]]:
    """The two reads of 20 items without their hand-offs: the driver's engine call (what
    ``get_events(last=20)`` runs on the store's hot thread) and the SDK's query and decode
    (what ``SQLiteSession.get_items(limit=20)`` runs on ``asyncio.to_thread``), so each
    can be timed on the other's hand-off."""
    from sessionstore_sqlite._events import EventWindow

    engine, window = store._engine, EventWindow(last=20)

    def ours() -> object:
        return [e.data for e in engine.live_events(sid, store.clock.now(), window)]

    def sdk() -> object:
        with theirs._locked_connection() as conn:
            rows = conn.execute(
                "SELECT message_data FROM agent_messages WHERE session_id = ? "
                "ORDER BY id DESC LIMIT ?",
                (theirs.session_id, 20),
            ).fetchall()
        return [json.loads(data) for (data,) in reversed(rows)]

    return ours, sdk


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _durability(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return str(journal)


async def _wal(call: Call, path: Path, calls: int) -> tuple[float, float]:
    """Mean distinct pages per commit and KiB of WAL per call."""
    with closing(sqlite3.connect(path)) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(calls):
        await call()
    per_commit, size = _pages_per_commit(f"{path}-wal", page)
    return statistics.mean(per_commit), size / calls / 1024


async def _interleaved(
    sides: dict[str, Call], rounds: int, batch: int
) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds per call of each side."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            call = sides[name]
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(batch):
                await call()
            samples[name].append(
                ((time.perf_counter() - wall) / batch, (time.process_time() - cpu) / batch)
            )
    return {
        name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
        for name, s in samples.items()
    }


def _print(title: str, found: dict[str, tuple[float, float]], base: str) -> None:
    print(title)
    wall0, cpu0 = found[base]
    for name, (wall, cpu) in found.items():
        print(
            f"  {name:<42} wall {wall * 1e6:8.1f} us ({wall / wall0:.2f}x)  "
            f"CPU {cpu * 1e6:7.1f} us ({cpu / cpu0:.2f}x)"
        )


async def probe(workdir: Path, history: int, calls: int, rounds: int, batch: int) -> None:
    ours_path, sdk_path, slim_path = (workdir / n for n in ("ours.db", "sdk.db", "slim.db"))
    async with open_store(f"sqlite://{ours_path}", namespace=NAMESPACE) as store:
        ours = SessionStoreSession("probe", store)
        theirs = SQLiteSession("probe", sdk_path)
        try:
            await ours.add_items([ITEM] * history)
            await theirs.add_items([ITEM] * history)
            sync = theirs._get_connection().execute("PRAGMA synchronous").fetchone()[0]
            print(
                f"ours {_durability(ours_path)}, synchronous=FULL (durability=fsync); "
                f"SQLiteSession {_durability(sdk_path)}, synchronous="
                f"{['OFF', 'NORMAL', 'FULL', 'EXTRA'][sync]}; load {os.getloadavg()[0]:.1f}"
            )
            sid = ours.store_session_id
            with closing(sqlite3.connect(ours_path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copy(ours_path, slim_path)
            raw_conn, slim_conn = _connect(ours_path), _connect(slim_path)
            for index in EXTRA_INDEXES:
                slim_conn.execute(f"DROP INDEX {index}")
            raw, slim = _raw_append(raw_conn, sid), _raw_append(slim_conn, sid)
            one: list[Any] = [{"type": "item", "data": ITEM}]
            writes: dict[str, tuple[Call, Path]] = {
                "SQLiteSession.add_items": (lambda: theirs.add_items([ITEM]), sdk_path),
                "adapter add_items": (lambda: ours.add_items([ITEM]), ours_path),
                "store.append_events": (lambda: store.append_events(sid, one), ours_path),
                "raw statements (to_thread)": (lambda: asyncio.to_thread(raw), ours_path),
                "raw statements, 4 indexes dropped": (lambda: asyncio.to_thread(slim), slim_path),
            }
            print("WAL per call:")
            for name, (call, path) in writes.items():
                pages, kib = await _wal(call, path, calls)
                print(f"  {name:<42} {pages:.2f} pages a commit, {kib:.1f} KiB")
            found = await _interleaved({n: c for n, (c, _) in writes.items()}, rounds, batch)
            _print("add_items([1 item]), interleaved:", found, "SQLiteSession.add_items")
            ours_read, sdk_read = _reads(store, sid, theirs)
            threads = store._threads  # type: ignore[attr-defined]  # the driver's hot thread
            reads: dict[str, Call] = {
                "SQLiteSession.get_items(limit=20)": lambda: theirs.get_items(limit=20),
                "adapter get_items(limit=20)": lambda: ours.get_items(limit=20),
                "store.get_events(last=20)": lambda: store.get_events(sid, last=20),
                "engine's read on asyncio.to_thread": lambda: asyncio.to_thread(ours_read),
                "SDK's query on our hot thread": lambda: threads.run(sdk_read),
            }
            found = await _interleaved(reads, rounds, batch)
            _print("get_items(limit=20), interleaved:", found, "SQLiteSession.get_items(limit=20)")
            print(f"load {os.getloadavg()[0]:.1f}")
            raw_conn.close()
            slim_conn.close()
        finally:
            theirs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the databases go")
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--calls", type=int, default=100, help="writes read back from the WAL")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        asyncio.run(probe(Path(workdir), args.history, args.calls, args.rounds, args.batch))


if __name__ == "__main__":
    main()
