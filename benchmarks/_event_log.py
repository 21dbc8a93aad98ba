"""Event-log flatness rows (issue 17), shared by the driver benchmarks.

Each row times one event-log read or write on a session with a long history against the
same call on a session with a short one, interleaved (``_harness.compare``); the target
is flat: at most 1.3x. The rows:

* ``pop_events(n=1)`` - 10,000 vs 10 events (each batch's pops are appended back,
  untimed, before the next batch, so every batch starts from the same history);
* ``get_event(key=)`` - a key in the middle of 10,000 vs 10 keyed events;
* ``get_events(types=[...], last=20)`` - one type of four, 10,000 vs 40 events (40: the
  shortest log holding a full page of 20 of one type in two, so both sides return 20);
* a backwards page, ``get_events(before_seq=..., last=5)`` from the middle of the log,
  10,000 vs 10 events (5 events each).

Usage: ``await event_log_rows(report, store, sizes...)`` on an open store that declares
``Capabilities.event_log``; it creates its own sessions.
"""

from __future__ import annotations

from typing import Any

from sessionstore import EventInput

from ._harness import Report, Row, Target, compare

__all__ = ["event_log_rows"]

TYPES = ["message", "tool_call", "tool_result", "reasoning"]


async def _log(store: Any, n: int, kinds: list[str]) -> str:
    """A session holding ``n`` keyed events whose types cycle through ``kinds``."""
    sid: str = (await store.create_session(processor_id="bench")).id
    for start in range(0, n, 1000):
        chunk = [
            EventInput(kinds[i % len(kinds)], {"i": i, "text": "x" * 40}, key=f"e-{i}")
            for i in range(start, min(n, start + 1000))
        ]
        await store.append_events(sid, chunk)
    return sid


async def event_log_rows(
    report: Report,
    store: Any,
    *,
    big_log: int = 10_000,
    small_log: int = 10,
    number: int = 100,
    repeat: int = 7,
) -> list[Row]:
    """Add the four flatness rows to ``report`` (see the module docstring)."""
    rows: list[Row] = []
    flat = Target.at_most(1.3)
    big = await _log(store, big_log, TYPES)
    small = await _log(store, small_log, TYPES)

    refill = [EventInput("message", {"text": "x" * 40})] * number
    op, floor = await compare(
        lambda: store.pop_events(big),
        lambda: store.pop_events(small),
        number=number,
        floor_number=number,
        repeat=repeat,
        op_setup=lambda: store.append_events(big, refill),
        floor_setup=lambda: store.append_events(small, refill),
    )
    rows.append(
        report.add(
            Row(
                f"pop_events(n=1), {big_log:,} events",
                op,
                f"same, {small_log} events",
                floor,
                flat,
                note=f"each batch pops the {number} events appended back (untimed) before it",
            )
        )
    )

    big_key, small_key = f"e-{big_log // 2}", f"e-{small_log // 2}"
    assert (await store.get_event(big, key=big_key)) is not None
    assert (await store.get_event(small, key=small_key)) is not None
    op, floor = await compare(
        lambda: store.get_event(big, key=big_key),
        lambda: store.get_event(small, key=small_key),
        repeat=repeat,
    )
    rows.append(
        report.add(
            Row(
                f"get_event(key=), {big_log:,} events",
                op,
                f"same, {small_log} events",
                floor,
                flat,
                note="a key in the middle of the log",
            )
        )
    )

    page_log = 40
    paged = await _log(store, page_log, ["message", "tool_result"])
    types = ["tool_result"]
    got_big = await store.get_events(big, types=types, last=20)
    got_small = await store.get_events(paged, types=types, last=20)
    assert len(got_big) == len(got_small) == 20, (len(got_big), len(got_small))
    op, floor = await compare(
        lambda: store.get_events(big, types=types, last=20),
        lambda: store.get_events(paged, types=types, last=20),
        repeat=repeat,
    )
    rows.append(
        report.add(
            Row(
                f"get_events(types, last=20), {big_log:,} events",
                op,
                f"same, {page_log} events",
                floor,
                flat,
                note=f"1 type of {len(TYPES)} vs 1 of 2: 20 events each side",
            )
        )
    )

    big_before = (await store.get_events(big, last=1))[0].seq // 2
    small_before = (await store.get_events(small, last=1))[0].seq - 2
    got_big = await store.get_events(big, before_seq=big_before, last=5)
    got_small = await store.get_events(small, before_seq=small_before, last=5)
    assert len(got_big) == len(got_small) == 5, (len(got_big), len(got_small))
    op, floor = await compare(
        lambda: store.get_events(big, before_seq=big_before, last=5),
        lambda: store.get_events(small, before_seq=small_before, last=5),
        repeat=repeat,
    )
    rows.append(
        report.add(
            Row(
                f"backwards page (before_seq, last=5), {big_log:,} events",
                op,
                f"same, {small_log} events",
                floor,
                flat,
                note="5 events before the middle of the log",
            )
        )
    )
    return rows
