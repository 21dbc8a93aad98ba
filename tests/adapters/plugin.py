"""The pytest plugin every framework adapter's tests load (``contrib/sessionstore-<framework>/
tests/conftest.py``: ``pytest_plugins = ["tests.adapters.plugin"]``).

The adapters' tests run in their own environment (``.venv-adapters``, built by
``python3 scripts/dev.py test --adapters`` from ``requirements/adapters.txt``) against
sessionstore and the adapters installed from their wheels. This repository's ``tests``
package is importable there (``scripts/dev.py`` links it into the environment) without the
source tree itself on ``sys.path``, so the adapters reuse the private Redis and PostgreSQL
servers of ``tests/redis/servers.py`` and ``tests/postgres/servers.py`` and the
``integration`` marking of ``tests/integration.py`` instead of copying them.

Fixtures:

* ``adapter_driver`` - parametrized over every built-in driver: ``memory``, ``file``,
  ``sqlite``, ``redis`` (a private server) and ``postgres`` (a private server).
* ``adapter_store_url`` - the URL of that driver's store for this test (a temp file or
  directory, or the private server).
* ``adapter_store`` - an initialised store on that driver with a fresh namespace, shut down
  after the test. It **skips** the test when the driver does not declare
  ``Capabilities.event_log`` (the event-log API the adapters build on); the run's summary
  lists the drivers that did and did not (``adapter drivers with event_log``).
* ``adapter_open_store`` - ``await adapter_open_store(**options)`` opens another store
  object on the same data (same URL, namespace and, for ``memory``, backend), shut down
  after the test; ``options`` go to ``open_store`` (``clock=``, or ``namespace=`` for
  another namespace on the same server or file).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import SessionStore, open_store
from tests.integration import mark_items

__all__ = ["ADAPTER_DRIVERS", "OpenStore", "supports_event_log"]

pytest_plugins = ["tests.redis.servers", "tests.postgres.servers"]

#: The built-in drivers every adapter runs on (``redis`` and ``postgres``: private servers).
ADAPTER_DRIVERS: Final = ("memory", "file", "sqlite", "redis", "postgres")

OpenStore = Callable[..., Awaitable[SessionStore]]

_CAPABLE_KEY = pytest.StashKey[dict[str, bool]]()


def supports_event_log(store: SessionStore) -> bool:
    """True when the store declares ``Capabilities.event_log`` (False on a sessionstore
    that predates the flag)."""
    return bool(getattr(store.capabilities, "event_log", False))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_CAPABLE_KEY] = {}
    for line in (
        "slow: long runs; skipped unless asked for (-m slow)",
        "integration: starts servers (Redis, PostgreSQL) or processes (tests/integration.py)",
    ):
        config.addinivalue_line("markers", line)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Server-backed (``redis``/``postgres`` parameters, server fixtures) and slow tests are
    ``integration``, as in the main suite."""
    mark_items(items)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    seen = config.stash.get(_CAPABLE_KEY, {})
    if not seen:
        return
    capable = [d for d in ADAPTER_DRIVERS if seen.get(d)]
    lacking = [d for d in ADAPTER_DRIVERS if d in seen and not seen[d]]
    terminalreporter.write_line(
        f"adapter drivers with event_log: {', '.join(capable) or 'none'}; "
        f"without (their tests skipped): {', '.join(lacking) or 'none'}"
    )


@pytest.fixture(params=ADAPTER_DRIVERS)
def adapter_driver(request: pytest.FixtureRequest) -> str:
    """The built-in driver this test runs on."""
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
    return str(request.getfixturevalue("postgres_url"))


@pytest_asyncio.fixture
async def adapter_open_store(
    adapter_driver: str, adapter_store_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[OpenStore]:
    """``await adapter_open_store(**options)``: a store object on this test's data,
    initialised; every one is shut down after the test."""
    namespace = f"a-{uuid.uuid4().hex[:12]}"
    backend = MemoryBackend()
    opened: list[SessionStore] = []

    async def open_one(**options: Any) -> SessionStore:
        options.setdefault("namespace", namespace)
        store: SessionStore
        if adapter_driver == "memory":
            store = MemoryStore(backend=backend, **options)
        else:
            store = open_store(adapter_store_url, **options)
        await store.initialize()
        opened.append(store)
        seen = request.config.stash[_CAPABLE_KEY]
        seen[adapter_driver] = supports_event_log(store)
        return store

    yield open_one
    for store in opened:
        await store.shutdown()


@pytest_asyncio.fixture
async def adapter_store(adapter_driver: str, adapter_open_store: OpenStore) -> SessionStore:
    """An initialised store on ``adapter_driver`` with a fresh namespace; skips the test
    when the driver does not declare ``Capabilities.event_log``."""
    store = await adapter_open_store()
    if not supports_event_log(store):
        pytest.skip(f"the {adapter_driver} driver does not declare Capabilities.event_log")
    return store
