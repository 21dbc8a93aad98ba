"""Result types of the manager's observability calls, and the counters behind them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..model import Session, Status
from ._bookkeeping import Book
from ._leases import read_lease
from ._tasks import TaskStatus

__all__ = [
    "Counters",
    "FlushReport",
    "HealthReport",
    "ManagerStats",
    "OptimizeReport",
    "SessionSummary",
    "StatsAccumulator",
]

_FINISHED = (Status.COMPLETED, Status.FAILED, Status.TIMEOUT)


@dataclass
class Counters:
    """What this manager did since it started (not persisted)."""

    created: int = 0
    loaded: int = 0
    writes: int = 0
    conflicts: int = 0
    reapplied: int = 0
    errors: int = 0
    cleaned: int = 0


@dataclass(frozen=True)
class FlushReport:
    """What a ``persist_all()`` / ``shutdown()`` wrote, and what it could not."""

    written: int = 0
    failed: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every pending change was persisted."""
        return not self.failed


@dataclass(frozen=True)
class ManagerStats:
    """``get_stats()``: the store's live sessions, computed with one paged scan.

    ``success_rate`` is completed / (completed + failed + timeout), ``None`` before any
    session finished; ``average_iterations`` is over managed sessions (``None``: none).
    ``live_managed``, ``dirty`` and ``counters`` describe this manager process.
    """

    total: int
    active: int
    by_status: Mapping[str, int]
    by_processor: Mapping[str, int]
    managed: int
    interactions: int
    success_rate: float | None
    average_iterations: float | None
    live_managed: int
    dirty: int
    counters: Counters
    computed_at: datetime


class StatsAccumulator:
    """Folds sessions page by page into :class:`ManagerStats` (memory stays flat)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_status: dict[str, int] = {s.value: 0 for s in Status}
        self.by_processor: dict[str, int] = {}
        self.managed = 0
        self.iterations = 0
        self.interactions = 0

    def add(self, session: Session) -> None:
        """Count one session."""
        self.total += 1
        self.by_status[session.status.value] += 1
        key = session.processor_id if session.processor_id is not None else "<none>"
        self.by_processor[key] = self.by_processor.get(key, 0) + 1
        self.interactions += session.event_count
        book = Book.of(session)
        if book.managed:
            self.managed += 1
            self.iterations += book.iterations

    def result(
        self, *, live_managed: int, dirty: int, counters: Counters, now: datetime
    ) -> ManagerStats:
        """The finished statistics."""
        finished = sum(self.by_status[s.value] for s in _FINISHED)
        return ManagerStats(
            total=self.total,
            active=self.by_status[Status.ACTIVE.value],
            by_status=dict(self.by_status),
            by_processor=dict(sorted(self.by_processor.items())),
            managed=self.managed,
            interactions=self.interactions,
            success_rate=self.by_status[Status.COMPLETED.value] / finished if finished else None,
            average_iterations=self.iterations / self.managed if self.managed else None,
            live_managed=live_managed,
            dirty=dirty,
            counters=Counters(**vars(counters)),
            computed_at=now,
        )


@dataclass(frozen=True)
class HealthReport:
    """``health_check()``: ``healthy`` is true when ``issues`` is empty."""

    healthy: bool
    issues: list[str]
    store_reachable: bool
    store_latency_ms: float | None
    tasks: list[TaskStatus]
    pending_sessions: int
    pending_changes: int
    oldest_pending_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None
    checked_at: datetime


@dataclass(frozen=True)
class OptimizeReport:
    """``optimize()``: what was done (``actions``, in order) and the driver's own report."""

    actions: list[str]
    persisted: int
    expired_removed: int
    driver_supported: bool
    driver_report: Any = None


@dataclass(frozen=True)
class SessionSummary:
    """``get_session_summary(id)``: a one-glance description of a session."""

    id: str
    processor_id: str | None
    status: Status
    version: int
    created_at: datetime
    last_persisted_at: datetime
    expires_at: datetime | None
    age_seconds: float
    interactions: int
    checkpoints: int
    managed: bool
    live: bool
    iterations: int
    max_iterations: int | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    pending_changes: int

    @classmethod
    def build(
        cls,
        session: Session,
        now: datetime,
        *,
        checkpoints: int,
        live: bool,
        pending: int,
        last_persisted_at: datetime | None,
    ) -> SessionSummary:
        """Summarise ``session`` at ``now``."""
        book = Book.of(session)
        lease = read_lease(session)
        held = lease is not None and not lease.is_expired(now)
        return cls(
            id=session.id,
            processor_id=session.processor_id,
            status=session.status,
            version=session.version,
            created_at=session.created_at,
            last_persisted_at=max(filter(None, (session.updated_at, last_persisted_at))),
            expires_at=session.expires_at,
            age_seconds=(now - session.created_at).total_seconds(),
            interactions=session.event_count,
            checkpoints=checkpoints,
            managed=book.managed,
            live=live,
            iterations=book.iterations,
            max_iterations=book.max_iterations,
            lease_owner=lease.owner if held and lease is not None else None,
            lease_expires_at=lease.expires_at if held and lease is not None else None,
            pending_changes=pending,
        )
