"""Encoding: strict JSON-native values (orjson), record formats, limits and checksums.

User values (session ``data``/``metadata`` and event ``data``) must be JSON-native: dicts
with ``str`` keys, lists, ``str``, signed 64-bit ``int`` (-2**63 .. 2**63 - 1), finite
``float``, ``bool`` and ``None``
(subclasses of these, such as a ``StrEnum`` member, are stored as their base type). What
you write is exactly what you read back; anything else raises :class:`SerializationError`
naming the offending path *before* anything is written. Nothing is ever pickled.

Stored records (used by on-disk and network drivers and by backups) carry a format version
``"v"``; readers migrate older versions and refuse newer ones with
:class:`UnsupportedFormatError`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

from .errors import IntegrityError, QuotaExceededError, SerializationError, UnsupportedFormatError
from .model import Checkpoint, Event, JSONDict, Session, Status, fast_session
from .validation import has_lone_surrogate

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_SESSION_BYTES",
    "EVENT_FORMAT_VERSION",
    "FORMAT_VERSION",
    "MAX_EVENT",
    "MAX_SESSION",
    "canonical_json",
    "checkpoint_digest",
    "checkpoint_from_record",
    "checkpoint_to_record",
    "decode_json",
    "dumps_record",
    "encode_json",
    "encode_user_dict",
    "event_from_record",
    "event_to_record",
    "new_id",
    "session_from_record",
    "session_to_record",
    "sha256_hex",
]

#: Current version of every stored record format (sessions, events, checkpoints, backups).
FORMAT_VERSION: Final = 1
#: Newest event record format: 2 adds the event's ``key`` (events without one are still
#: written as version 1).
EVENT_FORMAT_VERSION: Final = 2
DEFAULT_MAX_SESSION_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024
#: The store options that set those limits (named by :class:`QuotaExceededError`).
MAX_SESSION: Final = "max_session_bytes"
MAX_EVENT: Final = "max_event_bytes"

# Datetimes and dataclasses are not JSON-native: send them to ``_reject`` instead of letting
# orjson serialize them silently. Tuples, UUIDs and non-finite floats are caught by the
# round-trip comparison in ``encode_user_dict``. Integers are signed 64-bit: orjson alone
# accepts up to 2**64 - 1, so values are first encoded with OPT_STRICT_INTEGER (at most
# 2**53 in magnitude, no cost); only a value holding a larger integer takes the slow path
# (``_dumps_strict``), which walks it and checks every integer against the signed range.
_WIDE_OPTS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_STRICT_OPTS: Final = _WIDE_OPTS | orjson.OPT_STRICT_INTEGER
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _reject(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-native")


_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NEXT_CHAR: Final = dict(itertools.pairwise(_CROCKFORD))
# Maps each byte to the Crockford character of its low 5 bits: 256 = 8 x 32, so 16 random
# bytes give 16 uniformly random characters, exactly the 80 random bits of a ULID.
_RANDOM_CHARS: Final = bytes(ord(_CROCKFORD[b & 31]) for b in range(256))


class _IdState:
    """The generator's state: the millisecond and random part of the last id."""

    __slots__ = ("ms", "prefix", "rand")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the last id (a forked child must not continue its parent's sequence)."""
        self.ms = -1
        self.prefix = ""
        self.rand = ""


_id_state = _IdState()
_id_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_id_state.reset)


#: Every pair of Crockford characters, by the 10 bits they encode.
_PAIRS: Final = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)


def _time_prefix(ms: int) -> str:
    """The 10 characters encoding a ULID's 48-bit millisecond timestamp (five pairs of
    5-bit characters: no generator, ~1/8 of the instructions of one a character)."""
    pairs = _PAIRS
    return (
        pairs[(ms >> 40) & 1023]
        + pairs[(ms >> 30) & 1023]
        + pairs[(ms >> 20) & 1023]
        + pairs[(ms >> 10) & 1023]
        + pairs[ms & 1023]
    )


def _fresh_random() -> str:
    return os.urandom(16).translate(_RANDOM_CHARS).decode("ascii")


def new_id() -> str:
    """A new ULID string (26 characters, Crockford base32, time-ordered).

    The standard layout: 48-bit Unix milliseconds, then 80 random bits from
    ``os.urandom``. Like python-ulid's default generator, ids are strictly increasing
    within a process: in the same millisecond (or if the clock steps back) the random part
    of the previous id is incremented. Unlike it, a forked child starts a fresh sequence,
    so parent and child never make the same id in the same millisecond. Generated here
    rather than by python-ulid for speed on the create path: ~0.5 us instead of ~3 us
    (``docs/decisions.md``).
    """
    ms = time.time_ns() // 1_000_000
    state = _id_state
    with _id_lock:
        if ms > state.ms:
            state.ms, state.prefix, state.rand = ms, _time_prefix(ms), _fresh_random()
        else:
            rand = state.rand
            last = rand[-1]
            if last != "Z":
                state.rand = rand[:-1] + _NEXT_CHAR[last]
            else:
                state.rand = _carry(state, rand)
        return state.prefix + state.rand


