"""The connection pool and the rules for riding out an outage or a server restart.

* A failure to get a connection (refused, the server starting up or shutting down, too
  many clients, a connect timeout) means nothing was sent: the operation is retried with
  backoff until ``retry_deadline``, then :class:`StoreUnavailableError` is raised.
* A connection lost (or a statement timed out) *after* a statement was sent leaves the
  outcome unknown. Reads are simply retried. A write is resolved by the caller's
  ``verify`` callback, which reads the stored state back (every write stores a unique
  token): applied -> success; not applied -> sent again; anything else ->
  :class:`OutcomeUnknownError`. A write that the stored state alone cannot guard (no
  expected version, no event keys: ``"pending"``) is sent again only once the server
  process that ran the lost statement is gone (:meth:`Pool._fence`): a hung or cut-off
  backend could otherwise still commit the first copy after the second.
* Errors never carry the password: messages are built here, never copied from a DSN.

``command_timeout`` (one statement may not run longer) costs nothing per statement:

* the server enforces it: every connection opens with ``statement_timeout`` set to it, so
  PostgreSQL cancels an overrunning statement itself (SQLSTATE 57014, a
  :class:`~asyncpg.exceptions.QueryCanceledError`, which takes the "timed out after it
  was sent" path above; the connection answered and stays in the pool);
* a server or network that cannot answer (a hung host, a dead link, a stopped process)
  is caught by one watchdog per pool (:meth:`Pool._tick`, a timer every ``grace / 2``
  seconds, armed only while a connection is in use): a connection in use whose asyncpg
  statement counter has not moved for ``command_timeout + grace`` is terminated, which
  is a lost connection to the retry rules (so between ``command_timeout + grace`` and
  ``command_timeout + 2 * grace`` after the statement was sent);
* TCP connections keep alive and give up on unacknowledged data after the same limit
  (``SO_KEEPALIVE``, ``TCP_USER_TIMEOUT``), so a dead idle connection is closed by the
  kernel before it is handed out.

asyncpg's own ``command_timeout`` is not used: it arms and cancels a ``call_later`` timer
around every statement (8-20 us of client CPU each, docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import asyncpg

from sessionstore import ConfigurationError, OutcomeUnknownError, StoreUnavailableError

from . import _asyncpg_internals as internals
from ._options import PostgresOptions

__all__ = ["Outcome", "Pool", "drop"]

log = logging.getLogger("sessionstore.postgres")
T = TypeVar("T")
#: What ``verify`` found after a lost connection: the write is stored; it is not and may be
#: sent again (a compare-and-set or its keys keep the lost statement from applying it
#: too); ``"pending"``: it is not stored, but the lost statement could still apply it (a
#: write with no such guard), so it may be sent again only once the server process that
#: ran that statement is gone; or the stored state does not tell.
Outcome = Literal["applied", "not_applied", "pending", "unknown"]

# The server process that ran a statement whose reply was lost, if it is still there:
# ended (SIGTERM; a backend waiting on a lock or a client ends at once) and reported
# while it lasts. Only this pool's own processes: same role, database and
# application_name (a process id reused by another's backend is left alone).
_FENCE_SQL: Final = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 "
    "AND usename = current_user AND datname = current_database() AND application_name = $2"
)

# The connection could not be had or was lost; the server is restarting or shutting down.
_CONNECTION_ERRORS: Final = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin/crash shutdown
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed" and the like
    asyncpg.exceptions.InternalClientError,  # a protocol state broken by a lost connection
)
# Settings that retrying cannot fix.
_FATAL_CONNECT: Final = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28000, 28P01
    asyncpg.exceptions.InvalidCatalogNameError,  # no such database
)


def grace(command_timeout: float) -> float:
    """Seconds the watchdog waits past ``command_timeout`` before it terminates a
    connection: room for the server's own cancel (``statement_timeout``) to arrive first."""
    return 1.0 + command_timeout / 10


