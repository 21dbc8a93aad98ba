"""Listing the SDK sessions of a store, and moving sessions over from other backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

from agents.memory import Session

from sessionstore import QueryOptions, SessionFilter, SessionStore

from ._ids import METADATA_KEY, TAG, decode_session_id
from ._session import SessionStoreSession

__all__ = ["copy_session", "iter_session_ids"]


async def iter_session_ids(store: SessionStore, *, page_size: int = 500) -> AsyncIterator[str]:
    """The SDK ids of every session this adapter stored in ``store`` (oldest first), in
    pages of ``page_size`` through the store's indexed listing (by the adapter's tag)."""
    only_ours = SessionFilter(tags_all=[TAG])
    cursor: str | None = None
    while True:
        page = await store.list_sessions(only_ours, QueryOptions(limit=page_size, cursor=cursor))
        for session in page:
            sdk_id = session.metadata.get(METADATA_KEY)
            if not isinstance(sdk_id, str):
                sdk_id = decode_session_id(session.id)
            if sdk_id is not None:
                yield sdk_id
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def copy_session(source: Session, target: SessionStoreSession) -> int:
    """Copy every item of ``source`` (any SDK session: ``SQLiteSession``, ``RedisSession``,
    ...) into ``target``, replacing what ``target`` held in one atomic write, so running
    it again (after a failure) gives the same result. Returns the number of items."""
    items = await source.get_items()
    if not await target._atomic_replace_items(items):
        # A subclass with storage of its own: through its public methods.
        await target.clear_session()
        await target.add_items(items)
    return len(items)
