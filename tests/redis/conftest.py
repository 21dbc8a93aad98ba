"""Helpers for the Redis driver's own tests (the servers come from ``servers.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from sessionstore_redis import RedisStore

from sessionstore import ManualClock, open_store

StoreFactory = Callable[..., RedisStore]


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def open_redis(namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """``await open_redis(url, **options)``: an initialised store, shut down afterwards."""
    opened: list[RedisStore] = []

    async def factory(url: str, **options: Any) -> RedisStore:
        options.setdefault("namespace", namespace)
        options.setdefault("clock", ManualClock())
        store = open_store(url, **options)
        assert isinstance(store, RedisStore)
        await store.initialize()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.shutdown()
