"""Connections (single server, Sentinel, Cluster), script calls and the retry policy.

Retries (see docs/redis.md): a call that failed because the server could not be reached is
retried with backoff until ``retry_deadline``, then :class:`StoreUnavailableError`.
Whether a failed call may be repeated depends on whether it was *sent*: a failure while
connecting (marked by :class:`_Unsent`) or a cluster redirection/CLUSTERDOWN means the
command did not run, so any call is retried. A failure after sending (a read timeout, a
reset connection) leaves the outcome unknown: reads and version-checked writes (made
idempotent by the write token, see ``lua/write.lua``) are retried, other writes raise
:class:`OutcomeUnknownError`. redis-py's own retries are turned off, because they would
repeat non-idempotent writes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MaxConnectionsError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessionstore import (
    ConfigurationError,
    IntegrityError,
    OutcomeUnknownError,
    StoreUnavailableError,
)

from . import _redis_internals as internals
from ._errors import script_error
from ._gate import FairPool
from ._lane import Lane
from ._loops import PerLoop
from ._loopstate import LoopState, close_states
from ._options import RedisOptions
from ._scripts import (
    APPEND,
    CLAIM,
    COMPOSE,
    CREATE,
    EVENTS,
    READ,
    REINDEX,
    WALK,
    WALKN,
    WRITE,
    Script,
)
from ._secret import Credentials
from ._wire import Wire, WireSettings, wire_factory

__all__ = ["Backend", "Call", "LoopState"]

log = logging.getLogger("sessionstore.redis")
T = TypeVar("T")
ALL_SCRIPTS = (WRITE, APPEND, CREATE, REINDEX, WALK, WALKN, CLAIM, EVENTS, READ, COMPOSE)
#: One pipelined call: ("script", Script, keys, args) or ("cmd", name, *args).
Call = tuple[Any, ...]

_UNSENT_ERRORS = (
    ClusterDownError,
    TryAgainError,
    BusyLoadingError,
    ReadOnlyError,
    MovedError,
    MaxConnectionsError,  # raised before anything is sent
)
_RETRYABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    MovedError,
    OSError,
)


class _Unsent:
    """Connection mixin: an error raised while connecting is marked as 'not sent'; and
    :meth:`send_request`, the lane's cheaper send (see ``_lane.py``)."""

    async def connect(self) -> None:
        try:
            await super().connect()  # type: ignore[misc]
        except AttributeError as exc:
            # redis-py 5.0: another task closed the connection during the handshake
            # (its cluster client closes every connection on any connection error), and
            # the handshake's send found no writer: a connection failure, nothing sent
            if internals.stream_writer(self) is not None:  # type: ignore[arg-type]
                raise
            error = RedisConnectionError("the connection was closed while connecting")
            error._sessionstore_unsent = True  # type: ignore[attr-defined]
            raise error from exc
        except Exception as exc:
            exc._sessionstore_unsent = True  # type: ignore[attr-defined]
            raise

    async def send_request(self, packed: bytes) -> None:
        """Send one packed request. Like ``send_packed_command`` (same errors, the
        connection dropped on any failure) without the task ``asyncio.wait_for`` starts
        for every send: the timeout applies only when the socket buffer is full."""
        conn: Any = self
        if not conn.is_connected:
            await self.connect()
        writer = internals.stream_writer(conn)
        if writer is None:
            raise RedisConnectionError("the connection closed before sending")
        try:
            writer.write(packed)
            if writer.transport.get_write_buffer_size():
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the drain finishes
                async with asyncio.timeout(conn.socket_timeout):
                    await writer.drain()
            else:
                await writer.drain()  # returns at once; raises if the connection was lost
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await conn.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            await conn.disconnect(nowait=True)
            raise


class _Conn(_Unsent, Connection):
    pass


class _SSLConn(_Unsent, SSLConnection):
    pass


class _UnixConn(_Unsent, UnixDomainSocketConnection):
    pass


