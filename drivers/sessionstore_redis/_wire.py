"""The blocking reads' own transport: a socket and a minimal RESP reply reader (issue 18).

The sync facade's blocking reads (``_blocking_reads.py``) send one packed request and read
its replies on the calling thread. Everything such a thread runs between its two system
calls, ``send`` and ``recv``, is Python that holds the GIL, and with eight threads at
once a longer hold means more collisions (each a futex wake-up of another thread).
redis-py's blocking ``Connection`` spends most of a call there (its pure-Python parser,
its health checks and timeout bookkeeping); this module is the short path:

- **The socket.** TCP (``TCP_NODELAY``), a Unix socket, or TLS through the stdlib ``ssl``
  with the settings the async pool gets (``ssl_ca_certs``, ``ssl_certfile``/
  ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``). Connecting waits at most
  ``connect_timeout``; after that a TCP or Unix socket is left *blocking* and its
  timeout is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO`` of ``socket_timeout``): a
  Python socket timeout would ``poll()`` before every ``recv``, a second system call and
  a second release of the GIL. (A TLS socket keeps the Python timeout: CPython's ``ssl``
  retries a read that the kernel's timeout ended on a blocking socket.) A timeout raises
  redis-py's ``TimeoutError``, any other socket failure its ``ConnectionError`` (the OS
  error as its cause, so the retry policy sees a refused connection or a refused TLS
  handshake as it does on the loop).
- **The handshake**, as redis-py's: ``AUTH`` (username and password, from the store's
  credentials), ``CLIENT SETNAME`` when a client name is set, ``SELECT`` for a database
  other than 0, sent as one request. RESP2 (no ``HELLO``): the reads get the same values
  in either protocol (bulk strings, arrays, integers, nil), and every server speaks it.
- **The reply reader** handles what a reply can be in RESP2: bulk strings (``bytes``, nil
  as ``None``), arrays (nested, as the ``EXEC`` of a ``MULTI`` window is; nil as
  ``None``), integers, simple strings (``bytes``) and error replies, made into the
  exception redis-py makes for them (``NOSCRIPT`` a ``NoScriptError``, ``WRONGPASS`` an
  ``AuthenticationError``, ...) and returned in their places, not raised: the caller
  decides (:meth:`Wire.request`). With ``hiredis`` installed (the optional
  ``sessionstore[hiredis]``), its ``Reader`` parses instead, as redis-py's own parser
  choice goes (``reader="auto"``): as fast for one document, faster for a page of events
  (``docs/performance.md``); the default install has the pure-Python reader.

A request that fails or is interrupted in any way (a timeout, a reset, ``KeyboardInterrupt``
between send and reply) disconnects the connection, so it is never left a reply behind;
the next request connects anew.
"""

from __future__ import annotations

import importlib
import socket
import ssl
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._errors import reply_error
from ._lane import pack

_hiredis: Any
try:  # the optional extra sessionstore[hiredis] (no type stubs: imported by name)
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # pragma: no cover - the default install has no hiredis
    _hiredis = None

__all__ = ["HIREDIS", "Wire", "WireSettings", "pack_handshake", "reply_error"]

#: whether ``reader="hiredis"`` is available
HIREDIS: Final = _hiredis is not None


def pack_handshake(
    credentials: Sequence[str] | None, client_name: str | None, db: int
) -> list[bytes]:
    """The commands a new connection sends before its first request (each packed)."""
    commands: list[list[str | bytes | int]] = []
    if credentials:
        commands.append(["AUTH", *credentials])
    if client_name:
        commands.append(["CLIENT", "SETNAME", client_name])
    if db:
        commands.append(["SELECT", db])
    return [pack(c) for c in commands]


_CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


