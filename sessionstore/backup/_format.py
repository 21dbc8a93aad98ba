"""The backup file format (JSON Lines): line shapes, the items they carry, their encoding.

A backup is one stream of lines (see ``docs/backup.md``)::

    {"kind": "header", "format": "sessionstore-backup", "format_version": 2, ...}
    {"kind": "session", "session": {<session record>}}
    {"kind": "checkpoint", "checkpoint": {<checkpoint record>}}        (0..n per session)
    {"kind": "events", "session_id": "...", "events": [{<event record>}, ...]}   (0..n)
    ... the next session, in ascending id order ...
    {"kind": "trailer", "sessions": N, "events": M, "checkpoints": K, "lines": L,
     "sha256": "<hex digest of every byte before the trailer line>"}

Records inside the lines are the codec's record formats (``session_to_record`` ...), each
with its own format version ``"v"``. This module is pure: no I/O (see ``_streams``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeAlias

import orjson

from ..codec import (
    checkpoint_from_record,
    checkpoint_to_record,
    dumps_record,
    event_from_record,
    event_to_record,
    session_from_record,
    session_to_record,
)
from ..errors import IntegrityError, UnsupportedFormatError
from ..model import Checkpoint, Event, Session

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_FORMAT_VERSION",
    "CheckpointItem",
    "EventsItem",
    "Header",
    "Item",
    "PageEnd",
    "SessionItem",
    "Trailer",
    "decode_line",
    "encode_checkpoint_line",
    "encode_events_line",
    "encode_header",
    "encode_session_line",
    "encode_trailer",
]

#: The ``format`` field of every backup header.
BACKUP_FORMAT: Final = "sessionstore-backup"
#: Version of the backup file layout (lines and their kinds). Readers accept older
#: versions and refuse newer ones with :class:`UnsupportedFormatError`.
#: 2: event records may carry a ``key`` (event record format 2); version 1 backups are
#: read as before.
BACKUP_FORMAT_VERSION: Final = 2


@dataclass(slots=True)
class SessionItem:
    """A session document (its events and checkpoints follow as other items)."""

    session: Session
    data_json: bytes | None = None
    metadata_json: bytes | None = None


@dataclass(slots=True)
class CheckpointItem:
    """One checkpoint of the current session."""

    checkpoint: Checkpoint


@dataclass(slots=True)
class EventsItem:
    """A chunk of the current session's events (ascending ``seq``, gaps allowed)."""

    session_id: str
    events: list[Event]
    nbytes: int = 0  # encoded size, an estimate for batching


@dataclass(slots=True)
class PageEnd:
    """A store source finished a page: everything before it may be committed.

    ``cursor`` continues the source's query after ``last_id``.
    """

    last_id: str
    cursor: str | None


Item: TypeAlias = SessionItem | CheckpointItem | EventsItem | PageEnd


@dataclass(frozen=True)
class Header:
    """The first line of a backup."""

    format_version: int
    created_at: datetime
    source: str | None
    driver: str | None
    namespace: str
    filter: dict[str, Any] | None
    include_expired: bool
    sessionstore_version: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trailer:
    """The last line of a backup: counts and the SHA-256 of everything before it."""

    sessions: int
    events: int
    checkpoints: int
    lines: int
    sha256: str


# --------------------------------------------------------------------------- encoding


def encode_header(header: Header) -> bytes:
    """The header line (with its newline)."""
    return (
        dumps_record(
            {
                "kind": "header",
                "format": BACKUP_FORMAT,
                "format_version": header.format_version,
                "created_at": header.created_at,
                "source": header.source,
                "driver": header.driver,
                "namespace": header.namespace,
                "filter": header.filter,
                "include_expired": header.include_expired,
                "sessionstore_version": header.sessionstore_version,
                **header.extra,
            }
        )
        + b"\n"
    )


def encode_session_line(session: Session) -> bytes:
    """A ``session`` line."""
    return dumps_record({"kind": "session", "session": session_to_record(session)}) + b"\n"


