"""Composite indexes of the Redis driver (``lua/ixadd.lua``): one sorted set per field value
and sort key, kept by every write, back-filled in stores written before them, and read
by the planner (``lua/walk.lua``) so that a listing walks only the page."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Any

import pytest
from sessionstore_redis import RedisStore
from sessionstore_redis._scripts import COMPOSE

from sessionstore import (
    ManualClock,
    QueryOptions,
    SessionFilter,
    Status,
)
from tests.redis.servers import RedisCluster

pytestmark = pytest.mark.asyncio

_FAMILIES = ("pc", "pu", "sc", "su", "tc", "tu", "qc", "qu")
_FAMILY_KEYS = frozenset(f"{family}:" for family in _FAMILIES)


@pytest.fixture(params=["single", "cluster", "cluster-layout3"])
def url(request: pytest.FixtureRequest) -> str:
    """A single server, a Cluster (a new namespace: key layout 4) and a Cluster namespace
    of key layout 3 (its sessions in their own slots, its index updated by the queue)."""
    if request.param == "single":
        return str(request.getfixturevalue("redis_url"))
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url + ("?key_layout=3" if request.param == "cluster-layout3" else "")


async def _records(store: RedisStore) -> dict[int, dict[str, list[str]]]:
    """Every shard's index records, split (``lua/index.lua``)."""
    await store._here_index().flush()  # Cluster: the queued index updates first
    out = {}
    for shard in range(store._keys.shards):
        raw = await store.client.hgetall(store._keys.index(shard) + "r")
        out[shard] = {k.decode(): v.decode().split("\0") for k, v in raw.items()}
    return out


async def _composites(store: RedisStore) -> dict[str, dict[str, int]]:
    """Every composite sorted set of the namespace: key -> {id: score}. One SCAN of the
    namespace's index keys (the shared test Cluster holds many other tests' keys: a scan
    per shard and family took minutes there)."""
    await store._here_index().flush()
    prefixes = {store._keys.index(shard) for shard in range(store._keys.shards)}
    found: dict[str, dict[str, int]] = {}
    pattern = (store._keys.prefix + "{~*}:*").replace("{", "\\{").replace("}", "\\}")
    async for key in store.client.scan_iter(match=pattern, count=1000):
        name = key.decode()
        ix = next((p for p in prefixes if name.startswith(p)), None)
        if ix is None or name[len(ix) : len(ix) + 3] not in _FAMILY_KEYS:
            continue
        pairs = await store.client.zrange(name, 0, -1, withscores=True)
        if pairs:
            found[name] = {m.decode(): int(s) for m, s in pairs}
    return found


def _expected(
    store: RedisStore, records: dict[int, dict[str, list[str]]], families: set[str]
) -> dict[str, Any]:
    """The composites of ``families`` the index records call for."""
    want: dict[str, dict[str, int]] = {}

    def put(family: str, value: str, sid: str, score: str) -> None:
        if family in families:
            want.setdefault(f"{ix}{family}:{value}", {})[sid] = int(score)

    for shard, recs in records.items():
        ix = store._keys.index(shard)
        for sid, r in recs.items():
            ca, ua, st, pid = r[1], r[2], r[4], r[5]
            put("sc", st, sid, ca)
            put("su", st, sid, ua)
            if pid:
                put("pc", pid, sid, ca)
                put("pu", pid, sid, ua)
                put("qc", f"{st}:{pid}", sid, ca)
                put("qu", f"{st}:{pid}", sid, ua)
            for tag in r[8:]:
                put("tc", tag, sid, ca)
                put("tu", tag, sid, ua)
    return want


async def _check(store: RedisStore, families: set[str]) -> None:
    records = await _records(store)
    live = {r.session.id async for r in store.scan(include_expired=True)}
    assert {sid for recs in records.values() for sid in recs} == live
    assert await _composites(store) == _expected(store, records, families)
    for shard in range(store._keys.shards):
        ix = store._keys.index(shard)
        for mark in ("cf", "cd"):
            value = (await store.client.get(ix + mark) or b",").decode()
            assert set(value.strip(",").split(",")) - {""} == families, (shard, mark)


