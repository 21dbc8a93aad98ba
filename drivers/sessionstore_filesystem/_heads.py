"""The head cache: what a writer last saw of a session, reused while nobody changed it.

A write reads the session under its lock before planning (version check, the log's end,
the document's generation). Reading and verifying ``session.json`` and the log's tail
costs more than the rest of a durable append together, and the state is usually the one
this process just wrote. So each engine keeps, per session, the state its last locked
operation left (:class:`Head`), and trusts it under the lock only when nobody can have
written the session since:

* **Change tokens.** ``locks/tokens`` is a table of 4,096 slots of 8 bytes; a session's
  slot is a hash of its id. Whoever takes a session's lock to write (every writer, every
  repair, journal completion, ``doctor``, an index rebuild that tidies) first stores a
  fresh random token in the slot, *before* touching any file, and the cache records the
  token its own lock stored. Under the lock, an entry is used only if the slot still
  holds that token: anyone who locked the session since has replaced it (so has anyone
  with a session hashing to the same slot, which only costs a re-read). A writer that
  dies after storing its token leaves a token no cache holds. The table is never
  fsynced: caches do not outlive their process, let alone a reboot. A table that was
  removed (or replaced) under a running process is noticed at the next lock (its
  ``st_nlink`` is 0): the process opens the new one, and every token it recorded is void.
* **File identity**, as a second check against writers that do not follow the protocol
  (a hand edit, a restored backup of the directory): ``session.json``'s (inode, size,
  mtime), the directory's inode, and the log's size must be what the entry recorded.

An entry keeps the document's data and metadata as JSON bytes and decodes fresh copies
for each use, so nothing a caller gets back shares a dict with the cache. Entries are
kept for at most 256 sessions (least recently used first out) and only for sessions
whose data and metadata are under 64 KiB. The 32 most recent also keep the session's
lock stripe's file, directory and log open, which saves three ``open``/``close`` pairs per write:
a head is taken out of the cache for the operation that uses it (so no two threads use
one), and put back after its lock was released with ``LOCK_UN`` (another thread of the
process never ``flock``s the same open file while it is held: ``flock`` belongs to the
open file, so that would be taking the lock twice). A child process drops its parent's
heads after ``fork()``, for the same reason.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import threading
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Final

import orjson

from sessionstore import IntegrityError
from sessionstore.planning import fast_session

from ._file_formats import Doc
from ._fs import FILE_MODE, symlink_error
from ._layout import COMPACT_SUFFIX, Layout
from ._session import DOC, State, log_name, open_session_dir

__all__ = ["HeadCache", "Tokens"]

TOKENS: Final = "tokens"
SLOTS: Final = 4096
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
MAX_ENTRIES: Final = 256
MAX_OPEN: Final = 32
MAX_BYTES: Final = 1 << 16
_ZERO: Final = bytes(8)


@functools.lru_cache(maxsize=256)
def _slot(sid: str) -> int:
    return int.from_bytes(hashlib.blake2b(sid.encode(), digest_size=4).digest()) % SLOTS * 8


class Tokens:
    """``locks/tokens``: one change token per slot, replaced by every lock holder."""

    def __init__(self, locks_fd: int) -> None:
        self.locks_fd = locks_fd
        self.fd = self._open()
        self._retired: list[int] = []  # other threads may still be using them: closed last
        self._mutex = threading.Lock()

    def _open(self) -> int:
        try:
            fd = os.open(
                TOKENS, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
                dir_fd=self.locks_fd,
            )  # fmt: skip
        except OSError as exc:
            if (error := symlink_error(exc, f"locks/{TOKENS}")) is not None:
                raise error from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IntegrityError("not a regular file", f"locks/{TOKENS}")
        return fd

    def bump(self, sid: str) -> tuple[bytes, bytes]:
        """Store a fresh token for ``sid`` (the caller holds its lock): (old, new)."""
        offset = _slot(sid)
        fd = self.fd
        if os.fstat(fd).st_nlink == 0:
            # removed (or replaced) behind our back: others write to the file now there,
            # so every token recorded in the old one is void
            with self._mutex:
                if self.fd == fd:
                    self.fd = self._open()
                    self._retired.append(fd)
                fd = self.fd
            old = b""
        else:
            old = os.pread(fd, 8, offset)
        new = os.urandom(8)
        while new in (_ZERO, old):
            new = os.urandom(8)
        os.pwrite(fd, new, offset)
        return old, new

    def close(self) -> None:
        for fd in [self.fd, *self._retired]:
            os.close(fd)


class Head:
    """A session's state as its last locked operation in this process left it, with the
    descriptors that operation used (kept open for the most recent sessions).

    ``doc`` is the document as written or read; only its scalar fields are used (its
    session's data and metadata may be a caller's by now: fresh copies are decoded from
    ``data_json``/``meta_json`` for each use). ``tail``: (version, updated_at,
    event_count, last_seq) after the appends past the document, or None. ``lock_fd``,
    ``dir_fd``, ``log_fd``: the session's lock stripe (unlocked), directory and event log
    (opened for appending), or -1; a head is used by one operation at a time (it is
    taken out of the cache while in use), and its lock descriptor only to lock again.
    """

    __slots__ = (
        "compact", "data_json", "dir_fd", "dir_ino", "doc", "doc_key", "lock_fd", "lock_ino",
        "log_fd", "log_size", "meta_json", "tail", "tail_batches", "token", "valid_end",
    )  # fmt: skip

    def __init__(
        self,
        token: bytes,
        doc_key: tuple[int, int, int],
        log_size: int,
        valid_end: int,
        tail_batches: int,
        doc: Doc,
        data_json: bytes,
        meta_json: bytes,
        tail: tuple[int, datetime, int, int] | None,
    ) -> None:
        self.token = token
        self.doc_key = doc_key
        self.log_size = log_size
        self.valid_end = valid_end
        self.tail_batches = tail_batches
        self.doc = doc
        self.data_json = data_json
        self.meta_json = meta_json
        self.tail = tail
        self.lock_fd = self.dir_fd = self.log_fd = -1
        self.lock_ino = self.dir_ino = 0
        self.compact = False  # the document is the compact <id>~.json (no directory)

    def holds_fds(self) -> bool:
        return self.lock_fd >= 0 or self.dir_fd >= 0 or self.log_fd >= 0

    def close_files(self) -> None:
        """Close the directory and log descriptors (not the lock's)."""
        for fd in (self.dir_fd, self.log_fd):
            if fd >= 0:
                os.close(fd)
        self.dir_fd = self.log_fd = -1

    def close(self) -> None:
        """Close every descriptor (the lock's is not locked: the head is not in use)."""
        self.close_files()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


class HeadCache:
    """Per-engine cache of :class:`Head` s (thread-safe, bounded): the state of at most
    ``MAX_ENTRIES`` sessions, descriptors for at most ``MAX_OPEN`` of them."""

    def __init__(self) -> None:
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._open: OrderedDict[str, None] = OrderedDict()  # sessions whose head holds fds
        self._mutex = threading.Lock()
        _CACHES.add(self)

    def __len__(self) -> int:
        return len(self._heads)

    def _forked(self) -> None:
        """In a child after ``fork()``: forget the parent's heads. A lock taken through an
        inherited descriptor would be the parent's lock too (``flock`` belongs to the
        open file, which parent and child share)."""
        self._mutex = threading.Lock()
        heads, self._heads, self._open = self._heads, OrderedDict(), OrderedDict()
        for head in heads.values():
            head.close()  # the child's copies; the parent's stay open

    def take(self, sid: str) -> Head | None:
        """Take ``sid``'s head out of the cache (the caller owns it and its descriptors)."""
        with self._mutex:
            self._open.pop(sid, None)
            return self._heads.pop(sid, None)

    def put(self, sid: str, head: Head) -> None:
        """Keep ``head`` (its lock descriptor must not be locked any more)."""
        evicted: list[Head] = []
        with self._mutex:
            old = self._heads.pop(sid, None)
            if old is not None:
                evicted.append(old)
            self._open.pop(sid, None)
            self._heads[sid] = head
            if head.holds_fds():
                self._open[sid] = None
                while len(self._open) > MAX_OPEN:
                    stale, _ = self._open.popitem(last=False)
                    full = self._heads[stale]
                    self._heads[stale] = _bare(full)  # keeps its place in the order
                    evicted.append(full)
            while len(self._heads) > MAX_ENTRIES:
                stale, gone = self._heads.popitem(last=False)
                self._open.pop(stale, None)
                evicted.append(gone)
        for done in evicted:
            done.close()

    def clear(self) -> None:
        with self._mutex:
            heads, self._heads, self._open = self._heads, OrderedDict(), OrderedDict()
        for head in heads.values():
            head.close()

    def revive(self, layout: Layout, sid: str, head: Head, token: bytes) -> State | None:
        """The state of ``sid`` from ``head`` (taken by the caller, who holds the lock),
        if the slot still holds the token it recorded and the files are the ones it saw;
        else None (the head's directory and log descriptors are closed)."""
        if head.token != token:
            head.close_files()
            return None
        dir_fd, log_fd = head.dir_fd, head.log_fd
        head.dir_fd = head.log_fd = -1  # ours now
        dir_ino = head.dir_ino
        try:
            shard = layout.shard_fd("sessions", sid, create=False)
            if shard is None:
                raise _Miss
            name = layout.name(sid)
            if head.compact:  # still the same document (and no directory: see below)
                st = os.stat(name + COMPACT_SUFFIX, dir_fd=shard, follow_symlinks=False)
                if (st.st_ino, st.st_size, st.st_mtime_ns) != head.doc_key:
                    raise _Miss
            elif dir_fd >= 0:  # still the directory of the session?
                st = os.stat(name, dir_fd=shard, follow_symlinks=False)
                if st.st_ino != dir_ino or not stat.S_ISDIR(st.st_mode):
                    raise _Miss
            else:
                dir_fd = open_session_dir(layout, sid)
                if dir_fd < 0:
                    raise _Miss
                dir_ino = 0
            if not head.compact:  # (compact: no log; a write that makes one bumps the token)
                st = os.stat(DOC, dir_fd=dir_fd, follow_symlinks=False)
                if (st.st_ino, st.st_size, st.st_mtime_ns) != head.doc_key:
                    raise _Miss
                if log_fd >= 0:
                    st = os.fstat(log_fd)
                    if st.st_size != head.log_size or st.st_nlink == 0:
                        raise _Miss
                else:
                    try:
                        st = os.stat(log_name(head.doc.gen), dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        if head.log_size >= 0:
                            raise _Miss from None
                    else:
                        if not stat.S_ISREG(st.st_mode) or st.st_size != head.log_size:
                            raise _Miss
        except (_Miss, FileNotFoundError):
            for fd in (dir_fd, log_fd):
                if fd >= 0:
                    os.close(fd)
            return None
        except BaseException:
            for fd in (dir_fd, log_fd):
                if fd >= 0:
                    os.close(fd)
            raise
        d = head.doc.session
        version, at, count, last_seq = head.tail or (
            d.version,
            d.updated_at,
            d.event_count,
            d.last_seq,
        )
        session = fast_session(  # (every write of a cached session builds one)
            d.id, d.processor_id, d.status, orjson.loads(head.data_json),
            orjson.loads(head.meta_json), d.tags, d.created_at, at, d.expires_at, version,
            count, last_seq, d.group,
        )  # fmt: skip
        return State(
            sid, dir_fd, head.doc, session, head.valid_end, head.log_size, head.tail_batches,
            head.doc_key, (head.data_json, head.meta_json), log_fd=log_fd, dir_ino=dir_ino,
            compact=head.compact, shard_fd=shard, name=name,
        )  # fmt: skip

    def make(self, state: State, token: bytes, lock_fd: int, lock_ino: int) -> Head | None:
        """A head for ``state`` (as on disk after the caller's locked operation) and
        ``token``, taking over the state's directory and log descriptors and the lock's;
        None when the session is not worth keeping (absent, or too big)."""
        doc, session, key = state.doc, state.session, state.doc_key
        if doc is None or session is None or key is None or (state.dir_fd < 0) != state.compact:
            return None
        if state.doc_json is not None:
            data_json, meta_json = state.doc_json
        else:  # read from disk: nobody was handed these dicts yet
            data_json = orjson.dumps(doc.session.data)
            meta_json = orjson.dumps(doc.session.metadata)
        if len(data_json) + len(meta_json) > MAX_BYTES:
            return None
        tail = None
        if session.version != doc.session.version:  # appends past the document
            tail = (session.version, session.updated_at, session.event_count, session.last_seq)
        head = Head(
            token, key, state.log_size, state.valid_end, state.tail_batches, doc, data_json,
            meta_json, tail,
        )  # fmt: skip
        head.compact = state.compact
        if not state.compact:
            head.dir_ino = state.dir_ino or os.fstat(state.dir_fd).st_ino
        head.dir_fd, head.log_fd = state.dir_fd, state.log_fd
        state.dir_fd = state.log_fd = -1
        head.lock_fd, head.lock_ino = lock_fd, lock_ino
        return head


_CACHES: weakref.WeakSet[HeadCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_CACHES):
        cache._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Miss(Exception):
    """The cached head does not describe the files any more."""


def _bare(head: Head) -> Head:
    """A copy of ``head`` without its descriptors (``head`` keeps them, to be closed)."""
    return Head(
        head.token, head.doc_key, head.log_size, head.valid_end, head.tail_batches, head.doc,
        head.data_json, head.meta_json, head.tail,
    )  # fmt: skip
