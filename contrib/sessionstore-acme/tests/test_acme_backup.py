"""AcmeStore, written only against ``sessionstore.driver``, backs up, restores and migrates."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

from acme_sessionstore import AcmeKV, AcmeStore

from sessionstore import ManualClock, SessionRecord, SessionStore, open_store
from sessionstore.backup import create_backup, migrate, restore_from_backup, verify_backup
from sessionstore.driver import StorePrimitives

PACKAGE = Path(__file__).resolve().parent.parent / "acme_sessionstore"


async def _fill(store: SessionStore, clock: ManualClock) -> None:
    for i in range(7):
        s = await store.create_session(
            id=f"s{i}", processor_id="agent", data={"i": i}, tags={"t"}, ttl=3600
        )
        await store.append_events(s.id, [{"type": "step", "data": {"n": n}} for n in range(i + 1)])
        if i % 2:
            await store.save_checkpoint(s.id, label=f"cp{i}")
        clock.advance(1)
    await store.trim_events("s6", keep_last=2)


async def _records(store: SessionStore) -> dict[str, SessionRecord]:
    return {r.session.id: r async for r in store.scan(include_expired=True)}


def test_acme_offers_the_store_primitives() -> None:
    assert isinstance(AcmeStore().primitives, StorePrimitives)


def test_acme_backs_up_and_restores_exactly(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        kv = AcmeKV()
        async with AcmeStore(kv=kv, namespace="src", clock=clock) as src:
            await _fill(src, clock)
            info = await create_backup(src, tmp_path / "acme.jsonl.gz")
            assert info.sessions == 7
            assert (await verify_backup(info.path)).verified
            async with AcmeStore(kv=kv, namespace="dst", clock=clock) as dst:
                result = await restore_from_backup(dst, info.path)
                assert result.counts.restored == 7
                assert await _records(dst) == await _records(src)
                again = await restore_from_backup(dst, info.path, merge_strategy="overwrite")
                assert again.counts.overwritten == 7
                assert await _records(dst) == await _records(src)

    asyncio.run(main())


def test_acme_migrates_to_and_from_another_driver(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        async with AcmeStore(namespace="a", clock=clock) as acme:
            await _fill(acme, clock)
            memory: Any = open_store("memory://", namespace="m", clock=clock)
            async with memory:
                out = await migrate(acme, memory, checkpoint_file=tmp_path / "state.json")
                assert out.counts.restored == 7
                assert await _records(memory) == await _records(acme)
                async with AcmeStore(namespace="b", clock=clock) as back:
                    await migrate(memory, back)
                    assert await _records(back) == await _records(acme)

    asyncio.run(main())


def test_acme_imports_only_the_public_driver_interface() -> None:
    """Nothing private of sessionstore: ``sessionstore``, ``sessionstore.driver`` and the
    public modules only, as any third-party driver."""
    private = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sessionstore"):
                module = node.module or ""
                names = [a.name for a in node.names]
                if any(part.startswith("_") for part in module.split(".")) or any(
                    name.startswith("_") for name in names
                ):
                    private.append(f"{path.name}: from {module} import {names}")
    assert not private, private
