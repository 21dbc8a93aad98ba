"""The memory driver runs the conformance suite through the public path."""

from __future__ import annotations

import pytest
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import Clock
from sessionstore.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    """Every store of one test class shares a backend, so namespaces are really shared."""

    cleanup_namespaces = False
    backend = MemoryBackend()

    def make_store(self, *, namespace: str, clock: Clock) -> MemoryStore:
        return MemoryStore(backend=self.backend, namespace=namespace, clock=clock)

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()
