"""A fence around documentation examples: writes only under one directory, network only
to the test's own servers, no processes.

An audit hook (PEP 578) sees every ``open`` for writing, ``mkdir``, ``rename``,
``remove`` ..., every ``connect`` and every name lookup of the process. While a
:class:`Sandbox` is active, one outside the fence is refused (the hook raises
:class:`SandboxViolation`, so the write or the connection never happens) and recorded:
an example that catches the error still fails its test. Audit hooks cannot be removed,
so one hook is installed for the process and does nothing while no sandbox is active.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The events that change the file system, with the positions of their path arguments and
# of the directory fd each path is relative to (None: no dir_fd argument).
_PATH_EVENTS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.mkdir": ((0, 2),),
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)),
    "os.replace": ((0, 2), (1, 3)),
    "os.link": ((1, 3),),
    "os.symlink": ((1, 2),),
    "os.truncate": ((0, None),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.utime": ((0, 3),),
    "shutil.rmtree": ((0, 1),),
    "shutil.copyfile": ((1, None),),
    "shutil.copytree": ((1, None),),
    "shutil.move": ((1, None),),
}
# A process started by an example would be outside the hook's sight.
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn", "os.fork"}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class SandboxViolation(RuntimeError):
    """An example wrote outside its directory or reached for a server that is not ours."""


class Sandbox:
    """Where examples may write (``root``) and which ``(host, port)`` they may reach."""

    def __init__(self, root: Path, endpoints: set[tuple[str, int]]) -> None:
        self.root = os.path.realpath(root)
        self.endpoints = endpoints
        self.hosts = {host for host, _ in endpoints}
        self.violations: list[str] = []

    def allows_path(self, path: str) -> bool:
        real = os.path.realpath(path)
        if "__pycache__" in Path(real).parts or real == os.devnull:
            return True  # the interpreter caching bytecode of a module imported first here
        return real == self.root or real.startswith(self.root + os.sep)

    def check(self, event: str, args: tuple[Any, ...]) -> None:
        refused = self._refused(event, args)
        if refused is not None:
            self.violations.append(refused)
            raise SandboxViolation(refused)

    def _refused(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writing and not isinstance(path, int) and not self.allows_path(_text(path)):
                return f"write to {_text(path)!r} outside {self.root}"
            return None
        if event in _PATH_EVENTS:
            for path_at, fd_at in _PATH_EVENTS[event]:
                path = args[path_at]
                if isinstance(path, int):
                    continue
                dir_fd = args[fd_at] if fd_at is not None else None
                full = _join(dir_fd, _text(path))
                if not self.allows_path(full):
                    return f"{event} of {full!r} outside {self.root}"
            return None
        if event in _PROCESS_EVENTS:
            return f"{event} {args[0]!r}: examples start no processes"
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and (str(address[0]), address[1]) in self._resolved():
                return None
            return f"connection to {address!r}: only {sorted(self.endpoints)} are allowed"
        if event == "socket.getaddrinfo":
            host = _text(args[0]) if args[0] is not None else "localhost"
            if host in self.hosts or host in LOOPBACK:
                return None
            return f"name lookup of {host!r}: examples reach only the test's own servers"
        return None

    def _resolved(self) -> set[tuple[str, int]]:
        allowed = set(self.endpoints)
        for host, port in self.endpoints:
            if host in LOOPBACK:
                allowed |= {(alias, port) for alias in LOOPBACK}
        return allowed


def _text(path: Any) -> str:
    return os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)


def _join(dir_fd: int | None, path: str) -> str:
    if os.path.isabs(path) or dir_fd is None or dir_fd < 0:  # CPython passes -1 for none
        return os.path.abspath(path)
    return os.path.join(_fd_path(dir_fd), path)


def _fd_path(fd: int) -> str:
    """The path of an open directory (Linux: /proc; macOS and the BSDs: F_GETPATH)."""
    if os.path.isdir("/proc/self/fd"):
        return os.readlink(f"/proc/self/fd/{fd}")
    import fcntl

    path: bytes = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))  # type: ignore[attr-defined]
    return os.fsdecode(path.rstrip(b"\0"))


_active: Sandbox | None = None
_inside = threading.local()  # the hook's own file-system calls must not re-enter it
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    sandbox = _active
    if sandbox is None or getattr(_inside, "busy", False):
        return
    _inside.busy = True
    try:
        sandbox.check(event, args)
    finally:
        _inside.busy = False


@contextmanager
def sandboxed(root: Path, endpoints: set[tuple[str, int]]) -> Iterator[Sandbox]:
    """Refuse and record, in every thread of this process, what leaves ``root`` or
    ``endpoints`` until the block ends."""
    global _active, _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    if _active is not None:
        raise RuntimeError("sandboxes do not nest")
    sandbox = Sandbox(root, endpoints)
    _active = sandbox
    try:
        yield sandbox
    finally:
        _active = None
