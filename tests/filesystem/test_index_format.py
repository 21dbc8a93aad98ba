"""Index format 4 (issue 21 item 2): fewer pages a create writes, the same answers.

No ``tags_id`` (a row's tag rows are found by the keys of its ``tag_list``), an expiry
index holding only sessions that expire, and no event cover until a session's first
append. A format-3 index (``fixtures/make_index3.py``) is upgraded in place on open.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sessionstore_filesystem import FileStore, _recovery

from sessionstore import BaseSessionStore, ManualClock, QueryOptions, SessionFilter
from sessionstore.query import evaluate

from .conftest import spy_rebuilds

FIXTURE = Path(__file__).parent / "fixtures" / "index3"
ALL = SessionFilter(include_expired=True)


def _tag_rows(conn: sqlite3.Connection) -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for tag, sid in conn.execute("SELECT tag, id FROM tags"):
        rows.setdefault(sid, set()).add(tag)
    return rows


def _assert_tags_match_rows(conn: sqlite3.Connection) -> None:
    """Every tag row belongs to a row whose ``tag_list`` names it, and back."""
    listed = {
        sid: set(orjson.loads(tags)) if tags is not None else set()
        for sid, tags in conn.execute("SELECT id, tag_list FROM sessions")
    }
    assert _tag_rows(conn) == {sid: tags for sid, tags in listed.items() if tags}


def _index_names(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'"))


def _plan(conn: sqlite3.Connection, sql: str, params: Any = ()) -> str:
    return " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


async def _everything(store: FileStore) -> list[Any]:
    """Every session as read from its files."""
    ids = (await store.list_sessions(ALL, QueryOptions(sort_by="id", limit=100))).ids
    loaded = await store.primitives.load(ids)
    return [loaded[sid] for sid in ids]


async def _check_listings(store: FileStore, clock: ManualClock) -> None:
    """Listings and counts by tag and expiry against the reference on the files."""
    everything = await _everything(store)
    now = clock.now()
    for flt in [
        SessionFilter(),
        ALL,
        *(SessionFilter(tags_all={t}) for t in ("all", "t0", "t1", "t2", "old", "new", "t9")),
        SessionFilter(tags_any={"t0", "new"}),
        SessionFilter(expires_before=now + timedelta(days=2)),
        SessionFilter(expires_before=now + timedelta(days=2), include_expired=True),
    ]:
        for sort in ("id", "created_at", "expires_at"):
            opts = QueryOptions(sort_by=sort, limit=100)
            assert (await store.list_sessions(flt, opts)).items == evaluate(
                everything, flt, opts, now
            ).items, (flt, sort)
        assert await store.count_sessions(flt) == await BaseSessionStore.count_sessions(
            store, flt
        ), flt


@pytest.mark.asyncio
async def test_a_format_3_index_is_upgraded_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose index the format-3 code wrote opens without a rebuild: the expiry
    index becomes partial, ``tags_id`` goes, and every write after that keeps the tag
    rows equal to the rows' ``tag_list``; its old empty covers still serve."""
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o700)
    with sqlite3.connect(root / "_default" / "index.sqlite3") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("3",)
        assert "tags_id" in _index_names(conn)
        # the fixture's boot is another machine's: as if written on this one, so the open
        # has no reason to rebuild but the format
        conn.execute("UPDATE meta SET value = ? WHERE key = 'boot'", (_recovery.boot_id(),))
    conn.close()
    rebuilds: list[object] = []
    real = _recovery.Recovery.reindex

    def spy(self: _recovery.Recovery, **kwargs: Any) -> int:
        rebuilds.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(_recovery.Recovery, "reindex", spy)
    clock = ManualClock(datetime(2026, 12, 7, 9, 0, 10, tzinfo=UTC))
    async with FileStore(root=str(root), clock=clock) as store:
        assert rebuilds == []
        conn = store._engine.index.conn()
        index = store._engine.index
        assert (index.get_meta("format"), index.get_meta("complete")) == ("4", "1")
        names = _index_names(conn)
        assert "tags_id" not in names
        assert "WHERE expires_ms IS NOT NULL" in names["sessions_expires"]
        # only c2 and c5 expire: the partial index holds those two
        assert conn.execute(
            "SELECT id FROM sessions INDEXED BY sessions_expires"
            " WHERE expires_ms IS NOT NULL ORDER BY id"
        ).fetchall() == [("c2",), ("c5",)]
        _assert_tags_match_rows(conn)
        await _check_listings(store, clock)
        # tag writes on upgraded rows: re-tag, delete, re-create, expire
        await store.update_session("c0", tags={"t9", "all"})
        await store.update_session("retagged", tags=set())
        await store.delete_session("c1")
        await store.create_session(id="c1", processor_id="p2", tags={"t1", "fresh"})
        assert await store.cleanup_expired_sessions() == 1  # c5
        _assert_tags_match_rows(conn)
        assert _tag_rows(conn)["c1"] == {"t1", "fresh"} and "c5" not in _tag_rows(conn)
        await _check_listings(store, clock)
        # the events: old covers (empty ones, a proven one) serve without a rebuild
        rebuilt = spy_rebuilds(monkeypatch)
        assert [e.seq for e in await store.get_events("logged", types=["e1"])] == [2, 4]
        assert (await store.get_event("logged", key="k3")) is not None
        await store.append_events("c3", [{"type": "first", "key": "f"}])  # compact -> dir
        assert [e.key for e in await store.get_events("c3", types=["first"])] == ["f"]
        assert rebuilt == []
        report = await store.doctor(dry_run=True)
        assert report.healthy, report
    async with FileStore(root=str(root), clock=clock) as store:  # and opens again as it is
        assert rebuilds == []
        _assert_tags_match_rows(store._engine.index.conn())
        await _check_listings(store, clock)


