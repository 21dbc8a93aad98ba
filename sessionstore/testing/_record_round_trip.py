"""Backup records: ``scan`` / ``put_records`` round trip every field exactly."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from sessionstore import (
    IntegrityError,
    InvalidArgumentError,
    PutResult,
    QueryOptions,
    SessionExistsError,
    SessionFilter,
    SessionRecord,
    Status,
)
from sessionstore.query import SORT_FIELDS

from ._harness import ConformanceContext, snapshot, store_test

__all__ = ["RecordTests"]


async def _records(ctx: ConformanceContext, **kwargs: object) -> dict[str, SessionRecord]:
    return {r.session.id: r async for r in ctx.store.scan(**kwargs)}  # type: ignore[arg-type]


class RecordTests:
    """Whole-record streaming for backup and restore."""

    async def _populate(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        a = await st.create_session(
            id="rec-a", processor_id="p", tags={"x"}, data={"l": []}, metadata={"m": {}}
        )
        await st.append_events(a.id, [{"type": "e", "data": {"i": i}} for i in range(5)])
        await st.trim_events(a.id, keep_last=3)
        await st.save_checkpoint(a.id, label="one")
        ctx.clock.advance(1)
        await st.update_session(a.id, merge_data={"after": True}, status="paused")
        await st.create_session(id="rec-b", ttl=5, group="grp")
        await st.create_session(id="rec-c", ttl=1)
        ctx.clock.advance(1)  # rec-c is now expired

    @store_test
    async def test_scan_streams_whole_records(self, ctx: ConformanceContext) -> None:
        await self._populate(ctx)
        live = await _records(ctx)
        assert sorted(live) == ["rec-a", "rec-b"]
        a = live["rec-a"]
        assert [e.seq for e in a.events] == [3, 4, 5]
        assert a.session.event_count == 3
        assert a.session.last_seq == 5
        assert [c.label for c in a.checkpoints] == ["one"]
        everything = await _records(ctx, include_expired=True)
        assert sorted(everything) == ["rec-a", "rec-b", "rec-c"]
        only = await _records(ctx, filter=SessionFilter(processor_id="p"))
        assert sorted(only) == ["rec-a"]

    @store_test
    async def test_put_records_round_trip_exactly(self, ctx: ConformanceContext) -> None:
        await self._populate(ctx)
        source = await _records(ctx, include_expired=True)
        target = await ctx.open_store(ctx.fresh_namespace())
        result = await target.put_records(source.values())
        assert result == PutResult(created=3)
        copied = {r.session.id: r async for r in target.scan(include_expired=True)}
        assert copied == source
        assert await target.get_events("rec-a") == list(source["rec-a"].events)
        cp = source["rec-a"].checkpoints[0]
        assert await target.get_checkpoint("rec-a", cp.id) == cp
        s = await target.append_events("rec-a", [{"type": "next"}])
        assert s.last_seq == 6  # sequence numbers continue after the restored log

    @store_test
    async def test_put_records_strategies(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        old = await st.create_session(id="m1", data={"v": "old"})
        ctx.clock.advance(1)
        newer = await st.update_session(old.id, data={"v": "newer"})
        record_old = SessionRecord(old)
        record_new = SessionRecord(
            replace(newer, data={"v": "incoming"}, updated_at=newer.updated_at.replace(year=2099))
        )
        assert await st.put_records([record_old], strategy="skip_existing") == PutResult(skipped=1)
        assert (await st.get_session("m1")) == newer
        assert await st.put_records([record_old], strategy="update_newer") == PutResult(skipped=1)
        assert (await st.get_session("m1")) == newer
        assert await st.put_records([record_new], strategy="update_newer") == PutResult(
            overwritten=1
        )
        got = await st.get_session("m1")
        assert got is not None
        assert got.data == {"v": "incoming"}
        with pytest.raises(SessionExistsError):
            await st.put_records(
                [record_old, SessionRecord(replace(old, id="m2"))], strategy="fail_on_conflict"
            )
        assert await st.get_session("m2") is None  # nothing of the failed call was written
        assert await st.put_records([record_old], strategy="overwrite") == PutResult(overwritten=1)
        assert (await st.get_session("m1")) == old
        twice = await st.put_records([record_old], strategy="overwrite")
        assert twice == PutResult(overwritten=1)
        assert (await st.get_session("m1")) == old

    @store_test
    async def test_put_records_overwrite_replaces_events_and_checkpoints(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        s = await st.create_session(id="ow")
        snapshot = SessionRecord(s)  # no events, no checkpoints
        await st.append_events(s.id, [{"type": "later"}] * 2)
        await st.save_checkpoint(s.id, label="later")
        assert await st.put_records([snapshot], strategy="overwrite") == PutResult(overwritten=1)
        assert await st.get_session("ow") == s
        assert await st.get_events("ow") == []
        assert await st.list_checkpoints("ow") == []

    @store_test
    async def test_put_records_refuses_bad_checkpoint_digest(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(id="d1", data={"a": 1})
        cp = await ctx.store.save_checkpoint(s.id)
        record = SessionRecord(
            replace(s, id="d2"), (), (replace(cp, session_id="d2", data={"a": 2}),)
        )
        with pytest.raises(IntegrityError):
            await ctx.store.put_records([record])
        assert await ctx.store.get_session("d2") is None

    @store_test
    async def test_put_records_refuses_events_that_disagree_with_counters(
        self, ctx: ConformanceContext
    ) -> None:
        """A record whose events are more or fewer than its ``event_count`` says is
        refused, and nothing of it written."""
        st = ctx.store
        s = await st.create_session(id="cnt")
        s = await st.append_events(s.id, [{"type": "e"}, {"type": "e"}])
        [record] = [r async for r in st.scan() if r.session.id == s.id]
        target = await ctx.open_store(ctx.fresh_namespace())
        for count in (1, 3):
            bad = replace(record, session=replace(record.session, event_count=count))
            with pytest.raises(InvalidArgumentError):
                await target.put_records([bad])
            assert await target.get_session("cnt", include_expired=True) is None, count
        assert await target.put_records([record]) == PutResult(created=1)

    @store_test
    async def test_update_newer_decides_by_updated_at(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        stored = await st.create_session(id="un", data={"v": "stored"})
        for i in range(4):
            stored = await st.update_session(stored.id, merge_data={"i": i})  # version 5
        later = stored.updated_at + timedelta(seconds=1)
        earlier = stored.updated_at - timedelta(seconds=1)
        cases = [
            # (incoming updated_at, incoming version, overwritten?)
            (earlier, stored.version + 10, False),  # higher version, older: kept
            (stored.updated_at, stored.version - 1, False),  # same time, lower version: kept
            (stored.updated_at, stored.version, False),  # identical: kept
            (later, 1, True),  # newer with a lower version: replaced
        ]
        for updated_at, version, replaced in cases:
            incoming = replace(
                stored, data={"v": "incoming"}, updated_at=updated_at, version=version
            )
            result = await st.put_records([SessionRecord(incoming)], strategy="update_newer")
            got = await st.get_session("un")
            if replaced:
                assert result == PutResult(overwritten=1), (updated_at, version)
                assert got == incoming
            else:
                assert result == PutResult(skipped=1), (updated_at, version)
                assert got == stored
        tie = await st.create_session(id="tie")
        newer = replace(tie, data={"v": "higher"}, version=tie.version + 1)
        assert await st.put_records([SessionRecord(newer)], strategy="update_newer") == PutResult(
            overwritten=1
        )
        assert await st.get_session("tie") == newer

    @store_test
    async def test_fail_on_conflict_writes_nothing_wherever_the_conflict(
        self, ctx: ConformanceContext
    ) -> None:
        st = ctx.store
        taken = await st.create_session(id="taken", data={"v": "stored"})
        snap = await snapshot(st)
        incoming = [SessionRecord(replace(taken, id=f"new{i}", data={"v": i})) for i in range(4)]
        clash = SessionRecord(replace(taken, data={"v": "incoming"}))
        for position in range(len(incoming) + 1):
            batch = [*incoming[:position], clash, *incoming[position:]]
            with pytest.raises(SessionExistsError):
                await st.put_records(batch, strategy="fail_on_conflict")
            assert await snapshot(st) == snap, position
        assert await st.put_records(incoming, strategy="fail_on_conflict") == PutResult(created=4)

    @store_test
    async def test_put_records_overwrite_reindexes(self, ctx: ConformanceContext) -> None:
        """An overwrite may change every indexed field, ``created_at`` included."""
        st = ctx.store
        old = await st.create_session(id="ri", processor_id="p1", tags={"a"}, ttl=50)
        other = await st.create_session(id="other")
        ctx.clock.advance(10)
        incoming = replace(
            old,
            processor_id="p2",
            status=Status.PAUSED,
            tags=frozenset({"b"}),
            created_at=old.created_at + timedelta(seconds=5),
            updated_at=old.updated_at + timedelta(seconds=6),
            expires_at=None,
            version=7,
        )
        assert await st.put_records([SessionRecord(incoming)], strategy="overwrite") == PutResult(
            overwritten=1
        )
        mid = old.created_at + timedelta(seconds=2)
        cases: list[tuple[SessionFilter, list[str]]] = [
            (SessionFilter(processor_id="p1"), []),
            (SessionFilter(processor_id="p2"), ["ri"]),
            (SessionFilter(status="active"), ["other"]),
            (SessionFilter(status="paused"), ["ri"]),
            (SessionFilter(tags_any={"a"}), []),
            (SessionFilter(tags_all={"b"}), ["ri"]),
            (SessionFilter(created_after=mid), ["ri"]),
            (SessionFilter(created_before=mid), ["other"]),
            (SessionFilter(updated_after=mid), ["ri"]),
            (SessionFilter(expires_before=ctx.clock.now() + timedelta(days=1)), []),
        ]
        for flt, want in cases:
            for sort_by in SORT_FIELDS:
                page = await st.list_sessions(flt, QueryOptions(sort_by=sort_by))
                assert page.ids == want, (flt, sort_by)
            assert await st.count_sessions(flt) == len(want), flt
        by_created = await st.list_sessions(None, QueryOptions(sort_by="created_at", order="desc"))
        assert by_created.ids == ["ri", other.id]
        assert await st.get_session("ri") == incoming

    @store_test
    async def test_put_records_created_sessions_are_indexed_by_their_times(
        self, ctx: ConformanceContext
    ) -> None:
        """Restored sessions keep their own created_at/updated_at/expires_at, in every index."""
        st = ctx.store
        base = await st.create_session(id="t0")
        t0 = base.created_at
        records = [
            SessionRecord(
                replace(
                    base,
                    id=f"t{i}",
                    created_at=t0 + timedelta(seconds=i),
                    updated_at=t0 + timedelta(seconds=10 - i),
                    expires_at=t0 + timedelta(hours=1, seconds=i),
                )
            )
            for i in (1, 2, 3)
        ]
        assert await st.put_records(records) == PutResult(created=3)
        by_updated = await st.list_sessions(None, QueryOptions(sort_by="updated_at"))
        assert by_updated.ids == ["t0", "t3", "t2", "t1"]
        by_created = await st.list_sessions(None, QueryOptions(sort_by="created_at"))
        assert by_created.ids == ["t0", "t1", "t2", "t3"]
        by_expiry = await st.list_sessions(None, QueryOptions(sort_by="expires_at"))
        assert by_expiry.ids == ["t1", "t2", "t3", "t0"]
        late = SessionFilter(updated_after=t0 + timedelta(seconds=7, milliseconds=500))
        page = await st.list_sessions(late, QueryOptions(sort_by="updated_at"))
        assert page.ids == ["t2", "t1"]
        assert await st.count_sessions(late) == 2
        ctx.clock.advance(20)
        for sid in ("t3", "t2"):  # a later write moves each index entry
            await st.update_session(sid, merge_data={"v": 1})
        page = await st.list_sessions(late, QueryOptions(sort_by="updated_at"))
        assert page.ids == ["t1", "t2", "t3"]
        assert await st.delete_session("t3") is True
        page = await st.list_sessions(None, QueryOptions(sort_by="updated_at"))
        assert page.ids == ["t0", "t1", "t2"]

    @store_test
    async def test_overwrite_takes_every_field_of_the_record(self, ctx: ConformanceContext) -> None:
        """``overwrite`` and a winning ``update_newer`` store the record's every field,
        ``created_at`` too (an upsert's ``DO UPDATE`` that leaves it out keeps the stored
        one), and the listings see the record's times."""
        st = ctx.store
        for strategy in ("overwrite", "update_newer"):
            stored = await st.create_session(id=f"w-{strategy}", data={"v": 1}, tags={"old"})
            day = timedelta(days=1)
            incoming = replace(
                stored,
                created_at=stored.created_at - day,
                updated_at=stored.updated_at + day,
                processor_id="restored",
                tags=frozenset({"new"}),
                metadata={"m": 2},
                data={"v": 2},
                version=stored.version + 3,
            )
            result = await st.put_records([SessionRecord(incoming)], strategy=strategy)
            assert result == PutResult(overwritten=1), strategy
            assert await st.get_session(stored.id) == incoming, strategy
            flt = SessionFilter(ids=[stored.id], created_before=stored.created_at)
            assert (await st.list_sessions(flt)).ids == [stored.id], strategy
            ctx.clock.advance(1)
