"""Shared fixtures: a manual clock and an initialised in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import ManualClock

# Private Redis and PostgreSQL servers (session-scoped fixtures yielding URLs) for the driver
# tests and conformance runs; registered once here so every module shares the same servers.
pytest_plugins = ["tests.redis.servers", "tests.postgres.servers"]


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
