"""Fixtures for the file driver's own tests: a store root and stores on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from sessionstore_filesystem import FileStore, _session
from sessionstore_filesystem._file_formats import Doc, decode_doc
from sessionstore_filesystem._layout import COMPACT_SUFFIX, cased_name, namespace_dir, shard_of
from sessionstore_filesystem._names import marker_cased

from sessionstore import ManualClock

MakeStore = Callable[..., FileStore]


def spy_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sessions whose event rows are rebuilt under their lock from here on (event
    reads that found the cover stale), in order."""
    from sessionstore_filesystem._event_reads import EventReads

    rebuilt: list[str] = []
    real = EventReads._rebuilt

    def spy(self: EventReads, sid: str, read: object) -> object:
        rebuilt.append(sid)
        return real(self, sid, read)  # type: ignore[arg-type]

    monkeypatch.setattr(EventReads, "_rebuilt", spy)
    return rebuilt


class DocDecodes:
    """Counts the session documents decoded in full from here on (``n``; set it to 0 to
    count again), by patching the decoder the reads call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0

        def counting(raw: bytes, record: str) -> Doc:
            self.n += 1
            return decode_doc(raw, record)

        monkeypatch.setattr(_session, "decode_doc", counting)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Where the store lives (created by the store on first use)."""
    return tmp_path / "store"


@pytest.fixture
def make_store(root: Path, clock: ManualClock) -> MakeStore:
    """Build (not open) a store on ``root``; keyword arguments override the options."""

    def make(**options: object) -> FileStore:
        values: dict[str, object] = {"root": str(root), "clock": clock, "durability": "none"}
        values.update(options)
        return FileStore(**values)

    return make


@pytest_asyncio.fixture
async def fstore(make_store: MakeStore) -> AsyncIterator[FileStore]:
    """An open store (durability="none") on the manual clock."""
    async with make_store() as store:
        yield store


def session_dir(root: Path, sid: str, namespace: str = "") -> Path:
    """The directory of session ``sid`` (named as the store's marker says)."""
    cased = marker_cased(str(root))
    name = cased_name(sid) if cased else sid
    return root / namespace_dir(namespace, cased=cased) / "sessions" / shard_of(sid) / name


def compact_path(root: Path, sid: str, namespace: str = "") -> Path:
    """The compact document of session ``sid`` (named as the store's marker says)."""
    where = session_dir(root, sid, namespace)
    return where.with_name(where.name + COMPACT_SUFFIX)


def leftovers(root: Path) -> list[str]:
    """Temp files and renamed-aside directories anywhere under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.startswith((".tmp.", ".trash.")):
                found.append(os.path.join(dirpath, name))
    return found


def only_old_lock_files(removed: list[str]) -> bool:
    """Whether ``doctor`` removed nothing but per-session lock files of a store written
    before layout 6 (``locks/<xx>/<id>.lock``; locks are stripes, ``~<n>.lock``, now)."""
    return all(r.startswith("locks/") and not r.rpartition("/")[2].startswith("~") for r in removed)
