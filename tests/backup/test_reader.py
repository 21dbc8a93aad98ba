"""Reading a backup in segments: the digest per segment, a file changed between the passes
of a restore, the worker thread's end, the line-size shortcut of the limit checks."""

from __future__ import annotations

import asyncio
import gzip
import threading
from pathlib import Path

import orjson
import pytest
from sessionstore_memory import MemoryStore

from sessionstore import IntegrityError, ManualClock, QuotaExceededError
from sessionstore.backup import create_backup, restore_from_backup, verify_backup

from .conftest import Snapshot, rewrite, snapshot

pytestmark = pytest.mark.asyncio

SESSIONS = 3_000  # ~1.4 MB of lines: several 256 KiB segments
READER = "sessionstore-backup-read"


async def big_backup(clock: ManualClock, path: Path) -> tuple[Path, Snapshot]:
    async with MemoryStore(clock=clock) as source:
        for n in range(SESSIONS):
            await source.create_session(id=f"s{n:05d}", data={"pad": "p" * 300, "n": n})
        info = await create_backup(source, path)
        return Path(info.path), await snapshot(source)


def reader_threads_end() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith(READER):
            thread.join(timeout=10)
            assert not thread.is_alive(), "the reader thread did not end"


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
async def test_a_multi_segment_backup_restores_exactly(
    clock: ManualClock, tmp_path: Path, name: str
) -> None:
    path, expected = await big_backup(clock, tmp_path / name)
    assert (await verify_backup(path)).sessions == SESSIONS
    async with MemoryStore(clock=clock) as target:
        result = await restore_from_backup(target, path)
        assert result.restored == SESSIONS
        assert await snapshot(target) == expected
    reader_threads_end()


async def test_a_file_changed_between_the_passes_is_refused_before_the_change_is_written(
    clock: ManualClock, tmp_path: Path
) -> None:
    path, _ = await big_backup(clock, tmp_path / "b.jsonl")
    raw = path.read_bytes()
    victim = raw.rindex(b'"id":"s02900"')  # far beyond what the reader holds at the start
    changed: list[bool] = []

    def change_once(phase: str, done: int, total: int | None) -> None:
        if phase == "restore" and not changed:  # after the first batch was written
            with open(path, "r+b") as f:
                f.seek(victim + len('"id":"s0'))
                f.write(b"7")  # s02900 -> s07900: still valid JSON, still in order
            changed.append(True)

    async with MemoryStore(clock=clock) as target:
        with pytest.raises(IntegrityError, match="changed since it was verified"):
            await restore_from_backup(target, path, progress=change_once)
        written = sorted(await snapshot(target))
    assert changed and written  # the first batches went in ...
    assert written == [f"s{n:05d}" for n in range(len(written))]  # ... in order ...
    assert len(written) < 2_900  # ... and nothing of the changed segment
    reader_threads_end()


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
async def test_a_flipped_bit_deep_in_a_big_file_is_refused_and_the_thread_ends(
    clock: ManualClock, tmp_path: Path, name: str
) -> None:
    path, _ = await big_backup(clock, tmp_path / name)

    def flip(raw: bytes) -> bytes:
        index = int(len(raw) * 0.7)
        return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]

    rewrite(path, flip)
    async with MemoryStore(clock=clock) as target:
        with pytest.raises(IntegrityError):
            await restore_from_backup(target, path)
        assert await snapshot(target) == {}
    reader_threads_end()


async def test_a_progress_callback_that_raises_stops_the_pass_and_the_thread(
    clock: ManualClock, tmp_path: Path
) -> None:
    path, _ = await big_backup(clock, tmp_path / "b.jsonl.gz")

    class Stop(Exception):
        pass

    def stop(phase: str, done: int, total: int | None) -> None:
        raise Stop

    with pytest.raises(Stop):
        await verify_backup(path, progress=stop)
    reader_threads_end()


async def test_a_cancelled_restore_ends_the_thread(clock: ManualClock, tmp_path: Path) -> None:
    path, _ = await big_backup(clock, tmp_path / "b.jsonl.gz")
    async with MemoryStore(clock=clock) as target:
        task = asyncio.ensure_future(restore_from_backup(target, path))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    reader_threads_end()


def replace_content(path: Path, content: bytes) -> None:
    rewrite(path, lambda _old: content)


def lines_of(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).splitlines(keepends=True)


async def test_line_structure_errors(clock: ManualClock, tmp_path: Path) -> None:
    async with MemoryStore(clock=clock) as source:
        await source.create_session(id="a")
        await source.create_session(id="b")
        info = await create_backup(source, tmp_path / "b.jsonl")
    path = Path(info.path)
    header, a, b, trailer = lines_of(path)
    cases = {
        "empty file": b"",
        "no trailer after line 1": header,
        "no trailer after line 3": header + a + b,
        "line 4: data after the trailer": header + a + trailer + b + trailer,
        "line 2: content does not match the trailer's counts": header + trailer,
        "line 2: undecodable line": header + b"{nope\n" + trailer,
    }
    for message, content in cases.items():
        replace_content(path, content)
        with pytest.raises(IntegrityError, match=message):
            await verify_backup(path)


async def test_size_limits_are_exact_for_lines_over_the_limit(
    clock: ManualClock, tmp_path: Path
) -> None:
    async with MemoryStore(clock=clock) as source:
        # the line is longer than 1,000 bytes, the payload is not: accepted
        await source.create_session(id="fits", data={"x": "x" * 900}, metadata={"k": "v"})
        big = await source.create_session(id="long-events")
        await source.append_events(big.id, [{"type": "e", "data": {"x": "y" * 600}}] * 3)
        info = await create_backup(source, tmp_path / "b.jsonl")
        expected = await snapshot(source)
    line = next(x for x in lines_of(Path(info.path)) if b'"fits"' in x)
    assert len(line) > 1_000 and len(orjson.dumps({"x": "x" * 900})) < 1_000
    async with MemoryStore(clock=clock, max_session_bytes=1_000) as target:
        await restore_from_backup(target, info.path)
        assert await snapshot(target) == expected
    async with MemoryStore(clock=clock, max_event_bytes=500) as target:
        with pytest.raises(QuotaExceededError, match=r"event 1 of 'long-events'.*max_event_bytes"):
            await restore_from_backup(target, info.path)
        with pytest.raises(QuotaExceededError, match="raise it with the store option 'max_event"):
            await restore_from_backup(target, info.path)
        assert await snapshot(target) == {}  # refused before anything was written