@pytest.mark.asyncio
async def test_tag_rows_follow_the_rows_tag_list(fstore: FileStore) -> None:
    """Tag rows are deleted by the keys the row's ``tag_list`` names; a row upgraded in
    place without ``data`` (its ``tag_list`` not filled) has its tag rows found by id."""
    conn = fstore._engine.index.conn()
    await fstore.create_session(id="a", tags={"x", "y"})
    await fstore.create_session(id="b", tags={"y"})
    await fstore.create_session(id="c")
    await fstore.update_session("a", tags={"y", "z"})
    await fstore.update_session("b", tags=set())
    await fstore.update_session("c", tags={"x"})
    _assert_tags_match_rows(conn)
    assert _tag_rows(conn) == {"a": {"y", "z"}, "c": {"x"}}
    conn.execute("UPDATE sessions SET data = NULL, tag_list = NULL WHERE id = 'a'")
    await fstore.update_session("a", tags={"w"})  # not a bump: the whole row, tags by id
    _assert_tags_match_rows(conn)
    conn.execute("UPDATE sessions SET data = NULL, tag_list = NULL WHERE id = 'c'")
    await fstore.delete_session("c")
    await fstore.delete_session("a")
    assert _tag_rows(conn) == {}
    await fstore.reindex()
    _assert_tags_match_rows(conn)


@pytest.mark.asyncio
async def test_a_new_session_writes_no_cover_until_its_first_append(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create leaves ``ev_cover`` and the expiry index alone; indexed reads of its empty
    log need no cover; its first append writes the empty one, which the next indexed
    read proves and extends without the lock."""
    conn = fstore._engine.index.conn()
    s = await fstore.create_session(tags={"t"})
    assert conn.execute("SELECT COUNT(*) FROM ev_cover").fetchone() == (0,)
    assert conn.execute(
        "SELECT COUNT(*) FROM sessions INDEXED BY sessions_expires WHERE expires_ms IS NOT NULL"
    ).fetchone() == (0,)
    rebuilt = spy_rebuilds(monkeypatch)
    assert await fstore.get_events(s.id, types=["a"]) == []
    assert await fstore.get_event(s.id, key="k") is None
    await fstore.append_events(s.id, [{"type": "a", "key": "k"}, {"type": "b"}])
    inc_gen_end = conn.execute(
        "SELECT end_off, tail_seq FROM ev_cover WHERE id = ?", (s.id,)
    ).fetchone()
    assert inc_gen_end == (0, 0)  # the empty cover: the appended lines come after it
    assert [e.seq for e in await fstore.get_events(s.id, types=["b"])] == [2]
    assert (await fstore.get_event(s.id, key="k")) is not None
    assert rebuilt == []
    # a re-create drops the old incarnation's rows and cover; a delete too
    await fstore.delete_session(s.id)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM ev_cover").fetchone() == (0,)


@pytest.mark.asyncio
async def test_the_expiry_queries_use_the_partial_index(
    fstore: FileStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement the store runs on expiry bounds (a sweep, an ``expires_before``
    listing or count, the count of live sessions) reads ``sessions_expires``, which holds
    only the sessions that expire."""

    async def inline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    monkeypatch.setattr(fstore._threads, "run", inline)  # one connection: this thread's
    for n in range(30):
        await fstore.create_session(ttl=60 + n if n % 3 == 0 else None)  # 10 expire
    conn = fstore._engine.index.conn()
    assert conn.execute(
        "SELECT COUNT(*) FROM sessions INDEXED BY sessions_expires WHERE expires_ms IS NOT NULL"
    ).fetchone() == (10,)
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    clock.advance(70)  # ttl 60, 63, 66, 69 have passed
    soon = SessionFilter(expires_before=clock.now() + timedelta(days=1))
    assert await fstore.count_sessions() == 26
    assert await fstore.count_sessions(ALL) == 30
    assert len((await fstore.list_sessions(soon, QueryOptions(sort_by="created_at"))).ids) == 6
    assert await fstore.count_sessions(soon) == 6
    assert await fstore.cleanup_expired_sessions() == 4
    conn.set_trace_callback(None)
    bounded = [
        sql for sql in ran
        if sql.startswith("SELECT") and ("expires_ms <" in sql or "expires_ms IS NULL OR" in sql)
    ]  # fmt: skip
    assert len(bounded) >= 4, ran
    for sql in bounded:
        plan = _plan(conn, sql)
        assert "sessions_expires" in plan, (sql, plan)
        assert re.search(r"SCAN sessions(?! USING COVERING)", plan) is None, (sql, plan)
