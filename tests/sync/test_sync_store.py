"""The sync facade over a store: blocking twins, threads, errors, lifecycle, exit."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sessionstore import (
    Capabilities,
    InvalidSessionIdError,
    SessionConflictError,
    SessionFilter,
    SessionNotFoundError,
    SessionStore,
    StoreUnavailableError,
)
from sessionstore.sync import (
    BlockingCallError,
    LoopThread,
    SyncSessionStore,
    ThreadLoops,
    open_sync_store,
)
from tests.redis.servers import RedisCluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "file", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path}/store?durability=none"
    redis_url: str = request.getfixturevalue("redis_url")
    return redis_url


@pytest.fixture(params=["loop-thread", "per-thread-loops"])
def store(url: str, request: pytest.FixtureRequest) -> Iterator[SyncSessionStore]:
    per_thread_loops = request.param == "per-thread-loops"
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    with open_sync_store(url, namespace=namespace, per_thread_loops=per_thread_loops) as opened:
        assert opened.per_thread_loops is per_thread_loops
        yield opened


def _protocol_methods() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(SessionStore)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    )


def test_every_protocol_member_has_a_blocking_twin() -> None:
    missing = [name for name in _protocol_methods() if not hasattr(SyncSessionStore, name)]
    assert not missing
    for name in _protocol_methods():
        if inspect.iscoroutinefunction(getattr(SessionStore, name)):
            twin = getattr(SyncSessionStore, name)
            assert not inspect.iscoroutinefunction(twin), name
            assert twin.__doc__, name


def test_a_round_of_every_kind_of_call(store: SyncSessionStore) -> None:
    s = store.create_session(processor_id="p", data={"n": 0}, tags={"t"})
    s = store.update_session(s.id, merge_data={"n": 1}, expected_version=s.version)
    s = store.append_events(s.id, [{"type": "a", "data": {"i": 1}}, {"type": "b"}])
    assert [e.type for e in store.get_events(s.id)] == ["a", "b"]
    assert store.get_events(s.id, last=1)[0].seq == 2
    cp = store.save_checkpoint(s.id, label="one")
    assert [c.id for c in store.list_checkpoints(s.id)] == [cp.id]
    store.update_session(s.id, merge_data={"n": 2})
    restored = store.restore_checkpoint(s.id, cp.id)
    assert restored.data == {"n": 1}
    assert store.count_sessions() == 1
    assert store.list_sessions().ids == [s.id]
    assert store.get_sessions([s.id, "missing"]).keys() == {s.id}
    assert store.delete_checkpoint(s.id, cp.id) is True
    assert [r.session.id for r in store.scan()] == [s.id]
    assert store.delete_session(s.id) is True
    assert store.get_session(s.id) is None


def test_typed_errors_surface_unchanged(store: SyncSessionStore) -> None:
    s = store.create_session()
    with pytest.raises(SessionConflictError):
        store.update_session(s.id, data={}, expected_version=s.version + 5)
    with pytest.raises(SessionNotFoundError):
        store.update_session("01ARZ3NDEKTSV4RRFFQ69G5FAV", data={})
    with pytest.raises(InvalidSessionIdError):
        store.get_session("../etc/passwd")


def test_many_threads_at_once_lose_no_update(store: SyncSessionStore) -> None:
    s = store.create_session(data={"n": 0})
    threads, per_thread = 8, 25

    def work() -> None:
        for _ in range(per_thread):
            while True:
                current = store.get_session(s.id)
                assert current is not None
                try:
                    store.update_session(
                        s.id,
                        merge_data={"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )
                    break
                except SessionConflictError:
                    continue

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    final = store.get_session(s.id)
    assert final is not None
    assert final.data["n"] == threads * per_thread


def test_transaction_commits_on_exit_and_discards_on_error(store: SyncSessionStore) -> None:
    with store.transaction() as tx:
        first = tx.create_session(processor_id="tx")
        tx.create_session(processor_id="tx")
        assert tx.staged == 2
    assert next(r.id for r in tx.results if not isinstance(r, bool)) == first
    assert store.count_sessions() == 2
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx2:
        tx2.create_session(processor_id="lost")
        raise RuntimeError("boom")
    assert store.count_sessions() == 2


def test_scan_is_a_plain_iterator_that_can_stop_early(store: SyncSessionStore) -> None:
    with store.transaction() as tx:
        for i in range(600):  # more than one chunk of the iterator
            tx.create_session(data={"i": i})
    ids = [record.session.id for record in store.scan()]
    assert len(ids) == len(set(ids)) == 600
    scan = store.scan()
    first = next(scan)
    scan.close()  # closes the async iterator on the loop thread
    assert first.session.id in ids
    assert store.count_sessions() == 600  # the store is still usable


@pytest.mark.parametrize("per_thread_loops", [False, True])
def test_a_call_from_a_running_event_loop_raises_instead_of_blocking(
    per_thread_loops: bool,
) -> None:
    with open_sync_store("memory://", per_thread_loops=per_thread_loops) as store:

        async def misuse() -> None:
            store.get_session("01ARZ3NDEKTSV4RRFFQ69G5FAV")

        with pytest.raises(BlockingCallError, match="event loop"):
            asyncio.run(misuse())

        async def from_its_own_loop() -> None:  # would deadlock: the loop waits on itself
            store.count_sessions()

        with pytest.raises(BlockingCallError):
            store.loop_thread.call(from_its_own_loop(), timeout=10)
        assert store.count_sessions() == 0


def test_the_loop_thread_starts_lazily_and_stops_with_the_facade() -> None:
    from sessionstore_memory import MemoryStore

    facade = SyncSessionStore(MemoryStore(), per_thread_loops=False)
    assert not facade.per_thread_loops
    assert not facade.loop_thread.started
    before = {t.name for t in threading.enumerate()}
    assert "sessionstore-sync" not in before
    facade.initialize()
    thread = next(t for t in threading.enumerate() if t.name == "sessionstore-sync")
    facade.create_session()
    facade.shutdown()
    thread.join(5)
    assert not thread.is_alive()
    facade.shutdown()  # idempotent
    with pytest.raises(StoreUnavailableError, match="closed"):
        facade.count_sessions()


def test_a_store_for_any_loop_runs_each_call_on_the_calling_thread() -> None:
    from sessionstore_memory import MemoryStore

    facade = SyncSessionStore(MemoryStore(), per_thread_loops=True)
    assert facade.per_thread_loops
    facade.initialize()
    s = facade.create_session()
    seen: list[int] = []

    def work() -> None:
        for _ in range(20):
            assert facade.get_session(s.id) is not None
        seen.append(threading.get_ident())

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(seen) == 4

    def loop_thread_started() -> bool:
        return facade.loop_thread.started

    # no hand-off: the loop thread never started, no thread of the facade's exists
    assert not loop_thread_started()
    assert "sessionstore-sync" not in {t.name for t in threading.enumerate()}
    with facade.transaction() as tx:  # transactions (and scan) run on the loop thread
        tx.update_session(s.id, data={"n": 1})
    assert loop_thread_started()
    facade.shutdown()
    assert not loop_thread_started()
    with pytest.raises(StoreUnavailableError, match="closed"):
        facade.count_sessions()


def test_per_thread_loops_need_a_store_for_any_loop() -> None:
    from sessionstore_memory import MemoryStore

    class LoopBound(MemoryStore):
        @property
        def capabilities(self) -> Capabilities:
            return replace(super().capabilities, any_event_loop=False)

    store = LoopBound()
    with pytest.raises(ValueError, match="any event loop"):
        SyncSessionStore(store, per_thread_loops=True)
    facade = SyncSessionStore(store)
    assert not facade.per_thread_loops
    facade.initialize()
    facade.create_session()
    assert facade.loop_thread.started
    facade.shutdown()


@pytest.mark.integration
def test_per_thread_loops_refuse_redis_cluster(redis_cluster: RedisCluster) -> None:
    """Cluster index updates wait 20 ms on the loop that queued them: a thread's loop,
    idle between its calls, would hold them, and other threads' queries miss the write."""
    with pytest.raises(ValueError, match="Redis Cluster"):
        open_sync_store(redis_cluster.url, per_thread_loops=True)
    with open_sync_store(redis_cluster.url, namespace=f"sync-{uuid.uuid4().hex[:12]}") as store:
        assert not store.per_thread_loops  # the loop thread: its loop runs between calls
        s = store.create_session(metadata={"k": 1})
        found: list[list[str]] = []
        reader = threading.Thread(
            target=lambda: found.append(store.list_sessions(SessionFilter(metadata={"k": 1})).ids)
        )
        reader.start()
        reader.join(10)
        assert found == [[s.id]]


