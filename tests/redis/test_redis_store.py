"""The Redis driver on a single server: key layout, JSON fidelity, native expiry, scripts,
integrity of stored records, and indexes (docs/redis.md)."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.crc import key_slot
from sessionstore_redis import RedisStore

from sessionstore import (
    CreateOp,
    IntegrityError,
    ManualClock,
    NewSession,
    QueryOptions,
    SessionExistsError,
    SessionFilter,
)
from sessionstore.clock import to_ms
from sessionstore.planning import prepare

from .docs import fields_of, pexpiretime, read_fields, write_fields

pytestmark = pytest.mark.asyncio


async def raw(store: RedisStore, *args: Any) -> Any:
    return await store.client.execute_command(*args)


async def test_key_layout_is_the_documented_one(open_redis: Any, redis_url: str) -> None:
    store = await open_redis(redis_url, key_prefix="app:")
    s = await store.create_session(
        id="s1", data={"goal": "triage"}, metadata={"user": "u1"}, tags={"prod"}, processor_id="p"
    )
    await store.append_events(s.id, [{"type": "e", "data": {"n": 1}, "key": "k1"}])
    await store.save_checkpoint(s.id, label="one")
    await store.get_events(s.id, types=["e"])  # builds the type index
    names = store.key_names("s1")
    prefix = f"app:{store.namespace}:"
    assert names == {
        "doc": prefix + "{s1}:doc",
        "events": prefix + "{s1}:events",
        "ckpt": prefix + "{s1}:ckpt",
        "etypes": prefix + "{s1}:etypes",
        "ekeys": prefix + "{s1}:ekeys",
    }
    assert await raw(store, "TYPE", names["doc"]) == b"string"  # layout 3: lua/doc.lua
    assert await raw(store, "TYPE", names["events"]) == b"zset"
    assert await raw(store, "TYPE", names["ckpt"]) == b"hash"
    # the event log (lua/evlog.lua): records by seq, the type index, the key index
    ((record, seq),) = await store.client.zrange(names["events"], 0, -1, withscores=True)
    assert seq == 1 and record.startswith(b'{"v":2,"s":1,"t":"e","a":')
    assert record.endswith(b',"k":"k1","d":{"n":1}}')
    assert await store.client.zrange(names["etypes"], 0, -1) == [b'"e"\x00' + b"0" * 15 + b"1"]
    (entry,) = (await store.client.hgetall(names["ekeys"])).items()
    assert entry[0] == b'"k1"' and entry[1].startswith(b"1\x00")
    blob = await store.client.get(names["doc"])
    assert blob.endswith(b'\x00prod\x00{"goal"\t:"triage"}\x00{"user"\t:"u1"}')
    doc = fields_of(blob)
    # read as the hash fields of layout 2: each top-level key's JSON bytes, tags, header
    assert doc[b'd:"goal"'] == b'"triage"'
    assert doc[b'm:"user"'] == b'"u1"'
    assert doc[b"t:prod"] == b""
    assert doc[b"ver"] == b"2" and doc[b"v"] == b"2" and doc[b"pid"] == b"p"
    assert doc[b"ec"] == b"1" and doc[b"ls"] == b"1"
    # the indexes live under their own hash tag, never a session's
    index_keys = await store.client.keys(prefix + "{~0}:*")
    assert {k.decode()[len(prefix) :] for k in index_keys} >= {
        "{~0}:r",
        "{~0}:c",
        "{~0}:u",
        "{~0}:n",
        "{~0}:i",
        "{~0}:s:active",
        "{~0}:p:p",
        "{~0}:t:prod",
    }


async def test_group_colocates_and_is_found_by_id(open_redis: Any, redis_url: str) -> None:
    store = await open_redis(redis_url)
    a = await store.create_session(id="ga", group="team-1", data={"x": 1})
    b = await store.create_session(id="gb", group="team-1")
    slots = {
        key_slot(name.encode())
        for sid in (a.id, b.id)
        for name in store.key_names(sid, "team-1").values()
    }
    assert len(slots) == 1, "a group's keys must share one hash slot"
    assert "{team-1}:ga:doc" in store.key_names("ga", "team-1")["doc"]
    home = store.key_names("ga")["doc"]
    assert await store.client.get(home) == b"\x03Gteam-1"  # the id's stub
    fresh = await open_redis(redis_url)  # no cached group: found through the stub
    assert await fresh.get_session("ga") == a
    assert (await fresh.update_session("ga", merge_data={"y": 2})).data == {"x": 1, "y": 2}
    assert (await fresh.append_events("gb", [{"type": "e"}])).event_count == 1
    assert [e.type for e in await fresh.get_events("gb")] == ["e"]
    assert await fresh.delete_session("ga") is True
    assert await store.client.exists(home) == 0  # the stub goes with the session
    assert await store.get_session("ga") is None
    c = await store.create_session(id="ga")  # the id is free again, ungrouped
    assert c.group is None


async def test_values_round_trip_exactly(open_redis: Any, redis_url: str) -> None:
    """No JSON inside Lua: cjson would turn [] into {} and big integers into floats."""
    store = await open_redis(redis_url)
    tricky = {
        "empty_list": [],
        "empty_obj": {},
        "nested": {"l": [[], {}], "s": 'ü\u2028"q"\\'},
        "big": 2**63 - 1,
        "neg": -(2**63),
        "over_2_53": 2**53 + 1,  # beyond a double: still exact
        "float": 0.1,
        "none": None,
        'key with spaces and "quotes"': True,
    }
    s = await store.create_session(data=tricky, metadata={"m": []})
    assert (await store.get_session(s.id)).data == tricky
    s = await store.update_session(s.id, merge_data={"more": [[]]}, merge_metadata={"n": {}})
    assert s.data == {**tricky, "more": [[]]}
    assert s.metadata == {"m": [], "n": {}}
    s = await store.update_session(s.id, data=tricky)
    assert s.data == tricky
    s = await store.append_events(s.id, [{"type": "t", "data": tricky}])
    assert (await store.get_events(s.id))[0].data == tricky
    cp = await store.save_checkpoint(s.id)
    assert (await store.get_checkpoint(s.id, cp.id)).data == tricky


async def test_native_expiry_is_a_backstop_at_expiry_plus_grace(
    open_redis: Any, redis_url: str
) -> None:
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock, expiry_grace=30.0)
    s = await store.create_session(ttl=60)
    await store.append_events(s.id, [{"type": "e"}])
    await store.save_checkpoint(s.id)
    assert s.expires_at is not None
    want = to_ms(s.expires_at) + 30_000
    names = store.key_names(s.id)

    async def expiry_times() -> set[int]:  # of the keys there are (-2: no such key)
        return {await pexpiretime(store.client, key) for key in names.values()} - {-2}

    assert await expiry_times() == {want}
    clock.advance(10)
    await store.update_session(s.id, merge_data={"a": 1}, status="paused")
    await store.append_events(s.id, [{"type": "e"}])
    assert await expiry_times() == {want}, "a write must not change the absolute expiry"
    t = await store.touch(s.id, ttl=120)
    assert t.expires_at is not None
    assert await expiry_times() == {to_ms(t.expires_at) + 30_000}
    await store.update_session(s.id, expires_at=None)
    assert await expiry_times() == {-1}


async def test_scripts_are_reloaded_after_script_flush(open_redis: Any, redis_url: str) -> None:
    store = await open_redis(redis_url)
    s = await store.create_session(tags={"t"})
    await raw(store, "SCRIPT", "FLUSH")
    s = await store.update_session(s.id, merge_data={"a": 1}, expected_version=s.version)
    await raw(store, "SCRIPT", "FLUSH")
    assert len(await store.get_events(s.id)) == 0
    await raw(store, "SCRIPT", "FLUSH")
    assert (await store.list_sessions(SessionFilter(tags_all={"t"}))).ids == [s.id]
    await raw(store, "SCRIPT", "FLUSH")
    assert await store.count_sessions() == 1


async def test_create_writes_the_document_a_batch_create_writes(
    open_redis: Any, redis_url: str
) -> None:
    """``create_session`` runs its own script (``lua/create.lua``), a transaction's create
    ``lua/write.lua``: the same document (the encoded sizes included, which later updates'
    quota checks start from) and the same index record."""
    store = await open_redis(redis_url)
    fields: dict[str, Any] = {
        "processor_id": "p",
        "data": {"a": [1, 2.5, None], "b": {"c": "\u00fc\u2028"}, 'q"': ""},
        "metadata": {"m": 1},
        "tags": {"y", "x"},
        "ttl": 60,
    }
    await store.create_session(id="one", **fields)
    async with store.transaction() as tx:
        await tx.create_session(id="two", **fields)
    docs = [await read_fields(store.client, store.key_names(sid)["doc"]) for sid in ("one", "two")]
    for doc in docs:
        del doc[b"id"], doc[b"wt"]
    assert docs[0] == docs[1]
    assert docs[0][b"ds"] == str(len(orjson.dumps(fields["data"])) - 1).encode()
    records = await store.client.hmget(store._keys.index(0) + "r", ["one", "two"])
    assert records[0] == records[1] and records[0].endswith(b"\x00x\x00y")
    names = [store.key_names(sid)["doc"] for sid in ("one", "two")]
    assert len({await pexpiretime(store.client, name) for name in names}) == 1


async def test_create_of_thousands_of_fields(open_redis: Any, redis_url: str) -> None:
    """The document's fields travel as script arguments: more than one HSET's worth."""
    store = await open_redis(redis_url)
    data = {f"k{i}": i for i in range(2500)}
    tags = {f"t{i:02d}" for i in range(40)}
    s = await store.create_session(data=data, metadata={"m": "v"}, tags=tags, processor_id="p")
    got = await store.get_session(s.id)
    assert got is not None and got.data == data and got.tags == tags and got == s
    page = await store.list_sessions(SessionFilter(tags_all={"t39"}, processor_id="p"))
    assert page.ids == [s.id]


async def test_create_over_an_expired_id_moves_its_index_entries(
    open_redis: Any, redis_url: str
) -> None:
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    await store.create_session(id="r", ttl=1, tags={"old"}, processor_id="p1", status="paused")
    clock.advance(2)
    await store.create_session(id="r", tags={"new"}, processor_id="p2")
    ix = store._keys.index(0)
    assert await store.client.sismember(ix + "t:old", "r") == 0
    assert await store.client.sismember(ix + "p:p1", "r") == 0
    assert await store.client.sismember(ix + "s:paused", "r") == 0
    assert await store.client.sismember(ix + "t:new", "r") == 1
    assert await store.client.zscore(ix + "x", "r") is None  # no expiry now
    assert await store.client.zscore(ix + "n", "r") == 0
    assert (await store.list_sessions(SessionFilter(processor_id="p2"))).ids == ["r"]


async def test_create_over_index_entries_left_without_a_document(
    open_redis: Any, redis_url: str
) -> None:
    """``lua/create.lua``'s common path (nothing holds the id) finds an index record left
    behind (its document removed behind the store's back): the entries are moved to the
    new session's after the helpers are defined, not added beside the old ones."""
    store = await open_redis(redis_url)
    await store.create_session(id="g", ttl=60, tags={"old"}, processor_id="p1")
    await store.client.delete(store.key_names("g")["doc"])
    s = await store.create_session(id="g", tags={"new"}, processor_id="p2")
    ix = store._keys.index(0)
    assert await store.client.sismember(ix + "t:old", "g") == 0
    assert await store.client.sismember(ix + "p:p1", "g") == 0
    assert await store.client.sismember(ix + "t:new", "g") == 1
    assert await store.client.zscore(ix + "x", "g") is None
    assert await store.client.zscore(ix + "n", "g") == 0
    at = b"%d" % to_ms(s.created_at)
    record = [b"1", at, at, b"", b"active", b"p2", b"", b"0", b"new"]
    assert await store.client.hget(ix + "r", "g") == b"\0".join(record)
    assert (await store.list_sessions(SessionFilter(tags_all={"old"}))).ids == []
    assert (await store.list_sessions(SessionFilter(processor_id="p2"))).ids == ["g"]


async def _index_membership(store: RedisStore, sid: str) -> dict[str, bool]:
    """Every key of index shard 0 -> whether ``sid`` is in it (sets, sorted sets, the
    record hash)."""
    ix = store._keys.index(0)
    found: dict[str, bool] = {}
    async for raw in store.client.scan_iter(match=ix.replace("{", "[{]") + "*"):
        key = raw.decode()
        kind = (await store.client.type(key)).decode()
        if kind == "zset":
            found[key] = await store.client.zscore(key, sid) is not None
        elif kind == "set":
            found[key] = bool(await store.client.sismember(key, sid))
        elif kind == "hash":
            found[key] = bool(await store.client.hexists(key, sid))
    return found


@pytest.mark.parametrize("composites", [False, True], ids=["plain", "composites"])
async def test_the_creates_inline_entries_are_the_general_paths(
    open_redis: Any, redis_url: str, composites: bool
) -> None:
    """``lua/create.lua`` writes a new session's index entries inline on its common path
    (ixadd.lua's ``ix_add_entries`` written out): the same keys as a create through
    ``commit`` (``write.lua``), with or without composite families kept."""
    store = await open_redis(redis_url)
    if composites:  # a listing that a composite serves: its family is kept from now on
        await store.list_sessions(SessionFilter(processor_id="p"))
        await store.list_sessions(SessionFilter(tags_all={"t1"}))
    for ttl in (None, 60):
        a, b = f"a{ttl}", f"b{ttl}"
        await store.create_session(id=a, processor_id="p", tags={"t1", "t2"}, ttl=ttl)
        await store.commit(
            [CreateOp(NewSession(id=b, processor_id="p", tags=("t1", "t2"), ttl=ttl))]
        )
        ours, general = await _index_membership(store, a), await _index_membership(store, b)
        assert set(ours) == set(general)
        assert {k for k, v in ours.items() if v} == {k for k, v in general.items() if v}
        assert sum(ours.values()) >= 7 + (2 if composites else 0)


@pytest.mark.parametrize("fresh", [False, True], ids=["all-keys", "doc-key-only"])
async def test_a_retried_create_finds_its_own_write(
    open_redis: Any, redis_url: str, fresh: bool
) -> None:
    """A create whose reply was lost is sent again with its token: the script recognises
    its own write; another create of the id is refused (with the id's five keys, or, for
    an id generated for the create, its document's key alone)."""
    store = await open_redis(redis_url)
    p = prepare(CreateOp(NewSession(data={"a": 1}, tags={"t"})), store._limits)
    loc = store._keys.home(p.session_id)
    call = store._writes.call(to_ms(store.clock.now()))
    call.create_one(loc, p, None, fresh=fresh)
    assert len(call.keys) == (1 if fresh else 5)
    first = await store._writes.run(call, idempotent=True, what="create")
    again = await store._writes.run(call, idempotent=True, what="create")
    assert not first.done and again.done
    other = store._writes.call(to_ms(store.clock.now()))
    other.create_one(loc, p, None, fresh=fresh)
    with pytest.raises(SessionExistsError):
        await store._writes.run(other, idempotent=True, what="create")
    got = await store.get_session(p.session_id)
    assert got is not None and got.data == {"a": 1} and got.version == 1


async def test_a_generated_id_is_created_with_its_document_key_alone(
    open_redis: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``create_session`` without an ``id`` sends ``lua/create.lua`` the new id's document
    key alone (a new ULID: nothing of it to clear); with an ``id`` all five keys, whose
    event keys the script clears. Should the document key be held after all (an expired
    session), the script names the other keys itself and clears them."""
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    sent: list[int] = []
    script = store._backend.script

    async def spied(s: Any, keys: Any, args: Any, during: Any = None) -> Any:
        sent.append(len(keys))
        return await script(s, keys, args, during)

    monkeypatch.setattr(store._backend, "script", spied)
    await store.create_session(data={"a": 1})
    await store.create_session(id="given", data={"a": 1})
    assert sent == [1, 5]
    monkeypatch.undo()
    # an expired session with events, checkpoints and keyed events holds the id
    old = await store.create_session(id="taken", ttl=1, tags={"old"})
    await store.append_events(old.id, [{"type": "a", "key": "k1"}, {"type": "b"}])
    await store.save_checkpoint(old.id, label="c1")
    names = store.key_names(old.id)
    parts = ("events", "ckpt", "etypes", "ekeys")
    # (the type index is made by the first read that filters on types)
    assert [await store.client.exists(names[part]) for part in parts] == [1, 1, 0, 1]
    await store.get_events(old.id, types=["a"])
    assert [await store.client.exists(names[part]) for part in parts] == [1, 1, 1, 1]
    clock.advance(2)
    p = prepare(CreateOp(NewSession(id="taken", data={"b": 2})), store._limits)
    call = store._writes.call(to_ms(clock.now()))
    call.create_one(store._keys.home("taken"), p, None, fresh=True)
    assert call.keys == [names["doc"]]
    await store._writes.run(call, idempotent=True, what="create")
    assert [await store.client.exists(names[part]) for part in parts] == [0, 0, 0, 0]
    got = await store.get_session("taken")
    assert got is not None and got.data == {"b": 2} and got.event_count == 0
    assert await store.get_events("taken") == []
    ix = store._keys.index(0)
    assert await store.client.sismember(ix + "t:old", "taken") == 0


class _Bomb:
    """Unpickling this creates a file: proof that nothing was ever unpickled."""

    path = ""

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.path),))


async def test_garbage_and_pickles_are_integrity_errors(
    open_redis: Any, redis_url: str, tmp_path: Path
) -> None:
    store = await open_redis(redis_url)
    _Bomb.path = str(tmp_path / "executed")
    payload = pickle.dumps(_Bomb())
    # a string where a session document should be
    await store.client.set(store.key_names("str")["doc"], payload)
    # a document whose field holds a pickle instead of JSON
    good = await store.create_session(id="field", data={"x": 1})
    await write_fields(store.client, store.key_names("field")["doc"], {'d:"x"': payload})
    # a hash without the header
    await store.client.hset(store.key_names("nohead")["doc"], "junk", payload)
    # garbage in an event log and a checkpoint
    ev = await store.create_session(id="ev")
    await store.append_events(ev.id, [{"type": "ok"}])
    await store.client.zadd(store.key_names("ev")["events"], {payload: 2})
    await write_fields(store.client, store.key_names("ev")["doc"], {"ec": 2, "ls": 2})
    await store.client.hset(store.key_names("ev")["ckpt"], "cp1", payload)
    for sid in ("str", "field", "nohead"):
        with pytest.raises(IntegrityError) as info:
            await store.get_session(sid)
        assert sid in str(info.value)
    with pytest.raises(IntegrityError):
        await store.update_session("str", merge_data={"a": 1})
    with pytest.raises(IntegrityError):
        await store.get_events("ev")
    # a corrupt checkpoint is left out of the listing and reported; reading it raises
    assert await store.list_checkpoints("ev") == []
    assert "ev/checkpoints/cp1" in store.corrupt_records
    with pytest.raises(IntegrityError, match="ev/checkpoints/cp1"):
        await store.get_checkpoint("ev", "cp1")
    with pytest.raises(IntegrityError):
        await store.get_sessions(["field", good.id])
    # a scan (backup) skips and reports corrupt records instead of failing
    seen = [r.session.id async for r in store.scan(include_expired=True)]
    assert "str" not in seen and "nohead" not in seen and "field" not in seen
    assert {"field", "nohead"} <= set(store.corrupt_records)
    assert not Path(_Bomb.path).exists(), "a stored payload was unpickled"  # noqa: ASYNC240
    probe = await store.create_session(data={"still": "working"})
    assert await store.get_session(probe.id) == probe


async def test_tags_added_out_of_order_keep_the_session_in_sorted_pages(
    open_redis: Any, redis_url: str
) -> None:
    """The index record lists tags sorted whatever order the document holds them in; a
    record that differed from the document's made readers drop the row as stale."""
    store = await open_redis(redis_url)
    s = await store.create_session(id="late", processor_id="p", tags={"zz"})
    await store.update_session(s.id, add_tags={"aa", "mm"})
    for sort_by in ("created_at", "updated_at", "expires_at", "id"):
        flt = SessionFilter(processor_id="p")
        page = await store.list_sessions(flt, QueryOptions(sort_by=sort_by))
        assert page.ids == ["late"], sort_by
    page = await store.list_sessions(
        SessionFilter(tags_all={"aa"}), QueryOptions(sort_by="updated_at")
    )
    assert page.ids == ["late"]


async def test_filtered_page_reads_only_the_page(open_redis: Any, redis_url: str) -> None:
    """O(page): a filtered, sorted page loads about a page of documents."""
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    for batch in range(12):
        ops = [
            CreateOp(NewSession(tags={"hot"} if (batch * 100 + i) % 10 == 0 else {"cold"}))
            for i in range(100)
        ]
        await store.commit(ops)
        clock.advance(1)
    flt = SessionFilter(tags_all={"hot"}, created_after=clock.now() - timedelta(seconds=8))
    # the first listing by tag and created_at has the writes keep that composite (and
    # back-fills it): not the page's cost
    await store.list_sessions(flt, QueryOptions(limit=10, order="desc"))
    await raw(store, "CONFIG", "RESETSTAT")
    page = await store.list_sessions(flt, QueryOptions(limit=10, order="desc"))
    assert len(page) == 10
    stats = await store.client.info("commandstats")
    gets = stats.get("cmdstat_get", {}).get("calls", 0)
    assert gets <= 12, f"read {gets} documents for a page of 10"
    assert stats["cmdstat_evalsha"]["calls"] <= 2
    assert await store.count_sessions(flt) == 70


async def test_the_walk_reads_the_pages_documents_as_every_read_does(
    open_redis: Any, redis_url: str
) -> None:
    """On a single server the walk script reads the returned rows' documents itself (one
    round trip for a page); what it cannot hand over as a plain document goes through
    the store's exact read, so a page holds what ``get_session`` would return: grouped
    sessions through their stubs (by a store that never saw their group), corrupt
    documents left out and reported, an edited document's stale row left out and
    repaired, a field in another spelling read as the session it is."""
    store = await open_redis(redis_url)
    opts = QueryOptions(sort_by="created_at")
    made = [
        await store.create_session(id="a", tags={"t"}, data={"x": 1}),
        await store.create_session(id="b", tags={"t"}, group="g1", metadata={"m": [1]}),
        await store.create_session(id="c", tags={"t"}, group="g2"),
        await store.create_session(id="d", tags={"t", "u"}),
        await store.create_session(id="e", tags={"t"}),
        await store.create_session(id="f", tags={"t"}),
        await store.create_session(id="g", tags={"t"}),
    ]
    fresh = await open_redis(redis_url)  # no group cached
    flt = SessionFilter(tags_all={"t"})
    assert (await fresh.list_sessions(flt, opts)).items == made
    assert fresh._writes.groups == {"b": "g1", "c": "g2"}
    await store.client.delete(store.key_names("c", "g2")["doc"])  # a stub, no document
    await write_fields(store.client, store.key_names("d")["doc"], {'d:"x"': b"\x80garbage"})
    await store.client.delete(store.key_names("e")["doc"])
    await store.client.set(store.key_names("e")["doc"], b"not a hash")
    await write_fields(store.client, store.key_names("f")["doc"], {"t:new": ""})  # behind its back
    await write_fields(store.client, store.key_names("g")["doc"], {"ver": "01"})  # version 1 still
    fresh = await open_redis(redis_url)
    page = await fresh.list_sessions(flt, opts)
    assert page.ids == ["a", "b", "g"]
    assert page.items[:2] == made[:2] and page.items[2] == made[6]
    assert {"d", "e"} <= set(fresh.corrupt_records)
    # the repair (queued) put f's row back from its document: listed with the new tag
    await fresh.rebuild_indexes()
    assert "f" in (await fresh.list_sessions(SessionFilter(tags_all={"new"}), opts)).ids


async def test_cleanup_removes_index_entries(open_redis: Any, redis_url: str) -> None:
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    s = await store.create_session(ttl=1, tags={"t"}, processor_id="p", group="g")
    keep = await store.create_session(tags={"t"}, processor_id="p")
    clock.advance(2)
    assert await store.cleanup_expired_sessions() == 1
    ix = store.key_names("x")["doc"].split("{")[0] + "{~0}:"
    for key in ("r", "c", "u", "x", "n", "i"):
        kind = await raw(store, "TYPE", ix + key)
        if kind == b"hash":
            assert not await store.client.hexists(ix + key, s.id)
        elif kind == b"zset":
            assert await store.client.zscore(ix + key, s.id) is None
    for key in ("s:active", "p:p", "t:t"):
        assert await store.client.smembers(ix + key) == {keep.id.encode()}
    assert await store.client.exists(store.key_names(s.id)["doc"]) == 0  # the stub too


async def test_stale_index_entries_are_skipped_and_repaired(
    open_redis: Any, redis_url: str
) -> None:
    """A document reclaimed behind the store's back (native expiry) leaves index entries:
    readers skip them and remove them."""
    store = await open_redis(redis_url)
    gone = await store.create_session(tags={"t"})
    kept = await store.create_session(tags={"t"})
    await store.client.delete(*store.key_names(gone.id).values())
    assert (await store.list_sessions(SessionFilter(tags_all={"t"}))).ids == [kept.id]
    assert await store.count_sessions(SessionFilter(tags_all={"t"})) == 1  # repaired first
    ix = store.key_names("x")["doc"].split("{")[0] + "{~0}:"
    assert not await store.client.hexists(ix + "r", gone.id)
    assert await store.client.smembers(ix + "t:t") == {kept.id.encode()}


async def _script_calls(store: RedisStore) -> int:
    """Script calls since CONFIG RESETSTAT (each is a round trip; commands run inside a
    script have their own counters)."""
    stats = await store.client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_grouped_create_is_one_round_trip(open_redis: Any, redis_url: str) -> None:
    """The write script claims the id's stub and writes the session in one step."""
    store = await open_redis(redis_url)
    await store.create_session(id="warm", group="g")
    # every script on the server (a batch's read script is loaded on its first NOSCRIPT,
    # a round trip more, unless an earlier test on this server loaded it)
    await store._backend.load_scripts()
    await raw(store, "CONFIG", "RESETSTAT")
    s = await store.create_session(id="one", group="g", data={"a": 1})
    assert await _script_calls(store) == 1
    assert await store.client.get(store.key_names("one")["doc"]) == b"\x03Gg"
    await raw(store, "CONFIG", "RESETSTAT")
    results = await store.commit([CreateOp(NewSession(id=f"tx{i}", group="g")) for i in range(3)])
    assert [r.version for r in results] == [1, 1, 1]
    assert await _script_calls(store) <= 2  # the batch's read + one script
    fresh = await open_redis(redis_url)  # found through the stubs
    assert await fresh.get_session("one") == s
    assert {x.id for x in (await fresh.get_sessions(["tx0", "tx2"])).values()} == {"tx0", "tx2"}


async def test_grouped_create_when_the_id_is_taken(open_redis: Any, redis_url: str) -> None:
    """When something holds the id the script leaves it to the separate claim, which
    refuses a live session and clears an expired one (ungrouped or in another group)."""
    clock = ManualClock()
    store = await open_redis(redis_url, clock=clock)
    await store.create_session(id="live")
    with pytest.raises(SessionExistsError):
        await store.create_session(id="live", group="g")
    await store.create_session(id="grouped", group="a")
    with pytest.raises(SessionExistsError):
        await store.create_session(id="grouped", group="b")
    with pytest.raises(SessionExistsError):
        await store.commit([CreateOp(NewSession(id="grouped", group="b"))])
    await store.create_session(id="old", ttl=1)
    await store.create_session(id="old-tx", ttl=1)
    await store.create_session(id="old-grouped", group="a", ttl=1)
    clock.advance(5)
    s = await store.create_session(id="old", group="g")
    (tx,) = await store.commit([CreateOp(NewSession(id="old-tx", group="g"))])
    t = await store.create_session(id="old-grouped", group="b", data={"new": True})
    fresh = await open_redis(redis_url, clock=clock)
    assert await fresh.get_session("old") == s
    assert await fresh.get_session("old-tx") == tx
    assert await fresh.get_session("old-grouped") == t
    assert await store.client.get(store.key_names("old-grouped")["doc"]) == b"\x03Gb"
    assert await store.client.exists(store.key_names("old-grouped", "a")["doc"]) == 0
