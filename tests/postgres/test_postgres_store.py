"""The PostgreSQL driver beyond the conformance suite: URL options, secrets, exact JSON,
round trips, migrations, concurrent writers and the outcome-unknown rules."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import asyncpg
import orjson
import pytest
from sessionstore_postgres import PostgresStore
from sessionstore_postgres._events import EventWindow, page_sql
from sessionstore_postgres._query import bound_after, bound_before, build_where, expiry_parts
from sessionstore_postgres._schema import LATEST

from sessionstore import (
    AppendOp,
    ConfigurationError,
    OutcomeUnknownError,
    QueryOptions,
    SessionConflictError,
    SessionFilter,
    SessionUpdate,
    StoreUnavailableError,
    UnsupportedFormatError,
    UpdateOp,
    open_store,
)
from sessionstore.clock import to_ms

OpenPg = Callable[..., Awaitable[PostgresStore]]
PASSWORD = "pg-s3cret-Pw"


# ------------------------------------------------------------------ URL and options


def test_url_sets_connection_and_pool_options() -> None:
    store = open_store(
        f"postgresql://app:{PASSWORD}@db.internal:6543/sessions?min_size=2&max_size=7"
        "&connect_timeout=1.5&command_timeout=9&sslmode=require&application_name=worker"
    )
    assert isinstance(store, PostgresStore)
    o = store.options
    assert (o.user, o.password, o.host, o.port, o.database) == (
        "app",
        PASSWORD,
        "db.internal",
        6543,
        "sessions",
    )
    assert (o.min_size, o.max_size, o.connect_timeout, o.command_timeout) == (2, 7, 1.5, 9.0)
    assert (o.sslmode, o.application_name) == ("require", "worker")
    assert isinstance(open_store("postgres://localhost/x"), PostgresStore)


def test_time_bounds_are_instants_in_any_zone() -> None:
    """A bound with another UTC offset is the same instant in epoch milliseconds (the
    epoch was once taken in the bound's own zone: a +05:00 bound read 5 h late)."""
    utc = datetime(2030, 1, 1, 12, 0, 0, 500, tzinfo=UTC)
    ms = to_ms(utc)
    for zone in (UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=8, minutes=30))):
        local = utc.astimezone(zone)
        assert (bound_after(local), bound_before(local)) == (ms, ms + 1), zone


@pytest.mark.parametrize(
    "query",
    [
        "pool_size=3",  # unknown
        "max_size=0",
        "min_size=5&max_size=2",
        "sslmode=sometimes",
        "connect_timeout=-1",
        "table_prefix=Bad-Prefix",
        "max_size=lots",
    ],
)
def test_bad_options_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store(f"postgresql://app:{PASSWORD}@localhost/db?{query}")
    assert PASSWORD not in str(info.value)


@pytest.mark.asyncio
async def test_password_never_in_repr_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Nothing listens on port 1: the store retries until the deadline, then gives up.
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:1/db?retry_deadline=0.3&connect_timeout=0.2"
    store = open_store(url)
    assert PASSWORD not in repr(store)
    assert PASSWORD not in repr(store.options)
    assert PASSWORD not in str(store.url)
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    text = f"{info.value!s} {info.value!r} {info.value.__cause__!r} {info.value.__context__!r}"
    assert PASSWORD not in text
    assert "127.0.0.1:1" in str(info.value)
    assert PASSWORD not in caplog.text


@pytest.mark.asyncio
async def test_unknown_role_is_a_configuration_error_without_password(
    postgres_url: str,
) -> None:
    base = postgres_url.split("@", 1)[1]
    store = open_store(f"postgresql://nobody_here:{PASSWORD}@{base}")
    with pytest.raises(ConfigurationError) as info:
        await store.initialize()
    assert PASSWORD not in f"{info.value} {info.value!r}"


# ------------------------------------------------------------------ exact JSON


