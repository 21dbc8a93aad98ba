"""The manager's bookkeeping, kept under the reserved metadata key ``_manager``.

Layout (JSON, format ``v`` 1)::

    {"v": 1, "iterations": 3, "max_iterations": 50,
     "lease": {"owner": "worker-1", "token": 17, "acquired_at": "...Z", "expires_at": "...Z"},
     "result": <JSON>, "error": {"type": "ValueError", "message": "..."}}

Readers are lenient: a missing or malformed field reads as its default, and unknown keys
are kept when the manager writes the dict back (a newer manager may have added them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ..errors import InvalidArgumentError
from ..model import Session

__all__ = ["MANAGER_KEY", "Book", "check_user_metadata", "format_time", "parse_time"]

MANAGER_KEY: Final = "_manager"
FORMAT_VERSION: Final = 1


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """The datetime of an ISO string written by :func:`format_time` (``None`` if bad)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def check_user_metadata(keys: object, what: str = "metadata") -> None:
    """Refuse the reserved key in user metadata changes."""
    if isinstance(keys, Mapping | list | tuple | set | frozenset) and MANAGER_KEY in keys:
        raise InvalidArgumentError(
            f"{what} key {MANAGER_KEY!r} is reserved for the manager's bookkeeping"
        )


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True, slots=True)
class Book:
    """A parsed view of a session's ``_manager`` dict (``raw`` keeps every key)."""

    raw: dict[str, Any]

    @classmethod
    def of(cls, session: Session | Mapping[str, Any]) -> Book:
        """The bookkeeping of ``session`` (or of a metadata dict); empty if unmanaged."""
        metadata = session.metadata if isinstance(session, Session) else session
        raw = metadata.get(MANAGER_KEY)
        return cls(dict(raw) if isinstance(raw, dict) else {})

    @property
    def managed(self) -> bool:
        """True when the manager has written bookkeeping for the session."""
        return bool(self.raw)

    @property
    def iterations(self) -> int:
        """Iterations counted so far."""
        return max(0, _int(self.raw.get("iterations"), 0))

    @property
    def max_iterations(self) -> int | None:
        """The iteration limit (``None``: unlimited)."""
        value = self.raw.get("max_iterations")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def lease(self) -> dict[str, Any] | None:
        """The raw lease record, if any."""
        value = self.raw.get("lease")
        return value if isinstance(value, dict) else None

    @property
    def result(self) -> Any:
        """What ``complete(result)`` recorded."""
        return self.raw.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        """What ``fail(error)`` recorded."""
        value = self.raw.get("error")
        return value if isinstance(value, dict) else None

    def with_changes(self, changes: Mapping[str, Any], iterations_delta: int = 0) -> dict[str, Any]:
        """A new ``_manager`` dict: ``changes`` set (``None`` values remove), delta added."""
        out = dict(self.raw)
        out["v"] = FORMAT_VERSION
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        if iterations_delta:
            out["iterations"] = self.iterations + iterations_delta
        return out