async def _workload(store: RedisStore, clock: ManualClock, rnd: random.Random) -> list[str]:
    ids = []
    for i in range(40):
        s = await store.create_session(
            processor_id=rnd.choice(["a", "b", None]),
            status=rnd.choice(list(Status)),
            tags=rnd.sample(["x", "y", "z"], rnd.randint(0, 2)),
            ttl=timedelta(seconds=rnd.randint(1, 30)) if i % 4 == 0 else None,
        )
        ids.append(s.id)
        clock.advance(timedelta(milliseconds=rnd.randint(1, 50)))
    for step in range(160):
        sid = rnd.choice(ids)
        clock.advance(timedelta(milliseconds=rnd.randint(1, 300)))
        try:
            kind = step % 6
            if kind == 0:
                await store.update_session(sid, status=rnd.choice(list(Status)))
            elif kind == 1:
                await store.update_session(
                    sid, processor_id=rnd.choice(["a", "b", "c", None]), add_tags={"w"}
                )
            elif kind == 2:
                await store.update_session(
                    sid, tags=rnd.sample(["x", "y", "z", "w"], rnd.randint(0, 3))
                )
            elif kind in (3, 4):
                await store.get_session(sid)  # the client's copy: the append's fast path
                await store.append_events(sid, [{"type": "msg", "data": {"n": step}}])
            elif step % 12 == 5:
                await store.delete_session(sid)
            else:
                await store.touch(sid)
        except Exception as exc:  # an expired or deleted session
            assert type(exc).__name__ in ("SessionNotFoundError",), exc
    return ids


async def test_writes_keep_the_composites(open_redis: Any, url: str) -> None:
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    await _check(store, set())
    await store._queries.compose(_FAMILIES)
    rnd = random.Random(5)
    await _workload(store, clock, rnd)
    await _check(store, set(_FAMILIES))
    clock.advance(timedelta(seconds=40))
    assert await store.cleanup_expired_sessions() > 0
    await _check(store, set(_FAMILIES))
    # restore: put_records over existing sessions and deleted ones
    records = [r async for r in store.scan(include_expired=True)]
    for r in records[:5]:
        await store.delete_session(r.session.id)
    await store.put_records(records, strategy="overwrite")
    await _check(store, set(_FAMILIES))


async def test_writes_keep_only_the_families_in_use(open_redis: Any, url: str) -> None:
    """A family is kept from its first use on: before, writes (and appends) pay nothing
    for it; a listing that can use one makes it complete."""
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    await _workload(store, clock, random.Random(8))
    await _check(store, set())
    await store.list_sessions(
        SessionFilter(processor_id="a"), QueryOptions(sort_by="updated_at", order="desc")
    )
    await _check(store, {"pu"})
    await _workload(store, clock, random.Random(9))
    await _check(store, {"pu"})
    await store.list_sessions(
        SessionFilter(processor_id="a", status="active", tags_all={"x"}),
        QueryOptions(sort_by="created_at"),
    )
    await _check(store, {"pu", "pc", "sc", "qc", "tc"})


async def test_a_store_written_before_composites_is_back_filled(
    open_redis: Any, url: str, namespace: str
) -> None:
    """A store written before composites existed holds none (as one whose listings never
    used them): the first use back-fills a family in batches, and writes between two
    batches keep the sessions they touch."""
    clock = ManualClock()
    # two index shards (Cluster: 16 by default): each holds enough sessions for the steps
    store = await open_redis(url, clock=clock, index_shards=2)
    await _workload(store, clock, random.Random(11))
    await _check(store, set())
    records = await _records(store)
    shard = max(records, key=lambda k: len(records[k]))
    mine = sorted(records[shard])
    assert len(mine) >= 5
    ix = store._keys.index(shard)
    for family in _FAMILIES:
        after = ""
        for step in range(3):
            res = await store._backend.pipeline(
                [("script", COMPOSE, [ix + "r"], [ix, family, after, 1])]
            )
            assert res[0] == [b"0", mine[step].encode()]
            after = res[0][1].decode()
            # one done, one not yet
            sid = mine[step + (step % 2)]
            clock.advance(timedelta(milliseconds=5))
            try:
                await store.update_session(sid, status="completed", add_tags={"late"})
                await store.get_session(sid)
                await store.append_events(sid, [{"type": "msg"}])
            except Exception as exc:
                assert type(exc).__name__ == "SessionNotFoundError", exc
    # another store completes the back-fill
    again = await open_redis(url, clock=clock, namespace=store.namespace, index_shards=2)
    await again._queries.compose(_FAMILIES)
    await _check(again, set(_FAMILIES))


async def test_rebuild_indexes_restores_the_composites(open_redis: Any, url: str) -> None:
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    await store._queries.compose(_FAMILIES)
    await _workload(store, clock, random.Random(3))
    for key in await _composites(store):  # lost (say, written behind the store's back)
        await store.client.delete(key)
    await store.rebuild_indexes()
    await store._queries.compose(_FAMILIES)
    await _check(store, set(_FAMILIES))


