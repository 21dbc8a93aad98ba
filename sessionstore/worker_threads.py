"""Worker threads for a driver's blocking I/O, the most recently used one first.

Part of the driver interface (exported by :mod:`sessionstore.driver`): the file and SQLite
drivers run every blocking call on a :class:`HotThreads` pool of their own, and a
third-party driver over a blocking client library can do the same.

``asyncio.to_thread`` hands each call to the default executor, whose
``ThreadPoolExecutor`` starts a new thread whenever no idle one has *already* signalled
that it is idle; a store making one call after another therefore rotates over several
threads. Each call then starts on a thread whose CPU caches are cold, and on a SQLite
connection (one per thread) whose page cache the previous call, made on another
connection, has just invalidated, so it reads its pages again. Measured on the durable
``append_events`` path: the index ``UPDATE`` after the ``fdatasync`` took ~48 µs on the
rotating threads (see ``docs/performance.md``).

:class:`HotThreads` keeps its idle workers on a stack: a call goes to the worker that
finished last, so sequential calls stay on one thread, and concurrent calls still get as
many threads as they need (up to ``max_workers``; beyond that they queue in order). The
hand-off is one lock release each way (no ``concurrent.futures`` future): the result
comes back with ``loop.call_soon_threadsafe``. As with ``asyncio.to_thread``, the call runs
in a copy of the caller's :mod:`contextvars` context, so context variables (tracing spans,
request ids) set by the caller are visible inside it.

Cancellation matches ``asyncio.to_thread``: a call cancelled before a worker picks it up
never runs; one already running runs to its end (its result is dropped).

:class:`EngineThreads` is what a store holds around its pool when it runs a synchronous
engine on it (the file and SQLite drivers): the pool started at the first call and
stopped with the engine, and the engine's I/O errors told as the store's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EngineThreads", "HotThreads"]

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]
_STOP: Any = object()  # a worker's job meaning "exit"


def _deliver(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Worker:
    __slots__ = ("job", "pool", "thread", "wake")

    def __init__(self, pool: HotThreads, job: _Job) -> None:
        self.pool = pool
        self.job: _Job | None = job
        self.wake = threading.Lock()
        self.wake.acquire()
        self.thread = threading.Thread(target=self._main, name=pool.name, daemon=True)

    def _main(self) -> None:
        pool = self.pool
        job = self.job
        self.job = None
        while True:
            if job is None:
                self.wake.acquire()
                job = self.job
                self.job = None
            if job is _STOP or job is None:
                return
            loop, fut, fn, args = job
            job = None
            if fut.cancelled():  # cancelled while queued: never run (as to_thread)
                job = pool._next(self)
                continue
            try:
                outcome = (True, fn(*args))
            except BaseException as exc:  # handed to the awaiting task
                outcome = (False, exc)
            del fn, args
            # back on the idle stack *before* the caller hears of the result, so the
            # caller's next call finds this (warm) thread idle rather than starting one
            job = pool._next(self)
            with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits
                loop.call_soon_threadsafe(_deliver, fut, *outcome)
            del outcome, fut, loop


class HotThreads:
    """A small thread pool for one store: ``await pool.run(fn, *args)``."""

    def __init__(self, name: str, max_workers: int | None = None) -> None:
        self.name = name
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last one to finish is reused first
        self._backlog: collections.deque[_Job] = collections.deque()
        self._workers: set[_Worker] = set()
        self._closed = False
        _POOLS.add(self)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread and return (or raise) what it does."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        # the caller's context, as asyncio.to_thread passes it (a cheap copy: an immutable map)
        job: _Job = (loop, fut, contextvars.copy_context().run, (fn, *args))
        with self._lock:
            if self._closed:
                raise RuntimeError("the store's worker threads were shut down")
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.release()
            elif len(self._workers) < self.max_workers:
                worker = _Worker(self, job)
                self._workers.add(worker)
                worker.thread.start()
            else:
                self._backlog.append(job)
        return await fut

    def _next(self, worker: _Worker) -> _Job | None:
        """A finished worker's next job: the oldest queued one, else None (it is idle)."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._closed:
                self._workers.discard(worker)
                return _STOP  # type: ignore[no-any-return]
            self._idle.append(worker)
            return None

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers once the queued calls are done (idempotent)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._workers.discard(worker)
                worker.job = _STOP
                worker.wake.release()
            threads = [w.thread for w in (*idle, *self._workers)]
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current and thread.is_alive():
                    thread.join()

    def _forget_after_fork(self) -> None:
        """In a forked child the workers do not exist: start again from none."""
        self._lock = threading.Lock()
        self._idle = []
        self._workers = set()
        self._backlog.clear()


class EngineThreads:
    """A store's synchronous engine on a :class:`HotThreads` pool of the store's own.

    ``await run(fn, *args)`` is one hop: ``fn(*args)`` on a worker thread, the pool started
    at the first call. An exception of one of ``errors`` (the engine's I/O errors, e.g.
    ``OSError``) is raised as ``unavailable(exc)``, chained to it; any other goes through
    unchanged. ``close(close_engine)`` runs ``close_engine`` on a thread of its own, then
    lets the idle workers exit; a store initialised again starts a new pool at its next
    call.
    """

    def __init__(
        self,
        name: str,
        errors: tuple[type[BaseException], ...],
        unavailable: Callable[[Any], BaseException],
    ) -> None:
        self.name = name
        self.pool: HotThreads | None = None
        self._errors = errors
        self._unavailable = unavailable

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread (see the class)."""
        pool = self.pool
        if pool is None:
            pool = self.pool = HotThreads(self.name)
        try:
            return await pool.run(fn, *args)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    async def close(self, close_engine: Callable[[], object]) -> None:
        """Run ``close_engine`` on a thread, then stop the pool (idle workers exit at once)."""
        pool, self.pool = self.pool, None
        try:
            await asyncio.to_thread(close_engine)
        finally:
            if pool is not None:
                pool.shutdown(wait=False)


_POOLS: weakref.WeakSet[HotThreads] = weakref.WeakSet()


def _after_fork() -> None:
    for pool in list(_POOLS):
        pool._forget_after_fork()


def _at_exit() -> None:
    """At interpreter exit, let a call still running finish (as the default executor
    does): the workers are daemon threads only so that idle ones never hold exit up."""
    for pool in list(_POOLS):
        pool.shutdown(wait=True)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork)
# threading's own exit hook runs before the interpreter stops its threads (atexit runs
# after); concurrent.futures uses it the same way
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_at_exit)
