"""The public driver interface: everything a driver builds on, in one module.

A driver subclasses :class:`BaseSessionStore` and implements its primitives (``_load``,
``_apply``, ``_load_events``, ``_load_checkpoints``, ``_iter_sessions``), declares its
:class:`Capabilities` and typed :class:`StoreOptions`, and interprets :class:`Mutation` s.
A driver that overrides a public write method to do it natively (a server-side script,
one SQL statement) refuses bad input exactly like the base does with the write-planning
helpers below (:func:`prepare`, :class:`Planner`, :func:`new_session`, ...).

:class:`StorePrimitives` is the level below the public protocol that backup, restore,
migrate and transactions use. Every :class:`BaseSessionStore` offers it as
``store.primitives``; a store that implements :class:`~sessionstore.SessionStore`
directly offers an object of its own there and can then be backed up, restored,
migrated and batched too. See ``docs/driver-authors.md``.

Built-in and third-party drivers import from ``sessionstore`` only its public API
(``sessionstore.__all__`` and its public modules) and this module.
"""

from __future__ import annotations

from ._eventlog import session_tag
from ._planner import (
    CREATE_OP,
    EventFacts,
    EventRequest,
    Limits,
    Mutation,
    NeedEvents,
    Planner,
    Prepared,
    check_expected_version,
    check_new_fields,
    encode_event_inputs,
    make_checkpoint,
    new_session,
    prepare,
    prepare_new,
)
from ._primitives import CAS_ATTEMPTS, StorePrimitives, primitives_of, sound_checkpoints
from ._record_copy import STRATEGIES, check_record, check_strategy, merge_decision
from .base import BaseSessionStore
from .options import StoreOptions
from .protocol import Capabilities
from .worker_threads import EngineThreads, HotThreads

__all__ = [
    "CAS_ATTEMPTS",
    "CREATE_OP",
    "STRATEGIES",
    "BaseSessionStore",
    "Capabilities",
    "EngineThreads",
    "EventFacts",
    "EventRequest",
    "HotThreads",
    "Limits",
    "Mutation",
    "NeedEvents",
    "Planner",
    "Prepared",
    "StoreOptions",
    "StorePrimitives",
    "check_expected_version",
    "check_new_fields",
    "check_record",
    "check_strategy",
    "encode_event_inputs",
    "make_checkpoint",
    "merge_decision",
    "new_session",
    "prepare",
    "prepare_new",
    "primitives_of",
    "session_tag",
    "sound_checkpoints",
]
