"""Behaviour of the in-memory driver through the public API."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import (
    AppendOp,
    BaseSessionStore,
    CreateOp,
    DeleteOp,
    EventInput,
    IntegrityError,
    InvalidArgumentError,
    ManualClock,
    NewSession,
    PutResult,
    QueryOptions,
    SerializationError,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    SessionUpdate,
    Status,
    StoreUnavailableError,
    TransactionError,
    UpdateOp,
    open_store,
)
from tests.corrupt_checkpoints import check_corrupt_checkpoint_is_skipped_and_reported

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


async def _snapshot(store: MemoryStore) -> list[tuple[Session, list[Any], list[Any]]]:
    """Every stored session (expired included) with its events and checkpoints."""
    out = []
    async for rec in store.scan(include_expired=True):
        out.append((rec.session, list(rec.events), list(rec.checkpoints)))
    out.sort(key=lambda item: item[0].id)
    return out


# --------------------------------------------------------------------------- create


@pytest.mark.asyncio
async def test_create_defaults(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session()
    assert len(s.id) == 26
    assert set(s.id) <= CROCKFORD
    assert s.version == 1
    assert s.status is Status.ACTIVE
    assert s.processor_id is None
    assert s.data == {}
    assert s.metadata == {}
    assert s.tags == frozenset()
    assert s.created_at == s.updated_at == clock.now()
    assert s.expires_at is None
    assert s.event_count == 0
    assert s.last_seq == 0
    assert await store.get_session(s.id) == s


@pytest.mark.asyncio
async def test_create_with_everything(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(
        processor_id="agent-7",
        data={"goal": "triage", "n": [1, 2.0]},
        metadata={"user": "u1"},
        tags={"prod", "eu"},
        status="paused",
        ttl=3600,
        group="grp",
    )
    assert s.processor_id == "agent-7"
    assert s.data == {"goal": "triage", "n": [1, 2.0]}
    assert type(s.data["n"][1]) is float
    assert s.metadata == {"user": "u1"}
    assert s.tags == frozenset({"prod", "eu"})
    assert s.status is Status.PAUSED
    assert s.expires_at == clock.now() + timedelta(hours=1)
    assert s.group == "grp"
    assert await store.get_session(s.id) == s


@pytest.mark.asyncio
async def test_ulid_ids_are_unique_and_time_ordered(store: MemoryStore) -> None:
    ids = [(await store.create_session()).id for _ in range(50)]
    assert len(set(ids)) == 50
    assert ids == sorted(ids)


@pytest.mark.asyncio
async def test_create_with_absolute_expiry_is_normalised(store: MemoryStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    when = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=plus2)
    s = await store.create_session(expires_at=when)
    assert s.expires_at == datetime(2030, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert s.expires_at is not None
    assert s.expires_at.utcoffset() == timedelta(0)
    with pytest.raises(InvalidArgumentError):
        await store.create_session(expires_at=when, ttl=5)
    with pytest.raises(InvalidArgumentError):
        await store.create_session(expires_at=datetime(2030, 1, 1))


@pytest.mark.asyncio
async def test_create_with_caller_id(store: MemoryStore) -> None:
    s = await store.create_session(id="my-session_1.a", data={"x": 1})
    assert s.id == "my-session_1.a"
    assert (await store.get_session("my-session_1.a")) == s


@pytest.mark.asyncio
async def test_create_existing_id_raises_and_changes_nothing(store: MemoryStore) -> None:
    s = await store.create_session(id="taken", data={"keep": True})
    await store.append_events("taken", [{"type": "t"}])
    before = await _snapshot(store)
    with pytest.raises(SessionExistsError) as info:
        await store.create_session(id="taken", data={"other": 1})
    assert info.value.session_id == "taken"
    assert await _snapshot(store) == before
    current = await store.get_session(s.id)
    assert current is not None
    assert current.data == {"keep": True}


@pytest.mark.asyncio
async def test_create_over_expired_not_cleaned_id_replaces_it(
    store: MemoryStore, clock: ManualClock
) -> None:
    old = await store.create_session(id="reused", data={"old": 1}, tags={"old"}, ttl=1)
    await store.append_events("reused", [{"type": "a"}, {"type": "b"}])
    await store.save_checkpoint("reused")
    clock.advance(2)
    assert await store.get_session("reused") is None
    new = await store.create_session(id="reused", data={"new": 2}, processor_id="p")
    assert new.version == 1
    assert new.data == {"new": 2}
    assert new.tags == frozenset()
    assert new.event_count == 0
    assert new.last_seq == 0
    assert new.expires_at is None
    assert new.created_at == clock.now() != old.created_at
    assert await store.get_events("reused") == []
    assert await store.list_checkpoints("reused") == []
    assert await store.get_session("reused") == new
    # the indexes forgot the old incarnation
    assert await store.count_sessions(SessionFilter(tags_any=["old"], include_expired=True)) == 0
    assert await store.count_sessions(SessionFilter(processor_id="p")) == 1
    appended = await store.append_events("reused", [{"type": "c"}])
    assert [e.seq for e in await store.get_events("reused")] == [1]
    assert appended.last_seq == 1


# --------------------------------------------------------------------------- get


@pytest.mark.asyncio
async def test_expired_sessions_are_invisible_unless_included(
    store: MemoryStore, clock: ManualClock
) -> None:
    a = await store.create_session(ttl=10)
    b = await store.create_session()
    assert await store.get_session(a.id) == a
    clock.advance(9.999)
    assert await store.get_session(a.id) == a
    clock.advance(0.001)  # expires_at == now: expired
    assert await store.get_session(a.id) is None
    assert await store.get_session(a.id, include_expired=True) == a
    assert await store.get_sessions([a.id, b.id]) == {b.id: b}
    assert await store.get_sessions([a.id, b.id], include_expired=True) == {a.id: a, b.id: b}
    assert await store.count_sessions() == 1
    assert await store.count_sessions(SessionFilter(include_expired=True)) == 2
    with pytest.raises(SessionNotFoundError):
        await store.update_session(a.id, data={})
    with pytest.raises(SessionNotFoundError):
        await store.get_events(a.id)


@pytest.mark.asyncio
async def test_get_missing(store: MemoryStore) -> None:
    assert await store.get_session("nope") is None
    assert await store.get_sessions([]) == {}
    assert await store.get_sessions(["nope", "nada"]) == {}


@pytest.mark.asyncio
async def test_get_sessions_keeps_request_order_and_dedups(store: MemoryStore) -> None:
    a = await store.create_session(id="a")
    b = await store.create_session(id="b")
    got = await store.get_sessions(["b", "x", "a", "b"])
    assert list(got) == ["b", "a"]
    assert got == {"a": a, "b": b}
    with pytest.raises(InvalidArgumentError):
        await store.get_sessions("ab")


# --------------------------------------------------------------------------- update


@pytest.mark.asyncio
async def test_update_replace_and_merge(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(data={"a": 1, "b": {"x": 1}}, metadata={"m": 1, "n": 2})
    clock.advance(1)
    s2 = await store.update_session(s.id, merge_data={"b": {"y": 2}, "c": None})
    assert s2.data == {"a": 1, "b": {"y": 2}, "c": None}  # shallow merge, None stored
    assert s2.version == 2
    assert s2.updated_at == clock.now()
    assert s2.created_at == s.created_at
    assert s2.metadata == {"m": 1, "n": 2}
    s3 = await store.update_session(s.id, data={"only": True})
    assert s3.data == {"only": True}
    s4 = await store.update_session(s.id, merge_metadata={"n": 3, "o": [1]})
    assert s4.metadata == {"m": 1, "n": 3, "o": [1]}
    s5 = await store.update_session(s.id, metadata={"z": 0})
    assert s5.metadata == {"z": 0}
    s6 = await store.update_session(
        s.id, merge_data={"k": 1}, remove_data_keys=["only", "absent"], remove_metadata_keys=["z"]
    )
    assert s6.data == {"k": 1}
    assert s6.metadata == {}
    assert s6.version == 6
    assert await store.get_session(s.id) == s6
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, data={}, merge_data={})
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, metadata={}, merge_metadata={})
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, remove_data_keys="only")


@pytest.mark.asyncio
async def test_update_status_tags_processor(store: MemoryStore) -> None:
    s = await store.create_session(processor_id="p1", tags={"a", "b"})
    s = await store.update_session(s.id, status="completed")
    assert s.status is Status.COMPLETED
    s = await store.update_session(s.id, status=Status.FAILED)
    assert s.status is Status.FAILED
    s = await store.update_session(s.id, add_tags={"c"}, remove_tags={"a", "zz"})
    assert s.tags == frozenset({"b", "c"})
    s = await store.update_session(s.id, tags={"x"})
    assert s.tags == frozenset({"x"})
    s = await store.update_session(s.id, tags=[])
    assert s.tags == frozenset()
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, tags={"a"}, add_tags={"b"})
    s = await store.update_session(s.id, data={"untouched": "processor"})
    assert s.processor_id == "p1"
    s = await store.update_session(s.id, processor_id="p2")
    assert s.processor_id == "p2"
    s = await store.update_session(s.id, processor_id=None)
    assert s.processor_id is None
    assert s.version == 9
    assert await store.count_sessions(SessionFilter(processor_id=["p1", "p2"])) == 0
    assert await store.count_sessions(SessionFilter(tags_any=["a", "b", "c", "x"])) == 0
    assert await store.count_sessions(SessionFilter(status="failed")) == 1
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, status="bogus")


@pytest.mark.asyncio
async def test_update_expiry(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(ttl=100)
    expires = s.expires_at
    clock.advance(50)
    # an ordinary update never changes expires_at
    s = await store.update_session(s.id, merge_data={"a": 1}, status="paused", add_tags={"t"})
    assert s.expires_at == expires
    s = await store.append_events(s.id, [{"type": "t"}])
    assert s.expires_at == expires
    s = await store.update_session(s.id, ttl=10)
    assert s.expires_at == clock.now() + timedelta(seconds=10)
    s = await store.update_session(s.id, expires_at=None)
    assert s.expires_at is None
    when = clock.now() + timedelta(days=1)
    s = await store.update_session(s.id, expires_at=when)
    assert s.expires_at == when
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, expires_at=when, ttl=1)
    assert (await store.get_session(s.id)) == s


@pytest.mark.asyncio
async def test_update_missing_session(store: MemoryStore) -> None:
    with pytest.raises(SessionNotFoundError) as info:
        await store.update_session("ghost", data={})
    assert info.value.session_id == "ghost"
    assert isinstance(info.value, KeyError)
    assert await store.count_sessions(SessionFilter(include_expired=True)) == 0


@pytest.mark.asyncio
async def test_every_write_bumps_version_by_one(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(ttl=100)
    assert s.version == 1
    steps: list[Callable[[], Awaitable[Session]]] = [
        lambda: store.update_session(s.id, merge_data={"a": 1}),
        lambda: store.update_session(s.id, status="paused"),
        lambda: store.update_session(s.id, add_tags={"t"}),
        lambda: store.update_session(s.id, merge_metadata={"m": 1}),
        lambda: store.update_session(s.id, ttl=200),
        lambda: store.update_session(s.id),  # even an empty update is a write
        lambda: store.append_events(s.id, [{"type": "a"}, {"type": "b"}, {"type": "c"}]),
        lambda: store.touch(s.id),
        lambda: store.touch(s.id, ttl=300),
        lambda: store.trim_events(s.id, keep_last=1),
    ]
    version = 1
    for step in steps:
        clock.advance(0.001)
        result = await step()
        version += 1
        assert result.version == version
        stored = await store.get_session(s.id)
        assert stored == result
    cp = await store.save_checkpoint(s.id)
    assert cp.version == version
    after_cp = await store.get_session(s.id)
    assert after_cp is not None
    assert after_cp.version == version  # saving a checkpoint is not a write to the session
    restored = await store.restore_checkpoint(s.id, cp.id)
    assert restored.version == version + 1


@pytest.mark.asyncio
async def test_expected_version_mismatch_writes_nothing(store: MemoryStore) -> None:
    s = await store.create_session(data={"a": 1}, tags={"t"})
    s = await store.update_session(s.id, merge_data={"b": 2}, expected_version=1)
    assert s.version == 2
    before = await _snapshot(store)
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.update_session(s.id, data={"x": 1}, expected_version=1),
        lambda: store.update_session(s.id, status="failed", expected_version=3),
        lambda: store.append_events(s.id, [{"type": "t"}], expected_version=1),
        lambda: store.touch(s.id, ttl=5, expected_version=1),
        lambda: store.trim_events(s.id, keep_last=0, expected_version=1),
        lambda: store.delete_session(s.id, expected_version=1),
    ]
    for attempt in attempts:
        with pytest.raises(SessionConflictError) as info:
            await attempt()
        assert info.value.session_id == s.id
        assert info.value.actual == 2
        assert info.value.expected in (1, 3)
        assert await _snapshot(store) == before
    cp = await store.save_checkpoint(s.id)
    before = await _snapshot(store)
    with pytest.raises(SessionConflictError) as info:
        await store.restore_checkpoint(s.id, cp.id, expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert await _snapshot(store) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1"])
async def test_expected_version_must_be_a_positive_int(store: MemoryStore, bad: Any) -> None:
    s = await store.create_session()
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, data={}, expected_version=bad)
    assert await store.get_session(s.id) == s


# --------------------------------------------------------------------------- delete


@pytest.mark.asyncio
async def test_delete_removes_session_events_and_checkpoints(store: MemoryStore) -> None:
    s = await store.create_session(id="doomed", tags={"t"}, processor_id="p")
    await store.append_events(s.id, [{"type": "a"}])
    await store.save_checkpoint(s.id)
    other = await store.create_session(id="other")
    assert await store.delete_session(s.id) is True
    assert await store.get_session(s.id) is None
    assert await store.get_session(s.id, include_expired=True) is None
    assert await store.delete_session(s.id) is False
    assert await store.count_sessions(SessionFilter(include_expired=True)) == 1
    assert await store.count_sessions(SessionFilter(tags_any=["t"])) == 0
    assert await store.count_sessions(SessionFilter(processor_id="p")) == 0
    with pytest.raises(SessionNotFoundError):
        await store.get_events(s.id)
    with pytest.raises(SessionNotFoundError):
        await store.list_checkpoints(s.id)
    # a new session with the id starts clean (no session fixation through leftovers)
    await store.create_session(id="doomed")
    assert await store.get_events("doomed") == []
    assert await store.list_checkpoints("doomed") == []
    assert await store.get_session("other") == other


@pytest.mark.asyncio
async def test_delete_with_expected_version(store: MemoryStore) -> None:
    s = await store.create_session()
    with pytest.raises(SessionConflictError):
        await store.delete_session(s.id, expected_version=2)
    assert await store.get_session(s.id) == s
    assert await store.delete_session(s.id, expected_version=1) is True
    assert await store.delete_session("never", expected_version=1) is False


@pytest.mark.asyncio
async def test_delete_expired_session_removes_it(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(ttl=1)
    clock.advance(1)
    assert await store.delete_session(s.id) is False  # it was not visible
    assert await store.get_session(s.id, include_expired=True) is None


# --------------------------------------------------------------------------- touch


@pytest.mark.asyncio
async def test_touch_is_sliding_expiry(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(ttl=10)
    clock.advance(8)
    t = await store.touch(s.id, ttl=10)
    assert t.expires_at == clock.now() + timedelta(seconds=10)
    assert t.updated_at == clock.now()
    assert t.version == 2
    assert t.data == s.data
    clock.advance(8)
    assert await store.get_session(s.id) is not None  # would have expired without touch
    u = await store.touch(s.id)
    assert u.expires_at == t.expires_at  # no ttl: only updated_at changes
    assert u.updated_at == clock.now()
    assert u.version == 3
    clock.advance(2)
    assert await store.get_session(s.id) is None
    with pytest.raises(SessionNotFoundError):
        await store.touch(s.id, ttl=10)
    with pytest.raises(SessionNotFoundError):
        await store.touch("missing")


@pytest.mark.asyncio
async def test_touch_can_add_expiry(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session()
    t = await store.touch(s.id, ttl=timedelta(minutes=1))
    assert t.expires_at == clock.now() + timedelta(minutes=1)


# --------------------------------------------------------------------------- events


@pytest.mark.asyncio
async def test_append_events_gap_free_one_version_per_call(
    store: MemoryStore, clock: ManualClock
) -> None:
    s = await store.create_session()
    t1 = clock.now()
    s = await store.append_events(
        s.id, [{"type": "a", "data": {"i": 1}}, EventInput("b", {"i": 2}), {"type": "c"}]
    )
    assert (s.version, s.event_count, s.last_seq) == (2, 3, 3)
    assert s.updated_at == t1
    clock.advance(1)
    s = await store.append_events(s.id, [{"type": "d"}])
    assert (s.version, s.event_count, s.last_seq) == (3, 4, 4)
    assert s.updated_at == clock.now()
    events = await store.get_events(s.id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.type for e in events] == ["a", "b", "c", "d"]
    assert [e.data for e in events] == [{"i": 1}, {"i": 2}, {}, {}]
    assert [e.at for e in events] == [t1, t1, t1, clock.now()]
    assert await store.get_session(s.id) == s


@pytest.mark.asyncio
async def test_get_events_windows(store: MemoryStore) -> None:
    s = await store.create_session()
    await store.append_events(s.id, [{"type": f"e{i}"} for i in range(1, 11)])

    async def seqs(**kwargs: Any) -> list[int]:
        return [e.seq for e in await store.get_events(s.id, **kwargs)]

    assert await seqs() == list(range(1, 11))
    assert await seqs(after_seq=7) == [8, 9, 10]
    assert await seqs(after_seq=10) == []
    assert await seqs(after_seq=100) == []
    assert await seqs(limit=3) == [1, 2, 3]
    assert await seqs(after_seq=4, limit=2) == [5, 6]
    assert await seqs(after_seq=9, limit=5) == [10]
    assert await seqs(last=3) == [8, 9, 10]
    assert await seqs(last=20) == list(range(1, 11))
    assert await seqs(after_seq=8, last=5) == [9, 10]
    assert await seqs(after_seq=2, last=2) == [9, 10]
    with pytest.raises(InvalidArgumentError):
        await store.get_events(s.id, limit=2, last=2)
    for bad in (
        {"limit": 0},
        {"limit": -1},
        {"last": 0},
        {"after_seq": -1},
        {"limit": True},
        {"limit": 10**9},
    ):
        with pytest.raises(InvalidArgumentError):
            await store.get_events(s.id, **bad)
    with pytest.raises(SessionNotFoundError):
        await store.get_events("missing")


@pytest.mark.asyncio
async def test_trim_events_keeps_last_and_never_reuses_seq(store: MemoryStore) -> None:
    s = await store.create_session()
    await store.append_events(s.id, [{"type": "t", "data": {"i": i}} for i in range(1, 8)])
    s = await store.trim_events(s.id, keep_last=3)
    assert (s.event_count, s.last_seq, s.version) == (3, 7, 3)
    assert [e.seq for e in await store.get_events(s.id)] == [5, 6, 7]
    assert [e.data["i"] for e in await store.get_events(s.id)] == [5, 6, 7]
    assert [e.seq for e in await store.get_events(s.id, after_seq=2)] == [5, 6, 7]
    assert [e.seq for e in await store.get_events(s.id, after_seq=5)] == [6, 7]
    assert [e.seq for e in await store.get_events(s.id, last=2)] == [6, 7]
    assert [e.seq for e in await store.get_events(s.id, limit=1)] == [5]
    # trimming to more than there are is a no-op (no write)
    same = await store.trim_events(s.id, keep_last=3)
    assert same == s
    s = await store.append_events(s.id, [{"type": "t"}])
    assert s.last_seq == 8
    assert [e.seq for e in await store.get_events(s.id)] == [5, 6, 7, 8]
    s = await store.trim_events(s.id, keep_last=0)
    assert (s.event_count, s.last_seq) == (0, 8)
    assert not s.has_events
    assert await store.get_events(s.id) == []
    s = await store.append_events(s.id, [{"type": "t"}, {"type": "u"}])
    assert (s.event_count, s.last_seq) == (2, 10)
    assert [e.seq for e in await store.get_events(s.id)] == [9, 10]
    assert [e.seq for e in await store.get_events(s.id, after_seq=9)] == [10]
    with pytest.raises(InvalidArgumentError):
        await store.trim_events(s.id, keep_last=-1)
    with pytest.raises(SessionNotFoundError):
        await store.trim_events("missing", keep_last=1)


@pytest.mark.asyncio
async def test_has_events_follows_the_log(store: MemoryStore) -> None:
    s = await store.create_session()
    assert await store.count_sessions(SessionFilter(has_events=True)) == 0
    await store.append_events(s.id, [{"type": "t"}])
    assert await store.count_sessions(SessionFilter(has_events=True)) == 1
    await store.trim_events(s.id, keep_last=0)
    assert await store.count_sessions(SessionFilter(has_events=False)) == 1


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.asyncio
async def test_checkpoint_save_list_get(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(data={"step": 1}, metadata={"m": 1}, tags={"t"})
    await store.append_events(s.id, [{"type": "a"}, {"type": "b"}])
    cp1 = await store.save_checkpoint(s.id, label="first")
    assert cp1.session_id == s.id
    assert cp1.label == "first"
    assert cp1.version == 2
    assert cp1.data == {"step": 1}
    assert cp1.metadata == {"m": 1}
    assert cp1.tags == frozenset({"t"})
    assert (cp1.event_count, cp1.last_seq) == (2, 2)
    assert cp1.status is Status.ACTIVE
    assert cp1.created_at == clock.now()
    assert len(cp1.digest) == 64
    clock.advance(1)
    await store.update_session(s.id, merge_data={"step": 2})
    cp2 = await store.save_checkpoint(s.id)
    assert cp2.label is None
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == [cp1.id, cp2.id]
    assert await store.get_checkpoint(s.id, cp1.id) == cp1
    assert await store.get_checkpoint(s.id, cp2.id) == cp2
    with pytest.raises(SessionNotFoundError):
        await store.get_checkpoint(s.id, "01NOTACHECKPOINT")
    with pytest.raises(SessionNotFoundError):
        await store.save_checkpoint("missing")
    assert await store.delete_checkpoint(s.id, cp1.id) is True
    assert await store.delete_checkpoint(s.id, cp1.id) is False
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == [cp2.id]
    current = await store.get_session(s.id)
    assert current is not None
    assert current.version == 3  # checkpoints never bumped the version


@pytest.mark.asyncio
async def test_checkpoint_order_when_saved_in_the_same_millisecond(store: MemoryStore) -> None:
    s = await store.create_session()
    ids = [(await store.save_checkpoint(s.id, label=str(i))).id for i in range(5)]
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == ids
    newest = await store.save_checkpoint(s.id, label="5", keep_last=2)
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == [ids[-1], newest.id]


@pytest.mark.asyncio
async def test_checkpoint_keep_last(clock: ManualClock, backend: MemoryBackend) -> None:
    async with MemoryStore(clock=clock, backend=backend, checkpoint_keep_last=3) as store:
        s = await store.create_session()
        made = []
        for i in range(6):
            clock.advance(1)
            await store.update_session(s.id, merge_data={"i": i})
            made.append(await store.save_checkpoint(s.id, label=f"cp{i}"))
        kept = await store.list_checkpoints(s.id)
        assert [cp.label for cp in kept] == ["cp3", "cp4", "cp5"]
        # an explicit keep_last wins over the store's default
        await store.save_checkpoint(s.id, label="last", keep_last=1)
        assert [cp.label for cp in await store.list_checkpoints(s.id)] == ["last"]
        with pytest.raises(InvalidArgumentError):
            await store.save_checkpoint(s.id, keep_last=0)
        assert len(made) == 6


@pytest.mark.asyncio
async def test_checkpoint_digest_is_verified(store: MemoryStore) -> None:
    s = await store.create_session(data={"secret": "original"})
    cp = await store.save_checkpoint(s.id)
    stored = store.backend.space(store.namespace).checkpoints[s.id]
    raw = stored[cp.id]
    rec = orjson.loads(raw)
    rec["data"] = {"secret": "tampered"}
    stored[cp.id] = orjson.dumps(rec)
    with pytest.raises(IntegrityError) as info:
        await store.get_checkpoint(s.id, cp.id)
    assert s.id in info.value.record
    assert cp.id in info.value.record
    before = await store.get_session(s.id)
    with pytest.raises(IntegrityError):
        await store.restore_checkpoint(s.id, cp.id)
    assert await store.get_session(s.id) == before
    # garbage bytes are an IntegrityError too, never a crash with another type
    stored[cp.id] = b"\x00garbage{"
    with pytest.raises(IntegrityError):
        await store.get_checkpoint(s.id, cp.id)
    stored[cp.id] = raw
    assert await store.get_checkpoint(s.id, cp.id) == cp


@pytest.mark.asyncio
async def test_restore_checkpoint(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(
        data={"step": 1}, metadata={"m": 1}, tags={"a"}, processor_id="p", ttl=100
    )
    await store.append_events(s.id, [{"type": "e1"}])
    cp = await store.save_checkpoint(s.id)
    clock.advance(1)
    await store.update_session(
        s.id, data={"step": 9}, metadata={}, tags={"b"}, status="failed", processor_id="q"
    )
    await store.append_events(s.id, [{"type": "e2"}, {"type": "e3"}])
    before = await store.get_session(s.id)
    assert before is not None
    clock.advance(1)
    r = await store.restore_checkpoint(s.id, cp.id, expected_version=before.version)
    assert r.data == {"step": 1}
    assert r.metadata == {"m": 1}
    assert r.tags == frozenset({"a"})
    assert r.status is Status.ACTIVE
    assert r.version == before.version + 1
    assert r.updated_at == clock.now()
    # later events stay; counters and expiry are not rolled back
    assert (r.event_count, r.last_seq) == (3, 3)
    assert [e.type for e in await store.get_events(s.id)] == ["e1", "e2", "e3"]
    assert r.expires_at == before.expires_at
    assert r.created_at == s.created_at
    assert await store.get_session(s.id) == r
    assert await store.count_sessions(SessionFilter(tags_all=["a"], status="active")) == 1
    assert await store.count_sessions(SessionFilter(tags_any=["b"])) == 0


# --------------------------------------------------------------------------- transactions


@pytest.mark.asyncio
async def test_transaction_commits_everything(store: MemoryStore) -> None:
    a = await store.create_session(id="a", data={"n": 1})
    b = await store.create_session(id="b")
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"n": 2}, expected_version=1)
        new_id = await tx.create_session(processor_id="p", data={"parent": "a"})
        await tx.append_events("a", [{"type": "x"}])
        await tx.delete_session("b", expected_version=b.version)
        assert tx.staged == 4
        # nothing is written before the block exits
        assert await store.get_session("a") == a
        assert await store.get_session(new_id) is None
    assert len(tx.results) == 4
    r0, r1, r2, r3 = tx.results
    assert isinstance(r0, Session) and r0.version == 2
    assert isinstance(r1, Session) and r1.id == new_id and r1.version == 1
    assert isinstance(r2, Session) and r2.version == 3 and r2.event_count == 1
    assert r3 is True
    assert await store.get_session("a") == r2
    assert await store.get_session(new_id) == r1
    assert await store.get_session("b") is None
    with pytest.raises(TransactionError):
        await tx.create_session()
    with pytest.raises(TransactionError):
        await tx.commit()


@pytest.mark.asyncio
async def test_transaction_ops_see_each_other(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        sid = await tx.create_session(id="fresh", data={"a": 1}, metadata={"m": 1})
        await tx.update_session(sid, merge_data={"b": 2}, merge_metadata={"n": 2})
        await tx.append_events(sid, [{"type": "t"}])
        await tx.update_session(sid, merge_data={"c": 3}, expected_version=3)
    final = tx.results[-1]
    assert isinstance(final, Session)
    assert final.data == {"a": 1, "b": 2, "c": 3}
    assert final.version == 4
    stored = await store.get_session("fresh")
    assert stored == final
    assert stored is not None
    assert stored.data == {"a": 1, "b": 2, "c": 3}
    assert stored.metadata == {"m": 1, "n": 2}


async def _conflict_in_the_middle(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"changed": True})
        await tx.create_session(id="created-in-tx")
        await tx.update_session("b", data={"x": 1}, expected_version=7)  # stale
        await tx.append_events("a", [{"type": "t"}])


async def _missing_in_the_middle(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"changed": True})
        await tx.create_session(id="created-in-tx")
        await tx.delete_session("ghost")
        await tx.append_events("a", [{"type": "t"}])


async def _bad_data_in_the_middle(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"changed": True})
        await tx.create_session(id="created-in-tx")
        await tx.update_session("b", data={"when": datetime(2030, 1, 1, tzinfo=UTC)})
        await tx.append_events("a", [{"type": "t"}])


async def _exists_in_the_middle(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"changed": True})
        await tx.create_session(id="created-in-tx")
        await tx.create_session(id="b")
        await tx.append_events("a", [{"type": "t"}])


class _Boom(Exception):
    pass


async def _exception_in_block(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.update_session("a", merge_data={"changed": True})
        await tx.create_session(id="created-in-tx")
        raise _Boom


async def _commit_with_conflict(store: MemoryStore) -> None:
    await store.commit(
        [
            UpdateOp("a", SessionUpdate(merge_data={"changed": True})),
            CreateOp(NewSession(id="created-in-tx")),
            DeleteOp("b", expected_version=99),
        ]
    )


async def _commit_with_bad_op(store: MemoryStore) -> None:
    await store.commit(
        [
            UpdateOp("a", SessionUpdate(merge_data={"changed": True})),
            CreateOp(NewSession(id="created-in-tx")),
            AppendOp("b", [{"type": "t", "data": {"s": {1, 2}}}]),
        ]
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        (_conflict_in_the_middle, SessionConflictError),
        (_missing_in_the_middle, SessionNotFoundError),
        (_bad_data_in_the_middle, SerializationError),
        (_exists_in_the_middle, SessionExistsError),
        (_exception_in_block, _Boom),
        (_commit_with_conflict, SessionConflictError),
        (_commit_with_bad_op, SerializationError),
    ],
)
async def test_transaction_all_or_nothing(
    store: MemoryStore,
    scenario: Callable[[MemoryStore], Awaitable[None]],
    error: type[Exception],
) -> None:
    await store.create_session(id="a", data={"orig": 1})
    await store.create_session(id="b")
    before = await _snapshot(store)
    with pytest.raises(error):
        await scenario(store)
    assert await _snapshot(store) == before
    assert await store.get_session("created-in-tx") is None
    assert await store.count_sessions() == 2
    # the store keeps working
    s = await store.update_session("a", merge_data={"after": True}, expected_version=1)
    assert s.version == 2


@pytest.mark.asyncio
async def test_cancelled_transaction_writes_nothing(store: MemoryStore) -> None:
    await store.create_session(id="a")
    before = await _snapshot(store)
    staged = asyncio.Event()
    never = asyncio.Event()

    async def worker() -> None:
        async with store.transaction() as tx:
            await tx.update_session("a", merge_data={"x": 1})
            await tx.create_session(id="created-in-tx")
            staged.set()
            await never.wait()

    task = asyncio.create_task(worker())
    await staged.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _snapshot(store) == before


@pytest.mark.asyncio
async def test_explicit_rollback(store: MemoryStore) -> None:
    async with store.transaction() as tx:
        await tx.create_session(id="rolled-back")
        tx.rollback()
    assert tx.results == []
    assert await store.get_session("rolled-back") is None


@pytest.mark.asyncio
async def test_commit_results_and_empty_commit(store: MemoryStore) -> None:
    assert await store.commit([]) == []
    results = await store.commit(
        [CreateOp(NewSession(id="x", data={"a": 1})), DeleteOp("y", missing_ok=True)]
    )
    assert isinstance(results[0], Session)
    assert results[0].data == {"a": 1}
    assert results[1] is False
    with pytest.raises(InvalidArgumentError):
        await store.commit(CreateOp(NewSession()))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- expiry


@pytest.mark.asyncio
async def test_expire_sessions(store: MemoryStore, clock: ManualClock) -> None:
    a = await store.create_session(ttl=5)
    b = await store.create_session(ttl=10)
    c = await store.create_session()
    assert await store.expire_sessions() == []
    clock.advance(5)
    assert await store.expire_sessions() == [a.id]
    assert await store.expire_sessions() == []  # already marked
    got = await store.get_session(a.id, include_expired=True)
    assert got is not None
    assert got.status is Status.EXPIRED
    assert got.version == 2
    assert await store.get_session(a.id) is None
    clock.advance(100)
    assert await store.expire_sessions() == [b.id]
    current = await store.get_session(c.id)
    assert current == c
    assert await store.count_sessions(SessionFilter(status="expired", include_expired=True)) == 2


@pytest.mark.asyncio
async def test_cleanup_expired_sessions_removes_everything(
    store: MemoryStore, clock: ManualClock
) -> None:
    doomed = await store.create_session(processor_id="p", tags={"t"}, metadata={"k": 1}, ttl=5)
    await store.append_events(doomed.id, [{"type": "a"}])
    await store.save_checkpoint(doomed.id)
    expired_marked = await store.create_session(processor_id="p", tags={"t"}, ttl=3)
    keep = await store.create_session(processor_id="p", tags={"t"}, metadata={"k": 1}, ttl=50)
    clock.advance(4)
    assert await store.expire_sessions() == [expired_marked.id]
    clock.advance(1)
    assert await store.cleanup_expired_sessions() == 2
    assert await store.cleanup_expired_sessions() == 0
    for flt in (
        SessionFilter(include_expired=True),
        SessionFilter(include_expired=True, processor_id="p"),
        SessionFilter(include_expired=True, tags_any=["t"]),
        SessionFilter(include_expired=True, status=["active", "expired"]),
        SessionFilter(include_expired=True, metadata={"k": 1}),
        SessionFilter(include_expired=True, expires_before=clock.now() + timedelta(days=1)),
    ):
        assert await store.count_sessions(flt) == 1
        for sort_by in ("created_at", "updated_at", "expires_at", "id"):
            page = await store.list_sessions(flt, QueryOptions(sort_by=sort_by))
            assert page.ids == [keep.id]
    assert (await store.search_sessions("p", filter=SessionFilter(include_expired=True))).ids == [
        keep.id
    ]
    assert await store.get_session(doomed.id, include_expired=True) is None
    space = store.backend.space(store.namespace)
    assert doomed.id not in space.docs
    assert doomed.id not in space.logs
    assert doomed.id not in space.checkpoints
    assert [r.session.id async for r in store.scan(include_expired=True)] == [keep.id]
    # an id freed by cleanup can be created again from scratch
    again = await store.create_session(id=doomed.id)
    assert again.event_count == 0
    assert await store.list_checkpoints(doomed.id) == []


# --------------------------------------------------------------------------- isolation


@pytest.mark.asyncio
async def test_returned_values_are_private_copies(store: MemoryStore) -> None:
    data: dict[str, Any] = {"list": [1, 2], "nested": {"a": 1}}
    s = await store.create_session(data=data, metadata={"m": {"x": 1}})
    data["list"].append(3)
    data["nested"]["a"] = 99
    s.data["list"].append(4)
    s.data["nested"]["b"] = 2
    s.metadata["m"]["x"] = 2
    got = await store.get_session(s.id)
    assert got is not None
    assert got.data == {"list": [1, 2], "nested": {"a": 1}}
    assert got.metadata == {"m": {"x": 1}}
    got.data["list"].clear()
    page = await store.list_sessions()
    page.items[0].data["nested"].clear()
    found = await store.search_sessions(s.id)
    found.items[0].metadata.clear()
    many = await store.get_sessions([s.id])
    many[s.id].data.clear()
    again = await store.get_session(s.id)
    assert again is not None
    assert again.data == {"list": [1, 2], "nested": {"a": 1}}
    assert again.metadata == {"m": {"x": 1}}


@pytest.mark.asyncio
async def test_event_and_checkpoint_data_are_private(store: MemoryStore) -> None:
    payload: dict[str, Any] = {"args": [1]}
    s = await store.create_session(data={"d": [1]})
    await store.append_events(s.id, [{"type": "t", "data": payload}])
    payload["args"].append(2)
    events = await store.get_events(s.id)
    assert events[0].data == {"args": [1]}
    events[0].data["args"].append(3)
    assert (await store.get_events(s.id))[0].data == {"args": [1]}
    cp = await store.save_checkpoint(s.id)
    cp.data["d"].append(2)
    assert (await store.get_checkpoint(s.id, cp.id)).data == {"d": [1]}
    listed = await store.list_checkpoints(s.id)
    listed[0].data["d"].append(5)
    restored = await store.restore_checkpoint(s.id, cp.id)
    assert restored.data == {"d": [1]}
    async for rec in store.scan():
        rec.session.data.clear()
        rec.events[0].data.clear()
    assert (await store.get_events(s.id))[0].data == {"args": [1]}


@pytest.mark.asyncio
async def test_stores_sharing_a_backend_and_namespace_see_the_same_data(
    clock: ManualClock, backend: MemoryBackend
) -> None:
    async with (
        MemoryStore(clock=clock, backend=backend, namespace="ns1") as one,
        MemoryStore(clock=clock, backend=backend, namespace="ns1") as two,
    ):
        s = await one.create_session(tags={"t"})
        assert await two.get_session(s.id) == s
        updated = await two.update_session(s.id, merge_data={"by": "two"}, expected_version=1)
        assert await one.get_session(s.id) == updated
        with pytest.raises(SessionConflictError):
            await one.update_session(s.id, data={}, expected_version=1)
        assert await one.count_sessions(SessionFilter(tags_any=["t"])) == 1
        await two.append_events(s.id, [{"type": "x"}])
        assert [e.type for e in await one.get_events(s.id)] == ["x"]


@pytest.mark.asyncio
async def test_namespaces_never_leak(clock: ManualClock, backend: MemoryBackend) -> None:
    async with (
        MemoryStore(clock=clock, backend=backend, namespace="tenant-a") as a,
        MemoryStore(clock=clock, backend=backend, namespace="tenant-b") as b,
        MemoryStore(clock=clock, backend=backend) as default,
    ):
        sa = await a.create_session(id="same-id", data={"tenant": "a"}, tags={"t"})
        sb = await b.create_session(id="same-id", data={"tenant": "b"}, tags={"t"})
        assert await a.get_session("same-id") == sa
        assert await b.get_session("same-id") == sb
        assert await default.get_session("same-id") is None
        assert await default.count_sessions(SessionFilter(include_expired=True)) == 0
        assert (await a.list_sessions()).ids == ["same-id"]
        assert (await a.search_sessions("b")).ids == []
        assert await b.delete_session("same-id")
        assert await a.get_session("same-id") == sa
        assert [r.session async for r in a.scan()] == [sa]
        assert await b.cleanup_expired_sessions() == 0


@pytest.mark.asyncio
async def test_memory_urls_are_private() -> None:
    async with open_store("memory://") as one, open_store("memory://") as two:
        s = await one.create_session()
        assert await two.get_session(s.id) is None


# --------------------------------------------------------------------------- concurrency


@pytest.mark.asyncio
async def test_concurrent_read_modify_write_with_cas_loses_nothing(store: MemoryStore) -> None:
    s = await store.create_session(data={"n": 0})
    conflicts = 0

    async def increment(times: int) -> None:
        nonlocal conflicts
        for _ in range(times):
            while True:
                current = await store.get_session(s.id)
                assert current is not None
                await asyncio.sleep(0)  # let the others interleave between read and write
                try:
                    await store.update_session(
                        s.id,
                        merge_data={"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )
                    break
                except SessionConflictError:
                    conflicts += 1

    await asyncio.gather(*(increment(5) for _ in range(20)))
    final = await store.get_session(s.id)
    assert final is not None
    assert final.data == {"n": 100}
    assert final.version == 101
    assert conflicts > 0  # the test really raced


@pytest.mark.asyncio
async def test_concurrent_blind_writes_never_lose_updates(store: MemoryStore) -> None:
    s = await store.create_session()

    async def write(i: int) -> None:
        await asyncio.sleep(0)
        await store.update_session(s.id, merge_data={f"k{i}": i})
        await asyncio.sleep(0)
        await store.append_events(s.id, [{"type": "t", "data": {"i": i}}])

    await asyncio.gather(*(write(i) for i in range(50)))
    final = await store.get_session(s.id)
    assert final is not None
    assert final.data == {f"k{i}": i for i in range(50)}
    assert final.version == 101
    events = await store.get_events(s.id)
    assert [e.seq for e in events] == list(range(1, 51))
    assert sorted(e.data["i"] for e in events) == list(range(50))


@pytest.mark.asyncio
async def test_concurrent_creates_with_one_id_only_one_wins(store: MemoryStore) -> None:
    async def create(i: int) -> str:
        await asyncio.sleep(0)
        try:
            await store.create_session(id="contested", data={"winner": i})
        except SessionExistsError:
            return "lost"
        return "won"

    outcomes = await asyncio.gather(*(create(i) for i in range(10)))
    assert outcomes.count("won") == 1
    assert await store.count_sessions() == 1


# --------------------------------------------------------------------------- scan / put_records


async def _populate(store: MemoryStore, clock: ManualClock) -> None:
    a = await store.create_session(
        id="a",
        processor_id="p",
        data={"x": [1, 2.5, None], "s": "é"},
        metadata={"m": {"n": True}},
        tags={"t1", "t2"},
        status="paused",
        ttl=3600,
        group="g1",
    )
    clock.advance(0.123)
    await store.append_events(a.id, [{"type": f"e{i}", "data": {"i": i}} for i in range(5)])
    await store.trim_events(a.id, keep_last=3)
    await store.save_checkpoint(a.id, label="one")
    clock.advance(1)
    await store.update_session(a.id, merge_data={"later": 1})
    await store.save_checkpoint(a.id)
    await store.create_session(id="b", expires_at=clock.now() + timedelta(seconds=2))
    await store.create_session(id="c")


@pytest.mark.asyncio
async def test_scan_and_put_records_round_trip_every_field(
    store: MemoryStore, clock: ManualClock
) -> None:
    await _populate(store, clock)
    clock.advance(3)  # "b" is now expired
    live = [r.session.id async for r in store.scan()]
    assert sorted(live) == ["a", "c"]
    records = [r async for r in store.scan(include_expired=True)]
    assert sorted(r.session.id for r in records) == ["a", "b", "c"]
    async with MemoryStore(clock=clock) as target:
        result = await target.put_records(records)
        assert result == PutResult(created=3)
        assert await _snapshot(target) == await _snapshot(store)
        a = await target.get_session("a")
        assert a is not None
        assert (a.event_count, a.last_seq, a.version, a.group) == (3, 5, 4, "g1")
        assert [e.seq for e in await target.get_events("a")] == [3, 4, 5]
        for cp in await target.list_checkpoints("a"):
            assert await target.get_checkpoint("a", cp.id) == cp
        # the restored session carries on where it left off
        after = await target.append_events("a", [{"type": "next"}])
        assert after.last_seq == 6
        assert after.version == 5
        assert await target.get_session("b") is None
        assert await target.get_session("b", include_expired=True) is not None
        # queries use the restored indexes
        assert (await target.list_sessions(SessionFilter(tags_all=["t1"]))).ids == ["a"]
        assert await target.count_sessions(SessionFilter(processor_id="p", status="paused")) == 1


async def _records(store: MemoryStore) -> dict[str, SessionRecord]:
    return {r.session.id: r async for r in store.scan(include_expired=True)}


@pytest.mark.asyncio
async def test_put_records_skip_existing(store: MemoryStore, clock: ManualClock) -> None:
    await _populate(store, clock)
    records = await _records(store)
    async with MemoryStore(clock=clock) as target:
        mine = await target.create_session(id="a", data={"mine": True})
        result = await target.put_records(records.values(), strategy="skip_existing")
        assert result == PutResult(created=2, skipped=1)
        assert await target.get_session("a") == mine
        assert await target.get_events("a") == []
        # default strategy is skip_existing
        assert await target.put_records(records.values()) == PutResult(skipped=3)


@pytest.mark.asyncio
async def test_put_records_overwrite(store: MemoryStore, clock: ManualClock) -> None:
    await _populate(store, clock)
    records = await _records(store)
    async with MemoryStore(clock=clock) as target:
        await target.create_session(id="a", data={"mine": True}, tags={"mine"})
        await target.append_events("a", [{"type": "mine"}] * 10)
        await target.save_checkpoint("a")
        result = await target.put_records(records.values(), strategy="overwrite")
        assert result == PutResult(created=2, overwritten=1)
        assert await _snapshot(target) == await _snapshot(store)
        assert await target.count_sessions(SessionFilter(tags_any=["mine"])) == 0


@pytest.mark.asyncio
async def test_put_records_update_newer(store: MemoryStore, clock: ManualClock) -> None:
    await _populate(store, clock)
    records = await _records(store)
    src_a = records["a"].session
    async with MemoryStore(clock=clock) as target:
        await target.put_records(records.values())
        # target's "a" is newer: kept
        clock.advance(1)
        newer = await target.update_session("a", merge_data={"newer": True})
        # target's "c" is older than the record: replaced
        older = dataclasses.replace(
            records["c"].session, updated_at=records["c"].session.updated_at - timedelta(1)
        )
        await target.put_records([SessionRecord(older)], strategy="overwrite")
        result = await target.put_records(records.values(), strategy="update_newer")
        assert result == PutResult(overwritten=1, skipped=2)
        assert await target.get_session("a") == newer
        assert await target.get_session("c") == records["c"].session
        # same updated_at: the higher version wins
        bumped = dataclasses.replace(src_a, version=newer.version + 1, updated_at=newer.updated_at)
        res = await target.put_records(
            [SessionRecord(bumped, records["a"].events, records["a"].checkpoints)],
            strategy="update_newer",
        )
        assert res == PutResult(overwritten=1)
        assert await target.get_session("a") == bumped


@pytest.mark.asyncio
async def test_put_records_fail_on_conflict_writes_nothing(
    store: MemoryStore, clock: ManualClock
) -> None:
    await _populate(store, clock)
    records = await _records(store)
    async with MemoryStore(clock=clock) as target:
        await target.create_session(id="c", data={"mine": 1})
        before = await _snapshot(target)
        with pytest.raises(SessionExistsError) as info:
            await target.put_records(records.values(), strategy="fail_on_conflict")
        assert info.value.session_id == "c"
        assert await _snapshot(target) == before
        await target.delete_session("c")
        result = await target.put_records(records.values(), strategy="fail_on_conflict")
        assert result == PutResult(created=3)


@pytest.mark.asyncio
async def test_put_records_over_expired_session_creates(
    store: MemoryStore, clock: ManualClock
) -> None:
    await _populate(store, clock)
    records = await _records(store)
    async with MemoryStore(clock=clock) as target:
        await target.create_session(id="c", ttl=1, data={"old": 1})
        clock.advance(2)
        result = await target.put_records([records["c"]], strategy="fail_on_conflict")
        assert result == PutResult(created=1)
        assert await target.get_session("c") == records["c"].session


@pytest.mark.asyncio
async def test_put_records_rejects_bad_records(store: MemoryStore, clock: ManualClock) -> None:
    await _populate(store, clock)
    records = await _records(store)
    a = records["a"]
    async with MemoryStore(clock=clock) as target:
        bad_cp = dataclasses.replace(a.checkpoints[0], data={"forged": True})
        bad: list[tuple[list[Any], type[Exception]]] = [
            ([SessionRecord(a.session, a.events, [bad_cp])], IntegrityError),
            ([SessionRecord(a.session, a.events[:1], a.checkpoints)], InvalidArgumentError),
            # events must be gap-free and end at last_seq
            (
                [
                    SessionRecord(
                        dataclasses.replace(a.session, event_count=2),
                        [a.events[0], a.events[2]],
                    )
                ],
                InvalidArgumentError,
            ),
            (
                [SessionRecord(dataclasses.replace(a.session, last_seq=6), a.events)],
                InvalidArgumentError,
            ),
            ([a, a], InvalidArgumentError),
            ([a.session], InvalidArgumentError),
            (
                [SessionRecord(dataclasses.replace(a.session, data={"x": {1}}))],
                SerializationError,
            ),
        ]
        for recs, error in bad:
            with pytest.raises(error):
                await target.put_records(recs)
            assert await target.count_sessions(SessionFilter(include_expired=True)) == 0
        with pytest.raises(InvalidArgumentError):
            await target.put_records([a], strategy="merge")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lifecycle


async def _every_call(store: MemoryStore) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.create_session(),
        lambda: store.get_session("some-id"),
        lambda: store.get_sessions(["some-id"]),
        lambda: store.update_session("some-id", data={}),
        lambda: store.delete_session("some-id"),
        lambda: store.touch("some-id"),
        lambda: store.append_events("some-id", [{"type": "t"}]),
        lambda: store.get_events("some-id"),
        lambda: store.trim_events("some-id", keep_last=1),
        lambda: store.save_checkpoint("some-id"),
        lambda: store.list_checkpoints("some-id"),
        lambda: store.list_sessions(),
        lambda: store.count_sessions(),
        lambda: store.search_sessions("x"),
        lambda: store.commit([CreateOp(NewSession())]),
        lambda: store.expire_sessions(),
        lambda: store.cleanup_expired_sessions(),
        lambda: store.put_records([]),
    ]


@pytest.mark.asyncio
async def test_store_not_initialised(clock: ManualClock, backend: MemoryBackend) -> None:
    async with MemoryStore(clock=clock, backend=backend) as opened:
        await opened.create_session(id="some-id")
    store = MemoryStore(clock=clock, backend=backend)
    for call in await _every_call(store):
        with pytest.raises(StoreUnavailableError, match="not initialised"):
            await call()
    with pytest.raises(StoreUnavailableError):
        async for _ in store.scan():
            pass
    with pytest.raises(StoreUnavailableError):
        async with store.transaction() as tx:
            await tx.create_session()


@pytest.mark.asyncio
async def test_store_after_shutdown(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    await store.initialize()
    await store.initialize()  # idempotent
    await store.create_session(id="some-id")
    await store.shutdown()
    await store.shutdown()  # idempotent
    for call in await _every_call(store):
        with pytest.raises(StoreUnavailableError, match="shut down"):
            await call()
    with pytest.raises(StoreUnavailableError):
        await store.initialize()


@pytest.mark.asyncio
async def test_capabilities_and_repr(store: MemoryStore) -> None:
    caps = store.capabilities
    assert caps.atomic_multi_session
    assert caps.indexed_query
    assert not caps.durable
    assert not caps.cross_process
    assert "MemoryStore" in repr(store)
    assert store.namespace == ""


# --------------------------------------------------------------------------- corruption


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["undecodable", "another_id", "digest"])
async def test_a_corrupt_checkpoint_is_skipped_and_reported(
    store: MemoryStore, clock: ManualClock, tmp_path: Path, damage: str
) -> None:
    """The memory driver keeps checkpoints as JSON bytes: damage them in its space."""

    async def corrupt(st: BaseSessionStore, sid: str, cp_id: str) -> None:
        assert st is store
        cps = store._space.checkpoints[sid]
        if damage == "undecodable":
            cps[cp_id] = cps[cp_id][:-7]
        elif damage == "another_id":  # a record moved under another checkpoint's name
            other = next(k for k in cps if k != cp_id)
            cps[cp_id] = cps[other]
        else:  # readable, but not what was saved
            cps[cp_id] = cps[cp_id].replace(b'"step":2', b'"step":7')

    await check_corrupt_checkpoint_is_skipped_and_reported(
        store, corrupt, tmp_path, advance=lambda: clock.advance(1)
    )
