"""Helpers for the PostgreSQL driver's own tests (the server comes from ``servers.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from sessionstore_postgres import PostgresStore

from sessionstore import ManualClock, open_store


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def open_pg(postgres_url: str, namespace: str) -> AsyncIterator[Callable[..., Any]]:
    """``await open_pg(**options)``: an initialised store on the test server, shut down
    afterwards (``url=`` to open another URL)."""
    opened: list[PostgresStore] = []

    async def factory(url: str | None = None, **options: Any) -> PostgresStore:
        options.setdefault("namespace", namespace)
        options.setdefault("clock", ManualClock())
        store = open_store(url or postgres_url, **options)
        assert isinstance(store, PostgresStore)
        await store.initialize()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.shutdown()
