"""Reading a backup: every line decoded and checked, the digest recomputed, streamed.

Two halves, so that reading and parsing overlap and no block of parsed sessions is held:

* :class:`HashedLines` (synchronous; all its calls run in one worker thread of its own)
  reads the file -- decompressing it -- in blocks of complete lines and keeps the running
  SHA-256 of the content, which covers every line but the file's last (the trailer's
  place). It hands the lines over in :class:`Segment` s, each with the digest of the
  content up to its end. While the event loop parses one segment, the thread reads,
  decompresses and hashes the next (file reads, zlib, zstd and hashlib release the GIL).
* :class:`BackupScan` (on the event loop) decodes and checks one line at a time, and
  :func:`scan_backup` hands each item to its consumer at once: a line's objects live only
  as long as the consumer keeps them (a write batch), never a whole block of them.

Any problem raises :class:`IntegrityError` naming the file and line
(:class:`UnsupportedFormatError` for a newer format), so a backup that is corrupt,
truncated, or not a backup at all is refused as a whole.

A restore reads the file twice: verify, then write. The first pass returns each segment's
digest (:class:`Verified`: 32 bytes per 256 KiB of content); the second pass checks every
segment against it *before* using a line of it, so it repeats none of the checks: a file
changed between the passes is refused before anything of the changed part is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson

from ..codec import MAX_EVENT, MAX_SESSION, checkpoint_digest
from ..driver import Limits
from ..errors import (
    IntegrityError,
    InvalidArgumentError,
    QuotaExceededError,
    SessionStoreError,
)
from ..validation import (
    validate_label,
    validate_processor_id,
    validate_session_id,
    validate_tags,
)
from ._format import (
    CheckpointItem,
    EventsItem,
    Header,
    Item,
    SessionItem,
    Trailer,
    decode_header,
    decode_line,
)
from ._results import BackupInfo
from ._streams import LineReader

__all__ = ["BackupScan", "HashedLines", "Verified", "info_from", "resolve_source", "scan_backup"]

T = TypeVar("T")
_DIGEST = hashlib.sha256().digest_size
_HASH_LINES = 128  # lines hashed per update


def info_from(
    path: Path, header: Header, compression: str, trailer: Trailer | None, *, verified: bool
) -> BackupInfo:
    """A :class:`BackupInfo` from a parsed header and (optional) trailer."""
    return BackupInfo(
        path=str(path),
        format_version=header.format_version,
        created_at=header.created_at,
        source=header.source,
        driver=header.driver,
        namespace=header.namespace,
        filter=header.filter,
        include_expired=header.include_expired,
        sessionstore_version=header.sessionstore_version,
        compression=compression,
        size=os.stat(path).st_size,
        sessions=None if trailer is None else trailer.sessions,
        events=None if trailer is None else trailer.events,
        checkpoints=None if trailer is None else trailer.checkpoints,
        sha256=None if trailer is None else trailer.sha256,
        complete=trailer is not None,
        verified=verified,
    )


# --------------------------------------------------------------------------- lines


@dataclass(slots=True)
class Segment:
    """Complete lines of the file, in order.

    ``digest`` is the SHA-256 of the content from the first byte through these lines.
    The ``final`` segment is the file's last line alone, which the digest never covers
    (it is the trailer's place): its ``digest`` is that of all the content before it.
    """

    lines: list[bytes]
    digest: bytes
    final: bool = False


class HashedLines:
    """The lines of a backup file in segments, hashed as they are read (see the module).

    Synchronous and blocking: :class:`SegmentStream` runs every call in one thread.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.reader = LineReader(path, name)
        self._blocks = self.reader.blocks()
        self._hash = hashlib.sha256()
        self._held: bytes | None = None  # the last line read: hashed once another follows
        self._done = False

    @property
    def compression(self) -> str:
        """The file's compression (from its first bytes)."""
        return self.reader.compression

    def next(self) -> Segment | None:
        """The next segment; ``None`` after the final one (or for an empty file)."""
        if self._done:
            return None
        for lines in self._blocks:
            if self._held is not None:
                lines.insert(0, self._held)
            self._held = lines.pop()
            if lines:
                for start in range(0, len(lines), _HASH_LINES):  # no copy of the whole block
                    self._hash.update(b"\n".join(lines[start : start + _HASH_LINES]))
                    self._hash.update(b"\n")
                return Segment(lines, self._hash.digest())
        self._done = True
        if self._held is None:
            return None
        return Segment([self._held], self._hash.digest(), final=True)

    def close(self) -> None:
        """Release the file."""
        self.reader.close()


class SegmentStream:
    """:class:`HashedLines` driven from async code, reading one segment ahead.

    Every call on the :class:`HashedLines` (opening, reading, closing) runs in one
    dedicated worker thread, in order, so the file is never touched by two threads, and
    closing waits for a read still under way even when the caller was cancelled.
    """

    def __init__(self, path: Path, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sessionstore-backup-read")
        self._opened = self._pool.submit(HashedLines, path, name)
        self._ahead: Future[Segment | None] | None = None
        self._lines: HashedLines | None = None

    async def _wait(self, future: Future[T]) -> T:
        return await asyncio.wrap_future(future)

    @property
    def compression(self) -> str:
        """The file's compression (after the first :meth:`next`)."""
        assert self._lines is not None
        return self._lines.compression

    async def next(self) -> Segment | None:
        """The next segment (``None`` at the end); the one after it is read meanwhile."""
        if self._lines is None:
            self._lines = await self._wait(self._opened)
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            ahead = self._pool.submit(self._lines.next)
        segment = await self._wait(ahead)
        if segment is not None and not segment.final:
            self._ahead = self._pool.submit(self._lines.next)
        return segment

    async def aclose(self) -> None:
        """Close the file once any read under way is done; stop the thread."""

        def close() -> None:
            if self._opened.exception() is None:  # waits for the open (same thread: done)
                self._opened.result().close()

        closing = self._pool.submit(close)
        self._pool.shutdown(wait=False)
        if self._ahead is not None:
            self._ahead.cancel()  # not started yet: never runs; running: finishes first
        await asyncio.shield(self._wait(closing))


# --------------------------------------------------------------------------- checks


class BackupScan:
    """The checks of one pass over a backup, one line at a time.

    Checks, besides each line's own structure: the header comes first and the trailer
    last; session ids are valid and strictly ascending (so a session appears once);
    checkpoints and events follow their session; events have ascending seqs up to
    ``last_seq`` (gaps allowed) and are exactly ``event_count`` of them; checkpoint
    digests match; the trailer's counts and the content's SHA-256 match. With
    ``limits``, payloads must also fit the destination store's size limits. A
    ``trusted`` scan (the second pass of a restore, whose segments were checked against
    the first pass's digests) only decodes.
    """

    def __init__(self, path: Path, *, limits: Limits | None = None, trusted: bool = False) -> None:
        self.path = path
        self.name = str(path)  # as given: the error names the file the user named
        self.limits = limits
        self.trusted = trusted
        self.header: Header | None = None
        self.trailer: Trailer | None = None
        self.sessions = 0
        self._line = 0
        self._events = self._checkpoints = 0
        self._current: SessionItem | None = None
        self._next_seq = 0
        self._seen_events = 0
        self._last_id = ""

    def _where(self, line: int | None = None) -> str:
        return f"{self.name}, line {self._line if line is None else line}"

    def line(self, raw: bytes) -> Item | None:
        """The checked item of the next line (``None`` for the header)."""
        self._line += 1
        if self._line == 1:
            if not self.trusted:
                self.header = decode_header(raw, self._where())
            return None
        if self.trusted:  # checked by the first pass, and compared with it
            parsed = decode_line(raw, self.name)
            if isinstance(parsed, SessionItem):
                self.sessions += 1
            return None if isinstance(parsed, Trailer) else parsed
        parsed = decode_line(raw, self._where())
        if isinstance(parsed, Trailer):
            raise IntegrityError("data after the trailer", self._where(self._line + 1))
        return self._check(parsed, len(raw))

    def last(self, raw: bytes, digest: bytes) -> None:
        """The file's last line: the trailer, checked against the counts and ``digest``."""
        self._line += 1
        where = self._where()
        if self._line == 1:
            self.header = decode_header(raw, where)
            parsed = None
        else:
            parsed = decode_line(raw, where)
        if not isinstance(parsed, Trailer):
            if parsed is not None:
                self._check(parsed, len(raw))  # its own problems first
            raise IntegrityError(f"truncated: no trailer after line {self._line}", self.name)
        self._end_session()
        got = (self.sessions, self._events, self._checkpoints, self._line - 1)
        want = (parsed.sessions, parsed.events, parsed.checkpoints, parsed.lines)
        if got != want:
            raise IntegrityError(
                "content does not match the trailer's counts (sessions, events, checkpoints, "
                f"lines): read {got}, trailer says {want}",
                where,
            )
        if digest.hex() != parsed.sha256:
            raise IntegrityError(
                "SHA-256 of the content does not match the trailer: the file was altered",
                where,
            )
        self.trailer = parsed

    def _check(self, item: SessionItem | CheckpointItem | EventsItem, size: int) -> Item:
        """Check ``item``, decoded from a line of ``size`` bytes.

        A payload is never longer encoded than the line that holds it, so the payloads
        of a line that fits the limits are not encoded again to be measured.
        """
        try:
            if isinstance(item, SessionItem):
                return self._check_session(item, size)
            current = self._current
            if current is None:
                raise IntegrityError("a record before the first session", self._where())
            sid = current.session.id
            if isinstance(item, CheckpointItem):
                cp = item.checkpoint
                validate_session_id(cp.id, "checkpoint id")
                validate_label(cp.label)
                if cp.session_id != sid:
                    raise IntegrityError(f"checkpoint of {cp.session_id!r} under {sid!r}", "")
                if self._seen_events:
                    raise IntegrityError("checkpoint after the session's events", "")
                if checkpoint_digest(cp) != cp.digest:
                    raise IntegrityError(f"checkpoint {cp.id!r}: digest does not match", "")
                self._checkpoints += 1
                return item
            if item.session_id != sid:
                raise IntegrityError(f"events of {item.session_id!r} under {sid!r}", "")
            limit = None if self.limits is None else self.limits.max_event_bytes
            if limit is not None and size <= limit:
                limit = None  # every event fits
            last_seq = current.session.last_seq
            for event in item.events:
                if not self._next_seq <= event.seq <= last_seq:
                    raise IntegrityError(
                        f"event seq {event.seq} out of order (expected {self._next_seq} to "
                        f"{last_seq}, ascending)",
                        "",
                    )
                self._next_seq = event.seq + 1
                if limit is not None and (size := len(orjson.dumps(event.data))) > limit:
                    raise QuotaExceededError(
                        f"{self._where()}: event {event.seq} of {sid!r} is {size} bytes "
                        f"encoded, over the destination's max_event_bytes ({limit})",
                        option=MAX_EVENT,
                    )
            self._seen_events += len(item.events)
            if self._seen_events > current.session.event_count:
                raise IntegrityError("more events than the session's event_count", "")
            self._events += len(item.events)
            return item
        except (IntegrityError, InvalidArgumentError) as exc:
            raise self._wrap(exc) from None

    def _wrap(self, exc: SessionStoreError) -> IntegrityError:
        if isinstance(exc, IntegrityError) and exc.record:
            return exc
        message = exc.args[0] if isinstance(exc, IntegrityError) else str(exc)
        return IntegrityError(message, self._where())

    def _check_session(self, item: SessionItem, line_size: int) -> SessionItem:
        self._end_session()
        s = item.session
        validate_session_id(s.id)
        if s.id <= self._last_id:
            raise IntegrityError(f"session {s.id!r} is out of order or repeated", "")
        validate_processor_id(s.processor_id)
        validate_tags(s.tags)
        if s.group is not None:
            validate_session_id(s.group, "group")
        if s.version < 1 or s.event_count > s.last_seq:
            raise IntegrityError(f"session {s.id!r} has inconsistent version/event counters", "")
        if self.limits is not None and line_size > self.limits.max_session_bytes:
            size = len(orjson.dumps(s.data)) + len(orjson.dumps(s.metadata))
            if size > self.limits.max_session_bytes:
                raise QuotaExceededError(
                    f"{self._where()}: session {s.id!r} is {size} bytes encoded, over the "
                    f"destination's max_session_bytes ({self.limits.max_session_bytes})",
                    option=MAX_SESSION,
                )
        self._last_id = s.id
        self._current = item
        self._next_seq = 1  # seqs ascend, may have gaps, end at or before last_seq
        self._seen_events = 0
        self.sessions += 1
        return item

    def _end_session(self) -> None:
        current = self._current
        if current is not None and self._seen_events != current.session.event_count:
            raise IntegrityError(
                f"session {current.session.id!r} has {self._seen_events} events, its "
                f"event_count says {current.session.event_count}",
                self._where(),
            )
        self._current = None


# --------------------------------------------------------------------------- passes


@dataclass(frozen=True)
class Verified:
    """What a checking pass found: the verified info and each segment's digest."""

    info: BackupInfo
    digests: bytes  # the digests of the segments before the final one, concatenated

    def check(self, index: int, segment: Segment, name: str) -> None:
        """Refuse a segment that differs from what was verified (the file changed)."""
        if segment.final:
            same = index * _DIGEST == len(self.digests) and segment.digest.hex() == self.info.sha256
        else:
            same = self.digests[index * _DIGEST : (index + 1) * _DIGEST] == segment.digest
        if not same:
            raise IntegrityError(
                "the file changed since it was verified (do not change a backup while it is "
                "restored); nothing of the changed part was written",
                name,
            )


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """The backup file to read (it must exist)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidArgumentError(f"no backup file at {str(path)!r}")
    return path


async def scan_backup(
    path: Path,
    *,
    limits: Limits | None = None,
    feed: Callable[[Item], Awaitable[None]] | None = None,
    verified: Verified | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Verified:
    """One pass over the backup at ``path``: every item to ``feed`` as soon as it is read.

    Without ``verified`` every line is checked (see :class:`BackupScan`) and the result
    is the verified info with the segments' digests. With the :class:`Verified` of an
    earlier pass, each segment is compared with it before any of its items is fed, and
    nothing else is checked again. ``on_progress(sessions read)`` is called after each
    segment. Any problem raises :class:`IntegrityError`.
    """
    scan = BackupScan(path, limits=limits, trusted=verified is not None)
    stream = SegmentStream(path, scan.name)
    digests = bytearray()
    index = 0
    try:
        while True:
            segment = await stream.next()
            if segment is None:
                raise IntegrityError("empty file: not a sessionstore backup", scan.name)
            if verified is not None:
                verified.check(index, segment, scan.name)
            if segment.final:
                if verified is None:
                    scan.last(segment.lines[0], segment.digest)
                break
            digests += segment.digest
            index += 1
            lines, segment = segment.lines, None
            for raw in lines:
                item = scan.line(raw)
                if item is not None and feed is not None:
                    await feed(item)
            del lines  # not held while the next segment is read
            if on_progress is not None:
                on_progress(scan.sessions)
            await asyncio.sleep(0)  # parsing holds the event loop: let others run
        compression = stream.compression
    finally:
        await stream.aclose()
    if verified is not None:
        return verified
    assert scan.header is not None and scan.trailer is not None
    info = info_from(path, scan.header, compression, scan.trailer, verified=True)
    return Verified(info, bytes(digests))
