"""The event log on SQLite (#17): one hop and one transaction per operation, pages read
through the indexes, concurrent writers in several stores on one file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sessionstore_sqlite import SqliteStore
from sessionstore_sqlite._engine import _page_sql, find_sql
from sessionstore_sqlite._events import EventWindow, events_sql

from sessionstore import (
    AppendOp,
    EventInput,
    EventKeyConflictError,
    ManualClock,
    Op,
    PopOp,
    SessionConflictError,
    SessionNotFoundError,
    SessionRecord,
    TruncateOp,
)
from tests.eventlog_differential import KEY_CONFLICTS

from .conftest import count_hops

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_event_log_operation_is_one_thread_hop(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(path=str(tmp_path / "hops.db")) as store:
            s = await store.create_session(id="s")
            await store.append_events(
                s.id, [EventInput("t", {"i": i}, key=f"k{i}") for i in range(10)]
            )
            hops = count_hops(store)
            batch: list[Op] = [
                TruncateOp("s", 8),
                AppendOp("s", [EventInput("t", {"i": 99}, key="k99")]),
                PopOp("s"),
            ]
            ops: dict[str, Callable[[], Awaitable[object]]] = {
                "keyed append": lambda: store.append_events(
                    "s", [EventInput("t", {"i": 10}, key="k10")]
                ),
                "keyed append again (nothing new)": lambda: store.append_events(
                    "s", [EventInput("t", {"i": 10}, key="k10")]
                ),
                "append with create": lambda: store.append_events(
                    "new", [{"type": "t"}], create=True, ttl=60
                ),
                "detailed append": lambda: store.append_events_detailed(
                    "s", [EventInput("t", {"i": 11}, key="k11")]
                ),
                "pop": lambda: store.pop_events("s", 2),
                "truncate": lambda: store.truncate_events("s", 7),
                "delete by seq and key": lambda: store.delete_events("s", seqs=[1], keys=["k2"]),
                "trim": lambda: store.trim_events("s", keep_last=3),
                "get_event": lambda: store.get_event("s", key="k5"),
                "get_events types last": lambda: store.get_events("s", types=["t"], last=2),
                "get_events before_seq": lambda: store.get_events("s", before_seq=6, last=2),
                "commit truncate+append+pop": lambda: store.commit(batch),
            }
            for name, op in ops.items():
                hops.clear()
                await op()
                assert len(hops) == 1, (name, hops)

    asyncio.run(main())


def test_an_append_without_create_or_expiry_skips_the_planner_when_it_can(
    tmp_path: Path,
) -> None:
    """``Engine.append_plain`` writes an append without ``create`` or an expiry change
    and answers as the planner does; whatever it leaves (a key stored with other
    content, or the same JSON in another key order; a key repeated in the call; nothing
    new; a version mismatch; an expired session) the planner answers, in the same hop.
    The hook fires once per write."""

    async def main() -> None:
        clock = ManualClock(T0)
        async with SqliteStore(path=str(tmp_path / "plain.db"), clock=clock) as store:
            await store.create_session(id="s")
            await store.create_session(id="x", ttl=60)
            answered: list[str] = []
            real = store._engine.append_plain

            def spy(prepared: Any, now: datetime) -> Any:
                done = real(prepared, now)
                answered.append("plain" if done is not None else "planner")
                return done

            store._engine.append_plain = spy  # type: ignore[method-assign]
            updated: list[int] = []
            notify = store._notify

            def spy_notify(hook: str, **kwargs: Any) -> None:
                if hook == "sessionstore_session_updated":
                    updated.append(kwargs["session"].version)
                notify(hook, **kwargs)

            store._notify = spy_notify  # type: ignore[method-assign]
            a = EventInput("t", {"a": 1, "b": [1, 2.5]}, key="a")
            s = await store.append_events("s", [a, EventInput("t", {"i": 0})])
            assert (s.version, s.event_count, s.last_seq) == (2, 2, 2)
            s = await store.append_events("s", [a, EventInput("u", {}, key="b")])
            assert (s.version, s.event_count, s.last_seq) == (3, 3, 3)
            assert answered == ["plain", "plain"] and updated == [2, 3]
            assert s == await store.get_session("s")
            same = EventInput("t", {"b": [1, 2.5], "a": 1}, key="a")  # other bytes, same JSON
            s = await store.append_events("s", [same, EventInput("v", {}, key="c")])
            assert (s.version, s.event_count, s.last_seq) == (4, 4, 4)
            s = await store.append_events("s", [a, a])  # repeated, nothing new: unchanged
            assert (s.version, s.event_count, s.last_seq) == (4, 4, 4)
            assert answered[2:] == ["planner", "planner"] and updated == [2, 3, 4]
            for bad in KEY_CONFLICTS:
                with pytest.raises(EventKeyConflictError):
                    await store.append_events("s", bad)
            with pytest.raises(SessionConflictError):
                await store.append_events("s", [{"type": "z"}], expected_version=3)
            s = await store.append_events("s", [{"type": "z", "at": T0}], expected_version=4)
            assert (s.version, s.event_count, s.last_seq) == (5, 5, 5)
            clock.advance(timedelta(seconds=60))
            with pytest.raises(SessionNotFoundError):
                await store.append_events("x", [{"type": "t"}])
            assert answered[-1] == "planner" and updated == [2, 3, 4, 5]
            got = await store.get_events("s")
            assert [(e.seq, e.type, e.key, e.data) for e in got] == [
                (1, "t", "a", {"a": 1, "b": [1, 2.5]}), (2, "t", None, {"i": 0}),
                (3, "u", "b", {}), (4, "v", "c", {}), (5, "z", None, {}),
            ]  # fmt: skip
            assert got[-1].at == T0 and got[0].at == T0
            assert s == await store.get_session("s")

    asyncio.run(main())


def test_put_records_is_one_transaction(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(path=str(tmp_path / "src.db")) as src:
            for n in range(20):
                await src.create_session(id=f"s{n}", data={"n": n})
                await src.append_events(f"s{n}", [EventInput("t", {}, key="k")])
            records: list[SessionRecord] = [r async for r in src.scan()]
        async with SqliteStore(path=str(tmp_path / "dst.db")) as dst:
            hops = count_hops(dst)
            result = await dst.put_records(records)
            assert result.created == 20
            assert len(hops) == 1, hops
            assert (await dst.get_event("s3", key="k")) is not None
            # a second restore of the same records skips all of them, still one hop
            hops.clear()
            assert (await dst.put_records(records)).skipped == 20
            assert len(hops) == 1, hops

    asyncio.run(main())


def _plan(path: Path, sql: str, args: list[Any]) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    return " | ".join(str(r[-1]) for r in rows)


def test_event_pages_are_index_range_scans(tmp_path: Path) -> None:
    """The page of one or several types, of a time range and a backwards page by seq
    each read through an index in seq order (no temporary b-tree sorts all events of
    the session)."""
    path = tmp_path / "plans.db"

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="s")
            await store.append_events("s", [{"type": f"t{i % 5}"} for i in range(500)])

    asyncio.run(main())
    ref = ("(SELECT sk FROM sessions WHERE namespace = ? AND id = ?)", ["", "s"])
    cols = "seq, type, at_ms, data, key"
    one_type = _plan(path, *events_sql(cols, ref, EventWindow(types=("t1",), last=20)))
    assert "events_type" in one_type and "TEMP B-TREE" not in one_type, one_type
    back = _plan(path, *events_sql(cols, ref, EventWindow(before_seq=300, last=20)))
    assert "PRIMARY KEY" in back and "TEMP B-TREE" not in back, back
    two = _plan(path, *events_sql(cols, ref, EventWindow(types=("t1", "t2"), last=20)))
    # one ordered, limited arm per type: only the merge of 2 x 20 rows is sorted
    assert two.count("events_type") == 2, two
    # several types without a count: the type index, one range a type, for the plain
    # reference and for the live one get_events uses (SQLite without statistics read the
    # whole log by the primary key for the latter, and filtered it)
    live = (
        "(SELECT sk FROM sessions WHERE namespace = ? AND id = ?"
        " AND (expires_ms IS NULL OR expires_ms > ?))",
        ["", "s", 0],
    )
    for r in (ref, live):
        for after_ms in (None, 5):
            window = EventWindow(types=("t1", "t2"), after_ms=after_ms)
            several = _plan(path, *events_sql(cols, r, window))
            assert "events_type" in several and "PRIMARY KEY" not in several, several


def test_time_bounded_pages_read_their_range(tmp_path: Path) -> None:
    """A time bound without types: its range drives the read when the window has no page
    size, or has one and the range holds few events; a page of a wide range walks the
    primary key and stops at the page. (Without statistics SQLite walked the primary key
    for every bound: a recent bound with a few events after it read the whole log.)"""
    path = tmp_path / "times.db"
    at = [T0 + timedelta(seconds=i) for i in range(3000)]

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="s")
            await store.append_events(
                "s", [EventInput("t", {"i": i}, at=at[i]) for i in range(3000)]
            )
            every = await store.get_events("s")
            for kw, want in (
                ({"at_after": at[2994]}, every[2995:]),
                ({"at_after": at[2994], "last": 20}, every[2995:]),
                ({"at_after": at[10], "at_before": at[21]}, every[11:21]),
                ({"at_after": at[10], "last": 3}, every[-3:]),
                ({"at_before": at[50], "last": 3}, every[47:50]),
                ({"at_after": at[10], "limit": 3}, every[11:14]),
                ({"at_after": at[10], "after_seq": 2990}, every[2990:]),
            ):
                assert await store.get_events("s", **kw) == want, kw

    asyncio.run(main())
    ref = ("(SELECT sk FROM sessions WHERE namespace = ? AND id = ?)", ["", "s"])
    ms = [int(t.timestamp() * 1000) for t in at]
    with sqlite3.connect(path) as conn:
        for window, index in (
            (EventWindow(after_ms=ms[2994]), "events_at"),
            (EventWindow(after_ms=ms[2994], last=20), "events_at"),
            (EventWindow(after_ms=ms[10], before_ms=ms[21]), "events_at"),
            (EventWindow(after_ms=ms[10]), "events_at"),  # no page: the range, not the log
            (EventWindow(after_ms=ms[10], last=3), "PRIMARY KEY"),  # a page of a wide range
            (EventWindow(after_ms=ms[10], after_seq=2990), "PRIMARY KEY"),  # from a late seq
            (EventWindow(types=("t",), after_ms=ms[2994]), "events_type"),
        ):
            sql, args = _page_sql(conn, ref, window)
            plan = _plan(path, sql, args)
            assert index in plan, (window, plan)


def test_events_by_key_are_index_lookups(tmp_path: Path) -> None:
    """A keyed append checks its keys (and ``delete_events(keys=)``, ``get_event`` find
    them) through the key index: no read of every event of the session, so a keyed
    append costs the same at 10 events as at 10,000."""
    path = tmp_path / "keys.db"

    async def main() -> None:
        async with SqliteStore(path=str(path)) as store:
            await store.create_session(id="s")
            await store.append_events("s", [EventInput("t", {}, key=f"k{i}") for i in range(500)])
            await store.append_events("s", [EventInput("t", {}, key="k3"), {"type": "t"}])
            assert len(await store.get_events("s")) == 501  # k3 stored once
            found = await store._find_events("s", seqs=[2, 7], keys=["k1", "k9", "nope"])
            assert [(e.seq, e.key) for e in found] == [(2, "k1"), (7, "k6"), (10, "k9")]

    asyncio.run(main())
    ref = ["", "s"]
    for n in (1, 3):
        by_key = _plan(path, find_sql("key", n), [*ref, *(f"k{i}" for i in range(n))])
        assert "events_key (sk=? AND key=?)" in by_key, by_key
    by_seq = _plan(path, find_sql("seq", 3), [*ref, 1, 2, 3])
    assert "PRIMARY KEY (sk=? AND seq=?)" in by_seq, by_seq


def test_filters_and_pages_agree_with_a_scan(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(path=str(tmp_path / "q.db")) as store:
            await store.create_session(id="s")
            events = [
                EventInput(f"t{i % 3}", {"i": i}, at=T0 + timedelta(seconds=i)) for i in range(60)
            ]
            await store.append_events("s", events)
            await store.delete_events("s", seqs=[10, 11, 12, 40])
            every = await store.get_events("s")
            assert len(every) == 56
            windows: list[dict[str, Any]] = [
                {"last": 5},
                {"limit": 7, "after_seq": 9},
                {"before_seq": 41, "last": 4},
                {"at_after": T0 + timedelta(seconds=20), "at_before": T0 + timedelta(seconds=45)},
            ]
            for types in (None, ["t0"], ["t0", "t2"], []):
                for kw in windows:
                    got = await store.get_events("s", types=types, **kw)
                    want = [
                        e
                        for e in every
                        if (types is None or e.type in types)
                        and e.seq > kw.get("after_seq", 0)
                        and ("before_seq" not in kw or e.seq < kw["before_seq"])
                        and ("at_after" not in kw or e.at > kw["at_after"])
                        and ("at_before" not in kw or e.at < kw["at_before"])
                    ]
                    if "last" in kw:
                        want = want[-kw["last"] :]
                    if "limit" in kw:
                        want = want[: kw["limit"]]
                    assert got == want, (types, kw)

    asyncio.run(main())


def test_concurrent_pops_from_several_stores_take_each_event_once(tmp_path: Path) -> None:
    path = str(tmp_path / "pops.db")

    async def main() -> None:
        stores = [SqliteStore(path=path) for _ in range(4)]
        for st in stores:
            await st.initialize()
        try:
            await stores[0].create_session(id="s")
            await stores[0].append_events("s", [{"type": "t", "data": {"i": i}} for i in range(40)])

            async def popper(st: SqliteStore) -> list[int]:
                got: list[int] = []
                while True:
                    popped = await st.pop_events("s")
                    if not popped.events:
                        return got
                    got.extend(e.seq for e in popped.events)

            results = await asyncio.gather(*(popper(st) for st in stores))
            taken = sorted(q for r in results for q in r)
            assert taken == list(range(1, 41))
            final = await stores[0].get_session("s")
            assert final is not None and final.event_count == 0 and final.last_seq == 40
        finally:
            for st in stores:
                await st.shutdown()

    asyncio.run(main())


def test_a_key_conflict_writes_nothing_not_even_the_created_session(tmp_path: Path) -> None:
    async def main() -> None:
        async with SqliteStore(path=str(tmp_path / "k.db")) as store:
            with pytest.raises(EventKeyConflictError):
                await store.append_events(
                    "fresh",
                    [EventInput("t", {"a": 1}, key="k"), EventInput("t", {"a": 2}, key="k")],
                    create=True,
                )
            assert await store.get_session("fresh") is None

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(int(os.environ.get("ELSQL_SEEDS", "4"))))
def test_the_event_log_behaves_as_the_memory_store(tmp_path: Path, seed: int) -> None:
    from sessionstore_memory import MemoryStore

    from sessionstore import ManualClock
    from tests.eventlog_differential import run_differential

    async def main() -> None:
        clock = ManualClock()
        async with (
            MemoryStore(clock=clock) as ref,
            SqliteStore(path=str(tmp_path / "diff.db"), clock=clock, durability="none") as sut,
        ):
            await run_differential(ref, sut, clock, seed)

    asyncio.run(main())
