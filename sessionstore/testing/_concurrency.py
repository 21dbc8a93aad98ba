"""Concurrency: many tasks and several store objects on one namespace lose nothing."""

from __future__ import annotations

import asyncio

from sessionstore import SessionConflictError, SessionStore

from ._harness import ConformanceContext, requires, store_test

__all__ = ["ConcurrencyTests"]


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
        from sessionstore import SessionExistsError

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
