"""Expiry: marking due sessions ``expired`` and removing them, as plain functions.

:class:`~sessionstore.BaseSessionStore` finds the due sessions (its driver may override
``_expired_sessions`` with an index) and hands them here with its write engine
(``execute``: load, plan with a :class:`Planner`, apply, retried on write races) and its
observer call (``notify``). Each session is re-checked inside its own plan, so a session
touched meanwhile is left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ._planner import Planner
from .model import Session, Status

__all__ = ["expire_due", "remove_due"]

#: The base store's write engine: load ``ids``, run the plan, apply, return its result.
Execute = Callable[[Sequence[str], Callable[[Planner], bool]], Awaitable[bool]]
Notify = Callable[..., None]  # the store's observer call: notify(hook, **arguments)


def _mark_expired(planner: Planner, sid: str) -> bool:
    current = planner.stored(sid)
    if current is None or not current.is_expired(planner.now) or current.status is Status.EXPIRED:
        return False
    planner.set_status_unchecked(current, Status.EXPIRED)
    return True


def _remove(planner: Planner, sid: str) -> bool:
    current = planner.stored(sid)
    if current is None or not current.is_expired(planner.now):
        return False
    planner.delete(sid, None, missing_ok=True)
    return True


async def expire_due(due: Sequence[Session], execute: Execute, notify: Notify) -> list[str]:
    """Mark each of ``due`` ``expired`` (version + 1) if it still is due; their ids."""
    done: list[str] = []
    for session in due:
        if session.status is Status.EXPIRED:
            continue
        sid = session.id

        def plan(planner: Planner, sid: str = sid) -> bool:
            return _mark_expired(planner, sid)

        if await execute([sid], plan):
            done.append(sid)
            notify("sessionstore_session_expired", session_id=sid)
    return done


async def remove_due(due: Sequence[Session], execute: Execute, notify: Notify) -> int:
    """Delete each of ``due`` (events, checkpoints, index entries) if it still is due."""
    removed = 0
    for session in due:
        sid = session.id

        def plan(planner: Planner, sid: str = sid) -> bool:
            return _remove(planner, sid)

        if await execute([sid], plan):
            removed += 1
            if session.status is not Status.EXPIRED:
                notify("sessionstore_session_expired", session_id=sid)
    return removed
