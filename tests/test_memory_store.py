"""Behaviour of the in-memory driver through the public API."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
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
    IntegrityError,
    InvalidArgumentError,
    ManualClock,
    NewSession,
    PutResult,
    SerializationError,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    SessionUpdate,
    StoreUnavailableError,
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
async def test_ulid_ids_are_unique_and_time_ordered(store: MemoryStore) -> None:
    ids = [(await store.create_session()).id for _ in range(50)]
    assert len(set(ids)) == 50
    assert ids == sorted(ids)


@pytest.mark.asyncio
async def test_create_with_caller_id(store: MemoryStore) -> None:
    s = await store.create_session(id="my-session_1.a", data={"x": 1})
    assert s.id == "my-session_1.a"
    assert (await store.get_session("my-session_1.a")) == s


# --------------------------------------------------------------------------- get


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
@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1"])
async def test_expected_version_must_be_a_positive_int(store: MemoryStore, bad: Any) -> None:
    s = await store.create_session()
    with pytest.raises(InvalidArgumentError):
        await store.update_session(s.id, data={}, expected_version=bad)
    assert await store.get_session(s.id) == s


# --------------------------------------------------------------------------- delete


@pytest.mark.asyncio
async def test_delete_expired_session_removes_it(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session(ttl=1)
    clock.advance(1)
    assert await store.delete_session(s.id) is False  # it was not visible
    assert await store.get_session(s.id, include_expired=True) is None


# --------------------------------------------------------------------------- touch


@pytest.mark.asyncio
async def test_touch_can_add_expiry(store: MemoryStore, clock: ManualClock) -> None:
    s = await store.create_session()
    t = await store.touch(s.id, ttl=timedelta(minutes=1))
    assert t.expires_at == clock.now() + timedelta(minutes=1)


# --------------------------------------------------------------------------- events


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
async def test_checkpoint_order_when_saved_in_the_same_millisecond(store: MemoryStore) -> None:
    s = await store.create_session()
    ids = [(await store.save_checkpoint(s.id, label=str(i))).id for i in range(5)]
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == ids
    newest = await store.save_checkpoint(s.id, label="5", keep_last=2)
    assert [cp.id for cp in await store.list_checkpoints(s.id)] == [ids[-1], newest.id]


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


# --------------------------------------------------------------------------- transactions


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


# --------------------------------------------------------------------------- isolation


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
async def test_memory_urls_are_private() -> None:
    async with open_store("memory://") as one, open_store("memory://") as two:
        s = await one.create_session()
        assert await two.get_session(s.id) is None


# --------------------------------------------------------------------------- concurrency


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


async def _records(store: MemoryStore) -> dict[str, SessionRecord]:
    return {r.session.id: r async for r in store.scan(include_expired=True)}


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
            # events ascend (gaps allowed: the store declares event_log), none after last_seq
            (
                [
                    SessionRecord(
                        dataclasses.replace(a.session, event_count=2),
                        [a.events[2], a.events[0]],
                    )
                ],
                InvalidArgumentError,
            ),
            (
                [SessionRecord(dataclasses.replace(a.session, last_seq=2), a.events)],
                InvalidArgumentError,
            ),
            (
                [
                    SessionRecord(
                        a.session,
                        [dataclasses.replace(e, key="same") for e in a.events],
                    )
                ],
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
        # a gapped log, and a last_seq above the newest kept event (after a pop), are fine
        gapped = SessionRecord(
            dataclasses.replace(a.session, event_count=2, last_seq=a.session.last_seq + 3),
            [a.events[0], a.events[2]],
        )
        assert (await target.put_records([gapped])).created == 1
        assert [e.seq for e in await target.get_events(a.session.id)] == [
            a.events[0].seq,
            a.events[2].seq,
        ]


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


@pytest.mark.asyncio
async def test_an_unfiltered_count_leaves_out_exactly_the_expired_sessions() -> None:
    """The unfiltered count comes from the expiry index (O(log n)), not the matcher: it
    must still agree with the listing at every instant, the expiry's own millisecond
    and sub-millisecond clocks included."""
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    store = MemoryStore(clock=clock)
    await store.initialize()
    for i, ttl in enumerate([None, None, 1, 1, 2, 2.5, 3, 10, None, 0.001]):
        await store.create_session(id=f"s{i}", ttl=ttl)
    await store.create_session(id="gone", ttl=5)
    await store.delete_session("gone")
    for step in [0, 0.0005, 0.0005, 0.9994, 0.0006, 0.5, 0.9999, 0.0001, 1, 10]:
        clock.advance(step)
        live = await store.list_sessions()
        assert await store.count_sessions() == len(live.items), clock.now()
        assert await store.count_sessions(SessionFilter(include_expired=True)) == 10
