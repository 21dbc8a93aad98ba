"""A corrupt row: IntegrityError when it is read, skipped and reported by scans."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from sessionstore_sqlite import SqliteStore

from sessionstore import IntegrityError, QueryOptions, SessionFilter


def _corrupt(path: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute(sql, args).rowcount == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("data", b'{"broken":'), ("metadata", b"[1, 2]"), ("tags", b"nope"), ("status", "weird")],
)
def test_a_corrupt_session_row(tmp_path: Path, column: str, value: object) -> None:
    path = tmp_path / "c.db"

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            for sid in ("a", "bad", "c"):
                await store.create_session(id=sid, metadata={"m": 1}, tags=["t"])
            _corrupt(path, f"UPDATE sessions SET {column} = ? WHERE id = 'bad'", value)
            with pytest.raises(IntegrityError) as caught:
                await store.get_session("bad")
            assert caught.value.record is not None and caught.value.record.endswith("/bad")
            with pytest.raises(IntegrityError):
                await store.update_session("bad", data={})
            # scans, listings, searches and backups skip it and report it
            flt = SessionFilter(metadata={"m": 1}) if column != "metadata" else None
            assert (await store.list_sessions(flt, QueryOptions(sort_by="id"))).ids == ["a", "c"]
            assert (await store.search_sessions("a", filter=SessionFilter())).ids == ["a"]
            assert [r.session.id async for r in store.scan()] == ["a", "c"]
            assert any(name.endswith("/bad") for name in store.corrupt_records)
            # the other sessions are untouched and writable
            assert (await store.update_session("a", data={"x": 1})).version == 2

    asyncio.run(main())


def test_a_corrupt_event_or_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "e.db"

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="s")
            await store.append_events("s", [{"type": "a"}, {"type": "b"}])
            await store.save_checkpoint("s")
            await store.create_session(id="t")
            _corrupt(path, "UPDATE events SET data = x'7b7b' WHERE seq = 2")
            assert [e.type for e in await store.get_events("s", limit=1)] == ["a"]
            with pytest.raises(IntegrityError, match="corrupt event"):
                await store.get_events("s")
            # a raw read hands the row's JSON over unparsed: an object's brackets are all it
            # checks, so the caller's parse finds this one; a row that is no object's JSON
            # is refused by the read itself
            _corrupt(path, "UPDATE events SET data = x'7b787d' WHERE seq = 2")
            raw = await store.get_raw_events("s")
            assert [e.data_json for e in raw] == [b"{}", b"{x}"]
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(raw[1].data_json)
            _corrupt(path, "UPDATE events SET data = x'5b5d' WHERE seq = 2")
            with pytest.raises(IntegrityError, match="event data is not an object"):
                await store.get_raw_events("s")
            assert [e.seq for e in await store.get_raw_events("s", limit=1)] == [1]
            assert [r.session.id async for r in store.scan()] == ["t"]  # s skipped, reported
            assert any("/events/2" in name for name in store.corrupt_records)
            _corrupt(path, "UPDATE checkpoints SET body = x'00'")
            with pytest.raises(IntegrityError, match="corrupt checkpoint"):
                await store.list_checkpoints("s")
            # a row another writer stored as TEXT comes back as its UTF-8 bytes
            _corrupt(path, 'UPDATE events SET data = \'{"k":"ü"}\' WHERE seq = 2')
            assert (await store.get_raw_events("s"))[1].data_json == '{"k":"ü"}'.encode()
            assert (await store.get_events("s"))[1].data == {"k": "ü"}

    asyncio.run(main())


def test_paging_past_a_corrupt_row_loses_no_session(tmp_path: Path) -> None:
    """A skipped row inside a page's window must not end the paging early."""
    path = tmp_path / "p.db"

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            for sid in ("a", "bad", "c", "d", "e"):
                await store.create_session(id=sid)
            _corrupt(path, "UPDATE sessions SET data = x'00' WHERE id = 'bad'")
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.list_sessions(
                    None, QueryOptions(sort_by="id", limit=2, cursor=cursor)
                )
                seen += page.ids
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == ["a", "c", "d", "e"]
            offset = await store.list_sessions(None, QueryOptions(sort_by="id", offset=1, limit=2))
            assert offset.ids == ["c", "d"]
            offset = await store.list_sessions(None, QueryOptions(sort_by="id", offset=2, limit=2))
            assert offset.ids == ["d", "e"]  # the corrupt row is not one of the skipped

    asyncio.run(main())
