"""restore_from_backup: strategies, verification before writing, idempotence, dry runs."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import pytest

from sessionstore import (
    BaseSessionStore,
    IntegrityError,
    ManualClock,
    Mutation,
    QuotaExceededError,
    SessionExistsError,
    SessionFilter,
)
from sessionstore.backup import BackupInfo, RestoreResult, create_backup, restore_from_backup

from .conftest import Opener, populate, rewrite, snapshot

pytestmark = pytest.mark.asyncio

STRATEGIES = ["skip_existing", "overwrite", "update_newer", "fail_on_conflict"]


async def prepared(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path
) -> tuple[BaseSessionStore, BaseSessionStore, BackupInfo]:
    """A backup of ``older``, ``newer``, ``only-backup``, ``expired-here`` and a
    destination holding an older ``older``, a newer ``newer``, ``only-here`` and an
    expired ``expired-here``."""
    source = await open_kind(kind, "src")
    dest = await open_kind(kind, "dst")
    await dest.create_session(id="newer", data={"side": "dest"})  # created first ...
    await dest.create_session(id="older", data={"side": "dest"})
    await dest.create_session(id="only-here", data={"side": "dest"})
    await dest.create_session(id="expired-here", data={"side": "dest"}, ttl=1)
    clock.advance(5)
    for sid in ("older", "newer", "only-backup", "expired-here"):
        s = await source.create_session(id=sid, data={"side": "backup"})
        await source.append_events(s.id, [{"type": "e", "data": {"from": "backup"}}])
    await source.save_checkpoint("older", label="cp")
    clock.advance(5)
    await dest.update_session("newer", merge_data={"later": True})  # ... but updated last
    info = await create_backup(source, tmp_path / "b.jsonl.gz")
    return source, dest, info


def sides(snap: dict[str, Any]) -> dict[str, str]:
    return {sid: s.data["side"] for sid, (s, _, _) in snap.items()}


EXPECTED = {
    "skip_existing": (
        {"older": "dest", "newer": "dest", "only-here": "dest", "only-backup": "backup",
         "expired-here": "backup"},
        (2, 0, 2),
    ),
    "overwrite": (
        {"older": "backup", "newer": "backup", "only-here": "dest", "only-backup": "backup",
         "expired-here": "backup"},
        (2, 2, 0),
    ),
    "update_newer": (
        {"older": "backup", "newer": "dest", "only-here": "dest", "only-backup": "backup",
         "expired-here": "backup"},
        (2, 1, 1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
async def test_strategy_against_a_prepared_destination(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path, strategy: str
) -> None:
    source, dest, info = await prepared(open_kind, kind, clock, tmp_path)
    result = await restore_from_backup(dest, info.path, merge_strategy=strategy)
    want_sides, (restored, overwritten, skipped) = EXPECTED[strategy]
    assert (result.restored, result.overwritten, result.skipped) == (
        restored,
        overwritten,
        skipped,
    )
    after = await snapshot(dest)
    assert sides(after) == want_sides
    original = await snapshot(source)
    for sid, side in want_sides.items():
        if side == "backup":  # written exactly as backed up: version, timestamps, events
            assert after[sid] == original[sid]


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
async def test_dry_run_reports_the_same_counts_and_writes_nothing(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path, strategy: str
) -> None:
    _, dest, info = await prepared(open_kind, kind, clock, tmp_path)
    before = await snapshot(dest)
    dry = await restore_from_backup(dest, info.path, merge_strategy=strategy, dry_run=True)
    assert dry.dry_run and dry.backup.verified
    assert await snapshot(dest) == before
    real = await restore_from_backup(dest, info.path, merge_strategy=strategy)
    assert dry.counts == real.counts
    assert dry.events == real.events > 0


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
async def test_restoring_twice_equals_restoring_once(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path, strategy: str
) -> None:
    _, dest, info = await prepared(open_kind, kind, clock, tmp_path)
    await restore_from_backup(dest, info.path, merge_strategy=strategy)
    once = await snapshot(dest)
    again = await restore_from_backup(dest, info.path, merge_strategy=strategy)
    assert await snapshot(dest) == once
    assert again.restored == 0


async def test_fail_on_conflict_writes_nothing(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path
) -> None:
    _, dest, info = await prepared(open_kind, kind, clock, tmp_path)
    before = await snapshot(dest)
    dry = await restore_from_backup(
        dest, info.path, merge_strategy="fail_on_conflict", dry_run=True
    )
    assert (dry.conflicts, dry.restored) == (2, 2)
    with pytest.raises(SessionExistsError, match="2 session"):
        await restore_from_backup(dest, info.path, merge_strategy="fail_on_conflict")
    assert await snapshot(dest) == before
    empty = await open_kind(kind, "empty")
    result = await restore_from_backup(empty, info.path, merge_strategy="fail_on_conflict")
    assert (result.restored, result.conflicts) == (4, 0)


def flip_bit(path: str, position: float) -> None:
    """Flip one bit at ``position`` of the file, or at the first byte after it where the
    flip changes what the file holds: in a gzip file some bits carry nothing (a member
    header's MTIME, XFL and OS bytes, the trailer member's among them, and the padding
    after a final deflate block), and a backup that reads the same is not corrupt."""

    def flipped_at(raw: bytes, index: int) -> bytes:
        return raw[:index] + bytes([raw[index] ^ 0x04]) + raw[index + 1 :]

    def changes_content(raw: bytes, changed: bytes) -> bool:
        if not path.endswith(".gz"):
            return True
        try:
            return gzip.decompress(changed) != gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return True

    def flip(raw: bytes) -> bytes:
        for index in range(int(len(raw) * position), len(raw)):
            changed = flipped_at(raw, index)
            if changes_content(raw, changed):
                return changed
        raise AssertionError("no bit after the position changes the backup")

    rewrite(path, flip)


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
@pytest.mark.parametrize("position", [0.3, 0.6, 0.9])
async def test_a_flipped_bit_is_refused_with_live_data_untouched(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path, name: str, position: float
) -> None:
    source = await open_kind(kind, "src")
    await populate(source, clock)
    info = await create_backup(source, tmp_path / name, include_expired=True)
    flip_bit(info.path, position)
    dest = await open_kind(kind, "dst")
    await dest.create_session(id="a-full", data={"live": True})
    before = await snapshot(dest)
    for strategy in ("overwrite", "skip_existing"):
        with pytest.raises(IntegrityError, match=r"b\.jsonl(\.gz)?"):
            await restore_from_backup(dest, info.path, merge_strategy=strategy)
    assert await snapshot(dest) == before


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
@pytest.mark.parametrize("keep", [0.25, 0.5, 0.97, -1])
async def test_a_truncated_backup_is_refused_with_live_data_untouched(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path, name: str, keep: float
) -> None:
    source = await open_kind(kind, "src")
    await populate(source, clock)
    info = await create_backup(source, tmp_path / name, include_expired=True)
    zipped = name.endswith(".gz")

    def cut(raw: bytes) -> bytes:
        if keep != -1:
            return raw[: int(len(raw) * keep)]
        # cut exactly before the trailer line: every remaining line is whole
        body = gzip.decompress(raw) if zipped else raw
        body = body[: body.rstrip(b"\n").rfind(b"\n") + 1]
        return gzip.compress(body) if zipped else body

    rewrite(info.path, cut)
    dest = await open_kind(kind, "dst")
    await dest.create_session(id="c-events", data={"live": True})
    before = await snapshot(dest)
    with pytest.raises(IntegrityError, match=r"truncated|corrupt|no end"):
        await restore_from_backup(dest, info.path, merge_strategy="overwrite")
    assert await snapshot(dest) == before


async def test_restore_filter_selects_sessions(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path
) -> None:
    source = await open_kind(kind, "src")
    await populate(source, clock)
    info = await create_backup(source, tmp_path / "b.jsonl", include_expired=True)
    dest = await open_kind(kind, "dst")
    result = await restore_from_backup(
        dest, info.path, filter=SessionFilter(processor_id="agent-2")
    )
    assert (result.restored, result.filtered_out, result.backup.sessions) == (5, 11, 16)
    assert sorted(await snapshot(dest)) == ["c-events", "m-02", "m-05", "m-08", "m-11"]


async def test_payloads_over_the_destination_limits_are_refused_before_writing(
    open_kind: Opener, clock: ManualClock, tmp_path: Path
) -> None:
    source = await open_kind("memory", "src")
    await source.create_session(id="a", data={"small": 1})
    await source.create_session(id="b", data={"big": "x" * 5000})
    info = await create_backup(source, tmp_path / "b.jsonl")
    dest = await open_kind("memory", "dst", max_session_bytes=1000)
    with pytest.raises(QuotaExceededError, match=r"'b'.*max_session_bytes") as refused:
        await restore_from_backup(dest, info.path)
    assert refused.value.option == "max_session_bytes"
    assert "raise it with the store option 'max_session_bytes'" in str(refused.value)
    assert await snapshot(dest) == {}


async def test_a_write_race_in_a_batch_is_redone_session_by_session(
    open_kind: Opener, kind: str, tmp_path: Path
) -> None:
    source = await open_kind(kind, "src")
    for n in range(10):
        await source.create_session(id=f"s{n}", data={"from": "backup"})
    info = await create_backup(source, tmp_path / "b.jsonl")
    dest = await open_kind(kind, "dst")
    load = dest._load
    raced = False

    async def racing_load(ids: Any) -> Any:
        nonlocal raced
        loaded = await load(ids)
        if not raced:  # another writer creates s3 between our read and our write
            raced = True
            await dest.create_session(id="s3", data={"from": "racer"})
        return loaded

    dest._load = racing_load  # type: ignore[method-assign,assignment]
    result = await restore_from_backup(dest, info.path)
    assert (result.restored, result.skipped) == (9, 1)
    after = await snapshot(dest)
    assert after["s3"][0].data == {"from": "racer"}
    assert all(after[f"s{n}"][0].data == {"from": "backup"} for n in range(10) if n != 3)


async def test_a_writer_during_a_chunked_session_leaves_it_reported_incomplete(
    open_kind: Opener, kind: str, tmp_path: Path
) -> None:
    source = await open_kind(kind, "src")
    await source.create_session(id="long")
    for _ in range(4):
        await source.append_events("long", [{"type": "e", "data": {"i": i}} for i in range(3000)])
    await source.create_session(id="zz-after")
    info = await create_backup(source, tmp_path / "b.jsonl")
    dest = await open_kind(kind, "dst")
    apply = dest._apply
    seen: list[Mutation] = []
    raced = False

    async def racing_apply(mutations: Any, *, atomic: bool = True) -> None:
        nonlocal raced
        await apply(mutations, atomic=atomic)
        seen.extend(mutations)
        if not raced and any(m.session_id == "long" for m in mutations):
            raced = True  # another writer changes "long" right after its first chunk
            await dest.update_session("long", merge_data={"racer": True})

    dest._apply = racing_apply  # type: ignore[method-assign]
    result: RestoreResult = await restore_from_backup(dest, info.path)
    assert result.incomplete == ("long",)
    assert result.restored == 2  # zz-after is restored as usual
    long = await dest.get_session("long")
    assert long is not None and long.data == {"racer": True}
    assert len([m for m in seen if m.session_id == "long" and m.session is None]) == 0
