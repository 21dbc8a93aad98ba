"""The file driver's event log (issue 17): cuts, rewrites, the event index, keys."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sessionstore_filesystem import FileStore, _log, _session, _write
from sessionstore_filesystem._engine import STORE_FORMAT
from sessionstore_filesystem._file_formats import decode_line

from sessionstore import (
    Event,
    EventKeyConflictError,
    IntegrityError,
    ManualClock,
    SessionNotFoundError,
)
from sessionstore.codec import EVENT_FORMAT_VERSION

from .conftest import DocDecodes, MakeStore, session_dir, spy_rebuilds


def _log_files(root: Path, sid: str) -> list[str]:
    return sorted(n for n in os.listdir(session_dir(root, sid)) if n.startswith("events."))


def _index(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / "_default" / "index.sqlite3")


def _edit_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` in the file by ``new`` (same length: the file keeps its
    size and inode, as a bit flip or a hand edit would)."""
    assert len(old) == len(new)
    raw = path.read_bytes()
    at = raw.index(old)
    path.write_bytes(raw[:at] + new + raw[at + len(old) :])


async def _filled(store: FileStore, n: int, *, keyed: bool = True) -> str:
    s = await store.create_session()
    for start in range(0, n, 200):
        await store.append_events(
            s.id,
            [
                {"type": f"t{i % 3}", "data": {"i": i}, **({"key": f"k{i}"} if keyed else {})}
                for i in range(start, min(n, start + 200))
            ],
        )
    return s.id


@pytest.mark.asyncio
async def test_pop_cuts_the_log_in_place(fstore: FileStore, root: Path) -> None:
    sid = await _filled(fstore, 50)
    size = (session_dir(root, sid) / "events.1.jsonl").stat().st_size
    popped = await fstore.pop_events(sid, 3)
    assert [e.seq for e in popped.events] == [48, 49, 50]
    assert (popped.session.event_count, popped.session.last_seq) == (47, 50)
    assert _log_files(root, sid) == ["events.1.jsonl"]  # no new generation
    assert (session_dir(root, sid) / "events.1.jsonl").stat().st_size < size
    s = await fstore.append_events(sid, [{"type": "late"}])
    assert s.last_seq == 51 and s.event_count == 48
    assert [e.seq for e in await fstore.get_events(sid, last=3)] == [46, 47, 51]
    assert await fstore.get_event(sid, key="k49") is None  # popped: its key is free
    assert (await fstore.get_event(sid, key="k46")) == (
        await fstore.get_events(sid, after_seq=46, limit=1)
    )[0]