def _tcp_timeouts(conn: asyncpg.Connection, limit: float) -> None:
    """Keepalive and ``TCP_USER_TIMEOUT`` of ``limit`` seconds on a TCP connection (not a
    Unix socket; where the platform has them)."""
    sock = internals.socket_of(conn)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    seconds = max(1, math.ceil(limit))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", seconds),  # idle seconds before the first probe
        ("TCP_KEEPINTVL", max(1, seconds // 3)),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", seconds * 1000),  # ms data (or a probe) may stay unacknowledged
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _describe(exc: BaseException) -> str:
    """A short description of a driver error (its class and SQLSTATE, no DSN)."""
    code = getattr(exc, "sqlstate", None)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}{f' [{code}]' if code else ''}{f': {text}' if text else ''}"


def drop(conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop | None) -> None:
    """Close ``conn`` (opened on ``loop``) at once, without awaiting, even after its event
    loop has closed.

    ``Connection.terminate()`` aborts the transport, which asks the loop to run
    ``connection_lost`` (that closes the socket) soon; a closed loop refuses
    (``RuntimeError``), so the socket is closed here as the loop would have closed it.
    """
    try:
        conn.terminate()
    except RuntimeError:
        if loop is None or not loop.is_closed():
            raise
    if loop is None or not loop.is_closed():
        return
    internals.close_transport(conn)


class Pool:
    """A small connection pool with the retry rules of the module docstring, on one event
    loop (:class:`~._loops.LoopPools` keeps one per loop).

    asyncpg's own pool costs a task and a reset query per release (about as much as a
    round trip on loopback); here acquire and release are plain list operations when a
    connection is idle. A connection is dropped (never reused) when its statement failed
    with a connection error or was cancelled, or when it is left inside a transaction.
    """

    def __init__(
        self, options: PostgresOptions, target: str, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.options = options
        self.loop = loop  # the loop its connections belong to
        self.target = target  # "host:port/db", for messages (never the password)
        self._idle: list[asyncpg.Connection] = []
        self._size = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open = False
        # every connection open, idle or not -> its server process id (asyncpg forgets it
        # once the connection is terminated; a lost write's process is ended by it)
        self._conns: dict[asyncpg.Connection, int | None] = {}
        self._filling = False
        # the watchdog (module docstring): connections in use -> None (not looked at yet)
        # or (asyncpg's statement counter, when the watchdog first saw that value)
        self._busy: dict[asyncpg.Connection, tuple[int, float] | None] = {}
        self._overran: set[asyncpg.Connection] = set()  # terminated by the watchdog
        self._watch: asyncio.TimerHandle | None = None
        self._grace = grace(options.command_timeout)
        self._limit = options.command_timeout + self._grace

    def _scrub(self, text: str) -> str:
        password = self.options.password
        return text.replace(password, "***") if password else text

    async def _connect(self) -> asyncpg.Connection:
        opts = self.options
        internals.verify()  # once a process: fails loudly if an asyncpg upgrade moved one
        conn: asyncpg.Connection = await asyncpg.connect(
            host=opts.host,
            port=opts.port,
            user=opts.user,
            password=opts.password,
            database=opts.database,
            ssl=opts.sslmode,
            timeout=opts.connect_timeout,
            server_settings={
                "application_name": opts.application_name,
                # the server cancels an overrunning statement (no client timer per statement)
                "statement_timeout": str(max(1, math.ceil(opts.command_timeout * 1000))),
            },
        )
        try:
            _tcp_timeouts(conn, self._limit)
        except OSError:  # a socket that refuses an option keeps the kernel's defaults
            log.debug("postgres: TCP keepalive/user timeout not set on a connection")
        if not self._open:  # closed while connecting (a shutdown from another loop)
            conn.terminate()
            raise StoreUnavailableError(f"the PostgreSQL pool for {self.target} is closed")
        self._conns[conn] = conn.get_server_pid()
        return conn

    async def _fill(self) -> None:
        """Open connections up to ``min_size`` together (the first use of a loop, or the
        first connection after an outage); one fill at a time."""

        async def one() -> None:
            # counted when it starts (a task cancelled before that never runs this), and
            # never past min_size (<= max_size), whatever opened on demand meanwhile
            if not self._open or self._size >= self.options.min_size:
                return
            self._size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append(conn)
            self._wake()

        if self._filling:
            return
        self._filling = True
        try:
            missing = self.options.min_size - self._size
            # a failed one is opened again on demand; the operation goes on with its own
            await asyncio.gather(*(one() for _ in range(missing)), return_exceptions=True)
        finally:
            self._filling = False

    def _dispose(self, conn: asyncpg.Connection) -> None:
        self._size -= 1
        self._conns.pop(conn, None)
        self._overran.discard(conn)
        drop(conn, self.loop)

    def _arm(self) -> None:
        loop = self.loop or asyncio.get_running_loop()
        self._watch = loop.call_later(self._grace / 2, self._tick)

    def _tick(self) -> None:
        """The watchdog: terminate each connection in use whose statement counter has not
        moved for ``command_timeout + grace``, then look again in ``grace / 2`` (while
        any connection is in use)."""
        self._watch = None
        busy = self._busy
        if not busy:
            return
        now = asyncio.get_running_loop().time()
        for conn, seen in list(busy.items()):
            count = internals.statements_sent(conn)  # moves as each statement is sent
            if seen is None or seen[0] != count:
                busy[conn] = (count, now)  # a new statement since the last look
            elif now - seen[1] >= self._limit and conn not in self._overran:
                log.warning(
                    "postgres: a statement on %s got no reply for over %.1f s (command_timeout "
                    "%.1f s): connection terminated",
                    self.target,
                    now - seen[1],
                    self.options.command_timeout,
                )
                self._overran.add(conn)
                conn.terminate()  # the awaiting call fails as a lost connection
        self._arm()

    def abandon(self) -> None:
        """Close the pool without awaiting: on its own loop's thread, or once that loop
        has closed (then every connection goes, in use or not: no task is left to release
        one). Connections in use on a live loop are dropped when released (the watchdog
        keeps watching them until then)."""
        self._open = False
        idle, self._idle = self._idle, []
        for conn in idle:
            self._dispose(conn)
        if self.loop is not None and self.loop.is_closed():
            self._busy.clear()  # nothing runs on a closed loop: no timer to look again
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            for conn in list(self._conns):
                self._dispose(conn)
        else:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _refused(self, exc: BaseException) -> ConfigurationError:
        return ConfigurationError(
            f"PostgreSQL at {self.target} refused the connection: {self._scrub(_describe(exc))}"
        )

    def start(self) -> None:
        """Open the pool without connecting (a loop's first use connects on demand)."""
        self._open = True

    async def open(self) -> None:
        """Open ``min_size`` connections (at least one, to check the settings), retrying
        an unreachable server until the deadline."""
        self._open = True
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.05
        while self._size < max(1, self.options.min_size):
            try:
                self._size += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._size -= 1
                    raise
                self._idle.append(conn)
            except _FATAL_CONNECT as exc:
                await self.close()
                raise self._refused(exc) from None
            except _CONNECTION_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    await self.close()
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self.target} is unreachable: {self._scrub(_describe(exc))}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        """Close the idle connections (those in use are closed when released; the
        watchdog stops by itself once none is in use)."""
        self._open = False
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            self._conns.pop(conn, None)
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.exceptions.PostgresError):
                conn.terminate()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> asyncpg.Connection | None:
        """An idle connection that is still open, without awaiting (``None``: none idle,
        or the pool is closed); closed ones found on the way are forgotten."""
        idle = self._idle
        while idle and self._open:
            conn = idle.pop()
            if not conn.is_closed():
                return conn
            self._size -= 1
            self._conns.pop(conn, None)
        return None

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            if not self._open:
                raise StoreUnavailableError(f"the PostgreSQL pool for {self.target} is closed")
            conn = self._take()
            if conn is not None:
                return conn
            if self._size < self.options.max_size:
                self._size += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._size -= 1
                    self._wake()
                    raise
                if self._size < self.options.min_size:
                    try:
                        await self._fill()
                    except BaseException:  # cancelled: the connection is fine
                        self._release(conn, False)
                        raise
                return conn
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on
                raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: asyncpg.Connection, broken: bool) -> None:
        if broken or not self._open or conn.is_closed() or conn.is_in_transaction():
            self._dispose(conn)
        else:
            self._idle.append(conn)
        if self._waiters:
            self._wake()

    async def run(
        self,
        call: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        write: bool = False,
        verify: Callable[[asyncpg.Connection], Awaitable[Outcome]] | None = None,
        applied: Callable[[], T] | None = None,
    ) -> T:
        """Run ``call`` on a pooled connection under the retry rules.

        ``write=True`` with ``verify``: after a lost connection the stored state is read
        back with ``verify``; ``"applied"`` returns ``applied()``, ``"not_applied"``
        sends the write again, ``"pending"`` sends it again once the server process that
        ran the lost statement is gone (:meth:`_fence`), ``"unknown"`` raises
        :class:`OutcomeUnknownError`.
        """
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.02
        sent = False
        lost_pid: int | None = None  # the server process of a statement whose reply was lost
        last: BaseException | None = None
        while True:
            if sent and write:
                outcome = await self._resolve(verify, deadline, lost_pid)
                if outcome == "applied":
                    assert applied is not None
                    return applied()
                if outcome == "unknown":
                    raise OutcomeUnknownError(
                        f"the connection to PostgreSQL at {self.target} was lost during a "
                        "write and the stored state does not tell whether it was applied"
                    )
                sent = False
            try:
                # an idle connection without a coroutine (the common case), else wait
                conn = self._take() or await self._acquire()
            except _FATAL_CONNECT as exc:
                raise self._refused(exc) from None
            except _CONNECTION_ERRORS as exc:
                last = exc
            else:
                broken = True
                busy = self._busy
                busy[conn] = None
                if self._watch is None:
                    self._arm()
                try:
                    result = await call(conn)
                    broken = False
                    return result
                except asyncpg.exceptions.QueryCanceledError as exc:
                    # statement_timeout (or an operator's pg_cancel_backend): the statement
                    # did not run to its end; the connection answered and is kept
                    last, sent, broken, lost_pid = exc, True, False, None
                    reason = self._scrub(_describe(exc))
                    log.info("postgres: statement cancelled (%s), retrying", reason)
                except _CONNECTION_ERRORS as exc:
                    last, sent, lost_pid = exc, True, self._conns.get(conn)
                    if conn in self._overran:
                        last = TimeoutError(
                            "no reply within command_timeout "
                            f"({self.options.command_timeout:g} s + {self._grace:g} s)"
                        )
                    reason = self._scrub(_describe(last))
                    log.info("postgres: connection lost (%s), retrying", reason)
                except Exception:
                    # an SQL error or the caller's own (a conflict in a batch): the
                    # connection is fine (one left inside a transaction is dropped)
                    broken = False
                    raise
                finally:
                    busy.pop(conn, None)
                    self._release(conn, broken)
            if time.monotonic() + delay > deadline:
                if sent and write:
                    raise OutcomeUnknownError(
                        f"PostgreSQL at {self.target} stayed unreachable after a write was "
                        f"sent: {self._scrub(_describe(last))}"
                    )
                raise StoreUnavailableError(
                    f"PostgreSQL at {self.target} is unreachable: {self._scrub(_describe(last))}"
                )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    async def _resolve(
        self,
        verify: Callable[[asyncpg.Connection], Awaitable[Outcome]] | None,
        deadline: float,
        lost_pid: int | None,
    ) -> Outcome:
        """Whether a write whose reply was lost was applied (``verify``), the statement
        that carried it ended first where the stored state cannot guard a second copy."""
        if verify is None:
            return "unknown"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "unknown"
        try:
            outcome = await self.run(verify)
            if outcome != "pending":
                return outcome
            if lost_pid is None:  # the server answered (a cancelled statement): it ended
                return "not_applied"
            if not await self._fence(lost_pid, deadline):
                return "unknown"
            outcome = await self.run(verify)  # it may have committed before it ended
        except StoreUnavailableError:
            return "unknown"
        return "not_applied" if outcome == "pending" else outcome

    async def _fence(self, pid: int, deadline: float) -> bool:
        """End server process ``pid`` (it ran a write whose reply was lost) and wait until
        it is gone, at most ``grace`` and never past ``deadline``: True when it is gone,
        so that the statement it ran is committed or rolled back for good. A backend
        waiting on a lock, or on a client that is no longer there, ends at once; a
        stopped or hung one does not (then the write's outcome stays unknown)."""
        until = min(deadline, time.monotonic() + self._grace)
        app = self.options.application_name
        delay = 0.005
        while True:
            rows = await self.run(lambda c: c.fetch(_FENCE_SQL, pid, app))
            if not rows:
                return True
            if time.monotonic() + delay > until:
                log.warning(
                    "postgres: the server process of a write whose reply was lost on %s did "
                    "not end within %.1f s: its outcome is unknown",
                    self.target,
                    self._grace,
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
