"""How the steps of a write are made durable: at once, not at all, or at shared barriers.

A write (see ``_write``) tells a :class:`Sync` what must be durable and when:

* ``file(fd)`` - the data just written to ``fd`` must be durable before the next barrier
  (the caller may close ``fd`` right after the call);
* ``dir(fd, commit=...)`` - the entries just added to or removed from directory ``fd``
  must be durable before the next barrier (``fd`` stays open until then);
* ``barrier(commit=...)`` - everything registered so far is durable when it returns.

A write goes: pre-commit steps, barrier, the commit step, barrier, tidying. One session
(:class:`EachSync`) syncs every step as it is made (``fsync(file)`` before the replace,
``fsync(dir)`` right after it: barriers have nothing left to do). A batch of sessions
(:class:`BatchSync`) runs every session's pre-commit steps, then one barrier, then every
commit, then one barrier. On Linux >= 5.8 a barrier is one ``syncfs(2)`` of the store's
file system (which writes back every dirty file and commits the journal once, and
reports write-back errors); elsewhere a barrier fsyncs the files written since the last
one and then each distinct directory once, **concurrently** from short-lived threads
(``fsync`` releases the GIL, and the disk takes many writes at once: a batch waits about
as long as for a few fsyncs, not one per file in turn). A failure at a barrier after
commits (``commit=True``) is an :class:`OutcomeUnknownError`: the writes are visible,
their durability unknown.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Final

from sessionstore import OutcomeUnknownError

from ._fs import sync_committed

__all__ = ["BatchSync", "EachSync", "NoSync", "Sync", "sync_all", "syncfs_supported"]

#: Threads a barrier fsyncs with at most (each a short-lived thread of this barrier).
SYNC_THREADS: Final = 16
#: Files a batch holds (duplicated descriptors) before it syncs them early, to stay far
#: below the process's descriptor limit however big the batch.
MAX_PENDING: Final = 256


def _load_syncfs() -> object | None:
    """libc's ``syncfs`` where it reports write-back errors (Linux >= 5.8), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(x) for x in os.uname().release.split(".", 2)[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):  # before 5.8 syncfs returned 0 even when write-back failed
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS: Final = _load_syncfs()


def syncfs_supported() -> bool:
    """True when batches use one ``syncfs`` per barrier."""
    return _SYNCFS is not None


def syncfs(fd: int) -> None:
    """``syncfs(2)`` of the file system holding ``fd`` (raises ``OSError``)."""
    assert _SYNCFS is not None
    if _SYNCFS(fd) != 0:  # type: ignore[operator]
        code = ctypes.get_errno() or errno.EIO
        raise OSError(code, os.strerror(code))


def sync_all(jobs: Iterable[tuple[int, bool]], threads: int = SYNC_THREADS) -> None:
    """``fsync`` (``fdatasync`` where the flag is true) every descriptor of ``jobs``, from up
    to ``threads`` threads at once; raises the first ``OSError`` once every job has run."""
    todo = list(jobs)
    if len(todo) <= 2 or threads <= 1:  # not worth a thread
        errors = []
        for fd, data_only in todo:
            try:
                os.fdatasync(fd) if data_only else os.fsync(fd)
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return
    lock = threading.Lock()
    queue = iter(todo)
    failed: list[OSError] = []

    def work() -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            fd, data_only = job
            try:
                os.fdatasync(fd) if data_only else os.fsync(fd)
            except OSError as exc:
                with lock:
                    failed.append(exc)

    workers: list[threading.Thread] = []
    for _ in range(min(threads, len(todo)) - 1):
        worker = threading.Thread(target=work, name="sessionstore-fsync", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # no more threads to be had: fewer do the work
            break
        workers.append(worker)
    work()  # this thread is one of them
    for worker in workers:
        worker.join()  # before the caller closes the descriptors
    if failed:
        raise failed[0]


class Sync:
    """No durability at all (``durability="none"``): every step is a no-op."""

    durable = False

    def file(self, fd: int, *, data_only: bool = False) -> None:
        """The data written to ``fd`` must be durable by the next barrier."""

    def dir(self, fd: int, what: str, *, commit: bool = False) -> None:
        """The entries changed in directory ``fd`` must be durable by the next barrier."""

    def barrier(self, *, commit: bool = False) -> None:
        """Everything registered so far is durable when this returns."""

    def close(self) -> None:
        """Forget what was registered and not synced (a write given up)."""


NoSync = Sync


class EachSync(Sync):
    """One session: every step is synced as it is made (the barriers are no-ops).

    ``before_data``: called once, just before the first ``fdatasync`` (a pure append's
    commit), to do work that need not wait for the disk (the index row, see ``_engine``).
    """

    durable = True

    def __init__(self, before_data: Callable[[], None] | None = None) -> None:
        self.before_data = before_data

    def file(self, fd: int, *, data_only: bool = False) -> None:
        if data_only:
            hook = self.before_data
            if hook is not None:
                self.before_data = None
                hook()
            os.fdatasync(fd)
        else:
            os.fsync(fd)

    def dir(self, fd: int, what: str, *, commit: bool = False) -> None:
        if commit:
            sync_committed(fd, what)
        else:
            os.fsync(fd)


class BatchSync(Sync):
    """Many sessions: one ``syncfs`` per barrier; where ``syncfs`` is not used, the files
    written since the last barrier and then each distinct directory fsynced once per
    barrier, concurrently (see :func:`sync_all`)."""

    durable = True

    def __init__(self, fs_fd: int, *, use_syncfs: bool | None = None) -> None:
        self.fs_fd = fs_fd
        self.use_syncfs = syncfs_supported() if use_syncfs is None else use_syncfs
        self.dirty = False
        self.files: list[tuple[int, bool]] = []  # (our duplicate of the fd, data only)
        self.dirs: dict[int, str] = {}  # fd -> what (for the error message)

    def file(self, fd: int, *, data_only: bool = False) -> None:
        if self.use_syncfs:
            self.dirty = True
            return
        self.files.append((os.dup(fd), data_only))  # the caller may close fd at once
        if len(self.files) >= MAX_PENDING:
            self._sync_files()  # early: nothing is committed before the barrier anyway

    def dir(self, fd: int, what: str, *, commit: bool = False) -> None:
        if self.use_syncfs:
            self.dirty = True
        else:
            self.dirs.setdefault(fd, what)

    def _sync_files(self) -> None:
        files, self.files = self.files, []
        try:
            sync_all(files)
        finally:
            for fd, _ in files:
                os.close(fd)

    def barrier(self, *, commit: bool = False) -> None:
        try:
            if self.use_syncfs:
                if self.dirty:
                    syncfs(self.fs_fd)
            else:
                self._sync_files()  # the files' data and inodes, then the entries naming them
                sync_all((fd, False) for fd in self.dirs)
        except OSError as exc:
            if commit:
                raise OutcomeUnknownError(
                    "a batch of writes was made but could not be made durable "
                    f"({exc.strerror or exc}); re-read the sessions before relying on them"
                ) from exc
            raise
        finally:
            self.close()

    def close(self) -> None:
        self.dirty = False
        self.dirs.clear()
        files, self.files = self.files, []
        for fd, _ in files:
            os.close(fd)
