"""The event log on PostgreSQL (#17): one round trip per operation (one call of
``events_op`` for the writes), pages read through the indexes, concurrent writers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson
import pytest
from sessionstore_postgres import PostgresStore
from sessionstore_postgres._events import EventWindow, page_sql

import sessionstore
from sessionstore import (
    AppendOp,
    DeleteEventsOp,
    EventInput,
    EventKeyConflictError,
    ManualClock,
    Op,
    PopOp,
    SessionConflictError,
    SessionNotFoundError,
    TrimOp,
    TruncateOp,
)
from tests.eventlog_differential import KEY_CONFLICTS

OpenPg = Callable[..., Awaitable[PostgresStore]]


def _trips(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_run = store._pools.get().run

    async def counting(call: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real_run(call, **kwargs)

    monkeypatch.setattr(store._pools.get(), "run", counting)
    return calls


@pytest.mark.asyncio
async def test_every_event_log_operation_is_one_round_trip(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_pg()
    other = await open_pg()  # writes this store holds no copy of
    await other.create_session(id="s")
    await other.append_events("s", [EventInput("t", {"i": i}, key=f"k{i}") for i in range(10)])
    calls = _trips(store, monkeypatch)

    async def stale_append() -> object:  # another store's write makes this copy stale
        await other.append_events("new", [{"type": "o"}])
        return await store.append_events("new", [{"type": "t"}])

    ops: dict[str, Callable[[], Awaitable[object]]] = {
        "keyed append (no copy held)": lambda: store.append_events(
            "s", [EventInput("t", {"i": 10}, key="k10")]
        ),
        "keyed append again (nothing new)": lambda: store.append_events(
            "s", [EventInput("t", {"i": 10}, key="k10")]
        ),
        "append with create and ttl": lambda: store.append_events(
            "new", [{"type": "t"}], create=True, ttl=60
        ),
        "detailed append": lambda: store.append_events_detailed(
            "s", [EventInput("t", {"i": 11}, key="k11")]
        ),
        "plain append (copy held)": lambda: store.append_events("s", [{"type": "t"}]),
        "plain append, stale copy": stale_append,
        "pop": lambda: store.pop_events("s", 2),
        "truncate": lambda: store.truncate_events("s", 7),
        "delete by seq and key": lambda: store.delete_events("s", seqs=[1], keys=["k2"]),
        "trim": lambda: store.trim_events("s", keep_last=3),
        "get_event": lambda: store.get_event("s", key="k5"),
        "get_events types last": lambda: store.get_events("s", types=["t", "u"], last=2),
        "get_events one type last": lambda: store.get_events("s", types=["t"], last=2),
        "get_events before_seq": lambda: store.get_events("s", before_seq=6, last=2),
    }
    for name, op in ops.items():
        calls.clear()
        await op()
        assert len(calls) == 1, name


@pytest.mark.asyncio
async def test_a_batch_of_event_ops_is_one_transaction(open_pg: OpenPg) -> None:
    store = await open_pg()
    await store.create_session(id="s")
    await store.append_events("s", [EventInput("t", {"i": i}, key=f"k{i}") for i in range(10)])
    batch: list[Op] = [
        TruncateOp("s", 8),
        AppendOp("s", [EventInput("t", {"i": 99}, key="k99")]),
        PopOp("s"),
    ]
    await store.commit(batch)
    events = await store.get_events("s")
    assert [e.seq for e in events] == list(range(1, 9))
    s = await store.get_session("s")
    assert s is not None and s.event_count == 8 and s.last_seq == 11 and s.version == 5
    with pytest.raises(SessionConflictError):
        await store.commit([PopOp("s", 3), TruncateOp("s", 1, expected_version=4)])
    assert [e.seq for e in await store.get_events("s")] == list(range(1, 9))


async def _plan_rows(
    store: PostgresStore, window: EventWindow, *, analyse: bool = True
) -> list[dict[str, Any]]:
    o = store.options
    conn = await asyncpg.connect(host=o.host, port=o.port, user=o.user, database=o.database)
    try:
        if analyse:
            await conn.execute(f"ANALYZE {store._t_events}")
        sql, args = page_sql(store._t_sessions, store._t_events, window)
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, store.namespace, "s", *args
        )
    finally:
        await conn.close()
    out: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == store._t_events:
            out.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(orjson.loads(plan)[0]["Plan"])
    return out


@pytest.mark.asyncio
async def test_event_pages_read_only_the_page(open_pg: OpenPg) -> None:
    """A page of one or two types, and a backwards page by seq, read about the page's
    rows from the index (not every event of the session or of the types).

    Tables of its own: the plan follows the table's statistics, and the tables shared by
    the other tests hold thousands of tiny sessions, which make PostgreSQL expect a few
    events per session and type (then reading them all and sorting looks as cheap)."""
    store = await open_pg(table_prefix=f"pages{uuid.uuid4().hex[:8]}_")
    await store.create_session(id="s")
    for chunk in range(4):
        await store.append_events(
            "s",
            [
                {"type": f"t{i % 4}", "data": {"i": i}}
                for i in range(chunk * 250, chunk * 250 + 250)
            ],
        )
    for window, most in (
        (EventWindow(types=["t1"], last=20), 20),
        (EventWindow(types=["t1", "t2"], last=20), 40),
        (EventWindow(before_seq=500, last=20), 20),
    ):
        scans = await _plan_rows(store, window)
        assert scans, window
        read = _rows_read(scans)
        assert read <= most, (window, read, [(n["Node Type"], n.get("Index Name")) for n in scans])


def _rows_read(scans: list[dict[str, Any]]) -> int:
    """The rows the scans read: those they returned and those their filter removed (a
    nested loop runs the inner index scan once per type: rows are per loop)."""
    return sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
        for n in scans
    )


@pytest.mark.asyncio
async def test_several_types_without_a_page_size_read_their_rows(open_pg: OpenPg) -> None:
    """Events of several types read whole (no page size), as the LangGraph adapter reads
    the writes of a page of checkpoints (a type each): their rows from the type index,
    not the session's whole log. With many short sessions beside it PostgreSQL expects a
    few events a session, and a ``type = ANY(...)`` filter on the primary key's scan (in
    seq order, no sort) looked cheapest: it read all 4,000 rows, analysed or not."""
    store = await open_pg(table_prefix=f"types{uuid.uuid4().hex[:8]}_")
    await store.create_session(id="s")
    for chunk in range(10):
        await store.append_events(
            "s",
            [
                {"type": kind}
                for i in range(chunk * 100, chunk * 100 + 100)
                for kind in ("ns", f"w{i}", "cp", "blob")
            ],
        )
    for j in range(200):
        await store.append_events(f"o{j}", [{"type": "cp"}], create=True)
    ten = [f"w{i}" for i in range(990, 1000)]
    found = await store.get_events("s", types=ten)
    assert [e.type for e in found] == ten
    for window, most in ((EventWindow(types=ten), 10), (EventWindow(types=ten, after_seq=3980), 5)):
        scans = await _plan_rows(store, window)
        assert scans and _rows_read(scans) <= most, (window, [n["Node Type"] for n in scans])


@pytest.mark.asyncio
async def test_time_bounded_pages_read_their_range(open_pg: OpenPg) -> None:
    """A time bound without types reads its range (in events_at's order) when the window
    has no page size, or has one and the range holds few events; a page of a wide range
    walks the seq order and stops at the page, after counting the range (at most 1,000
    index entries). Beside many short sessions the planner walked the whole log for a
    recent bound with a page larger than what follows it, or an early window."""
    store = await open_pg(table_prefix=f"times{uuid.uuid4().hex[:8]}_")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    at = [base + timedelta(seconds=i) for i in range(3000)]
    await store.create_session(id="s")
    for chunk in range(3):
        await store.append_events(
            "s",
            [EventInput("t", {"i": i}, at=at[i]) for i in range(chunk * 1000, chunk * 1000 + 1000)],
        )
    for j in range(200):
        await store.append_events(f"o{j}", [{"type": "t"}], create=True)
    every = await store.get_events("s")
    for kw, want in (
        ({"at_after": at[2994], "last": 20}, every[2995:]),
        ({"at_after": at[10], "at_before": at[21]}, every[11:21]),
        ({"at_before": at[50], "last": 3}, every[47:50]),
        ({"at_after": at[10], "last": 3}, every[-3:]),
        ({"at_after": at[10], "limit": 3}, every[11:14]),
        ({"at_after": at[10], "after_seq": 2990}, every[2990:]),
    ):
        assert await store.get_events("s", **kw) == want, kw
    ms = [int(t.timestamp() * 1000) for t in at]
    for window, most in (
        (EventWindow(after_ms=ms[2994], last=20), 10),  # the count's 5, the range's 5
        (EventWindow(after_ms=ms[10], before_ms=ms[21]), 10),
        (EventWindow(before_ms=ms[50], last=3), 100),
        (EventWindow(after_ms=ms[10], last=3), 1003),  # counted up to 1,000, then walked
        (EventWindow(after_ms=ms[10], after_seq=2990), 1010),  # the same, from a late seq
    ):
        # as on a table autovacuum has not analysed yet (analysed, this small table's
        # statistics lead the planner to the range by themselves)
        scans = await _plan_rows(store, window, analyse=False)
        assert scans and _rows_read(scans) <= most, (window, _rows_read(scans))


@pytest.mark.asyncio
async def test_concurrent_pops_from_several_stores_take_each_event_once(open_pg: OpenPg) -> None:
    stores = [await open_pg() for _ in range(4)]
    await stores[0].create_session(id="s")
    await stores[0].append_events("s", [{"type": "t", "data": {"i": i}} for i in range(40)])

    async def popper(st: PostgresStore) -> list[int]:
        got: list[int] = []
        while True:
            popped = await st.pop_events("s")
            if not popped.events:
                return got
            got.extend(e.seq for e in popped.events)

    results = await asyncio.gather(*(popper(st) for st in stores))
    assert sorted(q for r in results for q in r) == list(range(1, 41))
    final = await stores[0].get_session("s")
    assert final is not None and final.event_count == 0 and final.last_seq == 40


@pytest.mark.asyncio
async def test_concurrent_keyed_appends_write_each_key_once(open_pg: OpenPg) -> None:
    stores = [await open_pg() for _ in range(4)]
    await stores[0].create_session(id="s")

    async def deliver(st: PostgresStore) -> list[bool]:
        new: list[bool] = []
        for i in range(10):
            result = await st.append_events_detailed("s", [EventInput("t", {"i": i}, key=f"k{i}")])
            new.extend(result.new)
        return new

    results = await asyncio.gather(*(deliver(st) for st in stores))
    assert sum(sum(r) for r in results) == 10
    events = await stores[0].get_events("s")
    assert sorted(e.key for e in events if e.key) == sorted(f"k{i}" for i in range(10))


@pytest.mark.asyncio
async def test_a_key_conflict_writes_nothing_not_even_the_created_session(
    open_pg: OpenPg,
) -> None:
    store = await open_pg()
    with pytest.raises(EventKeyConflictError):
        await store.append_events(
            "fresh",
            [EventInput("t", {"a": 1}, key="k"), EventInput("t", {"a": 2}, key="k")],
            create=True,
        )
    assert await store.get_session("fresh") is None
    s = await store.create_session(id="old")
    await store.append_events("old", [EventInput("t", {"a": 1, "b": [1, 2.5]}, key="k")])
    # the same content in another key order is the same event
    again = await store.append_events_detailed(
        "old", [EventInput("t", {"b": [1, 2.5], "a": 1}, key="k")]
    )
    assert again.new == [False] and again.session.version == s.version + 1
    with pytest.raises(EventKeyConflictError):
        await store.append_events("old", [{"type": "x"}, EventInput("t", {"a": 2}, key="k")])
    stored = await store.get_session("old")
    assert stored is not None and stored.event_count == 1


@pytest.mark.parametrize("seed", range(int(os.environ.get("ELSQL_SEEDS", "4"))))
@pytest.mark.asyncio
async def test_the_event_log_behaves_as_the_memory_store(open_pg: OpenPg, seed: int) -> None:
    from sessionstore_memory import MemoryStore

    from sessionstore import ManualClock
    from tests.eventlog_differential import run_differential

    clock = ManualClock()
    sut = await open_pg(clock=clock)
    async with MemoryStore(clock=clock) as ref:
        await run_differential(ref, sut, clock, seed)


@pytest.mark.parametrize("apply", [True, False])
@pytest.mark.asyncio
async def test_a_lost_reply_of_a_keyed_append_is_sent_again_safely(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch, apply: bool
) -> None:
    """This store holds no copy of the row and gives no expected version: only the keys
    make sending the append again safe (it writes nothing twice)."""
    from tests.postgres.test_postgres_store import _lose_reply

    store = await open_pg()
    other = await open_pg()
    await other.create_session(id="s")
    await other.append_events("s", [{"type": "before"}])
    _lose_reply(store, monkeypatch, apply=apply)
    after = await store.append_events("s", [EventInput("t", {"n": 1}, key="once")])
    assert after.event_count == 2
    assert [e.key for e in await other.get_events("s")] == [None, "once"]


@pytest.mark.asyncio
async def test_a_lost_reply_of_an_applied_pop_is_outcome_unknown(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sessionstore import OutcomeUnknownError
    from tests.postgres.test_postgres_store import _lose_reply

    store = await open_pg()
    await store.create_session(id="s")
    await store.append_events("s", [{"type": "a"}, {"type": "b"}])
    _lose_reply(store, monkeypatch, apply=True)
    with pytest.raises(OutcomeUnknownError, match="was applied"):
        await store.pop_events("s")
    stored = await store.get_session("s")
    assert stored is not None and stored.event_count == 1  # popped once, not twice


@pytest.mark.asyncio
async def test_an_unkeyed_append_lost_without_a_copy_is_outcome_unknown(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sessionstore import OutcomeUnknownError
    from tests.postgres.test_postgres_store import _lose_reply

    store = await open_pg()
    other = await open_pg()
    await other.create_session(id="s")
    _lose_reply(store, monkeypatch, apply=False)
    with pytest.raises(OutcomeUnknownError):
        await store.append_events("s", [{"type": "t"}])
    stored = await other.get_session("s")
    assert stored is not None and stored.event_count == 0


def _scans_of(plan: str, table: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == table:
            out.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(orjson.loads(plan)[0]["Plan"])
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analysed", "analysed"])
async def test_key_and_seq_lookups_use_their_index_whatever_the_statistics(
    open_pg: OpenPg, analyzed: bool
) -> None:
    """``get_event`` and the keyed/seq fact reads of a planned write (``_find_events``)
    descend the key index / the primary key once per value, in custom and generic plans,
    on a table that was never analysed (PostgreSQL then expects one event per session and
    every ``(ns, session_id)`` index looks alike: the former statements read the whole
    log) as on an analysed one."""
    store = await open_pg(table_prefix=f"look{uuid.uuid4().hex[:8]}_")
    t = store._t_events
    o = store.options
    conn = await asyncpg.connect(host=o.host, port=o.port, user=o.user, database=o.database)
    try:
        await conn.execute(f"ALTER TABLE {t} SET (autovacuum_enabled = off)")
        await store.create_session(id="other")
        await store.append_events(
            "other", [EventInput("t", {"i": i}, key=f"k{i}") for i in range(50)]
        )
        await store.create_session(id="s")
        for start in range(0, 3000, 1000):
            await store.append_events(
                "s",
                [
                    EventInput(f"t{i % 4}", {"i": i}, key=f"k{i}")
                    for i in range(start, start + 1000)
                ],
            )
        if analyzed:
            await conn.execute(f"ANALYZE {t}")
        else:
            assert await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = $1", t) == 0
        ns = store.namespace
        lookups: list[tuple[str, str, str, int]] = [
            (store._sql_find_events, "text, text, bigint[], text[]",
             f"{_lit(ns)}, 's', '{{5,1500,99999}}', '{{k7,k2999,nope}}'", 6),
            (store._sql_event_by_key, "text, text, text", f"{_lit(ns)}, 's', 'k1234'", 1),
            (store._sql_event_by_key, "text, text, text", f"{_lit(ns)}, 's', 'nope'", 1),
        ]  # fmt: skip
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for i, (sql, types, args, most) in enumerate(lookups):
                name = f"lookup_{mode[6:12]}_{i}"
                await conn.execute(f"PREPARE {name}({types}) AS {sql}")
                plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({args})")
                scans = _scans_of(plan, t)
                shapes = [(n["Node Type"], n.get("Index Name"), n.get("Index Cond")) for n in scans]
                read = sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in scans)
                assert scans and read <= most, (mode, sql, read, shapes)
                assert all(
                    n["Node Type"] == "Index Scan"
                    and n["Index Name"] in (f"{t}_pkey", f"{t}_key")
                    and ("seq >=" in n["Index Cond"] or "key >=" in n["Index Cond"])
                    for n in scans
                ), (mode, sql, shapes)
        found = await store._find_events("s", seqs=[5, 1500, 99999], keys=["k4", "k7", "nope"])
        assert [(e.seq, e.key) for e in found] == [(5, "k4"), (8, "k7"), (1500, "k1499")]
        assert (await store.get_event("s", key="k1234")) is not None
        assert await store.get_event("s", key="k12345") is None
    finally:
        await conn.close()


async def _keyed_log(store: PostgresStore) -> asyncpg.Connection:
    """A connection to ``store``'s database (the caller closes it) after autovacuum was
    turned off on its events table and session ``s`` got 3,000 events keyed ``k0`` ..
    ``k2999`` in three appends."""
    o = store.options
    conn = await asyncpg.connect(host=o.host, port=o.port, user=o.user, database=o.database)
    await conn.execute(f"ALTER TABLE {store._t_events} SET (autovacuum_enabled = off)")
    await store.create_session(id="s")
    for start in range(0, 3000, 1000):
        await store.append_events(
            "s", [EventInput("t", {"i": i}, key=f"k{i}") for i in range(start, start + 1000)]
        )
    return conn


@contextmanager
def _sent() -> Iterator[list[str]]:
    """The text of every ``fetchrow`` any connection sends meanwhile, in order."""
    sent: list[str] = []
    fetchrow = asyncpg.Connection.fetchrow

    async def spy(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        sent.append(query)
        return await fetchrow(self, query, *args, **kw)

    asyncpg.Connection.fetchrow = spy
    try:
        yield sent
    finally:
        asyncpg.Connection.fetchrow = fetchrow


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.asyncio
async def test_event_log_writes_find_events_through_the_ordering_index_on_a_fresh_table(
    open_pg: OpenPg,
) -> None:
    """The statements inside the write functions (``events_op``, ``write``) that find
    events by seq or key: pop, truncate, delete by seq and key, trim, a keyed append's
    stored-key check, and a commit's truncate / delete / trim, on a never-analysed table
    (statements seen through ``auto_explain`` on the store's one connection). Schema
    version 3's read the session's whole log through ``events_at`` for pop, truncate and
    delete by seq."""
    store = await open_pg(table_prefix=f"fn{uuid.uuid4().hex[:8]}_", min_size=1, max_size=1)
    t = store._t_events

    await store.create_session(id="other")
    await store.append_events("other", [EventInput("t", {"i": i}, key=f"k{i}") for i in range(50)])
    conn = await _keyed_log(store)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = $1", t) == 0
    finally:
        await conn.close()
    plans = await _auto_explain(store)
    if plans is None:
        pytest.skip("auto_explain is not installed with this server")
    stored, fresh = EventInput("t", {"i": 7}, key="k7"), EventInput("t", {}, key="new")
    ops: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
        ("keyed append, stored key", lambda: store.append_events("s", [stored]), 1),
        ("keyed append, new key", lambda: store.append_events("s", [fresh]), 1),
        ("pop", lambda: store.pop_events("s", n=2), 2),
        ("truncate", lambda: store.truncate_events("s", after_seq=2990), 9),
        ("delete by seq and key", lambda: store.delete_events("s", seqs=[5], keys=["k9"]), 2),
        ("trim", lambda: store.trim_events("s", keep_last=2975), 10),
        ("commit truncate", lambda: store.commit([TruncateOp("s", 2985)]), 5),
        ("commit delete", lambda: store.commit([DeleteEventsOp("s", seqs=[2000, 2001])]), 2),
        ("commit trim", lambda: store.commit([TrimOp("s", 2960)]), 2960),
    ]  # fmt: skip
    for name, op, most in ops:
        plans.clear()
        await op()
        nodes = [n for p in plans for n in _plan_nodes(p) if _on_table(n, t)]
        shapes = [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in nodes]
        assert plans, name
        assert not any(
            n["Node Type"] == "Seq Scan" or n.get("Index Name") in (f"{t}_at", f"{t}_type")
            for n in nodes
        ), (name, shapes)
        scanned = [n for n in nodes if "Scan" in n["Node Type"] and n["Node Type"] != "Tid Scan"]
        read = sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in scanned)
        # each statement reads about the rows it touches (the whole log is 3,000)
        assert read <= 3 * most + 2, (name, read, shapes)
    events = await store.get_events("s")
    assert len(events) == 2960 and events[-1].seq == 2985 and 5 not in {e.seq for e in events}


def _on_table(node: dict[str, Any], table: str) -> bool:
    return node.get("Relation Name") == table or str(node.get("Index Name", "")).startswith(table)


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("Plans", []):
        out.extend(_plan_nodes(child))
    return out


async def _auto_explain(store: PostgresStore) -> list[dict[str, Any]] | None:
    """The plans of every statement the store's one connection runs from now on, nested
    ones included (``auto_explain``); ``None`` when the server has no ``auto_explain``."""
    plans: list[dict[str, Any]] = []

    def listen(_conn: object, message: Any) -> None:
        text = str(message.message)
        if "plan:" in text:
            plans.append(orjson.loads(text.split("plan:", 1)[1])["Plan"])

    async def setup(conn: asyncpg.Connection) -> bool:
        try:
            await conn.execute("LOAD 'auto_explain'")
        except asyncpg.PostgresError:
            return False
        for name, value in (
            ("log_min_duration", "0"), ("log_nested_statements", "on"),
            ("log_analyze", "on"), ("log_format", "json"),
        ):  # fmt: skip
            await conn.execute(f"SET auto_explain.{name} = '{value}'")
        await conn.execute("SET client_min_messages = log")
        conn.add_log_listener(listen)
        return True

    return plans if await store._pools.get().run(setup) else None


@pytest.mark.asyncio
async def test_a_one_event_append_gets_events_ops_row_as_json_when_its_copy_is_stale(
    open_pg: OpenPg,
) -> None:
    """One unkeyed event from a current copy is the scalar statement with a four-column
    reply; when another store wrote the session meanwhile, ``events_op`` answers in the
    same statement and its row comes back as JSON: the returned session is the stored
    one (the other store's documents, tags, times), exactly as ``get_session`` reads it."""
    store = await open_pg()
    other = await open_pg()
    s = await store.create_session(data={"v": 1}, tags=["a"])
    with _sent() as sent:
        fresh = await store.append_events(s.id, [{"type": "t", "data": {"i": 1}}])
        assert sent[-1] == store._eventlog._sql_append_one
        assert (fresh.version, fresh.event_count, fresh.last_seq) == (2, 1, 1)
        await other.update_session(s.id, data={"v": 2, "big": 2**62, "f": 1.0}, tags=["b", "c"])
        stale = await store.append_events(s.id, [{"type": "u"}])
        assert sent[-1] == store._eventlog._sql_append_one
    assert stale == await other.get_session(s.id)
    assert stale.data == {"v": 2, "big": 2**62, "f": 1.0} and stale.tags == {"b", "c"}
    assert (stale.version, stale.event_count, stale.last_seq) == (4, 2, 2)
    with pytest.raises(SessionConflictError) as err:
        await store.append_events(s.id, [{"type": "t"}], expected_version=3)
    assert err.value.actual == 4
    await other.delete_session(s.id)
    with pytest.raises(SessionNotFoundError):
        await store.append_events(s.id, [{"type": "t"}])


@pytest.mark.asyncio
async def test_an_unkeyed_append_from_a_current_copy_takes_no_row_lock(open_pg: OpenPg) -> None:
    """An append of unkeyed events to a session whose row this store wrote last is one
    statement of one ``UPDATE`` of the head (the token, liveness and expected version
    checked in its ``WHERE``) and one ``INSERT``: no ``SELECT ... FOR UPDATE`` first (a
    tuple write of its own) and no ``events_op``. A stale copy or a version mismatch
    falls through to ``events_op`` in the same statement, which answers as before."""
    store = await open_pg(min_size=1, max_size=1)
    other = await open_pg()
    await store.create_session(id="s")
    plans = await _auto_explain(store)
    if plans is None:
        pytest.skip("auto_explain is not installed with this server")
    t_sessions, t_events = store._t_sessions, store._t_events

    def nodes() -> list[dict[str, Any]]:
        return [n for p in plans for n in _plan_nodes(p)]

    def writes(table: str, operation: str) -> int:
        return sum(
            1
            for n in nodes()
            if n["Node Type"] == "ModifyTable"
            and n.get("Operation") == operation
            and n.get("Relation Name") == table
        )

    plans.clear()
    s = await store.append_events("s", [{"type": "t", "data": {"i": 1}}, {"type": "u"}])
    assert not [n for n in nodes() if n["Node Type"] == "LockRows"]
    assert writes(t_sessions, "Update") == 1 and writes(t_events, "Insert") == 1
    assert (s.version, s.event_count, s.last_seq) == (2, 2, 2)
    # another store's write makes this store's copy stale: the locked path
    await other.append_events("s", [{"type": "v"}])
    plans.clear()
    s = await store.append_events("s", [{"type": "t"}])
    assert [n for n in nodes() if n["Node Type"] == "LockRows"]
    assert (s.version, s.event_count, s.last_seq) == (4, 4, 4)
    # a version mismatch on a current copy: refused, nothing written
    with pytest.raises(SessionConflictError):
        await store.append_events("s", [{"type": "t"}], expected_version=3)
    s = await store.append_events("s", [{"type": "t"}], expected_version=4, ttl=60)
    assert (s.version, s.event_count) == (5, 5) and s.expires_at is not None
    got = await other.get_events("s")
    assert [(e.seq, e.type, e.data) for e in got] == [
        (1, "t", {"i": 1}), (2, "u", {}), (3, "v", {}), (4, "t", {}), (5, "t", {})
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_a_keyed_append_from_a_current_copy_is_the_narrow_statement(
    open_pg: OpenPg,
) -> None:
    """Keyed events appended from a current copy take ``_sql_append_keyed`` (no
    ``events_op`` unless needed) and answer as ``events_op`` does: a stored key with the
    same type and JSON is not written again, a stored key with other content (or keys
    repeated in the call with other content) raises and writes nothing, the same JSON in
    another key order is the same event, nothing new leaves the version, and a stale copy
    is answered by ``events_op`` in the same statement."""
    store = await open_pg()
    other = await open_pg()
    await store.create_session(id="s")
    with _sent() as sent:
        a = EventInput("t", {"a": 1, "b": [1, 2.5]}, key="a")
        s = await store.append_events("s", [a, EventInput("t", {"i": 0}), a])
        assert sent[-1] == store._eventlog._sql_append_keyed
        assert (s.version, s.event_count, s.last_seq) == (2, 2, 2)  # a once (repeated)
        s = await store.append_events("s", [a, EventInput("u", {}, key="b")])
        assert (s.version, s.event_count, s.last_seq) == (3, 3, 3)
        # the same JSON in another key order: the same event (events_op compares jsonb)
        same = EventInput("t", {"b": [1, 2.5], "a": 1}, key="a")
        s = await store.append_events("s", [same, EventInput("v", {}, key="c")])
        assert (s.version, s.event_count, s.last_seq) == (4, 4, 4)
        s = await store.append_events("s", [a, same])  # nothing new: unchanged
        assert (s.version, s.event_count, s.last_seq) == (4, 4, 4)
        for bad in KEY_CONFLICTS:
            with pytest.raises(EventKeyConflictError):
                await store.append_events("s", bad)
            assert sent[-1] == store._eventlog._sql_append_keyed
        assert (await other.get_session("s")).event_count == 4  # type: ignore[union-attr]
        # another store's write makes the copy stale: events_op answers in the statement
        await other.append_events("s", [EventInput("w", {}, key="e")])
        s = await store.append_events("s", [EventInput("w", {}, key="e"), a, {"type": "y"}])
        assert sent[-1] == store._eventlog._sql_append_keyed
        assert s == await other.get_session("s")
        assert (s.version, s.event_count, s.last_seq) == (6, 6, 6)
        with pytest.raises(SessionConflictError):
            await store.append_events("s", [EventInput("z", {}, key="f")], expected_version=5)
    got = await other.get_events("s")
    assert [(e.seq, e.type, e.key) for e in got] == [
        (1, "t", "a"), (2, "t", None), (3, "u", "b"), (4, "v", "c"), (5, "w", "e"),
        (6, "y", None),
    ]  # fmt: skip
    assert got[0].data == {"a": 1, "b": [1, 2.5]}


@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analysed", "analysed"])
@pytest.mark.asyncio
async def test_the_keyed_append_looks_each_key_up_in_custom_and_generic_plans(
    open_pg: OpenPg, analyzed: bool
) -> None:
    """``_sql_append_keyed`` descends ``events_key`` once per input, on a never-analysed
    table as on an analysed one, in custom and generic plans (a join on the keys was
    planned, generically, as a hash join over every keyed event of the session), and
    PostgreSQL keeps the generic plan (the inputs' row estimate does not depend on the
    arrays, so planning each call would buy nothing)."""
    store = await open_pg(table_prefix=f"kapp{uuid.uuid4().hex[:8]}_")
    t = store._t_events
    conn = await _keyed_log(store)
    try:
        if analyzed:
            await conn.execute(f"ANALYZE {t}")
        token = store._eventlog._cache.get("s").token  # type: ignore[union-attr]
        args = (
            f"{_lit(store.namespace)}, 's', NULL, {_lit(token)}, 'tok', 1, "
            "'{t,t,t}', '{NULL,NULL,NULL}', "
            '\'{"{\\"i\\":7}","{}","{}"}\', \'{k7,new1,new2}\''
        )
        types = "text, text, bigint, text, text, bigint, text[], bigint[], text[], text[]"
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            name = f"keyed_{mode[6:12]}"
            await conn.execute(f"PREPARE {name}({types}) AS {store._eventlog._sql_append_keyed}")
            await conn.execute("BEGIN")  # (EXPLAIN ANALYZE writes: rolled back)
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({args})")
            await conn.execute("ROLLBACK")
            scans = [n for n in _scans_of(plan, t) if "Scan" in n["Node Type"]]
            shapes = [(n["Node Type"], n.get("Index Name"), n.get("Index Cond")) for n in scans]
            read = sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in scans)
            assert scans and read <= 1, (mode, read, shapes)
            assert all(n.get("Index Name") == f"{t}_key" for n in scans), (mode, shapes)
            called = [
                n
                for n in _plan_nodes(orjson.loads(plan)[0]["Plan"])
                if str(n.get("Function Name", "")).endswith("events_op") and n.get("Actual Loops")
            ]
            assert not called, mode  # the narrow path wrote it
        await conn.execute("RESET plan_cache_mode")
        await conn.execute(f"PREPARE auto({types}) AS {store._eventlog._sql_append_keyed}")
        for _ in range(7):
            await conn.execute("BEGIN")
            await conn.execute(f"EXECUTE auto({args})")
            await conn.execute("ROLLBACK")
        generic = await conn.fetchval(
            "SELECT generic_plans FROM pg_prepared_statements WHERE name = 'auto'"
        )
        assert generic >= 1
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_an_append_to_an_expired_session_from_a_current_copy_is_not_written(
    open_pg: OpenPg,
) -> None:
    from datetime import timedelta

    from sessionstore import ManualClock, SessionNotFoundError

    clock = ManualClock()
    store = await open_pg(clock=clock)
    await store.create_session(id="s", ttl=10)
    await store.append_events("s", [{"type": "t"}])
    clock.advance(timedelta(seconds=11))
    with pytest.raises(SessionNotFoundError):
        await store.append_events("s", [{"type": "t"}])
    again = await store.append_events("s", [{"type": "u"}], create=True)
    assert (again.version, again.event_count, again.last_seq) == (1, 1, 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("layout", ["many-short-sessions", "one-rare-type"])
async def test_a_type_page_reads_only_the_page_whatever_the_statistics(
    open_pg: OpenPg, layout: str
) -> None:
    """``get_events(types=[...], last=20)`` descends the type index once per type and
    reads the page, in custom and generic plans. With many short sessions beside a long
    one (the benchmark's table) the statistics make PostgreSQL expect a few events per
    session and type; the former one-type page (``type = ANY``, which the type index
    cannot return in seq order) then read every event of the type and sorted them."""
    store = await open_pg(table_prefix=f"tp{uuid.uuid4().hex[:8]}_")
    t, ns = store._t_events, store.namespace
    o = store.options
    conn = await asyncpg.connect(host=o.host, port=o.port, user=o.user, database=o.database)
    try:
        await conn.execute(f"ALTER TABLE {t} SET (autovacuum_enabled = off)")
        # 300 short sessions (5 events each, four types): rows only the statistics see
        await conn.execute(
            f"INSERT INTO {t} (ns, session_id, seq, type, at, data) "
            "SELECT $1, 'short-' || (g / 5), g % 5 + 1, 't' || (g % 4), 0, '{}' "
            "FROM generate_series(0, 1499) AS g",
            ns,
        )
        await store.create_session(id="s")
        # four types in turn, or one type in 50 (the statistics see mostly t0)
        kinds = ["t0", "t1", "t2", "t3"]
        if layout == "one-rare-type":
            kinds = [*["t0"] * 49, "t1"]
        for start in range(0, 4000, 1000):
            chunk = range(start, start + 1000)
            await store.append_events("s", [EventInput(kinds[i % len(kinds)], {}) for i in chunk])
        await conn.execute(f"ANALYZE {t}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for i, (types, most) in enumerate(((["t1"], 20), (["t1", "t2"], 40))):
                sql, args = page_sql(store._t_sessions, t, EventWindow(types=types, last=20))
                name = f"page_{mode[6:12]}_{i}"
                await conn.execute(f"PREPARE {name} AS {sql}")
                values = ", ".join(str(a) if isinstance(a, int) else _arr(a) for a in args)
                plan = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({_lit(ns)}, 's', {values})"
                )
                scans = _scans_of(plan, t)
                shapes = [(n["Node Type"], n.get("Index Name")) for n in scans]
                read = sum(
                    (n["Actual Rows"] + n.get("Rows Removed by Filter", 0))
                    * n.get("Actual Loops", 1)
                    for n in scans
                )
                assert scans and read <= most, (mode, types, read, shapes)
        page = await store.get_events("s", types=["t1"], last=20)
        assert len(page) == 20 and all(e.type == "t1" for e in page)
        assert [e.seq for e in page] == sorted(e.seq for e in page)
    finally:
        await conn.close()


def _arr(values: Any) -> str:
    return "ARRAY[" + ", ".join(_lit(v) for v in values) + "]::text[]"


class _OddClock(ManualClock):
    """A clock whose ``now`` is not whole milliseconds in UTC (the Clock protocol asks
    for both; the store must still return what it stored)."""

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self._odd = now

    def now(self) -> datetime:
        return self._odd


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "now",
    [
        datetime(2031, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2031, 1, 1, 14, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2))),
        datetime(2031, 1, 1, 12, 0, 0, 123000, tzinfo=UTC),
    ],
)
async def test_an_append_from_the_copy_returns_the_stored_updated_at(
    open_pg: OpenPg, now: datetime
) -> None:
    """The plain append builds the returned session from the copy: its ``updated_at``
    is the stored one (whole milliseconds, UTC) whatever the clock's ``now`` looks like,
    and the cache entry keeps the same documents in place."""
    store = await open_pg(clock=_OddClock(now))
    s = await store.create_session(data={"v": 1}, metadata={"m": 2})
    before = store._cache.get(s.id)
    assert before is not None
    size = store._cache._bytes
    after = await store.append_events(s.id, [{"type": "t", "data": {"i": 1}}])
    cached = store._cache.get(s.id)
    assert cached is not None and cached.token != before.token
    assert cached.data is before.data and store._cache._bytes == size
    assert after.updated_at.tzinfo is UTC and after.updated_at.microsecond == 123000
    stored = await store.get_session(s.id)
    assert stored is not None and after.updated_at == stored.updated_at


@pytest.mark.asyncio
async def test_event_times_are_decoded_once_per_store_and_the_memo_is_bounded(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessionstore_postgres._store as store_module

    clock = ManualClock(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    store = await open_pg(clock=clock)
    sid = (await store.create_session()).id
    times = []
    for i in range(6):
        times.append(clock.now())
        await store.append_events(sid, [{"type": "t", "data": {"i": i}}] * 2)
        clock.advance(0.0015)
    expect = [t for t in times for _ in range(2)]
    assert [e.at for e in await store.get_events(sid)] == expect
    memo = store._event_times
    assert sorted(memo) == sorted({int(t.timestamp() * 1000) for t in times})
    first = await store.get_events(sid, last=3)
    again = await store.get_events(sid, last=3)
    assert [e.at for e in again] == expect[-3:]
    assert all(a.at is b.at for a, b in zip(first, again, strict=True))  # decoded once
    # past the bound the memo starts again: it never holds more than bound + one page
    monkeypatch.setattr(store_module, "_EVENT_TIMES", 4)
    assert [e.at for e in await store.get_events(sid, last=4)] == expect[-4:]
    assert len(memo) == 2
    assert [e.at for e in await store.get_events(sid)] == expect
    assert len(memo) == 6


class _Hooks:
    """Records the observer hooks a store fires."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Any) -> None:
        self.calls.append(("updated", session.id, session.version, session.event_count))

    @sessionstore.hookimpl
    def sessionstore_conflict(
        self, store: Any, session_id: str, expected: int, actual: int
    ) -> None:
        self.calls.append(("conflict", session_id, expected, actual))


@pytest.mark.asyncio
async def test_the_one_event_append_fires_the_hooks_of_every_outcome(open_pg: OpenPg) -> None:
    """``EventLog.append_one`` (one unkeyed event from a copy) fires ``updated`` with the
    session it returns, from the copy and after ``events_op`` answered a stale copy,
    and ``conflict`` with the stored version on a mismatch, as the general path does;
    a session this store holds no copy of takes the general path, which fires the same."""
    store = await open_pg()
    other = await open_pg()
    s = await store.create_session(id="hooked")
    hooks = _Hooks()
    pm = sessionstore.plugin_manager()
    pm.register(hooks)
    try:
        await store.append_events(s.id, [{"type": "t"}])  # from the copy
        await other.append_events(s.id, [{"type": "o"}])  # no copy in `other`
        await store.append_events(s.id, [{"type": "t"}])  # a stale copy: events_op
        with pytest.raises(SessionConflictError):
            await store.append_events(s.id, [{"type": "t"}], expected_version=2)
    finally:
        pm.unregister(hooks)
    assert [c for c in hooks.calls if c[1] == s.id] == [
        ("updated", s.id, 2, 1),
        ("updated", s.id, 3, 2),
        ("updated", s.id, 4, 3),
        ("conflict", s.id, 2, 4),
    ]