@pytest.mark.asyncio
async def test_data_and_metadata_come_back_byte_identical(open_pg: OpenPg) -> None:
    store = await open_pg()
    data = {
        "z": 1, "a": 1.0, "m": 0.1, "big": 2**63 - 1, "neg": -(2**63), "tiny": 1e-300,
        "nested": {"b": [3, 2, 1], "a": {"y": None, "x": True}}, "text": "é\u0000\n\"",
    }  # fmt: skip
    metadata = {"k2": 10, "k1": [1.5, "x"], "n": 1.0}
    s = await store.create_session(data=data, metadata=metadata)
    got = await store.get_session(s.id)
    assert got is not None
    assert orjson.dumps(got.data) == orjson.dumps(data)
    assert orjson.dumps(got.metadata) == orjson.dumps(metadata)
    assert type(got.data["a"]) is float and type(got.data["z"]) is int
    pool = await asyncpg.connect(**_connect_args(store))
    try:
        row = await pool.fetchrow(
            "SELECT data, metadata FROM sessionstore_sessions WHERE ns = $1 AND id = $2",
            store.namespace,
            s.id,
        )
    finally:
        await pool.close()
    assert row["data"].encode() == orjson.dumps(data)
    assert row["metadata"].encode() == orjson.dumps(metadata)


@pytest.mark.asyncio
async def test_metadata_filter_is_exact_where_jsonb_is_not(open_pg: OpenPg) -> None:
    store = await open_pg()
    one = await store.create_session(metadata={"n": 1, "t": "a\u0000b"})
    await store.create_session(metadata={"n": 1.0, "t": "a\ufffdb"})
    await store.create_session(metadata={"n": [1, 2]})
    await store.create_session(metadata={"n": True})
    for flt, expected in (
        ({"n": 1}, [one.id]),
        ({"t": "a\u0000b"}, [one.id]),
        ({"n": [1]}, []),
    ):
        page = await store.list_sessions(SessionFilter(metadata=flt))
        assert page.ids == expected, flt
        assert await store.count_sessions(SessionFilter(metadata=flt)) == len(expected)


# ------------------------------------------------------------------ round trips


