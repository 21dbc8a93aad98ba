"""migrate: store to store through the same path, resumable after an interruption."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sessionstore import ConfigurationError, ManualClock, QuotaExceededError, SessionFilter
from sessionstore.backup import migrate

from .conftest import HAS_FILE, Opener, populate, snapshot

pytestmark = pytest.mark.asyncio


class Interrupted(Exception):
    pass


async def test_migrate_copies_everything_exactly(
    open_kind: Opener, kind: str, clock: ManualClock
) -> None:
    source = await open_kind(kind, "src")
    await populate(source, clock)
    other = "memory" if kind != "memory" else ("file" if HAS_FILE else "memory")
    dest = await open_kind(other, "dst")
    result = await migrate(source, dest, include_expired=True)
    expected = await snapshot(source)
    assert result.restored == len(expected) and result.resumed_after is None
    assert await snapshot(dest) == expected
    again = await migrate(source, dest, include_expired=True)
    # an expired stored session counts as absent: d-expiring is written again, identically
    assert (again.restored, again.skipped) == (1, len(expected) - 1)
    assert await snapshot(dest) == expected


async def test_migrate_resumes_after_an_interruption(
    open_kind: Opener, kind: str, tmp_path: Path
) -> None:
    source = await open_kind(kind, "src")
    for n in range(35):
        s = await source.create_session(id=f"s{n:03d}", data={"n": n})
        await source.append_events(s.id, [{"type": "e", "data": {"n": n}}])
    dest = await open_kind(kind, "dst")
    state = tmp_path / "progress.json"
    calls = 0

    def stop_after_two_pages(phase: str, done: int, total: int | None) -> None:
        nonlocal calls
        assert phase == "migrate" and total == 35
        calls += 1
        if done >= 20:
            raise Interrupted

    with pytest.raises(Interrupted):
        await migrate(
            source, dest, checkpoint_file=state, batch_size=10, progress=stop_after_two_pages
        )
    saved = orjson.loads(state.read_bytes())
    assert saved["last_id"] == "s009"  # the first page was committed, the second was not
    assert saved["done"] == 10
    written = await snapshot(dest)
    assert len(written) == 20  # the second page was written, its progress not recorded
    seen: list[int] = []
    result = await migrate(
        source, dest, checkpoint_file=state, batch_size=10,
        progress=lambda phase, done, total: seen.append(done),
    )  # fmt: skip
    assert result.resumed_after == "s009" and result.last_id == "s034"
    assert (result.restored, result.skipped) == (15, 10)  # s010-s019 again: skipped
    assert seen[0] > 10 and seen[-1] == 35
    assert not state.exists()  # done: the progress file is gone
    assert await snapshot(dest) == await snapshot(source)


async def test_a_state_file_of_another_migration_is_refused(
    open_kind: Opener, tmp_path: Path
) -> None:
    source = await open_kind("memory", "src")
    await source.create_session(id="x", processor_id="p")
    await source.create_session(id="y", processor_id="p")
    dest = await open_kind("memory", "dst")
    state = tmp_path / "progress.json"

    def stop(phase: str, done: int, total: int | None) -> None:
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await migrate(source, dest, checkpoint_file=state, batch_size=1, progress=stop)
    assert state.exists()
    with pytest.raises(ConfigurationError, match="another migration"):
        await migrate(source, dest, checkpoint_file=state, filter=SessionFilter(processor_id="p"))


@pytest.mark.skipif(not HAS_FILE, reason="needs the file:// driver")
async def test_migrate_between_urls(open_kind: Opener, clock: ManualClock, tmp_path: Path) -> None:
    source = await open_kind("file", "src")
    await populate(source, clock)
    expected = await snapshot(source)
    await source.shutdown()
    result = await migrate(
        f"file://{tmp_path / 'src'}", f"file://{tmp_path / 'dst'}", include_expired=True,
        checkpoint_file=tmp_path / "state.json",
    )  # fmt: skip
    assert result.restored == len(expected)
    dest = await open_kind("file", "dst")
    got = await snapshot(dest)
    assert sorted(got) == sorted(expected)
    assert [got[k][1] for k in sorted(got)] == [expected[k][1] for k in sorted(expected)]


async def test_migrate_names_the_destination_option_a_payload_is_over(
    open_kind: Opener,
) -> None:
    source = await open_kind("memory", "src")
    await source.create_session(id="big", data={"x": "x" * 2000})
    long = await source.create_session(id="long")
    await source.append_events(long.id, [{"type": "e", "data": {"x": "y" * 800}}])
    small_sessions = await open_kind("memory", "dst", max_session_bytes=1000)
    with pytest.raises(QuotaExceededError) as info:
        await migrate(source, small_sessions)
    assert info.value.option == "max_session_bytes"
    assert "raise it with the store option 'max_session_bytes'" in str(info.value)
    await source.delete_session("big")
    small_events = await open_kind("memory", "dst2", max_event_bytes=500)
    with pytest.raises(QuotaExceededError) as info:
        await migrate(source, small_events)
    assert info.value.option == "max_event_bytes"
    assert "raise it with the store option 'max_event_bytes'" in str(info.value)
