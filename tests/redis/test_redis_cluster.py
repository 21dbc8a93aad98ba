"""Redis Cluster specifics: honest transactions, grouped batches, sharded indexes, and a
failover ridden out within the retry deadline."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sessionstore_redis._store
from redis.crc import key_slot
from sessionstore_redis import RedisStore
from sessionstore_redis._indexer import IndexQueue

from sessionstore import (
    AppendOp,
    CreateOp,
    ManualClock,
    NewSession,
    QueryOptions,
    SessionConflictError,
    SessionFilter,
    SessionUpdate,
    TransactionError,
    UpdateOp,
    open_store,
)
from sessionstore.query import evaluate
from tests.redis.calls import count_reads
from tests.redis.processes import command
from tests.redis.servers import RedisBinaries, RedisCluster, start_cluster

pytestmark = pytest.mark.asyncio


def _other_slot_ids(store: RedisStore) -> tuple[str, str]:
    a = "alpha"
    slot = key_slot(store.key_names(a)["doc"].encode())
    for n in range(100):
        b = f"beta{n}"
        if key_slot(store.key_names(b)["doc"].encode()) != slot:
            return a, b
    raise AssertionError("no second slot found")


async def test_multi_slot_batch_refused_before_writing(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    store = await open_redis(redis_cluster.url)
    assert store.capabilities.atomic_multi_session is False
    a_id, b_id = _other_slot_ids(store)
    a = await store.create_session(id=a_id)
    b = await store.create_session(id=b_id)
    with pytest.raises(TransactionError, match="group"):
        await store.commit(
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"x": 1})),
                AppendOp(b.id, [{"type": "e"}]),
            ]
        )
    assert await store.get_session(a.id) == a
    assert await store.get_session(b.id) == b
    with pytest.raises(TransactionError):
        async with store.transaction() as tx:
            await tx.update_session(a.id, status="paused")
            await tx.create_session(id=b_id + "-new")
    assert await store.get_session(b_id + "-new") is None


async def test_grouped_batches_are_atomic_on_cluster(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    store = await open_redis(redis_cluster.url)
    a = await store.create_session(id="ga", group="team")
    b = await store.create_session(id="gb", group="team")
    results = await store.commit(
        [
            UpdateOp(a.id, SessionUpdate(merge_data={"x": 1}), expected_version=1),
            AppendOp(b.id, [{"type": "e"}], expected_version=1),
            CreateOp(NewSession(id="gc", group="team", data={"parent": "ga"})),
        ]
    )
    assert [getattr(r, "version", r) for r in results] == [2, 2, 1]
    before = [await store.get_session(sid) for sid in ("ga", "gb", "gc")]
    with pytest.raises(SessionConflictError):
        await store.commit(
            [
                UpdateOp(a.id, SessionUpdate(merge_data={"y": 2}), expected_version=2),
                AppendOp(b.id, [{"type": "never"}], expected_version=1),  # stale
            ]
        )
    assert [await store.get_session(sid) for sid in ("ga", "gb", "gc")] == before
    assert [e.type for e in await store.get_events("gb")] == ["e"]


async def test_sharded_indexes_merge_into_one_order(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    clock = ManualClock()
    store = await open_redis(redis_cluster.url, clock=clock)
    sessions = []
    for i in range(120):
        sessions.append(
            await store.create_session(
                id=f"s{i:03d}", tags={"even" if i % 2 == 0 else "odd"}, ttl=None if i % 3 else 50
            )
        )
        if i % 7 == 0:
            clock.advance(1)
    shards_used = {store._keys.shard(s.id) for s in sessions}
    assert len(shards_used) > 8  # the ids really spread over the shard keys
    universe = list((await store.get_sessions([s.id for s in sessions])).values())
    for flt in (SessionFilter(), SessionFilter(tags_all={"even"})):
        for sort_by in ("created_at", "expires_at", "id"):
            for order in ("asc", "desc"):
                want = evaluate(
                    universe,
                    flt,
                    QueryOptions(sort_by=sort_by, order=order, limit=1000),
                    clock.now(),
                ).ids
                got: list[str] = []
                opts = QueryOptions(sort_by=sort_by, order=order, limit=13)
                page = await store.list_sessions(flt, opts)
                got += page.ids
                while page.next_cursor:
                    page = await store.list_sessions(
                        flt,
                        QueryOptions(
                            sort_by=sort_by, order=order, limit=13, cursor=page.next_cursor
                        ),
                    )
                    got += page.ids
                assert got == want, (flt, sort_by, order)
        assert await store.count_sessions(flt) == len(want)


async def test_a_pages_documents_are_read_once_per_node(
    redis_cluster: RedisCluster, open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's documents are read with one ``read.lua`` call per node (the node's other
    documents named in ``ARGV``), not one per document; a document its call cannot read
    (the client's slot map sent it to the wrong node) is read the exact way: listed,
    never reported as corrupt."""
    clock = ManualClock()
    # key layout 3: the walk cannot read the documents (another slot); with layout 4 it
    # does (test_redis_cluster_layout.py)
    store = await open_redis(redis_cluster.url, clock=clock, key_layout=3)
    assert store.key_layout == 3
    made = []
    for i in range(40):
        made.append(await store.create_session(id=f"n{i:02d}", tags={"t"}, group=None))
        clock.advance(1)
    want = [s.id for s in reversed(made)]
    opts = QueryOptions(sort_by="created_at", order="desc", limit=40)
    flt = SessionFilter(tags_all={"t"})
    assert (await store.list_sessions(flt, opts)).ids == want  # composes the family
    client = store.client
    nodes = {client.get_node_from_key(store.key_names(s.id)["doc"]).name for s in made}
    assert len(nodes) == 3
    calls = count_reads(store, monkeypatch)  # read.lua calls per request
    commands = store._backend.commands

    async def plain(key: str, packed: bytes, count: int) -> Any:
        if packed.startswith(b"*2\r\n$3\r\nGET\r\n"):  # one document by a plain GET
            calls.append(1)
        return await commands(key, packed, count)

    monkeypatch.setattr(store._backend, "commands", plain)
    page = await store.list_sessions(flt, opts)
    assert page.items == list(reversed(made))
    assert calls == [3]  # one pipelined request: a call per node
    # a stale slot map: one document's key sent with another node's call
    wrong = store.key_names("n07")["doc"]
    right = client.get_node_from_key(wrong)
    other = next(n for n in client.get_primaries() if n.name != right.name)
    # (the store finds a document's node from its key's slot: that slot is taken for one
    # of the other node's, in the store's lookup only)
    elsewhere = next(
        key_slot(key.encode())
        for key in (store.key_names(s.id)["doc"] for s in made)
        if client.get_node_from_key(key).name == other.name
    )
    monkeypatch.setattr(
        sessionstore_redis._store,
        "key_slot",
        lambda key: elsewhere if key == wrong.encode() else key_slot(key),
    )
    calls.clear()
    page = await store.list_sessions(flt, opts)
    assert page.items == list(reversed(made))
    assert calls == [3, 1]  # then the exact read of that one document
    assert store.corrupt_records == {}


