"""Test helpers of the OpenAI Agents SDK's own suite (openai-agents 0.25.0, the same in
0.24.0: tests/model_test_helpers.py, tests/utils/simple_session.py and two functions of
tests/test_responses.py; MIT licence, Copyright OpenAI), vendored as they are for the
ported tests: the SDK's wheel does not ship its tests (its sdist does)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any, cast

from agents import Agent, FunctionTool, Handoff, default_tool_error_function, function_tool
from agents.items import TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from agents.memory.session import Session
from agents.memory.session_settings import SessionSettings
from agents.testing import ModelStep
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputItemDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails


def get_response_obj(
    output: list[TResponseOutputItem],
    response_id: str | None = None,
    usage: Usage | None = None,
) -> Response:
    """Build an OpenAI response object for adapter-level tests."""
    return Response(
        id=response_id or "resp-789",
        created_at=123,
        model="test_model",
        object="response",
        output=output,
        tool_choice="none",
        tools=[],
        top_p=None,
        parallel_tool_calls=False,
        usage=ResponseUsage(
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            total_tokens=usage.total_tokens if usage else 0,
            input_tokens_details=InputTokensDetails.model_validate(
                {
                    "cache_write_tokens": (
                        getattr(usage.input_tokens_details, "cache_write_tokens", 0) if usage else 0
                    ),
                    "cached_tokens": (
                        getattr(usage.input_tokens_details, "cached_tokens", 0) if usage else 0
                    ),
                }
            ),
            output_tokens_details=OutputTokensDetails(
                reasoning_tokens=(
                    getattr(usage.output_tokens_details, "reasoning_tokens", 0) if usage else 0
                )
            ),
        ),
    )


def get_exact_output_stream_step(output: list[TResponseOutputItem]) -> ModelStep:
    """Build an exact normalized stream for tests whose subject is downstream processing."""
    stream_output = copy.deepcopy(output)

    async def events(_call: object) -> AsyncIterator[TResponseStreamEvent]:
        for output_index, output_item in enumerate(stream_output):
            yield ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=output_item,
                output_index=output_index,
                sequence_number=output_index,
            )
        yield ResponseCompletedEvent(
            type="response.completed",
            response=get_response_obj(stream_output),
            sequence_number=len(stream_output),
        )

    return ModelStep.stream(events)


class SimpleListSession(Session):
    """A minimal in-memory session implementation for tests."""

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str = "test",
        history: list[TResponseInputItem] | None = None,
    ) -> None:
        self.session_id = session_id
        self._items: list[TResponseInputItem] = list(history) if history else []
        # Some session implementations strip IDs on write; tests can opt-in via attribute.
        self._ignore_ids_for_matching = False
        # Mirror saved_items used by some tests for inspection.
        self.saved_items: list[TResponseInputItem] = self._items

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        if limit is None:
            return list(self._items)
        if limit <= 0:
            return []
        return self._items[-limit:]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self._items.extend(items)

    async def pop_item(self) -> TResponseInputItem | None:
        if not self._items:
            return None
        return self._items.pop()

    async def clear_session(self) -> None:
        self._items.clear()


class CountingSession(SimpleListSession):
    """Session that tracks how many times pop_item is invoked (for rewind tests)."""

    def __init__(
        self,
        session_id: str = "test",
        history: list[TResponseInputItem] | None = None,
    ) -> None:
        super().__init__(session_id=session_id, history=history)
        self.pop_calls = 0

    async def pop_item(self) -> TResponseInputItem | None:
        self.pop_calls += 1
        return await super().pop_item()


class IdStrippingSession(CountingSession):
    """Session that strips IDs on add to mimic hosted stores that reassign IDs."""

    def __init__(
        self,
        session_id: str = "test",
        history: list[TResponseInputItem] | None = None,
    ) -> None:
        super().__init__(session_id=session_id, history=history)
        self._ignore_ids_for_matching = True

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        sanitized: list[TResponseInputItem] = []
        for item in items:
            if isinstance(item, dict):
                clean = dict(item)
                clean.pop("id", None)
                sanitized.append(cast(TResponseInputItem, clean))
            else:
                sanitized.append(item)
        await super().add_items(sanitized)


def get_function_tool(
    name: str | None = None, return_value: str | None = None, hide_errors: bool = False
) -> FunctionTool:
    def _foo() -> str:
        return return_value or "result_ok"

    return function_tool(
        _foo,
        name_override=name,
        failure_error_function=None if hide_errors else default_tool_error_function,
    )


def get_function_tool_call(
    name: str,
    arguments: str | None = None,
    call_id: str | None = None,
    *,
    namespace: str | None = None,
) -> ResponseOutputItem:
    kwargs: dict[str, Any] = {
        "id": "1",
        "call_id": call_id or "2",
        "type": "function_call",
        "name": name,
        "arguments": arguments or "",
    }
    if namespace is not None:
        kwargs["namespace"] = namespace
    return ResponseFunctionToolCall(**kwargs)


def get_handoff_tool_call(
    to_agent: Agent[Any],
    override_name: str | None = None,
    args: str | None = None,
    *,
    call_id: str | None = None,
) -> ResponseOutputItem:
    name = override_name or Handoff.default_tool_name(to_agent)
    return get_function_tool_call(name, args, call_id=call_id or f"handoff_{to_agent.name}")
