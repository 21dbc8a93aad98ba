"""Every mutating path issues its system calls in the durable order (see ``syscalls.py``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem._index import Index
from sessionstore_filesystem._layout import shard_of

from sessionstore import (
    AppendOp,
    CreateOp,
    NewSession,
    QueryOptions,
    SessionFilter,
    SessionUpdate,
    UpdateOp,
)

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
        twin = next(f"t{i}" for i in range(10**4) if shard_of(f"t{i}") == shard_of("fresh"))
        await store.create_session(id=twin)  # the shard of "fresh" exists (made once)
        base = await store.create_session(id="base", data={"n": 0})
        await store.append_events(base.id, [{"type": "warm"}])  # the log file exists now
        with recording(monkeypatch) as rec:
            # create: one new file in the shard (compact), replaced durably; two fsyncs,
            # the file's and the shard's, and no session directory
            await store.create_session(id="fresh", data={"n": 1})
            assert durable_replaces(rec.calls) == ["fresh~.json"]
            syncs = [c for c in rec.calls if c.op in ("fsync", "fdatasync")]
            assert len(syncs) == 2, syncs
            assert syncs[0].path.rsplit("/", 1)[-1].startswith(".tmp.fresh~.json.")
            assert syncs[1].path.endswith(f"/sessions/{shard_of('fresh')}")
            assert not [c for c in rec.calls if c.path.endswith("/fresh")]
            rec.clear()

            # update of a compact session: its document replaced in the shard, as a create
            await store.update_session("fresh", merge_data={"n": 2})
            assert durable_replaces(rec.calls) == ["fresh~.json"]
            assert len([c for c in rec.calls if c.op in ("fsync", "fdatasync")]) == 2
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

            # first append of a compact session: its directory made durable in the shard,
            # the log written and fdatasynced, then the document hard-linked in as
            # session.json (the commit) and the directory fsynced (the link and the log's
            # entry), and only then the compact name removed
            await store.append_events("fresh", [{"type": "first"}])
            assert durable_appends(rec.calls) == ["events.1.jsonl"]
            shard = f"/sessions/{shard_of('fresh')}"
            made = _first(rec.calls, lambda c: c.op == "fsync" and c.path.endswith(shard))
            write = _first(rec.calls, lambda c: c.op == "write")
            data = _first(rec.calls, lambda c: c.op == "fdatasync")
            link = _first(rec.calls, lambda c: c.op == "link")
            assert (rec.calls[link].path, rec.calls[link].target) == ("fresh~.json", "session.json")
            entry = _first(rec.calls, lambda c: c.op == "fsync" and c.path.endswith("/fresh"))
            gone = _first(rec.calls, lambda c: c.op == "unlink" and c.path == "fresh~.json")
            assert made < write < data < link < entry < gone
            assert len([c for c in rec.calls if c.op in ("fsync", "fdatasync")]) == 3
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
            assert targets[1:] == ["session.json", "born~.json"]  # born: compact
            journal = _first(rec.calls, lambda c: c.op == "replace" and JOURNAL.match(c.target))
            journal_data_sync = max(
                i for i, c in enumerate(rec.calls[:journal]) if c.op == "fsync"
            )  # the journal's own file, before it is renamed into place
            assert rec.calls[journal_data_sync].path.rsplit("/", 1)[-1].startswith(".tmp.")
            journal_dir_sync = journal + _first(
                rec.calls[journal:],
                lambda c: c.op == "fsync" and c.fd == rec.calls[journal].dst_dir_fd,
            )
            commits = ("session.json", "born~.json")
            first_commit = _first(rec.calls, lambda c: c.op == "replace" and c.target in commits)
            assert journal_dir_sync < first_commit
            staged_syncs = [
                i for i, c in enumerate(rec.calls) if c.op in ("fsync", "fdatasync")
                and ("/base/" in c.path or "/.tmp.born~.json." in c.path) and "/.tmp." in c.path
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
            rec.clear()

            # delete of a compact session: its document unlinked, then the shard fsynced
            await store.create_session(id="brief", data={"n": 1})
            rec.clear()
            await store.delete_session("brief")
            unlink = _first(rec.calls, lambda c: c.op == "unlink" and c.path == "brief~.json")
            assert any(
                c.op == "fsync" and c.fd == rec.calls[unlink].dir_fd
                for c in rec.calls[unlink + 1 :]
            )


@pytest.mark.asyncio
async def test_index_rows_follow_the_durable_commit(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing returns the index's rows without reading a file (issue 21), so a row
    must never say more than the files: it is written once the commit point is durable
    (a crash in between leaves the in-flight marker, and recovery rewrites the row from
    the files); a pure append's row goes just before its ``fdatasync`` (the commit is
    that sync: a crash before it is repaired the same way, a failed one resyncs it)."""
    async with make_store(durability="fsync") as store:
        await store.create_session(id="base", data={"n": 0})
        await store.append_events("base", [{"type": "warm"}])  # a directory now
        with recording(monkeypatch) as rec:
            real = Index.write

            def write(self: Index, changes: Any, *args: Any, **kwargs: Any) -> None:
                rec.add(Call("index", path=",".join(sorted(sid for sid, _, _ in changes))))
                real(self, changes, *args, **kwargs)

            monkeypatch.setattr(Index, "write", write)
            everything = SessionFilter(include_expired=True), QueryOptions(sort_by="id")

            async def listed_as_stored() -> None:
                page = await store.list_sessions(*everything)
                assert page.items == list((await store.primitives.load(page.ids)).values())

            def sync_before(i: int) -> int:
                return max(j for j, c in enumerate(rec.calls[:i]) if c.op in ("fsync", "fdatasync"))

            for call in (
                store.create_session(id="fresh", data={"n": 1}),  # compact: new file
                store.update_session("fresh", merge_data={"n": 2}),  # compact replace
                store.update_session("base", data={"n": 3}),  # session.json replace
            ):
                await call
                (index,) = [i for i, c in enumerate(rec.calls) if c.op == "index"]
                replace = _first(rec.calls, lambda c: c.op == "replace")
                synced = sync_before(index)
                assert replace < synced and rec.calls[synced].fd == rec.calls[replace].dst_dir_fd
                await listed_as_stored()
                rec.clear()

            await store.append_events("base", [{"type": "e"}])
            (index,) = [i for i, c in enumerate(rec.calls) if c.op == "index"]
            data = _first(rec.calls, lambda c: c.op == "fdatasync")
            assert _first(rec.calls, lambda c: c.op == "write") < index < data
            await listed_as_stored()
            rec.clear()

            await store.commit([
                UpdateOp("base", SessionUpdate(data={"n": 4})),
                CreateOp(NewSession(id="born", data={"n": 5})),
            ])  # fmt: skip
            (index,) = [i for i, c in enumerate(rec.calls) if c.op == "index"]
            assert rec.calls[index].path == "base,born"
            last_commit = max(i for i, c in enumerate(rec.calls) if c.op == "replace")
            assert last_commit < sync_before(index) < index  # the second barrier, then the row
            await listed_as_stored()


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
        replaced = [c.target for c in rec.calls if c.op == "replace"]
        compact = store._engine.layout.compact(s.id)  # cased on a cased store (a ULID: "+")
        assert replaced == [compact, "session.json"]  # the append linked it in


