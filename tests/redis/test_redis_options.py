"""URLs, typed options and configuration errors of the Redis driver."""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import NoPermissionError, ResponseError
from sessionstore_redis import RedisOptions, RedisStore
from sessionstore_redis._conn import check_server

from sessionstore import (
    ConfigurationError,
    OutcomeUnknownError,
    StoreUnavailableError,
    open_store,
)
from tests.redis.servers import RedisBinaries, SentinelSetup, start_server
from tests.secrets_walk import find_secret


def _opts(url: str, **kwargs: Any) -> RedisOptions:
    store = open_store(url, **kwargs)
    assert isinstance(store, RedisStore)
    assert isinstance(store.options, RedisOptions)
    return store.options


def test_url_forms() -> None:
    o = _opts("redis://:s3cret@cache.local:6380/2?key_prefix=app:&socket_timeout=1.5")
    # the password is parsed, handed to redis-py apart, and not kept in the options
    assert (o.mode, o.host, o.port, o.db, o.password) == ("single", "cache.local", 6380, 2, "***")
    assert o.key_prefix == "app:" and o.socket_timeout == 1.5
    o = _opts("rediss://user:pw@h:6390?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert o.tls and o.username == "user" and o.ssl_cert_reqs == "none"
    assert o.ssl_ca_certs == "/ca.pem"
    o = _opts("unix:///run/redis.sock?db=3")
    assert o.unix_socket_path == "/run/redis.sock" and o.db == 3
    o = _opts("redis+sentinel://h1:26379,h2:26380/mymaster/1?wait_replicas=1")
    assert o.mode == "sentinel" and o.service_name == "mymaster" and o.db == 1
    assert o.node_list() == [("h1", 26379), ("h2", 26380)] and o.wait_replicas == 1
    o = _opts("redis+cluster://h1:7000,h2:7001,[::1]:7002")
    assert o.mode == "cluster" and o.node_list() == [("h1", 7000), ("h2", 7001), ("::1", 7002)]
    assert o.shards == 16
    assert _opts("redis://h", namespace="tenant-1", retry_deadline=3.0).retry_deadline == 3.0


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0?bogus=1",  # unknown option
        "redis://h:6379/0?socket_timeout=fast",  # wrong type
        "redis+cluster://h1:7000/1",  # a db number on Cluster
        "redis+cluster://h1:7000?db=2",
        "redis+sentinel://h1:26379",  # no service
        "redis://h:6379/zero",
        "redis://h:notaport",
        "redis://h?key_prefix={tag}",  # braces would break the hash tags
        "unix://",
        "redis://h?wait_replicas=-1",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_password_is_redacted_everywhere() -> None:
    store = open_store("redis://:hunter2@h:6379/0?socket_timeout=2")
    assert "hunter2" not in repr(store)
    assert "hunter2" not in str(store.url)
    assert "hunter2" not in repr(store.options)
    with pytest.raises(ConfigurationError) as info:
        open_store("redis+cluster://:hunter2@h1:7000/4")
    assert "hunter2" not in str(info.value)


@pytest.mark.asyncio
async def test_no_attribute_of_the_store_holds_the_password(
    redis_binaries: RedisBinaries, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Walk ``vars()`` of the store five levels deep, through its options, its redis-py
    client, pool, connections and their ``connection_kwargs``: the password is in none of
    them (redis-py gets it from a credential provider that keeps it in a slot). Nor in
    repr/str, errors or the log."""
    secret = "pw-Xq7-very-secret"
    server = start_server(redis_binaries, tmp_path, "--requirepass", secret)
    caplog.set_level(logging.DEBUG)
    try:
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0?socket_timeout=2"
        store = open_store(url, wait_replicas=0)
        assert isinstance(store, RedisStore)
        async with store:
            s = await store.create_session(data={"x": 1})
            await store.append_events(s.id, [{"type": "e"}])
            await asyncio.gather(*(store.get_session(s.id) for _ in range(8)))  # a few conns
            assert find_secret(store, secret, depth=6) == []
            assert isinstance(store.options, RedisOptions) and store.options.password == "***"
            for text in (repr(store), str(store), str(store.url), repr(store.options)):
                assert secret not in text
            creds = store.client.connection_pool.connection_kwargs["credential_provider"]
            assert secret not in repr(creds) and vars(creds) == {}
            with pytest.raises(TypeError):
                pickle.dumps(creds)
        # errors: a refused connection, then a wrong password, with the same URL shape
        server.stop()
        down = open_store(url, retry_deadline=0.3, connect_timeout=0.1)
        with pytest.raises(StoreUnavailableError) as info:
            await down.initialize()
        assert secret not in str(info.value) and secret not in repr(info.value.__cause__)
    finally:
        server.stop()
    assert secret not in caplog.text


@pytest.mark.asyncio
async def test_wrong_password_is_a_configuration_error(
    redis_binaries: RedisBinaries, tmp_path: Path
) -> None:
    server = start_server(redis_binaries, tmp_path, "--requirepass", "right-one")
    try:
        for password in ("wrong-one", None):
            auth = f":{password}@" if password else ""
            store = open_store(f"redis://{auth}127.0.0.1:{server.port}/0", retry_deadline=1.0)
            with pytest.raises(ConfigurationError) as info:
                await store.initialize()
            assert "wrong-one" not in str(info.value)
        good = open_store(f"redis://:right-one@127.0.0.1:{server.port}/0")
        async with good:
            s = await good.create_session()
            assert await good.get_session(s.id) == s
    finally:
        server.stop()


def test_a_server_older_than_6_2_is_refused_with_its_version() -> None:
    """What ``HELLO`` without arguments answers: Redis 6.0 wants a protocol version, 5.0
    does not know the command (their command tables), 6.2 and later name the version."""
    target = "redis://127.0.0.1:7000/0"
    for old in (
        "wrong number of arguments for 'hello' command",
        "unknown command `HELLO`, with args beginning with: ",
    ):
        with pytest.raises(ConfigurationError, match=r"older than Redis 6\.2"):
            check_server(None, ResponseError(old), target)
    # another refusal (a proxy's) says nothing of the version: the open pings instead
    check_server(None, NoPermissionError("NOPERM no permission to run 'hello'"), target)
    check_server(None, ResponseError("ERR unsupported command"), target)
    resp2 = [b"server", b"redis", b"version", b"6.0.16", b"proto", 2, b"mode", b"standalone"]
    with pytest.raises(ConfigurationError, match=r"Redis 6\.0\.16; .* needs 6\.2 or newer"):
        check_server(resp2, None, target)
    for version in (b"6.2.14", b"7.0.15", b"10.0.0", b"df-v1.2", b""):
        check_server({b"server": b"redis", b"version": version}, None, target)
        check_server([b"version", version], None, target)


@pytest.mark.asyncio
async def test_wait_replicas(redis_sentinel: SentinelSetup, open_redis: Any) -> None:
    """WAIT after every write: one replica acknowledges; asking for two cannot succeed."""
    one = await open_redis(redis_sentinel.url, wait_replicas=1)
    s = await one.create_session(data={"durable": True})
    s = await one.update_session(s.id, merge_data={"n": 1}, expected_version=1)
    assert (await one.get_session(s.id)) == s
    two = await open_redis(redis_sentinel.url, wait_replicas=2, wait_timeout=0.2)
    with pytest.raises(OutcomeUnknownError, match="replicas acknowledged"):
        await two.update_session(s.id, merge_data={"n": 2})
    got = await one.get_session(s.id)
    assert got is not None and got.data["n"] == 2  # applied on the primary all the same
