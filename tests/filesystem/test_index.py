"""The query index: pages read only their own files, and answers match the reference."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore, _engine, _index, _session
from sessionstore_filesystem._engine import STORE_FORMAT

from sessionstore import (
    BaseSessionStore,
    CreateOp,
    ManualClock,
    NewSession,
    QueryOptions,
    Session,
    SessionFilter,
    Status,
)
from sessionstore.query import evaluate, matches

from .conftest import MakeStore, only_old_lock_files

TAGS = [f"tag-{n}" for n in range(6)]


async def _populate(store: FileStore, clock: ManualClock, count: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    for start in range(0, count, 50):
        ops = [
            CreateOp(
                NewSession(
                    processor_id=rnd.choice(["p1", "p2", "p3", None]),
                    status=rnd.choice(list(Status)),
                    tags=rnd.sample(TAGS, rnd.randint(0, 3)),
                    metadata={"user": rnd.choice(["u1", "u2"]), "n": rnd.choice([1, 1.0, True])},
                    ttl=rnd.choice([None, None, 30, 600]),
                )
            )
            for _ in range(min(50, count - start))
        ]
        await store.commit(ops)
        clock.advance(timedelta(milliseconds=rnd.randint(0, 3000)))
        if rnd.random() < 0.3:
            page = await store.list_sessions(None, QueryOptions(limit=1, sort_by="updated_at"))
            if page.items:
                s = await store.append_events(page.items[0].id, [{"type": "e"}])
                await store.update_session(s.id, add_tags={"touched"})


@pytest.mark.asyncio
async def test_a_filtered_page_reads_no_files(
    make_store: MakeStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as store:
        await _populate(store, clock, 600)
        reads = [0]
        real = _session.read_state

        def counting(*args: Any, **kwargs: Any) -> Any:
            reads[0] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(_engine, "read_state", counting)
        flt = SessionFilter(tags_any={"tag-1", "tag-2"}, status={"active", "paused"})
        page = await store.list_sessions(flt, QueryOptions(sort_by="created_at", limit=10))
        assert len(page) == 10
        assert reads[0] == 0  # the rows hold the sessions
        assert await store.count_sessions(flt) > 10
        assert reads[0] == 0  # counted by the index alone
        found = await store.search_sessions("u1", filter=flt)
        assert reads[0] == 0 and found.items
        for s in [*page.items, *found.items]:
            assert await store.get_session(s.id) == s  # exactly the files' sessions


@pytest.mark.asyncio
@pytest.mark.parametrize("drive_below", [2000, 0], ids=["set-driven", "index-walk"])
async def test_random_queries_match_the_reference_evaluator(
    make_store: MakeStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, drive_below: int
) -> None:
    """Both query shapes: a small set drives (fetch, then sort), or the sort index is walked."""
    monkeypatch.setattr(_index, "_drive_below", lambda conn, want: drive_below)
    rnd = random.Random(3)
    async with make_store() as store:
        await _populate(store, clock, 300)
        everything = [s async for s in store._iter_sessions()]
        t0, t1 = min(s.created_at for s in everything), clock.now()
        for _ in range(100):
            kwargs: dict[str, Any] = {}
            if rnd.random() < 0.3:
                kwargs["tags_all"] = set(rnd.sample(TAGS, rnd.randint(1, 2)))
            if rnd.random() < 0.3:
                kwargs["tags_any"] = set(rnd.sample([*TAGS, "touched"], rnd.randint(0, 2)))
            if rnd.random() < 0.3:
                kwargs["processor_id"] = rnd.choice(["p1", ["p2", "p3"], []])
            if rnd.random() < 0.3:
                kwargs["status"] = rnd.sample([s.value for s in Status], rnd.randint(1, 3))
            if rnd.random() < 0.3:
                kwargs["metadata"] = rnd.choice([{"user": "u1"}, {"n": 1}, {"n": True}])
            for name in ("created_after", "created_before", "updated_after", "expires_before"):
                if rnd.random() < 0.2:  # sub-millisecond bounds on purpose
                    kwargs[name] = t0 + (t1 - t0 + timedelta(seconds=700)) * rnd.random()
            if rnd.random() < 0.2:
                kwargs["has_events"] = rnd.choice([True, False])
            kwargs["include_expired"] = rnd.random() < 0.3
            flt = SessionFilter(**kwargs)
            opts = QueryOptions(
                sort_by=rnd.choice(["created_at", "updated_at", "expires_at", "id"]),
                order=rnd.choice(["asc", "desc"]),
                limit=rnd.choice([1, 7, 50]),
                offset=rnd.choice([0, 0, 3]),
            )
            now = clock.now()
            expected = evaluate(everything, flt, opts, now)
            got = await store.list_sessions(flt, opts)
            assert got.items == expected.items, (flt, opts)  # the files' sessions, exactly
            assert got.next_cursor == expected.next_cursor
            if got.next_cursor:  # the cursor continues exactly where the reference does
                follow = QueryOptions(opts.sort_by, opts.order, opts.limit, cursor=got.next_cursor)
                assert (await store.list_sessions(flt, follow)).ids == evaluate(
                    everything, flt, follow, now
                ).ids
            assert await store.count_sessions(flt) == sum(matches(s, flt, now) for s in everything)
        clock.advance(700)  # expiry moves sessions out of every query at once
        assert await store.count_sessions() == await BaseSessionStore.count_sessions(store)
        expired = await store.cleanup_expired_sessions()
        assert expired > 0
        assert (
            await store.count_sessions(SessionFilter(include_expired=True))
            == len(everything) - expired
        )


FIXTURE = Path(__file__).parent / "fixtures" / "layout4"
ALL = SessionFilter(include_expired=True), QueryOptions(sort_by="id", limit=100)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads = [0]
    real = _session.read_state

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_engine, "read_state", counting)
    return reads


async def _listed_as_read(store: FileStore) -> list[Session]:
    """Every session as a listing returns it, checked against a read of its files."""
    page = await store.list_sessions(*ALL)
    stored = await store.primitives.load(page.ids)  # expired ones too
    assert [stored[sid] for sid in page.ids] == page.items
    return page.items


@pytest.mark.asyncio
async def test_a_store_of_layout_4_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written by layout 4 (index format 2: no data in the rows;
    ``fixtures/make_layout4.py``) is marked layout 5 and its index gains the columns a
    listing returns, filled from the files; pages then read no file."""
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o700)
    clock = ManualClock()
    async with FileStore(root=str(root), clock=clock) as store:
        assert json.loads((root / "_sessionstore.json").read_text())["layout"] == STORE_FORMAT
        conn = store._engine.index.conn()
        assert store._engine.index.get_meta("format") == "4"
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "sessions_proc_updated" in indexes and "sessions_processor" not in indexes
        assert "tags_id" in indexes  # kept until every row's tag_list is filled (rebuilt)
        assert conn.execute("SELECT COUNT(*) FROM sessions WHERE data IS NULL").fetchone() == (0,)
        reads = _count_reads(monkeypatch)
        items = await store.list_sessions(*ALL)
        assert reads[0] == 0
        monkeypatch.undo()
        assert items.ids == ["c0", "c1", "c2", "c3", "c4", "c5", "logged", "saved"]
        listed = {s.id: s for s in await _listed_as_read(store)}
        assert listed["c4"].group == "g" and listed["c1"].data == {"n": 1, "text": "x" * 40, "m": 1}
        assert (listed["logged"].event_count, listed["logged"].last_seq) == (300, 300)
        assert listed["c0"].tags == {"t0", "all"} and listed["saved"].metadata == {"m": "x"}
        newest = SessionFilter(processor_id="p1"), QueryOptions(sort_by="updated_at", order="desc")
        expected = evaluate(list(listed.values()), *newest, clock.now())
        assert (await store.list_sessions(*newest)).items == expected.items
        await store.update_session("c2", merge_data={"after": True})
        await store.append_events("logged", [{"type": "e", "key": "new"}])
        await store.append_events("c3", [{"type": "first"}])  # compact -> directory
        await _listed_as_read(store)
        report = await store.doctor(dry_run=True)
        assert report.healthy and only_old_lock_files(report.removed), report
    async with FileStore(root=str(root), clock=clock) as store:  # rebuilt: tags_id goes
        conn = store._engine.index.conn()
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tags_id'").fetchone() is None
        tagged = await store.list_sessions(SessionFilter(tags_all={"t0"}), ALL[1])
        assert tagged.ids == ["c0", "c3"]
        await _listed_as_read(store)


