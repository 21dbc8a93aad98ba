"""The SDK's private names the adapter relies on are where it expects them, and the SDK
really calls the adapter's hooks. When this fails after an SDK upgrade, read the SDK's
``agents/memory/openai_responses_compaction_session.py`` and move
``sessionstore_openai_agents/_probes.py`` (and the hooks) along."""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner, TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession
from agents.memory import session as session_module
from agents.testing import ScriptedModel
from sdk_helpers import get_text_message
from sessionstore_openai_agents import SessionStoreSession, _probes
from store_taps import tapped
from test_port_redis_session import _Compact

from sessionstore import SessionStore


def test_every_private_name_is_where_the_sdk_had_it() -> None:
    moved = [p for p in _probes.probe() if not p.found]
    assert not moved, "the OpenAI Agents SDK moved private names the adapter uses: " + "; ".join(
        f"{p.name} in {p.module} (expected {p.detail})" for p in moved
    )


def test_the_session_defines_each_hook_under_the_probed_name() -> None:
    assert callable(getattr(SessionStoreSession, _probes.SNAPSHOT_HOOK))
    assert callable(getattr(SessionStoreSession, _probes.REPLACE_HOOK))


async def _writes_of_compaction(store: SessionStore, *, automatic: bool) -> list[str]:
    writes: list[str] = []

    async def record(name: str) -> None:
        writes.append(name)

    backend = SessionStoreSession("probe", tapped(store, record))
    await backend.add_items([{"role": "user", "content": "original"}])
    output: list[TResponseInputItem] = [{"role": "user", "content": "summary"}]
    session = OpenAIResponsesCompactionSession(
        backend.session_id,
        backend,
        client=_Compact(output).client,
        compaction_mode="input",
        should_trigger_compaction=lambda _: True,
    )
    writes.clear()
    if automatic:
        agent = Agent(name="t", model=ScriptedModel(steps=[[get_text_message("reply")]]))
        await Runner.run(agent, "next", session=session)
    else:
        await session.run_compaction({"force": True})
    assert await backend.get_items() == output
    return writes


async def test_manual_compaction_goes_through_the_atomic_replace_hook(
    adapter_store: SessionStore,
) -> None:
    """Without the hook the SDK would clear (delete_session) and add (append_events)."""
    assert await _writes_of_compaction(adapter_store, automatic=False) == ["commit"]


async def test_automatic_compaction_goes_through_the_snapshot_hook(
    adapter_store: SessionStore,
) -> None:
    """The run appends its turn, then the snapshot's replace_suffix commits one batch."""
    writes = await _writes_of_compaction(adapter_store, automatic=True)
    assert writes[-1] == "commit"
    assert "delete_session" not in writes


def test_a_missing_snapshot_type_turns_the_hook_off(monkeypatch: Any) -> None:
    monkeypatch.delattr(session_module, _probes.SNAPSHOT_CLASS)

    async def replace(_start: int, _items: list[TResponseInputItem]) -> bool:
        return False

    assert _probes.compaction_snapshot([], True, replace) is None
    assert not _probes.probe()[0].found
