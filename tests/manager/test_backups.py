"""Backups through the manager: on demand, scheduled on the store's clock, with retention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sessionstore_memory import MemoryStore

import sessionstore
from sessionstore import ConfigurationError, ManagerConfig, ManualClock, SessionPersistenceManager

from .conftest import eventually


class _Seen:
    def __init__(self) -> None:
        self.infos: list[Any] = []

    @sessionstore.hookimpl
    def sessionstore_backup_created(self, info: Any) -> None:
        self.infos.append(info)


@pytest.mark.asyncio
async def test_scheduled_backups_with_retention(tmp_path: Path) -> None:
    clock = ManualClock()
    seen = _Seen()
    sessionstore.plugin_manager().register(seen)
    try:
        config = ManagerConfig(backup_interval=60, backup_dir=tmp_path / "bk", max_backups=2)
        async with SessionPersistenceManager(MemoryStore(clock=clock), config=config) as manager:
            ms = await manager.create_managed_session(processor_id="p", data={"n": 1})
            loops = manager._supervisor

            def runs() -> int:
                return {t.name: t for t in loops.statuses()}["backup"].runs

            def ran(done: int) -> Callable[[], bool]:
                return lambda: runs() == done

            def asleep(done: int) -> Callable[[], bool]:
                return lambda: runs() == done and clock.sleepers == len(loops.statuses())

            for step in range(3):
                await ms.add_interaction({"step": step})
                # Time moves only once every loop sleeps on the clock again, the backup
                # loop after the whole of its previous run (its hook fires and its file is
                # listed before it prunes): moved during that run, the tick was lost, as
                # the loop's next sleep counts from after it (a loaded machine).
                await eventually(asleep(step), within=30)
                before = len(seen.infos)
                clock.advance(60)
                await eventually(ran(step + 1), within=30)
                assert len(seen.infos) == before + 1, f"one backup after tick {step}"
                assert len(await manager.list_backups()) == min(step + 1, 2)
            backups = await manager.list_backups()
            assert len(backups) == 2  # retention kept the newest two
            assert all(b.complete for b in backups)
            assert backups[-1].sessions == 1
            health = await manager.health_check()
            assert health.healthy, health.issues
    finally:
        sessionstore.plugin_manager().unregister(seen)


@pytest.mark.asyncio
async def test_backup_and_restore_on_demand(tmp_path: Path) -> None:
    async with SessionPersistenceManager(MemoryStore()) as source:
        ms = await source.create_managed_session(data={"k": "v"})
        await ms.add_interaction({"hello": 1})
        info = await source.create_backup(tmp_path / "one.jsonl.gz")
        assert info.sessions == 1
    async with SessionPersistenceManager(MemoryStore()) as target:
        result = await target.restore_from_backup(tmp_path / "one.jsonl.gz")
        assert result.to_dict()["restored"] == 1
        again = await target.load_managed_session(ms.id)
        assert again.data == {"k": "v"}
        events = await target.store.get_events(ms.id)
        assert len(events) == 1


@pytest.mark.asyncio
async def test_backup_needs_a_destination() -> None:
    async with SessionPersistenceManager(MemoryStore()) as manager:
        with pytest.raises(ConfigurationError):
            await manager.create_backup()
