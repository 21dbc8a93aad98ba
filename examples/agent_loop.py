"""An agent loop on a managed session: interactions, iterations, checkpoints, and a
pause/resume across a process restart.

``python agent_loop.py`` runs the demo in two phases:

1. ``run``: a (toy) agent starts a task, works three iterations - each records the
   user/assistant/tool interactions and checkpoints its state - then pauses, and the
   process exits (as for a deploy).
2. ``resume``: a *new process* loads the session, sees it is resumable, resumes it,
   recovers from a bad tool result by restoring the last checkpoint, and completes.

With the filesystem driver installed the phases are two real processes sharing
``file://./agent-sessions``; without it (``memory://`` is per process) both phases run
in this process on one in-memory backend, with a fresh store and manager for phase 2.
Run one phase yourself: ``python agent_loop.py run URL`` / ``... resume URL SESSION_ID``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from sessionstore import (
    DriverNotFoundError,
    ManagedSession,
    ManagerConfig,
    SessionPersistenceManager,
    SessionStore,
    get_driver,
    open_store,
)

CONFIG = ManagerConfig(
    persist_on_interaction=True,  # every interaction is durable when the call returns
    persist_interval=None,
    cleanup_enabled=False,
    max_iterations=10,
    checkpoint_keep_last=3,
)
TASK = ["fetch the ticket", "look up the customer", "draft a reply", "check tone", "send"]


def toy_tool(step: str, attempt: int) -> dict[str, Any]:
    """A tool that fails once on "check tone" (so the agent must roll back)."""
    if step == "check tone" and attempt == 0:
        return {"ok": False, "error": "tone checker returned garbage"}
    return {"ok": True, "output": f"{step}: done"}


async def work_one_step(ms: ManagedSession, attempt: int = 0) -> bool:
    """One iteration of the agent; returns False when the tool result is bad."""
    step = TASK[ms.data["next"]]
    await ms.add_interaction({"role": "assistant", "text": f"I will {step}."})
    result = toy_tool(step, attempt)
    await ms.update(scratch={"last_tool": step, "result": result})  # staged ...
    await ms.add_interaction({"tool": step, "result": result}, type="tool_call")  # ... written
    if not result["ok"]:
        return False
    await ms.update(next=ms.data["next"] + 1, done=[*ms.data["done"], step])
    cp = await ms.checkpoint(f"after {step}")
    print(f"  iteration {ms.iterations}: {step} -> checkpoint {cp.label!r}")
    return True


async def phase_run(store: SessionStore) -> str:
    """Phase 1: start the task, work three iterations, pause."""
    async with SessionPersistenceManager(store, config=CONFIG) as manager:
        ms = await manager.create_managed_session(
            processor_id="support-agent",
            data={"task": "answer ticket #4711", "next": 0, "done": []},
            tags={"demo"},
        )
        print(f"phase 1 (run): session {ms.id}")
        await ms.add_interaction({"role": "user", "text": "Please answer ticket #4711."})
        for _ in range(3):
            await ms.next_iteration()
            await work_one_step(ms)
        await ms.pause("deploying a new version")
        print(f"  paused after {ms.iterations} iterations ({ms.event_count} events)")
        return ms.id


async def phase_resume(store: SessionStore, session_id: str) -> None:
    """Phase 2: a new process picks the session up and finishes it."""
    async with SessionPersistenceManager(store, config=CONFIG) as manager:
        ms = await manager.load_managed_session(session_id)
        print(f"phase 2 (resume): {ms.status.value}, resumable={ms.is_resumable}")
        print(f"  done so far: {ms.data['done']}")
        assert ms.is_resumable, "phase 1 should have paused the session"
        await ms.resume()
        attempt = 0
        while ms.data["next"] < len(TASK):
            if not await ms.next_iteration():
                print(f"  gave up: iteration limit ({ms.max_iterations}) reached")
                return
            if not await work_one_step(ms, attempt):
                checkpoints = await ms.list_checkpoints()
                print(f"  bad tool result; restoring checkpoint {checkpoints[-1].label!r}")
                await ms.restore_checkpoint(checkpoints[-1].id)
                attempt += 1
        await ms.complete({"reply": "sent", "steps": ms.data["done"]})
        events = await ms.get_events()
        kinds = sorted({e.type for e in events})
        print(f"  completed after {ms.iterations} iterations; {len(events)} events ({kinds})")
        summary = await manager.get_session_summary(ms.id)
        print(f"  summary: status={summary.status.value} checkpoints={summary.checkpoints}")


def have_filesystem() -> bool:
    """True when ``file://`` stores can be opened (the filesystem driver is installed)."""
    try:
        get_driver("file")
    except DriverNotFoundError:
        return False
    return True


async def run_phase(args: list[str]) -> str | None:
    """Run one phase against ``args[1]`` (a URL); phase 1 prints the session id."""
    async with open_store(args[1]) as store:
        if args[0] == "run":
            session_id = await phase_run(store)
            print(f"SESSION {session_id}")
            return session_id
        await phase_resume(store, args[2])
        return None


def two_processes(url: str) -> None:
    """Phase 1 and phase 2 in two separate processes."""
    script = str(Path(__file__).resolve())
    first = subprocess.run(
        [sys.executable, script, "run", url], capture_output=True, text=True, check=True
    )
    print(first.stdout, end="")
    session_id = first.stdout.strip().splitlines()[-1].split()[-1]
    print("--- process restart ---")
    second = subprocess.run(
        [sys.executable, script, "resume", url, session_id],
        capture_output=True,
        text=True,
        check=True,
    )
    print(second.stdout, end="")


async def one_process() -> None:
    """Both phases in this process, on one in-memory backend (memory:// is per process)."""
    from sessionstore_memory import MemoryBackend, MemoryStore

    backend = MemoryBackend()
    async with MemoryStore(backend=backend) as store:
        session_id = await phase_run(store)
    print("--- restart (simulated in-process: new store and manager, same memory) ---")
    async with MemoryStore(backend=backend) as store:
        await phase_resume(store, session_id)


def main(argv: list[str]) -> None:
    """``run URL`` / ``resume URL ID`` run one phase; no arguments run the whole demo."""
    if argv:
        asyncio.run(run_phase(argv))
    elif have_filesystem():
        two_processes(f"file://{Path.cwd() / 'agent-sessions'}")
    else:
        print("(the filesystem driver is not installed: both phases run in one process)")
        asyncio.run(one_process())


if __name__ == "__main__":
    main(sys.argv[1:])
