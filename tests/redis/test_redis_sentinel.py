"""Sentinel: the store follows the master across a failover under load, and no
acknowledged write is lost. Part of the default run (about 5 s: the sentinel calls the
master down after 1 s of silence, then elects the replica)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from redis import Redis as SyncRedis
from sessionstore_redis import RedisStore

from sessionstore import (
    OutcomeUnknownError,
    SessionConflictError,
    StoreUnavailableError,
    open_store,
)
from tests.redis.processes import command, free_port
from tests.redis.servers import RedisBinaries, SentinelSetup, start_sentinel

pytestmark = pytest.mark.asyncio

WRITERS = 8
#: Acknowledged writes each writer must make before the kill, and after it.
BEFORE, AFTER = 3, 5
DEADLINE = 40.0


@contextlib.contextmanager
def _own_sentinel(binaries: RedisBinaries, down_after_ms: int) -> Iterator[SentinelSetup]:
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-sentinel-fo-"))
    try:
        setup = start_sentinel(binaries, workdir, down_after_ms=down_after_ms)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run a sentinel here: {exc}")
    try:
        yield setup
    finally:
        setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def failover_sentinel(redis_binaries: RedisBinaries) -> Iterator[SentinelSetup]:
    """A master, a replica and a sentinel of its own: the test kills the master."""
    with _own_sentinel(redis_binaries, down_after_ms=1000) as setup:
        yield setup


@pytest.fixture
def patient_sentinel(redis_binaries: RedisBinaries) -> Iterator[SentinelSetup]:
    """The same, with a sentinel slow to call the master down (20 s)."""
    with _own_sentinel(redis_binaries, down_after_ms=20_000) as setup:
        yield setup


@dataclass
class Writer:
    """One session, appended to by one task: event ``n`` carries ``n``, each append
    version-checked. ``acked`` are the ``n`` whose append returned."""

    sid: str
    version: int
    acked: list[int] = field(default_factory=list)
    unknown: int = 0  # appends whose outcome was unknown (then re-read)
    acked_after_kill: int = 0


async def _write(store: RedisStore, w: Writer, killed: asyncio.Event, stop: asyncio.Event) -> None:
    n = len(w.acked) + 1
    while not stop.is_set():
        try:
            s = await store.append_events(
                w.sid, [{"type": "n", "data": {"n": n}}], expected_version=w.version
            )
        except (OutcomeUnknownError, SessionConflictError):
            # sent, but not acknowledged (the master died, or WAIT timed out before the
            # old master rejoined as a replica): the stored version says whether it landed
            w.unknown += 1
            try:
                current = await store.get_session(w.sid)
            except StoreUnavailableError:  # the re-read met the failover too: read again
                continue
            assert current is not None
            assert current.version in (w.version, w.version + 1), "an unexpected writer"
            if current.version == w.version + 1:
                n, w.version = n + 1, current.version
            continue
        except StoreUnavailableError:  # not sent (the store said so): send it again
            continue
        w.acked.append(n)
        if killed.is_set():
            w.acked_after_kill += 1
        n, w.version = n + 1, s.version


async def test_failover_under_load_loses_no_acknowledged_write(
    failover_sentinel: SentinelSetup,
) -> None:
    """Eight tasks append (version-checked, ``wait_replicas=1``) while the master is
    killed. The sentinel promotes the replica; the old master is started again once the
    sentinel has switched, as a replica of the new master. Every acknowledged append is in the
    stored history, which has no gap and no duplicate; writes resume within the deadline.
    ``wait_replicas=1`` is what makes "acknowledged" mean "on the replica too": with
    asynchronous replication alone the last acknowledged writes may be lost in a failover
    (docs/redis.md).

    The sessions are created (acknowledged, on the replica) before the kill, so a re-read
    that finds one missing is a lost write, never an allowed outcome of an unknown one.
    One clean-clone run saw it, and loops under CPU load reproduced it (2 runs of 8): the
    sentinel's fresh link to the new master missed its 1 s deadline, a second failover
    promoted the restarted old master before its first sync, and its empty data set
    replaced the new master's. A setup fault, not the driver's (the restarted replica now
    has ``replica-priority 0``; see docs/decisions.md)."""
    setup = failover_sentinel
    store = open_store(
        setup.url,
        wait_replicas=1,
        wait_timeout=1.0,
        retry_deadline=DEADLINE,
        socket_timeout=1.0,
        connect_timeout=0.5,
    )
    assert isinstance(store, RedisStore)
    async with store:
        writers = []
        for i in range(WRITERS):
            s = await store.create_session(id=f"fo{i}")
            writers.append(Writer(s.id, s.version))
        killed, stop = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(_write(store, w, killed, stop)) for w in writers]
        try:
            started = time.monotonic()
            while min(len(w.acked) for w in writers) < BEFORE:  # under load now
                assert time.monotonic() - started < DEADLINE, "no load before the kill"
                await asyncio.sleep(0.01)
            old_port = setup.master.port
            setup.master.kill()
            killed.set()
            killed_at = time.monotonic()
            restarted = False
            while min(w.acked_after_kill for w in writers) < AFTER:
                for task in tasks:  # a writer that died says why, instead of a timeout
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                assert time.monotonic() - killed_at < DEADLINE, "writes did not resume"
                new_port = 0 if restarted else setup.master_port()
                if new_port not in (0, old_port):
                    # the sentinel switched: the old master comes back as a replica of
                    # the new one (as an operator would start it), so WAIT 1 holds again.
                    # Empty until its first sync, it must not be promoted: with this
                    # sentinel's 1 s down-after, a fresh link to the new master can miss
                    # its ping deadline and start a second failover at once, which chose
                    # this replica, still empty, and wiped every acknowledged write
                    # (docs/decisions.md). replica-priority 0: never promoted.
                    await asyncio.to_thread(
                        setup.master.restart,
                        "--replicaof",
                        "127.0.0.1",
                        str(new_port),
                        "--replica-priority",
                        "0",
                    )
                    restarted = True
                await asyncio.sleep(0.02)
            recovered = time.monotonic() - killed_at
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        total = sum(len(w.acked) for w in writers)
        for w in writers:
            events = await store.get_events(w.sid)
            stored = [e.data["n"] for e in events]
            assert stored == list(range(1, len(stored) + 1)), "a gap or a duplicate"
            assert set(w.acked) <= set(stored), "an acknowledged append was lost"
            session = await store.get_session(w.sid)
            assert session is not None and session.version == 1 + len(stored)
        print(
            f"sentinel failover: {total} acknowledged appends, 0 lost, "
            f"{sum(w.unknown for w in writers)} of unknown outcome re-read, "
            f"writes resumed {recovered:.1f} s after the kill"
        )


async def test_a_replica_the_sentinel_still_names_master_is_never_read(
    patient_sentinel: SentinelSetup,
) -> None:
    """The master dies and is started again, as a replica, before the sentinel has called
    it down: the sentinel still names it master, with no down flag. That replica is empty
    (its master link is down), so a store that took the sentinel's word would read the
    acknowledged session as missing: the failover test's one clean-clone failure, where
    the old master came back while the sentinel had not yet switched. The store checks
    the role of every server it connects to as master; it refuses this one, and reads
    the session once the sentinel has promoted the replica that holds it."""
    setup = patient_sentinel
    store = open_store(setup.url, wait_replicas=1, retry_deadline=1.0, connect_timeout=0.5)
    sentinel = SyncRedis(port=setup.sentinel.port, decode_responses=True)
    async with store:
        await store.create_session(id="kept", data={"n": 1})  # on the replica too (WAIT)
        setup.master.kill()
        nowhere = free_port()  # a master link that never comes up: the replica stays empty
        await asyncio.to_thread(setup.master.restart, "--replicaof", "127.0.0.1", str(nowhere))
        named = cast(dict[str, Any], sentinel.sentinel_masters())[setup.service]
        # the precondition: redis-py's discover_master takes this entry for the master
        assert named["port"] == setup.master.port
        assert named["is_master"] and not named["is_sdown"] and not named["is_odown"]
        assert b"role:slave" in command(setup.master.port, "INFO", "replication")

        with pytest.raises(StoreUnavailableError, match="but that server is a replica"):
            await store.get_session("kept")  # (it returned None: the replica's answer)
        with pytest.raises(StoreUnavailableError, match="but that server is a replica"):
            await store.create_session(id="other")
        # the operator's way out: fail over to the replica that holds the data
        assert command(setup.sentinel.port, "SENTINEL", "FAILOVER", setup.service) == b"+OK\r\n"
        deadline = time.monotonic() + DEADLINE
        while setup.master_port() == setup.master.port:
            assert time.monotonic() < deadline, "the sentinel did not fail over"
            await asyncio.sleep(0.05)
        session = None
        while session is None:
            assert time.monotonic() < deadline, "the promoted replica was not read"
            with contextlib.suppress(StoreUnavailableError):
                session = await store.get_session("kept")
        assert session.data == {"n": 1}
    sentinel.close()


async def test_a_master_demoted_behind_the_sentinels_back_is_left_at_the_first_write(
    patient_sentinel: SentinelSetup,
) -> None:
    """The master is made a replica by hand (no ``CLIENT KILL``, which the sentinel's own
    demotion sends): the store's connection to it stays open. The first write's READONLY
    drops that connection, so the retry asks the sentinel again (as redis-py does for its
    own replies; the lean path reads the reply itself) and refuses the replica it names,
    instead of sending every retry to the same replica."""
    setup = patient_sentinel
    store = open_store(setup.url, retry_deadline=1.0, connect_timeout=0.5)
    async with store:
        await store.create_session(id="kept")
        command(setup.master.port, "REPLICAOF", "127.0.0.1", str(free_port()))
        with pytest.raises(StoreUnavailableError, match="but that server is a replica"):
            await store.create_session(id="other")
