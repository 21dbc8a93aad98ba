"""The connection pool and the rules for riding out an outage or a server restart.

* A failure to get a connection (refused, the server starting up or shutting down, too
  many clients, a connect timeout) means nothing was sent: the operation is retried with
  backoff until ``retry_deadline``, then :class:`StoreUnavailableError` is raised.
* A connection lost (or a statement timed out) *after* a statement was sent leaves the
  outcome unknown. Reads are simply retried. A write is resolved by the caller's
  ``verify`` callback, which reads the stored state back (every write stores a unique
  token): applied -> success; not applied -> sent again; anything else ->
  :class:`OutcomeUnknownError`.
* Errors never carry the password: messages are built here, never copied from a DSN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar

import asyncpg

from sessionstore import ConfigurationError, OutcomeUnknownError, StoreUnavailableError

from ._options import PostgresOptions

__all__ = ["Outcome", "Pool"]

log = logging.getLogger("sessionstore.postgres")
T = TypeVar("T")
Outcome = Literal["applied", "not_applied", "unknown"]

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


def _describe(exc: BaseException) -> str:
    """A short description of a driver error (its class and SQLSTATE, no DSN)."""
    code = getattr(exc, "sqlstate", None)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}{f' [{code}]' if code else ''}{f': {text}' if text else ''}"


class Pool:
    """An asyncpg pool with the retry rules of the module docstring."""

    def __init__(self, options: PostgresOptions, target: str) -> None:
        self.options = options
        self.target = target  # "host:port/db", for messages (never the password)
        self._pool: asyncpg.Pool | None = None

    def _scrub(self, text: str) -> str:
        password = self.options.password
        return text.replace(password, "***") if password else text

    async def open(self) -> None:
        """Create the pool (retrying an unreachable server until the deadline)."""
        opts = self.options
        deadline = time.monotonic() + opts.retry_deadline
        delay = 0.05
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    host=opts.host,
                    port=opts.port,
                    user=opts.user,
                    password=opts.password,
                    database=opts.database,
                    ssl=opts.sslmode,
                    min_size=opts.min_size,
                    max_size=opts.max_size,
                    timeout=opts.connect_timeout,
                    command_timeout=opts.command_timeout,
                    server_settings={"application_name": opts.application_name},
                )
                return
            except _FATAL_CONNECT as exc:
                raise ConfigurationError(
                    f"PostgreSQL at {self.target} refused the connection: "
                    f"{self._scrub(_describe(exc))}"
                ) from None
            except _CONNECTION_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self.target} is unreachable: {self._scrub(_describe(exc))}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        """Close every connection (terminate them if a clean close takes over 5 s)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, *_CONNECTION_ERRORS):
                pool.terminate()

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
        sends the write again, ``"unknown"`` raises :class:`OutcomeUnknownError`.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError(f"the PostgreSQL pool for {self.target} is closed")
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.02
        sent = False
        last: BaseException | None = None
        while True:
            if sent and write:
                outcome = await self._resolve(verify, deadline)
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
                conn = await pool.acquire()
            except _FATAL_CONNECT as exc:
                raise ConfigurationError(
                    f"PostgreSQL at {self.target} refused the connection: "
                    f"{self._scrub(_describe(exc))}"
                ) from None
            except _CONNECTION_ERRORS as exc:
                last = exc
            else:
                try:
                    return await call(conn)
                except _CONNECTION_ERRORS as exc:
                    last, sent = exc, True
                    log.info("postgres: connection lost (%s), retrying", _describe(exc))
                finally:
                    await self._release(pool, conn)
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
        self, verify: Callable[[asyncpg.Connection], Awaitable[Outcome]] | None, deadline: float
    ) -> Outcome:
        if verify is None:
            return "unknown"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "unknown"
        try:
            return await self.run(verify)
        except StoreUnavailableError:
            return "unknown"

    @staticmethod
    async def _release(pool: asyncpg.Pool, conn: Any) -> None:
        # A connection lost mid-statement fails its reset on release: drop it (the pool
        # opens a new one). Cleanup never raises over the operation's own outcome.
        try:
            await pool.release(conn)
        except (*_CONNECTION_ERRORS, asyncpg.exceptions.PostgresError):
            with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                conn.terminate()
