"""Faults: a server that stops and comes back, a server that stops answering after a write
was sent, and cancellation at random points (known failures of redis clients: redis-py
#3554, CVE-2023-28858; docs/redis.md, "Retries, failover and cancellation")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sessionstore_redis import RedisStore

from sessionstore import (
    AppendOp,
    EventInput,
    OutcomeUnknownError,
    Session,
    SessionNotFoundError,
    SessionUpdate,
    StoreUnavailableError,
    UpdateOp,
    open_store,
)
from tests.redis.servers import RedisBinaries, RedisServer, start_server

pytestmark = pytest.mark.asyncio


@pytest.fixture
def server(redis_binaries: RedisBinaries, tmp_path: Path) -> Iterator[RedisServer]:
    """A private server this test may stop, pause and restart."""
    started = start_server(redis_binaries, tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            os.kill(started.process.pid, signal.SIGCONT)
        started.stop()


def _store(url: str, **options: object) -> RedisStore:
    options = {"socket_timeout": 0.3, "connect_timeout": 0.3, **options}
    store = open_store(url, **options)
    assert isinstance(store, RedisStore)
    return store


async def test_server_stopped_then_back(server: RedisServer) -> None:
    async with _store(server.url, retry_deadline=1.0) as store:
        s = await store.create_session(data={"a": 1})
        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await store.get_session(s.id)
        assert 0.8 <= time.monotonic() - started < 5
        assert "unavailable for 1 s" in str(info.value)
        # nothing was sent (connection refused): a clear error, not "outcome unknown"
        with pytest.raises(StoreUnavailableError) as info:
            await store.update_session(s.id, merge_data={"b": 2})
        assert not isinstance(info.value, OutcomeUnknownError)
        server.restart()  # the data is gone (no persistence), the store works again
        assert await store.get_session(s.id) is None
        t = await store.create_session(data={"back": True})
        assert await store.get_session(t.id) == t


async def test_outage_shorter_than_the_deadline_is_ridden_out(server: RedisServer) -> None:
    async with _store(server.url, retry_deadline=10.0) as store:
        s = await store.create_session()
        server.stop()
        read = asyncio.create_task(store.get_session(s.id))
        write = asyncio.create_task(store.create_session(id="during-outage"))
        await asyncio.sleep(0.8)
        assert not read.done() and not write.done()
        server.restart()
        assert await read is None  # the restarted server is empty
        assert (await write).id == "during-outage"


async def test_a_connection_the_server_closed_is_not_used(server: RedisServer) -> None:
    """After a restart the pooled connections are closed: a write must not be sent on one
    (its reply would be lost and an unversioned write reported as "outcome unknown")."""
    async with _store(server.url, retry_deadline=5.0) as store:
        s = await store.create_session()
        await store.update_session(s.id, merge_data={"warm": True})
        server.restart()  # no persistence: the session is gone
        await asyncio.sleep(0.05)  # the event loop sees the closed connections
        with pytest.raises(SessionNotFoundError):
            await store.update_session(s.id, merge_data={"after": "restart"})
        with pytest.raises(SessionNotFoundError):
            await store.append_events(s.id, [{"type": "e"}])


async def test_unversioned_write_without_reply_is_outcome_unknown(server: RedisServer) -> None:
    async with _store(server.url, retry_deadline=2.0) as store:
        s = await store.create_session()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(OutcomeUnknownError, match="re-read"):
                await store.update_session(s.id, merge_data={"x": 1})
            # the next call cannot even finish connecting: it was never sent, so it is
            # retried until the deadline and then reported as plainly unavailable
            with pytest.raises(StoreUnavailableError) as info:
                await store.append_events(s.id, [{"type": "e"}])
            assert not isinstance(info.value, OutcomeUnknownError)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # the caller re-reads: the update was applied at most once, the append never
        got = await store.get_session(s.id)
        assert got is not None and got.version in (1, 2) and got.event_count == 0


async def test_versioned_write_is_retried_and_applied_once(server: RedisServer) -> None:
    async with _store(server.url, retry_deadline=15.0) as store:
        s = await store.create_session()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            task = asyncio.create_task(
                store.append_events(s.id, [{"type": "once"}], expected_version=s.version)
            )
            await asyncio.sleep(1.2)  # several timed-out attempts are queued on the server
            assert not task.done()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        done = await task
        assert done.version == s.version + 1
        got = await store.get_session(s.id)
        assert got == done
        assert [e.type for e in await store.get_events(s.id)] == ["once"]


async def test_a_one_call_commit_is_retried_and_applied_once(server: RedisServer) -> None:
    """The ADK adapter's batch (an update against the version read, a keyed append of
    that session, an update of another) in one call (``_commits.py``), sent again and
    again while the server is stopped: it is applied once, the other session's update
    (which has no version check of its own) included."""
    async with _store(server.url, retry_deadline=15.0) as store:
        s = await store.create_session()
        state = await store.create_session()
        batch: list[UpdateOp | AppendOp] = [
            UpdateOp(s.id, SessionUpdate(merge_data={"n": 1}), expected_version=s.version),
            AppendOp(s.id, [EventInput(type="e", key="k1")]),
            UpdateOp(state.id, SessionUpdate(merge_data={"calls": 1})),
        ]
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            task = asyncio.create_task(store.commit(batch))
            await asyncio.sleep(1.2)  # several timed-out attempts are queued on the server
            assert not task.done()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        results = await task
        got, other = await store.get_session(s.id), await store.get_session(state.id)
        assert got is not None and (got.version, got.event_count) == (s.version + 2, 1)
        assert other is not None and other.version == state.version + 1
        # (the update's own result, or, when the reply that came back was a retry's that
        # found the first attempt applied, the session after both)
        first = results[0]
        assert isinstance(first, Session) and first.data == got.data
        assert first.version in (got.version - 1, got.version)
        assert results[1:] == [got, other]
        assert [e.key for e in await store.get_events(s.id)] == ["k1"]


@pytest.mark.parametrize("connections", [3, 32])
async def test_cancellation_never_leaves_a_connection_out_of_step(
    server: RedisServer, connections: int
) -> None:
    """Cancel calls at random points, then check that every reply matches its request."""
    rnd = random.Random(7)
    async with _store(server.url, max_connections=connections, socket_timeout=5.0) as store:
        ids = [f"c{i}" for i in range(30)]
        for sid in ids:
            await store.create_session(id=sid, data={"me": sid})
        client = store.client
        await client.mset({f"k{i}": f"v{i}" for i in range(30)})

        async def check_one(i: int) -> None:
            sid = ids[i % len(ids)]
            s = await store.get_session(sid)
            assert s is not None and s.data["me"] == sid, (sid, s)
            assert await client.get(f"k{i % 30}") == f"v{i % 30}".encode()
            events = await store.get_events(sid)
            assert all(e.data == {"by": sid} for e in events)

        cancelled = 0
        for round_ in range(150):
            i = rnd.randrange(1000)
            sid = ids[i % len(ids)]
            calls = [
                check_one(i),
                store.append_events(sid, [{"type": "e", "data": {"by": sid}}]),
                store.list_sessions(),
            ]
            tasks = [asyncio.create_task(c) for c in calls]
            await asyncio.sleep(rnd.uniform(0, 0.003))
            for task in tasks:
                if not task.done() and rnd.random() < 0.7:
                    task.cancel()
                    cancelled += 1
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if round_ % 10 == 0:
                await asyncio.gather(*(check_one(j) for j in range(40)))
        assert cancelled > 30
        await asyncio.gather(*(check_one(j) for j in range(100)))
        for sid in ids:
            s = await store.get_session(sid)
            assert s is not None
            assert s.event_count == len(await store.get_events(sid))


def _armed(lane: Any) -> bool:
    """Is the lane's read-deadline timer running?"""
    return lane.deadlines._timer is not None


