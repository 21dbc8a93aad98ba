"""``command_timeout`` without a client timer per statement: the server's
``statement_timeout`` cancels an overrunning statement, and the pool's watchdog
terminates a connection whose server does not answer at all (a stopped backend, a
stopped server)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from sessionstore_postgres import PostgresStore
from sessionstore_postgres._conn import grace

from sessionstore import OutcomeUnknownError, StoreUnavailableError
from tests.postgres.servers import ENV_URL, PostgresServer, backend_ended

OpenPg = Callable[..., Awaitable[PostgresStore]]
EVENT = {"type": "t", "data": {"n": 1}}
T = TypeVar("T")

# A short limit so the tests take seconds: the server cancels at 0.5 s, the watchdog
# terminates a connection with no reply after 0.5 + grace (1.05 s), looking every
# grace / 2; a loaded machine gets SLACK on top of that bound.
TIMEOUT = 0.5
WATCHDOG_BOUND = TIMEOUT + grace(TIMEOUT) * 2.5
SLACK = 2.5


def _bounded(call: Awaitable[T]) -> Awaitable[T]:
    """``call``, failed (not hung) if the watchdog does not end it in time."""
    return asyncio.wait_for(call, WATCHDOG_BOUND + 2 * SLACK)


def _prefix() -> str:
    """Tables of the test's own (the tests lock them)."""
    return f"tt{uuid.uuid4().hex[:8]}_"


async def _backend_pid(store: PostgresStore) -> int:
    return int(await store._pools.get().run(lambda c: c.fetchval("SELECT pg_backend_pid()")))