_FILTERS = [
    SessionFilter(processor_id="a"),
    SessionFilter(status=Status.ACTIVE),
    SessionFilter(tags_all={"x"}),
    SessionFilter(tags_any={"y"}),
    SessionFilter(processor_id="b", status=Status.ACTIVE),
    SessionFilter(processor_id="a", tags_all={"x", "z"}),
    SessionFilter(processor_id={"a", "b"}, tags_any={"x", "y"}),
    SessionFilter(status={Status.ACTIVE, Status.PAUSED}, tags_all={"z"}),
    SessionFilter(processor_id="a", include_expired=True),
    SessionFilter(tags_all={"x"}, has_events=True),
]


@pytest.mark.parametrize("sort_by", ["updated_at", "created_at", "expires_at", "id"])
async def test_every_plan_gives_the_same_pages_and_cursors(
    open_redis: Any, url: str, sort_by: str
) -> None:
    """The planner's choice and each forced plan return the same pages, cursor after
    cursor, expired sessions excluded (the memory store's pages are the reference)."""
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    rnd = random.Random(sort_by)
    await _workload(store, clock, rnd)
    clock.advance(timedelta(seconds=10))  # some have expired, not swept
    reference = [r async for r in store.scan(include_expired=True)]
    from sessionstore import open_store

    async with open_store("memory://", clock=clock) as memory:
        await memory.put_records(reference)
        for flt in _FILTERS:
            for order in ("asc", "desc"):
                opts = QueryOptions(sort_by=sort_by, order=order, limit=7)  # type: ignore[arg-type]
                want = await _all_pages(memory, flt, opts)
                for plan in ("", "walk", "sort", "comp"):
                    store._queries.force_plan = plan
                    got = await _all_pages(store, flt, opts)
                    assert got == want, (flt, order, plan)
    store._queries.force_plan = ""


async def _all_pages(store: Any, flt: SessionFilter, opts: QueryOptions) -> list[list[str]]:
    pages = []
    cursor = None
    while True:
        page = await store.list_sessions(flt, dataclasses.replace(opts, cursor=cursor))
        pages.append(page.ids)
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def test_a_processor_listing_reads_only_the_page(open_redis: Any, redis_url: str) -> None:
    """The 100 newest of one processor's sessions: the walk reads the processor's composite
    from the top (no candidate set, no order index, no expiry look-ups) and, on a single
    server, the page's documents too: one script call."""
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    for i in range(0, 2_000, 500):
        from sessionstore import CreateOp, NewSession

        await store.commit(
            [CreateOp(NewSession(processor_id=f"p-{j % 4}")) for j in range(i, i + 500)]
        )
        clock.advance(timedelta(seconds=1))
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
    await store.list_sessions(SessionFilter(processor_id="p-1"), opts)  # composes "pu"
    await store.client.execute_command("CONFIG", "RESETSTAT")
    page = await store.list_sessions(SessionFilter(processor_id="p-1"), opts)
    assert len(page) == 100
    stats = await store.client.info("commandstats")
    for command in ("smembers", "zmscore", "sismember", "hget"):
        assert f"cmdstat_{command}" not in stats, command
    # no look-up per entry: one ZSCORE, the partial answer's last position (the composite
    # is read without scores: the rows take theirs from their records)
    assert stats["cmdstat_zscore"]["calls"] == 1
    assert stats["cmdstat_evalsha"]["calls"] == 1  # the walk, documents included