async def test_a_late_reply_times_out_after_the_socket_timeout(server: RedisServer) -> None:
    """The lane's reads have no timer each (``_lane.Deadlines``): one timer looks at the
    reads in progress. A read past ``socket_timeout`` still fails with redis-py's
    TimeoutError soon after it, its connection dropped, and the timer stops once no read
    is in progress."""
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sessionstore_redis._scripts import READ

    async with _store(server.url, socket_timeout=0.4, lean=True) as store:
        s = await store.create_session()
        lane = store._backend.here().lane
        assert lane is not None
        keys = [store.key_names(s.id)["doc"]]
        await store._backend.script(READ, keys, [])  # connected, the script loaded
        assert _armed(lane)  # by the read, and not stopped yet
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError, match="Timeout reading"):
                await asyncio.wait_for(lane.script("EVALSHA", READ.sha, keys, []), 10)
            waited = time.monotonic() - started
            # the timeout, a tick, and a loaded machine's slack (0.5 s was too little:
            # the stopped server never answers, so no timer means wait_for's TimeoutError)
            assert 0.4 <= waited < 0.4 + 0.1 + 2.5
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert not lane._idle or all(not c.is_connected for c in lane._idle)
        await asyncio.sleep(0.25)  # a tick with no read in progress: the timer stops
        assert not _armed(lane)
        # the next call reconnects and is answered
        assert await lane.script("EVALSHA", READ.sha, keys, []) is not None


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
async def test_server_killed_mid_workload_then_restarted(
    redis_binaries: RedisBinaries, tmp_path: Path, aof: bool
) -> None:
    """SIGKILL the server while keyed appends and versioned updates run, restart it a
    moment later. During the outage calls raise :class:`StoreUnavailableError` (nothing
    else); a call that raised it plainly wrote nothing, one that returned is stored (with
    ``appendfsync always``: across the kill; without persistence: since the session was
    made again); the same store object writes on after the restart."""
    extra = ("--appendonly", "yes", "--appendfsync", "always") if aof else ()
    server = start_server(redis_binaries, tmp_path, *extra)
    try:
        async with _store(server.url, retry_deadline=0.5) as store:
            await _kill_and_restart_under_load(store, server, aof)
    finally:
        server.stop()


