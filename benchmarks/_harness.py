"""Reusable timing helpers for the sessionstore benchmarks.

The method (see ``docs/performance.md``):

* every target is a **ratio to a floor measured in the same run**, on the same machine,
  never an absolute time: a floor is the cheapest thing the operation cannot avoid doing
  (decoding the session's JSON, a full scan, ...);
* an operation and its floor are timed in **interleaved batches** (op, floor, floor, op,
  ...) so that a slow spell of a noisy machine hits both, and each side's figure is the
  **median** over the batches of the mean time per call;
* callables may be plain functions or return an awaitable (a coroutine): both are driven
  from one event loop, and the per-call loop overhead is the same for both sides;
* the garbage collector stays on (allocations are part of an operation's cost) but is run
  before every batch, so no batch pays for the garbage of another.

Drivers' benchmarks build on :func:`compare`, :class:`Target`, :class:`Row` and
:class:`Report`; see ``benchmarks/bench_memory.py`` for a complete example.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Call",
    "Report",
    "Row",
    "Target",
    "Timing",
    "calibrate",
    "compare",
    "format_seconds",
    "machine_info",
    "measure",
]

#: What the harness times: a no-argument callable, optionally returning an awaitable.
Call = Callable[[], object]
#: Run (untimed) before each batch, e.g. to reset state the operation changes.
Setup = Callable[[], object] | None


async def _settle(value: object) -> None:
    if inspect.isawaitable(value):
        await value


def _blocking_batch(fn: Call, number: int) -> float:
    """Seconds taken by ``number`` calls of a blocking ``fn`` (run on a worker thread)."""
    perf = time.perf_counter
    start = perf()
    for _ in range(number):
        fn()
    return perf() - start


async def _batch(fn: Call, number: int, is_async: bool | None) -> float:
    """Seconds taken by ``number`` calls of ``fn`` (awaiting each result if async;
    ``is_async=None``: a blocking call, timed on a worker thread with no event loop)."""
    if is_async is None:
        return await asyncio.to_thread(_blocking_batch, fn, number)
    perf = time.perf_counter
    loop = range(number)
    if is_async:
        afn: Callable[[], Awaitable[object]] = fn  # type: ignore[assignment]
        start = perf()
        for _ in loop:
            await afn()
        return perf() - start
    start = perf()
    for _ in loop:
        fn()
    return perf() - start


async def _is_async(fn: Call, blocking: bool = False) -> bool | None:
    """Call ``fn`` once (a warm-up) and tell whether it returns awaitables (``None`` for a
    ``blocking`` call, warmed up on a worker thread)."""
    if blocking:
        await asyncio.to_thread(fn)
        return None
    result = fn()
    if inspect.isawaitable(result):
        await result
        return True
    return False


async def calibrate(
    fn: Call, *, min_seconds: float = 0.005, max_number: int = 1_000_000, blocking: bool = False
) -> int:
    """The smallest count in 1, 2, 5, 10, 20, 50... whose batch lasts ``min_seconds``.

    Like :meth:`timeit.Timer.autorange`; the calibration batches double as a warm-up.
    """
    is_async = await _is_async(fn, blocking)
    number = 1
    while True:
        for factor in (1, 2, 5):
            count = number * factor
            if count >= max_number or await _batch(fn, count, is_async) >= min_seconds:
                return min(count, max_number)
        number *= 10


@dataclass(frozen=True)
class Timing:
    """Mean seconds per call of each batch (one value per repeat)."""

    per_call: tuple[float, ...]
    number: int

    @property
    def median(self) -> float:
        """The median over the batches: the figure compared against targets."""
        return statistics.median(self.per_call)

    @property
    def best(self) -> float:
        """The fastest batch."""
        return min(self.per_call)

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how noisy the batches were."""
        med = self.median
        return (max(self.per_call) - min(self.per_call)) / med if med else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "median_s": self.median,
            "best_s": self.best,
            "spread": self.spread,
            "number": self.number,
            "repeat": len(self.per_call),
            "per_call_s": list(self.per_call),
        }


async def measure(
    fn: Call,
    *,
    number: int | None = None,
    repeat: int = 7,
    setup: Setup = None,
    min_batch_seconds: float = 0.005,
) -> Timing:
    """Time ``fn``: ``repeat`` batches of ``number`` calls (calibrated when ``None``)."""
    timing, _ = await compare(
        fn, None, number=number, repeat=repeat, op_setup=setup, min_batch_seconds=min_batch_seconds
    )
    return timing


