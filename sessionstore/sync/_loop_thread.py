"""The private event-loop thread that the sync facade runs its async store on."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import selectors
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import BlockingCallError, StoreUnavailableError
from ._wakeup import Bell, Doorbell, bell_for_this_thread

__all__ = ["LoopThread", "run_before_threads_stop"]

log = logging.getLogger("sessionstore.sync")

R = TypeVar("R")

#: How long closing waits for tasks still running on the loop (seconds).
CLOSE_GRACE = 5.0


def run_before_threads_stop(hook: Callable[[], object]) -> None:
    """Call ``hook`` at interpreter exit *before* worker pools refuse new work.

    ``atexit`` runs too late for a store to shut down cleanly: by then
    ``concurrent.futures`` (so ``asyncio.to_thread``) and the file driver's worker
    threads have stopped taking calls, from their hooks in ``threading``'s exit list.
    That list (``threading._register_atexit``, CPython 3.9+, private; guarded by
    ``tests/sync/test_sync_store.py``) runs its hooks newest first, so a facade that
    registers after its store's driver was imported shuts down before the driver's pool.
    Without it, ``atexit`` is the fallback.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - another Python
        atexit.register(hook)
        return
    try:
        register(hook)
    except RuntimeError:  # already shutting down: nothing will run it
        log.debug("interpreter exit under way; exit hook not registered")


class LoopThread:
    """An event loop on a daemon thread of its own, started by the first call.

    :meth:`call` runs a coroutine there and blocks the calling thread until it finishes;
    any number of threads may call at once (the loop serialises nothing but itself).
    :meth:`close` stops the loop after cancelling what still runs on it.

    The thread is a daemon so that a facade nobody closed cannot hang interpreter exit;
    the facades register their own close with ``run_before_threads_stop`` to shut
    their stores down first.
    """

    def __init__(self, name: str = "sessionstore-sync") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # calls waiting to start, and the loop's state, under _wake_lock: whether it is
        # blocked waiting for events (then a new call must ring its doorbell), whether a
        # wake-up is already on its way, whether it is gone (no call will ever start)
        self._doorbell: Doorbell | None = None
        self._queue: deque[_Call] = deque()
        self._wake_lock = threading.Lock()
        self._polling = False
        self._wake_pending = False
        self._gone = False
        #: finished calls whose threads are woken when the loop next waits for events
        self._finished: deque[_Call] = deque()

    @property
    def started(self) -> bool:
        """Whether the thread has been started (and not closed)."""
        return self._loop is not None and not self._closed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def call(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run ``coro`` on the loop thread and return its result (or raise its error).

        Raises :class:`BlockingCallError` when the calling thread runs an event loop
        itself, :class:`StoreUnavailableError` after :meth:`close`, and ``TimeoutError``
        after ``timeout`` seconds. A timeout or an interrupt of the waiting thread
        (``KeyboardInterrupt``) cancels the coroutine.
        """
        if asyncio._get_running_loop() is not None:  # (public in asyncio.events.__all__)
            coro.close()
            raise BlockingCallError(
                "a blocking sessionstore.sync call was made from a thread that runs an "
                "event loop; in async code use the async store (await store.method(...))"
            )
        loop = self._loop if not self._closed else None
        if loop is None:
            loop = self._start(coro)
        call = _Call(loop, coro, self._finished, bell_for_this_thread())
        self._submit(call)
        result: R = call.wait(timeout)
        return result

    def _submit(self, call: _Call) -> None:
        """Queue ``call`` for the loop; ring the loop's doorbell only if it is blocked
        waiting for events and no wake-up is on its way.

        A loop that is running a turn takes the queued calls itself before it next waits
        (``_WakingSelector``), so under load (many threads calling while the loop is
        busy) most calls cost no wake-up at all.
        """
        with self._wake_lock:
            if self._gone:
                call.coro.close()
                raise _closed()
            self._queue.append(call)
            if not self._polling or self._wake_pending:
                return
            self._wake_pending = True
        assert self._doorbell is not None  # set before the loop was
        self._doorbell.ring()  # (a loop gone meanwhile fails what is queued: _run)

    def _start_queued(self) -> None:  # on the loop thread
        with self._wake_lock:
            self._wake_pending = False
            if self._gone:  # stopping: what is queued fails instead (_fail_queued)
                return
        queue = self._queue
        while queue:
            queue.popleft().start()

    def _before_wait(self, timeout: float | None) -> float | None:  # on the loop thread
        """Called by the selector before the loop waits for events: wakes the threads
        whose calls finished, starts the calls queued meanwhile (then the loop does not
        wait: ``timeout`` 0), else marks the loop as blocked until :meth:`_after_wait`."""
        _wake(self._finished)
        with self._wake_lock:
            if not self._queue:
                self._polling = timeout != 0
                return timeout
        self._start_queued()
        return 0

    def _after_wait(self, rung: bool) -> None:  # on the loop thread
        """Called by the selector once the wait is over; ``rung``: a caller rang the
        doorbell, so start the calls queued meanwhile (in this turn)."""
        if self._polling:
            with self._wake_lock:
                self._polling = False
        if rung:
            assert self._doorbell is not None
            self._doorbell.drain()
            self._start_queued()

    def _fail_queued(self) -> None:  # on the loop thread, its loop stopped for good
        with self._wake_lock:
            self._gone = True
            queued = list(self._queue)
            self._queue.clear()
        for call in queued:
            call.coro.close()
            call.fail(_closed())

    def _start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                coro.close()
                raise _closed()
            if self._loop is None:
                self._doorbell = doorbell = Doorbell()
                loop = asyncio.SelectorEventLoop(_WakingSelector(self, doorbell))
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name=self._name, daemon=True
                )
                thread.start()
                ready.wait()
                self._thread, self._loop = thread, loop
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            with self._wake_lock:  # no call starts on a stopping loop: every task that
                self._gone = True  # is cancelled below began in the turn it was made
            _wake(self._finished)  # the last turn ended without waiting for events
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                gather = asyncio.gather(*pending, return_exceptions=True)
                loop.run_until_complete(asyncio.wait_for(gather, CLOSE_GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:  # pragma: no cover - a task that refuses to end
            log.exception("sessionstore.sync loop thread did not wind down cleanly")
        finally:
            self._fail_queued()
            _wake(self._finished)
            loop.close()

    def close(self, timeout: float | None = None) -> None:
        """Stop the loop (tasks still running are cancelled) and join the thread.

        Idempotent. Called from the loop thread itself it only asks the loop to stop.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout)


