"""Several real processes on one store: no lost update, conflicts surfaced and retried."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem import FileStore

from sessionstore import QueryOptions, SessionFilter

from . import workers
from .spawner import Spawner

# integration: several processes on one store
pytestmark = pytest.mark.integration

LOOPS = 500


def test_two_processes_cas_increment_exactly(tmp_path: Path) -> None:
    root = str(tmp_path / "store")

    async def seed() -> str:
        async with FileStore(root=root) as store:
            return (await store.create_session(data={"n": 0})).id

    sid = asyncio.run(seed())
    with Spawner() as spawner:
        children = [
            spawner.start(workers.cas_increments, root=root, sid=sid, times=LOOPS) for _ in range(2)
        ]
        conflicts = [orjson.loads(child.wait(120)[-1]) for child in children]

    async def check() -> None:
        async with FileStore(root=root) as store:
            final = await store.get_session(sid)
            assert final is not None
            assert final.data["n"] == 2 * LOOPS
            assert final.version == 2 * LOOPS + 1

    asyncio.run(check())
    assert all(isinstance(c, int) and c >= 0 for c in conflicts)
    print(f"conflicts surfaced and retried: {conflicts}")


@pytest.mark.asyncio
async def test_index_follows_writes_of_another_process(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    async with FileStore(root=root) as mine:
        s = await mine.create_session(data={"n": 0}, tags={"shared"})
        with Spawner() as spawner:
            child = spawner.start(workers.cas_increments, root=root, sid=s.id, times=5)
            await asyncio.to_thread(child.wait, 60)
        page = await mine.list_sessions(
            SessionFilter(tags_all={"shared"}), QueryOptions(sort_by="updated_at")
        )
        assert [x.version for x in page.items] == [6]
        # the index itself (not only the files) has the other process's writes
        assert await mine.count_sessions(SessionFilter(updated_after=s.updated_at)) == 1
        later = page.items[0].updated_at
        assert await mine.count_sessions(SessionFilter(updated_before=later)) == 0
