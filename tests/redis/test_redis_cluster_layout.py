"""Redis Cluster key layout 4 (issue 21): each session's keys in its index shard's slot, so
a write script updates the index in the same call and a listing's walk reads its rows'
documents in the same round; a namespace of layout 3 keeps working where it is, and is
upgraded by copying it into a new namespace (``migrate``)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot
from sessionstore_redis import RedisStore
from sessionstore_redis._indexer import IndexQueue

from sessionstore import (
    ConfigurationError,
    ManualClock,
    QueryOptions,
    Session,
    SessionFilter,
    migrate,
)
from tests.redis.calls import count_reads
from tests.redis.servers import RedisCluster

pytestmark = pytest.mark.asyncio


def _tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


async def test_a_new_namespace_gets_layout_4_and_writes_index_in_the_same_call(
    redis_cluster: RedisCluster, open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(IndexQueue, "DELAY", 60.0)  # a queued update would not be sent
    store: RedisStore = await open_redis(redis_cluster.url)
    assert store.key_layout == 4
    keys = store._keys
    marker = await store.client.get(keys.layout_key)
    assert marker == f"4:{keys.shards}".encode()
    a = await store.create_session(id="lay-a", processor_id="p", tags={"t"})
    g = await store.create_session(id="lay-g", group="crew", processor_id="p")
    # the keys: behind their index shard's tag (a grouped session's: its group's shard)
    for name, key in store.key_names(a.id).items():
        assert _tag(key) == f"~{keys.shard(a.id)}", name
    for key in store.key_names(g.id, "crew").values():
        assert _tag(key) == f"~{keys.shard('crew')}"
    assert store._here_index().take() == []  # nothing queued: the scripts indexed
    client = store.client
    assert await client.hget(keys.index(keys.shard(a.id)) + "r", a.id) is not None
    assert await client.hget(keys.index(keys.shard("crew")) + "r", g.id) is not None
    a = await store.update_session(a.id, status="paused")
    a = await store.append_events(a.id, [{"type": "e"}])
    g = await store.append_events(g.id, [{"type": "e"}])
    assert store._here_index().take() == []
    # another client sees every write at once (no queue to wait for)
    other: RedisStore = await open_redis(redis_cluster.url)
    assert other.key_layout == 4
    assert (await other.list_sessions(SessionFilter(processor_id="p"))).ids == [a.id, g.id]
    assert (await other.list_sessions(SessionFilter(status="paused"))).ids == [a.id]
    assert await other.get_session(g.id) == g
    await store.delete_session(g.id)
    assert store._here_index().take() == []
    assert await other.count_sessions() == 1
    assert await client.hget(keys.index(keys.shard("crew")) + "r", g.id) is None


async def test_a_pages_documents_come_with_its_walk(
    redis_cluster: RedisCluster, open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round: each node's call sends its share of the page with the documents; a
    node holding more than its share sends the rest without, and those are read with one
    ``read.lua`` call per node. Grouped sessions (their stub in another shard) too."""
    clock = ManualClock()
    store: RedisStore = await open_redis(redis_cluster.url, clock=clock)
    keys = store._keys
    made = []
    for i in range(40):
        group = "crew" if i % 5 == 0 else None
        made.append(await store.create_session(id=f"d{i:02d}", tags={"t"}, group=group))
        clock.advance(1)
    flt = SessionFilter(tags_all={"t"})
    opts = QueryOptions(sort_by="created_at", order="desc", limit=40)
    want = [s.id for s in reversed(made)]
    assert (await store.list_sessions(flt, opts)).ids == want  # composes the family
    reads = count_reads(store, monkeypatch)
    page = await store.list_sessions(flt, opts)
    assert page.items == list(reversed(made))
    assert reads == []
    # sessions of one node's shards only: more of the page than that node's share
    client = store.client
    node = client.get_node_from_key(keys.index(0)).name
    mine = [k for k in range(keys.shards) if client.get_node_from_key(keys.index(k)).name == node]
    assert 1 < len(mine) < keys.shards
    crowd: list[Session] = []
    n = 0
    while len(crowd) < 40:
        sid = f"c{n:04d}"
        n += 1
        if keys.shard(sid) in mine:
            crowd.append(await store.create_session(id=sid, tags={"crowd"}))
            clock.advance(1)
    flt = SessionFilter(tags_all={"crowd"})
    assert (await store.list_sessions(flt, opts)).ids == [s.id for s in reversed(crowd)]
    reads.clear()
    page = await store.list_sessions(flt, opts)
    assert page.items == list(reversed(crowd))
    assert reads == [1]  # the rows past the node's share: one call for that node
    assert store.corrupt_records == {}


async def test_a_layout_3_namespace_keeps_its_layout_and_is_upgraded_by_a_copy(
    redis_cluster: RedisCluster, open_redis: Any, namespace: str
) -> None:
    """A namespace written before layout 4 (data, no marker) stays on layout 3, read and
    written where it is, beside layout-4 namespaces of the same Cluster; ``migrate`` into
    a new namespace moves it to layout 4 with everything (events, checkpoints, groups)."""
    clock = ManualClock()
    old: RedisStore = await open_redis(redis_cluster.url, clock=clock, key_layout=3)
    assert old.key_layout == 3
    a = await old.create_session(id="up-a", processor_id="p", data={"n": 1})
    await old.append_events(a.id, [{"type": "e", "data": {"i": i}} for i in range(5)])
    await old.save_checkpoint(a.id, label="cp1")
    await old.create_session(id="up-g", group="crew", processor_id="p")
    key = old.key_names(a.id)["doc"]
    assert _tag(key) == a.id  # layout 3: under the session's own id
    await old._here_index().flush()
    await old.client.delete(old._keys.layout_key)  # as written by a version before markers
    again: RedisStore = await open_redis(redis_cluster.url, clock=clock)  # default: 4
    assert again.key_layout == 3  # its data decides
    assert await again.client.get(again._keys.layout_key) == f"3:{again._keys.shards}".encode()
    assert again.key_names(a.id)["doc"] == key
    b = await again.create_session(id="up-b", processor_id="p")
    listed = await again.list_sessions(SessionFilter(processor_id="p"))
    assert listed.ids == ["up-a", b.id, "up-g"]  # (by id)
    # the upgrade: a copy into a new namespace, which gets layout 4
    new: RedisStore = await open_redis(redis_cluster.url, clock=clock, namespace=namespace + "-4")
    assert new.key_layout == 4
    result = await migrate(again, new)
    assert result.restored == 3
    assert (await new.list_sessions(SessionFilter(processor_id="p"))).ids == listed.ids
    for sid in listed.ids:
        assert await new.get_session(sid) == await again.get_session(sid)
        assert await new.get_events(sid) == await again.get_events(sid)
    assert await new.list_checkpoints(a.id) == await again.list_checkpoints(a.id)
    assert len(await new.list_checkpoints(a.id)) == 1
    assert _tag(new.key_names(a.id)["doc"]) == f"~{new._keys.shard(a.id)}"
    assert key_slot(new.key_names("up-g", "crew")["doc"].encode()) == key_slot(
        new._keys.index(new._keys.shard("crew")).encode()
    )


async def test_a_layout_4_namespace_keeps_its_index_shards(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    store: RedisStore = await open_redis(redis_cluster.url)
    await store.create_session(id="k1")
    with pytest.raises(ConfigurationError, match="index_shards"):
        await open_redis(redis_cluster.url, index_shards=8)


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_the_key_layout_option_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="key_layout"):
        RedisStore.from_url("redis+cluster://127.0.0.1:7000", key_layout=5)
