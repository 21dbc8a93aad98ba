"""The memory driver's listing plans: every plan returns the reference page, the composite
indexes stay right through every kind of write, and the planner picks them where they
apply."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sessionstore_memory import MemoryStore
from sessionstore_memory._store import ListingPlan

from sessionstore import ManualClock, QueryOptions, SessionFilter
from sessionstore.query import evaluate

pytestmark = pytest.mark.asyncio

PROCESSORS = ["p0", "p1", "p2", None]
STATUSES = ["active", "paused", "completed"]
TAGS = ["a", "b", "c", "d"]

FILTERS = [
    SessionFilter(processor_id="p1"),
    SessionFilter(status="paused"),
    SessionFilter(tags_all={"a"}),
    SessionFilter(tags_any={"b"}),
    SessionFilter(processor_id="p0", status="active"),
    SessionFilter(processor_id="p2", tags_all={"c"}),
    SessionFilter(processor_id="p1", status="completed", tags_any={"a", "d"}),
    SessionFilter(tags_all={"a", "b"}),
    SessionFilter(processor_id=["p0", "p1"], status="active"),
    SessionFilter(processor_id="p-none"),
    SessionFilter(status="active", include_expired=True),
]


def _options(rng: random.Random) -> QueryOptions:
    return QueryOptions(
        sort_by=rng.choice(["created_at", "updated_at"]),
        order=rng.choice(["asc", "desc"]),
        limit=rng.choice([1, 3, 10, 50]),
        offset=rng.choice([0, 0, 2]),
    )


async def _check_every_plan(store: MemoryStore, rng: random.Random) -> int:
    """Every filter, with every plan that applies to it, gives the reference pages."""
    every = [s async for s in _all(store)]
    checked = 0
    for flt in FILTERS:
        opts = _options(rng)
        want = evaluate(every, flt, opts, store.clock.now())
        plans = [store._plan(flt, opts)]
        source = store._space.index.composite_source(flt, opts.sort_by, store._heads)
        candidates = store._space.index.candidates(flt, store._space.docs)
        plans.append(ListingPlan("walk", candidates, None))
        if candidates is not None:
            plans.append(ListingPlan("sort", candidates, None))
        if source is not None:
            plans.append(ListingPlan("walk", candidates, source[0]))
            if source[1]:
                plans.append(ListingPlan("composite", None, source[0]))
        for plan in plans:
            got = store._listing(flt, opts, plan)
            assert [s.id for s in got.items] == [s.id for s in want.items], (flt, opts, plan.kind)
            assert (got.next_cursor is None) == (want.next_cursor is None)
            if got.next_cursor is not None:  # the next page through the cursor agrees too
                nxt = QueryOptions(
                    sort_by=opts.sort_by,
                    order=opts.order,
                    limit=opts.limit,
                    cursor=got.next_cursor,
                )
                ref = evaluate(every, flt, nxt, store.clock.now())
                page2 = store._listing(flt, nxt, plan)
                assert [s.id for s in page2.items] == [s.id for s in ref.items]
            checked += 1
    return checked


async def _all(store: MemoryStore):  # type: ignore[no-untyped-def]
    async for record in store.scan(include_expired=True):
        yield record.session


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_plan_agrees_with_the_reference_through_every_kind_of_write(
    seed: int,
) -> None:
    rng = random.Random(seed)
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    await store.initialize()
    ids: list[str] = []
    checked = 0
    for round_ in range(8):
        for _ in range(25):
            rng.shuffle(ids)
            clock.advance(timedelta(milliseconds=rng.choice([0, 1, 7])))
            kind = rng.random()
            if ids and kind >= 0.35 and await store.get_session(ids[-1]) is None:
                ids.pop()  # expired: writes refuse it (it stays listed with include_expired)
                continue
            if kind < 0.35 or not ids:
                s = await store.create_session(
                    processor_id=rng.choice(PROCESSORS),
                    status=rng.choice(STATUSES),
                    tags=rng.sample(TAGS, rng.randint(0, 3)),
                    ttl=rng.choice([None, None, 30]),
                )
                ids.append(s.id)
            elif kind < 0.55:
                await store.update_session(
                    ids[-1], status=rng.choice(STATUSES), add_tags=[rng.choice(TAGS)]
                )
            elif kind < 0.65:
                await store.update_session(
                    ids[-1],
                    processor_id=rng.choice(PROCESSORS),
                    remove_tags=[rng.choice(TAGS)],
                )
            elif kind < 0.75:
                await store.append_events(ids[-1], [{"type": "e"}])
            elif kind < 0.85:
                await store.touch(ids[-1])
            else:
                sid = ids.pop(rng.randrange(len(ids)))
                await store.delete_session(sid)
        if round_ == 5:
            clock.advance(timedelta(seconds=31))  # some sessions expire
        checked += await _check_every_plan(store, rng)
    assert checked > 8 * len(FILTERS)
    # every composite the queries asked for was built, and each holds every session once
    assert store._space.index.composites
    for (field, _sort), composite in store._space.index.composites.items():
        held = sum(len(o) for o in composite.by_value.values())
        heads = [s async for s in _all(store)]
        expected = sum(len(composite.values(h)) for h in heads)
        assert held == expected, field


async def test_the_planner_reads_a_covering_composite_list() -> None:
    """The 100 newest of one processor's sessions: a composite walk, not a sort of all of
    that processor's sessions, whatever its share of the store."""
    store = MemoryStore(clock=ManualClock())
    await store.initialize()
    for i in range(300):
        await store.create_session(processor_id=f"p{i % 3}", status="active", tags=["t"])
    opts = QueryOptions(sort_by="updated_at", order="desc", limit=100)
    assert store._plan(SessionFilter(processor_id="p1"), opts).kind == "composite"
    assert store._plan(SessionFilter(processor_id="p1", status="active"), opts).kind == (
        "composite"
    )
    assert store._plan(SessionFilter(tags_any={"t"}), opts).kind == "composite"
    # id order has no composite; a filter on two tags is not covered by one list
    assert store._plan(SessionFilter(processor_id="p1"), QueryOptions(sort_by="id")).kind != (
        "composite"
    )
    assert store._plan(SessionFilter(tags_all={"t", "u"}), opts).kind != "composite"
