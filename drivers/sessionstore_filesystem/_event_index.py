"""The event index: per event its line's place in the log, its type, time and key.

Rows live in the namespace's SQLite index (``events``), beside a *cover* per session
(``ev_cover``): the stretch of the log the rows describe, as ``(inc, gen, end, tail)`` -
the incarnation, the log generation, a byte offset and the ``seq`` of the line that ends
there (0 at offset 0). Rows are trusted only as far as the cover is proven against the
session as just read from its files (:func:`classify`): same incarnation and generation,
``end`` not past the committed log, and the line ending at ``end`` still holding
``tail``. That proves the bytes before ``end`` are the ones the rows were made from:
within one generation the log only grows at its end or is cut back (a pop, a truncate),
and a cut followed by appends puts lines with new sequence numbers (never reused) where
the old ones were. A trim, a delete in the middle or a re-create writes a new
generation or incarnation.

Appends do not touch the rows (an append stays as cheap as before the index: one
``UPDATE`` of the session's row). A read that needs the index and finds the cover a
proven *prefix* of the log indexes the lines after it first (O(lines appended since)),
with a conditional update of the cover, so two readers or a reader and a writer never
both extend it. A cut that finds the cover proven moves it back and drops the rows
after the cut in the same transaction as the session's row; a rewrite replaces every
row. A stale or missing cover (a store of the previous layout, a crash between a file
write and its index update, a repair, a reindex) is rebuilt from the log under the
session's lock the next time it is needed: O(history) once, not per call. The files
stay the truth.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import orjson

from sessionstore import Event, IntegrityError

from ._log import LogReader
from ._session import State

__all__ = [
    "EXACT",
    "PREFIX",
    "STALE",
    "Cover",
    "EvRow",
    "EventChange",
    "EventQuery",
    "Hit",
    "apply_changes",
    "classify",
    "cover_of",
    "invalidate",
    "lookup_keys",
    "query_rows",
    "read_cover",
    "row_of",
    "rows_of_lines",
    "to_us",
]

#: (incarnation, log generation, an offset of the log, the seq of the line ending there)
Cover = tuple[str, int, int, int]
#: (seq, offset, length, type, at in µs since the epoch, key)
EvRow = tuple[int, int, int, str, int, str | None]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Below this many rows in a time range, the range drives the query (then sorted by seq);
#: above it the query walks the sequence order and checks the time of each row.
_RANGE_DRIVES_BELOW: Final = 1000


def to_us(value: datetime) -> int:
    """Microseconds since the epoch (exact: times compare as integers)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def cover_of(state: State, tail: int) -> Cover | None:
    """The cover of the whole committed log of ``state`` whose last line is ``tail``."""
    if state.doc is None or state.session is None:
        return None
    return (state.doc.inc, state.doc.gen, state.valid_end, tail)


EXACT, PREFIX, STALE = "exact", "prefix", "stale"


def classify(cover: Cover | None, state: State, reader: LogReader | None) -> str:
    """What ``cover`` proves about the committed log of ``state`` (``reader``: that log,
    None when it is empty): :data:`EXACT` (the rows describe all of it), :data:`PREFIX`
    (its start: the lines after ``cover``'s end are not indexed yet) or :data:`STALE`."""
    doc = state.doc
    if cover is None or doc is None or (cover[0], cover[1]) != (doc.inc, doc.gen):
        return STALE
    end, tail = cover[2], cover[3]
    if end > state.valid_end:
        return STALE
    if end == 0:
        return EXACT if state.valid_end == 0 else PREFIX
    if reader is None:
        return STALE
    try:
        _, raw = next(reader.lines_back(end))
        if reader.decode(raw).seq != tail:
            return STALE
    except (IntegrityError, StopIteration):
        return STALE  # not a line end: the log changed under the cover
    return EXACT if end == state.valid_end else PREFIX


def row_of(event: Event, off: int, length: int) -> EvRow:
    return (event.seq, off, length, event.type, to_us(event.at), event.key)


