"""The event log (issue 17) below the conformance suite: record formats, backups of gapped
and keyed logs, the planner's event reads, and the memory driver's indexes against a model."""

from __future__ import annotations

import asyncio
import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sessionstore_filesystem import FileStore
from sessionstore_memory import MemoryStore

from sessionstore import (
    AppendOp,
    DeleteEventsOp,
    Event,
    EventInput,
    ManualClock,
    PopOp,
    SessionRecord,
    TrimOp,
    TruncateOp,
    UnsupportedFormatError,
    UnsupportedOperationError,
    create_backup,
    restore_from_backup,
    verify_backup,
)
from sessionstore.codec import (
    EVENT_FORMAT_VERSION,
    FORMAT_VERSION,
    dumps_record,
    event_from_record,
    event_to_record,
)
from sessionstore.errors import IntegrityError

T0 = datetime(2030, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- record format


def test_event_record_versions() -> None:
    plain = Event(3, "t", T0, {"a": 1})
    rec = orjson.loads(dumps_record(event_to_record(plain)))
    assert rec["v"] == FORMAT_VERSION == 1 and "key" not in rec  # readable by older releases
    assert event_from_record(rec) == plain
    keyed = Event(4, "t", T0, {}, key="k-1")
    rec = orjson.loads(dumps_record(event_to_record(keyed)))
    assert rec["v"] == EVENT_FORMAT_VERSION == 2 and rec["key"] == "k-1"
    assert event_from_record(rec) == keyed
    for bad_key in (5, "", ["k"]):
        with pytest.raises(IntegrityError):
            event_from_record({**rec, "key": bad_key})
    with pytest.raises(UnsupportedFormatError):
        event_from_record({**rec, "v": EVENT_FORMAT_VERSION + 1})


# --------------------------------------------------------------------------- backups


async def _gapped(store: MemoryStore) -> list[SessionRecord]:
    s = await store.create_session(id="g")
    await store.append_events(s.id, [EventInput("m", {"i": i}, key=f"k{i}") for i in range(1, 8)])
    await store.append_events(s.id, [EventInput("old", {}, at=T0 - timedelta(days=3))])
    await store.delete_events(s.id, seqs=[2, 5])
    await store.pop_events(s.id)
    await store.create_session(id="plain")
    await store.append_events("plain", [{"type": "x"}])
    return sorted([r async for r in store.scan()], key=lambda r: r.session.id)


@pytest.mark.asyncio
async def test_backup_round_trip_keeps_keys_times_and_gaps(tmp_path: Path) -> None:
    async with MemoryStore(clock=ManualClock(T0)) as source, MemoryStore() as target:
        records = await _gapped(source)
        assert [e.seq for e in records[0].events] == [1, 3, 4, 6, 7]
        info = await create_backup(source, tmp_path / "b.jsonl")
        assert (await verify_backup(info.path)).events == 6
        await restore_from_backup(target, info.path)
        copied = sorted([r async for r in target.scan()], key=lambda r: r.session.id)
        assert copied == records
        got = await target.get_event("g", key="k6")
        assert got is not None and got.seq == 6


def _as_format_1(path: Path, out: Path) -> Path:
    """The backup as an older release wrote it: format 1, the same lines (its events
    were all version 1), the trailer's digest (which covers the header) redone."""
    raw = path.read_bytes()
    assert b'"format_version":2' in raw and b'"key"' not in raw
    *content, trailer, _ = raw.split(b"\n")
    content[0] = content[0].replace(b'"format_version":2', b'"format_version":1', 1)
    body = b"".join(line + b"\n" for line in content)
    end = orjson.loads(trailer)
    end["sha256"] = hashlib.sha256(body).hexdigest()
    out.write_bytes(body + orjson.dumps(end) + b"\n")
    return out


@pytest.mark.asyncio
async def test_version_1_backup_still_restores(tmp_path: Path) -> None:
    async with MemoryStore() as source, MemoryStore() as target:
        s = await source.create_session(id="old")
        await source.append_events(s.id, [{"type": "a"}, {"type": "b"}])
        info = await create_backup(source, tmp_path / "b.jsonl")
        old = _as_format_1(Path(info.path), tmp_path / "old.jsonl")
        assert (await verify_backup(old)).format_version == 1
        await restore_from_backup(target, old)
        assert [e.type for e in await target.get_events("old")] == ["a", "b"]


@pytest.mark.asyncio
async def test_a_store_without_event_log_refuses_keys_and_gaps(tmp_path: Path) -> None:
    async with MemoryStore() as source, FileStore(root=str(tmp_path / "files")) as target:
        assert not target.capabilities.event_log
        records = await _gapped(source)
        with pytest.raises(UnsupportedOperationError):
            await target.put_records(records[:1])
        gapless = SessionRecord(
            records[0].session,
            [Event(e.seq, e.type, e.at, e.data) for e in records[0].events],
        )
        with pytest.raises(UnsupportedOperationError, match="gaps"):
            await target.put_records([gapless])
        assert await target.put_records(records[1:])  # a plain log copies as before
        assert [e.type for e in await target.get_events("plain")] == ["x"]


# --------------------------------------------------------------------------- planning


@pytest.mark.asyncio
async def test_batch_reads_more_events_when_earlier_ops_need_it() -> None:
    """A pop after a delete in one batch needs a longer tail than the pop alone asks for:
    the planner asks again (``NeedEvents``) and the result is right."""
    async with MemoryStore() as store:
        s = await store.create_session()
        await store.append_events(s.id, [{"type": str(i)} for i in range(1, 11)])
        reads: list[dict[str, Any]] = []
        original = store._query_events

        async def counting(session_id: str, **kw: Any) -> list[Event]:
            reads.append(kw)
            return await original(session_id, **kw)

        store._query_events = counting  # type: ignore[method-assign]
        await store.commit(
            [
                DeleteEventsOp(s.id, seqs=[10, 9]),
                PopOp(s.id, 2),
                TruncateOp(s.id, 6),
                TrimOp(s.id, 2),
                AppendOp(s.id, [{"type": "n"}]),
                PopOp(s.id, 2),
            ]
        )
        assert [e.seq for e in await store.get_events(s.id)] == [5]
        assert len(reads) >= 2  # the static tail, then a longer one


@pytest.mark.asyncio
async def test_concurrent_pops_never_return_one_event_twice() -> None:
    async with MemoryStore() as store:
        s = await store.create_session()
        await store.append_events(s.id, [{"type": str(i)} for i in range(1, 41)])
        popped = await asyncio.gather(*(store.pop_events(s.id, 3) for _ in range(15)))
        seqs = [e.seq for p in popped for e in p.events]
        assert sorted(seqs) == list(range(1, 41))
        final = await store.get_session(s.id)
        assert final is not None and (final.event_count, final.last_seq) == (0, 40)


# --------------------------------------------------------------------------- memory indexes


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(6))
async def test_memory_indexes_match_a_model(seed: int) -> None:
    """Random appends (keyed, timed, out of order), pops, truncates, deletes and trims;
    after each, every read path of the memory driver agrees with a plain list."""
    rng = random.Random(seed)
    clock = ManualClock(T0)
    async with MemoryStore(clock=clock) as store:
        await store.create_session(id="m")
        model: list[Event] = []
        last = 0
        for _ in range(120):
            clock.advance(rng.choice([0, 0.0005, 1, 2]))
            op = rng.random()
            if op < 0.45:
                batch = []
                for _ in range(rng.randint(1, 4)):
                    kind = rng.choice("abc")
                    key = f"k{rng.randint(0, 30)}" if rng.random() < 0.5 else None
                    at = (
                        T0 + timedelta(seconds=rng.randint(-5, 300)) if rng.random() < 0.2 else None
                    )
                    batch.append(EventInput(kind, {"v": rng.randint(0, 2)}, key=key, at=at))
                try:
                    result = await store.append_events_detailed("m", batch)
                except Exception as exc:  # a key clash: nothing written
                    assert type(exc).__name__ == "EventKeyConflictError"
                    continue
                for event, new in zip(result.events, result.new, strict=True):
                    if new:
                        model.append(event)
                last = result.session.last_seq
            elif op < 0.6:
                n = rng.randint(1, 3)
                popped = await store.pop_events("m", n)
                assert popped.events == model[-n:] if model else popped.events == []
                del model[len(model) - len(popped.events) :]
            elif op < 0.7:
                after = rng.randint(0, last)
                await store.truncate_events("m", after)
                model = [e for e in model if e.seq <= after]
            elif op < 0.85:
                seqs = rng.sample(range(1, last + 2), k=min(3, last + 1))
                keys = [f"k{rng.randint(0, 30)}" for _ in range(2)]
                await store.delete_events("m", seqs=seqs, keys=keys)
                model = [e for e in model if e.seq not in seqs and e.key not in keys]
            else:
                keep = rng.randint(0, len(model) + 1)
                await store.trim_events("m", keep_last=keep)
                model = model[max(0, len(model) - keep) :] if keep else []
            await _agree(store, model, rng)


