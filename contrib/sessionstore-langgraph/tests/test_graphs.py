"""Real ``StateGraph`` runs (interrupt and resume, ``update_state`` forks, time travel,
a ``DeltaChannel``) give exactly what they give on LangGraph's ``InMemorySaver``, on every
driver, through the async methods and through the sync twins."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from scenarios import delta_scenario, review_scenario, sync_scenario
from sessionstore_langgraph import SessionStoreSaver

from sessionstore import SessionStore
from sessionstore.sync import open_sync_store


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
