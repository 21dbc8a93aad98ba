"""Shared fixtures: a manual clock and an initialised in-memory store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import ManualClock
from tests.integration import mark_items

# Private Redis and PostgreSQL servers (session-scoped fixtures yielding URLs) for the driver
# tests and conformance runs; registered once here so every module shares the same servers
# (and pytester, for the tests of the test tooling).
pytest_plugins = ["pytester", "tests.redis.servers", "tests.postgres.servers"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Server-backed and slow tests are ``integration`` (tests/integration.py)."""
    mark_items(items)


@pytest.fixture(autouse=True)
def _redis_lean_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SESSIONSTORE_TEST_REDIS_LEAN=false``: every Redis store of the run opens with
    ``lean=false`` (redis-py's public API only) unless the test sets it."""
    if os.environ.get("SESSIONSTORE_TEST_REDIS_LEAN", "true").lower() not in ("0", "false"):
        return
    from sessionstore_redis import RedisOptions

    init = RedisOptions.__init__

    def lean_off(self: RedisOptions, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("lean", False)
        init(self, *args, **kwargs)

    monkeypatch.setattr(RedisOptions, "__init__", lean_off)


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it."""
    return ManualClock()


@pytest.fixture
def backend() -> MemoryBackend:
    """A private memory backend (share it to open several stores on one data set)."""
    return MemoryBackend()


@pytest_asyncio.fixture
async def store(clock: ManualClock, backend: MemoryBackend) -> AsyncIterator[MemoryStore]:
    """An initialised, empty memory store on the manual clock."""
    async with MemoryStore(clock=clock, backend=backend) as opened:
        yield opened
