"""A flush that meets a concurrent change: never overwrite blindly; raise or re-apply."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import sessionstore
from sessionstore import (
    ManagedSessionConflictError,
    ManagerConfig,
    SessionConflictError,
    SessionNotFoundError,
    SessionStore,
    Status,
)

from .conftest import MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio

REAPPLY = ManagerConfig(
    conflict_policy="reload_and_reapply", persist_interval=None, cleanup_enabled=False
)


async def other_writer(factory: StoreFactory) -> SessionStore:
    """Another store object on the same data (another worker)."""
    return await factory.open()


async def test_raise_policy_refuses_and_keeps_changes(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager()
    ms = await manager.create_managed_session(data={"a": 1, "b": 1})
    other = await other_writer(store_factory)
    await other.update_session(ms.id, merge_data={"b": 2})
    await ms.update(a=5)
    with pytest.raises(ManagedSessionConflictError) as err:
        await ms.add_interaction({"x": 1})
    assert isinstance(err.value, SessionConflictError)
    assert err.value.expected == 1 and err.value.actual == 2
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"a": 1, "b": 2} and s.event_count == 0  # nothing written
    assert ms.dirty and ms.data["a"] == 5  # the changes are kept
    # until resolved, the session refuses more work (and so does a retry)
    with pytest.raises(ManagedSessionConflictError):
        await ms.update(c=1)
    with pytest.raises(ManagedSessionConflictError):
        await ms.persist()
    health = await manager.health_check()
    assert not health.healthy and any(ms.id in issue for issue in health.issues)
    # resolve: keep my changes on top of the new state
    await ms.reload(keep_pending=True)
    await ms.persist()
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"a": 5, "b": 2} and s.event_count == 1
    assert (await manager.health_check()).healthy


async def test_reload_drops_changes_after_a_conflict(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager()
    ms = await manager.create_managed_session(data={"a": 1})
    await (await other_writer(store_factory)).update_session(ms.id, merge_data={"a": 2})
    with pytest.raises(ManagedSessionConflictError):
        await ms.update(a=3, persist=True)
    await ms.reload()
    assert dict(ms.data) == {"a": 2} and not ms.dirty
    await ms.add_interaction()
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"a": 2} and s.event_count == 1


async def test_reapply_merges_independent_keys(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager(REAPPLY)
    ms = await manager.create_managed_session(data={"mine": 0, "theirs": 0}, tags={"t0"})
    other = await other_writer(store_factory)
    await other.update_session(
        ms.id, merge_data={"theirs": 1}, add_tags={"t1"}, merge_metadata={"m": 1}
    )
    await other.append_events(ms.id, [{"type": "theirs"}])
    await ms.update(mine=1, add_tags={"t2"}, remove_tags={"t0"})
    await ms.next_iteration()
    await ms.add_interaction({"mine": True})
    s = await store.get_session(ms.id)
    assert s is not None
    assert s.data == {"mine": 1, "theirs": 1}
    assert s.tags == {"t1", "t2"}
    assert s.metadata["m"] == 1 and s.metadata["_manager"]["iterations"] == 1
    assert [e.type for e in await store.get_events(ms.id)] == ["theirs", "interaction"]
    assert dict(ms.data) == {"mine": 1, "theirs": 1} and ms.version == s.version
    assert manager._stats.reapplied == 1


async def test_reapply_refuses_when_both_changed_the_same_key(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager(REAPPLY)
    ms = await manager.create_managed_session(data={"k": 0}, metadata={"owner": "a"})
    other = await other_writer(store_factory)
    await other.update_session(ms.id, merge_data={"k": 1}, merge_metadata={"owner": "b"})
    await ms.update({"k": 2}, metadata={"owner": "c"})
    with pytest.raises(ManagedSessionConflictError) as err:
        await ms.persist()
    assert err.value.keys == ("data.k", "metadata.owner")
    assert "data.k" in str(err.value)
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"k": 1} and s.metadata["owner"] == "b"


async def test_reapply_same_value_is_still_a_conflict_only_when_it_differs(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager(REAPPLY)
    ms = await manager.create_managed_session(data={"flag": 1})
    other = await other_writer(store_factory)
    # 1 and True are different JSON values: the other writer did change the key
    await other.update_session(ms.id, merge_data={"flag": True})
    await ms.update(flag=2)
    with pytest.raises(ManagedSessionConflictError):
        await ms.persist()


async def test_reapply_refuses_over_a_status_change(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    manager = await make_manager(REAPPLY)
    ms = await manager.create_managed_session()
    other = await other_writer(store_factory)
    await other.update_session(ms.id, status="completed")
    with pytest.raises(ManagedSessionConflictError) as err:
        await ms.add_interaction({"late": True})  # work on a session someone finished
    assert err.value.keys == ("status",)
    s = await store.get_session(ms.id)
    assert s is not None and s.event_count == 0 and s.status is Status.COMPLETED


async def test_deleted_session_blocks_with_not_found(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    manager = await make_manager(REAPPLY)
    ms = await manager.create_managed_session()
    await (await other_writer(store_factory)).delete_session(ms.id)
    with pytest.raises(SessionNotFoundError):
        await ms.add_interaction()
    with pytest.raises(SessionNotFoundError):
        await ms.reload()


async def test_conflict_hook_fires(make_manager: MakeManager, store_factory: StoreFactory) -> None:
    seen: list[tuple[str, int, int]] = []

    class Observer:
        @sessionstore.hookimpl
        def sessionstore_conflict(
            self, store: Any, session_id: str, expected: int, actual: int
        ) -> None:
            seen.append((session_id, expected, actual))

    observer = Observer()
    sessionstore.plugin_manager().register(observer)
    try:
        manager = await make_manager()
        ms = await manager.create_managed_session()
        await (await other_writer(store_factory)).update_session(ms.id, merge_data={"x": 1})
        with pytest.raises(ManagedSessionConflictError):
            await ms.add_interaction()
    finally:
        sessionstore.plugin_manager().unregister(observer)
    assert seen == [(ms.id, 1, 2)]


async def test_two_managers_never_lose_an_interaction(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    """Two workers append to one session concurrently under reload_and_reapply."""
    import asyncio

    config = dataclasses.replace(REAPPLY, reapply_attempts=200)
    first = await make_manager(config)
    second = await make_manager(config, await store_factory.open())
    ms1 = await first.create_managed_session()
    ms2 = await second.load_managed_session(ms1.id)

    async def work(ms: sessionstore.ManagedSession, who: str) -> None:
        for i in range(15):
            await ms.add_interaction({"who": who, "i": i})
            await asyncio.sleep(0)

    await asyncio.gather(work(ms1, "a"), work(ms2, "b"))
    events = await store.get_events(ms1.id)
    assert sorted((e.data["who"], e.data["i"]) for e in events) == sorted(
        [("a", i) for i in range(15)] + [("b", i) for i in range(15)]
    )
