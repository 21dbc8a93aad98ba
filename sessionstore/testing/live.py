"""The conformance suite against a live store URL.

Run by ``sessionstore conformance URL`` or by
``pytest -p sessionstore.testing.plugin --pyargs sessionstore.testing.live --sessionstore-url URL``.
Every test runs in a fresh namespace that is emptied afterwards, so it is safe against a
store that holds real data in other namespaces.
"""

from __future__ import annotations

from typing import Any

import pytest

from sessionstore import Clock, SessionStore, open_store

from .plugin import live_url
from .suite import StoreConformance

__all__ = ["TestLiveStore"]


class TestLiveStore(StoreConformance):
    """The whole suite on the store at ``--sessionstore-url``."""

    cleanup_namespaces = True

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> SessionStore:
        url = live_url()
        if url is None:
            pytest.skip("no --sessionstore-url given")
        return open_store(url, namespace=namespace, clock=clock, **options)