async def test_a_listing_walks_each_nodes_shards_in_one_call(
    redis_cluster: RedisCluster, open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 16 index shards are walked with one call per node (``lua/walkn.lua``: the
    node's shards one after another), the nodes in parallel; when a node's call fails
    (a stale slot map sent a shard to a node that does not hold it) its shards are walked
    one by one, and the page is the same."""
    clock = ManualClock()
    store = await open_redis(redis_cluster.url, clock=clock)
    made = []
    for i in range(60):
        made.append(await store.create_session(id=f"w{i:02d}", processor_id="p" if i % 2 else "q"))
        clock.advance(1)
    flt = SessionFilter(processor_id="p")
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=12)
    want = [s.id for s in reversed(made) if s.processor_id == "p"]
    assert (await store.list_sessions(flt, opts)).ids == want[:12]  # composes the family
    batches: list[list[str]] = []  # the scripts of each pipelined request
    pipeline = store._backend.pipeline

    async def counted(batch: Any, here: Any = None) -> Any:
        batches.append([call[1].name for call in batch])
        return await pipeline(batch, here)

    monkeypatch.setattr(store._backend, "pipeline", counted)
    queries = store._queries

    async def listed() -> list[str]:
        got: list[str] = []
        cursor = None
        while True:
            options = QueryOptions(sort_by="updated_at", order="desc", limit=12, cursor=cursor)
            page = await queries.list_sessions(flt, options)
            got += page.ids
            if page.next_cursor is None:
                return got
            cursor = page.next_cursor

    assert await listed() == want
    walks = [names for names in batches if names[0].startswith("walk")]
    assert len(walks) == 3  # a round a page
    assert all(len(names) == 3 and "walkn" in names for names in walks), walks
    # a stale map: shard 0 taken for a shard of another node, so its node's call names
    # keys that node does not hold
    slots = queries._slots
    manager = store.client.nodes_manager
    node = [manager.get_node_from_slot(slot).name for slot in slots]
    other = next(k for k in range(16) if node[k] != node[0])
    monkeypatch.setattr(queries, "_slots", [slots[other], *slots[1:]])
    batches.clear()
    assert await listed() == want
    walks = [names for names in batches if names[0].startswith("walk")]
    assert len(walks) == 6  # a round a page, then the failed call's shards one by one
    assert all(set(names) == {"walk"} for names in walks[1::2]), walks


async def test_grouped_create_round_trips_on_cluster(
    redis_cluster: RedisCluster, open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script reaches one slot only: a grouped create is one script when the id's home
    key shares the group's slot, else the id is claimed first (two)."""
    # a create's index update is queued and sent by the queue's timer (~20 ms): it must not
    # land inside a count (it did once in a loaded full run); flushed by hand between them
    monkeypatch.setattr(IndexQueue, "DELAY", 60.0)
    store = await open_redis(redis_cluster.url)
    client = store.client
    await store._backend.load_scripts()  # on every primary: no NOSCRIPT retries below

    async def script_calls() -> int:
        stats = await client.info("commandstats", target_nodes=client.PRIMARIES)
        return sum(
            node.get(f"cmdstat_{name}", {}).get("calls", 0)
            for node in stats.values()
            for name in ("evalsha", "eval")
        )

    same = "crew"  # the id is the group's name: both keys hash on "crew"
    assert key_slot(store.key_names(same)["doc"].encode()) == key_slot(
        store.key_names(same, same)["doc"].encode()
    )
    await client.config_resetstat(target_nodes=client.PRIMARIES)
    await store.create_session(id=same, group=same)
    assert await script_calls() == 1
    await store._here_index().flush()
    other = next(
        f"m{n}"
        for n in range(100)
        if key_slot(store.key_names(f"m{n}")["doc"].encode())
        != key_slot(store.key_names(f"m{n}", same)["doc"].encode())
    )
    await client.config_resetstat(target_nodes=client.PRIMARIES)
    s = await store.create_session(id=other, group=same)
    assert await script_calls() == 2
    await store._here_index().flush()
    fresh = await open_redis(redis_cluster.url)
    assert await fresh.get_session(other) == s
    assert (await fresh.get_session(same)) is not None


async def test_wait_replicas_on_cluster(redis_cluster: RedisCluster, open_redis: Any) -> None:
    store = await open_redis(redis_cluster.url, wait_replicas=1)
    s = await store.create_session(id="waited", group="w")
    s = await store.update_session(s.id, merge_data={"a": 1}, expected_version=s.version)
    s = await store.append_events(s.id, [{"type": "e"}])
    assert await store.get_session(s.id) == s


# --------------------------------------------------------------------------- failover


@pytest.fixture(scope="module")
def failover_cluster(redis_binaries: RedisBinaries) -> Iterator[RedisCluster]:
    """A cluster of its own: this test kills one of its masters."""
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-failover-"))
    cluster = start_cluster(redis_binaries, workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_failover_is_ridden_out(failover_cluster: RedisCluster) -> None:
    """Kill the master of a session's slot: its replica is promoted within the deadline and
    no error reaches the caller. Writes in flight at the crash are version-checked, so a
    retry on the new master either finds them replicated (and reports success once) or
    applies them. The writes before the crash use ``wait_replicas=1``: without it, the
    last acknowledged writes may be lost in a failover (see docs/redis.md)."""
    store = open_store(
        failover_cluster.url, retry_deadline=30.0, socket_timeout=1.0, connect_timeout=0.5
    )
    setup = open_store(failover_cluster.url, wait_replicas=1, wait_timeout=5.0)
    assert isinstance(store, RedisStore)
    async with store, setup:
        ids = [f"fo{i}" for i in range(6)]
        for sid in ids:
            s = await setup.create_session(id=sid, data={"n": 0})
            await setup.update_session(sid, merge_data={"n": 1}, expected_version=s.version)
        doc_key = store.key_names(ids[0])["doc"]
        node = store.client.get_node_from_key(doc_key)
        victim = next(n for n in failover_cluster.nodes if n.port == int(node.port))
        writes = dict.fromkeys(ids, 1)

        async def bump(sid: str) -> None:
            s = await store.get_session(sid)
            assert s is not None
            await store.update_session(
                sid, merge_data={"n": s.data["n"] + 1}, expected_version=s.version
            )
            writes[sid] += 1

        victim.kill()
        killed_at = time.monotonic()
        recovered = None
        while time.monotonic() - killed_at < 40:
            await asyncio.gather(*(bump(sid) for sid in ids))
            if recovered is None and writes[ids[0]] > 1:
                recovered = time.monotonic() - killed_at
            if recovered is not None and writes[ids[0]] >= 4:
                break
        assert recovered is not None, "the writes never got through"
        for sid in ids:
            got = await store.get_session(sid)
            assert got is not None
            assert got.data["n"] == writes[sid]
            assert got.version == 1 + writes[sid]


async def test_rebuild_indexes_after_a_lost_index_update(
    redis_cluster: RedisCluster, open_redis: Any
) -> None:
    """A crash between a write and its queued index update leaves the index behind:
    readers skip what they cannot confirm, and rebuild_indexes() reconciles."""
    store = await open_redis(redis_cluster.url)
    a = await store.create_session(tags={"t"})
    b = await store.create_session(tags={"t"})
    await store.list_sessions()  # the queue is sent
    ix = store._keys.index(store._keys.shard(a.id))
    await store.client.hdel(ix + "r", a.id)  # a's index update "was lost"
    await store.client.srem(ix + "t:t", a.id)
    await store.client.zrem(ix + "i", a.id)
    await store.client.delete(*store.key_names(b.id).values())  # b vanished behind our back
    assert (await store.list_sessions(SessionFilter(tags_all={"t"}))).ids == []
    indexed, removed = await store.rebuild_indexes()
    assert indexed >= 1 and removed == 0  # b's entry was already repaired by the read
    assert (await store.list_sessions(SessionFilter(tags_all={"t"}))).ids == [a.id]
    assert await store.count_sessions() == 1


def _owner(cluster_nodes: str, slot: int) -> str | None:
    """The id of the node that ``CLUSTER NODES`` output names as owner of ``slot``."""
    for line in cluster_nodes.splitlines():
        fields = line.split()
        for spec in fields[8:]:
            if spec.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = spec.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                return fields[0]
    return None


async def _wait_for_owner(cluster: RedisCluster, slot: int, node_id: str) -> None:
    """Until every node of ``cluster``, replicas included (redis-py may load its slot map
    from any of them), names ``node_id`` owner of ``slot``. The handover below leaves no
    view that outranks the new owner's claim, so gossip always gets there; the deadline
    only keeps a broken cluster from hanging the run."""
    deadline = time.monotonic() + 120
    while True:
        views: list[str | None] = []
        for node in cluster.nodes:
            try:
                text = await asyncio.to_thread(command, node.port, "CLUSTER", "NODES")
            except OSError:  # a starved node did not answer in time: ask again
                views.append(None)
                continue
            views.append(_owner(text.decode(errors="replace"), slot))
        if all(v == node_id for v in views):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"slot {slot}: nodes still name {views}, not {node_id}")
        await asyncio.sleep(0.05)


async def _node_id(client: Any, node: Any) -> str:
    found = await client.execute_command("CLUSTER", "MYID", target_nodes=node)
    return str(found.decode() if isinstance(found, bytes) else found)


async def test_a_moved_slot_is_followed(redis_cluster: RedisCluster, open_redis: Any) -> None:
    """A slot handed to another primary behind the store's back: the first call gets
    MOVED, is sent again through redis-py's cluster client (which follows it and updates
    its slot map), and the session lands on the new owner."""
    # key layout 3: a session's keys in a slot of their own (with layout 4 every
    # namespace's sessions share the 16 index shards' slots: none is empty to move)
    store = await open_redis(redis_cluster.url, key_layout=3)
    client = store.client
    # The cluster is shared by the module's tests: take an id whose slot holds no key yet,
    # so that moving the slot strands nothing another test wrote.
    for n in range(1000):
        sid = f"moving-{n}"
        doc = store.key_names(sid)["doc"]
        slot = key_slot(doc.encode())
        if await client.cluster_countkeysinslot(slot) == 0:
            break
    else:
        raise AssertionError("no empty slot among 1,000 candidate ids")
    source = client.get_node_from_key(doc)
    target = next(n for n in client.get_primaries() if n.name != source.name)
    source_id, target_id = await _node_id(client, source), await _node_id(client, target)
    # The handover as `redis-cli --cluster` makes it: the target imports the slot, the
    # source migrates it (no key to move), then SETSLOT NODE goes to the target first,
    # which claims the slot and bumps its config epoch past every node's in that one
    # command, so no node's older view outranks the claim; then to the other primaries.
    # (The test used to send SETSLOT NODE to every primary and then BUMPEPOCH to the
    # target. Between the claim and the bump, a replica that still named the source with a
    # higher epoch answered the claim with an UPDATE and the target handed the slot back;
    # the other primaries, told it was the target's, no longer claimed it, and the nodes
    # never agreed. A test process starved under load stretched that window to seconds.)
    await client.execute_command(
        "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id, target_nodes=target
    )
    await client.execute_command(
        "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id, target_nodes=source
    )
    primaries = client.get_primaries()
    for node in [target, *(n for n in primaries if n.name != target.name)]:
        await client.execute_command(
            "CLUSTER", "SETSLOT", slot, "NODE", target_id, target_nodes=node
        )
    await _wait_for_owner(redis_cluster, slot, target_id)
    s = await store.create_session(id=sid, data={"moved": True})
    s = await store.append_events(sid, [{"type": "e"}])
    assert client.get_node_from_key(doc).name == target.name  # the map was updated
    owner = await client.execute_command("EXISTS", doc, target_nodes=target)
    assert owner == 1
    assert await store.get_session(sid) == s


async def test_concurrent_slot_map_refreshes(redis_cluster: RedisCluster, open_redis: Any) -> None:
    """Many calls find the slot map stale at once (as after a failover): one re-reads it,
    the others wait (redis-py 5.0's ``NodesManager.initialize`` has no lock: two at once
    failed with "dictionary changed size during iteration")."""
    store = await open_redis(redis_cluster.url)
    ids = [(await store.create_session(data={"i": i})).id for i in range(30)]
    for _ in range(3):
        store._backend.here().stale_topology = True
        got = await asyncio.gather(*(store.get_session(sid) for sid in ids))
        assert [s.data["i"] for s in got] == list(range(30))
        assert not store._backend.here().stale_topology
