"""Manager operations go through the store, so the plugin hooks see them; a failing
observer never breaks a write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import sessionstore
from sessionstore import (
    Checkpoint,
    ManagedSessionConflictError,
    Session,
    SessionPersistenceManager,
    SessionStore,
)

from .conftest import StoreFactory

pytestmark = pytest.mark.asyncio


class Recorder:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @sessionstore.hookimpl
    def sessionstore_session_created(self, store: Any, session: Session) -> None:
        self.counts["created"] += 1

    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        self.counts["updated"] += 1

    @sessionstore.hookimpl
    def sessionstore_session_deleted(self, store: Any, session_id: str) -> None:
        self.counts["deleted"] += 1

    @sessionstore.hookimpl
    def sessionstore_session_expired(self, store: Any, session_id: str) -> None:
        self.counts["expired"] += 1

    @sessionstore.hookimpl
    def sessionstore_conflict(
        self, store: Any, session_id: str, expected: int, actual: int
    ) -> None:
        self.counts["conflict"] += 1

    @sessionstore.hookimpl
    def sessionstore_checkpoint_created(self, store: Any, checkpoint: Checkpoint) -> None:
        self.counts["checkpoint"] += 1


class Broken:
    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        raise RuntimeError("observer bug")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec, broken = Recorder(), Broken()
    pm = sessionstore.plugin_manager()
    pm.register(broken)
    pm.register(rec)
    yield rec
    pm.unregister(rec)
    pm.unregister(broken)


async def test_manager_operations_fire_the_store_hooks(
    recorder: Recorder,
    manager: SessionPersistenceManager,
    store_factory: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ms = await manager.create_managed_session(ttl=100)
    await ms.add_interaction({"a": 1})  # one append: updated
    await ms.update(x=1)
    await ms.add_interaction({"a": 2})  # one commit (update + append): one atomic write
    await ms.checkpoint("cp")
    other: SessionStore = await store_factory.open()
    await other.update_session(ms.id, merge_data={"y": 1})
    with pytest.raises(ManagedSessionConflictError):
        await ms.add_interaction({"a": 3})
    await ms.reload()
    doomed = await manager.create_managed_session()
    await manager.delete_session(doomed.id)
    store_factory.clock.advance(200)
    await manager.cleanup_expired_sessions()
    assert recorder.counts == {
        "created": 2,
        "updated": 3,  # the two flushes and the other writer's update
        "checkpoint": 1,
        "conflict": 1,
        "deleted": 2,
        "expired": 1,
    }
    assert "observer bug" in caplog.text  # logged, and every write above went through
