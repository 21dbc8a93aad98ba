"""Concurrency: many tasks and several store objects on one namespace lose nothing, and a
write that another writer beats between its read and its write is decided again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from sessionstore import (
    BaseSessionStore,
    PutResult,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionRecord,
    SessionStore,
    StoreUnavailableError,
)
from sessionstore.driver import CAS_ATTEMPTS

from ._harness import ConformanceContext, requires, store_test

__all__ = ["ConcurrencyTests", "WriteRace"]

#: every read
ALWAYS: Container[int] = range(1, 1 << 30)


class WriteRace:
    """Another writer that wins between a store's read and its write, deterministically.

    A store built on :class:`~sessionstore.BaseSessionStore` reads with its ``_load``
    primitive, plans, and writes with a compare-and-set (``_apply``); so do the base's
    ``put_records`` and the event facts it reads before planning. The race wraps this
    store object's ``_load``: ``rival()`` (another write, through the public API) runs
    right after the reads numbered in ``after`` return (their answer is then stale) and
    right before those in ``before`` (1 is the first read). ``fired`` counts its writes.
    A driver that reads and writes in one step (one lock, one transaction, one script)
    never calls ``_load`` there: nothing fires, and the test skips (no writer can come in
    between).
    """

    def __init__(
        self,
        store: SessionStore,
        rival: Callable[[], Awaitable[object]],
        *,
        after: Container[int] = (),
        before: Container[int] = (),
    ) -> None:
        if not isinstance(store, BaseSessionStore):
            pytest.skip("the write-race tests need a store built on BaseSessionStore")
        self.store = store
        self.rival = rival
        self.after = after
        self.before = before
        self.reads = 0
        self.fired = 0
        self._busy = False
        self._load = store._load

    async def _race(self) -> None:
        self._busy = True  # the rival's own reads go straight through
        try:
            await self.rival()
        finally:
            self._busy = False
        self.fired += 1

    async def _wrapped(self, session_ids: Sequence[str]) -> dict[str, Session]:
        if self._busy:
            return await self._load(session_ids)
        self.reads += 1
        n = self.reads
        if n in self.before:
            await self._race()
        loaded = await self._load(session_ids)
        if n in self.after:
            await self._race()
        return loaded

    def __enter__(self) -> WriteRace:
        self.store._load = self._wrapped  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store._load

    async def outcome(self, call: Awaitable[object]) -> Exception | None:
        """Await ``call`` with the race in place: the error it raised, or ``None`` (a
        caller checks ``require_fired()`` before asserting the error)."""
        with self:
            try:
                await call
            except Exception as error:  # handed back to the test
                return error
        return None

    def require_fired(self) -> None:
        if not self.fired:
            pytest.skip(
                f"{type(self.store).__name__} does not read through _load on this path (it "
                "reads and writes in one step): no other writer can come in between"
            )


async def _cas_increment(store: SessionStore, sid: str, times: int, conflicts: list[int]) -> None:
    for _ in range(times):
        while True:
            current = await store.get_session(sid)
            assert current is not None
            try:
                await store.update_session(
                    sid, merge_data={"n": current.data["n"] + 1}, expected_version=current.version
                )
                break
            except SessionConflictError as exc:
                assert exc.actual > current.version
                conflicts.append(1)
            await asyncio.sleep(0)


class ConcurrencyTests:
    """No lost updates, conflicts surfaced."""

    @store_test
    async def test_concurrent_cas_increments_are_exact(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session(data={"n": 0})
        conflicts: list[int] = []
        await asyncio.gather(*(_cas_increment(ctx.store, s.id, 15, conflicts) for _ in range(8)))
        final = await ctx.store.get_session(s.id)
        assert final is not None
        assert final.data["n"] == 120
        assert final.version == 121

    @store_test
    @requires("shared_namespace")
    async def test_several_store_objects_lose_nothing(self, ctx: ConformanceContext) -> None:
        stores = [ctx.store] + [await ctx.open_store() for _ in range(3)]
        s = await ctx.store.create_session(data={"n": 0})
        conflicts: list[int] = []
        await asyncio.gather(*(_cas_increment(st, s.id, 10, conflicts) for st in stores))
        for st in stores:
            final = await st.get_session(s.id)
            assert final is not None
            assert final.data["n"] == 40

    @store_test
    async def test_unversioned_merges_never_lose_updates(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()

        async def write(i: int) -> None:
            await ctx.store.update_session(s.id, merge_data={f"k{i}": i})

        await asyncio.gather(*(write(i) for i in range(40)))
        final = await ctx.store.get_session(s.id)
        assert final is not None
        assert final.data == {f"k{i}": i for i in range(40)}
        assert final.version == 41

    @store_test
    async def test_concurrent_appends_are_gap_free(self, ctx: ConformanceContext) -> None:
        s = await ctx.store.create_session()

        async def append(i: int) -> None:
            await ctx.store.append_events(
                s.id, [{"type": f"w{i}", "data": {"k": j}} for j in range(3)]
            )

        await asyncio.gather(*(append(i) for i in range(20)))
        events = await ctx.store.get_events(s.id)
        assert [e.seq for e in events] == list(range(1, 61))
        for start in range(0, 60, 3):  # each call's events stay together and in order
            chunk = events[start : start + 3]
            assert len({e.type for e in chunk}) == 1
            assert [e.data["k"] for e in chunk] == [0, 1, 2]
        final = await ctx.store.get_session(s.id)
        assert final is not None
        assert final.version == 21
        assert final.event_count == 60

    @store_test
    async def test_concurrent_creates_with_one_id(self, ctx: ConformanceContext) -> None:
        async def create(i: int) -> bool:
            try:
                await ctx.store.create_session(id="race", data={"winner": i})
                return True
            except SessionExistsError:
                return False

        wins = await asyncio.gather(*(create(i) for i in range(10)))
        assert sum(wins) == 1
        got = await ctx.store.get_session("race")
        assert got is not None
        assert got.data == {"winner": wins.index(True)}

    @store_test
    async def test_a_write_that_loses_a_race_is_planned_again(
        self, ctx: ConformanceContext
    ) -> None:
        """Another writer changes the session after the store read it: the write's
        compare-and-set fails, the store reads again and plans on the new state (an
        update keeps both changes, an append goes after the rival's events)."""
        st = ctx.store
        s = await st.create_session(data={"n": 0})
        rivals = iter(range(1, 1000))

        async def rival_update() -> None:
            await st.update_session(s.id, merge_data={f"rival{next(rivals)}": True})

        with WriteRace(st, rival_update, after={1}) as race:
            got = await st.update_session(s.id, merge_data={"mine": True})
        race.require_fired()
        assert got.version == 3
        assert got.data == {"n": 0, "rival1": True, "mine": True}
        assert await st.get_session(s.id) == got

        async def rival_create() -> None:
            await st.create_session(id="taken", data={"v": "rival"})

        race = WriteRace(st, rival_create, after={1})
        error = await race.outcome(st.create_session(id="taken", data={"v": "mine"}))
        if race.fired:  # the store read "taken" absent, the rival created it before the write
            assert isinstance(error, SessionExistsError), error
            taken = await st.get_session("taken")
            assert taken is not None
            assert (taken.data, taken.version) == ({"v": "rival"}, 1)

        async def rival_append() -> None:
            await st.append_events(s.id, [{"type": "rival"}])

        with WriteRace(st, rival_append, after={1}) as race:
            got = await st.append_events(s.id, [{"type": "mine"}])
        if race.fired:
            assert [(e.seq, e.type) for e in await st.get_events(s.id)] == [
                (1, "rival"),
                (2, "mine"),
            ]
            assert (got.version, got.last_seq, got.event_count) == (5, 2, 2)

    @store_test
    @requires("event_log")
    async def test_event_facts_read_at_another_state_are_read_again(
        self, ctx: ConformanceContext
    ) -> None:
        """A pop reads the newest events (tagged with the session's state) before it loads
        the session to plan; a rival append in between makes those facts stale: the pop
        must read them again and pop the rival's event, the newest."""
        st = ctx.store
        s = await st.create_session()
        await st.append_events(s.id, [{"type": "old"}])

        async def rival() -> None:
            await st.append_events(s.id, [{"type": "rival"}])

        with WriteRace(st, rival, before={2}) as race:
            popped = await st.pop_events(s.id, 1)
        race.require_fired()
        assert [(e.seq, e.type) for e in popped.events] == [(2, "rival")]
        assert [(e.seq, e.type) for e in await st.get_events(s.id)] == [(1, "old")]

    @store_test
    async def test_a_write_that_always_loses_gives_up(self, ctx: ConformanceContext) -> None:
        """A rival that wins after every read: the write is tried ``CAS_ATTEMPTS`` times,
        then raises the last :class:`SessionConflictError`; every rival write stays."""
        st = ctx.store
        s = await st.create_session(data={"rivals": 0})

        async def rival() -> None:
            cur = await st.get_session(s.id)
            assert cur is not None
            await st.update_session(s.id, data={"rivals": cur.data["rivals"] + 1})

        race = WriteRace(st, rival, after=ALWAYS)
        lost = await race.outcome(st.update_session(s.id, merge_data={"mine": True}))
        race.require_fired()
        assert isinstance(lost, SessionConflictError), lost
        assert lost.session_id == s.id
        assert 1 <= lost.expected < lost.actual
        assert race.fired == CAS_ATTEMPTS
        final = await st.get_session(s.id)
        assert final is not None
        assert final.data == {"rivals": CAS_ATTEMPTS}
        assert final.version == 1 + CAS_ATTEMPTS

    @store_test
    @requires("event_log")
    async def test_a_pop_whose_events_keep_changing_gives_up(self, ctx: ConformanceContext) -> None:
        """A rival append before every read: the facts a pop read never match the state it
        plans on; after ``CAS_ATTEMPTS`` plans it raises :class:`StoreUnavailableError`
        ("try again") and pops nothing."""
        st = ctx.store
        s = await st.create_session()
        await st.append_events(s.id, [{"type": "old"}])

        async def rival() -> None:
            await st.append_events(s.id, [{"type": "rival"}])

        race = WriteRace(st, rival, before=ALWAYS)
        error = await race.outcome(st.pop_events(s.id, 1))
        race.require_fired()
        assert isinstance(error, StoreUnavailableError), error
        events = await st.get_events(s.id)
        assert len(events) == 1 + race.fired  # nothing popped
        assert [e.seq for e in events] == list(range(1, len(events) + 1))

    @store_test
    async def test_put_records_that_loses_a_race_decides_again(
        self, ctx: ConformanceContext
    ) -> None:
        """``put_records`` read the session absent; a rival creates it before the write:
        the record is decided again against the rival's session, by its strategy."""
        st = ctx.store
        model = await st.create_session(id="model", data={"v": "record"})
        record_at = model.updated_at + timedelta(seconds=5)
        outcomes = {  # strategy -> (result, whose session is stored)
            "skip_existing": (PutResult(skipped=1), "rival"),
            "overwrite": (PutResult(overwritten=1), "record"),
            "update_newer": (PutResult(overwritten=1), "record"),  # the record is newer
            "fail_on_conflict": (PutResult(conflicts=1), "rival"),
        }
        fired = False
        for strategy, (want, winner) in outcomes.items():
            sid = f"race-{strategy.replace('_', '-')}"
            record = SessionRecord(replace(model, id=sid, updated_at=record_at))

            async def rival(sid: str = sid) -> None:
                await st.create_session(id=sid, data={"v": "rival"})

            with WriteRace(st, rival, after={1}) as race:
                result = await st.put_records([record], strategy=strategy)  # type: ignore[arg-type]
            fired = fired or bool(race.fired)
            if not race.fired:
                continue
            assert result == want, strategy
            got = await st.get_session(sid)
            assert got is not None
            assert got.data == {"v": winner}, strategy
            if winner == "record":
                assert got == record.session
        if not fired:
            pytest.skip("put_records does not read through _load on this driver")

    @store_test
    async def test_put_records_that_always_loses_gives_up(self, ctx: ConformanceContext) -> None:
        """A rival update after every read: ``put_records`` tries ``CAS_ATTEMPTS`` times,
        then raises :class:`SessionConflictError`; the record is not written."""
        st = ctx.store
        s = await st.create_session(id="lost", data={"v": 0})
        record = SessionRecord(replace(s, data={"v": "record"}))

        async def rival() -> None:
            await st.update_session(s.id, data={"v": "rival"})

        race = WriteRace(st, rival, after=ALWAYS)
        lost = await race.outcome(st.put_records([record], strategy="overwrite"))
        race.require_fired()
        assert isinstance(lost, SessionConflictError), lost
        assert lost.session_id == s.id
        assert 1 <= lost.expected < lost.actual  # what the last try met
        got = await st.get_session(s.id)
        assert got is not None
        assert got.data == {"v": "rival"}
        assert got.version == 1 + race.fired
