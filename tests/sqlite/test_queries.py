"""Native SQL queries: identical to the reference evaluator, and indexed.

The metadata filter is decided partly by SQLite's JSON functions and partly by the
canonical bytes (``_query``); a property test compares it with
``sessionstore.query.evaluate`` on values chosen to tell the rules apart (``1`` / ``1.0``
/ ``True``, ``0.0`` / ``-0.0``, integers past 64 bits, nested objects with keys in
another order, keys with quotes, backslashes, dots' neighbours and control characters).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionstore_sqlite import SqliteStore
from sessionstore_sqlite._engine import COLUMNS
from sessionstore_sqlite._query import page_sql, where_sql

from sessionstore import ManualClock, QueryOptions, SessionFilter
from sessionstore.query import OrderKey, evaluate

KEYS = st.sampled_from(["a", "b", 'q"t', "b\\s", "sp ace", "ünï", "c\x01", "0", "[x]", "$"])
SCALARS = st.one_of(
    st.sampled_from([0, 1, -1, 1.0, 0.0, -0.0, True, False, None, "1", "", "true", "null"]),
    st.sampled_from([2**63 - 1, 2**62, -(2**63) + 1, -(2**63), 1e16, 0.1 + 0.2, 0.3]),
    st.text(max_size=4),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)
METADATA = st.dictionaries(KEYS, VALUES, max_size=4)
_COUNTER = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metas=st.lists(METADATA, min_size=1, max_size=6),
    path=st.lists(KEYS, min_size=1, max_size=2),
    probe=st.one_of(VALUES, st.integers(0, 5)),
)
def test_metadata_filter_equals_the_reference(
    tmp_path_factory: Any, metas: list[dict[str, Any]], path: list[str], probe: Any
) -> None:
    db = tmp_path_factory.getbasetemp() / "metadata.db"

    async def main() -> None:
        namespace = f"m{next(_COUNTER)}"
        clock = ManualClock()
        async with SqliteStore(
            path=str(db), namespace=namespace, durability="none", clock=clock
        ) as store:
            sessions = [await store.create_session(metadata=m) for m in metas]
            # probe a value that is stored somewhere, or the drawn one
            value = probe
            if isinstance(probe, int) and not isinstance(probe, bool) and 0 <= probe < len(metas):
                node: Any = metas[probe]
                for part in path:
                    node = node.get(part) if isinstance(node, dict) else None
                value = node
            flt = SessionFilter(metadata={".".join(path): value})
            if any("." in p for p in path):
                return
            want = evaluate(sessions, flt, QueryOptions(limit=100), clock.now())
            got = await store.list_sessions(flt, QueryOptions(limit=100))
            assert got.ids == want.ids
            assert await store.count_sessions(flt) == len(want.ids)

    asyncio.run(main())


def test_listings_use_the_composite_indexes(tmp_path: Path) -> None:
    """The common listings walk an index in order (no temp b-tree sort, no table scan)."""
    path = tmp_path / "plan.db"

    async def create() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="x", processor_id="p", tags=["t"])

    asyncio.run(create())
    now = ManualClock().now()
    conn = sqlite3.connect(path)
    cases = [
        (SessionFilter(processor_id="p"), QueryOptions(sort_by="updated_at", order="desc")),
        (SessionFilter(processor_id="p"), QueryOptions(sort_by="created_at")),
        (SessionFilter(status="active"), QueryOptions(sort_by="updated_at", order="desc")),
        (SessionFilter(), QueryOptions(sort_by="created_at", order="desc")),
        (SessionFilter(), QueryOptions(sort_by="id")),
        (SessionFilter(tags_all=["t"]), QueryOptions(sort_by="created_at", order="desc")),
        (SessionFilter(tags_all=["t", "u"], processor_id="p"), QueryOptions()),
    ]
    for flt, opts in cases:
        sql, params = page_sql(COLUMNS, "", flt, opts, now, None)
        plan = " | ".join(
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql + " LIMIT 101", params)
        )
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (flt, opts, plan)
        assert "TEMP B-TREE" not in plan, (flt, opts, plan)
    events = conn.execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM events WHERE sk = 1 AND seq > 0 "
        "ORDER BY seq DESC LIMIT 20"
    ).fetchall()
    assert "PRIMARY KEY" in events[0][3] and "TEMP" not in str(events)
    conn.close()


def test_processor_queries_use_the_partial_processor_indexes(tmp_path: Path) -> None:
    """Schema 5 keeps sessions without a processor out of the two processor indexes
    (``WHERE processor_id IS NOT NULL``); SQLite proves that predicate from a
    ``processor_id = ?`` or ``IN (...)`` term, so every listing, cursor and count of a
    processor (with or without a status) still reads the partial index in order, with
    the planner's default estimates and after ``ANALYZE``."""
    path = tmp_path / "partial.db"

    async def create() -> None:
        async with SqliteStore(path=str(path)) as store:
            for n in range(300):  # most sessions without a processor, as an adapter's
                processor = f"p{n % 3}" if n % 10 == 0 else None
                await store.create_session(id=f"s{n:03d}", processor_id=processor)

    asyncio.run(create())
    now = ManualClock().now()
    p, ps = SessionFilter(processor_id="p1"), SessionFilter(processor_id="p1", status=["active"])
    pages: list[tuple[SessionFilter, QueryOptions, OrderKey | None]] = [
        (flt, QueryOptions(sort_by=sort, order=order), after)
        for flt in (p, ps)
        for sort in ("updated_at", "created_at")
        for order in ("asc", "desc")
        for after in (None, (False, 1000, "s010"))
    ]
    conn = sqlite3.connect(path)
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE name LIKE 'sessions_processor_%'"
    ).fetchall()
    assert len(indexes) == 2 and all("WHERE processor_id IS NOT NULL" in q for _, q in indexes)
    for analyzed in (False, True):
        if analyzed:
            conn.execute("ANALYZE")
        for flt, opts, after in pages:
            sql, params = page_sql(COLUMNS, "", flt, opts, now, after)
            plan = _plan(conn, sql + " LIMIT 101", params)
            column = "created" if opts.sort_by == "created_at" else "updated"
            assert f"INDEX sessions_processor_{column} (" in plan, (flt, opts, after, plan)
            assert "TEMP B-TREE" not in plan, (flt, opts, after, plan)
        for flt in (p, ps, SessionFilter(processor_id=["p1", "p2"])):
            where, params = where_sql("", flt, now)
            plan = _plan(conn, f"SELECT COUNT(*) FROM sessions s WHERE {where}", params)
            assert "INDEX sessions_processor_" in plan, (analyzed, flt, plan)
    conn.close()


