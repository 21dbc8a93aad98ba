"""Session locks are lock stripes: ``locks/<xx>/~<n>.lock`` (layout 6).

A create makes no lock file of its own; sessions that share a stripe are serialised
together, and an operation that locks several sessions takes each stripe once, in stripe
order (so two of them never wait for each other in a cycle). ``lock_file`` still
re-checks after locking that the path names the inode it locked (a stripe removed by
hand is locked again as the new file). Per-session lock files of older layouts are
removed by ``doctor``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem._engine import STORE_FORMAT
from sessionstore_filesystem._fs import flock_file, lock_file
from sessionstore_filesystem._layout import shard_of
from sessionstore_filesystem._locks import STRIPES, in_lock_order, stripe_name, stripe_of

from sessionstore import DeleteOp, UpdateOp
from sessionstore.model import SessionUpdate

from . import workers
from .conftest import MakeStore
from .spawner import Spawner


def lock_files(root: Path) -> list[str]:
    return sorted(
        f"{p.parent.name}/{p.name}" for p in (root / "_default" / "locks").glob("*/*.lock")
    )


def stripe_path(sid: str) -> str:
    shard, n = stripe_of(sid)
    return f"{shard}/{stripe_name(n)}"


@pytest.mark.asyncio
async def test_sessions_lock_stripes_not_files_of_their_own(
    root: Path, make_store: MakeStore
) -> None:
    ids = [f"s{i}" for i in range(40)]
    async with make_store() as store:
        for sid in ids:
            await store.create_session(id=sid, data={})
        await store.append_events("s1", [{"type": "e"}])
        assert lock_files(root) == sorted({stripe_path(sid) for sid in ids})
        assert all(0 <= stripe_of(sid)[1] < STRIPES for sid in ids)
        assert await store.delete_session("s1")
        await store.commit([DeleteOp("s2"), UpdateOp("s3", SessionUpdate(tags={"t"}))])
        assert not await store.delete_session("nobody")
        # nothing is made or removed per session: the stripes stay
        assert lock_files(root) == sorted(
            {stripe_path(sid) for sid in ids} | {stripe_path("nobody")}
        )


def _sharing(n: int) -> list[str]:
    """``n`` ids that share one lock stripe."""
    by_stripe: dict[tuple[str, int], list[str]] = {}
    for i in range(100_000):
        sid = f"id{i}"
        group = by_stripe.setdefault(stripe_of(sid), [])
        group.append(sid)
        if len(group) == n:
            return group
    raise AssertionError("no stripe shared")


@pytest.mark.asyncio
async def test_one_operation_takes_a_shared_stripe_once(make_store: MakeStore) -> None:
    """Sessions of one stripe in one transaction: the stripe is locked once (a second
    descriptor of it would wait for the first, for ever)."""
    a, b, c = _sharing(3)
    async with make_store(lock_timeout=2.0) as store:
        for sid in (a, b, c):
            await store.create_session(id=sid, data={"n": 0})
        await store.commit([UpdateOp(sid, SessionUpdate(data={"n": 1})) for sid in (a, b, c)])
        got = [await store.get_session(sid) for sid in (a, b, c)]
        assert [s.data["n"] for s in got if s is not None] == [1, 1, 1]
        # a write through a kept descriptor of the stripe, then the transaction again
        await store.update_session(a, merge_data={"n": 2})
        await store.commit([DeleteOp(a), DeleteOp(b)])
        assert await store.get_session(a) is None and await store.get_session(c) is not None


def _crossing() -> tuple[list[str], list[str]]:
    """Two pairs of ids whose id order takes the same two stripes in opposite orders."""
    by_stripe: dict[tuple[str, int], list[str]] = {}
    for i in range(5_000):
        by_stripe.setdefault(stripe_of(f"x{i:04d}"), []).append(f"x{i:04d}")
    groups = [sorted(g) for g in by_stripe.values() if len(g) >= 3]
    for one in groups:
        for two in groups:
            if one[0] < two[0] < one[-1]:  # one[0] < two[0]; two[0] < one[-1]
                return [one[0], two[0]], [two[1], one[-1]] if two[1] < one[-1] else [
                    two[0],
                    one[-1],
                ]
    raise AssertionError("no crossing pairs")


@pytest.mark.asyncio
async def test_transactions_take_stripes_in_stripe_order(make_store: MakeStore) -> None:
    """Two pairs of sessions whose ids order the same two stripes oppositely, written by
    concurrent transactions: locked in id order, each could hold one stripe and wait
    for the other; in stripe order they never do."""
    one, two = _crossing()
    assert [stripe_of(s) for s in sorted(one)] == [stripe_of(s) for s in sorted(two)][::-1]
    assert [stripe_of(s) for s in in_lock_order(one)] == [stripe_of(s) for s in in_lock_order(two)]
    async with make_store(lock_timeout=5.0) as store:
        for sid in one + two:
            await store.create_session(id=sid, data={"n": 0})

        async def bump(pair: list[str]) -> None:
            for _ in range(30):
                await store.commit([UpdateOp(sid, SessionUpdate(tags={"t"})) for sid in pair])

        await asyncio.gather(*(bump(pair) for pair in (one, two, one, two)))
        for sid in one + two:
            got = await store.get_session(sid)
            assert got is not None and got.version == 61


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
async def test_a_layout5_store_is_upgraded_and_doctor_removes_its_lock_files(
    root: Path, make_store: MakeStore
) -> None:
    """A store of layout 5 (a lock file per session) opens as layout 6: its sessions
    read and take writes, locked through the stripes; ``doctor`` removes the old lock
    files (nothing takes them any more), a dry run only reports them."""
    async with make_store() as store:
        await store.create_session(id="live", data={"n": 1})
        await store.create_session(id="logged", data={})
        await store.append_events("logged", [{"type": "e"}])
    marker = root / "_sessionstore.json"
    marker.write_text('{"v":1,"format":"sessionstore-file","layout":5}\n')
    old = []
    for sid in ("live", "logged", "ghost"):  # layout 5 left one per session (and strays)
        path = root / "_default" / "locks" / shard_of(sid) / f"{sid}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        old.append(f"locks/{shard_of(sid)}/{sid}.lock")
    async with make_store() as store:
        assert json.loads(marker.read_text())["layout"] == STORE_FORMAT
        live = await store.update_session("live", merge_data={"n": 2})
        assert live.version == 2
        await store.append_events("logged", [{"type": "f"}])
        assert [e.type for e in await store.get_events("logged")] == ["e", "f"]
        dry = await store.doctor(dry_run=True)
        assert sorted(r for r in dry.removed if r.startswith("locks/")) == sorted(old)
        report = await store.doctor()
        assert sorted(r for r in report.removed if r.startswith("locks/")) == sorted(old)
        assert report.healthy
        assert all(name.split("/")[1].startswith("~") for name in lock_files(root))
        assert (await store.doctor()).removed == []


def test_lock_holding_needs_only_its_narrow_dependencies(tmp_path: Path) -> None:
    """``Locks`` (layout, head cache, tokens, timeout) is all that holding locks takes:
    no ``Engine``. A second holder cannot take a held lock (nor another session of its
    stripe), and gets it after release."""
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
        a, b = _sharing(2)
        assert first.add(a) and first.add(b)  # one stripe: taken once
        assert first.fds[a] == first.fds[b]
        assert not second.add(b, wait=False)
        first.release()
        assert second.add("s1", wait=False) and second.add(b, wait=False)
        shard, n = stripe_of("s1")
        assert (tmp_path / "locks" / shard / stripe_name(n)).exists()
        assert not (tmp_path / "locks" / shard / "s1.lock").exists()
        second.release()
        reader = locks.hold(bump=False)  # a read-only holder leaves the token alone
        assert reader.add("s1") and not reader.tokens
        reader.release()
    finally:
        tokens.close()
        layout.close()  # closes ns_fd too: the layout owns it
