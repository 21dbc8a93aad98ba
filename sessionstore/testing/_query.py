"""Queries: every filter field, orders, keyset cursors, offsets, counts, and search.

Results are checked two ways: against explicit expectations, and against
:func:`sessionstore.query.evaluate` (the reference evaluator) over the same sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from sessionstore import (
    InvalidArgumentError,
    InvalidCursorError,
    QueryOptions,
    Session,
    SessionFilter,
    SessionStore,
)
from sessionstore.query import SORT_FIELDS, evaluate, is_after, order_key

from ._harness import ConformanceContext, store_test

__all__ = ["QueryTests", "all_pages", "everything", "seed"]

PROCESSORS = ("alpha", "beta", "gamma", None)
STATUSES = ("active", "paused", "completed", "failed")
TAGS = ("red", "green", "blue", "prod", "dev")


async def seed(ctx: ConformanceContext, n: int = 36) -> list[Session]:
    """A varied data set with timestamp ties, expiries, events and metadata."""
    out: list[Session] = []
    for i in range(n):
        ctx.clock.advance(timedelta(milliseconds=0 if i % 4 == 1 else 5 + i))
        tags = {TAGS[i % 5], TAGS[(i * 3) % 5]} if i % 6 else set()
        s = await ctx.store.create_session(
            id=f"s{(i * 7) % n:03d}",
            processor_id=PROCESSORS[i % 4],
            status=STATUSES[i % 4],
            tags=tags,
            metadata={
                "n": i % 3,
                "tier": {"name": "gold" if i % 2 else "silver"},
                "flag": i % 5 == 0,
            },
            data={"title": f"Task number {i}", "notes": ["Needle" if i % 9 == 0 else "hay"]},
            ttl=(30 + i) if i % 3 == 0 else None,
        )
        if i % 5 == 2:
            s = await ctx.store.append_events(s.id, [{"type": "e"}])
        if i % 7 == 3:
            ctx.clock.advance(timedelta(milliseconds=3))
            s = await ctx.store.update_session(s.id, merge_data={"touched": True})
        out.append(s)
    ctx.clock.advance(40)  # some sessions are now expired
    return out


async def everything(store: SessionStore, ids: list[str]) -> list[Session]:
    found = await store.get_sessions(ids, include_expired=True)
    return list(found.values())


async def all_pages(store: SessionStore, flt: SessionFilter, opts: QueryOptions) -> list[str]:
    ids: list[str] = []
    page = await store.list_sessions(flt, opts)
    ids.extend(page.ids)
    guard = 0
    while page.next_cursor is not None:
        guard += 1
        assert guard < 1000, "cursor paging does not terminate"
        page = await store.list_sessions(
            flt,
            QueryOptions(
                sort_by=opts.sort_by, order=opts.order, limit=opts.limit, cursor=page.next_cursor
            ),
        )
        ids.extend(page.ids)
    return ids


def _filters(base: datetime) -> dict[str, SessionFilter]:
    t = base + timedelta(milliseconds=200)
    return {
        "ids": SessionFilter(ids=["s000", "s007", "s014", "nope"]),
        "processor_one": SessionFilter(processor_id="alpha"),
        "processor_many": SessionFilter(processor_id=["alpha", "gamma"]),
        "status_one": SessionFilter(status="paused"),
        "status_many": SessionFilter(status=["active", "failed"]),
        "tags_all": SessionFilter(tags_all={"green", "blue"}),
        "tags_any": SessionFilter(tags_any={"green", "dev"}),
        "metadata": SessionFilter(metadata={"n": 1}),
        "metadata_dotted": SessionFilter(metadata={"tier.name": "gold", "flag": False}),
        "created_after": SessionFilter(created_after=t),
        "created_before": SessionFilter(created_before=t),
        "updated_range": SessionFilter(
            updated_after=base + timedelta(milliseconds=100),
            updated_before=t + timedelta(milliseconds=200),
        ),
        "expires_before": SessionFilter(
            expires_before=t + timedelta(seconds=45), include_expired=True
        ),
        "has_events": SessionFilter(has_events=True),
        "no_events": SessionFilter(has_events=False),
        "include_expired": SessionFilter(include_expired=True),
        "combined": SessionFilter(
            processor_id=["alpha", "beta"], tags_any={"red", "prod"}, created_after=t
        ),
        "combined_range": SessionFilter(
            status=["active", "paused", "completed"],
            created_before=t + timedelta(milliseconds=300),
            updated_after=base + timedelta(milliseconds=100),
            include_expired=True,
        ),
    }


class QueryTests:
    """``list_sessions`` / ``count_sessions`` semantics."""

    async def _check_filter(self, ctx: ConformanceContext, name: str) -> None:
        base = ctx.clock.now()
        seeded = await seed(ctx)
        flt = _filters(base)[name]
        universe = await everything(ctx.store, [s.id for s in seeded])
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                opts = QueryOptions(sort_by=sort_by, order=order, limit=1000)
                want = evaluate(universe, flt, opts, ctx.clock.now()).ids
                got = await ctx.store.list_sessions(flt, opts)
                assert got.ids == want, f"filter {name}, sort {sort_by} {order}"
                assert got.next_cursor is None
        count = len(evaluate(universe, flt, QueryOptions(limit=1000), ctx.clock.now()).ids)
        assert await ctx.store.count_sessions(flt) == count
        # a filter that matches everything (or nothing) tests nothing
        assert count > 0, f"filter {name} matches nothing"
        if name != "include_expired":
            every = SessionFilter(include_expired=flt.include_expired)
            baseline = evaluate(universe, every, QueryOptions(limit=1000), ctx.clock.now()).ids
            assert count < len(baseline), f"filter {name} matches every session"

    @store_test
    async def test_filter_ids(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "ids")

    @store_test
    async def test_filter_processor_id(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "processor_one")
        await ctx.close_namespace_data()
        await self._check_filter(ctx, "processor_many")

    @store_test
    async def test_filter_status(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "status_one")
        await ctx.close_namespace_data()
        await self._check_filter(ctx, "status_many")

    @store_test
    async def test_filter_tags_all(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "tags_all")

    @store_test
    async def test_filter_tags_any(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "tags_any")

    @store_test
    async def test_filter_metadata(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "metadata")
        await ctx.close_namespace_data()
        await self._check_filter(ctx, "metadata_dotted")

    @store_test
    async def test_filter_metadata_uses_json_equality(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session(metadata={"v": 1})
        b = await ctx.store.create_session(metadata={"v": 1.0})
        c = await ctx.store.create_session(metadata={"v": True})
        d = await ctx.store.create_session(metadata={"v": "1"})
        for value, sid in ((1, a.id), (1.0, b.id), (True, c.id), ("1", d.id)):
            page = await ctx.store.list_sessions(SessionFilter(metadata={"v": value}))
            assert page.ids == [sid], f"metadata v={value!r}"
        missing = await ctx.store.list_sessions(SessionFilter(metadata={"v.deeper": 1}))
        assert missing.ids == []

    @store_test
    async def test_filter_metadata_objects_and_lists_by_equality(
        self, ctx: ConformanceContext
    ) -> None:
        # the whole value must be equal, not contain the filter's (PostgreSQL's @>): part of
        # an object or a list matches only a session that holds exactly that part
        whole = await ctx.store.create_session(metadata={"o": {"x": 1, "y": 2}, "l": [1, 2]})
        part = await ctx.store.create_session(metadata={"o": {"x": 1}, "l": [1]})
        empty = await ctx.store.create_session(metadata={"o": {}, "l": []})
        scalar = await ctx.store.create_session(metadata={"o": "x", "l": 1})
        cases: list[tuple[dict[str, object], list[str]]] = [
            ({"o": {"x": 1}}, [part.id]),
            ({"o": {"y": 2, "x": 1}}, [whole.id]),  # key order is no part of an object
            ({"o": {}}, [empty.id]),
            ({"o": "x"}, [scalar.id]),
            ({"l": [1]}, [part.id]),
            ({"l": [1, 2]}, [whole.id]),
            ({"l": [2, 1]}, []),  # a list's order is
            ({"l": []}, [empty.id]),
            ({"l": 1}, [scalar.id]),
            ({"o.x": 1}, [whole.id, part.id]),
        ]
        for condition, want in cases:
            flt = SessionFilter(metadata=condition)
            page = await ctx.store.list_sessions(flt, QueryOptions(sort_by="id"))
            assert page.ids == sorted(want), f"metadata {condition!r}"
            assert await ctx.store.count_sessions(flt) == len(want), f"metadata {condition!r}"

    @store_test
    async def test_filters_take_pattern_characters_literally(self, ctx: ConformanceContext) -> None:
        # values with the wildcards of glob (Redis MATCH), LIKE and regular expressions
        # match only themselves
        names = ["a*", "ab", "a?", "a_c", "abc", "a%", "a[b]", "a.c", "a\\c", "A*"]
        made = {n: (await ctx.store.create_session(processor_id=n, tags={n})).id for n in names}
        for n in names:
            for flt in (SessionFilter(processor_id=n), SessionFilter(tags_any=[n])):
                assert (await ctx.store.list_sessions(flt)).ids == [made[n]], flt
                assert await ctx.store.count_sessions(flt) == 1, flt
            found = await ctx.store.list_sessions(SessionFilter(tags_all=[n]))
            assert found.ids == [made[n]], n

    @store_test
    async def test_nul_characters_round_trip_and_filter_exactly(
        self, ctx: ConformanceContext
    ) -> None:
        # U+0000 (which PostgreSQL's jsonb and text cannot hold) is stored and compared like
        # any other character: never dropped, and never equal to U+FFFD or the empty string
        values = ["a\x00b", "a\ufffdb", "ab", "\x00", ""]
        made = []
        for v in values:
            s = await ctx.store.create_session(data={v: v}, metadata={"m": v, "n": {v: 1}})
            s = await ctx.store.append_events(s.id, [{"type": "t", "data": {v: [v]}}])
            made.append(s.id)
        for sid, v in zip(made, values, strict=True):
            got = await ctx.store.get_session(sid)
            assert got is not None and (got.data, got.metadata) == ({v: v}, {"m": v, "n": {v: 1}})
            assert [e.data for e in await ctx.store.get_events(sid)] == [{v: [v]}]
            for condition in ({"m": v}, {"n": {v: 1}}):
                found = await ctx.store.list_sessions(SessionFilter(metadata=condition))
                assert found.ids == [sid], condition
                assert await ctx.store.count_sessions(SessionFilter(metadata=condition)) == 1

    @store_test
    async def test_filter_created_range(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "created_after")
        await ctx.close_namespace_data()
        await self._check_filter(ctx, "created_before")

    @store_test
    async def test_filter_time_bounds_are_exclusive(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session()
        ctx.clock.advance(1)
        b = await ctx.store.create_session()
        ctx.clock.advance(1)
        c = await ctx.store.create_session()
        page = await ctx.store.list_sessions(
            SessionFilter(created_after=a.created_at, created_before=c.created_at)
        )
        assert page.ids == [b.id]
        page = await ctx.store.list_sessions(
            SessionFilter(updated_after=a.updated_at, updated_before=c.updated_at)
        )
        assert page.ids == [b.id]

    @store_test
    async def test_filter_updated_range(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "updated_range")

    @store_test
    async def test_filter_expires_before(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "expires_before")

    @store_test
    async def test_filter_has_events(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "has_events")
        await ctx.close_namespace_data()
        await self._check_filter(ctx, "no_events")

    @store_test
    async def test_filter_include_expired(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "include_expired")

    @store_test
    async def test_filter_combined(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "combined")

    @store_test
    async def test_filter_combined_range(self, ctx: ConformanceContext) -> None:
        await self._check_filter(ctx, "combined_range")

    @store_test
    async def test_count_matches_list_for_every_filter(self, ctx: ConformanceContext) -> None:
        base = ctx.clock.now()
        await seed(ctx)
        for name, flt in _filters(base).items():
            for sort_by in ("id", "updated_at"):
                ids = await all_pages(ctx.store, flt, QueryOptions(limit=7, sort_by=sort_by))
                assert len(ids) == len(set(ids)), name
                assert await ctx.store.count_sessions(flt) == len(ids), f"{name} {sort_by}"

    @store_test
    async def test_filter_metadata_none_needs_the_key(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        null = await st.create_session(metadata={"k": None, "n": {"x": None}})
        await st.create_session(metadata={})
        await st.create_session(metadata={"k": 0, "n": {}})
        await st.create_session(metadata={"k": False, "n": {"x": ""}})
        await st.create_session(metadata={"other": None, "n": None})
        for flt in (
            SessionFilter(metadata={"k": None}),
            SessionFilter(metadata={"n.x": None}),
            SessionFilter(metadata={"k": None, "n.x": None}),
        ):
            for sort_by in SORT_FIELDS:
                page = await st.list_sessions(flt, QueryOptions(sort_by=sort_by))
                assert page.ids == [null.id], (flt, sort_by)
            assert await st.count_sessions(flt) == 1, flt
        none_text = await st.search_sessions("none", None, SessionFilter(metadata={"k": None}))
        assert none_text.ids == []  # None is not the text "none"

    @store_test
    async def test_every_range_bound_is_exclusive(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        ms = timedelta(milliseconds=1)
        half = timedelta(microseconds=500)
        made = []
        for i in range(3):
            made.append(await st.create_session(id=f"r{i}", ttl=100 + i))
            ctx.clock.advance(1)
        touched = []
        for s in made:  # updated_at: distinct, after every created_at
            ctx.clock.advance(1)
            touched.append(await st.touch(s.id))
        a, b, c = touched
        assert a.expires_at is not None and b.expires_at is not None
        cases = {
            "created_after": (SessionFilter(created_after=a.created_at), [b, c]),
            "created_after_ms": (SessionFilter(created_after=a.created_at - ms), [a, b, c]),
            "created_after_half": (SessionFilter(created_after=a.created_at + half), [b, c]),
            "created_before": (SessionFilter(created_before=c.created_at), [a, b]),
            "created_before_ms": (SessionFilter(created_before=c.created_at + ms), [a, b, c]),
            "created_before_half": (SessionFilter(created_before=c.created_at + half), [a, b, c]),
            "created_both": (
                SessionFilter(created_after=a.created_at, created_before=c.created_at),
                [b],
            ),
            "updated_after": (SessionFilter(updated_after=b.updated_at), [c]),
            "updated_after_half": (SessionFilter(updated_after=b.updated_at - half), [b, c]),
            "updated_before": (SessionFilter(updated_before=b.updated_at), [a]),
            "updated_before_half": (SessionFilter(updated_before=b.updated_at + half), [a, b]),
            "updated_both": (
                SessionFilter(updated_after=a.updated_at, updated_before=c.updated_at),
                [b],
            ),
            "expires_before": (SessionFilter(expires_before=b.expires_at), [a]),
            "expires_before_ms": (SessionFilter(expires_before=b.expires_at + ms), [a, b]),
            "expires_before_half": (SessionFilter(expires_before=b.expires_at + half), [a, b]),
            "expires_before_below": (SessionFilter(expires_before=a.expires_at - half), []),
        }
        for name, (flt, want) in cases.items():
            for sort_by in SORT_FIELDS:
                for order in ("asc", "desc"):
                    opts = QueryOptions(sort_by=sort_by, order=order)
                    got = await st.list_sessions(flt, opts)
                    expected = sorted(s.id for s in want)
                    assert sorted(got.ids) == expected, f"{name} {sort_by} {order}"
                    assert got.ids == evaluate(want, flt, opts, ctx.clock.now()).ids, name
            assert await st.count_sessions(flt) == len(want), name

    @store_test
    async def test_sub_millisecond_upper_bounds(self, ctx: ConformanceContext) -> None:
        """Times are stored at millisecond precision and the bounds are exclusive, so an
        upper bound with a sub-millisecond part keeps the rows at its own millisecond:
        ``created_before=X.0005`` matches a row created at ``X.000``, and
        ``created_before=X.001001`` one at ``X.001`` (a store that floors the bound to
        milliseconds, or rounds it up only past some threshold, loses them)."""
        st = ctx.store
        now = ctx.clock.now()
        second = now.replace(microsecond=0) + timedelta(seconds=1)
        us = timedelta(microseconds=1)
        ctx.clock.set(second)
        await st.create_session(id="sub0", ttl=60)
        ctx.clock.set(second + 1000 * us)
        await st.create_session(id="sub1", ttl=60)
        ctx.clock.set(second + timedelta(seconds=1))  # updated_at / expires_at: X.000, X.001
        a = await st.touch("sub0", ttl=60)
        ctx.clock.set(second + timedelta(seconds=1, microseconds=1000))
        b = await st.touch("sub1", ttl=60)
        assert a.expires_at is not None and b.expires_at is not None
        assert (a.created_at.microsecond, b.created_at.microsecond) == (0, 1000)
        cases: dict[str, tuple[SessionFilter, list[Session]]] = {}
        makers: list[tuple[str, Callable[[datetime], SessionFilter], datetime, datetime]] = [
            (
                "created_before",
                lambda t: SessionFilter(created_before=t),
                a.created_at,
                b.created_at,
            ),
            (
                "updated_before",
                lambda t: SessionFilter(updated_before=t),
                a.updated_at,
                b.updated_at,
            ),
            (
                "expires_before",
                lambda t: SessionFilter(expires_before=t),
                a.expires_at,
                b.expires_at,
            ),
        ]
        for field, make, at_a, at_b in makers:
            cases[f"{field} +500us"] = (make(at_a + 500 * us), [a])
            cases[f"{field} +1us"] = (make(at_b + us), [a, b])
            cases[f"{field} exact"] = (make(at_b), [a])
        for name, (flt, want) in cases.items():
            for sort_by in SORT_FIELDS:
                for order in ("asc", "desc"):
                    opts = QueryOptions(sort_by=sort_by, order=order)
                    got = await st.list_sessions(flt, opts)
                    assert got.ids == evaluate(want, flt, opts, ctx.clock.now()).ids, (
                        f"{name} {sort_by} {order}"
                    )
            assert await st.count_sessions(flt) == len(want), name

    @store_test
    async def test_filter_matching_half_of_many_sessions(self, ctx: ConformanceContext) -> None:
        """A tag that half of 160 sessions carry, a small page: a store that plans the
        query by walking an index and checking tag membership still finds the tagged, in
        every order and with a second condition (each plan a store may pick: a list in
        the sort order, the tag's own list, the matching set sorted)."""
        st = ctx.store
        tagged = set()
        ids = []
        for i in range(160):
            s = await st.create_session(tags=("half",) if i % 2 else ())
            ids.append(s.id)
            if i % 2:
                tagged.add(s.id)
            if i % 10 == 9:
                ctx.clock.advance(1)
        flt = SessionFilter(tags_any=("half",))
        page = await st.list_sessions(flt, QueryOptions(limit=10, sort_by="created_at"))
        assert len(page.items) == 10 and set(page.ids) <= tagged
        assert await st.count_sessions(flt) == 80
        universe = await everything(st, ids)
        for two in (flt, SessionFilter(tags_any=("half",), status=["active"])):
            for sort_by in ("id", "created_at"):
                for order in ("asc", "desc"):
                    opts = QueryOptions(sort_by=sort_by, order=order, limit=10)
                    whole = QueryOptions(sort_by=sort_by, order=order, limit=1000)
                    want = evaluate(universe, two, whole, ctx.clock.now()).ids
                    assert len(want) == 80
                    assert await all_pages(st, two, opts) == want, (two, sort_by, order)

    @store_test
    async def test_has_events_after_trim_to_zero(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        emptied = await st.create_session(id="emptied")
        await st.append_events(emptied.id, [{"type": "e"}] * 3)
        emptied = await st.trim_events(emptied.id, keep_last=0)
        assert emptied.event_count == 0 and emptied.last_seq == 3
        full = await st.create_session(id="full")
        await st.append_events(full.id, [{"type": "e"}])
        never = await st.create_session(id="never")
        for sort_by in SORT_FIELDS:
            opts = QueryOptions(sort_by=sort_by, order="asc")
            with_events = await st.list_sessions(SessionFilter(has_events=True), opts)
            assert with_events.ids == [full.id], sort_by
            without = await st.list_sessions(SessionFilter(has_events=False), opts)
            assert sorted(without.ids) == sorted([emptied.id, never.id]), sort_by
        assert await st.count_sessions(SessionFilter(has_events=True)) == 1
        assert await st.count_sessions(SessionFilter(has_events=False)) == 2
        refilled = await st.append_events(emptied.id, [{"type": "again"}])
        assert refilled.has_events
        assert sorted((await st.list_sessions(SessionFilter(has_events=True))).ids) == sorted(
            [full.id, emptied.id]
        )

    @store_test
    async def test_sorted_filters_follow_writes_after_a_query(
        self, ctx: ConformanceContext
    ) -> None:
        """A filtered, time-sorted listing asked *before* the writes and again after each:
        creates, updates that move ``updated_at`` (and nothing indexed), status changes and
        deletes show in every order (an index built by the first query must follow)."""
        st = ctx.store
        flt_p = SessionFilter(processor_id="p")
        flt_pa = SessionFilter(processor_id="p", status="active")
        flt_active = SessionFilter(status="active")

        async def check(want: dict[str, list[str]]) -> None:
            for name, flt in (("p", flt_p), ("pa", flt_pa), ("active", flt_active)):
                ids = want[name]
                for sort_by in ("created_at", "updated_at"):
                    by_time = sorted(ids, key=lambda sid: times[sid][sort_by])
                    for order in ("asc", "desc"):
                        got = await st.list_sessions(
                            flt, QueryOptions(sort_by=sort_by, order=order)
                        )
                        expect = by_time if order == "asc" else by_time[::-1]
                        assert got.ids == expect, (name, sort_by, order)
                assert await st.count_sessions(flt) == len(ids), name

        times: dict[str, dict[str, datetime]] = {}

        async def write(session: Session) -> None:
            times[session.id] = {"created_at": session.created_at, "updated_at": session.updated_at}
            ctx.clock.advance(1)

        await write(await st.create_session(id="w-a", processor_id="p"))
        await write(await st.create_session(id="w-b", processor_id="p"))
        await write(await st.create_session(id="w-c", processor_id="q"))
        await check({"p": ["w-a", "w-b"], "pa": ["w-a", "w-b"], "active": ["w-a", "w-b", "w-c"]})
        await write(await st.create_session(id="w-d", processor_id="p"))
        await check(
            {
                "p": ["w-a", "w-b", "w-d"],
                "pa": ["w-a", "w-b", "w-d"],
                "active": ["w-a", "w-b", "w-c", "w-d"],
            }
        )
        await write(await st.update_session("w-a", merge_data={"moved": True}))
        await check(
            {
                "p": ["w-a", "w-b", "w-d"],
                "pa": ["w-a", "w-b", "w-d"],
                "active": ["w-a", "w-b", "w-c", "w-d"],
            }
        )
        await write(await st.update_session("w-b", status="paused"))
        await check(
            {"p": ["w-a", "w-b", "w-d"], "pa": ["w-a", "w-d"], "active": ["w-a", "w-c", "w-d"]}
        )
        await write(await st.update_session("w-c", processor_id="p"))
        await check(
            {
                "p": ["w-a", "w-b", "w-c", "w-d"],
                "pa": ["w-a", "w-c", "w-d"],
                "active": ["w-a", "w-c", "w-d"],
            }
        )
        assert await st.delete_session("w-d") is True
        del times["w-d"]
        await check({"p": ["w-a", "w-b", "w-c"], "pa": ["w-a", "w-c"], "active": ["w-a", "w-c"]})

    @store_test
    async def test_indexes_follow_changes_after_create(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        a = await st.create_session(id="ix-a", processor_id="p1", tags={"t1", "t2"}, ttl=50)
        b = await st.create_session(id="ix-b", processor_id="p1", tags={"t1"}, status="paused")
        c = await st.create_session(id="ix-c", tags={"t3"}, ttl=20)
        ctx.clock.advance(1)
        await st.update_session(a.id, processor_id="p2", status="completed", remove_tags={"t1"})
        await st.update_session(b.id, processor_id=None, tags={"t3"}, ttl=10)
        await st.update_session(c.id, processor_id="p1", add_tags={"t1"}, expires_at=None)
        await st.touch(a.id, ttl=5)
        cases: dict[str, tuple[SessionFilter, list[str]]] = {
            "p1": (SessionFilter(processor_id="p1"), [c.id]),
            "p2": (SessionFilter(processor_id="p2"), [a.id]),
            "p1p2": (SessionFilter(processor_id=["p1", "p2"]), [a.id, c.id]),
            "active": (SessionFilter(status="active"), [c.id]),
            "paused": (SessionFilter(status="paused"), [b.id]),
            "completed": (SessionFilter(status="completed"), [a.id]),
            "t1": (SessionFilter(tags_all={"t1"}), [c.id]),
            "t2": (SessionFilter(tags_any={"t2"}), [a.id]),
            "t3": (SessionFilter(tags_all={"t3"}), [b.id, c.id]),
            "t1t3": (SessionFilter(tags_all={"t1", "t3"}), [c.id]),
            "soon": (SessionFilter(expires_before=ctx.clock.now() + timedelta(seconds=8)), [a.id]),
            "later": (
                SessionFilter(expires_before=ctx.clock.now() + timedelta(seconds=30)),
                [a.id, b.id],
            ),
        }
        for when in ("", " after writes"):
            for name, (flt, want) in cases.items():
                for sort_by in SORT_FIELDS:
                    page = await st.list_sessions(flt, QueryOptions(sort_by=sort_by))
                    assert sorted(page.ids) == want, f"{name} {sort_by}{when}: {page.ids}"
                assert await st.count_sessions(flt) == len(want), f"{name}{when}"
            if not when:
                # writes after those queries (whatever a query built to answer them): c
                # gets a new updated_at with the same fields, b joins p1 and leaves again
                ctx.clock.advance(1)
                await st.update_session(c.id, merge_data={"n": 1})
                await st.update_session(b.id, processor_id="p1")
                await st.update_session(b.id, processor_id=None)
        by_expiry = await st.list_sessions(None, QueryOptions(sort_by="expires_at"))
        assert by_expiry.ids == [a.id, b.id, c.id]
        ctx.clock.advance(5)  # a expires (its new ttl), b and c do not
        assert sorted((await st.list_sessions()).ids) == [b.id, c.id]
        assert await st.count_sessions(SessionFilter(processor_id="p2")) == 0
        assert await st.expire_sessions() == [a.id]
        expired = SessionFilter(status="expired", include_expired=True)
        assert (await st.list_sessions(expired)).ids == [a.id]
        assert await st.count_sessions(SessionFilter(status="completed", include_expired=True)) == 0
        # deleted: no index keeps them under a value they had before (a stale entry would
        # name a session that no longer exists)
        assert await st.cleanup_expired_sessions() == 1  # a
        for s in (b, c):
            assert await st.delete_session(s.id) is True
        for name, (flt, _) in cases.items():
            assert (await st.list_sessions(flt)).ids == [], name
            assert await st.count_sessions(flt) == 0, name

    @store_test
    async def test_default_page_size(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        ids = [(await st.create_session(id=f"d{i:03d}", data={"t": "word"})).id for i in range(101)]
        page = await st.list_sessions()
        assert len(page.ids) == 100
        assert page.next_cursor is not None
        rest = await st.list_sessions(None, QueryOptions(cursor=page.next_cursor))
        assert page.ids + rest.ids == ids  # created_at ties: by id
        assert rest.next_cursor is None
        found = await st.search_sessions("word")
        assert found.ids == ids[:100]
        assert found.next_cursor is not None
        assert await st.count_sessions() == 101

    @store_test
    async def test_sort_ties_break_on_id(self, ctx: ConformanceContext) -> None:
        ids = ["m2", "a9", "z1", "b0"]
        for sid in ids:
            await ctx.store.create_session(id=sid)  # same created_at: the clock did not move
        asc = await ctx.store.list_sessions(None, QueryOptions(sort_by="created_at"))
        assert asc.ids == sorted(ids)
        desc = await ctx.store.list_sessions(None, QueryOptions(sort_by="created_at", order="desc"))
        assert desc.ids == sorted(ids, reverse=True)

    @store_test
    async def test_missing_expiry_sorts_last_both_orders(self, ctx: ConformanceContext) -> None:
        n1 = await ctx.store.create_session(id="n1")
        e2 = await ctx.store.create_session(id="e2", ttl=20)
        n0 = await ctx.store.create_session(id="n0")
        e1 = await ctx.store.create_session(id="e1", ttl=10)
        asc = await ctx.store.list_sessions(None, QueryOptions(sort_by="expires_at"))
        assert asc.ids == [e1.id, e2.id, n0.id, n1.id]
        desc = await ctx.store.list_sessions(None, QueryOptions(sort_by="expires_at", order="desc"))
        assert desc.ids == [e2.id, e1.id, n1.id, n0.id]
        paged = await all_pages(
            ctx.store, SessionFilter(), QueryOptions(sort_by="expires_at", order="desc", limit=1)
        )
        assert paged == desc.ids

    @store_test
    async def test_cursor_paging_visits_every_row_once(self, ctx: ConformanceContext) -> None:
        seeded = await seed(ctx)
        universe = await everything(ctx.store, [s.id for s in seeded])
        flt = SessionFilter(include_expired=True)
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                for limit in (1, 7):
                    opts = QueryOptions(sort_by=sort_by, order=order, limit=limit)
                    want = evaluate(
                        universe,
                        flt,
                        QueryOptions(sort_by=sort_by, order=order, limit=1000),
                        ctx.clock.now(),
                    ).ids
                    assert await all_pages(ctx.store, flt, opts) == want, (
                        f"{sort_by} {order} {limit}"
                    )

    @store_test
    async def test_offset_paging_every_order(self, ctx: ConformanceContext) -> None:
        """Offsets without a set-indexed condition (and with one), in every order."""
        seeded = await seed(ctx)
        universe = await everything(ctx.store, [s.id for s in seeded])
        for flt in (None, SessionFilter(include_expired=True), SessionFilter(status="active")):
            for sort_by in SORT_FIELDS:
                for order in ("asc", "desc"):
                    full = QueryOptions(sort_by=sort_by, order=order, limit=1000)
                    want = evaluate(universe, flt, full, ctx.clock.now()).ids
                    for offset in (0, 1, 5, len(want) - 1, len(want) + 3):
                        opts = QueryOptions(sort_by=sort_by, order=order, limit=4, offset=offset)
                        page = await ctx.store.list_sessions(flt, opts)
                        assert page.ids == want[offset : offset + 4], (flt, sort_by, order, offset)

    @store_test
    async def test_offset_paging(self, ctx: ConformanceContext) -> None:
        seeded = await seed(ctx)
        universe = await everything(ctx.store, [s.id for s in seeded])
        flt = SessionFilter(tags_any={"red", "green", "blue"})
        want = evaluate(
            universe, flt, QueryOptions(limit=1000, sort_by="updated_at"), ctx.clock.now()
        ).ids
        got: list[str] = []
        offset = 0
        while True:
            page = await ctx.store.list_sessions(
                flt, QueryOptions(limit=4, offset=offset, sort_by="updated_at")
            )
            got.extend(page.ids)
            if len(page.ids) < 4:
                break
            offset += 4
        assert got == want

    @store_test
    async def test_cursor_stable_under_concurrent_inserts_and_deletes(
        self, ctx: ConformanceContext
    ) -> None:
        for i in range(20):
            await ctx.store.create_session(id=f"k{i:02d}")
        opts = QueryOptions(sort_by="id", limit=5)
        page = await ctx.store.list_sessions(None, opts)
        assert page.ids == [f"k{i:02d}" for i in range(5)]
        seen = list(page.ids)
        # Writes between pages: an insert before the cursor, inserts after it, a delete of a
        # row already returned and of one not yet returned.
        await ctx.store.create_session(id="a-early")
        await ctx.store.create_session(id="a-early2")
        await ctx.store.create_session(id="k07b")
        await ctx.store.delete_session("k01")
        await ctx.store.delete_session("k12")
        while page.next_cursor:
            page = await ctx.store.list_sessions(
                None, QueryOptions(sort_by="id", limit=5, cursor=page.next_cursor)
            )
            seen.extend(page.ids)
            await ctx.store.create_session(id=f"k{len(seen):02d}x")  # lands after the cursor
        expected_tail = sorted(
            [f"k{i:02d}" for i in range(5, 20) if i != 12]
            + ["k07b"]
            + [s for s in seen if s.endswith("x")]
        )
        assert seen[:5] == [f"k{i:02d}" for i in range(5)]
        assert seen[5:] == expected_tail
        assert len(seen) == len(set(seen)), "a row was returned twice"

    @store_test
    async def test_cursor_every_sort_with_page_end_changed(self, ctx: ConformanceContext) -> None:
        """Keyset paging in every order when the last row of a page is deleted or moved."""
        st = ctx.store
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                for change in ("delete", "update"):
                    await ctx.close_namespace_data()
                    for i in range(9):
                        if i % 3:
                            ctx.clock.advance(timedelta(milliseconds=7))  # and some ties
                        await st.create_session(id=f"p{(i * 5) % 9}", ttl=None if i % 4 else 60 + i)
                    opts = QueryOptions(sort_by=sort_by, order=order, limit=3)
                    first = await st.list_sessions(None, opts)
                    assert len(first.ids) == 3 and first.next_cursor is not None
                    key = order_key(first.items[-1], sort_by)
                    ctx.clock.advance(1)
                    if change == "delete":
                        await st.delete_session(first.ids[-1])
                    else:  # moves it in every time order (and changes nothing for id)
                        await st.update_session(first.ids[-1], ttl=1000)
                    now_all = evaluate(
                        await everything(st, [f"p{i}" for i in range(9)]),
                        None,
                        QueryOptions(sort_by=sort_by, order=order, limit=1000),
                        ctx.clock.now(),
                    ).items
                    want = [
                        s.id
                        for s in now_all
                        if is_after(order_key(s, sort_by), key, order == "desc")
                    ]
                    got: list[str] = []
                    page = first
                    while page.next_cursor is not None:
                        page = await st.list_sessions(
                            None,
                            QueryOptions(
                                sort_by=sort_by, order=order, limit=3, cursor=page.next_cursor
                            ),
                        )
                        got.extend(page.ids)
                    assert got == want, f"{sort_by} {order} {change}"

    @store_test
    async def test_full_last_page_has_no_cursor(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        for i in range(6):
            ctx.clock.advance(timedelta(milliseconds=3))
            await st.create_session(id=f"f{i}", tags={"t"}, data={"w": "needle"}, ttl=100 + i)
        await st.create_session(id="other")
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                opts = QueryOptions(sort_by=sort_by, order=order, limit=3)
                for run in ("list", "filter", "search"):
                    flt = SessionFilter(tags_all={"t"}) if run != "list" else None
                    pages = []
                    cursor = None
                    for _ in range(3):
                        o = QueryOptions(sort_by=sort_by, order=order, limit=3, cursor=cursor)
                        if run == "search":
                            page = await st.search_sessions("NEEDLE", o, flt)
                        else:
                            page = await st.list_sessions(flt, o)
                        pages.append(page)
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                    sizes = [len(p.ids) for p in pages]
                    want = [3, 3] if run != "list" else [3, 3, 1]
                    assert sizes == want, f"{run} {sort_by} {order}: {sizes}"
                    assert pages[-1].next_cursor is None
                exact = await st.list_sessions(
                    SessionFilter(tags_all={"t"}), QueryOptions(sort_by=sort_by, limit=6)
                )
                assert len(exact.ids) == 6 and exact.next_cursor is None
                del opts

    @store_test
    async def test_cursor_refused_for_another_sort_or_text(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        for i in range(5):
            ctx.clock.advance(timedelta(milliseconds=2))
            await st.create_session(id=f"c{i}", data={"w": "word"}, ttl=10 + i)
        for sort_by in SORT_FIELDS:
            page = await st.list_sessions(None, QueryOptions(sort_by=sort_by, limit=2))
            assert page.next_cursor is not None
            for other in SORT_FIELDS:
                if other != sort_by:
                    with pytest.raises(InvalidCursorError):
                        await st.list_sessions(
                            None, QueryOptions(sort_by=other, limit=2, cursor=page.next_cursor)
                        )
            with pytest.raises(InvalidCursorError):
                await st.list_sessions(
                    None,
                    QueryOptions(sort_by=sort_by, order="desc", limit=2, cursor=page.next_cursor),
                )
            with pytest.raises(InvalidCursorError):
                await st.search_sessions(
                    "word", QueryOptions(sort_by=sort_by, limit=2, cursor=page.next_cursor)
                )
            found = await st.search_sessions("word", QueryOptions(sort_by=sort_by, limit=2))
            assert found.next_cursor is not None
            for text in ("WORD", "wor", "other"):
                with pytest.raises(InvalidCursorError):
                    await st.search_sessions(
                        text, QueryOptions(sort_by=sort_by, limit=2, cursor=found.next_cursor)
                    )
            with pytest.raises(InvalidCursorError):
                await st.list_sessions(
                    None, QueryOptions(sort_by=sort_by, limit=2, cursor=found.next_cursor)
                )
            same = await st.search_sessions(
                "word", QueryOptions(sort_by=sort_by, limit=2, cursor=found.next_cursor)
            )
            assert len(same.ids) == 2

    @store_test
    async def test_count_matches_list(self, ctx: ConformanceContext) -> None:
        await seed(ctx)
        for flt in (
            SessionFilter(),
            SessionFilter(include_expired=True),
            SessionFilter(tags_any={"red"}),
        ):
            ids = await all_pages(ctx.store, flt, QueryOptions(limit=10))
            assert await ctx.store.count_sessions(flt) == len(ids)

    @store_test
    async def test_cursor_is_bound_to_its_query(self, ctx: ConformanceContext) -> None:
        for i in range(5):
            await ctx.store.create_session(id=f"c{i}", tags={"t"})
        page = await ctx.store.list_sessions(SessionFilter(tags_all={"t"}), QueryOptions(limit=2))
        assert page.next_cursor is not None
        with pytest.raises(InvalidCursorError):
            await ctx.store.list_sessions(
                SessionFilter(), QueryOptions(limit=2, cursor=page.next_cursor)
            )
        with pytest.raises(InvalidCursorError):
            await ctx.store.list_sessions(
                SessionFilter(tags_all={"t"}),
                QueryOptions(limit=2, order="desc", cursor=page.next_cursor),
            )
        tampered = page.next_cursor[:-2] + ("AA" if page.next_cursor[-2:] != "AA" else "BB")
        with pytest.raises(InvalidCursorError):
            await ctx.store.list_sessions(
                SessionFilter(tags_all={"t"}), QueryOptions(limit=2, cursor=tampered)
            )
        with pytest.raises(InvalidArgumentError):
            QueryOptions(limit=2, cursor=page.next_cursor, offset=1)

    @store_test
    async def test_empty_collections_in_a_filter(self, ctx: ConformanceContext) -> None:
        """An empty collection is a condition, not a missing one: ``ids=[]``,
        ``processor_id=[]``, ``status=[]`` and ``tags_any=[]`` match no session (an
        ``IN ()`` left out of a query matches them all); ``tags_all=[]`` matches every
        session (each holds all of no tags)."""
        st = ctx.store
        made = []
        for i in range(3):
            tags = {"t"} if i else set()
            s = await st.create_session(id=f"e{i}", processor_id="p", tags=tags, data={"w": "word"})
            made.append(s.id)
        nothing = (
            SessionFilter(ids=[]),
            SessionFilter(processor_id=[]),
            SessionFilter(status=[]),
            SessionFilter(tags_any=[]),
        )
        for flt in nothing:
            for sort_by in SORT_FIELDS:
                page = await st.list_sessions(flt, QueryOptions(sort_by=sort_by))
                assert page.ids == [], (flt, sort_by)
            assert await st.count_sessions(flt) == 0, flt
            assert (await st.search_sessions("word", None, flt)).ids == [], flt
        for flt in (SessionFilter(tags_all=[]), SessionFilter(tags_all=[], processor_id="p")):
            for field in SORT_FIELDS:
                page = await st.list_sessions(flt, QueryOptions(sort_by=field))
                assert page.ids == made, (flt, field)  # ties on every time: by id
            assert await st.count_sessions(flt) == 3, flt
            found = await st.search_sessions("word", QueryOptions(sort_by="id"), flt)
            assert found.ids == made, flt

    @store_test
    async def test_ids_sort_by_code_point(self, ctx: ConformanceContext) -> None:
        """Ids order by code point (``"B" < "_" < "a"``), not by a collation that folds
        case or weighs punctuation apart, in the id order and as every order's tie-break."""
        ids = ["b", "B", "a-1", "a_1", "a.1", "A1", "a1", "10", "9", "Z", "a"]
        for sid in ids:
            await ctx.store.create_session(id=sid)  # one created_at: ties in every order
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                want = sorted(ids, reverse=order == "desc")
                opts = QueryOptions(sort_by=sort_by, order=order)
                assert (await ctx.store.list_sessions(None, opts)).ids == want, (sort_by, order)
                paged = await all_pages(
                    ctx.store, SessionFilter(), QueryOptions(sort_by=sort_by, order=order, limit=4)
                )
                assert paged == want, (sort_by, order)

    @store_test
    async def test_filter_bounds_in_other_time_zones(self, ctx: ConformanceContext) -> None:
        """A bound is an instant: one given with another UTC offset selects what the same
        instant in UTC does (never its wall-clock reading taken as UTC)."""
        st = ctx.store
        made = []
        for i in range(4):
            ctx.clock.advance(timedelta(minutes=30))
            made.append(await st.create_session(id=f"z{i}", ttl=86_400 + 60 * i))
        a, b, c, d = made
        assert a.expires_at is not None and c.expires_at is not None
        for zone in (timezone(timedelta(hours=5)), timezone(-timedelta(hours=8, minutes=30))):
            cases = [
                (SessionFilter(created_after=a.created_at.astimezone(zone)), [b, c, d]),
                (SessionFilter(created_before=c.created_at.astimezone(zone)), [a, b]),
                (
                    SessionFilter(
                        updated_after=b.updated_at.astimezone(zone),
                        updated_before=d.updated_at.astimezone(zone),
                    ),
                    [c],
                ),
                (SessionFilter(expires_before=c.expires_at.astimezone(zone)), [a, b]),
            ]
            for flt, want in cases:
                page = await st.list_sessions(flt, QueryOptions(sort_by="id"))
                assert page.ids == [s.id for s in want], (zone, flt)
                assert await st.count_sessions(flt) == len(want), (zone, flt)

    @store_test
    async def test_filter_metadata_paths_walk_objects_only(self, ctx: ConformanceContext) -> None:
        """A dotted path walks object keys: ``"a.0"`` does not index into a list (as
        PostgreSQL's ``#>`` or JSONPath would), and ``"x.y"`` is the path ``x`` then ``y``,
        never a top-level key spelled ``"x.y"``."""
        st = ctx.store
        await st.create_session(id="listed", metadata={"a": [1, {"b": 2}]})
        await st.create_session(id="nested", metadata={"a": {"0": 1, "1": {"b": 2}}})
        await st.create_session(id="literal", metadata={"x.y": 1})
        await st.create_session(id="walked", metadata={"x": {"y": 1}})
        cases: list[tuple[dict[str, object], list[str]]] = [
            ({"a.0": 1}, ["nested"]),
            ({"a.1.b": 2}, ["nested"]),
            ({"x.y": 1}, ["walked"]),
        ]
        for condition, want in cases:
            flt = SessionFilter(metadata=condition)
            assert (await st.list_sessions(flt, QueryOptions(sort_by="id"))).ids == want, condition
            assert await st.count_sessions(flt) == len(want), condition

    @store_test
    async def test_tag_sets_and_expiry_bound_combine_with_and(
        self, ctx: ConformanceContext
    ) -> None:
        """``tags_all`` and ``tags_any`` must both hold (never either), and
        ``expires_before`` leaves the expired sessions out unless ``include_expired``
        (it is a bound, not a read of the expiry index from its start)."""
        st = ctx.store
        for sid, tags in (("ta", {"a"}), ("tb", {"b"}), ("tab", {"a", "b"}), ("tc", {"c"})):
            await st.create_session(id=sid, tags=tags)
        flt = SessionFilter(tags_all={"a"}, tags_any={"b", "c"})
        assert (await st.list_sessions(flt, QueryOptions(sort_by="id"))).ids == ["tab"]
        assert await st.count_sessions(flt) == 1
        await st.create_session(id="x-soon", ttl=1)
        await st.create_session(id="x-later", ttl=100)
        ctx.clock.advance(2)
        bound = ctx.clock.now() + timedelta(seconds=1000)
        for include_expired, want in ((False, ["x-later"]), (True, ["x-later", "x-soon"])):
            flt = SessionFilter(expires_before=bound, include_expired=include_expired)
            assert (await st.list_sessions(flt, QueryOptions(sort_by="id"))).ids == want
            assert await st.count_sessions(flt) == len(want)
