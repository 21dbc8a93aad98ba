"""One PostgreSQL store from several event loops: ``asyncio.run`` more than once, threads
running loops of their own, a shutdown from another loop than the one holding connections.

Connections are counted on the server (``pg_stat_activity`` by a unique
``application_name``), so a connection that leaks is seen even if the driver forgot it.
Every test fails on a ``ResourceWarning`` (an unclosed socket or transport) and on an
error logged by asyncio (such as "Task was destroyed but it is pending").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
from sessionstore_postgres import PostgresStore

from sessionstore import SessionConflictError, StoreUnavailableError, open_store

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on what asyncio logs about destroyed tasks or failed callbacks, and on
    unclosed resources found by a collection at the end."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    gc.collect()
    errors = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert errors == []


@pytest.fixture
def app_name() -> str:
    return f"ss-loops-{uuid.uuid4().hex[:10]}"


def make_store(url: str, app_name: str, **options: Any) -> PostgresStore:
    store = open_store(
        url, namespace=f"t-{uuid.uuid4().hex[:10]}", application_name=app_name, **options
    )
    assert isinstance(store, PostgresStore)
    return store


def server_connections(url: str, app_name: str) -> int:
    """Connections the server has open for ``app_name`` (counted from a fresh loop)."""

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app_name
            )
            return int(n)
        finally:
            await conn.close()

    return asyncio.run(count())


def wait_connections(url: str, app_name: str, expected: int) -> int:
    """The count once it is ``expected`` (the server sees a dropped socket a moment later),
    or the last count after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        n = server_connections(url, app_name)
        if n == expected or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def test_asyncio_run_twice_drops_the_first_loops_connections(
    postgres_url: str, app_name: str
) -> None:
    store = make_store(postgres_url, app_name, min_size=2, max_size=4)

    async def first() -> str:
        await store.initialize()
        s = await store.create_session(data={"n": 1})
        return s.id

    sid = run(first)
    assert server_connections(postgres_url, app_name) == 2  # the closed loop's, still open

    async def second() -> int:
        s = await store.get_session(sid)  # first use of this loop: the old one's are dropped
        assert s is not None
        done = await store.update_session(sid, merge_data={"n": 2}, expected_version=s.version)
        assert store._pools.loops() == 1
        return done.version

    assert run(second) == 2
    # the second loop's min_size connections stay; the first loop's are gone
    assert wait_connections(postgres_url, app_name, 2) == 2

    async def third() -> None:
        s = await store.get_session(sid)
        assert s is not None and s.data == {"n": 2}
        await store.shutdown()
        with pytest.raises(StoreUnavailableError):
            await store.get_session(sid)

    run(third)
    assert wait_connections(postgres_url, app_name, 0) == 0


def test_shutdown_from_a_new_loop_after_the_opening_loop_closed(
    postgres_url: str, app_name: str
) -> None:
    store = make_store(postgres_url, app_name, min_size=3, max_size=3)
    run(store.initialize)
    assert server_connections(postgres_url, app_name) == 3
    run(store.shutdown)  # no operation in between: the closed loop's pool is dropped
    assert wait_connections(postgres_url, app_name, 0) == 0
    with pytest.raises(StoreUnavailableError):
        run(lambda: store.get_session("s1"))


