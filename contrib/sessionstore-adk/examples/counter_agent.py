"""A Google ADK agent whose sessions, events and state live in a sessionstore store.

Run it twice: ``python examples/counter_agent.py file://./adk-sessions`` (any sessionstore
URL; the default is that file store). The agent counts messages per session (``count``),
per user (``user:count``, shared by the user's sessions) and per app (``app:count``); a
second service object, as a restarted process would open, reads everything back.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator

from google.adk.agents import BaseAgent
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events import Event, EventActions
from google.adk.runners import Runner
from google.genai import types
from sessionstore_adk import SessionStoreService

APP = "counter"


class CounterAgent(BaseAgent):
    """Answers every message with how many it has seen (no model involved)."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        state = ctx.session.state
        count, mine, everyone = (
            int(state.get(k, 0)) + 1 for k in ("count", "user:count", "app:count")
        )
        text = f"message {count} of this session, {mine} of yours, {everyone} in the app"
        yield Event(
            author=self.name,
            invocation_id=ctx.invocation_id,
            content=types.Content(role="model", parts=[types.Part(text=text)]),
            actions=EventActions(
                state_delta={
                    "count": count,
                    "user:count": mine,
                    "app:count": everyone,
                    "temp:scratch": "never stored",
                }
            ),
        )


async def chat(url: str, user: str, messages: list[str]) -> str:
    """One conversation of ``user``: a new session, one run per message."""
    async with SessionStoreService(url) as service:
        runner = Runner(app_name=APP, agent=CounterAgent(name="counter"), session_service=service)
        session = await service.create_session(app_name=APP, user_id=user)
        for text in messages:
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for event in runner.run_async(
                user_id=user, session_id=session.id, new_message=message
            ):
                if event.content and event.content.parts:
                    print(f"{user} <- {event.content.parts[0].text}")
        return session.id


async def main(url: str) -> None:
    first = await chat(url, "ada", ["hello", "how many?"])
    await chat(url, "ada", ["a new conversation"])
    await chat(url, "grace", ["hi"])
    # Another service object on the same store: what a restarted process sees.
    async with SessionStoreService(url) as service:
        session = await service.get_session(app_name=APP, user_id="ada", session_id=first)
        assert session is not None
        print(f"ada's first session: {len(session.events)} events, state {session.state}")
        listed = await service.list_sessions(app_name=APP, user_id="ada")
        print(f"ada has {len(listed.sessions)} sessions")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "file://./adk-sessions"))
