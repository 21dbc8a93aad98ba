"""The SDK's runner tests of a limited session window (openai-agents 0.25.0,
tests/test_agent_runner.py, the two tests new in 0.25 that run on a ``SQLiteSession``; MIT
licence, Copyright OpenAI), ported to ``SessionStoreSession`` on every built-in driver.

0.25 replays an assistant message without its ``msg_`` id when a ``limit`` window cut off
the reasoning item it belongs to, and leaves the session's stored copy alone. The ports
check that on this adapter: the window is ``get_items(limit)`` (``last=limit`` on the
store), and the stored items keep their ids (the SDK edits a copy, not what the session
returned or holds). The only changes: ``closing(SQLiteSession(id))`` is a
``SessionStoreSession`` on the test's store (``make_session``) whose ``close()`` is
awaited; the 0.25-only replay is skipped on older SDKs (``sdk_since``).
"""

from __future__ import annotations

import pytest
from agents import Agent, RunConfig, Runner
from agents.memory import SessionSettings
from agents.testing import ScriptedModel, assistant_message
from conftest import MakeSession, sdk_since
from openai.types.responses.response_reasoning_item import ResponseReasoningItem


@sdk_since("0.25", "0.25 replays a window's leading assistant message without its id")
@pytest.mark.parametrize("streamed", [False, True])
async def test_limited_session_replays_boundary_answer_by_value(
    make_session: MakeSession, streamed: bool
) -> None:
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    session = make_session("reasoning-window")
    try:
        for turn in (1, 2):
            model.enqueue(
                [
                    ResponseReasoningItem(id=f"rs_{turn}", type="reasoning", summary=[]),
                    assistant_message(f"answer {turn}", item_id=f"msg_{turn}"),
                ]
            )
            await Runner.run(agent, f"question {turn}", session=session)

        stored = await session.get_items()
        model.enqueue([assistant_message("done")])
        config = RunConfig(session_settings=SessionSettings(limit=4))
        if streamed:
            result = Runner.run_streamed(agent, "continue", session=session, run_config=config)
            async for _ in result.stream_events():
                pass
        else:
            await Runner.run(agent, "continue", session=session, run_config=config)

        boundary = dict(stored[-4])
        assert boundary.pop("id") == "msg_1"
        assert model.calls[-1].input == [
            boundary,
            *stored[-3:],
            {"role": "user", "content": "continue"},
        ]
        assert (await session.get_items())[: len(stored)] == stored
    finally:
        await session.close()


async def test_limited_session_custom_callback_owns_boundary_message_ids(
    make_session: MakeSession,
) -> None:
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    session = make_session("callback-window")
    try:
        model.enqueue([assistant_message("answer", item_id="msg_original")])
        await Runner.run(agent, "question", session=session)
        stored_answer = (await session.get_items())[-1]

        model.enqueue([assistant_message("done")])
        await Runner.run(
            agent,
            "continue",
            session=session,
            run_config=RunConfig(
                session_settings=SessionSettings(limit=1),
                session_input_callback=lambda history, new: history + new,
            ),
        )
        assert model.calls[-1].input == [stored_answer, {"role": "user", "content": "continue"}]
    finally:
        await session.close()