def test_two_threads_with_their_own_loops_lose_no_update(postgres_url: str, app_name: str) -> None:
    store = make_store(postgres_url, app_name, min_size=1, max_size=2)
    run(store.initialize)
    sid = run(lambda: store.create_session(data={"n": 0})).id
    per_task, tasks_per_loop = 15, 4
    errors: list[BaseException] = []
    seen_sizes: list[int] = []

    async def increment(tag: str) -> None:
        for _ in range(per_task):
            while True:
                current = await store.get_session(sid)
                assert current is not None
                try:
                    await store.update_session(
                        sid,
                        merge_data={"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )
                    break
                except SessionConflictError:
                    continue
            await store.append_events(sid, [{"type": tag}])

    def worker(tag: str) -> None:
        async def main() -> None:
            await asyncio.gather(*(increment(tag) for _ in range(tasks_per_loop)))
            seen_sizes.append(store._pools.get()._size)

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert all(1 <= n <= 2 for n in seen_sizes) and len(seen_sizes) == 2  # max_size per loop

    async def check() -> None:
        final = await store.get_session(sid)
        assert final is not None
        assert final.data == {"n": 2 * tasks_per_loop * per_task}
        events = await store.get_events(sid)
        each = tasks_per_loop * per_task
        assert sorted(e.type for e in events) == ["a"] * each + ["b"] * each
        await store.shutdown()

    run(check)
    assert wait_connections(postgres_url, app_name, 0) == 0


@pytest.mark.asyncio
async def test_shutdown_from_another_loop_closes_a_live_loops_connections(
    postgres_url: str, app_name: str
) -> None:
    store = make_store(postgres_url, app_name, min_size=1, max_size=3)
    await store.initialize()
    sid = (await store.create_session(data={"k": 1})).id
    busy = threading.Event()
    outcome: dict[str, Any] = {}

    def other_loop() -> None:
        async def main() -> None:
            release = asyncio.Event()
            loop = asyncio.get_running_loop()
            outcome["release"] = lambda: loop.call_soon_threadsafe(release.set)
            # three connections on this loop: two idle, one held by a statement that runs
            # while the store is shut down from the test's loop
            await asyncio.gather(*(store.get_session(sid) for _ in range(3)))
            outcome["size"] = store._pools.get()._size
            slow = asyncio.ensure_future(
                store._pools.get().run(lambda c: c.fetchval("SELECT 7 FROM pg_sleep(0.5)"))
            )
            busy.set()
            outcome["slow"] = await slow  # finishes: its connection is dropped on release
            await release.wait()  # the loop stays alive (and running) meanwhile
            try:
                await store.get_session(sid)
            except StoreUnavailableError as exc:
                outcome["after"] = exc

        asyncio.run(main())

    thread = threading.Thread(target=other_loop)
    thread.start()
    try:
        assert await asyncio.to_thread(busy.wait, 10)
        assert outcome["size"] == 3
        assert await asyncio.to_thread(server_connections, postgres_url, app_name) == 4
        await store.shutdown()  # from this loop: its own pool, then the other loop's
        # the other loop dropped its idle ones at once, the busy one when released
        n = await asyncio.to_thread(wait_connections, postgres_url, app_name, 0)
        assert n == 0
    finally:
        if "release" in outcome:
            outcome["release"]()
        await asyncio.to_thread(thread.join, 30)
    assert outcome["slow"] == 7  # the statement in flight during the shutdown completed
    assert isinstance(outcome["after"], StoreUnavailableError)
    assert store._pools.loops() == 0


def test_a_loop_first_used_opens_min_size_connections(postgres_url: str, app_name: str) -> None:
    store = make_store(postgres_url, app_name, min_size=2, max_size=3)
    run(store.initialize)
    sizes: list[int] = []

    def worker() -> None:
        async def main() -> None:
            await store.count_sessions()
            sizes.append(store._pools.get()._size)
            await asyncio.gather(*(store.count_sessions() for _ in range(12)))
            sizes.append(store._pools.get()._size)

        asyncio.run(main())

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    assert sizes[0] == 2  # min_size, opened by the loop's first operation
    assert 2 <= sizes[1] <= 3  # never past max_size, however many callers
    # only the worker loop's: the opening loop (closed) was swept at the worker's first call
    assert wait_connections(postgres_url, app_name, sizes[1]) == sizes[1]
    run(store.shutdown)
    assert wait_connections(postgres_url, app_name, 0) == 0


def test_the_schema_is_migrated_once_per_store(
    postgres_url: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = PostgresStore._migrate

    async def counting(self: PostgresStore, conn: asyncpg.Connection) -> None:
        calls.append(1)
        await real(self, conn)

    monkeypatch.setattr(PostgresStore, "_migrate", counting)
    store = make_store(postgres_url, app_name)
    run(store.initialize)
    for _ in range(3):
        run(store.count_sessions)
    run(store.shutdown)
    assert calls == [1]


@pytest.mark.asyncio
async def test_the_same_loop_takes_the_cached_pool(
    postgres_url: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(postgres_url, app_name)
    await store.initialize()
    try:
        misses: list[object] = []
        real_miss = store._pools._miss

        def counting(loop: asyncio.AbstractEventLoop) -> Any:
            misses.append(loop)
            return real_miss(loop)

        monkeypatch.setattr(store._pools, "_miss", counting)
        s = await store.create_session(data={"a": 1})
        for _ in range(5):
            await store.get_session(s.id)
        assert misses == []  # the loop that initialised the store is the cached one
        await asyncio.to_thread(run, lambda: store.get_session(s.id))  # another loop: a miss
        await store.get_session(s.id)  # back here: a miss again (the cache holds one pair)
        assert len(misses) == 2 and misses[1] is asyncio.get_running_loop()
    finally:
        await store.shutdown()


def test_the_internals_drop_relies_on_are_where_it_expects(postgres_url: str) -> None:
    """``_conn.drop`` closes a dead loop's socket through private names of asyncpg
    (``Connection._loop``, ``._transport``) and asyncio (the selector transport's
    ``_call_connection_lost`` and ``_sock``); it looks them up with ``getattr``, so a
    release that moves one would make it silently leak sockets. This fails loudly instead."""
    import asyncio.selector_events

    selector_transport: Any = asyncio.selector_events._SelectorTransport  # type: ignore[attr-defined]
    assert callable(selector_transport._call_connection_lost)

    async def check() -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            assert conn._loop is asyncio.get_running_loop()
            transport = conn._transport
            assert isinstance(transport, selector_transport)
            assert getattr(transport, "_sock", None) is not None
        finally:
            await conn.close()

    asyncio.run(check())
