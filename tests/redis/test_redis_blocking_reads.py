"""The Redis store's blocking reads (``_blocking_reads.py``), which ``sessionstore.sync``
uses for ``get_session`` on a single server: the calling thread reads on a blocking
connection of its own, with the store's read logic, retries and errors. (The whole
conformance suite goes through them too: ``tests/conformance/test_sync_conformance.py``;
closing them at interpreter exit: ``tests/sync/test_sync_store.py``.)"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.connection
from sessionstore_redis._blocking_reads import RedisBlockingReads
from sessionstore_redis._scripts import READ

from sessionstore import InvalidSessionIdError, ManualClock, StoreUnavailableError, open_store
from sessionstore.sync import BlockingCallError, DeferToLoop, SyncSessionStore, open_sync_store
from tests.redis.servers import RedisCluster, SentinelSetup, TLSServer, free_port


def _ns() -> str:
    return f"blocking-{uuid.uuid4().hex[:12]}"


def _reads(facade: SyncSessionStore) -> RedisBlockingReads:
    reads = facade._direct
    assert isinstance(reads, RedisBlockingReads)
    return reads


@pytest.fixture
def facade(redis_url: str) -> Iterator[SyncSessionStore]:
    with open_sync_store(redis_url, namespace=_ns()) as opened:
        yield opened


def test_get_session_is_read_by_the_calling_thread(facade: SyncSessionStore) -> None:
    s = facade.create_session(data={"x": 1}, metadata={"m": "v"}, tags={"t"})
    reads = _reads(facade)
    assert len(reads.connections) == 0  # made on the first read, not before
    got = facade.get_session(s.id)
    assert got == s
    assert len(reads.connections) == 1
    assert facade.get_session("missing") is None
    # another thread: a connection of its own
    other: list[object] = []
    reader = threading.Thread(target=lambda: other.append(facade.get_session(s.id)))
    reader.start()
    reader.join(10)
    assert other == [s]
    assert len(reads.connections) == 2


def test_expired_sessions_and_include_expired(redis_url: str) -> None:
    clock = ManualClock()
    with open_sync_store(redis_url, namespace=_ns(), clock=clock) as facade:
        s = facade.create_session(ttl=timedelta(seconds=60))
        clock.advance(timedelta(seconds=61))
        assert facade.get_session(s.id) is None
        assert facade.get_session(s.id, include_expired=True) == s


def test_a_grouped_session_is_found_through_its_stub(redis_url: str) -> None:
    namespace = _ns()
    with open_sync_store(redis_url, namespace=namespace) as writer:
        s = writer.create_session(id="g-1", group="team", data={"x": 1})
    # a new store has no cached group: the read follows the stub (a second round trip)
    with open_sync_store(redis_url, namespace=namespace) as facade:
        assert facade.get_session("g-1") == s
        assert len(_reads(facade).connections) == 1


def test_a_flushed_script_is_sent_again(facade: SyncSessionStore, redis_url: str) -> None:
    s = facade.create_session()
    assert facade.get_session(s.id) == s
    redis.Redis.from_url(redis_url).script_flush()
    assert facade.get_session(s.id) == s  # NOSCRIPT: EVAL with the source


def test_errors_are_the_stores(facade: SyncSessionStore) -> None:
    with pytest.raises(InvalidSessionIdError):
        facade.get_session("")

    async def from_a_loop() -> None:
        facade.get_session("x")

    with pytest.raises(BlockingCallError):
        asyncio.run(from_a_loop())


def test_an_unreachable_server_is_retried_then_unavailable(redis_url: str) -> None:
    with open_sync_store(redis_url, namespace=_ns(), retry_deadline=0.3) as facade:
        s = facade.create_session()
        connections = _reads(facade).connections
        # every new connection of the blocking reads goes to a port nobody listens on
        connections._factory = functools.partial(
            redis.connection.Connection, host="127.0.0.1", port=free_port(), socket_timeout=1
        )
        with pytest.raises(StoreUnavailableError, match=r"unavailable for 0\.3 s"):
            facade.get_session(s.id)
        assert facade.create_session().id  # the loop's connections are untouched


def test_shutdown_closes_the_connections_and_later_reads_fail(redis_url: str) -> None:
    facade = open_sync_store(redis_url, namespace=_ns())
    s = facade.create_session()
    assert facade.get_session(s.id) == s
    connections = _reads(facade).connections
    conn = connections._slots[0].conn
    facade.shutdown()
    assert connections.closed
    assert len(connections) == 0
    assert conn._sock is None  # disconnected
    with pytest.raises(StoreUnavailableError, match="closed"):
        facade.get_session(s.id)


def test_a_store_shut_down_under_the_facade_fails_reads(redis_url: str) -> None:
    facade = open_sync_store(redis_url, namespace=_ns())
    s = facade.create_session()
    assert facade.get_session(s.id) == s
    facade.loop_thread.call(facade.store.shutdown())
    with pytest.raises(StoreUnavailableError, match="shut down"):
        facade.get_session(s.id)
    facade.shutdown()


def test_threads_beyond_max_connections_read_on_the_loop(redis_url: str) -> None:
    with open_sync_store(redis_url, namespace=_ns(), max_connections=2) as facade:
        s = facade.create_session()
        connections = _reads(facade).connections
        hold = threading.Event()
        started = threading.Barrier(4)
        results: list[object] = []

        def work() -> None:
            results.append(facade.get_session(s.id))
            started.wait(10)
            hold.wait(10)  # keep the thread (and its connection) alive

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        started.wait(10)
        assert results == [s, s, s]
        assert len(connections) == 2  # the third thread's read deferred to the loop
        with pytest.raises(DeferToLoop):
            connections.script(READ, ["k"], [])  # (this thread has no connection either)
        hold.set()
        for thread in threads:
            thread.join(10)
        # the ended threads' connections are closed and replaced by this thread's
        assert facade.get_session(s.id) == s
        assert len(connections) == 1


def test_unix_socket(redis_unix_url: str) -> None:
    with open_sync_store(redis_unix_url, namespace=_ns()) as facade:
        s = facade.create_session()
        assert facade.get_session(s.id) == s
        conn = _reads(facade).connections._slots[0].conn
        assert isinstance(conn, redis.connection.UnixDomainSocketConnection)


def test_tls_and_a_password(redis_tls: TLSServer) -> None:
    with open_sync_store(redis_tls.url(), namespace=_ns()) as facade:
        s = facade.create_session()
        assert facade.get_session(s.id) == s
        conn = _reads(facade).connections._slots[0].conn
        assert isinstance(conn, redis.connection.SSLConnection)


def test_sentinel_and_cluster_reads_stay_on_the_loop(
    redis_sentinel: SentinelSetup, redis_cluster: RedisCluster
) -> None:
    for url in (redis_sentinel.url, redis_cluster.url):
        store: Any = open_store(url)
        assert store.blocking_reads() is None
        with open_sync_store(url, namespace=_ns()) as facade:
            assert facade._direct is None
            s = facade.create_session()
            assert facade.get_session(s.id) == s


def test_close_leaves_a_connection_in_use_to_its_thread(redis_url: str) -> None:
    """A read in flight when the store shuts down keeps its connection (nothing is closed
    under a thread reading it); the thread disconnects it when its call ends."""
    facade = open_sync_store(redis_url, namespace=_ns())
    s = facade.create_session()
    assert facade.get_session(s.id) == s
    connections = _reads(facade).connections
    slot = connections._slots[0]
    slot.busy = True  # as during a call of this thread
    connections.close()
    assert slot.conn._sock is not None  # left to the thread
    slot.busy = False
    with pytest.raises(redis.ConnectionError, match="closed"):
        connections.script(READ, [s.id], [])  # its next call: refused, and it disconnects
    assert slot.conn._sock is None
    facade.shutdown()


def test_a_forked_child_connects_anew(redis_url: str) -> None:
    """A child made by fork never reads on its parent's sockets (each would take the
    other's replies): its blocking reads forget the parent's connections."""
    script = textwrap.dedent(
        f"""
        import os
        from sessionstore.sync import open_sync_store
        facade = open_sync_store({redis_url!r}, namespace={_ns()!r})
        s = facade.create_session(data={{"v": 1}})
        assert facade.get_session(s.id) == s
        connections = facade._direct.connections
        parent_conn = connections._slots[0].conn
        pid = os.fork()
        if pid == 0:
            ok = len(connections) == 0 and facade.get_session(s.id) == s
            ok = ok and connections._slots[0].conn is not parent_conn
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert facade.get_session(s.id) == s and connections._slots[0].conn is parent_conn
        print("child", os.waitstatus_to_exitcode(status))
        facade.shutdown()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "child 0" in done.stdout, done.stderr
