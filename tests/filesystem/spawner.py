"""A minimal fork server for the multi-process tests.

``python -m tests.filesystem.spawner`` imports the driver once, then for every JSON
command line on stdin (``{"fn": ..., "kwargs": {...}, "fifo": path}``) forks a child
that runs ``workers.<fn>(send, **kwargs)`` and prints the child's pid. The child reports
on the named pipe ``fifo`` (one message per ``os.write``, newline-terminated, shorter
than ``PIPE_BUF`` so it is never torn). Forking from this small single-threaded process
costs milliseconds, where multiprocessing's own start methods re-import pytest.

:class:`Spawner` is the test side: start the server, run children, read their messages.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _serve() -> None:
    from . import workers

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fd = os.open(cmd["fifo"], os.O_WRONLY)
                os.write(fd, b"ready\n")

                def send(message: bytes, fd: int = fd) -> None:
                    os.write(fd, message + b"\n")

                getattr(workers, cmd["fn"])(send, **cmd["kwargs"])
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        print(pid, flush=True)


class Child:
    """A running child: its pid and the messages it sent."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.buffer = b""
        self.closed = False
        self.pending: list[bytes] = []  # read while waiting for "ready"

    def read(self, timeout: float) -> list[bytes]:
        """Messages that arrive within ``timeout`` seconds (all of them, once it exited)."""
        out, self.pending = self.pending, []
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # a selector, not select.select: that refuses fds above 1023, which a long
            # test session reaches
            with selectors.DefaultSelector() as selector:
                selector.register(self.fd, selectors.EVENT_READ)
                ready = selector.select(left)
            if not ready:
                break
            data = os.read(self.fd, 65536)
            if not data:
                self.closed = True  # every writer is gone: the child is dead
                break
            self.buffer += data
            *lines, self.buffer = self.buffer.split(b"\n")
            out.extend(lines)
            if out:
                break
        return out

    def kill(self) -> list[bytes]:
        """SIGKILL the child; returns the messages it sent before it died."""
        os.kill(self.pid, signal.SIGKILL)
        rest: list[bytes] = []
        while not self.closed:
            rest.extend(self.read(10))
        os.close(self.fd)
        return rest

    def wait(self, timeout: float) -> list[bytes]:
        """Wait for the child to finish; returns its messages."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            out.extend(self.read(deadline - time.monotonic()))
        assert self.closed, "the child did not finish in time"
        os.close(self.fd)
        return out


class Spawner:
    """The test side of the fork server (a context manager)."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="sessionstore-spawner-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.filesystem.spawner"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.count = 0

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.tmp.cleanup()

    def start(self, fn: Callable[..., Any], **kwargs: Any) -> Child:
        """Fork a child running ``workers.<fn.__name__>(send, **kwargs)``."""
        self.count += 1
        fifo = os.path.join(self.tmp.name, f"ack-{self.count}")
        os.mkfifo(fifo, 0o600)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(fifo, os.O_WRONLY)  # no EOF before the child has opened its end
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"fn": fn.__name__, "kwargs": kwargs, "fifo": fifo}))
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        child = Child(pid, fd)
        try:
            first = child.read(30)
            assert first[:1] == [b"ready"], f"child {pid} did not start: {first!r}"
            child.pending = first[1:]
        finally:
            os.close(keep)
            os.unlink(fifo)
        return child


if __name__ == "__main__":
    _serve()