@pytest.mark.asyncio
async def test_one_round_trip_per_single_session_operation(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_pg()
    calls: list[int] = []
    real_run = store._pools.get().run

    async def counting(call: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real_run(call, **kwargs)

    monkeypatch.setattr(store._pools.get(), "run", counting)

    async def trips(op: Awaitable[Any]) -> int:
        calls.clear()
        await op
        return len(calls)

    assert await trips(store.create_session(processor_id="p", data={"x": 1})) == 1
    s = (await store.list_sessions()).items[0]
    assert await trips(store.get_session(s.id)) == 1
    assert await trips(store.update_session(s.id, merge_data={"y": 2})) == 1
    assert await trips(store.append_events(s.id, [{"type": "t", "data": {"i": 1}}])) == 1
    assert await trips(store.get_events(s.id, last=1)) == 1
    assert await trips(store.touch(s.id, ttl=60)) == 1
    assert await trips(store.trim_events(s.id, keep_last=0)) == 1
    assert await trips(store.list_sessions(SessionFilter(processor_id="p"))) == 1
    assert await trips(store.count_sessions(SessionFilter(processor_id="p"))) == 1
    assert await trips(store.delete_session(s.id)) == 1
    # a given id is assumed free (the write checks it); a batch is one atomic executemany
    assert await trips(store.create_session(id="given-1")) == 1
    assert await trips(store.create_session(id="given-2")) == 1
    batch = store.commit(
        [
            UpdateOp("given-1", SessionUpdate(merge_data={"a": 1})),
            AppendOp("given-2", [{"type": "t"}]),
        ]
    )
    assert await trips(batch) == 1


@pytest.mark.asyncio
async def test_a_stale_copy_is_never_used(open_pg: OpenPg) -> None:
    """Another store deletes and re-creates the session with the same version: this
    store's cached copy has the right version but the wrong token, and must not be used."""
    a = await open_pg()
    b = await open_pg()
    s = await a.create_session(id="same", data={"who": "a", "keep": 1})
    assert await b.delete_session(s.id)
    await b.create_session(id="same", data={"who": "b"})
    updated = await a.update_session("same", merge_data={"n": 1})
    assert updated.data == {"who": "b", "n": 1}
    assert updated.version == 2


@pytest.mark.asyncio
async def test_get_events_last_reads_only_the_page(open_pg: OpenPg) -> None:
    """Tables of its own: the plan follows the table's statistics, and the events table
    the other tests share holds thousands of tiny sessions (then PostgreSQL expects a few
    events per session, and a bitmap scan of them all plus a sort looks as cheap as the
    backwards index scan; it failed so when run after tests/postgres/test_postgres_eventlog.py)."""
    store = await open_pg(table_prefix=f"last{uuid.uuid4().hex[:8]}_")
    s = await store.create_session()
    for chunk in range(5):
        await store.append_events(
            s.id, [{"type": "t", "data": {"i": chunk * 40 + i}} for i in range(40)]
        )
    events = await store.get_events(s.id, last=7)
    assert [e.seq for e in events] == list(range(194, 201))
    conn = await asyncpg.connect(**_connect_args(store))
    try:
        # statistics as autovacuum would have them: the plan then depends on this data,
        # not on what earlier tests of the run left in the table's statistics
        await conn.execute(f"ANALYZE {store._t_events}")
        sql, args = page_sql(store._t_sessions, store._t_events, EventWindow(last=7))
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, store.namespace, s.id, *args
        )
    finally:
        await conn.close()
    scans = [n for n in _plan_nodes(orjson.loads(plan)[0]["Plan"])
             if n.get("Relation Name") == store._t_events]  # fmt: skip
    assert scans and all(n["Actual Rows"] == 7 for n in scans)


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("Plans", []):
        out.extend(_plan_nodes(child))
    return out


def _connect_args(store: PostgresStore) -> dict[str, Any]:
    o = store.options
    return {"host": o.host, "port": o.port, "user": o.user, "database": o.database}


# ------------------------------------------------------------------ migrations


@pytest.mark.asyncio
async def test_migrations_from_the_first_version(open_pg: OpenPg) -> None:
    prefix = f"mig{uuid.uuid4().hex[:8]}_"
    old = open_store(_url(open_pg), table_prefix=prefix, namespace="m")
    assert isinstance(old, PostgresStore)
    old._target_schema = 1
    await old.initialize()
    s = await old.create_session(processor_id="p", data={"v": 1}, tags=["x"])
    await old.append_events(s.id, [{"type": "t"}])
    await old.shutdown()
    conn = await asyncpg.connect(**_connect_args(old))
    try:
        assert await conn.fetchval(f"SELECT version FROM {prefix}schema") == 1
        assert not await _indexes(conn, prefix)
        stores = [open_store(_url(open_pg), table_prefix=prefix, namespace="m") for _ in range(4)]
        await asyncio.gather(*(st.initialize() for st in stores))  # concurrent upgrades
        assert await conn.fetchval(f"SELECT version FROM {prefix}schema") == LATEST
        assert f"{prefix}sessions_proc_updated" in await _indexes(conn, prefix)
        assert {f"{prefix}events_key", f"{prefix}events_type", f"{prefix}events_at"} <= (
            await _indexes(conn, prefix, "events")
        )
        assert await conn.fetch(f"SELECT seq, key FROM {prefix}events") == [(1, None)]
        got = await stores[0].get_session(s.id)
        assert got is not None and got.data == {"v": 1} and got.event_count == 1
        assert (await stores[1].list_sessions(SessionFilter(tags_all=["x"]))).ids == [s.id]
        for st in stores:
            await st.shutdown()
        await conn.execute(f"UPDATE {prefix}schema SET version = {LATEST + 1}")
        newer = open_store(_url(open_pg), table_prefix=prefix, namespace="m")
        with pytest.raises(UnsupportedFormatError, match="newer"):
            await newer.initialize()
        assert await conn.fetchval(f"SELECT version FROM {prefix}schema") == LATEST + 1
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_schema_5_keeps_sessions_without_tags_or_metadata_out_of_the_gin_indexes(
    open_pg: OpenPg,
) -> None:
    prefix = f"gin{uuid.uuid4().hex[:8]}_"
    old = await _initialized(open_pg, prefix, "g", 4)
    both = await old.create_session(tags=["x"], metadata={"k": 1, "deep": {"a": [1]}})
    bare = await old.create_session()
    tagged = await old.create_session(tags=["y"])
    await old.append_events(bare.id, [{"type": "t"}])
    await old.shutdown()
    store = await _initialized(open_pg, prefix, "g")
    conn = await asyncpg.connect(**_connect_args(store))
    try:
        assert await conn.fetchval(f"SELECT version FROM {prefix}schema") == LATEST >= 5
        defs = dict(await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1",
            f"{prefix}sessions",
        ))  # fmt: skip
        assert "WHERE (tags <> '{}'" in defs[f"{prefix}sessions_tags"]
        assert "WHERE (metadata_jsonb <> '{}'" in defs[f"{prefix}sessions_metadata"]
        # the filters' SQL implies the predicates: the planner uses the partial index
        # (2,000 more sessions without tags or metadata make it the cheapest plan)
        await conn.execute(
            f"INSERT INTO {prefix}sessions SELECT ns, id || '-' || g, processor_id, status, "
            "grp, tags, created_at, updated_at, expires_at, version, event_count, last_seq, "
            f"data, metadata, metadata_jsonb, wt FROM {prefix}sessions, "
            "generate_series(1, 2000) AS g WHERE id = $1",
            bare.id,
        )
        await conn.execute(f"ANALYZE {prefix}sessions")
        now = store.clock.now()
        for flt, index in (
            (SessionFilter(tags_all=["x"]), "sessions_tags"),
            (SessionFilter(tags_any=["x", "y"]), "sessions_tags"),
            (SessionFilter(metadata={"k": 1}), "sessions_metadata"),
            (SessionFilter(metadata={"deep.a": [1]}), "sessions_metadata"),
        ):
            w = build_where("g", flt, now)
            sql = f"SELECT id FROM {prefix}sessions WHERE {w.sql()}"
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *w.params)
            used = {n.get("Index Name") for n in _plan_nodes(orjson.loads(plan)[0]["Plan"])}
            assert f"{prefix}{index}" in used, (flt, used)
    finally:
        await conn.close()
    try:
        listed = {
            "all x": (await store.list_sessions(SessionFilter(tags_all=["x"]))).ids,
            "any": sorted((await store.list_sessions(SessionFilter(tags_any=["x", "y"]))).ids),
            "any of none": (await store.list_sessions(SessionFilter(tags_any=[]))).ids,
            "all of none": await store.count_sessions(SessionFilter(tags_all=[])),
            "metadata": (await store.list_sessions(SessionFilter(metadata={"k": 1}))).ids,
        }
        assert listed == {
            "all x": [both.id],
            "any": sorted([both.id, tagged.id]),
            "any of none": [],
            "all of none": 2_003,
            "metadata": [both.id],
        }
        assert await store.count_sessions(SessionFilter(tags_any=["y"])) == 1
        after = await store.append_events(bare.id, [{"type": "t"}])
        assert after.event_count == 2 and after.version == 3
    finally:
        await store.shutdown()


