"""Helpers of the SDK's own tests, as they are there (openai-agents 0.25.0, the same in
0.24.0: tests/test_responses.py and tests/memory/test_session.py; MIT licence, Copyright
OpenAI), so the ported tests read like the originals. The model is the SDK's own
``agents.testing.ScriptedModel``: no network."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, Runner, RunResult, RunResultStreaming
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
)

RUNNER_METHODS = ["run", "run_sync", "run_streamed"]


def get_text_message(content: str) -> ResponseOutputItem:
    return ResponseOutputMessage(
        id="1",
        type="message",
        role="assistant",
        content=[ResponseOutputText(text=content, type="output_text", annotations=[], logprobs=[])],
        status="completed",
    )


def get_function_tool_call(
    name: str, arguments: str | None = None, call_id: str | None = None
) -> ResponseOutputItem:
    return ResponseFunctionToolCall(
        id="1",
        call_id=call_id or "2",
        type="function_call",
        name=name,
        arguments=arguments or "",
    )


def _run_sync_wrapper(agent: Agent[Any], input_data: Any, **kwargs: Any) -> RunResult:
    """``Runner.run_sync`` from a thread with an event loop of its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(agent, input_data, **kwargs)
    finally:
        loop.close()


async def run_agent_async(
    runner_method: str, agent: Agent[Any], input_data: Any, **kwargs: Any
) -> RunResult | RunResultStreaming:
    """Run ``agent`` with ``Runner.run``, ``Runner.run_sync`` (in a thread) or
    ``Runner.run_streamed`` (the stream consumed)."""
    if runner_method == "run":
        return await Runner.run(agent, input_data, **kwargs)
    if runner_method == "run_sync":
        return await asyncio.to_thread(_run_sync_wrapper, agent, input_data, **kwargs)
    if runner_method == "run_streamed":
        result = Runner.run_streamed(agent, input_data, **kwargs)
        async for _event in result.stream_events():
            pass
        return result
    raise ValueError(f"Unknown runner method: {runner_method}")
