"""Fixtures: ``service`` is a ``SessionStoreService`` over ``adapter_store`` (every built-in
driver, from the repository's tests/adapters/plugin.py, and Redis Cluster: the adapter
promises atomic appends there too); ``open_service`` gives more services on the same
data (another process's view)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sessionstore_adk import SessionStoreService

from sessionstore import SessionStore
from tests.adapters.plugin import ADAPTER_DRIVERS

pytest_plugins = ["tests.adapters.plugin"]

OpenService = Callable[[], Awaitable[SessionStoreService]]

#: The shared plugin's drivers and a Redis Cluster ("cluster": the integration marking
#: of tests/integration.py knows the name).
DRIVERS = (*ADAPTER_DRIVERS, "cluster")


@pytest.fixture(params=DRIVERS)
def adapter_driver(request: pytest.FixtureRequest) -> str:
    """The driver this test runs on (overrides the plugin's to add ``cluster``)."""
    return str(request.param)


@pytest.fixture
def adapter_store_url(adapter_driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the store this test uses on ``adapter_driver`` (the plugin's, plus the
    private Cluster)."""
    if adapter_driver == "memory":
        return "memory://"
    if adapter_driver == "file":
        return f"file://{tmp_path / 'sessions'}"
    if adapter_driver == "sqlite":
        return f"sqlite://{tmp_path / 'sessions.db'}"
    if adapter_driver == "redis":
        return str(request.getfixturevalue("redis_url"))
    if adapter_driver == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("postgres_url"))


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