def rows_of_lines(events: Sequence[Event], data: bytes, start: int) -> list[EvRow]:
    """Rows for ``events`` written as the lines ``data`` at byte ``start`` of the log."""
    rows = []
    pos = 0
    for event in events:
        nl = data.index(b"\n", pos)
        rows.append(row_of(event, start + pos, nl - pos))
        pos = nl + 1
    return rows


@dataclass(slots=True)
class EventChange:
    """What a write did to a session's rows.

    ``old`` None: the rows are replaced by ``rows`` whatever they were (a log the write
    made whole); else the change applies only if the cover is still ``old`` (rows with a
    ``seq`` above ``drop_after`` go, ``rows`` are added). ``new`` None: the session is
    gone. ``cut``: the change a cut would make, to be applied by the engine only when it
    proved the cover before the write (see ``Engine._write``)."""

    sid: str
    old: Cover | None
    new: Cover | None
    rows: list[EvRow] = field(default_factory=list)
    drop_after: int | None = None
    cut: bool = False


_INSERT: Final = (
    "INSERT OR REPLACE INTO events(id, seq, off, len, type, at_us, key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def apply_changes(conn: sqlite3.Connection, changes: Iterable[EventChange]) -> None:
    """Apply ``changes`` (inside the caller's transaction)."""
    for ch in changes:
        sid = ch.sid
        if ch.new is None:
            conn.execute("DELETE FROM events WHERE id = ?", (sid,))
            conn.execute("DELETE FROM ev_cover WHERE id = ?", (sid,))
            continue
        if ch.old is None:
            conn.execute("DELETE FROM events WHERE id = ?", (sid,))
            conn.execute(
                "INSERT OR REPLACE INTO ev_cover(id, inc, gen, end_off, tail_seq) "
                "VALUES (?, ?, ?, ?, ?)",
                (sid, *ch.new),
            )
        else:
            if ch.old == ch.new and not ch.rows and ch.drop_after is None:
                continue
            cur = conn.execute(
                "UPDATE ev_cover SET inc = ?, gen = ?, end_off = ?, tail_seq = ? "
                "WHERE id = ? AND inc = ? AND gen = ? AND end_off = ? AND tail_seq = ?",
                (*ch.new, sid, *ch.old),
            )
            if cur.rowcount != 1:
                continue  # stale: left for a rebuild
            if ch.drop_after is not None:
                conn.execute("DELETE FROM events WHERE id = ? AND seq > ?", (sid, ch.drop_after))
        if ch.rows:  # (OR REPLACE: rows a cut left behind a stale cover give way)
            conn.executemany(_INSERT, [(sid, *row) for row in ch.rows])


def invalidate(conn: sqlite3.Connection, sids: Iterable[str]) -> None:
    """Forget the covers of ``sids`` (their rows are rebuilt when next needed)."""
    conn.executemany("DELETE FROM ev_cover WHERE id = ?", [(sid,) for sid in sids])


def read_cover(conn: sqlite3.Connection, sid: str) -> Cover | None:
    row = conn.execute(
        "SELECT inc, gen, end_off, tail_seq FROM ev_cover WHERE id = ?", (sid,)
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), int(row[2]), int(row[3]))


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A filtered read: ``seq`` in ``(after_seq, before_seq)``, one of ``types`` (None:
    any), ``at`` in ``(at_after, at_before)`` (µs, exclusive; None: unbounded); the first
    ``limit`` or the last ``last`` (neither: all)."""

    after_seq: int = 0
    before_seq: int | None = None
    types: tuple[str, ...] | None = None
    at_after: int | None = None
    at_before: int | None = None
    limit: int | None = None
    last: int | None = None


#: (seq, offset, length)
Hit = tuple[int, int, int]


def query_rows(conn: sqlite3.Connection, sid: str, q: EventQuery) -> list[Hit]:
    """The rows of ``q`` in ascending ``seq`` (O(page) for one type, or for a time range
    that holds few rows or most of them; see the module docstring of ``_store``)."""
    page = q.last if q.last is not None else q.limit
    if page == 0:
        return []
    desc = q.last is not None
    if q.types is not None and len(q.types) > 1 and page is not None:
        # one ordered walk per type, merged: each stops after a page
        merged: list[Hit] = []
        for etype in q.types:
            merged += _select(conn, sid, q, (etype,), page, desc)
        merged.sort(reverse=desc)
        merged = merged[:page]
    else:
        merged = _select(conn, sid, q, q.types, page, desc)
    if desc:
        merged.reverse()
    return merged


def _select(
    conn: sqlite3.Connection,
    sid: str,
    q: EventQuery,
    types: tuple[str, ...] | None,
    page: int | None,
    desc: bool,
) -> list[Hit]:
    where = ["id = ?", "seq > ?"]
    params: list[object] = [sid, q.after_seq]
    if q.before_seq is not None:
        where.append("seq < ?")
        params.append(q.before_seq)
    source = "events"
    timed = q.at_after is not None or q.at_before is not None
    if types is not None:
        # The type index drives: without statistics SQLite prefers walking the primary
        # key (id, seq), which gives the order for free but reads every row of the
        # session (O(history) for a type that holds a few of them).
        source = "events INDEXED BY events_type"
        if len(types) == 1:
            where.append("type = ?")
            params.append(types[0])
        else:
            where.append("type IN (SELECT value FROM json_each(?))")
            params.append(orjson.dumps(list(types)).decode())
        at_col = "+at_us"  # the type index drives; times are checked row by row
    elif timed and _few_in_range(conn, sid, q):
        source, at_col = "events INDEXED BY events_at", "at_us"
    else:
        at_col = "+at_us"  # walk the seq order
    if q.at_after is not None:
        where.append(f"{at_col} > ?")
        params.append(q.at_after)
    if q.at_before is not None:
        where.append(f"{at_col} < ?")
        params.append(q.at_before)
    # only fixed fragments are joined in; every value is a parameter
    sql = f"SELECT seq, off, len FROM {source} WHERE {' AND '.join(where)} ORDER BY seq"  # noqa: S608
    if desc:
        sql += " DESC"
    if page is not None:
        sql += " LIMIT ?"
        params.append(page)
    return [(int(a), int(b), int(c)) for a, b, c in conn.execute(sql, params)]


def _few_in_range(conn: sqlite3.Connection, sid: str, q: EventQuery) -> bool:
    where = ["id = ?"]
    params: list[object] = [sid]
    if q.at_after is not None:
        where.append("at_us > ?")
        params.append(q.at_after)
    if q.at_before is not None:
        where.append("at_us < ?")
        params.append(q.at_before)
    params.append(_RANGE_DRIVES_BELOW)
    # fixed fragments only; every value is a parameter
    cond = " AND ".join(where)
    sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM events INDEXED BY events_at WHERE {cond} LIMIT ?)"  # noqa: S608
    return bool(conn.execute(sql, params).fetchone()[0] < _RANGE_DRIVES_BELOW)


def lookup_keys(conn: sqlite3.Connection, sid: str, keys: Sequence[str]) -> list[tuple[str, Hit]]:
    """``(key, (seq, offset, length))`` of the stored events with one of ``keys``."""
    if len(keys) == 1:
        rows = conn.execute(
            "SELECT key, seq, off, len FROM events WHERE id = ? AND key = ?", (sid, keys[0])
        )
    else:  # the keys drive (CROSS JOIN fixes the order): one index descent per key,
        # where ``key IN (...)`` made SQLite walk the session's rows by seq (O(history))
        rows = conn.execute(
            "SELECT e.key, e.seq, e.off, e.len FROM json_each(?) AS j "
            "CROSS JOIN events AS e INDEXED BY events_key WHERE e.id = ? AND e.key = j.value",
            (orjson.dumps(sorted(set(keys))).decode(), sid),
        )
    return [(str(k), (int(a), int(b), int(c))) for k, a, b, c in rows]
