"""Transactions: all or nothing on conflict, on error and on cancellation."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sessionstore import (
    AppendOp,
    CreateOp,
    DeleteOp,
    NewSession,
    Op,
    SerializationError,
    Session,
    SessionConflictError,
    SessionNotFoundError,
    SessionRecord,
    SessionUpdate,
    TransactionError,
    UpdateOp,
)

from ._harness import ConformanceContext, requires, snapshot, store_test

__all__ = ["TransactionTests"]


async def _state(ctx: ConformanceContext) -> list[SessionRecord]:
    return await snapshot(ctx.store)


class TransactionTests:
    """``commit`` and ``transaction()``."""

    @store_test
    async def test_transaction_commits_on_exit(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"a": 1})
        async with ctx.store.transaction() as tx:
            await tx.update_session(s.id, merge_data={"b": 2}, expected_version=1)
            await tx.append_events(s.id, [{"type": "e"}], expected_version=2)
            await tx.update_session(s.id, status="completed", expected_version=3)
            assert await ctx.store.get_session(s.id) == s  # nothing visible before commit
        assert len(tx.results) == 3
        final = await ctx.store.get_session(s.id)
        assert final is not None
        assert final.version == 4
        assert final.data == {"a": 1, "b": 2}
        assert final.status == "completed"
        assert final.event_count == 1
        assert tx.results[-1] == final

    @store_test
    @requires("atomic_multi_session")
    async def test_multi_session_commit(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        b = await ctx.store.create_session()
        results = await ctx.store.commit(
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"x": 1}), expected_version=1),
                DeleteOp(b.id, expected_version=1),
                CreateOp(NewSession(id="fresh", data={"parent": a.id})),
                AppendOp("fresh", [{"type": "born"}]),
            ]
        )
        assert results[1] is True
        assert await ctx.store.get_session(b.id) is None
        fresh = await ctx.store.get_session("fresh")
        assert fresh is not None
        assert fresh.version == 2
        assert fresh.event_count == 1
        assert results[3] == fresh

    @store_test
    @requires("atomic_multi_session")
    async def test_conflict_in_batch_writes_nothing(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        b = await ctx.store.create_session()
        b = await ctx.store.update_session(b.id, merge_data={"moved": True})
        before = await _state(ctx)
        with pytest.raises(SessionConflictError):
            await ctx.store.commit(
                [
                    UpdateOp(a.id, SessionUpdate(merge_data={"x": 1}), expected_version=1),
                    CreateOp(NewSession(id="never")),
                    AppendOp(a.id, [{"type": "e"}]),
                    UpdateOp(b.id, SessionUpdate(status="failed"), expected_version=1),  # stale
                ]
            )
        assert await _state(ctx) == before

    @store_test
    @requires("atomic_multi_session")
    async def test_missing_session_in_batch_writes_nothing(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        before = await _state(ctx)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.commit(
                [UpdateOp(a.id, SessionUpdate(merge_data={"x": 1})), DeleteOp("ghost")]
            )
        assert await _state(ctx) == before

    @store_test
    async def test_error_in_block_writes_nothing(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        before = await _state(ctx)
        with pytest.raises(RuntimeError):
            async with ctx.store.transaction() as tx:
                await tx.update_session(a.id, merge_data={"x": 1})
                await tx.create_session(id="tx-new")
                raise RuntimeError("boom")
        assert await _state(ctx) == before
        with pytest.raises(SerializationError):
            async with ctx.store.transaction() as tx:
                await tx.update_session(a.id, merge_data={"x": 1})
                await tx.update_session(a.id, merge_data={"bad": {1, 2}})
        assert await _state(ctx) == before

    @store_test
    async def test_cancelled_block_writes_nothing(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        before = await _state(ctx)
        staged = asyncio.Event()

        async def worker() -> None:
            async with ctx.store.transaction() as tx:
                await tx.update_session(a.id, merge_data={"x": 1})
                await tx.create_session(id="tx-cancel")
                staged.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(worker())
        await staged.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _state(ctx) == before

    @store_test
    async def test_same_session_ops_apply_in_order(self, ctx: ConformanceContext) -> None:
        results = await ctx.store.commit(
            [
                CreateOp(NewSession(id="seq", data={"n": 0})),
                UpdateOp("seq", SessionUpdate(merge_data={"n": 1}), expected_version=1),
                AppendOp("seq", [{"type": "a"}, {"type": "b"}], expected_version=2),
                UpdateOp("seq", SessionUpdate(merge_data={"n": 2}), expected_version=3),
            ]
        )
        assert [r.version for r in results if isinstance(r, Session)] == [1, 2, 3, 4]
        got = await ctx.store.get_session("seq")
        assert got is not None
        assert got.data == {"n": 2}
        assert [e.seq for e in await ctx.store.get_events("seq")] == [1, 2]

    @store_test
    async def test_an_update_then_an_append_of_a_stored_session(
        self, ctx: ConformanceContext
    ) -> None:
        """Each op of a batch is checked against the session the earlier ops leave, an
        existing session too (the batch an agent framework's event write commits): the
        append's ``expected_version`` is the version after the update."""
        st = ctx.store
        s = await st.create_session(data={"n": 0})
        up, appended = await st.commit(
            [
                UpdateOp(s.id, SessionUpdate(merge_data={"n": 1}), expected_version=1),
                AppendOp(s.id, [{"type": "a"}], expected_version=2),
            ]
        )
        assert isinstance(up, Session) and isinstance(appended, Session)
        assert (up.version, up.data, up.event_count) == (2, {"n": 1}, 0)
        assert (appended.version, appended.data, appended.event_count) == (3, {"n": 1}, 1)
        before = await snapshot(st)
        with pytest.raises(SessionConflictError):  # (3 is the version before the batch)
            await st.commit(
                [
                    UpdateOp(s.id, SessionUpdate(merge_data={"n": 2}), expected_version=3),
                    AppendOp(s.id, [{"type": "b"}], expected_version=3),
                ]
            )
        assert await snapshot(st) == before

    @store_test
    async def test_empty_transaction_is_a_no_op(self, ctx: ConformanceContext) -> None:
        async with ctx.store.transaction() as tx:
            pass
        assert tx.results == []
        assert await ctx.store.commit([]) == []

    @store_test
    async def test_stale_append_and_delete_in_batch_write_nothing(
        self, ctx: ConformanceContext
    ) -> None:
        """Every op kind checks ``expected_version`` inside a batch, against the batch's view."""
        st = ctx.store
        a = await st.create_session(data={"a": 1})
        a = await st.append_events(a.id, [{"type": "first"}])
        before = await _state(ctx)
        batches: list[list[Op]] = [
            [AppendOp(a.id, [{"type": "x"}], expected_version=a.version - 1)],
            [DeleteOp(a.id, expected_version=a.version - 1)],
            # the update moves the version on: the second op's (once right) version is stale
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"b": 2})),
                AppendOp(a.id, [{"type": "x"}], expected_version=a.version),
            ],
            [
                AppendOp(a.id, [{"type": "x"}], expected_version=a.version),
                DeleteOp(a.id, expected_version=a.version),
            ],
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"b": 2}), expected_version=a.version),
                AppendOp(a.id, [{"type": "y"}], expected_version=a.version + 1),
                DeleteOp(a.id, expected_version=a.version + 7),
            ],
        ]
        for ops in batches:
            with pytest.raises(SessionConflictError) as info:
                await st.commit(ops)
            assert info.value.session_id == a.id
            assert await _state(ctx) == before, ops
        # right versions in the same shapes succeed
        done = await st.commit(
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"b": 2}), expected_version=a.version),
                AppendOp(a.id, [{"type": "y"}], expected_version=a.version + 1),
                DeleteOp(a.id, expected_version=a.version + 2),
            ]
        )
        assert done[2] is True
        assert await st.get_session(a.id) is None

    @store_test
    async def test_stale_append_and_delete_in_transaction_write_nothing(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        a = await st.create_session(data={"a": 1})
        a = await st.update_session(a.id, merge_data={"a": 2})
        before = await _state(ctx)
        with pytest.raises(SessionConflictError):
            async with st.transaction() as tx:
                await tx.update_session(a.id, merge_data={"c": 3})
                await tx.append_events(a.id, [{"type": "x"}], expected_version=a.version - 1)
        assert await _state(ctx) == before
        with pytest.raises(SessionConflictError):
            async with st.transaction() as tx:
                await tx.append_events(a.id, [{"type": "x"}])
                await tx.delete_session(a.id, expected_version=a.version)
        assert await _state(ctx) == before
        async with st.transaction() as tx:
            await tx.append_events(a.id, [{"type": "x"}], expected_version=a.version)
            await tx.delete_session(a.id, expected_version=a.version + 1)
        assert tx.results[1] is True
        assert await st.get_session(a.id) is None

    @store_test
    @requires("atomic_multi_session")
    async def test_stale_op_on_another_session_writes_nothing(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        a = await st.create_session()
        b = await st.create_session()
        b = await st.append_events(b.id, [{"type": "e"}])
        before = await _state(ctx)
        for stale in (
            AppendOp(b.id, [{"type": "x"}], expected_version=b.version - 1),
            DeleteOp(b.id, expected_version=b.version - 1),
        ):
            for ops in (
                [UpdateOp(a.id, SessionUpdate(merge_data={"x": 1})), stale],
                [stale, AppendOp(a.id, [{"type": "y"}])],
                [CreateOp(NewSession(id="never")), stale, DeleteOp(a.id)],
            ):
                with pytest.raises(SessionConflictError):
                    await st.commit(ops)
                assert await _state(ctx) == before, ops

    @store_test
    @requires("max_batch")
    async def test_batch_over_max_batch_refused(self, ctx: ConformanceContext) -> None:
        """A driver that declares ``max_batch`` takes a batch of exactly that many ops and
        refuses a larger one, from ``commit`` and from ``transaction()``, with
        ``TransactionError`` before writing anything."""
        st = ctx.store
        max_batch = st.capabilities.max_batch
        assert max_batch is not None and max_batch >= 1, max_batch
        if max_batch > 10_000:
            pytest.skip(f"max_batch {max_batch} is too large to fill in a test")
        s = await st.create_session()
        ops: list[Op] = [AppendOp(s.id, [{"type": "e"}]) for _ in range(max_batch)]
        results = await st.commit(ops)
        assert len(results) == max_batch
        before = await _state(ctx)
        with pytest.raises(TransactionError):
            await st.commit([*ops, AppendOp(s.id, [{"type": "e"}])])
        assert await _state(ctx) == before
        with pytest.raises(TransactionError):
            async with st.transaction() as tx:
                for _ in range(max_batch + 1):
                    await tx.append_events(s.id, [{"type": "e"}])
        assert await _state(ctx) == before

    @store_test
    @requires("atomic_multi_session")
    async def test_batch_results_in_op_order_and_creates_over_expired(
        self, ctx: ConformanceContext
    ) -> None:
        """A batch's results follow its ops (not its session ids), and a ``CreateOp``
        replaces an expired session under its id, as ``create_session`` does."""
        st = ctx.store
        for sid in ("z", "a", "m"):
            await st.create_session(id=sid)
        await st.create_session(id="old", ttl=1, data={"v": "old"})
        ctx.clock.advance(1)
        results = await st.commit(
            [
                UpdateOp("z", SessionUpdate(merge_data={"n": 1})),
                DeleteOp("a"),
                UpdateOp("m", SessionUpdate(merge_data={"n": 3})),
                CreateOp(NewSession(id="old", data={"v": "new"})),
                CreateOp(NewSession(id="b0")),
            ]
        )
        got = [r if isinstance(r, bool) else r.id for r in results]
        assert got == ["z", True, "m", "old", "b0"]
        fresh = await st.get_session("old")
        assert fresh is not None and (fresh.data, fresh.version) == ({"v": "new"}, 1)
        assert results[3] == fresh

    @store_test
    async def test_batch_ops_take_every_field(self, ctx: ConformanceContext) -> None:
        """A ``CreateOp`` keeps every field ``create_session`` takes (its ``group`` and
        expiry too), in a ``commit`` and in a transaction, and a ``DeleteOp`` with
        ``missing_ok=True`` of a missing session is a no-op (``False``)."""
        st = ctx.store
        new = NewSession(
            id="c1", ttl=5, group="team", processor_id="p", tags={"t"}, metadata={"m": 1}
        )
        (made,) = await st.commit([CreateOp(new)])
        async with st.transaction() as tx:
            await tx.create_session(
                id="c2", ttl=5, group="team", processor_id="p", tags={"t"}, metadata={"m": 1}
            )
        for sid, result in (("c1", made), ("c2", tx.results[0])):
            got = await st.get_session(sid)
            assert got == result, sid
            assert got is not None and (got.group, got.processor_id) == ("team", "p"), sid
            assert (got.tags, got.metadata) == (frozenset({"t"}), {"m": 1}), sid
            assert got.expires_at == ctx.clock.now() + timedelta(seconds=5), sid
        assert await st.commit([DeleteOp("missing", missing_ok=True)]) == [False]
        with pytest.raises(SessionNotFoundError):
            await st.commit([DeleteOp("missing")])
        ctx.clock.advance(5)
        assert await st.count_sessions() == 0
