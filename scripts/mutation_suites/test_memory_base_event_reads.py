"""The third test command of ``scripts/mutation.py``: the conformance suite on the memory
driver with the base store's generic event reads (``_query_events``, ``_find_events``,
``_load_event_seqs``) instead of its indexed ones: the shape of a third-party driver that
declares ``event_log`` and keeps the base's versions. Neither memory (its own reads) nor
acme (no ``event_log``) runs that base code. The store also declares a ``max_batch`` (the
base's refusal of a larger batch, which no built-in driver declares) and ``durable`` (the
base reads several sessions' checkpoints concurrently for a driver that does I/O). Not
part of the project's test run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import BaseSessionStore, Capabilities, Clock
from tests.conformance import test_memory_conformance as memory


class MemoryWithBaseEventReads(MemoryStore):
    _query_events = BaseSessionStore._query_events
    _find_events = BaseSessionStore._find_events
    _load_event_seqs = BaseSessionStore._load_event_seqs

    @property
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities, max_batch=MAX_BATCH, durable=True)


#: larger than any batch the suite commits, but for the one that tests the refusal
MAX_BATCH = 200


class TestMemoryBaseEventReads(memory.TestMemoryStore):
    backend = MemoryBackend()
    expected_capabilities = replace(
        memory.TestMemoryStore.expected_capabilities,
        max_batch=MAX_BATCH,
        durable=True,
    )

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> MemoryStore:
        return MemoryWithBaseEventReads(
            backend=self.backend, namespace=namespace, clock=clock, **options
        )
