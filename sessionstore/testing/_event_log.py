"""The full event log (issue 17): pop, truncate, delete, keys, caller-set ``at``, filters.

Every test here runs only on a store that declares ``Capabilities.event_log``, except
:meth:`EventLogTests.test_event_log_refused_without_capability`, which runs only on one
that does not (the typed refusal an honest third-party driver gives).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest

from sessionstore import (
    AppendOp,
    CreateOp,
    DeleteEventsOp,
    DeleteOp,
    EventInput,
    EventKeyConflictError,
    InvalidArgumentError,
    NewSession,
    PopOp,
    Session,
    SessionConflictError,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    SessionUpdate,
    TrimOp,
    TruncateOp,
    UnsupportedOperationError,
    UpdateOp,
)

from ._harness import ConformanceContext, requires, snapshot, store_test

__all__ = ["EventLogTests"]

_T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def _seqs(ctx: ConformanceContext, sid: str, **window: Any) -> list[int]:
    return [e.seq for e in await ctx.store.get_events(sid, **window)]


async def _numbered(ctx: ConformanceContext, n: int, sid: str = "log") -> Session:
    """A session holding events 1..n of types ``a``/``b`` alternating, keys ``k<seq>``."""
    s = await ctx.store.create_session(id=sid)
    events = [EventInput("a" if i % 2 else "b", {"i": i}, key=f"k{i}") for i in range(1, n + 1)]
    return await ctx.store.append_events(s.id, events)


async def _unchanged(
    ctx: ConformanceContext, error: type[Exception], call: Callable[[], Awaitable[Any]]
) -> Exception:
    before = await snapshot(ctx.store)
    with pytest.raises(error) as info:
        await call()
    assert await snapshot(ctx.store) == before
    return info.value


class EventLogTests:
    """Removing events from either end or the middle, idempotent keyed appends, filtered
    and backwards reads, the new batch ops."""

    # ------------------------------------------------------------------ pop

    @store_test
    @requires("event_log")
    async def test_pop_events_removes_the_newest(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 6)
        popped = await ctx.store.pop_events(s.id)
        assert [e.seq for e in popped.events] == [6]
        assert popped.events[0].data == {"i": 6} and popped.events[0].key == "k6"
        assert popped.session.version == s.version + 1
        assert (popped.session.event_count, popped.session.last_seq) == (5, 6)
        assert await ctx.store.get_session(s.id) == popped.session
        popped = await ctx.store.pop_events(s.id, 3, expected_version=popped.session.version)
        assert [e.seq for e in popped.events] == [3, 4, 5]  # ascending
        assert [e.type for e in popped.events] == ["a", "b", "a"]
        assert await _seqs(ctx, s.id) == [1, 2]
        # sequence numbers are never reused: the next append continues after 6
        s = await ctx.store.append_events(s.id, [{"type": "next"}])
        assert (s.last_seq, s.event_count) == (7, 3)
        assert await _seqs(ctx, s.id) == [1, 2, 7]
        # more than kept: all of them; an empty log: nothing, and no write
        popped = await ctx.store.pop_events(s.id, 10)
        assert [e.seq for e in popped.events] == [1, 2, 7]
        assert (popped.session.event_count, popped.session.last_seq) == (0, 7)
        assert not popped.session.has_events
        again = await ctx.store.pop_events(s.id)
        assert again.events == [] and again.session == popped.session
        s = await ctx.store.append_events(s.id, [{"type": "after"}])
        assert await _seqs(ctx, s.id) == [8]

    @store_test
    @requires("event_log")
    async def test_pop_events_checks_expected_version(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 3)
        await _unchanged(
            ctx, SessionConflictError, lambda: ctx.store.pop_events(s.id, expected_version=1)
        )
        popped = await ctx.store.pop_events(s.id, expected_version=s.version)
        assert [e.seq for e in popped.events] == [3]

    # ------------------------------------------------------------------ truncate

    @store_test
    @requires("event_log")
    async def test_concurrent_pops_hand_out_each_event_once(self, ctx: ConformanceContext) -> None:
        # a pop is one atomic read-and-remove: callers racing for the tail never get the
        # same event, and nothing is left behind that a caller was handed
        s = await _numbered(ctx, 12)
        stores = [ctx.store]
        if ctx.store.capabilities.shared_namespace:
            stores.append(await ctx.open_store())
        results = await asyncio.gather(
            *(stores[i % len(stores)].pop_events(s.id, 2) for i in range(9))
        )
        popped = [e.seq for r in results for e in r.events]
        assert sorted(popped) == list(range(1, 13))
        for r in results:  # each pop's events are adjacent newest-first slices, ascending
            assert [e.seq for e in r.events] == sorted(e.seq for e in r.events)
        final = await ctx.store.get_session(s.id)
        assert final is not None
        assert (final.event_count, final.last_seq) == (0, 12)
        assert await ctx.store.get_events(s.id) == []

    @store_test
    @requires("event_log")
    async def test_truncate_events_drops_after_seq(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 8)
        t = await ctx.store.truncate_events(s.id, 5)
        assert (t.event_count, t.last_seq, t.version) == (5, 8, s.version + 1)
        assert await _seqs(ctx, s.id) == [1, 2, 3, 4, 5]
        same = await ctx.store.truncate_events(s.id, 5)  # nothing above 5: no write
        assert same == t
        same = await ctx.store.truncate_events(s.id, 100)
        assert same == t
        s = await ctx.store.append_events(s.id, [{"type": "c"}, {"type": "c"}])
        assert await _seqs(ctx, s.id) == [1, 2, 3, 4, 5, 9, 10]
        t = await ctx.store.truncate_events(s.id, 7)  # inside a gap
        assert await _seqs(ctx, s.id) == [1, 2, 3, 4, 5]
        assert (t.event_count, t.last_seq) == (5, 10)
        t = await ctx.store.truncate_events(s.id, 0, expected_version=t.version)
        assert (t.event_count, t.last_seq) == (0, 10)
        assert await ctx.store.get_events(s.id) == []

    # ------------------------------------------------------------------ delete

    @store_test
    @requires("event_log")
    async def test_delete_events_by_seq_and_key(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 10)
        d = await ctx.store.delete_events(s.id, seqs=[2, 5, 99], keys=["k7", "nope"])
        assert (d.event_count, d.last_seq, d.version) == (7, 10, s.version + 1)
        assert await _seqs(ctx, s.id) == [1, 3, 4, 6, 8, 9, 10]
        assert await ctx.store.get_event(s.id, key="k7") is None
        # nothing of it there: no write
        same = await ctx.store.delete_events(s.id, seqs=[2, 5], keys=["k2"])
        assert same == d
        same = await ctx.store.delete_events(s.id)
        assert same == d
        # every window over the gaps
        kept = [1, 3, 4, 6, 8, 9, 10]
        for after_seq in (0, 1, 2, 5, 7, 10):
            for limit in (None, 1, 2, 4):
                want = [q for q in kept if q > after_seq]
                got = await _seqs(ctx, s.id, after_seq=after_seq, limit=limit)
                assert got == (want if limit is None else want[:limit]), (after_seq, limit)
            for last in (1, 2, 4, 50):
                got = await _seqs(ctx, s.id, after_seq=after_seq, last=last)
                assert got == [q for q in kept if q > after_seq][-last:], (after_seq, last)
        # the newest and the oldest too
        d = await ctx.store.delete_events(s.id, seqs=[1, 10])
        assert await _seqs(ctx, s.id) == [3, 4, 6, 8, 9]
        assert (d.event_count, d.last_seq) == (5, 10)
        s = await ctx.store.append_events(s.id, [{"type": "z"}])
        assert s.last_seq == 11

    @store_test
    @requires("event_log")
    async def test_trim_is_gap_aware(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 10)
        await ctx.store.delete_events(s.id, seqs=[8, 9])
        t = await ctx.store.trim_events(s.id, keep_last=3)
        assert await _seqs(ctx, s.id) == [6, 7, 10]
        assert (t.event_count, t.last_seq) == (3, 10)
        await ctx.store.pop_events(s.id)
        t = await ctx.store.trim_events(s.id, keep_last=1)
        assert await _seqs(ctx, s.id) == [7]
        assert (t.event_count, t.last_seq) == (1, 10)

    @store_test
    @requires("event_log")
    async def test_seq_never_reused_after_any_removal(self, ctx: ConformanceContext) -> None:
        """The sequence model: appends number consecutively after ``last_seq``; removals
        leave gaps anywhere; ``last_seq`` never goes down; ``event_count`` is what is kept."""
        s = await _numbered(ctx, 4)
        seen = {1, 2, 3, 4}
        last = s.last_seq
        steps: list[Callable[[str], Awaitable[Any]]] = [
            lambda sid: ctx.store.pop_events(sid, 2),
            lambda sid: ctx.store.truncate_events(sid, 0),
            lambda sid: ctx.store.delete_events(sid, seqs=[5]),
            lambda sid: ctx.store.trim_events(sid, keep_last=0),
        ]
        for step in steps:
            await step(s.id)
            s = await ctx.store.append_events(s.id, [{"type": "x"}, {"type": "y"}])
            new = await ctx.store.get_events(s.id, last=2)
            assert [e.seq for e in new] == [last + 1, last + 2]
            assert not seen & {e.seq for e in new}
            seen |= {e.seq for e in new}
            assert s.last_seq == last + 2
            last = s.last_seq
            assert s.event_count == len(await ctx.store.get_events(s.id))

    # ------------------------------------------------------------------ batches

    @store_test
    @requires("event_log")
    async def test_replace_the_tail_in_one_batch(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 5)
        results = await ctx.store.commit(
            [
                TruncateOp(s.id, 3, expected_version=s.version),
                AppendOp(s.id, [{"type": "summary", "data": {"of": [4, 5]}}]),
            ]
        )
        assert all(isinstance(r, Session) for r in results)
        first, second = results
        assert isinstance(first, Session) and isinstance(second, Session)
        assert (first.event_count, first.last_seq) == (3, 5)
        assert (second.event_count, second.last_seq) == (4, 6)
        assert await _seqs(ctx, s.id) == [1, 2, 3, 6]
        assert await ctx.store.get_session(s.id) == second
        # each event op in a batch, with its result
        results = await ctx.store.commit(
            [
                PopOp(s.id),
                DeleteEventsOp(s.id, seqs=[1], keys=["k2"]),
                TrimOp(s.id, keep_last=0),
                AppendOp(s.id, [{"type": "fresh"}]),
            ]
        )
        counts = [(r.event_count, r.last_seq) for r in results if isinstance(r, Session)]
        assert counts == [(3, 6), (1, 6), (0, 6), (1, 7)]
        assert await _seqs(ctx, s.id) == [7]

    @store_test
    @requires("event_log")
    async def test_batch_event_ops_see_earlier_ops(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 4)
        results = await ctx.store.commit(
            [
                AppendOp(s.id, [{"type": "n1"}, {"type": "n2"}]),  # 5, 6
                PopOp(s.id, 3),  # 6, 5, 4
                DeleteEventsOp(s.id, keys=["k1"]),
                AppendOp(s.id, [EventInput("re", key="k1")]),  # the key is free again: 7
                TrimOp(s.id, keep_last=2),  # keeps 3, 7
            ]
        )
        final = results[-1]
        assert isinstance(final, Session)
        events = await ctx.store.get_events(s.id)
        assert [e.seq for e in events] == [3, 7]
        assert [e.key for e in events] == ["k3", "k1"]
        assert (final.event_count, final.last_seq) == (2, 7)
        assert final.version == s.version + 5  # a version step per op, as for every batch
        got = await ctx.store.get_event(s.id, key="k1")
        assert got is not None and (got.seq, got.type) == (7, "re")

    @store_test
    @requires("event_log")
    async def test_batch_deletes_its_own_appends(self, ctx: ConformanceContext) -> None:
        """``DeleteEventsOp`` by seq only or by key only, of events appended earlier in the
        same batch and of stored ones."""
        s = await _numbered(ctx, 3)  # 1-3, keys k1-k3
        appended = [EventInput("n", key="n4"), EventInput("n", key="n5"), EventInput("n")]
        results = await ctx.store.commit(
            [
                AppendOp(s.id, appended),  # 4-6
                DeleteEventsOp(s.id, seqs=[5]),  # appended above, by seq
                DeleteEventsOp(s.id, keys=["n4"]),  # appended above, by key
                DeleteEventsOp(s.id, seqs=[2]),  # stored, by seq
                DeleteEventsOp(s.id, keys=["k3"]),  # stored, by key
            ]
        )
        final = results[-1]
        assert isinstance(final, Session)
        assert [(e.seq, e.type) for e in await ctx.store.get_events(s.id)] == [(1, "a"), (6, "n")]
        assert (final.event_count, final.last_seq) == (2, 6)
        assert await ctx.store.get_session(s.id) == final
        assert await ctx.store.get_event(s.id, key="n4") is None
        # a session the batch creates has no stored events to look up
        results = await ctx.store.commit(
            [
                CreateOp(NewSession(id="fresh")),
                AppendOp("fresh", [EventInput("n", key="f1"), EventInput("n")]),
                DeleteEventsOp("fresh", seqs=[2], keys=["f1", "nope"]),
            ]
        )
        fresh = results[-1]
        assert isinstance(fresh, Session)
        assert (fresh.event_count, fresh.last_seq) == (0, 2)
        assert await ctx.store.get_events("fresh") == []

    @store_test
    @requires("event_log")
    async def test_batch_removals_see_earlier_bounds(self, ctx: ConformanceContext) -> None:
        """Inside one batch a removal sees exactly what earlier removals kept: the event a
        trim keeps last (its oldest) and the one a truncate keeps at ``after_seq`` are
        still there for a following pop."""
        s = await _numbered(ctx, 6, "trimmed")
        # keeps 4..6, then pops 4..6 (4, the oldest kept, included); one more pop: nothing
        await ctx.store.commit([TrimOp(s.id, keep_last=3), PopOp(s.id, 2), PopOp(s.id, 1)])
        assert await _seqs(ctx, s.id) == []
        s = await _numbered(ctx, 6, "truncated")
        # keeps 1..4, then pops 4 and 3 (4, at after_seq, kept until popped)
        await ctx.store.commit([TruncateOp(s.id, after_seq=4), PopOp(s.id, 2)])
        assert await _seqs(ctx, s.id) == [1, 2]
        final = await ctx.store.get_session(s.id)
        assert final is not None and (final.event_count, final.last_seq) == (2, 6)
        # a log without stored events: a pop and a trim in the batch see only its appends
        empty = await ctx.store.create_session(id="empty")
        await ctx.store.commit(
            [
                PopOp(empty.id, 2),
                AppendOp(empty.id, [{"type": "x"}, {"type": "y"}, {"type": "z"}]),
                PopOp(empty.id, 1),
                TrimOp(empty.id, keep_last=1),
            ]
        )
        assert await _seqs(ctx, empty.id) == [2]
        # a pop after a delete in the batch reaches one event further back than it asks
        s = await _numbered(ctx, 6, "deleted")
        await ctx.store.commit([DeleteEventsOp(s.id, seqs=[6]), PopOp(s.id, 2)])
        assert await _seqs(ctx, s.id) == [1, 2, 3]
        # deleted and created again in the batch: the old log is gone for what follows
        s = await _numbered(ctx, 4, "recreated")
        results = await ctx.store.commit(
            [
                DeleteOp(s.id),
                CreateOp(NewSession(id=s.id)),
                AppendOp(s.id, [{"type": "x"}, {"type": "y"}, {"type": "z"}]),
                PopOp(s.id, 1),
                TrimOp(s.id, keep_last=1),
                TruncateOp(s.id, after_seq=0),
            ]
        )
        assert await ctx.store.get_events(s.id) == []
        last = results[-1]
        assert isinstance(last, Session) and last.event_count == 0
        assert last == await ctx.store.get_session(s.id)

    @store_test
    @requires("event_log")
    async def test_batch_truncate_of_its_own_appends(self, ctx: ConformanceContext) -> None:
        """A truncate in a batch removes the events appended earlier in that batch too, and
        the session counts only what is kept (``last_seq`` still counts every seq used)."""
        s = await ctx.store.create_session(id="fresh")
        results = await ctx.store.commit(
            [
                AppendOp(s.id, [{"type": "x"}, {"type": "y"}, {"type": "z"}]),
                TruncateOp(s.id, after_seq=1),
            ]
        )
        assert await _seqs(ctx, s.id) == [1]
        final = await ctx.store.get_session(s.id)
        assert final is not None and (final.event_count, final.last_seq) == (1, 3)
        assert results[-1] == final
        # stored events and the batch's own: both sides of the bound
        s = await _numbered(ctx, 2, "mixed")
        await ctx.store.commit(
            [AppendOp(s.id, [{"type": "x"}, {"type": "y"}]), TruncateOp(s.id, after_seq=3)]
        )
        assert await _seqs(ctx, s.id) == [1, 2, 3]
        final = await ctx.store.get_session(s.id)
        assert final is not None and (final.event_count, final.last_seq) == (3, 4)

    @store_test
    @requires("event_log")
    async def test_event_ops_in_a_failed_batch_write_nothing(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 4)
        other = await ctx.store.create_session()
        for op in (
            PopOp(s.id, 2),
            TruncateOp(s.id, 1),
            TrimOp(s.id, 1),
            DeleteEventsOp(s.id, seqs=[1, 2]),
        ):
            batch = [op, UpdateOp(other.id, SessionUpdate(data={"x": 1}), expected_version=9)]
            await _unchanged(ctx, SessionConflictError, lambda b=batch: ctx.store.commit(b))  # type: ignore[misc]
        await _unchanged(
            ctx, SessionConflictError, lambda: ctx.store.commit([PopOp(s.id, expected_version=1)])
        )
        await _unchanged(
            ctx, SessionNotFoundError, lambda: ctx.store.commit([PopOp(s.id), PopOp("missing")])
        )

    @store_test
    @requires("event_log")
    async def test_transaction_stages_event_ops(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 6)
        async with ctx.store.transaction() as tx:
            await tx.pop_events(s.id, 2)
            await tx.delete_events(s.id, seqs=[1])
            await tx.truncate_events(s.id, 3)
            await tx.trim_events(s.id, keep_last=1)
            await tx.append_events(s.id, [{"type": "t"}])
            assert await _seqs(ctx, s.id) == [1, 2, 3, 4, 5, 6]  # nothing before commit
        assert len(tx.results) == 5
        assert await _seqs(ctx, s.id) == [3, 7]
        final = tx.results[-1]
        assert isinstance(final, Session) and final == await ctx.store.get_session(s.id)

    # ------------------------------------------------------------------ append + create / ttl

    @store_test
    @requires("event_log")
    async def test_append_creates_a_missing_session(self, ctx: ConformanceContext) -> None:
        made = await ctx.store.append_events("new-1", [{"type": "hello"}], create=True)
        assert (made.id, made.version, made.event_count, made.last_seq) == ("new-1", 1, 1, 1)
        assert await ctx.store.get_session("new-1") == made
        more = await ctx.store.append_events("new-1", [{"type": "again"}], create=True)
        assert (more.version, more.event_count) == (2, 2)  # it existed: a plain append
        fields = NewSession(processor_id="p", data={"d": 1}, tags={"t"}, group="g1")
        made = await ctx.store.append_events("new-2", [{"type": "x"}], create=fields)
        assert (made.processor_id, made.data, made.tags, made.group) == (
            "p",
            {"d": 1},
            frozenset({"t"}),
            "g1",
        )
        with pytest.raises(SessionNotFoundError):
            await ctx.store.append_events("new-3", [{"type": "x"}])
        await _unchanged(
            ctx,
            InvalidArgumentError,
            lambda: ctx.store.append_events(
                "new-3", [{"type": "x"}], create=NewSession(id="other")
            ),
        )
        lost = await _unchanged(
            ctx,
            SessionConflictError,
            lambda: ctx.store.append_events(
                "new-3", [{"type": "x"}], create=True, expected_version=2
            ),
        )
        assert isinstance(lost, SessionConflictError)
        assert (lost.session_id, lost.expected, lost.actual) == ("new-3", 2, 0)  # 0: absent
        in_batch = await ctx.store.commit([AppendOp("new-4", [{"type": "b"}], create=True)])
        assert isinstance(in_batch[0], Session) and in_batch[0].event_count == 1

    @store_test
    @requires("event_log")
    async def test_concurrent_appends_that_create_lose_nothing(
        self, ctx: ConformanceContext
    ) -> None:
        """Several appends with ``create=`` race on one missing session (a framework's
        first two writes of a new thread often do): exactly one creates it, none fails,
        and every event is kept once."""
        import asyncio

        for round_ in range(3):
            sid = f"race-create-{round_}"
            results = await asyncio.gather(
                *(
                    ctx.store.append_events(sid, [{"type": "e", "data": {"i": i}}], create=True)
                    for i in range(8)
                )
            )
            assert sorted(s.version for s in results) == list(range(1, 9))
            events = await ctx.store.get_events(sid)
            assert sorted(e.data["i"] for e in events) == list(range(8))
            assert [e.seq for e in events] == sorted({e.seq for e in events})

    @store_test
    @requires("event_log")
    async def test_append_sets_expiry_in_the_same_write(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        a = await ctx.store.append_events(s.id, [{"type": "x"}], ttl=60)
        assert a.expires_at == ctx.clock.now() + timedelta(seconds=60)
        assert a.version == s.version + 1
        ctx.clock.advance(30)
        a = await ctx.store.append_events(s.id, [{"type": "y"}], ttl=timedelta(seconds=60))
        assert a.expires_at == ctx.clock.now() + timedelta(seconds=60)  # sliding
        at = _T0 + timedelta(days=400)
        a = await ctx.store.append_events(s.id, [{"type": "z"}], expires_at=at)
        assert a.expires_at == at
        a = await ctx.store.append_events(s.id, [{"type": "z"}], expires_at=None)
        assert a.expires_at is None
        # a retry of stored keyed events writes nothing of them, but still the expiry
        keyed = [EventInput("k", {"n": 1}, key="ttl-k")]
        a = await ctx.store.append_events(s.id, keyed)
        ctx.clock.advance(1)
        retried = await ctx.store.append_events(s.id, keyed, ttl=90)
        assert retried.expires_at == ctx.clock.now() + timedelta(seconds=90)
        assert (retried.version, retried.event_count) == (a.version + 1, a.event_count)
        assert await ctx.store.get_session(s.id) == retried
        made = await ctx.store.append_events("ttl-new", [{"type": "x"}], create=True, ttl=5)
        assert made.expires_at == ctx.clock.now() + timedelta(seconds=5)
        ctx.clock.advance(6)
        assert await ctx.store.get_session("ttl-new") is None
        await _unchanged(
            ctx,
            InvalidArgumentError,
            lambda: ctx.store.append_events(s.id, [{"type": "x"}], ttl=5, expires_at=at),
        )

    # ------------------------------------------------------------------ keys

    @store_test
    @requires("event_log")
    async def test_keyed_events_are_idempotent(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        one = EventInput("msg", {"text": "hi"}, key="m-1")
        a = await ctx.store.append_events(s.id, [one, {"type": "plain"}])
        assert (a.event_count, a.last_seq) == (2, 2)
        # delivered again: nothing written, no version step
        again = await ctx.store.append_events(s.id, [one])
        assert again == a
        assert await _seqs(ctx, s.id) == [1, 2]
        # with a new one: only the new one is written
        two = {"type": "msg", "data": {"text": "there"}, "key": "m-2"}
        b = await ctx.store.append_events(s.id, [one, two])
        assert (b.event_count, b.last_seq, b.version) == (3, 3, a.version + 1)
        events = await ctx.store.get_events(s.id)
        assert [(e.seq, e.key) for e in events] == [(1, "m-1"), (2, None), (3, "m-2")]
        # twice in one call: once
        c = await ctx.store.append_events(
            s.id, [EventInput("x", key="m-3"), EventInput("x", key="m-3")]
        )
        assert (c.event_count, c.last_seq) == (4, 4)
        detailed = getattr(ctx.store, "append_events_detailed", None)
        if detailed is not None:
            result = await detailed(s.id, [one, EventInput("y", key="m-4")])
            assert result.new == [False, True]
            assert [e.seq for e in result.events] == [1, 5]
            assert result.session == await ctx.store.get_session(s.id)
            with pytest.raises(SessionNotFoundError):  # no create unless asked
                await detailed("absent", [EventInput("y", key="m-5")])
            assert await ctx.store.get_session("absent") is None
        # one key in two appends of one batch: the second finds the first's event
        before = await ctx.store.get_session(s.id)
        assert before is not None
        twice = AppendOp(s.id, [EventInput("z", key="m-6"), EventInput("plain")])
        results = await ctx.store.commit([twice, twice])
        final = results[-1]
        assert isinstance(final, Session)
        added = await ctx.store.get_events(s.id, after_seq=before.last_seq)
        assert [e.key for e in added] == ["m-6", None, None]
        assert final.event_count == before.event_count + 3

    @store_test
    @requires("event_log")
    async def test_racing_retries_of_a_keyed_event_write_it_once(
        self, ctx: ConformanceContext
    ) -> None:
        """Several deliveries of one keyed event race (a retry that overtakes the first
        try): exactly one writes it, the others find it stored; from several store
        objects too."""
        stores = [ctx.store]
        if ctx.store.capabilities.shared_namespace:
            stores.append(await ctx.open_store())
        s = await ctx.store.create_session()
        for round_ in range(3):
            event = EventInput("msg", {"round": round_}, key=f"race-{round_}")
            results = await asyncio.gather(
                *(stores[i % len(stores)].append_events(s.id, [event]) for i in range(6))
            )
            events = await ctx.store.get_events(s.id)
            assert [e.key for e in events] == [f"race-{r}" for r in range(round_ + 1)]
            assert max(r.version for r in results) == s.version + round_ + 1
            assert {r.event_count for r in results} == {round_ + 1}

    @store_test
    @requires("event_log")
    async def test_event_key_conflict_writes_nothing(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        await ctx.store.append_events(s.id, [EventInput("msg", {"v": 1}, key="k")])
        for clash in (
            [EventInput("fresh"), EventInput("msg", {"v": 2}, key="k")],  # other data
            [EventInput("other", {"v": 1}, key="k")],  # other type
            [EventInput("a", {}, key="n"), EventInput("a", {"x": 1}, key="n")],  # in one call
        ):
            err = await _unchanged(
                ctx,
                EventKeyConflictError,
                lambda c=clash: ctx.store.append_events(s.id, c),  # type: ignore[misc]
            )
            assert isinstance(err, EventKeyConflictError) and err.session_id == s.id
        err = await _unchanged(
            ctx,
            EventKeyConflictError,
            lambda: ctx.store.commit(
                [AppendOp(s.id, [{"type": "ok"}]), AppendOp(s.id, [EventInput("x", key="k")])]
            ),
        )
        assert isinstance(err, EventKeyConflictError) and err.key == "k"

    @store_test
    @requires("event_log")
    async def test_get_event_by_key(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 5)
        got = await ctx.store.get_event(s.id, key="k3")
        assert got is not None and (got.seq, got.type, got.data, got.key) == (
            3,
            "a",
            {"i": 3},
            "k3",
        )
        assert await ctx.store.get_event(s.id, key="k99") is None
        await ctx.store.pop_events(s.id)
        assert await ctx.store.get_event(s.id, key="k5") is None
        # a removed event's key is free again
        s = await ctx.store.append_events(s.id, [EventInput("new", {"n": 1}, key="k5")])
        got = await ctx.store.get_event(s.id, key="k5")
        assert got is not None and (got.seq, got.type) == (6, "new")
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_event("missing", key="k1")
        await ctx.store.update_session(s.id, ttl=1)
        ctx.clock.advance(2)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_event(s.id, key="k1")

    @store_test
    @requires("event_log")
    async def test_keys_and_types_match_exactly(self, ctx: ConformanceContext) -> None:
        """Keys and types are compared as exact strings: ``K1`` is not ``k1`` (no
        case-insensitive collation), neither for idempotency nor for ``get_event`` nor for
        the ``types`` filter."""
        st = ctx.store
        s = await st.create_session()
        s = await st.append_events(s.id, [EventInput("a", {"v": 1}, key="k1")])
        s = await st.append_events(
            s.id, [EventInput("A", {"v": 1}, key="K1"), EventInput("a", {"v": 2}, key="K\u0131")]
        )
        assert (s.event_count, s.last_seq) == (3, 3)
        for key, seq in (("k1", 1), ("K1", 2), ("K\u0131", 3)):
            got = await st.get_event(s.id, key=key)
            assert got is not None and (got.seq, got.key) == (seq, key), key
        assert await st.get_event(s.id, key="K\u0130") is None
        assert await _seqs(ctx, s.id, types=["a"]) == [1, 3]
        assert await _seqs(ctx, s.id, types=["A"]) == [2]
        assert await _seqs(ctx, s.id, types=["A"], last=5) == [2]
        # a key is unique within its session only: another session's k1 is its own
        other = await st.create_session()
        other = await st.append_events(other.id, [EventInput("a", {"v": 1}, key="k1")])
        assert (other.event_count, other.last_seq) == (1, 1)
        other = await st.append_events(other.id, [EventInput("z", {}, key="K1")])
        assert other.event_count == 2
        for sid, etype in ((s.id, "A"), (other.id, "z")):
            got = await st.get_event(sid, key="K1")
            assert got is not None and got.type == etype, sid
        assert await st.get_event(other.id, key="K\u0131") is None

    @store_test
    @requires("event_log")
    async def test_delete_events_naming_one_event_twice(self, ctx: ConformanceContext) -> None:
        """An event named by its seq and by its key (or a seq given twice) goes once, and
        ``event_count`` drops by one for it."""
        s = await _numbered(ctx, 5)
        d = await ctx.store.delete_events(s.id, seqs=[3, 3, 4], keys=["k3", "k4", "k4"])
        assert (d.event_count, d.last_seq, d.version) == (3, 5, s.version + 1)
        assert await _seqs(ctx, s.id) == [1, 2, 5]
        assert await ctx.store.get_session(s.id) == d
        (done,) = await ctx.store.commit([DeleteEventsOp(s.id, seqs=[5], keys=["k5"])])
        assert isinstance(done, Session) and done.event_count == 2
        assert await ctx.store.get_session(s.id) == done

    @store_test
    @requires("event_log")
    async def test_a_deleted_sessions_keys_are_free_again(self, ctx: ConformanceContext) -> None:
        """A session deleted and created again under its id (or replaced by a record)
        starts with no keys: an append with one of the old keys is written, whatever its
        content."""
        st = ctx.store
        s = await _numbered(ctx, 3, sid="reborn")
        assert await st.delete_session(s.id)
        await st.create_session(id=s.id)
        again = await st.append_events(
            s.id, [EventInput("a", {"i": 1}, key="k1"), EventInput("new", {}, key="k2")]
        )
        assert (again.event_count, again.last_seq) == (2, 2)
        got = await st.get_event(s.id, key="k2")
        assert got is not None and (got.seq, got.type) == (2, "new")
        # a record put over the session replaces its log, keys included
        (record,) = [r async for r in st.scan(filter=SessionFilter(ids=[s.id]))]
        await _numbered(ctx, 2, sid="other-log")
        (other,) = [r async for r in st.scan(filter=SessionFilter(ids=["other-log"]))]
        replaced = SessionRecord(replace(other.session, id=s.id), other.events)
        assert (await st.put_records([replaced], strategy="overwrite")).overwritten == 1
        assert [e.key for e in await st.get_events(s.id)] == ["k1", "k2"]
        got = await st.get_event(s.id, key="k2")
        assert got is not None and got.type == "b"
        assert record.events[1].key == "k2"

    @store_test
    @requires("event_log")
    async def test_event_reads_hand_out_copies(self, ctx: ConformanceContext) -> None:
        """Every event a read returns (by key, filtered, backwards, popped, in a record)
        is the caller's own: changing it changes nothing stored or read later."""
        st = ctx.store
        s = await st.create_session()
        await st.append_events(
            s.id,
            [EventInput("a", {"v": [1]}, key="x"), EventInput("b", {"v": [2]}, key="y")],
        )

        def spoil(found: Any) -> None:
            for event in found:
                event.data["v"].append("spoiled")
                event.data["new"] = True

        for _ in range(2):  # each read twice: a cached event would be spoiled the second time
            spoil([e for k in ("x", "y") if (e := await st.get_event(s.id, key=k))])
            spoil(await st.get_events(s.id, types=["a", "b"]))
            spoil(await st.get_events(s.id, before_seq=3, last=2))
            spoil(await st.get_events(s.id, at_after=_T0 - timedelta(days=1)))
            spoil(await st.get_events(s.id, last=2))
        got = await st.get_event(s.id, key="x")
        assert got is not None and got.data == {"v": [1]}
        assert [e.data for e in await st.get_events(s.id, types=["a", "b"])] == [
            {"v": [1]},
            {"v": [2]},
        ]
        popped = await st.pop_events(s.id)
        spoil(popped.events)
        assert (await st.get_events(s.id))[0].data == {"v": [1]}
        again = await st.append_events(s.id, [EventInput("b", {"v": [2]}, key="y")])
        assert again.event_count == 2  # the popped one's key is free: written again
        got = await st.get_event(s.id, key="y")
        assert got is not None and got.data == {"v": [2]}

    # ------------------------------------------------------------------ reads

    @store_test
    @requires("event_log")
    async def test_get_events_by_type_and_backwards(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 30)  # odd seqs: "a", even: "b"
        await ctx.store.append_events(s.id, [{"type": "c"}] * 3)  # 31-33
        await ctx.store.delete_events(s.id, seqs=[5, 6, 29])
        kept = [q for q in range(1, 34) if q not in (5, 6, 29)]

        def kind(q: int) -> str:
            return "c" if q > 30 else ("a" if q % 2 else "b")

        some: list[list[str] | None] = [None, ["a"], ["b"], ["c"], ["a", "c"], ["a", "b", "c"]]
        for types in [*some, [], ["zzz"], ["a", "a"], ["c", "a", "c"]]:  # a type twice: once
            for after_seq, before_seq in ((0, None), (4, None), (0, 20), (3, 8), (10, 11)):
                match = [
                    q
                    for q in kept
                    if q > after_seq
                    and (before_seq is None or q < before_seq)
                    and (types is None or kind(q) in types)
                ]
                window = {"after_seq": after_seq, "before_seq": before_seq, "types": types}
                assert await _seqs(ctx, s.id, **window) == match, window
                for n in (1, 2, 5, 20):
                    assert await _seqs(ctx, s.id, last=n, **window) == match[-n:], (window, n)
                    assert await _seqs(ctx, s.id, limit=n, **window) == match[:n], (window, n)
        # a backwards page walk
        pages: list[list[int]] = []
        before: int | None = None
        while True:
            page = await _seqs(ctx, s.id, before_seq=before, last=7)
            if not page:
                break
            pages.append(page)
            before = page[0]
        assert [q for page in reversed(pages) for q in page] == kept
        assert await ctx.store.get_events(s.id, last=0) == []
        assert await ctx.store.get_events(s.id, limit=0) == []
        assert await ctx.store.get_events(s.id, types=["a"], last=0) == []

    @store_test
    @requires("event_log")
    async def test_filtered_reads_after_several_events_go_at_once(
        self, ctx: ConformanceContext
    ) -> None:
        """A truncate and a pop of several events each, then appends: reads by type and
        by key see only the kept events (an index that forgets only part of a run of
        removed events answers with others); every filtered read of a session with no
        kept events is ``[]``."""
        st = ctx.store
        s = await _numbered(ctx, 12)  # odd seqs "a", even "b", keys k<seq>
        await st.truncate_events(s.id, after_seq=8)  # 9-12 in one removal
        await st.pop_events(s.id, 2)  # 8, 7 in one removal
        await st.pop_events(s.id, 1)  # 6
        await st.append_events(s.id, [{"type": "b"}, {"type": "c"}])  # 13, 14
        kept = {1: "a", 2: "b", 3: "a", 4: "b", 5: "a", 13: "b", 14: "c"}
        for types in (["a"], ["b"], ["c"], ["a", "b"], ["b", "c"]):
            want = [q for q, kind in kept.items() if kind in types]
            assert await _seqs(ctx, s.id, types=types) == want, types
            assert await _seqs(ctx, s.id, types=types, last=2) == want[-2:], types
            assert (
                await _seqs(ctx, s.id, types=types, after_seq=4, limit=2)
                == [q for q in want if q > 4][:2]
            ), types
        for q in range(6, 13):
            assert await st.get_event(s.id, key=f"k{q}") is None, q
        got = await st.get_event(s.id, key="k5")
        assert got is not None and got.seq == 5
        none_kept = await _numbered(ctx, 3, sid="none-kept")
        await st.truncate_events(none_kept.id, after_seq=0)
        never = await st.create_session(id="never")
        for sid in (none_kept.id, never.id):
            for window in (
                {"types": ["a"]},
                {"before_seq": 3},
                {"at_after": _T0},
                {"at_before": _T0 + timedelta(days=9999)},
                {"after_seq": 1, "types": ["b"], "last": 2},
            ):
                assert await st.get_events(sid, **window) == [], (sid, window)

    @store_test
    @requires("event_log")
    async def test_time_bounds_on_a_log_in_time_order(self, ctx: ConformanceContext) -> None:
        """The usual log, each event later than the one before (a store may bisect it):
        the time bounds are exclusive at an event's exact ``at`` and combine with the seq
        window, ``types``, ``limit`` and ``last``."""
        s = await ctx.store.create_session()
        ctx.clock.set(_T0)
        for i in range(12):
            ctx.clock.advance(timedelta(milliseconds=1 + i % 3))
            s = await ctx.store.append_events(s.id, [{"type": "ab"[i % 2], "data": {"i": i}}])
        await ctx.store.delete_events(s.id, seqs=[5])
        stored = await ctx.store.get_events(s.id)
        ats = [e.at for e in stored]
        assert ats == sorted(ats) and len(set(ats)) == len(ats)
        ms = timedelta(milliseconds=1)
        bounds = [None, ats[0], ats[3], ats[3] - ms, ats[7] + ms, ats[-1]]
        for low in bounds:
            for high in bounds:
                windows: list[tuple[int, int, list[str], dict[str, Any]]] = [
                    (0, 99, ["a", "b"], {}),
                    (2, 99, ["a", "b"], {"after_seq": 2}),
                    (0, 10, ["a", "b"], {"before_seq": 10}),
                    (0, 99, ["a"], {"types": ["a"]}),
                ]
                for after, before, types, window in windows:
                    want = [
                        e.seq
                        for e in stored
                        if (low is None or e.at > low)
                        and (high is None or e.at < high)
                        and after < e.seq < before
                        and e.type in types
                    ]
                    got = await _seqs(ctx, s.id, at_after=low, at_before=high, **window)
                    assert got == want, (low, high, window)
                    for n in (1, 3):
                        assert (
                            await _seqs(ctx, s.id, at_after=low, at_before=high, limit=n, **window)
                            == want[:n]
                        ), (low, high, window, n)
                        assert (
                            await _seqs(ctx, s.id, at_after=low, at_before=high, last=n, **window)
                            == want[-n:]
                        ), (low, high, window, n)

    @store_test
    @requires("event_log")
    async def test_caller_set_at_and_time_bounds(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        east = timezone(timedelta(hours=2))
        given = [
            _T0,
            _T0 + timedelta(seconds=1, microseconds=1500),  # stored at millisecond precision
            datetime(2030, 1, 1, 2, 0, 2, tzinfo=east),  # = _T0 + 2 s, another zone
            None,  # the store's clock
            _T0 - timedelta(days=1),  # out of order: still filtered right
        ]
        ctx.clock.set(_T0 + timedelta(seconds=3))
        await ctx.store.append_events(
            s.id, [EventInput("t", {"i": i}, at=at) for i, at in enumerate(given)]
        )
        events = await ctx.store.get_events(s.id)
        stored = [e.at for e in events]
        assert stored == [
            _T0,
            _T0 + timedelta(seconds=1, milliseconds=1),
            _T0 + timedelta(seconds=2),
            _T0 + timedelta(seconds=3),
            _T0 - timedelta(days=1),
        ]
        assert all(at.utcoffset() == timedelta(0) for at in stored)

        async def between(low: datetime | None, high: datetime | None, **kw: Any) -> list[int]:
            return await _seqs(ctx, s.id, at_after=low, at_before=high, **kw)

        assert await between(_T0, None) == [2, 3, 4]  # exclusive
        assert await between(None, _T0 + timedelta(seconds=2)) == [1, 2, 5]  # exclusive
        assert await between(_T0 - timedelta(hours=1), _T0 + timedelta(seconds=3)) == [1, 2, 3]
        # a bound finer than a millisecond loses nothing
        assert await between(None, _T0 + timedelta(microseconds=1)) == [1, 5]
        assert await between(_T0 + timedelta(seconds=1, microseconds=1500), None) == [3, 4]
        assert await between(None, None, types=["t"], last=2) == [4, 5]
        assert await between(_T0, None, last=1) == [4]
        # a bound in another zone is that instant, not its wall clock read as UTC
        assert await between(datetime(2030, 1, 1, 2, 0, 1, tzinfo=east), None) == [2, 3, 4]
        assert await between(None, datetime(2030, 1, 1, 2, 0, 2, tzinfo=east)) == [1, 2, 5]
        assert await between(_T0 - timedelta(days=2), _T0, last=1) == [5]

    # ------------------------------------------------------------------ other contracts

    @store_test
    @requires("event_log")
    async def test_restore_checkpoint_leaves_the_event_log(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 5)
        await ctx.store.update_session(s.id, data={"before": True})
        cp = await ctx.store.save_checkpoint(s.id)
        await ctx.store.pop_events(s.id, 2)
        await ctx.store.truncate_events(s.id, 2)
        s = await ctx.store.append_events(s.id, [{"type": "later"}])
        restored = await ctx.store.restore_checkpoint(s.id, cp.id)
        assert restored.data == {"before": True}
        assert (restored.event_count, restored.last_seq) == (3, 6)
        assert await _seqs(ctx, s.id) == [1, 2, 6]  # popped/truncated events stay gone

    @store_test
    @requires("event_log")
    async def test_records_carry_keys_times_and_gaps(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 6)
        await ctx.store.append_events(s.id, [EventInput("old", {}, key="o", at=_T0)])
        await ctx.store.delete_events(s.id, seqs=[2, 4])
        await ctx.store.pop_events(s.id, 1)
        await ctx.store.append_events(s.id, [EventInput("new", {}, key="o", at=_T0)])
        records = [r async for r in ctx.store.scan()]
        (record,) = [r for r in records if r.session.id == s.id]
        assert [(e.seq, e.key) for e in record.events] == [
            (1, "k1"),
            (3, "k3"),
            (5, "k5"),
            (6, "k6"),
            (8, "o"),
        ]
        other = await ctx.open_store(ctx.fresh_namespace())
        result = await other.put_records(records)
        assert result.created == len(records)
        copied = [r async for r in other.scan()]
        (again,) = [r for r in copied if r.session.id == s.id]
        assert again == record
        got = await other.get_event(s.id, key="o")
        assert got is not None and (got.seq, got.at) == (8, _T0)
        bad = SessionRecord(
            record.session, [*record.events[:-1], record.events[0]], record.checkpoints
        )
        with pytest.raises(InvalidArgumentError):
            await other.put_records([bad], strategy="overwrite")
        # a key is unique in a session's log: a record with one key twice is refused
        twice = SessionRecord(
            record.session,
            [*record.events[:-1], replace(record.events[-1], key="k1")],
            record.checkpoints,
        )
        before = await snapshot(other)
        with pytest.raises(InvalidArgumentError):
            await other.put_records([twice], strategy="overwrite")
        # each seq check alone (keys unique): a seq below 1, one above last_seq, one twice
        evs = record.events
        for events in (
            [replace(evs[0], seq=0), *evs[1:]],
            [*evs[:-1], replace(evs[-1], seq=record.session.last_seq + 1)],
            [evs[0], replace(evs[1], seq=evs[0].seq), *evs[2:]],
        ):
            wrong = SessionRecord(record.session, events, record.checkpoints)
            with pytest.raises(InvalidArgumentError):
                await other.put_records([wrong], strategy="overwrite")
        assert await snapshot(other) == before

    @store_test
    @requires("event_log")
    async def test_records_keep_counters_above_the_kept_events(
        self, ctx: ConformanceContext
    ) -> None:
        """A record copies ``last_seq`` as stored, above its newest kept event (a popped
        tail, an emptied log), and each event's time to the millisecond: the copy goes on
        numbering where the original would."""
        st = ctx.store
        ctx.clock.advance(timedelta(milliseconds=1234))
        s = await _numbered(ctx, 5, sid="popped")
        await st.pop_events(s.id, 2)  # kept 1..3, last_seq 5
        ctx.clock.advance(timedelta(milliseconds=567))
        e = await _numbered(ctx, 3, sid="emptied")
        await st.truncate_events(e.id, 0)  # none kept, last_seq 3
        ids = SessionFilter(ids=[s.id, e.id])
        records = sorted([r async for r in st.scan(filter=ids)], key=lambda r: r.session.id)
        assert [(r.session.event_count, r.session.last_seq) for r in records] == [(0, 3), (3, 5)]
        assert {ev.at.microsecond for ev in records[1].events} == {234_000}
        other = await ctx.open_store(ctx.fresh_namespace())
        assert (await other.put_records(records)).created == 2
        copied = sorted([r async for r in other.scan()], key=lambda r: r.session.id)
        assert copied == records
        for sid, seq in ((s.id, 6), (e.id, 4)):
            after = await other.append_events(sid, [{"type": "next"}])
            assert after.last_seq == seq
            assert [ev.seq for ev in await other.get_events(sid, last=1)] == [seq]

    @store_test
    @requires("event_log")
    async def test_event_log_ops_on_missing_session(self, ctx: ConformanceContext) -> None:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: ctx.store.pop_events("missing"),
            lambda: ctx.store.truncate_events("missing", 0),
            lambda: ctx.store.delete_events("missing", seqs=[1]),
            lambda: ctx.store.get_event("missing", key="k"),
            lambda: ctx.store.get_events("missing", types=["x"]),
            lambda: ctx.store.append_events("missing", [EventInput("x", key="k")]),
        ]
        for call in calls:
            await _unchanged(ctx, SessionNotFoundError, call)

    @store_test
    @requires("event_log")
    async def test_bad_event_log_arguments_refused(self, ctx: ConformanceContext) -> None:
        s = await _numbered(ctx, 3)
        naive = datetime(2030, 1, 1)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: ctx.store.pop_events(s.id, 0),
            lambda: ctx.store.pop_events(s.id, -1),
            lambda: ctx.store.pop_events(s.id, True),
            lambda: ctx.store.truncate_events(s.id, -1),
            lambda: ctx.store.truncate_events(s.id, "1"),  # type: ignore[arg-type]
            lambda: ctx.store.delete_events(s.id, seqs=[0]),
            lambda: ctx.store.delete_events(s.id, seqs=5),  # type: ignore[arg-type]
            lambda: ctx.store.delete_events(s.id, seqs=b"\x01"),  # bytes iterate as ints
            lambda: ctx.store.delete_events(s.id, seqs="1"),  # type: ignore[arg-type]
            lambda: ctx.store.delete_events(s.id, keys="k1"),
            lambda: ctx.store.delete_events(s.id, keys=[""]),
            lambda: ctx.store.get_event(s.id, key=""),
            lambda: ctx.store.get_event(s.id, key="x" * 257),
            lambda: ctx.store.get_event(s.id, key=5),  # type: ignore[arg-type]
            lambda: ctx.store.append_events(s.id, [EventInput("t", key="")]),
            lambda: ctx.store.append_events(s.id, [EventInput("t", key="a\nb")]),
            lambda: ctx.store.append_events(s.id, [EventInput("t", key="x" * 257)]),
            lambda: ctx.store.append_events(s.id, [{"type": "t", "key": 7}]),
            lambda: ctx.store.append_events(s.id, [EventInput("t", at=naive)]),
            lambda: ctx.store.append_events(s.id, [{"type": "t", "at": "2030-01-01"}]),
            lambda: ctx.store.append_events(s.id, [{"type": "t"}], create="yes"),  # type: ignore[arg-type]
            lambda: ctx.store.append_events(s.id, [{"type": "t"}], ttl=0),
            lambda: ctx.store.get_events(s.id, types="a"),
            lambda: ctx.store.get_events(s.id, types=[""]),
            lambda: ctx.store.get_events(s.id, before_seq=0),
            lambda: ctx.store.get_events(s.id, at_after=naive),
            lambda: ctx.store.get_events(s.id, at_before="x"),  # type: ignore[arg-type]
            lambda: ctx.store.get_events(s.id, last=-1),
            lambda: ctx.store.commit([PopOp(s.id, 0)]),
            lambda: ctx.store.commit([TrimOp(s.id, -1)]),
            lambda: ctx.store.commit([DeleteEventsOp(s.id, keys="k")]),
        ]
        for call in calls:
            await _unchanged(ctx, InvalidArgumentError, call)
        assert await ctx.store.get_event(s.id, key="x" * 256) is None  # the longest allowed

    @store_test
    async def test_event_log_refused_without_capability(self, ctx: ConformanceContext) -> None:
        """A driver that does not declare ``event_log`` refuses the operations it cannot
        store with :class:`UnsupportedOperationError` and writes nothing."""
        if ctx.store.capabilities.event_log:
            pytest.skip("the driver declares event_log")
        s = await ctx.store.create_session()
        s = await ctx.store.append_events(s.id, [{"type": "a"}, {"type": "b"}])
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: ctx.store.pop_events(s.id),
            lambda: ctx.store.truncate_events(s.id, 1),
            lambda: ctx.store.delete_events(s.id, seqs=[1]),
            lambda: ctx.store.get_event(s.id, key="k"),
            lambda: ctx.store.append_events(s.id, [EventInput("t", key="k")]),
            lambda: ctx.store.append_events(s.id, [EventInput("t", at=_T0)]),
            lambda: ctx.store.commit([PopOp(s.id)]),
            lambda: ctx.store.commit([AppendOp(s.id, [{"type": "t", "key": "k"}])]),
        ]
        for call in calls:
            await _unchanged(ctx, UnsupportedOperationError, call)
        # what works on every driver: trim (also batched) and plain windows
        t = await ctx.store.trim_events(s.id, keep_last=1)
        assert await _seqs(ctx, s.id) == [2] and t.event_count == 1
        assert await ctx.store.get_events(s.id, last=0) == []
        done = await ctx.store.commit(
            [AppendOp(s.id, [{"type": "c"}, {"type": "d"}]), TrimOp(s.id, keep_last=2)]
        )
        assert await _seqs(ctx, s.id) == [3, 4]
        final = done[-1]
        assert isinstance(final, Session) and (final.event_count, final.last_seq) == (2, 4)
        made = await ctx.store.append_events("made", [{"type": "x"}], create=True, ttl=60)
        assert (made.version, made.event_count) == (1, 1)
        assert made.expires_at == ctx.clock.now() + timedelta(seconds=60)
        # records from a store with the event log: a gap or a key cannot be held here
        three = await ctx.store.append_events("three", [{"type": "e"}] * 3, create=True)
        (record,) = [r async for r in ctx.store.scan(filter=SessionFilter(ids=[three.id]))]
        first, _, last = record.events
        gapped = SessionRecord(
            replace(record.session, id="gapped", event_count=2), [first, last], []
        )
        keyed = SessionRecord(
            replace(record.session, id="keyed"), [replace(first, key="k"), *record.events[1:]]
        )
        for bad in (gapped, keyed):
            await _unchanged(ctx, UnsupportedOperationError, partial(ctx.store.put_records, [bad]))
