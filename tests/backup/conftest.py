"""Fixtures for the backup tests: every available driver, and a varied data set.

``STORE_KINDS`` lists the drivers the tests run against: ``memory`` always, ``file`` and
``sqlite`` when their packages are importable, and ``redis`` when ``sessionstore_redis`` and
the Redis tests' server helper (``tests/redis/servers.py``, whose session-scoped
``redis_url`` fixture starts a private server on first use, or skips) are there, and
``postgres`` when ``sessionstore_postgres`` and asyncpg are (``tests/postgres/servers.py``'s
``postgres_url``, registered in ``tests/conftest.py``). Another
driver joins by adding an entry to ``STORE_KINDS`` (kind -> function
``(request, tmp_path, name) -> URL`` of a fresh, isolated store); each test gets its
stores from ``open_kind``. ``EXTRA_KINDS`` can be opened by name but are not run by every
test: ``cluster``, a 3-master Redis Cluster (the session-scoped ``redis_cluster`` fixture
of ``tests/redis/servers.py``), used by the round trip.
"""

from __future__ import annotations

import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sessionstore import BaseSessionStore, Checkpoint, Event, ManualClock, Session, open_store

UrlMaker = Callable[[pytest.FixtureRequest, Path, str], str]
Opener = Callable[..., Awaitable[BaseSessionStore]]


def _memory_url(_request: pytest.FixtureRequest, _tmp: Path, _name: str) -> str:
    return "memory://"


def _file_url(_request: pytest.FixtureRequest, tmp: Path, name: str) -> str:
    return f"file://{tmp / name}"


def _sqlite_url(_request: pytest.FixtureRequest, tmp: Path, name: str) -> str:
    return f"sqlite://{tmp / name}.db?durability=none"


def _redis_url(request: pytest.FixtureRequest, _tmp: Path, name: str) -> str:
    url = str(request.getfixturevalue("redis_url"))  # starts the server on first use
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}namespace=bk-{name}-{uuid.uuid4().hex[:10]}"


def _cluster_url(request: pytest.FixtureRequest, _tmp: Path, name: str) -> str:
    cluster = request.getfixturevalue("redis_cluster")  # starts the cluster on first use
    return f"{cluster.url}?namespace=bk-{name}-{uuid.uuid4().hex[:10]}"


STORE_KINDS: dict[str, UrlMaker] = {"memory": _memory_url}
#: Opened by name only (``open_kind("cluster")``), not run by every ``kind`` test.
EXTRA_KINDS: dict[str, UrlMaker] = {}
if importlib.util.find_spec("sessionstore_filesystem") is not None:
    STORE_KINDS["file"] = _file_url
if importlib.util.find_spec("sessionstore_sqlite") is not None:
    STORE_KINDS["sqlite"] = _sqlite_url
if (
    importlib.util.find_spec("sessionstore_redis") is not None
    and importlib.util.find_spec("tests.redis.servers") is not None
):
    from tests.redis.servers import redis_url  # noqa: F401 - the session fixture

    STORE_KINDS["redis"] = _redis_url
    EXTRA_KINDS["cluster"] = _cluster_url  # a 3-master Redis Cluster (redis_cluster)

if (
    importlib.util.find_spec("sessionstore_postgres") is not None
    and importlib.util.find_spec("asyncpg") is not None
):

    def _postgres_url(request: pytest.FixtureRequest, _tmp: Path, name: str) -> str:
        url = str(request.getfixturevalue("postgres_url"))  # starts the server on first use
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}namespace=bk-{name}-{uuid.uuid4().hex[:10]}"

    STORE_KINDS["postgres"] = _postgres_url

HAS_FILE = "file" in STORE_KINDS


@pytest.fixture(params=sorted(STORE_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    """Each available driver in turn."""
    return str(request.param)


@pytest_asyncio.fixture
async def open_kind(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Opener]:
    """``await open_kind(kind, name, **options)``: a fresh initialised store (closed after)."""
    async with AsyncExitStack() as stack:

        async def opener(kind: str, name: str = "store", **options: Any) -> BaseSessionStore:
            url = {**STORE_KINDS, **EXTRA_KINDS}[kind](request, tmp_path, name)
            store = open_store(url, clock=clock, **options)
            return await stack.enter_async_context(store)

        yield opener


# --------------------------------------------------------------------------- data


async def populate(store: BaseSessionStore, clock: ManualClock) -> None:
    """A varied data set: every field, trimmed logs, checkpoints, an expired session."""
    a = await store.create_session(
        id="a-full",
        processor_id="agent-1",
        data={"goal": "triage", "nested": {"list": [1, 2.5, None, True, "ü"]}, "empty": {}},
        metadata={"user": "u1", "deep": {"k": [1]}},
        tags={"prod", "vip"},
        ttl=3600,
        group="g1",
    )
    await store.append_events(a.id, [{"type": "tool_call", "data": {"i": i}} for i in range(7)])
    await store.trim_events(a.id, keep_last=4)
    clock.advance(1)
    await store.save_checkpoint(a.id, label="first")
    await store.update_session(a.id, merge_data={"step": 2}, status="paused")
    clock.advance(1)
    await store.save_checkpoint(a.id, label="second")
    await store.append_events(a.id, [{"type": "note", "data": {"text": "line\nbreak"}}])
    await store.create_session(id="b-bare")
    c = await store.create_session(id="c-events", processor_id="agent-2", tags={"prod"})
    await store.append_events(c.id, [{"type": "e", "data": {"n": n}} for n in range(25)])
    await store.create_session(id="d-expiring", ttl=5, status="completed")
    for n in range(12):
        await store.create_session(
            id=f"m-{n:02d}", processor_id=f"agent-{n % 3}", data={"n": n}, tags={f"t{n % 2}"}
        )
    clock.advance(10)  # d-expiring is now expired


def names(directory: Path) -> list[str]:
    """The file names in ``directory``, sorted."""
    return sorted(p.name for p in directory.iterdir())


def size(path: str | Path) -> int:
    """The file's size in bytes."""
    return Path(path).stat().st_size


def rewrite(path: str | Path, change: Callable[[bytes], bytes]) -> None:
    """Replace the file's bytes with ``change(bytes)``."""
    target = Path(path)
    target.write_bytes(change(target.read_bytes()))


Snapshot = dict[str, tuple[Session, list[Event], list[Checkpoint]]]


async def snapshot(store: BaseSessionStore) -> Snapshot:
    """Every record of the store (expired included), by id."""
    return {
        r.session.id: (r.session, list(r.events), list(r.checkpoints))
        async for r in store.scan(include_expired=True)
    }
