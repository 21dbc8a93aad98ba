"""Fixtures: ``service`` is a ``SessionStoreService`` over ``adapter_store`` (every built-in
driver, from the repository's tests/adapters/plugin.py); ``open_service`` gives more
services on the same data (another process's view)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sessionstore_adk import SessionStoreService

from sessionstore import SessionStore

pytest_plugins = ["tests.adapters.plugin"]

OpenService = Callable[[], Awaitable[SessionStoreService]]


@pytest.fixture
def service(adapter_store: SessionStore) -> SessionStoreService:
    """The ADK session service on this test's store."""
    return SessionStoreService(adapter_store)


@pytest.fixture
def open_service(
    adapter_store: SessionStore, adapter_open_store: Callable[[], Awaitable[SessionStore]]
) -> OpenService:
    """``await open_service()``: another service, over another store object on the same data."""

    async def open_one() -> SessionStoreService:
        return SessionStoreService(await adapter_open_store())

    return open_one