class WireSettings:
    """Where and how to connect (from the store's options; the password only inside the
    credentials provider, asked at each connect, as redis-py does)."""

    __slots__ = (
        "_context",
        "client_name",
        "connect_timeout",
        "credentials",
        "db",
        "host",
        "port",
        "reader",
        "socket_timeout",
        "ssl_ca_certs",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_check_hostname",
        "ssl_keyfile",
        "tls",
        "unix_socket_path",
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        unix_socket_path: str | None = None,
        db: int = 0,
        credentials: Any = None,
        client_name: str | None = None,
        connect_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        tls: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str = "required",
        ssl_check_hostname: bool = True,
        reader: str = "auto",
    ) -> None:
        if reader not in ("auto", "python", "hiredis"):
            raise ValueError(f"reader must be 'auto', 'python' or 'hiredis', not {reader!r}")
        if reader == "hiredis" and not HIREDIS:
            raise ValueError("reader='hiredis' needs the hiredis package")
        if reader == "auto":
            reader = "hiredis" if HIREDIS else "python"
        self.host = host
        self.port = port
        self.unix_socket_path = unix_socket_path
        self.db = db
        #: a ``redis.credentials.CredentialProvider`` (``_secret.Credentials``) or None
        self.credentials = credentials
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.tls = tls
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.ssl_cert_reqs = ssl_cert_reqs
        # a name cannot be checked on a certificate that is not verified
        self.ssl_check_hostname = ssl_check_hostname and ssl_cert_reqs != "none"
        self.reader = reader
        self._context: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        """The server, for messages."""
        return self.unix_socket_path or f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context, made once (as redis-py's ``RedisSSLContext`` makes it)."""
        context = self._context
        if context is None:
            context = ssl.create_default_context()
            context.check_hostname = self.ssl_check_hostname
            context.verify_mode = _CERT_REQS[self.ssl_cert_reqs]
            if self.ssl_certfile:
                context.load_cert_chain(certfile=self.ssl_certfile, keyfile=self.ssl_keyfile)
            if self.ssl_ca_certs:
                context.load_verify_locations(cafile=self.ssl_ca_certs)
            self._context = context
        return context


#: ``SO_RCVTIMEO``/``SO_SNDTIMEO`` take a ``struct timeval`` (two C longs) on Linux and
#: the BSDs; elsewhere (Windows: milliseconds) the socket keeps a Python timeout
_KERNEL_TIMEOUTS: Final = sys.platform != "win32"
#: what ``recv``/``send`` raise when a kernel timeout ends them
_TIMED_OUT: Final = (TimeoutError, BlockingIOError)


def _set_timeouts(sock: socket.socket, timeout: float) -> None:
    # (not under TLS: CPython's ssl module retries a read that the kernel's timeout ended
    # on a blocking socket, so only a Python timeout ends it there)
    if _KERNEL_TIMEOUTS and timeout > 0 and not isinstance(sock, ssl.SSLSocket):
        try:
            whole = int(timeout)
            value = struct.pack("ll", whole, int((timeout - whole) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        except (OSError, struct.error):
            pass
        else:
            sock.settimeout(None)  # blocking: one system call per recv, no poll()
            return
    sock.settimeout(timeout if timeout > 0 else None)


class Wire:
    """One blocking connection to a single server, connected on its first request; used
    by one thread at a time."""

    __slots__ = ("_buf", "_hiredis", "_pos", "_settings", "sock")

    def __init__(self, settings: WireSettings) -> None:
        self._settings = settings
        #: the socket; ``None`` when not connected
        self.sock: socket.socket | None = None
        self._buf = b""
        self._pos = 0
        self._hiredis: Any = None

    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
        return self.sock is not None

    def __repr__(self) -> str:
        state = "connected" if self.sock is not None else "disconnected"
        return f"<Wire {self._settings.address} {state}>"

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Open the socket and run the handshake. Raises redis-py's ``ConnectionError``
        or ``TimeoutError`` (the OS or TLS error as the cause), or the error reply of a
        handshake command (``AuthenticationError`` for a wrong password)."""
        s = self._settings
        try:
            sock = self._open(s)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"Timeout connecting to {s.address}.") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to {s.address}: {exc}") from exc
        self.sock = sock
        self._buf = b""
        self._pos = 0
        if s.reader == "hiredis":
            assert _hiredis is not None
            # (``gets()`` is False until a reply is complete: a RESP2 reply is never False)
            self._hiredis = _hiredis.Reader(replyError=reply_error)
        credentials = s.credentials.get_credentials() if s.credentials is not None else None
        handshake = pack_handshake(credentials, s.client_name, s.db)
        if handshake:
            for reply in self.request(b"".join(handshake), len(handshake)):
                if isinstance(reply, RedisError):
                    self.disconnect()
                    raise reply

    @staticmethod
    def _open(s: WireSettings) -> socket.socket:
        if s.unix_socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(s.connect_timeout)
                sock.connect(s.unix_socket_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((s.host, s.port), timeout=s.connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if s.tls:
                    sock = s.ssl_context().wrap_socket(sock, server_hostname=s.host)
            except BaseException:
                sock.close()
                raise
        _set_timeouts(sock, s.socket_timeout)
        return sock

    def disconnect(self) -> None:
        """Close the socket (idempotent); the next request connects anew."""
        sock, self.sock = self.sock, None
        self._buf = b""
        self._pos = 0
        self._hiredis = None
        if sock is not None:
            sock.close()

    # ------------------------------------------------------------------ requests

    def request(self, packed: bytes, count: int) -> list[Any]:
        """Send ``packed`` (``count`` commands) and read their ``count`` replies; an error
        reply is the exception object in its place (not raised). Connects first if not
        connected. A failure raises redis-py's ``ConnectionError``/``TimeoutError`` and
        leaves the connection disconnected, as does any interruption."""
        if self.sock is None:
            self.connect()
        try:
            self._send(packed)
            read = self._read if self._hiredis is None else self._read_hiredis
            return [read() for _ in range(count)]
        except BaseException:
            self.disconnect()
            raise

    def request_one(self, packed: bytes) -> Any:
        """:meth:`request` of one command: its reply."""
        sock = self.sock
        if sock is None:
            self.connect()
            sock = self.sock
            assert sock is not None
        try:
            try:
                sock.sendall(packed)
            except OSError as exc:
                raise self._send_error(exc) from exc
            return self._read() if self._hiredis is None else self._read_hiredis()
        except BaseException:
            self.disconnect()
            raise

    def _send(self, packed: bytes) -> None:
        sock = self.sock
        assert sock is not None
        try:
            sock.sendall(packed)
        except OSError as exc:
            raise self._send_error(exc) from exc

    def _send_error(self, exc: OSError) -> RedisError:
        if isinstance(exc, _TIMED_OUT):
            return RedisTimeoutError(f"Timeout writing to {self._settings.address}.")
        return RedisConnectionError(f"Error writing to {self._settings.address}: {exc}")

    def _recv(self) -> bytes:
        sock = self.sock
        assert sock is not None
        try:
            chunk = sock.recv(65536)
        except _TIMED_OUT as exc:
            raise RedisTimeoutError(f"Timeout reading from {self._settings.address}.") from exc
        except OSError as exc:
            raise RedisConnectionError(
                f"Error reading from {self._settings.address}: {exc}"
            ) from exc
        if not chunk:
            raise RedisConnectionError(f"Connection closed by server ({self._settings.address}).")
        return chunk

    def _read_hiredis(self) -> Any:
        reader = self._hiredis
        reply = reader.gets()
        while reply is False:
            reader.feed(self._recv())
            reply = reader.gets()
        return reply

    def _more(self, need: int) -> bytes:
        """The buffer with at least ``need`` bytes after the read position (which it
        moves to 0)."""
        pieces = [self._buf[self._pos :]]
        have = len(pieces[0])
        while have < need:
            chunk = self._recv()
            pieces.append(chunk)
            have += len(chunk)
        buf = self._buf = b"".join(pieces)
        self._pos = 0
        return buf

    def _read(self) -> Any:
        """One reply (the pure-Python reader)."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):  # (the usual start of a request's reply: nothing buffered)
            buf = self._buf = self._recv()
            pos = self._pos = 0
        end = buf.find(b"\r\n", pos)
        while end < 0:
            buf = self._more(len(buf) - pos + 1)
            pos = 0
            end = buf.find(b"\r\n")
        kind = buf[pos]
        if kind == 36:  # $ bulk string
            size = int(buf[pos + 1 : end])
            if size < 0:
                self._pos = end + 2
                return None
            start = end + 2
            stop = start + size
            if stop + 2 > len(buf):
                buf = self._more(stop + 2 - pos)
                start -= pos
                stop -= pos
            self._pos = stop + 2
            return buf[start:stop]
        self._pos = end + 2
        if kind == 42:  # * array
            size = int(buf[pos + 1 : end])
            if size < 0:
                return None
            return self._array(size)
        if kind == 58:  # : integer
            return int(buf[pos + 1 : end])
        if kind == 43:  # + simple string
            return buf[pos + 1 : end]
        if kind == 45:  # - error
            return reply_error(buf[pos + 1 : end].decode("utf-8", "replace"))
        raise RedisConnectionError(f"Protocol error, got {buf[pos:end][:40]!r} as reply type byte")

    def _array(self, size: int) -> list[Any]:
        """An array's ``size`` elements: a bulk string already in the buffer read here
        (what most elements are: event records, documents), anything else by
        :meth:`_read`."""
        out: list[Any] = []
        append = out.append
        buf = self._buf
        pos = self._pos
        limit = len(buf)
        for _ in range(size):
            if pos < limit and buf[pos] == 36:  # $
                end = buf.find(b"\r\n", pos)
                if end > 0:
                    stop = end + 2 + int(buf[pos + 1 : end])
                    if end + 2 <= stop and stop + 2 <= limit:
                        append(buf[end + 2 : stop])
                        pos = stop + 2
                        continue
            self._pos = pos
            append(self._read())
            buf = self._buf
            pos = self._pos
            limit = len(buf)
        self._pos = pos
        return out


def wire_factory(settings: WireSettings) -> Callable[[], Wire]:
    """Makes unconnected :class:`Wire` connections with ``settings``."""
    return lambda: Wire(settings)
