"""The Redis event log (issue #17): layout 2 (a sorted set by seq with type and key
indexes, ``lua/evlog.lua``), the conversion of layout-1 logs, one round trip per
operation, the session's keys in one slot, and the indexed reads checked against a
filter over the whole log."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import orjson
import pytest
from redis.crc import key_slot
from sessionstore_redis import RedisStore

from sessionstore import (
    UNSET,
    AppendOp,
    EventInput,
    IntegrityError,
    ManualClock,
    NewSession,
    PopOp,
    Session,
    SessionFilter,
    SessionNotFoundError,
    TruncateOp,
    UnsupportedFormatError,
)
from sessionstore.clock import to_ms
from tests.redis.calls import command_calls
from tests.redis.servers import RedisCluster

from .docs import as_layout_2, pexpiretime, read_fields

pytestmark = pytest.mark.asyncio


async def _script_calls(store: RedisStore) -> int:
    return await command_calls(store, "evalsha", "eval")


async def _round_trips(store: RedisStore) -> int:
    """Script calls and transactions (a plain window is read by ``MULTI``/``EXEC``)."""
    return await command_calls(store, "evalsha", "eval", "exec")


async def _layout_1(store: RedisStore, sid: str, types: list[str], first_seq: int) -> None:
    """Rewrite session ``sid`` as a sessionstore before issue #17 left it: document
    format 1, the events a list whose positions are the seqs (``first_seq`` the first)."""
    keys = store.key_names(sid)
    client = store.client
    await client.delete(keys["events"], keys["etypes"], keys["ekeys"])
    last = first_seq + len(types) - 1
    await as_layout_2(client, keys["doc"])  # layout 1 was a hash too
    await client.hset(keys["doc"], mapping={"v": "1", "ec": len(types), "ls": last})
    await client.hdel(keys["doc"], "am", "tu")
    for i, etype in enumerate(types):
        at = 1_700_000_000_000 + i
        record = {"v": 1, "type": etype, "at": at, "data": {"i": first_seq + i}}
        await client.rpush(keys["events"], orjson.dumps(record))
    if await client.pttl(keys["doc"]) > 0:
        await client.pexpire(keys["events"], await client.pttl(keys["doc"]))


@pytest.mark.parametrize(
    "first", ["get_events", "get_event", "append", "append_keyed", "pop", "commit", "trim"]
)
async def test_a_layout_1_log_is_read_and_converted(
    open_redis: Any, redis_url: str, first: str
) -> None:
    """Existing data: the first script that touches a format-1 log converts it in place
    (same seqs, types, times, data, expiry); event.lua reads it without converting."""
    writer: RedisStore = await open_redis(redis_url)
    await writer.create_session(id="old", ttl=3600)
    await _layout_1(writer, "old", ["a", "b", "a", "c"], first_seq=5)  # 1-4 were trimmed
    store: RedisStore = await open_redis(redis_url)  # no copy of the document
    keys = store.key_names("old")
    expected = [(5, "a"), (6, "b"), (7, "a"), (8, "c")]
    if first == "get_events":
        got = await store.get_events("old")
        assert [(e.seq, e.type) for e in got] == expected
        assert [e.data for e in got] == [{"i": 5}, {"i": 6}, {"i": 7}, {"i": 8}]
    elif first == "get_event":  # a read by seq of the generic path: no conversion
        assert [e.seq for e in await store._find_events("old", seqs=[6, 8, 9])] == [6, 8]
        assert await store.client.type(keys["events"]) == b"list"
        assert await store.get_event("old", key="nope") is None
        await store.get_events("old", last=1)
    elif first == "append":
        s = await store.append_events("old", [{"type": "d"}])
        assert (s.event_count, s.last_seq) == (5, 9)
        expected.append((9, "d"))
    elif first == "append_keyed":
        r = await store.append_events_detailed("old", [EventInput("d", key="k")])
        assert [e.seq for e in r.events] == [9] and r.new == [True]
        expected.append((9, "d"))
    elif first == "pop":
        popped = await store.pop_events("old", 2)
        assert [(e.seq, e.type) for e in popped.events] == expected[2:]
        assert (popped.session.event_count, popped.session.last_seq) == (2, 8)
        expected = expected[:2]
    elif first == "commit":
        await store.commit([TruncateOp("old", 6), AppendOp("old", [{"type": "z"}])])
        expected = [*expected[:2], (9, "z")]
    else:
        s = await store.trim_events("old", keep_last=3)
        assert s.event_count == 3
        expected = expected[1:]
    assert await store.client.type(keys["events"]) == b"zset"
    assert (await read_fields(store.client, keys["doc"]))[b"v"] == b"2"  # a string now
    assert await store.client.pttl(keys["events"]) > 0
    assert [(e.seq, e.type) for e in await store.get_events("old")] == expected
    want_a = [seq for seq, t in expected if t == "a"]
    assert [e.seq for e in await store.get_events("old", types=["a"])] == want_a
    assert await store.client.pttl(keys["etypes"]) > 0  # built by the read, expiring alike
    session = await store.get_session("old")
    assert session is not None and session.event_count == len(expected)


async def test_a_newer_layout_is_refused(open_redis: Any, redis_url: str) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="new")
    await store.append_events("new", [{"type": "a"}])
    await store.client.setrange(store.key_names("new")["doc"], 0, b"\x04")  # layout 4
    other: RedisStore = await open_redis(redis_url)
    for call in (
        lambda: other.get_events("new"),
        lambda: other.get_event("new", key="k"),
        lambda: other.append_events("new", [{"type": "b"}]),
        lambda: other.pop_events("new"),
        lambda: other.get_session("new"),
    ):
        with pytest.raises(UnsupportedFormatError):
            await call()


async def test_every_event_operation_is_one_round_trip(open_redis: Any, redis_url: str) -> None:
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_url, clock=clock)
    s = await store.create_session(id="rt")
    for i in range(30):
        clock.advance(1)
        await store.append_events("rt", [EventInput("ab"[i % 2], {"i": i}, key=f"k{i}")])
    # every script loaded (the server is shared: run alone, this test finds none loaded)
    await store.get_events("rt", last=1)
    await store.get_events("rt", types=["a"], last=1)
    await store.get_event("rt", key="k1")
    await store.pop_events("rt")
    await store.truncate_events("rt", 100)
    await store.delete_events("rt", seqs=[100])
    since = clock.now() - timedelta(seconds=20)
    calls: list[Any] = [
        lambda: store.append_events("rt", [EventInput("a", {"x": 1}, key="new")]),
        lambda: store.append_events("rt", [EventInput("a", {"x": 1}, key="new")]),  # a repeat
        lambda: store.append_events("rt", [{"type": "b", "at": clock.now()}]),
        lambda: store.get_event("rt", key="k3"),
        lambda: store.get_events("rt", types=["a"], last=5),
        lambda: store.get_events("rt", before_seq=20, last=5),
        lambda: store.get_events("rt", at_after=since, types=["b"], limit=3),
        lambda: store.pop_events("rt", 2),
        lambda: store.truncate_events("rt", 25),
        lambda: store.delete_events("rt", seqs=[2, 3], keys=["k7"]),
        lambda: store.trim_events("rt", keep_last=10),
    ]
    for n, call in enumerate(calls):
        await store.client.execute_command("CONFIG", "RESETSTAT")
        await call()
        assert await _round_trips(store) == 1, n
    assert s.id == "rt"


async def test_a_plain_window_is_read_without_a_script(open_redis: Any, redis_url: str) -> None:
    """``get_events`` without a type or time filter is one ``MULTI``/``EXEC`` (the
    liveness fields and one range command), the same page as the script reads."""
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_url, clock=clock)
    await store.create_session(id="pw", ttl=timedelta(seconds=60))
    await store.append_events("pw", [{"type": "ab"[i % 2], "data": {"i": i}} for i in range(40)])
    await store.get_events("pw", types=["a"])  # the script loaded
    windows: list[dict[str, Any]] = [
        {},
        {"last": 20},
        {"last": 50},
        {"limit": 5},
        {"after_seq": 10},
        {"after_seq": 10, "limit": 5},
        {"after_seq": 10, "last": 5},
        {"before_seq": 20, "last": 5},
        {"before_seq": 20, "limit": 5},
        {"after_seq": 3, "before_seq": 9},
        {"after_seq": 38, "before_seq": 45, "last": 4},
    ]
    for window in windows:
        await store.client.execute_command("CONFIG", "RESETSTAT")
        got = await store.get_events("pw", **window)
        assert await _script_calls(store) == 0, window
        assert await command_calls(store, "exec") == 1, window
        # the script's page (a type filter naming every type takes the script's path)
        same = await store.get_events("pw", types=["a", "b"], **window)
        assert got == same, window
        assert [e.seq for e in got] == [e.seq for e in await _memory_page(window)], window
    clock.advance(60)  # expired: the script decides, as before
    with pytest.raises(SessionNotFoundError):
        await store.get_events("pw", last=20)
    assert await store._load_events("pw", after_seq=0, limit=None, last=3) != []


async def _memory_page(window: dict[str, Any]) -> list[Any]:
    from sessionstore import open_store

    async with open_store("memory://") as memory:
        await memory.create_session(id="pw")
        await memory.append_events("pw", [{"type": "x"}] * 40)
        return await memory.get_events("pw", **window)


async def test_the_keys_of_a_session_share_its_slot(open_redis: Any, redis_url: str) -> None:
    store: RedisStore = await open_redis(redis_url)
    for group in (None, "team"):
        names = store.key_names("x1", group)
        assert set(names) == {"doc", "events", "ckpt", "etypes", "ekeys"}
        assert len({key_slot(k.encode()) for k in names.values()}) == 1


async def test_deleting_and_expiring_cover_the_index_keys(open_redis: Any, redis_url: str) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="ttl", ttl=3600)
    await store.append_events("ttl", [EventInput("a", key="k")])
    await store.get_events("ttl", types=["a"])  # the type index is built
    keys = store.key_names("ttl")
    for name in ("events", "etypes", "ekeys"):
        assert await store.client.pttl(keys[name]) > 0
    await store.update_session("ttl", expires_at=None)
    for name in ("events", "etypes", "ekeys"):
        assert await store.client.pttl(keys[name]) == -1
    await store.delete_session("ttl")
    assert await store.client.exists(*keys.values()) == 0


def _reference(events: list[Any], **q: Any) -> list[Any]:
    """The semantics of get_events over the whole log (ascending seq)."""
    out = [
        e
        for e in events
        if e.seq > q.get("after_seq", 0)
        and (q.get("before_seq") is None or e.seq < q["before_seq"])
        and (q.get("types") is None or e.type in q["types"])
        and (q.get("at_after") is None or e.at > q["at_after"])
        and (q.get("at_before") is None or e.at < q["at_before"])
    ]
    if q.get("limit") is not None:
        out = out[: q["limit"]]
    if q.get("last") is not None:
        out = out[-q["last"] :] if q["last"] else []
    return out


@pytest.mark.parametrize("sorted_at", [True, False])
async def test_indexed_reads_match_a_filter_over_the_whole_log(
    open_redis: Any, redis_url: str, sorted_at: bool
) -> None:
    """Random logs with gaps (pops, truncates, deletes in the middle) and random queries:
    the indexed read (binary search on `at` while it is sorted, filtering once not)
    returns what filtering the whole log returns."""
    rnd = random.Random(17 + sorted_at)
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_url, clock=clock)
    await store.create_session(id="q")
    for _ in range(40):
        clock.advance(timedelta(milliseconds=rnd.choice([0, 1, 5, 50])))
        batch = []
        for _ in range(rnd.randint(1, 6)):
            at = None if sorted_at else clock.now() - timedelta(milliseconds=rnd.randint(0, 300))
            batch.append(EventInput(rnd.choice("abcd"), {"r": rnd.random()}, at=at))
        await store.append_events("q", batch)
        roll = rnd.random()
        if roll < 0.15:
            await store.pop_events("q", rnd.randint(1, 3))
        elif roll < 0.25:
            log = await store.get_events("q")
            if log:
                await store.delete_events("q", seqs=[rnd.choice(log).seq])
        elif roll < 0.3:
            log = await store.get_events("q")
            if log:
                await store.truncate_events("q", rnd.choice(log).seq)
    log = await store.get_events("q")
    assert len(log) > 50
    start, end = to_ms(log[0].at), to_ms(clock.now())
    for _ in range(300):
        q: dict[str, Any] = {}
        if rnd.random() < 0.4:
            q["after_seq"] = rnd.randint(0, log[-1].seq)
        if rnd.random() < 0.4:
            q["before_seq"] = rnd.randint(1, log[-1].seq + 2)
        if rnd.random() < 0.5:
            q["types"] = set(rnd.sample("abcde", rnd.randint(1, 3)))
        for bound in ("at_after", "at_before"):
            if rnd.random() < 0.4:
                q[bound] = clock.now() - timedelta(
                    milliseconds=end - rnd.randint(start - 5, end + 5)
                )
        page = rnd.choice(["limit", "last", None])
        if page:
            q[page] = rnd.randint(0, 12)
        got = await store.get_events("q", **q)
        assert got == _reference(log, **q), q


async def test_pop_and_append_in_one_batch_on_cluster(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    """Replace the tail atomically, on Cluster too (one slot: one script)."""
    store: RedisStore = await open_redis(redis_cluster.url)
    s = await store.create_session(id="tail")
    s = await store.append_events("tail", [{"type": "a"}, {"type": "b"}, {"type": "c"}])
    popped, appended = await store.commit(
        [PopOp("tail", 2, expected_version=s.version), AppendOp("tail", [{"type": "d"}])]
    )
    assert [(e.seq, e.type) for e in await store.get_events("tail")] == [(1, "a"), (4, "d")]
    assert isinstance(appended, Session)
    assert appended.event_count == 2 and appended.last_seq == 4
    assert (await store.get_event("tail", key="none")) is None
    assert popped is not None


async def test_an_append_that_creates_or_sets_the_expiry_is_one_round_trip(
    open_redis: Any, redis_url: str
) -> None:
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_url, clock=clock)
    await store.create_session(id="warm")
    await store.append_events("warm", [{"type": "a"}], ttl=60)  # the scripts are loaded
    await store.client.execute_command("CONFIG", "RESETSTAT")
    s = await store.append_events(
        "made", [EventInput("a", key="k")], create=NewSession(data={"x": 1}, tags={"t"}), ttl=60
    )
    assert await _script_calls(store) == 1
    assert (s.version, s.event_count, s.last_seq) == (1, 1, 1)
    assert s.data == {"x": 1} and s.tags == {"t"}
    assert s.expires_at == clock.now() + timedelta(seconds=60)
    clock.advance(10)
    await store.client.execute_command("CONFIG", "RESETSTAT")
    r = await store.append_events_detailed(
        "made", [EventInput("a", key="k"), EventInput("b")], create=True, ttl=60
    )
    assert await _script_calls(store) == 1
    assert r.new == [False, True] and [e.seq for e in r.events] == [1, 2]
    assert r.session.version == 2 and r.session.expires_at == clock.now() + timedelta(seconds=60)
    keys = store.key_names("made")
    assert r.session.expires_at is not None
    backstop = to_ms(r.session.expires_at) + store._grace_ms
    for name in ("doc", "events", "ekeys"):  # (no type index before a read by type)
        assert await pexpiretime(store.client, keys[name]) == backstop
    fresh: RedisStore = await open_redis(redis_url, clock=clock)
    assert await fresh.get_session("made") == r.session
    assert (await fresh.list_sessions(SessionFilter(tags_all={"t"}))).ids == ["made"]
    # nothing new, no expiry change: no write
    again = await store.append_events("made", [EventInput("a", key="k")], expires_at=UNSET)
    assert again == r.session


async def test_no_types_is_an_empty_page_of_a_live_session(open_redis: Any, redis_url: str) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="nt")
    await store.append_events("nt", [{"type": "a"}, {"type": "b"}])
    assert await store.get_events("nt", types=[], last=5) == []
    assert await store.get_events("nt", types=set(), limit=5) == []
    with pytest.raises(SessionNotFoundError):
        await store.get_events("missing", types=[], last=5)


async def test_the_type_index_is_built_by_the_first_read_by_type(
    open_redis: Any, redis_url: str
) -> None:
    """Appends keep no type index until a read by type built it (once, O(events)); from
    then on every way of adding or removing events keeps it in step."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="ti")
    await store.append_events("ti", [{"type": "a"}, {"type": "b"}, {"type": "a"}])
    keys = store.key_names("ti")
    assert await store.client.exists(keys["etypes"]) == 0
    assert b"ti" not in await read_fields(store.client, keys["doc"])
    assert [e.seq for e in await store.get_events("ti", types=["a"])] == [1, 3]
    assert await store.client.zcard(keys["etypes"]) == 3
    assert (await read_fields(store.client, keys["doc"]))[b"ti"] == b"1"
    other: RedisStore = await open_redis(redis_url)  # no copy: append.lua's read path
    await other.append_events("ti", [{"type": "a"}])
    await store.append_events("ti", [EventInput("a", key="k")])  # keyed
    await store.append_events("ti", [{"type": "b"}], ttl=60)  # write.lua's A op
    await store.commit([AppendOp("ti", [{"type": "a"}]), PopOp("ti", 1)])  # the F op
    await store.pop_events("ti")
    await store.delete_events("ti", seqs=[1])
    await store.append_events("ti", [{"type": "a"}, {"type": "c"}])  # the copy's path
    log = await store.get_events("ti")
    assert await store.client.zcard(keys["etypes"]) == len(log)
    for t in "abc":
        assert [e.seq for e in await store.get_events("ti", types=[t])] == [
            e.seq for e in log if e.type == t
        ]


