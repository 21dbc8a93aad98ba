"""The head cache: a writer reuses what its last operation on a session left, only while
nobody else can have written the session (change tokens, file identity)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore, _engine
from sessionstore_filesystem._heads import MAX_OPEN
from sessionstore_filesystem._session import FOLD_AFTER

from sessionstore import IntegrityError

from . import workers
from .conftest import MakeStore, session_dir
from .spawner import Spawner


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the full reads of a session's files on the locked write path."""
    reads = [0]
    real = vars(_engine)["read_state"]

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_engine, "read_state", counting)
    return reads


@pytest.mark.asyncio
async def test_repeated_writes_reuse_the_head(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as store:
        s = await store.create_session(data={"n": 0})
        reads = count_reads(monkeypatch)
        for i in range(FOLD_AFTER + 10):  # across a fold of the log into the document
            s = await store.append_events(s.id, [{"type": "e", "data": {"i": i}}])
        s = await store.update_session(s.id, merge_data={"n": 1})
        s = await store.append_events(s.id, [{"type": "e"}])
        assert reads[0] == 0
        assert (await store.get_session(s.id)) == s
        assert [e.seq for e in await store.get_events(s.id)] == list(range(1, FOLD_AFTER + 12))


@pytest.mark.asyncio
async def test_two_stores_in_one_process_see_each_others_writes(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as a, make_store() as b:
        s = await a.create_session(data={"n": 0})
        reads = count_reads(monkeypatch)
        for i in range(20):
            writer = a if i % 2 else b
            current = await writer.update_session(s.id, merge_data={"n": i + 1})
            assert current.version == 2 * i + 2 and current.data["n"] == i + 1
            await writer.append_events(s.id, [{"type": "e", "data": {"i": i}}])
        assert reads[0] == 20  # every switch of writer re-reads; the same writer does not
        final = await a.get_session(s.id)
        assert final is not None and final.version == 41 and final.event_count == 20


@pytest.mark.asyncio
async def test_any_lock_holder_invalidates_other_heads(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as a, make_store() as b:
        s = await a.create_session(data={"n": 0})
        await a.append_events(s.id, [{"type": "e"}])
        reads = count_reads(monkeypatch)
        await b.doctor()  # locks (and tidies) every session
        await a.append_events(s.id, [{"type": "e"}])
        assert reads[0] == 1
        await a.append_events(s.id, [{"type": "e"}])
        assert reads[0] == 1


@pytest.mark.asyncio
async def test_returned_sessions_share_nothing_with_the_cache(make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(data={"deep": {"k": 1}}, metadata={"m": [1]})
        for _ in range(FOLD_AFTER + 1):  # the last append folds the document from the cache
            got = await store.append_events(s.id, [{"type": "e"}])
            got.data["deep"]["k"] = 99  # a caller scribbling on what it was handed
            got.data["new"] = True
            got.metadata["m"].append(2)
        stored = await store.get_session(s.id)
        assert stored is not None
        assert stored.data == {"deep": {"k": 1}} and stored.metadata == {"m": [1]}


@pytest.mark.asyncio
async def test_a_hand_edit_is_not_hidden_by_the_cache(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="edited", data={"n": 0})
        await store.append_events(s.id, [{"type": "e"}])
        doc = session_dir(root, "edited") / "session.json"
        doc.write_bytes(doc.read_bytes().replace(b'"n":0', b'"n":7'))  # checksum now wrong
        with pytest.raises(IntegrityError):
            await store.append_events(s.id, [{"type": "e"}])


@pytest.mark.asyncio
async def test_descriptors_are_kept_for_few_sessions(make_store: MakeStore) -> None:
    async with make_store() as store:
        for i in range(MAX_OPEN * 3):
            s = await store.create_session(id=f"s{i}", data={})
            await store.append_events(s.id, [{"type": "e"}])
        heads = store._engine.heads
        assert len(heads) == MAX_OPEN * 3
        kept = [h for h in heads._heads.values() if h.holds_fds()]
        assert len(kept) == MAX_OPEN  # the most recent ones: lock, directory and log each
        assert all(min(h.lock_fd, h.dir_fd, h.log_fd) >= 0 for h in kept)
        for i in range(MAX_OPEN * 3):  # the stripped heads still serve (they reopen)
            await store.append_events(f"s{i}", [{"type": "e"}])
            assert (await store.get_session(f"s{i}")).event_count == 2  # type: ignore[union-attr]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_inherit_heads(tmp_path: Path) -> None:
    async def populate() -> FileStore:
        store = FileStore(root=str(tmp_path / "store"), durability="none")
        await store.initialize()
        s = await store.create_session(data={})
        await store.append_events(s.id, [{"type": "e"}])
        return store

    store = asyncio.run(populate())
    try:
        assert len(store._engine.heads) == 1
        pid = os.fork()
        if pid == 0:  # the child: a lock through the parent's descriptors would be shared
            os._exit(0 if len(store._engine.heads) == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(store._engine.heads) == 1
    finally:
        asyncio.run(store.shutdown())


@pytest.mark.integration
def test_processes_appending_to_one_session(tmp_path: Path) -> None:
    """Three processes append to one session at once, each through its head cache: no
    append is lost or duplicated, the sequence has no gap, each writer's order holds."""
    root = str(tmp_path / "store")

    async def seed() -> str:
        async with FileStore(root=root) as store:
            return (await store.create_session(data={})).id

    sid = asyncio.run(seed())
    times = 150
    with Spawner() as spawner:
        children = [
            spawner.start(workers.appender, root=root, sid=sid, times=times, tag=tag)
            for tag in "abc"
        ]
        assert all(child.wait(120) == [b"done"] for child in children)

    async def check() -> None:
        async with FileStore(root=root) as store:
            s = await store.get_session(sid)
            assert s is not None
            assert s.event_count == s.last_seq == 3 * times and s.version == 3 * times + 1
            events = await store.get_events(sid)
            assert [e.seq for e in events] == list(range(1, 3 * times + 1))
            for tag in "abc":
                mine = [e.data["i"] for e in events if e.data["by"] == tag]
                assert mine == list(range(times))
            assert (await store.doctor(dry_run=True)).removed == []

    asyncio.run(check())


@pytest.mark.asyncio
async def test_a_removed_token_table_voids_every_head(
    root: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as a:
        s = await a.create_session(data={"n": 0})
        await a.append_events(s.id, [{"type": "e"}])
        (root / "_default" / "locks" / "tokens").unlink()  # others now use a new table
        async with make_store() as b:
            await b.update_session(s.id, merge_data={"n": 1})
        reads = count_reads(monkeypatch)
        got = await a.append_events(s.id, [{"type": "e"}])
        assert reads[0] == 1 and got.data == {"n": 1} and got.version == 4
        assert (root / "_default" / "locks" / "tokens").exists()
