"""ADK's session-service contract, on every built-in driver.

ADK holds each ``BaseSessionService`` to a shared contract: the tests of its
``tests/unittests/sessions/test_session_service.py`` that take the parametrized
``session_service`` fixture (in-memory, database, sqlite, ...), and the stale-writer tests
it runs on ``DatabaseSessionService``. Each test here restates one of them, under the
same name, against ``SessionStoreService`` on memory, file, SQLite, Redis and PostgreSQL
(the ``adapter_driver`` parameter), written for this repository, not copied.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from google.adk import __version__ as adk_version
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.genai import types
from sessionstore_adk import SessionStoreService

APP = "my_app"


def _event(author: str = "user", *, delta: dict[str, Any] | None = None, **fields: Any) -> Event:
    actions = EventActions(state_delta=delta) if delta is not None else EventActions()
    return Event(author=author, actions=actions, **fields)


async def test_get_empty_session(service: SessionStoreService) -> None:
    assert await service.get_session(app_name=APP, user_id="u", session_id="123") is None


async def test_create_get_session(service: SessionStoreService) -> None:
    created = await service.create_session(app_name=APP, user_id="u", state={"key": "value"})
    assert (created.app_name, created.user_id, created.state) == (APP, "u", {"key": "value"})
    assert created.id
    assert created.last_update_time <= time.time()
    got = await service.get_session(app_name=APP, user_id="u", session_id=created.id)
    assert got == created
    await service.delete_session(app_name=APP, user_id="u", session_id=created.id)
    assert await service.get_session(app_name=APP, user_id="u", session_id=created.id) is None


async def test_create_and_list_sessions(service: SessionStoreService) -> None:
    ids = [f"session{i}" for i in range(5)]
    for sid in ids:
        await service.create_session(
            app_name=APP, user_id="u", session_id=sid, state={"key": "value" + sid}
        )
    listed = (await service.list_sessions(app_name=APP, user_id="u")).sessions
    assert sorted(s.id for s in listed) == ids
    assert all(s.state == {"key": "value" + s.id} for s in listed)
    assert all(s.events == [] for s in listed)


async def test_list_sessions_all_users(service: SessionStoreService) -> None:
    for user, sid in (("user1", "session1a"), ("user1", "session1b"), ("user2", "session2a")):
        await service.create_session(
            app_name=APP, user_id=user, session_id=sid, state={"key": "value" + sid[-2:]}
        )
    one = {
        s.id: s.state for s in (await service.list_sessions(app_name=APP, user_id="user1")).sessions
    }
    assert one == {"session1a": {"key": "value1a"}, "session1b": {"key": "value1b"}}
    two = (await service.list_sessions(app_name=APP, user_id="user2")).sessions
    assert [(s.id, s.state) for s in two] == [("session2a", {"key": "value2a"})]
    everyone = (await service.list_sessions(app_name=APP, user_id=None)).sessions
    assert {s.id: s.user_id for s in everyone} == {
        "session1a": "user1",
        "session1b": "user1",
        "session2a": "user2",
    }
    assert {s.id: s.state["key"] for s in everyone} == {
        "session1a": "value1a",
        "session1b": "value1b",
        "session2a": "value2a",
    }


async def test_list_sessions_ordered_by_last_update_time(service: SessionStoreService) -> None:
    first = await service.create_session(app_name=APP, user_id="u", session_id="first")
    await service.create_session(app_name=APP, user_id="u", session_id="second")
    # an append moves "first" to the end: oldest last_update_time first
    await service.append_event(first, _event(timestamp=time.time() + 10))
    listed = (await service.list_sessions(app_name=APP, user_id="u")).sessions
    assert [s.id for s in listed] == ["second", "first"]


async def test_app_state_is_shared_by_all_users_of_app(service: SessionStoreService) -> None:
    s1 = await service.create_session(
        app_name=APP, user_id="u1", session_id="s1", state={"app:k1": "v1"}
    )
    await service.append_event(s1, _event(invocation_id="inv1", delta={"app:k2": "v2"}))
    s2 = await service.create_session(app_name=APP, user_id="u2", session_id="s2")
    assert s2.state == {"app:k1": "v1", "app:k2": "v2"}
    again = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert again is not None
    assert (again.state["app:k1"], again.state["app:k2"]) == ("v1", "v2")


async def test_user_state_is_shared_only_by_user_sessions(service: SessionStoreService) -> None:
    s1 = await service.create_session(
        app_name=APP, user_id="u1", session_id="s1", state={"user:k1": "v1"}
    )
    await service.append_event(s1, _event(invocation_id="inv1", delta={"user:k2": "v2"}))
    s1b = await service.create_session(app_name=APP, user_id="u1", session_id="s1b")
    assert s1b.state == {"user:k1": "v1", "user:k2": "v2"}
    s2 = await service.create_session(app_name=APP, user_id="u2", session_id="s2")
    assert s2.state == {}


async def test_session_state_is_not_shared(service: SessionStoreService) -> None:
    s1 = await service.create_session(
        app_name=APP, user_id="u1", session_id="s1", state={"sk1": "v1"}
    )
    await service.append_event(s1, _event(invocation_id="inv1", delta={"sk2": "v2"}))
    again = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert again is not None
    assert (again.state["sk1"], again.state["sk2"]) == ("v1", "v2")
    other = await service.create_session(app_name=APP, user_id="u1", session_id="s1b")
    assert other.state == {}


async def test_temp_state_is_not_persisted_in_state_or_events(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    event = _event(invocation_id="inv1", delta={"temp:k1": "v1", "sk": "v2"})
    await service.append_event(session, event)
    assert (session.state["temp:k1"], session.state["sk"]) == ("v1", "v2")
    assert event.actions.state_delta == {"sk": "v2"}
    stored = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert stored is not None
    assert stored.state == {"sk": "v2"}
    assert stored.events[0].actions.state_delta == {"sk": "v2"}


async def test_temp_state_visible_across_sequential_events(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s_seq")
    first = _event("agent1", invocation_id="inv1", delta={"temp:output": "result_from_a1"})
    await service.append_event(session, first)
    assert session.state["temp:output"] == "result_from_a1"
    assert "temp:output" not in first.actions.state_delta


async def test_get_session_respects_user_id(service: SessionStoreService) -> None:
    mine = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await service.append_event(mine, _event(invocation_id="inv1"))
    await service.create_session(app_name=APP, user_id="u2", session_id="s1")
    theirs = await service.get_session(app_name=APP, user_id="u2", session_id="s1")
    assert theirs is not None
    assert (theirs.user_id, theirs.events) == ("u2", [])


async def test_create_session_with_existing_id_raises_error(service: SessionStoreService) -> None:
    await service.create_session(app_name=APP, user_id="u", session_id="existing_session")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="u", session_id="existing_session")


async def test_create_session_with_padded_duplicate_id_raises_error(
    service: SessionStoreService,
) -> None:
    await service.create_session(app_name=APP, user_id="u", session_id="s1")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="u", session_id="  s1 ")


async def test_padded_session_id_reads_and_deletes(service: SessionStoreService) -> None:
    created = await service.create_session(app_name=APP, user_id="u", session_id=" padded ")
    assert created.id == "padded"
    got = await service.get_session(app_name=APP, user_id="u", session_id="padded ")
    assert got is not None
    assert got.id == "padded"
    await service.delete_session(app_name=APP, user_id="u", session_id=" padded")
    assert await service.get_session(app_name=APP, user_id="u", session_id="padded") is None


async def test_append_event_bytes(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    content = types.Content(
        role="user", parts=[types.Part.from_bytes(data=b"test_image_data", mime_type="image/png")]
    )
    grounding = types.GroundingMetadata(
        search_entry_point=types.SearchEntryPoint(sdk_blob=b"test_sdk_blob")
    )
    event = Event(invocation_id="inv", author="user", content=content, grounding_metadata=grounding)
    await service.append_event(session, event)
    assert session.events[0].content == content
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert len(got.events) == 1
    assert got.events[0].content == content
    assert got.events[0].grounding_metadata == grounding


async def test_append_event_complete(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    event = Event(
        invocation_id="invocation",
        author="user",
        content=types.Content(role="user", parts=[types.Part(text="test_text")]),
        turn_complete=True,
        partial=False,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"},
        error_code="error_code",
        error_message="error_message",
        interrupted=True,
        grounding_metadata=types.GroundingMetadata(web_search_queries=["query1"]),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1, candidates_token_count=1, total_token_count=2
        ),
        citation_metadata=types.CitationMetadata(),
        custom_metadata={"custom_key": "custom_value"},
        timestamp=1700000000.123,
        input_transcription=types.Transcription(text="input transcription", finished=True),
        output_transcription=types.Transcription(text="output transcription", finished=True),
    )
    await service.append_event(session, event)
    assert await service.get_session(app_name=APP, user_id="u", session_id=session.id) == session


async def test_session_last_update_time_updates_on_event(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    before = session.last_update_time
    await service.append_event(session, _event(invocation_id="inv", timestamp=before + 10))
    assert session.last_update_time == pytest.approx(before + 10, abs=1e-6)
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert got.last_update_time == pytest.approx(before + 10, abs=1e-6)


async def test_get_session_with_config(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    for i in range(1, 6):
        await service.append_event(session, _event(timestamp=float(i)))

    async def events(config: GetSessionConfig | None) -> list[float]:
        got = await service.get_session(
            app_name=APP, user_id="u", session_id=session.id, config=config
        )
        assert got is not None
        return [e.timestamp for e in got.events]

    assert await events(None) == [1, 2, 3, 4, 5]
    assert await events(GetSessionConfig(num_recent_events=0)) == []
    assert await events(GetSessionConfig(num_recent_events=3)) == [3, 4, 5]
    assert await events(GetSessionConfig(after_timestamp=4.0)) == [4, 5]
    assert await events(GetSessionConfig(after_timestamp=50.0)) == []
    both = GetSessionConfig(after_timestamp=4.0, num_recent_events=3)
    assert await events(both) == [4, 5]


async def test_partial_events_are_not_persisted(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    await service.append_event(session, _event(partial=True))
    assert session.events == []
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert got.events == []


async def test_append_event_to_stale_session(service: SessionStoreService) -> None:
    now = time.time()
    original = await service.create_session(app_name=APP, user_id="u")
    await service.append_event(
        original, _event(invocation_id="inv1", timestamp=now + 1, delta={"sk1": "v1"})
    )
    updated = await service.get_session(app_name=APP, user_id="u", session_id=original.id)
    assert updated is not None
    await service.append_event(
        updated, _event(invocation_id="inv2", timestamp=now + 2, delta={"sk2": "v2"})
    )
    assert original.last_update_time < updated.last_update_time
    assert len(original.events) == 1
    assert "sk2" not in original.state
    with pytest.raises(StaleSessionError, match="modified in storage"):
        await service.append_event(
            original, _event(invocation_id="inv3", timestamp=now + 3, delta={"sk3": "v3"})
        )
    final = await service.get_session(app_name=APP, user_id="u", session_id=original.id)
    assert final is not None
    assert [e.invocation_id for e in final.events] == ["inv1", "inv2"]
    assert (final.state["sk1"], final.state["sk2"], final.state.get("sk3")) == ("v1", "v2", None)


async def test_append_event_concurrent_stale_sessions_reject_stale_writer(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    rounds = 8
    for i in range(rounds):
        latest = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
        assert latest is not None
        copies = (latest.model_copy(deep=True), latest.model_copy(deep=True))
        base = latest.last_update_time + 10.0
        results = await asyncio.gather(
            *(
                service.append_event(
                    copy,
                    _event(
                        invocation_id=f"inv{i}-{n}",
                        timestamp=base + n,
                        delta={f"sk{i}-{n}": f"v{i}-{n}"},
                    ),
                )
                for n, copy in enumerate(copies, start=1)
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], StaleSessionError)
        assert "modified in storage" in str(errors[0])
    final = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert final is not None
    assert len(final.events) == rounds
    for i in range(rounds):
        values = {final.state.get(f"sk{i}-1"), final.state.get(f"sk{i}-2")}
        assert None in values
        assert values - {None} <= {f"v{i}-1", f"v{i}-2"}
        assert len(values - {None}) == 1


async def test_append_event_allows_timestamp_drift_for_current_session(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s1")
    first = _event(invocation_id="inv1", timestamp=session.last_update_time + 10)
    await service.append_event(session, first)
    session.last_update_time -= 0.0001  # a float round trip, same stored revision
    await service.append_event(
        session, _event(invocation_id="inv2", timestamp=first.timestamp + 10)
    )
    got = await service.get_session(app_name=APP, user_id="u", session_id="s1")
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["inv1", "inv2"]


async def test_append_event_allows_markerless_current_session(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s1")
    first = _event(invocation_id="inv1", timestamp=session.last_update_time + 10)
    await service.append_event(session, first)
    session._storage_update_marker = None  # a session object another service built
    session.last_update_time -= 0.0001
    await service.append_event(
        session, _event(invocation_id="inv2", timestamp=first.timestamp + 10)
    )
    got = await service.get_session(app_name=APP, user_id="u", session_id="s1")
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["inv1", "inv2"]


async def test_get_user_state_returns_empty_dict_when_no_state_exists(
    service: SessionStoreService,
) -> None:
    assert await service.get_user_state(app_name=APP, user_id="u1") == {}


async def test_get_user_state_returns_state_written_via_append_event(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u1")
    delta = {"user:profile": {"name": "Alice"}, "session_key": 1}
    await service.append_event(session, _event("system", delta=delta))
    assert await service.get_user_state(app_name=APP, user_id="u1") == {
        "profile": {"name": "Alice"}
    }


async def test_get_user_state_is_not_visible_across_users(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u1")
    await service.append_event(session, _event("system", delta={"user:secret": "only-for-u1"}))
    assert await service.get_user_state(app_name=APP, user_id="u2") == {}


async def test_get_user_state_is_not_visible_across_apps(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u1")
    await service.append_event(session, _event("system", delta={"user:data": "only-app-a"}))
    assert await service.get_user_state(app_name="other_app", user_id="u1") == {}


async def test_get_user_state_available_before_session_is_created(
    service: SessionStoreService,
) -> None:
    first = await service.create_session(app_name=APP, user_id="u1")
    await service.append_event(first, _event("system", delta={"user:ctx": {"v": 1}}))
    assert await service.get_user_state(app_name=APP, user_id="u1") == {"ctx": {"v": 1}}


async def test_get_user_state_reflects_latest_write(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u1")
    for n in (1, 2):
        await service.append_event(session, _event("system", delta={"user:counter": n}))
    assert (await service.get_user_state(app_name=APP, user_id="u1"))["counter"] == 2


async def test_equal_redelivery_is_stored_once(service: SessionStoreService) -> None:
    # InMemorySessionService's contract: an equal re-delivery (the same object, or a
    # copy with the same id and fields) is kept once and its delta applied once.
    session = await service.create_session(app_name=APP, user_id="u")
    event = _event(invocation_id="inv1", delta={"user:n": 1})
    await service.append_event(session, event)
    await service.append_event(session, event)
    await service.append_event(session, event.model_copy(deep=True))
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert [e.id for e in got.events] == [event.id]
    assert len(session.events) == 1


async def test_distinct_events_sharing_an_id_are_both_kept(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u")
    await service.append_event(session, _event(invocation_id="a", id="fixed"))
    await service.append_event(session, _event(invocation_id="b", id="fixed"))
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["a", "b"]


# -- ADK 2.14 and 2.15 (docs/decisions.md, "ADK 2.14 and 2.15"): what their session
# services changed, restated for the adapter on every driver.

ADK_VERSION = tuple(int(p) for p in adk_version.split(".")[:2])


async def _timestamps(
    service: BaseSessionService, session_id: str, config: GetSessionConfig
) -> list[float]:
    got = await service.get_session(app_name=APP, user_id="u", session_id=session_id, config=config)
    assert got is not None
    return [e.timestamp for e in got.events]


async def test_get_session_after_timestamp_filters_then_takes_the_newest(
    service: SessionStoreService,
) -> None:
    # GetSessionConfig's rule: the events with timestamp >= after_timestamp (each of them,
    # in the order appended, also when timestamps go back), then the newest
    # num_recent_events of those. ADK 2.15's in-memory service follows it (2.13's cut
    # after the newest older event); its database and SQLite services always did.
    stamps = [1.0, 5.0, 3.0, 6.0, 2.0, 4.0]
    reference = InMemorySessionService()
    for side in (service, reference):
        session = await side.create_session(app_name=APP, user_id="u", session_id="s")
        for stamp in stamps:
            await side.append_event(session, _event(timestamp=stamp))
    cases = [
        (GetSessionConfig(after_timestamp=3.0), [5.0, 3.0, 6.0, 4.0]),
        (GetSessionConfig(after_timestamp=3.0, num_recent_events=3), [3.0, 6.0, 4.0]),
        (GetSessionConfig(after_timestamp=6.0, num_recent_events=5), [6.0]),
        (GetSessionConfig(after_timestamp=0.0, num_recent_events=2), [2.0, 4.0]),
        (GetSessionConfig(after_timestamp=7.0), []),
    ]
    for config, want in cases:
        assert await _timestamps(service, "s", config) == want, config
        if ADK_VERSION >= (2, 15):
            assert await _timestamps(reference, "s", config) == want, config


async def test_get_session_after_timestamp_in_the_millisecond_of_older_events(
    service: SessionStoreService,
) -> None:
    # The store keeps event times to the millisecond: events just below the bound in its
    # millisecond must neither be returned nor take the places of older matching ones.
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    stamps = [1000.0009, 999.5, 1000.0001, 1000.0002, 1000.0008, 1000.0003]
    for stamp in stamps:
        await service.append_event(session, _event(timestamp=stamp))
    both = GetSessionConfig(after_timestamp=1000.0008, num_recent_events=2)
    assert await _timestamps(service, "s", both) == [1000.0009, 1000.0008]
    only = GetSessionConfig(after_timestamp=1000.0002)
    assert await _timestamps(service, "s", only) == [1000.0009, 1000.0002, 1000.0008, 1000.0003]


async def test_create_session_with_an_empty_id_generates_one(service: SessionStoreService) -> None:
    # 2.14: an empty session_id is no id at all (the database service used to store "").
    first = await service.create_session(app_name=APP, user_id="u", session_id="")
    second = await service.create_session(app_name=APP, user_id="u", session_id="  ")
    assert first.id and second.id and first.id != second.id
    listed = (await service.list_sessions(app_name=APP, user_id="u")).sessions
    assert sorted(s.id for s in listed) == sorted([first.id, second.id])


async def test_non_utf8_bytes_in_state_are_stored_as_base64(service: SessionStoreService) -> None:
    # 2.14: bytes in state that are not UTF-8 are written as base64 text by ADK's
    # persistent services (2.13's failed the write); UTF-8 bytes as their text.
    session = await service.create_session(
        app_name=APP, user_id="u", session_id="s", state={"raw": b"\xff\x00", "text": b"ok"}
    )
    delta = {"user:blob": [b"\xfe"], "app:nested": {"b": b"\x80"}, "n": 1}
    await service.append_event(session, _event(delta=delta))
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert got.state == {
        "raw": "/wA=",
        "text": "ok",
        "n": 1,
        "user:blob": ["/g=="],
        "app:nested": {"b": "gA=="},
    }
    assert got.events[0].actions.state_delta["n"] == 1


async def test_append_events_has_the_effect_of_append_event_for_each(
    service: SessionStoreService,
) -> None:
    # 2.15's BaseSessionService.append_events: all of the events or none, in order, with
    # the same effect on the session object and the store as append_event for each.
    batched = await service.create_session(app_name=APP, user_id="u", session_id="batched")
    single = await service.create_session(app_name="other", user_id="u", session_id="single")

    def events() -> list[Event]:
        return [
            _event(id="e1", invocation_id="i", timestamp=10.0, delta={"a": 1, "temp:t": 1}),
            _event(id="e2", invocation_id="i", timestamp=11.0, partial=True),
            _event(id="e3", invocation_id="i", timestamp=12.0, delta={"a": 2, "app:x": 1}),
            _event(id="e4", invocation_id="i", timestamp=13.0, delta={"user:y": [1]}),
        ]

    returned = await service.append_events(batched, events())
    one_by_one = [await service.append_event(single, e) for e in events()]
    assert [e.model_dump() for e in returned] == [e.model_dump() for e in one_by_one]
    assert [e.id for e in returned] == ["e1", "e2", "e3", "e4"]
    for session in (batched, single):
        assert [e.id for e in session.events] == ["e1", "e3", "e4"]
        assert session.state == {"a": 2, "temp:t": 1, "app:x": 1, "user:y": [1]}
        assert session.last_update_time == 13.0
        stored = await service.get_session(
            app_name=session.app_name, user_id="u", session_id=session.id
        )
        assert stored is not None
        assert stored.events == session.events
        assert stored.state == {"a": 2, "app:x": 1, "user:y": [1]}
    assert await service.get_user_state(app_name=APP, user_id="u") == {"y": [1]}
    assert await service.append_events(batched, []) == []
    # the session object still writes: its revision is the stored one
    await service.append_event(batched, _event(timestamp=14.0))


async def test_append_events_to_a_stale_session_stores_none(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    fresh = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert fresh is not None
    await service.append_event(fresh, _event(invocation_id="first", delta={"k": 0}))
    batch = [_event(invocation_id=f"stale{i}", delta={"k": i, "user:u": i}) for i in range(3)]
    with pytest.raises(StaleSessionError, match="modified in storage"):
        await service.append_events(session, batch)
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["first"]
    assert got.state == {"k": 0}
    assert await service.get_user_state(app_name=APP, user_id="u") == {}


async def test_append_events_concurrent_stale_sessions_reject_stale_writer(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    for i in range(4):
        latest = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
        assert latest is not None
        copies = (latest.model_copy(deep=True), latest.model_copy(deep=True))
        results = await asyncio.gather(
            *(
                service.append_events(
                    copy, [_event(invocation_id=f"{i}-{n}-{j}", delta={f"k{i}": n}) for j in "ab"]
                )
                for n, copy in enumerate(copies)
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], StaleSessionError), results
    final = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert final is not None
    # each round stored one writer's two events, together
    ids = [e.invocation_id for e in final.events]
    assert len(ids) == 8
    pairs = zip(ids[::2], ids[1::2], strict=True)
    assert all(a[:-1] == b[:-1] and (a[-1], b[-1]) == ("a", "b") for a, b in pairs)


async def test_append_events_redelivered_after_an_unknown_outcome_is_stored_once(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    before = session.model_copy(deep=True)
    stale = session.model_copy(deep=True)
    batch = [_event(invocation_id=f"i{n}", delta={"user:n": n}) for n in range(3)]
    await service.append_events(session, batch)
    retried = await service.append_events(before, [e.model_copy(deep=True) for e in batch])
    assert [e.id for e in retried] == [e.id for e in batch]
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.id for e in got.events] == [e.id for e in batch]
    # part of a stored batch and a new event, on a copy from before it: a stale write,
    # refused whole
    with pytest.raises(StaleSessionError):
        await service.append_events(stale, [batch[0].model_copy(deep=True), _event()])


async def test_append_events_stores_an_equal_redelivery_once(service: SessionStoreService) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    event = _event(invocation_id="inv", delta={"user:n": 1})
    await service.append_events(session, [event, event, event.model_copy(deep=True)])
    await service.append_events(session, [event.model_copy(deep=True)])
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.id for e in got.events] == [event.id]
    assert len(session.events) == 1


async def test_append_events_to_a_missing_session_raises_not_found(
    service: SessionStoreService,
) -> None:
    session = await service.create_session(app_name=APP, user_id="u", session_id="s")
    await service.delete_session(app_name=APP, user_id="u", session_id="s")
    with pytest.raises(SessionNotFoundError):
        await service.append_events(session, [_event(), _event()])
    assert await service.get_session(app_name=APP, user_id="u", session_id="s") is None


async def test_create_session_drops_temp_state(service: SessionStoreService) -> None:
    # temp: keys live for one invocation: never stored, from create_session either (2.14
    # made the Vertex AI service drop them too, as the others did).
    created = await service.create_session(
        app_name=APP, user_id="u", session_id="s", state={"temp:t": 1, "k": 1, "user:u": 2}
    )
    assert created.state == {"k": 1, "user:u": 2}
    got = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None and got.state == {"k": 1, "user:u": 2}
