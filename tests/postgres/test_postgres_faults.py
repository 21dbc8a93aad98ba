"""Crashes, several processes and a server restart under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sessionstore_postgres import PostgresStore

from sessionstore import AppendOp, OutcomeUnknownError, Session, StoreUnavailableError
from tests import crashmix
from tests.postgres.proxy import CuttableProxy
from tests.postgres.servers import ENV_URL, PostgresServer, backend_ended, backends_gone

OpenPg = Callable[..., Awaitable[PostgresStore]]
ROOT = Path(__file__).resolve().parents[2]
EVENT = {"type": "t", "data": {"n": 1}}


def _writer(url: str, namespace: str, mode: str, *ids: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.postgres._writer", url, namespace, mode, *ids],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.asyncio
async def test_sigkill_mid_transaction_loses_no_acknowledged_write(
    open_pg: OpenPg, postgres_url: str, namespace: str
) -> None:
    store = await open_pg()
    ids = [(await store.create_session()).id for _ in range(4)]
    app = f"crash-writer-{namespace}"  # the writer's connections, found by this name
    sep = "&" if "?" in postgres_url else "?"
    for round_ in range(3):
        proc = _writer(f"{postgres_url}{sep}application_name={app}", namespace, "batch", *ids)
        acked = 0
        try:
            assert proc.stdout is not None
            target = 20 + 7 * round_
            while acked < target:
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, proc.stderr.read() if proc.stderr else "writer died"
                acked = int(line)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.stderr is not None:
                proc.stderr.close()
        # A killed client's server process finishes the statement it is running (its
        # COMMIT too) before it notices: the sessions are read one by one, so wait until
        # the writer's server processes are gone, or a commit landing between two reads
        # would look like a half-applied batch.
        await backends_gone(postgres_url, app)
        logs = [[e.data["i"] for e in await store.get_events(sid)] for sid in ids]
        assert all(log == logs[0] for log in logs), "a batch was applied to some sessions only"
        seen = set(logs[0])
        # every acknowledged batch of this round is there (0 acknowledged writes lost)
        assert set(range(1, acked + 1)) <= seen
        assert len(logs[0]) == len(seen)
        for sid in ids:  # the next writer starts from an empty log again
            await store.trim_events(sid, keep_last=0)


@pytest.mark.asyncio
async def test_several_processes_lose_no_update(
    open_pg: OpenPg, postgres_url: str, namespace: str
) -> None:
    store = await open_pg()
    s = await store.create_session(data={"n": 0})
    procs = [_writer(postgres_url, namespace, "bump", s.id) for _ in range(3)]
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    final = await store.get_session(s.id)
    assert final is not None
    assert final.data["n"] == 75
    assert final.event_count == 75
    assert [e.seq for e in await store.get_events(s.id)] == list(range(1, 76))


@pytest.fixture
def private_server(request: pytest.FixtureRequest) -> PostgresServer:
    if os.environ.get(ENV_URL):
        pytest.skip(f"{ENV_URL} names a server this test must not restart")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_server_restart_under_load(
    open_pg: OpenPg, private_server: PostgresServer, mode: str
) -> None:
    """A restart (``immediate``: the server processes killed, WAL recovery at the start)
    while appends run: ridden out within ``retry_deadline``, every acknowledged append
    stored once, at most the ones of unknown outcome more, the logs gap-free."""
    url = None
    if mode == "immediate":
        # The test server commits asynchronously (synchronous_commit=off): a commit it
        # acknowledged may sit in its WAL buffers, which a kill loses. A role with
        # synchronous commit has its WAL written to the kernel before the reply (no
        # fsync: the kernel outlives the kill), as a durable server's would be.
        conn = await asyncpg.connect(private_server.url)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'synced'"):
                await conn.execute("CREATE ROLE synced SUPERUSER LOGIN")
                await conn.execute("ALTER ROLE synced SET synchronous_commit = on")
        finally:
            await conn.close()
        url = f"postgresql://synced@127.0.0.1:{private_server.port}/postgres"
    store = await open_pg(url, retry_deadline=30.0)
    sessions = [(await store.create_session()).id for _ in range(6)]
    acked = dict.fromkeys(sessions, 0)
    unknown = dict.fromkeys(sessions, 0)
    errors: list[BaseException] = []
    stop, progress = asyncio.Event(), asyncio.Event()

    async def load(sid: str) -> None:
        while not stop.is_set():
            try:
                await store.append_events(sid, [{"type": "t", "data": {"n": acked[sid]}}])
            except OutcomeUnknownError:
                unknown[sid] += 1
            except StoreUnavailableError as exc:
                errors.append(exc)
                await asyncio.sleep(0.05)
            else:
                acked[sid] += 1
                progress.set()

    tasks = [asyncio.create_task(load(sid)) for sid in sessions]
    await asyncio.sleep(0.5)
    before = sum(acked.values())
    started = time.monotonic()
    thread = threading.Thread(target=private_server.restart, args=(mode,))
    thread.start()
    await asyncio.to_thread(thread.join)
    restart_took = time.monotonic() - started
    mark = sum(acked.values())
    # writes resume once the server is back: wait for the next acknowledged one (a fixed
    # 1 s sleep here raced the retries' backoff, up to 0.75 s, and the reconnects on a
    # loaded machine)
    progress.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(progress.wait(), 30.0)
    stop.set()
    await asyncio.gather(*tasks)
    assert sum(acked.values()) > mark > before, (before, mark, restart_took)
    assert not errors, errors[:3]  # a restart within retry_deadline is ridden out
    for sid in sessions:
        s = await store.get_session(sid)
        assert s is not None
        assert acked[sid] <= s.event_count <= acked[sid] + unknown[sid]
        assert [e.seq for e in await store.get_events(sid)] == list(range(1, s.event_count + 1))


async def _waiting_on_a_lock(store: PostgresStore, table: str, other_than: int = 0) -> int:
    """The pid of a server process (not ``other_than``) whose statement waits on a lock
    on ``table``."""
    sql = (
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE NOT l.granted AND a.application_name = 'sessionstore' AND a.query LIKE $1 "
        "AND a.pid <> $2"
    )
    for _ in range(500):
        pid = await store._pools.get().run(
            lambda c: c.fetchval(sql, f"%{table.removesuffix('sessions')}%", other_than)
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("no statement waits on the lock")


@pytest.mark.asyncio
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
async def test_a_write_cut_off_from_its_running_statement_is_applied_once(
    open_pg: OpenPg, private_server: PostgresServer, keyed: bool
) -> None:
    """The client loses its connection (a network cut) while the server process keeps
    running the statement, blocked on a row lock. An append with nothing to stop a
    second copy (no expected version, no keys) must not be sent again while that
    process can still commit the first: the pool ends it, then reads back, then sends
    again; one event is stored, not two."""
    proxy = CuttableProxy("127.0.0.1", private_server.port)
    await proxy.start()
    try:
        store = await open_pg(url=f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres")
        s = await store.create_session(data={"n": 1})
        await store.append_events(s.id, [EVENT])
        table = f"{store._prefix}sessions"  # (the statements name it or events_op)
        locker = await asyncpg.connect(private_server.url)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", s.id)
            event = {**EVENT, "key": "k1"} if keyed else EVENT
            append = asyncio.create_task(store.append_events(s.id, [event]))
            first = await _waiting_on_a_lock(store, table)
            proxy.cut()  # the client's connection is gone; the server process waits on
            await asyncio.sleep(0.2)  # (the pool reads back and sends again meanwhile)
            second = await _waiting_on_a_lock(store, table, other_than=first)
            alive = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first
            )
            # keyed: sending again is safe as is (the key is stored once), the first
            # process may live on; plain: it was ended before the append was sent again
            assert second != first
            assert alive == (1 if keyed else 0)
            await tx.rollback()
        finally:
            await locker.close()
        done = await asyncio.wait_for(append, 10)
        assert await backend_ended(store, first)  # a surviving first statement (keyed) ran
        events = await store.get_events(s.id)
        assert [e.seq for e in events] == [1, 2]
        assert done.event_count == 2
    finally:
        await proxy.close()


@pytest.mark.asyncio
async def test_unix_socket_through_the_host_option(
    open_pg: OpenPg, private_server: PostgresServer
) -> None:
    url = f"postgresql://postgres@/postgres?host={private_server.socket_dir}&port={private_server.port}"
    store = await open_pg(url)
    s = await store.create_session(data={"over": "unix"})
    got = await store.get_session(s.id)
    assert got is not None and got.data == {"over": "unix"}


def test_sigkill_during_a_mixed_workload(postgres_url: str, namespace: str) -> None:
    """The drivers' shared crash workload (``tests/crashmix.py``) on PostgreSQL: each
    acknowledged write exactly there after a client SIGKILL, the one in flight whole or
    absent (a commit all or nothing), listings and keys consistent, the store usable."""
    app = f"crashmix-{namespace}"  # the writer's connections, found by this name
    kills = int(os.environ.get("SESSIONSTORE_CRASH_KILLS_MIXED", "6"))
    totals = crashmix.run_kills(
        postgres_url,
        {"namespace": namespace, "application_name": app},
        kills,
        seed=33,
        # a killed client's server process finishes its statement (a COMMIT too): wait
        # for it to end before reading, or a late commit looks like a half-applied one
        after_kill=lambda: asyncio.run(backends_gone(postgres_url, app)),
    )
    assert totals.kills == kills
    assert totals.acked >= kills * 3 // 4  # three kills in four come after a write


async def _terminate(url: str, application_name: str, rounds: int, seed: int) -> int:
    """``pg_terminate_backend`` every server process of ``application_name``, ``rounds``
    times at random moments; how many it ended."""
    rnd = random.Random(seed)
    ended = 0
    conn = await asyncpg.connect(url)
    try:
        for _ in range(rounds):
            await asyncio.sleep(rnd.uniform(0.005, 0.06))
            ended += await conn.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS done "
                "FROM pg_stat_activity WHERE application_name = $1) t WHERE done",
                application_name,
            )
    finally:
        await conn.close()
    return ended


@pytest.mark.asyncio
@pytest.mark.parametrize("retry_deadline", [5.0, 0.05], ids=["retried", "no-retry"])
async def test_backends_terminated_mid_transaction(
    open_pg: OpenPg, postgres_url: str, namespace: str, retry_deadline: float
) -> None:
    """Server processes ended (``pg_terminate_backend``) at random moments while commits
    over three sessions and versioned updates run: every call either returns (and its
    write is there, once), or raises :class:`StoreUnavailableError` (``OutcomeUnknown``:
    there at most once; else not there), nothing else; the same store object writes on
    afterwards."""
    app = f"term-{namespace}"
    store = await open_pg(application_name=app, retry_deadline=retry_deadline)
    ids = [(await store.create_session(id=f"s{i}")).id for i in range(3)]
    await store.create_session(id="u", data={"n": 0})  # versioned updates alone
    acked: list[int] = []
    unknown: list[int] = []
    failed: list[int] = []
    counter = {"acked": 1, "maybe": 0}  # u's version acknowledged; updates unknown
    errors: list[StoreUnavailableError] = []
    stop = asyncio.Event()

    async def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                await store.commit(
                    [AppendOp(sid, [{"type": "m", "data": {"i": i}}]) for sid in ids]
                )
            except OutcomeUnknownError as exc:
                unknown.append(i)
                errors.append(exc)
            except StoreUnavailableError as exc:
                failed.append(i)
                errors.append(exc)
            else:
                acked.append(i)
            cur = await _read_retrying(store, "u")
            try:
                done = await store.update_session(
                    "u", merge_data={"n": cur.version}, expected_version=cur.version
                )
            except StoreUnavailableError as exc:
                counter["maybe"] += isinstance(exc, OutcomeUnknownError)
                errors.append(exc)
            else:
                assert done.version == cur.version + 1
                counter["acked"] = done.version

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.2)
    ended = await _terminate(postgres_url, app, 40, seed=len(namespace))
    stop.set()
    await writer
    assert ended > 0
    if retry_deadline < 1:
        assert errors, "no call saw a terminated connection"
    # after the outage, the same store object: a write and a read
    after = await store.append_events(ids[1], [{"type": "after"}])
    logs = [[e.data.get("i") for e in await store.get_events(sid)] for sid in ids]
    assert logs[1][-1] is None  # the "after" event, then drop it for the comparison
    logs[1] = logs[1][:-1]
    assert after.event_count == len(logs[1]) + 1
    assert logs[0] == logs[1] == logs[2], "a commit was applied to some sessions only"
    seen = logs[0]
    assert len(seen) == len(set(seen)), "a commit was applied twice"
    assert set(acked) <= set(seen), "an acknowledged commit is missing"
    assert set(seen) <= set(acked) | set(unknown), "a commit reported failed was applied"
    u = await store.get_session("u")
    assert u is not None
    assert u.data["n"] == u.version - 1  # whole updates only, none applied twice
    assert counter["acked"] <= u.version <= counter["acked"] + counter["maybe"]


async def _read_retrying(store: PostgresStore, sid: str) -> Session:
    """The session, read again while the store is unavailable (a read is always safe)."""
    while True:
        try:
            got = await store.get_session(sid)
        except StoreUnavailableError:
            await asyncio.sleep(0.01)
            continue
        assert got is not None
        return got
