"""A corrupt checkpoint file blocks neither its session nor a backup (issue #13, item 9),
and ``doctor`` reports a planted checkpoint directory symlink (issue #14)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pytest
from sessionstore_filesystem._file_formats import decode_checkpoint, encode_checkpoint

from sessionstore import BaseSessionStore, ManualClock
from tests.corrupt_checkpoints import check_corrupt_checkpoint_is_skipped_and_reported

from .conftest import MakeStore, session_dir
from .test_doctor import _cli


def _checkpoint_file(root: Path, sid: str, cp_id: str) -> Path:
    (found,) = session_dir(root, sid).glob(f"checkpoints.*/{cp_id}.json")
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["edited", "truncated", "symlink", "digest"])
async def test_a_corrupt_checkpoint_file_is_skipped_and_reported(
    root: Path, make_store: MakeStore, clock: ManualClock, tmp_path: Path, damage: str
) -> None:
    async def corrupt(store: BaseSessionStore, sid: str, cp_id: str) -> None:
        path = _checkpoint_file(root, sid, cp_id)
        raw = path.read_bytes()
        if damage == "edited":  # a hand edit: the file's checksum no longer matches
            path.write_bytes(raw.replace(b'"step":2', b'"step":3'))
        elif damage == "truncated":
            path.write_bytes(raw[: len(raw) // 2])
        elif damage == "symlink":  # a valid copy outside the store, linked in
            outside = tmp_path / "outside.json"
            outside.write_bytes(raw)
            path.unlink()
            os.symlink(outside, path)
        else:  # sealed again by someone who knew the format, but not the digest
            cp = decode_checkpoint(raw, "x")
            path.write_bytes(encode_checkpoint(dataclasses.replace(cp, data={"step": 7})))

    async with make_store() as store:
        await check_corrupt_checkpoint_is_skipped_and_reported(
            store, corrupt, tmp_path, advance=lambda: clock.advance(1)
        )


@pytest.mark.asyncio
async def test_doctor_quarantines_a_corrupt_checkpoint_and_the_session_stays(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        await store.create_session(id="s")
        good = await store.save_checkpoint("s", label="good")
        bad = await store.save_checkpoint("s", label="bad")
        path = _checkpoint_file(root, "s", bad.id)
        path.write_bytes(path.read_bytes().replace(b'"bad"', b'"BAD"'))
        report = await store.doctor()
        assert [c["record"] for c in report.corrupt] == [f"s/checkpoints/{bad.id}"]
        assert len(report.quarantined) == 1 and not path.exists()
        assert await store.list_checkpoints("s") == [good]
        assert (await store.doctor()).healthy


def _plant_checkpoint_dir_symlink(root: Path, tmp_path: Path) -> Path:
    (cp_dir,) = session_dir(root, "s").glob("checkpoints.*")
    outside = tmp_path / "elsewhere"
    os.rename(cp_dir, outside)
    os.symlink(outside, cp_dir)
    return cp_dir


@pytest.mark.asyncio
async def test_doctor_reports_a_symlinked_checkpoint_directory(
    root: Path, make_store: MakeStore, tmp_path: Path
) -> None:
    async with make_store() as store:
        await store.create_session(id="s")
        await store.save_checkpoint("s")
        cp_dir = _plant_checkpoint_dir_symlink(root, tmp_path)
        # never followed: the listing is empty and names the directory as corrupt
        assert await store.list_checkpoints("s") == []
        assert f"s/{cp_dir.name}" in store.corrupt_records
        dry = await store.doctor(dry_run=True)
        assert [c["record"] for c in dry.corrupt] == [f"s/{cp_dir.name}"]
        assert cp_dir.is_symlink()  # a dry run changes nothing
        report = await store.doctor()
        assert not report.healthy
        assert [c["record"] for c in report.corrupt] == [f"s/{cp_dir.name}"]
        assert report.quarantined and not cp_dir.is_symlink() and not cp_dir.exists()
        assert (tmp_path / "elsewhere").is_dir()  # the link's target was not touched
        assert await store.save_checkpoint("s")  # checkpoints work again
        assert (await store.doctor()).healthy


@pytest.mark.asyncio
async def test_doctor_reports_a_stray_symlink_in_a_session_directory(
    root: Path, make_store: MakeStore, tmp_path: Path
) -> None:
    """An old incarnation's checkpoint directory name, planted as a symlink, was removed
    as a leftover and the store called healthy."""
    async with make_store() as store:
        await store.create_session(id="s")
        await store.append_events("s", [{"type": "e"}])  # a session directory now
        target = tmp_path / "target"
        target.mkdir()
        link = session_dir(root, "s") / "checkpoints.0000000000000000"
        os.symlink(target, link)
        report = await store.doctor()
        assert [c["record"] for c in report.corrupt] == [f"s/{link.name}"]
        assert not link.is_symlink() and target.is_dir()


@pytest.mark.integration
def test_cli_doctor_exits_7_on_a_symlinked_checkpoint_directory(
    root: Path, make_store: MakeStore, tmp_path: Path
) -> None:
    async def setup() -> None:
        async with make_store() as store:
            await store.create_session(id="s")
            await store.save_checkpoint("s")

    asyncio.run(setup())
    cp_dir = _plant_checkpoint_dir_symlink(root, tmp_path)
    found = _cli("doctor", f"file://{root}", "--json")
    assert found.returncode == 7, found.stderr
    data = json.loads(found.stdout)
    assert data["healthy"] is False
    assert [c["record"] for c in data["corrupt"]] == [f"s/{cp_dir.name}"]
    again = _cli("doctor", f"file://{root}")
    assert again.returncode == 0, again.stderr
