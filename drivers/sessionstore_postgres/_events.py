"""Reads of one session's event log as single statements that read only the page.

``events`` is keyed ``(ns, session_id, seq)``; schema version 3 adds ``events_type (ns,
session_id, type, seq)``, ``events_at (ns, session_id, at, seq)`` and the unique
``events_key (ns, session_id, key)``. A window is ``after_seq < seq < before_seq``, of
one of ``types``, with ``at_after < at < at_before``, the first ``limit`` or the newest
``last``:

* no type: the primary key in seq order (either direction) from the seq bound; with a
  time bound, the range in ``(at, seq)`` order (which only ``events_at`` yields without a
  sort), then sorted by seq, for a window without a page size or seq bound, or when the
  range holds fewer than :data:`RANGE_DRIVES_BELOW` events (counted once on ``events_at``, a
  ``MATERIALIZED`` CTE); else the seq walk with each row's time checked (``at + 0``: no
  index). The branch not taken is skipped by its one-time filter. Left to the planner,
  a table never analysed, or one of many short sessions, had every time bound walk the
  session's whole log (1.4-1.7 ms at 10,000 events for a recent bound with a few events
  after it, growing with the log);
* types: for each type a ``LATERAL`` subquery with ``type = k.type`` (a scalar equality
  on the type index's third column, so ``events_type`` yields it in seq order), limited
  when the window has a page size, then merged (and limited again): at most types x page
  rows are read, or the events of the types. A ``= ANY`` cannot be read from the index
  in seq order: with the statistics of a table of many short sessions PostgreSQL read
  every event of the type and sorted them (2,500 rows for a page of 20 at 10,000
  events), and without a page size, analysed or not, it read the session's whole log by
  the primary key and filtered it (0.6-0.9 ms for 10 events of 10 types in a log of
  4,000; the LangGraph adapter reads a page of checkpoints' writes this way);
* the session's expiry comes in the same statement (``LEFT JOIN LATERAL`` from its row),
  so ``get_events`` is one round trip that also tells a missing session from an empty
  page.

Lookups by key or seq (``get_event``, the keyed-fact reads before a planned write) must
not depend on the table's statistics. On a table never analysed PostgreSQL expects about
one event per session, so every index on ``(ns, session_id)`` costs the same to it: a
``LATERAL`` equality join was flattened into one scan of the session's whole log filtered
by the keys, and an equality on ``seq`` was answered through ``events_at`` (seq is not
a leading column there: the session's log again). :func:`find_sql` and
:func:`event_by_key_sql` ask instead for the first row at or above the value in the
column's order (``key >= $k ORDER BY key LIMIT 1``, kept only if equal): only the key
index (for a key) or the primary key (for a seq) yields that order without a sort, so
the planner picks it whatever it believes about row counts, and the ``LIMIT`` keeps the
subquery a parameterised scan per value (one index descent, one row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EventWindow", "event_by_key_sql", "find_sql", "page_sql"]

EVENT_COLS = "seq, type, at, data, key"
#: Below this many events in a time range (a page without types), ``events_at`` drives
#: the read; at or above it the walk in seq order does (the file and SQLite drivers' rule).
RANGE_DRIVES_BELOW = 1000


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Which events of a session to read (times in epoch milliseconds, exclusive)."""

    after_seq: int = 0
    before_seq: int | None = None
    limit: int | None = None
    last: int | None = None
    types: list[str] | None = None
    after_ms: int | None = None
    before_ms: int | None = None