@pytest.mark.asyncio
async def test_schema_6_keeps_sessions_without_expiry_or_processor_out_of_their_indexes(
    open_pg: OpenPg,
) -> None:
    """A v5 store upgraded: the three partial indexes, the queries that must use them
    (sweep, ``expires_before``, processor listings, the expiry listing's two parts) and
    the expiry listing's order across its parts by cursor and by offset."""
    prefix = f"exp{uuid.uuid4().hex[:8]}_"
    old = await _initialized(open_pg, prefix, "x", 5)
    now = old.clock.now()
    soon = [await old.create_session(processor_id="p", expires_at=now + timedelta(hours=h))
            for h in (3, 1, 2)]  # fmt: skip
    bare = [await old.create_session() for _ in range(3)]
    await old.append_events(bare[0].id, [{"type": "t"}])
    await old.shutdown()
    store = await _initialized(open_pg, prefix, "x")
    t = f"{prefix}sessions"
    conn = await asyncpg.connect(**_connect_args(store))
    try:
        assert await conn.fetchval(f"SELECT version FROM {prefix}schema") == LATEST >= 6
        defs = dict(await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", t
        ))  # fmt: skip
        assert "WHERE (expires_at IS NOT NULL)" in defs[f"{prefix}sessions_expires"]
        for name in ("proc_created", "proc_updated"):
            assert "WHERE (processor_id IS NOT NULL)" in defs[f"{prefix}sessions_{name}"]
        # 4,000 more sessions without expiry or processor, 2,000 with both: the partial
        # indexes are the cheapest plan, and must be usable from the queries' SQL
        await conn.execute(
            f"INSERT INTO {t} SELECT ns, id || '-' || g, processor_id, status, grp, tags, "
            "created_at, updated_at, expires_at, version, event_count, last_seq, data, "
            f"metadata, metadata_jsonb, wt FROM {t}, generate_series(1, 2000) AS g "
            "WHERE id = ANY($1::text[])",
            [soon[0].id, bare[1].id, bare[2].id],
        )
        await conn.execute(f"ANALYZE {t}")
        ms = to_ms(now)
        base = build_where("x", SessionFilter(), now)
        checks: list[tuple[str, list[Any], str]] = [
            (store._sql_expired, ["x", ms + 3_600_000], "sessions_expires"),
        ]
        w = build_where("x", SessionFilter(expires_before=now + timedelta(hours=2)), now)
        checks.append((f"SELECT count(*) FROM {t} WHERE {w.sql()}", w.params, "sessions_expires"))
        for flt, index in ((SessionFilter(processor_id="p"), "sessions_proc_created"),):
            w = build_where("x", flt, now)
            checks.append((f"SELECT id FROM {t} WHERE {w.sql()} ORDER BY created_at DESC, "
                           "id DESC LIMIT 10", w.params, index))  # fmt: skip
        w = build_where("x", SessionFilter(processor_id=["q", "r"]), now)  # = ANY(...)
        checks.append((f"SELECT count(*) FROM {t} WHERE {w.sql()}", w.params, "sessions_proc_"))
        w = build_where("x", SessionFilter(processor_id="p"), now)
        checks.append((f"SELECT id FROM {t} WHERE {w.sql()} ORDER BY updated_at, id LIMIT 10",
                       w.params, "sessions_proc_updated"))  # fmt: skip
        for descending in (False, True):
            first, second = expiry_parts(base, descending, None)
            for (w, order), index in ((first, "sessions_expires"), (second, "sessions_pkey")):
                checks.append((f"SELECT id FROM {t} WHERE {w.sql()} ORDER BY {order} LIMIT 10",
                               w.params, index))  # fmt: skip
            after = (0, ms + 3_600_000, soon[1].id)
            first, _ = expiry_parts(base, descending, after)
            checks.append((f"SELECT id FROM {t} WHERE {first[0].sql()} ORDER BY {first[1]} "
                           "LIMIT 10", first[0].params, "sessions_expires"))  # fmt: skip
        for sql, params, index in checks:
            plan = orjson.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params))
            nodes = _plan_nodes(plan[0]["Plan"])
            used = {n.get("Index Name") for n in nodes}
            assert any(str(u).startswith(f"{prefix}{index}") for u in used), (sql, used)
            assert not any(n["Node Type"] in ("Seq Scan", "Sort") for n in nodes), (sql, nodes)
    finally:
        await conn.close()
    try:
        # the listing by expiry: the sessions with one by time, then the others by id,
        # in both directions, by cursor and by offset across the two parts
        keep = {s.id for s in soon + bare}
        timed = [soon[1].id, soon[2].id, soon[0].id]
        untimed = sorted(s.id for s in bare)
        flt = SessionFilter(ids=keep)
        orders: list[tuple[Literal["asc", "desc"], list[str]]] = [
            ("asc", timed + untimed),
            ("desc", timed[::-1] + untimed[::-1]),
        ]
        for order, expected in orders:
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.list_sessions(flt, QueryOptions(
                    sort_by="expires_at", order=order, limit=2, cursor=cursor))  # fmt: skip
                seen += page.ids
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == expected, order
            for offset in range(7):
                page = await store.list_sessions(flt, QueryOptions(
                    sort_by="expires_at", order=order, limit=2, offset=offset))  # fmt: skip
                assert page.ids == expected[offset : offset + 2], (order, offset)
        assert len(await store._expired_sessions(now + timedelta(hours=2, minutes=1))) == 2
        appended = await store.append_events(bare[0].id, [{"type": "t"}])
        assert appended.event_count == 2
    finally:
        await store.shutdown()