@pytest.mark.asyncio
async def test_a_row_without_its_session_is_read_from_the_files(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row whose data is NULL (upgraded in place, not rebuilt yet) or does not decode is
    listed from the files; an undecodable one is rewritten before the next query."""
    async with make_store() as store:
        for sid in ("a", "b", "c"):
            await store.create_session(id=sid, data={"n": sid}, tags={"t"})
        before = await _listed_as_read(store)
        conn = store._engine.index.conn()
        conn.execute("UPDATE sessions SET data = NULL WHERE id = 'a'")
        conn.execute("UPDATE sessions SET data = x'7b7b' WHERE id = 'b'")  # "{{"
        reads = _count_reads(monkeypatch)
        assert (await store.list_sessions(*ALL)).items == before
        assert reads[0] == 2
        reads[0] = 0
        assert (await store.list_sessions(*ALL)).items == before
        assert reads[0] == 1  # "b" was rewritten from its files; "a" waits for a rebuild
        await store.reindex()
        reads[0] = 0
        assert (await store.list_sessions(*ALL)).items == before
        assert reads[0] == 0
        # a write to a row without data (whose other new columns are the upgrade's
        # defaults) rewrites the whole row, not only what the write changed
        conn.execute("UPDATE sessions SET data = NULL, tag_list = NULL WHERE id = 'c'")
        await store.update_session("c", data={"n": "c2"})
        await store.append_events("a", [{"type": "e"}])
        conn.execute("UPDATE sessions SET data = NULL, tag_list = NULL WHERE id = 'a'")
        await store.append_events("a", [{"type": "e"}])
        reads[0] = 0
        listed = (await store.list_sessions(*ALL)).items
        assert reads[0] == 0 and all(s.tags == {"t"} for s in listed)
        assert listed == await _listed_as_read(store)


@pytest.mark.parametrize("lock", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
def test_a_new_index_waits_for_another_process_holding_it(tmp_path: Path, lock: str) -> None:
    """Switching a new index file to WAL fails with "database is locked" at once,
    without SQLite's busy handler, while another connection (a process opening the same
    new store) holds a write lock in the rollback journal mode the file starts in. The
    first open waits for it instead of failing (seen as a flaky multi-process test)."""
    import sqlite3
    import threading

    path = str(tmp_path / "index.sqlite")
    rival = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    rival.execute("CREATE TABLE rival(x)")
    rival.execute(lock)
    release = threading.Timer(0.3, lambda: rival.execute("COMMIT"))
    release.start()
    index = _index.Index(path, timeout=10.0)
    try:
        assert index.create() is True  # a new index: built from the files
        assert index.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        index.close()
        rival.close()


def test_a_new_index_held_past_the_timeout_fails_with_the_lock_error(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "index.sqlite")
    rival = sqlite3.connect(path, isolation_level=None)
    rival.execute("CREATE TABLE rival(x)")
    rival.execute("BEGIN IMMEDIATE")
    index = _index.Index(path, timeout=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            index.create()
    finally:
        index.close()
        rival.close()


def test_a_set_drives_below_the_square_root_of_the_walk() -> None:
    """The driving threshold (issue 21's plan sweep): a set of n rows drives while fetching
    and sorting them (``_SORT_COST`` walked rows each) beats walking ``want * total / n``
    rows; without a limit the walk reads every row."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE sessions(x)")
    assert _index._drive_below(conn, 108) == 0  # empty: nothing drives
    conn.execute("INSERT INTO sessions(rowid) VALUES (10000)")
    below = _index._drive_below(conn, 108)
    # 10,000 sessions, a page of 100: a tag on 1% drives, one on 10% walks (the sweep's
    # cliff was a tag on 10% fetched and sorted: 4.5x the walk)
    assert 100 < below < 1000
    assert _index._drive_below(conn, None) == 10000 // _index._SORT_COST
    assert _index._drive_below(conn, 1) < 100  # one row wanted: the walk is short
    conn.execute("INSERT INTO sessions(rowid) VALUES (1000000)")
    assert 1000 < _index._drive_below(conn, 108) < 10000


