"""Events: append, paging, trim, sequence numbers never reused; raw reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from sessionstore import (
    AppendOp,
    Event,
    EventInput,
    InvalidArgumentError,
    QueryOptions,
    RawEvent,
    Session,
    SessionFilter,
    SessionNotFoundError,
)

from ._harness import ConformanceContext, requires, store_test

__all__ = ["EventTests"]


class EventTests:
    """The per-session event log."""

    @store_test
    async def test_append_assigns_gap_free_seq(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        ctx.clock.advance(1)
        first_at = ctx.clock.now()
        s = await ctx.store.append_events(s.id, [{"type": "a", "data": {"i": 1}}, EventInput("b")])
        assert s.updated_at == first_at
        ctx.clock.advance(1)
        s = await ctx.store.append_events(s.id, [{"type": "c"}])
        assert s.event_count == 3
        assert s.last_seq == 3
        assert s.updated_at == ctx.clock.now()
        events = await ctx.store.get_events(s.id)
        assert [(e.seq, e.type, e.data) for e in events] == [
            (1, "a", {"i": 1}),
            (2, "b", {}),
            (3, "c", {}),
        ]
        # each event carries the time of its own append
        assert [e.at for e in events] == [first_at, first_at, ctx.clock.now()]
        assert first_at != ctx.clock.now()
        ctx.clock.advance(1)
        assert [e.at for e in await ctx.store.get_events(s.id)] == [e.at for e in events]

    @store_test
    async def test_event_writes_move_the_stored_updated_at(self, ctx: ConformanceContext) -> None:
        # an append is a write like any other: the stored session (not only the returned
        # one) moves its updated_at, and listings by updated_at follow it
        a = await ctx.store.create_session()
        ctx.clock.advance(1)
        b = await ctx.store.create_session()
        ctx.clock.advance(1)
        appended = await ctx.store.append_events(a.id, [{"type": "t"}, {"type": "u"}])
        assert appended.updated_at == ctx.clock.now()
        assert await ctx.store.get_session(a.id) == appended
        newest_first = QueryOptions(sort_by="updated_at", order="desc")
        assert (await ctx.store.list_sessions(None, newest_first)).ids == [a.id, b.id]
        since = SessionFilter(updated_after=b.updated_at)
        assert (await ctx.store.list_sessions(since)).ids == [a.id]
        assert await ctx.store.count_sessions(since) == 1
        ctx.clock.advance(1)
        trimmed = await ctx.store.trim_events(a.id, keep_last=1)
        assert trimmed.updated_at == ctx.clock.now()
        assert await ctx.store.get_session(a.id) == trimmed
        if ctx.store.capabilities.event_log:
            ctx.clock.advance(1)
            await ctx.store.append_events(b.id, [{"type": "t"}])
            ctx.clock.advance(1)
            popped = await ctx.store.pop_events(a.id)
            assert popped.session.updated_at == ctx.clock.now()
            assert await ctx.store.get_session(a.id) == popped.session
            assert (await ctx.store.list_sessions(None, newest_first)).ids == [a.id, b.id]

    @store_test
    async def test_get_events_paging(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        for chunk in range(5):
            await ctx.store.append_events(s.id, [{"type": f"t{chunk}-{i}"} for i in range(10)])
        seqs = [e.seq for e in await ctx.store.get_events(s.id)]
        assert seqs == list(range(1, 51))
        assert [e.seq for e in await ctx.store.get_events(s.id, last=3)] == [48, 49, 50]
        assert [e.seq for e in await ctx.store.get_events(s.id, after_seq=10, limit=4)] == [
            11,
            12,
            13,
            14,
        ]
        assert [e.seq for e in await ctx.store.get_events(s.id, after_seq=47)] == [48, 49, 50]
        assert [e.seq for e in await ctx.store.get_events(s.id, after_seq=45, last=2)] == [49, 50]
        assert await ctx.store.get_events(s.id, after_seq=50) == []
        assert [e.seq for e in await ctx.store.get_events(s.id, last=500)] == list(range(1, 51))
        with pytest.raises(InvalidArgumentError):
            await ctx.store.get_events(s.id, last=2, limit=2)

    @store_test
    async def test_trim_keeps_last_and_never_reuses_seq(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        await ctx.store.append_events(s.id, [{"type": str(i)} for i in range(10)])
        s = await ctx.store.trim_events(s.id, keep_last=3)
        assert s.event_count == 3
        assert s.last_seq == 10
        assert [e.seq for e in await ctx.store.get_events(s.id)] == [8, 9, 10]
        s = await ctx.store.append_events(s.id, [{"type": "next"}])
        assert [e.seq for e in await ctx.store.get_events(s.id)] == [8, 9, 10, 11]
        s = await ctx.store.trim_events(s.id, keep_last=0)
        assert s.event_count == 0
        assert not s.has_events
        assert await ctx.store.get_events(s.id) == []
        s = await ctx.store.append_events(s.id, [{"type": "after-empty"}])
        events = await ctx.store.get_events(s.id)
        assert [e.seq for e in events] == [12]
        assert [e.seq for e in await ctx.store.get_events(s.id, after_seq=5, limit=10)] == [12]

    @store_test
    async def test_trim_with_nothing_to_drop_writes_nothing(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        s = await ctx.store.append_events(s.id, [{"type": "a"}])
        same = await ctx.store.trim_events(s.id, keep_last=5)
        assert same == s
        same = await ctx.store.trim_events(s.id, keep_last=1)  # exactly as many as stored
        assert same == s
        empty = await ctx.store.create_session()  # no events at all: nothing to write
        for keep in (0, 1):
            assert await ctx.store.trim_events(empty.id, keep_last=keep) == empty
        assert await ctx.store.get_session(empty.id) == empty

    @store_test
    async def test_events_of_missing_session(self, ctx: ConformanceContext) -> None:
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_events("missing")
        with pytest.raises(SessionNotFoundError):
            await ctx.store.append_events("missing", [{"type": "x"}])
        with pytest.raises(SessionNotFoundError):
            await ctx.store.trim_events("missing", keep_last=1)

    @store_test
    async def test_deleting_session_deletes_events(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(id="ev")
        await ctx.store.append_events(s.id, [{"type": "x"}] * 3)
        await ctx.store.delete_session(s.id)
        s = await ctx.store.create_session(id="ev")
        assert await ctx.store.get_events("ev") == []
        s = await ctx.store.append_events("ev", [{"type": "y"}])
        assert [e.seq for e in await ctx.store.get_events("ev")] == [1]

    @store_test
    async def test_event_data_round_trips(self, ctx: ConformanceContext) -> None:
        payload = {
            "list": [],
            "obj": {},
            "n": 2**62,
            "f": 1.5,
            "whole": 1.0,
            "in_list": [2.0, 2],
            "s": "ü",
            "none": None,
        }
        s = await ctx.store.create_session()
        await ctx.store.append_events(s.id, [{"type": "t", "data": payload}])
        (event,) = await ctx.store.get_events(s.id)
        assert event.data == payload
        assert isinstance(event.data["list"], list)
        # a whole float stays a float (1.0 == 1 in Python: the types are compared)
        assert [type(v) for v in (event.data["whole"], *event.data["in_list"])] == [
            float,
            float,
            int,
        ]
        assert event.at.utcoffset() is not None

    @store_test
    async def test_get_events_every_window(self, ctx: ConformanceContext) -> None:
        """Every combination of ``after_seq`` / ``limit`` / ``last`` on a trimmed log."""
        s = await ctx.store.create_session()
        await ctx.store.append_events(s.id, [{"type": f"e{i}"} for i in range(7)])
        await ctx.store.append_events(s.id, [{"type": f"f{i}"} for i in range(5)])
        await ctx.store.trim_events(s.id, keep_last=9)  # kept: seq 4..12
        kept = list(range(4, 13))
        for after_seq in (0, 2, 3, 4, 7, 11, 12, 40):
            for limit in (None, 1, 2, 5, 9, 50):
                for last in (None, 1, 2, 5, 9, 50):
                    if limit is not None and last is not None:
                        continue
                    want = [q for q in kept if q > after_seq]
                    if limit is not None:
                        want = want[:limit]
                    if last is not None:
                        want = want[-last:]
                    got = await ctx.store.get_events(
                        s.id, after_seq=after_seq, limit=limit, last=last
                    )
                    assert [e.seq for e in got] == want, (after_seq, limit, last)
                    assert [e.type for e in got] == [
                        f"e{q - 1}" if q <= 7 else f"f{q - 8}" for q in want
                    ]

    @store_test
    async def test_raw_events_are_the_events_with_their_data_as_json(
        self, ctx: ConformanceContext
    ) -> None:
        """``get_raw_events`` reads what ``get_events`` reads, in every window and with
        every filter, each event's data as the JSON of one object (bytes) that decodes
        to the event's data, types included (a whole float stays a float)."""
        st = ctx.store
        s = await st.create_session()
        payload = {"n": 2**62, "f": 1.5, "whole": 1.0, "s": 'ü\n"', "l": [{}, []], "z": None}
        keyed = ctx.store.capabilities.event_log
        for i in range(12):
            ctx.clock.advance(1)
            await st.append_events(
                s.id,
                [
                    {
                        "type": "a" if i % 3 else "b",
                        "data": {"i": i, **(payload if i % 4 == 0 else {})},
                        **({"key": f"k{i}-{j}"} if keyed and i % 2 else {}),
                    }
                    for j in range(1 + i % 2)
                ],
            )
        await st.trim_events(s.id, keep_last=15)
        every = await st.get_events(s.id)
        assert len(every) == 15
        t0, t1 = every[2].at, every[-3].at
        windows: list[dict[str, Any]] = [
            {},
            {"after_seq": every[4].seq},
            {"before_seq": every[6].seq},
            {"limit": 4},
            {"last": 4},
            {"after_seq": every[1].seq, "limit": 3},
            {"after_seq": every[1].seq, "last": 3},
            {"types": ["b"]},
            {"types": ["a", "b"], "last": 5},
            {"at_after": t0},
            {"at_before": t1, "last": 2},
            {"at_after": t0, "at_before": t1, "types": ["a"]},
            {"last": 0},
            {"limit": 0},
            {"after_seq": every[-1].seq},
        ]
        for window in windows:
            events = await st.get_events(s.id, **window)
            raw = await st.get_raw_events(s.id, **window)
            assert all(type(e) is RawEvent and type(e.data_json) is bytes for e in raw), window
            decoded = [Event(e.seq, e.type, e.at, orjson.loads(e.data_json), e.key) for e in raw]
            assert decoded == events, window
            for a, b in zip(decoded, events, strict=True):
                assert [type(v) for v in a.data.values()] == [type(v) for v in b.data.values()]
        assert any("whole" in e.data for e in every)

    @store_test
    async def test_raw_events_of_missing_expired_or_emptied_sessions(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        with pytest.raises(SessionNotFoundError):
            await st.get_raw_events("missing")
        with pytest.raises(SessionNotFoundError):
            await st.get_raw_events("missing", last=0)
        brief = await st.create_session(ttl=1)
        await st.append_events(brief.id, [{"type": "t"}])
        assert [e.seq for e in await st.get_raw_events(brief.id)] == [1]
        ctx.clock.advance(timedelta(seconds=2))
        for window in ({}, {"last": 5}, {"types": ["t"]}):
            with pytest.raises(SessionNotFoundError):
                await st.get_raw_events(brief.id, **window)
        empty = await st.create_session()
        assert await st.get_raw_events(empty.id) == []
        await st.append_events(empty.id, [{"type": "t"}] * 3)
        await st.trim_events(empty.id, keep_last=0)
        assert await st.get_raw_events(empty.id) == []
        assert await st.get_raw_events(empty.id, types=["t"], last=2) == []
        with pytest.raises(InvalidArgumentError):
            await st.get_raw_events(empty.id, limit=1, last=1)

    @store_test
    async def test_a_long_log_is_read_whole(self, ctx: ConformanceContext) -> None:
        """A log longer than any backend's default page (1,001 events) comes back whole
        from ``get_events()`` and in its record, and a copy of the record holds it all."""
        s = await ctx.store.create_session()
        s = await ctx.store.append_events(
            s.id, [{"type": "t", "data": {"i": i}} for i in range(1001)]
        )
        assert (s.event_count, s.last_seq) == (1001, 1001)
        events = await ctx.store.get_events(s.id)
        assert [e.seq for e in events] == list(range(1, 1002))
        assert events[-1].data == {"i": 1000}
        (record,) = [r async for r in ctx.store.scan(filter=SessionFilter(ids=[s.id]))]
        assert list(record.events) == events
        other = await ctx.open_store(ctx.fresh_namespace())
        assert (await other.put_records([record])).created == 1
        assert await other.get_events(s.id) == events

    @store_test
    @requires("shared_namespace")
    async def test_store_objects_take_turns_on_one_log(self, ctx: ConformanceContext) -> None:
        """Two store objects on one namespace append to one session in turn: each goes
        on from the seq the other used last (no counter kept per store object)."""
        st, other = ctx.store, await ctx.open_store()
        s = await st.create_session()
        writers = [st, other, st, other, st]
        for i, writer in enumerate(writers):
            done = await writer.append_events(s.id, [{"type": f"w{i}"}, {"type": f"w{i}"}])
            assert (done.last_seq, done.event_count) == (2 * i + 2, 2 * i + 2)
        for reader in (st, other):
            events = await reader.get_events(s.id)
            assert [e.seq for e in events] == list(range(1, 11))
            assert [e.type for e in events] == [f"w{q // 2}" for q in range(10)]
        await other.trim_events(s.id, keep_last=1)
        done = await st.append_events(s.id, [{"type": "after"}])
        assert (done.last_seq, done.event_count) == (11, 2)

    @store_test
    async def test_append_accepts_any_sequence(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        s = await ctx.store.append_events(s.id, ({"type": "a"}, EventInput("b", {"k": 1})))
        assert (s.event_count, s.last_seq) == (2, 2)
        (done,) = await ctx.store.commit([AppendOp(s.id, (EventInput("c"),))])
        assert isinstance(done, Session) and done.last_seq == 3
        events = await ctx.store.get_events(s.id)
        assert [(e.type, e.data) for e in events] == [("a", {}), ("b", {"k": 1}), ("c", {})]
