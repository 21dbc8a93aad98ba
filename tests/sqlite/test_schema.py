"""Versioned schema migrations: upgrade from version 1, refuse newer or foreign files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from sessionstore_sqlite import SCHEMA_VERSION, SqliteStore
from sessionstore_sqlite._schema import APPLICATION_ID, MIGRATIONS, migrate

from sessionstore import ConfigurationError, QueryOptions, SessionFilter, UnsupportedFormatError


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def test_a_version_1_database_is_upgraded_on_open_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), target=1) == 0
    # a session as a version-1 writer stored it
    conn.execute(
        "INSERT INTO sessions(namespace, id, processor_id, status, created_ms, updated_ms, "
        "version, event_count, last_seq, tags, data, metadata) "
        "VALUES ('', 'old', 'p1', 'active', 1000, 2000, 3, 1, 1, ?, ?, ?)",
        (b'["t"]', b'{"k":1}', b'{"m":"x"}'),
    )
    conn.execute("INSERT INTO tags(sk, tag) VALUES (1, 't')")
    conn.execute("INSERT INTO events(sk, seq, type, at_ms, data) VALUES (1, 1, 'e', 1500, '{}')")
    conn.close()
    assert "sessions_processor_updated" not in _indexes(path)

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            old = await store.get_session("old")
            assert old is not None and old.version == 3 and old.data == {"k": 1}
            page = await store.list_sessions(SessionFilter(processor_id="p1", tags_all=["t"]))
            assert page.ids == ["old"]
            assert [e.type for e in await store.get_events("old")] == ["e"]
            new = await store.append_events("old", [{"type": "f"}])
            assert new.last_seq == 2

    asyncio.run(main())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        # version 3 copied the tag with its session's namespace, creation time and id
        assert conn.execute("SELECT sk, tag, namespace, created_ms, id FROM tags").fetchall() == [
            (1, "t", "", 1000, "old")
        ]
    assert {
        "sessions_processor_updated", "sessions_status_created", "tags_created",
        "events_key", "events_type", "events_at",
    } <= _indexes(path)  # fmt: skip
    with sqlite3.connect(path) as conn:
        # version 4: the old event has no key; the new one neither (none was given)
        assert conn.execute("SELECT seq, key FROM events ORDER BY seq").fetchall() == [
            (1, None), (2, None)
        ]  # fmt: skip


def test_every_migration_step_runs_from_nothing(tmp_path: Path) -> None:
    for target in range(1, len(MIGRATIONS) + 1):
        path = tmp_path / f"to{target}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        migrate(conn, str(path), target=target)
        assert conn.execute("PRAGMA user_version").fetchone() == (target,)
        assert migrate(conn, str(path)) == target  # then up to the newest
        conn.close()


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"

    async def create() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="kept")

    asyncio.run(create())
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    async def reopen() -> None:
        store = SqliteStore(path=str(path))
        with pytest.raises(UnsupportedFormatError, match="newer than this sessionstore"):
            await store.initialize()
        await store.shutdown()

    asyncio.run(reopen())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert conn.execute("SELECT id FROM sessions").fetchall() == [("kept",)]


@pytest.mark.parametrize("kind", ["other-app", "foreign-sessions-table", "not-sqlite"])
def test_a_file_that_is_not_a_sessionstore_database_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "other.db"
    if kind == "not-sqlite":
        path.write_bytes(orjson.dumps({"not": "a database"}) * 200)
    else:
        with sqlite3.connect(path) as conn:
            if kind == "other-app":
                conn.execute("PRAGMA application_id = 42")
            conn.execute("CREATE TABLE sessions(x)")
    before = path.read_bytes()

    async def main() -> None:
        store = SqliteStore(path=str(path))
        with pytest.raises(ConfigurationError):
            await store.initialize()
        await store.shutdown()

    asyncio.run(main())
    assert path.read_bytes() == before


def test_a_version_4_store_gets_partial_processor_indexes_and_lists_the_same(
    tmp_path: Path,
) -> None:
    """Version 5 rebuilds the processor indexes without the sessions that have no
    processor: a store with version 4's full indexes upgrades on open and every
    processor listing and count is what it was."""
    path = tmp_path / "v4.db"
    filters = [
        SessionFilter(processor_id="p1"),
        SessionFilter(processor_id=["p0", "p2"], status=["active"]),
        SessionFilter(),
    ]
    orders = [QueryOptions(sort_by=s, order=o, limit=500) for s in ("updated_at", "created_at")
              for o in ("asc", "desc")]  # fmt: skip

    async def listings(store: SqliteStore) -> list[object]:
        got: list[object] = []
        for flt in filters:
            got.append(await store.count_sessions(flt))
            for opts in orders:
                got.append((await store.list_sessions(flt, opts)).ids)
            got.append((await store.list_sessions(flt, QueryOptions(limit=7, order="desc"))).ids)
        return got

    async def write() -> list[object]:
        async with SqliteStore(path=str(path)) as store:
            for n in range(120):
                processor = f"p{n % 3}" if n % 4 == 0 else None
                s = await store.create_session(id=f"s{n:03d}", processor_id=processor)
                if n % 3:
                    await store.append_events(s.id, [{"type": "e"}] * (n % 3))
            await store.update_session("s008", status="completed")
            return await listings(store)

    before = asyncio.run(write())
    # the file as version 4 left it: full processor indexes (every session has entries)
    conn = sqlite3.connect(path, isolation_level=None)
    for column in ("updated", "created"):
        conn.execute(f"DROP INDEX sessions_processor_{column}")
        conn.execute(
            f"CREATE INDEX sessions_processor_{column} "
            f"ON sessions(namespace, processor_id, {column}_ms, id)"
        )
    conn.execute("PRAGMA user_version = 4")
    entries = "SELECT COUNT(*) FROM sessions INDEXED BY sessions_processor_updated"
    assert conn.execute(entries).fetchone() == (120,)
    conn.close()

    async def reopen() -> list[object]:
        async with SqliteStore(path=str(path)) as store:
            got = await listings(store)
            await store.append_events("s001", [{"type": "f"}])  # no processor
            await store.append_events("s004", [{"type": "f"}])  # p1
            assert (await store.list_sessions(filters[0], QueryOptions(limit=1))).ids == ["s004"]
            return got

    assert asyncio.run(reopen()) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'"))
        for column in ("updated", "created"):
            assert sql[f"sessions_processor_{column}"].endswith("WHERE processor_id IS NOT NULL")
        # only the 30 sessions with a processor have entries (INDEXED BY a partial
        # index needs the WHERE term that implies its predicate)
        assert conn.execute(
            "SELECT COUNT(*) FROM sessions INDEXED BY sessions_processor_updated "
            "WHERE namespace = '' AND processor_id IS NOT NULL"
        ).fetchone() == (30,)
