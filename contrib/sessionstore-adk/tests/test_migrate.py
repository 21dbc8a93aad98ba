"""Sessions move over from ADK's own services with their events and state, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, Session
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types
from sessionstore_adk import SessionStoreService, copy_sessions

APP = "my_app"


def _same(a: Session, b: Session) -> bool:
    fields = ("id", "app_name", "user_id", "state", "events", "last_update_time")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


async def _fill(source: BaseSessionService) -> None:
    for user, count in (("ada", 3), ("grace", 1)):
        for n in range(count):
            session = await source.create_session(
                app_name=APP, user_id=user, state={"n": n, "user:lang": "en", "app:v": 1}
            )
            for i in range(n + 2):
                await source.append_event(
                    session,
                    Event(
                        author="user" if i % 2 == 0 else "agent",
                        invocation_id=f"inv{i}",
                        content=types.Content(role="user", parts=[types.Part(text=f"m{i}")]),
                        actions=EventActions(state_delta={"i": i, f"user:seen{n}": True}),
                    ),
                )


@pytest.mark.parametrize("kind", ["adk-sqlite", "adk-memory"])
async def test_copy_sessions_from_adk_services(
    service: SessionStoreService, tmp_path: Path, kind: str
) -> None:
    source: BaseSessionService = (
        SqliteSessionService(str(tmp_path / "adk.db"))
        if kind == "adk-sqlite"
        else InMemorySessionService()
    )
    await _fill(source)
    assert await copy_sessions(source, service, app_name=APP) == 4
    theirs = (await source.list_sessions(app_name=APP)).sessions
    ours = (await service.list_sessions(app_name=APP)).sessions
    assert [(s.user_id, s.id, s.state) for s in ours] == [
        (s.user_id, s.id, s.state) for s in theirs
    ]
    for brief in theirs:
        want = await source.get_session(app_name=APP, user_id=brief.user_id, session_id=brief.id)
        got = await service.get_session(app_name=APP, user_id=brief.user_id, session_id=brief.id)
        assert want is not None and got is not None
        assert _same(got, want)
        # and the copy goes on working: an append on the copied session
        await service.append_event(got, Event(author="user", invocation_id="after"))
    for user in ("ada", "grace"):
        assert await service.get_user_state(app_name=APP, user_id=user) == (
            await source.get_user_state(app_name=APP, user_id=user)
        )
    assert await copy_sessions(source, service, app_name=APP) == 0
    if isinstance(source, SqliteSessionService):
        await source.close()