@pytest.mark.asyncio
async def test_the_listing_plan_follows_the_selectivity(
    make_store: MakeStore, clock: ManualClock
) -> None:
    """Pinned plans at 400 sessions, 100 a page by ``updated_at``: a tag on 1% drives (its
    rows fetched by id, then sorted); one on half walks ``sessions_updated``; with a
    processor, a tag on half walks the processor's index, a tag on 1% still drives."""
    async with make_store() as store:
        for start in range(0, 400, 100):
            await store.commit([
                CreateOp(NewSession(
                    processor_id="hot" if i % 10 == 0 else "cold",
                    tags=["rare"] * (i % 100 == 0) + ["half"] * (i % 2 == 0),
                ))
                for i in range(start, start + 100)
            ])  # fmt: skip
            clock.advance(timedelta(seconds=1))
        index = store._engine.index
        conn = index.conn()
        opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)

        def plan(flt: SessionFilter) -> str:
            traced: list[str] = []
            conn.set_trace_callback(traced.append)
            try:
                next(index.select(flt, clock.now(), opts, limit=108, full=True))
            finally:
                conn.set_trace_callback(None)
            (sql,) = [s for s in traced if s.startswith("SELECT id, processor_id")]
            return " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))

        assert "SEARCH sessions USING INDEX sqlite_autoindex" in plan(
            SessionFilter(tags_all={"rare"})
        )
        assert "SCAN sessions USING INDEX sessions_updated" in plan(
            SessionFilter(tags_all={"half"})
        )
        assert "SEARCH sessions USING INDEX sqlite_autoindex" in plan(
            SessionFilter(processor_id="hot", tags_all={"rare"})
        )
        assert "SEARCH sessions USING INDEX sessions_proc_updated (processor_id=?)" in plan(
            SessionFilter(processor_id="hot", tags_all={"half"})
        )


