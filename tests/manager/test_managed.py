"""Managed sessions: views, tracked changes, auto-persist modes and coalescing."""

from __future__ import annotations

import asyncio

import pytest
from sessionstore_memory import MemoryStore

from sessionstore import (
    InvalidArgumentError,
    ManagedSession,
    ManagerClosedError,
    ManagerConfig,
    QuotaExceededError,
    SerializationError,
    SessionNotFoundError,
    SessionPersistenceManager,
    SessionStore,
    Status,
)

from .conftest import QUIET, MakeManager, StoreFactory, advance

pytestmark = pytest.mark.asyncio

INTERVAL = ManagerConfig(persist_on_interaction=False, persist_interval=10, cleanup_enabled=False)


async def stored(store: SessionStore, sid: str) -> tuple[int, int, dict[str, object]]:
    s = await store.get_session(sid)
    assert s is not None
    return s.version, s.event_count, s.data


async def test_create_writes_now_with_bookkeeping(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(
        processor_id="agent-1", data={"goal": "x"}, metadata={"user": "u1"}, tags={"prod"}
    )
    assert isinstance(ms, ManagedSession)
    s = await store.get_session(ms.id)
    assert s is not None and s.version == 1 and s.data == {"goal": "x"}
    assert s.metadata["user"] == "u1"
    assert s.metadata["_manager"]["iterations"] == 0
    assert ms.metadata == {"user": "u1"}  # the bookkeeping is not part of the user view
    assert ms.tags == {"prod"} and ms.status is Status.ACTIVE and ms.processor_id == "agent-1"
    assert not ms.dirty


async def test_views_are_read_only_and_include_pending(manager: SessionPersistenceManager) -> None:
    ms = await manager.create_managed_session(data={"a": 1})
    await ms.update({"b": 2}, remove=["a"], metadata={"m": 1}, add_tags={"t"})
    assert dict(ms.data) == {"b": 2}
    assert dict(ms.metadata) == {"m": 1} and ms.tags == {"t"}
    assert ms.dirty and ms.pending_changes == 3
    with pytest.raises(TypeError):
        ms.data["c"] = 3  # type: ignore[index]
    assert ms.version == 1  # nothing persisted yet


async def test_interaction_persists_everything_pending_in_one_write(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"step": 0})
    await ms.update(step=1, plan=["a"])
    assert await stored(store, ms.id) == (1, 0, {"step": 0})
    await ms.add_interaction({"role": "user", "text": "hi"})
    # one commit: the update (v2) and the append (v3), atomically
    assert await stored(store, ms.id) == (3, 1, {"step": 1, "plan": ["a"]})
    events = await store.get_events(ms.id)
    assert [(e.type, e.data) for e in events] == [("interaction", {"role": "user", "text": "hi"})]
    await ms.add_interaction({"tool": "search"}, type="tool_call")
    assert await stored(store, ms.id) == (4, 2, {"step": 1, "plan": ["a"]})
    assert (await store.get_events(ms.id))[-1].type == "tool_call"
    assert not ms.dirty and ms.version == 4 and ms.writes == 2


async def test_bad_values_are_refused_when_staged(manager: SessionPersistenceManager) -> None:
    ms = await manager.create_managed_session()
    with pytest.raises(SerializationError):
        await ms.update(when=object())
    with pytest.raises(SerializationError):
        await ms.add_interaction({"x": {1, 2}})
    with pytest.raises(InvalidArgumentError):
        await ms.update(metadata={"_manager": {}})
    with pytest.raises(InvalidArgumentError):
        await ms.update(remove_metadata=["_manager"])
    with pytest.raises(InvalidArgumentError):
        await ms.add_interaction({}, type="")
    assert not ms.dirty  # nothing was staged, so nothing can poison a later write
    await ms.add_interaction({"ok": True})
    assert ms.event_count == 1


