"""The Redis store's blocking reads (``_blocking_reads.py``), which ``sessionstore.sync``
uses for ``get_session``, ``get_sessions`` and ``get_events`` on a single server: the
calling thread reads on a blocking connection of its own, with the store's read logic,
retries and errors. (The whole
conformance suite goes through them too: ``tests/conformance/test_sync_conformance.py``;
closing them at interpreter exit: ``tests/sync/test_sync_store.py``.)"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sessionstore_redis._blocking_reads import RedisBlockingReads
from sessionstore_redis._scripts import READ
from sessionstore_redis._wire import WireSettings, wire_factory

from sessionstore import (
    EventInput,
    IntegrityError,
    InvalidSessionIdError,
    ManualClock,
    SessionNotFoundError,
    StoreUnavailableError,
    open_store,
)
from sessionstore.sync import BlockingCallError, DeferToLoop, SyncSessionStore, open_sync_store
from tests.redis.docs import fields_of
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
        connections._factory = wire_factory(
            WireSettings(host="127.0.0.1", port=free_port(), socket_timeout=1)
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
    assert not conn.connected
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
        assert conn.sock is not None and conn.sock.family == socket.AF_UNIX


def test_tls_and_a_password(redis_tls: TLSServer) -> None:
    with open_sync_store(redis_tls.url(), namespace=_ns()) as facade:
        s = facade.create_session()
        assert facade.get_session(s.id) == s
        conn = _reads(facade).connections._slots[0].conn
        assert isinstance(conn.sock, ssl.SSLSocket)


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
    assert slot.conn.connected  # left to the thread
    slot.busy = False
    with pytest.raises(redis.ConnectionError, match="closed"):
        connections.script(READ, [s.id], [])  # its next call: refused, and it disconnects
    assert slot.conn.sock is None
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


# ---------------------------------------------------------------- get_sessions, get_events


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """A call's result, or its error's type and message (to compare two paths)."""
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc), str(exc))


def _spy(reads: RedisBlockingReads, name: str) -> list[int]:
    """Counts the calls of one of the blocking reads' drivers (``_drive`` or
    ``_drive_events``): proof that a call was served on the calling thread."""
    calls: list[int] = []
    real = getattr(reads, name)

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    setattr(reads, name, counted)
    return calls


def _same_as_the_loop(facade: SyncSessionStore, method: str, *args: Any, **kwargs: Any) -> Any:
    """The facade's blocking read and the async store's method on the loop thread give
    the same result (or the same error); the result."""
    blocking = _outcome(lambda: getattr(facade, method)(*args, **kwargs))
    on_loop = _outcome(
        lambda: facade.loop_thread.call(getattr(facade.store, method)(*args, **kwargs))
    )
    assert blocking == on_loop, (method, args, kwargs)
    return blocking


def test_get_sessions_is_read_by_the_calling_thread(redis_url: str) -> None:
    clock = ManualClock()
    namespace = _ns()
    with open_sync_store(redis_url, namespace=namespace) as writer:
        grouped = writer.create_session(id="g-2", group="team", data={"g": 1})
    with open_sync_store(redis_url, namespace=namespace, clock=clock) as facade:
        reads = _reads(facade)
        drives = _spy(reads, "_drive")
        live = [facade.create_session(data={"i": i}) for i in range(3)]
        short = facade.create_session(ttl=timedelta(seconds=60))
        clock.advance(timedelta(seconds=61))
        ids = [s.id for s in live]
        cases: list[tuple[Any, dict[str, Any]]] = [
            (ids, {}),
            ([ids[0]], {}),
            ([ids[2], ids[0], ids[2]], {}),  # duplicates once, in first-seen order
            ([*ids, "missing", short.id], {}),
            ([*ids, "missing", short.id], {"include_expired": True}),
            ([short.id], {}),
            (["g-2", ids[1]], {}),  # a new store: the grouped session through its stub
            ((i for i in ids), {}),  # any iterable
            ([], {}),
        ]
        for session_ids, kwargs in cases:
            if not isinstance(session_ids, list):
                got = facade.get_sessions(session_ids, **kwargs)
                assert got == {s.id: s for s in live}
                continue
            kind, result = _same_as_the_loop(facade, "get_sessions", session_ids, **kwargs)
            assert kind == "ok"
            assert list(result) == [
                sid for sid in dict.fromkeys(session_ids) if sid in result
            ]  # (the order of the ids asked)
        assert facade.get_sessions(["g-2"])["g-2"] == grouped
        assert facade.get_sessions([*ids, short.id], include_expired=True)[short.id] == short
        assert len(drives) == len(cases) + 1  # every call but the empty one, and two more
        for bad in ("one-string", [""], [1]):
            _same_as_the_loop(facade, "get_sessions", bad)
        assert len(reads.connections) == 1


def test_get_sessions_reads_many_documents_in_one_call(facade: SyncSessionStore) -> None:
    sessions = [facade.create_session(data={"i": i}) for i in range(25)]
    reads = _reads(facade)
    sent: list[int] = []
    real = reads.connections.script

    def counted(script: Any, keys: Any, args: Any) -> Any:
        sent.append(len(keys))
        return real(script, keys, args)

    reads.connections.script = counted  # type: ignore[method-assign]
    got = facade.get_sessions([s.id for s in sessions] + ["missing"])
    assert got == {s.id: s for s in sessions}
    assert sent == [26]  # as _read_docs: one lua/read.lua call for the lot


def _event_log(facade: SyncSessionStore, clock: ManualClock) -> tuple[str, list[Any]]:
    s = facade.create_session()
    for i in range(12):
        clock.advance(timedelta(seconds=1))
        facade.append_events(s.id, [{"type": "ab"[i % 2], "data": {"i": i}}])
    events = facade.loop_thread.call(facade.store.get_events(s.id))
    assert len(events) == 12
    return s.id, events


def test_get_events_is_read_by_the_calling_thread(redis_url: str) -> None:
    clock = ManualClock()
    with open_sync_store(redis_url, namespace=_ns(), clock=clock) as facade:
        sid, events = _event_log(facade, clock)
        drives = _spy(_reads(facade), "_drive_events")
        at = [e.at for e in events]
        windows: list[dict[str, Any]] = [
            {},
            {"after_seq": 3},
            {"after_seq": 12},
            {"after_seq": 50},
            {"limit": 5},
            {"limit": 0},
            {"limit": 100},
            {"after_seq": 4, "limit": 3},
            {"last": 4},
            {"last": 0},
            {"last": 40},
            {"after_seq": 9, "last": 5},
            {"before_seq": 6},
            {"before_seq": 5, "after_seq": 4},  # empty whatever the log holds
            {"before_seq": 8, "last": 2},
            {"before_seq": 8, "after_seq": 2, "limit": 2},
            {"types": ["a"]},
            {"types": []},
            {"types": ["b"], "last": 2},
            {"at_after": at[3]},
            {"at_before": at[5], "after_seq": 1},
            {"at_after": at[2], "at_before": at[9], "types": ["a", "b"], "limit": 3},
        ]
        for window in windows:
            kind, _ = _same_as_the_loop(facade, "get_events", sid, **window)
            assert kind == "ok", window
        assert len(drives) == len(windows)
        assert facade.get_events(sid, after_seq=4, limit=3) == events[4:7]
        assert facade.get_events(sid, last=4) == events[-4:]
        assert facade.get_events(sid, types=["a"]) == events[::2]
        # errors: the same ones, raised before anything is sent
        bad: list[tuple[str, dict[str, Any]]] = [
            (sid, {"limit": 1, "last": 1}),
            (sid, {"after_seq": -1}),
            ("", {}),
            (sid, {"types": "a"}),
        ]
        for sid_, window in bad:
            kind, *_ = _same_as_the_loop(facade, "get_events", sid_, **window)
            assert kind == "error"
        assert len(drives) == len(windows) + 3  # (the errors: refused before any step)


def test_many_threads_read_events_and_sessions_at_once(redis_url: str) -> None:
    clock = ManualClock()
    with open_sync_store(redis_url, namespace=_ns(), clock=clock) as facade:
        sid, events = _event_log(facade, clock)
        others = [facade.create_session(data={"i": i}) for i in range(5)]
        wanted = {s.id: s for s in others}
        failures: list[object] = []

        def work(n: int) -> None:
            for i in range(40):
                if facade.get_events(sid, last=1 + (n + i) % 5) != events[-(1 + (n + i) % 5) :]:
                    failures.append(("events", n, i))
                if facade.get_sessions(list(wanted)) != wanted:
                    failures.append(("sessions", n, i))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []
        assert len(_reads(facade).connections) == 6


def test_get_events_of_missing_expired_and_grouped_sessions(redis_url: str) -> None:
    clock = ManualClock()
    namespace = _ns()
    with open_sync_store(redis_url, namespace=namespace, clock=clock) as writer:
        grouped = writer.create_session(id="g-3", group="team")
        writer.append_events(grouped.id, [{"type": "a"}, {"type": "b"}])
        short = writer.create_session(ttl=timedelta(seconds=60))
        writer.append_events(short.id, [{"type": "a"}])
    with open_sync_store(redis_url, namespace=namespace, clock=clock) as facade:
        drives = _spy(_reads(facade), "_drive_events")
        # a new store: the plain window finds a stub, the script follows it
        kind, page = _same_as_the_loop(facade, "get_events", "g-3", last=1)
        assert kind == "ok" and [e.type for e in page] == ["b"]
        assert [e.type for e in facade.get_events("g-3")] == ["a", "b"]
        assert len(facade.get_events(short.id)) == 1
        clock.advance(timedelta(seconds=61))
        for sid in ("missing", short.id):
            for window in ({}, {"last": 2}, {"types": ["a"]}, {"limit": 0}):
                kind, error_type, _ = _same_as_the_loop(facade, "get_events", sid, **window)
                assert error_type is SessionNotFoundError
        assert len(drives) == 3 + 8


def test_get_events_without_the_lean_path_is_the_same(redis_url: str) -> None:
    """``lean=false``: the loop reads every window by script; the blocking reads send the
    plain commands (they have a connection of their own): the same pages."""
    clock = ManualClock()
    with open_sync_store(redis_url, namespace=_ns(), clock=clock, lean=False) as facade:
        sid, events = _event_log(facade, clock)
        for window in ({}, {"last": 3}, {"after_seq": 2, "limit": 4}, {"before_seq": 7}):
            _same_as_the_loop(facade, "get_events", sid, **window)
        assert facade.get_events(sid, last=3) == events[-3:]


def test_get_events_of_a_corrupt_log_is_the_stores_error(
    facade: SyncSessionStore, redis_url: str
) -> None:
    s = facade.create_session()
    facade.append_events(s.id, [{"type": "a"}])
    store: Any = facade.store
    events_key = store._writes.loc(s.id).events
    raw = redis.Redis.from_url(redis_url)
    raw.delete(events_key)
    raw.set(events_key, "not a sorted set")
    for window in ({}, {"last": 1}, {"types": ["a"]}):
        _, error_type, message = _same_as_the_loop(facade, "get_events", s.id, **window)
        assert error_type is IntegrityError and s.id in message


def test_get_events_after_a_script_flush(facade: SyncSessionStore, redis_url: str) -> None:
    s = facade.create_session()
    facade.append_events(s.id, [{"type": "a"}, {"type": "b"}])
    redis.Redis.from_url(redis_url).script_flush()
    assert [e.type for e in facade.get_events(s.id, types=["b"])] == ["b"]  # EVAL on NOSCRIPT


def test_get_events_and_get_sessions_retry_then_fail_as_on_the_loop(redis_url: str) -> None:
    with open_sync_store(redis_url, namespace=_ns(), retry_deadline=0.3) as facade:
        s = facade.create_session()
        facade.append_events(s.id, [{"type": "a"}])
        connections = _reads(facade).connections
        connections._factory = wire_factory(
            WireSettings(host="127.0.0.1", port=free_port(), socket_timeout=1)
        )
        with pytest.raises(StoreUnavailableError, match=r"read events: .*unavailable for 0\.3 s"):
            facade.get_events(s.id)
        with pytest.raises(StoreUnavailableError, match=r"unavailable for 0\.3 s"):
            facade.get_sessions([s.id])
        assert facade.loop_thread.call(facade.store.get_events(s.id))  # the loop's: fine


def test_deferred_reads_run_on_the_loop(facade: SyncSessionStore) -> None:
    """A blocking read that defers (here: no connection for this thread) is made on the
    loop, with the same results and errors."""
    s = facade.create_session()
    facade.append_events(s.id, [{"type": "a"}, {"type": "b"}])
    connections = _reads(facade).connections

    def no_connection() -> Any:
        raise DeferToLoop

    connections._slot = no_connection  # type: ignore[method-assign]
    assert facade.get_sessions([s.id, "missing"]) == {s.id: facade.get_session(s.id)}
    assert [e.type for e in facade.get_events(s.id, last=1)] == ["b"]
    assert [e.type for e in facade.get_events(s.id, types=["a"])] == ["a"]
    with pytest.raises(SessionNotFoundError):
        facade.get_events("missing")
    assert len(connections) == 0


def test_a_driver_may_offer_some_reads_only(facade: SyncSessionStore) -> None:
    """The facade runs on the loop a read the driver's blocking reads do not have."""
    s = facade.create_session()

    class OnlyGetSession:
        def get_session(self, session_id: str, *, include_expired: bool = False) -> Any:
            return "from the blocking reads"

    facade._direct = OnlyGetSession()
    got: Any = facade.get_session(s.id)
    assert got == "from the blocking reads"
    assert facade.get_sessions([s.id]) == {s.id: s}