async def _initialized(
    open_pg: OpenPg, prefix: str, namespace: str, schema: int = LATEST
) -> PostgresStore:
    """A store of the fixture's server on tables ``prefix``, initialised (so upgraded) to
    schema version ``schema``."""
    store = open_store(_url(open_pg), table_prefix=prefix, namespace=namespace)
    assert isinstance(store, PostgresStore)
    store._target_schema = schema
    await store.initialize()
    return store


def _url(open_pg: Any) -> str:
    # the fixture's URL (closure cell of the factory): keep tests on the private server
    for cell in open_pg.__closure__ or ():
        if isinstance(cell.cell_contents, str) and cell.cell_contents.startswith("postgres"):
            return cell.cell_contents
    raise AssertionError("no URL")


async def _indexes(conn: asyncpg.Connection, prefix: str, table: str = "sessions") -> set[str]:
    rows = await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexname NOT LIKE '%pkey'",
        f"{prefix}{table}",
    )
    return {r[0] for r in rows}


# ------------------------------------------------------------------ concurrency


@pytest.mark.asyncio
async def test_no_lost_updates_under_concurrent_writers(open_pg: OpenPg) -> None:
    stores = [await open_pg() for _ in range(6)]
    s = await stores[0].create_session(data={"n": 0})

    async def bump(store: PostgresStore, times: int) -> None:
        for _ in range(times):
            while True:
                cur = await store.get_session(s.id)
                assert cur is not None
                try:
                    await store.update_session(
                        s.id, data={"n": cur.data["n"] + 1}, expected_version=cur.version
                    )
                    break
                except SessionConflictError:
                    continue

    async def append(store: PostgresStore, times: int) -> None:
        for i in range(times):
            await store.append_events(s.id, [{"type": "t", "data": {"i": i}}])

    await asyncio.gather(
        *(bump(st, 10) for st in stores[:3]), *(append(st, 10) for st in stores[3:])
    )
    final = await stores[0].get_session(s.id)
    assert final is not None
    assert final.data["n"] == 30
    assert final.event_count == 30 and final.last_seq == 30
    assert final.version == 61
    assert [e.seq for e in await stores[1].get_events(s.id)] == list(range(1, 31))


