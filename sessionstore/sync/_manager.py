"""``SyncSessionPersistenceManager``: the manager and its managed sessions, blocking."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from ..errors import SessionConflictError
from ..manager import (
    FlushReport,
    ManagedSession,
    ManagerConfig,
    ManagerTransaction,
    SessionPersistenceManager,
)
from ..model import Session
from ..protocol import SessionStore
from ..validation import validate_positive_int
from ._blocking import Facade, attribute, blocking, blocking_iter, blocking_wrap
from ._loop_thread import LoopThread, run_before_threads_stop
from ._store import EXIT_TIMEOUT, SyncSessionStore

__all__ = ["SyncManagedSession", "SyncManagerTransaction", "SyncSessionPersistenceManager"]

T = TypeVar("T")


class SyncSessionPersistenceManager(Facade):
    """A blocking view of :class:`SessionPersistenceManager`, safe from many threads.

    ``store_or_url`` is what the async manager takes (a URL, ``None``, or an async store,
    which then runs on this facade's loop thread), or a :class:`SyncSessionStore`, whose
    loop thread the manager then shares (the manager never shuts down a store it was
    given). The manager's background loops (auto-persist, cleanup, backups) run on the
    loop thread between ``initialize()`` and ``shutdown()``; a manager left open is
    shut down (its pending changes persisted) at interpreter exit.
    """

    _target: SessionPersistenceManager

    def __init__(
        self,
        store_or_url: SessionStore | SyncSessionStore | str | None = None,
        *,
        config: ManagerConfig | None = None,
    ) -> None:
        if isinstance(store_or_url, SyncSessionStore):
            self._loop_thread = store_or_url.loop_thread
            self._owns_loop_thread = False
            target: SessionStore | str | None = store_or_url.store
        else:
            self._loop_thread = LoopThread("sessionstore-sync-manager")
            self._owns_loop_thread = True
            target = store_or_url
        self._runner = self._loop_thread  # the manager's background loops need one loop
        self._target = self._call(_build(target, config))
        self._finalizer = weakref.finalize(
            self, _shutdown_quietly, self._loop_thread, self._target, self._owns_loop_thread
        )
        run_before_threads_stop(self._finalizer)

    def __repr__(self) -> str:
        return f"Sync{self._target!r}"

    @property
    def manager(self) -> SessionPersistenceManager:
        """The async manager behind the facade (use it only from the facade's loop)."""
        return self._target

    @property
    def config(self) -> ManagerConfig:
        """The manager's configuration."""
        return self._target.config

    running = attribute(SessionPersistenceManager.running)

    # -- lifecycle
    initialize = blocking(SessionPersistenceManager.initialize)

    def shutdown(self) -> FlushReport:
        """Stop the background loops, persist every pending change, close what the
        manager opened and stop the loop thread (if this facade owns it).

        As the async ``shutdown``: if the store failed transiently the changes are kept,
        :class:`StoreUnavailableError` is raised and ``shutdown()`` can be called again.
        """
        report = self._call(self._target.shutdown())
        self._finalizer.detach()
        if self._owns_loop_thread:
            self._loop_thread.close()
        return report

    def __enter__(self) -> Self:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._target.__aexit__(exc_type, exc, tb))
        self._finalizer.detach()
        if self._owns_loop_thread:
            self._loop_thread.close()

    # -- managed sessions
    create_managed_session = blocking_wrap(
        SessionPersistenceManager.create_managed_session, lambda f, ms: SyncManagedSession(f, ms)
    )
    load_managed_session = blocking_wrap(
        SessionPersistenceManager.load_managed_session, lambda f, ms: SyncManagedSession(f, ms)
    )

    @property
    def managed_sessions(self) -> list[SyncManagedSession]:
        """The managed sessions this manager holds (open ones)."""
        return [SyncManagedSession(self, ms) for ms in self._target.managed_sessions]

    persist_all = blocking(SessionPersistenceManager.persist_all)

    # -- transactions
    def transaction(self) -> SyncManagerTransaction:
        """``with manager.transaction() as tx``: all or nothing on exit."""
        return SyncManagerTransaction(self._target.transaction(), self._loop_thread)

    def with_transaction(
        self, fn: Callable[[SyncManagerTransaction], T], *, attempts: int = 1
    ) -> T:
        """Run ``fn(tx)`` (in the calling thread) and commit; an error writes nothing.

        With ``attempts > 1`` a :class:`SessionConflictError` at commit re-runs ``fn`` on
        a fresh transaction, as the async ``with_transaction`` does.
        """
        validate_positive_int(attempts, "attempts", maximum=1000)
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as tx:
                    result = fn(tx)
            except SessionConflictError:
                if attempt == attempts:
                    raise
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- plain sessions, queries, expiry, leases
    get_session = blocking(SessionPersistenceManager.get_session)
    delete_session = blocking(SessionPersistenceManager.delete_session)
    list_sessions = blocking(SessionPersistenceManager.list_sessions)
    count_sessions = blocking(SessionPersistenceManager.count_sessions)
    search_sessions = blocking(SessionPersistenceManager.search_sessions)
    iter_pages = blocking_iter(SessionPersistenceManager.iter_pages)
    iter_sessions = blocking_iter(SessionPersistenceManager.iter_sessions)
    find_sessions = blocking(SessionPersistenceManager.find_sessions)
    get_sessions_by_processor = blocking(SessionPersistenceManager.get_sessions_by_processor)
    bulk_update = blocking(SessionPersistenceManager.bulk_update)
    bulk_delete = blocking(SessionPersistenceManager.bulk_delete)
    claim = blocking(SessionPersistenceManager.claim)
    renew = blocking(SessionPersistenceManager.renew)
    release = blocking(SessionPersistenceManager.release)
    set_expiration = blocking(SessionPersistenceManager.set_expiration)
    extend_expiration = blocking(SessionPersistenceManager.extend_expiration)
    refresh = blocking(SessionPersistenceManager.refresh)
    expire_sessions = blocking(SessionPersistenceManager.expire_sessions)
    cleanup_expired_sessions = blocking(SessionPersistenceManager.cleanup_expired_sessions)
    # -- observability and backups
    get_stats = blocking(SessionPersistenceManager.get_stats)
    get_session_summary = blocking(SessionPersistenceManager.get_session_summary)
    health_check = blocking(SessionPersistenceManager.health_check)
    optimize = blocking(SessionPersistenceManager.optimize)
    create_backup = blocking(SessionPersistenceManager.create_backup)
    restore_from_backup = blocking(SessionPersistenceManager.restore_from_backup)
    list_backups = blocking(SessionPersistenceManager.list_backups)


async def _build(
    store_or_url: SessionStore | str | None, config: ManagerConfig | None
) -> SessionPersistenceManager:
    return SessionPersistenceManager(store_or_url, config=config)


class SyncManagedSession(Facade):
    """A blocking view of one :class:`ManagedSession` (same attributes and methods)."""

    _target: ManagedSession

    def __init__(self, owner: Facade, managed: ManagedSession) -> None:
        self._target = managed
        self._loop_thread = self._runner = owner._loop_thread

    def __repr__(self) -> str:
        return f"Sync{self._target!r}"

    @property
    def managed(self) -> ManagedSession:
        """The async managed session behind the facade."""
        return self._target

    id = attribute(ManagedSession.id)
    processor_id = attribute(ManagedSession.processor_id)
    session = attribute(ManagedSession.session)
    version = attribute(ManagedSession.version)
    data = attribute(ManagedSession.data)
    metadata = attribute(ManagedSession.metadata)
    tags = attribute(ManagedSession.tags)
    status = attribute(ManagedSession.status)
    created_at = attribute(ManagedSession.created_at)
    expires_at = attribute(ManagedSession.expires_at)
    event_count = attribute(ManagedSession.event_count)
    dirty = attribute(ManagedSession.dirty)
    pending_changes = attribute(ManagedSession.pending_changes)
    closed = attribute(ManagedSession.closed)
    blocked = attribute(ManagedSession.blocked)
    iterations = attribute(ManagedSession.iterations)
    max_iterations = attribute(ManagedSession.max_iterations)
    result = attribute(ManagedSession.result)
    error = attribute(ManagedSession.error)
    is_active = attribute(ManagedSession.is_active)
    is_resumable = attribute(ManagedSession.is_resumable)
    is_finished = attribute(ManagedSession.is_finished)

    @property
    def lease(self) -> Any:
        """The lease this session's writes are fenced with (``None``: no lease held)."""
        return self._target.lease

    update = blocking(ManagedSession.update)
    add_interaction = blocking(ManagedSession.add_interaction)
    persist = blocking(ManagedSession.persist)
    reload = blocking(ManagedSession.reload)
    get_events = blocking(ManagedSession.get_events)
    close = blocking(ManagedSession.close)
    pause = blocking(ManagedSession.pause)
    resume = blocking(ManagedSession.resume)
    complete = blocking(ManagedSession.complete)
    fail = blocking(ManagedSession.fail)
    set_status = blocking(ManagedSession.set_status)
    next_iteration = blocking(ManagedSession.next_iteration)
    set_max_iterations = blocking(ManagedSession.set_max_iterations)
    checkpoint = blocking(ManagedSession.checkpoint)
    list_checkpoints = blocking(ManagedSession.list_checkpoints)
    restore_checkpoint = blocking(ManagedSession.restore_checkpoint)
    claim = blocking(ManagedSession.claim)
    renew_lease = blocking(ManagedSession.renew_lease)
    release_lease = blocking(ManagedSession.release_lease)
    set_expiration = blocking(ManagedSession.set_expiration)
    extend_expiration = blocking(ManagedSession.extend_expiration)
    refresh = blocking(ManagedSession.refresh)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncManagerTransaction(Facade):
    """The blocking form of :class:`ManagerTransaction` (``with manager.transaction()``)."""

    _target: ManagerTransaction

    def __init__(self, tx: ManagerTransaction, loop_thread: LoopThread) -> None:
        self._target = tx
        self._loop_thread = self._runner = loop_thread

    @property
    def results(self) -> list[Session | bool]:
        """The committed results, one per staged write, in order."""
        return self._target.results

    staged = attribute(ManagerTransaction.staged)
    create_session = blocking(ManagerTransaction.create_session)

    def update_session(self, session_id: str, **changes: Any) -> None:
        """Stage an update (the arguments of ``store.update_session``)."""
        self._call(self._target.update_session(session_id, **changes))

    delete_session = blocking(ManagerTransaction.delete_session)
    append_events = blocking(ManagerTransaction.append_events)
    commit = blocking(ManagerTransaction.commit)

    def persist(self, managed: SyncManagedSession | ManagedSession) -> None:
        """Add ``managed``'s pending changes to this batch (version-checked and fenced)."""
        target = managed.managed if isinstance(managed, SyncManagedSession) else managed
        self._call(self._target.persist(target))

    def rollback(self) -> None:
        """Discard every staged write."""
        self._target.rollback()

    def __enter__(self) -> Self:
        self._call(self._target.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._target.__aexit__(exc_type, exc, tb))


def _shutdown_quietly(
    loop_thread: LoopThread, manager: SessionPersistenceManager, owns_loop_thread: bool
) -> None:
    """Shut down a manager facade nobody closed (interpreter exit or collection)."""
    import logging

    try:
        if loop_thread.started:
            loop_thread.call(manager.shutdown(), timeout=EXIT_TIMEOUT)
    except Exception:
        logging.getLogger("sessionstore.sync").exception(
            "sessionstore.sync: shutting down %r at exit failed", manager
        )
    finally:
        if owns_loop_thread:
            loop_thread.close(timeout=EXIT_TIMEOUT)
