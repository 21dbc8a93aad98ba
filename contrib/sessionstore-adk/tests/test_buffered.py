"""ADK 2.15's ``BufferedSessionService`` over the adapter: it queues a session's events
and, since ``SessionStoreService`` overrides ``append_events``, sends them in batches,
each one atomic commit (skipped on ADK releases without it)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from sessionstore_adk import SessionStoreService, _ids

from sessionstore import OutcomeUnknownError, SessionStore

sessions = pytest.importorskip("google.adk.sessions")
if not hasattr(sessions, "BufferedSessionService"):
    pytest.skip("ADK before 2.15 has no BufferedSessionService", allow_module_level=True)

# Named through the modules: ADK before 2.15 has neither (the type checker runs there too).
SessionPersistenceError = pytest.importorskip("google.adk.errors").SessionPersistenceError
APP = "my_app"


def _event(delta: dict[str, Any]) -> Event:
    return Event(author="agent", invocation_id="inv", actions=EventActions(state_delta=delta))


def _buffered(service: SessionStoreService) -> Any:
    # Its writes wait for a flush (or a read) to go out: a session's queue is one batch.
    config = sessions.BufferedSessionServiceConfig(max_write_delay=timedelta(hours=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # [EXPERIMENTAL]
        return sessions.BufferedSessionService(service, config=config)


async def test_a_sessions_queued_events_are_one_commit(
    service: SessionStoreService, adapter_store: SessionStore
) -> None:
    buffered = _buffered(service)
    sid = _ids.session_id(APP, "u", "s")
    try:
        live = await buffered.create_session(app_name=APP, user_id="u", session_id="s")
        created = await adapter_store.get_session(sid)
        await buffered.append_event(live, _event({"n": -1}))
        await buffered.flush_session(app_name=APP, user_id="u", session_id="s")
        one = await adapter_store.get_session(sid)
        for n in range(5):
            await buffered.append_event(live, _event({"n": n, "user:u": n, "temp:t": n}))
        assert live.state["n"] == 4 and live.state["temp:t"] == 4
        await buffered.flush_session(app_name=APP, user_id="u", session_id="s")
        five = await adapter_store.get_session(sid)
        assert created is not None and one is not None and five is not None
        # five queued events moved the version as far as one event did: one write
        assert five.version - one.version == one.version - created.version
        got = await buffered.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert [e.actions.state_delta for e in got.events] == [
            {"n": -1},
            *({"n": n, "user:u": n} for n in range(5)),
        ]
        assert got.state == {"n": 4, "user:u": 4}
        # the caller's session object keeps writing after its batches
        await buffered.append_event(live, _event({"n": 5}))
        await buffered.flush()
        again = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert again is not None and again.state["n"] == 5
    finally:
        await buffered.aclose()


async def test_a_stale_batch_is_refused_whole(service: SessionStoreService) -> None:
    buffered = _buffered(service)
    try:
        live = await buffered.create_session(app_name=APP, user_id="u", session_id="s")
        other = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert other is not None
        await service.append_event(other, _event({"k": "other"}))
        for n in range(3):
            await buffered.append_event(live, _event({"k": n, "app:a": n}))
        with pytest.raises(SessionPersistenceError):
            await buffered.flush_session(app_name=APP, user_id="u", session_id="s")
        got = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert got.state == {"k": "other"}
        assert len(got.events) == 1
    finally:
        await buffered.aclose()


async def test_a_batch_stored_despite_an_error_is_retried_and_the_chain_goes_on(
    service: SessionStoreService, adapter_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's commit that is stored but reports OutcomeUnknownError (a lost reply):
    the buffered service's retry finds it stored, and the session's next batch (no one
    else wrote) is stored too, not refused as stale."""
    commit = adapter_store.commit
    lost: list[bool] = []

    async def reply_lost_once(ops: Any) -> Any:
        results = await commit(ops)
        if not lost:
            lost.append(True)
            raise OutcomeUnknownError("the reply was lost")
        return results

    config = sessions.BufferedSessionServiceConfig(
        max_write_delay=timedelta(hours=1),
        retry_config=pytest.importorskip("google.adk.workflow").RetryConfig(
            max_attempts=3, initial_delay=0.0
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # [EXPERIMENTAL]
        buffered = sessions.BufferedSessionService(service, config=config)
    try:
        live = await buffered.create_session(app_name=APP, user_id="u", session_id="s")
        monkeypatch.setattr(adapter_store, "commit", reply_lost_once)
        for n in range(3):
            await buffered.append_event(live, _event({"n": n}))
        await buffered.flush_session(app_name=APP, user_id="u", session_id="s")
        assert lost
        await buffered.append_event(live, _event({"n": 3}))
        await buffered.flush_session(app_name=APP, user_id="u", session_id="s")
        got = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert got is not None
        assert [e.actions.state_delta for e in got.events] == [{"n": n} for n in range(4)]
    finally:
        await buffered.aclose()
