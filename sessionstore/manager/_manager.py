"""SessionPersistenceManager: the object an application holds (docs/manager.md).

One manager per process (or per store): it hands out :class:`ManagedSession` objects,
runs the supervised background loops (auto-persist, cleanup) on the store's clock, and
on ``shutdown()`` stops them and persists every pending change.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from ..errors import (
    InvalidArgumentError,
    QuotaExceededError,
    SessionConflictError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ..model import TTL, UNSET, Session, Unset
from ..protocol import SessionStore
from ..validation import validate_positive_int, validate_session_id
from ._backups import BackupMixin
from ._bookkeeping import MANAGER_KEY, Book, check_user_metadata
from ._cas import CasMixin
from ._config import ManagerConfig
from ._errors import LeaseError, ManagerClosedError
from ._leases import Lease
from ._managed import ManagedSession
from ._observe import ObserveMixin
from ._queries import QueryMixin
from ._stats import Counters, FlushReport
from ._tasks import Supervisor
from ._transaction import ManagerTransaction

__all__ = ["SessionPersistenceManager"]

log = logging.getLogger("sessionstore.manager")
T = TypeVar("T")
_PERMANENT: Final = (SessionConflictError, LeaseError, SessionNotFoundError)


class SessionPersistenceManager(CasMixin, ObserveMixin, QueryMixin, BackupMixin):
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
        self._live: weakref.WeakValueDictionary[str, ManagedSession] = weakref.WeakValueDictionary()
        self._dirty: dict[str, ManagedSession] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._create_lock = asyncio.Lock()
        self._supervisor = Supervisor(
            self.store.clock, restart_delay=self.config.task_restart_delay
        )
        self._stats = Counters()
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._shutdown_report: FlushReport | None = None

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
            self._supervisor.start("backup", config.backup_interval, self._backup_tick)

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
        await self._wait_inflight()
        report = await self._persist_all()
        transient = {
            sid: msg
            for sid, msg in report.failed.items()
            if (ms := self._dirty.get(sid)) is not None and not isinstance(ms.blocked, _PERMANENT)
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
        for ms in list(self._live.values()):
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

    # ------------------------------------------------------------------ bookkeeping

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away must not leave a warning

    async def _wait_inflight(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def _mark_dirty(self, ms: ManagedSession) -> None:
        self._dirty[ms.id] = ms

    def _mark_clean(self, ms: ManagedSession) -> None:
        if self._dirty.get(ms.id) is ms:
            del self._dirty[ms.id]

    def _forget(self, ms: ManagedSession) -> None:
        self._mark_clean(ms)
        if self._live.get(ms.id) is ms:
            del self._live[ms.id]

    def _record_error(self, exc: BaseException, session_id: str | None = None) -> None:
        self._stats.errors += 1
        where = f"session {session_id}: " if session_id else ""
        self._last_error = f"{where}{type(exc).__name__}: {exc}"
        self._last_error_at = self.store.clock.now()

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
        ms = ManagedSession(self, session)
        self._live[session.id] = ms
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
        ms = self._live.get(session_id)
        if ms is None or ms.closed:
            session = await self.store.get_session(session_id)
            if session is None:
                raise SessionNotFoundError(session_id)
            ms = self._live.get(session_id)  # another task may have loaded it meanwhile
            if ms is None or ms.closed:
                ms = ManagedSession(self, session)
                self._live[session_id] = ms
                self._stats.loaded += 1
        if lease is not None:
            ms.lease = lease
        return ms

    @property
    def managed_sessions(self) -> list[ManagedSession]:
        """The managed sessions this manager holds (open ones)."""
        return [ms for ms in list(self._live.values()) if not ms.closed]

    async def persist_all(self) -> FlushReport:
        """Persist every managed session with pending changes (each on its own)."""
        self._check_open()
        return await self._persist_all()

    async def _persist_all(self) -> FlushReport:
        written = 0
        failed: dict[str, str] = {}
        for ms in list(self._dirty.values()):
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
        ms = self._live.get(session_id)
        deleted = await self.store.delete_session(session_id)
        if ms is not None:
            ms._pending = type(ms._pending)()
            ms._closed = True
            self._forget(ms)
        return deleted
