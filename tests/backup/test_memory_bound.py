"""Memory stays flat: one session with 100,000 events backs up and restores in chunks.

tracemalloc's peak is used as a generous sanity bound only (what the stores themselves
hold counts too); it is not a timing assertion.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from sessionstore.backup import create_backup, restore_from_backup

from .conftest import HAS_FILE, Opener

# integration: 100,000-event sessions under a memory bound
pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

EVENTS = 100_000
MB = 1 << 20


async def test_one_session_with_100k_events_round_trips_with_bounded_memory(
    open_kind: Opener, tmp_path: Path
) -> None:
    source = await open_kind("memory", "src")
    await source.create_session(id="long", data={"goal": "remember everything"})
    for start in range(0, EVENTS, 10_000):
        await source.append_events(
            "long",
            [
                {"type": "step", "data": {"i": i, "note": "n" * 20}}
                for i in range(start, start + 10_000)
            ],
        )
    target = await open_kind("file" if HAS_FILE else "memory", "dst")
    tracemalloc.start()
    try:
        info = await create_backup(source, tmp_path / "long.jsonl.gz")
        backup_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        result = await restore_from_backup(target, info.path)
        restore_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.events, result.events, result.restored) == (EVENTS, EVENTS, 1)
    # the events as Python objects alone would take well over 40 MB
    assert backup_peak < 20 * MB, backup_peak
    assert restore_peak < 50 * MB, restore_peak
    original = await source.get_session("long")
    restored = await target.get_session("long")
    assert restored == original
    for after in (0, 50_000, EVENTS - 1_000):
        assert await target.get_events("long", after_seq=after, limit=1_000) == (
            await source.get_events("long", after_seq=after, limit=1_000)
        )
