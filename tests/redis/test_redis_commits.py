"""``commit`` on Redis in one round trip when the batch is updates and appends
(``_commits.py``: ``lua/write.lua``'s ``U`` and ``A`` ops): the same results, errors and
stored state as the base engine's read-plan-write path, one script call, and a retried
call that finds its first attempt applied does not apply it again."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
import redis
from sessionstore_memory import MemoryStore
from sessionstore_redis import RedisStore

import sessionstore
from sessionstore import (
    AppendOp,
    BaseSessionStore,
    EventInput,
    EventKeyConflictError,
    ManualClock,
    QuotaExceededError,
    Session,
    SessionConflictError,
    SessionNotFoundError,
    SessionStoreError,
    SessionUpdate,
    TransactionError,
    UpdateOp,
)
from sessionstore.clock import to_ms
from sessionstore.planning import prepare
from tests.redis.calls import command_calls, count_requests
from tests.redis.docs import as_layout_2
from tests.redis.servers import RedisCluster

pytestmark = pytest.mark.asyncio


async def _reset(store: RedisStore) -> None:
    await store._backend.load_scripts()  # (a script's first NOSCRIPT is a call more)
    await store.client.execute_command("CONFIG", "RESETSTAT")


class _Hooks:
    """The session hooks each store fired: (hook, session id, version)."""

    def __init__(self) -> None:
        self.calls: dict[int, list[tuple[str, str, int]]] = {}

    def take(self, store: Any) -> list[tuple[str, str, int]]:
        return self.calls.pop(id(store), [])

    @sessionstore.hookimpl
    def sessionstore_session_created(self, store: Any, session: Session) -> None:
        self.calls.setdefault(id(store), []).append(("created", session.id, session.version))

    @sessionstore.hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        self.calls.setdefault(id(store), []).append(("updated", session.id, session.version))


def _adk_batch(s: Session, state: Session, n: int) -> list[Any]:
    """What the ADK adapter's ``append_event`` commits: the session's delta and stamp
    against its version, the keyed event, the app state's delta."""
    return [
        UpdateOp(
            s.id,
            SessionUpdate(merge_data={"step": n}, merge_metadata={"t": n}),
            expected_version=s.version,
        ),
        AppendOp(s.id, [EventInput(type="adk", data={"n": n}, key=f"e{n}")]),
        UpdateOp(state.id, SessionUpdate(merge_data={"calls": n})),
    ]


