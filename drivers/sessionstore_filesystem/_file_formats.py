"""The file formats: checksummed JSON records (session document, event lines, checkpoints,
journal entries).

Every record is a JSON object carrying the format version ``"v"`` (from
:mod:`sessionstore.codec`) and, as its last member, ``"sha256"``: the hex SHA-256 of the
record's bytes *without* that member. The file stays valid JSON for ``jq``, and checking
it needs no re-encoding: drop the fixed-length suffix, put back the ``}``, hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from sessionstore import Checkpoint, Event, IntegrityError, Mutation, Session
from sessionstore.codec import (
    FORMAT_VERSION,
    checkpoint_from_record,
    checkpoint_to_record,
    decode_json,
    dumps_record,
    event_from_record,
    event_to_record,
    session_from_record,
    session_to_record,
    sha256_hex,
)
from sessionstore.validation import validate_session_id

__all__ = [
    "Doc",
    "decode_checkpoint",
    "decode_doc",
    "decode_journal",
    "decode_line",
    "encode_batch",
    "encode_checkpoint",
    "encode_doc",
    "encode_journal",
    "journal_sessions",
    "seal",
    "unseal",
]

_SEAL: Final = b',"sha256":"'
_SEAL_LEN: Final = len(_SEAL) + 64 + 2  # ,"sha256":"<64 hex>"}


def seal(record: bytes) -> bytes:
    """Append the checksum member to an encoded JSON object."""
    return record[:-1] + _SEAL + sha256_hex(record).encode("ascii") + b'"}'


def unseal(raw: bytes, record: str) -> bytes:
    """Check a sealed record and return its bytes without the checksum member.

    Raises :class:`IntegrityError` naming ``record`` when the checksum is missing (a
    truncated file) or does not match (corrupt, or edited by hand).
    """
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if (
        len(raw) <= _SEAL_LEN
        or raw[-_SEAL_LEN : -_SEAL_LEN + len(_SEAL)] != _SEAL
        or not raw.endswith(b'"}')
    ):
        raise IntegrityError("record has no checksum (truncated or edited by hand)", record)
    body = raw[:-_SEAL_LEN] + b"}"
    if sha256_hex(body).encode("ascii") != raw[-66:-2]:
        raise IntegrityError("checksum mismatch (corrupt, or edited by hand)", record)
    return body


def _decode_sealed(raw: bytes, record: str) -> dict[str, Any]:
    rec = decode_json(unseal(raw, record), record)
    if not isinstance(rec, dict):
        raise IntegrityError("record is not a JSON object", record)
    return rec


# --------------------------------------------------------------------------- session doc


@dataclass(frozen=True, slots=True)
class Doc:
    """A decoded ``session.json``: the session as of ``log_end`` and where its files are.

    ``gen`` names the event log (``events.<gen>.jsonl``), ``log_end`` is the byte length
    of the log the document covers, ``inc`` names the checkpoint directory
    (``checkpoints.<inc>``) of this incarnation of the session.
    """

    session: Session
    gen: int
    log_end: int
    inc: str


def encode_doc(
    session: Session, data_json: bytes, metadata_json: bytes, *, gen: int, log_end: int, inc: str
) -> bytes:
    """The bytes of ``session.json``."""
    rec = session_to_record(session, data_json, metadata_json)
    rec["log"] = {"gen": gen, "end": log_end}
    rec["inc"] = inc
    return seal(dumps_record(rec)) + b"\n"


def decode_doc(raw: bytes, record: str) -> Doc:
    """Check and decode ``session.json``."""
    rec = _decode_sealed(raw, record)
    session = session_from_record(rec, record)
    log, inc = rec.get("log"), rec.get("inc")
    if (
        not isinstance(log, dict)
        or not isinstance(log.get("gen"), int)
        or not isinstance(log.get("end"), int)
        or log["gen"] < 1
        or log["end"] < 0
        or not isinstance(inc, str)
        or not inc.isalnum()
    ):
        raise IntegrityError("session document has no valid log/inc fields", record)
    if session.id != record.rsplit("/", 1)[-1]:
        raise IntegrityError(f"session document names another session {session.id!r}", record)
    return Doc(session, log["gen"], log["end"], inc)


# --------------------------------------------------------------------------- event lines


def encode_batch(events: Sequence[Event], *, version: int, pending: bool) -> bytes:
    """Lines for the events of one write; the last carries the session version it made.

    ``pending`` marks lines that only count once ``session.json`` covers them (a write
    that also changes the document commits by replacing it).
    """
    out = []
    last = len(events) - 1
    for index, event in enumerate(events):
        rec = event_to_record(event)
        if index == last:
            rec["ver"] = version
            if pending:
                rec["doc"] = True
        out.append(seal(dumps_record(rec)))
    out.append(b"")
    return b"\n".join(out)


def decode_line(line: bytes, record: str) -> tuple[Event, int | None, bool]:
    """One event line: the event, the version its write made (last line only), pending."""
    rec = _decode_sealed(line, record)
    event = event_from_record(rec, record)
    version = rec.get("ver")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise IntegrityError("event line has an invalid 'ver'", record)
    return event, version, rec.get("doc") is True


# --------------------------------------------------------------------------- checkpoints


def encode_checkpoint(cp: Checkpoint) -> bytes:
    """The bytes of ``checkpoints.<inc>/<id>.json``."""
    return seal(dumps_record(checkpoint_to_record(cp))) + b"\n"


def decode_checkpoint(raw: bytes, record: str) -> Checkpoint:
    """Check and decode a checkpoint file (its digest is verified by the store on get)."""
    return checkpoint_from_record(_decode_sealed(raw, record), record)


# --------------------------------------------------------------------------- journal


def _mutation_record(mut: Mutation) -> dict[str, Any]:
    session = None
    if mut.session is not None:
        session = orjson.Fragment(
            dumps_record(session_to_record(mut.session, mut.data_json, mut.metadata_json))
        )
    return {
        "id": mut.session_id,
        "expect": mut.expect,
        "delete": mut.delete,
        "reset": mut.reset,
        "trim_before": mut.trim_before,
        "truncate_after": mut.truncate_after,
        "delete_seqs": list(mut.delete_seqs),
        "session": session,
        "append": [event_to_record(e) for e in mut.append],
        "put_checkpoints": [checkpoint_to_record(cp) for cp in mut.put_checkpoints],
        "delete_checkpoints": list(mut.delete_checkpoints),
        "created": mut.created,
    }


def encode_journal(txid: str, mutations: Sequence[Mutation]) -> bytes:
    """An intent-journal entry: every mutation of one atomic multi-session write."""
    rec = {
        "v": FORMAT_VERSION,
        "tx": txid,
        "sessions": sorted(m.session_id for m in mutations),
        "mutations": [_mutation_record(m) for m in mutations],
    }
    return seal(dumps_record(rec)) + b"\n"


def journal_sessions(raw: bytes, record: str) -> list[str]:
    """The session ids a journal entry touches (checked)."""
    sessions = _decode_sealed(raw, record).get("sessions")
    if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
        raise IntegrityError("journal entry has no session list", record)
    try:
        return [validate_session_id(s) for s in sessions]
    except ValueError:
        raise IntegrityError("journal entry names an invalid session id", record) from None


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def decode_journal(raw: bytes, record: str) -> list[Mutation]:
    """The mutations of a journal entry (checked against its session list)."""
    listed = journal_sessions(raw, record)
    rec = _decode_sealed(raw, record)
    out = []
    try:
        for m in rec["mutations"]:
            validate_session_id(m["id"])  # a journal is read from disk: trust nothing
            session = None
            data_json = metadata_json = None
            if m["session"] is not None:
                session = session_from_record(m["session"], record)
                data_json = orjson.dumps(session.data)
                metadata_json = orjson.dumps(session.metadata)
            out.append(
                Mutation(
                    session_id=str(m["id"]),
                    expect=int(m["expect"]),
                    session=session,
                    data_json=data_json,
                    metadata_json=metadata_json,
                    delete=bool(m["delete"]),
                    reset=bool(m["reset"]),
                    append=[event_from_record(e, record) for e in m["append"]],
                    trim_before=int(m["trim_before"]),
                    truncate_after=_opt_int(m.get("truncate_after")),
                    delete_seqs=[int(q) for q in m.get("delete_seqs", ())],
                    put_checkpoints=[
                        checkpoint_from_record(c, record) for c in m["put_checkpoints"]
                    ],
                    delete_checkpoints=[str(c) for c in m["delete_checkpoints"]],
                    created=bool(m.get("created", False)),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:  # InvalidSessionIdError is a ValueError
        raise IntegrityError(f"journal entry is malformed: {exc}", record) from None
    if sorted(m.session_id for m in out) != listed or not out:
        raise IntegrityError("journal entry's sessions do not match its mutations", record)
    return out
