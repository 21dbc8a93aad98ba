"""The optional ``_load_checkpoints_many`` primitive: its default, and backup's use of it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sessionstore_memory import MemoryStore

from sessionstore import Capabilities, Checkpoint, ManualClock, StoreUnavailableError
from sessionstore.backup import create_backup, restore_from_backup

from .conftest import populate, snapshot

pytestmark = pytest.mark.asyncio


class Counting(MemoryStore):
    """Records the checkpoint reads; ``io=True`` declares a durable store (I/O driver)."""

    def __init__(self, *, io: bool = False, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.io = io
        self.many: list[list[str]] = []
        self.single: list[str] = []

    @property
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities, durable=True) if self.io else super().capabilities

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        self.single.append(session_id)
        await asyncio.sleep(0)
        return await super()._load_checkpoints(session_id)

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        self.many.append(list(session_ids))
        return await super()._load_checkpoints_many(session_ids)


class OneCall(Counting):
    """A driver's override: everything in one call, sessions without checkpoints left out."""

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        self.many.append(list(session_ids))
        found = {}
        for sid in session_ids:
            cps = await MemoryStore._load_checkpoints(self, sid)
            if cps:
                found[sid] = cps
        return found


@pytest.mark.parametrize("io", [False, True], ids=["in-process", "io-driver"])
async def test_the_default_reads_each_session_s_checkpoints(clock: ManualClock, io: bool) -> None:
    async with Counting(clock=clock, io=io) as store:
        await populate(store, clock)
        ids = ["a-full", "b-bare", "nope", "c-events"]
        store.single.clear()
        got = await store._load_checkpoints_many(ids)
        assert sorted(store.single) == sorted(ids)  # one _load_checkpoints per id
        assert [cp.label for cp in got["a-full"]] == ["first", "second"]
        assert got["b-bare"] == got["nope"] == got["c-events"] == []
        assert await store._load_checkpoints_many([]) == {}


async def test_an_error_in_one_read_cancels_the_others(clock: ManualClock) -> None:
    class Failing(Counting):
        async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
            if session_id == "bad":
                raise StoreUnavailableError("disk gone")
            await asyncio.sleep(3600)  # would hang the test if not cancelled
            return []

    async with Failing(clock=clock, io=True) as store:
        with pytest.raises(StoreUnavailableError, match="disk gone"):
            await store._load_checkpoints_many(["slow-1", "bad", "slow-2"])


@pytest.mark.parametrize("cls", [Counting, OneCall], ids=["default", "override"])
@pytest.mark.parametrize("io", [False, True], ids=["in-process", "io-driver"])
async def test_backup_reads_checkpoints_a_window_at_a_time(
    clock: ManualClock, tmp_path: Path, cls: type[Counting], io: bool
) -> None:
    async with cls(clock=clock, io=io) as source, MemoryStore(clock=clock) as target:
        await populate(source, clock)
        for n in range(40):
            s = await source.create_session(id=f"z-{n:02d}")
            if n % 3 == 0:
                await source.save_checkpoint(s.id, label=f"cp{n}")
        expected = await snapshot(source)
        source.single.clear()
        info = await create_backup(source, tmp_path / "b.jsonl", include_expired=True)
        assert info.checkpoints == 2 + 14
        read = [sid for call in source.many for sid in call]
        assert sorted(read) == sorted(expected)  # every session once, through the hook
        assert all(len(call) <= 16 for call in source.many) and len(source.many) >= 4
        if cls is OneCall:
            assert source.single == []  # nothing read one session at a time
        await restore_from_backup(target, info.path)
        assert await snapshot(target) == expected
