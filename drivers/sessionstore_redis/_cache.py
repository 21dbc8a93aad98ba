"""A client-side copy of recently written session documents, validated by the server.

Every write stores a unique token in the document (``wt``), so a document whose ``wt`` is
the token of a write this store made (or read) is exactly the document that write left.
``append_events`` sends the token of the copy it holds; the script, which checks the
version anyway, compares it with the stored ``wt``: when they are equal it returns only
the new version, and the client builds the new session from its copy (the append changes
only the version, the event counters and ``updated_at``, all known to the client);
otherwise it returns the whole document as before. The server decides, inside the same
atomic script as the write, so a copy made stale by another client, a restore or a
re-created session can never be used.

A create's copy also keeps the whole document string the client made for it: a read
(``get_session``, ``get_sessions``) that finds exactly those bytes where the create stored
them makes the session from the copy instead of decoding the document (the server sent
them, so nothing written since, and nothing corrupt, can pass: any other byte string is
decoded and checked as before). The first later write replaces the copy with one that keeps
no document string.

The copy keeps ``data``/``metadata`` as their JSON bytes: every session returned is decoded
from them afresh, so callers never share mutable state with the cache or each other.
Memory is bounded (entries, bytes per entry and in total); eviction is oldest first.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Final

import orjson

from sessionstore import Session
from sessionstore.clock import to_ms
from sessionstore.planning import fast_session

from ._encoding import record_tail

__all__ = ["Cached", "DocCache"]


#: the data and metadata of the sessions a copy keeps (never handed out: a session returned
#: from a copy decodes them from the copy's bytes)
_NONE: Final[dict[str, object]] = {}


def _shell(s: Session) -> Session:
    """``s`` without its data and metadata: what a copy keeps of the session. The decoded
    dicts of a ~2 KB document are ~100 objects; kept for 10,000 copies they were most of
    the client's memory and of its garbage collector's full passes (which traverse every
    tracked object)."""
    return fast_session(
        s.id,
        s.processor_id,
        s.status,
        _NONE,
        _NONE,
        s.tags,
        s.created_at,
        s.updated_at,
        s.expires_at,
        s.version,
        s.event_count,
        s.last_seq,
        s.group,
    )


class Cached:
    """One document as a write or a read left it (treat as read-only)."""

    __slots__ = ("data", "doc", "ix", "metadata", "session", "size", "token")

    def __init__(
        self,
        token: str,
        session: Session,
        data: bytes,
        metadata: bytes,
        ix: tuple[str, str] | None = None,
        doc: bytes | None = None,
    ) -> None:
        self.token = token
        self.session = session  # without data and metadata (``_shell``)
        self.data = data
        self.metadata = metadata
        # the parts of the session's index record an append keeps, made on first use
        self.ix = ix
        # the whole document string the write stored, when the client made it (a create):
        # a read that finds exactly these bytes is answered from the copy (``current``)
        self.doc = doc
        self.size = len(data) + len(metadata) + (0 if doc is None else len(doc))

    def append_record(self, now_ms: int) -> str:
        """The index record (``lua/index.lua``) of this document after an append at
        ``now_ms``: the version one up, ``updated_at`` now, "has events" set."""
        ix = self.ix
        s = self.session
        if ix is None:
            ix = self.ix = (f"\0{to_ms(s.created_at)}\0", "\0" + record_tail(s, True))
        return f"{s.version + 1}{ix[0]}{now_ms}{ix[1]}"


class DocCache:
    """Recently written or read documents of one store, by session id."""

    MAX_ENTRIES: Final = 10_000
    MAX_ENTRY_BYTES: Final = 256 * 1024
    MAX_BYTES: Final = 32 * 1024 * 1024

    def __init__(self) -> None:
        self._items: OrderedDict[str, Cached] = OrderedDict()  # O(1) eviction of the oldest
        self._bytes = 0

    def get(self, sid: str) -> Cached | None:
        """The copy of ``sid``'s document, if any."""
        return self._items.get(sid)

    def current(self, sid: str, raw: object) -> Session | None:
        """The session of ``sid``'s copy when ``raw``, the document just read from where
        the copy's write stored it, is byte for byte the document that write stored (kept
        for a create, whose client made it): decoding it would give the copy's session,
        so it is made from the copy (:meth:`copy`). ``None``: no such copy, or any other
        document (a later write's, a corrupt one...): decode it. (The blocking reads call
        this from their own threads: one lookup, and a copy's fields used here are never
        changed once made.)"""
        cached = self._items.get(sid)
        if cached is None or cached.doc is None or raw != cached.doc:
            return None
        return self.copy(cached)

    def put(
        self,
        token: str,
        session: Session,
        data: bytes,
        metadata: bytes,
        ix: tuple[str, str] | None = None,
        doc: bytes | None = None,
    ) -> None:
        """Remember the document ``token``'s write left (or a read found); ``doc``: the
        whole document string, when the client made it."""
        sid = session.id
        items = self._items
        old = items.pop(sid, None)
        if old is not None:
            self._bytes -= old.size
        if not token or len(data) + len(metadata) > self.MAX_ENTRY_BYTES:
            return
        cached = items[sid] = Cached(token, _shell(session), data, metadata, ix, doc)
        self._bytes += cached.size
        while len(items) > self.MAX_ENTRIES or self._bytes > self.MAX_BYTES:
            _, gone = items.popitem(last=False)
            self._bytes -= gone.size

    @staticmethod
    def after_append(cached: Cached, updated_at: datetime, count: int) -> Session:
        """The session ``cached``'s document becomes after an append of ``count`` events,
        should the script find it current: a new copy, with data and metadata of its own.
        Built while the append's reply is on its way (see ``RedisStore.append_events``)."""
        c = cached.session
        return fast_session(
            c.id,
            c.processor_id,
            c.status,
            orjson.loads(cached.data),
            orjson.loads(cached.metadata),
            c.tags,
            c.created_at,
            updated_at,
            c.expires_at,
            c.version + 1,
            c.event_count + count,
            c.last_seq + count,
            c.group,
        )

    @staticmethod
    def copy(cached: Cached) -> Session:
        """The session of ``cached``'s document, with data and metadata of its own."""
        c = cached.session
        return fast_session(
            c.id,
            c.processor_id,
            c.status,
            orjson.loads(cached.data),
            orjson.loads(cached.metadata),
            c.tags,
            c.created_at,
            c.updated_at,
            c.expires_at,
            c.version,
            c.event_count,
            c.last_seq,
            c.group,
        )

    def appended(self, cached: Cached, token: str, session: Session) -> None:
        """Remember ``session`` (:meth:`after_append` of ``cached``), which the append
        with ``token`` left. While ``cached`` is still the entry, the new copy takes its
        place without :meth:`put`'s accounting (the same bytes: nothing to evict)."""
        items = self._items
        sid = session.id
        if items.get(sid) is cached:
            # (the document stored is no longer the one kept, if any: no longer counted)
            new = items[sid] = Cached(
                token, _shell(session), cached.data, cached.metadata, cached.ix
            )
            self._bytes -= cached.size - new.size
            items.move_to_end(sid)  # the newest, as put leaves it
            return
        self.put(token, session, cached.data, cached.metadata, cached.ix)

    def drop(self, sid: str) -> None:
        """Forget ``sid`` (deleted, or written by a path that does not keep copies)."""
        old = self._items.pop(sid, None)
        if old is not None:
            self._bytes -= old.size

    def __len__(self) -> int:
        return len(self._items)
