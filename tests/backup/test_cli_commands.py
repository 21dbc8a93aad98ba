"""The store commands (ls, show, rm, stats, backup, verify, restore, migrate, purge-expired)
driven as a user drives them: subprocesses, piped --json parsed, exit codes checked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sessionstore import ManualClock, open_store
from sessionstore.backup import create_backup

from .conftest import HAS_FILE, populate

# integration: the backup commands run in subprocesses
pytestmark = pytest.mark.integration

needs_file = pytest.mark.skipif(not HAS_FILE, reason="needs the file:// driver")


def sessionstore(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sessionstore ARGS`` in a fresh interpreter, stdout piped (not a terminal)."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    for name in ("SESSIONSTORE_DEBUG", "SESSIONSTORE_URL"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "sessionstore.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60, check=False,
    )  # fmt: skip


def ok_json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # nothing but one JSON document on stdout


def one_error_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def make_backup(tmp_path: Path, name: str = "b.jsonl.gz") -> Path:
    async def build() -> Path:
        clock = ManualClock()
        async with open_store("memory://", clock=clock) as store:
            await populate(store, clock)
            info = await create_backup(store, tmp_path / name, include_expired=True)
        return Path(info.path)

    return asyncio.run(build())


def corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_verify_and_dry_run_restore_with_json(tmp_path: Path) -> None:
    backup = make_backup(tmp_path)
    info = ok_json(sessionstore("verify", str(backup), "--json"))
    assert info["verified"] is True and info["sessions"] == 16 and info["compression"] == "gzip"
    dry = ok_json(sessionstore("restore", "memory://", str(backup), "--dry-run", "--json"))
    assert (dry["dry_run"], dry["restored"], dry["events"]) == (True, 16, info["events"])
    human = sessionstore("verify", str(backup))
    assert human.returncode == 0 and human.stdout.startswith("ok: ")


def test_a_corrupt_backup_exits_7_naming_the_problem(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, "b.jsonl")
    corrupt(backup)
    line = one_error_line(sessionstore("verify", str(backup)), 7)
    assert "b.jsonl" in line
    one_error_line(sessionstore("restore", "memory://", str(backup), "--json"), 7)
    debug = sessionstore("--debug", "verify", str(backup))
    assert debug.returncode == 7 and "Traceback" in debug.stderr


def test_missing_arguments_and_sessions(tmp_path: Path) -> None:
    assert "not found" in one_error_line(sessionstore("show", "memory://", "nope"), 5)
    assert "not found" in one_error_line(sessionstore("rm", "memory://", "nope"), 5)
    usage = sessionstore("show", "memory://")
    assert usage.returncode == 2 and "missing argument" in usage.stderr
    no_url = sessionstore("ls")
    assert no_url.returncode == 2 and "SESSIONSTORE_URL" in no_url.stderr
    assert one_error_line(sessionstore("verify", str(tmp_path / "none.jsonl")), 2)
    bad = sessionstore("show", "nosuch://x", "id")
    assert bad.returncode == 3


@needs_file
def test_store_commands_on_a_file_store(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"

    async def fill() -> None:
        # a day ago: the commands run on the real clock, so every ttl has passed by then
        clock = ManualClock(datetime.now(UTC) - timedelta(days=1))
        async with open_store(url, clock=clock) as store:
            await populate(store, clock)
            await store.create_session(id="gone-soon", ttl=0.001)

    asyncio.run(fill())
    page = ok_json(sessionstore("ls", url, "--processor", "agent-1", "--json", "--limit", "2"))
    assert [s["id"] for s in page["items"]] == ["m-01", "m-04"] and page["next_cursor"]
    more = ok_json(sessionstore("ls", url, "--processor", "agent-1", "--json", "--limit", "2",
                                "--cursor", page["next_cursor"]))  # fmt: skip
    assert [s["id"] for s in more["items"]] == ["m-07", "m-10"]
    env_page = ok_json(sessionstore("ls", "--json", "--tag", "prod", env={"SESSIONSTORE_URL": url}))
    assert sorted(s["id"] for s in env_page["items"]) == ["c-events"]  # a-full has expired
    table = sessionstore("ls", url, "--status", "active")
    assert table.returncode == 0 and "m-00" in table.stdout and "│" in table.stdout

    shown = ok_json(sessionstore("show", url, "c-events", "--events", "3", "--json"))
    assert shown["session"]["event_count"] == 25
    assert [e["seq"] for e in shown["events"]] == [23, 24, 25]
    assert ok_json(sessionstore("show", "c-events", "--json", env={"SESSIONSTORE_URL": url}))

    stats = ok_json(sessionstore("stats", url, "--json"))
    assert stats["sessions"] == 14 and stats["by_status"]["active"] == 14
    assert stats["by_processor"] == {"-": 1, "agent-0": 4, "agent-1": 4, "agent-2": 5}
    assert stats["expired_not_purged"] == 3 and stats["events"] == 25

    backup = tmp_path / "b.jsonl.zst"
    info = ok_json(sessionstore("backup", url, str(backup), "--include-expired", "--json"))
    assert info["sessions"] == 17 and backup.exists()
    bar = sessionstore("backup", url, str(tmp_path / "p.jsonl"), "--progress")
    assert bar.returncode == 0 and "backup" in bar.stderr and "14/14" in bar.stderr

    assert ok_json(sessionstore("rm", url, "m-00", "--json")) == {"deleted": "m-00"}
    one_error_line(sessionstore("rm", url, "m-00"), 5)
    one_error_line(sessionstore("rm", url, "m-01", "--expected-version", "99"), 6)
    restored = ok_json(
        sessionstore("restore", url, str(backup), "--strategy", "overwrite", "--json")
    )
    assert (restored["restored"], restored["overwritten"]) == (4, 13)  # m-00 + 3 expired
    one_error_line(sessionstore("restore", url, str(backup), "--strategy", "fail_on_conflict"), 6)

    purged = ok_json(sessionstore("purge-expired", url, "--json"))
    assert purged == {"removed": 3}

    moved = ok_json(
        sessionstore("migrate", url, f"file://{tmp_path / 'copy'}", "--json", cwd=tmp_path)
    )
    assert moved["restored"] == 14 and moved["resumed_after"] is None
    assert not list(tmp_path.glob(".sessionstore-migrate-*"))  # progress file removed
    copied = ok_json(sessionstore("stats", f"file://{tmp_path / 'copy'}", "--json"))
    assert copied["sessions"] == 14 and copied["events"] == 25

    before = ok_json(sessionstore("ls", url, "--json", "--include-expired", "--limit", "100"))
    corrupt(backup)
    one_error_line(sessionstore("restore", url, str(backup), "--strategy", "overwrite"), 7)
    after = ok_json(sessionstore("ls", url, "--json", "--include-expired", "--limit", "100"))
    assert after == before  # live data untouched


def test_restore_takes_the_filters_of_ls_and_backup(tmp_path: Path) -> None:
    backup = make_backup(tmp_path)  # 16 sessions, none expired on the real clock (2030)
    help_text = sessionstore("restore", "--help").stdout
    for option in ("--processor", "--status", "--tag", "--include-expired"):
        assert option in help_text
    only = ok_json(
        sessionstore("restore", "memory://", str(backup), "--processor", "agent-1", "--json")
    )
    assert (only["restored"], only["filtered_out"]) == (5, 11)  # a-full, m-01/04/07/10
    both = ok_json(
        sessionstore("restore", "memory://", str(backup), "--dry-run", "--json",
                     "--tag", "prod", "--status", "active", "--status", "paused")
    )  # fmt: skip
    assert (both["dry_run"], both["restored"], both["filtered_out"]) == (True, 2, 14)
    everything = ok_json(sessionstore("restore", "memory://", str(backup), "--json"))
    assert (everything["restored"], everything["filtered_out"]) == (16, 0)
    bad = sessionstore("restore", "memory://", str(backup), "--status", "sleeping")
    assert bad.returncode == 2 and "sleeping" in bad.stderr


@needs_file
def test_restore_filters_leave_out_expired_sessions_unless_asked(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"

    async def fill() -> Path:
        # a day ago: on the real clock every ttl has passed (a-full and d-expiring expired)
        clock = ManualClock(datetime.now(UTC) - timedelta(days=1))
        async with open_store(url, clock=clock) as store:
            await populate(store, clock)
            info = await create_backup(store, tmp_path / "b.jsonl", include_expired=True)
        return Path(info.path)

    backup = asyncio.run(fill())
    first, second = f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"
    live = ok_json(sessionstore("restore", first, str(backup), "--tag", "prod", "--json"))
    assert (live["restored"], live["filtered_out"]) == (1, 15)  # c-events
    with_expired = ok_json(
        sessionstore("restore", second, str(backup), "--tag", "prod", "--include-expired", "--json")
    )
    assert (with_expired["restored"], with_expired["filtered_out"]) == (2, 14)  # + a-full
    shown = ok_json(sessionstore("ls", second, "--include-expired", "--json"))
    assert sorted(s["id"] for s in shown["items"]) == ["a-full", "c-events"]


def test_backup_refuses_an_existing_file_without_force(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    source = make_backup(tmp_path, "src.jsonl")
    ok_json(sessionstore("restore", url, str(source), "--json"))
    target = tmp_path / "b.jsonl"
    target.write_bytes(b"an older backup")
    line = one_error_line(sessionstore("backup", url, str(target)), 6)
    assert str(target) in line and "--force" in line
    assert target.read_bytes() == b"an older backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jsonl", "src.jsonl", "store"]
    info = ok_json(sessionstore("backup", url, str(target), "--force", "--json"))
    assert info["sessions"] == 16 and ok_json(sessionstore("verify", str(target), "--json"))


def test_a_dry_run_exits_as_the_real_run_would(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    backup = make_backup(tmp_path)
    ok_json(sessionstore("restore", url, str(backup), "--json"))
    args = ("restore", url, str(backup), "--strategy", "fail_on_conflict")
    real = sessionstore(*args)
    dry = sessionstore(*args, "--dry-run")
    assert real.returncode == dry.returncode == 6, (real.stderr, dry.stderr)
    assert "16 session(s) of the backup exist already" in one_error_line(dry, 6)
    assert "conflicts" in dry.stdout  # the counts are printed first
    dry_json = sessionstore(*args, "--dry-run", "--json")
    assert dry_json.returncode == 6 and json.loads(dry_json.stdout)["conflicts"] == 16
    fine = ok_json(sessionstore("restore", url, str(backup), "--dry-run", "--json"))
    assert (fine["skipped"], fine["conflicts"]) == (16, 0)  # skip_existing: no conflict


def test_migrate_json_names_no_state_file_it_removed(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path / 'src'}", f"file://{tmp_path / 'dst'}"
    ok_json(sessionstore("restore", src, str(make_backup(tmp_path)), "--json"))
    for extra in ([], ["--state", str(tmp_path / "progress.json")]):
        moved = ok_json(sessionstore("migrate", src, dst, "--json", *extra, cwd=tmp_path))
        assert moved["state_file"] is None
        assert not list(tmp_path.glob(".sessionstore-migrate-*"))
        assert not (tmp_path / "progress.json").exists()


def test_errors_about_a_backup_file_name_the_path_given(tmp_path: Path) -> None:
    sub = tmp_path / "nightly"
    sub.mkdir()
    altered = make_backup(sub, "b.jsonl")
    corrupt(altered)
    truncated = make_backup(sub, "t.jsonl")
    truncated.write_bytes(truncated.read_bytes()[:-40])
    garbage = sub / "notes.jsonl"
    garbage.write_text("not json at all\n")
    for bad in (altered, truncated, garbage):
        relative = f"nightly/{bad.name}"
        for given, cwd in ((relative, tmp_path), (str(bad), None)):
            for command in (["verify", given], ["restore", "memory://", given, "--dry-run"]):
                line = one_error_line(sessionstore(*command, cwd=cwd), 7)
                assert line.startswith((f"error: {given}, ", f"error: {given}: ")), line


def test_progress_into_a_redirected_file_is_plain_text(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    backup = make_backup(tmp_path)
    ok_json(sessionstore("restore", url, str(backup), "--json"))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SESSIONSTORE_URL")}
    env.update(FORCE_COLOR="", TERM="xterm-256color", COLUMNS="120")
    commands = [
        ["backup", url, str(tmp_path / "again.jsonl")],
        ["verify", str(backup)],
        ["restore", url, str(backup), "--dry-run"],
        ["migrate", url, f"file://{tmp_path / 'copy'}", "--no-resume"],
    ]
    for command in commands:
        log = tmp_path / "progress.log"
        with log.open("wb") as stderr:
            done = subprocess.run(
                [sys.executable, "-m", "sessionstore.cli", *command, "--progress"],
                stdout=subprocess.DEVNULL, stderr=stderr, env=env, timeout=60, check=False,
            )  # fmt: skip
        text = log.read_bytes().decode()
        assert done.returncode == 0, text
        assert "\x1b" not in text and "\r" not in text, repr(text)
        assert re.search(r"^(backup|verify|restore|migrate): 16/16 sessions, ", text, re.M), text
