"""SessionPersistenceManager: the object an application holds (docs/manager.md).

One manager per process (or per store): it hands out :class:`ManagedSession` objects,
runs the supervised background loops (auto-persist, cleanup) on the store's clock, and
on ``shutdown()`` stops them and persists every pending change.

The manager owns the lifecycle and the managed sessions; the rest it delegates to small
collaborators, one concept each: :class:`SessionTracker` (live and dirty sessions,
in-flight writes, counters), :class:`CasWriter` (leases and expiry),
:class:`SessionQueries` (queries and bulk operations), :class:`Observability` (stats,
health, optimize), :class:`BackupScheduler` (backups). Managed sessions reach the
manager only through a :class:`SessionHost`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from ..errors import (
    InvalidArgumentError,
    QuotaExceededError,
    SessionConflictError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ..model import TTL, UNSET, Session, SessionUpdate, Status, Unset
from ..protocol import SessionStore
from ..query import Page, QueryOptions, SessionFilter
from ..validation import validate_positive_int, validate_session_id
from ._backups import BackupScheduler
from ._bookkeeping import MANAGER_KEY, Book, check_user_metadata
from ._cas import CasWriter
from ._config import ManagerConfig
from ._errors import LeaseError, ManagerClosedError
from ._host import SessionHost
from ._leases import Lease
from ._managed import ManagedSession
from ._observe import Observability
from ._queries import SessionQueries
from ._stats import (
    Counters,
    FlushReport,
    HealthReport,
    ManagerStats,
    OptimizeReport,
    SessionSummary,
)
from ._tasks import Supervisor
from ._tracker import SessionTracker
from ._transaction import ManagerTransaction

if TYPE_CHECKING:
    from ..backup import BackupInfo, RestoreResult

__all__ = ["SessionPersistenceManager"]

log = logging.getLogger("sessionstore.manager")
T = TypeVar("T")
_PERMANENT: Final = (SessionConflictError, LeaseError, SessionNotFoundError)


class SessionPersistenceManager:
    """Managed sessions with auto-persist, lifecycle, leases, expiry, stats and health.

    ``store_or_url`` is a store object (initialised if needed, never shut down by the
    manager: who opened it closes it), a URL (the manager opens the store and shuts it
    down), or ``None`` (``open_store()``: ``$SESSIONSTORE_URL``, else ``memory://``).
    ``config`` is a :class:`ManagerConfig` (behaviour only).
    """

    def __init__(
        self, store_or_url: SessionStore | str | None = None, *, config: ManagerConfig | None = None
    ) -> None:
        if config is not None and not isinstance(config, ManagerConfig):
            raise InvalidArgumentError("config must be a ManagerConfig")
        self.config = config or ManagerConfig()
        if store_or_url is None or isinstance(store_or_url, str):
            from ..registry import open_store

            self.store: SessionStore = open_store(store_or_url)
            self._owns_store = True
        elif isinstance(store_or_url, SessionStore):
            self.store = store_or_url
            self._owns_store = False
        else:
            raise InvalidArgumentError(
                f"expected a store or a URL, not {type(store_or_url).__name__}"
            )
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._create_lock = asyncio.Lock()
        self._supervisor = Supervisor(
            self.store.clock, restart_delay=self.config.task_restart_delay
        )
        self._shutdown_report: FlushReport | None = None
        store, config, check_open = self.store, self.config, self._check_open
        self._tracker = SessionTracker(store.clock)
        self._cas = CasWriter(store, config, self._tracker, check_open)
        self._queries = SessionQueries(store, config, check_open)
        self._backups = BackupScheduler(store, config, check_open)
        self._observe = Observability(
            store,
            config,
            tracker=self._tracker,
            supervisor=self._supervisor,
            queries=self._queries,
            cas=self._cas,
            state=lambda: self._state,
            check_open=check_open,
            persist_all=self._persist_all,
        )
        self._host = SessionHost(store, config, self._tracker, self._cas)

    def __repr__(self) -> str:
        return f"SessionPersistenceManager({self.store!r}, state={self._state!r})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True between ``initialize()`` and ``shutdown()``."""
        return self._state == "open"

    async def initialize(self) -> None:
        """Open the store (if needed) and start the background loops. Idempotent."""
        if self._state == "open":
            return
        if self._state != "new":
            raise ManagerClosedError("this manager was shut down; create a new one")
        await self.store.initialize()
        config = self.config
        if config.auto_persist and config.persist_interval is not None:
            self._supervisor.start("auto-persist", config.persist_interval, self._persist_tick)
        if config.cleanup_enabled:
            self._supervisor.start("cleanup", config.cleanup_interval, self._cleanup_tick)
        self._state = "open"
        if config.backup_interval is not None:
            self._supervisor.start("backup", config.backup_interval, self._backups.tick)

    async def shutdown(self) -> FlushReport:
        """Stop the background loops and persist every pending change. Safe to call twice,
        and after an error.

        Changes refused for good (a conflict, a lost lease, a deleted session) are
        logged and listed in the returned report. If the store failed otherwise (e.g.
        unreachable), the manager stays in its closing state with the changes kept and
        :class:`StoreUnavailableError` is raised: call ``shutdown()`` again to retry.
        """
        if self._state == "closed":
            assert self._shutdown_report is not None
            return self._shutdown_report
        if self._state == "new":
            self._state = "closed"
            self._shutdown_report = FlushReport()
            if self._owns_store:
                await self.store.shutdown()
            return self._shutdown_report
        self._state = "closing"
        await self._supervisor.stop()
        await self._tracker.wait_inflight()
        report = await self._persist_all()
        transient = {
            sid: msg
            for sid, msg in report.failed.items()
            if (ms := self._tracker.dirty_session(sid)) is not None
            and not isinstance(ms.blocked, _PERMANENT)
        }
        for sid, msg in report.failed.items():
            if sid not in transient:
                log.error("shutdown: changes of session %s were not persisted: %s", sid, msg)
        if transient:
            raise StoreUnavailableError(
                f"shutdown could not persist {len(transient)} session(s) "
                f"({'; '.join(f'{k}: {v}' for k, v in list(transient.items())[:3])}); "
                "their changes are kept: call shutdown() again"
            )
        for ms in self._tracker.live():
            ms._closed = True
        self._state = "closed"
        self._shutdown_report = report
        if self._owns_store:
            await self.store.shutdown()
        return report

    async def __aenter__(self) -> SessionPersistenceManager:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.shutdown()
            return
        try:  # never mask the error that ends the block
            await self.shutdown()
        except Exception:
            log.exception("manager shutdown after an error failed")

    def _check_open(self) -> None:
        if self._state != "open":
            if self._state == "new":
                raise ManagerClosedError(
                    "the manager is not initialised: use 'async with manager' or "
                    "'await manager.initialize()'"
                )
            raise ManagerClosedError("the manager was shut down")

    @property
    def _stats(self) -> Counters:
        return self._tracker.counters

    # ------------------------------------------------------------------ managed sessions

    async def create_managed_session(
        self,
        *,
        processor_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        ttl: TTL | Unset | None = UNSET,
        expires_at: datetime | None = None,
        id: str | None = None,
        group: str | None = None,
        max_iterations: int | Unset | None = UNSET,
    ) -> ManagedSession:
        """Create a session (written now) and return it managed.

        ``ttl`` defaults to the config's ``default_ttl`` and ``max_iterations`` to the
        config's. Raises :class:`QuotaExceededError` when ``max_sessions`` live sessions
        exist already (exact within this manager; across processes it is best effort).
        """
        self._check_open()
        check_user_metadata(metadata or {})
        if max_iterations is UNSET:
            max_iterations = self.config.max_iterations
        if max_iterations is not None:
            validate_positive_int(max_iterations, "max_iterations", maximum=2**62)
        if ttl is UNSET:
            ttl = self.config.default_ttl if expires_at is None else None
        book = Book({}).with_changes({"iterations": 0, "max_iterations": max_iterations})
        async with self._create_lock:
            limit = self.config.max_sessions
            if limit is not None:
                live = await self.store.count_sessions()
                if live >= limit:
                    raise QuotaExceededError(
                        f"max_sessions={limit} reached ({live} live sessions)",
                        option="max_sessions",
                        where="manager",
                    )
            session = await self.store.create_session(
                processor_id=processor_id,
                data=data,
                metadata={**(metadata or {}), MANAGER_KEY: book},
                tags=tags,
                ttl=ttl,
                expires_at=expires_at,
                id=id,
                group=group,
            )
        self._stats.created += 1
        ms = ManagedSession(self._host, session)
        self._tracker.add(ms)
        return ms

    async def load_managed_session(
        self, session_id: str, *, lease: Lease | None = None
    ) -> ManagedSession:
        """The managed session for ``session_id`` (the same object while it is held).

        ``lease`` fences this object's writes with a lease from
        :meth:`~sessionstore.manager.SessionPersistenceManager.claim`. Raises
        :class:`SessionNotFoundError` for a missing or expired session.
        """
        self._check_open()
        validate_session_id(session_id)
        if lease is not None and lease.session_id != session_id:
            raise InvalidArgumentError("the lease is for another session")
        ms = self._tracker.open(session_id)
        if ms is None:
            session = await self.store.get_session(session_id)
            if session is None:
                raise SessionNotFoundError(session_id)
            ms = self._tracker.open(session_id)  # another task may have loaded it meanwhile
            if ms is None:
                ms = ManagedSession(self._host, session)
                self._tracker.add(ms)
                self._stats.loaded += 1
        if lease is not None:
            ms.lease = lease
        return ms

    @property
    def managed_sessions(self) -> list[ManagedSession]:
        """The managed sessions this manager holds (open ones)."""
        return [ms for ms in self._tracker.live() if not ms.closed]

    async def persist_all(self) -> FlushReport:
        """Persist every managed session with pending changes (each on its own)."""
        self._check_open()
        return await self._persist_all()

    async def _persist_all(self) -> FlushReport:
        written = 0
        failed: dict[str, str] = {}
        for ms in self._tracker.dirty():
            try:
                await ms.persist()
            except Exception as exc:
                failed[ms.id] = f"{type(exc).__name__}: {exc}"
                log.warning("could not persist session %s: %s", ms.id, exc)
            else:
                written += 1
        return FlushReport(written, failed)

    async def _persist_tick(self) -> None:
        await self._persist_all()

    async def _cleanup_tick(self) -> None:
        self._stats.cleaned += await self.store.cleanup_expired_sessions()

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> ManagerTransaction:
        """``async with manager.transaction() as tx``: all or nothing on exit."""
        self._check_open()
        return ManagerTransaction(self)

    async def with_transaction(
        self, fn: Callable[[ManagerTransaction], Awaitable[T]], *, attempts: int = 1
    ) -> T:
        """Run ``await fn(tx)`` and commit; an error (or a conflict) writes nothing.

        With ``attempts > 1`` a :class:`SessionConflictError` at commit re-runs ``fn`` on
        a fresh transaction (``fn`` must then re-read what it depends on).
        """
        validate_positive_int(attempts, "attempts", maximum=1000)
        for attempt in range(1, attempts + 1):
            tx = self.transaction()
            try:
                async with tx:
                    result = await fn(tx)
            except SessionConflictError:
                if attempt == attempts:
                    raise
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ plain sessions

    async def get_session(self, session_id: str) -> Session | None:
        """The stored session (``None`` if missing or expired)."""
        self._check_open()
        return await self.store.get_session(session_id)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session (a managed one held here is closed, its changes dropped)."""
        self._check_open()
        ms = self._tracker.get(session_id)
        deleted = await self.store.delete_session(session_id)
        if ms is not None:
            ms._pending = type(ms._pending)()
            ms._closed = True
            self._tracker.forget(ms)
        return deleted

    # ---------------------------------------------------- leases and expiry: CasWriter

    async def claim(self, session_id: str, owner: str, ttl: TTL | None = None) -> Lease:
        """Take the session's lease for ``owner`` for ``ttl`` seconds (default: config).

        Free, expired, or already ``owner``'s: taken (with a new token). Held by another
        owner and not expired: :class:`LeaseHeldError`.
        """
        return await self._cas.claim(session_id, owner, ttl)

    async def renew(self, lease: Lease, ttl: TTL | None = None) -> Lease:
        """Extend ``lease`` by ``ttl`` from now; :class:`LeaseLostError` if taken over."""
        return await self._cas.renew(lease, ttl)

    async def release(self, lease: Lease) -> bool:
        """Give ``lease`` up; False when it was not held any more (nothing written)."""
        return await self._cas.release(lease)

    async def set_expiration(
        self,
        session_id: str,
        ttl: TTL | None = None,
        *,
        expires_at: datetime | Unset | None = UNSET,
    ) -> Session:
        """Absolute expiry: ``ttl`` seconds from now, or ``expires_at`` (``None`` clears)."""
        return await self._cas.set_expiration(session_id, ttl, expires_at=expires_at)

    async def extend_expiration(self, session_id: str, seconds: TTL) -> Session:
        """Move the expiry ``seconds`` later (from now if the session has none)."""
        return await self._cas.extend_expiration(session_id, seconds)

    async def refresh(self, session_id: str, ttl: TTL | None = None) -> Session:
        """Sliding expiry (``store.touch``): ``expires_at = now + ttl`` (default: the
        config's ``default_ttl``; with neither, only ``updated_at`` moves)."""
        return await self._cas.refresh(session_id, ttl)

    async def expire_sessions(self) -> list[str]:
        """Mark due sessions ``expired`` (the store's ``expire_sessions``)."""
        return await self._cas.expire_sessions()

    async def cleanup_expired_sessions(self) -> int:
        """Remove due sessions with their events and checkpoints; returns the count."""
        return await self._cas.cleanup_expired_sessions()

    # ------------------------------------------- queries, bulk operations: SessionQueries

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One page of sessions (the store's query; see :class:`SessionFilter`)."""
        return await self._queries.list_sessions(filter, options)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """How many live sessions match ``filter``."""
        return await self._queries.count_sessions(filter)

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """Case-insensitive plain-text search (the store's ``search_sessions``)."""
        return await self._queries.search_sessions(text, options, filter)

    async def iter_pages(
        self, filter: SessionFilter | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[list[Session]]:
        """Every matching session, a page at a time, in id order (keyset cursors)."""
        async for item in self._queries.iter_pages(filter, page_size=page_size):
            yield item

    async def iter_sessions(
        self, filter: SessionFilter | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[Session]:
        """Every matching session, in id order, one page in memory at a time."""
        async for item in self._queries.iter_sessions(filter, page_size=page_size):
            yield item

    async def find_sessions(
        self,
        *,
        since: datetime | None = None,
        updated_since: datetime | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        processor_id: str | Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        has_interactions: bool | None = None,
        limit: int = 100,
    ) -> list[Session]:
        """The newest sessions (by ``created_at``) matching every given condition.

        ``since`` / ``updated_since`` are exclusive bounds on ``created_at`` /
        ``updated_at``; ``has_interactions`` tests ``event_count > 0``; ``tags`` must all
        be present. At most ``limit`` sessions (paged underneath when over 10,000).
        """
        return await self._queries.find_sessions(
            since=since,
            updated_since=updated_since,
            status=status,
            processor_id=processor_id,
            tags=tags,
            has_interactions=has_interactions,
            limit=limit,
        )

    async def get_sessions_by_processor(
        self,
        processor_id: str,
        *,
        status: Status | str | Iterable[Status | str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """A page of one processor's sessions, newest first; follow ``next_cursor``."""
        return await self._queries.get_sessions_by_processor(
            processor_id, status=status, limit=limit, cursor=cursor
        )

    async def bulk_update(
        self, filter: SessionFilter | None, changes: SessionUpdate | Mapping[str, Any]
    ) -> int:
        """Apply ``changes`` (a :class:`SessionUpdate` or a mapping of its fields) to every
        matching session; returns how many were updated. Version-checked per session."""
        return await self._queries.bulk_update(filter, changes)

    async def bulk_delete(self, filter: SessionFilter | None) -> int:
        """Delete every matching session (with events and checkpoints); returns the count.

        ``bulk_delete(None)`` deletes every live session of the store's namespace.
        """
        return await self._queries.bulk_delete(filter)

    # ---------------------------------------------------- observability: Observability

    async def get_stats(self) -> ManagerStats:
        """Totals, by status and processor, success rate and average iterations (one
        paged scan: one page of sessions in memory at a time)."""
        return await self._observe.get_stats()

    async def get_session_summary(self, session_id: str) -> SessionSummary:
        """Age, interactions, checkpoints, managed or not, last persisted, lease, pending."""
        return await self._observe.get_session_summary(session_id)

    async def health_check(self) -> HealthReport:
        """Is the manager well? Store reachable, background loops alive (dead ones are
        restarted), pending changes that cannot be written, the last error."""
        return await self._observe.health_check()

    async def optimize(self) -> OptimizeReport:
        """Persist pending changes, purge expired sessions, then run the driver's own
        ``optimize()`` if it has one (reindex, compaction...); reports what was done."""
        return await self._observe.optimize()

    # ------------------------------------------------------- backups: BackupScheduler

    async def create_backup(
        self,
        destination: str | os.PathLike[str] | None = None,
        *,
        filter: SessionFilter | None = None,
        include_expired: bool = False,
        compression: str | None = None,
    ) -> BackupInfo:
        """Back the store up (see :func:`sessionstore.backup.create_backup`).

        ``destination`` defaults to ``config.backup_dir`` (a directory: the file gets a
        time-stamped name). With ``config.max_backups`` the oldest complete backups in
        that directory are pruned afterwards. The ``sessionstore_backup_created`` hook fires.
        """
        return await self._backups.create_backup(
            destination, filter=filter, include_expired=include_expired, compression=compression
        )

    async def restore_from_backup(
        self,
        source: str | os.PathLike[str],
        *,
        merge_strategy: str = "skip_existing",
        dry_run: bool = False,
        filter: SessionFilter | None = None,
    ) -> RestoreResult:
        """Restore a backup into the store (verified before anything is written)."""
        return await self._backups.restore_from_backup(
            source, merge_strategy=merge_strategy, dry_run=dry_run, filter=filter
        )

    async def list_backups(
        self, directory: str | os.PathLike[str] | None = None
    ) -> list[BackupInfo]:
        """The backups in ``directory`` (default ``config.backup_dir``), oldest first."""
        return await self._backups.list_backups(directory)
