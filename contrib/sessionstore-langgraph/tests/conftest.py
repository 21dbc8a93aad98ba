"""The shared adapter fixtures (``adapter_store`` on every built-in driver, the private
Redis and PostgreSQL servers) come from the repository's tests/adapters/plugin.py; here
the driver list gains ``cluster``, a private Redis Cluster (3 masters, 1 replica each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.plugin import ADAPTER_DRIVERS

pytest_plugins = ["tests.adapters.plugin"]

#: Every built-in driver, and Redis Cluster.
DRIVERS = (*ADAPTER_DRIVERS, "cluster")


@pytest.fixture(params=DRIVERS)
def adapter_driver(request: pytest.FixtureRequest) -> str:
    """The driver this test runs on (the shared list, and ``cluster``)."""
    return str(request.param)


@pytest.fixture
def adapter_store_url(adapter_driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the store this test uses on ``adapter_driver``."""
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
