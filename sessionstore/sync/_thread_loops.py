"""An event loop per calling thread, for the stores that work from any event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import BlockingCallError, StoreUnavailableError

__all__ = ["ThreadLoops", "blocking_call_error", "in_plain_thread", "run_on_new_loop"]

log = logging.getLogger("sessionstore.sync")

R = TypeVar("R")

#: How many polls for I/O without waiting a thread loop skips in a row.
SKIPPED_POLLS = 4

#: How long a call that was interrupted (or timed out) may take to end once cancelled.
CANCEL_GRACE = 5.0


def blocking_call_error() -> BlockingCallError:
    """The error of a blocking call made from a thread that runs an event loop."""
    return BlockingCallError(
        "a blocking sessionstore.sync call was made from a thread that runs an "
        "event loop; in async code use the async store (await store.method(...))"
    )


def closed_error() -> StoreUnavailableError:
    """The error of a call after the facade was shut down."""
    return StoreUnavailableError("this sessionstore.sync facade is closed")


class ThreadLoops:
    """Runs each call on an event loop owned by the calling thread: no hand-off to
    another thread, no wake-up of one.

    For a store whose capabilities declare ``any_event_loop`` (memory, file, SQLite,
    PostgreSQL, Redis but Cluster), with ``SyncSessionStore(store,
    per_thread_loops=True)``: every thread that calls gets a loop of its own, made on its
    first call and run only while one of its calls runs. A loop of a thread that has
    ended is closed (as ``asyncio.run`` closes one, so that the store closes what it
    opened on it) when the next thread makes its first call, and at the latest by
    :meth:`close`. :meth:`close` closes every loop that is idle and marks the others,
    which their threads close as soon as their call returns.

    See ``docs/decisions.md``, *The sync facade: per-thread loops, opt-in*.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: list[_ThreadLoop] = []
        self._closed = False
        self._used = False

    @property
    def started(self) -> bool:
        """Whether some thread has a loop open now."""
        return bool(self._loops)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def used(self) -> bool:
        """Whether some thread ever had a loop (so the store may hold resources)."""
        return self._used

    @property
    def open_loops(self) -> int:
        """How many threads have a loop open now."""
        return len(self._loops)

    def call(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run ``coro`` on the calling thread's loop and return its result (or raise its
        error).

        Raises :class:`BlockingCallError` when the calling thread runs an event loop
        itself, :class:`StoreUnavailableError` after :meth:`close`, and ``TimeoutError``
        after ``timeout`` seconds. A timeout or an interrupt (``KeyboardInterrupt``)
        cancels the coroutine.
        """
        if asyncio._get_running_loop() is not None:  # (public in asyncio.events.__all__)
            coro.close()
            raise blocking_call_error()
        here: _ThreadLoop | None = getattr(self._local, "here", None)
        if here is None:
            here = self._open(coro)
        return here.run(coro, timeout)

    def _open(self, coro: Coroutine[Any, Any, Any]) -> _ThreadLoop:
        """The calling thread's first call: its loop; the loops of threads that ended
        are closed meanwhile (here, after this thread's loop is registered)."""
        with self._lock:
            if self._closed:
                coro.close()
                raise closed_error()
            ended = [tl for tl in self._loops if not tl.thread.is_alive()]
            for tl in ended:
                self._loops.remove(tl)
            here = _ThreadLoop(self, threading.current_thread())
            self._loops.append(here)
            self._used = True
        self._local.here = here
        for tl in ended:
            tl.close_if_idle()
        return here

    def _forget(self, tl: _ThreadLoop) -> None:
        with self._lock:
            if tl in self._loops:
                self._loops.remove(tl)

    def close(self) -> None:
        """Close every loop that is not running a call (on the calling thread; the store's
        per-loop resources are closed by ``loop.shutdown_asyncgens()`` there, as in
        ``asyncio.run``); a loop running a call is closed by its thread when the call
        returns. Later calls raise :class:`StoreUnavailableError`. Idempotent.

        Must be called from a thread that runs no event loop (the facade hands it to a
        thread of its own otherwise).
        """
        with self._lock:
            self._closed = True
            loops = list(self._loops)
        for tl in loops:
            tl.close_if_idle()


class _ThreadLoop:
    """One thread's loop. ``lock`` is held while the loop runs (a call of its thread, or
    another thread closing it): the two never overlap."""

    __slots__ = ("closed", "lock", "loop", "owner", "thread")

    def __init__(self, owner: ThreadLoops, thread: threading.Thread) -> None:
        self.owner = owner
        self.thread = thread
        self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(_LeanSelector())
        self.lock = threading.Lock()
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, R], timeout: float | None) -> R:
        lock = self.lock
        if not lock.acquire(blocking=False):  # another thread is closing it
            lock.acquire()
        try:
            if self.closed or self.owner._closed:
                coro.close()
                raise closed_error()
            return _run(self.loop, coro, timeout)
        finally:
            lock.release()
            if self.owner._closed:  # closed while this call ran: this thread closes it
                self.close_if_idle()

    def close_if_idle(self) -> None:
        """Close the loop unless a call is running on it (its thread closes it then)."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            if self.closed:
                return
            self.closed = True
            _close_loop(self.loop)
        finally:
            self.lock.release()
            self.owner._forget(self)


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, R], timeout: float | None) -> R:
    """Run ``coro`` on ``loop`` (in the calling thread) and return its result; a timeout
    or an interrupt cancels it.

    Leaner than ``loop.run_until_complete``: the coroutine stops the loop itself as it
    ends (``_ending``), in the turn that ends it, where ``run_until_complete`` waits one
    more turn for a done-callback to do it.
    """
    task = loop.create_task(_ending(loop, coro))
    expired: list[bool] = []
    timer = None if timeout is None else loop.call_later(timeout, _expire, loop, expired)
    try:
        while not task.done() and not expired:  # (a task that once refused to be
            loop.run_forever()  # cancelled may stop the loop in a later call's turn)
        if not task.done():
            raise TimeoutError(f"the call did not finish within {timeout} s (cancelled)")
        return task.result()
    except BaseException:
        if not task.done():
            task.cancel()
            grace = loop.call_later(CANCEL_GRACE, loop.stop)
            with contextlib.suppress(BaseException):
                loop.run_forever()  # until the cancelled task ends (it stops the loop)
            grace.cancel()
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _expire(loop: asyncio.AbstractEventLoop, expired: list[bool]) -> None:
    expired.append(True)
    loop.stop()


async def _ending(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, R]) -> R:
    try:
        return await coro
    finally:
        loop.stop()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Wind ``loop`` down as ``asyncio.run`` does (tasks cancelled, async generators
    closed: the store closes its resources of this loop there; the default executor
    shut down), each step for at most :data:`CANCEL_GRACE` seconds, then close it. Runs
    it on the calling thread."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_GRACE))
        for step in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
            loop.run_until_complete(asyncio.wait_for(step(), CANCEL_GRACE))
    except Exception:  # pragma: no cover - a task that refuses to end
        log.exception("a sessionstore.sync thread's event loop did not wind down cleanly")
    finally:
        loop.close()


class _LeanSelector(selectors.DefaultSelector):
    """A thread loop's selector: a poll for I/O without waiting (``timeout`` 0: asyncio
    asks for one before every turn that has callbacks ready) is skipped, up to
    :data:`SKIPPED_POLLS` in a row. A call makes three turns (start, wait for the reply,
    finish); two of them then cost no system call, nor the hand-over of the GIL to
    another thread that each system call allows. I/O is still seen at the latest on the
    next poll that waits, or after that many turns.
    """

    def __init__(self) -> None:
        super().__init__()
        self._skipped = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0 and self._skipped < SKIPPED_POLLS:
            self._skipped += 1
            return []
        self._skipped = 0
        return super().select(timeout)


def run_on_new_loop(coro: Coroutine[Any, Any, R], timeout: float | None) -> R:
    """Run ``coro`` on a new event loop in the calling thread, then close that loop."""
    loop = asyncio.new_event_loop()
    try:
        return _run(loop, coro, timeout)
    finally:
        _close_loop(loop)


def in_plain_thread(fn: Callable[[], None], name: str) -> None:
    """Run ``fn`` on a new daemon thread (one that runs no event loop), not waiting for
    it: for closing a facade collected inside a running event loop, never blocking it."""
    threading.Thread(target=fn, name=name, daemon=True).start()