async def _agree(store: MemoryStore, model: list[Event], rng: random.Random) -> None:
    session = await store.get_session("m")
    assert session is not None and session.event_count == len(model)
    assert await store.get_events("m") == model
    for key in {e.key for e in model if e.key is not None}:
        assert await store.get_event("m", key=key) == next(e for e in model if e.key == key)
    assert await store.get_event("m", key="k-never") is None
    for _ in range(4):
        types = rng.choice([None, ["a"], ["b", "c"], ["a", "b", "c"]])
        after = rng.randint(0, session.last_seq)
        before = rng.choice([None, rng.randint(1, session.last_seq + 2)])
        low = rng.choice([None, T0 + timedelta(seconds=rng.randint(-5, 300))])
        high = rng.choice([None, T0 + timedelta(seconds=rng.randint(-5, 300))])
        match = [
            e
            for e in model
            if e.seq > after
            and (before is None or e.seq < before)
            and (types is None or e.type in types)
            and (low is None or e.at > low)
            and (high is None or e.at < high)
        ]
        window: dict[str, Any] = {
            "after_seq": after,
            "before_seq": before,
            "types": types,
            "at_after": low,
            "at_before": high,
        }
        n = rng.randint(1, 6)
        assert await store.get_events("m", **window) == match, window
        assert await store.get_events("m", last=n, **window) == match[-n:], window
        assert await store.get_events("m", limit=n, **window) == match[:n], window