def _wake(finished: deque[_Call]) -> None:
    """Wake the threads of the calls that finished (each ring releases the GIL around
    its system call, so a woken thread does not wake to wait for the GIL)."""
    while finished:
        call = finished.popleft()
        call.done = True
        call.bell.ring()


class _WakingSelector(selectors.DefaultSelector):
    """The loop thread's selector: between two turns of the loop, before it waits for
    events, it wakes the threads whose calls finished during the turn, all at once, and
    starts the calls queued meanwhile (``LoopThread._before_wait``); it also watches the
    loop's doorbell, which a caller rings when the loop is waiting, and starts the
    queued calls when it rang (never reported to the loop: it is not the loop's).

    A thread woken by its call's done-callback wants the GIL at once, while the loop
    thread still runs the rest of its turn: every system call the loop thread makes then
    (each socket send) lets a caller take the GIL, and the loop waits for it to block
    again. Woken here, the callers run while the loop thread waits for events with the
    GIL released; and a call queued while the loop runs a turn needs no wake-up (see
    ``docs/decisions.md``, *The sync facade's loop thread hands calls over between
    turns*, and *The sync facade wakes its callers through eventfds*).
    """

    def __init__(self, owner: LoopThread, doorbell: Doorbell) -> None:
        super().__init__()
        self._owner = owner
        self._doorbell = self.register(doorbell.fd, selectors.EVENT_READ)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        owner = self._owner
        timeout = owner._before_wait(timeout)
        rung = False
        try:
            events = super().select(timeout)
            doorbell = self._doorbell
            for i, (key, _) in enumerate(events):
                if key is doorbell:
                    del events[i]
                    rung = True
                    break
            return events
        finally:
            owner._after_wait(rung)


class _Call:
    """One coroutine handed to the loop thread, and the calling thread waiting for it.

    Leaner than ``asyncio.run_coroutine_threadsafe`` (no ``concurrent.futures.Future``,
    no condition variable, no future chaining, no done-callback): the coroutine runs
    inside :meth:`_run`, which keeps its result and queues the call in ``finished`` as it
    ends; the loop thread rings the caller's bell when it next waits for events
    (``_WakingSelector``). ``done`` is set before the ring: a bell may ring late for a
    call its thread gave up on, and the next call of that thread waits again then.
    """

    __slots__ = (
        "abandoned",
        "bell",
        "coro",
        "done",
        "error",
        "finished",
        "loop",
        "result",
        "started",
        "task",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        finished: deque[_Call],
        bell: Bell,
    ) -> None:
        self.loop = loop
        self.coro = coro
        self.finished = finished
        self.bell = bell
        self.task: asyncio.Task[None] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = False  # its coroutine began to run (in the turn it was queued)
        self.abandoned = False  # its thread gave up waiting
        self.done = False

    def start(self) -> None:  # on the loop thread
        if self.abandoned:
            self.coro.close()
            return
        try:
            # (asyncio.Task, not loop.create_task: the loop is ours, with no task
            # factory, and this skips three Python-level calls per call)
            self.task = asyncio.Task(self._run(), loop=self.loop)
        except BaseException as exc:  # the loop is closing
            self.coro.close()
            self.fail(exc)

    async def _run(self) -> None:
        self.started = True
        try:
            self.result = await self.coro
        except (asyncio.CancelledError, GeneratorExit) as exc:
            self.error = exc if isinstance(exc, asyncio.CancelledError) else _closed()
            raise
        except BaseException as exc:  # delivered to the caller, as a task's result would be
            self.error = exc
        finally:
            self.finished.append(self)

    def fail(self, error: BaseException) -> None:
        """End the call with ``error`` and wake its thread at once."""
        self.error = error
        self.done = True
        self.bell.ring()

    def cancel(self) -> None:  # on the loop thread, after its thread gave up waiting
        self.abandoned = True
        task = self.task
        if task is None:  # not started yet: start() will close it
            return
        task.cancel()
        if not self.started:  # cancelled before its first step: _run never runs
            self.coro.close()

    def wait(self, timeout: float | None) -> Any:
        try:
            finished = self.bell.wait(self, timeout)
        except BaseException:  # KeyboardInterrupt in the waiting thread
            self._cancel_soon()
            raise
        if not finished:
            self._cancel_soon()
            raise TimeoutError(f"the call did not finish within {timeout} s (cancelled)")
        if self.error is not None:
            raise self.error  # its exception (CancelledError included)
        return self.result

    def _cancel_soon(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self.cancel)


def _closed() -> StoreUnavailableError:
    return StoreUnavailableError("this sessionstore.sync facade is closed")
