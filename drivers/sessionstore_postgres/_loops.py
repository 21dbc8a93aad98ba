"""One connection pool per event loop, so a store works from whichever loop calls it.

An asyncpg connection belongs to the loop it was opened on. :class:`LoopPools` keeps a
:class:`~._conn.Pool` per loop, created on the first operation from that loop, in a
mapping weakly keyed by the loop. The last ``(loop, pool)`` pair is cached in one
attribute (a tuple, so a thread never reads the loop of one pair with the pool of
another): an operation from the same loop as the previous one costs one
``get_running_loop()`` and one identity test.

A closed loop cannot run anything any more, and its connections keep it alive (each holds
its loop), so weak keys alone would not free them: every miss of the cache (a use from
another loop than the last) and :meth:`close` drop the connections of loops that have
closed, synchronously (:func:`~._conn.drop`). :meth:`close` from one loop closes its own
pool gracefully, drops those of closed loops, and hands every other live loop's pool a
synchronous :meth:`~._conn.Pool.abandon` through ``call_soon_threadsafe`` (a connection
is only ever touched on its own loop's thread), waiting a bounded time for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from typing import Final

from sessionstore import StoreUnavailableError

from ._conn import Pool
from ._options import PostgresOptions

__all__ = ["LoopPools"]

#: Seconds ``close()`` waits for other live loops to drop their connections.
HANDOFF_WAIT: Final = 2.0


class LoopPools:
    """The pools of one store, one per event loop that has used it."""

    def __init__(self, options: PostgresOptions, target: str) -> None:
        self.options = options
        self.target = target
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # guards _pools, _closed and the writes of _last
        self._closed = False
        # never matches a running loop: the first call takes the slow path
        self._last: tuple[object, Pool] = (None, Pool(options, target, None))

    def get(self) -> Pool:
        """The pool of the running loop (created on its first use)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last[0] is loop:
            return last[1]
        return self._miss(loop)

    def _miss(self, loop: asyncio.AbstractEventLoop) -> Pool:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"the PostgreSQL pool for {self.target} is closed")
            self._sweep()
            pool = self._pools.get(loop)
            if pool is None:
                pool = Pool(self.options, self.target, loop)
                pool.start()
                self._pools[loop] = pool
            self._last = (loop, pool)
            return pool

    def _sweep(self) -> None:
        """Drop the connections of loops that have closed (under the lock)."""
        for loop in [lp for lp in self._pools if lp.is_closed()]:
            self._pools.pop(loop).abandon()
        last = self._last[0]
        if isinstance(last, asyncio.AbstractEventLoop) and last.is_closed():
            self._last = (None, self._last[1])  # let the closed loop go

    def loops(self) -> int:
        """How many loops hold a pool (closed ones included until the next sweep)."""
        return len(self._pools)

    async def open(self) -> Pool:
        """Open the running loop's pool (``min_size`` connections, at least one, retrying
        an unreachable server until the deadline): ``initialize()``."""
        pool = self.get()
        await pool.open()
        return pool

    async def close(self, *, final: bool = True) -> None:
        """Close every loop's connections; then (``final``) operations raise
        :class:`StoreUnavailableError` (``final=False``: a failed ``initialize()`` that
        may be tried again)."""
        with self._lock:
            self._closed = final
            pools = list(self._pools.items())
            self._pools.clear()
            self._last = (None, self._last[1])
        here = asyncio.get_running_loop()
        pending: dict[asyncio.Future[None], tuple[asyncio.AbstractEventLoop, Pool]] = {}
        for loop, pool in pools:
            if loop is here:
                continue
            if loop.is_closed():
                pool.abandon()
                continue
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            try:
                loop.call_soon_threadsafe(_abandon, pool, done)
            except RuntimeError:  # closed in the meantime
                pool.abandon()
            else:
                pending[asyncio.wrap_future(done)] = (loop, pool)
        for loop, pool in pools:
            if loop is here:
                await pool.close()
        if pending:
            _, late = await asyncio.wait(pending, timeout=HANDOFF_WAIT)
            for fut in late:
                fut.cancel()
                loop, pool = pending[fut]
                if loop.is_closed():  # closed before it ran the hand-off
                    pool.abandon()
                # else: a live loop that is not running (or is blocked) drops them when it
                # runs the hand-off


def _abandon(pool: Pool, done: concurrent.futures.Future[None]) -> None:
    """Run on the pool's own loop: drop its connections, then tell the closer."""
    try:
        pool.abandon()
    finally:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # the closer gave up
            done.set_result(None)
