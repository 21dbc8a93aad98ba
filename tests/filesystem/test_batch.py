"""Writes of several sessions share their durability barriers (restore, ``put``-style
batches with ``atomic=False``, and transactions): stage every session, make everything
staged durable at once, commit every session, make the commits durable at once."""

from __future__ import annotations

import dataclasses
import errno
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sessionstore_filesystem import FileStore, _durable
from sessionstore_filesystem._engine import SYNCFS_FROM

from sessionstore import (
    Checkpoint,
    Event,
    Mutation,
    OutcomeUnknownError,
    Session,
    SessionFilter,
    Status,
    StoreUnavailableError,
)
from sessionstore.codec import checkpoint_digest

from .conftest import MakeStore, leftovers
from .syscalls import Call, durable_new_files, durable_replaces, recording


def _session(sid: str, now: datetime, version: int = 1, events: int = 2, **data: Any) -> Session:
    return Session(
        sid, "p", Status.ACTIVE, {"sid": sid, **data}, {"m": 1}, frozenset({"batch"}), now, now,
        None, version, events, events,
    )  # fmt: skip


def _checkpoint(s: Session, now: datetime) -> Checkpoint:
    cp = Checkpoint(
        "cp1", s.id, "label", now, s.version, s.status, s.data, s.metadata, s.tags,
        s.event_count, s.last_seq, "",
    )  # fmt: skip
    return dataclasses.replace(cp, digest=checkpoint_digest(cp))


def _restore(s: Session, now: datetime, expect: int = 0, cps: bool = True) -> Mutation:
    """The mutation restore writes for ``s``: the whole session, from scratch."""
    events = [Event(seq, "e", now, {"seq": seq}) for seq in range(1, s.event_count + 1)]
    return Mutation(
        s.id, expect, s, orjson.dumps(s.data), orjson.dumps(s.metadata), reset=expect > 0,
        append=events, put_checkpoints=[_checkpoint(s, now)] if cps else [], created=not expect,
    )  # fmt: skip


async def _seed(store: FileStore) -> None:
    await store.create_session(id="old", data={"v": 1})
    await store.append_events("old", [{"type": "e"}] * 3)
    await store.create_session(id="gone", data={})


async def _batch(store: FileStore, n: int = 3) -> list[Mutation]:
    """n new sessions, one overwritten (reset), one deleted: a restore-like batch."""
    now = store.clock.now()
    old = await store.get_session("old")
    assert old is not None
    muts = [_restore(_session(f"new{i}", now, n=i), now) for i in range(n)]
    muts.append(_restore(_session("old", now, version=old.version + 5, v=2), now, old.version))
    muts.append(Mutation("gone", 1, delete=True))
    return muts


async def _check(store: FileStore, n: int = 3, *, tidy: bool = True) -> None:
    for i in range(n):
        s = await store.get_session(f"new{i}")
        assert s is not None and s.data == {"sid": f"new{i}", "n": i} and s.event_count == 2
        assert [e.data for e in await store.get_events(s.id)] == [{"seq": 1}, {"seq": 2}]
        (cp,) = await store.list_checkpoints(s.id)
        assert (await store.get_checkpoint(s.id, cp.id)).data == s.data
    old = await store.get_session("old")
    assert old is not None and old.data == {"sid": "old", "v": 2} and old.event_count == 2
    assert await store.get_session("gone") is None
    assert await store.count_sessions(SessionFilter(tags_all={"batch"})) == n + 1  # indexed
    report = await store.doctor(dry_run=True)
    assert report.healthy and (report.removed == [] or not tidy), report


@pytest.mark.asyncio
@pytest.mark.parametrize("durability", ["fsync", "none"])
@pytest.mark.parametrize("atomic", [False, True])
async def test_a_batch_writes_every_session(
    make_store: MakeStore, durability: str, atomic: bool
) -> None:
    async with make_store(durability=durability) as store:
        await _seed(store)
        await store._apply(await _batch(store), atomic=atomic)
        await _check(store)
        assert leftovers(Path(store.root)) == []


def _barriers(calls: list[Call]) -> list[int]:
    return [i for i, c in enumerate(calls) if c.op == "syncfs"]


