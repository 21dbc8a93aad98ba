"""The file driver runs the whole conformance suite through the public path."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore

from sessionstore import Clock, SessionStore
from sessionstore.testing import (
    ConcurrencyTests,
    CorruptKind,
    CrudTests,
    EventTests,
    StoreConformance,
    StoreConformanceBase,
    TransactionTests,
)
from tests.filesystem.conftest import session_dir


def _scratch(prefix: str) -> Path:
    """A directory for one test class, removed when the test run ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


class TestFileStore(StoreConformance):
    """Every store of the class shares one root directory; each test its own namespace.

    Writes skip fsync here (``durability="none"``) to keep the suite fast; the durable
    path runs the same code plus the fsyncs, and ``TestFileStoreDurable`` runs a part of
    the suite with them on.
    """

    cleanup_namespaces = False
    durability = "none"
    root = _scratch("sessionstore-conformance-")

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> FileStore:
        return FileStore(
            root=str(self.root),
            namespace=namespace,
            clock=clock,
            durability=self.durability,
            **options,
        )

    async def corrupt(
        self,
        store: SessionStore,
        kind: CorruptKind,
        session_id: str,
        checkpoint_id: str | None = None,
    ) -> None:
        """Garbage over the start of the session's document, event log or checkpoint file."""
        where = session_dir(self.root, session_id, store.namespace)
        if kind == "session":
            target = where / "session.json"
        elif kind == "events":
            (target,) = where.glob("events.*.jsonl")
        else:  # "checkpoint", "checkpoint_content" or "checkpoint_moved"
            (target,) = where.glob(f"checkpoints.*/{checkpoint_id}.json")
        raw = target.read_bytes()
        if kind == "checkpoint_moved":  # another checkpoint's valid file in its place
            other = next(p for p in target.parent.glob("*.json") if p != target)
            target.write_bytes(other.read_bytes())
            return
        if kind == "checkpoint_content":  # an edited value: valid JSON, wrong digest
            target.write_bytes(raw.replace(b'"x":"fb"', b'"x":"ed"', 1))
            return
        target.write_bytes(b"\x80{garbage" + raw[10:])

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()


class TestFileStoreDurable(
    CrudTests, EventTests, TransactionTests, ConcurrencyTests, StoreConformanceBase
):
    """The write paths again with ``durability="fsync"`` (every fsync really issued)."""

    cleanup_namespaces = False
    root = _scratch("sessionstore-conformance-durable-")

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> FileStore:
        return FileStore(root=str(self.root), namespace=namespace, clock=clock, **options)


@pytest.mark.slow
class TestFileStoreCasedNames(TestFileStore):
    """The whole suite again with the names of a case-insensitive volume forced
    (``names="cased"``: ids with capitals get a ``+`` suffix) on this volume."""

    root = _scratch("sessionstore-conformance-cased-")

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> FileStore:
        return super().make_store(namespace=namespace, clock=clock, names="cased", **options)
