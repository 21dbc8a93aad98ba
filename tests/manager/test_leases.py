"""Leases: one worker at a time, built on CAS, the version as fencing token."""

from __future__ import annotations

import asyncio

import pytest

from sessionstore import (
    InvalidArgumentError,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    SessionNotFoundError,
    SessionPersistenceManager,
    SessionStore,
)
from sessionstore.manager import LeaseError

from .conftest import QUIET, MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio


async def two_workers(
    make_manager: MakeManager, store_factory: StoreFactory
) -> tuple[SessionPersistenceManager, SessionPersistenceManager]:
    a = await make_manager()
    b = await make_manager(QUIET, await store_factory.open())
    return a, b


async def test_claim_renew_release(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    clock = store_factory.clock
    ms = await manager.create_managed_session()
    lease = await manager.claim(ms.id, "worker-1", ttl=30)
    assert isinstance(lease, Lease)
    assert lease.owner == "worker-1" and lease.token == 2  # the version the claim wrote
    assert lease.remaining(clock.now()) == 30
    s = await store.get_session(ms.id)
    assert s is not None and s.version == lease.token
    assert s.metadata["_manager"]["lease"]["owner"] == "worker-1"
    clock.advance(20)
    renewed = await manager.renew(lease, ttl=30)
    assert renewed.token == lease.token and renewed.remaining(clock.now()) == 30
    assert await manager.release(renewed)
    s = await store.get_session(ms.id)
    assert s is not None and "lease" not in s.metadata["_manager"]
    assert not await manager.release(renewed)  # not held any more: nothing written
    summary = await manager.get_session_summary(ms.id)
    assert summary.lease_owner is None


async def test_a_held_lease_refuses_other_owners_until_it_expires(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    a, b = await two_workers(make_manager, store_factory)
    ms = await a.create_managed_session()
    first = await a.claim(ms.id, "a", ttl=30)
    with pytest.raises(LeaseHeldError) as err:
        await b.claim(ms.id, "b", ttl=30)
    assert err.value.holder == "a"
    again = await a.claim(ms.id, "a", ttl=30)  # re-claim by the holder: a new token
    assert again.token > first.token
    store_factory.clock.advance(31)
    taken = await b.claim(ms.id, "b", ttl=30)  # expired: can be taken over
    assert taken.owner == "b" and taken.token > again.token
    with pytest.raises(LeaseLostError):
        await a.renew(again)
    summary = await b.get_session_summary(ms.id)
    assert summary.lease_owner == "b"


async def test_writes_of_a_worker_whose_lease_was_taken_over_are_refused(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    a, b = await two_workers(make_manager, store_factory)
    created = await a.create_managed_session(data={"owner": "nobody"})
    ms_a = await a.load_managed_session(created.id)
    lease_a = await ms_a.claim("a", ttl=10)
    await ms_a.update(owner="a")
    await ms_a.add_interaction({"by": "a"})
    # worker a stalls; its lease runs out and worker b takes over
    store_factory.clock.advance(11)
    ms_b = await b.load_managed_session(created.id)
    await ms_b.claim("b", ttl=10)
    await ms_b.add_interaction({"by": "b"})
    # a wakes up and tries to write: refused (fenced), nothing written
    with pytest.raises(LeaseLostError) as err:
        await ms_a.add_interaction({"by": "a", "late": True})
    assert err.value.holder == "b"
    events = await store.get_events(created.id)
    assert [e.data["by"] for e in events] == ["a", "b"]
    with pytest.raises(LeaseLostError):
        await ms_a.update(x=1)  # blocked until it reloads (and claims again)
    assert ms_a.lease == lease_a
    assert await ms_a.release_lease() is False  # a lost lease: nothing written
    assert [ms_a.lease, ms_a.dirty] == [None, True]


async def test_a_writer_without_the_lease_is_refused_while_it_is_held(
    make_manager: MakeManager, store_factory: StoreFactory, store: SessionStore
) -> None:
    a, b = await two_workers(make_manager, store_factory)
    ms_a = await a.create_managed_session()
    await ms_a.claim("a", ttl=10)
    ms_b = await b.load_managed_session(ms_a.id)
    with pytest.raises(LeaseHeldError):
        await ms_b.add_interaction({"sneaky": True})
    s = await store.get_session(ms_a.id)
    assert s is not None and s.event_count == 0
    await ms_a.add_interaction({"ok": True})
    await ms_a.release_lease()
    await ms_b.reload()
    await ms_b.add_interaction({"now": "free"})
    s = await store.get_session(ms_a.id)
    assert s is not None and s.event_count == 2


async def test_claiming_keeps_pending_changes_of_the_managed_session(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    await ms.update(step=1)
    await ms.claim("me", ttl=30)
    assert ms.dirty and ms.version == 2
    await ms.renew_lease(60)
    await ms.persist()
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"step": 1}
    assert s.metadata["_manager"]["lease"]["owner"] == "me"


async def test_only_one_of_many_concurrent_claims_wins(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    managers = [await make_manager(QUIET, await store_factory.open()) for _ in range(4)]
    sid = (await managers[0].create_managed_session()).id

    async def claim(i: int) -> str | None:
        try:
            return (await managers[i].claim(sid, f"w{i}", ttl=30)).owner
        except LeaseHeldError:
            return None

    winners = [w for w in await asyncio.gather(*(claim(i) for i in range(4))) if w]
    assert len(winners) == 1


async def test_bad_lease_arguments(manager: SessionPersistenceManager) -> None:
    ms = await manager.create_managed_session()
    with pytest.raises(InvalidArgumentError):
        await manager.claim(ms.id, "", ttl=5)
    with pytest.raises(InvalidArgumentError):
        await manager.claim(ms.id, "w", ttl=-1)
    with pytest.raises(SessionNotFoundError):
        await manager.claim("missing", "w")
    with pytest.raises(LeaseError):
        await ms.renew_lease()
    other = await manager.create_managed_session()
    lease = await manager.claim(other.id, "w")
    with pytest.raises(InvalidArgumentError):
        await manager.load_managed_session(ms.id, lease=lease)
