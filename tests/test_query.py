"""The reference query evaluator, and the memory driver's indexed queries against it."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionstore_memory import MemoryStore

from sessionstore import (
    InvalidArgumentError,
    InvalidCursorError,
    InvalidSessionIdError,
    ManualClock,
    Page,
    QueryOptions,
    SerializationError,
    Session,
    SessionFilter,
    Status,
)
from sessionstore.query import MAX_LIMIT, evaluate

T0 = datetime(2030, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def mk(
    sid: str,
    *,
    created: int = 0,
    updated: int | None = None,
    expires: datetime | None = None,
    processor: str | None = None,
    status: Status = Status.ACTIVE,
    tags: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    events: int = 0,
) -> Session:
    return Session(
        id=sid,
        processor_id=processor,
        status=status,
        data=data or {},
        metadata=metadata or {},
        tags=frozenset(tags),
        created_at=at(created),
        updated_at=at(created if updated is None else updated),
        expires_at=expires,
        version=1,
        event_count=events,
        last_seq=events,
    )


def ids_of(
    sessions: Sequence[Session],
    flt: SessionFilter | None = None,
    options: QueryOptions | None = None,
    *,
    now: datetime = NOW,
    search: str | None = None,
) -> list[str]:
    return evaluate(sessions, flt, options, now, search=search).ids


# --------------------------------------------------------------------------- filters

SESSIONS = [
    mk("s1", created=10, processor="p1", tags=["a", "b"], metadata={"k": 1}, events=2),
    mk("s2", created=20, processor="p2", status=Status.PAUSED, tags=["b"], metadata={"k": 1.0}),
    mk("s3", created=30, processor="p1", status=Status.FAILED, tags=["c"], metadata={"k": True}),
    mk("s4", created=40, tags=[], metadata={"k": {"n": 1}}, events=1),
    mk("s5", created=50, processor="p3", tags=["a", "c"], metadata={"k": "1"}),
]


def test_no_filter_returns_everything_in_created_order() -> None:
    assert ids_of(SESSIONS) == ["s1", "s2", "s3", "s4", "s5"]
    assert ids_of(SESSIONS, SessionFilter()) == ["s1", "s2", "s3", "s4", "s5"]


def test_ids_filter() -> None:
    assert ids_of(SESSIONS, SessionFilter(ids=["s3", "s1", "nope"])) == ["s1", "s3"]
    assert ids_of(SESSIONS, SessionFilter(ids=[])) == []


def test_ids_filter_validates() -> None:
    with pytest.raises(InvalidSessionIdError):
        SessionFilter(ids=["ok", "../etc"])
    with pytest.raises(InvalidArgumentError):
        SessionFilter(ids="s1")


def test_processor_one_or_many() -> None:
    assert ids_of(SESSIONS, SessionFilter(processor_id="p1")) == ["s1", "s3"]
    assert ids_of(SESSIONS, SessionFilter(processor_id=["p2", "p3"])) == ["s2", "s5"]
    assert ids_of(SESSIONS, SessionFilter(processor_id=["zz"])) == []
    # a session without a processor never matches a processor filter
    assert "s4" not in ids_of(SESSIONS, SessionFilter(processor_id=["p1", "p2", "p3"]))


def test_status_one_or_many() -> None:
    assert ids_of(SESSIONS, SessionFilter(status="paused")) == ["s2"]
    assert ids_of(SESSIONS, SessionFilter(status=Status.ACTIVE)) == ["s1", "s4", "s5"]
    assert ids_of(SESSIONS, SessionFilter(status=["failed", Status.PAUSED])) == ["s2", "s3"]
    with pytest.raises(InvalidArgumentError):
        SessionFilter(status="sleeping")
    with pytest.raises(InvalidArgumentError):
        SessionFilter(status=["active", "sleeping"])


def test_tags_all_and_any() -> None:
    assert ids_of(SESSIONS, SessionFilter(tags_all=["a"])) == ["s1", "s5"]
    assert ids_of(SESSIONS, SessionFilter(tags_all=["a", "b"])) == ["s1"]
    assert ids_of(SESSIONS, SessionFilter(tags_all=["a", "zz"])) == []
    assert ids_of(SESSIONS, SessionFilter(tags_any=["b", "c"])) == ["s1", "s2", "s3", "s5"]
    assert ids_of(SESSIONS, SessionFilter(tags_any=["zz"])) == []
    assert ids_of(SESSIONS, SessionFilter(tags_all=["a"], tags_any=["c"])) == ["s5"]
    # the empty set: every session has all of no tags, none has any of no tags
    assert len(ids_of(SESSIONS, SessionFilter(tags_all=[]))) == 5
    assert ids_of(SESSIONS, SessionFilter(tags_any=[])) == []
    with pytest.raises(InvalidArgumentError):
        SessionFilter(tags_all="a")


def test_metadata_equality_is_canonical_json() -> None:
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": 1})) == ["s1"]
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": 1.0})) == ["s2"]
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": True})) == ["s3"]
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": "1"})) == ["s5"]
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": {"n": 1}})) == ["s4"]
    assert ids_of(SESSIONS, SessionFilter(metadata={"k": {"n": 1.0}})) == []


def test_metadata_dotted_paths() -> None:
    sessions = [
        mk("m1", metadata={"a": {"b": {"c": [1, 2]}}, "x": None}),
        mk("m2", metadata={"a": {"b": 5}}),
        mk("m3", metadata={"a": [{"b": 5}]}),
        mk("m4", metadata={"a.b": 5}),
        mk("m5", metadata={"a": {"b": {"d": 1, "c": 2}}}),
    ]
    assert ids_of(sessions, SessionFilter(metadata={"a.b": 5})) == ["m2"]
    assert ids_of(sessions, SessionFilter(metadata={"a.b.c": [1, 2]})) == ["m1"]
    assert ids_of(sessions, SessionFilter(metadata={"a.b.c": [2, 1]})) == []
    # dict values compare independent of key order
    assert ids_of(sessions, SessionFilter(metadata={"a.b": {"c": 2, "d": 1}})) == ["m5"]
    # None matches a stored None but not a missing key
    assert ids_of(sessions, SessionFilter(metadata={"x": None})) == ["m1"]
    # several paths are ANDed
    assert ids_of(sessions, SessionFilter(metadata={"a.b": 5, "x": None})) == []
    # a path into a list or a scalar does not match
    assert ids_of(sessions, SessionFilter(metadata={"a.b.c.d": 1})) == []


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", 5])
def test_metadata_bad_path(path: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        SessionFilter(metadata={path: 1})


def test_metadata_filter_value_must_be_json() -> None:
    with pytest.raises(SerializationError):
        SessionFilter(metadata={"a": {1, 2}})
    with pytest.raises(InvalidArgumentError):
        SessionFilter(metadata=[("a", 1)])  # type: ignore[arg-type]


def test_time_bounds_are_exclusive() -> None:
    sessions = [
        mk("t1", created=10, updated=100),
        mk("t2", created=20, updated=200),
        mk("t3", created=30, updated=300),
    ]
    assert ids_of(sessions, SessionFilter(created_after=at(10))) == ["t2", "t3"]
    assert ids_of(sessions, SessionFilter(created_after=at(9))) == ["t1", "t2", "t3"]
    assert ids_of(sessions, SessionFilter(created_before=at(30))) == ["t1", "t2"]
    assert ids_of(sessions, SessionFilter(created_before=at(31))) == ["t1", "t2", "t3"]
    assert ids_of(sessions, SessionFilter(created_after=at(10), created_before=at(30))) == ["t2"]
    assert ids_of(sessions, SessionFilter(created_after=at(20), created_before=at(20))) == []
    assert ids_of(sessions, SessionFilter(updated_after=at(200))) == ["t3"]
    assert ids_of(sessions, SessionFilter(updated_before=at(200))) == ["t1"]
    # sub-millisecond bounds are compared exactly
    half = timedelta(microseconds=500)
    assert ids_of(sessions, SessionFilter(created_before=at(10) + half)) == ["t1"]
    assert ids_of(sessions, SessionFilter(created_after=at(30) - half)) == ["t3"]


def test_time_bounds_must_be_aware() -> None:
    with pytest.raises(InvalidArgumentError):
        SessionFilter(created_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidArgumentError):
        SessionFilter(expires_before="2030-01-01")  # type: ignore[arg-type]


def test_expires_before_only_matches_sessions_with_an_expiry() -> None:
    sessions = [
        mk("e1", expires=NOW + timedelta(seconds=10)),
        mk("e2", expires=NOW + timedelta(seconds=20)),
        mk("e3"),
    ]
    bound = NOW + timedelta(seconds=20)
    assert ids_of(sessions, SessionFilter(expires_before=bound)) == ["e1"]
    assert ids_of(sessions, SessionFilter(expires_before=bound + timedelta(milliseconds=1))) == [
        "e1",
        "e2",
    ]


def test_has_events() -> None:
    assert ids_of(SESSIONS, SessionFilter(has_events=True)) == ["s1", "s4"]
    assert ids_of(SESSIONS, SessionFilter(has_events=False)) == ["s2", "s3", "s5"]
    with pytest.raises(InvalidArgumentError):
        SessionFilter(has_events=1)  # type: ignore[arg-type]


def test_expired_sessions_are_hidden_unless_included() -> None:
    sessions = [
        mk("x1", expires=NOW - timedelta(milliseconds=1)),
        mk("x2", expires=NOW),  # expiry at exactly now: expired
        mk("x3", expires=NOW + timedelta(milliseconds=1)),
        mk("x4"),
    ]
    assert ids_of(sessions) == ["x3", "x4"]
    assert ids_of(sessions, SessionFilter(include_expired=True)) == ["x1", "x2", "x3", "x4"]
    with pytest.raises(InvalidArgumentError):
        SessionFilter(include_expired=None)  # type: ignore[arg-type]


def test_fields_combine_with_and() -> None:
    flt = SessionFilter(processor_id="p1", tags_any=["a", "c"], status="active", has_events=True)
    assert ids_of(SESSIONS, flt) == ["s1"]


# --------------------------------------------------------------------------- search


def test_search_is_case_insensitive_over_values_only() -> None:
    sessions = [
        mk("q1", data={"note": "Find the NEEDLE here"}),
        mk("q2", metadata={"deep": [{"x": "needle"}]}),
        mk("q3", data={"needle": "key only"}),
        mk("q4", processor="NeedleWorker"),
        mk("q5", tags=["has-needle"]),
        mk("needle-id"),
        mk("q6", data={"n": 123}),
    ]
    assert ids_of(sessions, search="NeEdLe") == ["needle-id", "q1", "q2", "q4", "q5"]
    assert ids_of(sessions, search="123") == []  # numbers are not text
    assert ids_of(sessions, search=".*") == []  # never a regex


@pytest.mark.parametrize("text", ["", "   ", "x" * 1001, 5, None])
def test_search_text_validated(text: Any) -> None:
    if text is None:
        assert ids_of(SESSIONS, search=None) == ids_of(SESSIONS)
        return
    with pytest.raises(InvalidArgumentError):
        evaluate(SESSIONS, None, None, NOW, search=text)


# --------------------------------------------------------------------------- order


ORDER_SESSIONS = [
    mk("b", created=10, updated=50, expires=NOW + timedelta(seconds=3)),
    mk("a", created=10, updated=60),
    mk("d", created=5, updated=60, expires=NOW + timedelta(seconds=1)),
    mk("c", created=20, updated=40, expires=NOW + timedelta(seconds=3)),
    mk("e", created=10, updated=10),
]


@pytest.mark.parametrize(
    ("sort_by", "order", "expected"),
    [
        ("created_at", "asc", ["d", "a", "b", "e", "c"]),
        ("created_at", "desc", ["c", "e", "b", "a", "d"]),
        ("updated_at", "asc", ["e", "c", "b", "a", "d"]),
        ("updated_at", "desc", ["d", "a", "b", "c", "e"]),
        ("id", "asc", ["a", "b", "c", "d", "e"]),
        ("id", "desc", ["e", "d", "c", "b", "a"]),
        # missing expires_at sorts last in BOTH orders
        ("expires_at", "asc", ["d", "b", "c", "a", "e"]),
        ("expires_at", "desc", ["c", "b", "d", "e", "a"]),
    ],
)
def test_sort_orders_with_id_ties(sort_by: Any, order: Any, expected: list[str]) -> None:
    assert ids_of(ORDER_SESSIONS, None, QueryOptions(sort_by=sort_by, order=order)) == expected


def test_offset_and_limit() -> None:
    opts = QueryOptions(sort_by="id", limit=2, offset=1)
    assert ids_of(ORDER_SESSIONS, None, opts) == ["b", "c"]
    assert ids_of(ORDER_SESSIONS, None, QueryOptions(sort_by="id", offset=4)) == ["e"]
    assert ids_of(ORDER_SESSIONS, None, QueryOptions(sort_by="id", offset=5)) == []
    assert ids_of(ORDER_SESSIONS, None, QueryOptions(sort_by="id", offset=500)) == []
    page = evaluate(ORDER_SESSIONS, None, QueryOptions(sort_by="id", limit=2, offset=3), NOW)
    assert page.ids == ["d", "e"]
    assert page.next_cursor is None


# --------------------------------------------------------------------------- cursors


def _pages(
    sessions: Sequence[Session], flt: SessionFilter | None, opts: QueryOptions
) -> list[Page]:
    pages: list[Page] = []
    cursor: str | None = None
    for _ in range(len(sessions) + 2):
        page = evaluate(
            sessions,
            flt,
            QueryOptions(opts.sort_by, opts.order, opts.limit, cursor=cursor),
            NOW,
        )
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


@pytest.mark.parametrize("sort_by", ["created_at", "updated_at", "expires_at", "id"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 5, 6])
def test_cursor_paging_continues_exactly(sort_by: Any, order: Any, limit: int) -> None:
    full = ids_of(ORDER_SESSIONS, None, QueryOptions(sort_by=sort_by, order=order))
    pages = _pages(ORDER_SESSIONS, None, QueryOptions(sort_by=sort_by, order=order, limit=limit))
    assert [sid for page in pages for sid in page.ids] == full
    assert all(len(page) == limit for page in pages[:-1])
    assert pages[-1].next_cursor is None
    # a full last page has no cursor: no empty trailing page
    assert len(pages) == max(1, -(-len(full) // limit))


def test_cursor_is_stable_under_inserts_and_deletes() -> None:
    sessions = [mk(f"s{i}", created=i * 10) for i in range(6)]
    opts = QueryOptions(limit=2)
    first = evaluate(sessions, None, opts, NOW)
    assert first.ids == ["s0", "s1"]
    assert first.next_cursor is not None
    # a row inserted before the cursor, one after it, and a deleted row after it
    changed = [mk("early", created=5), *sessions[:3], *sessions[4:], mk("late", created=25)]
    nxt = evaluate(changed, None, QueryOptions(limit=2, cursor=first.next_cursor), NOW)
    assert nxt.ids == ["s2", "late"]
    # even when the cursor's own row was deleted
    without_s1 = [s for s in sessions if s.id != "s1"]
    nxt = evaluate(without_s1, None, QueryOptions(limit=2, cursor=first.next_cursor), NOW)
    assert nxt.ids == ["s2", "s3"]


def _cursor_for(flt: SessionFilter | None, opts: QueryOptions, search: str | None = None) -> str:
    page = evaluate(ORDER_SESSIONS, flt, opts, NOW, search=search)
    assert page.next_cursor is not None
    return page.next_cursor


@pytest.mark.parametrize(
    ("other_filter", "other_opts", "other_search"),
    [
        (SessionFilter(processor_id="x"), QueryOptions(limit=1), None),
        (SessionFilter(include_expired=True), QueryOptions(limit=1), None),
        (None, QueryOptions(limit=1, sort_by="updated_at"), None),
        (None, QueryOptions(limit=1, order="desc"), None),
        (None, QueryOptions(limit=1), "text"),
    ],
)
def test_cursor_from_another_query_is_refused(
    other_filter: SessionFilter | None, other_opts: QueryOptions, other_search: str | None
) -> None:
    cursor = _cursor_for(None, QueryOptions(limit=1))
    with pytest.raises(InvalidCursorError, match="different query"):
        evaluate(
            ORDER_SESSIONS,
            other_filter,
            QueryOptions(
                sort_by=other_opts.sort_by, order=other_opts.order, limit=1, cursor=cursor
            ),
            NOW,
            search=other_search,
        )


def test_cursor_is_not_bound_to_the_limit() -> None:
    cursor = _cursor_for(None, QueryOptions(limit=1))
    assert ids_of(ORDER_SESSIONS, None, QueryOptions(limit=10, cursor=cursor)) == [
        "a",
        "b",
        "e",
        "c",
    ]


def _tampered(cursor: str) -> list[str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    out = []
    for index in (0, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        out.append(base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("="))
    out.append(cursor[:-2])
    out.append(cursor + "AAAA")
    return out


def test_tampered_or_garbage_cursor_is_refused() -> None:
    opts = QueryOptions(limit=1)
    cursor = _cursor_for(None, opts)
    bad = [*_tampered(cursor), "", "!!!", "é", "AAAA", "x" * 200]
    for value in bad:
        with pytest.raises(InvalidCursorError):
            evaluate(ORDER_SESSIONS, None, QueryOptions(limit=1, cursor=value), NOW)


def test_invalid_cursor_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        evaluate(ORDER_SESSIONS, None, QueryOptions(cursor="nonsense"), NOW)


def test_cursor_and_offset_are_exclusive() -> None:
    cursor = _cursor_for(None, QueryOptions(limit=1))
    with pytest.raises(InvalidArgumentError, match="mutually exclusive"):
        QueryOptions(limit=1, offset=1, cursor=cursor)
    # offset 0 with a cursor is fine
    assert QueryOptions(limit=1, offset=0, cursor=cursor).cursor == cursor


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": MAX_LIMIT + 1},
        {"limit": True},
        {"limit": 1.5},
        {"limit": "10"},
        {"limit": None},
        {"offset": -1},
        {"offset": True},
        {"offset": 1.0},
        {"offset": 10**9},
        {"sort_by": "name"},
        {"sort_by": "CREATED_AT"},
        {"sort_by": None},
        {"order": "ascending"},
        {"order": "DESC"},
        {"order": None},
        {"cursor": 5},
    ],
)
def test_query_options_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        QueryOptions(**kwargs)


def test_query_options_bounds_accepted() -> None:
    assert QueryOptions(limit=1).limit == 1
    assert QueryOptions(limit=MAX_LIMIT).limit == MAX_LIMIT
    assert QueryOptions().limit == 100
    assert QueryOptions(order="desc").descending
    assert not QueryOptions().descending


def test_default_limit_pages() -> None:
    sessions = [mk(f"s{i:03d}", created=i) for i in range(150)]
    page = evaluate(sessions, None, None, NOW)
    assert len(page) == 100
    assert page.next_cursor is not None
    rest = evaluate(sessions, None, QueryOptions(cursor=page.next_cursor), NOW)
    assert len(rest) == 50
    assert rest.next_cursor is None


# --------------------------------------------------------------------------- memory vs reference

PROCESSORS = [None, "p1", "p2", "Worker-3"]
TAGS = ["a", "b", "c"]
METADATA: list[dict[str, Any]] = [
    {},
    {"k": 1},
    {"k": 1.0},
    {"k": True},
    {"k": "1"},
    {"k": None},
    {"k": {"n": 1}},
    {"k": {"n": [1, 2]}},
    {"k": {"n": 1.0}, "j": "x"},
]
NOTES = ["Alpha", "beta GAMMA", "", "mentions p1"]
ADVANCE_MS = [0, 0, 1, 2, 7, 1000]
TTLS: list[float | None] = [None, None, 0.001, 0.005, 1.0, 60.0]
METADATA_FILTERS: list[dict[str, Any]] = [
    {"k": 1},
    {"k": 1.0},
    {"k": True},
    {"k": "1"},
    {"k": None},
    {"k.n": 1},
    {"k.n": [1, 2]},
    {"k.n": 1.0, "j": "x"},
    {"k": {"n": 1}},
]
SEARCHES = ["alpha", "GAMMA", "p1", "a", "zzz", "WORKER", "b"]

step_strategy = st.fixed_dictionaries(
    {
        "advance": st.sampled_from(ADVANCE_MS),
        "processor": st.sampled_from(PROCESSORS),
        "status": st.sampled_from(list(Status)),
        "tags": st.sets(st.sampled_from(TAGS)),
        "metadata": st.sampled_from(METADATA),
        "note": st.sampled_from(NOTES),
        "ttl": st.sampled_from(TTLS),
        "events": st.integers(0, 2),
        "update": st.sampled_from([None, None, "merge", "touch", "status", "delete"]),
    }
)


@st.composite
def _filters(
    draw: st.DrawFn, ids: list[str], times: list[datetime], max_fields: int = 4
) -> SessionFilter:
    """A random filter setting at most ``max_fields`` fields (plus ``include_expired``)."""
    processors = st.sampled_from(["p1", "p2", "Worker-3", "zz"])
    deltas = [timedelta(microseconds=us) for us in (-1000, -500, 0, 0, 500, 1000)]
    bound = st.builds(lambda t, d: t + d, st.sampled_from(times), st.sampled_from(deltas))
    values: dict[str, st.SearchStrategy[Any]] = {
        "ids": st.sets(st.sampled_from([*ids, "missing-id"]), max_size=6),
        "processor_id": processors | st.sets(processors),
        "status": st.sampled_from(list(Status)) | st.sets(st.sampled_from(list(Status))),
        "tags_all": st.sets(st.sampled_from([*TAGS, "zz"]), max_size=2),
        "tags_any": st.sets(st.sampled_from([*TAGS, "zz"]), max_size=3),
        "metadata": st.sampled_from(METADATA_FILTERS),
        "created_after": bound,
        "created_before": bound,
        "updated_after": bound,
        "updated_before": bound,
        "expires_before": bound,
        "has_events": st.booleans(),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(values)), max_size=max_fields, unique=True))
    kwargs = {name: draw(values[name]) for name in chosen}
    return SessionFilter(**kwargs, include_expired=draw(st.booleans()))


async def _build(store: MemoryStore, clock: ManualClock, steps: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for step in steps:
        clock.advance(timedelta(milliseconds=step["advance"]))
        s = await store.create_session(
            processor_id=step["processor"],
            status=step["status"],
            tags=step["tags"],
            metadata=step["metadata"],
            data={"note": step["note"]},
            ttl=step["ttl"],
        )
        ids.append(s.id)
        if step["events"]:
            await store.append_events(s.id, [{"type": "t"}] * step["events"])
    for sid, step in zip(ids, steps, strict=True):
        clock.advance(timedelta(milliseconds=step["advance"]))
        if await store.get_session(sid) is None:
            continue  # already expired
        if step["update"] == "merge":
            await store.update_session(sid, merge_data={"more": "Alpha"}, add_tags=["b"])
        elif step["update"] == "touch":
            await store.touch(sid, ttl=0.003)
        elif step["update"] == "status":
            await store.update_session(sid, status="completed", processor_id="p2")
        elif step["update"] == "delete":
            await store.delete_session(sid)
    return ids


async def _query(
    store: MemoryStore, flt: SessionFilter, opts: QueryOptions, text: str | None
) -> Page:
    if text is None:
        return await store.list_sessions(flt, opts)
    return await store.search_sessions(text, opts, flt)


async def _check_against_reference(
    store: MemoryStore,
    ids: list[str],
    flt: SessionFilter,
    sort_by: Any,
    order: Any,
    limit: int,
    text: str | None,
) -> None:
    now = store.clock.now()
    everything = list((await store.get_sessions(ids, include_expired=True)).values())
    full = evaluate(
        everything,
        flt,
        QueryOptions(sort_by=sort_by, order=order, limit=MAX_LIMIT),
        now,
        search=text,
    )
    if text is None:
        assert await store.count_sessions(flt) == len(full)
    # one big page
    big = await _query(
        store, flt, QueryOptions(sort_by=sort_by, order=order, limit=MAX_LIMIT), text
    )
    assert big.items == full.items
    assert big.next_cursor is None
    # every page through cursors: same items AND the same cursors as the reference
    cursor: str | None = None
    seen: list[str] = []
    for _ in range(len(ids) + 2):
        opts = QueryOptions(sort_by=sort_by, order=order, limit=limit, cursor=cursor)
        page = await _query(store, flt, opts, text)
        ref = evaluate(everything, flt, opts, now, search=text)
        assert page.items == ref.items
        assert page.next_cursor == ref.next_cursor
        seen.extend(page.ids)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    else:
        raise AssertionError("cursor paging did not terminate")
    assert seen == full.ids
    # every page through offsets
    for offset in range(0, len(full) + limit + 1, limit):
        opts = QueryOptions(sort_by=sort_by, order=order, limit=limit, offset=offset)
        page = await _query(store, flt, opts, text)
        assert page.ids == full.ids[offset : offset + limit]
        assert page.next_cursor == evaluate(everything, flt, opts, now, search=text).next_cursor


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_memory_queries_match_the_reference_evaluator(data: st.DataObject) -> None:
    steps = data.draw(st.lists(step_strategy, min_size=0, max_size=30), label="steps")
    final_advance = data.draw(st.sampled_from([0, 1, 3, 5, 2000]), label="final_advance")
    expire = data.draw(st.booleans(), label="expire_sessions")
    cleanup = data.draw(st.booleans(), label="cleanup")

    async def scenario() -> None:
        clock = ManualClock()
        times = [clock.now()]
        async with MemoryStore(clock=clock) as store:
            ids = await _build(store, clock, steps)
            clock.advance(timedelta(milliseconds=final_advance))
            if expire:
                await store.expire_sessions()
            if cleanup:
                await store.cleanup_expired_sessions()
            for s in (await store.get_sessions(ids, include_expired=True)).values():
                times.extend(t for t in (s.created_at, s.updated_at, s.expires_at) if t)
            times.append(clock.now())
            for _ in range(3):
                flt = data.draw(_filters(ids, times), label="filter")
                sort_by = data.draw(
                    st.sampled_from(["created_at", "updated_at", "expires_at", "id"])
                )
                order = data.draw(st.sampled_from(["asc", "desc"]))
                limit = data.draw(st.sampled_from([1, 2, 3, 7]))
                text = data.draw(st.none() | st.sampled_from(SEARCHES), label="search")
                await _check_against_reference(store, ids, flt, sort_by, order, limit, text)

    asyncio.run(scenario())


def test_memory_queries_match_the_reference_on_a_larger_store() -> None:
    """Enough sessions that the planner walks the sorted indexes with index candidates."""
    loop = asyncio.new_event_loop()
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    rnd = random.Random(1234)

    async def build() -> tuple[list[str], list[datetime]]:
        await store.initialize()
        ids: list[str] = []
        times: list[datetime] = []
        for i in range(300):
            clock.advance(timedelta(milliseconds=rnd.choice([0, 1, 1, 2, 5])))
            s = await store.create_session(
                processor_id=rnd.choice(PROCESSORS),
                status=rnd.choice(list(Status)),
                tags=rnd.sample(TAGS, rnd.randint(0, 3)),
                metadata=rnd.choice(METADATA),
                data={"note": rnd.choice(NOTES)},
                ttl=rnd.choice([None, None, 0.05, 0.2, 5.0]),
            )
            ids.append(s.id)
            if i % 3 == 0:
                await store.append_events(s.id, [{"type": "t"}])
            times.extend((s.created_at, s.expires_at or s.created_at))
        clock.advance(0.1)
        for sid in rnd.sample(ids, 60):
            if await store.get_session(sid) is not None:
                await store.update_session(sid, merge_data={"x": 1})
                clock.advance(0.001)
        times.append(clock.now())
        return ids, times

    try:
        ids, times = loop.run_until_complete(build())

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            flt=_filters(ids, times, max_fields=2),
            sort_by=st.sampled_from(["created_at", "updated_at", "expires_at", "id"]),
            order=st.sampled_from(["asc", "desc"]),
            limit=st.sampled_from([7, 40]),
            text=st.none() | st.none() | st.sampled_from(SEARCHES),
        )
        def check(
            flt: SessionFilter, sort_by: Any, order: Any, limit: int, text: str | None
        ) -> None:
            loop.run_until_complete(
                _check_against_reference(store, ids, flt, sort_by, order, limit, text)
            )

        check()
    finally:
        loop.run_until_complete(store.shutdown())
        loop.close()
