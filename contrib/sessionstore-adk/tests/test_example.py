"""The example runs as a reader runs it, twice on the same file store (the second run
sees the first's app and user counts), and prints what its docstring promises."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sessionstore_adk import SessionStoreService

from sessionstore import SessionStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "counter_agent.py"


def _run(url: str, cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), url],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("adapter_driver", ["file"], indirect=True)
def test_counter_agent_example(adapter_store: SessionStore, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'adk-sessions'}"
    first = _run(url, tmp_path)
    assert first == [
        "ada <- message 1 of this session, 1 of yours, 1 in the app",
        "ada <- message 2 of this session, 2 of yours, 2 in the app",
        "ada <- message 1 of this session, 3 of yours, 3 in the app",
        "grace <- message 1 of this session, 1 of yours, 4 in the app",
        "ada's first session: 4 events, state {'count': 2, 'app:count': 4, 'user:count': 3}",
        "ada has 2 sessions",
    ]
    second = _run(url, tmp_path)
    assert second[0] == "ada <- message 1 of this session, 4 of yours, 5 in the app"
    assert second[-1] == "ada has 4 sessions"


async def test_the_example_agent_on_every_driver(
    adapter_store: SessionStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ADK's ``Runner`` drives the example's agent over this test's store (each service
    object of the example wraps the same store, as separate processes would share it)."""
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    import counter_agent

    monkeypatch.setattr(
        counter_agent, "SessionStoreService", lambda url: SessionStoreService(adapter_store)
    )
    await counter_agent.main("unused://")
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == "grace <- message 1 of this session, 1 of yours, 4 in the app"
    assert lines[4] == (
        "ada's first session: 4 events, state {'count': 2, 'app:count': 4, 'user:count': 3}"
    )


def test_runner_run_sync_and_other_event_loops(
    adapter_store: SessionStore, adapter_store_url: str, tmp_path: Path
) -> None:
    """``Runner.run`` (ADK's sync entry point) runs the agent on a thread with a loop of
    its own; the service, opened from a URL, is used from three loops in turn."""
    from google.adk.runners import Runner
    from google.genai import types

    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from counter_agent import APP, CounterAgent
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    service = SessionStoreService(adapter_store_url, namespace=f"sync-{tmp_path.name}")
    session = asyncio.run(service.create_session(app_name=APP, user_id="ada"))
    runner = Runner(app_name=APP, agent=CounterAgent(name="counter"), session_service=service)
    message = types.Content(role="user", parts=[types.Part(text="hi")])
    for _ in range(2):
        replies = [
            e.content.parts[0].text
            for e in runner.run(user_id="ada", session_id=session.id, new_message=message)
            if e.content and e.content.parts and e.author == "counter"
        ]
    assert replies == ["message 2 of this session, 2 of yours, 2 in the app"]

    async def read() -> tuple[int, dict[str, object]]:
        got = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
        assert got is not None
        await service.close()
        return len(got.events), got.state

    assert asyncio.run(read()) == (4, {"count": 2, "app:count": 2, "user:count": 2})
