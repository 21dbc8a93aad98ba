"""The SDK's own ``RedisSession`` tests (openai-agents 0.25.0, the same in 0.24.0:
tests/extensions/memory/test_redis_session.py; MIT licence, Copyright OpenAI), ported to
``SessionStoreSession`` on every built-in driver.

Each test keeps the original's name, steps and assertions; a session is made on the
parametrized driver's store, and where the original instruments redis-py (a pipeline's
``execute``, ``rpop``) the port taps the store's write call instead (``store_taps.py``),
which is where this adapter's writes commit. Left out: the tests of redis-py connection
pool handling, WATCH retries, key-type collisions and ``decode_responses`` clients (the
store owns its connections and its layout; the drivers' own suites test those), and
``_get_next_id`` (sequence numbers are the store's).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings, TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel
from conftest import MakeSession
from sdk_helpers import get_function_tool_call, get_text_message
from sessionstore_openai_agents import SessionStoreSession
from store_taps import tapped

from sessionstore import ManualClock, SerializationError, SessionStore, StoreUnavailableError
from tests.adapters.plugin import OpenStore


class _Compact:
    """The ``client.responses.compact`` the SDK's tests give the compaction session (an
    ``AsyncMock`` there): records its calls and returns ``output``."""

    def __init__(self, output: list[TResponseInputItem]) -> None:
        self.output = output
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(kwargs)
        return SimpleNamespace(usage=None, output=self.output)

    @property
    def client(self) -> Any:
        return SimpleNamespace(responses=SimpleNamespace(compact=self))


async def test_redis_session_direct_ops(make_session: MakeSession) -> None:
    session = make_session()

    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == 2
    assert retrieved[0].get("content") == "Hello"
    assert retrieved[1].get("content") == "Hi there!"

    popped = await session.pop_item()
    assert popped is not None
    assert popped.get("content") == "Hi there!"
    retrieved_after_pop = await session.get_items()
    assert len(retrieved_after_pop) == 1
    assert retrieved_after_pop[0].get("content") == "Hello"

    await session.clear_session()
    retrieved_after_clear = await session.get_items()
    assert len(retrieved_after_clear) == 0


@pytest.mark.parametrize("operation", ["pop", "clear"])
async def test_mutation_cancellation_waits_for_authoritative_outcome(
    adapter_store: SessionStore, operation: str
) -> None:
    """Cancellation must wait after the store applies a destructive mutation."""
    mutation_applied = asyncio.Event()
    allow_return = asyncio.Event()
    armed = False

    async def after_write(_name: str) -> None:
        if armed:
            mutation_applied.set()
            await allow_return.wait()

    session = SessionStoreSession("cancel-" + operation, tapped(adapter_store, after_write))
    item: TResponseInputItem = {"role": "user", "content": "once"}
    await session.add_items([item])
    armed = True
    task: asyncio.Task[Any] = asyncio.create_task(
        session.pop_item() if operation == "pop" else session.clear_session()
    )
    try:
        await asyncio.wait_for(mutation_applied.wait(), 10)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        assert task.done() is False
        allow_return.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        allow_return.set()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    armed = False
    assert await session.get_items() == []


async def test_runner_integration(make_session: MakeSession) -> None:
    session = make_session()
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([get_text_message("San Francisco")])
    result1 = await Runner.run(agent, "What city is the Golden Gate Bridge in?", session=session)
    assert result1.final_output == "San Francisco"

    model.enqueue([get_text_message("California")])
    result2 = await Runner.run(agent, "What state is it in?", session=session)
    assert result2.final_output == "California"

    last_input = model.calls[-1].input
    assert len(last_input) > 1
    assert any("Golden Gate Bridge" in str(item.get("content", "")) for item in last_input)


async def test_session_isolation(make_session: MakeSession) -> None:
    session1 = make_session("session_1")
    session2 = make_session("session_2")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)

    model.enqueue([get_text_message("I like cats.")])
    await Runner.run(agent, "I like cats.", session=session1)

    model.enqueue([get_text_message("I like dogs.")])
    await Runner.run(agent, "I like dogs.", session=session2)

    model.enqueue([get_text_message("You said you like cats.")])
    result = await Runner.run(agent, "What animal did I say I like?", session=session1)
    assert "cats" in result.final_output.lower()
    assert "dogs" not in result.final_output.lower()
    assert not any("dogs" in str(item.get("content", "")) for item in model.calls[-1].input)


async def test_get_items_with_limit(make_session: MakeSession) -> None:
    session = make_session()
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "1"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3"},
        {"role": "assistant", "content": "4"},
    ]
    await session.add_items(items)

    latest_2 = await session.get_items(limit=2)
    assert len(latest_2) == 2
    assert latest_2[0].get("content") == "3"
    assert latest_2[1].get("content") == "4"

    all_items = await session.get_items()
    assert len(all_items) == 4

    more_than_all = await session.get_items(limit=10)
    assert len(more_than_all) == 4

    zero_items = await session.get_items(limit=0)
    assert len(zero_items) == 0
    # RedisSession's rule for a negative limit, kept: nothing.
    assert await session.get_items(limit=-1) == []


async def test_pop_from_empty_session(make_session: MakeSession) -> None:
    session = make_session("empty_session")
    await session.clear_session()
    popped = await session.pop_item()
    assert popped is None


async def test_add_empty_items_list(make_session: MakeSession) -> None:
    session = make_session()
    initial_items = await session.get_items()
    assert len(initial_items) == 0

    await session.add_items([])

    items_after_add = await session.get_items()
    assert len(items_after_add) == 0
    # Nothing was written: no session was created for an empty add.
    assert await session.store.get_session(session.store_session_id) is None


async def test_unicode_content(make_session: MakeSession) -> None:
    session = make_session()
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


async def test_special_characters_and_json_safety(make_session: MakeSession) -> None:
    session = make_session()
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "O'Reilly"},
        {"role": "assistant", "content": '{"nested": "json"}'},
        {"role": "user", "content": 'Quote: "Hello world"'},
        {"role": "assistant", "content": "Line1\nLine2\tTabbed"},
        {"role": "user", "content": "Normal message"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == len(items)
    assert retrieved[0].get("content") == "O'Reilly"
    assert retrieved[1].get("content") == '{"nested": "json"}'
    assert retrieved[2].get("content") == 'Quote: "Hello world"'
    assert retrieved[3].get("content") == "Line1\nLine2\tTabbed"
    assert retrieved[4].get("content") == "Normal message"


async def test_data_integrity_with_problematic_strings(make_session: MakeSession) -> None:
    session = make_session()
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "O'Reilly"},
        {"role": "assistant", "content": "DROP TABLE sessions;"},
        {"role": "user", "content": '"SELECT * FROM users WHERE name = "admin";"'},
        {"role": "assistant", "content": "Robert'); DROP TABLE students;--"},
        {"role": "user", "content": '{"malicious": "json"}'},
        {"role": "assistant", "content": "\\n\\t\\r Special escapes"},
        {"role": "user", "content": "Normal message"},
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert retrieved == items


async def test_concurrent_access(make_session: MakeSession) -> None:
    session = make_session("concurrent_test")

    async def add_messages(start_idx: int, count: int) -> None:
        items: list[TResponseInputItem] = [
            {"role": "user", "content": f"Message {start_idx + i}"} for i in range(count)
        ]
        await session.add_items(items)

    await asyncio.gather(add_messages(0, 5), add_messages(5, 5), add_messages(10, 5))

    retrieved = await session.get_items()
    assert len(retrieved) == 15
    contents = [item.get("content") for item in retrieved]
    for expected in (f"Message {i}" for i in range(15)):
        assert expected in contents
    # Each add_items is one atomic append: its five items stay together, in order.
    starts = [contents.index(f"Message {s}") for s in (0, 5, 10)]
    for start_idx, at in zip((0, 5, 10), starts, strict=True):
        assert contents[at : at + 5] == [f"Message {start_idx + i}" for i in range(5)]


async def test_ttl_functionality(adapter_open_store: OpenStore) -> None:
    """The session's expiry slides with each write; an expired session reads as empty
    (the original could not wait; the store's clock here is a manual one)."""
    clock = ManualClock()
    store = await adapter_open_store(clock=clock)
    session = SessionStoreSession("ttl_test", store, ttl=timedelta(seconds=1))

    await session.add_items([{"role": "user", "content": "This should expire"}])
    assert len(await session.get_items()) == 1
    stored = await store.get_session(session.store_session_id)
    assert stored is not None
    assert stored.expires_at == clock.now() + timedelta(seconds=1)

    clock.advance(0.6)
    await session.add_items([{"role": "user", "content": "slides the expiry"}])
    clock.advance(0.6)
    assert len(await session.get_items()) == 2  # 1.2 s after the first write: still there

    clock.advance(1.0)
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_from_url_constructor(adapter_store_url: str) -> None:
    session = SessionStoreSession.from_url("url_test", adapter_store_url)
    try:
        assert session.session_id == "url_test"
        await session.add_items([{"role": "user", "content": "via url"}])
        assert [i.get("content") for i in await session.get_items()] == ["via url"]
        await session.clear_session()
    finally:
        await session.close()


async def test_key_prefix_isolation(adapter_open_store: OpenStore) -> None:
    """Two namespaces (the store's equivalent of RedisSession's key prefix) isolate
    sessions of the same id."""
    store1 = await adapter_open_store(namespace="app1")
    store2 = await adapter_open_store(namespace="app2")
    session1 = SessionStoreSession("same_id", store1)
    session2 = SessionStoreSession("same_id", store2)
    await session1.clear_session()
    await session2.clear_session()

    await session1.add_items([{"role": "user", "content": "app1 message"}])
    await session2.add_items([{"role": "user", "content": "app2 message"}])

    items1 = await session1.get_items()
    items2 = await session2.get_items()
    assert len(items1) == 1
    assert len(items2) == 1
    assert items1[0].get("content") == "app1 message"
    assert items2[0].get("content") == "app2 message"
    await session1.clear_session()
    await session2.clear_session()


async def test_external_client_not_closed(adapter_store: SessionStore) -> None:
    """A store passed in is not shut down by session.close()."""
    session = SessionStoreSession("external_client_test", adapter_store)
    await session.add_items([{"role": "user", "content": "test message"}])
    assert len(await session.get_items()) == 1

    await session.close()

    # The shared store still works, for this session and others.
    assert len(await session.get_items()) == 1
    other = SessionStoreSession("other", adapter_store)
    await other.add_items([{"role": "user", "content": "still usable"}])
    assert len(await other.get_items()) == 1


async def test_internal_client_ownership(adapter_store_url: str) -> None:
    """A session made by from_url owns its store and shuts it down in close()."""
    session = SessionStoreSession.from_url("internal_client_test", adapter_store_url)
    await session.add_items([{"role": "user", "content": "test message"}])
    assert len(await session.get_items()) == 1
    store = session.store
    await session.clear_session()
    await session.close()
    with pytest.raises(StoreUnavailableError):
        await store.get_session(session.store_session_id)


async def test_get_items_limit_returns_fewer_when_history_exhausted(
    make_session: MakeSession,
) -> None:
    session = make_session("limit_exhausted_test")
    await session.clear_session()
    await session.add_items([{"role": "user", "content": "only valid"}])

    retrieved = await session.get_items(limit=5)
    assert [item.get("content") for item in retrieved] == ["only valid"]


async def test_session_settings_default(make_session: MakeSession) -> None:
    session = make_session("default_settings_test")
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None


@pytest.mark.parametrize("use_dictionary", [False, True], ids=["class", "dictionary"])
async def test_session_settings_constructor(
    make_session: MakeSession, use_dictionary: bool
) -> None:
    settings: SessionSettings | dict[str, Any] = (
        {"limit": 5} if use_dictionary else SessionSettings(limit=5)
    )
    session = make_session("constructor_settings_test", session_settings=settings)
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit == 5


async def test_session_settings_from_url(adapter_store_url: str) -> None:
    session = SessionStoreSession.from_url(
        "from_url_settings_test", adapter_store_url, session_settings=SessionSettings(limit=10)
    )
    try:
        assert session.session_settings is not None
        assert session.session_settings.limit == 10
    finally:
        await session.close()


async def test_get_items_uses_session_settings_limit(make_session: MakeSession) -> None:
    session = make_session("uses_settings_limit_test", session_settings=SessionSettings(limit=3))
    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(5)
    ]
    await session.add_items(items)

    retrieved = await session.get_items()
    assert len(retrieved) == 3
    assert [item.get("content") for item in retrieved] == ["Message 2", "Message 3", "Message 4"]


