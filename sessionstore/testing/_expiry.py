"""Expiry by the injected clock: exact boundary, touch, include_expired, cleanup."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import sessionstore
from sessionstore import (
    PutResult,
    QueryOptions,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    Status,
)

from ._harness import ConformanceContext, store_test

__all__ = ["ExpiryTests"]


class _SteppedClock:
    """A clock the test sets to any instant, backwards too (as a wall clock may step)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class _StepBackOnce:
    """An observer: on the first ``hook`` for one of ``ids``, step ``clock`` to ``to``."""

    def __init__(self, hook: str, ids: set[str], clock: _SteppedClock, to: datetime) -> None:
        self.hook, self.ids, self.clock, self.to = hook, ids, clock, to
        self.first: list[str] = []

    def _saw(self, hook: str, session_id: str) -> None:
        if hook == self.hook and session_id in self.ids and not self.first:
            self.first.append(session_id)
            self.clock.at = self.to

    @sessionstore.hookimpl
    def sessionstore_session_expired(self, store: Any, session_id: str) -> None:
        self._saw("expired", session_id)

    @sessionstore.hookimpl
    def sessionstore_session_deleted(self, store: Any, session_id: str) -> None:
        self._saw("deleted", session_id)


class ExpiryTests:
    """A session whose ``expires_at <= clock.now()`` is invisible unless asked for."""

    @store_test
    async def test_expiry_exact_boundary(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=10)
        assert s.expires_at == ctx.clock.now() + timedelta(seconds=10)
        ctx.clock.advance(timedelta(seconds=10) - timedelta(milliseconds=1))
        assert await ctx.store.get_session(s.id) is not None
        assert await ctx.store.count_sessions() == 1
        ctx.clock.advance(timedelta(milliseconds=1))  # now == expires_at: expired
        assert await ctx.store.get_session(s.id) is None
        assert await ctx.store.get_sessions([s.id]) == {}
        assert await ctx.store.count_sessions() == 0
        assert (await ctx.store.list_sessions()).items == []

    @store_test
    async def test_include_expired(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=1)
        live = await ctx.store.create_session()
        ctx.clock.advance(2)
        got = await ctx.store.get_session(s.id, include_expired=True)
        assert got == s
        page = await ctx.store.list_sessions(SessionFilter(include_expired=True))
        assert sorted(page.ids) == sorted([s.id, live.id])
        assert await ctx.store.count_sessions(SessionFilter(include_expired=True)) == 2
        assert (await ctx.store.get_sessions([s.id], include_expired=True)) == {s.id: s}

    @store_test
    async def test_writes_to_expired_session_raise_not_found(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=1)
        ctx.clock.advance(1)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.update_session(s.id, merge_data={"a": 1})
        with pytest.raises(SessionNotFoundError):  # gone, whatever version is expected
            await ctx.store.update_session(s.id, merge_data={"a": 1}, expected_version=9)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.append_events(s.id, [{"type": "x"}])
        with pytest.raises(SessionNotFoundError):
            await ctx.store.touch(s.id, ttl=100)
        with pytest.raises(SessionNotFoundError):
            await ctx.store.get_events(s.id)
        assert (await ctx.store.get_session(s.id, include_expired=True)) == s

    @store_test
    async def test_touch_slides_expiry(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=10)
        ctx.clock.advance(8)
        s = await ctx.store.touch(s.id, ttl=10)
        assert s.expires_at == ctx.clock.now() + timedelta(seconds=10)
        assert s.updated_at == ctx.clock.now()
        ctx.clock.advance(8)
        assert await ctx.store.get_session(s.id) is not None
        ctx.clock.advance(2)
        assert await ctx.store.get_session(s.id) is None

    @store_test
    async def test_touch_without_ttl_keeps_expiry(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=10)
        ctx.clock.advance(3)
        t = await ctx.store.touch(s.id)
        assert t.expires_at == s.expires_at
        assert t.updated_at == ctx.clock.now()

    @store_test
    async def test_writes_never_change_expiry_implicitly(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=10)
        ctx.clock.advance(5)
        s2 = await ctx.store.update_session(s.id, merge_data={"a": 1}, status="paused")
        s3 = await ctx.store.append_events(s.id, [{"type": "e"}])
        assert s2.expires_at == s.expires_at
        assert s3.expires_at == s.expires_at
        ctx.clock.advance(5)
        assert await ctx.store.get_session(s.id) is None

    @store_test
    async def test_set_and_clear_expiry(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()
        when = ctx.clock.now() + timedelta(seconds=30)
        s = await ctx.store.update_session(s.id, expires_at=when)
        assert s.expires_at == when
        s = await ctx.store.update_session(s.id, expires_at=None)
        assert s.expires_at is None
        ctx.clock.advance(60)
        assert await ctx.store.get_session(s.id) == s

    @store_test
    async def test_expire_sessions_marks_expired(self, ctx: ConformanceContext) -> None:
        a = await ctx.store.create_session(ttl=1)
        b = await ctx.store.create_session(ttl=100)
        ctx.clock.advance(1)
        assert await ctx.store.expire_sessions() == [a.id]
        got = await ctx.store.get_session(a.id, include_expired=True)
        assert got is not None
        assert got.status is Status.EXPIRED
        assert got.version == a.version + 1
        assert await ctx.store.expire_sessions() == []  # already marked
        assert await ctx.store.get_session(b.id) == b

    @store_test
    async def test_cleanup_removes_everything(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        a = await st.create_session(ttl=1, tags={"t"}, processor_id="p", metadata={"k": 1})
        await st.append_events(a.id, [{"type": "e"}])
        await st.save_checkpoint(a.id)
        b = await st.create_session(ttl=100, tags={"t"}, processor_id="p")
        ctx.clock.advance(1)
        assert await st.cleanup_expired_sessions() == 1
        every = SessionFilter(include_expired=True)
        assert await st.get_session(a.id, include_expired=True) is None
        assert await st.count_sessions(every) == 1
        assert (
            await st.list_sessions(SessionFilter(include_expired=True, tags_all={"t"}))
        ).ids == [b.id]
        assert await st.count_sessions(SessionFilter(include_expired=True, processor_id="p")) == 1
        assert await st.cleanup_expired_sessions() == 0
        # the id is free again, with no leftovers
        c = await st.create_session(id=a.id)
        assert c.event_count == 0
        assert await st.get_events(a.id) == []
        assert await st.list_checkpoints(a.id) == []

    @store_test
    async def test_sweeps_check_each_session_again_at_its_write(
        self, ctx: ConformanceContext
    ) -> None:
        """``expire_sessions`` and ``cleanup_expired_sessions`` list the due sessions, then
        write each in a write of its own that checks again that it is due: one that is no
        longer due by then is left alone and not counted. Here the clock steps back (as a
        wall clock may) when the first of two due sessions is written."""
        t0 = ctx.clock.now()
        clock = _SteppedClock(t0)
        ctx.clock = clock  # type: ignore[assignment]  # the stores opened from here on
        st = await ctx.open_store()
        a = await st.create_session(ttl=10)
        b = await st.create_session(ttl=10)
        pm = sessionstore.plugin_manager()
        for hook, sweep in (
            ("expired", st.expire_sessions),
            ("deleted", st.cleanup_expired_sessions),
        ):
            before = {s.id: await st.get_session(s.id, include_expired=True) for s in (a, b)}
            clock.at = t0 + timedelta(seconds=20)  # both due
            observer = _StepBackOnce(hook, {a.id, b.id}, clock, t0)  # then neither
            pm.register(observer)
            try:
                done = await sweep()
            finally:
                pm.unregister(observer)
            assert len(observer.first) == 1, hook
            (first,) = observer.first
            (other,) = {a.id, b.id} - {first}
            assert done == ([first] if hook == "expired" else 1)
            # the other one was due when listed, not when written: untouched
            assert await st.get_session(other, include_expired=True) == before[other]
        assert await st.get_session(other) is not None  # live again at t0

    @store_test
    async def test_create_over_expired_id_replaces_it(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(id="reuse", ttl=1, data={"old": True})
        await ctx.store.append_events(s.id, [{"type": "old"}])
        await ctx.store.save_checkpoint(s.id, label="old")
        ctx.clock.advance(1)
        fresh = await ctx.store.create_session(id="reuse", data={"new": True})
        assert fresh.version == 1
        assert fresh.data == {"new": True}
        assert fresh.expires_at is None
        assert await ctx.store.get_events("reuse") == []
        assert await ctx.store.list_checkpoints("reuse") == []  # nothing of the old one
        assert await ctx.store.get_session("reuse") == fresh
        s = await ctx.store.append_events("reuse", [{"type": "new"}])
        assert s.last_seq == 1

    @store_test
    async def test_update_ttl_sets_new_expiry(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(ttl=10)
        ctx.clock.advance(4)
        s = await ctx.store.update_session(s.id, ttl=30)
        assert s.expires_at == ctx.clock.now() + timedelta(seconds=30)
        assert await ctx.store.get_session(s.id) == s
        s = await ctx.store.update_session(s.id, ttl=timedelta(seconds=5), merge_data={"a": 1})
        assert s.expires_at == ctx.clock.now() + timedelta(seconds=5)
        ctx.clock.advance(timedelta(seconds=5) - timedelta(milliseconds=1))
        assert await ctx.store.get_session(s.id) == s
        assert (await ctx.store.list_sessions(SessionFilter(ids=[s.id]))).ids == [s.id]
        ctx.clock.advance(timedelta(milliseconds=1))
        assert await ctx.store.get_session(s.id) is None
        assert await ctx.store.count_sessions() == 0
        assert await ctx.store.expire_sessions() == [s.id]
        never = await ctx.store.create_session()
        never = await ctx.store.update_session(never.id, ttl=1)
        assert never.expires_at == ctx.clock.now() + timedelta(seconds=1)

    @store_test
    async def test_delete_expired_session(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(id="gone", ttl=1, tags={"t"}, processor_id="p")
        await st.append_events(s.id, [{"type": "e"}])
        await st.save_checkpoint(s.id)
        keep = await st.create_session(ttl=100, tags={"t"}, processor_id="p")
        ctx.clock.advance(1)
        assert await st.delete_session(s.id) is False  # it was not visible...
        assert await st.get_session(s.id, include_expired=True) is None  # ...but is removed
        every = SessionFilter(include_expired=True)
        assert (await st.list_sessions(every)).ids == [keep.id]
        assert await st.count_sessions(SessionFilter(include_expired=True, tags_all={"t"})) == 1
        assert [r.session.id async for r in st.scan(include_expired=True)] == [keep.id]
        assert await st.cleanup_expired_sessions() == 0
        fresh = await st.create_session(id="gone")
        assert (fresh.version, fresh.event_count, fresh.last_seq) == (1, 0, 0)
        assert await st.get_events("gone") == []
        assert await st.list_checkpoints("gone") == []
        other = await st.create_session(ttl=1)
        ctx.clock.advance(1)
        assert await st.delete_session(other.id, expected_version=other.version + 3) is False
        assert await st.get_session(other.id, include_expired=True) is None

    @store_test
    async def test_checkpoints_of_expired_session(self, ctx: ConformanceContext) -> None:
        st = ctx.store
        s = await st.create_session(ttl=5, data={"v": 1})
        cp = await st.save_checkpoint(s.id, label="before")
        ctx.clock.advance(5)
        with pytest.raises(SessionNotFoundError):
            await st.save_checkpoint(s.id)
        with pytest.raises(SessionNotFoundError):
            await st.list_checkpoints(s.id)
        with pytest.raises(SessionNotFoundError):
            await st.get_checkpoint(s.id, cp.id)
        with pytest.raises(SessionNotFoundError):
            await st.restore_checkpoint(s.id, cp.id)
        try:
            deleted = await st.delete_checkpoint(s.id, cp.id)
        except SessionNotFoundError:
            deleted = False
        assert deleted is False
        (record,) = [r async for r in st.scan(include_expired=True)]
        assert record.session == s  # nothing of the above wrote to it
        assert list(record.checkpoints) == [cp]

    @store_test
    async def test_put_records_over_expired_session(self, ctx: ConformanceContext) -> None:
        """An expired stored session counts as absent: every strategy replaces it."""
        st = ctx.store
        for strategy in ("skip_existing", "update_newer", "fail_on_conflict", "overwrite"):
            await st.delete_session("exp")
            base = await st.create_session(id="exp", ttl=1, data={"v": "old"})
            # older than what will be stored (update_newer would skip it over a live one)
            incoming = replace(base, data={"v": "backup"}, expires_at=None)
            ctx.clock.advance(0.5)
            await st.append_events(base.id, [{"type": "old"}] * 2)
            await st.save_checkpoint(base.id)
            ctx.clock.advance(0.5)
            result = await st.put_records([SessionRecord(incoming)], strategy=strategy)
            assert result == PutResult(created=1), strategy
            assert await st.get_session("exp") == incoming, strategy
            assert await st.get_events("exp") == [], strategy
            assert await st.list_checkpoints("exp") == [], strategy

    @store_test
    async def test_expiry_keeps_fractions_and_zones(self, ctx: ConformanceContext) -> None:
        """A fractional ttl keeps its milliseconds on every write that takes one (not
        whole seconds, as Redis ``EXPIRE`` takes), and an ``expires_at`` with another UTC
        offset is the same instant when it comes through an update."""
        st = ctx.store
        s = await st.create_session(ttl=1.5)
        assert s.expires_at == ctx.clock.now() + timedelta(milliseconds=1500)
        t = await st.create_session(ttl=timedelta(milliseconds=2500))
        assert t.expires_at == ctx.clock.now() + timedelta(milliseconds=2500)
        ctx.clock.advance(1)
        s = await st.update_session(s.id, ttl=2.25)
        assert s.expires_at == ctx.clock.now() + timedelta(milliseconds=2250)
        s = await st.touch(s.id, ttl=timedelta(seconds=3, milliseconds=750))
        assert s.expires_at == ctx.clock.now() + timedelta(milliseconds=3750)
        when = (ctx.clock.now() + timedelta(hours=2)).astimezone(timezone(-timedelta(hours=3)))
        t = await st.update_session(t.id, expires_at=when)
        assert t.expires_at == when
        assert await st.get_session(t.id) == t
        ctx.clock.advance(timedelta(milliseconds=3749))
        assert await st.get_session(s.id) == s
        ctx.clock.advance(timedelta(milliseconds=1))
        assert await st.get_session(s.id) is None
        assert (await st.list_sessions()).ids == [t.id]

    @store_test
    async def test_status_expired_is_a_status_not_an_expiry(self, ctx: ConformanceContext) -> None:
        """``status="expired"`` selects by status alone: sessions past their expiry stay
        hidden without ``include_expired``, and the cleanup removes sessions by expiry,
        never a live one whose status a caller set to ``expired``."""
        st = ctx.store
        await st.create_session(id="due", ttl=1)
        await st.create_session(id="marked", status="expired")  # no expiry: live
        ctx.clock.advance(1)
        assert await st.expire_sessions() == ["due"]
        flt = SessionFilter(status="expired")
        assert (await st.list_sessions(flt)).ids == ["marked"]
        assert await st.count_sessions(flt) == 1
        both = SessionFilter(status="expired", include_expired=True)
        page = await st.list_sessions(both, QueryOptions(sort_by="id"))
        assert page.ids == ["due", "marked"]
        assert await st.cleanup_expired_sessions() == 1
        assert await st.get_session("due", include_expired=True) is None
        got = await st.get_session("marked")
        assert got is not None and got.status == Status.EXPIRED
