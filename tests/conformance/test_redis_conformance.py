"""The Redis driver runs the whole conformance suite on a single server, on Sentinel and on
Cluster, through the public path (``open_store(url)``), exactly as a third party would."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sessionstore import Clock, SessionStore, open_store
from sessionstore.testing import CorruptKind, StoreConformance
from tests.redis.docs import write_fields
from tests.redis.servers import RedisCluster, SentinelSetup

# A live server given by URL may hold other data: then every test empties its namespace.
_LIVE = bool(os.environ.get("SESSIONSTORE_TEST_REDIS_URL"))


class _RedisSuite:
    async def corrupt(
        self,
        store: SessionStore,
        kind: CorruptKind,
        session_id: str,
        checkpoint_id: str | None = None,
    ) -> None:
        """Bytes that are not JSON in a data field, an event or a checkpoint."""
        keys = store.key_names(session_id)  # type: ignore[attr-defined]
        client = store.client  # type: ignore[attr-defined]
        if kind == "session":
            await write_fields(client, keys["doc"], {'d:"x"': b"\x80garbage"})
        elif kind == "events":  # the oldest record of the log (a sorted set by seq)
            ((record, seq),) = await client.zrange(keys["events"], 0, 0, withscores=True)
            await client.zrem(keys["events"], record)
            await client.zadd(keys["events"], {b"\x80garbage": seq})
        elif kind == "checkpoint":
            await client.hset(keys["ckpt"], checkpoint_id, b"\x80garbage")
        elif kind == "checkpoint_moved":  # another checkpoint's valid record in its place
            stored = await client.hgetall(keys["ckpt"])
            other = next(k for k in stored if k.decode() != checkpoint_id)
            await client.hset(keys["ckpt"], checkpoint_id, stored[other])
        else:  # an edited value: valid JSON, wrong digest
            raw = await client.hget(keys["ckpt"], checkpoint_id)
            edited = raw.replace(b'"x":"fb"', b'"x":"ed"', 1)
            assert edited != raw
            await client.hset(keys["ckpt"], checkpoint_id, edited)

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()  # type: ignore[misc]


class TestRedisSingle(_RedisSuite, StoreConformance):
    """A private redis-server (or $SESSIONSTORE_TEST_REDIS_URL)."""

    cleanup_namespaces = _LIVE
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        return open_store(self.url, namespace=namespace, clock=clock, **options)


class TestRedisSinglePublic(_RedisSuite, StoreConformance):
    """``lean=false``: the script calls through redis-py's public API only, the path a
    redis-py whose internals moved still has (see ``_redis_internals.py``)."""

    cleanup_namespaces = _LIVE
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        return open_store(self.url, namespace=namespace, clock=clock, lean=False, **options)


class TestRedisSentinel(_RedisSuite, StoreConformance):
    """A master and a replica behind a sentinel (redis+sentinel://)."""

    cleanup_namespaces = False
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_sentinel: SentinelSetup) -> None:
        self.url = redis_sentinel.url

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        return open_store(self.url, namespace=namespace, clock=clock, **options)


class TestRedisCluster(_RedisSuite, StoreConformance):
    """A 3-master Cluster with replicas (redis+cluster://): multi-slot batches are not
    atomic there, and the capability says so (those tests skip)."""

    cleanup_namespaces = False
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        return open_store(self.url, namespace=namespace, clock=clock, **options)


class TestRedisClusterLayout3(TestRedisCluster):
    """Cluster with key layout 3 (``key_layout=3``: what a namespace written before layout
    4 keeps, each session under its own id's slot and its index updated by the queue)."""

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        options.setdefault("key_layout", 3)
        return super().make_store(namespace=namespace, clock=clock, **options)
