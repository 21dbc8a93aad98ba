"""get_stats, health_check, optimize, get_session_summary."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sessionstore import ManagerConfig, SessionPersistenceManager, SessionStore, Status

from .conftest import QUIET, MakeManager, StoreFactory

pytestmark = pytest.mark.asyncio


async def test_stats_over_paged_scan(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(dataclasses.replace(QUIET, page_size=3))
    await store.create_session(processor_id="plain")  # unmanaged, no iterations
    done = []
    for n in range(4):
        ms = await manager.create_managed_session(processor_id=f"agent-{n % 2}")
        for _ in range(n + 1):
            await ms.next_iteration()
        await ms.add_interaction({"n": n})
        done.append(ms)
    await done[0].complete()
    await done[1].complete()
    await done[2].fail("boom")
    await done[3].pause()
    stats = await manager.get_stats()
    assert stats.total == 5 and stats.active == 1 and stats.managed == 4
    assert stats.by_status["completed"] == 2 and stats.by_status["failed"] == 1
    assert stats.by_status["paused"] == 1 and stats.by_status["timeout"] == 0
    assert stats.by_processor == {"agent-0": 2, "agent-1": 2, "plain": 1}
    assert stats.success_rate == pytest.approx(2 / 3)
    assert stats.average_iterations == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert stats.interactions == 4 + 4  # 4 interactions + 4 lifecycle events
    assert stats.live_managed == 4 and stats.dirty == 0
    assert stats.counters.created == 4 and stats.counters.writes >= 8
    empty = await (await make_manager(QUIET, await store_factory.open())).get_stats()
    assert empty.total == 5  # same data set, another manager: its own counters
    assert empty.counters.created == 0


async def test_stats_on_an_empty_store(manager: SessionPersistenceManager) -> None:
    stats = await manager.get_stats()
    assert stats.total == 0 and stats.success_rate is None and stats.average_iterations is None


async def test_health_check_healthy_and_store_unreachable(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    own = await store_factory.open()
    manager = await make_manager(ManagerConfig(persist_interval=5), own)
    report = await manager.health_check()
    assert report.healthy and report.issues == [] and report.store_reachable
    assert {t.name for t in report.tasks} == {"auto-persist", "cleanup"}
    assert all(t.running for t in report.tasks)
    ms = await manager.create_managed_session()
    await ms.update(x=1)
    report = await manager.health_check()
    assert report.healthy and report.pending_sessions == 1 and report.pending_changes == 1
    assert report.oldest_pending_seconds == 0
    await own.shutdown()  # the store goes away under the manager
    report = await manager.health_check()
    assert not report.healthy and not report.store_reachable
    assert any("store unreachable" in issue for issue in report.issues)


async def test_health_reports_a_failed_write_and_the_last_error(
    manager: SessionPersistenceManager, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sessionstore import StoreUnavailableError

    ms = await manager.create_managed_session()

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("connection refused")

    monkeypatch.setattr(store, "append_events", down)
    with pytest.raises(StoreUnavailableError):
        await ms.add_interaction({"x": 1})
    assert ms.dirty and ms.blocked is None  # transient: kept, retried on the next write
    report = await manager.health_check()
    assert not report.healthy
    assert report.last_error is not None and "connection refused" in report.last_error
    assert any("last write failed" in issue for issue in report.issues)
    monkeypatch.undo()
    await ms.persist()
    assert (await manager.health_check()).healthy


async def test_optimize_reports_what_it_did(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    ms = await manager.create_managed_session(ttl=5)
    keep = await manager.create_managed_session()
    await keep.update(x=1)
    store_factory.clock.advance(10)
    report = await manager.optimize()
    assert report.persisted == 1 and report.expired_removed == 1
    assert await store.get_session(ms.id, include_expired=True) is None
    if not hasattr(store, "optimize"):
        assert not report.driver_supported and "offers no optimize()" in report.actions[-1]
    calls: list[str] = []

    async def driver_optimize() -> dict[str, int]:
        calls.append("called")
        return {"reindexed": 1}

    object.__setattr__(store, "optimize", driver_optimize)
    report = await manager.optimize()
    assert calls == ["called"] and report.driver_supported
    assert report.driver_report == {"reindexed": 1}
    assert "reindexed" in report.actions[-1]


async def test_session_summary(
    manager: SessionPersistenceManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    ms = await manager.create_managed_session(processor_id="a", max_iterations=9)
    await ms.next_iteration()
    await ms.add_interaction()
    await ms.checkpoint()
    await ms.claim("w1", ttl=60)
    await ms.update(pending=1)
    store_factory.clock.advance(42)
    summary = await manager.get_session_summary(ms.id)
    assert summary.age_seconds == 42 and summary.interactions == 1
    assert summary.managed and summary.live and summary.checkpoints == 1
    assert summary.iterations == 1 and summary.max_iterations == 9
    assert summary.lease_owner == "w1" and summary.pending_changes == 1
    assert summary.status is Status.ACTIVE
    plain = await store.create_session()
    other = await manager.get_session_summary(plain.id)
    assert not other.managed and not other.live and other.iterations == 0
