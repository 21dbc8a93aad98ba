"""Reading events: windows from the log, filtered pages and keys through the event index.

Every read is one call in one worker-thread hop: the session's state is read once, its
liveness checked against the store's clock (``now``; ``None`` for the store's own reads),
and the events come from the same log generation (see ``_session.read_with_log`` for how
a read that raced a writer is retried). A plain window (``after_seq``, ``before_seq``,
``limit``, ``last``) needs no index: the log holds exactly the kept events in ``seq``
order, found by binary search. Types, time bounds and keys go through the event index
(``_event_index``), whose rows are trusted only when their cover matches the state just
read; a stale cover is rebuilt under the session's lock, and the read then runs under
that lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar

from sessionstore import Event, IntegrityError, SessionNotFoundError
from sessionstore.driver import EventFacts, EventRequest, session_tag

from ._event_index import (
    PREFIX,
    STALE,
    Cover,
    EventChange,
    EventQuery,
    Hit,
    classify,
    cover_of,
    lookup_keys,
    query_rows,
    read_cover,
    row_of,
)
from ._index import Index
from ._layout import Layout
from ._locks import Held
from ._log import (
    KEEP_PAGE,
    Changed,
    LogReader,
    Window,
    check_ascending,
    read_with_log,
    window_events,
)
from ._session import (
    State,
    read_state,
)

__all__ = ["EventReads"]

Tag = tuple[int, datetime, int, int] | None


T = TypeVar("T")


class _Stale(Exception):
    """The event index's rows do not describe the log just read."""