async def test_get_items_explicit_limit_overrides_session_settings(
    make_session: MakeSession,
) -> None:
    session = make_session("explicit_override_test", session_settings=SessionSettings(limit=5))
    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(10)
    ]
    await session.add_items(items)

    retrieved = await session.get_items(limit=2)
    assert [item.get("content") for item in retrieved] == ["Message 8", "Message 9"]


async def test_session_settings_resolve() -> None:
    base = SessionSettings(limit=100)
    override = SessionSettings(limit=50)
    final = base.resolve(override)
    assert final.limit == 50
    assert base.limit == 100
    assert base.resolve(None).limit == 100


async def test_runner_with_session_settings_override(make_session: MakeSession) -> None:
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


async def test_redis_session_closed_operations_raise_runtime_error(adapter_store_url: str) -> None:
    """Operations on a closed store-owning session fail instead of reopening."""
    session = SessionStoreSession.from_url("closed_state_test", adapter_store_url)
    await session.add_items([{"role": "user", "content": "before close"}])
    await session.close()

    with pytest.raises(RuntimeError, match="closed"):
        await session.get_items()
    with pytest.raises(RuntimeError, match="closed"):
        await session.add_items([{"role": "user", "content": "after close"}])
    with pytest.raises(RuntimeError, match="closed"):
        await session.pop_item()
    with pytest.raises(RuntimeError, match="closed"):
        await session.clear_session()


