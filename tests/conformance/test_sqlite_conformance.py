"""The SQLite driver runs the whole conformance suite through the public path."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
from sessionstore_sqlite import SqliteStore

from sessionstore import Clock
from sessionstore.testing import (
    ConcurrencyTests,
    CrudTests,
    EventLogTests,
    EventTests,
    StoreConformance,
    StoreConformanceBase,
    TransactionTests,
)


def _scratch(prefix: str) -> Path:
    """A directory for one test class, removed when the test run ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


class TestSqliteStore(StoreConformance):
    """Every store of the class shares one database file; each test its own namespace.

    Commits skip the fsync here (``durability="none"``, ``synchronous=NORMAL``) to keep
    the suite fast; ``TestSqliteStoreDurable`` runs the write paths with it on.
    """

    cleanup_namespaces = False
    durability = "none"
    db = _scratch("sessionstore-sqlite-conformance-") / "store.db"

    def make_store(self, *, namespace: str, clock: Clock) -> SqliteStore:
        return SqliteStore(
            path=str(self.db), namespace=namespace, clock=clock, durability=self.durability
        )

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()


class TestSqliteStoreDurable(
    CrudTests,
    EventTests,
    EventLogTests,
    TransactionTests,
    ConcurrencyTests,
    StoreConformanceBase,
):
    """The write paths again with ``durability="fsync"`` (``synchronous=FULL``)."""

    cleanup_namespaces = False
    db = _scratch("sessionstore-sqlite-conformance-durable-") / "store.db"

    def make_store(self, *, namespace: str, clock: Clock) -> SqliteStore:
        return SqliteStore(path=str(self.db), namespace=namespace, clock=clock)
