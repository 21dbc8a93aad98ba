"""Argument validation shared by every driver: ids, tags, ttl, event inputs.

Everything here runs before any I/O and raises a typed error
(:class:`InvalidSessionIdError`, :class:`InvalidArgumentError`) on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from .clock import truncate_ms
from .errors import InvalidArgumentError, InvalidSessionIdError
from .model import TTL, EventInput, Status

__all__ = [
    "MAX_EVENT_KEY_LENGTH",
    "MAX_LABEL_LENGTH",
    "MAX_TAG_LENGTH",
    "MAX_TTL_SECONDS",
    "has_lone_surrogate",
    "validate_datetime",
    "validate_event",
    "validate_event_filters",
    "validate_event_input",
    "validate_event_key",
    "validate_event_type",
    "validate_expires_at",
    "validate_label",
    "validate_processor_id",
    "validate_session_id",
    "validate_status",
    "validate_tags",
    "validate_ttl",
]

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Ids that passed the check lately (the same session is named again and again: a set
#: lookup is a fraction of the regex); bounded, cleared when full.
_VALID_IDS: set[str] = set()
_MAX_VALID_IDS: Final = 8192
MAX_TAG_LENGTH: Final = 256
MAX_LABEL_LENGTH: Final = 256
MAX_TTL_SECONDS: Final = 100 * 365 * 86_400  # a century: anything longer is a bug
_MAX_TYPE_LENGTH: Final = 128
_ONE_MS: Final = timedelta(milliseconds=1)
MAX_EVENT_KEY_LENGTH: Final = 256
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(value: str) -> bool:
    """Whether ``value`` holds a surrogate code point (``"\\ud800"``): such a str has no
    UTF-8 encoding, so no store can keep it (refused on every driver alike)."""
    return not value.isascii() and _SURROGATE_RE.search(value) is not None


def _bad_text(value: object, maximum: int) -> bool:
    """Not a non-empty, NUL-free, UTF-8-encodable str of at most ``maximum`` characters."""
    return (
        not isinstance(value, str)
        or not value
        or len(value) > maximum
        or "\x00" in value
        or has_lone_surrogate(value)
    )


def validate_session_id(value: object, what: str = "session id") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidSessionIdError`.

    Allowed: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` and no ``..``, so an id is always safe as
    a file name and a Redis hash tag.
    """
    if type(value) is not str:
        raise InvalidSessionIdError(value, f"{what} must be a str, not {type(value).__name__}")
    if value in _VALID_IDS:  # checked before (a str is immutable): a set lookup, no regex
        return value
    if _ID_RE.fullmatch(value) is None:
        raise InvalidSessionIdError(value, f"{what} has a disallowed character or length")
    if ".." in value:
        raise InvalidSessionIdError(value, f"{what} contains '..'")
    if len(_VALID_IDS) >= _MAX_VALID_IDS:
        _VALID_IDS.clear()
    _VALID_IDS.add(value)
    return value


def validate_processor_id(value: object) -> str | None:
    """A processor id is ``None`` or a non-empty str of at most 256 characters."""
    if value is None:
        return None
    if _bad_text(value, MAX_TAG_LENGTH):
        raise InvalidArgumentError(
            f"processor_id must be a non-empty str of at most {MAX_TAG_LENGTH} characters "
            "(no NUL, no lone surrogate)"
        )
    return str(value)