class _MasterOnly:
    """Sentinel connection mixin: a connection meant for the master checks that the server
    it reached says it is one, and gives up on it (a connection error, nothing sent, so
    the call is retried through the sentinel) when it says it is a replica.

    redis-py takes the sentinel's word: ``discover_master`` accepts the entry ``SENTINEL
    MASTERS`` lists for the service unless it carries a down flag. That entry can name a
    replica: a master that died and was started again as a replica before the sentinel
    called it down (as an operator or a supervisor does), or, during a failover, an old
    master that came back as a replica and answered the sentinel's ping before the
    sentinel switched to the promoted one. Such a replica, not yet synchronised, answers
    reads from its empty or stale data set: a store that trusted the sentinel read an
    acknowledged session as missing (the failover test's clean-clone failure, see
    docs/decisions.md). The check is one round trip per new connection, never per call:
    ``HELLO`` without arguments (Redis 6.2+, allowed to every user), else ``ROLE``;
    when neither is allowed, the sentinel's word stands."""

    async def connect_to(self, address: tuple[str, int]) -> None:
        await super().connect_to(address)  # type: ignore[misc]
        conn: Any = self
        if not conn.connection_pool.is_master:
            return
        role = await _server_role(conn)
        if role not in (None, "master"):
            await conn.disconnect()
            raise RedisConnectionError(
                f"the sentinel names {address[0]}:{address[1]} as the master of "
                f"{conn.connection_pool.service_name!r}, but that server is a {role} "
                "(a failover under way, or a master started again as a replica); "
                "asking the sentinel again"
            )