@contextlib.contextmanager
def _stopped(pids: list[int]) -> Iterator[None]:
    """SIGSTOP ``pids`` for the block (SIGCONT afterwards, whatever happens)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.asyncio
async def test_command_timeout_is_the_servers_statement_timeout(open_pg: OpenPg) -> None:
    store = await open_pg(command_timeout=9)

    async def settings(conn: asyncpg.Connection) -> tuple[object, ...]:
        sock = conn._transport.get_extra_info("socket")
        return (
            await conn.fetchval("SHOW statement_timeout"),
            conn._config.command_timeout,  # asyncpg's own timer per statement: off
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )

    limit = math.ceil(9 + grace(9))
    assert await store._pools.get().run(settings) == ("9s", None, 1, limit * 1000)


@pytest.mark.asyncio
async def test_an_overrunning_read_is_cancelled_and_its_connection_kept(
    open_pg: OpenPg, postgres_url: str
) -> None:
    prefix = _prefix()
    store = await open_pg(
        table_prefix=prefix, command_timeout=TIMEOUT, retry_deadline=0.2, max_size=1
    )
    sid = (await store.create_session()).id
    await store.append_events(sid, [EVENT] * 3)
    pid = await _backend_pid(store)
    locker = await asyncpg.connect(postgres_url)
    try:
        async with locker.transaction():
            await locker.execute(f"LOCK TABLE {prefix}events IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await store.get_events(sid, last=2)
            took = time.monotonic() - started
        assert "57014" in str(info.value)  # query_canceled: the server's statement_timeout
        # The server times the statement by its own clock, from when it received it: seen
        # from here it can end a millisecond or two before TIMEOUT (one CI run: 0.4988 s).
        assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK
    finally:
        await locker.close()
    assert [e.seq for e in await store.get_events(sid, last=2)] == [2, 3]
    assert await _backend_pid(store) == pid  # the same connection, still usable


@pytest.mark.asyncio
async def test_an_overrunning_write_follows_the_outcome_rules(
    open_pg: OpenPg, postgres_url: str
) -> None:
    prefix = _prefix()
    store = await open_pg(table_prefix=prefix, command_timeout=TIMEOUT, retry_deadline=0.2)
    sid = (await store.create_session()).id
    await store.append_events(sid, [EVENT])
    locker = await asyncpg.connect(postgres_url)
    lock_row = f"SELECT 1 FROM {prefix}sessions WHERE ns = $1 AND id = $2 FOR UPDATE"
    try:
        # the deadline is gone when the server cancels the write: outcome unknown
        async with locker.transaction():
            await locker.execute(lock_row, store.namespace, sid)
            with pytest.raises(OutcomeUnknownError):
                await store.append_events(sid, [EVENT])
        session = await store.get_session(sid)
        assert session is not None
        assert session.event_count == 1  # the server cancelled it: nothing was written

        # within the deadline the write is read back (not applied) and sent again, once
        patient = await open_pg(table_prefix=prefix, command_timeout=TIMEOUT, retry_deadline=10)
        await patient.get_session(sid)  # the copy the plain append writes from
        async with locker.transaction():
            await locker.execute(lock_row, store.namespace, sid)
            append = asyncio.create_task(patient.append_events(sid, [EVENT]))
            await asyncio.sleep(TIMEOUT * 1.5)  # one statement cancelled meanwhile
            assert not append.done()
        assert (await append).event_count == 2
    finally:
        await locker.close()
    assert [e.seq for e in await store.get_events(sid)] == [1, 2]


@pytest.mark.asyncio
async def test_the_limit_is_per_statement_not_per_operation(open_pg: OpenPg) -> None:
    """Ten statements of 0.3 s on one connection (3 s, past the watchdog's 1.55-2.6 s) are
    not cut: its counter moves with each; one statement of 0.8 s is cancelled."""
    store = await open_pg(command_timeout=TIMEOUT, retry_deadline=0.2)
    pool = store._pools.get()

    async def several(conn: asyncpg.Connection) -> list[object]:
        return [await conn.fetchval("SELECT pg_sleep(0.3)") for _ in range(10)]

    started = time.monotonic()
    assert await _bounded(pool.run(several)) == [None] * 10
    assert time.monotonic() - started >= TIMEOUT + grace(TIMEOUT)
    with pytest.raises(StoreUnavailableError) as info:
        await _bounded(pool.run(lambda c: c.fetchval("SELECT pg_sleep(0.8)")))
    assert "57014" in str(info.value)


@pytest.mark.asyncio
async def test_a_hung_backend_is_terminated_within_the_bound(open_pg: OpenPg) -> None:
    store = await open_pg(
        table_prefix=_prefix(), command_timeout=TIMEOUT, retry_deadline=15, max_size=2
    )
    s = await store.create_session(data={"n": 1})
    await store.append_events(s.id, [EVENT])

    # a read: the stopped backend's connection is terminated, the retry uses a new one
    pid = await _backend_pid(store)
    with _stopped([pid]):
        started = time.monotonic()
        got = await _bounded(store.get_session(s.id))
        took = time.monotonic() - started
    assert got is not None and got.event_count == 1
    assert TIMEOUT + grace(TIMEOUT) <= took < WATCHDOG_BOUND + SLACK
    assert await _backend_pid(store) != pid

    # a write with an expected version: read back on a new connection (not applied),
    # sent again, applied once; the stale statement the stopped backend still holds
    # finds the version moved when the backend resumes and writes nothing
    pid = await _backend_pid(store)
    with _stopped([pid]):
        started = time.monotonic()
        done = await _bounded(store.append_events(s.id, [EVENT], expected_version=got.version))
        took = time.monotonic() - started
    assert done.event_count == 2
    assert took < WATCHDOG_BOUND + SLACK
    assert await backend_ended(store, pid)  # the resumed backend ran the stale statement, exited
    assert [e.seq for e in await store.get_events(s.id)] == [1, 2]

    # a plain append (no expected version, no keys): nothing stored could stop the stale
    # statement from applying it after a second copy, and a stopped process cannot be
    # ended (the pool tries, for at most grace), so the outcome is unknown: never resent
    pid = await _backend_pid(store)
    with _stopped([pid]):
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError):
            await _bounded(store.append_events(s.id, [EVENT]))
        took = time.monotonic() - started
    assert took < WATCHDOG_BOUND + grace(TIMEOUT) + SLACK
    assert await backend_ended(store, pid)  # the resumed process ends (SIGTERM): statement settled
    assert [e.seq for e in await store.get_events(s.id)] in ([1, 2], [1, 2, 3])


def _server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent(entry) == postmaster
    ]
    return [postmaster, *children]


def _parent(proc: Path) -> int | None:
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture
def stoppable_server(request: pytest.FixtureRequest) -> PostgresServer:
    """The private server, which this test may stop (SIGSTOP) for a moment."""
    if os.environ.get(ENV_URL):
        pytest.skip(f"{ENV_URL} names a server this test must not stop")
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to find the server's processes")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server


@pytest.mark.asyncio
async def test_a_stopped_server_is_unavailable_within_the_bound(
    open_pg: OpenPg, stoppable_server: PostgresServer
) -> None:
    server = stoppable_server
    store = await open_pg(command_timeout=TIMEOUT, connect_timeout=0.5, retry_deadline=1.0)
    sid = (await store.create_session()).id
    with _stopped(_server_pids(server)):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await _bounded(store.get_session(sid))
        took = time.monotonic() - started
    assert "no reply within command_timeout" in str(info.value)
    assert TIMEOUT + grace(TIMEOUT) <= took < WATCHDOG_BOUND + SLACK
    assert await store.get_session(sid) is not None  # the server is back: so is the store