def _thread_loop_states(facade: SyncSessionStore) -> int:
    """How many event loops the Redis store behind ``facade`` holds connections for."""
    backend = facade.store._backend  # type: ignore[attr-defined]
    loops: int = backend.loops
    return loops


@pytest.mark.integration
def test_loops_of_threads_that_ended_are_closed_with_their_connections(redis_url: str) -> None:
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    # (blocking reads off: get_session would not use the threads' loops)
    facade = open_sync_store(
        redis_url, namespace=namespace, per_thread_loops=True, blocking_reads=False
    )
    s = facade.create_session()

    def work() -> None:
        for _ in range(5):
            assert facade.get_session(s.id) is not None

    for _ in range(3):  # three rounds of four short-lived threads
        workers = [threading.Thread(target=work) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    # the main thread's loop and the last round's four: the earlier rounds' loops were
    # closed (their connections with them) as the next round's threads made their first call
    assert _thread_loop_states(facade) <= 5
    assert facade._thread_loops is not None
    assert facade._thread_loops.open_loops <= 5
    facade.shutdown()
    assert _thread_loop_states(facade) == 0
    assert facade._thread_loops.open_loops == 0


@pytest.mark.parametrize("url", ["memory", "redis"], indirect=True)
def test_shutdown_from_another_thread_closes_idle_and_busy_threads_loops(url: str) -> None:
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    facade = open_sync_store(url, namespace=namespace, per_thread_loops=True, blocking_reads=False)
    runner = facade._thread_loops
    assert runner is not None
    s = facade.create_session()
    idle_ready, busy_started, release, done = (threading.Event() for _ in range(4))
    errors: list[BaseException] = []

    def idle() -> None:  # made a call, now waits with its loop idle
        facade.get_session(s.id)
        idle_ready.set()
        release.wait(10)
        try:
            facade.get_session(s.id)
        except BaseException as exc:
            errors.append(exc)

    async def slow() -> str:
        busy_started.set()
        await asyncio.sleep(0.5)
        return "finished"

    results: list[str] = []

    def busy() -> None:  # a call is running on its loop while the facade shuts down
        facade.get_session(s.id)
        results.append(runner.call(slow()))
        done.set()

    threads = [threading.Thread(target=idle), threading.Thread(target=busy)]
    for thread in threads:
        thread.start()
    assert idle_ready.wait(10) and busy_started.wait(10)
    facade.shutdown()  # from the main thread
    release.set()
    for thread in threads:
        thread.join(10)
    assert done.is_set() and results == ["finished"]  # the running call ended normally
    assert len(errors) == 1 and isinstance(errors[0], StoreUnavailableError)
    assert runner.open_loops == 0  # every loop closed, the busy one by its own thread


def test_a_facade_collected_inside_an_event_loop_closes_without_blocking_it() -> None:
    import gc

    from sessionstore_memory import MemoryStore

    facade = SyncSessionStore(MemoryStore(), per_thread_loops=True)
    facade.initialize()
    facade.create_session()
    runner = facade._thread_loops
    store = facade.store
    assert runner is not None

    async def drop() -> None:
        nonlocal facade
        del facade
        gc.collect()  # the finalizer runs here, inside this running loop

    asyncio.run(drop())
    closer = next((t for t in threading.enumerate() if t.name == "sessionstore-sync-close"), None)
    if closer is not None:  # closing on a thread of its own, never on the running loop
        closer.join(10)
    assert runner.closed and runner.open_loops == 0
    with pytest.raises(StoreUnavailableError):  # the store itself was shut down
        asyncio.run(store.count_sessions())


def test_a_thread_loop_call_is_cancelled_on_timeout() -> None:
    runner = ThreadLoops()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        runner.call(slow(), timeout=0.2)
    assert cancelled.is_set()

    async def quick() -> int:
        return 7

    assert runner.call(quick()) == 7  # the loop is still usable
    runner.close()
    with pytest.raises(StoreUnavailableError):
        runner.call(quick())


def test_loop_thread_cancels_the_call_when_the_waiter_gives_up() -> None:
    loop_thread = LoopThread()
    started = threading.Event()
    cancelled = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop_thread.call(slow(), timeout=0.2)
    assert started.is_set()
    assert cancelled.wait(5)
    loop_thread.close(timeout=5)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["store", "manager"])
