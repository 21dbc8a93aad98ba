"""The PostgreSQL driver runs the whole conformance suite through the public path
(``open_store(url)``), exactly as a third party would."""

from __future__ import annotations

import pytest

from sessionstore import Clock, SessionStore, open_store
from sessionstore.testing import StoreConformance


class TestPostgres(StoreConformance):
    """A private PostgreSQL (or $SESSIONSTORE_TEST_POSTGRES_URL); every test has a fresh
    namespace, so nothing needs emptying."""

    cleanup_namespaces = False
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, postgres_url: str) -> None:
        self.url = postgres_url

    def make_store(self, *, namespace: str, clock: Clock) -> SessionStore:
        return open_store(self.url, namespace=namespace, clock=clock)

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()