def _carry(state: _IdState, rand: str) -> str:
    """Increment a random part ending in ``Z`` (1 in 32 increments)."""
    zeros = len(rand) - len(rand.rstrip("Z"))
    if zeros == len(rand):  # 80 bits used up within one millisecond: move to the next
        state.ms += 1
        state.prefix = _time_prefix(state.ms)
        return _fresh_random()
    pos = len(rand) - zeros - 1
    return rand[:pos] + _NEXT_CHAR[rand[pos]] + "0" * zeros


#: orjson's recursion limit: since orjson 3.10.1 it refuses the 255th container.
_ENCODER_DEPTH: Final = 254
#: How many containers the stored formats put around a user value at most (a backup's
#: ``events`` line: the line, its list, the event record), so that every record holding
#: a value of :data:`MAX_DEPTH` still encodes (a checkpoint's digest, a file record).
_WRAPPERS: Final = 4
#: The deepest nesting a stored value may have, in containers (the top-level dict is 1).
MAX_DEPTH: Final = _ENCODER_DEPTH - _WRAPPERS
#: The fewest encoded bytes a value nested deeper than MAX_DEPTH can have (two brackets
#: per container).
_MIN_TOO_DEEP_BYTES = 2 * (MAX_DEPTH + 1)


def _encoder_allows_too_deep() -> bool:
    """Whether the installed orjson encodes one container more than its documented limit.

    orjson 3.10.0 does (its limit was one level higher); the codec then checks the depth
    itself, for values long enough to be that deep, so the limit is the same on every
    supported orjson (tested by the lowest-versions run).
    """
    value: list[Any] = []
    for _ in range(_ENCODER_DEPTH):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


_CHECK_DEPTH = _encoder_allows_too_deep()


def _too_deep(value: Any, depth: int = 1) -> bool:
    """Whether ``value`` nests more than :data:`MAX_DEPTH` containers."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_too_deep(item, depth + 1) for item in value)
    return False


_TOO_DEEP: Final = f"nested deeper than the limit ({MAX_DEPTH} levels)"


def _dumps(value: Any, option: int) -> bytes:
    """orjson's encoding of ``value``, refusing (orjson's recursion error) one deeper than
    :data:`MAX_DEPTH`: the value is encoded inside :data:`_WRAPPERS` lists, so orjson's
    own limit decides with no walk of the value in Python, and the wrappers' brackets
    are cut off (``[[[[`` and ``]]]]``: the options never add whitespace). One encode
    whatever the size: ~0.1 us more than a bare encode on a small dict, ~10 % on
    190 KB (encoding again only values long enough to be too deep cost 2x on those)."""
    return orjson.dumps([[[[value]]]], default=_reject, option=option)[_WRAPPERS:-_WRAPPERS]


def _describe_invalid(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """Walk ``value`` (error path only) and name the first non-JSON-native spot."""
    if depth >= MAX_DEPTH and isinstance(value, dict | list):  # one container too many
        return path, _TOO_DEEP
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if has_lone_surrogate(value):
            return path, "str with a lone surrogate (no UTF-8 encoding)"
        return None
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            return path, "integer outside the signed 64-bit range (-2**63 .. 2**63 - 1)"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return path, f"non-finite float {value!r} is not JSON"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (
                    f"{path}[{key!r}]",
                    f"dict key of type {type(key).__name__} (keys must be str)",
                )
            if has_lone_surrogate(key):
                return f"{path}[{key!r}]", "dict key with a lone surrogate (no UTF-8 encoding)"
            found = _describe_invalid(item, f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _describe_invalid(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return (
        path,
        f"{type(value).__name__} is not JSON-native "
        "(use dict, list, str, int, float, bool or None)",
    )


def _serialization_error(value: Any, what: str, cause: BaseException | None) -> SerializationError:
    found = _describe_invalid(value, what)
    if found is not None:
        return SerializationError(found[1], found[0])
    message = str(cause) if cause else "value does not survive a JSON round trip"
    if "recursion" in message.lower():
        message = _TOO_DEEP
    return SerializationError(message, what)


def _dumps_strict(value: Any, what: str) -> bytes:
    """``value`` as JSON, refusing what is not JSON-native, integers outside the signed
    64-bit range and nesting deeper than :data:`MAX_DEPTH` (:class:`SerializationError`
    naming the path)."""
    try:
        raw = _dumps(value, _STRICT_OPTS)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        # also an integer beyond 2**53 (the strict-integer limit): the walk decides
        found = _describe_invalid(value, what)
        if found is not None:
            raise SerializationError(found[1], found[0]) from None
        try:  # only integers within the signed 64-bit range were over the strict limit
            raw = _dumps(value, _WIDE_OPTS)
        except (orjson.JSONEncodeError, TypeError, RecursionError) as exc:
            raise _serialization_error(value, what, exc) from None
    if _CHECK_DEPTH and len(raw) >= _MIN_TOO_DEEP_BYTES and _too_deep(value):
        raise _serialization_error(value, what, None)
    return raw


def encode_user_dict(
    value: Any, what: str, limit: int, option: str | None = None
) -> tuple[bytes, JSONDict]:
    """Encode a user dict strictly; return its JSON bytes and a private decoded copy.

    Raises :class:`SerializationError` (naming the path) for non-JSON-native content or
    too-deep nesting, and :class:`QuotaExceededError` above ``limit`` bytes (naming
    ``option``, the store option that sets ``limit``).
    """
    if not isinstance(value, dict):
        if isinstance(value, Mapping):
            value = dict(value)
        else:
            raise SerializationError(f"must be a dict, not {type(value).__name__}", what)
    if not value:  # the common empty metadata: nothing to check
        return b"{}", {}
    raw = _dumps_strict(value, what)
    if len(raw) > limit:
        raise QuotaExceededError(
            f"{what} is {len(raw)} bytes encoded, over the limit of {limit}", option=option
        )
    copy = orjson.loads(raw)
    if copy != value:
        raise _serialization_error(value, what, None)
    return raw, copy


def encode_json(value: Any, what: str = "value") -> bytes:
    """Encode a JSON-native value strictly (no size limit)."""
    raw = _dumps_strict(value, what)
    if orjson.loads(raw) != value:
        raise _serialization_error(value, what, None)
    return raw


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys): the input of digests and fingerprints."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def decode_json(raw: bytes | bytearray | memoryview | str, record: str = "") -> Any:
    """Decode JSON bytes; undecodable input raises :class:`IntegrityError` naming ``record``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"undecodable JSON ({exc})", record) from None


