"""How the loop thread wakes a thread blocked on one of its calls, and how a caller wakes
the loop thread.

The wake-ups are system calls made *with the GIL released*: the loop thread rings an
eventfd of the waiting thread (``os.eventfd_write`` lets go of the GIL around the
write), so the woken thread finds the GIL free instead of waking only to block on it
again. A ``threading.Lock`` released by the loop thread does that hand-off holding the
GIL: a ping-pong of two threads through locks made 5.1 context switches and ~12 µs of
CPU per round trip on the project's 2-core machine, through eventfds 2.0 switches and
~6 µs (see ``docs/decisions.md``, *The sync facade wakes its callers through eventfds*).

- :class:`ThreadBell` (Linux): one eventfd per calling thread, reused by all its calls.
  A ring may outlive the call it was for (the caller gave up waiting), so a waiter
  checks its call's ``done`` flag and waits again after a stale ring.
- :class:`CallLock` (elsewhere): a lock per call, released once.
- :class:`Doorbell`: the loop thread's own wake-up, an eventfd (or a socket pair) that
  its selector watches.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Bell", "CallLock", "Doorbell", "ThreadBell", "Waitable", "bell_for_this_thread"]

#: Whether this platform has eventfds (Linux).
EVENTFD = hasattr(os, "eventfd")


class Waitable(Protocol):
    """What a bell waits for: a call whose ``done`` the loop thread sets before ringing."""

    done: bool


class Bell(Protocol):
    """Wakes the thread waiting for one call."""

    def ring(self) -> None:
        """Wake the waiter (called once the call's ``done`` is set)."""

    def wait(self, call: Waitable, timeout: float | None) -> bool:
        """Block until ``call.done``; ``False`` after ``timeout`` seconds without it."""


class ThreadBell:
    """An eventfd of one thread: :meth:`ring` from the loop thread, :meth:`wait` in the
    thread. Kept by the thread and by each of its calls in flight, so the descriptor is
    closed only once nobody can ring it."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)

    def ring(self) -> None:
        os.eventfd_write(self.fd, 1)  # the GIL is released around the write

    def wait(self, call: Waitable, timeout: float | None) -> bool:
        fd = self.fd
        if timeout is None:
            while not call.done:
                os.eventfd_read(fd)  # blocks, GIL released; resets the count
            return True
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not call.done:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000.0):
                return call.done
            os.eventfd_read(fd)
        return True

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        fd = getattr(self, "fd", -1)
        if fd >= 0:
            self.fd = -1
            _close(fd)


class CallLock:
    """A lock acquired at creation, released by :meth:`ring`: one per call."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def ring(self) -> None:
        self._lock.release()

    def wait(self, call: Waitable, timeout: float | None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


class _Local(threading.local):
    bell: ThreadBell | None = None


_local = _Local()


def _forget_bells_in_child() -> None:  # a forked child must not share its parent's fds
    global _local
    _local = _Local()


if EVENTFD:
    os.register_at_fork(after_in_child=_forget_bells_in_child)


def bell_for_this_thread() -> Bell:
    """The calling thread's :class:`ThreadBell` (made on its first call), or a new
    :class:`CallLock` where there are no eventfds."""
    if not EVENTFD:
        return CallLock()
    bell = _local.bell
    if bell is None:
        bell = _local.bell = ThreadBell()
    return bell


class Doorbell:
    """The loop thread's wake-up: a descriptor its selector watches (:attr:`fd`), rung
    from other threads with the GIL released, drained by the loop thread. Closed when
    it is collected, never before: a thread may still ring it as the loop stops."""

    def __init__(self, eventfd: bool = EVENTFD) -> None:
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if eventfd:
            self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:  # a socket pair, as asyncio's own self-pipe
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._pair = (reader, writer)
            self.fd = reader.fileno()

    def ring(self) -> None:
        """Wake the loop thread (from any thread)."""
        if self._pair is None:
            os.eventfd_write(self.fd, 1)
        else:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                self._pair[1].send(b"\0")  # (full: a wake-up is already on its way)

    def drain(self) -> None:
        """Take the rings (on the loop thread, once its selector saw them)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            if self._pair is None:
                os.eventfd_read(self.fd)
            else:
                while self._pair[0].recv(4096):
                    pass

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        pair = getattr(self, "_pair", None)
        if pair is not None:
            for sock in pair:
                sock.close()
        elif getattr(self, "fd", -1) >= 0:
            _close(self.fd)
        self.fd = -1
