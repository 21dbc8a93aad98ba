"""One store, any event loop: the loop-bound state of a store, kept per event loop.

redis-py's clients, pools and connections, and every asyncio object (locks, futures,
tasks, timers, the pool gate's waiters), belong to the event loop that made them: used
from another loop they fail (``RuntimeError: Event loop is closed``, or a future
attached to a different loop). :class:`PerLoop` keeps one state object per event loop
that calls the store, made on the first call from that loop (``make``), found again in
O(1): the last ``(loop, state)`` pair is cached, so a store used from one loop pays one
``asyncio.get_running_loop()`` and an identity check per lookup.

A state's loop may end before the store does (``asyncio.run`` twice, a framework's
``run_sync``, a thread with its own loop):

* **the loop winds down normally** (``asyncio.run``, ``asyncio.Runner``, pytest-asyncio
  and most frameworks call ``loop.shutdown_asyncgens()`` before closing it): each state
  registers a *keeper*, an async generator started on its loop, which that call closes;
  the keeper closes the state there, on its still-running loop (the pending Cluster index
  updates are sent, the connections closed gracefully) and forgets it;
* **the loop was closed without that** (``loop.close()`` by hand): the state is noticed
  the next time the store is used from a new loop (or at shutdown) and *abandoned*: its
  sockets are shut down directly (``TransportSocket.shutdown``, nothing awaited on the
  dead loop), its pending index updates handed to the loop that noticed.

``shutdown()`` takes every state (:meth:`PerLoop.take_all`); the caller closes each on its
own loop (see ``Backend.close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, Protocol, TypeVar

from sessionstore import StoreUnavailableError

__all__ = ["LoopBound", "PerLoop"]

log = logging.getLogger("sessionstore.redis")
_running_loop = asyncio.get_running_loop  # (one lookup less on the hot path)


class LoopBound(Protocol):
    """What :class:`PerLoop` needs of a state."""

    loop: asyncio.AbstractEventLoop
    closed: bool

    async def aclose(self) -> None:
        """Close the state on its own (running) loop."""

    def abandon(self) -> None:
        """Close the state without its loop (closed, or not running): nothing awaited."""

    def adopt(self, other: Any) -> None:
        """Take over what an abandoned state left to do (on this state's loop)."""


S = TypeVar("S", bound=LoopBound)


class PerLoop(Generic[S]):
    """The state of each event loop that uses a store (see the module doc)."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], S], what: str) -> None:
        self._make = make
        self._what = what
        self._states: dict[asyncio.AbstractEventLoop, S] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        # the last (loop, state) pair, read without the lock (one attribute: atomic)
        self._last: tuple[asyncio.AbstractEventLoop | None, S | None] = (None, None)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Has :meth:`take_all` been called (the store shut down)?"""
        return self._closed

    def here(self) -> S:
        """The state of the running event loop, made on its first call from it.
        :class:`StoreUnavailableError` once the store is shut down."""
        loop = _running_loop()
        last = self._last
        if last[0] is loop:
            return last[1]  # type: ignore[return-value]  # (never None with a loop)
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> S:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self._what}: the store was shut down")
            state = self._states.get(loop)
            if state is None or state.closed:
                abandoned = self._prune()
                state = self._states[loop] = self._make(loop)
                self._keepers[loop] = self._keep(state)
                for old in abandoned:
                    state.adopt(old)
            self._last = (loop, state)
        return state

    def _prune(self) -> list[S]:
        """Abandon the states of loops that were closed (called with the lock held)."""
        abandoned = []
        for loop in [loop for loop in self._states if loop.is_closed()]:
            state = self._states.pop(loop)
            _finish(self._keepers.pop(loop, None))
            if not state.closed:
                state.abandon()
                abandoned.append(state)
        return abandoned

    def _keep(self, state: S) -> AsyncGenerator[None, None]:
        """Start the keeper of ``state`` on the running loop (registered with it as an
        async generator, so that ``loop.shutdown_asyncgens()`` closes it)."""
        keeper = self._keeper(state)
        step = keeper.asend(None)
        with contextlib.suppress(StopIteration):
            step.send(None)  # runs to its first yield: no await happens before it
        return keeper

    async def _keeper(self, state: S) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # not when the store took the state (shutdown, or its loop found closed):
            # then this runs from _finish, on no loop, and must await nothing
            if not state.closed and self._states.get(state.loop) is state:
                self._forget(state)
                try:
                    await state.aclose()
                except Exception as exc:  # the loop is winding down: never fail it
                    log.debug("closing the store's state of a finished loop failed: %s", exc)

    def _forget(self, state: S) -> None:
        with self._lock:
            if self._states.get(state.loop) is state:
                del self._states[state.loop]
                self._keepers.pop(state.loop, None)
            if self._last[1] is state:
                self._last = (None, None)

    def take_all(self, *, final: bool = True) -> list[S]:
        """Every state (the store shuts down): with ``final``, later calls raise
        :class:`StoreUnavailableError`. The caller closes them; their keepers are done."""
        with self._lock:
            self._closed = final
            self._last = (None, None)
            states = [s for s in self._states.values() if not s.closed]
            keepers = list(self._keepers.values())
            self._states.clear()
            self._keepers.clear()
        for keeper in keepers:
            _finish(keeper)
        return states

    def __len__(self) -> int:
        """How many loops have a state now."""
        return len(self._states)


def _finish(keeper: AsyncGenerator[None, None] | None) -> None:
    """End a keeper without running its loop: the state is closed (or being closed) by
    someone else, so its ``finally`` awaits nothing; an ended keeper is never finalised
    by its loop (which could be closed by then)."""
    if keeper is None:
        return
    step = keeper.aclose()
    try:
        step.send(None)
    except (StopIteration, RuntimeError):  # ended; or running its finally on its loop
        pass
    finally:
        step.close()
