"""Several real processes on one store: no lost update, conflicts surfaced and retried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem import FileStore

from sessionstore import CreateOp, ManualClock, NewSession, QueryOptions, SessionFilter

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


@pytest.mark.asyncio
async def test_a_listing_weighs_its_plan_again_after_another_process_writes(
    tmp_path: Path,
) -> None:
    """A listing reuses the counts that chose its plan and the soonest expiry while the
    index is unchanged (``Index.snapshot``); another process's commit must end that at
    once. A tag on 1 of 400 sessions drives, and nothing expires, so the liveness check
    is left out; a child process then puts the tag on 300 new sessions that expire in an
    hour of its clock. Two hours later by this store's clock the same listing counts
    again, walks, and checks liveness again: the child's sessions are not listed."""
    root = str(tmp_path / "store")
    clock = ManualClock(datetime.now(UTC))
    tag = SessionFilter(tags_all={"t"})
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=10)
    async with FileStore(root=root, clock=clock, durability="none") as store:
        await store.commit([
            CreateOp(NewSession(tags={"t"} if i == 0 else {"other"})) for i in range(400)
        ])  # fmt: skip
        engine = store._engine
        conn = engine.index.conn()  # this thread's connection: it never wrote
        traced: list[str] = []
        conn.set_trace_callback(traced.append)

        def listing() -> tuple[list[str], str, int, bool]:
            """The page's ids, its plan, the counts run, whether liveness was checked."""
            traced.clear()
            page = engine.list_page(tag, opts, clock.now())
            (sql,) = [s for s in traced if s.startswith("SELECT id, processor_id")]
            plan = " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            counts = sum("COUNT(*)" in s for s in traced)
            return page.ids, plan, counts, "expires_ms IS NULL" in sql

        ids, plan, counts, live = listing()
        assert len(ids) == 1 and counts == 1 and not live
        assert "sqlite_autoindex" in plan  # the tag drives
        assert listing() == (ids, plan, 0, False)  # unchanged index: nothing counted again

        with Spawner() as spawner:
            child = spawner.start(workers.tagged_creates, root=root, tag="t", count=300, ttl=3600)
            assert orjson.loads((await asyncio.to_thread(child.wait, 60))[-1]) == 300
        clock.advance(timedelta(hours=2))

        again, plan, counts, live = listing()
        assert again == ids  # the child's sessions have expired
        assert counts == 1 and live  # weighed again; liveness checked
        assert "SCAN sessions USING INDEX sessions_updated" in plan  # 301 of 700: walks
        assert (await store.list_sessions(tag, opts)).ids == ids
        every = SessionFilter(tags_all={"t"}, include_expired=True)
        assert await store.count_sessions(every) == 301
