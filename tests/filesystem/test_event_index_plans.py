"""The event index's reads by type and by several keys descend their own index: their
work follows what they return, not the session's history (SQLite, left to itself,
walked every row of the session in ``seq`` order for both)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from sessionstore_filesystem import FileStore
from sessionstore_filesystem._event_index import EventQuery, lookup_keys, query_rows

from sessionstore import EventInput


async def _session(store: FileStore, n: int) -> str:
    """A session of ``n`` keyed ``bulk`` events and, at its end, three ``rare`` ones."""
    sid = (await store.create_session()).id
    for start in range(0, n, 500):
        batch = [
            EventInput(type="bulk", key=f"b{i}", data={"i": i})
            for i in range(start, min(n, start + 500))
        ]
        await store.append_events(sid, batch)
    await store.append_events(
        sid, [EventInput(type="rare", key=f"r{i}", data={}) for i in range(3)]
    )
    # a read through the index brings its rows up to the log
    assert len(await store.get_events(sid, types=["rare"])) == 3
    return sid


def _steps(conn: sqlite3.Connection, read: Callable[[str], object], sid: str) -> int:
    """SQLite virtual-machine steps ``read(sid)`` took (counted every 10)."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn.set_progress_handler(tick, 10)
    try:
        read(sid)
    finally:
        conn.set_progress_handler(None, 0)
    return count * 10


@pytest.mark.asyncio
async def test_type_and_key_reads_do_not_walk_the_history(fstore: FileStore) -> None:
    short = await _session(fstore, 20)
    long = await _session(fstore, 5000)
    conn = fstore._engine.index.conn()
    reads: dict[str, Callable[[str], object]] = {
        "one type, all": lambda sid: query_rows(conn, sid, EventQuery(types=("rare",))),
        "two types, all": lambda sid: query_rows(conn, sid, EventQuery(types=("rare", "none"))),
        "one type, after_seq": lambda sid: query_rows(
            conn, sid, EventQuery(after_seq=1, types=("rare",))
        ),
        "several keys": lambda sid: lookup_keys(conn, sid, ["r0", "r2", "b3", "missing"]),
    }
    for name, read in reads.items():
        assert read(short) and read(long), name
        few, many = _steps(conn, read, short), _steps(conn, read, long)
        assert many <= 2 * few + 100, (name, few, many)


@pytest.mark.asyncio
async def test_several_keys_found_once_each(fstore: FileStore) -> None:
    sid = await _session(fstore, 50)
    conn = fstore._engine.index.conn()
    found = lookup_keys(conn, sid, ["b3", "r1", "b3", "nope", "b49"])
    assert sorted(k for k, _ in found) == ["b3", "b49", "r1"]
    events = await fstore.get_events(sid, types=["rare", "bulk"], after_seq=48, limit=3)
    assert [e.key for e in events] == ["b48", "b49", "r0"]
