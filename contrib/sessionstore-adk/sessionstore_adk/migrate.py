"""Moving sessions over from another ADK session service (ADK's own SQLite, database or
in-memory service) into a :class:`~sessionstore_adk.SessionStoreService`."""

from __future__ import annotations

from google.adk.sessions import BaseSessionService

from .service import SessionStoreService

__all__ = ["copy_sessions"]


async def copy_sessions(
    source: BaseSessionService,
    target: SessionStoreService,
    *,
    app_name: str,
    user_id: str | None = None,
) -> int:
    """Copy every session of ``app_name`` (of one user, or of all users) from ``source``
    to ``target``, with its events, state and ``last_update_time``; sessions ``target``
    has already are left alone, so an interrupted copy can run again. Returns the number
    of sessions copied."""
    listed = await source.list_sessions(app_name=app_name, user_id=user_id)
    copied = 0
    for brief in listed.sessions:
        full = await source.get_session(
            app_name=app_name, user_id=brief.user_id, session_id=brief.id
        )
        if full is not None and await target.import_session(full):
            copied += 1
    return copied
