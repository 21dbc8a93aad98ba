"""The blocking reads' own transport (``sessionstore_redis._wire``) against real servers:
the handshake (password, database, client name), TLS, the reply shapes, and how each way
a request can fail leaves the connection (disconnected, never a reply behind) and what
the facade makes of it (the store's typed errors, as on the loop)."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sessionstore_redis._blocking_reads import RedisBlockingReads
from sessionstore_redis._secret import Credentials
from sessionstore_redis._wire import HIREDIS, Wire, WireSettings, reply_error, wire_factory

from sessionstore import ConfigurationError
from sessionstore.sync import SyncSessionStore, open_sync_store
from tests.redis.servers import TLS_PASSWORD, TLSServer


def _packed(args: tuple[str | bytes | int, ...]) -> bytes:
    """One command, packed (written here, not with the driver's packer under test)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _settings(url: str, **overrides: Any) -> WireSettings:
    parts = urlsplit(url)
    settings: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "socket_timeout": 5.0,
    }
    settings.update(overrides)
    return WireSettings(**settings)


def _client(url: str, db: int = 0) -> redis.Redis:
    parts = urlsplit(url)
    return redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=db)


READERS = ["python", *(["hiredis"] if HIREDIS else [])]


@pytest.fixture(params=READERS)
def reader(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_handshake_selects_the_database_and_names_the_client(redis_url: str, reader: str) -> None:
    name = f"wire-{uuid.uuid4().hex[:8]}"
    key = f"wire:{uuid.uuid4().hex}"
    wire = Wire(_settings(redis_url, db=3, client_name=name, reader=reader))
    try:
        assert wire.request_one(_packed(("CLIENT", "GETNAME"))) == name.encode()
        assert wire.request_one(_packed(("SET", key, "in db 3"))) == b"OK"
        with _client(redis_url, db=3) as db3, _client(redis_url, db=0) as db0:
            assert db3.get(key) == b"in db 3"
            assert db0.get(key) is None
            db3.delete(key)
    finally:
        wire.disconnect()
    assert not wire.connected


def test_reply_shapes(redis_url: str, reader: str) -> None:
    """Bulk strings (nil too), integers, simple strings, arrays nested as a ``MULTI``
    window's ``EXEC`` is (nil array too), in one request, and a large bulk string that
    spans many reads."""
    key = f"wire:{uuid.uuid4().hex}"
    big = b"x" * (3 * 1024 * 1024 + 7)
    wire = Wire(_settings(redis_url, reader=reader))
    try:
        replies = wire.request(
            b"".join(
                [
                    _packed(("DEL", key, key + "l", key + "big")),
                    _packed(("GET", key)),
                    _packed(("RPUSH", key + "l", "a", "", "c")),
                    _packed(("MULTI",)),
                    _packed(("LRANGE", key + "l", 0, -1)),
                    _packed(("LLEN", key + "l")),
                    _packed(("EXEC",)),
                    _packed(("BLPOP", key, "0.01")),
                    _packed(("SET", key + "big", big)),
                    _packed(("GET", key + "big")),
                    _packed(("DEL", key + "l", key + "big")),
                ]
            ),
            11,
        )
        assert replies == [
            0,
            None,
            3,
            b"OK",
            b"QUEUED",
            b"QUEUED",
            [[b"a", b"", b"c"], 3],
            None,
            b"OK",
            big,
            2,
        ]
    finally:
        wire.disconnect()


def test_error_replies_stay_in_their_places(redis_url: str, reader: str) -> None:
    """An error reply is redis-py's exception object in its place, not raised: the
    replies after it are read, so the connection stays in step; nested in an ``EXEC``
    too. Known codes are their classes, without the code in the message."""
    key = f"wire:{uuid.uuid4().hex}"
    wire = Wire(_settings(redis_url, reader=reader))
    try:
        replies = wire.request(
            b"".join(
                [
                    _packed(("EVALSHA", "0" * 40, 0)),
                    _packed(("SET", key, "v")),
                    _packed(("LPUSH", key, "x")),
                    _packed(("MULTI",)),
                    _packed(("LPUSH", key, "x")),
                    _packed(("GET", key)),
                    _packed(("EXEC",)),
                    _packed(("GET", key)),
                ]
            ),
            8,
        )
        noscript, ok, wrongtype, _, _, _, done, value = replies
        assert type(noscript) is NoScriptError and "NOSCRIPT" not in str(noscript)
        assert ok == b"OK" and value == b"v"
        assert type(wrongtype) is ResponseError and str(wrongtype).startswith("WRONGTYPE")
        assert type(done[0]) is ResponseError and done[1] == b"v"
        assert wire.connected
        assert wire.request_one(_packed(("DEL", key))) == 1
    finally:
        wire.disconnect()


def test_reply_error_classes() -> None:
    assert type(reply_error("WRONGPASS invalid username-password pair")) is AuthenticationError
    assert type(reply_error("NOAUTH Authentication required.")) is AuthenticationError
    assert type(reply_error("ERR invalid password")) is AuthenticationError
    assert type(reply_error("ERR unknown command 'X'")) is ResponseError
    assert str(reply_error("ERR unknown command 'X'")) == "ERR unknown command 'X'"


def test_a_timeout_disconnects_and_the_next_request_connects_anew(
    redis_url: str, reader: str
) -> None:
    wire = Wire(_settings(redis_url, socket_timeout=0.2, reader=reader))
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError, match="Timeout reading"):
        wire.request_one(_packed(("BLPOP", f"wire:{uuid.uuid4().hex}", 30)))
    # well before the BLPOP's own end, with room for a loaded machine
    assert 0.15 < time.monotonic() - started < 10
    assert not wire.connected  # its reply may still come: never read on this socket
    assert wire.request_one(_packed(("PING",))) == b"PONG"
    wire.disconnect()