def test_reads_after_shutdown_fail(redis_url: str) -> None:
    facade = open_sync_store(redis_url, namespace=_ns())
    s = facade.create_session()
    assert facade.get_events(s.id) == []
    facade.loop_thread.call(facade.store.shutdown())
    with pytest.raises(StoreUnavailableError, match="shut down"):
        facade.get_events(s.id)
    with pytest.raises(StoreUnavailableError, match="shut down"):
        facade.get_sessions([s.id])
    facade.shutdown()


def test_get_event_is_read_by_the_calling_thread(redis_url: str) -> None:
    clock = ManualClock()
    namespace = _ns()
    with open_sync_store(redis_url, namespace=namespace, clock=clock) as writer:
        grouped = writer.create_session(id="g-4", group="team")
        writer.append_events(grouped.id, [EventInput("a", {"n": 1}, key="k1")])
        short = writer.create_session(ttl=timedelta(seconds=60))
        writer.append_events(short.id, [EventInput("a", {"n": 2}, key="k2")])
    with open_sync_store(redis_url, namespace=namespace, clock=clock) as facade:
        drives = _spy(_reads(facade), "_drive_events")
        kind, event = _same_as_the_loop(facade, "get_event", "g-4", key="k1")  # via the stub
        assert kind == "ok" and event.data == {"n": 1}
        kind, event = _same_as_the_loop(facade, "get_event", short.id, key="k2")
        assert kind == "ok" and event.key == "k2"
        assert _same_as_the_loop(facade, "get_event", "g-4", key="nope") == ("ok", None)
        clock.advance(timedelta(seconds=61))
        for sid in ("missing", short.id):
            _, error_type, _ = _same_as_the_loop(facade, "get_event", sid, key="k2")
            assert error_type is SessionNotFoundError
        assert len(drives) == 5
        for sid, key in (("", "k"), ("g-4", "")):
            kind, *_ = _same_as_the_loop(facade, "get_event", sid, key=key)
            assert kind == "error"
        assert len(drives) == 5  # (refused before any step)


def test_a_layout_2_document_is_read_by_the_blocking_reads(redis_url: str) -> None:
    """The blocking ``get_session`` is a plain ``GET`` of the document string (layout 3);
    a layout-2 hash answers ``WRONGTYPE`` and is read by ``lua/read.lua``, unconverted."""
    with open_sync_store(redis_url, namespace=_ns()) as facade:
        s = facade.create_session(data={"x": [1, {}], "n": 2**63 - 1}, tags={"t"}, ttl=3600)
        key = facade.store.key_names(s.id)["doc"]  # type: ignore[attr-defined]
        client = redis.Redis.from_url(redis_url)
        try:
            blob = client.get(key)
            assert isinstance(blob, bytes) and blob[:1] == b"\x03"
            assert facade.get_session(s.id) == s
            ttl = client.pttl(key)
            client.delete(key)
            client.hset(key, mapping=dict(fields_of(blob)))  # type: ignore[arg-type]
            client.pexpire(key, ttl)
            assert facade.get_session(s.id) == s
            assert client.type(key) == b"hash"
        finally:
            client.close()
