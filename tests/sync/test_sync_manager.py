"""The sync facade over the manager and its managed sessions."""

from __future__ import annotations

import inspect
import threading

import pytest

from sessionstore import ManagerConfig, SessionConflictError
from sessionstore.manager import ManagedSession, ManagerTransaction, SessionPersistenceManager
from sessionstore.sync import (
    SyncManagedSession,
    SyncManagerTransaction,
    SyncSessionPersistenceManager,
    open_sync_store,
)


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [
        (SessionPersistenceManager, SyncSessionPersistenceManager),
        (ManagedSession, SyncManagedSession),
        (ManagerTransaction, SyncManagerTransaction),
    ],
)
def test_every_public_member_has_a_sync_twin(async_cls: type, sync_cls: type) -> None:
    public = {name for name in dir(async_cls) if not name.startswith("_")}
    missing = sorted(name for name in public if not hasattr(sync_cls, name))
    assert not missing
    for name in public:
        if inspect.iscoroutinefunction(getattr(async_cls, name)) or inspect.isasyncgenfunction(
            getattr(async_cls, name)
        ):
            twin = getattr(sync_cls, name)
            assert not inspect.iscoroutinefunction(twin), name
            assert not inspect.isasyncgenfunction(twin), name


def test_a_managed_session_lifecycle_in_sync_code() -> None:
    config = ManagerConfig(persist_interval=None, max_iterations=3)
    with SyncSessionPersistenceManager("memory://", config=config) as manager:
        ms = manager.create_managed_session(processor_id="agent", data={"goal": "x"})
        assert isinstance(ms, SyncManagedSession)
        while ms.next_iteration():
            ms.add_interaction({"role": "user", "text": f"step {ms.iterations}"})
            ms.update(step=ms.iterations)
        assert ms.status == "timeout"
        cp = ms.checkpoint("end")
        assert [c.id for c in ms.list_checkpoints()] == [cp.id]
        texts = [e.data["text"] for e in ms.get_events() if e.type == "interaction"]
        assert texts == ["step 1", "step 2", "step 3"]
        assert manager.load_managed_session(ms.id).managed is ms.managed
        assert [s.id for s in manager.iter_sessions()] == [ms.id]
        assert manager.count_sessions() == 1
        assert manager.get_stats().total == 1
        assert manager.health_check().healthy


def test_with_transaction_reruns_the_body_on_a_conflict() -> None:
    with SyncSessionPersistenceManager("memory://") as manager:
        created = manager.create_managed_session(data={"n": 0})
        runs: list[int] = []

        def body(tx: SyncManagerTransaction) -> int:
            current = manager.get_session(created.id)
            assert current is not None
            runs.append(current.version)
            if len(runs) == 1:  # another thread writes between this read and the commit
                other = threading.Thread(target=lambda: created.update(n=-1) or created.persist())
                other.start()
                other.join()
            tx.update_session(
                created.id,
                merge_data={"n": current.data["n"] + 1},
                expected_version=current.version,
            )
            return len(runs)

        assert manager.with_transaction(body, attempts=3) == 2
        assert runs[1] > runs[0]
        final = manager.get_session(created.id)
        assert final is not None
        assert final.data["n"] == 0  # -1 from the other writer, then +1
        with pytest.raises(SessionConflictError):
            manager.with_transaction(lambda tx: _always_stale(tx, created.id), attempts=2)


def _always_stale(tx: SyncManagerTransaction, session_id: str) -> None:
    tx.update_session(session_id, data={}, expected_version=1)


def test_a_manager_shares_the_loop_thread_of_a_sync_store() -> None:
    with open_sync_store("memory://") as store:
        manager = SyncSessionPersistenceManager(store)
        manager.initialize()
        ms = manager.create_managed_session(data={"a": 1})
        ms.persist()
        assert store.get_session(ms.id) is not None
        assert manager.manager.store is store.store
        manager.shutdown()
        assert store.count_sessions() == 1  # the manager never shuts down a given store


def test_manager_transaction_persists_a_sync_managed_session() -> None:
    config = ManagerConfig(persist_interval=None, persist_on_interaction=False)
    with SyncSessionPersistenceManager("memory://", config=config) as manager:
        ms = manager.create_managed_session(data={"a": 1})
        ms.update(a=2)
        with manager.transaction() as tx:
            tx.persist(ms)
            tx.create_session(data={"b": 1})
        assert len(tx.results) == 2
        stored = manager.get_session(ms.id)
        assert stored is not None
        assert stored.data == {"a": 2}
        assert not ms.dirty