def validate_tags(tags: Iterable[str] | None) -> frozenset[str]:
    """Tags are non-empty strings of at most 256 characters (no NUL)."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str | bytes):
        raise InvalidArgumentError("tags must be a collection of str, not a single string")
    out = []
    for tag in tags:
        if _bad_text(tag, MAX_TAG_LENGTH):
            raise InvalidArgumentError(
                f"invalid tag {tag!r}: tags are non-empty str of at most {MAX_TAG_LENGTH} chars "
                "(no NUL, no lone surrogate)"
            )
        out.append(str(tag))
    return frozenset(out)


def validate_status(value: object) -> Status:
    """Coerce ``value`` (a :class:`Status` or its string) or raise."""
    if isinstance(value, Status):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError
        return Status(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidArgumentError(f"invalid status {value!r} (allowed: {allowed})") from None


def validate_ttl(ttl: TTL) -> timedelta:
    """A ttl is a positive number of seconds (or a timedelta) of at most a century."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float | timedelta):
        raise InvalidArgumentError(f"ttl must be seconds (int/float) or a timedelta, not {ttl!r}")
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds > 0:  # also rejects NaN
        raise InvalidArgumentError(f"ttl must be positive, got {ttl!r}")
    if seconds > MAX_TTL_SECONDS:
        raise InvalidArgumentError(f"ttl {ttl!r} is absurdly long (max {MAX_TTL_SECONDS} s)")
    delta = timedelta(seconds=seconds)
    if delta < timedelta(milliseconds=1):
        raise InvalidArgumentError(f"ttl {ttl!r} is below the 1 ms resolution")
    # Whole milliseconds: now + ttl must stay a millisecond-precision timestamp.
    return timedelta(milliseconds=delta // timedelta(milliseconds=1))


def validate_expires_at(value: object) -> datetime:
    """An absolute expiry: a timezone-aware datetime (stored in UTC, millisecond precision)."""
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"expires_at must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError("expires_at must be timezone-aware")
    return truncate_ms(value)


def validate_datetime(value: object, what: str) -> datetime:
    """A timezone-aware datetime, returned in UTC at millisecond precision."""
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(f"{what} must be timezone-aware")
    try:
        return truncate_ms(value)
    except OverflowError:
        raise InvalidArgumentError(f"{what} is out of range: {value!r}") from None


def validate_event_key(value: object, what: str = "event key") -> str:
    """An event key: a non-empty str of at most 256 characters, no control characters."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_EVENT_KEY_LENGTH
        or _CONTROL_RE.search(value) is not None
        or has_lone_surrogate(value)
    ):
        raise InvalidArgumentError(
            f"{what} must be a non-empty str of at most {MAX_EVENT_KEY_LENGTH} characters "
            f"without control characters or lone surrogates, got {value!r}"
        )
    return value


def validate_event_filters(
    before_seq: int | None,
    types: Iterable[str] | None,
    at_after: datetime | None,
    at_before: datetime | None,
) -> tuple[frozenset[str] | None, datetime | None, datetime | None]:
    """``get_events``' filters checked: ``(types as a frozenset, at_after, at_before)``,
    the times in UTC at millisecond precision (an exclusive ``at_before`` finer than
    that rounds up, so nothing before it is lost)."""
    if before_seq is not None:
        validate_positive_int(before_seq, "before_seq", maximum=2**62)
    kinds: frozenset[str] | None = None
    if types is not None:
        if isinstance(types, str | bytes) or not isinstance(types, Iterable):
            raise InvalidArgumentError("types must be a collection of event types")
        kinds = frozenset(types)
        if not all(isinstance(t, str) and not _bad_type(t) for t in kinds):
            raise InvalidArgumentError("types must hold event types (non-empty str)")
    low = None if at_after is None else validate_datetime(at_after, "at_after")
    high = None
    if at_before is not None:
        # exclusive: an `at` of a finer precision than stored rounds up
        exact = validate_datetime(at_before, "at_before")
        high = exact if exact == at_before else exact + _ONE_MS
    return kinds, low, high


def validate_event_type(value: object) -> str:
    """An event type: a non-empty str of at most 128 characters (no NUL, no lone
    surrogate)."""
    if _bad_type(value):
        raise InvalidArgumentError(
            f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters "
            f"(no NUL, no lone surrogate), got {value!r}"
        )
    return value  # type: ignore[return-value]  # checked by _bad_type


def _bad_type(etype: object) -> bool:
    """Not a valid event type: a non-empty str of at most 128 characters, no NUL (a
    PostgreSQL text cannot hold one), encodable."""
    return (
        not isinstance(etype, str)
        or not etype
        or len(etype) > _MAX_TYPE_LENGTH
        or "\x00" in etype
        or has_lone_surrogate(etype)
    )


def validate_label(value: object) -> str | None:
    """A checkpoint label: ``None`` or a str of at most 256 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL_LENGTH or has_lone_surrogate(value):
        raise InvalidArgumentError(
            f"label must be a str of at most {MAX_LABEL_LENGTH} chars (no lone surrogate)"
        )
    return value


_EVENT_FIELDS: Final = frozenset({"type", "data"})
_FULL_EVENT_FIELDS: Final = frozenset({"type", "data", "key", "at"})


def validate_event(
    value: EventInput | Mapping[str, Any],
) -> tuple[str, Any, str | None, datetime | None]:
    """Return ``(type, data, key, at)`` of an event to append (``key``/``at`` checked,
    ``at`` in UTC at millisecond precision); the data is validated by the codec."""
    if type(value) is dict and value.keys() <= _EVENT_FIELDS:  # the commonest, first
        if "type" not in value:
            raise InvalidArgumentError("an event needs a 'type'")
        etype = value["type"]
        if _bad_type(etype):
            raise InvalidArgumentError(
                f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters "
                "(no NUL, no lone surrogate)"
            )
        return etype, value.get("data", {}), None, None
    if isinstance(value, EventInput):
        etype, data, key, at = value.type, value.data, value.key, value.at
    elif isinstance(value, Mapping):
        unknown = set(value) - _FULL_EVENT_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown event field(s) {sorted(unknown)}: an event has 'type', 'data', "
                "'key' and 'at'"
            )
        if "type" not in value:
            raise InvalidArgumentError("an event needs a 'type'")
        etype, data = value["type"], value.get("data", {})
        key, at = value.get("key"), value.get("at")
    else:
        raise InvalidArgumentError(f"an event must be a mapping or EventInput, not {value!r}")
    if _bad_type(etype):
        raise InvalidArgumentError(
            f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters "
            "(no NUL, no lone surrogate)"
        )
    return (
        etype,
        data,
        None if key is None else validate_event_key(key),
        None if at is None else validate_datetime(at, "event at"),
    )


