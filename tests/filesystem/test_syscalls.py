"""Every mutating path issues its system calls in the durable order (see ``syscalls.py``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sessionstore import AppendOp, CreateOp, NewSession, SessionUpdate, UpdateOp

from .conftest import MakeStore
from .syscalls import Call, durable_appends, durable_new_files, durable_replaces, recording

# integration: strace of a child process
pytestmark = pytest.mark.integration

JOURNAL = re.compile(r"^\d{20}-[0-9a-f]{8}\.json$")


def _first(calls: list[Call], pred: object) -> int:
    return next(i for i, c in enumerate(calls) if pred(c))  # type: ignore[operator]


@pytest.mark.asyncio
async def test_every_mutating_path_is_durable_in_order(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store(durability="fsync") as store:
        base = await store.create_session(id="base", data={"n": 0})
        await store.append_events(base.id, [{"type": "warm"}])  # the log file exists now
        with recording(monkeypatch) as rec:
            # create: document replaced durably, and the new directory itself made durable
            await store.create_session(id="fresh", data={"n": 1})
            assert durable_replaces(rec.calls) == ["session.json"]
            mkdir_sync = [c for c in rec.calls if c.op == "fsync" and c.path.endswith("/fresh")]
            assert mkdir_sync, "the new session directory was not fsynced"
            rec.clear()

            # update
            await store.update_session(base.id, merge_data={"n": 2})
            assert durable_replaces(rec.calls) == ["session.json"]
            rec.clear()

            # append: write -> fdatasync, no rewrite of the document
            await store.append_events(base.id, [{"type": "e1"}, {"type": "e2"}])
            assert durable_appends(rec.calls) == ["events.1.jsonl"]
            assert not [c for c in rec.calls if c.op == "replace"]
            rec.clear()

            # first append of a session: the new log file's directory entry is synced too
            await store.append_events("fresh", [{"type": "first"}])
            assert durable_appends(rec.calls) == ["events.1.jsonl"]
            write = _first(rec.calls, lambda c: c.op == "write")
            assert any(c.op == "fsync" and c.path.endswith("/fresh") for c in rec.calls[write:]), (
                "directory of the new log file not fsynced"
            )
            rec.clear()

            # checkpoint
            await store.save_checkpoint(base.id, label="cp")
            targets = durable_replaces(rec.calls)
            assert len(targets) == 1 and targets[0].endswith(".json")
            rec.clear()

            # commit over two sessions: the journal is durable before any session commits,
            # and every session's staged files before the first of them commits
            await store.commit(
                [
                    UpdateOp(base.id, SessionUpdate(merge_data={"n": 3})),
                    AppendOp(base.id, [{"type": "in-tx"}]),
                    CreateOp(NewSession(id="born", data={"n": 4})),
                ]
            )
            targets = durable_replaces(rec.calls)
            assert JOURNAL.match(targets[0]), targets
            assert targets[1:] == ["session.json", "session.json"]
            journal = _first(rec.calls, lambda c: c.op == "replace" and JOURNAL.match(c.target))
            journal_data_sync = max(
                i for i, c in enumerate(rec.calls[:journal]) if c.op == "fsync"
            )  # the journal's own file, before it is renamed into place
            assert rec.calls[journal_data_sync].path.rsplit("/", 1)[-1].startswith(".tmp.")
            journal_dir_sync = journal + _first(
                rec.calls[journal:],
                lambda c: c.op == "fsync" and c.fd == rec.calls[journal].dst_dir_fd,
            )
            first_commit = _first(
                rec.calls, lambda c: c.op == "replace" and c.target == "session.json"
            )
            assert journal_dir_sync < first_commit
            staged_syncs = [
                i for i, c in enumerate(rec.calls) if c.op in ("fsync", "fdatasync")
                and ("/base/" in c.path or "/born/" in c.path) and "/.tmp." in c.path
            ]  # fmt: skip
            assert len(staged_syncs) == 2 and max(staged_syncs) < first_commit
            assert durable_appends(rec.calls) == ["events.1.jsonl"]  # the staged lines
            rec.clear()

            # trim: a new log generation written and made durable (file and directory
            # entry) under a name nothing follows yet, then the document names it
            await store.trim_events(base.id, keep_last=1)
            assert durable_new_files(rec.calls) == ["events.2.jsonl"]
            assert durable_replaces(rec.calls) == ["session.json"]
            await store.append_events(base.id, [{"type": "p1", "key": "a"}, {"type": "p2"}])
            rec.clear()

            # pop: the document that ends the log before the popped lines is the commit;
            # the lines are cut off the file only after it (readers ignore them meanwhile)
            await store.pop_events(base.id)
            assert durable_replaces(rec.calls) == ["session.json"]
            assert not durable_new_files(rec.calls)
            replace = _first(rec.calls, lambda c: c.op == "replace")
            doc_dir = rec.calls[replace].dst_dir_fd
            dir_sync = _first(rec.calls, lambda c: c.op == "fsync" and c.fd == doc_dir)
            cut = _first(rec.calls, lambda c: c.op == "ftruncate")
            assert replace < dir_sync < cut
            first = (await store.get_events(base.id, limit=1))[0].seq
            rec.clear()

            # delete of an event in the middle: a new log generation, as trim
            await store.delete_events(base.id, seqs=[first])
            assert durable_new_files(rec.calls) == ["events.3.jsonl"]
            assert durable_replaces(rec.calls) == ["session.json"]
            rec.clear()

            # delete: the directory is renamed aside, then its parent fsynced
            await store.delete_session("fresh")
            rename = _first(rec.calls, lambda c: c.op == "rename" and c.path == "fresh")
            assert any(
                c.op == "fsync" and c.fd == rec.calls[rename].dst_dir_fd
                for c in rec.calls[rename + 1 :]
            )


@pytest.mark.asyncio
async def test_durability_none_skips_every_fsync(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store(durability="none") as store:
        with recording(monkeypatch) as rec:
            s = await store.create_session(data={"n": 1})
            await store.append_events(s.id, [{"type": "e"}])
            await store.update_session(s.id, merge_data={"n": 2})
        assert not [c for c in rec.calls if c.op in ("fsync", "fdatasync")]
        assert [c.target for c in rec.calls if c.op == "replace"] == ["session.json"] * 2


_STRACE_SCRIPT = """
import asyncio, sys
from sessionstore_filesystem import FileStore

