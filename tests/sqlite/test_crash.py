"""Crash safety with real processes: SIGKILL a writer mid-write, then check everything.

The writer (``_worker.crash``) acknowledges each write on stdout once the call returned.
After a kill at a random moment the test opens the database again and checks that

* every acknowledged write is there (at most the one write in flight goes beyond it);
* no batch is half applied: the two sessions of a transaction agree, a session created
  with its events in one commit has all five events or does not exist;
* the counter's data always equals its version - 1 (no lost or doubled update), the
  event log is gap-free;
* ``PRAGMA integrity_check`` is ``ok``.

A SIGKILL cannot prove an fsync happened (the page cache survives it); it proves that
SQLite's commit order and our one-transaction writes leave only whole writes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sessionstore_sqlite import SqliteStore

from sessionstore import QueryOptions, SessionFilter, SessionUpdate, UpdateOp
from tests import crashmix

from .conftest import spawn

# Real child processes (crashes, several writers): left out of the fast run.
pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("SESSIONSTORE_CRASH_KILLS", "12"))


async def _seed(path: str) -> None:
    async with SqliteStore(path=path) as store:
        await store.create_session(id="counter", data={"n": 0})
        await store.create_session(id="log")
        await store.create_session(id="ta", data={"x": 0})
        await store.create_session(id="tb", data={"x": 0})


def _acked(lines: list[str], created: set[int]) -> dict[str, int]:
    acked: dict[str, int] = {"counter": 1, "log": 0, "tx": 0}
    for line in lines:
        kind, _, value = line.partition(" ")
        if kind == "created":
            created.add(int(value))
        elif kind in acked and value.isdigit():
            acked[kind] = max(acked[kind], int(value))
    return acked


async def _check(path: str, acked: dict[str, int], created: set[int]) -> int:
    async with SqliteStore(path=path) as store:
        counter = await store.get_session("counter")
        assert counter is not None
        assert counter.version >= acked["counter"]
        assert counter.data["n"] == counter.version - 1  # whole updates only
        log = await store.get_session("log")
        assert log is not None and log.last_seq >= acked["log"]
        events = await store.get_events("log")
        assert [e.data["k"] for e in events] == list(range(1, log.last_seq + 1))
        assert log.event_count == len(events)
        ta, tb = await store.get_session("ta"), await store.get_session("tb")
        assert ta is not None and tb is not None
        assert ta.data == tb.data and ta.data["x"] >= acked["tx"]  # all or nothing
        tx_events = await store.get_events("ta", last=1)
        assert [e.data["x"] for e in tx_events] == ([ta.data["x"]] if ta.data["x"] else [])
        made = await store.list_sessions(
            SessionFilter(tags_all=["made"]), QueryOptions(limit=10_000)
        )
        numbers = set()
        for s in made.items:
            assert s.event_count == 5
            assert [e.data["j"] for e in await store.get_events(s.id)] == list(range(5))
            numbers.add(s.data["i"])
        assert created <= numbers
        assert store.corrupt_records == {}
        version: int = counter.version
    return version


@pytest.fixture
def crash_dir(tmp_path: Path) -> Iterator[Path]:
    """On tmpfs when there is one (fsync is cheap there; the order is what is tested)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = shm / f"sessionstore-sqlite-crash-{os.getpid()}-{tmp_path.name}"
        base.mkdir()
        yield base
        shutil.rmtree(base, ignore_errors=True)
    else:
        yield tmp_path


def test_sigkill_mid_write_loses_no_acknowledged_write(crash_dir: Path) -> None:
    path = str(crash_dir / "crash.db")
    created: set[int] = set()
    asyncio.run(_seed(path))
    rng = random.Random(20)
    progress = []
    for _ in range(KILLS):
        child = spawn("crash", path)
        assert child.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while len(lines) < 4 and time.monotonic() < deadline:  # running, then a random moment
            lines.append(child.stdout.readline().strip())
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        lines += out.splitlines()
        assert child.returncode == -signal.SIGKILL, err
        progress.append(asyncio.run(_check(path, _acked(lines, created), created)))
    assert progress == sorted(progress) and progress[-1] > progress[0]
    assert len(created) > KILLS  # the kills landed at many different moments
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sigkill_inside_a_transaction_leaves_no_half_and_no_lock(crash_dir: Path) -> None:
    """Killed after the first session of a batch was written inside the open transaction:
    nothing of it is visible, the write lock died with the process, the next writer writes."""
    path = str(crash_dir / "midway.db")

    async def seed() -> None:
        async with SqliteStore(path=path) as store:
            await store.create_session(id="a", data={"x": 0})
            await store.create_session(id="b", data={"x": 0})

    asyncio.run(seed())
    child = spawn("midway", path)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "midway"  # inside BEGIN IMMEDIATE, half written
    child.send_signal(signal.SIGKILL)
    child.communicate()

    async def check() -> None:
        async with SqliteStore(path=path, lock_timeout=5) as store:
            a, b = await store.get_session("a"), await store.get_session("b")
            assert a is not None and b is not None
            assert (a.version, a.data, a.event_count) == (1, {"x": 0}, 0)
            assert (b.version, b.data) == (1, {"x": 0})
            done = await store.commit([
                UpdateOp("a", SessionUpdate(data={"x": 2})),
                UpdateOp("b", SessionUpdate(data={"x": 2})),
            ])  # fmt: skip
            assert [s.version for s in done if not isinstance(s, bool)] == [2, 2]

    asyncio.run(check())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sigkill_during_a_mixed_workload(crash_dir: Path) -> None:
    """Every kind of write (``tests/crashmix.py``): each acknowledged one exactly there,
    the one in flight whole or absent, listings and keys consistent, the store usable."""
    kills = int(os.environ.get("SESSIONSTORE_CRASH_KILLS_MIXED", "6"))
    totals = crashmix.run_kills(f"sqlite://{crash_dir}/mixed.db", {}, kills, seed=31)
    assert totals.kills == kills
    assert totals.acked >= kills * 3 // 4  # three kills in four come after a write
    with sqlite3.connect(crash_dir / "mixed.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
