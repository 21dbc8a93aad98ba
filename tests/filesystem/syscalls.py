"""Record the file-system calls the driver makes, in order, with the paths behind each fd.

Why a recorder and not a SIGKILL: a killed process leaves the page cache intact, so a
crash test cannot tell a write that was fsynced from one that was not. What proves the
durable order is the sequence of calls itself. The driver does all its file I/O through
the ``os`` module (``os.open``/``os.write``/``os.fsync``/``os.fdatasync``/``os.replace``/
``os.rename``, each a thin wrapper around exactly one system call) and, for the barriers
of batched writes, ``_durable.syncfs`` (one ``syncfs(2)`` call through ctypes), so
wrapping those functions records the system calls it issues, in order, from whichever
worker thread.
(``strace`` would also see them, but is not installed everywhere and cannot attach in
every container; ``tests/filesystem/test_syscalls.py`` cross-checks with it when it can.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sessionstore_filesystem import _durable


@dataclass
class Call:
    op: str  # open / write / fsync / fdatasync / replace / rename / link / unlink / close /
    # ftruncate / syncfs
    fd: int = -1
    path: str = ""  # open: the opened name; replace/rename: the source
    target: str = ""  # replace/rename: the destination
    dir_fd: int | None = None  # open/replace/rename: the directory fd used
    dst_dir_fd: int | None = None
    flags: int = 0  # open
    ino: int = 0  # open / write / fsync / fdatasync: the inode behind fd (a batch may sync a
    # file through a duplicate of its descriptor after the original was closed)


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # fd -> path it was opened as
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()

    def name(self, fd: int) -> str:
        """The path ``fd`` was opened as (while recording), else what the kernel says."""
        if fd in self.names:
            return self.names[fd]
        try:  # opened before the recording started (the driver keeps some open)
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f"fd{fd}"


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Wrap the ``os`` functions the driver uses for file I/O."""
    rec = Recorder()
    real = {n: getattr(os, n) for n in ("open", "write", "fsync", "fdatasync", "replace",
                                          "rename", "close", "ftruncate", "link",
                                          "unlink")}  # fmt: skip

    def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        fd: int = real["open"](path, flags, mode, dir_fd=dir_fd)
        name = os.fsdecode(path)
        if dir_fd is not None:
            name = f"{rec.name(dir_fd)}/{name}"
        rec.names[fd] = name
        rec.add(Call("open", fd, name, dir_fd=dir_fd, flags=flags, ino=os.fstat(fd).st_ino))
        return fd

    def _write(fd: int, data: Any) -> int:
        rec.add(Call("write", fd, rec.name(fd), ino=os.fstat(fd).st_ino))
        written: int = real["write"](fd, data)
        return written

    def _sync(op: str) -> Any:
        def sync(fd: int) -> None:
            rec.add(Call(op, fd, rec.name(fd), ino=os.fstat(fd).st_ino))
            real[op](fd)

        return sync

    def _move(op: str) -> Any:
        def move(src: Any, dst: Any, *, src_dir_fd: Any = None, dst_dir_fd: Any = None) -> None:
            real[op](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            rec.add(Call(op, path=os.fsdecode(src), target=os.fsdecode(dst), dir_fd=src_dir_fd,
                         dst_dir_fd=dst_dir_fd))  # fmt: skip

        return move

    def _link(
        src: Any, dst: Any, *, src_dir_fd: Any = None, dst_dir_fd: Any = None,
        follow_symlinks: bool = True,
    ) -> None:  # fmt: skip
        real["link"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                     follow_symlinks=follow_symlinks)  # fmt: skip
        rec.add(Call("link", path=os.fsdecode(src), target=os.fsdecode(dst), dir_fd=src_dir_fd,
                     dst_dir_fd=dst_dir_fd))  # fmt: skip

    def _unlink(path: Any, *, dir_fd: Any = None) -> None:
        real["unlink"](path, dir_fd=dir_fd)
        rec.add(Call("unlink", path=os.fsdecode(path), dir_fd=dir_fd))

    def _close(fd: int) -> None:
        rec.add(Call("close", fd, rec.name(fd)))
        real["close"](fd)

    def _ftruncate(fd: int, length: int) -> None:
        rec.add(Call("ftruncate", fd, rec.name(fd)))
        real["ftruncate"](fd, length)

    real_syncfs = _durable.syncfs

    def _syncfs(fd: int) -> None:
        rec.add(Call("syncfs", fd, rec.name(fd)))
        real_syncfs(fd)

    monkeypatch.setattr(_durable, "syncfs", _syncfs)
    monkeypatch.setattr(os, "open", _open)
    monkeypatch.setattr(os, "write", _write)
    monkeypatch.setattr(os, "fsync", _sync("fsync"))
    monkeypatch.setattr(os, "fdatasync", _sync("fdatasync"))
    monkeypatch.setattr(os, "replace", _move("replace"))
    monkeypatch.setattr(os, "rename", _move("rename"))
    monkeypatch.setattr(os, "close", _close)
    monkeypatch.setattr(os, "link", _link)
    monkeypatch.setattr(os, "unlink", _unlink)
    monkeypatch.setattr(os, "ftruncate", _ftruncate)
    try:
        yield rec
    finally:
        for name, fn in real.items():
            monkeypatch.setattr(os, name, fn)
        monkeypatch.setattr(_durable, "syncfs", real_syncfs)


def durable_replaces(calls: list[Call]) -> list[str]:
    """Check every replace: write(tmp) -> fsync(tmp) -> replace -> fsync(dir); their targets.

    A ``syncfs`` (a batch's barrier: it makes every file and directory of the file system
    durable) counts as the fsync of the temp file when it comes after the file's last
    write and before the replace, and as the fsync of the directory when it comes after
    the replace. Raises AssertionError naming the first replace that breaks the order.
    """
    done = []
    for index, call in enumerate(calls):
        if call.op != "replace":
            continue
        opened = max(
            (i for i, c in enumerate(calls[:index]) if c.op == "open" and c.path.endswith(
                "/" + call.path) and c.dir_fd == call.dir_fd),
            default=None,
        )  # fmt: skip
        assert opened is not None, f"replace of {call.target}: temp file never opened"
        fd = calls[opened].fd
        window = calls[opened:index]
        closed = next(
            (i for i, c in enumerate(window) if c.op == "close" and c.fd == fd), len(window)
        )  # later calls on this descriptor number are another file's
        writes = [i for i, c in enumerate(window[:closed]) if c.op == "write" and c.fd == fd]
        assert writes, f"replace of {call.target}: nothing written to the temp file"
        ino = calls[opened].ino
        synced = [
            i
            for i, c in enumerate(window)
            if (c.op == "fsync" and ((c.fd == fd and i < closed) or c.ino == ino))
            or c.op == "syncfs"
        ]
        assert synced and synced[-1] > writes[-1], (
            f"replace of {call.target}: temp file not fsynced after its last write"
        )
        after = calls[index + 1 :]
        dir_sync = [
            i
            for i, c in enumerate(after)
            if (c.op == "fsync" and c.fd == call.dst_dir_fd) or c.op == "syncfs"
        ]
        assert dir_sync, f"replace of {call.target}: directory not fsynced afterwards"
        dir_closed = [i for i, c in enumerate(after) if c.op == "close" and c.fd == call.dst_dir_fd]
        assert not dir_closed or dir_sync[0] < dir_closed[0], (
            f"replace of {call.target}: directory fd closed before its fsync"
        )
        done.append(call.target)
    return done


def durable_new_files(calls: list[Call]) -> list[str]:
    """Check every file written in place under a name no reader follows yet (a new log
    generation, the checkpoints of a new incarnation: opened ``O_CREAT|O_TRUNC``): its
    data and its directory entry are durable before the next ``session.json`` replace
    (the commit that names it). Returns their names.
    """
    done = []
    for index, call in enumerate(calls):
        if call.op != "open" or not call.flags & os.O_TRUNC or "/.tmp." in call.path:
            continue
        name = call.path.rsplit("/", 1)[-1]
        later = calls[index + 1 :]
        commit = next(
            (i for i, c in enumerate(later) if c.op == "replace" and c.target == "session.json"),
            len(later),
        )
        closed = next(
            (i for i, c in enumerate(later) if c.op == "close" and c.fd == call.fd), len(later)
        )
        window = later[: min(commit, closed)]  # while the descriptor is this file's
        writes = [i for i, c in enumerate(window) if c.op == "write" and c.fd == call.fd]
        assert writes, f"{name}: nothing written"
        synced = [
            i for i, c in enumerate(later[:commit])
            if (c.op == "fsync" and ((c.fd == call.fd and i < closed) or c.ino == call.ino))
            or c.op == "syncfs"
        ]  # fmt: skip
        assert synced and synced[-1] > writes[-1], f"{name}: not fsynced before its commit"
        entry = [
            i for i, c in enumerate(later[:commit])
            if (c.op == "fsync" and c.fd == call.dir_fd) or c.op == "syncfs"
        ]  # fmt: skip
        assert entry and entry[-1] > writes[-1], (
            f"{name}: directory entry not synced before its commit"
        )
        done.append(name)
    return done


def durable_appends(calls: list[Call]) -> list[str]:
    """Check every write to an event log is followed by fdatasync/fsync of that fd."""
    done = []
    for index, call in enumerate(calls):
        if call.op != "write" or ".jsonl" not in call.path or "/.tmp." in call.path:
            continue
        later = calls[index + 1 :]
        synced = next(
            (i for i, c in enumerate(later) if c.op in ("fdatasync", "fsync") and c.fd == call.fd),
            None,
        )
        closed = next((i for i, c in enumerate(later) if c.op == "close" and c.fd == call.fd), None)
        in_batch = any(  # a barrier syncs it after the close (through a duplicate descriptor)
            c.op == "syncfs" or (c.op in ("fdatasync", "fsync") and c.ino == call.ino)
            for c in later
        )
        assert in_batch or (synced is not None and (closed is None or synced < closed)), (
            f"append to {call.path} not synced before close"
        )
        done.append(call.path.rsplit("/", 1)[-1])
    return done