@pytest.mark.asyncio
async def test_pop_reads_few_lines(fstore: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = await _filled(fstore, 2000, keyed=False)
    decoded = 0
    real = decode_line

    def counting(line: bytes, record: str) -> tuple[Event, int | None, bool]:
        nonlocal decoded
        decoded += 1
        return real(line, record)

    monkeypatch.setattr(_log, "decode_line", counting)
    popped = await fstore.pop_events(sid, 2)
    assert [e.seq for e in popped.events] == [1999, 2000]
    assert decoded < 50, decoded


@pytest.mark.asyncio
async def test_a_cut_left_on_the_file_is_ignored_then_removed(
    make_store: MakeStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the document was replaced but before the lines were cut off."""
    async with make_store() as store:
        sid = await _filled(store, 20)
        monkeypatch.setattr(_write, "_cut_file", lambda *args: None)
        await store.pop_events(sid, 2)
        await store.truncate_events(sid, 15)
    monkeypatch.undo()
    log = session_dir(root, sid) / "events.1.jsonl"
    assert log.read_bytes().count(b"\n") == 20  # the dropped lines are still there
    async with make_store() as store:
        s = await store.get_session(sid)
        assert s is not None and (s.event_count, s.last_seq) == (15, 20)
        assert [e.seq for e in await store.get_events(sid, last=2)] == [14, 15]
        assert [e.seq for e in await store.get_events(sid, types=["t1"], last=2)] == [11, 14]
        s = await store.append_events(sid, [{"type": "t1", "key": "k16"}])
        assert s.last_seq == 21
        assert log.read_bytes().count(b"\n") == 16  # cut before the append
        assert [e.seq for e in await store.get_events(sid, types=["t1"], last=2)] == [14, 21]
        report = await store.doctor(dry_run=True)
        assert report.healthy and report.removed == []


@pytest.mark.asyncio
async def test_delete_in_the_middle_writes_a_new_generation(fstore: FileStore, root: Path) -> None:
    sid = await _filled(fstore, 30)
    s = await fstore.delete_events(sid, seqs=[3, 7, 999], keys=["k19"])
    assert s.event_count == 27 and s.last_seq == 30
    assert _log_files(root, sid) == ["events.2.jsonl"]
    seqs = [e.seq for e in await fstore.get_events(sid)]
    assert seqs == [q for q in range(1, 31) if q not in (3, 7, 20)]
    assert await fstore.get_event(sid, key="k19") is None
    assert (await fstore.get_event(sid, key="k21")) is not None
    # the newest ones deleted by seq: a cut, no new generation
    await fstore.delete_events(sid, seqs=[29, 30])
    assert _log_files(root, sid) == ["events.2.jsonl"]
    assert [e.seq for e in await fstore.get_events(sid, last=2)] == [27, 28]


@pytest.mark.asyncio
async def test_truncate_then_append_in_one_batch(fstore: FileStore) -> None:
    from sessionstore import AppendOp, TruncateOp

    sid = await _filled(fstore, 10)
    out = await fstore.commit([TruncateOp(sid, 6), AppendOp(sid, [{"type": "new", "key": "k7"}])])
    s = out[-1]
    assert not isinstance(s, bool) and s.event_count == 7 and s.last_seq == 11
    events = await fstore.get_events(sid)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 11]
    assert events[-1].key == "k7" and events[-1].type == "new"


@pytest.mark.asyncio
async def test_filters_match_a_scan(fstore: FileStore, clock: ManualClock) -> None:
    s = await fstore.create_session()
    start = clock.now()
    for i in range(60):
        clock.advance(1)
        await fstore.append_events(s.id, [{"type": f"t{i % 4}", "data": {"i": i}}])
    await fstore.delete_events(s.id, seqs=[5, 6, 40])
    everything = await fstore.get_events(s.id)
    for types in (["t1"], ["t0", "t3"], ["nope"]):
        for last in (None, 1, 5, 100):
            got = await fstore.get_events(s.id, types=types, last=last)
            want = [e for e in everything if e.type in types]
            assert got == (want[-last:] if last else want), (types, last)
        got = await fstore.get_events(s.id, types=types, after_seq=10, before_seq=50, limit=4)
        assert got == [e for e in everything if e.type in types and 10 < e.seq < 50][:4]
    low, high = start + timedelta(seconds=10), start + timedelta(seconds=30)
    got = await fstore.get_events(s.id, at_after=low, at_before=high)
    assert got == [e for e in everything if low < e.at < high]
    got = await fstore.get_events(s.id, at_after=low, last=3)  # most rows: seq walk
    assert got == [e for e in everything if low < e.at][-3:]
    got = await fstore.get_events(s.id, types=["t2"], at_before=high, last=2)
    assert got == [e for e in everything if e.type == "t2" and e.at < high][-2:]
    got = await fstore.get_events(s.id, before_seq=40, last=3)
    assert [e.seq for e in got] == [37, 38, 39]
    assert await fstore.get_events(s.id, types=["t1"], last=0) == []


@pytest.mark.asyncio
async def test_get_events_checks_liveness_in_the_same_read(
    fstore: FileStore, clock: ManualClock
) -> None:
    s = await fstore.create_session(ttl=10)
    await fstore.append_events(s.id, [{"type": "a", "key": "x"}])
    clock.advance(11)
    with pytest.raises(SessionNotFoundError):
        await fstore.get_events(s.id, last=20)
    with pytest.raises(SessionNotFoundError):
        await fstore.get_events(s.id, types=["a"])
    with pytest.raises(SessionNotFoundError):
        await fstore.get_event(s.id, key="x")
    with pytest.raises(SessionNotFoundError):
        await fstore.get_events("missing", last=0)


@pytest.mark.asyncio
async def test_keys_are_idempotent_and_survive_a_lost_index(
    make_store: MakeStore, root: Path
) -> None:
    async with make_store() as store:
        s = await store.create_session()
        s = await store.append_events(s.id, [{"type": "a", "key": "one", "data": {"x": 1}}])
        again = await store.append_events(s.id, [{"type": "a", "key": "one", "data": {"x": 1}}])
        assert again.version == s.version  # nothing written
        with pytest.raises(EventKeyConflictError):
            await store.append_events(s.id, [{"type": "a", "key": "one", "data": {"x": 2}}])
        sid = s.id
    (root / "_default" / "index.sqlite3").unlink()
    async with make_store() as store:
        found = await store.get_event(sid, key="one")
        assert found is not None and found.data == {"x": 1}
        with pytest.raises(EventKeyConflictError):
            await store.append_events(sid, [{"type": "b", "key": "one"}])
        assert (await store.get_session(sid)).event_count == 1  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_stale_cover_is_rebuilt_from_the_log(fstore: FileStore, root: Path) -> None:
    sid = await _filled(fstore, 40)
    with _index(root) as conn:  # rows that lie about the log, under a cover that does not
        conn.execute("UPDATE events SET type = 'liar' WHERE id = ?", (sid,))
        conn.execute("UPDATE ev_cover SET end_off = end_off + 1 WHERE id = ?", (sid,))
    assert await fstore.get_events(sid, types=["liar"]) == []
    assert [e.seq for e in await fstore.get_events(sid, types=["t0"], last=2)] == [37, 40]
    with _index(root) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events WHERE id = ?", (sid,)).fetchone() == (40,)


@pytest.mark.asyncio
async def test_rows_follow_every_write(
    fstore: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends leave the rows alone and the next indexed read indexes what they added;
    cuts and rewrites keep a proven cover proven: no write forces a rebuild under the
    lock, and the rows always equal the log's."""
    sid = await _filled(fstore, 20)
    rebuilt = spy_rebuilds(monkeypatch)

    async def check() -> None:
        events = await fstore.get_events(sid)
        assert await fstore.get_events(sid, types=["t0", "t1", "t2", "x"]) == events
        with _index(root) as conn:
            rows = conn.execute(
                "SELECT seq, type, key FROM events WHERE id = ? ORDER BY seq", (sid,)
            ).fetchall()
        assert rows == [(e.seq, e.type, e.key) for e in events]

    await check()
    await fstore.pop_events(sid)
    await check()
    await fstore.delete_events(sid, seqs=[4])
    await check()
    await fstore.append_events(sid, [{"type": "x", "key": "new"}])
    await fstore.update_session(sid, merge_data={"a": 1})
    await check()
    await fstore.append_events(sid, [{"type": "x", "key": "n2"}, {"type": "x", "key": "n3"}])
    await fstore.truncate_events(sid, 15)  # the cover reached past the cut: moved back
    await check()
    await fstore.trim_events(sid, keep_last=10)
    await check()
    assert rebuilt == []


FIXTURE = Path(__file__).parent / "fixtures" / "layout2"


@pytest.mark.asyncio
async def test_a_store_of_the_previous_layout_is_upgraded(tmp_path: Path) -> None:
    """A store written by layout 2 (event records of format 1, no keys, an index without
    events; ``fixtures/make_layout2.py``) opens, reads and takes every new write."""
    import json
    import shutil

    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o700)
    clock = ManualClock()
    async with FileStore(root=str(root), clock=clock) as store:
        marker = json.loads((root / "_sessionstore.json").read_text())
        assert marker["layout"] == STORE_FORMAT
        folded = await store.get_session("folded")
        assert folded is not None and (folded.event_count, folded.version) == (300, 301)
        events = await store.get_events("folded")
        assert [e.seq for e in events] == list(range(1, 301))
        assert all(e.key is None and e.data == {"i": e.seq - 1} for e in events)
        odd = await store.get_events("folded", types=["odd"], last=2)
        assert [e.seq for e in odd] == [298, 300]
        mixed = await store.get_events("mixed")
        assert [(e.type, e.data) for e in mixed] == [("x", {}), ("y", {"z": [1]})]
        trimmed = await store.get_events("trimmed")
        assert [e.seq for e in trimmed] == [7, 8, 9, 10, 11]
        # new writes on old records
        await store.append_events("folded", [{"type": "odd", "key": "k", "data": {"i": 300}}])
        assert (await store.get_event("folded", key="k")) is not None
        popped = await store.pop_events("trimmed", 2)
        assert [e.seq for e in popped.events] == [10, 11]
        await store.delete_events("folded", seqs=[1])  # rewrites old lines at the new format
        await store.append_events("empty", [{"type": "first", "key": "f"}])
        assert await store.get_checkpoint("mixed", (await store.list_checkpoints("mixed"))[0].id)
        report = await store.doctor(dry_run=True)
        assert report.healthy, report.corrupt
    # the log rewritten by the delete: the old lines as they were (format 1, no key),
    # the keyed one at the format that carries keys
    lines = [
        json.loads(ln)
        for ln in (session_dir(root, "folded") / "events.2.jsonl").read_bytes().splitlines()
    ]
    assert [ln["seq"] for ln in lines] == list(range(2, 302))
    assert {ln["v"] for ln in lines[:-1]} == {1} and "key" not in lines[0]
    assert (lines[-1]["v"], lines[-1]["key"]) == (EVENT_FORMAT_VERSION, "k")


@pytest.mark.asyncio
async def test_a_pop_and_a_keyed_append_take_two_hops(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facts a plan needs are read in one hop (tagged as the base store tags them, or
    the planner would ask again), then lock + plan + write in another."""
    sid = await _filled(fstore, 30)
    hops: list[str] = []
    real = fstore._threads.run

    async def counting(fn: object, *args: object) -> object:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fstore._threads, "run", counting)
    await fstore.pop_events(sid, 2)
    assert len(hops) == 2, hops
    hops.clear()
    again = {"type": "t0", "key": "k3", "data": {"i": 3}}
    await fstore.append_events(sid, [again, {"type": "x", "key": "new"}])
    assert len(hops) == 2, hops
    hops.clear()
    await fstore.get_events(sid, types=["x"], last=5)
    await fstore.get_event(sid, key="new")
    assert len(hops) == 2, hops


@pytest.mark.asyncio
async def test_a_reindex_drops_the_rows_of_sessions_gone(fstore: FileStore, root: Path) -> None:
    sid = await _filled(fstore, 5)
    keep = await _filled(fstore, 3)
    import shutil

    shutil.rmtree(session_dir(root, sid))  # gone behind the store's back
    await fstore.reindex()
    with _index(root) as conn:
        ids = {r[0] for r in conn.execute("SELECT DISTINCT id FROM events")}
        covers = {r[0] for r in conn.execute("SELECT id FROM ev_cover")}
    assert sid not in ids and sid not in covers
    assert [e.key for e in await fstore.get_events(keep, types=["t0"])] == ["k0"]


@pytest.mark.asyncio
async def test_readers_racing_pops_and_appends(make_store: MakeStore) -> None:
    """A reader without the lock while another store object pops and appends over the
    same bytes: every read is one consistent state (it reads again when the document
    changed under it), never an error or a mix."""
    import asyncio

    async with make_store() as writer, make_store() as reader:
        sid = await _filled(writer, 30)
        stop = False

        async def churn() -> None:
            k = 1000
            while not stop:
                await writer.pop_events(sid, 2)
                await writer.append_events(
                    sid,
                    [{"type": f"t{j % 3}", "key": f"k{j}", "data": {"i": j}} for j in (k, k + 1)],
                )
                k += 2

        task = asyncio.ensure_future(churn())
        try:
            for _ in range(150):
                tail = await reader.get_events(sid, last=6)
                typed = await reader.get_events(sid, types=["t1"], last=4)
                back = await reader.get_events(sid, before_seq=20, last=3)
                for page in (tail, typed, back):
                    seqs = [e.seq for e in page]
                    assert seqs == sorted(set(seqs))
                    assert all(e.key == f"k{e.data['i']}" for e in page)
                assert len(tail) == 6 and all(e.type == "t1" for e in typed)
                assert [e.seq for e in back] == [17, 18, 19]
        finally:
            stop = True
            await task


@pytest.mark.asyncio
async def test_a_read_that_keeps_losing_races_reads_under_the_lock(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await _filled(fstore, 12)
    want = await fstore.get_events(sid, last=3)
    monkeypatch.setattr(_log, "doc_changed", lambda state: True)  # always a new document
    assert await fstore.get_events(sid, last=3) == want
    assert [e.seq for e in await fstore.get_events(sid, types=["t0"], last=2)] == [7, 10]
    assert (await fstore.get_event(sid, key="k4")) is not None


def test_the_journal_carries_the_new_mutation_fields() -> None:
    """A transaction's intent journal keeps removals and keyed events (recovery replays
    them)."""
    from datetime import UTC, datetime

    from sessionstore_filesystem._file_formats import decode_journal, encode_journal

    from sessionstore import Mutation

    at = datetime(2030, 1, 1, tzinfo=UTC)
    muts = [
        Mutation("a", 3, truncate_after=7, delete_seqs=[2, 5]),
        Mutation("b", 1, append=[Event(4, "t", at, {"x": 1}, key="k")], trim_before=2),
    ]
    back = decode_journal(encode_journal("tx", muts), "journal/tx")
    assert [(m.truncate_after, m.delete_seqs, m.trim_before) for m in back] == [
        (7, [2, 5], 0),
        (None, [], 2),
    ]
    assert back[1].append == muts[1].append and back[1].append[0].key == "k"


@pytest.mark.asyncio
async def test_lines_read_again_are_not_decoded_again(
    fstore: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tail a caller reads again comes from the decoded lines the first read kept;
    each read gets its own data dicts, and bytes that changed are checked in full."""
    sid = await _filled(fstore, 40)
    first = await fstore.get_events(sid, last=20)
    decoded = 0
    real = decode_line

    def counting(line: bytes, record: str) -> tuple[Event, int | None, bool]:
        nonlocal decoded
        decoded += 1
        return real(line, record)

    monkeypatch.setattr(_log, "decode_line", counting)
    again = await fstore.get_events(sid, last=20)
    assert again == first and decoded == 0
    again[0].data["i"] = "changed by a caller"
    assert (await fstore.get_events(sid, last=20)) == first  # nothing shared
    assert first[0].data == {"i": 20}
    # the same bytes on disk changed (one digit of a line's data): decoded, and refused
    _edit_in_place(session_dir(root, sid) / "events.1.jsonl", b'"i":25', b'"i":26')
    with pytest.raises(IntegrityError, match="checksum"):
        await fstore.get_events(sid, last=20)
    assert decoded > 0


@pytest.mark.asyncio
async def test_the_document_read_again_is_not_decoded_again(
    fstore: FileStore,
    make_store: MakeStore,
    root: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event read's liveness check decodes the session document once per distinct
    bytes: the same bytes again come from the kept decode; a write by another store object
    (as by another process) is seen at once; bytes changed in place are checked in full."""
    sid = await _filled(fstore, 30)
    await fstore.get_events(sid, last=5)
    decodes = DocDecodes(monkeypatch)
    assert [e.seq for e in await fstore.get_events(sid, last=2)] == [29, 30]
    assert decodes.n == 0
    got = await fstore.get_session(sid)  # a caller's session is never the kept one
    assert got is not None and got is not _session._KEPT.docs[sid][1].session
    assert decodes.n == 0  # bytes this process wrote: rebuilt from the write (test_compact)
    async with make_store() as other:
        await other.update_session(sid, ttl=5, data={"n": 1})
    decodes.n = 0  # the write decoded the old document: count the reads' own from here
    assert [e.seq for e in await fstore.get_events(sid, last=1)] == [30]
    assert decodes.n == 1
    clock.advance(6)
    with pytest.raises(SessionNotFoundError):
        await fstore.get_events(sid, last=1)
    with pytest.raises(SessionNotFoundError):
        await fstore.get_event(sid, key="k3")
    assert decodes.n == 1  # the same bytes: expired by the clock, not by a new decode
    # the document's bytes changed in place (same size, same inode): checked, refused
    _edit_in_place(session_dir(root, sid) / "session.json", b'"n":1', b'"n":2')
    with pytest.raises(IntegrityError, match="checksum"):
        await fstore.get_events(sid, last=1)
    assert decodes.n == 2
    # a document over KEPT_DOC_MAX bytes is decoded every time, never kept
    big = await fstore.create_session(data={"text": "x" * _session.KEPT_DOC_MAX})
    await fstore.append_events(big.id, [{"type": "a"}])
    decodes.n = 0
    for _ in range(2):
        assert [e.seq for e in await fstore.get_events(big.id, last=1)] == [1]
    assert big.id not in _session._KEPT.docs and decodes.n == 2