def page_sql(t_sessions: str, t_events: str, w: EventWindow) -> tuple[str, list[Any]]:
    """``SELECT expires_at, seq, type, at, data, key`` for the session ``$1``/``$2``: one
    row with NULL event columns when the window is empty, none when there is no session.
    Rows come in seq order, descending for ``last``."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args) + 2}"

    where = ["ns = s.ns", "session_id = s.id", f"seq > {arg(w.after_seq)}"]
    if w.before_seq is not None:
        where.append(f"seq < {arg(w.before_seq)}")
    if w.after_ms is not None:
        where.append(f"at > {arg(w.after_ms)}")
    if w.before_ms is not None:
        where.append(f"at < {arg(w.before_ms)}")
    order = "DESC" if w.last is not None else "ASC"
    count = w.last if w.last is not None else w.limit
    limit = "" if count is None else f" LIMIT {arg(count)}"
    cols = EVENT_COLS
    with_few = ""
    if w.types is not None:
        types = arg(w.types)
        where.append("type = k.type")
        page = (
            f"SELECT f.* FROM unnest({types}::text[]) AS k(type) CROSS JOIN LATERAL ("
            f"SELECT {cols} FROM {t_events} WHERE {' AND '.join(where)} "
            f"ORDER BY seq {order}{limit}) f ORDER BY f.seq {order}{limit}"
        )
    elif w.after_ms is None and w.before_ms is None:
        page = f"SELECT {cols} FROM {t_events} WHERE {' AND '.join(where)} ORDER BY seq {order}"
        page += limit
    else:
        # the time range in (at, seq) order, which only events_at yields without a sort:
        # the planner reads the range whatever it believes about the session's size
        in_range = f"SELECT {cols} FROM {t_events} WHERE {' AND '.join(where)} ORDER BY at, seq"
        if count is None and w.after_seq == 0 and w.before_seq is None:
            page = f"SELECT r.* FROM ({in_range}) r ORDER BY r.seq {order}"
        else:
            # a page or a seq bound: the range when it holds few events (counted on
            # events_at, at most RANGE_DRIVES_BELOW), else the walk in seq order, each
            # row's time checked (at + 0: no index on it), which stops at the page or
            # starts at the bound; the branch not taken is skipped by its one-time filter
            bounds = [c for c in where if c.startswith("at ")]
            with_few = (
                f"WITH few AS MATERIALIZED (SELECT count(*) < {RANGE_DRIVES_BELOW} AS yes "
                f"FROM (SELECT 1 FROM {t_events} WHERE ns = $1 AND session_id = $2 AND "
                f"{' AND '.join(bounds)} ORDER BY at LIMIT {RANGE_DRIVES_BELOW}) q) "
            )
            walk = [c.replace("at ", "at + 0 ", 1) if c.startswith("at ") else c for c in where]
            page = (
                f"(SELECT r.* FROM ({in_range}) r WHERE (SELECT yes FROM few) "
                f"ORDER BY r.seq {order}{limit}) UNION ALL (SELECT {cols} FROM {t_events} "
                f"WHERE {' AND '.join(walk)} AND NOT (SELECT yes FROM few) "
                f"ORDER BY seq {order}{limit})"
            )
    sql = (
        f"{with_few}SELECT s.expires_at, e.seq, e.type, e.at, e.data, e.key FROM {t_sessions} s "
        f"LEFT JOIN LATERAL ({page}) e ON true WHERE s.ns = $1 AND s.id = $2 "
        f"ORDER BY e.seq {order}"
    )
    return sql, args


def find_sql(t_events: str) -> str:
    """The stored events of session ``$1``/``$2`` whose seq is in ``$3`` (``bigint[]``)
    or whose key is in ``$4`` (``text[]``): one index descent per value (see the module
    docstring). An event asked for by both its seq and its key comes twice."""
    return (
        f"SELECT e.* FROM unnest($3::bigint[]) AS q(seq) CROSS JOIN LATERAL ("
        f"SELECT {EVENT_COLS} FROM {t_events} WHERE ns = $1 AND session_id = $2 "
        f"AND seq >= q.seq ORDER BY seq LIMIT 1) e WHERE e.seq = q.seq "
        f"UNION ALL SELECT e.* FROM unnest($4::text[]) AS k(key) CROSS JOIN LATERAL ("
        f"SELECT {EVENT_COLS} FROM {t_events} WHERE ns = $1 AND session_id = $2 "
        f'AND key >= k.key COLLATE "C" ORDER BY key LIMIT 1) e WHERE e.key = k.key '
        "ORDER BY seq"
    )


def event_by_key_sql(t_sessions: str, t_events: str) -> str:
    """``SELECT expires_at, seq, type, at, data, key``: the session ``$1``/``$2``'s row
    (none when it is missing) with its event of key ``$3`` (NULL columns when none), the
    key looked up as in :func:`find_sql`."""
    return (
        f"SELECT s.expires_at, e.seq, e.type, e.at, e.data, e.key FROM {t_sessions} s "
        f"LEFT JOIN LATERAL (SELECT {EVENT_COLS} FROM {t_events} WHERE ns = s.ns "
        f'AND session_id = s.id AND key >= $3 COLLATE "C" ORDER BY key LIMIT 1) e '
        "ON e.key = $3 WHERE s.ns = $1 AND s.id = $2"
    )
