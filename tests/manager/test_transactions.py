"""Manager transactions: all or nothing, with managed sessions' pending changes."""

from __future__ import annotations

import pytest

from sessionstore import (
    InvalidArgumentError,
    ManagedSessionConflictError,
    ManagerConfig,
    QuotaExceededError,
    SessionConflictError,
    SessionPersistenceManager,
    SessionStore,
    TransactionError,
)
from sessionstore.manager import ManagerTransaction

from .conftest import MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio


async def test_commit_on_success(manager: SessionPersistenceManager, store: SessionStore) -> None:
    a = await store.create_session(data={"n": 1})
    async with manager.transaction() as tx:
        await tx.update_session(a.id, merge_data={"n": 2}, expected_version=1)
        new_id = await tx.create_session(processor_id="p", data={"parent": a.id})
        await tx.append_events(new_id, [{"type": "started"}])
    assert len(tx.results) == 3
    s = await store.get_session(a.id)
    child = await store.get_session(new_id)
    assert s is not None and s.data == {"n": 2}
    assert child is not None and child.event_count == 1


async def test_error_inside_the_block_writes_nothing(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    a = await store.create_session(data={"n": 1})
    with pytest.raises(RuntimeError):
        async with manager.transaction() as tx:
            await tx.update_session(a.id, merge_data={"n": 2})
            await tx.create_session(id="child")
            raise RuntimeError("boom")
    assert (await store.get_session(a.id)).data == {"n": 1}  # type: ignore[union-attr]
    assert await store.get_session("child") is None


async def test_conflict_at_commit_writes_nothing(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    a = await store.create_session(data={"n": 1})
    b = await store.create_session(data={"n": 1})
    with pytest.raises(SessionConflictError):
        async with manager.transaction() as tx:
            await tx.update_session(a.id, merge_data={"n": 2}, expected_version=1)
            await tx.update_session(b.id, merge_data={"n": 2}, expected_version=7)
    for sid in (a.id, b.id):
        assert (await store.get_session(sid)).data == {"n": 1}  # type: ignore[union-attr]


async def test_managed_sessions_join_a_transaction(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms1 = await manager.create_managed_session(data={"x": 0})
    ms2 = await manager.create_managed_session(data={"y": 0})
    await ms1.update(x=1)
    await ms1.add_interaction({"a": 1}, persist=False)
    await ms2.update(y=1)
    async with manager.transaction() as tx:
        await tx.persist(ms1)
        await tx.persist(ms2)
        await tx.create_session(data={"log": "both moved"})
    assert not ms1.dirty and not ms2.dirty
    s1, s2 = await store.get_session(ms1.id), await store.get_session(ms2.id)
    assert s1 is not None and s1.data == {"x": 1} and s1.event_count == 1
    assert s2 is not None and s2.data == {"y": 1}
    assert ms1.version == s1.version and ms2.version == s2.version
    await ms1.add_interaction()  # the managed session continues from the new version


async def test_a_failed_transaction_leaves_managed_changes_pending(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"x": 0})
    other = await store.create_session()
    await ms.update(x=1)
    with pytest.raises(SessionConflictError):
        async with manager.transaction() as tx:
            await tx.persist(ms)
            await tx.update_session(other.id, merge_data={"z": 1}, expected_version=99)
    assert ms.dirty and ms.data["x"] == 1
    await ms.update(x=2)
    await ms.persist()
    assert (await store.get_session(ms.id)).data == {"x": 2}  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        async with manager.transaction() as tx:
            await ms.update(x=3)
            await tx.persist(ms)
            raise ValueError("abort")
    assert ms.dirty and ms.data["x"] == 3


async def test_a_stale_managed_session_fails_the_transaction(
    manager: SessionPersistenceManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"x": 0})
    other = await store_factory.open()
    await other.update_session(ms.id, merge_data={"x": 5})
    await ms.update(x=1)
    with pytest.raises(SessionConflictError):
        async with manager.transaction() as tx:
            await tx.persist(ms)
    assert (await store.get_session(ms.id)).data == {"x": 5}  # type: ignore[union-attr]
    assert ms.dirty
    with pytest.raises(ManagedSessionConflictError):
        await ms.persist()


async def test_with_transaction(manager: SessionPersistenceManager, store: SessionStore) -> None:
    a = await store.create_session(data={"n": 0})

    async def move(tx: ManagerTransaction) -> str:
        current = await store.get_session(a.id)
        assert current is not None
        await tx.update_session(
            a.id, merge_data={"n": current.data["n"] + 1}, expected_version=current.version
        )
        return "moved"

    assert await manager.with_transaction(move) == "moved"
    assert (await store.get_session(a.id)).data == {"n": 1}  # type: ignore[union-attr]

    calls = 0

    async def racy(tx: ManagerTransaction) -> int:
        nonlocal calls
        calls += 1
        current = await store.get_session(a.id)
        assert current is not None
        if calls == 1:  # someone else writes between our read and our commit
            await store.update_session(a.id, merge_data={"other": True})
        await tx.update_session(a.id, merge_data={"n": 10}, expected_version=current.version)
        return calls

    with pytest.raises(SessionConflictError):
        await manager.with_transaction(racy)
    calls = 0
    assert await manager.with_transaction(racy, attempts=3) == 2
    s = await store.get_session(a.id)
    assert s is not None and s.data == {"n": 10, "other": True}

    async def failing(tx: ManagerTransaction) -> None:
        await tx.create_session(id="never")
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await manager.with_transaction(failing)
    assert await store.get_session("never") is None


async def test_quota_and_reserved_key_in_transactions(make_manager: MakeManager) -> None:
    manager = await make_manager(ManagerConfig(max_sessions=2, persist_interval=None))
    await manager.create_managed_session()
    with pytest.raises(QuotaExceededError) as info:
        async with manager.transaction() as tx:
            await tx.create_session()
            await tx.create_session()
    assert info.value.option == "max_sessions"
    assert "raise it with the manager option 'max_sessions'" in str(info.value)
    assert await manager.count_sessions() == 1
    async with manager.transaction() as tx:
        with pytest.raises(InvalidArgumentError):
            await tx.create_session(metadata={"_manager": 1})
        with pytest.raises(InvalidArgumentError):
            await tx.update_session("x", merge_metadata={"_manager": 1})
    tx = manager.transaction()
    await tx.commit()
    with pytest.raises(TransactionError):
        await tx.commit()


async def test_views_keep_changes_staged_in_a_transaction(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"x": 0})
    await ms.update(x=1)
    tx = manager.transaction()
    await tx.persist(ms)
    assert ms.dirty and ms.pending_changes == 1
    await ms.update(y=2, persist=True)  # written before the transaction: it will conflict
    assert dict(ms.data) == {"x": 1, "y": 2}  # the staged change is still in the view
    with pytest.raises(SessionConflictError):
        await tx.commit()
    assert dict(ms.data) == {"x": 1, "y": 2} and ms.dirty
    await ms.persist()
    assert (await store.get_session(ms.id)).data == {"x": 1, "y": 2}  # type: ignore[union-attr]