async def test_redis_session_close_is_idempotent(adapter_store_url: str) -> None:
    session = SessionStoreSession.from_url("close_idempotent_test", adapter_store_url)
    await session.add_items([{"role": "user", "content": "x"}])
    await asyncio.gather(session.close(), session.close())
    await session.close()
    with pytest.raises(RuntimeError, match="closed"):
        await session.get_items()


async def test_add_items_applies_ttl_in_the_write_transaction(
    adapter_open_store: OpenStore,
) -> None:
    """The TTL is set by the append itself: one write call, one version step, the expiry
    there when it returns (no post-commit window)."""
    clock = ManualClock()
    store = await adapter_open_store(clock=clock)
    writes: list[str] = []

    async def after_write(name: str) -> None:
        writes.append(name)

    session = SessionStoreSession("atomic_ttl", tapped(store, after_write), ttl=60)
    item: TResponseInputItem = {"role": "user", "content": "once"}

    await session.add_items([item])
    assert writes == ["append_events"]
    stored = await store.get_session(session.store_session_id)
    assert stored is not None
    assert stored.expires_at == clock.now() + timedelta(seconds=60)
    assert await session.get_items() == [item]

    clock.advance(30)
    await session.add_items([item])
    assert writes == ["append_events", "append_events"]
    again = await store.get_session(session.store_session_id)
    assert again is not None
    assert again.version == stored.version + 1
    assert again.expires_at == clock.now() + timedelta(seconds=60)


