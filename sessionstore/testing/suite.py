"""``StoreConformance``: every mixin in one base class a driver's test file subclasses."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from sessionstore import Capabilities, Clock, SessionStore

from ._backup import BackupTests
from ._bad_input import BadInputTests
from ._checkpoints import CheckpointTests
from ._concurrency import ConcurrencyTests
from ._crud import CrudTests
from ._event_log import EventLogTests
from ._event_loops import EventLoopTests
from ._events import EventTests
from ._expiry import ExpiryTests
from ._faults import FaultTests
from ._isolation import IsolationTests
from ._observers import ObserverTests
from ._primitives import PrimitiveTests
from ._query import QueryTests
from ._record_round_trip import RecordTests
from ._search import SearchTests
from ._state_machine import StateMachineTests
from ._transactions import TransactionTests
from ._versioning import VersioningTests

__all__ = ["MIXINS", "StoreConformance", "StoreConformanceBase"]


class StoreConformanceBase:
    """The factory contract. Subclass :class:`StoreConformance` (or chosen mixins + this).

    Override :meth:`make_store` to return a fresh, *uninitialised* store on ``namespace``
    using ``clock``. Several calls with the same namespace must see the same data when
    the driver declares ``shared_namespace``. Accept ``**options`` and pass them to the
    store to run the tests of driver options (e.g. ``checkpoint_keep_last``); without
    them those tests skip.
    """

    #: Empty every namespace a test used when it ends (needed for live servers).
    cleanup_namespaces: bool = True
    #: The capabilities the stores of ``make_store`` must declare, exactly (``None``: not
    #: checked). Each capability gates tests, so a driver that stops declaring one would
    #: silently skip them; with this set, ``test_declares_the_expected_capabilities``
    #: fails instead.
    expected_capabilities: Capabilities | None = None

    def make_store(self, *, namespace: str, clock: Clock) -> SessionStore | Awaitable[SessionStore]:
        """A new store on ``namespace`` using ``clock`` (the suite initialises it).

        An override may also take ``**options`` (driver options a test asks for, such as
        ``checkpoint_keep_last``); the base signature leaves them out so that existing
        overrides stay type-correct."""
        raise NotImplementedError("a conformance test class must implement make_store()")

    def store_url(self, namespace: str) -> str | None:
        """A URL (without a password) that the store class's ``from_url`` opens on
        ``namespace``, for ``test_opened_from_its_url``; ``None`` (the default) skips it."""
        return None

    def namespace_for_test(self) -> str:
        """A fresh namespace for one test."""
        return f"conf-{uuid.uuid4().hex[:12]}"


class StoreConformance(
    CrudTests,
    VersioningTests,
    ExpiryTests,
    QueryTests,
    SearchTests,
    EventTests,
    EventLogTests,
    CheckpointTests,
    TransactionTests,
    ConcurrencyTests,
    EventLoopTests,
    IsolationTests,
    ObserverTests,
    BadInputTests,
    RecordTests,
    BackupTests,
    FaultTests,
    PrimitiveTests,
    StateMachineTests,
    StoreConformanceBase,
):
    """The whole conformance suite. Subclass it as ``TestMyStore`` and implement
    :meth:`~sessionstore.testing.StoreConformanceBase.make_store`."""


#: The mixins of the whole suite, in order (for per-mixin reports).
MIXINS: tuple[type, ...] = tuple(
    base for base in StoreConformance.__bases__ if base is not StoreConformanceBase
)