@pytest.mark.parametrize("budget", [20_000, 7])
async def test_counts_agree_with_the_memory_store(
    open_redis: Any, url: str, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``count_sessions``: the unfiltered count from index sizes (``ZCARD`` - ``ZCOUNT``
    of the expired), and a filtered count walked in budgeted steps (budget 7: a candidate
    set larger than the budget is walked and resumed, never enumerated in one script),
    equal the memory store's on the same records, expired sessions at a millisecond's
    edge included."""
    from sessionstore_redis import _query

    monkeypatch.setattr(_query, "_COUNT_BUDGET", budget)
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    await _workload(store, clock, random.Random(budget))
    reference = [r async for r in store.scan(include_expired=True)]
    from sessionstore import open_store

    async with open_store("memory://", clock=clock) as memory:
        await memory.put_records(reference)
        start = clock.now()
        expiries = sorted(e for r in reference if (e := r.session.expires_at) and e > start)
        assert expiries
        for at in [start, expiries[0], expiries[len(expiries) // 2], expiries[-1]]:
            clock.set(at)  # the instant an expiry falls due (later ones still live)
            for flt in [SessionFilter(), SessionFilter(include_expired=True), *_FILTERS]:
                assert await store.count_sessions(flt) == await memory.count_sessions(flt), (
                    flt,
                    at,
                )


async def test_a_page_past_8_kb_comes_in_pieces(open_redis: Any, url: str) -> None:
    """A page's rows and documents longer than Lua's 8 KB buffer come as a list of pieces
    of at most 8,000 bytes (a document longer than that as a piece of its own), shorter
    ones as one string (``lua/pieces.lua``); the pages equal ``get_session``'s sessions
    either way, on a single server (the walk reads the documents) and on Cluster (each
    node's ``walkn.lua`` with key layout 4, each node's ``read.lua`` with layout 3)."""
    from sessionstore_redis import _encoding, _query, _store

    from sessionstore import CreateOp, NewSession

    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    # ~1 KB a session, one of ~20 KB: 60 sessions make ~80 KB of documents
    ops = [
        CreateOp(NewSession(processor_id="p", data={"n": i, "text": "é" * (500 if i else 10_000)}))
        for i in range(60)
    ]
    for op in ops:
        await store.commit([op])
        clock.advance(timedelta(milliseconds=1))
    frames: list[Any] = []
    pipeline = _query.Queries._pipeline

    async def spy(self: Any, calls: list[Any]) -> list[Any]:
        out = await pipeline(self, calls)
        frames.extend(res[5] for res in out if isinstance(res, list) and len(res) > 5)
        return out

    documents = _encoding.documents
    read_frames: list[Any] = []

    def spy_documents(reply: Any, count: int) -> list[bytes] | None:
        if isinstance(reply, list) and len(reply) == 2:
            read_frames.append(reply[1])
        return documents(reply, count)

    node_reply = _query._node_reply

    def spy_nodes(reply: list[Any]) -> list[list[bytes]]:
        frames.append(reply[2])
        return node_reply(reply)

    opts = QueryOptions(sort_by="created_at", limit=100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_query.Queries, "_pipeline", spy)
        patch.setattr(_query, "_node_reply", spy_nodes)  # Cluster, key layout 4
        patch.setattr(_store, "documents", spy_documents)  # the Cluster page's read
        patch.setattr(_encoding, "documents", spy_documents)  # get_session's read
        for flt in (SessionFilter(processor_id="p"), SessionFilter()):
            page = await store.list_sessions(flt, opts)
            assert len(page) == 60
            for s in page:
                assert s == await store.get_session(s.id)
            small = await store.list_sessions(flt, QueryOptions(sort_by="created_at", limit=1))
            assert small.ids == page.ids[:1]
    lists = [f for f in frames + read_frames if isinstance(f, list)]
    assert all(isinstance(f, bytes) for f in frames + read_frames if not isinstance(f, list))
    assert lists  # single server: the walk's frame; Cluster: the nodes' walkn / read.lua's
    for pieces in lists:
        assert len(pieces) >= 2
        assert all(len(p) <= 8_000 or b'"text"' in p for p in pieces)
    assert sum(len(p) > 8_000 for pieces in lists for p in pieces) >= 1  # the ~20 KB one


async def test_listings_over_several_index_shards(open_redis: Any, url: str) -> None:
    """``index_shards`` > 1 on a single server (Cluster's default is 16): the shards' walks
    go out as one pipeline (there is no node map to group them by) and their rows merge
    into the memory store's pages; on Cluster, 3 shards over the nodes."""
    clock = ManualClock()
    store = await open_redis(url, clock=clock, index_shards=3)
    await _workload(store, clock, random.Random(5))
    reference = [r async for r in store.scan(include_expired=True)]
    from sessionstore import open_store

    async with open_store("memory://", clock=clock) as memory:
        await memory.put_records(reference)
        for flt in _FILTERS:
            for sort_by in ("updated_at", "expires_at"):
                opts = QueryOptions(sort_by=sort_by, order="desc", limit=5)
                assert await _all_pages(store, flt, opts) == await _all_pages(memory, flt, opts)
                assert await store.count_sessions(flt) == await memory.count_sessions(flt)


async def test_a_composite_entry_its_record_disagrees_with_is_left_out(
    open_redis: Any, url: str
) -> None:
    """The composite walk reads no scores: a row's comes from its record. An entry placed
    where its record says it is not (written behind the store's back) is left out of the
    page, which stays in order, as it was when the score came from the entry."""
    clock = ManualClock()
    store = await open_redis(url, clock=clock)
    for _ in range(30):
        await store.create_session(processor_id="p")
        clock.advance(timedelta(seconds=1))
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=10)
    flt = SessionFilter(processor_id="p")
    first = (await store.list_sessions(flt, opts)).ids  # composes "pu"
    assert len(first) == 10
    oldest = (await store.list_sessions(flt, dataclasses.replace(opts, order="asc"))).ids[0]
    shard = store._keys.shard(oldest)
    key = store._keys.index(shard) + "pu:p"
    await store.client.zadd(key, {oldest: 4_000_000_000_000})  # newest by its entry
    page = (await store.list_sessions(flt, opts)).ids
    assert oldest not in page
    assert page == first
