"""Fixtures of the manager tests, parametrized over every driver that is installed.

``store_factory`` opens stores on one shared data set (so a test can play two workers or
two processes) on a ``ManualClock``. It covers ``memory://`` and ``sqlite://`` always,
``file://`` (in a temporary directory) as soon as the ``sessionstore_filesystem`` driver is
importable, and ``redis://`` when its test servers are available.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sessionstore import (
    DriverNotFoundError,
    ManagerConfig,
    ManualClock,
    SessionPersistenceManager,
    SessionStore,
    get_driver,
    open_store,
    register_driver,
)


def _filesystem_driver() -> bool:
    """True when ``file://`` can be opened: the ``sessionstore_filesystem`` package is
    importable and registered (through its entry point, or - before the editable install
    is refreshed - through its plugin module, the way the entry point would)."""
    spec = importlib.util.find_spec("sessionstore_filesystem")
    if spec is None or spec.origin is None:  # absent, or an empty directory so far
        return False
    try:
        get_driver("file")
        return True
    except DriverNotFoundError:
        pass
    try:
        plugin = importlib.import_module("sessionstore_filesystem.plugin")
        plugin.sessionstore_register_drivers(
            register=lambda scheme, target, extra=None: register_driver(scheme, target, extra=extra)
        )
        get_driver("file")
    except Exception:
        return False
    return True


HAVE_FILESYSTEM = _filesystem_driver()
NO_FILESYSTEM = "the filesystem driver (sessionstore_filesystem) is not installed yet"


def _redis_driver() -> bool:
    """True when ``redis://`` can be opened and the test servers' helpers exist."""
    try:
        get_driver("redis")
        importlib.import_module("tests.redis.servers")
    except Exception:
        return False
    return True


HAVE_REDIS = _redis_driver()
NO_REDIS = "the Redis driver (sessionstore_redis) or its test servers are not available"


def file_url(root: Path) -> str:
    """The URL of a filesystem store in ``root``."""
    return f"file://{root}"


def file_options() -> dict[str, Any]:
    """Fast options for the filesystem driver in tests, when it has them."""
    options = get_driver("file").Options
    names = {f.name for f in dataclasses.fields(options)}
    return {"durability": "none"} if "durability" in names else {}


@dataclass
class StoreFactory:
    """Opens stores of one driver on one shared data set, on one manual clock."""

    kind: str
    clock: ManualClock
    _make: Callable[[], SessionStore]
    url: str | None = None
    opened: list[SessionStore] = field(default_factory=list)

    def make(self) -> SessionStore:
        """A new (not yet initialised) store object on the shared data set."""
        store = self._make()
        self.opened.append(store)
        return store

    async def open(self) -> SessionStore:
        """A new initialised store on the shared data set."""
        store = self.make()
        await store.initialize()
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.shutdown()


DRIVERS = [
    pytest.param("memory", id="memory"),
    pytest.param(
        "file", id="file", marks=pytest.mark.skipif(not HAVE_FILESYSTEM, reason=NO_FILESYSTEM)
    ),
    pytest.param("redis", id="redis", marks=pytest.mark.skipif(not HAVE_REDIS, reason=NO_REDIS)),
    pytest.param("sqlite", id="sqlite"),
]


@pytest_asyncio.fixture(params=DRIVERS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A :class:`StoreFactory` for each installed driver."""
    clock = ManualClock()
    if request.param == "memory":
        from sessionstore_memory import MemoryBackend, MemoryStore

        backend = MemoryBackend()
        factory = StoreFactory("memory", clock, lambda: MemoryStore(backend=backend, clock=clock))
    elif request.param == "file":
        url = file_url(tmp_path / "store")
        options = file_options()
        factory = StoreFactory(
            "file", clock, lambda: open_store(url, clock=clock, **options), url=url
        )
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'store.db'}?durability=none"
        factory = StoreFactory("sqlite", clock, lambda: open_store(url, clock=clock), url=url)
    else:
        # a private server for the whole run (tests/redis/servers.py), a namespace per test
        server = request.getfixturevalue("redis_url")
        namespace = f"mgr-{uuid.uuid4().hex[:12]}"
        factory = StoreFactory(
            "redis", clock, lambda: open_store(server, clock=clock, namespace=namespace)
        )
    yield factory
    await factory.close_all()


@pytest_asyncio.fixture
async def store(store_factory: StoreFactory) -> SessionStore:
    """An initialised store of the parametrized driver."""
    return await store_factory.open()


@pytest.fixture
def clock(store_factory: StoreFactory) -> ManualClock:
    """The store's manual clock."""
    return store_factory.clock


#: Most tests want no background work unless they test it.
QUIET = ManagerConfig(persist_interval=None, cleanup_enabled=False)

MakeManager = Callable[..., Awaitable[SessionPersistenceManager]]


@pytest_asyncio.fixture
async def make_manager(store: SessionStore) -> AsyncIterator[MakeManager]:
    """``await make_manager(config=..., store=...)``: initialised, shut down at the end."""
    managers: list[SessionPersistenceManager] = []

    async def make(
        config: ManagerConfig = QUIET, store_: SessionStore | None = None
    ) -> SessionPersistenceManager:
        manager = SessionPersistenceManager(store_ or store, config=config)
        await manager.initialize()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        with contextlib.suppress(Exception):  # some tests leave unwritable changes
            await manager.shutdown()


@pytest_asyncio.fixture
async def manager(make_manager: MakeManager) -> SessionPersistenceManager:
    """A manager with no background loops (per-interaction persistence)."""
    return await make_manager()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 5.0
) -> None:
    """Wait (polling the event loop) until ``condition`` holds; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


async def advance(clock: ManualClock, seconds: float) -> None:
    """Wait until background loops sleep on the clock, then move it and let them run."""
    await eventually(lambda: clock.sleepers > 0)
    await clock.advance_and_settle(seconds)


if HAVE_REDIS:
    from tests.redis.servers import redis_url  # noqa: F401  (a session-scoped fixture)
