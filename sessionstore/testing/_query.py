"""Queries: every filter field, orders, keyset cursors, offsets, counts, and search.

Results are checked two ways: against explicit expectations, and against
:func:`sessionstore.query.evaluate` (the reference evaluator) over the same sessions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from sessionstore import (
    InvalidArgumentError,
    InvalidCursorError,
    QueryOptions,
    Session,
    SessionFilter,
    SessionStore,
)
from sessionstore.query import SORT_FIELDS, evaluate

from ._harness import ConformanceContext, store_test

__all__ = ["QueryTests", "SearchTests"]

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
        "tags_all": SessionFilter(tags_all={"red", "blue"}),
        "tags_any": SessionFilter(tags_any={"green", "dev"}),
        "metadata": SessionFilter(metadata={"n": 1}),
        "metadata_dotted": SessionFilter(metadata={"tier.name": "gold", "flag": False}),
        "created_after": SessionFilter(created_after=t),
        "created_before": SessionFilter(created_before=t),
        "updated_range": SessionFilter(updated_after=base, updated_before=t),
        "expires_before": SessionFilter(
            expires_before=t + timedelta(seconds=45), include_expired=True
        ),
        "has_events": SessionFilter(has_events=True),
        "no_events": SessionFilter(has_events=False),
        "include_expired": SessionFilter(include_expired=True),
        "combined": SessionFilter(
            processor_id=["alpha", "beta"], tags_any={"red", "prod"}, created_after=base
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


class SearchTests:
    """``search_sessions``: case-insensitive plain-text substring over values."""

    @store_test
    async def test_search_fields_case_insensitive(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        by_id = await st.create_session(id="FindMe-1")
        by_proc = await st.create_session(processor_id="Summarizer")
        by_tag = await st.create_session(tags={"Urgent"})
        by_meta = await st.create_session(metadata={"user": {"name": "Grace HOPPER"}})
        by_data = await st.create_session(data={"log": ["x", {"msg": "the Kettle is on"}]})
        await st.create_session(data={"nothing": "here"})
        cases: dict[str, Any] = {
            "findme": by_id,
            "SUMMAR": by_proc,
            "urgent": by_tag,
            "hopper": by_meta,
            "kettle IS": by_data,
        }
        for text, session in cases.items():
            page = await st.search_sessions(text)
            assert page.ids == [session.id], text

    @store_test
    async def test_search_ignores_keys_and_is_not_a_pattern(self, ctx: ConformanceContext) -> None:
        await ctx.store.create_session(data={"secretkey": "value"})
        dotted = await ctx.store.create_session(data={"v": "a.b"})
        await ctx.store.create_session(data={"v": "axb"})
        assert (await ctx.store.search_sessions("secretkey")).ids == []
        assert (await ctx.store.search_sessions("a.b")).ids == [dotted.id]
        assert (await ctx.store.search_sessions(".*")).ids == []

    @store_test
    async def test_search_with_filter_paging_and_expiry(self, ctx: ConformanceContext) -> None:
        ids = []
        for i in range(7):
            s = await ctx.store.create_session(
                id=f"doc{i}", data={"t": "common"}, processor_id="p" if i % 2 else "q"
            )
            ids.append(s.id)
        await ctx.store.create_session(id="gone", data={"t": "common"}, ttl=1)
        ctx.clock.advance(1)
        seen: list[str] = []
        opts = QueryOptions(limit=2, sort_by="id")
        page = await ctx.store.search_sessions("COMMON", opts)
        seen.extend(page.ids)
        while page.next_cursor:
            page = await ctx.store.search_sessions(
                "COMMON", QueryOptions(limit=2, sort_by="id", cursor=page.next_cursor)
            )
            seen.extend(page.ids)
        assert seen == ids
        filtered = await ctx.store.search_sessions(
            "common", QueryOptions(sort_by="id"), SessionFilter(processor_id="p")
        )
        assert filtered.ids == [i for n, i in enumerate(ids) if n % 2]
        with pytest.raises(InvalidArgumentError):
            await ctx.store.search_sessions("")
