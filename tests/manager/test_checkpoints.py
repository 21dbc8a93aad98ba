"""Checkpoints of managed sessions: snapshot, list, verified restore, pruning."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from sessionstore import (
    Checkpoint,
    IntegrityError,
    ManagerConfig,
    SessionPersistenceManager,
    SessionStore,
    Status,
    UnsupportedFormatError,
)

from .conftest import MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio


async def test_checkpoint_persists_pending_then_snapshots(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"step": 1})
    await ms.update(step=2)
    cp = await ms.checkpoint("after-step-2")
    assert cp.label == "after-step-2" and cp.data == {"step": 2} and len(cp.digest) == 64
    assert not ms.dirty
    assert [c.id for c in await ms.list_checkpoints()] == [cp.id]


async def test_restore_brings_state_back_keeps_events_and_records_it(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"step": 1}, tags={"a"})
    cp = await ms.checkpoint("start")
    await ms.update(step=9, add_tags={"b"})
    await ms.add_interaction({"n": 1})
    await ms.pause()
    session = await ms.restore_checkpoint(cp.id)
    assert session.data == {"step": 1} and session.tags == {"a"}
    assert session.status is Status.ACTIVE
    assert dict(ms.data) == {"step": 1} and ms.status is Status.ACTIVE
    events = await store.get_events(ms.id)
    assert [e.type for e in events] == ["interaction", "lifecycle", "checkpoint_restored"]
    assert events[-1].data == {"checkpoint_id": cp.id, "label": "start", "version": cp.version}


async def test_restore_verifies_the_digest(
    manager: SessionPersistenceManager, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ms = await manager.create_managed_session(data={"secret": "good"})
    cp = await ms.checkpoint()
    await ms.update(secret="newer", persist=True)
    real = type(store)._load_checkpoint  # type: ignore[attr-defined]

    async def tampered(self: Any, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        c = await real(self, session_id, checkpoint_id)
        return None if c is None else dataclasses.replace(c, data={"secret": "evil"})

    # get_checkpoint (and so restore) reads the one checkpoint through this primitive
    monkeypatch.setattr(type(store), "_load_checkpoint", tampered)
    with pytest.raises(IntegrityError):
        await ms.restore_checkpoint(cp.id)
    monkeypatch.undo()
    s = await store.get_session(ms.id)
    assert s is not None and s.data == {"secret": "newer"}  # nothing written


async def test_keep_last_prunes_old_checkpoints(make_manager: MakeManager) -> None:
    manager = await make_manager(ManagerConfig(checkpoint_keep_last=2, persist_interval=None))
    ms = await manager.create_managed_session()
    labels = []
    for n in range(4):
        await ms.update(n=n)
        labels.append((await ms.checkpoint(f"cp{n}")).label)
    assert [c.label for c in await ms.list_checkpoints()] == ["cp2", "cp3"]
    await ms.checkpoint("one-off", keep_last=1)
    assert [c.label for c in await ms.list_checkpoints()] == ["one-off"]


async def test_restore_keeps_the_current_lease(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    cp = await ms.checkpoint()  # no lease at that time
    lease = await ms.claim("worker-1", ttl=60)
    await ms.restore_checkpoint(cp.id)
    s = await store.get_session(ms.id)
    assert s is not None and s.metadata["_manager"]["lease"]["owner"] == "worker-1"
    assert ms.lease == lease
    await ms.add_interaction()  # the fenced writer can still write


async def test_restore_keeps_counting_iterations(manager: SessionPersistenceManager) -> None:
    ms = await manager.create_managed_session(max_iterations=4)
    await ms.next_iteration()
    cp = await ms.checkpoint()
    for _ in range(3):  # a loop that keeps failing and rolling back still meets its limit
        assert await ms.next_iteration()
        await ms.restore_checkpoint(cp.id)
    assert ms.iterations == 4 and ms.max_iterations == 4
    assert not await ms.next_iteration()
    assert ms.status is Status.TIMEOUT


async def test_restore_refuses_a_checkpoint_of_a_newer_format(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    if store_factory.kind != "memory":
        pytest.skip("edits the memory driver's stored record bytes")
    ms = await manager.create_managed_session(data={"a": 1})
    cp = await ms.checkpoint()
    records = store._space.checkpoints[ms.id]  # type: ignore[attr-defined]
    record = orjson.loads(records[cp.id])
    record["v"] = 99
    records[cp.id] = orjson.dumps(record)
    with pytest.raises(UnsupportedFormatError):
        await ms.restore_checkpoint(cp.id)