async def test_an_append_from_a_copy_of_a_layout_1_document_converts_first(
    open_redis: Any, redis_url: str
) -> None:
    """The store's copy of the document (``_cache.py``) was made by a write to a layout-1
    session: the append script does not take the copy's short path (the stored layout
    says 1), converts the log, then numbers the events after it."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="c1")
    await _layout_1(store, "c1", ["a", "b"], first_seq=3)
    other: RedisStore = await open_redis(redis_url)
    s = await other.update_session("c1", merge_data={"x": 1})  # other now holds a copy
    assert (s.event_count, s.last_seq) == (2, 4)
    s = await other.append_events("c1", [{"type": "c"}, {"type": "d"}])
    assert (s.event_count, s.last_seq, s.version) == (4, 6, 3)
    log = await other.get_events("c1")
    assert [(e.seq, e.type) for e in log] == [(3, "a"), (4, "b"), (5, "c"), (6, "d")]
    assert await other.get_session("c1") == s
    s = await other.append_events("c1", [{"type": "e"}])  # the copy's short path now
    assert (s.event_count, s.last_seq) == (5, 7)
    assert [e.seq for e in await store.get_events("c1", types=["e", "a"])] == [3, 7]


@pytest.mark.parametrize(
    "record",
    [
        b"[1]",
        b'"text"',
        b'{"v":1,"s":2,"t":"a","a":0,"d":{}}',
        b'{"v":2,"s":"2","t":"a","a":0,"d":{}}',
        b'{"v":2,"s":2,"t":3,"a":0,"d":{}}',
        b'{"v":2,"s":2,"t":"a","a":0.5,"d":{}}',
        b'{"v":2,"s":2,"t":"a","a":0,"d":[]}',
        b'{"v":2,"s":2,"t":"a","a":0,"k":7,"d":{}}',
        b'{"v":2,"s":2,"t":"a","d":{}}',
        b'{"v":2,"s":2,"t":"a","a":0,"d":{}',
    ],
)
async def test_a_malformed_record_is_reported(
    open_redis: Any, redis_url: str, record: bytes
) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="bad")
    await store.append_events("bad", [{"type": "a", "key": "k1"}])
    await store.client.zadd(store.key_names("bad")["events"], {record: 2})
    with pytest.raises(IntegrityError):
        await store.get_events("bad", last=5)
    (first,) = await store.get_events("bad", limit=1)
    assert (first.seq, first.type, first.key, first.data) == (1, "a", "k1", {})
