"""The whole conformance suite through the sync facade (``sessionstore.sync``), on memory,
file and Redis: every call goes thread -> blocking facade -> the facade's loop thread;
and again with ``per_thread_loops=True`` (each call on the calling thread's own loop;
not on Redis Cluster, which refuses it: ``tests/sync/test_sync_store.py``)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import Clock, open_store
from sessionstore.sync import SyncSessionStore
from sessionstore.testing import (
    ConcurrencyTests,
    CrudTests,
    EventTests,
    StoreConformance,
    StoreConformanceBase,
    TransactionTests,
)
from tests.redis.servers import RedisCluster, SentinelSetup
from tests.sync.via_sync import AsyncViaSync


def _via_sync(store: Any, per_thread_loops: bool = False) -> Any:
    return AsyncViaSync(SyncSessionStore(store, per_thread_loops=per_thread_loops))


def _temp_root() -> Path:
    """A store root for one test class, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="sessionstore-sync-conformance-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def _file_via_sync(root: Path, namespace: str, clock: Clock, per_thread_loops: bool) -> Any:
    store = open_store(f"file://{root}?durability=none", namespace=namespace, clock=clock)
    return _via_sync(store, per_thread_loops)


class TestSyncMemory(StoreConformance):
    cleanup_namespaces = False
    backend = MemoryBackend()
    per_thread_loops = False

    def make_store(self, *, namespace: str, clock: Clock) -> Any:
        store = MemoryStore(backend=self.backend, namespace=namespace, clock=clock)
        return _via_sync(store, self.per_thread_loops)


# The facade's second mode over the whole suite (~9 s): the full run has it, the fast run
# keeps the loop-thread mode above and tests/sync's own tests of both modes.
@pytest.mark.integration
class TestSyncMemoryPerThreadLoops(TestSyncMemory):
    per_thread_loops = True


# The whole suite through the facade on file takes ~25 s: the full run has it, the fast
# run keeps the facade on memory and the file driver's own suite.
@pytest.mark.integration
class TestSyncFile(StoreConformance):
    cleanup_namespaces = False
    root = _temp_root()
    per_thread_loops = False

    def make_store(self, *, namespace: str, clock: Clock) -> Any:
        return _file_via_sync(self.root, namespace, clock, self.per_thread_loops)


class TestSyncRedis(StoreConformance):
    cleanup_namespaces = False
    url = ""
    per_thread_loops = False

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url

    def make_store(self, *, namespace: str, clock: Clock) -> Any:
        store = open_store(self.url, namespace=namespace, clock=clock)
        return _via_sync(store, self.per_thread_loops)


class _SyncRedisTopology(
    CrudTests, EventTests, TransactionTests, ConcurrencyTests, StoreConformanceBase
):
    """A part of the suite through the facade (CRUD, events, transactions, concurrency):
    on the other Redis topologies, and in per-thread mode on file and a single server
    (the whole suite runs through the facade on memory, file and a single server above,
    and directly on each driver)."""

    cleanup_namespaces = False
    url = ""
    per_thread_loops = False

    def make_store(self, *, namespace: str, clock: Clock) -> Any:
        store = open_store(self.url, namespace=namespace, clock=clock)
        return _via_sync(store, self.per_thread_loops)


class TestSyncRedisCluster(_SyncRedisTopology):
    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster: RedisCluster) -> None:
        self.url = redis_cluster.url


class TestSyncRedisSentinel(_SyncRedisTopology):
    @pytest.fixture(autouse=True)
    def _server(self, redis_sentinel: SentinelSetup) -> None:
        self.url = redis_sentinel.url


class TestSyncRedisSentinelPerThreadLoops(TestSyncRedisSentinel):
    per_thread_loops = True


# Per-thread loops on file and a single Redis server: the same part of the suite (the
# whole suite runs per-thread on memory above, and through the loop thread on each).
@pytest.mark.integration
class TestSyncFilePerThreadLoops(_SyncRedisTopology):
    root = _temp_root()
    per_thread_loops = True

    def make_store(self, *, namespace: str, clock: Clock) -> Any:
        return _file_via_sync(self.root, namespace, clock, self.per_thread_loops)


class TestSyncRedisPerThreadLoops(_SyncRedisTopology):
    per_thread_loops = True

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url
