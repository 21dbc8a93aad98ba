"""Any store that offers ``StorePrimitives`` is backed up, restored, migrated and batched,
not only a ``BaseSessionStore``; the base store's ``_``-methods are nobody else's business."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sessionstore_memory import MemoryStore

from sessionstore import (
    BaseSessionStore,
    ConfigurationError,
    InvalidArgumentError,
    ManualClock,
    SessionPersistenceManager,
    SessionRecord,
    SessionStore,
)
from sessionstore.backup import create_backup, migrate, restore_from_backup
from sessionstore.driver import Mutation, Prepared, StorePrimitives, primitives_of
from sessionstore.transaction import Transaction

ROOT = Path(__file__).resolve().parent.parent


class CountingPrimitives:
    """Primitives of its own (not a base store's): forwards, counting what is used."""

    def __init__(self, inner: StorePrimitives) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> StorePrimitives:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.inner

    @property
    def limits(self) -> Any:
        return self.inner.limits

    @property
    def clock(self) -> Any:
        return self.inner.clock

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    def check_open(self) -> None:
        self._count("check_open").check_open()

    async def load(self, session_ids: Sequence[str]) -> Any:
        return await self._count("load").load(session_ids)

    async def apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        await self._count("apply").apply(mutations, atomic=atomic)

    async def load_events(self, session_id: str, **window: Any) -> Any:
        return await self._count("load_events").load_events(session_id, **window)

    async def load_checkpoint(self, session_id: str, checkpoint_id: str) -> Any:
        return await self._count("load_checkpoint").load_checkpoint(session_id, checkpoint_id)

    async def load_checkpoints(self, session_id: str) -> Any:
        return await self._count("load_checkpoints").load_checkpoints(session_id)

    async def load_checkpoints_many(self, session_ids: Sequence[str]) -> Any:
        return await self._count("load_checkpoints_many").load_checkpoints_many(session_ids)

    def iter_sessions(self) -> AsyncIterator[Any]:
        return self._count("iter_sessions").iter_sessions()

    def report_corrupt(self, error: Any) -> None:
        self._count("report_corrupt").report_corrupt(error)

    def after_write(self, mutations: Sequence[Mutation]) -> None:
        self._count("after_write").after_write(mutations)

    async def commit_prepared(self, prepared: Sequence[Prepared]) -> Any:
        return await self._count("commit_prepared").commit_prepared(prepared)


class WrappedStore:
    """A store that implements the protocol by delegation (a metrics or caching layer),
    not a ``BaseSessionStore``; nothing private of it can be reached from outside."""

    def __init__(self, inner: BaseSessionStore, *, offer: bool = True) -> None:
        self._inner = inner
        if offer:
            self.primitives = CountingPrimitives(inner.primitives)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "primitives":  # primitives: only if offered
            raise AttributeError(name)
        return getattr(self._inner, name)

    def transaction(self) -> Transaction:
        return Transaction(self)

    async def __aenter__(self) -> WrappedStore:
        await self._inner.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.shutdown()


def _wrapped(clock: ManualClock, namespace: str, *, offer: bool = True) -> WrappedStore:
    return WrappedStore(MemoryStore(namespace=namespace, clock=clock), offer=offer)


async def _records(store: Any) -> dict[str, SessionRecord]:
    return {r.session.id: r async for r in store.scan(include_expired=True)}


async def _fill(store: Any, clock: ManualClock) -> None:
    for i in range(5):
        s = await store.create_session(id=f"w{i}", data={"i": i}, ttl=100)
        await store.append_events(s.id, [{"type": "e", "data": {"n": n}} for n in range(i + 1)])
        await store.save_checkpoint(s.id, label="c")
        clock.advance(1)


@pytest.mark.asyncio
async def test_a_store_that_is_no_base_store_backs_up_and_restores(tmp_path: Path) -> None:
    clock = ManualClock()
    async with _wrapped(clock, "a") as src, _wrapped(clock, "b") as dst:
        assert isinstance(src, SessionStore)
        assert not isinstance(src._inner.primitives, type(src.primitives))
        assert BaseSessionStore not in type(src).__mro__
        await _fill(src, clock)
        info = await create_backup(src, tmp_path / "w.jsonl")
        assert info.sessions == 5
        assert src.primitives.calls["load_events"] >= 1
        assert src.primitives.calls["load_checkpoints_many"] >= 1
        result = await restore_from_backup(dst, info.path)
        assert result.restored == 5
        assert dst.primitives.calls["apply"] >= 1 and dst.primitives.calls["after_write"] >= 1
        assert await _records(dst) == await _records(src)


@pytest.mark.asyncio
async def test_a_store_that_is_no_base_store_migrates(tmp_path: Path) -> None:
    clock = ManualClock()
    async with _wrapped(clock, "a") as src, _wrapped(clock, "b") as dst:
        await _fill(src, clock)
        result = await migrate(src, dst, checkpoint_file=tmp_path / "state.json")
        assert result.restored == 5
        assert await _records(dst) == await _records(src)


@pytest.mark.asyncio
async def test_a_store_that_is_no_base_store_runs_transactions() -> None:
    clock = ManualClock()
    async with _wrapped(clock, "a") as store:
        async with store.transaction() as tx:
            sid = await tx.create_session(data={"x": 1})
            await tx.append_events(sid, [{"type": "e", "data": {}}])
        assert store.primitives.calls["commit_prepared"] == 1
        assert (await store.get_session(sid)).event_count == 1


@pytest.mark.asyncio
async def test_the_manager_backs_up_any_store_with_primitives(tmp_path: Path) -> None:
    clock = ManualClock()
    async with _wrapped(clock, "a") as store:
        await _fill(store, clock)
        manager = SessionPersistenceManager(store)
        await manager.initialize()
        try:
            info = await manager.create_backup(tmp_path / "m.jsonl")
            assert info.sessions == 5
            restored = await manager.restore_from_backup(info.path, merge_strategy="overwrite")
            assert restored.overwritten == 5
        finally:
            await manager.shutdown()


@pytest.mark.asyncio
async def test_a_store_without_primitives_is_refused_clearly(tmp_path: Path) -> None:
    clock = ManualClock()
    async with _wrapped(clock, "a", offer=False) as store:
        with pytest.raises(InvalidArgumentError, match="StorePrimitives"):
            await create_backup(store, tmp_path / "x.jsonl")
        with pytest.raises(ConfigurationError, match="StorePrimitives"):
            primitives_of(store)
        manager = SessionPersistenceManager(store)
        await manager.initialize()
        try:
            with pytest.raises(ConfigurationError, match="StorePrimitives"):
                await manager.create_backup(tmp_path / "m.jsonl")
        finally:
            await manager.shutdown()


def test_the_base_store_notifies_observers_without_the_registry() -> None:
    tree = ast.parse((ROOT / "sessionstore" / "base.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "registry" not in imported and "observers" in imported