async def main() -> None:
    async with FileStore(root=sys.argv[1], durability="fsync") as store:
        s = await store.create_session(id="traced", data={"n": 1})
        await store.update_session(s.id, merge_data={"n": 2})

asyncio.run(main())
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_agrees(tmp_path: Path) -> None:
    """The kernel's view of an update: write, fsync(tmp), rename, fsync(dir)."""
    script = tmp_path / "traced.py"
    script.write_text(textwrap.dedent(_STRACE_SCRIPT))
    out = tmp_path / "trace.txt"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-o", str(out), "-e", "trace=write,fsync,rename,renameat,renameat2",
         sys.executable, str(script), str(tmp_path / "store")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and "ptrace" in proc.stderr.lower():
        pytest.skip(f"strace cannot attach here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in out.read_text().splitlines() if "/traced" in ln]
    steps = []
    for line in lines:
        if re.search(r"\bwrite\(\d+<[^>]*/\.tmp\.session\.json", line):
            steps.append("write")
        elif re.search(r"\bfsync\(\d+<[^>]*/\.tmp\.session\.json", line):
            steps.append("fsync(file)")
        elif re.search(r"\brename(at2?)?\(.*\.tmp\.session\.json.*session\.json", line):
            steps.append("replace")
        elif re.search(r"\bfsync\(\d+<[^>]*/traced>\)", line):
            steps.append("fsync(dir)")
    # the create (which also syncs the new directory), then the update
    assert steps[-4:] == ["write", "fsync(file)", "replace", "fsync(dir)"], steps
    assert steps.count("replace") == 2


_STRACE_BATCH = """
import asyncio, sys
import orjson
from sessionstore import Mutation, Session, Status
from sessionstore_filesystem import FileStore

async def main() -> None:
    async with FileStore(root=sys.argv[1], durability="fsync") as store:
        now = store.clock.now()
        muts = []
        for i in range(4):
            s = Session(f"traced{i}", None, Status.ACTIVE, {"i": i}, {}, frozenset(), now, now,
                        None, 1)
            muts.append(Mutation(s.id, 0, s, orjson.dumps(s.data), b"{}", created=True))
        await store._apply(muts, atomic=False)

asyncio.run(main())
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_agrees_on_a_batch(tmp_path: Path) -> None:
    """The kernel's view of a batch: every document staged, syncfs, every rename, syncfs."""
    from sessionstore_filesystem._durable import syncfs_supported

    if not syncfs_supported():
        pytest.skip("no syncfs(2) here")
    script = tmp_path / "traced.py"
    script.write_text(textwrap.dedent(_STRACE_BATCH))
    out = tmp_path / "trace.txt"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-o", str(out), "-e",
         "trace=write,fsync,fdatasync,rename,renameat,renameat2,syncfs",
         sys.executable, str(script), str(tmp_path / "store")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and "ptrace" in proc.stderr.lower():
        pytest.skip(f"strace cannot attach here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    steps = []
    for line in out.read_text().splitlines():
        if re.search(r"\bwrite\(\d+<[^>]*/traced\d/\.tmp\.session\.json", line):
            steps.append("write")
        elif re.search(r"\bsyncfs\(", line):
            steps.append("syncfs")
        elif re.search(r"\brename(at2?)?\(.*\.tmp\.session\.json.*session\.json", line):
            steps.append("replace")
        elif re.search(r"\bf(data)?sync\(\d+<[^>]*/traced\d", line):
            steps.append("fsync")
    assert steps == ["write"] * 4 + ["syncfs"] + ["replace"] * 4 + ["syncfs"], steps
