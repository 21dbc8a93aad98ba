"""A client-side copy of recently read or written sessions, validated by the server.

Every write stores a unique token (``wt``) in the row, so a row whose ``wt`` is the token
this store last saw is exactly the row it saw. A write planned from the copy sends that
token with the expected version; the write function compares both with the stored row
under its row lock and writes nothing when either differs (the session changed, or was
deleted and re-created with the same version): the store then reads the row and plans
again. So the copy saves the read of a load-plan-write without ever being trusted.

Reads never use the copy. ``data``/``metadata`` are kept as their JSON text and decoded
afresh for every plan, so no caller shares mutable state with the cache. Memory is
bounded (entries, bytes per entry and in total); eviction is oldest first. Threads that
run loops of their own share the copy: its updates are made under a lock.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, NamedTuple

import orjson

from sessionstore import Session
from sessionstore.planning import fast_session

__all__ = ["Cached", "RowCache", "new_token"]

MAX_ENTRIES: Final = 10_000
MAX_ENTRY_BYTES: Final = 256 * 1024
MAX_TOTAL_BYTES: Final = 32 * 1024 * 1024


_prefix = ""
_count = itertools.count()


def _reseed() -> None:
    global _prefix, _count
    _prefix = os.urandom(8).hex()
    _count = itertools.count()


def new_token() -> str:
    """A fresh write token: this process's random prefix of 64 bits and a counter, 24 hex
    digits (more once the counter passes 2**32).

    A token only has to differ from every other token ever stored in the row (it tells
    "the row this store saw" and "the write this store sent"), not to be unguessable:
    two processes share a prefix with a probability of 2**-64, and a forked child draws
    a prefix of its own before it can write (``os.register_at_fork``). One ``getrandom``
    a process instead of one a write (``os.urandom(12).hex()`` cost ~1.8 us of the plain
    append's client CPU, the prefix and counter ~0.4 us). ``next()`` on the counter is
    atomic under the GIL, so threads that share the process get distinct tokens.
    """
    return f"{_prefix}{next(_count):08x}"


_reseed()
os.register_at_fork(after_in_child=_reseed)


class Cached(NamedTuple):
    """One row as a read or a write left it (its ``data``/``metadata`` as JSON text)."""

    head: Session  # only its immutable fields are used (never data/metadata)
    data: str
    metadata: str
    token: str

    def materialize(self) -> Session:
        h = self.head
        return fast_session(
            h.id, h.processor_id, h.status, orjson.loads(self.data),
            orjson.loads(self.metadata), h.tags, h.created_at, h.updated_at, h.expires_at,
            h.version, h.event_count, h.last_seq, h.group,
        )  # fmt: skip


class RowCache:
    """Bounded LRU of :class:`Cached` rows by session id."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, session_id: str) -> Cached | None:
        return self._rows.get(session_id)

    def put(self, session_id: str, row: Cached) -> None:
        with self._lock:
            rows = self._rows
            old = rows.get(session_id)
            if old is not None and old.data is row.data and old.metadata is row.metadata:
                # the same documents (an append from the copy): same bytes, same bounds
                rows[session_id] = row
                rows.move_to_end(session_id)
                return
            self._discard(session_id)
            size = len(row.data) + len(row.metadata)
            if size > MAX_ENTRY_BYTES:
                return
            rows[session_id] = row
            self._bytes += size
            while len(rows) > MAX_ENTRIES or self._bytes > MAX_TOTAL_BYTES:
                _, evicted = rows.popitem(last=False)
                self._bytes -= len(evicted.data) + len(evicted.metadata)

    def _discard(self, session_id: str) -> None:
        old = self._rows.pop(session_id, None)
        if old is not None:
            self._bytes -= len(old.data) + len(old.metadata)

    def discard(self, session_id: str) -> None:
        with self._lock:
            self._discard(session_id)

    def discard_all(self, session_ids: Iterable[str]) -> None:
        with self._lock:
            for sid in session_ids:
                self._discard(sid)
