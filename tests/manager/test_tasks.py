"""Supervised background loops and a shutdown that always persists what it can."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessionstore import (
    ManagedSessionConflictError,
    ManagerConfig,
    SessionPersistenceManager,
    SessionStore,
    StoreUnavailableError,
)

from .conftest import MakeManager, StoreFactory, advance, eventually

pytestmark = pytest.mark.asyncio

INTERVAL = ManagerConfig(
    persist_on_interaction=False, persist_interval=10, cleanup_enabled=False, task_restart_delay=1
)


def task(manager: SessionPersistenceManager, name: str) -> Any:
    return {t.name: t for t in manager._supervisor.statuses()}[name]


async def test_a_crashed_loop_is_logged_reported_and_restarted(
    make_manager: MakeManager,
    store: SessionStore,
    store_factory: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = store_factory.clock
    manager = await make_manager(INTERVAL)
    real = manager._persist_all
    calls = 0

    async def flaky() -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await real()

    monkeypatch.setattr(manager, "_persist_all", flaky)
    ms = await manager.create_managed_session()
    await ms.add_interaction({"n": 1})
    await advance(clock, 10)
    await eventually(lambda: task(manager, "auto-persist").failures == 1)
    assert "background task 'auto-persist' crashed" in caplog.text
    report = await manager.health_check()
    assert not report.healthy
    assert any("auto-persist" in i and "disk on fire" in i for i in report.issues)
    assert ms.dirty
    await advance(clock, 1)  # the restart delay
    await advance(clock, 10)  # the next tick of the restarted loop
    await eventually(lambda: task(manager, "auto-persist").runs == 1)
    assert ms.pending_changes == 0
    status = task(manager, "auto-persist")
    assert status.restarts == 1 and status.consecutive_failures == 0 and status.runs == 1
    assert (await manager.health_check()).healthy
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.event_count == 1


async def test_a_dead_loop_is_restarted_by_the_health_check(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    manager = await make_manager(INTERVAL)
    loop = manager._supervisor._loops["auto-persist"]
    assert loop.task is not None
    loop.task.cancel()
    await asyncio.gather(loop.task, return_exceptions=True)
    report = await manager.health_check()
    assert any("was not running (restarted)" in i for i in report.issues)
    assert task(manager, "auto-persist").running
    assert (await manager.health_check()).healthy


async def test_shutdown_cancels_loops_and_flushes(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(
        ManagerConfig(persist_on_interaction=False, persist_interval=10, cleanup_interval=60)
    )
    ms = await manager.create_managed_session()
    for n in range(5):
        await ms.add_interaction({"n": n})
    await eventually(lambda: store_factory.clock.sleepers == 2)
    report = await manager.shutdown()
    assert report.ok and report.written == 1
    assert store_factory.clock.sleepers == 0
    assert not any(t.running for t in manager._supervisor.statuses())
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.event_count == 5
    assert await manager.shutdown() is report  # twice: same report, nothing more to do
    assert not manager.running


async def test_shutdown_after_an_error_in_the_block_still_flushes(
    store: SessionStore,
) -> None:
    with pytest.raises(RuntimeError, match="agent crashed"):
        async with SessionPersistenceManager(store, config=INTERVAL) as manager:
            ms = await manager.create_managed_session()
            await ms.add_interaction({"last": "words"})
            raise RuntimeError("agent crashed")
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.event_count == 1


async def test_shutdown_retries_after_a_transient_failure(
    make_manager: MakeManager, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = await make_manager(INTERVAL)
    ms = await manager.create_managed_session()
    await ms.add_interaction({"n": 1})

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("connection reset")

    monkeypatch.setattr(store, "append_events", down)
    with pytest.raises(StoreUnavailableError, match="call shutdown"):
        await manager.shutdown()
    assert (ms.dirty, ms.closed) == (True, False)
    monkeypatch.undo()
    report = await manager.shutdown()
    assert (report.ok, ms.closed) == (True, True)
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.event_count == 1


async def test_shutdown_reports_changes_it_may_not_write(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(INTERVAL)
    ms = await manager.create_managed_session()
    await ms.update(x=1)
    other = await store_factory.open()
    await other.update_session(ms.id, merge_data={"x": 2})
    report = await manager.shutdown()  # a conflict: never overwritten, reported
    assert not report.ok and "ManagedSessionConflictError" in report.failed[ms.id]
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.data == {"x": 2}
    assert isinstance(ms.blocked, ManagedSessionConflictError)


async def test_a_cancelled_caller_does_not_desynchronise_the_session(
    manager: SessionPersistenceManager, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ms = await manager.create_managed_session()
    real = store.append_events

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.01)
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "append_events", slow)
    caller = asyncio.create_task(ms.add_interaction({"n": 1}))
    await asyncio.sleep(0.001)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await manager._tracker.wait_inflight()  # the write itself was not interrupted
    stored = await store.get_session(ms.id)
    assert stored is not None and stored.event_count == 1
    assert ms.version == stored.version and not ms.dirty
    await ms.add_interaction({"n": 2})  # no spurious conflict
    assert ms.event_count == 2
