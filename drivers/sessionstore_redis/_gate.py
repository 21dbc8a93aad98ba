"""Waiting for a pooled connection: first come, first served, for at most ``pool_timeout``.

redis-py's pool raises at once when all its connections are out, and the retry loop
backed off and tried again: meanwhile other callers took each freed connection, so one
caller could lose for the whole retry deadline and a busy pool looked like an
unavailable server (issue #14). A :class:`FairGate` holds one permit per connection of a
pool; a caller takes a permit before it takes a connection and gives it back after.
When none is free, callers queue, and a freed permit is handed straight to the first in
line (never put back for a newcomer to grab), so no caller is ever overtaken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool

from sessionstore import StoreUnavailableError

__all__ = ["FairGate", "FairPool", "PoolTimeoutError"]


class PoolTimeoutError(StoreUnavailableError):
    """Every connection of the pool stayed busy for ``pool_timeout`` seconds (the server
    may be healthy: the pool is too small for the load)."""


class FairGate:
    """``size`` permits, granted in request order; a wait is bounded by ``timeout``."""

    def __init__(self, size: int, timeout: float, what: str) -> None:
        self.size = size
        self.timeout = timeout
        self._what = what
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Callers in line."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a permit if one is free and nobody is in line (no wait)."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a permit, waiting behind everyone who asked before."""
        if self._free and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.timeout, self._expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # granted, but the caller is gone: pass it on
            else:
                self._drop(waiter)
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        """Give a permit back: to the first caller in line, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free = min(self._free + 1, self.size)

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        self._drop(waiter)
        waiter.set_exception(
            PoolTimeoutError(
                f"{self._what}: all {self.size} connections stayed busy for "
                f"{self.timeout:g} s (raise max_connections or pool_timeout)"
            )
        )

    def _drop(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already granted or expired
            self._waiters.remove(waiter)


class FairPool(ConnectionPool):
    """A redis-py pool whose callers wait their turn at a :class:`FairGate` of
    ``max_connections`` permits instead of getting ``MaxConnectionsError``: every user of
    the pool (the lean path, redis-py's commands and pipelines, a user's own calls on
    ``store.client``) queues in one line. Mixed in before redis-py's pool classes;
    ``pool_timeout`` (seconds) bounds a wait."""

    def __init__(self, *args: Any, pool_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = FairGate(self.max_connections, pool_timeout, "connection pool")
        #: connections handed out holding a permit (the lane's direct check-outs hold
        #: theirs themselves)
        self._permitted: set[AbstractConnection] = set()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        await self.gate.acquire()
        return await self.checkout(*args, **kwargs)

    async def checkout(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """``get_connection`` for a caller that already holds a permit (it goes back
        with the connection's :meth:`release`)."""
        try:
            conn: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self.gate.release()
            raise
        self._permitted.add(conn)
        return conn

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._permitted:
                self._permitted.discard(connection)
                self.gate.release()