async def compare(
    op: Call,
    floor: Call | None,
    *,
    number: int | None = None,
    floor_number: int | None = None,
    repeat: int = 7,
    op_setup: Setup = None,
    floor_setup: Setup = None,
    min_batch_seconds: float = 0.005,
    blocking: bool = False,
) -> tuple[Timing, Timing]:
    """Time ``op`` and ``floor`` in interleaved batches; returns both timings.

    ``number``/``floor_number`` are the calls per batch (calibrated to last at least
    ``min_batch_seconds`` when ``None``). The order alternates (op first, then floor
    first) so neither side always runs on a cache warmed by the other. With
    ``floor=None`` only ``op`` is timed (the second timing is then empty). ``blocking``:
    both sides are blocking calls that must not run on an event loop's thread (the sync
    facade); each batch runs on a worker thread.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    sides: list[tuple[Call, int, bool | None, Setup, list[float]]] = []
    for fn, count, setup in ((op, number, op_setup), (floor, floor_number, floor_setup)):
        if fn is None:
            continue
        if setup is not None:
            await _settle(setup())
        is_async = await _is_async(fn, blocking)
        if count is None:
            count = await calibrate(fn, min_seconds=min_batch_seconds, blocking=blocking)
        sides.append((fn, count, is_async, setup, []))
    for index in range(repeat):
        order = sides if index % 2 == 0 else sides[::-1]
        for fn, count, is_async, setup, samples in order:
            if setup is not None:
                await _settle(setup())
            gc.collect()
            samples.append(await _batch(fn, count, is_async) / count)
    op_side = sides[0]
    op_timing = Timing(tuple(op_side[4]), op_side[1])
    if floor is None:
        return op_timing, Timing((), 0)
    floor_side = sides[1]
    return op_timing, Timing(tuple(floor_side[4]), floor_side[1])


@dataclass(frozen=True)
class Target:
    """A ratio target: ``op/floor <= limit`` (``at_most``) or ``floor/op >= limit``."""

    kind: Literal["at_most", "at_least"]
    limit: float

    @classmethod
    def at_most(cls, limit: float) -> Target:
        """The operation may take at most ``limit`` times its floor."""
        return cls("at_most", limit)

    @classmethod
    def faster_by(cls, limit: float) -> Target:
        """The operation must be at least ``limit`` times faster than its floor."""
        return cls("at_least", limit)

    def ratio(self, op_seconds: float, floor_seconds: float) -> float:
        """``op/floor`` for ``at_most``, the speed-up ``floor/op`` for ``at_least``."""
        if self.kind == "at_most":
            return op_seconds / floor_seconds if floor_seconds else float("inf")
        return floor_seconds / op_seconds if op_seconds else float("inf")

    def passed(self, ratio: float) -> bool:
        """Whether ``ratio`` (as returned by :meth:`ratio`) meets the target."""
        return ratio <= self.limit if self.kind == "at_most" else ratio >= self.limit

    def describe(self) -> str:
        """``<= 3x floor`` or ``>= 20x faster``."""
        if self.kind == "at_most":
            return f"<= {self.limit:g}x floor"
        return f">= {self.limit:g}x faster"

    def format_ratio(self, ratio: float) -> str:
        """The ratio as shown in the table."""
        return f"{ratio:.2f}x" if self.kind == "at_most" else f"{ratio:.1f}x faster"


@dataclass(frozen=True)
class Row:
    """One line of a benchmark report: an operation against its floor and target."""

    name: str
    op: Timing
    floor_name: str
    floor: Timing
    target: Target
    note: str = ""

    @property
    def ratio(self) -> float:
        """See :meth:`Target.ratio` (computed from the medians)."""
        return self.target.ratio(self.op.median, self.floor.median)

    @property
    def passed(self) -> bool:
        """Whether the target is met."""
        return self.target.passed(self.ratio)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "op_s": self.op.median,
            "floor": self.floor_name,
            "floor_s": self.floor.median,
            "ratio": self.ratio,
            "ratio_kind": "op/floor" if self.target.kind == "at_most" else "floor/op",
            "target": self.target.describe(),
            "target_kind": self.target.kind,
            "target_limit": self.target.limit,
            "passed": self.passed,
            "note": self.note,
            "op_timing": self.op.to_dict(),
            "floor_timing": self.floor.to_dict(),
        }


def format_seconds(seconds: float) -> str:
    """A duration with a readable unit (ns, us, ms, s)."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def machine_info() -> dict[str, Any]:
    """Where the numbers come from (recorded in the JSON output)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass
class Report:
    """Rows plus context; prints a table and writes JSON."""

    title: str
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Record a row and print it at once (long runs show progress)."""
        self.rows.append(row)
        verdict = "PASS" if row.passed else "FAIL"
        print(
            f"  {verdict}  {row.name}: {format_seconds(row.op.median)} vs "
            f"{format_seconds(row.floor.median)} -> {row.target.format_ratio(row.ratio)} "
            f"(target {row.target.describe()})",
            flush=True,
        )
        return row

    @property
    def all_passed(self) -> bool:
        """True when every row met its target."""
        return all(row.passed for row in self.rows)

    def table(self) -> str:
        """A plain-text table of every row."""
        header = ("operation", "ours", "floor", "ratio", "target", "result")
        lines: list[Sequence[str]] = [header]
        for row in self.rows:
            lines.append(
                (
                    row.name,
                    format_seconds(row.op.median),
                    f"{format_seconds(row.floor.median)} ({row.floor_name})",
                    row.target.format_ratio(row.ratio),
                    row.target.describe(),
                    "PASS" if row.passed else "FAIL",
                )
            )
        widths = [max(len(line[col]) for line in lines) for col in range(len(header))]
        out = [f"== {self.title} =="]
        for index, line in enumerate(lines):
            out.append(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(line, widths, strict=True)
                ).rstrip()
            )
            if index == 0:
                out.append("  ".join("-" * width for width in widths))
        notes = [f"  {row.name}: {row.note}" for row in self.rows if row.note]
        if notes:
            out.append("notes:")
            out.extend(notes)
        for key, value in self.info.items():
            out.append(f"{key}: {value}")
        failed = [row.name for row in self.rows if not row.passed]
        out.append("ALL TARGETS MET" if not failed else f"TARGETS MISSED: {', '.join(failed)}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the whole report."""
        return {
            "title": self.title,
            "meta": {**machine_info(), **self.meta},
            "info": self.info,
            "all_passed": self.all_passed,
            "rows": [row.to_dict() for row in self.rows],
        }

    def publish(self, json_path: str | None) -> int:
        """Print the table (and write JSON when asked); the exit code of a benchmark: 0.

        A benchmark reports; it does not fail the build.
        """
        print()
        print(self.table())
        if json_path:
            self.write_json(json_path)
            print(f"wrote {json_path}")
        return 0

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


async def indexed_query_row(
    report: Report,
    store: Any,
    flt: Any,
    opts: Any,
    *,
    name: str,
    floor_name: str,
    target: Target,
    orientation: str,
    repeat: int,
) -> Row:
    """Time an indexed first page against the generic full scan of the same query.

    First checks that both return the same full page (a disagreement is a bug, reported
    by exiting non-zero), then times them interleaved and records ``meta["query_ms"]``.
    """
    from sessionstore import BaseSessionStore

    indexed = await store.list_sessions(flt, opts)
    scanned = await BaseSessionStore.list_sessions(store, flt, opts)
    if indexed.ids != scanned.ids or indexed.next_cursor != scanned.next_cursor:
        raise SystemExit("BUG: the indexed query and the full scan disagree")
    if len(indexed) != opts.limit:
        raise SystemExit(f"BUG: expected a full page, got {len(indexed)} sessions")
    matching = await store.count_sessions(flt)
    op, floor = await compare(
        lambda: store.list_sessions(flt, opts),
        lambda: BaseSessionStore.list_sessions(store, flt, opts),
        floor_number=1,
        repeat=repeat,
    )
    row = report.add(
        Row(
            name,
            op,
            floor_name,
            floor,
            target,
            note=f"first page of {opts.limit} of {matching:,} matches, {opts.sort_by} "
            f"{opts.order}; absolute {op.median * 1e3:.3f} ms ({orientation})",
        )
    )
    report.meta["query_ms"] = row.op.median * 1e3
    return row


async def append_flatness_row(
    report: Report,
    store: Any,
    big: str,
    small: str,
    event: Any,
    *,
    name: str,
    big_log: int,
    small_log: int,
    number: int,
    repeat: int,
) -> Row:
    """One-event appends to a session holding ``big_log`` events vs one holding ``small_log``.

    Before each batch (untimed) both logs are trimmed back to their stated length, so every
    batch measures the same history lengths. Target: flat (at most 1.3x).
    """
    op, floor = await compare(
        lambda: store.append_events(big, [event]),
        lambda: store.append_events(small, [event]),
        number=number,
        floor_number=number,
        repeat=repeat,
        op_setup=lambda: store.trim_events(big, keep_last=big_log),
        floor_setup=lambda: store.trim_events(small, keep_last=small_log),
    )
    return report.add(
        Row(
            name,
            op,
            f"same, {small_log} events",
            floor,
            Target.at_most(1.3),
            note=f"each batch of {number} appends starts from {big_log:,} / {small_log} "
            "events (trimmed back, untimed)",
        )
    )