@dataclass(slots=True)
class _View:
    """The event index as seen with one state of a session (``reader``: its committed
    log). ``hits`` proves the cover against that state, indexes the lines appended since
    it when it is a prefix, and runs a query in a read transaction that sees that same
    cover; a cover that cannot be proven raises :class:`_Stale`."""

    index: Index
    state: State
    reader: LogReader | None

    def hits(self, select: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.index.conn()
        sid = self.state.sid
        for _ in range(3):
            cover = read_cover(conn, sid)
            status = classify(cover, self.state, self.reader)
            if status == STALE:
                raise _Stale
            assert cover is not None
            if status == PREFIX:
                cover = self.catch_up(cover)
            conn.execute("BEGIN")
            try:
                seen = read_cover(conn, sid)
                found = select(conn)
            finally:
                conn.execute("COMMIT")
            if seen == cover:
                return found
        raise _Stale  # the cover kept moving: read under the lock

    def catch_up(self, cover: Cover) -> Cover:
        """Index the lines after ``cover`` (a proven prefix); the cover that gives. The
        update is conditional on ``cover``: whoever moved it first wins, and the caller
        sees the cover did not become this one."""
        reader = self.reader
        assert reader is not None
        rows = [
            row_of(reader.decode(raw), off, len(raw))
            for off, raw in reader.lines(cover[2], reader.end)
        ]
        new = (cover[0], cover[1], reader.end, rows[-1][0] if rows else cover[3])
        self.index.write([], [EventChange(self.state.sid, cover, new, rows)])
        return new


def _lines_at(reader: LogReader, hits: Sequence[Hit]) -> Iterator[Event]:
    """The events at ``hits`` (ascending offsets), lines less than ``_GAP`` bytes apart
    read in one go (a page of one type is spread over the lines between); each line must
    hold the seq its row names."""
    keep = len(hits) <= KEEP_PAGE
    i = 0
    while i < len(hits):
        j = i
        while j + 1 < len(hits) and hits[j + 1][1] - (hits[j][1] + hits[j][2]) <= _GAP:
            j += 1
        start, stop = hits[i][1], hits[j][1] + hits[j][2]
        if stop > reader.end:
            raise Changed
        buf = reader.read(start, stop)
        for seq, off, length in hits[i : j + 1]:
            event = reader.decode(buf[off - start : off - start + length], keep=keep)
            if event.seq != seq:
                raise Changed
            yield event
        i = j + 1


#: Lines of a page at most this many bytes apart are read with one ``pread``.
_GAP: Final = 1 << 12


@dataclass(slots=True)
class _Facts:
    """Fresh answers to one session's :class:`EventRequest` (merged on success)."""

    tail: list[Event] | None = None
    seq_tail: list[int] | None = None
    after: dict[int, list[int]] = field(default_factory=dict)
    by_seq: dict[int, Event | None] = field(default_factory=dict)
    by_key: dict[str, Event | None] = field(default_factory=dict)


class EventReads:
    """The engine's event reads (the ``events`` collaborator): built from the layout, the
    index and three engine callables - ``locked`` (hold session locks), ``mark`` (list
    the sessions this thread is about to lock) and ``settle`` (step past unfinished
    transactions involving some sessions)."""

    def __init__(
        self,
        layout: Layout,
        index: Index,
        *,
        locked: Callable[[set[str]], AbstractContextManager[Held]],
        mark: Callable[[list[str]], None],
        settle: Callable[[set[str]], object],
    ) -> None:
        self.layout = layout
        self.index = index
        self._locked = locked
        self._mark = mark
        self._settle = settle

    # ------------------------------------------------------------------ plumbing

    def _run(
        self,
        sid: str,
        now: datetime | None,
        fn: Callable[[State, LogReader | None, _View], T],
    ) -> T:
        """``fn`` on a consistent read of ``sid`` (live at ``now``, if given)."""
        self._settle({sid})

        def read(state: State, reader: LogReader | None) -> T:
            if now is not None and (state.session is None or state.session.is_expired(now)):
                raise SessionNotFoundError(sid)
            return fn(state, reader, _View(self.index, state, reader))

        try:
            return read_with_log(self.layout, sid, read)
        except (_Stale, Changed):
            pass  # the index is behind, or writers kept changing the log: under the lock
        try:
            return self._rebuilt(sid, read)
        except Changed:
            raise IntegrityError("event log is out of order", sid) from None

    def _rebuilt(self, sid: str, read: Callable[[State, LogReader | None], T]) -> T:
        """Bring ``sid``'s event rows up to its log under its lock (indexing what was
        appended, or all of it when the cover cannot be proven), then read there."""
        self._mark([sid])
        with self._locked({sid}):
            state = read_state(self.layout, sid)
            reader = None
            try:
                if state.doc is None or state.session is None:
                    self.index.write([], [EventChange(sid, None, None)])
                    return read(state, reader)
                if state.valid_end:
                    reader = LogReader.of(state)
                cover = read_cover(self.index.conn(), sid)
                status = classify(cover, state, reader)
                if status == PREFIX:
                    assert cover is not None
                    _View(self.index, state, reader).catch_up(cover)
                elif status == STALE:
                    rows = []
                    if reader is not None:
                        for off, raw in reader.lines(0, reader.end):
                            rows.append(row_of(reader.decode(raw), off, len(raw)))
                    whole = cover_of(state, rows[-1][0] if rows else 0)
                    self.index.write([], [EventChange(sid, None, whole, rows)])
                return read(state, reader)
            finally:
                if reader is not None:
                    reader.close()
                state.close()

    # ------------------------------------------------------------------ reads

    def window(self, sid: str, now: datetime | None, window: Window) -> list[Event]:
        """A plain window of the log (no index)."""

        def read(state: State, reader: LogReader | None, _view: _View) -> list[Event]:
            if reader is None or state.session is None:
                return []
            return window_events(reader, window, state.session.last_seq)

        return self._run(sid, now, read)

    def query(self, sid: str, now: datetime | None, q: EventQuery) -> list[Event]:
        """A filtered page through the event index."""

        def read(state: State, reader: LogReader | None, view: _View) -> list[Event]:
            if reader is None or state.session is None:
                return []
            hits = view.hits(lambda conn: query_rows(conn, sid, q))
            events = list(_lines_at(reader, hits))
            check_ascending(events, state.session.last_seq)
            return events

        return self._run(sid, now, read)

    def find(
        self, sid: str, now: datetime | None, seqs: Collection[int], keys: Collection[str]
    ) -> list[Event]:
        """The stored events with one of ``seqs`` or ``keys``, ascending."""

        def read(state: State, reader: LogReader | None, view: _View) -> list[Event]:
            if reader is None:
                return []
            found = {e.seq: e for e in _by_seqs(reader, seqs)}
            for event in _by_keys(reader, view, sid, keys).values():
                if event is not None:
                    found[event.seq] = event
            return [found[q] for q in sorted(found)]

        return self._run(sid, now, read)

    def seqs(self, sid: str, after_seq: int, last: int | None) -> list[int]:
        """The seqs above ``after_seq`` (the newest ``last`` of them), ascending."""
        return [e.seq for e in self.window(sid, None, Window(after_seq, None, None, last))]

    def facts(self, requests: Mapping[str, EventRequest], facts: dict[str, EventFacts]) -> None:
        """Answer the planner's ``requests`` into ``facts``, each session in one read."""
        for sid, req in requests.items():
            tag, fresh = self._run(sid, None, partial_facts(facts.get(sid), req))
            have = facts.get(sid)
            if have is None or have.tag != tag:
                have = facts[sid] = EventFacts(tag)
            if fresh is None:
                continue
            if fresh.tail is not None:
                have.tail, have.tail_n = fresh.tail, req.tail
            if fresh.seq_tail is not None:
                have.seq_tail, have.seq_tail_n = fresh.seq_tail, req.seq_tail
            have.after.update(fresh.after)
            have.by_seq.update(fresh.by_seq)
            have.by_key.update(fresh.by_key)


def partial_facts(
    have: EventFacts | None, req: EventRequest
) -> Callable[[State, LogReader | None, _View], tuple[Tag, _Facts | None]]:
    """The read answering what ``have`` (read at another state, maybe) lacks of ``req``."""

    def read(state: State, reader: LogReader | None, view: _View) -> tuple[Tag, _Facts | None]:
        tag = session_tag(state.session)
        if tag is None:
            return tag, None
        missing = req if have is None or have.tag != tag else have.missing(req)
        if missing is None:
            return tag, None
        out = _Facts()
        if missing.tail:
            out.tail = _tail(reader, missing.tail)
        if missing.seq_tail:
            out.seq_tail = [e.seq for e in _tail(reader, missing.seq_tail)]
        for after in missing.after:
            out.after[after] = [e.seq for e in _after(reader, after)]
        if missing.seqs:
            got = {e.seq: e for e in _by_seqs(reader, missing.seqs)} if reader else {}
            out.by_seq = {q: got.get(q) for q in missing.seqs}
        if missing.keys:
            out.by_key = (
                _by_keys(reader, view, state.sid, missing.keys)
                if reader is not None
                else dict.fromkeys(missing.keys)
            )
        return tag, out

    return read


def _tail(reader: LogReader | None, n: int) -> list[Event]:
    if reader is None:
        return []
    out: list[Event] = []
    keep = n <= KEEP_PAGE
    for _, raw in reader.lines_back(reader.end):
        if len(out) >= n:
            break
        out.append(reader.decode(raw, keep=keep))
    out.reverse()
    return out


def _after(reader: LogReader | None, after: int) -> list[Event]:
    if reader is None:
        return []
    off = reader.offset_after(after)
    return [reader.decode(raw) for _, raw in reader.lines(off, reader.end)]


def _by_seqs(reader: LogReader, seqs: Collection[int]) -> Iterator[Event]:
    """The stored events of ``seqs``: a binary search each (O(log size))."""
    for seq in sorted(seqs):
        off = reader.offset_after(seq - 1)
        if off < reader.end:
            event = reader.decode(next(reader.lines(off, reader.end))[1], keep=True)
            if event.seq == seq:
                yield event


def _by_keys(
    reader: LogReader, view: _View, sid: str, keys: Collection[str]
) -> dict[str, Event | None]:
    """The stored event of each of ``keys`` (None: none), through the index."""
    if not keys:
        return {}
    wanted = sorted(keys)
    hits = view.hits(lambda conn: lookup_keys(conn, sid, wanted))
    out: dict[str, Event | None] = dict.fromkeys(wanted)
    located = sorted((hit, key) for key, hit in hits)
    events = list(_lines_at(reader, [hit for hit, _ in located]))
    for (_, key), event in zip(located, events, strict=True):
        if event.key != key:
            raise Changed
        out[key] = event
    return out
