"""The whole sessionstore conformance suite, run on AcmeStore from one test class."""

from __future__ import annotations

from typing import Any

from acme_sessionstore import AcmeKV, AcmeStore

from sessionstore import Capabilities, Clock
from sessionstore.testing import StoreConformance


class TestAcmeStore(StoreConformance):
    """Every store of the class shares one AcmeKV, so a namespace's stores share data."""

    kv = AcmeKV()
    # what AcmeStore declares, spelled out: a capability lost by accident fails the suite
    # instead of silently skipping the tests it gates
    expected_capabilities = Capabilities(indexed_query=False)

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> AcmeStore:
        return AcmeStore(kv=self.kv, namespace=namespace, clock=clock, **options)
