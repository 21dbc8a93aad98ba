"""Lock files of sessions that do not exist are removed, safely for every waiting process.

A lock file is only ever removed by whoever holds its ``flock``, and ``lock_file``
re-checks after locking that the path still names the inode it locked (a process that
waited on a lock file that was removed meanwhile gets an orphan: it locks the current file
instead). These tests pin both halves: the removal (delete, a write that found nothing,
``doctor``) and the re-check (threads and real processes racing on one id).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem._fs import flock_file, lock_file
from sessionstore_filesystem._layout import shard_of

from sessionstore import SessionNotFoundError

from . import workers
from .conftest import MakeStore, session_dir
from .spawner import Spawner


def lock_path(root: Path, sid: str) -> Path:
    return root / "_default" / "locks" / shard_of(sid) / f"{sid}.lock"


def lock_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "_default" / "locks").glob("*/*.lock"))


@pytest.mark.asyncio
async def test_delete_removes_the_lock_file(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        await store.create_session(id="keep", data={})
        await store.create_session(id="gone", data={})
        await store.append_events("gone", [{"type": "e"}])
        assert lock_files(root) == ["gone.lock", "keep.lock"]
        assert await store.delete_session("gone")
        assert lock_files(root) == ["keep.lock"]
        # a write that finds no session leaves no lock file behind either
        with pytest.raises(SessionNotFoundError):
            await store.update_session("nobody", merge_data={"x": 1})
        assert not await store.delete_session("nobody")
        assert lock_files(root) == ["keep.lock"]
        # and the id can be used again right away
        again = await store.create_session(id="gone", data={"v": 2})
        assert again.version == 1 and lock_files(root) == ["gone.lock", "keep.lock"]


@pytest.mark.asyncio
async def test_transaction_deleting_sessions_removes_their_lock_files(
    root: Path, make_store: MakeStore
) -> None:
    from sessionstore import DeleteOp, UpdateOp
    from sessionstore.model import SessionUpdate

    async with make_store() as store:
        for sid in ("a", "b", "c"):
            await store.create_session(id=sid, data={})
        await store.commit([DeleteOp("a"), DeleteOp("b"), UpdateOp("c", SessionUpdate(tags={"t"}))])
        assert lock_files(root) == ["c.lock"]


def test_a_waiter_on_a_removed_lock_file_locks_the_current_one(tmp_path: Path) -> None:
    """The holder removes the lock file while another thread waits on the same file: the
    waiter gets the old (orphaned) inode, sees that the path no longer names it, and
    locks the file now at the path instead - never two holders at once."""
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        held = flock_file("s.lock", dfd, timeout=5, what="s")
        got: list[tuple[int, int]] = []
        opened = threading.Event()
        opens = [0]
        real_open = os.open

        def waiter() -> None:
            def open_and_signal(*args: object, **kwargs: object) -> int:
                fd: int = real_open(*args, **kwargs)  # type: ignore[arg-type]
                opens[0] += 1
                opened.set()
                return fd

            os_open = os.open
            try:
                os.open = open_and_signal
                got.append(lock_file("s.lock", dfd, timeout=5, what="s"))
            finally:
                os.open = os_open

        thread = threading.Thread(target=waiter)
        thread.start()
        assert opened.wait(5)  # the waiter has the old file open and is polling its lock
        time.sleep(0.02)
        os.unlink("s.lock", dir_fd=dfd)  # removed by its holder, under the lock
        os.close(held)
        thread.join(5)
        ((fd, ino),) = got
        try:
            assert opens[0] == 2  # it locked the orphan first, saw it, and opened the new file
            st = os.fstat(fd)
            assert st.st_nlink == 1  # not the removed file (its inode number may be reused)
            assert ino == st.st_ino == os.stat("s.lock", dir_fd=dfd).st_ino
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


@pytest.mark.integration
def test_processes_racing_create_update_and_delete_of_one_id(tmp_path: Path) -> None:
    """Two processes create-or-increment one id while a third deletes it (CAS on the
    version it read), each delete removing the lock file under it. Every increment is
    either still in the final counter or in a counter a delete removed: a writer that
    locked a removed lock file and went on would lose one (two creates both succeeding,
    or an update landing in a directory that was being deleted)."""
    root = str(tmp_path / "store")
    sid = "contested"
    times = 300
    with Spawner() as spawner:
        incs = [
            spawner.start(workers.lock_race, root=root, sid=sid, times=times, role="inc")
            for _ in range(2)
        ]
        deleter = spawner.start(workers.lock_race, root=root, sid=sid, times=times, role="del")
        results = [child.wait(120) for child in [*incs, deleter]]
        assert all(results), "a child died (its traceback is on stderr): two lock holders?"
        *made, removed = [orjson.loads(out[-1]) for out in results]

    async def final() -> int:
        from sessionstore_filesystem import FileStore

        async with FileStore(root=root) as store:
            current = await store.get_session(sid)
            report = await store.doctor(dry_run=True)
            assert report.removed == [], report.removed
            return 0 if current is None else int(current.data["n"])

    left = asyncio.run(final())
    assert made == [times, times]
    assert len(removed) > 0, "the deleter never got to delete (no race happened)"
    assert sum(removed) + left == 2 * times, (sum(removed), left)
    print(f"deletes: {len(removed)}, counter left: {left}")


@pytest.mark.asyncio
async def test_doctor_removes_stale_lock_files(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        await store.create_session(id="live", data={})
        await store.create_session(id="leftover", data={})
        await store.append_events("leftover", [{"type": "e"}])  # a session directory now
    # lock files of sessions that are gone (an older version, a crash, a hand removal)
    for sid in ("ghost", "leftover"):
        path = lock_path(root, sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    trash = session_dir(root, "leftover")
    trash.rename(trash.parent / ".trash.leftover.0badc0de")  # a delete cut short
    expected = sorted(
        [f"locks/{shard_of('ghost')}/ghost.lock", f"locks/{shard_of('leftover')}/leftover.lock"]
    )
    async with make_store() as store:
        dry = await store.doctor(dry_run=True)
        assert sorted(r for r in dry.removed if r.startswith("locks/")) == expected
        assert any(".trash.leftover." in r for r in dry.removed)
        assert lock_files(root) == ["ghost.lock", "leftover.lock", "live.lock"]  # untouched
        report = await store.doctor()
        assert sorted(r for r in report.removed if r.startswith("locks/")) == expected
        assert lock_files(root) == ["live.lock"]
        assert not (trash.parent / ".trash.leftover.0badc0de").exists()
        assert report.healthy
        again = await store.doctor()
        assert again.removed == []
        assert (await store.get_session("live")) is not None


def test_lock_holding_needs_only_its_narrow_dependencies(tmp_path: Path) -> None:
    """``Locks`` (layout, head cache, tokens, timeout) is all that holding locks takes:
    no ``Engine``. A second holder cannot take a held lock, gets it after release, and a
    pruned lock file is removed by its holder on release."""
    from sessionstore_filesystem._heads import HeadCache, Tokens
    from sessionstore_filesystem._layout import Layout
    from sessionstore_filesystem._locks import Locks

    ns_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    layout = Layout(ns_fd, durable=False)
    tokens = Tokens(layout.fds["locks"])
    try:
        locks = Locks(layout, HeadCache(), tokens, timeout=0.2)
        first, second = locks.hold(), locks.hold()
        assert first.add("s1")
        before, ours = first.tokens["s1"]
        assert before != ours  # taking the lock replaced the change token
        assert not second.add("s1", wait=False)
        assert not second.try_add(["s0", "s1"])
        assert not second.fds  # "s0", taken first, was given back
        first.prune.add("s1")
        first.release()
        assert not (tmp_path / "locks" / shard_of("s1") / "s1.lock").exists()
        assert second.add("s1", wait=False)
        assert (tmp_path / "locks" / shard_of("s1") / "s1.lock").exists()
        second.release()
        reader = locks.hold(bump=False)  # a read-only holder leaves the token alone
        assert reader.add("s1") and not reader.tokens
        reader.release()
    finally:
        tokens.close()
        layout.close()  # closes ns_fd too: the layout owns it
