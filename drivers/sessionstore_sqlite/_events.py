"""A page of one session's events as one ``SELECT`` that reads only the page's rows.

The events table is keyed ``(sk, seq)``; ``events_type (sk, type, seq)`` and
``events_at (sk, at_ms, seq)`` are the schema's version-4 indexes. A window is
``after_seq < seq < before_seq``, of one of ``types``, with ``at_after < at <
at_before``, the first ``limit`` or the newest ``last``:

* no type: the primary key in seq order (forwards or backwards), bounded by the seqs;
  with a time bound, ``events_at`` (named), its rows then sorted by seq, for a window
  without a page size or seq bound, or when the range holds fewer than
  :data:`RANGE_DRIVES_BELOW` events (:func:`range_count_sql` counts them, in the same
  read); else the primary key's walk, each row's time checked (``+at_ms``: no index).
  Left to itself, SQLite without statistics walked the primary key for every time
  bound: a bound after which a few events sit, or a narrow window early in the log, read
  the whole log (0.62-0.76 ms at 10,000 events, growing with it; ADK's
  ``after_timestamp`` reads such a bound);
* one type: ``events_type`` (named: with a time bound SQLite took the primary key's
  walk) in seq order from the bound (equality on ``type``, range on ``seq``), so a
  backwards page of one type reads the page; a time bound is checked row by row;
* several types with a limit: one such ordered, limited arm per type, merged by a
  ``UNION ALL`` and limited again, so the rows read are at most types x page (an
  ``IN`` list would make SQLite read every event of the types and sort them);
* several types without a limit: ``events_type``, named (``INDEXED BY``), one range per
  type, then sorted. Left to itself, SQLite without statistics reads the session's whole
  log by the primary key (the order it needs) and filters it: a read of the 10 events of
  10 types in a log of 4,000 took 0.4 ms against 0.02 ms, and grew with the log (the
  LangGraph adapter reads a page of checkpoints' writes this way). The index costs at
  most ~2x the scan where the types are most of the log.

Time bounds are exclusive and rounded as the session queries round them (``at >
low`` is ``at_ms > floor(low)``, ``at < high`` is ``at_ms < ceil(high)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RANGE_DRIVES_BELOW", "EventWindow", "events_sql", "range_count_sql", "range_read"]

#: Below this many events in a time range (a window without types), ``events_at`` drives
#: the read; at or above it the primary key's walk does (the file driver's rule).
RANGE_DRIVES_BELOW = 1000


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Which events of a session to read (see the module docstring)."""

    after_seq: int = 0
    before_seq: int | None = None
    limit: int | None = None
    last: int | None = None
    types: tuple[str, ...] | None = None
    after_ms: int | None = None  # at_ms > after_ms
    before_ms: int | None = None  # at_ms < before_ms


def range_read(w: EventWindow) -> bool | None:
    """Whether a window's time range drives its read (``events_sql``'s ``range_drives``):
    ``False`` without a time bound or with types (the type index drives); ``True`` without
    a page size or seq bound (the walk would read the whole log, the range only its own
    events); ``None`` otherwise, where the walk may stop early or start late: the range's
    size decides (:func:`range_count_sql`)."""
    if w.types is not None or (w.after_ms is None and w.before_ms is None):
        return False
    if w.limit is None and w.last is None and w.after_seq == 0 and w.before_seq is None:
        return True
    return None


def range_count_sql(ref: tuple[str, list[Any]], w: EventWindow) -> tuple[str, list[Any]]:
    """How many events the time range of ``w`` holds, counted up to
    :data:`RANGE_DRIVES_BELOW` on ``events_at``."""
    sk_sql, sk_args = ref
    where = [f"sk = {sk_sql}"]
    args: list[Any] = [*sk_args]
    if w.after_ms is not None:
        where.append("at_ms > ?")
        args.append(w.after_ms)
    if w.before_ms is not None:
        where.append("at_ms < ?")
        args.append(w.before_ms)
    inner = f"SELECT 1 FROM events INDEXED BY events_at WHERE {' AND '.join(where)} LIMIT ?"
    return f"SELECT COUNT(*) FROM ({inner})", [*args, RANGE_DRIVES_BELOW]


def events_sql(
    columns: str, ref: tuple[str, list[Any]], w: EventWindow, *, range_drives: bool = False
) -> tuple[str, list[Any]]:
    """The statement and its arguments; ``ref`` is the ``sk`` subquery (and its
    arguments) of the session. Rows come in seq order, descending for ``last``.
    ``range_drives``: a window without types reads its time range on ``events_at``
    (:func:`range_count_sql` found few events in it)."""
    sk_sql, sk_args = ref
    where = [f"sk = {sk_sql}", "seq > ?"]
    args: list[Any] = [*sk_args, w.after_seq]
    if w.before_seq is not None:
        where.append("seq < ?")
        args.append(w.before_seq)
    by_range = range_drives and w.types is None
    at = "at_ms" if by_range else "+at_ms"  # (a unary + keeps SQLite off events_at)
    if w.after_ms is not None:
        where.append(f"{at} > ?")
        args.append(w.after_ms)
    if w.before_ms is not None:
        where.append(f"{at} < ?")
        args.append(w.before_ms)
    order = "seq DESC" if w.last is not None else "seq"
    count = w.last if w.last is not None else w.limit
    types = w.types
    index = " INDEXED BY events_at" if by_range else ""
    if types is not None and (len(types) <= 1 or count is None):
        index = " INDEXED BY events_type"
        where.append(f"type IN ({', '.join('?' * len(types))})")
        args.extend(types)
        types = None
    base = f"SELECT {columns} FROM events{index} WHERE {' AND '.join(where)}"
    if types is None:
        sql = f"{base} ORDER BY {order}"
        if count is not None:
            sql += " LIMIT ?"
            args.append(count)
        return sql, args
    arms = []
    arm_args: list[Any] = []
    for etype in types:
        arms.append(f"SELECT * FROM ({base} AND type = ? ORDER BY {order} LIMIT ?)")
        arm_args.extend([*args, etype, count])
    sql = " UNION ALL ".join(arms) + f" ORDER BY {order} LIMIT ?"
    return sql, [*arm_args, count]
