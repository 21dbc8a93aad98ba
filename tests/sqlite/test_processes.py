"""Several processes on one database: no lost update, and a held lock times out typed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest
from sessionstore_sqlite import SqliteStore

from sessionstore import StoreUnavailableError

from .conftest import spawn

# Real child processes (crashes, several writers): left out of the fast run.
pytestmark = pytest.mark.integration

WRITERS = 4
BUMPS = 40


def test_several_processes_writing_one_session_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")

    async def seed() -> None:
        async with SqliteStore(path=path, durability="none") as store:
            await store.create_session(id="shared", data={"n": 0})

    asyncio.run(seed())
    children = [spawn("bump", path, str(BUMPS)) for _ in range(WRITERS)]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.split() == ["done"]

    async def check() -> None:
        async with SqliteStore(path=path) as store:
            shared = await store.get_session("shared")
            assert shared is not None
            assert shared.data["n"] == WRITERS * BUMPS  # every read-modify-write counted
            assert shared.event_count == WRITERS * BUMPS  # every append kept
            assert shared.version == 1 + 2 * WRITERS * BUMPS
            events = await store.get_events("shared")
            assert [e.seq for e in events] == list(range(1, WRITERS * BUMPS + 1))

    asyncio.run(check())


def test_a_lock_held_too_long_is_store_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.db")

    async def main() -> None:
        async with SqliteStore(path=path, lock_timeout=0.3) as store:
            await store.create_session(id="s", data={"n": 0})
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another process's writer, stuck
            try:
                start = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="lock_timeout"):
                    await store.update_session("s", data={"n": 1})
                assert time.monotonic() - start >= 0.3
                s = await store.get_session("s")  # readers are not blocked (WAL)
                assert s is not None and s.data == {"n": 0}
            finally:
                other.execute("ROLLBACK")
                other.close()
            updated = await store.update_session("s", data={"n": 1})
            assert updated.version == 2

    asyncio.run(main())


def test_a_forked_child_using_the_store_leaves_the_parents_connections_alone(
    tmp_path: Path,
) -> None:
    """The child opens its own connections and never closes the parent's (closing an
    inherited connection could checkpoint and delete the WAL the parent still writes to)."""
    path = str(tmp_path / "fork.db")

    async def parent_part(store: SqliteStore, sid: str) -> None:
        await store.create_session(id=sid, data={"by": "parent"})

    async def main() -> None:
        store = SqliteStore(path=path)
        await store.initialize()
        await parent_part(store, "before")
        pid = os.fork()
        if pid == 0:  # the child: use the inherited store from a new loop, then close it
            code = 1
            try:
                asyncio.run(_child(store))
                code = 0
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        await parent_part(store, "after")
        assert (await store.get_session("by-child")) is not None
        await store.shutdown()
        async with SqliteStore(path=path) as again:
            found = await again.get_sessions(["before", "by-child", "after"])
            assert sorted(found) == ["after", "before", "by-child"]

    asyncio.run(main())


async def _child(store: SqliteStore) -> None:
    await store.create_session(id="by-child")
    await store.shutdown()
