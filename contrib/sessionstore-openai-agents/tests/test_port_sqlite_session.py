"""The SDK's own ``SQLiteSession`` tests (openai-agents 0.25.0, the same in 0.24.0:
tests/memory/test_session.py; MIT licence, Copyright OpenAI), ported to
``SessionStoreSession`` on every built-in driver.

Each test keeps the original's name, steps and assertions; what changed is how a session
is made (``make_session``, on the parametrized driver's store) and, where a test pokes at
SQLite internals, the equivalent at the store's interface (said in the docstring). Left
out: the tests of SQLite's connection handling (worker-thread connections, file locks,
rollback of a failed statement, closing quarantined connections), which have no
counterpart here; the same behaviour at the store's level (nothing written by a failed
call, the session usable after it) is covered by the ported failure tests below.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, cast

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings, TResponseInputItem
from agents.testing import ScriptedModel
from conftest import MakeSession
from sdk_helpers import RUNNER_METHODS, get_text_message, run_agent_async
from sessionstore_openai_agents import SessionStoreSession, finish_despite_cancellation
from store_taps import tapped

from sessionstore import SerializationError, SessionStore
from tests.adapters.plugin import OpenStore


async def test_await_mutation_cancellation_hides_later_failure_without_loop_error() -> None:
    """A failed mutation must not leak a false loop error after caller cancellation."""
    mutation_started = asyncio.Event()
    allow_failure = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous_exception_handler = loop.get_exception_handler()
    loop_errors: list[dict[str, Any]] = []

    async def mutation() -> None:
        mutation_started.set()
        await allow_failure.wait()
        raise RuntimeError("mutation failed")

    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    task = asyncio.create_task(finish_despite_cancellation(mutation()))
    try:
        await mutation_started.wait()
        task.cancel("caller-cancelled")
        allow_failure.set()

        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert loop_errors == []
    finally:
        loop.set_exception_handler(previous_exception_handler)
        allow_failure.set()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_basic_functionality_parametrized(
    make_session: MakeSession, runner_method: str
) -> None:
    """Test basic session memory functionality across all runner methods."""
    session = make_session("test_session_123")

    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    # First turn
    model.enqueue([get_text_message("San Francisco")])
    result1 = await run_agent_async(
        runner_method,
        agent,
        "What city is the Golden Gate Bridge in?",
        session=session,
    )
    assert result1.final_output == "San Francisco"

    # Second turn - should have conversation history
    model.enqueue([get_text_message("California")])
    result2 = await run_agent_async(
        runner_method,
        agent,
        "What state is it in?",
        session=session,
    )
    assert result2.final_output == "California"

    # Verify that the input to the second turn includes the previous conversation
    last_input = model.calls[-1].input
    assert len(last_input) > 1  # Should have more than just the current message


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_with_explicit_instance_parametrized(
    make_session: MakeSession, runner_method: str
) -> None:
    """Test session memory with an explicit session instance across all runner methods."""
    session = make_session("test_session_456")

    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([get_text_message("Hello")])
    result1 = await run_agent_async(runner_method, agent, "Hi there", session=session)
    assert result1.final_output == "Hello"

    model.enqueue([get_text_message("I remember you said hi")])
    result2 = await run_agent_async(
        runner_method, agent, "Do you remember what I said?", session=session
    )
    assert result2.final_output == "I remember you said hi"


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_different_sessions_parametrized(
    make_session: MakeSession, runner_method: str
) -> None:
    """Different session IDs keep separate histories across all runner methods."""
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    session_1 = make_session("session_1")
    model.enqueue([get_text_message("I like cats")])
    result1 = await run_agent_async(runner_method, agent, "I like cats", session=session_1)
    assert result1.final_output == "I like cats"

    session_2 = make_session("session_2")
    model.enqueue([get_text_message("I like dogs")])
    result2 = await run_agent_async(runner_method, agent, "I like dogs", session=session_2)
    assert result2.final_output == "I like dogs"

    # Back to Session 1 - should remember cats, not dogs
    model.enqueue([get_text_message("Yes, you mentioned cats")])
    result3 = await run_agent_async(
        runner_method, agent, "What did I say I like?", session=session_1
    )
    assert result3.final_output == "Yes, you mentioned cats"
    history = [str(item.get("content")) for item in model.calls[-1].input]
    assert any("cats" in text for text in history)
    assert not any("dogs" in text for text in history)


async def test_sqlite_session_memory_direct(make_session: MakeSession) -> None:
    """Test the session class directly."""
    session = make_session("direct_test")

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]

    await session.add_items(items)
    retrieved = await session.get_items()

    assert len(retrieved) == 2
    assert retrieved[0].get("role") == "user"
    assert retrieved[0].get("content") == "Hello"
    assert retrieved[1].get("role") == "assistant"
    assert retrieved[1].get("content") == "Hi there!"

    await session.clear_session()
    retrieved_after_clear = await session.get_items()
    assert len(retrieved_after_clear) == 0


async def test_sqlite_session_closed_rejects_empty_add_items(adapter_store_url: str) -> None:
    """add_items([]) must not bypass the closed check through the empty-list fast path
    (a session that owns its store: ``from_url``)."""
    session = SessionStoreSession.from_url("closed_empty_add_test", adapter_store_url)
    await session.close()

    with pytest.raises(RuntimeError, match="closed"):
        await session.add_items([])


async def test_sqlite_session_memory_pop_item(make_session: MakeSession) -> None:
    """Test pop_item functionality."""
    session = make_session("pop_test")

    popped = await session.pop_item()
    assert popped is None

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "user", "content": "How are you?"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == 3

    popped = await session.pop_item()
    assert popped is not None
    assert popped.get("role") == "user"
    assert popped.get("content") == "How are you?"

    retrieved_after_pop = await session.get_items()
    assert len(retrieved_after_pop) == 2
    assert retrieved_after_pop[-1].get("content") == "Hi there!"

    popped2 = await session.pop_item()
    assert popped2 is not None
    assert popped2.get("role") == "assistant"
    assert popped2.get("content") == "Hi there!"

    popped3 = await session.pop_item()
    assert popped3 is not None
    assert popped3.get("role") == "user"
    assert popped3.get("content") == "Hello"

    popped4 = await session.pop_item()
    assert popped4 is None

    final_items = await session.get_items()
    assert len(final_items) == 0


async def test_session_memory_pop_different_sessions(make_session: MakeSession) -> None:
    """Test that pop_item only affects the specified session."""
    session_1 = make_session("session_1")
    session_2 = make_session("session_2")

    items_1: list[TResponseInputItem] = [{"role": "user", "content": "Session 1 message"}]
    items_2: list[TResponseInputItem] = [
        {"role": "user", "content": "Session 2 message 1"},
        {"role": "user", "content": "Session 2 message 2"},
    ]
    await session_1.add_items(items_1)
    await session_2.add_items(items_2)

    popped = await session_2.pop_item()
    assert popped is not None
    assert popped.get("content") == "Session 2 message 2"

    session_1_items = await session_1.get_items()
    assert len(session_1_items) == 1
    assert session_1_items[0].get("content") == "Session 1 message"

    session_2_items = await session_2.get_items()
    assert len(session_2_items) == 1
    assert session_2_items[0].get("content") == "Session 2 message 1"


async def test_sqlite_session_get_items_with_limit(make_session: MakeSession) -> None:
    """Test get_items with the limit parameter."""
    session = make_session("count_test")

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Message 1"},
        {"role": "assistant", "content": "Response 1"},
        {"role": "user", "content": "Message 2"},
        {"role": "assistant", "content": "Response 2"},
        {"role": "user", "content": "Message 3"},
        {"role": "assistant", "content": "Response 3"},
    ]
    await session.add_items(items)

    all_items = await session.get_items()
    assert len(all_items) == 6
    assert all_items[0].get("content") == "Message 1"
    assert all_items[-1].get("content") == "Response 3"

    latest_2 = await session.get_items(limit=2)
    assert len(latest_2) == 2
    assert latest_2[0].get("content") == "Message 3"
    assert latest_2[1].get("content") == "Response 3"

    latest_4 = await session.get_items(limit=4)
    assert len(latest_4) == 4
    assert latest_4[0].get("content") == "Message 2"
    assert latest_4[1].get("content") == "Response 2"
    assert latest_4[2].get("content") == "Message 3"
    assert latest_4[3].get("content") == "Response 3"

    latest_10 = await session.get_items(limit=10)
    assert len(latest_10) == 6
    assert latest_10[0].get("content") == "Message 1"
    assert latest_10[-1].get("content") == "Response 3"

    latest_0 = await session.get_items(limit=0)
    assert len(latest_0) == 0


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_memory_appends_list_input_by_default(
    make_session: MakeSession, runner_method: str
) -> None:
    """List inputs are appended to session history when no callback is provided."""
    session = make_session("test_validation_parametrized")

    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    initial_history: list[TResponseInputItem] = [
        {"role": "user", "content": "Earlier message"},
        {"role": "assistant", "content": "Saved reply"},
    ]
    await session.add_items(initial_history)

    list_input: list[TResponseInputItem] = [{"role": "user", "content": "Test message"}]

    model.enqueue([get_text_message("This should run")])
    await run_agent_async(runner_method, agent, list_input, session=session)

    assert model.calls[-1].input == initial_history + list_input


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_callback_prepared_input(
    make_session: MakeSession, runner_method: str
) -> None:
    """The user passes a list of items and a callback that prepares the model input."""
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    session = make_session("session_1")

    initial_history: list[TResponseInputItem] = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm here to assist you."},
    ]
    await session.add_items(initial_history)

    def filter_assistant_messages(
        history: list[TResponseInputItem], new_input: list[TResponseInputItem]
    ) -> list[TResponseInputItem]:
        # Only include user messages from history
        return [item for item in history if item.get("role") == "user"] + new_input

    new_turn_input: list[TResponseInputItem] = [{"role": "user", "content": "What your name?"}]
    model.enqueue([get_text_message("I'm gpt-4o")])

    await run_agent_async(
        runner_method,
        agent,
        new_turn_input,
        session=session,
        run_config=RunConfig(session_input_callback=filter_assistant_messages),
    )

    expected_model_input = [initial_history[0], new_turn_input[0]]
    assert len(model.calls[-1].input) == 2
    assert model.calls[-1].input == expected_model_input


@pytest.mark.parametrize("runner_method", RUNNER_METHODS)
async def test_session_callback_repeating_history_does_not_grow_session(
    make_session: MakeSession, runner_method: str
) -> None:
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    session = make_session("session_repeat")

    def repeat_first(
        history: list[TResponseInputItem], new_input: list[TResponseInputItem]
    ) -> list[TResponseInputItem]:
        if not history:
            return new_input
        return [*history, history[0], *new_input]

    for turn in range(3):
        model.enqueue([get_text_message(f"assistant {turn}")])
        await run_agent_async(
            runner_method,
            agent,
            f"user {turn}",
            session=session,
            run_config=RunConfig(session_input_callback=repeat_first),
        )

    stored = await session.get_items()
    user_messages = [item for item in stored if item.get("role") == "user"]
    assert [item.get("content") for item in user_messages] == ["user 0", "user 1", "user 2"]
    assert len(stored) == 6


async def test_sqlite_session_unicode_content(make_session: MakeSession) -> None:
    """The session stores and retrieves unicode/non-ASCII content."""
    session = make_session("unicode_test")

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "こんにちは"},
        {"role": "assistant", "content": "😊👍"},
        {"role": "user", "content": "Привет"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert retrieved[0].get("content") == "こんにちは"
    assert retrieved[1].get("content") == "😊👍"
    assert retrieved[2].get("content") == "Привет"


async def test_sqlite_session_special_characters_and_sql_injection(
    make_session: MakeSession,
) -> None:
    """Items with special characters and SQL keywords are stored and read back as is."""
    session = make_session("special_chars_test")

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "O'Reilly"},
        {"role": "assistant", "content": "DROP TABLE sessions;"},
        {"role": "user", "content": ('"SELECT * FROM users WHERE name = "admin";"')},
        {"role": "assistant", "content": "Robert'); DROP TABLE students;--"},
        {"role": "user", "content": "Normal message"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == len(items)
    assert retrieved[0].get("content") == "O'Reilly"
    assert retrieved[1].get("content") == "DROP TABLE sessions;"
    assert retrieved[2].get("content") == '"SELECT * FROM users WHERE name = "admin";"'
    assert retrieved[3].get("content") == "Robert'); DROP TABLE students;--"
    assert retrieved[4].get("content") == "Normal message"


async def test_sqlite_session_concurrent_access(make_session: MakeSession) -> None:
    """Concurrent writes from threads, each with an event loop of its own (the store is
    used from several loops at once)."""
    session = make_session("concurrent_test")

    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(10)
    ]

    def add_item(item: TResponseInputItem) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(session.add_items([item]))
        loop.close()

    def add_all() -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
            list(executor.map(add_item, items))

    await asyncio.to_thread(add_all)

    retrieved = await session.get_items()
    contents = {
        content
        for item in retrieved
        for content in [item.get("content")]
        if isinstance(content, str)
    }
    assert contents == {f"Message {i}" for i in range(10)}


async def test_sqlite_session_file_lock_is_shared_across_instances(
    adapter_store: SessionStore, adapter_open_store: OpenStore
) -> None:
    """Sessions on two store objects over the same data (two processes' view) write at
    once and each keeps its own items. (The original checks SQLite's process-local lock.)"""
    other_store = await adapter_open_store()
    session_1 = SessionStoreSession("session_1", adapter_store)
    session_2 = SessionStoreSession("session_2", other_store)

    await asyncio.gather(
        session_1.add_items([{"role": "user", "content": "session_1"}]),
        session_2.add_items([{"role": "user", "content": "session_2"}]),
    )

    assert [item.get("content") for item in await session_1.get_items()] == ["session_1"]
    assert [item.get("content") for item in await session_2.get_items()] == ["session_2"]
    # Each store object sees the other's session.
    seen = SessionStoreSession("session_2", adapter_store)
    assert [item.get("content") for item in await seen.get_items()] == ["session_2"]


async def test_sqlite_session_failed_add_items_releases_write_lock(
    make_session: MakeSession,
) -> None:
    """A failed add_items writes nothing and leaves the session usable. (The store refuses
    a value that is not JSON with ``SerializationError``, a ``ValueError``, where
    SQLite's ``json.dumps`` raises ``TypeError``.)"""
    session = make_session("rollback_test")

    unserializable = cast(TResponseInputItem, {"role": "user", "content": object()})
    with pytest.raises(SerializationError):
        await session.add_items([{"role": "user", "content": "first"}, unserializable])

    assert await session.get_items() == []
    assert await session.store.get_session(session.store_session_id) is None

    await session.add_items([{"role": "user", "content": "after failure"}])
    assert [item.get("content") for item in await session.get_items()] == ["after failure"]


async def test_session_add_items_exception_propagates_in_streamed(
    make_session: MakeSession,
) -> None:
    """Exceptions from session.add_items propagate in run_streamed instead of hanging."""
    session = make_session("test_exception_session")

    async def _failing_add_items(_items: Any, **_kwargs: Any) -> None:
        raise RuntimeError("Simulated session.add_items failure")

    session.add_items = _failing_add_items  # type: ignore[method-assign,assignment]

    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    model.enqueue([get_text_message("This should not be reached")])

    result = Runner.run_streamed(agent, "Hello", session=session)

    async def consume_stream() -> None:
        async for _event in result.stream_events():
            pass

    with pytest.raises(RuntimeError, match=r"Simulated session\.add_items failure"):
        await asyncio.wait_for(consume_stream(), timeout=5.0)


# SessionSettings


async def test_session_settings_default(make_session: MakeSession) -> None:
    session = make_session("default_settings_test")
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None


async def test_session_settings_constructor(make_session: MakeSession) -> None:
    session = make_session("constructor_settings_test", session_settings=SessionSettings(limit=5))
    assert session.session_settings is not None
    assert session.session_settings.limit == 5


async def test_session_settings_constructor_normalizes_dictionary(
    make_session: MakeSession,
) -> None:
    session = make_session("dictionary_settings_test", session_settings={"limit": 0})
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit == 0
    assert session.session_settings.resolve({"limit": 4}).limit == 4


async def test_session_settings_rejects_unknown_dictionary_fields(
    make_session: MakeSession,
) -> None:
    with pytest.raises(TypeError, match="Unknown session settings: limitt"):
        make_session("invalid_settings_test", session_settings={"limitt": 1})


async def test_get_items_uses_session_settings_limit(make_session: MakeSession) -> None:
    session = make_session("uses_settings_limit_test", session_settings=SessionSettings(limit=3))
    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(5)
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == 3
    assert retrieved[0].get("content") == "Message 2"
    assert retrieved[1].get("content") == "Message 3"
    assert retrieved[2].get("content") == "Message 4"


async def test_get_items_explicit_limit_overrides_session_settings(
    make_session: MakeSession,
) -> None:
    session = make_session("explicit_override_test", session_settings=SessionSettings(limit=5))
    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(10)
    ]
    await session.add_items(items)

    retrieved = await session.get_items(limit=2)
    assert len(retrieved) == 2
    assert retrieved[0].get("content") == "Message 8"
    assert retrieved[1].get("content") == "Message 9"


async def test_runner_with_session_settings_override(make_session: MakeSession) -> None:
    """RunConfig can override the session's default settings."""
    session = make_session("runner_override_test", session_settings=SessionSettings(limit=100))
    items: list[TResponseInputItem] = [{"role": "user", "content": f"Turn {i}"} for i in range(10)]
    await session.add_items(items)

    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    model.enqueue([get_text_message("Got it")])

    await Runner.run(
        agent,
        "New question",
        session=session,
        run_config=RunConfig(session_settings=SessionSettings(limit=2)),
    )

    last_input = model.calls[-1].input
    history_items = [item for item in last_input if item.get("content") != "New question"]
    assert len(history_items) == 2


@pytest.mark.parametrize("operation", ["add", "pop", "clear"])
async def test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome(
    adapter_store: SessionStore, operation: str
) -> None:
    """Cancellation after the store committed propagates without inviting a retry: the
    write is done once, the caller sees ``CancelledError`` only after it. (The original
    pauses SQLite's ``commit``; here the store's write call is paused after it returns.)"""
    commit_finished = asyncio.Event()
    allow_return = asyncio.Event()
    pause = False

    async def after_write(_name: str) -> None:
        nonlocal pause
        if pause:
            pause = False
            commit_finished.set()
            await allow_return.wait()

    session = SessionStoreSession(f"post_commit_{operation}", tapped(adapter_store, after_write))
    item: TResponseInputItem = {"role": "user", "content": "once"}
    if operation != "add":
        await session.add_items([item])
    pause = True

    mutation: asyncio.Task[Any]
    if operation == "add":
        mutation = asyncio.create_task(session.add_items([item]))
    elif operation == "pop":
        mutation = asyncio.create_task(session.pop_item())
    else:
        mutation = asyncio.create_task(session.clear_session())

    try:
        await asyncio.wait_for(commit_finished.wait(), 10)
        mutation.cancel()
        await asyncio.sleep(0)
        mutation.cancel()
        await asyncio.sleep(0)
        assert not mutation.done()
        allow_return.set()
        with pytest.raises(asyncio.CancelledError):
            await mutation
    finally:
        allow_return.set()
        if not mutation.done():
            mutation.cancel()
            await asyncio.gather(mutation, return_exceptions=True)

    if operation == "add":
        assert await session.get_items() == [item]
    else:
        assert await session.get_items() == []
    assert mutation.cancelled()