_STRACE_SCRIPT = """
import asyncio, os, sys
from sessionstore_filesystem import FileStore
from sessionstore_filesystem._locks import stripe_of

async def main() -> None:
    async with FileStore(root=sys.argv[1], durability="fsync") as store:
        twin = next(f"t{i}" for i in range(10**5) if stripe_of(f"t{i}") == stripe_of("traced"))
        await store.create_session(id=twin)  # its shard and lock stripe exist (made once)
        os.access("/__create__", os.F_OK)
        s = await store.create_session(id="traced", data={"n": 1})
        os.access("/__append__", os.F_OK)
        await store.append_events(s.id, [{"type": "first"}])
        os.access("/__update__", os.F_OK)
        await store.update_session(s.id, merge_data={"n": 2})
        os.access("/__done__", os.F_OK)

asyncio.run(main())
"""


def _kernel_steps(lines: list[str]) -> list[str]:
    steps = []
    for line in lines:
        if mark := re.search(r'access\("/__(\w+)__"', line):
            steps.append(mark.group(1))
        elif re.search(r"\bwrite\(\d+<[^>]*/\.tmp\.(session\.json|traced~\.json)", line):
            steps.append("write")
        elif re.search(r"\bfsync\(\d+<[^>]*/\.tmp\.(session\.json|traced~\.json)", line):
            steps.append("fsync(file)")
        elif re.search(r"\brename(at2?)?\(.*\.tmp\.(session|traced~)\.json.*\.json", line):
            steps.append("replace")
        elif re.search(r"\bfsync\(\d+<[^>]*/traced>\)", line):
            steps.append("fsync(dir)")
        elif re.search(r"\bfsync\(\d+<[^>]*/sessions/[0-9a-f]{2}>\)", line):
            steps.append("fsync(shard)")
        elif re.search(r"\bmkdir(at)?\(.*\"traced\"", line):
            steps.append("mkdir")
        elif re.search(r"\bwrite\(\d+<[^>]*/traced/events\.1\.jsonl", line):
            steps.append("write(log)")
        elif re.search(r"\bfdatasync\(\d+<[^>]*/traced/events\.1\.jsonl", line):
            steps.append("fdatasync(log)")
        elif re.search(r"\blink(at)?\(.*traced~\.json.*session\.json", line):
            steps.append("link")
        elif re.search(r"\bopenat\(.*\"~\d\.lock\", O_RDWR\|O_CREAT", line):
            steps.append("lock(stripe)")
        elif re.search(r"\bopenat\(.*\.lock\", O_RDWR\|O_CREAT", line):
            steps.append("lock(own file)")  # layout 5 and before: one per session
        elif re.search(r"\bf(data)?sync\(", line):
            steps.append("other sync")
    return steps


