"""Whole-record copy: ``scan``, ``put_records`` and the merge rules of a restore.

Plain functions over :class:`~sessionstore.driver.StorePrimitives`, so they work for any
store that offers them; :class:`~sessionstore.BaseSessionStore` calls them for its
``scan`` and ``put_records``, and backup's restore engine uses the same merge rules.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Final

from ._planner import Limits, Mutation
from ._primitives import CAS_ATTEMPTS, StorePrimitives, sound_checkpoints
from .codec import MAX_EVENT, MAX_SESSION, checkpoint_digest, encode_user_dict
from .errors import (
    IntegrityError,
    InvalidArgumentError,
    SessionConflictError,
    UnsupportedOperationError,
)
from .model import Checkpoint, Event, Session, SessionRecord, Status
from .protocol import MergeStrategy, PutResult
from .query import SessionFilter, matches
from .validation import (
    validate_datetime,
    validate_event_key,
    validate_event_type,
    validate_label,
    validate_positive_int,
    validate_processor_id,
    validate_session_id,
    validate_tags,
)

__all__ = [
    "STRATEGIES",
    "check_record",
    "check_strategy",
    "merge_decision",
    "put_record",
    "scan_records",
]

STRATEGIES: Final = ("skip_existing", "overwrite", "update_newer", "fail_on_conflict")


def check_strategy(strategy: object) -> MergeStrategy:
    """``strategy`` if it is a merge strategy, else :class:`InvalidArgumentError`."""
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(
            f"unknown strategy {strategy!r} (allowed: {', '.join(STRATEGIES)})"
        )
    return strategy


def merge_decision(strategy: str, new: Session, stored: Session | None, now: datetime) -> str:
    """What restoring ``new`` does when ``stored`` is the stored session (or ``None``).

    ``"create"`` (absent or expired), ``"overwrite"``, ``"skip"`` or ``"conflict"``
    (``fail_on_conflict`` and a live stored session). ``update_newer`` overwrites when
    ``new`` has the newer ``updated_at``, then the higher ``version``.
    """
    if stored is None or stored.is_expired(now):
        return "create"
    if strategy == "skip_existing":
        return "skip"
    if strategy == "fail_on_conflict":
        return "conflict"
    if strategy == "update_newer" and (new.updated_at, new.version) <= (
        stored.updated_at,
        stored.version,
    ):
        return "skip"
    return "overwrite"


async def scan_records(
    primitives: StorePrimitives, flt: SessionFilter
) -> AsyncIterator[SessionRecord]:
    """Every stored session matching ``flt`` as a whole record (session, events,
    checkpoints); one whose events or checkpoints cannot be read is skipped and reported,
    a checkpoint whose digest does not match is left out of its record and reported."""
    now = primitives.clock.now()
    async for session in primitives.iter_sessions():
        if not matches(session, flt, now):
            continue
        try:
            events = await primitives.load_events(session.id, after_seq=0, limit=None, last=None)
            loaded = await primitives.load_checkpoints(session.id)
        except IntegrityError as exc:  # a corrupt event log or checkpoint: skip, report
            primitives.report_corrupt(exc)
            continue
        # as a backup does: a checkpoint whose digest does not match is left out, reported
        yield SessionRecord(session, events, sound_checkpoints(primitives, session.id, loaded))


def _check_events(record: SessionRecord, event_log: bool) -> None:
    """The record's events against its counters: ascending seqs in ``[1, last_seq]``,
    ``event_count`` of them, keys valid and unique. A store without the ``event_log``
    capability takes only a gap-free log ending at ``last_seq`` without keys."""
    s = record.session
    seqs = [e.seq for e in record.events]
    bad = f"record {s.id!r}: events do not match event_count/last_seq"
    if len(seqs) != s.event_count:
        raise InvalidArgumentError(bad)
    if seqs and (
        seqs[0] < 1 or seqs[-1] > s.last_seq or any(a >= b for a, b in itertools.pairwise(seqs))
    ):
        raise InvalidArgumentError(bad)
    keys = [e.key for e in record.events if e.key is not None]
    for key in keys:
        validate_event_key(key, f"record {s.id!r}: event key")
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError(f"record {s.id!r}: an event key is there twice")
    if event_log:
        return
    if seqs and seqs != list(range(s.last_seq - len(seqs) + 1, s.last_seq + 1)):
        raise UnsupportedOperationError(
            f"record {s.id!r}: its event log has gaps, which this store cannot hold "
            "(its driver does not declare the event_log capability)"
        )
    if keys:
        raise UnsupportedOperationError(
            f"record {s.id!r}: its events have keys, which this store cannot hold "
            "(its driver does not declare the event_log capability)"
        )


_MAX_COUNTER: Final = 2**62


def _check_fields(
    what: str, status: object, tags: object, stamps: dict[str, object], counters: dict[str, object]
) -> None:
    """The plain fields a session and a checkpoint share, as the write paths check them."""
    if not isinstance(status, Status):
        raise InvalidArgumentError(f"{what}: status must be a Status, not {status!r}")
    if not isinstance(tags, frozenset) or validate_tags(tags) != tags:
        raise InvalidArgumentError(f"{what}: tags must be a frozenset of str")
    for name, stamp in stamps.items():
        if stamp is not None or name != "expires_at":
            validate_datetime(stamp, f"{what}: {name}")
    for name, count in counters.items():
        validate_positive_int(count, f"{what}: {name}", maximum=_MAX_COUNTER, allow_zero=True)


def _check_session(s: Session) -> None:
    """A record's session holds what the write paths would accept (no naive datetime, no
    tag or processor id a create refuses), so every driver stores and reads it back."""
    what = f"record {s.id!r}"
    if s.group is not None:
        validate_session_id(s.group, "group")
    validate_processor_id(s.processor_id)
    _check_fields(
        what,
        s.status,
        s.tags,
        {"created_at": s.created_at, "updated_at": s.updated_at, "expires_at": s.expires_at},
        {"version": s.version, "event_count": s.event_count, "last_seq": s.last_seq},
    )
    if s.version < 1:
        raise InvalidArgumentError(f"{what} has version {s.version}")


def _check_event(what: str, event: object) -> None:
    if not isinstance(event, Event):
        raise InvalidArgumentError(f"{what}: events must be Event values, got {event!r}")
    validate_positive_int(event.seq, f"{what}: event seq", maximum=_MAX_COUNTER)
    validate_event_type(event.type)
    validate_datetime(event.at, f"{what}: event at")


def _check_checkpoint(s: Session, cp: object, limits: Limits) -> None:
    what = f"record {s.id!r}"
    if not isinstance(cp, Checkpoint):
        raise InvalidArgumentError(f"{what}: checkpoints must be Checkpoint values, got {cp!r}")
    validate_session_id(cp.id, "checkpoint id")
    validate_label(cp.label)
    _check_fields(
        f"{what}: checkpoint {cp.id!r}",
        cp.status,
        cp.tags,
        {"created_at": cp.created_at},
        {"version": cp.version, "event_count": cp.event_count, "last_seq": cp.last_seq},
    )
    encode_user_dict(cp.data, f"checkpoints[{cp.id}].data", limits.max_session_bytes, MAX_SESSION)
    encode_user_dict(
        cp.metadata, f"checkpoints[{cp.id}].metadata", limits.max_session_bytes, MAX_SESSION
    )
    if cp.session_id != s.id or checkpoint_digest(cp) != cp.digest:
        raise IntegrityError("checkpoint digest does not match its content", f"{s.id}/{cp.id}")


def check_record(
    record: SessionRecord, limits: Limits, *, event_log: bool = False
) -> tuple[bytes, bytes]:
    """Validate a record for ``put_records``: its data and metadata JSON, or a typed error
    (:class:`InvalidArgumentError`, :class:`IntegrityError` for a bad checkpoint digest).

    ``event_log``: the store declares that capability, so events may have gaps and keys
    (else such a record raises :class:`UnsupportedOperationError`)."""
    if not isinstance(record, SessionRecord):
        raise InvalidArgumentError(f"put_records takes SessionRecord values, got {record!r}")
    s = record.session
    if not isinstance(s, Session):
        raise InvalidArgumentError(f"a SessionRecord holds a Session, got {s!r}")
    validate_session_id(s.id)
    _check_session(s)
    for event in record.events:
        _check_event(f"record {s.id!r}", event)
    data_json, _ = encode_user_dict(s.data, "data", limits.max_session_bytes, MAX_SESSION)
    meta_json, _ = encode_user_dict(s.metadata, "metadata", limits.max_session_bytes, MAX_SESSION)
    _check_events(record, event_log)
    for event in record.events:
        encode_user_dict(event.data, f"events[{event.seq}].data", limits.max_event_bytes, MAX_EVENT)
    for cp in record.checkpoints:
        _check_checkpoint(s, cp, limits)
    return data_json, meta_json


async def put_record(
    primitives: StorePrimitives,
    record: SessionRecord,
    data_json: bytes,
    meta_json: bytes,
    strategy: str,
    stored: Session | None,
) -> PutResult:
    """Write one checked record by ``strategy`` given the ``stored`` session (re-read and
    decided again when a concurrent writer changed it; after ``CAS_ATTEMPTS`` lost races,
    the last :class:`SessionConflictError`)."""
    new = record.session
    lost: SessionConflictError | None = None
    for _ in range(CAS_ATTEMPTS):
        decision = merge_decision(strategy, new, stored, primitives.clock.now())
        if decision == "skip":
            return PutResult(skipped=1)
        if decision == "conflict":
            return PutResult(conflicts=1)
        live = decision == "overwrite"
        mut = Mutation(
            session_id=new.id,
            expect=0 if stored is None else stored.version,
            session=new,
            data_json=data_json,
            metadata_json=meta_json,
            reset=stored is not None,
            append=list(record.events),
            put_checkpoints=list(record.checkpoints),
            created=not live,
        )
        try:
            await primitives.apply([mut])
        except SessionConflictError as conflict:
            lost = conflict
            stored = (await primitives.load([new.id])).get(new.id)
            continue
        primitives.after_write([mut])
        return PutResult(overwritten=1) if live else PutResult(created=1)
    assert lost is not None  # every attempt lost a race
    raise lost
