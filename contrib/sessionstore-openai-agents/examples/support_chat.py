"""A support conversation whose history lives in a sessionstore store.

    python examples/support_chat.py [STORE_URL]   # default: file://./agent-sessions

Run it twice: the second run continues the conversation of the first (on a durable
store). With ``OPENAI_API_KEY`` set the agent uses OpenAI's default model; without it, the
SDK's scripted test model (``agents.testing.ScriptedModel``) answers, so the example runs
offline.
"""

from __future__ import annotations

import asyncio
import os
import sys

from agents import Agent, Model, Runner, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message
from sessionstore_openai_agents import SessionStoreSession, iter_session_ids

from sessionstore import open_store

QUESTIONS = ["My order #1234 has not arrived.", "It was sent to Paris.", "Thanks!"]


def offline_model() -> Model:
    answers = ["Sorry to hear that. Where was it sent?", "Found it: it arrives tomorrow.", "Bye!"]
    return ScriptedModel([[assistant_message(text)] for text in answers])


async def main(url: str) -> None:
    model: Model | None = None
    if not os.environ.get("OPENAI_API_KEY"):
        set_tracing_disabled(True)
        model = offline_model()
    agent = Agent(name="Support", instructions="You help customers, briefly.", model=model)
    async with open_store(url) as store:
        session = SessionStoreSession("customer 17/support", store)
        before = len(await session.get_items())
        print(f"history: {before} items")
        for question in QUESTIONS:
            result = await Runner.run(agent, question, session=session)
            print(f"user:  {question}\nagent: {result.final_output}")
        print(f"history: {len(await session.get_items())} items")
        last = await session.pop_item()  # take the last answer back
        print(f"popped: {last.get('role') if last else None}")
        print(f"sessions: {[sdk_id async for sdk_id in iter_session_ids(store)]}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "file://./agent-sessions"))
