"""Kill a real process between an interaction and its flush: what survives is exactly
what the configured persistence policy promises.

* per-interaction: every ``add_interaction`` that returned is durable (at most the one
  in flight at the kill may or may not be there);
* interval: everything up to the last completed flush is durable; what was staged after
  it is lost; nothing half-written is ever seen (a flush is one atomic commit, so
  ``data["n"]`` always equals the number of the last stored interaction).

Needs a durable store shared between processes: the filesystem driver. ``memory://``
lives inside one process, so there the test is skipped.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sessionstore import open_store

from .conftest import HAVE_FILESYSTEM, file_url

pytestmark = pytest.mark.skipif(
    not HAVE_FILESYSTEM,
    reason="needs a durable, cross-process driver (file://): memory:// lives in one process",
)

WORKER = Path(__file__).with_name("_crash_worker.py")
KILLS_PER_MODE = 3


@dataclass
class Seen:
    """What the worker reported before it died."""

    session_id: str = ""
    numbers: dict[str, list[int]] = field(
        default_factory=lambda: {"ACK": [], "STAGED": [], "PERSISTED": []}
    )

    def add(self, line: str) -> None:
        kind, value = line.split()
        if kind == "SESSION":
            self.session_id = value
        else:
            self.numbers[kind].append(int(value))

    def last(self, kind: str) -> int:
        return max(self.numbers[kind], default=0)


def run_and_kill(url: str, mode: str, after: int) -> Seen:
    """Start the worker, SIGKILL it once it reported ``after`` interactions."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), url, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SESSIONSTORE_URL"},
    )
    assert proc.stdout is not None
    seen = Seen()
    try:
        for line in proc.stdout:
            seen.add(line)
            if seen.last("ACK") >= after or seen.last("STAGED") >= after:
                proc.send_signal(signal.SIGKILL)
                break
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    for line in rest.splitlines():  # lines the worker printed before it died
        seen.add(line)
    return seen


async def stored_state(url: str, session_id: str) -> tuple[int, list[int]]:
    async with open_store(url) as store:
        session = await store.get_session(session_id)
        assert session is not None
        events = await store.get_events(session_id)
        return session.data["n"], [e.data["n"] for e in events if e.type == "interaction"]


@pytest.mark.parametrize("mode", ["interaction", "interval"])
def test_a_killed_worker_keeps_exactly_what_the_policy_promises(mode: str, tmp_path: Path) -> None:
    rnd = random.Random(f"crash-{mode}")
    for kill in range(KILLS_PER_MODE):
        url = file_url(tmp_path / f"{mode}-{kill}")
        seen = run_and_kill(url, mode, after=rnd.randint(5, 60))
        n, events = asyncio.run(stored_state(url, seen.session_id))
        # atomic flushes: the document and the log always agree, no gap, no duplicate
        assert events == list(range(1, n + 1))
        if mode == "interaction":
            acked = seen.last("ACK")
            assert acked <= n <= acked + 1  # every acknowledged interaction survived
        else:
            staged, durable = seen.last("STAGED"), seen.last("PERSISTED")
            assert durable <= n <= staged  # flushed work survived; staged work may be lost
