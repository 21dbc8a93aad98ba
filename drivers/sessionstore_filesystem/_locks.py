"""Holding session locks: ``flock`` on lock stripes ``locks/<xx>/~<n>.lock``, change tokens.

Every operation that changes a session's files holds its lock from before it reads the
session to after it has written it and updated the index. A session's lock is one of
``STRIPES`` lock files in its lock shard (``locks/<xx>/~0.lock`` .. ``~3.lock``, by a hash
of its id): 1,024 stripes shared by every session, each made once, the first time it is
taken (a ``~`` is never part of an id, so a stripe never has a session's name). So a
create makes no lock file of its own (an inode made per session was a third of a
create's CPU on the reference disk), and nothing is ever pruned. Sessions that share a
stripe are serialised together; an operation locking several sessions takes each stripe
once, in :func:`lock_order` (stripe, then id), so two of them never wait for each other
in a cycle. Taking a session's lock also replaces its change token (see ``_heads``), and
a writer locks through the descriptor its previous operation on the session kept, when
the head cache has one. ``lock_file`` re-checks after locking that the path still names
the file it locked (a stripe removed by hand is locked again as the new file).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sessionstore import StoreUnavailableError
from sessionstore.validation import validate_session_id

from ._fs import lock_file
from ._heads import Head, HeadCache, Tokens
from ._layout import Layout, shard_of

__all__ = ["STRIPES", "Held", "Locks", "in_lock_order", "lock_order", "stripe_name", "stripe_of"]

#: Lock files per lock shard directory (256 of those): 1,024 stripes in all.
STRIPES: Final = 4


@functools.lru_cache(maxsize=4096)
def stripe_of(sid: str) -> tuple[str, int]:
    """``(lock shard, stripe number)`` of a session: its lock is that stripe's file."""
    n = hashlib.blake2b(sid.encode(), digest_size=2, person=b"lock").digest()[1] % STRIPES
    return shard_of(sid), n


def stripe_name(n: int) -> str:
    """The file name of stripe ``n`` in a lock shard (``~`` is never part of an id)."""
    return f"~{n}.lock"


def lock_order(sid: str) -> tuple[str, int, str]:
    """The order in which an operation takes several sessions' locks (by stripe)."""
    return (*stripe_of(sid), sid)


def in_lock_order(sids: Iterable[str]) -> list[str]:
    return sorted(sids, key=lock_order)


@dataclass(frozen=True, slots=True)
class Locks:
    """What holding session locks needs, and nothing more: where the lock files are
    (``layout``), the head cache (a writer locks through the descriptor its previous
    operation kept, and hands it back on release), the change tokens to bump, and how
    long to wait for a lock."""

    layout: Layout
    heads: HeadCache
    tokens: Tokens
    timeout: float

    def hold(self, *, bump: bool = True) -> Held:
        """A new, empty set of held locks (see :class:`Held`)."""
        return Held(self, bump=bump)


class Held:
    """Session locks held by one operation (the stripe's descriptor by session id).

    ``bump`` (the default): store a fresh change token for each session as it is locked
    (see ``_heads``); only read-only holders (a dry-run ``doctor``, an index rebuild that
    does not tidy) pass ``bump=False``. A stripe is locked once however many of the
    operation's sessions share it (``flock`` belongs to the open file: a second
    descriptor of the same stripe would wait for the first).
    """

    def __init__(self, locks: Locks, *, bump: bool = True) -> None:
        self.locks = locks
        self.bump = bump
        self.fds: dict[str, int] = {}
        self.inos: dict[str, int] = {}
        self.tokens: dict[str, tuple[bytes, bytes]] = {}  # (before, ours)
        self.heads: dict[str, Head] = {}  # taken from the head cache, not yet revived
        self.keep: dict[str, Head] = {}  # to put back into the head cache on release
        #: the stripes held: (fd, inode, the sessions locked through it)
        self._stripes: dict[tuple[str, int], tuple[int, int, list[str]]] = {}

    def add(self, sid: str, *, wait: bool = True) -> bool:
        validate_session_id(sid)  # again: the lock shard's name is built from it
        key = stripe_of(sid)
        # a writer locks through the descriptor its last operation on sid kept, if any
        head = self.locks.heads.take(sid) if self.bump else None
        held = self._stripes.get(key)
        if held is not None:  # another of our sessions holds the stripe already
            fd, ino, users = held
            if head is not None and head.lock_fd >= 0:
                os.close(head.lock_fd)
                head.lock_fd = -1
            users.append(sid)
        else:
            lock_dir = self.locks.layout.shard_fd("locks", sid, create=True)
            assert lock_dir is not None
            fd, ino = (head.lock_fd, head.lock_ino) if head is not None else (-1, 0)
            if head is not None:
                head.lock_fd = -1  # lock_file() owns it now (it closes it if it is stale)
            try:
                fd, ino = lock_file(
                    stripe_name(key[1]),
                    lock_dir,
                    timeout=self.locks.timeout if wait else 0.0,
                    what=f"session {sid!r}",
                    fd=fd,
                    ino=ino,
                )
            except BaseException as exc:
                if head is not None:
                    head.close()
                if wait or not isinstance(exc, StoreUnavailableError):
                    raise
                return False
            self._stripes[key] = (fd, ino, [sid])
        self.fds[sid] = fd
        self.inos[sid] = ino
        if head is not None:
            self.heads[sid] = head
        if self.bump:
            try:
                self.tokens[sid] = self.locks.tokens.bump(sid)
            except BaseException:
                self._forget(sid)
                raise
        return True

    def _forget(self, sid: str) -> None:
        key = stripe_of(sid)
        fd, _, users = self._stripes[key]
        users.remove(sid)
        if not users:
            del self._stripes[key]
            os.close(fd)
        del self.fds[sid]
        self.inos.pop(sid, None)
        self.tokens.pop(sid, None)
        head = self.heads.pop(sid, None)
        if head is not None:
            head.close()

    def try_add(self, sids: Sequence[str]) -> bool:
        added: list[str] = []
        for sid in in_lock_order(sids):
            if not self.add(sid, wait=False):
                for done in added:
                    self._forget(done)
                return False
            added.append(sid)
        return True

    def release(self) -> None:
        for head in self.heads.values():
            head.close()  # taken but not used: its descriptors go
        for fd, _, users in self._stripes.values():
            keep = self.keep.pop(users[0], None) if len(users) == 1 else None
            if keep is not None:  # unlock first: the cache hands it to the next writer
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    keep.close()  # closes fd too: that releases the lock
                else:
                    self.locks.heads.put(users[0], keep)
                continue
            os.close(fd)  # closing the only descriptor releases the flock
        for sid, head in self.keep.items():  # its stripe was shared: keep the state only
            head.lock_fd = -1  # closed above
            self.locks.heads.put(sid, head)
        self._stripes.clear()
        self.fds.clear()
        self.inos.clear()
        self.tokens.clear()
        self.heads.clear()
        self.keep.clear()
