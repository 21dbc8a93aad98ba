"""The write path's shape: one worker-thread hop per operation, few pages per commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from sessionstore_sqlite import SqliteStore

from sessionstore import (
    AppendOp,
    ManualClock,
    Op,
    QueryOptions,
    SessionFilter,
    SessionUpdate,
    UpdateOp,
)

from .conftest import count_hops


def test_every_operation_is_one_thread_hop(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(path=str(tmp_path / "hops.db")) as store:
            await store.create_session(id="warm")
            hops = count_hops(store)
            batch: list[Op] = [
                UpdateOp("s", SessionUpdate(status="paused")),
                AppendOp("warm", [{"type": "e"}]),
            ]
            ops: dict[str, Callable[[], Awaitable[object]]] = {
                "create (generated id)": lambda: store.create_session(data={"a": 1}, tags=["t"]),
                "create (given id)": lambda: store.create_session(id="s", data={"a": 1}),
                "get": lambda: store.get_session("s"),
                "update": lambda: store.update_session("s", merge_data={"b": 2}),
                "append": lambda: store.append_events("s", [{"type": "e"}]),
                "get_events last": lambda: store.get_events("s", last=1),
                "touch": lambda: store.touch("s", ttl=60),
                "trim": lambda: store.trim_events("s", keep_last=0),
                "list": lambda: store.list_sessions(SessionFilter(tags_all=["t"]), QueryOptions()),
                "count": lambda: store.count_sessions(SessionFilter(processor_id="p")),
                "search": lambda: store.search_sessions("a"),
                "commit of 2": lambda: store.commit(batch),
                "delete": lambda: store.delete_session("s"),
            }
            for name, op in ops.items():
                hops.clear()
                await op()
                assert len(hops) == 1, (name, hops)

    asyncio.run(main())


def test_an_append_writes_only_the_pages_it_changes(tmp_path: Path) -> None:
    """An append updates four columns of the session row: its commit holds the events
    pages (table, type and time indexes), the row's page and the ``updated_at`` indexes'
    pages, not every index's. The clock moves between appends (as an agent's do), so
    each one changes ``updated_at`` and its index entries."""
    path = tmp_path / "frames.db"
    clock = ManualClock()

    async def main() -> None:
        async with SqliteStore(path=str(path), clock=clock) as store:
            for n in range(200):  # a realistic table: several pages per index
                await store.create_session(
                    processor_id=f"p{n % 5}", tags=[f"t{n % 3}"], data={"n": n}, ttl=3600
                )
            for n in range(200):  # and as many without a processor (an adapter's)
                await store.create_session(tags=[f"t{n % 3}"], data={"n": n}, ttl=3600)
            conn = sqlite3.connect(path)
            for processor, most in (("p1", 7), (None, 6)):
                s = await store.create_session(processor_id=processor, tags=["x"], ttl=3600)
                await store.append_events(s.id, [{"type": "e"}])
                frames = []
                for _ in range(5):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    clock.advance(0.01)
                    await store.append_events(s.id, [{"type": "e", "data": {"k": 1}}])
                    frames.append(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
                # events + its type and at indexes (the partial key index holds no keyless
                # event) + row + 3 updated_at indexes (7 indexes on sessions in all); a
                # session without a processor has no entry in the partial processor
                # index (schema 5): 2 updated_at indexes. The median: an append that
                # splits a leaf writes its new page and the parent too
                assert sorted(frames)[2] == most, (processor, frames)
            conn.close()

    asyncio.run(main())
