"""Low-level file operations: no symlinks followed, durable atomic replace, flock locks.

Every path below the store's namespace directory is opened *relative to an open directory
file descriptor* (``dir_fd=``) with ``O_NOFOLLOW``, one component at a time, so a symlink
planted inside the store is never followed (the open fails with ``ELOOP``/``ENOTDIR``,
reported as :class:`IntegrityError` for that record). Directories are created ``0700`` and
files ``0600``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from typing import Final

from sessionstore import IntegrityError, OutcomeUnknownError, StoreUnavailableError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "atomic_write",
    "ensure_dir",
    "flock_file",
    "is_temp_name",
    "lock_file",
    "open_dir",
    "open_dir_or_none",
    "pread_all",
    "read_file",
    "read_file_stat",
    "symlink_error",
    "sync_committed",
    "unlink_quiet",
    "write_all",
]

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC
TEMP_PREFIX: Final = ".tmp."
_NOT_FOLLOWED: Final = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def symlink_error(exc: OSError, record: str) -> IntegrityError | None:
    """The :class:`IntegrityError` for an open refused because of a symlink, else None."""
    if exc.errno in _NOT_FOLLOWED:
        return IntegrityError(
            "a symlink or an unexpected file type is in the store where a "
            f"{'directory' if exc.errno == errno.ENOTDIR else 'file'} belongs (not followed)",
            record,
        )
    return None


def open_dir(name: str, dir_fd: int | None, record: str = "") -> int:
    """Open directory ``name`` (relative to ``dir_fd``) without following a symlink."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if (error := symlink_error(exc, record or name)) is not None:
            raise error from None
        raise


def open_dir_or_none(name: str, dir_fd: int | None, record: str = "") -> int | None:
    """Like :func:`open_dir`; ``None`` when the directory does not exist."""
    try:
        return open_dir(name, dir_fd, record)
    except FileNotFoundError:
        return None


def ensure_dir(name: str, dir_fd: int | None, *, durable: bool, record: str = "") -> int:
    """Open directory ``name``, creating it (0700) first if needed.

    A new directory is made durable by an fsync of its parent (``dir_fd``).
    """
    try:
        os.mkdir(name, DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return open_dir(name, dir_fd, record)
    if durable and dir_fd is not None:
        os.fsync(dir_fd)
    return open_dir(name, dir_fd, record)


def read_file(name: str, dir_fd: int, record: str = "") -> bytes | None:
    """The whole content of regular file ``name``; ``None`` when it does not exist."""
    found = read_file_stat(name, dir_fd, record)
    return None if found is None else found[0]


def read_file_stat(name: str, dir_fd: int, record: str = "") -> tuple[bytes, os.stat_result] | None:
    """Like :func:`read_file`, with the file's ``fstat``."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if (error := symlink_error(exc, record or name)) is not None:
            raise error from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError("not a regular file", record or name)
        return pread_all(fd, 0, st.st_size, record or name), st
    finally:
        os.close(fd)


def pread_all(fd: int, start: int, end: int, record: str, *, exact: bool = True) -> bytes:
    """Bytes ``[start, end)`` of ``fd`` (``exact=False``: also what grew since)."""
    chunks = []
    pos = start
    while pos < end:
        data = os.pread(fd, end - pos, pos)
        if not data:
            if exact:
                raise IntegrityError("file is shorter than recorded (truncated)", record)
            break
        chunks.append(data)
        pos += len(data)
    if not exact:
        while data := os.pread(fd, 1 << 16, pos):  # the file grew: read to its end
            chunks.append(data)
            pos += len(data)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def is_temp_name(name: str) -> bool:
    """True for the names of our temporary files."""
    return name.startswith(TEMP_PREFIX)


def temp_name(name: str) -> str:
    """A unique temporary name next to ``name``."""
    return f"{TEMP_PREFIX}{name}.{secrets.token_hex(6)}"


def sync_committed(fd: int, what: str) -> None:
    """fsync ``fd`` after a commit point: a failure means the change is visible but may
    not survive a power loss, which the caller learns as :class:`OutcomeUnknownError`."""
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OutcomeUnknownError(
            f"{what} was written but could not be made durable "
            f"({exc.strerror or exc}); re-read it before relying on it"
        ) from exc


def unlink_quiet(name: str, dir_fd: int) -> bool:
    """Remove ``name``; False when it was not there or could not be removed."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True


def atomic_write(
    dir_fd: int, name: str, data: bytes, *, durable: bool, commit: bool = True
) -> None:
    """Replace ``name`` in ``dir_fd`` with ``data``, atomically and (optionally) durably.

    The sequence: a unique temp file in the same directory, write, fsync(file),
    ``os.replace``, fsync(directory). On any failure before the replace the temp file is
    removed and the previous file is untouched. With ``commit`` (the default) the replace
    is the caller's commit point, so a failing directory fsync after it is reported as
    :class:`OutcomeUnknownError`; a file written before the commit point
    (``commit=False``) reports it as the plain ``OSError``.
    """
    tmp = temp_name(name)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
        dir_fd=dir_fd,
    )  # fmt: skip
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_quiet(tmp, dir_fd)
        raise
    if durable:
        if commit:
            sync_committed(dir_fd, name)
        else:
            os.fsync(dir_fd)


def flock_file(name: str, dir_fd: int, *, timeout: float, what: str, shared: bool = False) -> int:
    """Open (creating) lock file ``name`` and take an ``flock`` on it; returns the fd.

    Waits (polling, with growing pauses up to 2 ms) at most ``timeout`` seconds, then
    raises :class:`StoreUnavailableError`. Lock files are never removed while in use: a
    holder re-checks after locking that the path still names the file it locked, and
    locks the current file if not, so a lock file may be removed by whoever holds it
    (or by hand: session locks are stripes that are never removed, see ``_locks``).
    """
    return lock_file(name, dir_fd, timeout=timeout, what=what, shared=shared)[0]


def lock_file(
    name: str,
    dir_fd: int,
    *,
    timeout: float,
    what: str,
    shared: bool = False,
    fd: int = -1,
    ino: int = 0,
) -> tuple[int, int]:
    """:func:`flock_file`, returning ``(fd, inode)``. With ``fd`` (a descriptor of the lock
    file kept open from an earlier lock, of inode ``ino``) that one is locked first; if
    the path no longer names it, it is closed and the current file is locked instead."""
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = time.monotonic() + timeout
    delay = 0.00005
    while True:
        if fd < 0:
            try:
                fd = os.open(
                    name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
                    dir_fd=dir_fd,
                )  # fmt: skip
            except OSError as exc:
                if (error := symlink_error(exc, what)) is not None:
                    raise error from None
                raise
            ino = 0
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreUnavailableError(
                            f"timed out after {timeout:g} s waiting for the lock of {what}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.002)
            if not ino:
                ino = os.fstat(fd).st_ino
            try:
                same = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino == ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd, ino
        os.close(fd)  # the lock file was removed while we waited: lock the current one
        fd = -1


def try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when it is held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
