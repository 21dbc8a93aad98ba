"""SQLite schema 5 (the `sqlitepartial` branch): what an append writes and costs with the
processor indexes full (schema 4) and partial (``WHERE processor_id IS NOT NULL``).

Two stores of the same driver side by side in one process, one on a file left at schema
4 (the driver's migration capped at 4 while it opens), one at schema 5, each filled the
same way: 2,000 sessions (``--sessions``), a fifth of them with a processor (10
processors), one tag, five events each; then a session without a processor (``target``)
and one with (``ptarget``), 50 events each. The store's clock is a :class:`ManualClock` moved 5 ms
before every append, as an agent's appends are apart, so each changes ``updated_at``.

- **WAL**: after ``wal_checkpoint(TRUNCATE)``, ``--appends`` appends of one small event;
  the WAL file is read frame by frame (the frame header's page number, and its
  database size, non-zero on a commit's last frame): distinct pages per commit and WAL
  bytes per append.
- **CPU**: ``--rounds`` rounds of batches of ``--batch`` appends to ``target``, the sides'
  order alternating (4, 5, 5, 4 then 5, 4, 4, 5); ``time.process_time`` per batch (the
  worker threads are in this process), medians.

Run: ``.venv/bin/python -m benchmarks.sqlite_partial_probe [--dir /dev/shm]
[--durability none] [--rounds 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sqlite3
import statistics
import tempfile
import time
from typing import Any, Literal

import sessionstore_sqlite._engine as engine
from sessionstore_sqlite import SqliteStore
from sessionstore_sqlite._schema import migrate

from sessionstore import ManualClock

EVENT: list[dict[str, Any]] = [
    {"type": "message", "data": {"role": "user", "content": "hello there, how are you?"}}
]


async def open_store(
    path: str, version: int, clock: ManualClock, durability: Literal["fsync", "none"]
) -> SqliteStore:
    """A store on ``path`` at schema ``version`` (4: the migration stops there)."""
    if version == 4:
        vars(engine)["migrate"] = functools.partial(migrate, target=4)
    try:
        store = SqliteStore(path=path, clock=clock, durability=durability)
        await store.initialize()
    finally:
        vars(engine)["migrate"] = migrate
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (version,)
    return store


async def fill(store: SqliteStore, sessions: int) -> None:
    for n in range(sessions):
        processor = f"p{n % 10}" if n % 5 == 0 else None
        s = await store.create_session(
            id=f"s{n:05d}", processor_id=processor, tags=[f"t{n % 4}"], data={"n": n}
        )
        await store.append_events(s.id, [{"type": "msg", "data": {"i": i}} for i in range(5)])
    for sid, processor in (("target", None), ("ptarget", "p3")):
        await store.create_session(id=sid, processor_id=processor, data={"x": 1})
        await store.append_events(sid, [{"type": "msg"}] * 50)


async def wal(
    store: SqliteStore, path: str, sid: str, clock: ManualClock, appends: int
) -> tuple[float, float, float]:
    """Mean and median distinct pages per commit, WAL bytes per append."""
    conn = sqlite3.connect(path)
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(appends):
        clock.advance(0.005)
        await store.append_events(sid, EVENT)
    conn.close()
    per_commit, size = _pages_per_commit(path + "-wal", page)
    assert len(per_commit) == appends, (len(per_commit), appends)
    return statistics.mean(per_commit), statistics.median(per_commit), size / appends


def _pages_per_commit(wal_path: str, page: int) -> tuple[list[int], int]:
    """Distinct pages of each commit in the WAL file, and the file's size."""
    with open(wal_path, "rb") as f:
        raw = f.read()
    per_commit: list[int] = []
    pages: set[int] = set()
    for offset in range(32, len(raw) - 24, 24 + page):
        pages.add(int.from_bytes(raw[offset : offset + 4], "big"))
        if int.from_bytes(raw[offset + 4 : offset + 8], "big"):
            per_commit.append(len(pages))
            pages = set()
    return per_commit, len(raw)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default=None, help="where the two databases go")
    parser.add_argument("--durability", choices=["fsync", "none"], default="fsync")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    clock = ManualClock()
    stores: dict[int, tuple[SqliteStore, str]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        try:
            for version in (4, 5):
                path = f"{d}/v{version}.db"
                stores[version] = (await open_store(path, version, clock, args.durability), path)
                await fill(stores[version][0], args.sessions)
            for version, (store, path) in stores.items():
                for sid in ("target", "ptarget"):
                    await wal(store, path, sid, clock, args.appends)  # warm
                    mean, median, size = await wal(store, path, sid, clock, args.appends)
                    print(
                        f"schema {version} {sid:8s}: {mean:.2f} pages a commit (median "
                        f"{median:g}), {size / 1024:.2f} KiB of WAL an append"
                    )
            cpu: dict[int, list[float]] = {4: [], 5: []}
            for r in range(args.rounds):
                for version in (4, 5, 5, 4) if r % 2 == 0 else (5, 4, 4, 5):
                    store = stores[version][0]
                    start = time.process_time()
                    for _ in range(args.batch):
                        clock.advance(0.005)
                        await store.append_events("target", EVENT)
                    cpu[version].append((time.process_time() - start) / args.batch * 1e6)
            old, new = statistics.median(cpu[4]), statistics.median(cpu[5])
            print(f"CPU an append: schema 4 {old:.1f} us, schema 5 {new:.1f} us: {new / old:.3f}x")
            print("load average", os.getloadavg())
        finally:
            for store, _ in stores.values():
                await store.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