async def test_interval_mode_coalesces_a_burst_into_one_write(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    manager = await make_manager(INTERVAL)
    ms = await manager.create_managed_session(data={"n": 0})
    for n in range(1, 51):
        await ms.add_interaction({"n": n})
        await ms.update(n=n)
    assert await stored(store, ms.id) == (1, 0, {"n": 0})  # nothing written yet
    assert ms.event_count == 50 and ms.data["n"] == 50
    await advance(store_factory.clock, 10)
    await _eventually_clean(ms)
    # 50 interactions + 50 updates -> one commit (update + append: two versions)
    assert await stored(store, ms.id) == (3, 50, {"n": 50})
    await ms.add_interaction({"n": 51})
    await advance(store_factory.clock, 10)
    await _eventually_clean(ms)
    assert await stored(store, ms.id) == (4, 51, {"n": 50})


async def _eventually_clean(ms: ManagedSession) -> None:
    from .conftest import eventually

    await eventually(lambda: not ms.dirty)


async def test_both_modes_interval_flushes_updates_between_interactions(
    make_manager: MakeManager, store: SessionStore, store_factory: StoreFactory
) -> None:
    config = ManagerConfig(persist_interval=10, cleanup_enabled=False)
    manager = await make_manager(config)
    ms = await manager.create_managed_session()
    await ms.update(step=1)  # not an interaction: waits for the interval
    assert (await stored(store, ms.id))[0] == 1
    await advance(store_factory.clock, 10)
    await _eventually_clean(ms)
    assert await stored(store, ms.id) == (2, 0, {"step": 1})


async def test_auto_persist_off_writes_only_on_persist_and_shutdown(
    make_manager: MakeManager, store: SessionStore
) -> None:
    config = ManagerConfig(auto_persist=False, cleanup_enabled=False)
    manager = await make_manager(config)
    ms = await manager.create_managed_session()
    await ms.add_interaction({"a": 1})
    assert (await stored(store, ms.id))[1] == 0
    session = await ms.persist()
    assert session.event_count == 1 and session.version == 2
    await ms.add_interaction({"a": 2})
    report = await manager.shutdown()
    assert report.ok and report.written == 1
    assert (await stored(store, ms.id))[1] == 2
    assert ms.closed
    with pytest.raises(ManagerClosedError):
        await ms.add_interaction({"a": 3})


async def test_per_call_persist_override(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    await ms.add_interaction({"a": 1}, persist=False)
    assert (await stored(store, ms.id))[1] == 0
    await ms.update(x=1, persist=True)
    assert await stored(store, ms.id) == (3, 1, {"x": 1})


async def test_concurrent_interactions_coalesce(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    await asyncio.gather(*(ms.add_interaction({"i": i}) for i in range(20)))
    version, count, _ = await stored(store, ms.id)
    assert count == 20
    assert version < 21  # fewer writes than interactions: bursts coalesced
    assert sorted(e.data["i"] for e in await store.get_events(ms.id)) == list(range(20))


async def test_persist_with_nothing_pending_writes_nothing(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session()
    assert (await ms.persist()).version == 1
    assert (await stored(store, ms.id))[0] == 1


async def test_load_returns_the_same_object_and_sees_stored_state(
    make_manager: MakeManager, store_factory: StoreFactory
) -> None:
    manager = await make_manager()
    ms = await manager.create_managed_session(data={"k": "v"})
    assert await manager.load_managed_session(ms.id) is ms
    other = await make_manager(QUIET, await store_factory.open())
    loaded = await other.load_managed_session(ms.id)
    assert loaded is not ms and dict(loaded.data) == {"k": "v"}
    with pytest.raises(SessionNotFoundError):
        await manager.load_managed_session("no-such-session")


async def test_load_adopts_an_unmanaged_session(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    plain = await store.create_session(data={"x": 1})
    ms = await manager.load_managed_session(plain.id)
    summary = await manager.get_session_summary(plain.id)
    assert not summary.managed
    await ms.add_interaction({"first": True})
    assert (await manager.get_session_summary(plain.id)).managed


async def test_reload_drops_or_keeps_pending(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    ms = await manager.create_managed_session(data={"a": 1})
    await ms.update(a=2)
    await ms.reload()
    assert dict(ms.data) == {"a": 1} and not ms.dirty
    await ms.update(b=3)
    await store.update_session(ms.id, merge_data={"c": 4})
    await ms.reload(keep_pending=True)
    assert dict(ms.data) == {"a": 1, "b": 3, "c": 4}
    await ms.persist()
    assert (await stored(store, ms.id))[2] == {"a": 1, "b": 3, "c": 4}


async def test_close_persists_and_detaches(
    manager: SessionPersistenceManager, store: SessionStore
) -> None:
    async with await manager.create_managed_session() as ms:
        await ms.update(done=True)
    assert ms.closed and ms not in manager.managed_sessions
    assert (await stored(store, ms.id))[2] == {"done": True}
    again = await manager.load_managed_session(ms.id)
    assert again is not ms and not again.closed


async def test_manager_from_url_owns_its_store() -> None:
    manager = SessionPersistenceManager("memory://", config=QUIET)
    with pytest.raises(ManagerClosedError):
        await manager.create_managed_session()
    async with manager:
        ms = await manager.create_managed_session()
        await ms.add_interaction()
    from sessionstore import StoreUnavailableError

    with pytest.raises(StoreUnavailableError):
        await manager.store.get_session(ms.id)  # the manager shut its own store down
    with pytest.raises(ManagerClosedError):
        await manager.initialize()


async def test_manager_with_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONSTORE_URL", raising=False)
    async with SessionPersistenceManager(config=QUIET) as manager:
        assert type(manager.store).__name__ == "MemoryStore"


async def test_a_borrowed_store_stays_open(make_manager: MakeManager, store: SessionStore) -> None:
    manager = await make_manager()
    ms = await manager.create_managed_session()
    await manager.shutdown()
    assert await store.get_session(ms.id) is not None


async def test_bad_constructor_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        SessionPersistenceManager(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        SessionPersistenceManager("memory://", config={"auto_persist": True})  # type: ignore[arg-type]


async def test_staged_payloads_name_the_option_that_raises_their_limit(
    make_manager: MakeManager,
) -> None:
    store = MemoryStore(max_session_bytes=1000, max_event_bytes=500)
    await store.initialize()
    try:
        manager = await make_manager(store_=store)
        ms = await manager.create_managed_session()
        with pytest.raises(QuotaExceededError) as info:
            await ms.update({"x": "x" * 2000})
        assert info.value.option == "max_session_bytes"
        assert "raise it with the store option 'max_session_bytes'" in str(info.value)
        with pytest.raises(QuotaExceededError) as info:
            await ms.add_interaction({"x": "y" * 800})
        assert info.value.option == "max_event_bytes"
        assert "raise it with the store option 'max_event_bytes'" in str(info.value)
    finally:
        await store.shutdown()