@pytest.mark.asyncio
async def test_memory_event_log_paths_never_read_the_whole_log() -> None:
    """The memory driver answers every event-log read and write through its indexes: the
    O(history) defaults of the base (which read the whole log) are never used."""
    async with MemoryStore() as store:
        s = await store.create_session()
        await store.append_events(
            s.id, [EventInput("ab"[i % 2], {"i": i}, key=f"k{i}") for i in range(200)]
        )

        async def whole_log(*args: Any, **kwargs: Any) -> list[Event]:
            raise AssertionError("the whole event log was read")

        store._load_events = whole_log  # type: ignore[method-assign]
        assert len(await store.get_events(s.id, types=["a"], last=5)) == 5
        assert len(await store.get_events(s.id, before_seq=100, last=5)) == 5
        assert len(await store.get_events(s.id, at_after=T0 - timedelta(days=9999))) == 200
        assert await store.get_event(s.id, key="k7") is not None
        assert len((await store.pop_events(s.id, 2)).events) == 2
        await store.truncate_events(s.id, 150)
        await store.delete_events(s.id, seqs=[3], keys=["k4"])
        await store.trim_events(s.id, keep_last=50)
        await store.append_events(s.id, [EventInput("a", {"i": 1}, key="k1")])
        await store.commit([PopOp(s.id), TruncateOp(s.id, 140), TrimOp(s.id, 10)])
        session = await store.get_session(s.id)
        assert session is not None and session.event_count == 10
