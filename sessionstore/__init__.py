"""sessionstore: persist long-running sessions behind one async store protocol.

Quick start::

    from sessionstore import open_store

    async with open_store("memory://") as store:
        s = await store.create_session(processor_id="agent-7", data={"goal": "triage"})
        s = await store.update_session(s.id, merge_data={"step": 2}, expected_version=s.version)

Drivers are found through the ``sessionstore`` entry-point group (see
``docs/driver-authors.md``); the public API is exactly the names in ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._planner import Mutation
from ._version import __version__
from .base import BaseSessionStore
from .clock import Clock, ManualClock, SystemClock
from .errors import (
    ConfigurationError,
    DriverNotFoundError,
    EventKeyConflictError,
    IntegrityError,
    InvalidArgumentError,
    InvalidCursorError,
    InvalidSessionIdError,
    OutcomeUnknownError,
    QuotaExceededError,
    SerializationError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    TransactionError,
    UnsupportedFormatError,
    UnsupportedOperationError,
)
from .hookspecs import hookimpl
from .model import (
    UNSET,
    AppendOp,
    AppendResult,
    Checkpoint,
    CreateOp,
    DeleteEventsOp,
    DeleteOp,
    Event,
    EventInput,
    NewSession,
    NewSessionFields,
    Op,
    PopOp,
    PoppedEvents,
    RawEvent,
    Session,
    SessionChanges,
    SessionRecord,
    SessionUpdate,
    Status,
    TrimOp,
    TruncateOp,
    UpdateOp,
)
from .options import StoreOptions, redact_url
from .protocol import Capabilities, MergeStrategy, PutResult, SessionStore
from .query import Page, QueryOptions, SessionFilter
from .registry import (
    DriverInfo,
    broken_plugins,
    check_driver,
    get_driver,
    installed_drivers,
    open_store,
    plugin_manager,
    register_driver,
)
from .transaction import Transaction

if TYPE_CHECKING:
    from .backup import (
        BackupInfo,
        MigrateResult,
        RestoreResult,
        create_backup,
        list_backups,
        migrate,
        prune_backups,
        restore_from_backup,
        verify_backup,
    )
    from .manager import (
        FlushReport,
        HealthReport,
        Lease,
        LeaseError,
        LeaseHeldError,
        LeaseLostError,
        LifecycleError,
        ManagedSession,
        ManagedSessionConflictError,
        ManagerClosedError,
        ManagerConfig,
        ManagerStats,
        ManagerTransaction,
        OptimizeReport,
        SessionPersistenceManager,
        SessionSummary,
    )

# The manager is imported on first use, so `import sessionstore` stays light.
_MANAGER_NAMES = frozenset(
    {
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
    }
)


# Backup, restore and migration: imported on first use as well.
_BACKUP_NAMES = frozenset(
    {
        "BackupInfo",
        "MigrateResult",
        "RestoreResult",
        "create_backup",
        "list_backups",
        "migrate",
        "prune_backups",
        "restore_from_backup",
        "verify_backup",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MANAGER_NAMES:
        return getattr(importlib.import_module(".manager", __name__), name)
    if name in _BACKUP_NAMES:
        return getattr(importlib.import_module(".backup", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UNSET",
    "AppendOp",
    "AppendResult",
    "BackupInfo",
    "BaseSessionStore",
    "Capabilities",
    "Checkpoint",
    "Clock",
    "ConfigurationError",
    "CreateOp",
    "DeleteEventsOp",
    "DeleteOp",
    "DriverInfo",
    "DriverNotFoundError",
    "Event",
    "EventInput",
    "EventKeyConflictError",
    "FlushReport",
    "HealthReport",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidSessionIdError",
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
    "ManualClock",
    "MergeStrategy",
    "MigrateResult",
    "Mutation",
    "NewSession",
    "NewSessionFields",
    "Op",
    "OptimizeReport",
    "OutcomeUnknownError",
    "Page",
    "PopOp",
    "PoppedEvents",
    "PutResult",
    "QueryOptions",
    "QuotaExceededError",
    "RawEvent",
    "RestoreResult",
    "SerializationError",
    "Session",
    "SessionChanges",
    "SessionConflictError",
    "SessionExistsError",
    "SessionFilter",
    "SessionNotFoundError",
    "SessionPersistenceManager",
    "SessionRecord",
    "SessionStore",
    "SessionStoreError",
    "SessionSummary",
    "SessionUpdate",
    "Status",
    "StoreNotFoundError",
    "StoreOptions",
    "StoreUnavailableError",
    "SystemClock",
    "Transaction",
    "TransactionError",
    "TrimOp",
    "TruncateOp",
    "UnsupportedFormatError",
    "UnsupportedOperationError",
    "UpdateOp",
    "__version__",
    "broken_plugins",
    "check_driver",
    "create_backup",
    "get_driver",
    "hookimpl",
    "installed_drivers",
    "list_backups",
    "migrate",
    "open_store",
    "plugin_manager",
    "prune_backups",
    "redact_url",
    "register_driver",
    "restore_from_backup",
    "verify_backup",
]
