"""Queries and bulk operations of the manager (:class:`SessionQueries`), paged so that
they stay safe at 100,000+ sessions: every scan walks the store with keyset cursors
ordered by id, one page (``config.page_size`` sessions) in memory at a time.

``bulk_update`` / ``bulk_delete`` write each page as one batch with every session's
``expected_version``; if the batch meets a concurrent change (or the driver cannot
commit it atomically) the page falls back to per-session compare-and-set, re-checking
the filter on the fresh session. Nothing is ever overwritten blindly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ..errors import (
    InvalidArgumentError,
    SessionConflictError,
    SessionNotFoundError,
    TransactionError,
)
from ..model import DeleteOp, Op, Session, SessionUpdate, Status, UpdateOp
from ..query import MAX_LIMIT, Page, QueryOptions, SessionFilter, matches
from ._bookkeeping import MANAGER_KEY, check_user_metadata
from ._config import ManagerConfig
from ._writes import update_kwargs

if TYPE_CHECKING:
    from ..protocol import SessionStore

__all__ = ["SessionQueries"]

_ATTEMPTS: Final = 20
_UPDATE_FIELDS: Final = frozenset(f.name for f in fields(SessionUpdate))


def _as_update(changes: SessionUpdate | Mapping[str, Any]) -> SessionUpdate:
    if isinstance(changes, SessionUpdate):
        update = changes
    elif isinstance(changes, Mapping):
        unknown = sorted(set(changes) - _UPDATE_FIELDS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown change(s) {unknown} (allowed: {', '.join(sorted(_UPDATE_FIELDS))})"
            )
        update = SessionUpdate(**changes)
    else:
        raise InvalidArgumentError("changes must be a SessionUpdate or a mapping of its fields")
    for name in ("merge_metadata", "remove_metadata_keys"):
        check_user_metadata(getattr(update, name))
    if update.metadata is not None:
        check_user_metadata(update.metadata)
    return update


def _for_session(update: SessionUpdate, session: Session) -> SessionUpdate:
    """Replacing metadata wholesale keeps the manager's bookkeeping."""
    if update.metadata is None or MANAGER_KEY not in session.metadata:
        return update
    return replace(update, metadata={**update.metadata, MANAGER_KEY: session.metadata[MANAGER_KEY]})


