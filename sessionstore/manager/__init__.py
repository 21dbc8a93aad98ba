"""The session persistence manager: managed sessions on top of any store.

``SessionPersistenceManager(store_or_url, config=ManagerConfig(...))`` hands out
:class:`ManagedSession` objects whose changes are tracked and persisted automatically
(per interaction, on an interval, or both; always on shutdown), with lifecycle,
checkpoints, transactions, expiry, leases, queries, bulk operations, stats and health.
See ``docs/manager.md``.
"""

from __future__ import annotations

from ._config import ConflictPolicy, ManagerConfig
from ._errors import (
    LeaseError,
    LeaseHeldError,
    LeaseLostError,
    LifecycleError,
    ManagedSessionConflictError,
    ManagerClosedError,
)
from ._leases import Lease
from ._managed import ManagedSession
from ._manager import SessionPersistenceManager
from ._stats import (
    Counters,
    FlushReport,
    HealthReport,
    ManagerStats,
    OptimizeReport,
    SessionSummary,
)
from ._tasks import TaskStatus
from ._transaction import ManagerTransaction

__all__ = [
    "ConflictPolicy",
    "Counters",
    "FlushReport",
    "HealthReport",
    "Lease",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "LifecycleError",
    "ManagedSession",
    "ManagedSessionConflictError",
    "ManagerClosedError",
    "ManagerConfig",
    "ManagerStats",
    "ManagerTransaction",
    "OptimizeReport",
    "SessionPersistenceManager",
    "SessionSummary",
    "TaskStatus",
]
