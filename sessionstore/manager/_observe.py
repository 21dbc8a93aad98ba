"""Observability of the manager (:class:`Observability`): stats, health, optimize,
session summaries."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ..errors import SessionNotFoundError, SessionStoreError
from ._config import ManagerConfig
from ._stats import (
    HealthReport,
    ManagerStats,
    OptimizeReport,
    SessionSummary,
    StatsAccumulator,
)

if TYPE_CHECKING:
    from ..protocol import SessionStore
    from ._cas import CasWriter
    from ._queries import SessionQueries
    from ._stats import FlushReport
    from ._tasks import Supervisor
    from ._tracker import SessionTracker

__all__ = ["Observability"]

_PROBE_ID: Final = "sessionstore-health-probe"


class Observability:
    """``get_stats``, ``get_session_summary``, ``health_check``, ``optimize``."""

    __slots__ = (
        "_cas",
        "_check_open",
        "_persist_all",
        "_queries",
        "_state",
        "_supervisor",
        "_tracker",
        "config",
        "store",
    )

    def __init__(
        self,
        store: SessionStore,
        config: ManagerConfig,
        *,
        tracker: SessionTracker,
        supervisor: Supervisor,
        queries: SessionQueries,
        cas: CasWriter,
        state: Callable[[], str],
        check_open: Callable[[], None],
        persist_all: Callable[[], Awaitable[FlushReport]],
    ) -> None:
        self.store = store
        self.config = config
        self._tracker = tracker
        self._supervisor = supervisor
        self._queries = queries
        self._cas = cas
        self._state = state
        self._check_open = check_open
        self._persist_all = persist_all

    # ------------------------------------------------------------------ observability

    async def get_stats(self) -> ManagerStats:
        """Totals, by status and processor, success rate and average iterations (one
        paged scan: one page of sessions in memory at a time)."""
        self._check_open()
        acc = StatsAccumulator()
        async for page in self._queries.iter_pages():
            for session in page:
                acc.add(session)
        return acc.result(
            live_managed=sum(not ms.closed for ms in self._tracker.live()),
            dirty=len(self._tracker.dirty()),
            counters=self._tracker.counters,
            now=self.store.clock.now(),
        )

    async def get_session_summary(self, session_id: str) -> SessionSummary:
        """Age, interactions, checkpoints, managed or not, last persisted, lease, pending."""
        self._check_open()
        session = await self.store.get_session(session_id)
        if session is None:
            raise SessionNotFoundError(session_id)
        checkpoints = len(await self.store.list_checkpoints(session_id))
        ms = self._tracker.get(session_id)
        return SessionSummary.build(
            session,
            self.store.clock.now(),
            checkpoints=checkpoints,
            live=ms is not None and not ms.closed,
            pending=ms.pending_changes if ms is not None else 0,
            last_persisted_at=ms.last_persisted_at if ms is not None else None,
        )

    async def health_check(self) -> HealthReport:
        """Is the manager well? Store reachable, background loops alive (dead ones are
        restarted), pending changes that cannot be written, the last error."""
        issues: list[str] = []
        state = self._state()
        if state != "open":
            issues.append(f"manager is {state}")
        reachable, latency = await self._probe_store(issues)
        for name in self._supervisor.ensure_running():
            issues.append(f"background task {name!r} was not running (restarted)")
        tasks = self._supervisor.statuses()
        for task in tasks:
            if task.consecutive_failures:
                issues.append(
                    f"background task {task.name!r} failed {task.consecutive_failures} time(s) "
                    f"in a row, last: {task.last_error} (restarted)"
                )
        now = self.store.clock.now()
        dirty = self._tracker.dirty()
        for ms in dirty:
            if ms.blocked is not None:
                issues.append(f"session {ms.id} cannot persist: {ms.blocked}")
            elif ms.last_error is not None:
                issues.append(f"session {ms.id}: last write failed: {ms.last_error}")
        oldest = min((ms.pending_since for ms in dirty if ms.pending_since), default=None)
        return HealthReport(
            healthy=not issues,
            issues=issues,
            store_reachable=reachable,
            store_latency_ms=latency,
            tasks=tasks,
            pending_sessions=len(dirty),
            pending_changes=sum(ms.pending_changes for ms in dirty),
            oldest_pending_seconds=None if oldest is None else (now - oldest).total_seconds(),
            last_error=self._tracker.last_error,
            last_error_at=self._tracker.last_error_at,
            checked_at=now,
        )

    async def _probe_store(self, issues: list[str]) -> tuple[bool, float | None]:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(
                self.store.get_session(_PROBE_ID), timeout=self.config.health_timeout
            )
        except (SessionStoreError, OSError, TimeoutError) as exc:
            issues.append(f"store unreachable: {type(exc).__name__}: {exc}")
            return False, None
        return True, (time.perf_counter() - start) * 1000

    async def optimize(self) -> OptimizeReport:
        """Persist pending changes, purge expired sessions, then run the driver's own
        ``optimize()`` if it has one (reindex, compaction...); reports what was done."""
        self._check_open()
        actions: list[str] = []
        flushed = await self._persist_all()
        actions.append(f"persisted {flushed.written} managed session(s)")
        removed = await self._cas.cleanup_expired_sessions()
        actions.append(f"removed {removed} expired session(s)")
        hook = getattr(self.store, "optimize", None)
        report: Any = None
        if callable(hook):
            report = hook()
            if inspect.isawaitable(report):
                report = await report
            actions.append(f"driver optimize(): {report!r}")
        else:
            actions.append(f"{type(self.store).__name__} offers no optimize()")
        return OptimizeReport(actions, flushed.written, removed, callable(hook), report)