async def _server_role(conn: Any) -> str | None:
    """``"master"``, ``"replica"`` (or ROLE's ``"slave"``), or None if not allowed."""
    for command in ("HELLO", "ROLE"):
        try:
            await conn.send_command(command)
            reply = await conn.read_response()
        except ResponseError:  # HELLO needs a version before Redis 6.2; ACLs may refuse
            continue
        if command == "ROLE":
            return _text(reply[0])
        if isinstance(reply, dict):
            fields = {_text(k): v for k, v in reply.items()}
        else:  # RESP2: a flat list of names and values
            fields = {_text(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}
        return _text(fields["role"])
    return None


#: The oldest Redis the scripts run on (``SET ... PXAT``, ``ZRANGE ... BYSCORE``,
#: ``HELLO`` without arguments); docs/redis.md, its opening paragraph.
OLDEST_SERVER: Final = (6, 2)
# What a server before 6.2 answers ``HELLO`` without arguments: 6.0 wants a protocol
# version ("wrong number of arguments"), 5.0 and older do not know the command
_OLD_HELLO: Final = ("unknown command", "wrong number of arguments")


def check_server(reply: Any, error: ResponseError | None, target: str) -> None:
    """Refuse a server older than Redis 6.2 with a :class:`ConfigurationError` naming
    its version, from its reply to ``HELLO`` without arguments (RESP3: a map; RESP2: a
    flat list of names and values) or the error it answered. Any other refusal (a proxy
    that does not pass ``HELLO`` on) and a version that does not read as numbers (a server that
    speaks Redis's protocol under another numbering) are let through: only what is
    known to be too old is refused."""
    if error is not None:
        if any(text in str(error).lower() for text in _OLD_HELLO):
            raise ConfigurationError(
                f"{target}: the server does not answer HELLO without arguments "
                f"({error}): it is older than Redis "
                f"{OLDEST_SERVER[0]}.{OLDEST_SERVER[1]}, which the Redis driver needs"
            )
        return
    if isinstance(reply, dict):
        fields = {_text(k): v for k, v in reply.items()}
    elif isinstance(reply, list | tuple) and len(reply) % 2 == 0:
        fields = {_text(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}
    else:
        return
    version = _text(fields.get("version", ""))
    numbers = version.split(".")[:2]
    if len(numbers) < 2 or not all(n.isdigit() for n in numbers):
        return
    if (int(numbers[0]), int(numbers[1])) < OLDEST_SERVER:
        raise ConfigurationError(
            f"{target}: the server is Redis {version}; the Redis driver needs "
            f"{OLDEST_SERVER[0]}.{OLDEST_SERVER[1]} or newer"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _NestedErrors:
    """Connection mixin, below redis-py's sentinel connection: a script's failed call
    raises the error Redis 7 replies on Redis 6.2 too (``_errors.script_error``), so a
    ``READONLY`` there makes redis-py ask the sentinel again (``lean=false``; the lean
    path reads its replies itself, ``_lane.py``)."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ResponseError as exc:
            nested = script_error(exc)
            if nested is None:
                raise
            raise nested from exc


class _SentinelConn(_Unsent, _MasterOnly, SentinelManagedConnection, _NestedErrors, Connection):
    pass


class _SentinelSSLConn(
    _Unsent, _MasterOnly, SentinelManagedSSLConnection, _NestedErrors, SSLConnection
):
    pass


class _FairConnectionPool(FairPool, aioredis.ConnectionPool):
    pass


class _FairSentinelPool(FairPool, SentinelConnectionPool):
    pass


def _unsent(exc: BaseException) -> bool:
    return bool(getattr(exc, "_sessionstore_unsent", False)) or isinstance(
        exc, (*_UNSENT_ERRORS, RedisClusterException, MasterNotFoundError)
    )


#: errno values of "nothing to connect to": refused, no route, no such address.
_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}
)


def _unreachable(exc: BaseException) -> bool:
    """Did ``exc`` (or its cause) come from a connection that could not be opened at all
    (refused, no route, a host name that does not resolve)? Not a reset or a timeout
    after connecting, nor a TLS handshake (those are retried, or classified)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror | ConnectionRefusedError):
            return True
        if isinstance(current, OSError) and current.errno in _UNREACHABLE_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_cluster(exc: RedisClusterException) -> bool:
    """A cluster client error that a topology refresh can fix (vs. a usage error)."""
    text = str(exc).lower()
    return isinstance(exc, SlotNotCoveredError) or "connect" in text or "no targets" in text


#: TLS alerts and errors that mean "this server and these TLS settings do not agree":
#: retrying cannot help, so they are configuration errors at once.
_TLS_REFUSALS = (
    "CERTIFICATE_VERIFY_FAILED",
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "PROTOCOL_VERSION",
    "HANDSHAKE_FAILURE",
)


def _tls_refusal(exc: BaseException) -> str | None:
    """Why the TLS handshake was refused, if that is what ``exc`` (or its cause) is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verification failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            reason = str(current.reason or current)
            if any(name in reason for name in _TLS_REFUSALS):
                return reason.lower().replace("_", " ")
        current = current.__cause__ or current.__context__
    text = str(exc)
    for name in _TLS_REFUSALS:
        if f"SSL: {name}" in text or f"ALERT_{name}" in text:
            return name.lower().replace("_", " ")
    return None


def check_tls_files(options: RedisOptions) -> None:
    """Load the TLS files once before connecting: a missing or unreadable file, or a key
    that does not match its certificate, is a :class:`ConfigurationError` naming it."""
    if not options.tls:
        return
    context = ssl.create_default_context()
    try:
        if options.ssl_ca_certs:
            context.load_verify_locations(cafile=options.ssl_ca_certs)
        if options.ssl_certfile:
            context.load_cert_chain(options.ssl_certfile, options.ssl_keyfile)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot use the TLS files (ssl_ca_certs={options.ssl_ca_certs!r}, "
            f"ssl_certfile={options.ssl_certfile!r}, ssl_keyfile={options.ssl_keyfile!r}): "
            f"{exc}"
        ) from None


def _translate(exc: RedisError, where: str) -> Exception:
    """A redis-py error that retrying cannot fix, as a sessionstore error."""
    if isinstance(exc, ResponseError):
        exc = script_error(exc) or exc
    text = str(exc)
    if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError) or (
        "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text
    ):
        return ConfigurationError(f"{where}: authentication failed ({type(exc).__name__})")
    if "WRONGTYPE" in text:
        return IntegrityError("a key of this store holds a value of the wrong type", where)
    if "user_script" in text or "Error running script" in text:
        return IntegrityError(f"a stored record could not be processed ({text[:200]})", where)
    return StoreUnavailableError(f"{where}: redis error: {text[:300]}")


async def _none() -> None:
    return None


class Backend:
    """The connected clients of one store (one set per event loop, see ``_loops.py``)
    plus script execution and retries."""

    def __init__(
        self,
        options: RedisOptions,
        credentials: Credentials | None = None,
        sentinel_credentials: Credentials | None = None,
    ) -> None:
        self.options = options
        # the passwords, held apart from the options (see _secret.py)
        self._credentials = credentials
        self._sentinel_credentials = sentinel_credentials
        self.cluster = options.mode == "cluster"
        #: makes a loop's index queue (set by the store; None: no queue)
        self.make_index: Callable[[LoopState], Any] | None = None
        self._loops: PerLoop[LoopState] = PerLoop(self._new_state, options.target)
        #: the state of the running loop (made on its first call from it)
        self.here = self._loops.here

    @property
    def client(self) -> Any:
        """The redis-py client of the running event loop (None outside a loop, or once
        the store is closed)."""
        try:
            return self.here().client
        except (RuntimeError, StoreUnavailableError):
            return None

    @property
    def loops(self) -> int:
        """How many event loops have connections open now."""
        return len(self._loops)

    # ------------------------------------------------------------------ lifecycle

    def _common(self, read_timeout: float) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "socket_timeout": read_timeout,
            "socket_connect_timeout": o.connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "max_connections": o.max_connections,
            "username": None if self._credentials else o.username,
            "credential_provider": self._credentials,
            "client_name": o.client_name,
            "decode_responses": False,
            "health_check_interval": 0,
        }
        if o.tls:
            kwargs.update(
                ssl_ca_certs=o.ssl_ca_certs,
                ssl_certfile=o.ssl_certfile,
                ssl_keyfile=o.ssl_keyfile,
                ssl_cert_reqs=o.ssl_cert_reqs,
                # a name cannot be checked on a certificate that is not verified (and
                # redis-py 5.0 sets verify_mode after check_hostname, which then fails)
                ssl_check_hostname=o.ssl_check_hostname and o.ssl_cert_reqs != "none",
            )
        return kwargs

    def blocking_connection_factory(self, reader: str = "auto") -> Callable[[], Wire]:
        """Makes a blocking connection of the driver's own (``_wire.py``) to the single
        server (TCP, Unix socket or TLS) with this store's settings (timeouts,
        credentials, TLS, database, client name): the blocking reads' transport
        (``_blocking_reads.py``). Not for Sentinel or Cluster."""
        o = self.options
        assert o.mode == "single"
        settings = WireSettings(
            host=o.host,
            port=o.port,
            unix_socket_path=o.unix_socket_path,
            db=o.db,
            credentials=self._credentials,
            client_name=o.client_name,
            connect_timeout=o.connect_timeout,
            socket_timeout=o.socket_timeout,
            tls=o.tls,
            ssl_ca_certs=o.ssl_ca_certs,
            ssl_certfile=o.ssl_certfile,
            ssl_keyfile=o.ssl_keyfile,
            ssl_cert_reqs=o.ssl_cert_reqs,
            ssl_check_hostname=o.ssl_check_hostname,
            reader=reader,
        )
        return wire_factory(settings)

    @property
    def _wait_read_timeout(self) -> float:
        """A write followed by WAIT may take the command timeout plus WAIT's own."""
        return self.options.socket_timeout + self.options.wait_timeout

    def _new_sentinel(self) -> Sentinel:
        o = self.options
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": o.socket_timeout,
            "socket_connect_timeout": o.connect_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if self._sentinel_credentials is not None:
            sentinel_kwargs["credential_provider"] = self._sentinel_credentials
        elif o.sentinel_username is not None:
            sentinel_kwargs["username"] = o.sentinel_username
        return Sentinel(o.node_list(), sentinel_kwargs=sentinel_kwargs)

    def _build(self, read_timeout: float, sentinel: Sentinel | None) -> Any:
        o = self.options
        kwargs = self._common(read_timeout)
        if o.mode == "cluster":
            kwargs.pop("max_connections")
            if o.tls:
                kwargs["ssl"] = True
            client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in o.node_list()],
                max_connections=o.max_connections,
                require_full_coverage=False,
                **kwargs,
            )
            internals.mark_cluster_connections(client, _SSLConn if o.tls else _Conn)
            return client
        if o.mode == "sentinel":
            assert sentinel is not None and o.service_name is not None
            kwargs["connection_class"] = _SentinelSSLConn if o.tls else _SentinelConn
            kwargs["db"] = o.db
            return sentinel.master_for(
                o.service_name,
                connection_pool_class=_FairSentinelPool,
                pool_timeout=o.pool_timeout,
                **kwargs,
            )
        if o.unix_socket_path:
            pool = _FairConnectionPool(
                connection_class=_UnixConn,
                path=o.unix_socket_path,
                db=o.db,
                pool_timeout=o.pool_timeout,
                **kwargs,
            )
            return aioredis.Redis.from_pool(pool)
        pool = _FairConnectionPool(
            pool_timeout=o.pool_timeout,
            connection_class=_SSLConn if o.tls else _Conn,
            host=o.host,
            port=o.port,
            db=o.db,
            **kwargs,
        )
        return aioredis.Redis.from_pool(pool)

    def _new_state(self, loop: asyncio.AbstractEventLoop) -> LoopState:
        """The clients of one event loop (nothing connects before the first call)."""
        o = self.options
        sentinel = self._new_sentinel() if o.mode == "sentinel" else None
        client = self._build(o.socket_timeout, sentinel)
        lane = None
        if o.lean:
            lane = Lane(
                client,
                cluster=self.cluster,
                max_connections=o.max_connections,
                pool_timeout=o.pool_timeout,
            )
        wait: dict[str, aioredis.Redis] = {}
        if o.wait_replicas and not self.cluster:
            wait["primary"] = self._build(self._wait_read_timeout, sentinel)
        state = LoopState(loop, client, lane, sentinel, wait, cluster=self.cluster)
        if self.make_index is not None:
            state.index = self.make_index(state)
        return state

    async def open(self) -> None:
        """Connect and check that the server answers (and the credentials work)."""
        o = self.options
        check_tls_files(o)
        try:
            self.here()
            # a server that refuses the connection now is most likely a wrong address:
            # fail within connect_retry, not the retry deadline of a blip
            await self.run(
                self._ping, idempotent=True, what="connect", unreachable_for=o.connect_retry
            )
        except BaseException:
            await self.close(final=False)
            raise

    async def _ping(self) -> None:
        """The open's round trip: ``HELLO`` without arguments, which also names the
        server's version (a server older than 6.2 is refused: :func:`check_server`);
        ``PING`` where ``HELLO`` is refused otherwise (a proxy in front of the server:
        Redis itself lets every client, authenticated or not, send ``HELLO``)."""
        client = self.here().client
        where: dict[str, Any] = {}
        if self.cluster:
            await client.initialize()
            where["target_nodes"] = RedisCluster.RANDOM
        try:
            reply = await client.execute_command("HELLO", **where)
        except ResponseError as exc:
            check_server(None, exc, self.options.target)
            await client.ping()
            return
        check_server(reply, None, self.options.target)

    async def close(self, *, final: bool = True) -> None:
        """Close every connection of every event loop (see ``docs/redis.md``, *Event
        loops*, and :func:`~._loopstate.close_states`). ``final``: later calls raise
        :class:`StoreUnavailableError` (``False`` after a failed :meth:`open`, which may be
        tried again)."""
        states = self._loops.take_all(final=final)
        # another loop may first send its index updates, retried for retry_deadline
        wait = self.options.retry_deadline + self.options.socket_timeout
        await close_states(states, self._new_state, wait)

    # ------------------------------------------------------------------ retries

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        what: str,
        unreachable_for: float | None = None,
        here: LoopState | None = None,
    ) -> tuple[T, bool]:
        """Run ``attempt`` with retries for ``retry_deadline`` seconds (for
        ``unreachable_for`` seconds when given and the server refuses the connection or
        cannot be reached at all); returns its result and whether an earlier try's
        outcome was unknown (it may have been applied).

        A cancellation is always honoured: if the task was cancelled while ``attempt``
        ran and redis-py swallowed it (``asyncio.wait_for`` on Python 3.11 returns the
        result when it finishes in the same loop turn), the call raises
        ``CancelledError`` instead of returning (a write may then have been applied).

        ``here``: the loop state to use (the index queue of a state being closed);
        default: the running loop's, looked up again before every retry (the store may
        have been shut down meanwhile)."""
        state = self.here() if here is None else here
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        started = loop.time()
        delay = 0.02
        ambiguous = False
        while True:
            try:
                if state.stale_topology:
                    # a failover or a dead node: re-read the slot map (cluster pipelines
                    # do not do it by themselves); a new loop's client reads it first
                    await self._refresh_topology(state, what)
                try:
                    result = await attempt()
                except ResponseError as exc:  # redis-py's own requests (lean=false)
                    nested = script_error(exc)
                    if nested is None:
                        raise
                    raise nested from exc
                if task is not None and task.cancelling() > cancels:
                    raise asyncio.CancelledError
                return result, ambiguous
            except _RETRYABLE as exc:
                state.stale_topology = self.cluster
                pause, sent = self.retry_pause(
                    exc,
                    what,
                    idempotent=idempotent,
                    elapsed=loop.time() - started,
                    delay=delay,
                    unreachable_for=unreachable_for,
                )
                ambiguous = ambiguous or sent
                log.debug("%s: %s, retrying in %.3f s", what, exc, pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, 0.5)
                if here is None:
                    state = self.here()  # StoreUnavailableError once shut down
            except RedisError as exc:
                raise _translate(exc, what) from exc

    def retry_pause(
        self,
        exc: BaseException,
        what: str,
        *,
        idempotent: bool,
        elapsed: float,
        delay: float,
        unreachable_for: float | None = None,
    ) -> tuple[float, bool]:
        """The retry policy for one failed try (a ``_RETRYABLE`` error) of a call that
        began ``elapsed`` seconds ago: raises the typed error the call ends with, or
        returns how long to pause before the next try and whether this try was sent
        (its outcome unknown). Shared by :meth:`run` and the blocking reads
        (``_blocking_reads.py``)."""
        if isinstance(exc, AuthenticationError | AuthorizationError):
            raise _translate(exc, self.options.target) from None
        refused = _tls_refusal(exc) if self.options.tls else None
        if refused is not None:
            raise ConfigurationError(
                f"{what}: {self.options.target}: the TLS handshake failed ({refused}); "
                "check ssl_ca_certs, ssl_certfile/ssl_keyfile and ssl_check_hostname"
            ) from exc
        if isinstance(exc, RedisClusterException) and not _transient_cluster(exc):
            raise StoreUnavailableError(f"{what}: {exc}") from exc
        sent = not _unsent(exc)
        if sent and not idempotent:
            raise OutcomeUnknownError(
                f"{what}: the write was sent but its outcome is unknown "
                f"({type(exc).__name__}); re-read the session before retrying"
            ) from exc
        fast = unreachable_for is not None and _unreachable(exc)
        budget = (
            unreachable_for
            if fast and unreachable_for is not None
            else (self.options.retry_deadline)
        )
        remaining = budget - elapsed
        if remaining <= 0:
            if fast:
                raise StoreUnavailableError(
                    f"{what}: cannot reach {self.options.target} "
                    f"({type(exc).__name__}: {exc}); gave up after "
                    f"connect_retry={budget:g} s"
                ) from exc
            raise StoreUnavailableError(
                f"{what}: {self.options.target} unavailable for "
                f"{budget:g} s ({type(exc).__name__}: {exc})"
            ) from exc
        return min(delay * random.uniform(0.5, 1.0), remaining), sent

    async def _refresh_topology(self, state: LoopState, what: str) -> None:
        """Re-read the cluster's slot map, one caller at a time (the others wait for it):
        redis-py 5.0's ``NodesManager.initialize`` has no lock of its own, and two at
        once fail with "dictionary changed size during iteration". The seeds redis-py 5.0
        dropped are put back first (``restore_seeds``)."""
        async with state.topology_lock:
            if not state.stale_topology:
                return  # another caller refreshed it while this one waited
            if state.closed:  # closed while this call waited to retry
                raise StoreUnavailableError(f"{what}: the store is not connected")
            client = state.client
            if not state.mapped:  # a new loop's client: its first read of the map
                await client.initialize()
                state.mapped = True
                state.stale_topology = False
                return
            internals.restore_seeds(client, self.options.node_list())
            try:
                await client.nodes_manager.initialize()
            except RuntimeError as exc:
                # redis-py 5.0: its own cluster client dropped a node from the dict being
                # read (on a connection error elsewhere); the map stays stale, retried
                raise RedisClusterException(
                    f"could not connect: the slot map changed while it was read ({exc})"
                ) from exc
            state.stale_topology = False

    # ------------------------------------------------------------------ calls

    async def script(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any],
        during: Callable[[], object] | None = None,
    ) -> Any:
        """EVALSHA, loading the script on NOSCRIPT (after SCRIPT FLUSH or a failover),
        through the lean request path (``_lane.py``). ``during`` is called once the
        request is sent, before its reply is read (at most once; see ``_lane._exchange``)."""
        state = self.here()
        lane = state.lane
        if lane is None:  # lean=false: redis-py's public API only
            if during is not None:
                during()
            client = state.client
            try:
                return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)
        try:
            return await lane.script("EVALSHA", script.sha, keys, args, during, script.fixed)
        except NoScriptError:
            return await lane.script("EVAL", script.source, keys, args)

    def commands(self, key: str, packed: bytes, count: int) -> Awaitable[list[Any] | None]:
        """Plain commands through the lean request path (:meth:`._lane.Lane.commands`);
        ``None`` when there is no lane (``lean=false``): the caller then uses a script.
        (Not a coroutine itself: the lane's, one layer fewer to await.)"""
        lane = self.here().lane
        if lane is None:
            return _none()
        return lane.commands(key, packed, count)

    async def script_wait(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """A write script followed by WAIT on the same connection (``wait_replicas``)."""
        state = self.here()
        if self.cluster:
            client = await self._client_for(state, keys[0])
        else:
            client = state.wait_clients["primary"]
        try:
            return await self._script_wait(client, script, keys, args)
        except (*_RETRYABLE, ResponseError):
            state.stale_topology = self.cluster  # a moved slot or a failover: re-read the map
            raise

    async def _script_wait(
        self, client: Any, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        o = self.options
        for _ in range(2):
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", o.wait_replicas, int(o.wait_timeout * 1000))
            result, acked = await pipe.execute(raise_on_error=False)
            if isinstance(result, NoScriptError):
                await client.script_load(script.source)
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < o.wait_replicas:
                raise OutcomeUnknownError(
                    f"the write was applied on the primary but only {acked} of "
                    f"{o.wait_replicas} replicas acknowledged it within {o.wait_timeout:g} s; "
                    "a failover now could lose it"
                )
            return result
        raise StoreUnavailableError("the server keeps refusing the script (NOSCRIPT)")

    async def _client_for(self, state: LoopState, key: str) -> aioredis.Redis:
        """A plain client on the primary serving ``key`` (WAIT must follow the write on
        the same connection, which a cluster client cannot promise)."""
        if state.stale_topology:
            await self._refresh_topology(state, "write")
        node = state.client.get_node_from_key(key)
        client = state.wait_clients.get(node.name)
        if client is None:
            kwargs = self._common(self._wait_read_timeout)
            pool = _FairConnectionPool(
                pool_timeout=self.options.pool_timeout,
                connection_class=_SSLConn if self.options.tls else _Conn,
                host=node.host,
                port=node.port,
                **kwargs,
            )
            client = aioredis.Redis.from_pool(pool)
            state.wait_clients[node.name] = client
        return client

    async def pipeline(self, calls: Sequence[Call], here: LoopState | None = None) -> list[Any]:
        """Run ``calls`` pipelined (grouped by node on Cluster); results in order.

        Errors come back as exception objects; a NOSCRIPT reply is repaired by loading the
        script and re-running only the calls that got it. ``here`` as in :meth:`run`.
        """
        if not calls:
            return []
        state = self.here() if here is None else here
        results = await self._pipeline_once(state, calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await self.load_scripts(state)
            again = await self._pipeline_once(state, [calls[i] for i in missing])
            for i, value in zip(missing, again, strict=True):
                results[i] = value
        for value in results:
            if isinstance(value, _RETRYABLE):
                raise value
        return results

    async def _pipeline_once(self, state: LoopState, calls: Sequence[Call]) -> list[Any]:
        lane = state.lane
        if lane is not None and all(call[0] == "script" for call in calls):
            return await lane.pipeline(
                [("EVALSHA", script.sha, keys, args) for _, script, keys, args in calls]
            )
        client = state.client
        pipe = client.pipeline(transaction=False) if not self.cluster else client.pipeline()
        for call in calls:
            if call[0] == "script":
                _, script, keys, args = call
                # execute_command: cluster pipelines refuse the evalsha() method but route
                # EVALSHA by its keys like any keyed command.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            else:
                pipe.execute_command(*call[1:])
        return list(await pipe.execute(raise_on_error=False))

    async def load_scripts(self, here: LoopState | None = None) -> None:
        """SCRIPT LOAD every script (on every primary on Cluster). The scripts are named
        by their SHA-1, the same for every loop: each server loads them once."""
        client = (self.here() if here is None else here).client
        for script in ALL_SCRIPTS:
            await client.script_load(script.source)
