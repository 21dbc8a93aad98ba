"""Expiry through the manager: default ttl, set/extend/refresh, cleanup loop, quota."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessionstore import (
    InvalidArgumentError,
    ManagerConfig,
    QuotaExceededError,
    SessionPersistenceManager,
    SessionStore,
    Status,
)

from .conftest import MakeManager, StoreFactory, advance, eventually

pytestmark = pytest.mark.asyncio


async def test_default_ttl_on_create(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    clock = store_factory.clock
    manager = await make_manager(ManagerConfig(default_ttl=60, persist_interval=None))
    ms = await manager.create_managed_session()
    assert ms.expires_at == clock.now() + timedelta(seconds=60)
    forever = await manager.create_managed_session(ttl=None)
    assert forever.expires_at is None


async def test_set_extend_refresh(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    clock = store_factory.clock
    t0 = clock.now()
    ms = await manager.create_managed_session()
    await ms.update(pending=True)  # stays pending across the manager's own writes
    s = await ms.set_expiration(100)
    assert s.expires_at == t0 + timedelta(seconds=100) and ms.expires_at == s.expires_at
    s = await ms.extend_expiration(50)
    assert s.expires_at == t0 + timedelta(seconds=150)
    clock.advance(10)
    s = await ms.refresh(30)
    assert s.expires_at == t0 + timedelta(seconds=40)
    s = await ms.set_expiration(expires_at=None)
    assert s.expires_at is None
    s = await manager.extend_expiration(ms.id, 5)  # from now when there is none
    assert s.expires_at == t0 + timedelta(seconds=15)
    assert ms.dirty and ms.version == s.version  # adopted: no conflict for its own manager
    await ms.persist()
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.data == {"pending": True}
    with pytest.raises(InvalidArgumentError):
        await ms.set_expiration()
    with pytest.raises(InvalidArgumentError):
        await manager.set_expiration(ms.id, 5, expires_at=None)


async def test_sliding_expiration_on_every_write(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    clock = store_factory.clock
    config = ManagerConfig(default_ttl=60, sliding_expiration=True, persist_interval=None)
    manager = await make_manager(config)
    ms = await manager.create_managed_session()
    clock.advance(50)
    await ms.add_interaction()
    assert ms.expires_at == clock.now() + timedelta(seconds=60)
    clock.advance(50)
    s = await ms.refresh()  # default ttl
    assert s.expires_at == clock.now() + timedelta(seconds=60)


async def test_expire_and_cleanup(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    a = await manager.create_managed_session(ttl=10)
    b = await manager.create_managed_session(ttl=20)
    keep = await manager.create_managed_session()
    store_factory.clock.advance(15)
    assert await manager.expire_sessions() == [a.id]
    expired = await store.get_session(a.id, include_expired=True)
    assert expired is not None and expired.status is Status.EXPIRED
    store_factory.clock.advance(10)
    assert await manager.cleanup_expired_sessions() == 2
    assert await store.get_session(b.id, include_expired=True) is None
    assert await store.get_session(keep.id) is not None


async def test_background_cleanup_runs_on_the_store_clock(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    config = ManagerConfig(cleanup_interval=60, persist_interval=None)
    manager = await make_manager(config)
    ms = await manager.create_managed_session(ttl=30)
    await advance(store_factory.clock, 60)
    await eventually(lambda: manager._supervisor.statuses()[0].runs == 1)
    assert manager._stats.cleaned == 1
    assert await store.get_session(ms.id, include_expired=True) is None
    status = {t.name: t for t in (await manager.health_check()).tasks}["cleanup"]
    assert status.running and status.runs == 1


async def test_max_sessions_quota(make_manager: MakeManager, store: SessionStore) -> None:
    manager = await make_manager(ManagerConfig(max_sessions=2, persist_interval=None))
    await manager.create_managed_session()
    second = await manager.create_managed_session()
    with pytest.raises(QuotaExceededError) as info:
        await manager.create_managed_session()
    assert info.value.option == "max_sessions"
    assert "raise it with the manager option 'max_sessions'" in str(info.value)
    assert await store.count_sessions() == 2
    await manager.delete_session(second.id)
    await manager.create_managed_session()