def _plan(conn: sqlite3.Connection, sql: str, params: list[Any]) -> str:
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


TRICKY: list[Any] = [
    1, 1.0, True, 0, 0.0, -0.0, False, None, "1", "true", "null", "", [1], "[1]", [], {},
    {"a": 1, "b": [2, {"c": None}]}, {"b": [2, {"c": None}], "a": 1}, 2**63 - 1, 2**62,
    -(2**63) + 1, -(2**63), 1e16, 10**16, 0.1 + 0.2, 0.3, "ünï", 'q"t', "a\\b", "\x00",
    "a", "a\x00b",
]  # fmt: skip


def test_metadata_filter_on_tricky_values_equals_the_reference(tmp_path: Path) -> None:
    """Every stored value against every filter value, at a plain and an awkward path."""

    async def main() -> None:
        clock = ManualClock()
        async with SqliteStore(path=str(tmp_path / "t.db"), clock=clock) as store:
            sessions = [
                await store.create_session(metadata={"k": v, 'q"t': {"x\\y": v}}) for v in TRICKY
            ]
            for key, value in itertools.product(("k", 'q"t.x\\y'), TRICKY):
                flt = SessionFilter(metadata={key: value})
                want = evaluate(sessions, flt, QueryOptions(limit=100), clock.now())
                got = await store.list_sessions(flt, QueryOptions(limit=100))
                assert got.ids == want.ids, (key, value)
                assert want.ids  # each value matches at least its own session

    asyncio.run(main())


def test_tag_listings_by_creation_page_like_the_reference(tmp_path: Path) -> None:
    """The tag-driven listing (``tags`` walked in creation order) pages exactly as the
    reference, after tag changes, deletes and the re-creation of an expired session."""

    async def main() -> None:
        clock = ManualClock()
        async with SqliteStore(path=str(tmp_path / "tags.db"), clock=clock) as store:
            for n in range(60):
                tags = ["t"] + (["u"] if n % 3 == 0 else [])
                await store.create_session(
                    id=f"s{n:02d}", tags=tags, processor_id=f"p{n % 2}", ttl=5 if n == 7 else None
                )
                if n % 4 == 0:
                    clock.advance(0.001)  # some share a millisecond: ties broken by id
            await store.update_session("s10", remove_tags=["t"])
            await store.update_session("s11", add_tags=["u"])
            await store.delete_session("s12")
            clock.advance(10)  # s07 expires, then is created again (new created_at)
            await store.create_session(id="s07", tags=["t"])  # the same tags as before
            everything = await store.list_sessions(
                SessionFilter(include_expired=True), QueryOptions(limit=1000)
            )
            for flt in (
                SessionFilter(tags_all=["t"]),
                SessionFilter(tags_all=["u", "t"], processor_id="p0"),
                SessionFilter(tags_all=["u"], tags_any=["t"], include_expired=True),
            ):
                for order in ("asc", "desc"):
                    want = evaluate(
                        everything.items, flt, QueryOptions(order=order, limit=1000), clock.now()
                    )
                    got: list[str] = []
                    cursor = None
                    while True:
                        opts = QueryOptions(order=order, limit=7, cursor=cursor)
                        page = await store.list_sessions(flt, opts)
                        got += page.ids
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                    assert got == want.ids, (flt, order)
                    offset = await store.list_sessions(flt, QueryOptions(order=order, offset=5))
                    assert offset.ids == want.ids[5:105]

    asyncio.run(main())
