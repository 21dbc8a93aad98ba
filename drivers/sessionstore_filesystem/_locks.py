"""Holding session locks: ``flock`` on ``locks/<xx>/<id>.lock``, change tokens, pruning.

Every operation that changes a session's files holds its lock (an ``flock`` on its lock
file) from before it reads the session to after it has written it and updated the index.
Taking a lock also replaces the session's change token (see ``_heads``), and a writer
locks through the descriptor its previous operation on the session kept, when the head
cache has one. A lock file is removed only by its holder, while it holds it, when the
session does not exist; ``lock_file`` re-checks after locking that the path still names
the file it locked, so a process that waited on a removed lock file locks the current one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sessionstore import StoreUnavailableError
from sessionstore.validation import validate_session_id

from ._fs import lock_file
from ._heads import Head, HeadCache, Tokens
from ._layout import Layout

__all__ = ["Held", "Locks"]


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
    """Session locks held by one operation (fds by session id).

    ``bump`` (the default): store a fresh change token for each session as it is locked
    (see ``_heads``); only read-only holders (a dry-run ``doctor``, an index rebuild that
    does not tidy) pass ``bump=False``. Sessions added to ``prune`` have their lock file
    removed on release, while it is still locked: a process waiting for that lock file
    gets it after us, finds that the path no longer names it (``flock_file`` re-checks
    the inode after locking) and locks the current file instead.
    """

    def __init__(self, locks: Locks, *, bump: bool = True) -> None:
        self.locks = locks
        self.bump = bump
        self.fds: dict[str, int] = {}
        self.inos: dict[str, int] = {}
        self.tokens: dict[str, tuple[bytes, bytes]] = {}  # (before, ours)
        self.heads: dict[str, Head] = {}  # taken from the head cache, not yet revived
        self.keep: dict[str, Head] = {}  # to put back into the head cache on release
        self.prune: set[str] = set()

    def add(self, sid: str, *, wait: bool = True) -> bool:
        validate_session_id(sid)  # again: the lock file's name is built from it
        lock_dir = self.locks.layout.shard_fd("locks", sid, create=True)
        assert lock_dir is not None
        # a writer locks through the descriptor its last operation on sid kept, if any
        head = self.locks.heads.take(sid) if self.bump else None
        fd, ino = (head.lock_fd, head.lock_ino) if head is not None else (-1, 0)
        if head is not None:
            head.lock_fd = -1  # lock_file() owns it now (it closes it if it is stale)
        try:
            fd, ino = lock_file(
                f"{sid}.lock",
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
        os.close(self.fds.pop(sid))
        self.inos.pop(sid, None)
        self.tokens.pop(sid, None)
        head = self.heads.pop(sid, None)
        if head is not None:
            head.close()

    def try_add(self, sids: Sequence[str]) -> bool:
        added: list[str] = []
        for sid in sorted(sids):
            if not self.add(sid, wait=False):
                for done in added:
                    self._forget(done)
                return False
            added.append(sid)
        return True

    def release(self) -> None:
        for head in self.heads.values():
            head.close()  # taken but not used: its descriptors go
        for sid, fd in self.fds.items():
            keep = self.keep.get(sid)
            if keep is not None:  # unlock first: the cache hands it to the next writer
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    keep.close()  # closes fd too: that releases the lock
                else:
                    self.locks.heads.put(sid, keep)
                continue
            if sid in self.prune:
                self._unlink(sid, fd)
            os.close(fd)  # closing the only descriptor releases the flock
        self.fds.clear()
        self.inos.clear()
        self.tokens.clear()
        self.heads.clear()
        self.keep.clear()
        self.prune.clear()

    def _unlink(self, sid: str, fd: int) -> None:
        """Remove ``sid``'s lock file (we hold it) if the path still names it."""
        lock_dir = self.locks.layout.shard_fd("locks", sid, create=False)
        if lock_dir is None:
            return
        name = f"{sid}.lock"
        try:
            if os.stat(name, dir_fd=lock_dir, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                os.unlink(name, dir_fd=lock_dir)
        except OSError:
            pass  # already gone, or not removable: doctor removes stale lock files
