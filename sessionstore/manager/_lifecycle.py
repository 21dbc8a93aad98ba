"""The lifecycle rules of a managed session: which status may follow which.

Status transitions (each recorded as a ``"lifecycle"`` event and persisted before the
call returns)::

    active  --pause-->            paused
    paused  --resume-->           active
    timeout --resume(max_iterations=higher)--> active
    active | paused --complete--> completed
    active | paused | timeout --fail--> failed
    active  --next_iteration() past max_iterations--> timeout

Pure functions: :class:`~sessionstore.manager.ManagedSession` stages and persists.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from ..errors import InvalidArgumentError
from ..model import Status
from ._errors import LifecycleError

__all__ = ["FAILABLE", "LIVE", "check_transition", "error_record", "set_status_sources"]

#: The statuses in which work goes on.
LIVE: Final = frozenset({Status.ACTIVE, Status.PAUSED})
#: The statuses ``fail()`` moves from.
FAILABLE: Final = frozenset({*LIVE, Status.TIMEOUT})


def check_transition(
    session_id: str, current: Status, to: Status, allowed: Collection[Status]
) -> None:
    """:class:`LifecycleError` unless ``current`` may move to ``to``."""
    if current not in allowed:
        raise LifecycleError(
            f"session {session_id!r} is {current.value}: cannot move to {to.value} "
            f"(allowed from: {', '.join(sorted(s.value for s in allowed))})"
        )


def set_status_sources(target: Status) -> frozenset[Status]:
    """Where ``set_status(target)`` may move from (never to or from ``expired``)."""
    if target is Status.EXPIRED:
        raise LifecycleError("only the store's clock expires sessions")
    return frozenset(s for s in Status if s is not Status.EXPIRED and s is not target)


def error_record(error: BaseException | str | dict[str, Any]) -> dict[str, Any]:
    """What ``fail(error)`` records: ``{"type": ..., "message": ...}`` (or the dict)."""
    if isinstance(error, BaseException):
        return {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, str):
        return {"type": "error", "message": error}
    if isinstance(error, dict):
        return dict(error)
    raise InvalidArgumentError("error must be an exception, a str or a dict")