def sha256_hex(raw: bytes) -> str:
    """Hex SHA-256 of ``raw``."""
    return hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------- records


def _ts(value: Any, field: str, record: str) -> datetime:
    if not isinstance(value, str):
        raise IntegrityError(f"field {field!r} is not a timestamp", record)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise IntegrityError(f"field {field!r} is not a timestamp", record) from None
    if parsed.tzinfo is None:
        raise IntegrityError(f"field {field!r} has no timezone", record)
    return parsed


def _check_version(rec: Mapping[str, Any], record: str, newest: int = FORMAT_VERSION) -> None:
    version = rec.get("v")
    if not isinstance(version, int) or version < 1:
        raise IntegrityError("record has no format version", record)
    if version > newest:
        raise UnsupportedFormatError(
            f"record format version {version} is newer than this sessionstore understands "
            f"({newest}); upgrade sessionstore to read it",
            record,
        )


def session_to_record(
    session: Session,
    data_json: bytes | None = None,
    metadata_json: bytes | None = None,
) -> dict[str, Any]:
    """A JSON-ready dict for ``session`` (pre-encoded data/metadata bytes are reused)."""
    return {
        "v": FORMAT_VERSION,
        "id": session.id,
        "processor_id": session.processor_id,
        "status": session.status.value,
        "tags": sorted(session.tags),
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "expires_at": session.expires_at,
        "version": session.version,
        "event_count": session.event_count,
        "last_seq": session.last_seq,
        "group": session.group,
        "metadata": orjson.Fragment(metadata_json)
        if metadata_json is not None
        else session.metadata,
        "data": orjson.Fragment(data_json) if data_json is not None else session.data,
    }


