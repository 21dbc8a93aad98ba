"""Queries and bulk operations, paged with keyset cursors."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from sessionstore import (
    CreateOp,
    InvalidArgumentError,
    NewSession,
    SessionFilter,
    SessionPersistenceManager,
    SessionStore,
    SessionUpdate,
    Status,
)

from .conftest import QUIET, MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio

SMALL_PAGES = dataclasses.replace(QUIET, page_size=7)


async def seed(store: SessionStore, factory: StoreFactory, n: int) -> None:
    """``n`` sessions over 4 processors, every third paused, every other with an event."""
    for start in range(0, n, 50):
        ops = [
            CreateOp(
                NewSession(
                    processor_id=f"p{i % 4}",
                    status=Status.PAUSED if i % 3 == 0 else Status.ACTIVE,
                    data={"i": i, "text": f"ticket {i}"},
                    tags={"even"} if i % 2 == 0 else {"odd"},
                    id=f"s{i:04d}",
                )
            )
            for i in range(start, min(n, start + 50))
        ]
        await store.commit(ops)
        factory.clock.advance(1)
    for i in range(0, n, 2):
        await store.append_events(f"s{i:04d}", [{"type": "interaction"}])


async def test_list_search_count(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    await seed(store, store_factory, 20)
    page = await manager.list_sessions(SessionFilter(processor_id="p1"))
    assert page.ids == ["s0001", "s0005", "s0009", "s0013", "s0017"]
    assert await manager.count_sessions(SessionFilter(status="paused")) == 7
    found = await manager.search_sessions("TICKET 13")
    assert found.ids == ["s0013"]


async def test_find_sessions(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    t0 = store_factory.clock.now()
    await seed(store, store_factory, 120)
    recent = await manager.find_sessions(since=t0, limit=1000)  # exclusive: not the first 50
    assert len(recent) == 70 and recent[0].id == "s0119"  # newest first
    paused_with = await manager.find_sessions(status="paused", has_interactions=True, limit=1000)
    assert {s.id for s in paused_with} == {f"s{i:04d}" for i in range(0, 120, 6)}
    assert len(await manager.find_sessions(limit=5)) == 5
    silent = await manager.find_sessions(has_interactions=False, tags=["odd"], limit=1000)
    assert len(silent) == 60
    touched = await manager.find_sessions(updated_since=t0 + timedelta(seconds=2), limit=1000)
    assert len(touched) == 60  # every other session got an event at the end
    with pytest.raises(InvalidArgumentError):
        await manager.find_sessions(limit=0)


async def test_get_sessions_by_processor_pages(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(SMALL_PAGES)
    await seed(store, store_factory, 40)
    seen: list[str] = []
    page = await manager.get_sessions_by_processor("p2", limit=4)
    seen += page.ids
    while page.next_cursor:
        page = await manager.get_sessions_by_processor("p2", limit=4, cursor=page.next_cursor)
        seen += page.ids
    assert seen == [f"s{i:04d}" for i in range(38, -1, -4)]
    active = await manager.get_sessions_by_processor("p2", status="active", limit=100)
    assert all(s.status is Status.ACTIVE for s in active)


async def test_iter_sessions_walks_every_page(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(SMALL_PAGES)
    await seed(store, store_factory, 30)
    ids = [s.id async for s in manager.iter_sessions()]
    assert ids == [f"s{i:04d}" for i in range(30)]
    pages = [len(p) async for p in manager.iter_pages(SessionFilter(tags_all={"odd"}))]
    assert pages == [7, 7, 1]


async def test_bulk_update_counts_and_keeps_bookkeeping(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(SMALL_PAGES)
    await seed(store, store_factory, 30)
    ms = await manager.create_managed_session(processor_id="p1", metadata={"m": 1})
    n = await manager.bulk_update(
        SessionFilter(processor_id="p1"), {"merge_data": {"flag": True}, "add_tags": ["bulk"]}
    )
    assert n == 9  # 8 seeded + the managed one
    assert await manager.count_sessions(SessionFilter(tags_all={"bulk"})) == 9
    # replacing metadata wholesale keeps the manager's bookkeeping
    n = await manager.bulk_update(
        SessionFilter(ids=[ms.id]), SessionUpdate(metadata={"fresh": True})
    )
    s = await store.get_session(ms.id)
    assert n == 1 and s is not None and s.metadata["fresh"] is True and "_manager" in s.metadata
    # a status change moves sessions out of the filter while paging: each is updated once
    n = await manager.bulk_update(SessionFilter(status="paused"), {"status": "completed"})
    assert n == 10
    assert await manager.count_sessions(SessionFilter(status="paused")) == 0
    with pytest.raises(InvalidArgumentError):
        await manager.bulk_update(None, {"merge_metadata": {"_manager": {}}})
    with pytest.raises(InvalidArgumentError):
        await manager.bulk_update(None, {"no_such_change": 1})


async def test_bulk_update_survives_concurrent_changes(
    make_manager: MakeManager,
    store: SessionStore,
    store_factory: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = await make_manager(SMALL_PAGES)
    await seed(store, store_factory, 20)
    other = await store_factory.open()
    real_commit = store.commit
    raced: list[bool] = []

    async def racing_commit(ops: list[object]) -> object:
        if not raced:  # another worker changes a session between our read and our write
            raced.append(True)
            await other.update_session("s0001", merge_data={"other": 1})
            await other.update_session("s0002", status="completed")  # leaves the filter
        return await real_commit(ops)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "commit", racing_commit)
    n = await manager.bulk_update(SessionFilter(status="active"), {"merge_data": {"bulk": 1}})
    assert n == 12  # 13 active, one left the filter before its update
    s1 = await store.get_session("s0001")
    assert s1 is not None and s1.data["other"] == 1 and s1.data["bulk"] == 1  # nothing lost
    s2 = await store.get_session("s0002")
    assert s2 is not None and "bulk" not in s2.data


async def test_bulk_delete(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(SMALL_PAGES)
    await seed(store, store_factory, 30)
    assert await manager.bulk_delete(SessionFilter(tags_all={"even"})) == 15
    assert await manager.count_sessions() == 15
    assert await manager.bulk_delete(SessionFilter(processor_id="nobody")) == 0
    assert await manager.bulk_delete(None) == 15
    assert await manager.count_sessions() == 0