# ------------------------------------------------------------------ outcome unknown


def _lose_reply(store: PostgresStore, monkeypatch: pytest.MonkeyPatch, *, apply: bool,
                meddle: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
    """The next write's connection is lost: after the statement ran (``apply``) or before."""
    real_run = store._pools.get().run
    armed = [True]

    async def run(call: Any, **kwargs: Any) -> Any:
        if kwargs.get("write") and armed[0]:
            armed[0] = False

            first = [True]

            async def lost(conn: Any) -> Any:
                if not first[0]:  # the write sent again after the check
                    return await call(conn)
                first[0] = False
                if apply:
                    await call(conn)
                if meddle is not None:
                    await meddle()
                raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

            return await real_run(lost, **kwargs)
        return await real_run(call, **kwargs)

    monkeypatch.setattr(store._pools.get(), "run", run)


@pytest.mark.parametrize("apply", [True, False])
@pytest.mark.asyncio
async def test_a_lost_reply_is_resolved_by_the_write_token(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch, apply: bool
) -> None:
    store = await open_pg()
    s = await store.create_session()
    _lose_reply(store, monkeypatch, apply=apply)
    after = await store.append_events(s.id, [{"type": "once"}])
    assert after.event_count == 1
    stored = await store.get_session(s.id)
    assert stored is not None and stored.event_count == 1 and stored.version == 2


@pytest.mark.asyncio
async def test_a_lost_reply_with_a_changed_session_is_outcome_unknown(
    open_pg: OpenPg, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_pg()
    other = await open_pg()
    s = await store.create_session()

    async def meddle() -> None:
        await other.update_session(s.id, merge_data={"other": 1})

    _lose_reply(store, monkeypatch, apply=True, meddle=meddle)
    with pytest.raises(OutcomeUnknownError):
        await store.append_events(s.id, [{"type": "once"}])


@pytest.mark.asyncio
async def test_a_corrupt_row_is_skipped_by_listings_and_reported(open_pg: OpenPg) -> None:
    from sessionstore import IntegrityError

    store = await open_pg()
    ids = [(await store.create_session(processor_id="p")).id for _ in range(5)]
    conn = await asyncpg.connect(**_connect_args(store))
    try:
        await conn.execute(
            "UPDATE sessionstore_sessions SET data = 'not json' WHERE ns = $1 AND id = $2",
            store.namespace,
            ids[1],
        )
    finally:
        await conn.close()
    with pytest.raises(IntegrityError):
        await store.get_session(ids[1])
    expected = [i for i in ids if i != ids[1]]
    page = await store.list_sessions(options=QueryOptions(limit=2))
    assert page.ids == expected[:2] and page.next_cursor is not None
    rest = await store.list_sessions(options=QueryOptions(limit=10, cursor=page.next_cursor))
    assert rest.ids == expected[2:]
    assert (await store.search_sessions("p", QueryOptions(limit=10))).ids == expected
    assert any(ids[1] in key for key in store.corrupt_records)


@pytest.mark.asyncio
async def test_a_raw_read_hands_over_the_rows_json(open_pg: OpenPg) -> None:
    """``get_raw_events`` returns each row's JSON text as bytes, unparsed: a row that is
    no object's JSON is refused by the read, one with an object's brackets is left to the
    caller's parse (``get_events`` refuses both)."""
    from sessionstore import IntegrityError

    store = await open_pg()
    s = await store.create_session()
    await store.append_events(s.id, [{"type": "a", "data": {"k": "ü"}}, {"type": "b"}])
    assert [e.data_json for e in await store.get_raw_events(s.id)] == [
        '{"k":"ü"}'.encode(),
        b"{}",
    ]

    async def set_data(text: str) -> None:
        conn = await asyncpg.connect(**_connect_args(store))
        try:
            await conn.execute(
                "UPDATE sessionstore_events SET data = $3"
                " WHERE ns = $1 AND session_id = $2 AND seq = 2",
                store.namespace,
                s.id,
                text,
            )
        finally:
            await conn.close()

    await set_data("{x}")
    assert [e.data_json for e in await store.get_raw_events(s.id)][1] == b"{x}"
    with pytest.raises(IntegrityError):
        await store.get_events(s.id)
    await set_data("[]")
    with pytest.raises(IntegrityError, match="corrupt event row"):
        await store.get_raw_events(s.id)
    assert [e.seq for e in await store.get_raw_events(s.id, last=1, types=["a"])] == [1]


@pytest.mark.asyncio
async def test_a_server_older_than_the_minimum_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessionstore_postgres._store as store_module

    monkeypatch.setattr(store_module, "MIN_SERVER_VERSION", 1000)
    store = open_store(postgres_url, namespace="too-old")
    with pytest.raises(ConfigurationError, match="too old"):
        await store.initialize()
    await store.shutdown()


@pytest.mark.asyncio
async def test_pool_options_reach_the_connections(open_pg: OpenPg) -> None:
    store = await open_pg(application_name="ss-test-app", sslmode="disable", min_size=2, max_size=3)
    assert store._pools.get()._size == 2  # min_size connections opened by initialize()
    name = await store._pools.get().run(
        lambda c: c.fetchval(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
    )
    assert name == "ss-test-app"

    async def hold(seconds: float) -> Any:
        return await store._pools.get().run(lambda c: c.fetchval("SELECT pg_sleep($1)", seconds))

    await asyncio.gather(*(hold(0.2) for _ in range(6)))  # 6 callers share 3 connections
    assert store._pools.get()._size == 3


def test_write_tokens_are_distinct_and_a_forked_child_draws_its_own_prefix() -> None:
    """Write tokens are a random prefix per process and a counter: distinct within the
    process, 24 hex digits, and a forked child (which inherits the counter) starts from
    a prefix of its own, so parent and child never store the same token."""
    import os

    from sessionstore_postgres._cache import new_token

    tokens = [new_token() for _ in range(1000)]
    assert len(set(tokens)) == 1000
    assert all(len(t) == 24 and int(t, 16) >= 0 for t in tokens)
    assert len({t[:16] for t in tokens}) == 1  # one prefix, the counter moves
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next token, then leave without pytest's teardown
        try:
            os.write(write, new_token().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = new_token()
    assert len(child) == 24 and child != mine
    assert child[:16] != mine[:16]