async def test_an_update_and_a_keyed_append_commit_in_one_call(
    open_redis: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_redis(redis_url)
    s = await store.create_session(data={"a": 1}, group="g")
    state = await store.create_session(group="g")
    await _reset(store)
    sent = count_requests(store, monkeypatch)
    up, appended, other = await store.commit(_adk_batch(s, state, 1))
    assert await command_calls(store, "evalsha", "eval") == 1
    assert sent == ["script"]  # (no read before the write)
    assert isinstance(up, Session) and isinstance(appended, Session)
    # each op's own result: the update's before the append's
    assert (up.version, up.data, up.event_count) == (s.version + 1, {"a": 1, "step": 1}, 0)
    assert (appended.version, appended.event_count, appended.last_seq) == (s.version + 2, 1, 1)
    assert appended.metadata == {"t": 1} and appended.data == up.data
    assert isinstance(other, Session) and other.data == {"calls": 1}
    assert await store.get_session(s.id) == appended
    assert [(e.seq, e.key, e.data) for e in await store.get_events(s.id)] == [(1, "e1", {"n": 1})]
    # a store that has not seen the group finds the sessions through their stubs
    fresh = await open_redis(redis_url)
    again = await fresh.commit(_adk_batch(appended, other, 2))
    assert [r.version for r in again if isinstance(r, Session)] == [4, 5, 3]


async def test_an_append_then_an_update_of_one_session(open_redis: Any, redis_url: str) -> None:
    """The later op is checked against the version the earlier one leaves."""
    store = await open_redis(redis_url)
    s = await store.create_session()
    lead = await store.create_session()
    batch: list[UpdateOp | AppendOp] = [
        UpdateOp(lead.id, SessionUpdate(merge_data={"n": 1}), expected_version=1),
        AppendOp(s.id, [EventInput(type="t", key="k")], expected_version=1),
        UpdateOp(s.id, SessionUpdate(status="completed"), expected_version=2),
    ]
    assert store._commits.takes([prepare(op, store._limits) for op in batch])
    _, appended, up = await store.commit(batch)
    assert isinstance(appended, Session) and isinstance(up, Session)
    assert (appended.version, up.version, up.event_count, up.status) == (2, 3, 1, "completed")
    with pytest.raises(SessionConflictError) as caught:
        await store.commit(
            [
                UpdateOp(lead.id, SessionUpdate(merge_data={"n": 2}), expected_version=2),
                AppendOp(s.id, [EventInput(type="t", key="k2")], expected_version=3),
                UpdateOp(s.id, SessionUpdate(status="failed"), expected_version=3),
            ]
        )
    assert (caught.value.expected, caught.value.actual) == (3, 4)
    assert await store.get_session(s.id) == up  # nothing of the batch written
    assert (await store.get_session(lead.id)).data == {"n": 1}
    assert [e.key for e in await store.get_events(s.id)] == ["k"]


async def test_a_retried_call_finds_its_first_attempt_applied(
    open_redis: Any, redis_url: str
) -> None:
    """The same call sent twice (as a retry after a lost reply sends it): the second
    finds the first's token and writes nothing (an update followed by an append of the
    session leaves it two versions on, and the update's check still knows it)."""
    store = await open_redis(redis_url)
    s = await store.create_session(group="g")
    state = await store.create_session(group="g")
    prepared = [prepare(op, store._limits) for op in _adk_batch(s, state, 1)]
    commits = store._commits
    assert commits.takes(prepared)
    writes = store._writes
    now_ms = to_ms(store.clock.now())
    locs = {p.session_id: writes.loc(p.session_id) for p in prepared}
    call = commits.call(prepared, commits.parts(prepared, now_ms), locs, now_ms)
    first = await writes.run(call, idempotent=True, what="commit")
    second = await writes.run(call, idempotent=True, what="commit")
    assert not first.done and second.done
    stored = await store.get_session(s.id)
    assert stored is not None and (stored.version, stored.event_count) == (s.version + 2, 1)
    assert (await store.get_session(state.id)).data == {"calls": 1}
    # what the commit returns then: the sessions as they are
    results = await commits._applied(prepared)
    assert results == [stored, stored, await store.get_session(state.id)]


@pytest.mark.parametrize("layout", [1, 2])
async def test_an_older_layout_is_written_as_the_current_one(
    open_redis: Any, redis_url: str, layout: int
) -> None:
    """A session stored by an older sessionstore (layout 2: the document a hash; layout
    1: the events a list, too) takes the one-call commit as a current one does."""
    store = await open_redis(redis_url)
    old, now = [await store.create_session(data={"a": 1}) for _ in range(2)]
    state = await store.create_session()
    for s in (old, now):
        await store.append_events(s.id, [EventInput(type="t", data={"i": 1})])
    keys = store.key_names(old.id)
    await as_layout_2(store.client, keys["doc"])
    if layout == 1:
        record = {"v": 1, "type": "t", "at": 1_700_000_000_000, "data": {"i": 1}}
        await store.client.delete(keys["events"], keys["etypes"], keys["ekeys"])
        await store.client.hset(keys["doc"], mapping={"v": "1", "ec": 1, "ls": 1})
        await store.client.hdel(keys["doc"], "am", "tu")
        await store.client.rpush(keys["events"], orjson.dumps(record))
    fresh = await open_redis(redis_url)  # (no copy of either document)
    results = []
    for s in (old, now):
        current = await fresh.get_session(s.id)
        assert current is not None
        results.append(await fresh.commit(_adk_batch(current, state, 7)))
    views = [[_view(r)[1:] for r in done[:2]] for done in results]
    assert views[0] == views[1]
    events = [
        [(e.seq, e.type, e.data, e.key) for e in await fresh.get_events(s.id)] for s in (old, now)
    ]
    assert events[0] == events[1] == [(1, "t", {"i": 1}, None), (2, "adk", {"n": 7}, "e7")]
    assert await store.client.type(keys["doc"]) == b"string"  # written as the current layout


async def test_errors_and_all_or_nothing(open_redis: Any, redis_url: str) -> None:
    store = await open_redis(redis_url, max_session_bytes=4096)
    s = await store.create_session(data={"a": 1})
    other = await store.create_session()
    await store.append_events(s.id, [EventInput(type="t", data={"x": 1}, key="k")])
    s = await store.get_session(s.id)
    assert s is not None
    before = (await store.get_session(other.id), await store.get_events(other.id))

    async def refused(error: type[Exception], *ops: Any) -> Exception:
        with pytest.raises(error) as caught:
            await store.commit(list(ops))
        assert (await store.get_session(other.id), await store.get_events(other.id)) == before
        assert await store.get_session(s.id) == s
        return caught.value

    mine = UpdateOp(other.id, SessionUpdate(merge_data={"b": 2}), expected_version=1)
    gone = await refused(SessionNotFoundError, mine, UpdateOp("nope", SessionUpdate()))
    assert isinstance(gone, SessionNotFoundError) and gone.session_id == "nope"
    await refused(SessionConflictError, mine, UpdateOp(s.id, SessionUpdate(), expected_version=1))
    clash = EventInput(type="t", data={"x": 2}, key="k")
    key = await refused(EventKeyConflictError, mine, AppendOp(s.id, [clash]))
    assert isinstance(key, EventKeyConflictError) and key.session_id == s.id
    big = SessionUpdate(merge_data={"big": "x" * 5000})
    await refused(QuotaExceededError, mine, UpdateOp(s.id, big))
    await refused(SessionNotFoundError, mine, AppendOp("nope", [EventInput(type="t")]))
    # the same keyed event again is no change: the append's result is the session as is
    up, same = await store.commit([mine, AppendOp(s.id, [EventInput("t", {"x": 1}, key="k")])])
    assert same == s and isinstance(up, Session) and up.version == 2


@pytest.mark.parametrize("seed", range(4))
async def test_commits_match_the_base_engine(
    open_redis: Any, redis_url: str, seed: int, request: pytest.FixtureRequest
) -> None:
    """Random batches of the shapes the one-call path takes, on Redis and on the memory
    store (the base engine's read-plan-write) side by side: the same results, the same
    errors, the same observer hooks, the same stored sessions and events after every
    batch."""
    rng = random.Random(seed)
    clock = ManualClock()
    redis = await open_redis(redis_url, clock=clock)
    memory = MemoryStore(clock=clock)
    await memory.initialize()
    ids = ["a", "b", "c"]
    for sid in ids:
        for store in (redis, memory):
            await store.create_session(id=sid, group="g" if sid == "c" else None, tags={"t"})
    versions = dict.fromkeys(ids, 1)
    hooks = _Hooks()
    sessionstore.plugin_manager().register(hooks)
    request.addfinalizer(lambda: sessionstore.plugin_manager().unregister(hooks))
    taken = 0

    def update(sid: str, expect: int | None) -> UpdateOp:
        change: dict[str, Any] = {}
        if rng.random() < 0.7:
            change["merge_data"] = {rng.choice("xyz"): rng.randrange(5)}
        if rng.random() < 0.3:
            change["remove_data_keys"] = [rng.choice("xyz")]
        if rng.random() < 0.3:
            change["add_tags"] = {rng.choice(["t", "u", "v"])}
        if rng.random() < 0.2:
            change["status"] = rng.choice(["active", "completed"])
        if rng.random() < 0.2:
            change["merge_metadata"] = {"m": rng.randrange(3)}
        if rng.random() < 0.1:
            change.pop("merge_data", None)
            change.pop("remove_data_keys", None)
            change["data"] = {"r": rng.randrange(3)}
        if rng.random() < 0.1:
            change["processor_id"] = rng.choice([None, "p1"])
        if rng.random() < 0.1:
            change.pop("add_tags", None)
            change["tags"] = {rng.choice(["t", "w"])}
        if rng.random() < 0.1:  # (a pair with an expiry takes the base path)
            change["ttl"] = 0.002 if rng.random() < 0.1 else 3600
        elif rng.random() < 0.05:
            change["expires_at"] = None
        return UpdateOp(sid, SessionUpdate(**change), expected_version=expect)

    def append(sid: str, expect: int | None) -> AppendOp:
        events = []
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice([None, None, "k1", "k2", "k3"])
            events.append(EventInput(type=rng.choice("pq"), data={"v": rng.randrange(2)}, key=key))
        extra: dict[str, Any] = {}
        if rng.random() < 0.3:  # (a missing session is created; in a pair: the base path)
            extra["create"] = True
        if rng.random() < 0.1:
            extra["ttl"] = 3600
        return AppendOp(sid, events, expected_version=expect, **extra)

    def expect_for(sid: str) -> int:
        return max(versions.get(sid, 1), 1) + (1 if rng.random() < 0.1 else 0)  # now and then stale

    for _ in range(100):
        clock.advance(0.001 * rng.randrange(1, 5))
        first = rng.choice(ids) if rng.random() < 0.95 else "missing"
        make = update if rng.random() < 0.85 else append  # (an append first: the base path)
        batch: list[Any] = [make(first, expect_for(first))]
        for _ in range(rng.randrange(3)):
            sid = rng.choice([*ids, "d"])
            kinds = [type(op) for op in batch if op.session_id == sid]
            if len(kinds) == 2:
                continue
            make = append if UpdateOp in kinds else update if AppendOp in kinds else make
            pair = bool(kinds)
            expect = None if rng.random() < 0.6 else max(versions.get(sid, 1), 1) + pair
            batch.append(make(sid, expect))
        prepared = [prepare(op, redis._limits) for op in batch]
        taken += redis._commits.takes(prepared)
        outcomes = []
        for store in (redis, memory):
            try:
                outcomes.append([_view(r) for r in await store.commit(batch)])
            except SessionStoreError as exc:
                outcomes.append([type(exc).__name__])
            outcomes[-1].append(hooks.take(store))
        assert outcomes[0] == outcomes[1], batch
        for sid in [*ids, "d"]:
            got = [await _state(store, sid) for store in (redis, memory)]
            assert got[0] == got[1], (sid, batch)
            versions[sid] = got[0][0]
    assert taken >= 60  # (most batches are the path's)


def _view(result: Any) -> Any:
    if not isinstance(result, Session):
        return result
    return (
        result.id,
        result.version,
        result.data,
        result.metadata,
        sorted(result.tags),
        result.status,
        result.event_count,
        result.last_seq,
        result.updated_at,
        result.expires_at,
        result.processor_id,
    )


async def _state(store: Any, sid: str) -> tuple[Any, ...]:
    s = await store.get_session(sid)
    if s is None:
        return (0, None, [])
    events = [(e.seq, e.type, e.data, e.key, e.at) for e in await store.get_events(sid)]
    return (s.version, _view(s), events)


async def test_other_batches_take_the_base_engine(open_redis: Any, redis_url: str) -> None:
    store = await open_redis(redis_url)
    s = await store.create_session()
    not_taken: list[list[UpdateOp | AppendOp]] = [
        [UpdateOp(s.id, SessionUpdate())],  # no expected version first
        [AppendOp(s.id, [EventInput(type="t", key="k")], expected_version=1)],  # not an update
        [UpdateOp(s.id, SessionUpdate(), expected_version=1), UpdateOp(s.id, SessionUpdate())],
        [
            UpdateOp(s.id, SessionUpdate(), expected_version=1),
            AppendOp(s.id, [EventInput(type="t")], ttl=60),  # a pair that sets the expiry
        ],
    ]
    for batch in not_taken:
        prepared = [prepare(op, store._limits) for op in batch]
        assert not store._commits.takes(prepared)
    results = await store.commit(not_taken[0])
    assert isinstance(results[0], Session) and results[0].version == 2
    assert await BaseSessionStore.get_session(store, s.id) == results[0]


async def test_a_commit_under_wait_replicas(
    open_redis: Any, redis_sentinel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``wait_replicas`` the one call goes through ``WAIT``'s own path
    (``script_wait``), and a replica has the batch once it returns."""
    store = await open_redis(redis_sentinel.url, wait_replicas=1)
    s = await store.create_session(group="g")
    state = await store.create_session(group="g")
    sent = count_requests(store, monkeypatch)
    up, appended, other = await store.commit(_adk_batch(s, state, 1))
    assert sent == ["script_wait"]
    assert isinstance(up, Session) and up.version == s.version + 1
    assert isinstance(appended, Session) and appended.version == s.version + 2
    assert isinstance(other, Session) and other.data == {"calls": 1}
    assert await store.get_session(s.id) == appended
    master = redis_sentinel.master_port()
    (port,) = {redis_sentinel.master.port, redis_sentinel.replica.port} - {master}
    replica = redis.Redis(host="127.0.0.1", port=port)  # (a plain blocking read)
    try:
        for key in (store.key_names(s.id, "g")["doc"], store.key_names(state.id, "g")["doc"]):
            assert replica.get(key) == await store.client.get(key)
    finally:
        replica.close()


async def test_cluster_commits_in_one_slot(open_redis: Any, redis_cluster: RedisCluster) -> None:
    store = await open_redis(redis_cluster.url)
    s = await store.create_session(group="g")
    state = await store.create_session(group="g")
    _, appended, other = await store.commit(_adk_batch(s, state, 1))
    assert isinstance(appended, Session) and appended.version == s.version + 2
    assert isinstance(other, Session) and other.data == {"calls": 1}
    apart = [await store.create_session() for _ in range(8)]
    with pytest.raises(TransactionError):  # (some two of them are in different slots)
        await store.commit([UpdateOp(x.id, SessionUpdate(), expected_version=1) for x in apart])
    for x in apart:
        assert (await store.get_session(x.id)).version == 1
