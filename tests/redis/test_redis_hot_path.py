"""The hot path of single-session writes: the client-side document copy that lets an append
return only the new version (``_cache.py``), validated by the server so that it can never
be stale, and the lean request path (``_lane.py``)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sessionstore_redis import RedisStore

from sessionstore import (
    IntegrityError,
    ManualClock,
    Session,
    SessionConflictError,
    SessionNotFoundError,
    SessionRecord,
    Status,
)

from .docs import read_fields

pytestmark = pytest.mark.asyncio
NOW = ManualClock().now()


def _spy_replies(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The first result of every write script the store runs from now on: an append from
    a current copy answers the version (an integer), else the whole document (bytes)."""
    seen: list[Any] = []
    run = store._writes.run

    async def spied(*args: Any, **kwargs: Any) -> Any:
        reply = await run(*args, **kwargs)
        seen.append(reply.results[0])
        return reply

    monkeypatch.setattr(store._writes, "run", spied)
    return seen


async def test_append_returns_the_version_only_when_the_copy_is_current(
    open_redis: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_redis(redis_url)
    other = await open_redis(redis_url)
    s = await store.create_session(data={"a": 1}, metadata={"m": [1]}, tags={"t"})
    replies = _spy_replies(store, monkeypatch)
    for n in range(1, 4):
        s = await store.append_events(s.id, [{"type": "e", "data": {"n": n}}])
    assert replies == [2, 3, 4], "the copy should have been used"
    assert (s.version, s.event_count, s.last_seq) == (4, 3, 3)
    assert await store.get_session(s.id) == s
    # another client writes: the copy is stale, the script sends the whole document
    await other.update_session(s.id, merge_data={"b": 2}, add_tags={"u"})
    replies.clear()
    s = await store.append_events(s.id, [{"type": "e"}])
    assert len(replies) == 1 and isinstance(replies[0], bytes)
    assert s.data == {"a": 1, "b": 2} and s.tags == {"t", "u"} and s.version == 6
    assert await other.get_session(s.id) == s


async def test_a_recreated_session_is_never_taken_for_the_copy(
    open_redis: Any, redis_url: str
) -> None:
    """Versions repeat (delete + re-create, a restore): the copy is keyed by the unique
    token of the write that made the document, never by the version."""
    store = await open_redis(redis_url)
    other = await open_redis(redis_url)
    s = await store.create_session(id="same", data={"old": True})
    await other.delete_session("same")
    await other.create_session(id="same", data={"new": True})  # version 1 again
    got = await store.append_events("same", [{"type": "e"}])
    assert got.data == {"new": True} and got.version == 2
    # a restore of a record with the version the copy has, but other content
    assert got == await store.get_session("same")
    replaced = Session(
        "same",
        None,
        got.status,
        {"restored": True},
        {},
        frozenset(),
        got.created_at,
        got.updated_at,
        None,
        got.version,  # the very version the copy has
    )
    await other.put_records([SessionRecord(replaced)], strategy="overwrite")
    after = await store.append_events("same", [{"type": "e"}])
    assert after.data == {"restored": True} and after.event_count == 1
    assert after == await other.get_session("same")
    assert s.data == {"old": True}


async def test_returned_sessions_share_no_state_with_the_copy(
    open_redis: Any, redis_url: str
) -> None:
    store = await open_redis(redis_url)
    s = await store.create_session(data={"list": [1]}, metadata={"k": {"v": 1}})
    s.data["list"].append("mutated by the caller")
    s.metadata["k"]["v"] = "mutated"
    a = await store.append_events(s.id, [{"type": "e"}])
    b = await store.append_events(s.id, [{"type": "e"}])
    assert a.data == {"list": [1]} and a.metadata == {"k": {"v": 1}}
    assert a.data is not b.data and a.data["list"] is not b.data["list"]
    a.data["list"].clear()
    c = await store.append_events(s.id, [{"type": "e"}])
    assert c.data == {"list": [1]} and c == await store.get_session(s.id)


async def test_a_copy_keeps_the_encoded_data_not_the_decoded_session(
    open_redis: Any, redis_url: str
) -> None:
    store = await open_redis(redis_url)
    s = await store.create_session(data={"list": [1]}, metadata={"k": 1}, tags={"t"})
    copy = store._cache.get(s.id)
    assert copy is not None
    # the session kept has no data or metadata of its own: only the bytes are kept
    assert copy.session.data == {} and copy.session.metadata == {}
    assert copy.session.data is not s.data and copy.session.tags == s.tags
    a = await store.append_events(s.id, [{"type": "e"}])
    assert a.data == {"list": [1]} and a.metadata == {"k": 1} and a.tags == {"t"}
    assert store._cache.get(s.id).session.data == {}
    assert a == await store.get_session(s.id)


async def test_expiry_and_conflicts_are_still_decided_by_the_script(
    open_redis: Any, redis_url: str
) -> None:
    from sessionstore import SessionConflictError, SessionNotFoundError

    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    s = await store.create_session(ttl=10)
    s = await store.append_events(s.id, [{"type": "e"}], expected_version=1)
    with pytest.raises(SessionConflictError):
        await store.append_events(s.id, [{"type": "e"}], expected_version=1)
    clock.advance(11)
    with pytest.raises(SessionNotFoundError):
        await store.append_events(s.id, [{"type": "e"}])


async def test_concurrent_appends_from_two_stores(open_redis: Any, redis_url: str) -> None:
    a = await open_redis(redis_url)
    b = await open_redis(redis_url)
    s = await a.create_session()
    await b.get_session(s.id)

    async def burst(store: RedisStore, tag: str) -> list[Session]:
        return [await store.append_events(s.id, [{"type": tag}]) for _ in range(30)]

    ra, rb = await asyncio.gather(burst(a, "a"), burst(b, "b"))
    versions = sorted(x.version for x in ra + rb)
    assert versions == list(range(2, 62)), "every append got its own version"
    for got in ra + rb:
        assert got.event_count == got.version - 1 == got.last_seq
    final = await a.get_session(s.id)
    assert final is not None and final.version == 61 and final.event_count == 60
    assert [e.seq for e in await a.get_events(s.id)] == list(range(1, 61))


async def test_few_connections_are_shared_with_the_pool(open_redis: Any, redis_url: str) -> None:
    """The lean path gives every connection back to the pool after each call: with
    max_connections=1 plain redis-py calls on the same client still get it."""
    store = await open_redis(redis_url, max_connections=1)
    s = await store.create_session()
    for _ in range(3):
        s = await store.append_events(s.id, [{"type": "e"}])
        assert await store.client.ping()
    page = await store.list_sessions()
    assert page.ids == [s.id]


async def test_a_creates_document_string_is_counted_until_a_write_replaces_it() -> None:
    """A create's copy keeps the document string it stored (counted in the bytes bound);
    it answers a read of exactly those bytes; an append's copy no longer keeps it."""
    from sessionstore_redis._cache import DocCache

    s = Session("c", None, Status.ACTIVE, {"a": 1}, {}, frozenset(), NOW, NOW, None, 1)
    doc = b"\x03" + b"d" * 200
    cache = DocCache()
    cache.put("t1", s, b'{"a":1}', b"{}", doc=doc)
    assert cache._bytes == 9 + 201
    assert cache.current("c", bytes(doc)) == s and cache.current("c", doc[:-1] + b"e") is None
    assert cache.current("c", None) is None and cache.current("other", doc) is None
    cached = cache.get("c")
    assert cached is not None
    after = cache.after_append(cached, NOW, 1)
    cache.appended(cached, "t2", after)
    assert cache._bytes == 9 and cache.current("c", doc) is None
    assert cache.copy(cache.get("c")) == after  # type: ignore[arg-type]
    cache.put("t3", s, b'{"a":1}', b"{}", doc=doc)
    cache.put("t4", s, b'{"a":1}', b"{}")
    assert cache._bytes == 9
    cache.drop("c")
    assert cache._bytes == 0 and len(cache) == 0


async def test_the_copies_are_bounded() -> None:
    """Oldest first out, by count and by bytes; big documents are not kept at all."""
    from sessionstore_redis._cache import DocCache

    def session(sid: str) -> Session:
        return Session(sid, None, Status.ACTIVE, {}, {}, frozenset(), NOW, NOW, None, 1)

    cache = DocCache()
    for n in range(cache.MAX_ENTRIES + 5):
        cache.put(f"t{n}", session(f"s{n}"), b"{}", b"{}")
    assert len(cache) == cache.MAX_ENTRIES
    assert cache.get("s0") is None and cache.get(f"s{cache.MAX_ENTRIES + 4}") is not None
    cache.put("big", session("big"), b"x" * (cache.MAX_ENTRY_BYTES + 1), b"{}")
    assert cache.get("big") is None
    chunk = b"y" * (cache.MAX_ENTRY_BYTES - 2)
    for n in range(cache.MAX_BYTES // cache.MAX_ENTRY_BYTES + 10):
        cache.put(f"b{n}", session(f"b{n}"), chunk, b"{}")
    assert sum(len(c.data) for c in (cache.get(f"b{n}") for n in range(200)) if c) <= (
        cache.MAX_BYTES
    )
    cache.put("", session("no-token"), b"{}", b"{}")  # no token: nothing to validate with
    assert cache.get("no-token") is None
    cache.drop("b150")
    assert cache.get("b150") is None


async def test_an_appended_copy_takes_its_entry_s_place_as_the_newest() -> None:
    """The copy an append leaves replaces its entry (the same bytes: the accounting is
    unchanged) and becomes the newest: the next entry over the bound evicts another."""
    from sessionstore_redis._cache import DocCache

    cache = DocCache()
    for n in range(cache.MAX_ENTRIES):
        s = Session(f"s{n}", None, Status.ACTIVE, {}, {}, frozenset(), NOW, NOW, None, 1)
        cache.put(f"t{n}", s, b"{}", b"{}")
    first = cache.get("s0")
    assert first is not None
    cache.appended(first, "t-append", DocCache.after_append(first, NOW, 2))
    kept = cache.get("s0")
    assert kept is not None and kept is not first and kept.token == "t-append"
    assert (kept.session.version, kept.session.event_count, kept.data) == (2, 2, b"{}")
    assert cache._bytes == 4 * cache.MAX_ENTRIES
    over = Session("over", None, Status.ACTIVE, {}, {}, frozenset(), NOW, NOW, None, 1)
    cache.put("t-over", over, b"{}", b"{}")
    assert cache.get("s0") is kept and cache.get("s1") is None
    cache.drop("s0")  # gone meanwhile (deleted): the append's copy is kept, as put keeps it
    cache.appended(kept, "t-again", DocCache.after_append(kept, NOW, 1))
    again = cache.get("s0")
    assert again is not None and again.token == "t-again" and again.session.version == 3
    assert cache._bytes == 4 * cache.MAX_ENTRIES


async def test_requests_are_packed_as_redis_py_packs_them() -> None:
    from enum import IntEnum

    from redis.asyncio.connection import Connection
    from sessionstore_redis._lane import pack

    class Level(IntEnum):
        HIGH = 3

    args: list[Any] = [
        "EVALSHA",
        "ab" * 20,
        2,
        "k{1}:doc",
        "k{1}:events",
        -5,
        1.5,
        b"\x00\xff",
        "ü",
        "",
    ]
    args += [Status.ACTIVE, b"x" * 10_000]
    assert pack(args) == b"".join(Connection().pack_command(*args))
    assert pack([Level.HIGH]) == b"*1\r\n$1\r\n3\r\n"  # its value (redis-py sends its repr)
    with pytest.raises(TypeError):
        pack(["SET", "k", True])
    with pytest.raises(TypeError):
        pack(["SET", "k", object()])


async def test_script_requests_are_packed_as_pack_packs_them() -> None:
    from sessionstore_redis._lane import pack, pack_call

    keys = ["k{1}:doc", "k{1}:events"]
    for args in ([], [1, "", b"\x00", "ü", Status.ACTIVE, b"y" * 5000]):
        for ref in ("ab" * 20, b"return 1"):
            want = pack(["EVALSHA", ref, len(keys), *keys, *args])
            assert pack_call("EVALSHA", ref, keys, args) == want
            assert pack_call("EVALSHA", ref, keys, args) == want  # the cached head
            for fixed in range(1, len(args) + 1):  # the keys and first args cached too
                assert pack_call("EVALSHA", ref, keys, args, fixed) == want
                assert pack_call("EVALSHA", ref, keys, args, fixed) == want
    # a cached session head is only reused for the same keys and fixed arguments
    assert pack_call("EVALSHA", "ab" * 20, ["a", "b"], [1, 2, 3], 2) == pack(
        ["EVALSHA", "ab" * 20, 2, "a", "b", 1, 2, 3]
    )
    assert pack_call("EVALSHA", "ab" * 20, ["a", "b"], [1, 9, 3], 2) == pack(
        ["EVALSHA", "ab" * 20, 2, "a", "b", 1, 9, 3]
    )
    assert pack_call("EVALSHA", "ab" * 20, ["a", "c"], [1, 9], 2) == pack(
        ["EVALSHA", "ab" * 20, 2, "a", "c", 1, 9]
    )
    assert pack_call("EVALSHA", "cd" * 20, [], [7]) == pack(["EVALSHA", "cd" * 20, 0, 7])
    with pytest.raises(TypeError):
        pack_call("EVALSHA", "ab" * 20, keys, [True])


@pytest.mark.parametrize("copy", [True, False], ids=["from-copy", "read-stored"])
async def test_appends_keep_the_index_record_in_step(
    open_redis: Any, redis_url: str, copy: bool
) -> None:
    """append.lua rewrites the session's index record: from the client's copy when the
    document is that copy, else by rewriting the stored record in place (version,
    updated_at, "has events"). A missing record is rebuilt in full either way; a
    malformed one is replaced (from the copy) or rebuilt in full (read)."""
    from sessionstore_redis._encoding import record_of

    store = await open_redis(redis_url)
    ix = store.key_names("x")["doc"].split("{")[0] + "{~0}:"
    s = await store.create_session(
        processor_id="p", tags={"b", "a"}, ttl=3600, metadata={"m": 1}, group="g"
    )
    plain = await store.create_session()

    async def append(sid: str) -> Session:
        if not copy:
            store._cache.drop(sid)  # no copy: the script reads what it needs
        out: Session = await store.append_events(sid, [{"type": "e"}])
        return out

    for sess in (s, plain):
        for _ in range(2):
            sess = await append(sess.id)
        assert (await store.client.hget(ix + "r", sess.id)).decode() == record_of(sess)
        updated = float(record_of(sess).split("\0")[2])
        assert await store.client.zscore(ix + "u", sess.id) == updated
        assert sess == await store.get_session(sess.id)
    for broken in (None, b"garbage", b"1\x002"):
        if broken is None:
            await store.client.hdel(ix + "r", s.id)
        else:
            await store.client.hset(ix + "r", s.id, broken)
        s = await append(s.id)
        assert (await store.client.hget(ix + "r", s.id)).decode() == record_of(s)
        for key in ("c", "u", "x", "i"):
            assert await store.client.zscore(ix + key, s.id) is not None
        for key in ("s:active", "p:p", "t:a", "t:b"):
            assert await store.client.sismember(ix + key, s.id)
    assert s == await store.get_session(s.id)


async def test_an_append_from_a_copy_writes_what_an_append_without_one_writes(
    open_redis: Any, redis_url: str
) -> None:
    """The head an append writes from the client's copy (version, counters, updated_at,
    the events key's expiry, the index record) is byte for byte what the script writes
    when it reads the document itself."""
    store = await open_redis(redis_url)
    keys: list[dict[str, str]] = []
    for copy in (True, False):
        s = await store.create_session(
            processor_id="p", tags={"t"}, ttl=3600, data={"k": 1}, group="g" if copy else None
        )
        s = await store.append_events(s.id, [{"type": "a"}])
        if not copy:
            store._cache.drop(s.id)
        s = await store.append_events(s.id, [{"type": "b"}, {"type": "c", "data": {"x": 1}}])
        assert (s.version, s.event_count, s.last_seq) == (3, 3, 3)
        assert s == await store.get_session(s.id)
        keys.append(store.key_names(s.id, s.group))
    head = [b"ver", b"ec", b"ls", b"ea", b"v", b"st", b"pid"]
    docs = [await read_fields(store.client, k["doc"]) for k in keys]
    assert [docs[0].get(n) for n in head] == [docs[1].get(n) for n in head]
    for k, doc in zip(keys, docs, strict=True):  # the events key expires at expires_at + grace
        expires_ms = int(doc[b"ea"])
        left = await store.client.pttl(k["events"])
        assert abs(expires_ms + store._grace_ms - (time.time() * 1000 + left)) < 5000


async def test_an_append_from_a_stale_copy_reads_the_document(
    open_redis: Any, redis_url: str
) -> None:
    """A copy made stale by another client, or one whose expected version or expiry says
    the append would fail, is not used for the append's new head: the script reads."""
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    other = await open_redis(redis_url, clock=clock)
    s = await store.create_session(ttl=60)
    await store.append_events(s.id, [{"type": "a"}])
    await other.append_events(s.id, [{"type": "b"}])  # store's copy is stale now
    s = await store.append_events(s.id, [{"type": "c"}])
    assert (s.version, s.event_count) == (4, 3)
    assert s == await other.get_session(s.id)
    with pytest.raises(SessionConflictError):
        await store.append_events(s.id, [{"type": "d"}], expected_version=3)
    clock.advance(timedelta(seconds=61))  # expired by the store's clock
    with pytest.raises(SessionNotFoundError):
        await store.append_events(s.id, [{"type": "e"}])


async def test_queued_index_records_are_built_for_the_newest_upsert_only() -> None:
    """Cluster's index queue holds the written sessions themselves and builds the record of
    the newest upsert of each session when it sends a batch."""
    from dataclasses import replace

    from sessionstore_redis._encoding import record_of
    from sessionstore_redis._indexer import _newest_only

    s = await open_memory_session()
    v2, v3 = replace(s, version=2), replace(s, version=3)
    other = replace(s, id="other")
    items: list[Any] = [
        (s.id, ["P", s.id, v3]),
        (s.id, ["P", s.id, record_of(v2)]),  # a repair's record: older, dropped
        (other.id, ["P", other.id, other]),
        (s.id, ["D", s.id, "1", "1"]),  # deletes are kept as they are
        (s.id, ["P", s.id, s]),  # older than v3: dropped
    ]
    assert _newest_only(items) == [items[0], items[2], items[3]]
    only_str = [(s.id, ["P", s.id, record_of(v2)]), (s.id, ["P", s.id, record_of(v3)])]
    assert _newest_only(only_str) == [only_str[1]]


async def open_memory_session() -> Session:
    from sessionstore import open_store

    async with open_store("memory://") as store:
        return await store.create_session(processor_id="p", tags={"t"}, data={"a": 1})


async def test_shutdown_waits_for_an_index_batch_on_its_way(
    open_redis: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch of the index queue that its timer is sending when the store shuts down is
    sent in full before the connection closes (it used to fail, logged as 'index update
    failed', and the entries stayed stale)."""
    store = await open_redis(redis_url)
    queue = store._here_index()
    started, release = asyncio.Event(), asyncio.Event()
    sent: list[int] = []
    original = queue.send

    async def slow_send(items: Any) -> None:
        started.set()
        await release.wait()
        await original(items)
        sent.append(len(items))

    queue.send = slow_send
    s = await store.create_session(processor_id="p")
    queue.put([(s.id, ["X", s.id, "1\x000"])])  # a repair: removes nothing that is current
    await asyncio.wait_for(started.wait(), 5)  # the timer's batch is on its way
    closing = asyncio.create_task(store.shutdown())
    await asyncio.sleep(0.05)
    assert not closing.done(), "shutdown must wait for the batch"
    release.set()
    await asyncio.wait_for(closing, 5)
    assert sent == [1]
    assert "index update failed" not in caplog.text


@pytest.mark.parametrize("stale", [False, True], ids=["copy", "stale-copy"])
async def test_appends_keep_a_type_index_they_find_kept(
    open_redis: Any, redis_url: str, stale: bool
) -> None:
    """Once a read by type built a session's type index, every append keeps it: append.lua
    makes an event's entry from the record the client numbered (the short path), or
    numbers it again when the copy is stale, whatever the type holds."""
    store = await open_redis(redis_url)
    other = await open_redis(redis_url)
    kinds = ["plain", 'x,"a":1,"t":', 'ü\\"q"']
    s = await store.create_session()
    s = await store.append_events(s.id, [{"type": k} for k in kinds])
    assert [e.seq for e in await store.get_events(s.id, types=[kinds[1]])] == [2]
    if stale:  # the store's copy is stale: the events it numbered are numbered again
        await other.append_events(s.id, [{"type": "plain"}])
    s = await store.append_events(
        s.id, [{"type": k, "data": {"i": i}} for i, k in enumerate(kinds)]
    )
    everything = await store.get_events(s.id)
    assert [e.seq for e in everything] == list(range(1, s.last_seq + 1))
    for kind in kinds:
        assert await store.get_events(s.id, types=[kind]) == [
            e for e in everything if e.type == kind
        ]
    entries = await store.client.zrange(store.key_names(s.id)["etypes"], 0, -1)
    assert sorted(entries) == sorted(
        orjson.dumps(e.type) + b"\0" + b"%016x" % e.seq for e in everything
    )


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the documents the reads decode from now on (a read of the document a
    write of the same store left is made from its copy instead)."""
    import sessionstore_redis._store as store_module

    decoded: list[str] = []
    decode = getattr(store_module, "decode_doc")  # noqa: B009 (not exported)

    def spied(blob: bytes, record: str) -> Any:
        decoded.append(record)
        return decode(blob, record)

    monkeypatch.setattr(store_module, "decode_doc", spied)
    return decoded


async def test_a_read_of_the_document_the_stores_write_left_is_its_copy(
    open_redis: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_session`` after a create of the same store: the document read is byte for
    byte the one the create stored (``_cache.py``), so the session is made from the copy,
    equal to what a decode of the document gives, with data of its own; any other
    document is decoded (a later write's, another client's, a corrupt one)."""
    from sessionstore import SystemClock

    store = await open_redis(redis_url, clock=SystemClock())
    other = await open_redis(redis_url, clock=SystemClock())
    decoded = _count_decodes(monkeypatch)
    s = await store.create_session(
        processor_id="p",
        data={"list": [1, 2.5, None], "u": "\u00fc\u2028"},
        metadata={"m": {"k": 1}},
        tags={"b", "a"},
        ttl=timedelta(seconds=60, microseconds=1500),
        status="paused",
    )
    got = await store.get_session(s.id)
    assert decoded == [], "the copy should have been used"
    assert got == s == await other.get_session(s.id) and decoded == [s.id]
    assert got is not None and got.data is not s.data and got.data["list"] is not s.data["list"]
    got.data["list"].clear()
    assert (await store.get_session(s.id)) == s  # the copy keeps bytes, not the dict
    assert await store.get_sessions([s.id]) == {s.id: s} and decoded == [s.id]
    # a corrupt document that keeps the create's header (its token) is still refused
    key = store.key_names(s.id)["doc"]
    blob = await store.client.get(key)
    await store.client.set(key, blob[:-1] + b"\n", keepttl=True)
    with pytest.raises(IntegrityError):
        await store.get_session(s.id)
    await store.client.set(key, blob, keepttl=True)
    assert await store.get_session(s.id) == s
    # any later write changes the document: decoded (the store's own append, or update)
    decoded.clear()
    s = await store.append_events(s.id, [{"type": "e"}])
    assert await store.get_session(s.id) == s and decoded == [s.id]
    s = await store.update_session(s.id, merge_data={"n": 1}, add_tags={"c"})
    assert await store.get_session(s.id) == s and decoded == [s.id] * 2
    changed = await other.update_session(s.id, merge_data={"n": 2})
    assert await store.get_session(s.id) == changed and decoded == [s.id] * 3
    # the same version again, by another client: never taken for the copy
    await store.append_events(s.id, [{"type": "e"}])
    await other.delete_session(s.id)
    again = await other.create_session(id=s.id, data={"new": True})
    assert await store.get_session(s.id) == again
    # a grouped session's stub where the copy's document was: followed, not the copy
    await store.update_session(s.id, merge_data={"mine": 1})
    await other.delete_session(s.id)
    grouped = await other.create_session(id=s.id, group="g", data={"grouped": True})
    assert await store.get_session(s.id) == grouped
    assert await store.get_session("never-created") is None


async def test_a_read_from_the_copy_still_honours_the_expiry(
    open_redis: Any, redis_url: str
) -> None:
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    s = await store.create_session(ttl=10, data={"a": 1})
    clock.advance(11)
    assert await store.get_session(s.id) is None
    assert await store.get_session(s.id, include_expired=True) == s


async def test_a_create_that_fails_leaves_no_copy_a_read_or_an_append_takes(
    open_redis: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create makes its copy while the request is on its way (before the reply says
    whether the id was free): when the id is taken, the copy it made is never taken for
    the stored document, by a read (other bytes are stored) or an append (another token)."""
    from sessionstore import SessionExistsError

    store = await open_redis(redis_url)
    other = await open_redis(redis_url)
    theirs = await other.create_session(id="taken", data={"theirs": True}, tags={"o"})
    with pytest.raises(SessionExistsError):
        await store.create_session(id="taken", data={"mine": True}, tags={"m"})
    decoded = _count_decodes(monkeypatch)
    assert await store.get_session("taken") == theirs and decoded == ["taken"]
    replies = _spy_replies(store, monkeypatch)
    after = await store.append_events("taken", [{"type": "e"}])
    assert type(replies[0]) is bytes, "the whole document, not the version from a copy"
    assert after.data == {"theirs": True} and after.tags == {"o"} and after.version == 2
    assert after == await other.get_session("taken")


async def test_a_create_under_wait_replicas_keeps_its_copy(
    open_redis: Any, redis_sentinel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait_replicas`` sends through ``WAIT``'s own path, which has no ``during`` hook:
    the create's copy is made before sending there, so a read of the created session is
    still answered from it and an append still gets the version alone back."""
    store = await open_redis(redis_sentinel.url, wait_replicas=1)
    s = await store.create_session(data={"a": 1}, tags={"t"})
    decoded = _count_decodes(monkeypatch)
    assert await store.get_session(s.id) == s and decoded == [], "the copy should be used"
    replies = _spy_replies(store, monkeypatch)
    after = await store.append_events(s.id, [{"type": "e"}])
    assert replies == [2] and after.version == 2 and after.data == {"a": 1}
