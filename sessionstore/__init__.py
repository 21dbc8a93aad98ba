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

from ._batch import Mutation
from ._version import __version__
from .base import BaseSessionStore
from .clock import Clock, ManualClock, SystemClock
from .errors import (
    ConfigurationError,
    DriverNotFoundError,
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
    StoreUnavailableError,
    TransactionError,
    UnsupportedFormatError,
)
from .hookspecs import hookimpl
from .model import (
    UNSET,
    AppendOp,
    Checkpoint,
    CreateOp,
    DeleteOp,
    Event,
    EventInput,
    NewSession,
    NewSessionFields,
    Op,
    Session,
    SessionChanges,
    SessionRecord,
    SessionUpdate,
    Status,
    UpdateOp,
)
from .options import StoreOptions, redact_url
from .protocol import Capabilities, MergeStrategy, PutResult, SessionStore
from .query import Page, QueryOptions, SessionFilter
from .registry import (
    DriverInfo,
    broken_plugins,
    get_driver,
    installed_drivers,
    open_store,
    plugin_manager,
    register_driver,
)
from .transaction import Transaction

__all__ = [
    "UNSET",
    "AppendOp",
    "BaseSessionStore",
    "Capabilities",
    "Checkpoint",
    "Clock",
    "ConfigurationError",
    "CreateOp",
    "DeleteOp",
    "DriverInfo",
    "DriverNotFoundError",
    "Event",
    "EventInput",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidSessionIdError",
    "ManualClock",
    "MergeStrategy",
    "Mutation",
    "NewSession",
    "NewSessionFields",
    "Op",
    "OutcomeUnknownError",
    "Page",
    "PutResult",
    "QueryOptions",
    "QuotaExceededError",
    "SerializationError",
    "Session",
    "SessionChanges",
    "SessionConflictError",
    "SessionExistsError",
    "SessionFilter",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionStore",
    "SessionStoreError",
    "SessionUpdate",
    "Status",
    "StoreOptions",
    "StoreUnavailableError",
    "SystemClock",
    "Transaction",
    "TransactionError",
    "UnsupportedFormatError",
    "UpdateOp",
    "__version__",
    "broken_plugins",
    "get_driver",
    "hookimpl",
    "installed_drivers",
    "open_store",
    "plugin_manager",
    "redact_url",
    "register_driver",
]
