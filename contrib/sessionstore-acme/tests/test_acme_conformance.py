"""The whole sessionstore conformance suite, run on AcmeStore from one test class."""

from __future__ import annotations

from typing import Any

from acme_sessionstore import AcmeKV, AcmeStore

from sessionstore import Clock
from sessionstore.testing import StoreConformance


class TestAcmeStore(StoreConformance):
    """Every store of the class shares one AcmeKV, so a namespace's stores share data."""

    kv = AcmeKV()

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> AcmeStore:
        return AcmeStore(kv=self.kv, namespace=namespace, clock=clock, **options)
