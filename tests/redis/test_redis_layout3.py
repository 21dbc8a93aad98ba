"""Document layout 3 (``lua/doc.lua``: the document as one string) and the upgrade from
layout 2 (a hash of fields): reads take either, the first write stores a string, on a
single server, Sentinel and Cluster."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sessionstore_redis import RedisStore
from sessionstore_redis._encoding import decode_full, decode_listed, json_object, record_of

from sessionstore import (
    EventInput,
    IntegrityError,
    QueryOptions,
    Session,
    SessionExistsError,
    SessionFilter,
    UnsupportedFormatError,
)

from .docs import as_layout_2, build, fields_of, pexpiretime

pytestmark = pytest.mark.asyncio

#: values whose JSON must come back exactly (no JSON is parsed in Lua: numbers, empty
#: arrays and objects, escapes and key order are the client's)
DATA: dict[str, Any] = {
    "big": 9223372036854775807,
    "neg": -9223372036854775808,
    "f": 1.0,
    "tiny": 5e-324,
    "e": [],
    "o": {},
    "s": 'a\tb\nc"\\\u0000\u2028',
    'k"\t\n:,{}': None,
    "nested": {"a": [1, {"b": []}], "c": "x"},
}


@pytest.fixture(params=["single", "sentinel", "cluster"])
def any_url(request: pytest.FixtureRequest) -> str:
    """The same test on a single server, behind a sentinel and on Cluster."""
    if request.param == "single":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "sentinel":
        return str(request.getfixturevalue("redis_sentinel").url)
    return str(request.getfixturevalue("redis_cluster").url)


async def _made(store: RedisStore) -> dict[str, Session]:
    made = {
        "plain": await store.create_session(
            id="plain",
            data=DATA,
            metadata={"m": [1, {}], "z": 0},
            tags={"x", "y z"},
            processor_id="p",
            ttl=3600,
        ),
        "bare": await store.create_session(id="bare"),
        "grouped": await store.create_session(id="grouped", group="g", data={"a": 1}),
        "events": await store.create_session(id="events", data={"n": 0}, tags={"t"}),
    }
    made["events"] = await store.append_events(
        "events", [EventInput("a", {"i": 1}, key="k1"), EventInput("b", {"i": 2})]
    )
    await store._here_index().flush()  # Cluster: the client's index writes, sent now
    return made


async def test_a_document_is_one_string_read_exactly(open_redis: Any, any_url: str) -> None:
    """The script writes what the client decodes: every value exactly, the index record
    the stored fields make, and the test helpers' encoder agrees byte for byte."""
    store: RedisStore = await open_redis(any_url)
    made = await _made(store)
    for sid, s in made.items():
        key = store.key_names(sid, s.group)["doc"]
        assert await store.client.type(key) == b"string"
        blob = await store.client.get(key)
        assert build(fields_of(blob)) == blob
        doc = decode_full(blob, sid)
        assert not isinstance(doc, str) and doc is not None
        assert doc.session == s == await store.get_session(sid)
        listed = decode_listed(blob, sid)
        assert not isinstance(listed, str) and listed is not None
        assert listed[1].decode() == record_of(s)
    assert made["plain"].data == DATA and list(made["plain"].data) == list(DATA)
    assert await store.client.get(store.key_names("grouped")["doc"]) == b"\x03Gg"


