"""Streaming a store's sessions as backup items, with flat memory.

Sessions come in pages of a keyset query sorted by id (``list_sessions(..., sort_by="id",
cursor=...)``), never all at once; each session's events are read in chunks with the
store's ``primitives.load_events(after_seq=..., limit=...)``, so one session with a million
events is never held in memory either. ``scan()`` is not used: it loads whole event lists.

Each session is copied consistently with its head: exactly its ``event_count`` events with
``seq <= last_seq`` (the numbering may have gaps; events appended meanwhile are left out;
a head whose events were removed before we started is re-read; removal while we copy
fails the copy of that session), and the checkpoints taken at or before its version.
Events with a seq up to the head's ``last_seq`` can only go away after the head was read,
never come, so reading ``event_count`` of them proves the copy consistent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from ..driver import StorePrimitives, primitives_of, sound_checkpoints
from ..errors import SessionConflictError
from ..model import Checkpoint, Event, Session
from ..protocol import SessionStore
from ..query import QueryOptions, SessionFilter
from ._format import CheckpointItem, EventsItem, Item, PageEnd, SessionItem

__all__ = ["ChangedWhileCopiedError", "ChunkSizer", "store_items", "with_include_expired"]

log = logging.getLogger("sessionstore.backup")

#: Sessions per page read from a source store.
PAGE_SIZE: Final = 256
_RETRIES: Final = 5
#: Sessions whose checkpoints and first events are read at once, and how many events
#: that first read takes (the rest of a long history is read chunk by chunk).
_WINDOW: Final = 16
_FIRST_EVENTS: Final = 256


@dataclass
class ChunkSizer:
    """How many events to read at once: about ``target_bytes`` of encoded events.

    The consumer reports what a chunk weighed (``observe``); the next read adapts, so a
    session of 1 MiB events is read a few at a time and one of tiny events in big chunks.
    """

    limit: int = 256
    target_bytes: int = 1 << 20
    max_events: int = 5_000

    def observe(self, count: int, nbytes: int) -> None:
        """Record that ``count`` events took ``nbytes`` encoded."""
        if count:
            per_event = max(1, nbytes // count)
            self.limit = max(1, min(self.max_events, self.target_bytes // per_event))


def with_include_expired(flt: SessionFilter | None, include_expired: bool) -> SessionFilter:
    """``flt`` (or an empty filter) with ``include_expired`` switched on if asked."""
    if flt is None:
        return SessionFilter(include_expired=include_expired)
    if not include_expired or flt.include_expired:
        return flt
    return SessionFilter(
        ids=flt.ids,
        processor_id=flt.processor_id,
        status=flt.status,
        tags_all=flt.tags_all,
        tags_any=flt.tags_any,
        metadata=flt.metadata,
        created_after=flt.created_after,
        created_before=flt.created_before,
        updated_after=flt.updated_after,
        updated_before=flt.updated_before,
        expires_before=flt.expires_before,
        has_events=flt.has_events,
        include_expired=True,
    )


async def store_items(
    store: SessionStore,
    flt: SessionFilter,
    sizer: ChunkSizer,
    *,
    cursor: str | None = None,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[Item]:
    """Every session matching ``flt`` as items, in id order, a :class:`PageEnd` per page.

    ``cursor`` continues an earlier run of the same query (a ``PageEnd.cursor``).
    """
    prims = primitives_of(store)
    while True:
        page = await store.list_sessions(
            flt, QueryOptions(sort_by="id", limit=page_size, cursor=cursor)
        )
        for start in range(0, len(page.items), _WINDOW):
            window = page.items[start : start + _WINDOW]
            limit = min(sizer.limit, _FIRST_EVENTS)
            for head in await _read_heads(prims, window, flt, limit):
                if head is not None:  # None: deleted or expired meanwhile
                    async for item in _session_items(prims, head, sizer):
                        yield item
        if page.items:
            yield PageEnd(page.items[-1].id, page.next_cursor)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class ChangedWhileCopiedError(SessionConflictError):
    """A session was trimmed or replaced while its events were being copied."""

    def __init__(self, session_id: str, version: int) -> None:
        super().__init__(session_id, version, -1)
        self.args = (
            f"session {session_id!r} was trimmed or replaced while its events were being "
            "copied; run the operation again",
        )


def _sound_checkpoints(
    store: StorePrimitives, session: Session, cps: list[Checkpoint]
) -> list[Checkpoint]:
    """The checkpoints taken at or before the copied head, without corrupt ones: a
    checkpoint whose digest does not match is left out and reported (unreadable ones were
    already left out and reported by ``load_checkpoints``)."""
    taken = [cp for cp in cps if cp.version <= session.version]  # later: after the head
    return sound_checkpoints(store, session.id, taken)


@dataclass
class _Head:
    """A session with its checkpoints and its first events, read consistently."""

    session: Session
    checkpoints: list[Checkpoint]
    first: list[Event]


async def _read_head(
    store: StorePrimitives, session: Session, flt: SessionFilter, limit: int
) -> _Head | None:
    """``None`` when the session was deleted (or expired) since the page was read."""
    sid = session.id
    first: list[Event] = []
    for _ in range(_RETRIES):
        first = []
        if session.event_count:
            first = await store.load_events(sid, after_seq=0, limit=limit, last=None)
            first = [e for e in first if e.seq <= session.last_seq]
        if len(first) == min(limit, session.event_count):
            break
        # events removed (or the session re-created) since we read the head: read it again
        reloaded = (await store.load([sid])).get(sid)
        if reloaded is None or (not flt.include_expired and reloaded.is_expired(store.clock.now())):
            return None
        session = reloaded
    else:
        raise ChangedWhileCopiedError(sid, session.version)
    return _Head(session, [], first)


async def _read_heads(
    store: StorePrimitives, sessions: list[Session], flt: SessionFilter, limit: int
) -> list[_Head | None]:
    """:func:`_read_head` for a few sessions at once (their reads overlap on I/O drivers),
    then their checkpoints with one ``load_checkpoints_many`` call.

    An in-process store (neither durable nor shared across processes) never waits on
    I/O: there the reads run one after another, sparing a task per session. Checkpoints
    are read after the events, and only those taken at or before the head's version are
    kept, so they are consistent with the head copied.
    """
    caps = store.capabilities
    if not (caps.durable or caps.cross_process):
        heads = [await _read_head(store, s, flt, limit) for s in sessions]
    else:
        tasks = [asyncio.ensure_future(_read_head(store, s, flt, limit)) for s in sessions]
        try:
            heads = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    found = [head for head in heads if head is not None]
    if found:
        cps = await store.load_checkpoints_many([head.session.id for head in found])
        for head in found:
            head.checkpoints = _sound_checkpoints(store, head.session, cps.get(head.session.id, []))
    return heads


async def _session_items(
    store: StorePrimitives, head: _Head, sizer: ChunkSizer
) -> AsyncIterator[Item]:
    session = head.session
    sid = session.id
    yield SessionItem(session)
    for cp in head.checkpoints:
        yield CheckpointItem(cp)
    done = len(head.first)
    chunk = head.first
    while chunk:
        yield EventsItem(sid, chunk)
        if done >= session.event_count:
            return
        after = chunk[-1].seq
        chunk = await store.load_events(sid, after_seq=after, limit=sizer.limit, last=None)
        chunk = [e for e in chunk[: session.event_count - done] if e.seq <= session.last_seq]
        if not chunk:
            # events we had not copied yet were removed while we read: this copy of the
            # session can no longer be made consistent
            raise ChangedWhileCopiedError(sid, session.version)
        done += len(chunk)
    if done != session.event_count:
        raise ChangedWhileCopiedError(sid, session.version)
