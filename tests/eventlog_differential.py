"""A differential check of a store's event log against the memory store (#17).

The SQL drivers implement the event-log operations natively (a PL/pgSQL function, the
SQLite engine's transaction); this drives the same random sequence of operations into
the store under test and into a memory store on the same manual clock and compares
every result: returned sessions, popped and stored events, errors, and the log read
back with the filters. Used by ``tests/postgres`` and ``tests/sqlite``.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sessionstore import (
    AppendOp,
    DeleteEventsOp,
    EventInput,
    ManualClock,
    Op,
    PopOp,
    SessionStore,
    SessionStoreError,
    TrimOp,
    TruncateOp,
)

__all__ = ["KEY_CONFLICTS", "run_differential"]

#: Appends that conflict with a session holding ``EventInput("t", {"a": 1, "b": [1, 2.5]},
#: key="a")`` and ``EventInput("u", {}, key="b")``: a stored key with other data after a
#: new key, a key repeated in the call with other content, a stored key with other data.
KEY_CONFLICTS: list[list[EventInput]] = [
    [EventInput("x", {}, key="new"), EventInput("t", {"a": 2}, key="a")],
    [EventInput("x", {}, key="d"), EventInput("x", {"o": 1}, key="d")],
    [EventInput("u", {"other": True}, key="b")],
]


def _norm(value: Any) -> Any:
    """A comparable form of a result (errors by type and session)."""
    if isinstance(value, BaseException):
        return ("error", type(value).__name__)
    return value


async def _both(ref: SessionStore, sut: SessionStore, name: str, *args: Any, **kw: Any) -> Any:
    results = []
    for store in (ref, sut):
        try:
            results.append(await getattr(store, name)(*args, **kw))
        except SessionStoreError as exc:
            results.append(exc)
    want, got = (_norm(r) for r in results)
    assert got == want, (name, args, kw, want, got)
    return results[1]


async def run_differential(
    ref: SessionStore, sut: SessionStore, clock: ManualClock, seed: int, steps: int = 150
) -> None:
    """``steps`` random event-log operations on a few sessions, compared step by step."""
    rnd = random.Random(seed)
    sids = ["a", "b", "c"]
    types = ["msg", "tool", "note"]
    t0 = clock.now()

    def event() -> EventInput:
        key = f"k{rnd.randrange(12)}" if rnd.random() < 0.6 else None
        at = t0 - timedelta(seconds=rnd.randrange(500)) if rnd.random() < 0.3 else None
        data = {"v": rnd.randrange(3)} if rnd.random() < 0.8 else {"v": rnd.randrange(3), "w": 1}
        return EventInput(rnd.choice(types), data, key=key, at=at)

    for _ in range(steps):
        clock.advance(rnd.choice([0, 0.001, 1]))
        sid = rnd.choice(sids)
        kind = rnd.randrange(11)
        expected = None
        if rnd.random() < 0.15:
            current = await ref.get_session(sid)
            expected = (current.version if current else 1) + rnd.choice([0, 0, 1])
        if kind <= 2:
            events = [event() for _ in range(rnd.randrange(1, 4))]
            kw: dict[str, Any] = {"expected_version": expected}
            if rnd.random() < 0.4:
                kw["create"] = True
            if rnd.random() < 0.2:
                kw["ttl"] = rnd.choice([30, 3600])
            elif rnd.random() < 0.1:
                kw["expires_at"] = rnd.choice([None, t0 + timedelta(hours=2)])
            name = "append_events_detailed" if rnd.random() < 0.5 else "append_events"
            await _both(ref, sut, name, sid, events, **kw)
        elif kind == 3:
            await _both(ref, sut, "pop_events", sid, rnd.randrange(1, 4), expected_version=expected)
        elif kind == 4:
            current = await ref.get_session(sid)
            after = rnd.randrange(0, (current.last_seq if current else 0) + 2)
            await _both(ref, sut, "truncate_events", sid, after, expected_version=expected)
        elif kind == 5:
            seqs = [rnd.randrange(1, 30) for _ in range(rnd.randrange(3))]
            keys = [f"k{rnd.randrange(12)}" for _ in range(rnd.randrange(3))]
            await _both(ref, sut, "delete_events", sid, seqs=seqs, keys=keys,
                        expected_version=expected)  # fmt: skip
        elif kind == 6:
            await _both(ref, sut, "trim_events", sid, keep_last=rnd.randrange(0, 6),
                        expected_version=expected)  # fmt: skip
        elif kind == 7:
            other = rnd.choice(sids)
            removals: list[Op] = [
                TruncateOp(sid, rnd.randrange(0, 10)),
                PopOp(sid, rnd.randrange(1, 3)),
                TrimOp(sid, rnd.randrange(0, 4)),
                DeleteEventsOp(sid, [rnd.randrange(1, 20)], [f"k{rnd.randrange(12)}"]),
            ]
            ops: list[Op] = [
                rnd.choice(removals),
                AppendOp(other, [event(), event()], create=rnd.random() < 0.5),
                PopOp(other, 1),
            ]  # fmt: skip
            await _both(ref, sut, "commit", ops)
        elif kind == 8:
            await _both(ref, sut, "get_event", sid, key=f"k{rnd.randrange(12)}")
        elif kind == 9:
            clock.advance(rnd.choice([0, 40]))  # past a 30 s ttl sometimes
        else:
            await _both(ref, sut, "get_session", sid)
        for check in sids:
            await _both(ref, sut, "get_session", check)
            await _both(ref, sut, "get_events", check)
            await _both(ref, sut, "get_events", check, last=rnd.randrange(0, 4),
                        types=rnd.choice([None, ["msg"], ["msg", "tool"]]))  # fmt: skip
            await _both(ref, sut, "get_events", check, before_seq=rnd.randrange(1, 20),
                        limit=rnd.randrange(0, 4))  # fmt: skip
            low = t0 - timedelta(seconds=rnd.randrange(600))
            await _both(ref, sut, "get_events", check, at_after=low,
                        at_before=low + timedelta(seconds=rnd.randrange(1, 400)))  # fmt: skip