class _KilledMidReply(Wire):
    """A connection whose server drops it after the first part of a reply arrived (the
    kill is sent by another client, a real ``CLIENT KILL``)."""

    __slots__ = ("killer", "my_id")

    def __init__(self, settings: WireSettings) -> None:
        super().__init__(settings)
        self.killer: redis.Redis | None = None
        self.my_id = ""

    def _recv(self) -> bytes:
        chunk = super()._recv()
        if self.killer is not None:
            killer, self.killer = self.killer, None
            killer.client_kill_filter(_id=self.my_id)
        return chunk


def test_the_server_closing_mid_reply_is_a_connection_error(redis_url: str, reader: str) -> None:
    key = f"wire:{uuid.uuid4().hex}"
    size = 48 * 1024 * 1024  # far more than the sockets buffer: the kill cuts the reply
    with _client(redis_url) as other:
        other.setrange(key, size - 1, b"!")
        try:
            wire = _KilledMidReply(_settings(redis_url, reader=reader))
            wire.my_id = str(wire.request_one(_packed(("CLIENT", "ID"))))
            wire.killer = other
            with pytest.raises(RedisConnectionError, match=r"closed by server|reset"):
                wire.request_one(_packed(("GET", key)))
            assert wire.killer is None  # killed while the reply was being read
            assert not wire.connected
            wire.killer = None
            assert wire.request_one(_packed(("PING",))) == b"PONG"
            wire.disconnect()
        finally:
            other.delete(key)


def test_a_connection_the_server_dropped_is_retried_by_the_facade(redis_url: str) -> None:
    with open_sync_store(redis_url, namespace=f"wire-{uuid.uuid4().hex[:8]}") as facade:
        s = facade.create_session(data={"a": 1})
        assert facade.get_session(s.id) == s
        reads = facade._direct
        assert isinstance(reads, RedisBlockingReads)
        conn = reads.connections._slots[0].conn
        my_id = conn.request_one(_packed(("CLIENT", "ID")))
        with _client(redis_url) as other:
            assert other.client_kill_filter(_id=my_id) == 1
        assert facade.get_session(s.id) == s  # the failed try disconnected; the retry connects
        assert conn.connected and conn.request_one(_packed(("CLIENT", "ID"))) != my_id


