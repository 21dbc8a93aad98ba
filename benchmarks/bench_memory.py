"""Benchmark of the in-memory driver (``memory://``) against floors measured in the same run.

Run::

    .venv/bin/python -m benchmarks.bench_memory            # full sizes (100k sessions)
    .venv/bin/python -m benchmarks.bench_memory --quick    # small sizes, a few seconds
    .venv/bin/python -m benchmarks.bench_memory --json out.json

Targets (ratios to floors, never absolute times: docs/performance.md, "Method"):

1. ``get_session`` of a ~2 KB session <= 3x ``orjson.loads`` of its data bytes;
2. ``create_session`` and ``update_session(merge_data=...)`` <= 2x one ``orjson.dumps`` +
   one ``orjson.loads`` of the ~2 KB document + one ``str(ULID())``;
3. ``append_events`` (one small event) on a session with 10,000 events <= 1.3x the same on
   a session with 10 events; likewise (issue 17, ``benchmarks/_event_log.py``)
   ``pop_events(n=1)``, ``get_event(key=)``, ``get_events(types=..., last=20)`` and a
   backwards page (``before_seq=..., last=5``);
4. the first page (100) of a tag + ``created_at`` range query over 100,000 sessions: the
   indexed ``list_sessions`` >= 20x faster than the generic full scan (every session
   loaded through the store's ``_iter_sessions`` and run through
   ``sessionstore.query.evaluate``, i.e. ``BaseSessionStore.list_sessions``).

The script always exits 0 when it ran (a missed target is a finding, not a crash); it
exits non-zero only if the indexed query and the full scan disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from ulid import ULID

from sessionstore import (
    BaseSessionStore,
    CreateOp,
    ManualClock,
    NewSession,
    QueryOptions,
    SessionFilter,
    Status,
    SystemClock,
    open_store,
)

from ._event_log import event_log_rows
from ._harness import Report, Row, Target, append_flatness_row, compare, indexed_query_row

EVENT: dict[str, Any] = {"type": "tool_call", "data": {"name": "search", "args": {"q": "weather"}}}
TAGS = [f"tag-{n:02d}" for n in range(20)]
PROCESSORS = [f"agent-{n}" for n in range(8)]
STATUSES = [Status.ACTIVE] * 7 + [Status.PAUSED, Status.COMPLETED, Status.FAILED]


@dataclass(frozen=True)
class Sizes:
    """How big and how long each part runs."""

    repeat: int
    append_number: int
    big_log: int
    small_log: int
    sessions: int
    load_batch: int
    query_repeat: int


FULL = Sizes(
    repeat=15,
    append_number=200,
    big_log=10_000,
    small_log=10,
    sessions=100_000,
    load_batch=100,
    query_repeat=5,
)
QUICK = Sizes(
    repeat=5,
    append_number=100,
    big_log=10_000,
    small_log=10,
    sessions=10_000,
    load_batch=100,
    query_repeat=3,
)


def session_doc(size: int = 2048, seed: int = 7) -> dict[str, Any]:
    """A realistic agent-run state document of about ``size`` bytes of JSON."""
    rnd = random.Random(seed)
    doc: dict[str, Any] = {
        "goal": "triage the incoming support queue and draft replies",
        "step": 3,
        "model": {"name": "large-1", "temperature": 0.2, "max_tokens": 4096},
        "context": {
            "user": "u-1042",
            "locale": "en-GB",
            "flags": {"beta": True, "escalated": False, "vip": None},
            "scores": [round(rnd.random(), 6) for _ in range(12)],
        },
        "plan": [],
        "scratch": "",
    }
    while len(orjson.dumps(doc)) < size - 120:
        n = len(doc["plan"])
        doc["plan"].append(
            {"n": n, "do": f"look up ticket #{1000 + n} and summarise it", "ok": n % 2 == 0}
        )
    doc["scratch"] = "x" * max(0, size - len(orjson.dumps(doc)))
    return doc


# --------------------------------------------------------------------------- 1-3: single ops


class NewMillisecondClock(SystemClock):
    """The real clock, except that every reading is at least 1 ms after the previous one.

    In real use writes to a session are spread out, so each one moves the session in the
    ``updated_at`` index; a tight benchmark loop would do dozens of writes per
    millisecond and skip that cost. This clock makes every write pay it.
    """

    def __init__(self) -> None:
        self._last = super().now()

    def now(self) -> datetime:
        value = super().now()
        if value <= self._last:
            value = self._last + _ONE_MS
        self._last = value
        return value


_ONE_MS = timedelta(milliseconds=1)


async def bench_single_ops(report: Report, sizes: Sizes) -> None:
    doc = session_doc()
    data_bytes = orjson.dumps(doc)
    report.info["document"] = f"{len(data_bytes)} bytes of JSON"

    async with open_store("memory://", clock=NewMillisecondClock()) as store:
        s = await store.create_session(
            processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
        )
        sid = s.id

        def loads_floor() -> object:
            return orjson.loads(data_bytes)

        op, floor = await compare(lambda: store.get_session(sid), loads_floor, repeat=sizes.repeat)
        report.add(Row("get_session (~2 KB)", op, "orjson.loads", floor, Target.at_most(3)))

        def write_floor() -> object:
            orjson.loads(orjson.dumps(doc))
            return str(ULID())

        op, floor = await compare(
            lambda: store.create_session(
                processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
            ),
            write_floor,
            repeat=sizes.repeat,
        )
        report.add(Row("create_session (~2 KB)", op, "dumps+loads+ULID", floor, Target.at_most(2)))

        step = iter(range(10**9))
        op, floor = await compare(
            lambda: store.update_session(sid, merge_data={"step": next(step)}),
            write_floor,
            repeat=sizes.repeat,
        )
        report.add(
            Row("update_session merge_data", op, "dumps+loads+ULID", floor, Target.at_most(2))
        )

        big = (await store.create_session(processor_id="agent-7", data={"n": 1})).id
        small = (await store.create_session(processor_id="agent-7", data={"n": 2})).id
        for start in range(0, sizes.big_log, 1000):
            await store.append_events(big, [EVENT] * min(1000, sizes.big_log - start))
        await store.append_events(small, [EVENT] * sizes.small_log)

        await append_flatness_row(
            report,
            store,
            big,
            small,
            EVENT,
            name=f"append_events, {sizes.big_log:,} events",
            big_log=sizes.big_log,
            small_log=sizes.small_log,
            number=sizes.append_number,
            repeat=sizes.repeat,
        )
        await event_log_rows(
            report,
            store,
            big_log=sizes.big_log,
            small_log=sizes.small_log,
            number=sizes.append_number,
            repeat=sizes.repeat,
        )


# --------------------------------------------------------------------------- 4: query


async def load_sessions(store: BaseSessionStore, clock: ManualClock, sizes: Sizes) -> float:
    """Create ``sizes.sessions`` realistic sessions spread over time; returns seconds."""
    rnd = random.Random(42)
    start = time.perf_counter()
    for _ in range(0, sizes.sessions, sizes.load_batch):
        ops = []
        for _ in range(sizes.load_batch):
            ops.append(
                CreateOp(
                    NewSession(
                        processor_id=rnd.choice(PROCESSORS),
                        status=rnd.choice(STATUSES),
                        tags=rnd.sample(TAGS, rnd.randint(1, 3)),
                        metadata={"user": f"u-{rnd.randrange(500)}", "channel": "web"},
                        data={
                            "goal": "answer the customer",
                            "step": rnd.randrange(50),
                            "summary": "y" * rnd.randrange(100, 400),
                        },
                        ttl=30 * 86_400 if rnd.random() < 0.1 else None,
                    )
                )
            )
        await store.commit(ops)
        # one commit is one instant: spread batches over time (about 1 s per session)
        clock.advance(timedelta(milliseconds=rnd.randrange(1, 2_000 * sizes.load_batch)))
    return time.perf_counter() - start


async def bench_query(report: Report, sizes: Sizes) -> None:
    t0 = ManualClock().now()
    clock = ManualClock(t0)
    async with open_store("memory://", clock=clock) as store:
        seconds = await load_sessions(store, clock, sizes)
        report.info["load"] = (
            f"{sizes.sessions:,} sessions via commit() in batches of {sizes.load_batch}: "
            f"{seconds:.2f} s ({sizes.sessions / seconds:,.0f} sessions/s)"
        )
        report.meta["load_seconds"] = seconds
        span = clock.now() - t0
        flt = SessionFilter(
            tags_all={"tag-07"},
            created_after=t0 + span * 0.25,
            created_before=t0 + span * 0.75,
        )
        opts = QueryOptions(sort_by="created_at", order="desc", limit=100)

        await indexed_query_row(
            report,
            store,
            flt,
            opts,
            name=f"list_sessions tag+range, {sizes.sessions:,}",
            floor_name="full scan + evaluate",
            target=Target.faster_by(20),
            orientation="orientation: <= 1 ms on the 2-vCPU reference machine",
            repeat=sizes.query_repeat,
        )


async def run(quick: bool) -> Report:
    sizes = QUICK if quick else FULL
    report = Report("sessionstore memory:// benchmark" + (" (quick)" if quick else ""))
    report.meta.update({"quick": quick, "sizes": asdict(sizes)})
    print(report.title, flush=True)
    await bench_single_ops(report, sizes)
    await bench_query(report, sizes)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory")
    parser.add_argument("--quick", action="store_true", help="small sizes (10k sessions)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.quick)).publish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
