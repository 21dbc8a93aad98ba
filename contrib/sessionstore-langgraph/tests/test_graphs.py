"""Real ``StateGraph`` runs (interrupt and resume, ``update_state`` forks, time travel,
a ``DeltaChannel``) give exactly what they give on LangGraph's ``InMemorySaver``, on every
driver, through the async methods and through the sync twins."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from scenarios import delta_scenario, review_graph, review_scenario, sync_scenario
from sessionstore_langgraph import SessionStoreSaver

from sessionstore import SessionStore
from sessionstore.sync import open_sync_store
from tests.adapters.plugin import OpenStore


async def test_interrupt_resume_fork_and_time_travel(adapter_store: SessionStore) -> None:
    expected = await review_scenario(InMemorySaver(), "thread-1")
    with SessionStoreSaver(adapter_store) as saver:
        got = await review_scenario(saver, "thread-1")
    assert got == expected
    assert got[5]["values"]["log"] == ["start", "draft-1", "edited"]  # the fork took effect


async def test_a_delta_channel_rebuilds_from_its_history(adapter_store: SessionStore) -> None:
    expected = await delta_scenario(InMemorySaver(), "chat")
    calls: list[int] = []

    class Counting(SessionStoreSaver):
        async def aget_delta_channel_history(self, **kwargs: Any) -> Any:
            calls.append(1)
            return await super().aget_delta_channel_history(**kwargs)

    with Counting(adapter_store) as saver:
        got = await delta_scenario(saver, "chat")
    assert got == expected
    assert calls  # the graph did rebuild the channel through the saver's history read
    assert got[-1]["messages"][:2] == ["user-0", "reply-0"]


async def test_the_sync_twins_run_a_graph(adapter_store: SessionStore) -> None:
    expected = sync_scenario(InMemorySaver(), "sync-thread")
    result: dict[str, Any] = {}

    def run() -> None:  # graph.invoke is sync code: run it off this test's event loop
        with SessionStoreSaver(adapter_store) as saver:
            result["got"] = sync_scenario(saver, "sync-thread")

    thread = threading.Thread(target=run)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert result["got"] == expected


@pytest.mark.parametrize("adapter_driver", ["memory", "file"])
@pytest.mark.parametrize("thread_id", ["plain", "with spaces/and:colons", "é" * 200, "lg.x"])
async def test_free_text_thread_ids(adapter_store: SessionStore, thread_id: str) -> None:
    expected = await review_scenario(InMemorySaver(), thread_id)
    with SessionStoreSaver(adapter_store) as saver:
        assert await review_scenario(saver, thread_id) == expected
        listed = {t.config["configurable"]["thread_id"] async for t in saver.alist(None)}
    assert listed == {thread_id}


async def test_a_sync_store_facade_serves_the_sync_twins(adapter_store_url: str) -> None:
    expected = sync_scenario(InMemorySaver(), "facade")
    result: dict[str, Any] = {}

    def run() -> None:
        with open_sync_store(adapter_store_url, namespace=f"f-{uuid.uuid4().hex[:8]}") as facade:
            if not facade.capabilities.event_log:
                result["skip"] = type(facade.store).__name__
                return
            saver = SessionStoreSaver(facade)
            result["got"] = sync_scenario(saver, "facade")
            result["threads"] = [t.config["configurable"]["thread_id"] for t in saver.list(None)]

    thread = threading.Thread(target=run)
    thread.start()
    await asyncio.to_thread(thread.join)
    if "skip" in result:
        pytest.skip(f"{result['skip']} does not declare Capabilities.event_log")
    assert result["got"] == expected
    assert set(result["threads"]) == {"facade"}


async def test_a_second_process_resumes_the_thread(
    adapter_store: SessionStore, adapter_open_store: OpenStore
) -> None:
    """Pause on one store object, resume on another over the same data (what a second
    worker process sees): nothing the saver keeps in memory is needed."""
    config: RunnableConfig = {
        "configurable": {"thread_id": "handover"},
        "metadata": {"run_id": "r1"},
    }
    first = review_graph(SessionStoreSaver(adapter_store))
    paused = await first.ainvoke({"log": ["start"], "approved": ""}, config)
    assert "__interrupt__" in paused
    other = SessionStoreSaver(await adapter_open_store())
    second = review_graph(other)
    done = await second.ainvoke(Command(resume="from-b"), config)
    assert done["log"] == ["start", "draft-1", "review:from-b", "publish:from-b"]
    await other.adelete_for_runs(["r1"])
    assert [t async for t in SessionStoreSaver(adapter_store).alist(config)] == []
