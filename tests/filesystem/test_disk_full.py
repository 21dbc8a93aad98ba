"""A full disk for real: the store on a small tmpfs (mounted here; root only), filled by
its own writes until the kernel answers ``ENOSPC``.

``test_io_errors.py`` injects each failure at each call of each write; this one lets the
file system fail where it really does (a data file, a log line, the index's SQLite
pages, a directory entry), with everything the driver does in between. Every call on
the full disk either returns -- and its write is there -- or raises
:class:`StoreUnavailableError` naming the cause, with the store exactly as before it
(an :class:`OutcomeUnknownError`: as after it); no temp file stays; once space is freed
the same store object writes on, and a store opened afresh finds every acknowledged
write and nothing to repair.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore

from sessionstore import (
    AppendOp,
    OutcomeUnknownError,
    QueryOptions,
    SessionFilter,
    SessionNotFoundError,
    SessionUpdate,
    StoreUnavailableError,
    UpdateOp,
)

from .conftest import leftovers

# integration: mounts a file system, real fsyncs
pytestmark = pytest.mark.integration

SIZE = 2 * 1024 * 1024  # the tmpfs
FILLER = 512 * 1024  # a file taking space, removed to free it
PAD = "x" * 12_000  # per write: the disk fills in a few hundred writes


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh ``SIZE``-byte tmpfs (skips where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _ops(i: int) -> list[Callable[[FileStore], Awaitable[Any]]]:
    data = {"pad": PAD, "i": i}
    return [
        lambda st: st.create_session(id=f"n{i}", data=data),
        lambda st: st.append_events("a", [{"type": "e", "key": f"k{i}", "data": data}]),
        lambda st: st.update_session("b", data=data),
        lambda st: st.commit(
            [
                UpdateOp("b", SessionUpdate(merge_data={"i": i})),
                AppendOp("a", [{"type": "tx", "data": data}]),
            ]
        ),
        lambda st: st.save_checkpoint("b", keep_last=3),
        lambda st: st.append_events(f"n{i - 4}", [{"type": "e", "data": data}]),
    ]


async def _state(store: FileStore, ids: list[str]) -> dict[str, Any]:
    """Every session of ``ids`` with its events and checkpoints (no listing: a listing
    repairs index rows first, which a full disk may refuse)."""
    out: dict[str, Any] = {}
    for sid in ids:
        s = await store.get_session(sid)
        if s is not None:
            out[sid] = (s, await store.get_events(sid), await store.list_checkpoints(sid))
    return out


async def _listing_agrees(store: FileStore, ids: list[str]) -> None:
    """A listing (the index's rows) returns exactly what ``get_session`` does."""
    page = await store.list_sessions(
        SessionFilter(include_expired=True), QueryOptions(sort_by="id", limit=1000)
    )
    stored = {sid: s for sid in ids if (s := await store.get_session(sid)) is not None}
    assert {s.id: s for s in page.items} == stored
    assert await store.count_sessions() == len(stored)


@pytest.mark.asyncio
@pytest.mark.parametrize("durability", ["fsync", "none"])
@pytest.mark.parametrize("freed", ["while-open", "after-close"])
async def test_a_full_disk_loses_nothing_and_writes_on_once_freed(
    small_disk: Path, durability: str, freed: str
) -> None:
    root = small_disk / "store"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * FILLER)
    ids = ["a", "b"]
    async with FileStore(root=str(root), durability=durability) as store:
        await store.create_session(id="a")
        await store.create_session(id="b")
        expected = await _state(store, ids)
        failed = 0
        i = 0
        while failed < 30:  # well past the first failure
            i += 1
            assert i < 2000, "the disk never filled"
            ids.append(f"n{i}")
            try:
                await _ops(i)[i % 6](store)
            except SessionNotFoundError:
                assert i % 6 == 5  # n{i-4} was never created (the disk was full)
            except StoreUnavailableError as exc:
                failed += 1
                assert os.strerror(errno.ENOSPC) in str(exc) or "disk is full" in str(exc), exc
                after = await _state(store, ids)
                if isinstance(exc, OutcomeUnknownError):
                    expected = after  # visible, its durability unknown
                else:
                    assert after == expected, f"write {i} failed but changed the store"
            else:
                expected = await _state(store, ids)
            assert leftovers(root) == [], f"write {i} left temp files"
            if i % 10 == 0:  # a listing: right, or refused (its repairs need space)
                with contextlib.suppress(StoreUnavailableError):
                    await _listing_agrees(store, ids)
        assert shutil.disk_usage(small_disk).free < 64 * 1024
        if freed == "while-open":  # the same store object writes on
            filler.unlink()
            await _listing_agrees(store, ids)
            for j in range(i + 1, i + 6):
                ids.append(f"n{j}")
                await _ops(j)[j % 5](store)  # (not the append to n{j-4}: maybe never made)
            await _listing_agrees(store, ids)
            expected = await _state(store, ids)
    if freed == "after-close":
        filler.unlink()
    async with FileStore(root=str(root), durability=durability) as reopened:
        assert await _state(reopened, ids) == expected
        await _listing_agrees(reopened, ids)
        report = await reopened.doctor(dry_run=True)
        assert report.healthy, report.corrupt
        assert report.removed == []
    assert leftovers(root) == []
