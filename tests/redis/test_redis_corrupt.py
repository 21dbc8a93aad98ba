"""Corrupt records on Redis: one bad checkpoint blocks neither its session nor a backup
(issue #13, item 9); wrong-type keys (issue #14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sessionstore_redis import RedisStore

from sessionstore import BaseSessionStore, IntegrityError, ManualClock
from sessionstore.driver import primitives_of
from tests.corrupt_checkpoints import check_corrupt_checkpoint_is_skipped_and_reported

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("damage", ["garbage", "another_id", "digest"])
async def test_a_corrupt_checkpoint_is_skipped_and_reported(
    open_redis: Any, redis_url: str, tmp_path: Path, damage: str
) -> None:
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_url, clock=clock)

    async def corrupt(st: BaseSessionStore, sid: str, cp_id: str) -> None:
        key = store.key_names(sid)["ckpt"]
        if damage == "garbage":
            await store.client.hset(key, cp_id, b"\x80not json")
        elif damage == "another_id":
            fields = await store.client.hgetall(key)
            other = next(v for k, v in fields.items() if k != cp_id.encode())
            await store.client.hset(key, cp_id, other)
        else:  # readable, but not what was saved
            raw = await store.client.hget(key, cp_id)
            await store.client.hset(key, cp_id, raw.replace(b'"step":2', b'"step":7'))

    await check_corrupt_checkpoint_is_skipped_and_reported(
        store, corrupt, tmp_path, advance=lambda: clock.advance(1)
    )


async def test_a_checkpoints_key_of_the_wrong_type(open_redis: Any, redis_url: str) -> None:
    """No checkpoint is readable: the listing is empty and reports the key."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="w")
    await store.client.set(store.key_names("w")["ckpt"], b"not a hash")
    assert await store.list_checkpoints("w") == []
    assert "w/checkpoints" in store.corrupt_records


@pytest.mark.parametrize("key", ["doc", "events"])
async def test_get_events_on_a_key_of_the_wrong_type_names_the_session(
    open_redis: Any, redis_url: str, key: str
) -> None:
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="wt")
    await store.append_events("wt", [{"type": "e"}])
    name = store.key_names("wt")[key]
    await store.client.delete(name)
    await store.client.sadd(name, b"a set")  # a string is a document (layout 3)
    with pytest.raises(IntegrityError) as info:
        await store.get_events("wt")
    assert info.value.record == "wt"
    assert "wrong type" in str(info.value)


async def test_the_first_append_sets_the_events_key_expiry(open_redis: Any, redis_url: str) -> None:
    """The native-expiry backstop is set after the push (before, a first append's
    PEXPIREAT ran on a list that did not exist yet and was lost)."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="ttl", ttl=3600)
    await store.append_events("ttl", [{"type": "e"}])
    assert await store.client.pttl(store.key_names("ttl")["events"]) > 0


async def test_get_session_of_a_document_key_of_the_wrong_type(
    open_redis: Any, redis_url: str
) -> None:
    """``lua/read.lua``'s one-document path answers a key that is neither a string nor a
    hash as such (and a missing key as no session), as its several-document path does."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="wrong")
    name = store.key_names("wrong")["doc"]
    await store.client.delete(name)
    await store.client.sadd(name, b"a set")
    with pytest.raises(IntegrityError) as info:
        await store.get_session("wrong")
    assert info.value.record == "wrong"
    assert "wrong type" in str(info.value)
    await store.client.delete(name)
    assert await store.get_session("wrong") is None


async def test_checkpoints_of_a_window_read_at_once(open_redis: Any, redis_url: str) -> None:
    """``load_checkpoints_many`` (a backup's window) reads each session's hash where it
    lives (a grouped session's in its group's slot) and reports a key of the wrong type,
    as ``load_checkpoints`` of each would."""
    store: RedisStore = await open_redis(redis_url)
    await store.create_session(id="plain")
    await store.create_session(id="in-group", group="g1")
    await store.create_session(id="bare")
    await store.create_session(id="broken")
    one = await store.save_checkpoint("plain", label="one")
    two = await store.save_checkpoint("in-group", label="two")
    await store.client.set(store.key_names("broken")["ckpt"], b"not a hash")
    store._writes.groups.clear()  # the group is learnt from the document, not a cache
    many = await primitives_of(store).load_checkpoints_many(
        ["plain", "in-group", "bare", "broken", "none"]
    )
    assert many["plain"] == [one]
    assert many["in-group"] == [two]
    assert many.get("bare", []) == many.get("broken", []) == many.get("none", []) == []
    assert "broken/checkpoints" in store.corrupt_records