async def _kill_and_restart_under_load(store: RedisStore, server: RedisServer, aof: bool) -> None:
    ids = ["s0", "s1", "s2", "u"]
    for sid in ids:
        await store.create_session(id=sid, data={"n": 0})
    gen = dict.fromkeys(ids, 0)  # bumped when a session lost in the restart is made again
    acked: dict[str, list[tuple[int, str]]] = {sid: [] for sid in ids}
    unknown: dict[str, set[str]] = {sid: set() for sid in ids}
    errors: list[StoreUnavailableError] = []
    after_restart = [0]
    restarted, written_on = asyncio.Event(), asyncio.Event()
    stop = asyncio.Event()

    async def again(sid: str) -> None:
        assert not aof, f"{sid} was lost although every write was in the AOF"
        gen[sid] += 1
        while True:
            try:
                await store.create_session(id=sid, data={"n": 0})
                return
            except StoreUnavailableError as exc:
                errors.append(exc)
                await asyncio.sleep(0.02)

    async def append(sid: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = f"g{gen[sid]}-{i}"
            try:
                await store.append_events(sid, [{"type": "e", "key": key, "data": {"i": i}}])
            except OutcomeUnknownError as exc:
                unknown[sid].add(key)
                errors.append(exc)
            except SessionNotFoundError:
                await again(sid)
            except StoreUnavailableError as exc:
                errors.append(exc)
                await asyncio.sleep(0.02)
            else:
                acked[sid].append((gen[sid], key))
                after_restart[0] += restarted.is_set()
                if after_restart[0] >= 20:
                    written_on.set()

    async def update() -> None:
        while not stop.is_set():
            try:
                cur = await store.get_session("u")
                if cur is None:
                    await again("u")
                    continue
                done = await store.update_session(
                    "u", merge_data={"n": cur.version}, expected_version=cur.version
                )
            except SessionNotFoundError:
                await again("u")
            except StoreUnavailableError as exc:
                errors.append(exc)
                await asyncio.sleep(0.02)
            else:
                acked["u"].append((gen["u"], str(done.version)))

    tasks = [asyncio.create_task(append(sid)) for sid in ids[:3]]
    tasks.append(asyncio.create_task(update()))
    await asyncio.sleep(random.Random(5).uniform(0.1, 0.3))
    server.kill()
    await asyncio.sleep(0.8)  # longer than retry_deadline: calls fail, typed
    during = len(errors)
    await asyncio.to_thread(server.restart)
    restarted.set()
    await asyncio.wait_for(written_on.wait(), 60)  # the same store object writes on
    stop.set()
    await asyncio.gather(*tasks)
    assert during > 0, "no call failed while the server was down"
    for sid in ids[:3]:
        events = await store.get_events(sid)
        keys = [e.key for e in events]
        assert len(keys) == len(set(keys)) and [e.seq for e in events] == sorted(
            e.seq for e in events
        )
        want = {key for g, key in acked[sid] if g == gen[sid]}
        assert want <= set(keys), f"{sid}: acknowledged appends lost: {sorted(want - set(keys))}"
        assert set(keys) <= want | unknown[sid], "an append reported as failed was stored"
        s = await store.get_session(sid)
        assert s is not None and s.event_count == len(events)
    u = await store.get_session("u")
    assert u is not None and u.data["n"] == u.version - 1  # whole updates, none doubled
    assert all(int(v) <= u.version for g, v in acked["u"] if g == gen["u"])
