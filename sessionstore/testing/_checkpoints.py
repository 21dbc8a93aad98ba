"""Checkpoints: digests verified, restore as a new version, pruning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessionstore import SessionFilter, SessionNotFoundError, SessionRecord, Status
from sessionstore.codec import checkpoint_digest

from ._harness import ConformanceContext, store_test

__all__ = ["CheckpointTests"]


class CheckpointTests:
    """Named snapshots of a session."""

    @store_test
    async def test_save_and_get_checkpoint(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": [1, 2]}, metadata={"m": 1}, tags={"t"})
        s = await ctx.store.append_events(s.id, [{"type": "e"}])
        cp = await ctx.store.save_checkpoint(s.id, label="first")
        assert cp.session_id == s.id
        assert cp.label == "first"
        assert (cp.data, cp.metadata, cp.status, cp.tags) == (s.data, s.metadata, s.status, s.tags)
        assert (cp.version, cp.event_count, cp.last_seq) == (s.version, 1, 1)
        assert cp.created_at == ctx.clock.now()
        assert cp.digest == checkpoint_digest(cp)
        assert await ctx.store.get_checkpoint(s.id, cp.id) == cp
        assert await ctx.store.list_checkpoints(s.id) == [cp]
        # saving a checkpoint is no write to the session: version and updated_at stay
        assert await ctx.store.get_session(s.id) == s

    @store_test
    async def test_checkpoints_list_in_save_order_within_a_second(
        self, ctx: ConformanceContext
    ) -> None:
        # checkpoints a millisecond apart, and several at one instant, come back in the
        # order they were saved (not by a coarser time or by their ids' hash); pruning
        # keeps the newest
        s = await ctx.store.create_session()
        saved = []
        for i in range(8):
            if i < 5:
                ctx.clock.advance(0.001)
            s = await ctx.store.update_session(s.id, data={"i": i})
            saved.append(await ctx.store.save_checkpoint(s.id, label=f"c{i}"))
        listed = await ctx.store.list_checkpoints(s.id)
        assert [cp.label for cp in listed] == [cp.label for cp in saved]
        assert listed == saved
        newest = await ctx.store.save_checkpoint(s.id, label="last", keep_last=3)
        kept = await ctx.store.list_checkpoints(s.id)
        assert [cp.label for cp in kept] == ["c6", "c7", "last"]
        assert kept[-1] == newest

    @store_test
    async def test_checkpoints_order_by_time_not_by_id(self, ctx: ConformanceContext) -> None:
        # restored checkpoints keep their ids, which need not sort like their times ("2"
        # before "10"): the list and the pruning go by created_at
        s = await ctx.store.create_session(data={"v": 0})
        made = []
        for i, cp_id in enumerate(("cp-2", "cp-10", "CP-3")):
            ctx.clock.advance(1)
            s = await ctx.store.update_session(s.id, data={"v": i})
            cp = await ctx.store.save_checkpoint(s.id, label=cp_id)
            cp = replace(cp, id=cp_id)
            made.append(replace(cp, digest=checkpoint_digest(cp)))
        assert await ctx.store.delete_session(s.id)
        await ctx.store.put_records([SessionRecord(s, (), made)])
        assert await ctx.store.list_checkpoints(s.id) == made
        ctx.clock.advance(1)
        await ctx.store.save_checkpoint(s.id, label="new", keep_last=2)
        kept = await ctx.store.list_checkpoints(s.id)
        assert [cp.label for cp in kept] == ["CP-3", "new"]

    @store_test
    async def test_restore_checkpoint(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"step": 1}, tags={"a"})
        cp = await ctx.store.save_checkpoint(s.id)
        await ctx.store.append_events(s.id, [{"type": "after"}])
        s = await ctx.store.update_session(s.id, data={"step": 2}, status="failed", tags={"b"})
        ctx.clock.advance(1)
        restored = await ctx.store.restore_checkpoint(s.id, cp.id, expected_version=s.version)
        assert restored.data == {"step": 1}
        assert restored.status is Status.ACTIVE
        assert restored.tags == frozenset({"a"})
        assert restored.version == s.version + 1
        assert restored.updated_at == ctx.clock.now()
        assert restored.event_count == 1  # the events after the checkpoint stay
        assert [e.type for e in await ctx.store.get_events(s.id)] == ["after"]
        assert await ctx.store.get_session(s.id) == restored

    @store_test
    async def test_checkpoints_ordered_and_pruned(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        made = []
        for i in range(4):
            ctx.clock.advance(1)
            s = await ctx.store.update_session(s.id, merge_data={"i": i})
            made.append(await ctx.store.save_checkpoint(s.id, label=f"c{i}"))
        assert [c.id for c in await ctx.store.list_checkpoints(s.id)] == [c.id for c in made]
        ctx.clock.advance(1)
        last = await ctx.store.save_checkpoint(s.id, label="c4", keep_last=2)
        assert [c.label for c in await ctx.store.list_checkpoints(s.id)] == ["c3", "c4"]
        assert (await ctx.store.get_checkpoint(s.id, last.id)).data == {"i": 3}

    @store_test
    async def test_delete_checkpoint(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        cp = await ctx.store.save_checkpoint(s.id)
        assert await ctx.store.delete_checkpoint(s.id, cp.id) is True
        assert await ctx.store.delete_checkpoint(s.id, cp.id) is False
        assert await ctx.store.list_checkpoints(s.id) == []
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_checkpoint(s.id, cp.id)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.restore_checkpoint(s.id, cp.id)
        assert (await ctx.store.get_session(s.id)) == s

    @store_test
    async def test_checkpoint_of_missing_session(self, ctx: ConformanceContext) -> None:
        with pytest.raises(SessionNotFoundError):
            await ctx.store.save_checkpoint("missing")
        with pytest.raises(SessionNotFoundError):
            await ctx.store.list_checkpoints("missing")

    @store_test
    async def test_restore_brings_back_every_snapshotted_field(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        s = await st.create_session(
            data={"d": [1, {"x": "y"}]},
            metadata={"m": {"deep": True}, "keep": 1},
            tags={"a", "b"},
            status="paused",
            processor_id="p1",
            group="g1",
            ttl=500,
        )
        cp = await st.save_checkpoint(s.id, label="snap")
        ctx.clock.advance(2)
        changed = await st.update_session(
            s.id,
            data={"other": 1},
            metadata={"new": "meta"},
            tags={"c"},
            status="failed",
            processor_id="p2",
            ttl=900,
        )
        changed = await st.append_events(s.id, [{"type": "later"}])
        ctx.clock.advance(1)
        restored = await st.restore_checkpoint(s.id, cp.id)
        snapshot = (cp.data, cp.metadata, cp.status, cp.tags)
        assert (restored.data, restored.metadata, restored.status, restored.tags) == snapshot
        assert snapshot == (s.data, s.metadata, s.status, s.tags)
        # what a checkpoint does not hold stays as it is now
        assert restored.processor_id == "p2"
        assert restored.expires_at == changed.expires_at
        assert restored.group == "g1"
        assert (restored.event_count, restored.last_seq) == (1, 1)
        assert restored.created_at == s.created_at
        assert restored.updated_at == ctx.clock.now()
        assert await st.get_session(s.id) == restored
        page = await st.list_sessions(SessionFilter(metadata={"m.deep": True}, tags_all={"a"}))
        assert page.ids == [s.id]
        assert await st.count_sessions(SessionFilter(status="paused")) == 1

    @store_test
    async def test_checkpoint_of_another_session(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        a = await st.create_session(data={"owner": "a"})
        b = await st.create_session(data={"owner": "b"})
        cp = await st.save_checkpoint(a.id)
        a = await st.update_session(a.id, data={"owner": "a2"})
        with pytest.raises(SessionNotFoundError):
            await st.get_checkpoint(b.id, cp.id)
        with pytest.raises(SessionNotFoundError):
            await st.restore_checkpoint(b.id, cp.id)
        assert await st.delete_checkpoint(b.id, cp.id) is False
        assert await st.get_session(a.id) == a
        assert await st.get_session(b.id) == b
        assert await st.list_checkpoints(b.id) == []
        assert await st.list_checkpoints(a.id) == [cp]
        assert await st.get_checkpoint(a.id, cp.id) == cp

    @store_test
    async def test_checkpoint_retention_option(self, ctx: ConformanceContext) -> None:
        """The ``checkpoint_keep_last`` option is the default pruning of ``save_checkpoint``."""
        st = await ctx.open_store(ctx.fresh_namespace(), checkpoint_keep_last=2)
        s = await st.create_session()
        made = []
        for i in range(4):
            ctx.clock.advance(1)
            made.append(await st.save_checkpoint(s.id, label=f"c{i}"))
        assert [c.id for c in await st.list_checkpoints(s.id)] == [c.id for c in made[-2:]]
        ctx.clock.advance(1)
        wider = await st.save_checkpoint(s.id, label="wide", keep_last=3)  # the argument wins
        kept = [c.id for c in await st.list_checkpoints(s.id)]
        assert kept == [made[-2].id, made[-1].id, wider.id]
        ctx.clock.advance(1)
        last = await st.save_checkpoint(s.id, label="one", keep_last=1)
        assert await st.list_checkpoints(s.id) == [last]
