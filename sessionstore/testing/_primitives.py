"""The store primitives (``store.primitives``) behave as ``StorePrimitives`` documents.

Backup, restore, migrate and transactions use nothing else of a store (besides its public
queries), so a store whose primitives pass these tests can be backed up and batched. A
store that offers no ``primitives`` at all skips them (it then cannot be backed up).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessionstore import (
    AppendOp,
    CreateOp,
    NewSession,
    SessionConflictError,
    SessionNotFoundError,
    SessionUpdate,
    UpdateOp,
)
from sessionstore.driver import Planner, StorePrimitives, prepare, primitives_of

from ._harness import ConformanceContext, store_test

__all__ = ["PrimitiveTests"]


def _primitives(ctx: ConformanceContext) -> StorePrimitives:
    if getattr(ctx.store, "primitives", None) is None:
        pytest.skip("the store offers no StorePrimitives (it cannot be backed up)")
    return primitives_of(ctx.store)


class PrimitiveTests:
    """``store.primitives``: what backup, migrate and transactions build on."""

    @store_test
    async def test_primitives_describe_the_store(self, ctx: ConformanceContext) -> None:
        prims = _primitives(ctx)
        prims.check_open()
        assert prims.clock.now() == ctx.store.clock.now()
        assert prims.capabilities == ctx.store.capabilities
        assert prims.limits.max_session_bytes > 0
        assert prims.limits.max_event_bytes > 0

    @store_test
    async def test_primitives_load_includes_expired_and_leaves_out_absent(
        self, ctx: ConformanceContext
    ) -> None:
        prims = _primitives(ctx)
        st = ctx.store
        await st.create_session(id="pr-live", data={"k": 1})
        await st.create_session(id="pr-due", ttl=1)
        ctx.clock.advance(2)
        loaded = await prims.load(["pr-live", "pr-due", "pr-none"])
        assert sorted(loaded) == ["pr-due", "pr-live"]
        assert loaded["pr-live"] == await st.get_session("pr-live")
        assert loaded["pr-due"] == await st.get_session("pr-due", include_expired=True)
        loaded["pr-live"].data["k"] = 2  # a private copy: the store is not changed
        assert (await st.get_session("pr-live")).data == {"k": 1}  # type: ignore[union-attr]
        found = {s.id async for s in prims.iter_sessions()}
        assert found == {"pr-live", "pr-due"}

    @store_test
    async def test_primitives_apply_writes_a_plan_and_checks_expect(
        self, ctx: ConformanceContext
    ) -> None:
        prims = _primitives(ctx)
        st = ctx.store
        created = await st.create_session(id="pr-a", data={"n": 1})
        op = prepare(UpdateOp("pr-a", SessionUpdate(merge_data={"n": 2})), prims.limits)
        planner = Planner(await prims.load(["pr-a"]), prims.clock.now(), prims.limits)
        planned = planner.apply(op)
        mutations = planner.mutations()
        assert [m.expect for m in mutations] == [created.version]
        await prims.apply(mutations)
        prims.after_write(mutations)
        assert await st.get_session("pr-a") == planned
        # the same plan again: its expect is stale now, so nothing is written
        with pytest.raises(SessionConflictError):
            await prims.apply(mutations)
        stale = replace(mutations[0], expect=0)  # 0: "must not exist yet"
        with pytest.raises(SessionConflictError):
            await prims.apply([stale])
        assert await st.get_session("pr-a") == planned

    @store_test
    async def test_primitives_load_events_windows(self, ctx: ConformanceContext) -> None:
        prims = _primitives(ctx)
        st = ctx.store
        await st.create_session(id="pr-ev")
        await st.append_events("pr-ev", [{"type": "e", "data": {"i": i}} for i in range(5)])
        await st.trim_events("pr-ev", keep_last=3)

        async def seqs(after: int, limit: int | None = None, last: int | None = None) -> list[int]:
            found = await prims.load_events("pr-ev", after_seq=after, limit=limit, last=last)
            return [e.seq for e in found]

        assert await seqs(0) == [3, 4, 5]
        assert await seqs(0, limit=2) == [3, 4]
        assert await seqs(0, last=1) == [5]
        assert await seqs(3) == [4, 5]
        assert await seqs(5) == []
        got = await prims.load_events("pr-ev", after_seq=0, limit=None, last=None)
        assert got == await st.get_events("pr-ev")
        assert await prims.load_events("pr-nobody", after_seq=0, limit=None, last=None) == []

    @store_test
    async def test_primitives_load_checkpoints(self, ctx: ConformanceContext) -> None:
        prims = _primitives(ctx)
        st = ctx.store
        await st.create_session(id="pr-cp", data={"v": 1})
        first = await st.save_checkpoint("pr-cp", label="one")
        ctx.clock.advance(1)
        await st.update_session("pr-cp", data={"v": 2})
        second = await st.save_checkpoint("pr-cp", label="two")
        await st.create_session(id="pr-bare")
        assert await prims.load_checkpoints("pr-cp") == [first, second]  # oldest first
        assert await prims.load_checkpoint("pr-cp", second.id) == second
        assert await prims.load_checkpoint("pr-cp", "nope") is None
        many = await prims.load_checkpoints_many(["pr-cp", "pr-bare", "pr-none"])
        assert many["pr-cp"] == [first, second]
        assert many.get("pr-bare", []) == []
        assert many.get("pr-none", []) == []

    @store_test
    async def test_primitives_commit_prepared_is_all_or_nothing(
        self, ctx: ConformanceContext
    ) -> None:
        prims = _primitives(ctx)
        st = ctx.store
        batch = [
            prepare(CreateOp(NewSession(id="pr-t1", data={"a": 1})), prims.limits),
            prepare(AppendOp("pr-t1", [{"type": "x", "data": {}}]), prims.limits),
        ]
        done = await prims.commit_prepared(batch)
        assert [getattr(r, "id", r) for r in done] == ["pr-t1", "pr-t1"]
        assert (await st.get_session("pr-t1")).event_count == 1  # type: ignore[union-attr]
        failing = [
            prepare(UpdateOp("pr-t1", SessionUpdate(data={"b": 2})), prims.limits),
            prepare(UpdateOp("pr-missing", SessionUpdate(data={})), prims.limits),
        ]
        with pytest.raises(SessionNotFoundError):
            await prims.commit_prepared(failing)
        assert (await st.get_session("pr-t1")).data == {"a": 1}  # type: ignore[union-attr]