def _tls_settings(redis_tls: TLSServer, **overrides: Any) -> WireSettings:
    files = redis_tls.files
    settings: dict[str, Any] = {
        "port": redis_tls.port,
        "tls": True,
        "ssl_ca_certs": str(files.ca),
        "ssl_certfile": str(files.client_cert),
        "ssl_keyfile": str(files.client_key),
        "credentials": Credentials(None, TLS_PASSWORD),
    }
    settings.update(overrides)
    return WireSettings(**settings)


def _blocking_reads_with(facade: SyncSessionStore, settings: WireSettings) -> RedisBlockingReads:
    """The facade's blocking reads, their new connections made with ``settings``."""
    reads = facade._direct
    assert isinstance(reads, RedisBlockingReads)
    reads.connections._factory = wire_factory(settings)
    return reads


def test_a_wrong_password(redis_tls: TLSServer, redis_url: str) -> None:
    wire = Wire(_tls_settings(redis_tls, credentials=Credentials(None, "not-the-password")))
    with pytest.raises(AuthenticationError):
        wire.connect()
    assert not wire.connected
    wire = Wire(_tls_settings(redis_tls))
    assert wire.request_one(_packed(("PING",))) == b"PONG"
    assert isinstance(wire.sock, ssl.SSLSocket)
    wire.disconnect()
    # a password sent to a server that has none
    wire = Wire(_settings(redis_url, credentials=Credentials(None, "pw")))
    with pytest.raises(AuthenticationError):
        wire.connect()
    # through the facade: the store's ConfigurationError, not retried until the deadline
    with open_sync_store(redis_tls.url(), namespace="wire", retry_deadline=30) as facade:
        wrong = Credentials(None, "not-the-password")
        _blocking_reads_with(facade, _tls_settings(redis_tls, credentials=wrong))
        started = time.monotonic()
        with pytest.raises(ConfigurationError, match="authentication failed") as caught:
            facade.get_session("s1")
        assert time.monotonic() - started < 10
        assert "not-the-password" not in str(caught.value)


def test_a_timeout_over_tls(redis_tls: TLSServer, reader: str) -> None:
    """A TLS read ends at `socket_timeout` too (a Python timeout there: see `_wire.py`)."""
    wire = Wire(_tls_settings(redis_tls, socket_timeout=0.2, reader=reader))
    assert wire.request_one(_packed(("PING",))) == b"PONG"
    with pytest.raises(RedisTimeoutError):
        wire.request_one(_packed(("BLPOP", f"wire:{uuid.uuid4().hex}", 30)))
    assert not wire.connected
    assert wire.request_one(_packed(("PING",))) == b"PONG"
    wire.disconnect()


def test_a_certificate_from_another_ca(redis_tls: TLSServer) -> None:
    wire = Wire(_tls_settings(redis_tls, ssl_ca_certs=str(redis_tls.files.other_ca)))
    with pytest.raises(RedisConnectionError) as caught:
        wire.connect()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    with open_sync_store(redis_tls.url(), namespace="wire", retry_deadline=30) as facade:
        reads = _blocking_reads_with(
            facade, _tls_settings(redis_tls, ssl_ca_certs=str(redis_tls.files.other_ca))
        )
        with pytest.raises(ConfigurationError, match=r"TLS handshake failed.*certificate"):
            reads.get_session("s1")


def test_many_threads_each_their_own_connection(redis_url: str, reader: str) -> None:
    key = f"wire:{uuid.uuid4().hex}"
    settings = _settings(redis_url, reader=reader)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        wire = Wire(settings)
        try:
            for i in range(200):
                reply = wire.request_one(_packed(("INCR", f"{key}:{n}")))
                assert reply == i + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            wire.disconnect()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with _client(redis_url) as other:
        assert other.delete(*(f"{key}:{n}" for n in range(8))) == 8