async def test_add_items_rejects_unrepresentable_ttl_before_writing(
    make_session: MakeSession,
) -> None:
    """An invalid TTL fails before anything is written, every time."""
    session = make_session("invalid_ttl", ttl=2**63)
    item: TResponseInputItem = {"role": "user", "content": "never committed"}
    for _ in range(2):
        with pytest.raises(ValueError, match="ttl"):
            await session.add_items([item])
    assert await session.get_items() == []


# -- compaction (the SDK's hooks: _get_compaction_snapshot, _atomic_replace_items)


@pytest.mark.parametrize("automatic", [False, True])
@pytest.mark.parametrize("empty", [False, True])
async def test_compaction_replaces_redis_history_atomically(
    adapter_store: SessionStore, automatic: bool, empty: bool
) -> None:
    """Every committed write leaves a whole history: the old one or the compacted one,
    never a cleared one in between. A second session object observes after each write."""
    observations: list[list[TResponseInputItem]] = []
    reader = SessionStoreSession("compaction", adapter_store)

    async def observe(_name: str) -> None:
        observations.append(await reader.get_items())

    backend = SessionStoreSession("compaction", tapped(adapter_store, observe))
    history: list[TResponseInputItem] = [{"role": "user", "content": "original"}]
    output: list[TResponseInputItem] = [] if empty else [{"role": "user", "content": "summary"}]
    await backend.add_items(history)
    observations.clear()
    compact = _Compact(output)
    session = OpenAIResponsesCompactionSession(
        backend.session_id,
        backend,
        client=compact.client,
        compaction_mode="input",
        should_trigger_compaction=lambda _: True,
    )
    if automatic:
        agent = Agent(name="test", model=ScriptedModel(steps=[[get_text_message("reply")]]))
        await Runner.run(agent, "next", session=session)
    else:
        await session.run_compaction({"force": True})
    assert len(compact.calls) == 1
    assert observations
    assert observations[-1] == output
    if not empty:
        assert all(observation for observation in observations)
    assert await reader.get_items() == output