def test_a_facade_left_open_is_shut_down_at_exit_without_hanging(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        from sessionstore import ManagerConfig
        from sessionstore.sync import SyncSessionPersistenceManager, open_sync_store
        url = "file://{root}"
        if {kind!r} == "store":
            store = open_sync_store(url)
            store.create_session(id="left-open", data={{"v": 1}})
        else:
            config = ManagerConfig(persist_interval=None, persist_on_interaction=False)
            manager = SyncSessionPersistenceManager(url, config=config)
            manager.initialize()
            ms = manager.create_managed_session(id="left-open", data={{"v": 1}})
            ms.update(v=2)  # staged only: written by the shutdown at exit
        print("exiting")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout
    with open_sync_store(f"file://{root}") as store:
        session = store.get_session("left-open")
        assert session is not None
        assert session.data == {"v": 1 if kind == "store" else 2}


#: per mode: the facade's options, and how many per-thread things it holds at exit
_EXIT_MODES = {
    "thread-loops": ("per_thread_loops=True, blocking_reads=False", "_thread_loops.open_loops"),
    # the Redis store's blocking reads: one connection per calling thread
    "blocking-reads": ("blocking_reads=True", "_direct.connections.__len__()"),
}


@pytest.mark.integration
@pytest.mark.parametrize("mode", sorted(_EXIT_MODES))
def test_threads_loops_are_closed_at_exit_without_hanging(redis_url: str, mode: str) -> None:
    """At interpreter exit a facade left open closes the loops (or the blocking read
    connections) of threads that ended and of a daemon thread still alive (idle), and
    the store, cleanly and without hanging."""
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    options, held = _EXIT_MODES[mode]
    script = textwrap.dedent(
        f"""
        import threading
        from sessionstore.sync import open_sync_store
        store = open_sync_store({redis_url!r}, namespace={namespace!r}, {options})
        store.create_session(id="left-open", data={{"v": 1}})

        def work():
            for _ in range(5):
                store.get_session("left-open")

        ended = threading.Thread(target=work)
        ended.start()
        ended.join()
        ready, never = threading.Event(), threading.Event()

        def idle():
            work()
            ready.set()
            never.wait()

        threading.Thread(target=idle, daemon=True).start()
        ready.wait()
        print("exiting", store.{held})
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # the main thread's loop and the idle thread's (the ended thread's loop was closed
    # when the idle thread made its first call); the exit hook closes both. Blocking
    # reads: the ended thread's connection and the idle one's (closed at the limit only)
    assert "exiting 2" in done.stdout
    assert "Traceback" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr
    with open_sync_store(redis_url, namespace=namespace) as store:
        session = store.get_session("left-open")
        assert session is not None and session.data == {"v": 1}


def test_the_exit_hook_list_the_facade_relies_on_exists() -> None:
    """``run_before_threads_stop`` uses CPython's private ``threading._register_atexit``;
    this fails loudly if a Python release moves it (the facade would fall back to
    ``atexit``, too late for the file driver's worker threads)."""
    assert callable(getattr(threading, "_register_atexit", None))


def test_memory_writes_from_many_threads_at_once_lose_nothing() -> None:
    """Per-thread loops run calls on several threads at once: the memory store's
    check-then-write must hold between threads too (a lost merge was seen once in a
    loaded run of the facade's conformance suite). Thread switches are forced often so
    that a switch between a check and its write is likely, not lucky."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with open_sync_store("memory://", per_thread_loops=True) as store:
            sid = store.create_session().id

            def writer(t: int) -> None:
                for i in range(250):
                    store.update_session(sid, merge_data={f"t{t}-{i}": i})
                    store.list_sessions()  # a read that walks the indexes meanwhile

            threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            final = store.get_session(sid)
            assert final is not None
            assert len(final.data) == 8 * 250
            assert final.version == 1 + 8 * 250
    finally:
        sys.setswitchinterval(before)
