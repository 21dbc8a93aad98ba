"""Versioned schema migrations: upgrade from version 1, refuse newer or foreign files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from sessionstore_sqlite import SCHEMA_VERSION, SqliteStore
from sessionstore_sqlite._schema import APPLICATION_ID, MIGRATIONS, migrate

from sessionstore import ConfigurationError, SessionFilter, UnsupportedFormatError


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
