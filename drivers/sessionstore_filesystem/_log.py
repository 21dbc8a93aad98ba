"""Reading one session's event log: lines forwards and backwards, by offset and by
sequence number, and a read of the state and its log that is consistent without the
session's lock.

The log holds exactly the kept events in ``seq`` order (gaps where events were removed),
so a window of it (``after_seq``, ``before_seq``, ``limit``, ``last``) is read from the
log alone: backwards from its end, or from a position a binary search over byte offsets
found. A reader without the lock can meet a writer that replaced the document and cut
the log in place (a pop, a truncate): :func:`read_with_log` reads again when the
document changed under it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

import orjson

from sessionstore import Event, IntegrityError
from sessionstore.planning import fast_event

from ._file_formats import decode_line
from ._fs import READ_FLAGS, pread_all
from ._layout import Layout
from ._session import END_CHUNK, State, doc_key_now, log_name, read_state

__all__ = [
    "KEEP_PAGE",
    "Changed",
    "LogReader",
    "Window",
    "check_ascending",
    "doc_changed",
    "iter_lines",
    "read_with_log",
    "window_events",
]

#: How much a forward or longer backward read takes at a time.
CHUNK: Final = 1 << 16
#: A binary search over the log stops when its window is this small (then lines are read).
_NEAR: Final = 1 << 11
#: How much a binary search's probe reads at a time.
_PROBE: Final = 1 << 10
#: ``offset_after`` reads lines backwards from the end while the seq it looks for is at
#: most this far below theirs (at most this many lines: seqs grow by one or more a line).
_BACK_LINES: Final = 32

T = TypeVar("T")

#: Lines up to this long are remembered once decoded (see :class:`_Decoded`).
_DECODED_LINE_MAX: Final = 1 << 10
#: How many decoded lines are remembered (process-wide; the oldest go first).
_DECODED_LINES: Final = 2048
#: Pages of at most this many events keep their lines decoded (a bigger read, a whole
#: log or an index rebuild, only looks lines up: it would push out what is read again).
KEEP_PAGE: Final = 100


class _Decoded:
    """Event lines already decoded, by their exact bytes (the checksum included).

    Decoding a line (its checksum, the JSON, the event record's checks) is most of what
    reading a page of the log costs, ~5 µs a line against ~1 µs to parse the JSON alone,
    and the lines a store reads are often the ones it read a moment ago (the tail of a
    session someone polls, the window a reader pages through again). A line's meaning
    depends on its bytes alone, so bytes equal to a line decoded before decode the same:
    they are not checked again, only their data is parsed afresh (no two callers share a
    dict). Bytes that differ in any way (a corrupt copy, another session's line) are
    another key, decoded and checked in full. Only lines up to ``_DECODED_LINE_MAX``
    bytes are kept, at most ``_DECODED_LINES`` of them (~1 MB with 300-byte lines; 4 MB
    at most), oldest first out, and only lines of small pages (``keep``, see
    :data:`KEEP_PAGE`): keeping a line costs its first read ~2 µs more."""

    def __init__(self) -> None:
        #: decoded lines by their bytes: (seq, type, at, data JSON, key); read without
        #: the lock (a lookup), changed under it
        self.lines: OrderedDict[bytes, tuple[int, str, datetime, bytes, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def decode(self, raw: bytes, record: str, keep: bool) -> Event:
        hit = self.lines.get(raw)
        if hit is not None:
            seq, etype, at, data, key = hit
            return fast_event(seq, etype, at, orjson.loads(data), key)
        event = decode_line(raw, record)[0]
        if keep and len(raw) <= _DECODED_LINE_MAX:
            entry = (event.seq, event.type, event.at, orjson.dumps(event.data), event.key)
            with self._lock:
                lines = self.lines
                lines[raw] = entry
                if len(lines) > _DECODED_LINES:
                    lines.popitem(last=False)
        return event

    def after_fork(self) -> None:
        """In a forked child: a new lock (a thread of the parent may have held it)."""
        self._lock = threading.Lock()


_DECODED = _Decoded()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_DECODED.after_fork)


def iter_lines(state: State, gen: int, start: int, end: int) -> Iterator[Event]:
    """The events of the lines in bytes ``[start, end)`` of log ``gen`` (line bounds)."""
    if start >= end:
        return
    reader = LogReader(state.dir_fd, state.sid, gen, end)
    try:
        for _, raw in reader.lines(start, end):
            yield reader.decode(raw)
    finally:
        reader.close()


class LogReader:
    """One log generation opened for reading, up to ``end`` (the end of its committed
    part): lines forwards and backwards with their offsets, a line by offset, and the
    offset of a sequence number found by binary search (sequence numbers grow along the
    log, with gaps where events were deleted)."""

    __slots__ = ("cache", "cache_at", "end", "fd", "owned", "record")

    def __init__(
        self,
        dir_fd: int,
        sid: str,
        gen: int,
        end: int,
        *,
        fd: int = -1,
        cache: tuple[int, bytes] | None = None,
    ) -> None:
        self.record = f"{sid}/{log_name(gen)}"
        self.end = end
        self.owned = fd < 0
        self.fd = os.open(log_name(gen), READ_FLAGS, dir_fd=dir_fd) if fd < 0 else fd
        self.cache_at, self.cache = cache if cache is not None else (0, b"")

    @classmethod
    def of(cls, state: State) -> LogReader:
        """The committed log of ``state`` (read with the descriptor and the end that
        ``read_state`` already has, when it has them)."""
        assert state.doc is not None
        return cls(
            state.dir_fd, state.sid, state.doc.gen, state.valid_end,
            fd=state.read_fd, cache=state.end_chunk,
        )  # fmt: skip

    def close(self) -> None:
        if self.fd >= 0 and self.owned:
            os.close(self.fd)
        self.fd = -1

    def decode(self, raw: bytes, *, keep: bool = False) -> Event:
        """The event of line ``raw``, checked (or as checked before: see ``_Decoded``);
        ``keep``: remember it decoded (a line of a small page)."""
        return _DECODED.decode(raw, self.record, keep)

    def read(self, start: int, stop: int) -> bytes:
        at = self.cache_at
        if at <= start and stop <= at + len(self.cache):
            return self.cache[start - at : stop - at]
        return pread_all(self.fd, start, stop, self.record)

    def lines(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, line without its newline)`` of the lines in ``[start, end)``."""
        rest = b""
        rest_at = pos = start
        while pos < end:
            chunk = self.read(pos, min(end, pos + CHUNK))
            pos += len(chunk)
            buf = rest + chunk if rest else chunk
            at = 0
            while (nl := buf.find(b"\n", at)) >= 0:
                yield rest_at + at, buf[at:nl]
                at = nl + 1
            rest, rest_at = buf[at:], rest_at + at
        if rest:
            raise IntegrityError("event log region does not end at a line end", self.record)

    def lines_back(self, end: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, line)`` of the lines before ``end`` (a line start), newest first.

        The first read is small (a page of recent events is usually a few KiB), later
        ones grow to ``CHUNK``."""
        if end <= 0:
            return
        lo = max(0, end - END_CHUNK)
        buf = self.read(lo, end)  # bytes [lo, lo + len(buf)); lines in buf[:stop] unread
        if not buf.endswith(b"\n"):
            raise IntegrityError("event log region does not end at a line end", self.record)
        stop = len(buf)
        while True:
            nl = buf.rfind(b"\n", 0, stop - 1)
            if nl >= 0:
                yield lo + nl + 1, buf[nl + 1 : stop - 1]
                stop = nl + 1
            elif lo == 0:
                yield 0, buf[: stop - 1]
                return
            else:
                start = max(0, lo - CHUNK)
                buf = self.read(start, lo) + buf[:stop]
                stop = len(buf)
                lo = start

    def last_lines(self, end: int, n: int) -> list[bytes] | None:
        """The last ``n`` lines before ``end`` (a line start), oldest first, when the
        first chunk ``lines_back`` would read holds them all (or the whole log); else
        None (read them with ``lines_back``)."""
        if end <= 0:
            return []
        lo = max(0, end - END_CHUNK)
        buf = self.read(lo, end)
        if not buf.endswith(b"\n"):
            raise IntegrityError("event log region does not end at a line end", self.record)
        parts = buf.split(b"\n")  # the last part is empty; the first may be cut (lo > 0)
        whole = len(parts) - 1 if lo == 0 else len(parts) - 2
        if whole < n and lo > 0:
            return None
        return parts[-1 - min(n, whole) : -1]

    def _line_from(self, pos: int, end: int) -> tuple[int, int] | None:
        """``(start, stop)`` of the first whole line starting at or after ``pos`` (``stop``
        is past its newline), or ``None`` when no line starts before ``end``."""
        start = pos
        if pos > 0:  # skip to the byte after the previous newline
            while True:
                chunk = self.read(start - 1, min(end, start - 1 + _PROBE))
                cut = chunk.find(b"\n")
                if cut >= 0:
                    start = start - 1 + cut + 1
                    break
                start += len(chunk)
                if start >= end:
                    return None
        if start >= end:
            return None
        stop = start
        while True:
            chunk = self.read(stop, min(end, stop + _PROBE))
            cut = chunk.find(b"\n")
            if cut >= 0:
                return start, stop + cut + 1
            stop += len(chunk)
            if stop >= end:
                raise IntegrityError("event log region does not end at a line end", self.record)

    def seq_of(self, raw: bytes) -> int:
        """The ``seq`` of a line, read from its start without checking the line (to find
        positions; what is returned is decoded and checked)."""
        at = raw.find(b'"seq":', 0, 32)
        if at >= 0:
            stop = raw.find(b",", at + 6, at + 32)
            digits = raw[at + 6 : stop]
            if stop > 0 and digits.isdigit():
                return int(digits)
        return self.decode(raw).seq

    def near(self, seq: int, end: int | None = None) -> int:
        """A line start at or before the first line with a ``seq`` greater than ``seq``,
        less than ``_NEAR`` bytes before it.

        A binary search over byte positions: O(log size) line probes, so paging deep
        into a long history does not re-read it from the start."""
        end = self.end if end is None else end
        if seq <= 0:
            return 0
        lo, hi = 0, end  # every line before lo has seq <= seq; hi is a line start
        while hi - lo > _NEAR:
            found = self._line_from((lo + hi) // 2, hi)
            if found is None:
                break
            start, stop = found
            if self.seq_of(self.read(start, stop - 1)) <= seq:
                lo = stop
            else:
                hi = start
        return lo

    def offset_after(self, seq: int) -> int:
        """The exact offset of the first line with a ``seq`` greater than ``seq`` (the end
        when there is none). Near the end (a pop) the last lines are read backwards;
        elsewhere a binary search finds it."""
        after = self.end
        for off, raw in self.lines_back(self.end):
            line_seq = self.seq_of(raw)
            if line_seq <= seq:
                return after
            if line_seq - seq > _BACK_LINES:
                break  # far from the end (seqs grow by at least one a line): search
            after = off
        else:
            return after  # every line is after seq
        for off, raw in self.lines(self.near(seq), self.end):
            if self.seq_of(raw) > seq:
                return off
        return self.end


@dataclass(frozen=True, slots=True)
class Window:
    """Which events of a log to read: ``seq`` in ``(after_seq, before_seq)``, the first
    ``limit`` or the last ``last`` of them (neither: all)."""

    after_seq: int = 0
    before_seq: int | None = None
    limit: int | None = None
    last: int | None = None


class Changed(Exception):
    """What was read does not fit together: a writer changed the log meanwhile."""


def window_events(reader: LogReader, window: Window, last_seq: int) -> list[Event]:
    """The events of ``window`` from the log (no index needed: the log holds exactly the
    kept events, in ``seq`` order). Raises :class:`Changed` when the lines read do not
    fit the state they were read for (``last_seq``)."""
    if window.limit == 0 or window.last == 0:
        return []
    stop = reader.end
    if window.before_seq is not None:
        stop = reader.offset_after(window.before_seq - 1)
    out: list[Event] = []
    if window.last is not None:
        keep = window.last <= KEEP_PAGE
        raws = reader.last_lines(stop, window.last)
        if raws is not None:  # the usual page: one split of the chunk already read
            out = _decode_back(raws, reader.record, keep, window.after_seq)
        else:
            for _, raw in reader.lines_back(stop):
                if len(out) >= window.last:
                    break
                event = reader.decode(raw, keep=keep)
                if event.seq <= window.after_seq:
                    break
                out.append(event)
        out.reverse()
    else:
        keep = window.limit is not None and window.limit <= KEEP_PAGE
        for _, raw in reader.lines(reader.near(window.after_seq, stop), stop):
            event = reader.decode(raw, keep=keep)
            if event.seq <= window.after_seq:
                continue
            out.append(event)
            if window.limit is not None and len(out) >= window.limit:
                break
    check_ascending(out, last_seq)
    return out


def _decode_back(raws: list[bytes], record: str, keep: bool, after_seq: int) -> list[Event]:
    """The events of ``raws`` newest first, down to the first at or below ``after_seq``
    (left out): ``lines_back`` + ``decode`` with the decoded-line lookup inlined."""
    out: list[Event] = []
    known = _DECODED.lines
    loads = orjson.loads
    for raw in reversed(raws):
        hit = known.get(raw)
        if hit is None:
            event = _DECODED.decode(raw, record, keep)
        else:
            event = fast_event(hit[0], hit[1], hit[2], loads(hit[3]), hit[4])
        if event.seq <= after_seq:
            break
        out.append(event)
    return out


def check_ascending(events: list[Event], last_seq: int) -> None:
    """Raise :class:`Changed` unless ``events`` ascend and none is past ``last_seq``."""
    prev = 0
    for event in events:
        if event.seq <= prev or event.seq > last_seq:
            raise Changed
        prev = event.seq


def doc_changed(state: State) -> bool:
    """True when the document is no longer the one ``state`` was read from."""
    key = doc_key_now(state)
    return key is None or key != state.doc_key


_READ_ATTEMPTS: Final = 5


def read_with_log(layout: Layout, sid: str, fn: Callable[[State, LogReader | None], T]) -> T:
    """``fn(state, reader)`` on a consistent read of ``sid`` without its lock: the state
    and its committed log (``reader`` None: no events). Read again when a writer replaced
    the document meanwhile (a cut of the log rewrites bytes in place; a trim or delete
    writes a new generation): ``fn`` may raise :class:`Changed`, ``IntegrityError`` or
    ``FileNotFoundError`` for what it read, which count only if the document stayed.
    Raises :class:`Changed` when writers kept changing the session through every attempt
    (the caller reads under the lock then)."""
    for _ in range(_READ_ATTEMPTS):
        state = read_state(layout, sid, kept=True)
        try:
            reader = None
            try:
                if state.doc is not None and state.valid_end > 0:
                    reader = LogReader.of(state)
                result = fn(state, reader)
            except (Changed, IntegrityError, FileNotFoundError):
                if not doc_changed(state):
                    raise
                continue
            finally:
                if reader is not None:
                    reader.close()
            if state.doc is None or not doc_changed(state):
                return result
        finally:
            state.close()
    raise Changed