def _refuse_key_at() -> None:
    from .errors import UnsupportedOperationError

    raise UnsupportedOperationError(
        "this store does not support event keys or caller-set 'at' "
        "(its driver does not declare the event_log capability)"
    )


def validate_event_input(value: EventInput | Mapping[str, Any]) -> tuple[str, Any]:
    """Return ``(type, data)`` of an event to append without a ``key`` or ``at`` (a
    driver path that cannot store them: :class:`UnsupportedOperationError` for one that
    has them); the data is validated by the codec. See :func:`validate_event`."""
    if type(value) is dict and value.keys() <= _EVENT_FIELDS:  # the common case, first
        if "type" not in value:
            raise InvalidArgumentError("an event needs a 'type'")
        etype, data = value["type"], value.get("data", {})
    elif isinstance(value, EventInput):
        if value.key is not None or value.at is not None:
            _refuse_key_at()
        etype, data = value.type, value.data
    elif isinstance(value, Mapping):
        if value.get("key") is not None or value.get("at") is not None:
            _refuse_key_at()
        unknown = set(value) - _FULL_EVENT_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"unknown event field(s) {sorted(unknown)}: an event has 'type' and 'data'"
            )
        if "type" not in value:
            raise InvalidArgumentError("an event needs a 'type'")
        etype, data = value["type"], value.get("data", {})
    else:
        raise InvalidArgumentError(f"an event must be a mapping or EventInput, not {value!r}")
    if _bad_type(etype):
        raise InvalidArgumentError(
            f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters "
            "(no NUL, no lone surrogate)"
        )
    return etype, data


def validate_positive_int(
    value: object, what: str, *, maximum: int, allow_zero: bool = False
) -> int:
    """An int in ``[1, maximum]`` (or ``[0, maximum]``); bools are refused."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= maximum:
        raise InvalidArgumentError(f"{what} must be an int in [{low}, {maximum}], got {value!r}")
    return value
