"""``doctor``: verify, quarantine, tidy, reindex -- via the API and ``sessionstore doctor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import MakeStore, leftovers, session_dir


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sessionstore.cli", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


async def _damage(root: Path, make_store: MakeStore) -> None:
    """A store with one corrupt session, a corrupt checkpoint and assorted leftovers."""
    async with make_store() as store:
        for sid in ("good", "bad", "cp"):
            s = await store.create_session(id=sid, data={"v": sid}, tags={"t"})
            await store.append_events(s.id, [{"type": "e"}] * 3)
        await store.save_checkpoint("cp")
    (session_dir(root, "bad") / "session.json").write_text('{"v":1,"id":"bad"')  # truncated
    (cp_file,) = session_dir(root, "cp").glob("checkpoints.*/*.json")
    cp_file.write_bytes(cp_file.read_bytes().replace(b'"label":null', b'"label":"x"'))
    (session_dir(root, "good") / ".tmp.session.json.deadbeef").write_text("half")
    log = session_dir(root, "good") / "events.1.jsonl"
    log.write_bytes(log.read_bytes() + b'{"v":1,"seq":4,"typ')  # a torn tail
    (session_dir(root, "good") / "events.7.jsonl").write_text("an old generation\n")
    (root / "_default" / "journal" / ".tmp.0-0.json.cafe").write_text("never renamed")


def _files(root: Path) -> dict[str, bytes]:
    """Every file's content, except the index's (rewritten by every open)."""
    return {
        str(p): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "index" not in p.name and not p.name.endswith(".writer")
    }


@pytest.mark.asyncio
async def test_healthy_store(make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(data={"a": 1})
        await store.append_events(s.id, [{"type": "e"}])
        await store.save_checkpoint(s.id)
        report = await store.doctor()
    assert report.healthy and report.corrupt == [] and report.removed == []
    assert report.sessions_checked == 1
    assert report.records_checked == 3  # document, one event line, one checkpoint
    assert report.index_rebuilt and report.indexed_sessions == 1


@pytest.mark.asyncio
async def test_dry_run_reports_and_changes_nothing(root: Path, make_store: MakeStore) -> None:
    await _damage(root, make_store)
    async with make_store() as store:
        # opening already removed the journal temp file a dead writer left
        assert os.listdir(root / "_default" / "journal") == []
        before = _files(root)
        report = await store.doctor(dry_run=True)
        assert _files(root) == before
    assert not report.healthy and report.dry_run
    records = sorted(c["record"] for c in report.corrupt)
    assert records[0] == "bad" and records[1].startswith("cp/checkpoints/")
    assert report.quarantined == []
    assert any("deadbeef" in r for r in report.removed)
    assert any("uncommitted tail" in r for r in report.removed)
    assert any("events.7.jsonl" in r for r in report.removed)


@pytest.mark.asyncio
async def test_a_dead_writers_journal_temp_is_reported_then_removed(
    root: Path, make_store: MakeStore
) -> None:
    """One left while the store is open (opening removes those found then): the dry run
    names it and keeps it; the repair names it and removes it."""
    async with make_store() as store:
        await store.create_session(id="a")
        temp = root / "_default" / "journal" / ".tmp.0-0.json.cafe"
        temp.write_text("never renamed")
        dry = await store.doctor(dry_run=True)
        assert "journal/.tmp.0-0.json.cafe" in dry.removed and temp.exists()
        report = await store.doctor()
        assert "journal/.tmp.0-0.json.cafe" in report.removed and not temp.exists()
        assert "journal/.tmp.0-0.json.cafe" not in (await store.doctor()).removed


@pytest.mark.asyncio
async def test_repair(root: Path, make_store: MakeStore) -> None:
    await _damage(root, make_store)
    async with make_store() as store:
        report = await store.doctor()
        assert len(report.quarantined) == 2
        assert all((root / "_default" / q).exists() for q in report.quarantined)
        assert not session_dir(root, "bad").exists()
        assert leftovers(root) == []
        assert not (session_dir(root, "good") / "events.7.jsonl").exists()
        log = (session_dir(root, "good") / "events.1.jsonl").read_bytes()
        assert log.endswith(b"}\n") and log.count(b"\n") == 3  # the torn tail was cut
        assert await store.get_session("bad") is None  # moved aside, no longer an error
        assert await store.count_sessions() == 2
        assert await store.list_checkpoints("cp") == []  # its corrupt one is in quarantine
        again = await store.doctor()
    assert again.healthy and again.removed == [] and again.quarantined == []


@pytest.mark.integration
def test_cli_doctor_json_and_exit_codes(root: Path, make_store: MakeStore) -> None:
    import asyncio

    asyncio.run(_damage(root, make_store))
    url = f"file://{root}"
    dry = _cli("doctor", url, "--dry-run", "--json")
    assert dry.returncode == 7, dry.stderr
    data = json.loads(dry.stdout)
    assert data["dry_run"] is True and data["healthy"] is False and len(data["corrupt"]) == 2
    assert "error: 2 corrupt record(s) found" in dry.stderr
    fixed = _cli("doctor", url)
    assert fixed.returncode == 7 and "quarantine" in fixed.stderr
    assert "Corrupt records" in fixed.stdout
    healthy = _cli("--json", "doctor", url)
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["healthy"] is True


@pytest.mark.integration
def test_cli_doctor_needs_a_driver_with_doctor() -> None:
    out = _cli("doctor", "memory://")
    assert out.returncode == 1
    assert "has no doctor operation" in out.stderr
    assert _cli("doctor").returncode == 2  # no URL and no $SESSIONSTORE_URL
