"""Lifecycle: pause/resume/complete/fail, iteration limits, history as events."""

from __future__ import annotations

import pytest

from sessionstore import (
    LifecycleError,
    ManagerConfig,
    SessionPersistenceManager,
    SessionStore,
    Status,
)

from .conftest import QUIET, MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio


async def lifecycle_events(store: SessionStore, sid: str) -> list[tuple[str, str]]:
    return [
        (e.data["from"], e.data["to"]) for e in await store.get_events(sid) if e.type == "lifecycle"
    ]


async def test_pause_resume_complete_are_persisted_and_recorded(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    await ms.add_interaction({"q": 1}, persist=False)
    session = await ms.pause("waiting for the user")
    assert session.status is Status.PAUSED and session.event_count == 2  # pending went too
    assert (ms.is_resumable, ms.is_active, ms.is_finished) == (True, False, False)
    await ms.resume()
    assert (ms.is_active, ms.is_resumable) == (True, False)
    await ms.complete({"answer": 42})
    s = await store.get_session(ms.id)
    assert s is not None and s.status is Status.COMPLETED
    assert s.metadata["_manager"]["result"] == {"answer": 42}
    assert ms.result == {"answer": 42} and ms.is_finished
    assert await lifecycle_events(store, ms.id) == [
        ("active", "paused"),
        ("paused", "active"),
        ("active", "completed"),
    ]
    events = await store.get_events(ms.id)
    assert events[1].data["reason"] == "waiting for the user"
    assert events[-1].data["result"] == {"answer": 42}


async def test_fail_records_the_error(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    await ms.fail(ValueError("tool exploded"))
    assert ms.status is Status.FAILED
    assert ms.error == {"type": "ValueError", "message": "tool exploded"}
    s = await store.get_session(ms.id)
    assert s is not None and s.metadata["_manager"]["error"]["message"] == "tool exploded"
    other = await manager.create_managed_session()
    await other.fail("plain text")
    assert other.error == {"type": "error", "message": "plain text"}


async def test_invalid_transitions_are_refused_and_write_nothing(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    with pytest.raises(LifecycleError):
        await ms.resume()  # not paused
    await ms.complete()
    for call in (ms.pause(), ms.resume(), ms.complete(), ms.fail("x")):
        with pytest.raises(LifecycleError):
            await call
    with pytest.raises(LifecycleError):
        await ms.next_iteration()
    with pytest.raises(LifecycleError):
        await ms.set_status("expired")
    s = await store.get_session(ms.id)
    assert s is not None and s.status is Status.COMPLETED
    assert await lifecycle_events(store, ms.id) == [("active", "completed")]
    assert not ms.dirty


async def test_iteration_limit_leads_to_timeout(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(max_iterations=3)
    results = [await ms.next_iteration() for _ in range(3)]
    assert results == [True, True, True] and ms.iterations == 3
    assert await ms.next_iteration() is False
    assert ms.status is Status.TIMEOUT and not ms.is_resumable
    s = await store.get_session(ms.id)
    assert s is not None and s.status is Status.TIMEOUT
    assert s.metadata["_manager"]["iterations"] == 3
    timeout = (await store.get_events(ms.id))[-1]
    assert timeout.data == {"from": "active", "to": "timeout", "iterations": 3, "max_iterations": 3}
    with pytest.raises(LifecycleError):
        await ms.resume()  # a timeout needs a higher limit
    with pytest.raises(LifecycleError):
        await ms.resume(max_iterations=3)
    await ms.resume(max_iterations=5)
    assert ms.is_active and ms.max_iterations == 5
    assert await ms.next_iteration() and ms.iterations == 4


async def test_default_max_iterations_from_config(make_manager: MakeManager) -> None:
    manager = await make_manager(ManagerConfig(max_iterations=1, persist_interval=None))
    ms = await manager.create_managed_session()
    assert ms.max_iterations == 1
    assert await ms.next_iteration() and not await ms.next_iteration()
    unlimited = await manager.create_managed_session(max_iterations=None)
    assert unlimited.max_iterations is None
    await unlimited.set_max_iterations(7)
    assert unlimited.max_iterations == 7


async def test_set_status_escape_hatch(manager: SessionPersistenceManager) -> None:
    ms = await manager.create_managed_session()
    await ms.set_status(Status.TIMEOUT, reason="operator")
    await ms.set_status("active")
    assert ms.is_active


async def test_lifecycle_survives_a_restart(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    first = await make_manager()
    ms = await first.create_managed_session(max_iterations=10, data={"step": 0})
    for step in range(1, 4):
        assert await ms.next_iteration()
        await ms.update(step=step)
        await ms.add_interaction({"step": step})
    await ms.pause("deploy")
    await first.shutdown()

    second = await make_manager(QUIET, await store_factory.open())
    again = await second.load_managed_session(ms.id)
    assert again.is_resumable and again.iterations == 3 and again.data["step"] == 3
    await again.resume()
    assert await again.next_iteration() and again.iterations == 4
    await again.complete("done")
    assert again.result == "done"
