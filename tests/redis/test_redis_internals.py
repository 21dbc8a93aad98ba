"""The redis-py internals the driver relies on (``_redis_internals.py``) resolve on the
installed redis-py, each doing what the driver needs of it; a missing one fails loudly;
``lean=false`` runs without them. Also the connection options around them
(``pool_timeout``, ``connect_retry``, ``lean``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
import redis
from sessionstore_redis import RedisInternalsError, RedisOptions, RedisStore
from sessionstore_redis import _redis_internals as internals

from sessionstore import ConfigurationError, StoreUnavailableError, open_store
from tests.redis.servers import RedisCluster, free_port


def test_every_probe_resolves_on_the_installed_redis_py() -> None:
    """An upgrade that moves one of them makes this fail (and the lean path refuse to
    start), never a silently slower or wrong lean path."""
    assert internals._problems() == [], redis.__version__
    internals.verify()
    assert set(internals.PROBES) == {name for name, _ in _all_probes_broken()}


def _all_probes_broken() -> list[tuple[str, str]]:
    """The problems ``verify`` reports when every probe's object lacks what it reads."""

    class Bare:
        def __getattr__(self, name: str) -> Any:
            raise AttributeError(name)

    saved = {
        name: getattr(internals, name)
        for name in ("ConnectionPool", "Connection", "ClusterNode", "RedisCluster")
    }
    try:
        for name in saved:
            setattr(internals, name, lambda *a, **k: Bare())
        return internals._problems()
    finally:
        for name, value in saved.items():
            setattr(internals, name, value)


@pytest.fixture
def missing_idle_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if an upgrade renamed the pool's idle list."""

    def gone(pool: Any) -> Any:
        raise AttributeError("'ConnectionPool' object has no attribute '_available_connections'")

    monkeypatch.setattr(internals, "idle_connections", gone)
    monkeypatch.setattr(internals, "_verified", [])


@pytest.mark.asyncio
@pytest.mark.usefixtures("missing_idle_list")
async def test_a_missing_internal_fails_loudly_and_lean_false_still_works(
    redis_url: str, namespace: str
) -> None:
    store = open_store(redis_url, namespace=namespace, lean=True)
    with pytest.raises(RedisInternalsError, match=r"pool idle list.*lean=false") as info:
        await store.initialize()
    assert isinstance(info.value, ConfigurationError)
    async with open_store(redis_url, namespace=namespace, lean=False) as public:
        s = await public.create_session(data={"a": 1})
        s = await public.append_events(s.id, [{"type": "e"}])
        assert await public.get_session(s.id) == s
        assert [e.type for e in await public.get_events(s.id)] == ["e"]


@pytest.mark.asyncio
async def test_each_probe_on_a_live_connection(redis_url: str, namespace: str) -> None:
    async with open_store(redis_url, namespace=namespace, max_connections=2) as store:
        assert isinstance(store, RedisStore)
        await store.create_session()  # one round trip: a connection is idle now
        pool = store.client.connection_pool
        idle = internals.idle_connections(pool)
        assert len(idle) == 1 and not internals.busy_connections(pool)
        conn = await pool.get_connection(*internals.get_connection_args())
        try:
            assert conn in internals.busy_connections(pool) and not idle
            assert internals.host_error(conn).endswith(str(conn.port))
            writer = internals.stream_writer(conn)
            assert isinstance(writer, asyncio.StreamWriter)
            assert not await internals.is_stale(conn)
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            assert await internals.reply_reader(conn)() in (b"PONG", "PONG")
            assert not internals.should_reconnect(conn)
            # a connection the server closed is stale (redis-py 5.0's own check misses it)
            await store.client.execute_command("CLIENT", "KILL", "SKIPME", "yes")
            await asyncio.sleep(0.05)
            assert await internals.is_stale(conn)
        finally:
            await pool.release(conn)


@pytest.mark.asyncio
async def test_cluster_probes(redis_cluster: RedisCluster, namespace: str) -> None:
    async with open_store(redis_cluster.url, namespace=namespace) as store:
        assert isinstance(store, RedisStore)
        client = store.client
        node = client.get_node_from_key("k")
        conn = internals.node_acquire(node)
        assert type(conn).__name__ == "_Conn"  # built from the marked connection class
        internals.node_release(node, conn)
        assert internals.node_acquire(node) is conn
        internals.node_release(node, conn)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "query",
    ["pool_timeout=0", "pool_timeout=-1", "connect_retry=-1", "lean=maybe", "lean=2"],
)
def test_bad_connection_options(query: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(f"redis://h:6379/0?{query}")


def test_connection_options_parse() -> None:
    store = open_store("redis://h/0?lean=false&pool_timeout=2.5&connect_retry=3")
    options: Any = store.options
    assert (options.lean, options.pool_timeout, options.connect_retry) == (False, 2.5, 3.0)
    defaults = {f.name: f.default for f in dataclasses.fields(RedisOptions)}
    assert (defaults["lean"], defaults["pool_timeout"], defaults["connect_retry"]) == (
        True,
        10.0,
        0.0,
    )


@pytest.mark.asyncio
async def test_a_refused_connection_fails_initialize_fast() -> None:
    """Nothing listening: ``initialize()`` fails at once with a clear error (it took the
    whole retry deadline, 10 s, before), not after ``retry_deadline``."""
    port = free_port()
    store = open_store(f"redis://127.0.0.1:{port}/0", retry_deadline=30.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    assert time.monotonic() - started < 5  # far from the 30 s retry deadline
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "connect_retry=0" in message
    cluster = open_store(f"redis+cluster://127.0.0.1:{port}", retry_deadline=30.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="connect_retry=0"):
        await cluster.initialize()
    assert time.monotonic() - started < 5
    # connect_retry keeps trying (a server that is still starting)
    store = open_store(f"redis://127.0.0.1:{port}/0", connect_retry=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"connect_retry=0\.5"):
        await store.initialize()
    assert time.monotonic() - started >= 0.5
