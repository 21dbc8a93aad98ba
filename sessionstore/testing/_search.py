"""Search: case-insensitive plain-text substring over the documented fields, paged."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessionstore import InvalidArgumentError, QueryOptions, SessionFilter
from sessionstore.query import SORT_FIELDS, evaluate

from ._harness import ConformanceContext, store_test

__all__ = ["SearchTests"]


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

    @store_test
    async def test_search_fields_exactly_in_every_order(self, ctx: ConformanceContext) -> None:
        """Search looks at id, processor, tags and string values in metadata and data;
        never at keys, numbers, status, group, event data or checkpoint labels."""
        st = ctx.store
        hits = []
        for i, fields in enumerate(
            [
                {"id": "zebra-id"},
                {"processor_id": "ZebraWorker"},
                {"tags": {"has-zebra"}},
                {"metadata": {"deep": [{"x": "a ZEBRA"}]}},
                {"data": {"list": ["no", ["zebra!"]]}},
                {"metadata": {"zebra": "key only"}, "data": {"v": "zebra too"}},
            ]
        ):
            ctx.clock.advance(timedelta(milliseconds=11 * (6 - i)))
            hits.append(await st.create_session(ttl=50 + (i * 7) % 5, **fields))  # type: ignore[arg-type]
        misses = [
            await st.create_session(data={"zebra": 1}),
            await st.create_session(metadata={"zebra": {"zebra": 2}}),
            await st.create_session(data={"n": 12345}, metadata={"f": 1.5}),
            await st.create_session(group="zebra-group"),
            await st.create_session(status="paused", data={"v": "nothing"}),
        ]
        with_events = await st.create_session(data={"v": "plain"})
        await st.append_events(with_events.id, [{"type": "zebra", "data": {"v": "zebra"}}])
        await st.save_checkpoint(with_events.id, label="zebra")
        await st.create_session(id="gone-zebra", ttl=1)
        ctx.clock.advance(1)
        universe = list((await st.get_sessions([s.id for s in hits])).values())
        for sort_by in SORT_FIELDS:
            for order in ("asc", "desc"):
                opts = QueryOptions(sort_by=sort_by, order=order)
                want = evaluate(universe, None, opts, ctx.clock.now()).ids
                assert sorted(want) == sorted(s.id for s in hits)
                assert (await st.search_sessions("zeBRa", opts)).ids == want, f"{sort_by} {order}"
                paged: list[str] = []
                page = await st.search_sessions("zebra", replace(opts, limit=4))
                paged.extend(page.ids)
                while page.next_cursor is not None:
                    page = await st.search_sessions(
                        "zebra", replace(opts, limit=4, cursor=page.next_cursor)
                    )
                    paged.extend(page.ids)
                assert paged == want, f"paged {sort_by} {order}"
        for text in ("12345", "1.5", "paused", "plain"):
            found = (await st.search_sessions(text)).ids
            assert found == ([with_events.id] if text == "plain" else []), text
        assert misses

    @store_test
    async def test_search_is_a_substring_in_any_case(self, ctx: ConformanceContext) -> None:
        """Case folds beyond ASCII (SQLite's ``lower()`` and ``LIKE`` fold ASCII only),
        text inside a word is found (a full-text index finds word starts only), and the
        text's spaces count (it is not stripped)."""
        st = ctx.store
        await st.create_session(id="q1", data={"city": "CAFÉ ÄRGER"})
        await st.create_session(id="q2", data={"msg": "the kettle is on"})
        await st.create_session(id="q3", data={"msg": "only"})
        cases = {
            "café": ["q1"],
            "é ä": ["q1"],
            "ettl": ["q2"],
            "on": ["q2", "q3"],
            " on": ["q2"],
            "is on ": [],
        }
        for text, want in cases.items():
            page = await st.search_sessions(text, QueryOptions(sort_by="id"))
            assert page.ids == want, repr(text)
        for offset in (1, 2):  # paged by offset as well as by cursor
            page = await st.search_sessions("on", QueryOptions(sort_by="id", offset=offset))
            assert page.ids == ["q2", "q3"][offset:], offset
