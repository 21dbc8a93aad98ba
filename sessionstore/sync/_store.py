"""``SyncSessionStore``: every method of a :class:`SessionStore`, blocking."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from ..clock import Clock
from ..model import Session
from ..protocol import SessionStore
from ..registry import open_store
from ..transaction import Transaction
from ._blocking import Facade, Runner, attribute, blocking, blocking_iter, blocking_read
from ._loop_thread import LoopThread, run_before_threads_stop
from ._thread_loops import ThreadLoops, blocking_call_error, in_plain_thread, run_on_new_loop

__all__ = ["SyncSessionStore", "SyncTransaction", "open_sync_store"]

log = logging.getLogger("sessionstore.sync")

#: How long closing at interpreter exit (or on garbage collection) may take, seconds.
EXIT_TIMEOUT = 10.0


def open_sync_store(
    url: str | None = None,
    *,
    per_thread_loops: bool = False,
    blocking_reads: bool = True,
    **options: Any,
) -> SyncSessionStore:
    """Open the store for ``url`` behind a blocking facade, initialised and ready.

    The same URLs and options as :func:`sessionstore.open_store` (``$SESSIONSTORE_URL``,
    else ``memory://``); ``per_thread_loops`` and ``blocking_reads`` as in
    :class:`SyncSessionStore`. Close it
    with :meth:`SyncSessionStore.shutdown` or a ``with`` block; one left open is shut
    down at interpreter exit.
    """
    loop_thread = LoopThread()
    store = loop_thread.call(_build(url, options))
    try:
        facade = SyncSessionStore(
            store,
            loop_thread=loop_thread,
            per_thread_loops=per_thread_loops,
            blocking_reads=blocking_reads,
        )
    except ValueError:
        loop_thread.close()
        raise
    try:
        facade.initialize()
    except BaseException:
        facade.shutdown()
        raise
    return facade


async def _build(url: str | None, options: dict[str, Any]) -> SessionStore:
    return open_store(url, **options)  # built on the loop thread that will run it


class SyncSessionStore(Facade):
    """A blocking view of an async :class:`SessionStore`, safe from many threads at once.

    Every store method has its blocking twin with the same arguments, results and typed
    errors; ``scan()`` is a plain iterator and ``transaction()`` a ``with`` block.
    Calling the facade from a thread that runs an event loop raises
    :class:`BlockingCallError` instead of blocking that loop.

    Where the calls run: on a private event-loop thread that the facade owns
    (:attr:`loop_thread`), started by the first call. With ``per_thread_loops=True``
    (only for a store whose capabilities declare ``any_event_loop``, as every built-in
    driver's do) each call runs instead on an event loop of the calling thread, made on
    its first call and closed once the thread has ended or the facade shuts down: no
    hand-off to another thread, much cheaper for one or a few threads, dearer in CPU for
    many threads calling at once (see ``docs/sync.md``). Transaction blocks and
    ``scan()`` iterators, which span several calls and may be passed between threads,
    always run on the loop thread. :meth:`shutdown` (or interpreter exit) stops the loop
    thread and closes every loop the facade opened.

    Blocking reads (``blocking_reads=True``, the default): a store that offers them
    (:class:`BlockingReads`; the Redis driver on a single server, for ``get_session``,
    ``get_sessions``, ``get_events`` and ``get_event``)
    makes those reads on the calling thread itself, on a blocking connection of its own,
    with the same logic, results and errors, and no hand-off to an event loop (see
    ``docs/sync.md``, *Blocking reads*). ``blocking_reads=False`` runs every call on the
    loop.

    Wrap a store you built yourself with ``SyncSessionStore(store)``; the facade then
    owns it (``shutdown`` shuts it down). Do not use that store from other event loops
    at the same time unless it works from any event loop.
    """

    _target: SessionStore

    def __init__(
        self,
        store: SessionStore,
        *,
        loop_thread: LoopThread | None = None,
        per_thread_loops: bool = False,
        blocking_reads: bool = True,
    ) -> None:
        if per_thread_loops:
            _check_per_thread_loops(store)
        self._target = store
        self._loop_thread = loop_thread or LoopThread()
        self._thread_loops = ThreadLoops() if per_thread_loops else None
        self._runner: Runner = self._loop_thread
        if self._thread_loops is not None:
            self._runner = self._thread_loops
        offer = getattr(store, "blocking_reads", None) if blocking_reads else None
        self._direct = offer() if callable(offer) else None
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _close_quietly, self._loop_thread, self._thread_loops, store
        )
        run_before_threads_stop(self._finalizer)

    @property
    def store(self) -> SessionStore:
        """The async store behind the facade (use it only from the facade's loop)."""
        return self._target

    @property
    def loop_thread(self) -> LoopThread:
        """The facade's loop thread (shared by facades built on this one): where a store
        that needs one loop runs, and where transactions and iterators run."""
        return self._loop_thread

    @property
    def blocking_reads(self) -> bool:
        """Whether some reads are made by the calling thread itself (the store offers
        :class:`BlockingReads` and ``blocking_reads`` was not turned off)."""
        return self._direct is not None

    @property
    def per_thread_loops(self) -> bool:
        """Whether each call runs on an event loop of the calling thread (else on
        :attr:`loop_thread`)."""
        return self._thread_loops is not None

    def __repr__(self) -> str:
        return f"SyncSessionStore({self._target!r})"

    capabilities = attribute(SessionStore.capabilities)
    namespace = attribute(SessionStore.namespace)

    @property
    def clock(self) -> Clock:
        """The store's clock."""
        return self._target.clock

    # -- lifecycle
    initialize = blocking(SessionStore.initialize)

    def shutdown(self) -> None:
        """Shut the store down, close the calling threads' loops and stop the loop
        thread. Idempotent; from any thread (calls still running in other threads end
        first, or fail with :class:`StoreUnavailableError`)."""
        if self._closed:
            return
        loops = self._thread_loops
        started = self._loop_thread.started or (loops is not None and loops.used)
        if started and asyncio._get_running_loop() is not None:
            raise blocking_call_error()
        self._closed = True
        try:
            _shut_down(self._loop_thread, self._thread_loops, self._target, None)
        finally:
            self._finalizer.detach()

    def __enter__(self) -> Self:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- sessions
    create_session = blocking(SessionStore.create_session)
    get_session = blocking_read(SessionStore.get_session)
    get_sessions = blocking_read(SessionStore.get_sessions)
    update_session = blocking(SessionStore.update_session)
    delete_session = blocking(SessionStore.delete_session)
    touch = blocking(SessionStore.touch)
    # -- events
    append_events = blocking(SessionStore.append_events)
    get_events = blocking_read(SessionStore.get_events)
    get_raw_events = blocking(SessionStore.get_raw_events)
    trim_events = blocking(SessionStore.trim_events)
    get_event = blocking_read(SessionStore.get_event)
    pop_events = blocking(SessionStore.pop_events)
    truncate_events = blocking(SessionStore.truncate_events)
    delete_events = blocking(SessionStore.delete_events)
    # -- checkpoints
    save_checkpoint = blocking(SessionStore.save_checkpoint)
    list_checkpoints = blocking(SessionStore.list_checkpoints)
    get_checkpoint = blocking(SessionStore.get_checkpoint)
    delete_checkpoint = blocking(SessionStore.delete_checkpoint)
    restore_checkpoint = blocking(SessionStore.restore_checkpoint)
    # -- queries
    list_sessions = blocking(SessionStore.list_sessions)
    count_sessions = blocking(SessionStore.count_sessions)
    search_sessions = blocking(SessionStore.search_sessions)
    # -- batches
    commit = blocking(SessionStore.commit)

    def transaction(self) -> SyncTransaction:
        """A ``with`` block that stages writes and commits them all or nothing on exit
        (an exception inside the block discards them)."""
        return SyncTransaction(self._target.transaction(), self._loop_thread)

    # -- expiry
    expire_sessions = blocking(SessionStore.expire_sessions)
    cleanup_expired_sessions = blocking(SessionStore.cleanup_expired_sessions)
    # -- bulk
    scan = blocking_iter(SessionStore.scan)
    put_records = blocking(SessionStore.put_records)


def _check_per_thread_loops(store: SessionStore) -> None:
    """``ValueError`` unless ``store`` may run on per-thread loops: it works from any event
    loop, and leaves no work on a loop between calls (a thread's loop runs only while
    one of its calls does)."""
    if not store.capabilities.any_event_loop:
        raise ValueError(
            f"per_thread_loops=True needs a store that works from any event loop; "
            f"{store!r} does not (capability any_event_loop)"
        )
    if type(store).__module__.startswith("sessionstore_redis") and (
        getattr(getattr(store, "options", None), "mode", None) == "cluster"
    ):
        raise ValueError(
            "per_thread_loops=True is not for Redis Cluster: its index updates wait on "
            "the calling loop for 20 ms, and a thread's loop, idle between the thread's "
            "calls, would hold them (queries from other threads would miss the writes); "
            "use the default loop thread"
        )


class SyncTransaction(Facade):
    """The blocking form of :class:`sessionstore.Transaction` (``with store.transaction()
    as tx:``). Staging calls validate at once; the batch commits when the block exits."""

    _target: Transaction | None

    def __init__(self, manager: Any, loop_thread: LoopThread) -> None:
        self._manager = manager  # the async context manager store.transaction() returned
        self._loop_thread = self._runner = loop_thread
        self._target: Transaction | None = None

    def __enter__(self) -> Self:
        self._target = self._call(self._manager.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._manager.__aexit__(exc_type, exc, tb))

    @property
    def results(self) -> list[Session | bool]:
        """After the commit: one entry per staged call (a ``Session``, or a bool)."""
        return list(self._entered().results)

    @property
    def staged(self) -> int:
        """How many writes are staged."""
        return self._entered().staged

    def _entered(self) -> Transaction:
        if self._target is None:
            raise RuntimeError("use the transaction as 'with store.transaction() as tx:'")
        return self._target

    create_session = blocking(Transaction.create_session)
    update_session = blocking(Transaction.update_session)
    delete_session = blocking(Transaction.delete_session)
    append_events = blocking(Transaction.append_events)
    pop_events = blocking(Transaction.pop_events)
    truncate_events = blocking(Transaction.truncate_events)
    trim_events = blocking(Transaction.trim_events)
    delete_events = blocking(Transaction.delete_events)
    commit = blocking(Transaction.commit)

    def rollback(self) -> None:
        """Discard every staged write."""
        self._entered().rollback()


def _shut_down(
    loop_thread: LoopThread,
    thread_loops: ThreadLoops | None,
    store: SessionStore,
    timeout: float | None,
) -> None:
    """Close the threads' idle loops (their connections closed there, gracefully), shut
    the store down (on the loop thread if it runs, else on a loop of its own: the store
    closes what every other loop opened) and stop the loop thread."""
    try:
        used = thread_loops is not None and thread_loops.used
        if thread_loops is not None:
            thread_loops.close()
        if loop_thread.started:
            loop_thread.call(_shutdown(store), timeout=timeout)
        elif used:
            run_on_new_loop(_shutdown(store), timeout)
    finally:
        loop_thread.close(timeout=timeout)


def _close_quietly(
    loop_thread: LoopThread, thread_loops: ThreadLoops | None, store: SessionStore
) -> None:
    """Shut down a facade nobody closed (at interpreter exit, or when it is collected)."""
    if asyncio._get_running_loop() is not None:  # collected inside an event loop
        in_plain_thread(
            lambda: _close_quietly(loop_thread, thread_loops, store), "sessionstore-sync-close"
        )
        return
    try:
        _shut_down(loop_thread, thread_loops, store, EXIT_TIMEOUT)
    except Exception:
        log.exception("sessionstore.sync: shutting down %r at exit failed", store)


def _shutdown(store: SessionStore) -> Coroutine[Any, Any, None]:
    return store.shutdown()
