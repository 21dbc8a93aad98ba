"""The SDK's tests of its helpers for session authors (openai-agents 0.25.0,
tests/memory/test_session_helpers.py, new in 0.25; MIT licence, Copyright OpenAI), ported
to ``SessionStoreSession`` on every built-in driver.

0.25 made public what a session of its own needs: ``await_session_mutation`` (a write
that settles before the caller's cancellation is raised), ``coerce_session_settings`` and
``resolve_session_limit``, and tests them with its example adapter
(examples/memory/custom_session.py). The ports run the same steps on this adapter's
counterparts: :func:`~sessionstore_openai_agents.finish_despite_cancellation` for
``await_session_mutation`` (same contract, no task: see ``_session._uncancellable``), the
adapter's ``session_settings=`` argument for the settings helpers (a mapping is coerced by
the SDK's ``coerce_session_settings``), and ``SessionStoreSession`` on the test's store for
``CustomSession`` on a ``HistoryStore``.
"""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings
from agents.testing import ScriptedModel
from conftest import MakeSession
from pydantic import ValidationError
from sdk_helpers import get_text_message
from sessionstore_openai_agents import finish_despite_cancellation


async def test_settings_normalization_and_limit_precedence(make_session: MakeSession) -> None:
    """The SDK's helpers called directly there; here through the session's settings and
    ``get_items``, which resolve the limit the same way."""
    session = make_session(session_settings={"limit": 2})
    await session.add_items([{"role": "user", "content": f"item {i}"} for i in range(5)])
    settings = session.session_settings
    assert settings == SessionSettings(limit=2)
    assert make_session(session_settings=settings).session_settings is settings
    assert len(await session.get_items()) == 2
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == []
    assert len(await session.get_items(limit=3)) == 3
    same_id = session.session_id
    assert len(await make_session(same_id, session_settings={"limit": 4}).get_items()) == 4
    assert len(await make_session(same_id).get_items()) == 5
    assert len(await make_session(same_id, session_settings=SessionSettings()).get_items()) == 5
    with pytest.raises(TypeError, match="Unknown session settings: unknown"):
        make_session(session_settings={"unknown": 1})
    with pytest.raises(ValidationError):
        make_session(session_settings={"limit": "not-a-number"})


async def test_mutation_result_and_failure() -> None:
    async def succeed() -> int:
        return 42

    async def fail() -> None:
        raise ValueError("write failed")

    assert await finish_despite_cancellation(succeed()) == 42
    with pytest.raises(ValueError, match="write failed"):
        await finish_despite_cancellation(fail())


@pytest.mark.parametrize("fail", [False, True])
async def test_repeated_cancellation_waits_for_mutation(fail: bool) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()
    settled = asyncio.Event()
    writes: list[str] = []
    cancellations: list[str] = []

    async def write() -> None:
        started.set()
        try:
            await finish.wait()
            if fail:
                raise ValueError("write failed")
            writes.append("committed")
        finally:
            settled.set()

    async def mutate() -> None:
        try:
            await finish_despite_cancellation(write())
        except asyncio.CancelledError as exc:
            # Python 3.10 can discard this message when another task awaits us.
            cancellations.append(str(exc))
            raise

    task = asyncio.create_task(mutate())
    try:
        await started.wait()
        task.cancel("first")
        await asyncio.sleep(0)
        task.cancel("second")
        await asyncio.sleep(0)
        assert not task.done()
        assert not settled.is_set()
        finish.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancellations == ["first"]
        assert settled.is_set()
        assert writes == ([] if fail else ["committed"])
    finally:
        finish.set()
        await asyncio.gather(task, return_exceptions=True)


async def test_custom_adapter_runner_and_storage_contract(make_session: MakeSession) -> None:
    """``CustomSession("first", store, ...)`` and ``CustomSession("other", store)`` on one
    ``HistoryStore``: two ``SessionStoreSession`` objects on the test's store."""
    session = make_session("first", session_settings={"limit": 2})
    other = make_session("other")
    model = ScriptedModel([[get_text_message("Hello!")], [get_text_message("You said hello.")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(tracing_disabled=True)
    await Runner.run(agent, "Hello", session=session, run_config=config)
    await Runner.run(agent, "What did I say?", session=session, run_config=config)
    assert model.calls[-1].input[0]["content"] == "Hello"
    assert len(await session.get_items()) == 2
    assert len(await session.get_items(limit=4)) == 4
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == []
    assert await other.get_items() == []
    last = (await session.get_items())[-1]
    assert await session.pop_item() == last
    await session.clear_session()
    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_independently_cancelled_operation_propagates() -> None:
    operation: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    operation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finish_despite_cancellation(operation)
