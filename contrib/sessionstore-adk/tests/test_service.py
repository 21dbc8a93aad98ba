"""What the adapter promises beyond ADK's contract: the id rule, the storage layout
(grouped, keyed, one atomic commit), re-delivery after an unknown outcome, sliding expiry,
and sharing one store between service objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError
from sessionstore_adk import EVENT_TYPE, SessionStoreService, _ids
from sessionstore_adk._adk_probes import read_marker

from sessionstore import (
    ManualClock,
    SerializationError,
    SessionStore,
    UnsupportedOperationError,
    open_store,
)
from sessionstore.validation import validate_session_id
from tests.strategies import any_text

APP = "my_app"
OpenService = Callable[[], Awaitable[SessionStoreService]]


def _event(author: str = "user", *, delta: dict[str, Any] | None = None, **fields: Any) -> Event:
    actions = EventActions(state_delta=delta) if delta is not None else EventActions()
    return Event(author=author, actions=actions, **fields)


NAMES = [
    ("my app", "user/1", "../../etc/passwd"),
    ("app", "", "s"),
    ("ünïcødé 🚀", "u\x00ser", "a" * 500),
    ("a,b", "c", "d"),
    ("a", "b,c", "d"),
    ('a"', "b", "c"),
]


def test_the_id_rule_is_valid_for_sessionstore_and_separates_names() -> None:
    ids = set()
    for app, user, sid in NAMES:
        for made in (
            _ids.session_id(app, user, sid),
            _ids.user_state_id(app, user),
            _ids.app_state_id(app),
            _ids.group_id(app),
        ):
            assert len(made) <= 128 and made.replace("-", "").isalnum()
        ids.add(_ids.session_id(app, user, sid))
    assert len(ids) == len(NAMES)
    # kinds never meet: the same names as an app, a user and a session differ
    assert len({_ids.app_state_id("x"), _ids.user_state_id("x", ""), _ids.group_id("x")}) == 3


def test_the_ids_of_stored_data_never_change() -> None:
    # ids already stored must keep resolving: pinned to the first release's encoding
    # (json.dumps of the kind and names, ASCII, no spaces; SHA-256), cache or no cache
    for _ in range(2):
        assert _ids.session_id("support", "ada", "s/1 \u00e9\ud800") == (
            "adk-s-0f414208e285121df8c93382162cb79348d9e6727aacd25e3e1cc0d6fc18fa34"
        )
        digest = "a0caefd7187df67b17c6e777d0099ff551c3dadd8694d1a6ad1af4021484a653"
        assert _ids.user_state_id("support", "ada") == "adk-u-" + digest
        assert _ids.user_tag("support", "ada") == "adk-user:" + digest
        digest = "88f63b860a9f73b77594567f94ff818ee233ba24ba68cca64b0b26d58c62ef59"
        assert _ids.app_state_id("support") == "adk-a-" + digest
        assert _ids.app_tag("support") == "adk-app:" + digest
        assert _ids.group_id("support") == (
            "adk-g-0f5f67b7af595748f6442ce5ae912edb8d8aa775a97edb436a6f782245eda78e"
        )


@pytest.mark.parametrize(("app", "user", "sid"), NAMES)
async def test_free_text_names_round_trip(
    service: SessionStoreService, app: str, user: str, sid: str
) -> None:
    created = await service.create_session(app_name=app, user_id=user, session_id=sid)
    await service.append_event(created, _event(delta={"k": 1, "user:u": 2, "app:a": 3}))
    got = await service.get_session(app_name=app, user_id=user, session_id=sid)
    assert got == created
    listed = await service.list_sessions(app_name=app, user_id=user)
    assert [(s.app_name, s.user_id, s.id) for s in listed.sessions] == [(app, user, sid)]
    assert (await service.list_sessions(app_name=app + "x")).sessions == []


async def test_storage_layout(service: SessionStoreService, adapter_store: SessionStore) -> None:
    session = await service.create_session(
        app_name=APP, user_id="u", session_id="s", state={"app:a": 1, "user:b": 2, "c": 3}
    )
    event = _event(delta={"app:a": 10, "user:b": 20, "c": 30, "temp:t": 0})
    await service.append_event(session, event)
    sid = _ids.session_id(APP, "u", "s")
    found = await adapter_store.get_sessions(
        [sid, _ids.app_state_id(APP), _ids.user_state_id(APP, "u")]
    )
    assert {s.group for s in found.values()} == {_ids.group_id(APP)}
    assert found[sid].data == {"c": 30}
    assert found[_ids.app_state_id(APP)].data == {"a": 10}
    assert found[_ids.user_state_id(APP, "u")].data == {"b": 20}
    assert found[sid].tags == {_ids.app_tag(APP), _ids.user_tag(APP, "u")}
    [stored] = await adapter_store.get_events(sid)
    assert stored.type == EVENT_TYPE
    assert stored.key is not None
    assert abs(stored.at.timestamp() - event.timestamp) < 0.001
    assert await adapter_store.get_event(sid, key=stored.key) == stored
    assert "temp:t" not in stored.data["actions"]["state_delta"]


async def test_a_stale_append_writes_nothing_anywhere(
    service: SessionStoreService, adapter_store: SessionStore
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    fresh = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert fresh is not None
    await service.append_event(fresh, _event(invocation_id="first"))
    with pytest.raises(StaleSessionError):
        await service.append_event(
            session, _event(invocation_id="stale", delta={"app:x": 1, "user:y": 2, "z": 3})
        )
    assert await service.get_user_state(app_name=APP, user_id="u") == {}
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert got.state == {}
    assert [e.invocation_id for e in got.events] == ["first"]


async def test_redelivery_after_an_unknown_outcome_is_stored_once(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    # The caller's copy from before the append: a retry after OutcomeUnknownError holds it.
    before = session.model_copy(deep=True)
    event = _event(invocation_id="inv", delta={"n": 1, "user:m": 1})
    await service.append_event(session, event)
    later = _event(invocation_id="later")
    await service.append_event(session, later)
    retried = await service.append_event(before, event.model_copy(deep=True))
    assert retried.id == event.id
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.id for e in got.events] == [event.id, later.id]
    # a different event on the copy, stale since ``later``, is still refused
    with pytest.raises(StaleSessionError):
        await service.append_event(before, _event(invocation_id="other"))


async def test_a_copy_whose_batch_is_redelivered_keeps_writing(
    service: SessionStoreService,
) -> None:
    """A batch whose write's outcome was unknown (stored, but the caller saw an error) is
    sent again on the same session object, as ADK's BufferedSessionService retries it:
    found stored, it brings the object up to date, and the object's next write (no one
    else wrote) is not refused as stale."""
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    unknown = session.model_copy(deep=True)  # the object whose write raised
    batch = [_event(invocation_id="b", delta={"n": n, "user:m": n}) for n in (1, 2)]
    await service.append_events(session, [e.model_copy(deep=True) for e in batch])
    await service.append_events(unknown, batch)  # the retry: stored once
    assert [e.id for e in unknown.events] == [e.id for e in batch]
    assert unknown.state == {"n": 2, "user:m": 2}
    assert read_marker(unknown) == read_marker(session)
    after = _event(invocation_id="after", delta={"n": 3})
    await service.append_events(unknown, [after])
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.id for e in got.events] == [*(e.id for e in batch), after.id]
    assert got.state == {"n": 3, "user:m": 2}


async def test_append_events_is_one_atomic_commit(
    service: SessionStoreService, adapter_store: SessionStore
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    sid = _ids.session_id(APP, "u", "s")
    start = await adapter_store.get_session(sid)
    await service.append_event(session, _event(delta={"n": 0}))
    one = await adapter_store.get_session(sid)
    await service.append_events(session, [_event(delta={"n": n, "user:m": n}) for n in (1, 2, 3)])
    three = await adapter_store.get_session(sid)
    assert start is not None and one is not None and three is not None
    # three events move the stored version as far as one: a single write
    assert three.version - one.version == one.version - start.version
    assert read_marker(session) == three.version
    assert [e.data["actions"]["state_delta"]["n"] for e in await adapter_store.get_events(sid)] == [
        0,
        1,
        2,
        3,
    ]
    # an event that cannot be written stops the whole batch before anything is stored
    bad = _event(delta={"n": "\ud800"})
    with pytest.raises(PydanticSerializationError):
        await service.append_events(session, [_event(delta={"n": 4}), bad])
    after = await adapter_store.get_session(sid)
    assert after is not None and after.version == three.version
    assert len(session.events) == 4


async def test_append_to_a_deleted_session_raises_not_found(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await service.delete_session(app_name=APP, user_id="u", session_id="s")
    with pytest.raises(SessionNotFoundError):
        await service.append_event(session, _event())
    session._storage_update_marker = None
    with pytest.raises(SessionNotFoundError):
        await service.append_event(session, _event())


async def test_state_sessions_deleted_by_hand_come_back(
    service: SessionStoreService, adapter_store: SessionStore
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await adapter_store.delete_session(_ids.app_state_id(APP))
    await adapter_store.delete_session(_ids.user_state_id(APP, "u"))
    await service.append_event(session, _event(delta={"app:a": 1, "user:b": 2}))
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"app:a": 1, "user:b": 2}


async def test_delete_keeps_app_and_user_state(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await service.append_event(session, _event(delta={"app:a": 1, "user:b": 2, "c": 3}))
    await service.delete_session(app_name=APP, user_id="u", session_id="s")
    await service.delete_session(app_name=APP, user_id="u", session_id="never-there")
    again = await service.create_session(app_name=APP, user_id="u", session_id="s")
    assert again.state == {"app:a": 1, "user:b": 2}
    assert again.events == []


async def test_state_values_are_stored_as_adk_stores_them(service: SessionStoreService) -> None:
    when = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    session = await service.create_session(
        app_name=APP, user_id="u", session_id="s", state={"when": when, "none": None}
    )
    assert session.state == {"when": "2026-12-06T03:00:00Z", "none": None}
    await service.append_event(session, _event(delta={"none": 1, "nested": {"a": [1, 2.5]}}))
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"when": "2026-12-06T03:00:00Z", "none": 1, "nested": {"a": [1, 2.5]}}


async def test_recent_events_read_only_what_is_asked(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    start = time.time()
    for i in range(30):
        await service.append_event(session, _event(invocation_id=str(i), timestamp=start + i))
    config = GetSessionConfig(num_recent_events=20)
    got = await service.get_session(app_name=APP, user_id="u", session_id="s", config=config)
    assert got is not None
    assert [e.invocation_id for e in got.events] == [str(i) for i in range(10, 30)]
    # a bound between two events of the same millisecond is kept exactly
    config = GetSessionConfig(after_timestamp=start + 25.0004)
    got = await service.get_session(app_name=APP, user_id="u", session_id="s", config=config)
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["26", "27", "28", "29"]


async def test_two_service_objects_share_the_data(
    service: SessionStoreService, open_service: OpenService
) -> None:
    other = await open_service()
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await service.append_event(session, _event(delta={"user:n": 1}))
    seen = await other.get_session(app_name=APP, user_id="u", session_id="s")
    assert seen == session
    await other.append_event(seen, _event(delta={"user:n": 2}))
    with pytest.raises(StaleSessionError):
        await service.append_event(session, _event(delta={"user:n": 3}))
    assert await service.get_user_state(app_name=APP, user_id="u") == {"n": 2}


async def test_concurrent_creates_of_one_user_share_the_state_sessions(
    service: SessionStoreService, open_service: OpenService
) -> None:
    other = await open_service()
    made = await asyncio.gather(
        *(
            svc.create_session(app_name=APP, user_id="u", state={f"user:k{i}": i, "app:x": i})
            for i, svc in enumerate([service, other] * 3)
        )
    )
    assert len({s.id for s in made}) == 6
    state = await service.get_user_state(app_name=APP, user_id="u")
    assert state == {f"k{i}": i for i in range(6)}


async def test_sliding_expiry(adapter_store: SessionStore) -> None:
    service = SessionStoreService(adapter_store, ttl=3600)
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    sid = _ids.session_id(APP, "u", "s")
    created = await adapter_store.get_session(sid)
    assert created is not None and created.expires_at is not None
    await asyncio.sleep(0.01)
    await service.append_event(session, _event())
    appended = await adapter_store.get_session(sid)
    assert appended is not None and appended.expires_at is not None
    assert appended.expires_at > created.expires_at
    scoped = await adapter_store.get_session(_ids.user_state_id(APP, "u"))
    assert scoped is not None and scoped.expires_at is None


async def test_a_service_opened_from_a_url_owns_its_store(tmp_path: Any) -> None:
    url = f"sessionstore+file://{tmp_path / 'sessions'}"
    service = SessionStoreService(url)
    created = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await service.close()
    async with SessionStoreService(uri=url, agents_dir="/ignored") as again:
        assert await again.get_session(app_name=APP, user_id="u", session_id="s") == created
    with pytest.raises(TypeError):
        SessionStoreService(again.store, namespace="x")


async def test_a_store_without_the_event_log_is_refused_with_a_clear_error() -> None:
    async with open_store("memory://") as store:
        # the same memory store, declaring no event log (as a third-party driver might)
        plain = type(store).capabilities.fget  # type: ignore[attr-defined]
        no_log = type(
            "NoEventLog",
            (type(store),),
            {"capabilities": property(lambda self: replace(plain(self), event_log=False))},
        )
        store.__class__ = no_log
        service = SessionStoreService(store)
        session = await service.create_session(app_name=APP, user_id="u")
        with pytest.raises(UnsupportedOperationError, match=r"Capabilities\.event_log"):
            await service.append_event(session, _event(delta={"x": 1}))
        got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
        assert got is not None
        assert (got.state, got.events) == ({}, [])


async def test_an_expired_session_is_gone_and_its_id_free() -> None:
    clock = ManualClock()
    async with open_store("memory://", clock=clock) as store:
        service = SessionStoreService(store, ttl=10)
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        clock.advance(5)
        await service.append_event(session, _event(delta={"user:kept": True}))  # slides
        clock.advance(8)
        assert await service.get_session(app_name=APP, user_id="u", session_id="s") is not None
        clock.advance(3)
        assert await service.get_session(app_name=APP, user_id="u", session_id="s") is None
        assert (await service.list_sessions(app_name=APP)).sessions == []
        with pytest.raises(SessionNotFoundError):
            await service.append_event(session, _event())
        again = await service.create_session(app_name=APP, user_id="u", session_id="s")
        assert again.state == {"user:kept": True}  # user state never expires


ANY_TEXT = any_text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.tuples(ANY_TEXT, ANY_TEXT, ANY_TEXT), st.tuples(ANY_TEXT, ANY_TEXT, ANY_TEXT))
def test_the_id_rule_is_injective_on_any_text(
    a: tuple[str, str, str], b: tuple[str, str, str]
) -> None:
    """Distinct names (lone surrogates, separators, quotes included) never share an id,
    a group or a listing tag; every id is a valid sessionstore id."""
    for app, user, sid in (a, b):
        for made in (
            _ids.session_id(app, user, sid),
            _ids.user_state_id(app, user),
            _ids.app_state_id(app),
            _ids.group_id(app),
        ):
            assert validate_session_id(made) == made
    assert (a == b) == (_ids.session_id(*a) == _ids.session_id(*b))
    assert (a[:2] == b[:2]) == (_ids.user_state_id(*a[:2]) == _ids.user_state_id(*b[:2]))
    assert (a[:2] == b[:2]) == (_ids.user_tag(*a[:2]) == _ids.user_tag(*b[:2]))
    assert (a[0] == b[0]) == (_ids.app_tag(a[0]) == _ids.app_tag(b[0]))
    assert (a[0] == b[0]) == (_ids.group_id(a[0]) == _ids.group_id(b[0]))


AWKWARD_USERS = ["\u00e9", "e\u0301", "Ada", "ada", "a,b", "a/b", " ada", "ada\x00", ""]


async def test_awkward_names_are_separate_and_list_back_exactly(
    service: SessionStoreService,
) -> None:
    """Users whose names differ only by normalisation, case, separators or a NUL are
    different users: each lists exactly its own sessions, names read back exactly."""
    for n, user in enumerate(AWKWARD_USERS):
        for sid in (f"s{n}", f"s{n}/\u00e9"):
            await service.create_session(app_name=APP, user_id=user, session_id=sid)
    for n, user in enumerate(AWKWARD_USERS):
        listed = await service.list_sessions(app_name=APP, user_id=user)
        assert sorted(s.id for s in listed.sessions) == [f"s{n}", f"s{n}/\u00e9"], user
        assert {s.user_id for s in listed.sessions} == {user}
        got = await service.get_session(app_name=APP, user_id=user, session_id=f"s{n}/\u00e9")
        assert got is not None and (got.user_id, got.id) == (user, f"s{n}/\u00e9")
        other = AWKWARD_USERS[n - 1]
        assert await service.get_session(app_name=APP, user_id=other, session_id=f"s{n}") is None


@pytest.mark.parametrize(
    "names", [("a\ud800", "u", "s"), (APP, "u\udc00", "s"), (APP, "u", "s\ud800")]
)
async def test_a_lone_surrogate_name_is_refused_typed_and_writes_nothing(
    service: SessionStoreService, adapter_store: SessionStore, names: tuple[str, str, str]
) -> None:
    """A lone surrogate has no UTF-8 encoding: the create is refused with
    SerializationError and nothing is stored; reads find nothing."""
    app, user, sid = names
    await service.create_session(app_name=APP, user_id="kept", session_id="k")
    before = await adapter_store.count_sessions()
    with pytest.raises(SerializationError):
        await service.create_session(app_name=app, user_id=user, session_id=sid)
    assert await adapter_store.count_sessions() == before
    assert await service.get_session(app_name=app, user_id=user, session_id=sid) is None
    assert (await service.list_sessions(app_name=app, user_id=user)).sessions == []


async def test_a_redelivered_tail_of_anothers_batch_leaves_the_copy_stale(
    service: SessionStoreService,
) -> None:
    """Only the write that the copy's own re-delivery made brings it up to date: a copy
    that re-delivers the last event of a batch written by another object (the event is
    the newest, but the batch's first one is not on the copy) stays stale."""
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    copy = session.model_copy(deep=True)
    first, last = _event(invocation_id="1", delta={"n": 1}), _event(invocation_id="2")
    await service.append_events(session, [first, last.model_copy(deep=True)])
    await service.append_events(copy, [last])
    assert [e.id for e in copy.events] != [first.id, last.id]
    with pytest.raises(StaleSessionError):
        await service.append_events(copy, [_event(invocation_id="3")])