@pytest.mark.asyncio
async def test_a_listing_weighs_its_plan_again_after_this_store_writes(
    make_store: MakeStore, clock: ManualClock
) -> None:
    """The memo of a listing's plan (``Index.snapshot``) ends with any write of the
    store's own, on the listing thread's connection (its ``total_changes``: SQLite's
    ``data_version`` moves only for other connections) or another's: a session that
    expires after the memo said nothing has expired is left out once it has expired."""
    flt = SessionFilter(tags_all={"t"})
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=10)
    async with make_store() as store:
        engine = store._engine
        await store.commit([CreateOp(NewSession(tags={"t"} if i < 2 else {"u"})) for i in range(9)])
        kept = (await store.list_sessions(flt, opts)).ids
        assert len(kept) == 2

        async def via_store() -> list[str]:
            # the worker thread that writes next lists (the last idle one is reused)
            return (await store.list_sessions(flt, opts)).ids

        async def on_this_thread() -> list[str]:
            # this thread's own connection, while the store writes on the worker's
            return engine.list_page(flt, opts, clock.now()).ids

        for page in (via_store, on_this_thread):
            assert await page() == kept  # nothing has expired: the memo says so
            gone = await store.create_session(tags={"t"}, ttl=1)
            clock.advance(timedelta(seconds=2))
            assert await page() == kept
            await store.delete_session(gone.id)  # nothing expired again
