"""Versions and optimistic locking: +1 per write, stale writes refused, nothing written."""

from __future__ import annotations

import pytest

from sessionstore import InvalidArgumentError, Session, SessionConflictError

from ._harness import ConformanceContext, store_test

__all__ = ["VersioningTests"]


async def _snapshot(ctx: ConformanceContext, sid: str) -> tuple[Session | None, list[object], int]:
    s = await ctx.store.get_session(sid, include_expired=True)
    events = await ctx.store.get_events(sid) if s is not None else []
    cps = len(await ctx.store.list_checkpoints(sid)) if s is not None else 0
    return s, list(events), cps


class VersioningTests:
    """Every write bumps the version by exactly one; ``expected_version`` is enforced."""

    @store_test
    async def test_every_write_bumps_version_by_one(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data={"a": 1})
        assert s.version == 1
        s = await st.update_session(s.id, merge_data={"b": 2})
        assert s.version == 2
        s = await st.update_session(s.id, status="paused")
        assert s.version == 3
        s = await st.update_session(s.id, add_tags={"t"})
        assert s.version == 4
        s = await st.update_session(s.id, ttl=60)
        assert s.version == 5
        s = await st.append_events(s.id, [{"type": "a"}, {"type": "b"}, {"type": "c"}])
        assert s.version == 6  # one step per call, not per event
        s = await st.touch(s.id)
        assert s.version == 7
        cp = await st.save_checkpoint(s.id)
        assert (await st.get_session(s.id)) == s  # a checkpoint is not a write to the session
        s = await st.trim_events(s.id, keep_last=1)
        assert s.version == 8
        s = await st.restore_checkpoint(s.id, cp.id)
        assert s.version == 9
        assert (await st.get_session(s.id)) == s

    @store_test
    async def test_expected_version_matching_succeeds(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        s = await ctx.store.update_session(s.id, merge_data={"x": 1}, expected_version=1)
        s = await ctx.store.append_events(s.id, [{"type": "e"}], expected_version=2)
        s = await ctx.store.touch(s.id, expected_version=3)
        assert s.version == 4
        assert await ctx.store.delete_session(s.id, expected_version=4) is True

    @store_test
    async def test_expected_version_accepts_every_positive_int(
        self, ctx: ConformanceContext
    ) -> None:
        """Up to 2**62 (the largest version a store keeps) it is a conflict, not bad input."""
        s = await ctx.store.create_session()
        with pytest.raises(SessionConflictError):
            await ctx.store.update_session(s.id, merge_data={"x": 1}, expected_version=2**62)
        with pytest.raises(InvalidArgumentError):
            await ctx.store.update_session(s.id, merge_data={"x": 1}, expected_version=2**62 + 1)
        assert await ctx.store.get_session(s.id) == s

    @store_test
    async def test_stale_update_raises_and_writes_nothing(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": 1})
        s = await ctx.store.update_session(s.id, merge_data={"a": 2})
        before = await _snapshot(ctx, s.id)
        with pytest.raises(SessionConflictError) as info:
            await ctx.store.update_session(s.id, merge_data={"a": 3}, expected_version=1)
        assert info.value.expected == 1
        assert info.value.actual == 2
        assert info.value.session_id == s.id
        assert await _snapshot(ctx, s.id) == before

    @store_test
    async def test_stale_writes_of_every_kind_write_nothing(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(data={"a": 1}, ttl=100)
        await st.append_events(s.id, [{"type": "e1"}, {"type": "e2"}])
        cp = await st.save_checkpoint(s.id)
        s = await st.update_session(s.id, merge_data={"a": 2})
        before = await _snapshot(ctx, s.id)
        stale = s.version - 1
        attempts = [
            st.update_session(s.id, status="failed", expected_version=stale),
            st.append_events(s.id, [{"type": "x"}], expected_version=stale),
            st.touch(s.id, ttl=500, expected_version=stale),
            st.trim_events(s.id, keep_last=0, expected_version=stale),
            st.restore_checkpoint(s.id, cp.id, expected_version=stale),
            st.delete_session(s.id, expected_version=stale),
        ]
        for attempt in attempts:
            with pytest.raises(SessionConflictError):
                await attempt
            assert await _snapshot(ctx, s.id) == before

    @store_test
    async def test_versions_survive_reopen(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        s = await ctx.store.update_session(s.id, merge_data={"x": 1})
        other = await ctx.open_store()
        if other.capabilities.shared_namespace:
            got = await other.get_session(s.id)
            assert got is not None
            assert got.version == 2
            with pytest.raises(SessionConflictError):
                await other.update_session(s.id, merge_data={"x": 2}, expected_version=1)