@pytest.mark.parametrize("empty", [False, True])
async def test_atomic_replacement_preserves_clear_add_metadata(
    adapter_open_store: OpenStore, empty: bool
) -> None:
    """After a replacement the session keeps the adapter's metadata and tag and its
    sliding expiry, as after clear + add."""
    clock = ManualClock()
    store = await adapter_open_store(clock=clock)
    session = SessionStoreSession("atomic-replacement-ttl", store, ttl=3600)
    await session.add_items([{"role": "user", "content": "before"}])
    clock.advance(10)
    output: list[TResponseInputItem] = [] if empty else [{"role": "user", "content": "after"}]
    assert await session._atomic_replace_items(output)
    assert await session.get_items() == output
    stored = await store.get_session(session.store_session_id)
    assert stored is not None
    assert stored.metadata == {"openai_agents_session_id": "atomic-replacement-ttl"}
    assert "openai-agents" in stored.tags
    if not empty:
        assert stored.expires_at == clock.now() + timedelta(seconds=3600)


async def test_atomic_replacement_serializes_before_deleting_history(
    make_session: MakeSession,
) -> None:
    session = make_session()
    history: list[TResponseInputItem] = [{"role": "user", "content": "retained"}]
    await session.add_items(history)
    with pytest.raises(SerializationError):
        await session._atomic_replace_items(cast(Any, [{"content": object()}]))
    assert await session.get_items() == history


async def test_compaction_subclass_retains_overridden_storage_methods(
    adapter_store: SessionStore,
) -> None:
    class IndexedSession(SessionStoreSession):
        clear_calls = 0
        add_calls = 0

        async def clear_session(self, **kwargs: Any) -> None:
            self.clear_calls += 1
            await super().clear_session(**kwargs)

        async def add_items(self, items: list[TResponseInputItem], **kwargs: Any) -> None:
            self.add_calls += 1
            await super().add_items(items, **kwargs)

    backend = IndexedSession("indexed", adapter_store)
    output: list[TResponseInputItem] = [{"role": "user", "content": "summary"}]
    compact = _Compact(output)
    session = OpenAIResponsesCompactionSession(backend.session_id, backend, client=compact.client)
    await backend.add_items([{"role": "user", "content": "original"}])
    await session.run_compaction({"force": True})
    assert backend.clear_calls == 1
    assert backend.add_calls == 2
    assert await backend.get_items() == output


async def test_compaction_cancel_after_redis_commit_invalidates_cached_history(
    adapter_store: SessionStore,
) -> None:
    committed = asyncio.Event()
    release = asyncio.Event()
    armed = False

    async def delayed(_name: str) -> None:
        if armed:
            committed.set()
            await release.wait()

    backend = SessionStoreSession("cancel-compaction", tapped(adapter_store, delayed))
    output: list[TResponseInputItem] = [{"role": "user", "content": "summary"}]
    await backend.add_items([{"role": "user", "content": "original"}])
    compact = _Compact(output)
    session = OpenAIResponsesCompactionSession(
        backend.session_id, backend, client=compact.client, compaction_mode="input"
    )
    armed = True
    task = asyncio.create_task(session.run_compaction({"force": True}))
    try:
        await asyncio.wait_for(committed.wait(), 5)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        armed = False
        assert await backend.get_items() == output
        # The next request must load committed history instead of replaying the
        # candidates cached before the cancelled replacement.
        await session.run_compaction({"force": True})
        assert compact.calls[-1]["input"] == output
    finally:
        release.set()
        await asyncio.gather(task, return_exceptions=True)


