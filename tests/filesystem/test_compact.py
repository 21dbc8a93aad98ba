"""Compact sessions (layout 4): a session without events or checkpoints is one file,
``sessions/<xx>/<id>~.json``; its first events or checkpoints give it its directory.

Crashes between the steps of that conversion leave two shapes, both tested here with the
files a crash leaves: a directory without ``session.json`` next to the compact document
(the conversion never committed: the compact document is the session), and a compact
document next to a committed ``session.json`` (its writer died before removing it: the
directory is the session, and a delete must not bring the compact one back).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sessionstore_filesystem import FileStore, _session
from sessionstore_filesystem._engine import STORE_FORMAT
from sessionstore_filesystem._file_formats import decode_doc

from sessionstore import IntegrityError, ManualClock

from .conftest import (
    DocDecodes,
    MakeStore,
    compact_path,
    leftovers,
    only_old_lock_files,
    session_dir,
)

FIXTURE = Path(__file__).parent / "fixtures" / "layout3"


def compact_doc(root: Path, sid: str) -> Path:
    return compact_path(root, sid)


@pytest.mark.asyncio
async def test_a_session_is_one_file_until_its_first_event(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        s = await store.create_session(id="c", data={"n": 1}, tags={"t"})
        assert compact_doc(root, "c").is_file() and not session_dir(root, "c").exists()
        assert json.loads(compact_doc(root, "c").read_bytes())["data"] == {"n": 1}  # jq-able
        s = await store.update_session("c", merge_data={"n": 2})
        assert not session_dir(root, "c").exists()
        assert await store.get_events("c") == [] and await store.list_checkpoints("c") == []
        assert await store.get_events("c", types=["x"]) == []  # the event index: no rows
        s = await store.append_events("c", [{"type": "x", "key": "k"}])
        assert (session_dir(root, "c") / "session.json").is_file()
        assert not compact_doc(root, "c").exists()
        assert [e.type for e in await store.get_events("c", types=["x"])] == ["x"]
        assert await store.get_event("c", key="k") is not None
        assert (await store.get_session("c")) == s and s.data == {"n": 2}
        # a checkpoint is a first file too (through a new incarnation of the directory)
        await store.create_session(id="p", data={"n": 3})
        await store.save_checkpoint("p", label="cp")
        assert not compact_doc(root, "p").exists()
        assert [c.label for c in await store.list_checkpoints("p")] == ["cp"]
        # deleted, then made again: compact again
        await store.delete_session("c")
        assert not compact_doc(root, "c").exists() and not session_dir(root, "c").exists()
        await store.create_session(id="c", data={"again": True})
        assert compact_doc(root, "c").is_file()
        page = await store.list_sessions()
        assert sorted(x.id for x in page.items) == ["c", "p"]
        report = await store.doctor(dry_run=True)
        assert report.healthy and report.removed == [], report
    assert leftovers(root) == []


@pytest.mark.asyncio
async def test_a_conversion_that_never_committed_is_ignored(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        await store.create_session(id="c", data={"n": 1})
    # a crash after the directory and its log were made, before session.json was linked in
    stray = session_dir(root, "c")
    stray.mkdir()
    line = b'{"v":2,"seq":1,"type":"ghost","at":"2030-01-01T00:00:00.000Z","data":{},"ver":2}\n'
    (stray / "events.1.jsonl").write_bytes(line)
    async with make_store() as store:
        got = await store.get_session("c")
        assert got is not None and got.event_count == 0 and got.data == {"n": 1}
        assert await store.get_events("c") == []
        after = await store.append_events("c", [{"type": "real"}])  # the writer starts over
        assert after.event_count == 1
        assert [e.type for e in await store.get_events("c")] == ["real"]
        report = await store.doctor(dry_run=True)
        assert report.healthy and report.removed == [], report
    async with make_store() as store:  # and doctor removes such a directory
        await store.create_session(id="d", data={})
        session_dir(root, "d").mkdir()
        report = await store.doctor()
        assert report.removed == ["d/ (no session.json)"] and not session_dir(root, "d").exists()
        assert await store.get_session("d") is not None


@pytest.mark.asyncio
async def test_a_compact_document_left_after_its_conversion_loses_and_never_returns(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        await store.create_session(id="c", data={"n": 1})
        old = compact_doc(root, "c").read_bytes()
        s = await store.append_events("c", [{"type": "e"}])
    # a crash after session.json was linked in, before the compact name was removed
    compact_doc(root, "c").write_bytes(old)
    async with make_store() as store:
        assert await store.get_session("c") == s  # the directory wins
        dry = await store.doctor(dry_run=True)
        assert f"sessions/{'c~.json'} (converted)" in dry.removed
        await store.delete_session("c")
        assert not compact_doc(root, "c").exists()
    async with make_store() as store:
        assert await store.get_session("c") is None  # not the old compact one back
        assert await store.list_sessions() == type(await store.list_sessions())([], None)


@pytest.mark.asyncio
async def test_a_reader_racing_a_conversion_finds_the_session(
    root: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader finds no session.json, then (before it reads the compact document) the
    writer commits the conversion and removes the compact name: it must look again, not
    report the session absent."""
    async with make_store() as store:
        await store.create_session(id="c", data={"n": 1})
        real = vars(_session)["read_file_stat"]
        raced: list[str] = []

        def read_then_race(name: str, dir_fd: int, record: str = "") -> object:
            if name == "c~.json" and not raced:  # what a converting writer does meanwhile
                raced.append(name)
                d = session_dir(root, "c")
                d.mkdir()
                os.link(compact_doc(root, "c"), d / "session.json")
                compact_doc(root, "c").unlink()
            return real(name, dir_fd, record)

        monkeypatch.setattr(_session, "read_file_stat", read_then_race)
        got = await store.get_session("c")
        assert raced and got is not None and got.data == {"n": 1}