def _strace(tmp_path: Path, script: str, calls: str) -> list[str]:
    """The lines of ``strace -f -y -e trace=<calls>`` of ``script`` run on a store under
    ``tmp_path`` (skips where strace cannot attach)."""
    path = tmp_path / "traced.py"
    path.write_text(textwrap.dedent(script))
    out = tmp_path / "trace.txt"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-o", str(out), "-e", f"trace={calls}",
         sys.executable, str(path), str(tmp_path / "store")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0 and "ptrace" in proc.stderr.lower():
        pytest.skip(f"strace cannot attach here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return out.read_text().splitlines()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_agrees(tmp_path: Path) -> None:
    """The kernel's view of a create (one new file in the shard: two fsyncs; its lock is
    a stripe that exists, no lock file of its own), the first append (directory, log,
    link of the document: three) and an update (two)."""
    calls = (
        "access,openat,write,fsync,fdatasync,rename,renameat,renameat2,link,linkat,mkdir,mkdirat"
    )
    steps = _kernel_steps(_strace(tmp_path, _STRACE_SCRIPT, calls))
    steps = steps[steps.index("create") : steps.index("done") + 1]
    assert steps == [
        "create", "lock(stripe)", "write", "fsync(file)", "replace", "fsync(shard)",
        "append", "mkdir", "fsync(shard)", "write(log)", "fdatasync(log)", "link", "fsync(dir)",
        "update", "write", "fsync(file)", "replace", "fsync(dir)",
        "done",
    ], steps  # fmt: skip


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
    calls = "write,fsync,fdatasync,rename,renameat,renameat2,syncfs"
    steps = []
    for line in _strace(tmp_path, _STRACE_BATCH, calls):
        if re.search(r"\bwrite\(\d+<[^>]*/\.tmp\.traced\d~\.json", line):
            steps.append("write")
        elif re.search(r"\bsyncfs\(", line):
            steps.append("syncfs")
        elif re.search(r"\brename(at2?)?\(.*\.tmp\.traced\d~\.json.*traced\d~\.json", line):
            steps.append("replace")
        elif re.search(r"\bf(data)?sync\(\d+<[^>]*/(\.tmp\.)?traced\d", line):
            steps.append("fsync")
    assert steps == ["write"] * 4 + ["syncfs"] + ["replace"] * 4 + ["syncfs"], steps
