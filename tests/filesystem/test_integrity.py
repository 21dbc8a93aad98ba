"""Corrupt, truncated, hand-edited and planted files: only that session fails, never the store."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sessionstore_filesystem import FileStore, _session
from sessionstore_filesystem._session import END_CHUNK

from sessionstore import (
    AppendOp,
    IntegrityError,
    QueryOptions,
    SessionFilter,
    SessionUpdate,
    StoreUnavailableError,
    UpdateOp,
)

from .conftest import MakeStore, leftovers, session_dir


async def _three(store: FileStore) -> None:
    for sid in ("a", "b", "c"):
        s = await store.create_session(id=sid, data={"name": sid}, tags={"t"})
        await store.append_events(s.id, [{"type": "e", "data": {"i": i}} for i in range(3)])


async def _assert_only_b_is_broken(store: FileStore) -> None:
    with pytest.raises(IntegrityError) as info:
        await store.get_session("b")
    assert "b" in str(info.value) and info.value.record.startswith("b")
    assert (await store.get_session("a")) is not None
    listing = SessionFilter(tags_all={"t"}), QueryOptions(sort_by="id")
    page = await store.list_sessions(*listing)
    # a page is the index's rows, no file read: the damage (done behind the store's back,
    # not by a crash) shows in reads, scans and doctor, and in listings once reindexed
    assert page.ids == ["a", "b", "c"]
    assert await store.reindex() == 2
    assert (await store.list_sessions(*listing)).ids == ["a", "c"]  # skipped...
    assert any(name.startswith("b") for name in store.corrupt_records)  # ...and reported
    scanned = [r.session.id async for r in store.scan()]
    assert scanned == ["a", "c"] or sorted(scanned) == ["a", "c"]
    fresh = await store.create_session(data={"still": "working"})  # the store stays up
    assert (await store.get_session(fresh.id)) == fresh


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "damage",
    ["invalid_json", "edited_value", "truncated", "empty", "garbage_bytes"],
)
async def test_damaged_session_document(root: Path, make_store: MakeStore, damage: str) -> None:
    async with make_store() as store:
        await _three(store)
        doc = session_dir(root, "b") / "session.json"
        raw = doc.read_bytes()
        if damage == "invalid_json":
            doc.write_bytes(raw.replace(b'"data":{', b'"data":{{', 1))
        elif damage == "edited_value":
            doc.write_bytes(raw.replace(b'"name":"b"', b'"name":"x"'))
        elif damage == "truncated":
            doc.write_bytes(raw[: len(raw) // 2])
        elif damage == "empty":
            doc.write_bytes(b"")
        else:
            doc.write_bytes(os.urandom(len(raw)))
        await _assert_only_b_is_broken(store)
        with pytest.raises(IntegrityError):
            await store.update_session("b", merge_data={"x": 1})  # no write over a bad record
        assert doc.read_bytes() != raw  # and nothing rewrote it behind our back


@pytest.mark.asyncio
async def test_corrupt_line_inside_the_log(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        await _three(store)
        log = session_dir(root, "b") / "events.1.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        lines[1] = lines[1].replace(b'"i":1', b'"i":7')
        log.write_bytes(b"".join(lines))
        with pytest.raises(IntegrityError, match="checksum"):
            await store.get_events("b")
        assert len(await store.get_events("a")) == 3


@pytest.mark.asyncio
async def test_truncated_log_below_the_committed_end(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        await _three(store)
        await store.update_session("b", merge_data={"fold": True})  # the document covers the log
        log = session_dir(root, "b") / "events.1.jsonl"
        log.write_bytes(log.read_bytes()[:-10])
        await _assert_only_b_is_broken(store)


@pytest.mark.asyncio
async def test_torn_tail_is_invisible_and_trimmed(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="t")
        s = await store.append_events(s.id, [{"type": "ok"}])
        log = session_dir(root, "t") / "events.1.jsonl"
        good = log.read_bytes()
        # a crash in the middle of the next append: half a line, no newline
        log.write_bytes(good + b'{"v":1,"seq":2,"type":"torn","at":"2030-01-')
        assert await store.get_session("t") == s
        assert [e.type for e in await store.get_events("t")] == ["ok"]
        s2 = await store.append_events("t", [{"type": "next"}])  # the writer trims it first
        assert s2.last_seq == 2
        assert [e.type for e in await store.get_events("t")] == ["ok", "next"]
        assert b"torn" not in log.read_bytes()


@pytest.mark.asyncio
async def test_unfinished_group_of_lines_is_not_visible(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="g")
        await store.append_events(s.id, [{"type": "one"}, {"type": "two"}, {"type": "three"}])
        log = session_dir(root, "g") / "events.1.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:2]))  # the group's last line (with "ver") is missing
        got = await store.get_session("g")
        assert got is not None and got.version == 1 and got.event_count == 0
        assert await store.get_events("g") == []


@pytest.mark.asyncio
async def test_a_long_tail_is_read_from_its_end(
    root: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pad = "x" * 150
    async with make_store() as store:
        s = await store.create_session(id="long")
        for i in range(120):  # ~30 KB of lines after the document, no fold yet
            s = await store.append_events(s.id, [{"type": "e", "data": {"i": i, "pad": pad}}])
    log = session_dir(root, "long") / "events.1.jsonl"
    assert log.stat().st_size > 3 * END_CHUNK
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    async with make_store() as store:  # a new store: no head cache, the files are read
        monkeypatch.setattr(os, "pread", counting_pread)
        assert await store.get_session("long") == s
        monkeypatch.undo()
        assert sum(read) < 2 * END_CHUNK  # the document and the log's end, not the tail
        assert [e.data["i"] for e in await store.get_events("long", last=2)] == [118, 119]


@pytest.mark.asyncio
async def test_a_line_missing_from_the_tail_is_corruption(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        await _three(store)
        log = session_dir(root, "b") / "events.1.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:1] + lines[2:]))  # an event cut out of the middle
        await _assert_only_b_is_broken(store)


@pytest.mark.asyncio
async def test_a_last_line_longer_than_the_end_chunk(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="big")
        await store.append_events(s.id, [{"type": "small"}])
        s = await store.append_events(s.id, [{"type": "big", "data": {"x": "y" * (3 * END_CHUNK)}}])
    async with make_store() as store:
        assert await store.get_session("big") == s
        s2 = await store.append_events("big", [{"type": "after"}])
        assert s2.event_count == 3 and s2.version == s.version + 1


@pytest.mark.asyncio
async def test_an_uncommitted_group_after_a_long_tail(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="u")
        for i in range(60):
            s = await store.append_events(s.id, [{"type": "e", "data": {"i": i, "pad": "p" * 200}}])
        await store.append_events(s.id, [{"type": "one"}, {"type": "two"}])
    log = session_dir(root, "u") / "events.1.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))  # the last group lost its "ver" line: not committed
    async with make_store() as store:
        assert await store.get_session("u") == s
        assert len(await store.get_events("u")) == 60


@pytest.mark.asyncio
async def test_torn_tail_trimmed_on_initialize(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        s = await store.create_session(id="t")
        await store.append_events(s.id, [{"type": "ok"}])
    log = session_dir(root, "t") / "events.1.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"v":1,"seq":2,"ty')
    index = root / "_default" / "index.sqlite3"
    index.unlink()  # a stale index makes initialize() re-read (and tidy) every session
    async with make_store() as store:
        assert log.read_bytes() == good
        assert (await store.get_session("t")) is not None


@pytest.mark.asyncio
async def test_symlinked_session_directory_is_not_followed(
    root: Path, tmp_path: Path, make_store: MakeStore
) -> None:
    outside = tmp_path / "outside"
    async with make_store() as store:
        await _three(store)
        # a valid-looking session outside the root, planted as a symlink
        victim = session_dir(root, "b")
        os.rename(victim, outside)
        os.symlink(outside, victim)
        with pytest.raises(IntegrityError, match="symlink"):
            await store.get_session("b")
        with pytest.raises(IntegrityError, match="symlink"):
            await store.update_session("b", merge_data={"x": 1})
        before = sorted(p.name for p in outside.iterdir())
        assert (await store.get_session("a")) is not None
        assert await store.delete_session("a")
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing written outside


@pytest.mark.asyncio
async def test_symlinked_document_is_not_followed(
    root: Path, tmp_path: Path, make_store: MakeStore
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    async with make_store() as store:
        await _three(store)
        doc = session_dir(root, "b") / "session.json"
        doc.unlink()
        os.symlink(secret, doc)
        with pytest.raises(IntegrityError, match="symlink"):
            await store.get_session("b")
        await _assert_only_b_is_broken(store)
    assert secret.read_text() == "top secret"


@pytest.mark.asyncio
async def test_symlinked_namespace_directory_is_refused(
    root: Path, tmp_path: Path, make_store: MakeStore
) -> None:
    async with make_store():
        pass
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "tenant")
    with pytest.raises(IntegrityError, match="symlink"):
        await make_store(namespace="tenant").initialize()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.asyncio
async def test_symlinked_index_is_refused(
    root: Path, tmp_path: Path, make_store: MakeStore
) -> None:
    async with make_store():
        pass
    target = tmp_path / "other.db"
    target.write_bytes(b"")
    index = root / "_default" / "index.sqlite3"
    index.unlink()
    os.symlink(target, index)
    with pytest.raises(StoreUnavailableError, match="symbolic link"):
        await make_store().initialize()
    assert target.read_bytes() == b""


@pytest.mark.asyncio
async def test_corrupt_checkpoint_only_fails_that_checkpoint(
    root: Path, make_store: MakeStore
) -> None:
    async with make_store() as store:
        s = await store.create_session(id="c", data={"v": 1})
        cp = await store.save_checkpoint(s.id)
        (cp_file,) = session_dir(root, "c").glob("checkpoints.*/*.json")
        cp_file.write_bytes(cp_file.read_bytes().replace(b'"v":1}', b'"v":2}', 1))
        with pytest.raises(IntegrityError):
            await store.get_checkpoint(s.id, cp.id)
        assert (await store.get_session("c")) == s
        assert leftovers(root) == []


@pytest.mark.asyncio
async def test_a_reader_racing_a_document_rewrite_and_an_append_reads_again(
    root: Path, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader reads session.json; before it reads the log, another process rewrites the
    # document with a write that also appends (its lines are flagged until the new
    # document covers them) and then appends once more. The log now ends with a committed
    # line, but the reader's document is the old one: it must read again, not combine
    # the old data with the new version.
    async with make_store() as writer, make_store() as reader:
        s = await writer.create_session(id="r", data={"step": 1})
        await writer.append_events(s.id, [{"type": "e"}])
        real = _session.read_file_stat  # type: ignore[attr-defined]
        raced: list[bool] = []

        def racing(name: str, dir_fd: int, record: str) -> Any:
            found = real(name, dir_fd, record)
            if name == _session.DOC and not raced:
                raced.append(True)

                async def write() -> None:
                    await writer.commit(
                        [
                            UpdateOp("r", SessionUpdate(merge_data={"step": 2})),
                            AppendOp("r", [{"type": "with-update"}]),
                        ]
                    )
                    await writer.append_events("r", [{"type": "after"}])

                thread = threading.Thread(target=asyncio.run, args=(write(),))
                thread.start()
                thread.join()
            return found

        monkeypatch.setattr(_session, "read_file_stat", racing)
        got = await reader.get_session("r")
        monkeypatch.undo()
        assert raced
        assert got == await writer.get_session("r")
        assert got is not None and got.data == {"step": 2} and got.event_count == 3