def encode_checkpoint_line(cp: Checkpoint) -> bytes:
    """A ``checkpoint`` line."""
    return dumps_record({"kind": "checkpoint", "checkpoint": checkpoint_to_record(cp)}) + b"\n"


def encode_events_line(session_id: str, events: list[Event]) -> bytes:
    """An ``events`` line holding a chunk of one session's events."""
    return (
        dumps_record(
            {
                "kind": "events",
                "session_id": session_id,
                "events": [event_to_record(e) for e in events],
            }
        )
        + b"\n"
    )


def encode_trailer(trailer: Trailer) -> bytes:
    """The trailer line."""
    return (
        orjson.dumps(
            {
                "kind": "trailer",
                "sessions": trailer.sessions,
                "events": trailer.events,
                "checkpoints": trailer.checkpoints,
                "lines": trailer.lines,
                "sha256": trailer.sha256,
            }
        )
        + b"\n"
    )


# --------------------------------------------------------------------------- decoding


def _load(line: bytes, where: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"undecodable line ({exc})", where) from None
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise IntegrityError("line is not a backup record (no 'kind')", where)
    return value


def _int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise IntegrityError(f"{name!r} is not a non-negative integer", where)
    return value


def decode_header(line: bytes, where: str) -> Header:
    """Parse and check the first line; a newer format raises UnsupportedFormatError."""
    rec = _load(line, where)
    if rec.get("kind") != "header" or rec.get("format") != BACKUP_FORMAT:
        raise IntegrityError("not a sessionstore backup (no backup header)", where)
    version = rec.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise IntegrityError("backup header has no valid format_version", where)
    if version > BACKUP_FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"backup format version {version} is newer than this sessionstore understands "
            f"({BACKUP_FORMAT_VERSION}); upgrade sessionstore to restore it",
            where,
        )
    created = rec.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise IntegrityError("backup header has no valid created_at", where)
    flt = rec.get("filter")
    known = {
        "kind", "format", "format_version", "created_at", "source", "driver", "namespace",
        "filter", "include_expired", "sessionstore_version",
    }  # fmt: skip
    return Header(
        format_version=version,
        created_at=created_at,
        source=rec.get("source") if isinstance(rec.get("source"), str) else None,
        driver=rec.get("driver") if isinstance(rec.get("driver"), str) else None,
        namespace=str(rec.get("namespace") or ""),
        filter=flt if isinstance(flt, dict) else None,
        include_expired=rec.get("include_expired") is True,
        sessionstore_version=str(rec.get("sessionstore_version") or "?"),
        extra={k: v for k, v in rec.items() if k not in known},
    )


def decode_trailer(rec: dict[str, Any], where: str) -> Trailer:
    """Check the fields of a parsed ``trailer`` line."""
    digest = rec.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise IntegrityError("trailer has no valid sha256", where)
    return Trailer(
        sessions=_int(rec.get("sessions"), "sessions", where),
        events=_int(rec.get("events"), "events", where),
        checkpoints=_int(rec.get("checkpoints"), "checkpoints", where),
        lines=_int(rec.get("lines"), "lines", where),
        sha256=digest,
    )


def decode_line(line: bytes, where: str) -> SessionItem | CheckpointItem | EventsItem | Trailer:
    """Parse one line after the header into its item (or the trailer).

    Raises :class:`IntegrityError` naming ``where`` (file and line) when it is malformed.
    Records of a newer format raise :class:`UnsupportedFormatError`.
    """
    rec = _load(line, where)
    kind = rec["kind"]
    if kind == "session":
        session = session_from_record(rec.get("session"), where)
        return SessionItem(session)
    if kind == "events":
        sid, raw = rec.get("session_id"), rec.get("events")
        if not isinstance(sid, str) or not isinstance(raw, list) or not raw:
            raise IntegrityError("events line lacks session_id or events", where)
        return EventsItem(sid, [event_from_record(e, where) for e in raw], len(line))
    if kind == "checkpoint":
        return CheckpointItem(checkpoint_from_record(rec.get("checkpoint"), where))
    if kind == "trailer":
        return decode_trailer(rec, where)
    raise IntegrityError(f"unknown line kind {kind!r}", where)