def session_from_record(rec: Any, record: str = "") -> Session:
    """Rebuild a :class:`Session` from :func:`session_to_record` output (validated)."""
    if not isinstance(rec, dict):
        raise IntegrityError("session record is not an object", record)
    _check_version(rec, record)
    try:
        expires = rec["expires_at"]
        data = rec["data"]
        metadata = rec["metadata"]
        if not isinstance(data, dict) or not isinstance(metadata, dict):
            raise IntegrityError("data/metadata is not an object", record)
        tags = rec["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise IntegrityError("tags is not a list of strings", record)
        version, event_count, last_seq = rec["version"], rec["event_count"], rec["last_seq"]
        if not all(isinstance(n, int) and n >= 0 for n in (version, event_count, last_seq)):
            raise IntegrityError("version/event counters are not non-negative integers", record)
        # fast_session: every field, in order (every stored session read builds one)
        return fast_session(
            str(rec["id"]),
            rec["processor_id"],
            Status(rec["status"]),
            data,
            metadata,
            frozenset(tags),
            _ts(rec["created_at"], "created_at", record),
            _ts(rec["updated_at"], "updated_at", record),
            None if expires is None else _ts(expires, "expires_at", record),
            version,
            event_count,
            last_seq,
            rec.get("group"),
        )
    except KeyError as exc:
        raise IntegrityError(f"session record lacks field {exc.args[0]!r}", record) from None
    except ValueError as exc:
        raise IntegrityError(f"session record is malformed: {exc}", record) from None


def event_to_record(event: Event) -> dict[str, Any]:
    """A JSON-ready dict for ``event``.

    An event with a ``key`` is written as format version :data:`EVENT_FORMAT_VERSION`
    (2: it adds ``"key"``); one without stays version 1, readable by every release.
    """
    if event.key is None:
        return {
            "v": FORMAT_VERSION,
            "seq": event.seq,
            "type": event.type,
            "at": event.at,
            "data": event.data,
        }
    return {
        "v": EVENT_FORMAT_VERSION,
        "seq": event.seq,
        "type": event.type,
        "at": event.at,
        "data": event.data,
        "key": event.key,
    }


def event_from_record(rec: Any, record: str = "") -> Event:
    """Rebuild an :class:`Event` (validated); versions 1 (no key) and 2 are read."""
    if not isinstance(rec, dict):
        raise IntegrityError("event record is not an object", record)
    _check_version(rec, record, EVENT_FORMAT_VERSION)
    try:
        seq, etype, data = rec["seq"], rec["type"], rec["data"]
        key = rec.get("key")
        if (
            not isinstance(seq, int)
            or not isinstance(etype, str)
            or not isinstance(data, dict)
            or not (key is None or (isinstance(key, str) and key))
        ):
            raise IntegrityError("event record has fields of the wrong type", record)
        return Event(seq, etype, _ts(rec["at"], "at", record), data, key)
    except KeyError as exc:
        raise IntegrityError(f"event record lacks field {exc.args[0]!r}", record) from None


def _checkpoint_body(cp: Checkpoint) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "id": cp.id,
        "session_id": cp.session_id,
        "label": cp.label,
        "created_at": cp.created_at,
        "version": cp.version,
        "status": cp.status.value,
        "data": cp.data,
        "metadata": cp.metadata,
        "tags": sorted(cp.tags),
        "event_count": cp.event_count,
        "last_seq": cp.last_seq,
    }


def checkpoint_digest(cp: Checkpoint) -> str:
    """SHA-256 over the canonical encoding of the checkpoint's content (all but digest)."""
    return sha256_hex(canonical_json(_checkpoint_body(cp)))


def checkpoint_to_record(cp: Checkpoint) -> dict[str, Any]:
    """A JSON-ready dict for ``cp`` including its digest."""
    body = _checkpoint_body(cp)
    body["digest"] = cp.digest
    return body


def checkpoint_from_record(rec: Any, record: str = "") -> Checkpoint:
    """Rebuild a :class:`Checkpoint`; the digest is NOT verified here (see ``verify``)."""
    if not isinstance(rec, dict):
        raise IntegrityError("checkpoint record is not an object", record)
    _check_version(rec, record)
    try:
        tags = rec["tags"]
        if (
            not isinstance(tags, list)
            or not all(isinstance(t, str) for t in tags)
            or not isinstance(rec["data"], dict)
            or not isinstance(rec["metadata"], dict)
        ):
            raise IntegrityError("checkpoint record has fields of the wrong type", record)
        return Checkpoint(
            id=str(rec["id"]),
            session_id=str(rec["session_id"]),
            label=rec["label"],
            created_at=_ts(rec["created_at"], "created_at", record),
            version=int(rec["version"]),
            status=Status(rec["status"]),
            data=rec["data"],
            metadata=rec["metadata"],
            tags=frozenset(tags),
            event_count=int(rec["event_count"]),
            last_seq=int(rec["last_seq"]),
            digest=str(rec["digest"]),
        )
    except KeyError as exc:
        raise IntegrityError(f"checkpoint record lacks field {exc.args[0]!r}", record) from None
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"checkpoint record is malformed: {exc}", record) from None


def dumps_record(rec: Mapping[str, Any]) -> bytes:
    """Encode a record dict built by the ``*_to_record`` helpers."""
    return orjson.dumps(rec, option=orjson.OPT_UTC_Z)