@pytest.mark.asyncio
@pytest.mark.skipif(not _durable.syncfs_supported(), reason="no syncfs(2) here")
async def test_a_batch_shares_two_syncfs_barriers(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store(durability="fsync") as store:
        await _seed(store)
        muts = await _batch(store)
        assert len(muts) >= SYNCFS_FROM
        with recording(monkeypatch) as rec:
            await store._apply(muts, atomic=False)
        calls = rec.calls
        first, second = _barriers(calls)
        assert not [c for c in calls if c.op in ("fsync", "fdatasync")]  # no per-file syncs
        replaces = [i for i, c in enumerate(calls) if c.op == "replace"]
        docs = [i for i in replaces if calls[i].target == "session.json"]
        assert len(docs) == 4
        # every file staged (written) before the first barrier, every commit between them
        writes = [i for i, c in enumerate(calls) if c.op == "write"]
        assert max(writes) < first < min(docs) and max(docs) < second
        delete = next(i for i, c in enumerate(calls) if c.op == "unlink" and c.path == "gone~.json")
        assert first < delete < second
        assert len(durable_replaces(calls)) == len(replaces)
        assert sorted(durable_new_files(calls)) == ["cp1.json"] * 4 + ["events.1.jsonl"] * 3 + [
            "events.2.jsonl"
        ]
        await _check(store)

        # a transaction: its journal (fsynced itself before it is renamed into place) is
        # made durable by the first barrier, before any session commits
        with recording(monkeypatch) as rec:
            await store.commit([])  # nothing: no barrier at all
            assert _barriers(rec.calls) == []
            from sessionstore import UpdateOp
            from sessionstore.model import SessionUpdate

            await store.commit(
                [UpdateOp(f"new{i}", SessionUpdate(merge_data={"tx": 1})) for i in range(3)]
                + [UpdateOp("old", SessionUpdate(merge_data={"tx": 1}))]
            )
        calls = rec.calls
        first, second = _barriers(calls)
        journal = next(i for i, c in enumerate(calls) if c.op == "replace" and c.path.startswith(
            ".tmp.") and c.target.endswith(".json") and c.target[:20].isdigit())  # fmt: skip
        journal_sync = max(i for i, c in enumerate(calls[:journal]) if c.op == "fsync")
        docs = [i for i, c in enumerate(calls) if c.op == "replace" and c.target == "session.json"]
        assert journal_sync < journal < first < min(docs) and max(docs) < second


@pytest.mark.asyncio
async def test_without_syncfs_each_file_and_each_directory_is_synced(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_durable, "_SYNCFS", None)
    async with make_store(durability="fsync") as store:
        await _seed(store)
        with recording(monkeypatch) as rec:
            await store._apply(await _batch(store), atomic=False)
        calls = rec.calls
        assert _barriers(calls) == []
        replaces = [i for i, c in enumerate(calls) if c.op == "replace"]
        assert len(durable_replaces(calls)) == len(replaces)
        assert len(durable_new_files(calls)) == 8
        docs = [i for i in replaces if calls[i].target == "session.json"]
        # the new sessions' directories are durable in their shards before any commit
        for i in range(3):
            mkdir_sync = [
                j for j, c in enumerate(calls) if c.op == "fsync" and c.fd >= 0
                and calls[j].path.rsplit("/", 1)[-1] == _shard(f"new{i}")
            ]  # fmt: skip
            assert mkdir_sync and mkdir_sync[0] < min(docs), f"new{i}"
        # every file is fsynced before the first commit
        files = [i for i, c in enumerate(calls) if c.op == "fsync" and ".json" in c.path]
        assert len(files) == 4 + 8 and max(files) < min(docs)
        # each directory is synced once per barrier, not once per file in it
        dirs = [(i, c.fd) for i, c in enumerate(calls) if c.op == "fsync" and ".json" not in c.path]
        before = [fd for i, fd in dirs if i < min(docs)]
        after = [fd for i, fd in dirs if i > max(docs)]
        assert len(before) == len(set(before)) and len(after) == len(set(after)) == 5
        assert len(dirs) == len(before) + len(after)
        await _check(store)


def _shard(sid: str) -> str:
    from sessionstore_filesystem._layout import shard_of

    return shard_of(sid)


@pytest.mark.asyncio
@pytest.mark.parametrize("nth", [1, 2])
async def test_a_failing_barrier(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """The first barrier failing: nothing was committed, nothing changed, no debris.
    The second failing: every commit was made, its durability is unknown."""
    if not _durable.syncfs_supported():
        monkeypatch.setattr(_durable, "_SYNCFS", lambda fd: 0)
    async with make_store(durability="fsync") as store:
        await _seed(store)
        before = await store.get_session("old"), await store.get_session("gone")
        calls = [0]
        real = _durable.syncfs

        def failing(fd: int) -> None:
            calls[0] += 1
            if calls[0] == nth:
                raise OSError(errno.EIO, "injected")
            real(fd)

        monkeypatch.setattr(_durable, "syncfs", failing)
        error: type[Exception] = StoreUnavailableError if nth == 1 else OutcomeUnknownError
        with pytest.raises(error) as caught:
            await store._apply(await _batch(store), atomic=False)
        assert nth == 2 or not isinstance(caught.value, OutcomeUnknownError)
        monkeypatch.setattr(_durable, "syncfs", real)
        if nth == 1:
            assert (await store.get_session("old"), await store.get_session("gone")) == before
            assert await store.get_session("new0") is None
        else:  # not known durable: what the old state needs after a power loss is kept
            await _check(store, tidy=False)
            assert "old/events.1.jsonl" in (await store.doctor(dry_run=True)).removed
        assert leftovers(Path(store.root)) == []
        await store.doctor()
        assert (await store.doctor(dry_run=True)).removed == []


@pytest.mark.asyncio
async def test_without_syncfs_a_barrier_fsyncs_concurrently(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files of a batch are fsynced from several threads at once (a disk takes many
    writes together), all before the first commit, and never more than ``MAX_PENDING``
    duplicated descriptors are held: past that the files are synced early."""
    import os
    import threading
    import time

    monkeypatch.setattr(_durable, "_SYNCFS", None)
    monkeypatch.setattr(_durable, "MAX_PENDING", 5)
    threads: set[str] = set()
    held: list[int] = []
    flight = [0, 0]  # fsyncs under way now, the most at once
    mutex = threading.Lock()
    real_dup = os.dup

    def slow(real: Any) -> Any:
        def fsync(fd: int) -> None:
            with mutex:
                threads.add(threading.current_thread().name)
                flight[0] += 1
                flight[1] = max(flight)
            try:
                time.sleep(0.005)  # long enough for the other threads' fsyncs to start
                real(fd)
            finally:
                with mutex:
                    flight[0] -= 1

        return fsync

    def dup(fd: int) -> int:
        new = real_dup(fd)
        held.append(new)
        return new

    async with make_store(durability="fsync") as store:
        await _seed(store)
        muts = await _batch(store, n=8)
        with recording(monkeypatch) as rec:
            monkeypatch.setattr(os, "fsync", slow(os.fsync))  # the recorder's, wrapped
            monkeypatch.setattr(os, "dup", dup)
            await store._apply(muts, atomic=False)
            monkeypatch.setattr(os, "dup", real_dup)
        assert "sessionstore-fsync" in threads and flight[1] >= 2
        assert len(held) == 8 * 3 + 3  # per session its log, its checkpoint, its document
        assert len(durable_replaces(rec.calls)) == len([c for c in rec.calls if c.op == "replace"])
        await _check(store, n=8)


def test_a_batch_sync_holds_few_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without syncfs, a batch keeps a duplicate of each written file's descriptor for its
    barrier, syncs them early once ``MAX_PENDING`` are held, and closes every one."""
    import os

    monkeypatch.setattr(_durable, "MAX_PENDING", 3)
    dir_fd = os.open(tmp_path, os.O_RDONLY)
    sync = _durable.BatchSync(dir_fd, use_syncfs=False)
    dups: list[int] = []
    try:
        for i in range(5):
            fd = os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"x")
            sync.file(fd)
            os.close(fd)  # the caller may close it at once
            dups.append(sync.files[-1][0] if sync.files else -1)
            assert len(sync.files) == (i + 1) % 3  # the third was synced (and closed) early
        sync.dir(dir_fd, "tmp")
        sync.barrier()
        assert sync.files == [] and sync.dirs == {}
        for fd in dups:
            if fd >= 0:
                with pytest.raises(OSError):
                    os.fstat(fd)
    finally:
        os.close(dir_fd)


def test_sync_all_runs_every_job_and_raises_the_first_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    done: list[tuple[str, int]] = []

    def fake(op: str) -> Any:
        def sync(fd: int) -> None:
            done.append((op, fd))
            if fd in (3, 7):
                raise OSError(errno.EIO, f"injected {fd}")

        return sync

    monkeypatch.setattr(os, "fsync", fake("fsync"))
    monkeypatch.setattr(os, "fdatasync", fake("fdatasync"))
    jobs = [(fd, fd % 2 == 0) for fd in range(10)]
    with pytest.raises(OSError, match="injected"):
        _durable.sync_all(jobs, threads=4)
    assert sorted(done) == sorted(("fdatasync" if d else "fsync", fd) for fd, d in jobs)
    done.clear()
    _durable.sync_all([(1, False), (2, True)])  # inline: too few for threads
    assert done == [("fsync", 1), ("fdatasync", 2)]


def test_sync_all_without_threads_still_syncs_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When no thread can be started, the caller's thread does every job itself."""
    import os
    import threading

    done: list[int] = []
    monkeypatch.setattr(os, "fsync", done.append)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    _durable.sync_all([(fd, False) for fd in range(6)], threads=4)
    assert sorted(done) == list(range(6))
