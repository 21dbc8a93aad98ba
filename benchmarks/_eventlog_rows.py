"""Issue 17's event-log rows for any store that declares ``event_log``: each operation on
a session of ``big`` events against the same on a session of ``small`` events (flat in
history: <= 1.3x), through the public API only, so every driver's benchmark can add them.

Rows: ``pop_events(n=1)`` (both logs refilled, untimed, before each batch),
``get_event(key=)``, ``get_events(types=[t], last=20)`` (one event in four of the type in
the big log), a backwards page (``before_seq=`` mid-log, ``last=20``) and an append of
one event with a new key (the key looked up in the store's key index first).
"""

from __future__ import annotations

import itertools
from typing import Any

from sessionstore import EventInput, SessionStore

from ._harness import Report, Row, Target, compare

__all__ = ["event_log_rows"]


def _event(i: int, *, rare: bool = False) -> EventInput:
    kind = "tool_result" if rare or i % 4 == 0 else "message"
    return EventInput(kind, {"i": i, "text": "x" * 60}, key=f"k{i}")


async def _log_of(store: SessionStore, n: int, *, all_rare: bool = False) -> str:
    sid = (await store.create_session(processor_id="agent-7")).id
    for start in range(0, n, 1000):
        end = min(n, start + 1000)
        await store.append_events(sid, [_event(i, rare=all_rare) for i in range(start, end)])
    return sid


async def event_log_rows(
    report: Report,
    store: SessionStore,
    *,
    big: int,
    small: int,
    number: int,
    repeat: int,
    what: str = "",
) -> None:
    """Add the five flatness rows for ``store`` (``what`` is appended to each note)."""
    big_sid = await _log_of(store, big)
    small_sid = await _log_of(store, small, all_rare=True)
    fill = itertools.count(10**9)
    flat = Target.at_most(1.3)
    suffix = f"; {what}" if what else ""

    def refill(sid: str) -> Any:  # untimed: give back what a batch of pops takes
        return store.append_events(sid, [_event(next(fill)) for _ in range(number)])

    async def settle() -> None:  # both logs back to their sizes (untimed)
        await store.trim_events(big_sid, keep_last=big)
        await store.trim_events(small_sid, keep_last=small)

    op, floor = await compare(
        lambda: store.pop_events(big_sid),
        lambda: store.pop_events(small_sid),
        number=number, floor_number=number, repeat=repeat,
        op_setup=lambda: refill(big_sid), floor_setup=lambda: refill(small_sid),
    )  # fmt: skip
    report.add(Row(f"pop_events(n=1), {big:,} events", op, f"same, {small} events", floor, flat,
                   note=f"each batch of {number} pops starts from {big:,} / {small} events "
                   f"(refilled, untimed){suffix}"))  # fmt: skip
    await settle()
    mid_big, mid_small = f"k{big // 2}", f"k{small // 2}"
    op, floor = await compare(
        lambda: store.get_event(big_sid, key=mid_big),
        lambda: store.get_event(small_sid, key=mid_small),
        number=number, floor_number=number, repeat=repeat,
    )  # fmt: skip
    report.add(Row(f"get_event(key=), {big:,} events", op, f"same, {small}", floor, flat,
                   note=f"a key in the middle of the log{suffix}"))  # fmt: skip
    op, floor = await compare(
        lambda: store.get_events(big_sid, types=["tool_result"], last=20),
        lambda: store.get_events(small_sid, types=["tool_result"], last=20),
        number=number, floor_number=number, repeat=repeat,
    )  # fmt: skip
    report.add(Row(f"get_events(types=, last=20), {big:,} events", op, f"same, {small}", floor,
                   flat, note="1 in 4 events of the type in the big log (20 returned); all "
                   f"{small} of the small one{suffix}"))  # fmt: skip
    page_big = (await store.get_events(big_sid, last=big // 2))[0].seq
    page_small = (await store.get_events(small_sid, last=small // 2))[0].seq
    op, floor = await compare(
        lambda: store.get_events(big_sid, before_seq=page_big, last=20),
        lambda: store.get_events(small_sid, before_seq=page_small, last=20),
        number=number, floor_number=number, repeat=repeat,
    )  # fmt: skip
    report.add(Row(f"backwards page (before_seq=, last=20), {big:,} events", op,
                   f"same, {small}", floor, flat,
                   note=f"a page ending mid-log: 20 events vs {small // 2}{suffix}"))  # fmt: skip
    op, floor = await compare(
        lambda: store.append_events(big_sid, [_event(next(fill))]),
        lambda: store.append_events(small_sid, [_event(next(fill))]),
        number=number, floor_number=number, repeat=repeat,
        op_setup=lambda: store.trim_events(big_sid, keep_last=big),
        floor_setup=lambda: store.trim_events(small_sid, keep_last=small),
    )  # fmt: skip
    report.add(Row(f"append_events (1 event, new key), {big:,} events", op, f"same, {small}",
                   floor, flat, note=f"each batch of {number} appends starts from {big:,} / "
                   f"{small} events (trimmed back, untimed){suffix}"))  # fmt: skip
