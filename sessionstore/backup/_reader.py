"""Reading a backup: every line parsed and checked, the digest recomputed, in blocks.

:class:`BackupScan` is synchronous (it runs in a worker thread, one block at a time);
:func:`scan_backup` drives it from async code. Any problem raises :class:`IntegrityError`
naming the file and line (:class:`UnsupportedFormatError` for a newer format), so a
backup that is corrupt, truncated, or not a backup at all is refused as a whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from .._batch import Limits
from ..codec import checkpoint_digest
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

__all__ = ["BackupScan", "info_from", "scan_backup"]


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


class BackupScan:
    """One pass over a backup file.

    Checks, besides each line's own structure: the header comes first and the trailer
    last; session ids are valid and strictly ascending (so a session appears once);
    checkpoints and events follow their session; events are gap-free and exactly the
    ``event_count`` events ending at ``last_seq``; checkpoint digests match; the trailer's
    counts and SHA-256 match what was read. With ``limits``, payloads must also fit the
    destination store's size limits.
    """

    def __init__(self, path: Path, *, limits: Limits | None = None) -> None:
        self.path = path
        self.name = path.name
        self.limits = limits
        self.reader = LineReader(path, self.name)
        self.header: Header | None = None
        self.trailer: Trailer | None = None
        self._hash = hashlib.sha256()
        self._blocks = self.reader.blocks()
        self._line = 0
        self._sessions = self._events = self._checkpoints = 0
        self._current: SessionItem | None = None
        self._next_seq = 0
        self._seen_events = 0
        self._last_id = ""

    def _where(self, line: int | None = None) -> str:
        return f"{self.name}, line {self._line if line is None else line}"

    def next_block(self) -> list[Item] | None:
        """The items of the next block of lines; ``None`` once the trailer was checked."""
        try:
            lines = next(self._blocks)
        except StopIteration:
            if self.trailer is not None:
                return None
            raise IntegrityError(
                f"truncated: no trailer after line {self._line}", self.name
            ) from None
        items: list[Item] = []
        trailer_at: int | None = None
        for index, raw in enumerate(lines):
            self._line += 1
            if self.trailer is not None:
                raise IntegrityError("data after the trailer", self._where())
            if self.header is None:
                self.header = decode_header(raw, self._where())
                continue
            parsed = decode_line(raw, self._where())
            if isinstance(parsed, Trailer):
                trailer_at = index
                if index:
                    self._hash.update(b"\n".join(lines[:index]) + b"\n")
                self._end_session()
                self._check_trailer(parsed)
                self.trailer = parsed
                continue
            items.append(self._check(parsed))
        if trailer_at is None:
            self._hash.update(b"\n".join(lines) + b"\n")
        return items

    def _check(self, item: SessionItem | CheckpointItem | EventsItem) -> Item:
        try:
            if isinstance(item, SessionItem):
                return self._check_session(item)
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
            for event in item.events:
                if event.seq != self._next_seq:
                    raise IntegrityError(
                        f"event seq {event.seq} where {self._next_seq} was expected", ""
                    )
                self._next_seq += 1
                if limit is not None and (size := len(orjson.dumps(event.data))) > limit:
                    raise QuotaExceededError(
                        f"{self._where()}: event {event.seq} of {sid!r} is {size} bytes "
                        f"encoded, over the destination's max_event_bytes ({limit})"
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

    def _check_session(self, item: SessionItem) -> SessionItem:
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
        if self.limits is not None:
            size = len(orjson.dumps(s.data)) + len(orjson.dumps(s.metadata))
            if size > self.limits.max_session_bytes:
                raise QuotaExceededError(
                    f"{self._where()}: session {s.id!r} is {size} bytes encoded, over the "
                    f"destination's max_session_bytes ({self.limits.max_session_bytes})"
                )
        self._last_id = s.id
        self._current = item
        self._next_seq = s.last_seq - s.event_count + 1
        self._seen_events = 0
        self._sessions += 1
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

    def _check_trailer(self, trailer: Trailer) -> None:
        where = self._where()
        got = (self._sessions, self._events, self._checkpoints, self._line - 1)
        want = (trailer.sessions, trailer.events, trailer.checkpoints, trailer.lines)
        if got != want:
            raise IntegrityError(
                "content does not match the trailer's counts (sessions, events, checkpoints, "
                f"lines): read {got}, trailer says {want}",
                where,
            )
        if self._hash.hexdigest() != trailer.sha256:
            raise IntegrityError(
                "SHA-256 of the content does not match the trailer: the file was altered",
                where,
            )

    def info(self) -> BackupInfo:
        """The verified :class:`BackupInfo` (after the last block)."""
        assert self.header is not None and self.trailer is not None
        return info_from(
            self.path, self.header, self.reader.compression, self.trailer, verified=True
        )

    def close(self) -> None:
        """Release the file."""
        self.reader.close()


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """The backup file to read (it must exist)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidArgumentError(f"no backup file at {str(path)!r}")
    return path


async def scan_backup(
    path: Path, *, limits: Limits | None = None
) -> AsyncIterator[list[Item] | BackupInfo]:
    """Yield blocks of checked items, then the verified :class:`BackupInfo` last.

    Each block is read and parsed in a worker thread. Any problem raises
    :class:`IntegrityError` (nothing is yielded after it).
    """
    scan = await asyncio.to_thread(BackupScan, path, limits=limits)
    try:
        first = await asyncio.to_thread(scan.next_block)
        if scan.header is None:
            raise IntegrityError("empty file: not a sessionstore backup", scan.name)
        block = first
        while block is not None:
            if block:
                yield block
            block = await asyncio.to_thread(scan.next_block)
        yield scan.info()
    finally:
        await asyncio.to_thread(scan.close)