@pytest.mark.asyncio
async def test_a_store_of_layout_3_is_upgraded(tmp_path: Path) -> None:
    """A store written by layout 3 (every session a directory; ``make_layout3.py``) opens,
    is marked layout 4, reads as it was and takes every new write; its sessions stay
    directories and new ones are compact."""
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o700)
    async with FileStore(root=str(root), clock=ManualClock()) as store:
        assert json.loads((root / "_sessionstore.json").read_text())["layout"] == STORE_FORMAT
        keyed = await store.get_session("keyed")
        assert keyed is not None and (keyed.event_count, keyed.version) == (300, 301)
        odd = await store.get_events("keyed", types=["odd"], last=2)
        assert [e.seq for e in odd] == [298, 300]
        got = await store.get_event("keyed", key="k7")
        assert got is not None and got.seq == 8
        (cp,) = await store.list_checkpoints("saved")
        assert (await store.get_checkpoint("saved", cp.id)) is not None
        empty = await store.get_session("empty")
        assert empty is not None and empty.data == {"e": True} and empty.processor_id == "p2"
        assert await store.get_session("gone") is None
        assert await store.count_sessions() == 3
        # writes to the old sessions keep them directories
        await store.update_session("empty", merge_data={"f": 1})
        assert (session_dir(root, "empty") / "session.json").is_file()
        assert not compact_doc(root, "empty").exists()
        await store.append_events("keyed", [{"type": "odd", "key": "new"}])
        assert (await store.get_event("keyed", key="new")) is not None
        await store.delete_session("saved")
        # a new session is compact; "gone" again, too
        await store.create_session(id="gone", data={"back": 1})
        assert compact_doc(root, "gone").is_file()
        report = await store.doctor(dry_run=True)
        assert report.healthy and only_old_lock_files(report.removed), report
        await store.reindex()
        assert await store.count_sessions() == 3


def _edit_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes of ``path`` without replacing it (same inode, same size)."""
    raw = path.read_bytes()
    assert len(old) == len(new) and raw.count(old) == 1
    with open(path, "r+b") as f:
        f.write(raw.replace(old, new))


@pytest.mark.asyncio
async def test_a_read_of_the_bytes_this_process_wrote_is_not_decoded_again(
    root: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_session`` of a document this process wrote, read back byte for byte, rebuilds
    the session the write encoded (no checksum or JSON of the whole document), with data
    and metadata of the caller's own; bytes changed in any way are decoded and checked."""
    decodes = DocDecodes(monkeypatch)
    async with make_store() as store:
        s = await store.create_session(data={"n": 1}, metadata={"m": [1]}, tags={"a", "b"})
        assert decodes.n == 0  # a generated id: nothing on disk to decode under the lock
        got = await store.get_session(s.id)
        assert got == s and decodes.n == 0
        assert got is not None and got.data is not s.data and got.metadata is not s.metadata
        got.data["n"] = 99
        got.metadata["m"].append(2)
        again = await store.get_session(s.id)
        assert again == s and decodes.n == 0  # nothing the caller holds is shared
        # the same bytes changed in place (same inode, same size): decoded, and refused
        _edit_in_place(compact_doc(root, s.id), b'"n":1', b'"n":2')
        with pytest.raises(IntegrityError, match="checksum"):
            await store.get_session(s.id)
        assert decodes.n == 1


@pytest.mark.asyncio
async def test_the_written_session_is_the_decoded_one_field_for_field(
    root: Path, make_store: MakeStore
) -> None:
    """What a read of the written bytes rebuilds equals what decoding them gives, every
    field and its type (times in UTC), for the shapes a session takes."""
    plus2 = timezone(timedelta(hours=2))
    async with make_store() as store:
        made = [
            await store.create_session(),
            await store.create_session(
                id="x1",
                processor_id="p",
                data={"f": 1.5, "l": [None, True]},
                metadata={"k": "v"},
                tags={"t1", "t2", "t3"},
                status="paused",
                ttl=60,
                group="g1",
            ),
            await store.create_session(
                expires_at=datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=plus2)
            ),
        ]
        updated = await store.update_session("x1", data={"new": "data"}, tags={"t9"})
        for s in [*made, updated]:
            raw = compact_doc(root, s.id).read_bytes()
            assert _session._WRITTEN.docs[s.id][0] == raw
            kept = _session._WRITTEN.decode(raw, s.id).session
            full = decode_doc(raw, s.id).session
            assert kept == full
            for name in ("created_at", "updated_at", "expires_at"):
                a, b = getattr(kept, name), getattr(full, name)
                assert (a is None) == (b is None)
                if a is not None:
                    assert a.tzinfo is b.tzinfo is UTC
            assert type(kept.status) is type(full.status) and type(kept.tags) is frozenset
