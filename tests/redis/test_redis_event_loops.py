"""One Redis store used from several event loops (``_loops.py``), on a single server,
Sentinel and Cluster, on the lean path and with ``lean=false``: ``asyncio.run`` twice,
threads with loops of their own at once (exact results), a loop that winds down or is
closed by hand while the store stays open, and a shutdown from another loop than the ones
holding connections, with every Cluster index update sent."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sessionstore_redis import RedisStore
from sessionstore_redis._indexer import IndexQueue

from sessionstore import (
    QueryOptions,
    SessionConflictError,
    SessionFilter,
    StoreUnavailableError,
    open_store,
)

T = TypeVar("T")

TOPOLOGIES = ["single", "single-public", "sentinel", "cluster"]


@pytest.fixture(params=TOPOLOGIES)
def target(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(url, options) of each topology (``single-public``: ``lean=false``)."""
    kind = request.param
    if kind.startswith("single"):
        url = request.getfixturevalue("redis_url")
    elif kind == "sentinel":
        url = request.getfixturevalue("redis_sentinel").url
    else:
        url = request.getfixturevalue("redis_cluster").url
    return url, {"lean": kind != "single-public"}


@pytest.fixture
def clean_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[list[warnings.WarningMessage]]:
    """Every warning of the test (ResourceWarning included), and asyncio's complaints
    ("Task was destroyed but it is pending", an exception never retrieved): none allowed."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen
        gc.collect()
    problems = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert problems == []
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def _store(url: str, **options: Any) -> RedisStore:
    options.setdefault("namespace", f"loops-{uuid.uuid4().hex[:8]}")
    store = open_store(url, **options)
    assert isinstance(store, RedisStore)
    return store


def _run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def test_asyncio_run_twice(
    target: tuple[str, dict[str, Any]], clean_warnings: list[warnings.WarningMessage]
) -> None:
    """Opened in one ``asyncio.run``, used in a second and a third, shut down in a fourth
    (it failed with 'Event loop is closed'). Each finished loop's connections are closed
    as that loop winds down, none left behind."""
    url, options = target
    store = _store(url, **options)

    async def first() -> str:
        await store.initialize()
        s = await store.create_session(tags={"run"}, data={"n": 1})
        return s.id

    sid = _run(first)
    assert store._backend.loops == 0  # the first loop's connections went with it

    async def again() -> int:
        s = await store.get_session(sid)
        assert s is not None
        s = await store.append_events(sid, [{"type": "e"}], expected_version=s.version)
        found = await store.list_sessions(SessionFilter(tags_all={"run"}))
        assert [x.id for x in found.items] == [sid]
        return s.event_count

    assert _run(again) == 1
    assert _run(again) == 2
    assert store._backend.loops == 0
    _run(store.shutdown)
    with pytest.raises(StoreUnavailableError):
        _run(lambda: store.get_session(sid))


def test_two_threads_with_their_own_loops_at_once(target: tuple[str, dict[str, Any]]) -> None:
    """Two threads, each running its own loop, hammer one store at once: unversioned
    appends to one session, version-checked increments of another, creates of their own;
    every result is exact, the index (on Cluster: each loop's queue) finds every create."""
    url, options = target
    store = _store(url, **options)
    rounds = 40

    async def setup() -> tuple[str, str]:
        await store.initialize()
        log = await store.create_session(data={})
        counter = await store.create_session(data={"n": 0})
        return log.id, counter.id

    log_id, counter_id = _run(setup)
    errors: list[BaseException] = []

    async def hammer(name: str) -> None:
        for i in range(rounds):
            await store.append_events(log_id, [{"type": name, "data": {"i": i}}])
            while True:
                c = await store.get_session(counter_id)
                assert c is not None
                try:
                    await store.update_session(
                        counter_id, merge_data={"n": c.data["n"] + 1}, expected_version=c.version
                    )
                    break
                except SessionConflictError:
                    continue
            await store.create_session(id=f"{name}-{i}", tags={name})

    def thread(name: str) -> None:
        try:
            _run(lambda: hammer(name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    async def check() -> None:
        log = await store.get_session(log_id)
        counter = await store.get_session(counter_id)
        assert log is not None and counter is not None
        assert log.event_count == 2 * rounds
        events = await store.get_events(log_id)
        for name in ("a", "b"):  # each thread's appends, in its order
            assert [e.data["i"] for e in events if e.type == name] == list(range(rounds))
            assert await store.count_sessions(SessionFilter(tags_all={name})) == rounds
        assert counter.data["n"] == 2 * rounds
        await store.shutdown()

    _run(check)


class _LoopThread:
    """An event loop running on a thread of its own until stopped."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def call(self, body: Callable[[], Awaitable[T]]) -> T:
        async def main() -> T:
            return await body()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(main(), self.loop))

    def stop(self) -> None:
        """Stop the loop (not closed: it could run again)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def close(self) -> None:
        """Let its tasks finish, finalise its async generators, stop and close it."""
        if not self.loop.is_running():  # stopped: run it once more, on a thread
            self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self._thread.start()

        async def wind_down() -> None:  # what is scheduled finishes, as it would run on
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=5)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(wind_down(), self.loop).result(10)
        self.stop()
        self.loop.close()


@pytest.fixture
def slow_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cluster index updates stay queued until flushed (as if the timer had not fired)."""
    monkeypatch.setattr(IndexQueue, "DELAY", 60.0)


async def _tagged(url: str, namespace: str, tag: str) -> set[str]:
    """The ids another store (another client) finds by ``tag`` through the index."""
    async with _store(url, namespace=namespace) as other:
        page = await other.list_sessions(SessionFilter(tags_all={tag}), QueryOptions(limit=1000))
        return {s.id for s in page.items}


@pytest.mark.asyncio
@pytest.mark.usefixtures("slow_index")
async def test_shutdown_from_another_loop_closes_a_live_loops_connections(
    target: tuple[str, dict[str, Any]], clean_warnings: list[warnings.WarningMessage]
) -> None:
    """Connections open (and Cluster index updates queued) on a live loop on another
    thread: ``shutdown()`` from this loop has that loop close them and send its updates;
    every later call, from either loop, raises StoreUnavailableError. No ResourceWarning,
    no pending task destroyed, no index update lost."""
    url, options = target
    store = _store(url, **options)
    await store.initialize()
    mine = await store.create_session(tags={"t"})
    other = _LoopThread()
    try:
        made = await other.call(
            lambda: asyncio.gather(*(store.create_session(tags={"t"}) for _ in range(20)))
        )
        theirs = [s.id for s in made]
        state = next(s for s in store._backend._loops._states.values() if s.loop is other.loop)
        await store.shutdown()
        assert state.closed
        assert store._backend.loops == 0
        with pytest.raises(StoreUnavailableError):
            await other.call(lambda: store.get_session(mine.id))
        with pytest.raises(StoreUnavailableError):
            await store.get_session(mine.id)
    finally:
        other.close()
    assert await _tagged(url, store.namespace, "t") == {mine.id, *theirs}


@pytest.mark.asyncio
@pytest.mark.usefixtures("slow_index")
async def test_shutdown_hands_over_a_stopped_loops_index_updates(
    target: tuple[str, dict[str, Any]],
) -> None:
    """A loop that is stopped (not running, not closed) cannot close its connections:
    shutdown shuts their sockets down directly and sends its queued index updates from
    this loop."""
    url, options = target
    store = _store(url, **options)
    await store.initialize()
    other = _LoopThread()
    made = await other.call(
        lambda: asyncio.gather(*(store.create_session(tags={"s"}) for _ in range(10)))
    )
    other.stop()
    await store.shutdown()
    assert store._backend.loops == 0
    other.close()
    assert await _tagged(url, store.namespace, "s") == {s.id for s in made}


@pytest.mark.asyncio
async def test_a_stopped_loop_closed_without_running_again(redis_url: str) -> None:
    """The close that shutdown scheduled on a stopped loop is made only if that loop runs
    again: closed without running, it leaves no coroutine "never awaited" behind."""
    store = _store(redis_url)
    await store.initialize()
    other = _LoopThread()
    await other.call(lambda: store.create_session())
    other.stop()
    await store.shutdown()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        other.loop.close()  # by hand: asyncio may warn about its transports (documented)
        del other
        gc.collect()
    assert [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)] == []


def test_a_loop_closed_by_hand_is_dropped_when_noticed(
    target: tuple[str, dict[str, Any]],
) -> None:
    """A loop closed without winding down (``loop.close()``, no ``shutdown_asyncgens``):
    the next loop to use the store drops its state, shuts its sockets down and sends its
    queued index updates."""
    url, options = target
    name = f"dead-{uuid.uuid4().hex[:8]}"
    store = _store(url, client_name=name, **options)
    dead = asyncio.new_event_loop()
    held: list[Any] = []  # the dead loop's state (its transports stay uncollected)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IndexQueue, "DELAY", 60.0)
            dead.run_until_complete(store.initialize())
            made = dead.run_until_complete(store.create_session(tags={"d"}))
            held.append(store._backend._loops._states[dead])
            assert any(c.is_connected for c in _connections(held[0]))
    finally:
        dead.close()

    async def later() -> set[str]:
        assert await store.get_session(made.id) == made
        assert store._backend.loops == 1
        assert held[0].closed
        if not store._cluster:  # the server sees only this loop's connection (still
            # holding the dead loop's transports: they were shut down, not collected)
            await asyncio.sleep(0.1)
            clients = await store.client.client_list()
            assert sum(c["name"] == name for c in clients) == 1
        await store.shutdown()
        return await _tagged(url, store.namespace, "d")

    with warnings.catch_warnings():
        # the dead loop's transports are collected with their sockets shut down
        warnings.simplefilter("ignore", ResourceWarning)
        assert _run(later) == {made.id}
        held.clear()
        gc.collect()


def _connections(state: Any) -> list[Any]:
    from sessionstore_redis import _redis_internals as internals

    return internals.connections_of(state.client)


@pytest.mark.asyncio
@pytest.mark.usefixtures("slow_index")
async def test_shutdown_does_not_wait_for_ever_on_a_loop_that_does_not_answer(
    target: tuple[str, dict[str, Any]], clean_warnings: list[warnings.WarningMessage]
) -> None:
    """Another loop is running but blocked (its thread stuck in a call): shutdown waits
    ``retry_deadline + socket_timeout`` for it, then shuts its sockets down and sends its
    queued index updates from here; the blocked loop closes its clients once it runs."""
    url, options = target
    # Timeouts short beside the 30 s block, long enough for a Cluster index update on a
    # loaded machine (0.3 s ran out once at load average 30).
    store = _store(url, retry_deadline=1.0, socket_timeout=2.0, **options)
    await store.initialize()
    other = _LoopThread()
    blocked = threading.Event()
    try:
        made = await other.call(
            lambda: asyncio.gather(*(store.create_session(tags={"b"}) for _ in range(10)))
        )
        other.loop.call_soon_threadsafe(blocked.wait, 30)  # the loop's thread is stuck
        started = asyncio.get_running_loop().time()
        await store.shutdown()
        assert asyncio.get_running_loop().time() - started < 20  # not the 30 s block
        assert store._backend.loops == 0
    finally:
        blocked.set()
        other.close()
    assert await _tagged(url, store.namespace, "b") == {s.id for s in made}
