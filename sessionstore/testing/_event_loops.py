"""Event loops: one store used from several loops, in turn and at once, and closed from
another loop than the one that opened it (capability ``any_event_loop``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from sessionstore import SessionConflictError, SessionStore, StoreUnavailableError

from ._harness import ConformanceContext, requires, store_test

__all__ = ["EventLoopTests"]

T = TypeVar("T")


def _in_new_loop(body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` in a fresh event loop (``asyncio.run``) on this thread."""

    async def main() -> T:
        return await body()

    return asyncio.run(main())


async def _in_thread_with_own_loop(body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` on a new thread that runs its own event loop; await the result."""
    return await asyncio.to_thread(_in_new_loop, body)


class EventLoopTests:
    """A store works from whichever event loop calls it (``any_event_loop``)."""

    @store_test
    @requires("any_event_loop")
    async def test_one_store_from_two_loops_in_turn(self, ctx: ConformanceContext) -> None:
        store = ctx.store
        s = await store.create_session(data={"n": 0})

        async def bump() -> int:
            current = await store.get_session(s.id)
            assert current is not None
            done = await store.update_session(
                s.id, merge_data={"n": current.data["n"] + 1}, expected_version=current.version
            )
            await store.append_events(s.id, [{"type": "from-another-loop"}])
            assert [e.type for e in await store.get_events(s.id, last=1)] == ["from-another-loop"]
            return done.version

        # loop B on another thread, then loop C (a new one), then the test's own loop again
        first = await _in_thread_with_own_loop(bump)
        second = await _in_thread_with_own_loop(bump)
        third = await bump()
        assert (first, second, third) == (2, 4, 6)  # each bump: update, then append
        final = await store.get_session(s.id)
        assert final is not None
        assert final.data == {"n": 3}
        assert final.event_count == 3

    @store_test
    @requires("any_event_loop")
    async def test_one_store_from_several_loops_at_once(self, ctx: ConformanceContext) -> None:
        store = ctx.store
        s = await store.create_session(data={"n": 0})
        per_loop = 10

        async def increments() -> None:
            for _ in range(per_loop):
                while True:
                    current = await store.get_session(s.id)
                    assert current is not None
                    try:
                        await store.update_session(
                            s.id,
                            merge_data={"n": current.data["n"] + 1},
                            expected_version=current.version,
                        )
                        break
                    except SessionConflictError:
                        continue

        await asyncio.gather(
            increments(), _in_thread_with_own_loop(increments), _in_thread_with_own_loop(increments)
        )
        final = await store.get_session(s.id)
        assert final is not None
        assert final.data == {"n": 3 * per_loop}

    @store_test
    @requires("any_event_loop")
    async def test_closed_from_another_loop(self, ctx: ConformanceContext) -> None:
        store: SessionStore = await ctx.open_store()
        s = await store.create_session(data={"k": 1})
        assert await store.get_session(s.id) is not None  # in use on this loop

        closed = threading.Event()

        async def close() -> None:
            await store.shutdown()
            closed.set()

        await _in_thread_with_own_loop(close)
        assert closed.is_set()
        with pytest.raises(StoreUnavailableError):
            await store.get_session(s.id)
        await store.shutdown()  # idempotent, from the first loop too
        if store.capabilities.shared_namespace:  # the data outlives the store object
            again = await ctx.open_store()
            assert await again.get_session(s.id) is not None