async def test_cancelled_redis_compaction_handoff_remains_resumable(
    adapter_store: SessionStore,
) -> None:
    from agents import RunState, handoff
    from agents.handoffs import HandoffInputData
    from agents.items import MessageOutputItem

    compacted: list[TResponseInputItem] = [{"role": "assistant", "content": "compacted history"}]
    committed = asyncio.Event()
    release = asyncio.Event()
    replacement_pending = False

    async def controlled(_name: str) -> None:
        nonlocal replacement_pending
        if replacement_pending:
            replacement_pending = False
            committed.set()
            await release.wait()

    backend = SessionStoreSession("handoff", tapped(adapter_store, controlled))

    class Compact(_Compact):
        async def __call__(self, **kwargs: Any) -> SimpleNamespace:
            nonlocal replacement_pending
            replacement_pending = True
            return await super().__call__(**kwargs)

    compact = Compact(compacted)
    session = OpenAIResponsesCompactionSession(
        backend.session_id,
        backend,
        client=compact.client,
        compaction_mode="input",
        should_trigger_compaction=lambda context: context["response_id"] == "resp-handoff",
    )
    model = ScriptedModel(
        [
            {
                "output": [
                    get_text_message("delegating"),
                    get_function_tool_call("transfer_to_delegate", "{}", call_id="handoff-1"),
                ],
                "response_id": "resp-handoff",
            },
            {"output": [get_text_message("done")], "response_id": "resp-delegate"},
        ]
    )
    handoff_calls: list[str] = []

    def retain_message(data: HandoffInputData) -> HandoffInputData:
        return data.clone(
            new_items=tuple(item for item in data.new_items if isinstance(item, MessageOutputItem))
        )

    delegate = Agent(name="delegate", model=model)
    triage = Agent(
        name="triage",
        model=model,
        handoffs=[
            handoff(
                delegate,
                input_filter=retain_message,
                on_handoff=lambda _: handoff_calls.append("handoff"),
            )
        ],
    )
    result = Runner.run_streamed(
        triage, "hello", session=session, run_config=RunConfig(tracing_disabled=True)
    )

    async def drain() -> None:
        async for _ in result.stream_events():
            pass

    consumer = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(committed.wait(), 5)
        result.cancel()
        release.set()
        await asyncio.wait_for(consumer, 5)
        assert await session.get_items() == compacted
        state = result.to_state()
        assert state._pending_session_write is None
        state = await RunState.from_json(triage, json.loads(state.to_string()))
        resumed = await Runner.run(
            triage, state, session=session, run_config=RunConfig(tracing_disabled=True)
        )
        assert resumed.final_output == "done"
        assert len(model.calls) == 2
        assert handoff_calls == ["handoff"]
        assert await session.get_items() == [*compacted, resumed.new_items[-1].to_input_item()]
    finally:
        release.set()
        result.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


@pytest.mark.parametrize("encryption_outermost", [False, True])
async def test_redis_compaction_preserves_encryption_wrapper(
    make_session: MakeSession, encryption_outermost: bool
) -> None:
    pytest.importorskip("cryptography")
    from agents.extensions.memory.encrypt_session import EncryptedSession
    from cryptography.fernet import Fernet

    backend = make_session()
    key = Fernet.generate_key().decode()
    output: list[TResponseInputItem] = [{"role": "user", "content": "synthetic summary"}]
    compact = _Compact(output)
    session: Any
    if encryption_outermost:
        compaction = OpenAIResponsesCompactionSession(
            backend.session_id, backend, client=compact.client
        )
        session = EncryptedSession(backend.session_id, compaction, key)
    else:
        encrypted = EncryptedSession(backend.session_id, cast(Any, backend), key)
        session = OpenAIResponsesCompactionSession(
            backend.session_id, encrypted, client=compact.client
        )
    await session.add_items([{"role": "user", "content": "synthetic original"}])
    await session.run_compaction({"force": True, "compaction_mode": "input"})
    assert await session.get_items() == output
    stored = await backend.get_items()
    assert len(stored) == 1
    assert cast(dict[str, Any], stored[0]).get("__enc__") == 1
    assert "synthetic summary" not in json.dumps(stored)