async def test_layout_2_documents_are_read_then_converted_by_the_first_write(
    open_redis: Any, any_url: str
) -> None:
    """A store written by layout 2: every read answers the same sessions from the hashes
    (nothing is converted by a read); each kind of write stores the document as a string,
    its expiry kept, and what it wrote is exact."""
    writer: RedisStore = await open_redis(any_url)
    made = await _made(writer)
    for sid, s in made.items():
        await as_layout_2(writer.client, writer.key_names(sid, s.group)["doc"])
    await as_layout_2(writer.client, writer.key_names("grouped")["doc"])  # the stub
    keys = {sid: writer.key_names(sid, s.group)["doc"] for sid, s in made.items()}

    store: RedisStore = await open_redis(any_url)  # no copy, no group known
    for sid, s in made.items():
        assert await store.get_session(sid) == s
    assert await store.get_sessions(list(made)) == made
    page = await store.list_sessions(SessionFilter(), QueryOptions(sort_by="created_at"))
    assert sorted(page.items, key=lambda s: s.id) == sorted(made.values(), key=lambda s: s.id)
    tagged = await store.list_sessions(SessionFilter(tags_all={"t"}))
    assert tagged.items == [made["events"]]
    assert [e.seq for e in await store.get_events("events", last=20)] == [1, 2]
    assert (await store.get_event("events", key="k1")) is not None
    for key in keys.values():
        assert await store.client.type(key) == b"hash"
    # the first read by type builds the type index and notes it in the document: a write
    assert [e.seq for e in await store.get_events("events", types=["b"])] == [2]
    assert await store.client.type(keys["events"]) == b"string"
    assert await store.get_session("events") == made["events"]

    plain = await store.update_session("plain", merge_data={"new": [None]}, remove_tags={"x"})
    assert plain.data == {**DATA, "new": [None]} and plain.tags == {"y z"}
    appended = await store.append_events("events", [EventInput("c", {"i": 3})])
    assert (appended.event_count, appended.last_seq, appended.data) == (3, 3, {"n": 0})
    bare = await store.touch("bare")
    grouped = await store.update_session("grouped", merge_metadata={"m": 1})
    await store._here_index().flush()
    for key in keys.values():
        assert await store.client.type(key) == b"string"
    assert await store.client.pttl(keys["plain"]) > 0

    fresh: RedisStore = await open_redis(any_url)
    for s in (plain, appended, bare, grouped):
        assert await fresh.get_session(s.id) == s
    assert [e.type for e in await fresh.get_events("events")] == ["a", "b", "c"]
    page = await fresh.list_sessions(SessionFilter(tags_all={"t"}))
    assert page.items == [appended]


async def test_a_layout_2_session_keeps_its_expiry_through_the_conversion(
    open_redis: Any, redis_url: str
) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="x", ttl=3600, data={"a": 1})
    key = store.key_names("x")["doc"]
    await as_layout_2(store.client, key)
    before = await pexpiretime(store.client, key)
    await store.append_events("x", [{"type": "e"}])
    assert await store.client.type(key) == b"string"
    assert await pexpiretime(store.client, key) == before


async def test_a_create_over_a_layout_2_session_is_refused(open_redis: Any, redis_url: str) -> None:
    """``lua/create.lua`` stores the document with ``SET NX``: a layout-2 document (a
    hash) holds the id as a string does; the live session stays as it was."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="h", data={"a": 1}, tags={"t"})
    key = store.key_names("h")["doc"]
    await as_layout_2(store.client, key)
    with pytest.raises(SessionExistsError):
        await store.create_session(id="h", data={"b": 2})
    assert await store.client.type(key) == b"hash"
    got = await store.get_session("h")
    assert got is not None and got.data == {"a": 1} and got.tags == {"t"}


async def test_a_malformed_or_newer_document_is_refused(open_redis: Any, redis_url: str) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="m", data={"a": 1})
    key = store.key_names("m")["doc"]
    blob = await store.client.get(key)
    for bad in (blob[:100], blob.replace(b"\x00", b"\x01", 1), blob[:-1] + b"\n"):
        await store.client.set(key, bad)
        with pytest.raises(IntegrityError):
            await store.get_session("m")
        with pytest.raises(IntegrityError):
            await store.update_session("m", merge_data={"b": 2})
    await store.client.set(key, b"\x05" + blob[1:])
    with pytest.raises(UnsupportedFormatError):
        await store.get_session("m")
    with pytest.raises(UnsupportedFormatError):
        await store.update_session("m", merge_data={"b": 2})


@pytest.mark.parametrize(
    "value",
    [{}, {"a": 1}, {"a": [1, {"b": "x\n,\t:"}], "é": None, "c": {"d": 1.5e300}, "": ""}],
)
async def test_json_object_members_and_size(value: dict[str, Any]) -> None:
    """The document's data/metadata bytes: members ``"key"\t:value`` joined by ``\n,``,
    decoding to the value; the size is the compact JSON's length less one (0 if empty)."""
    raw, size = json_object(value)
    members = [orjson.dumps(k) + b"\t:" + orjson.dumps(v) for k, v in value.items()]
    assert raw == b"{" + b"\n,".join(members) + b"}"
    assert orjson.loads(raw) == value
    assert size == (len(orjson.dumps(value)) - 1 if value else 0)