class SessionQueries:
    """``list/search/count/find/iter_sessions``, ``get_sessions_by_processor``, bulk ops."""

    __slots__ = ("_check_open", "config", "store")

    def __init__(
        self, store: SessionStore, config: ManagerConfig, check_open: Callable[[], None]
    ) -> None:
        self.store = store
        self.config = config
        self._check_open = check_open

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One page of sessions (the store's query; see :class:`SessionFilter`)."""
        self._check_open()
        return await self.store.list_sessions(filter, options)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """How many live sessions match ``filter``."""
        self._check_open()
        return await self.store.count_sessions(filter)

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """Case-insensitive plain-text search (the store's ``search_sessions``)."""
        self._check_open()
        return await self.store.search_sessions(text, options, filter)

    async def iter_pages(
        self, filter: SessionFilter | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[list[Session]]:
        """Every matching session, a page at a time, in id order (keyset cursors)."""
        self._check_open()
        size = page_size or self.config.page_size
        cursor: str | None = None
        while True:
            page = await self.store.list_sessions(
                filter, QueryOptions(sort_by="id", limit=size, cursor=cursor)
            )
            if page.items:
                yield page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def iter_sessions(
        self, filter: SessionFilter | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[Session]:
        """Every matching session, in id order, one page in memory at a time."""
        async for page in self.iter_pages(filter, page_size=page_size):
            for session in page:
                yield session

    async def find_sessions(
        self,
        *,
        since: datetime | None = None,
        updated_since: datetime | None = None,
        status: Status | str | Iterable[Status | str] | None = None,
        processor_id: str | Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        has_interactions: bool | None = None,
        limit: int = 100,
    ) -> list[Session]:
        """The newest sessions (by ``created_at``) matching every given condition.

        ``since`` / ``updated_since`` are exclusive bounds on ``created_at`` /
        ``updated_at``; ``has_interactions`` tests ``event_count > 0``; ``tags`` must all
        be present. At most ``limit`` sessions (paged underneath when over 10,000).
        """
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"limit must be a positive int, got {limit!r}")
        flt = SessionFilter(
            created_after=since,
            updated_after=updated_since,
            status=status,
            processor_id=processor_id,
            tags_all=tags,
            has_events=has_interactions,
        )
        found: list[Session] = []
        cursor: str | None = None
        while len(found) < limit:
            options = QueryOptions(
                sort_by="created_at",
                order="desc",
                limit=min(MAX_LIMIT, limit - len(found)),
                cursor=cursor,
            )
            page = await self.store.list_sessions(flt, options)
            found.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return found

    async def get_sessions_by_processor(
        self,
        processor_id: str,
        *,
        status: Status | str | Iterable[Status | str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """A page of one processor's sessions, newest first; follow ``next_cursor``."""
        self._check_open()
        if not isinstance(processor_id, str):
            raise InvalidArgumentError("processor_id must be a str")
        return await self.store.list_sessions(
            SessionFilter(processor_id=processor_id, status=status),
            QueryOptions(sort_by="created_at", order="desc", limit=limit, cursor=cursor),
        )

    # ------------------------------------------------------------------ bulk

    def _op_batches(self, ops: Sequence[Op]) -> list[Sequence[Op]]:
        caps = self.store.capabilities
        size = len(ops) if caps.atomic_multi_session else 1
        if caps.max_batch is not None:
            size = min(size, caps.max_batch)
        size = max(1, size)
        return [ops[i : i + size] for i in range(0, len(ops), size)]

    async def bulk_update(
        self, filter: SessionFilter | None, changes: SessionUpdate | Mapping[str, Any]
    ) -> int:
        """Apply ``changes`` (a :class:`SessionUpdate` or a mapping of its fields) to every
        matching session; returns how many were updated. Version-checked per session."""
        self._check_open()
        update = _as_update(changes)
        flt = filter or SessionFilter()
        updated = 0
        async for page in self.iter_pages(flt):
            ops = [UpdateOp(s.id, _for_session(update, s), s.version) for s in page]
            for chunk in self._op_batches(ops):
                try:
                    await self.store.commit(chunk)
                    updated += len(chunk)
                except (SessionConflictError, SessionNotFoundError, TransactionError):
                    for op in chunk:
                        assert isinstance(op, UpdateOp)
                        updated += await self._update_one(op.session_id, update, flt)
        return updated

    async def _update_one(self, session_id: str, update: SessionUpdate, flt: SessionFilter) -> int:
        for _ in range(_ATTEMPTS):
            current = await self.store.get_session(session_id, include_expired=flt.include_expired)
            if current is None or not matches(current, flt, self.store.clock.now()):
                return 0
            try:
                await self.store.update_session(
                    session_id,
                    **update_kwargs(_for_session(update, current)),
                    expected_version=current.version,
                )
            except SessionConflictError:
                continue
            except SessionNotFoundError:
                return 0
            return 1
        raise SessionConflictError(session_id, -1, -1)

    async def bulk_delete(self, filter: SessionFilter | None) -> int:
        """Delete every matching session (with events and checkpoints); returns the count.

        ``bulk_delete(None)`` deletes every live session of the store's namespace.
        """
        self._check_open()
        flt = filter or SessionFilter()
        deleted = 0
        async for page in self.iter_pages(flt):
            ops = [DeleteOp(s.id, s.version) for s in page]
            for chunk in self._op_batches(ops):
                try:
                    await self.store.commit(chunk)
                    deleted += len(chunk)
                except (SessionConflictError, SessionNotFoundError, TransactionError):
                    for op in chunk:
                        assert isinstance(op, DeleteOp)
                        deleted += await self._delete_one(op.session_id, flt)
        return deleted

    async def _delete_one(self, session_id: str, flt: SessionFilter) -> int:
        for _ in range(_ATTEMPTS):
            current = await self.store.get_session(session_id, include_expired=flt.include_expired)
            if current is None or not matches(current, flt, self.store.clock.now()):
                return 0
            try:
                return int(
                    await self.store.delete_session(session_id, expected_version=current.version)
                )
            except SessionConflictError:
                continue
        raise SessionConflictError(session_id, -1, -1)
