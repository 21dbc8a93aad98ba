"""I/O errors injected at every step of every write: a clear error, no half state, no debris.

Tests run as root here, so permission errors are injected (``EACCES`` from a wrapped
``os`` function), not staged with chmod. For each mutating operation we first record how
many times it calls each function, then fail the 1st, 2nd, ... call in turn:

* a failure before the operation's commit point raises :class:`StoreUnavailableError`
  and leaves every session exactly as it was;
* a failure after it (syncing the directory of a file already replaced) raises
  :class:`OutcomeUnknownError` -- the write is visible, its durability unknown;
* a failure in best-effort cleanup after the commit point (removing a deleted session's
  directory) is not an error: the write stands and the next repair removes the rest;
* either way no temp file is left, and the store keeps working.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sessionstore_filesystem import FileStore, _durable

from sessionstore import (
    AppendOp,
    CreateOp,
    DeleteOp,
    Mutation,
    NewSession,
    OutcomeUnknownError,
    QueryOptions,
    SessionFilter,
    SessionUpdate,
    StoreUnavailableError,
    UpdateOp,
)

from .conftest import MakeStore, leftovers
from .syscalls import recording
from .test_batch import _restore, _session

# integration: every write path under injected I/O errors, each with real fsyncs
pytestmark = pytest.mark.integration

Op = Callable[[FileStore], Awaitable[Any]]


async def _batch(store: FileStore, *, use_syncfs: bool) -> None:
    """A restore-like batch (``atomic=False``): two new sessions with events and a
    checkpoint, one overwritten, one deleted; barriers by syncfs or by fsyncs."""
    now = store.clock.now()
    muts = [_restore(_session(f"n{i}", now), now) for i in range(2)]
    muts.append(_restore(_session("b", now, version=3, v=2), now, expect=1))
    muts.append(Mutation("c", 1, delete=True))
    syncfs = vars(_durable)["_SYNCFS"] if use_syncfs else None
    with mock.patch.object(_durable, "_SYNCFS", syncfs):
        await store._apply(muts, atomic=False)


OPS: dict[str, Op] = {
    "create": lambda st: st.create_session(id="new", data={"v": 1}),
    "create_generated_id": lambda st: st.create_session(data={"v": 1}),
    "update": lambda st: st.update_session("a", data={"v": 2}),
    "append": lambda st: st.append_events("a", [{"type": "e", "data": {"i": 9}}]),
    "first_append": lambda st: st.append_events("b", [{"type": "e"}]),
    "checkpoint": lambda st: st.save_checkpoint("a", keep_last=1),
    "trim": lambda st: st.trim_events("a", keep_last=1),
    "delete": lambda st: st.delete_session("b"),  # compact: an unlink
    "delete_dir": lambda st: st.delete_session("d"),  # a directory: a rename
    "batch": lambda st: _batch(st, use_syncfs=True),
    "batch_fsync": lambda st: _batch(st, use_syncfs=False),
    "commit": lambda st: st.commit(
        [
            UpdateOp("a", SessionUpdate(merge_data={"tx": 1})),
            AppendOp("b", [{"type": "tx"}]),
            CreateOp(NewSession(id="tx-new")),
            DeleteOp("c"),
        ]
    ),
}
FAILURES = {
    "open": errno.EACCES,
    "write": errno.ENOSPC,
    "fsync": errno.EIO,
    "fdatasync": errno.EIO,
    "replace": errno.EACCES,
    "rename": errno.EIO,
    "unlink": errno.EIO,
}


async def _seed(store: FileStore) -> None:
    a = await store.create_session(id="a", data={"v": 1}, tags={"t"})
    await store.append_events(a.id, [{"type": "e", "data": {"i": i}} for i in range(3)])
    await store.save_checkpoint(a.id)
    await store.create_session(id="b", data={"v": 1})
    await store.create_session(id="c", data={"v": 1})
    await store.create_session(id="d", data={"v": 1})
    await store.append_events("d", [{"type": "e"}])  # a directory (b and c are compact)


async def _snapshot(store: FileStore) -> list[Any]:
    page = await store.list_sessions(
        SessionFilter(include_expired=True), QueryOptions(sort_by="id", limit=100)
    )
    out: list[Any] = []
    for s in page.items:
        out.append((s, await store.get_events(s.id), await store.list_checkpoints(s.id)))
    return out


def _fail_nth(monkeypatch: pytest.MonkeyPatch, name: str, nth: int, code: int) -> list[int]:
    real = getattr(os, name)
    seen = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        if args and str(args[0]).endswith(".writer"):
            return real(*args, **kwargs)  # a worker thread's marker file: made once per thread
        seen[0] += 1
        if seen[0] == nth:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, failing)
    return seen


async def _count_calls(
    make_store: MakeStore, op: Op, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    async with make_store(durability="fsync", namespace="count") as store:
        await _seed(store)
        with recording(monkeypatch) as rec:
            await op(store)
        counts: dict[str, int] = {}
        for call in rec.calls:
            counts[call.op] = counts.get(call.op, 0) + 1
        return counts


@pytest.mark.asyncio
@pytest.mark.parametrize("op_name", sorted(OPS))
async def test_injected_errors_leave_no_half_state(
    op_name: str, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = OPS[op_name]
    counts = await _count_calls(make_store, op, monkeypatch)
    assert counts.get("write", 0) + counts.get("rename", 0) + counts.get("unlink", 0) > 0
    outcomes: dict[str, int] = {"unavailable": 0, "outcome_unknown": 0, "after_commit": 0}
    for fn, code in FAILURES.items():
        for nth in range(1, counts.get(fn, 0) + 1):
            namespace = f"{fn}-{nth}"
            async with make_store(durability="fsync", namespace=namespace) as store:
                await _seed(store)
                before = await _snapshot(store)
                error: StoreUnavailableError | None = None
                with monkeypatch.context() as patch:
                    seen = _fail_nth(patch, fn, nth, code)
                    try:
                        await op(store)
                    except StoreUnavailableError as exc:
                        error = exc
                after = await _snapshot(store)
                if error is None:
                    if seen[0] < nth:
                        continue  # this run made fewer such calls (a directory existed)
                    # injected into best-effort cleanup after the commit point: the write
                    # stands, and what the cleanup left is removed by the next repair
                    outcomes["after_commit"] += 1
                    assert after != before, f"{op_name}: {fn}#{nth} was swallowed"
                    await store.doctor()
                    assert leftovers(Path(store.root)) == []
                    continue
                message = str(error)
                assert os.strerror(code) in message, message
                if isinstance(error, OutcomeUnknownError):
                    outcomes["outcome_unknown"] += 1
                    assert after != before, f"{fn}#{nth}: reported as written, but is not"
                else:
                    outcomes["unavailable"] += 1
                    assert after == before, f"{op_name}: {fn}#{nth} changed the store"
                assert leftovers(Path(store.root)) == [], f"{op_name}: {fn}#{nth} left temp files"
                probe = await store.update_session("a", merge_data={"probe": True})
                assert probe.data["probe"] is True  # and the store keeps working
    assert outcomes["unavailable"] > 0


@pytest.mark.asyncio
async def test_a_failed_append_sync_leaves_the_index_row_as_the_files(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pure append writes its index row just before its fdatasync (warm caches): when the
    # sync fails, the append is cut from the log and the row must follow it back
    def row(store: FileStore) -> tuple[Any, ...]:
        got = (
            store._engine.index.conn()
            .execute("SELECT version, updated_ms, event_count FROM sessions WHERE id = 'a'")
            .fetchone()
        )
        assert got is not None
        return tuple(got)

    async with make_store(durability="fsync") as store:
        await _seed(store)
        before = await store.get_session("a")
        assert before is not None
        row_before = row(store)
        assert row_before[0] == before.version
        with monkeypatch.context() as patch:
            _fail_nth(patch, "fdatasync", 1, errno.EIO)
            with pytest.raises(StoreUnavailableError):
                await store.append_events("a", [{"type": "lost"}])
        assert await store.get_session("a") == before
        assert row(store) == row_before
        after = await store.append_events("a", [{"type": "kept"}])
        assert row(store)[0] == after.version == before.version + 1
