"""The sessionstore conformance suite, shipped for driver authors (``sessionstore[testing]``).

A driver's whole test file::

    from sessionstore.testing import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, *, namespace, clock):     # fresh, isolated, uninitialised
            return MyStore(namespace=namespace, clock=clock)

The tests are synchronous pytest tests that run the store in a private event loop, so no
pytest-asyncio configuration is needed. Tests skip only on a capability the driver
declares it lacks. Test names are public API (see ``docs/driver-authors.md``).
"""

from __future__ import annotations

from ._backup import BackupTests
from ._bad_input import BadInputTests
from ._checkpoints import CheckpointTests
from ._concurrency import ConcurrencyTests, WriteRace
from ._crud import CrudTests
from ._event_log import EventLogTests
from ._event_loops import EventLoopTests
from ._events import EventTests
from ._expiry import ExpiryTests
from ._faults import CorruptKind, FaultTests
from ._harness import ConformanceContext, requires, store_test
from ._isolation import IsolationTests
from ._observers import ObserverTests
from ._primitives import PrimitiveTests
from ._query import QueryTests
from ._record_round_trip import RecordTests
from ._search import SearchTests
from ._state_machine import StateMachineTests, make_state_machine
from ._transactions import TransactionTests
from ._versioning import VersioningTests
from .suite import MIXINS, StoreConformance, StoreConformanceBase

__all__ = [
    "MIXINS",
    "BackupTests",
    "BadInputTests",
    "CheckpointTests",
    "ConcurrencyTests",
    "ConformanceContext",
    "CorruptKind",
    "CrudTests",
    "EventLogTests",
    "EventLoopTests",
    "EventTests",
    "ExpiryTests",
    "FaultTests",
    "IsolationTests",
    "ObserverTests",
    "PrimitiveTests",
    "QueryTests",
    "RecordTests",
    "SearchTests",
    "StateMachineTests",
    "StoreConformance",
    "StoreConformanceBase",
    "TransactionTests",
    "VersioningTests",
    "WriteRace",
    "make_state_machine",
    "requires",
    "store_test",
]
