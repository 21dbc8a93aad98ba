"""The loop thread's wake-ups: the callers' bells, its doorbell, and calls given up on."""

from __future__ import annotations

import asyncio
import os
import select
import threading
from dataclasses import dataclass

import pytest

from sessionstore.sync import LoopThread
from sessionstore.sync._wakeup import (
    EVENTFD,
    Bell,
    CallLock,
    Doorbell,
    ThreadBell,
    bell_for_this_thread,
)


@dataclass
class Call:
    done: bool = False


def bells() -> list[Bell]:
    return [ThreadBell(), CallLock()] if EVENTFD else [CallLock()]


@pytest.mark.parametrize("bell", bells(), ids=lambda bell: type(bell).__name__)
def test_a_bell_wakes_its_waiter_from_another_thread(bell: Bell) -> None:
    call = Call()

    def finish() -> None:
        call.done = True
        bell.ring()

    threading.Timer(0.05, finish).start()
    assert bell.wait(call, None)
    assert call.done


@pytest.mark.parametrize("bell", bells(), ids=lambda bell: type(bell).__name__)
def test_a_bell_that_does_not_ring_times_out(bell: Bell) -> None:
    assert not bell.wait(Call(), 0.05)


@pytest.mark.skipif(not EVENTFD, reason="thread bells are eventfds (Linux)")
def test_a_stale_ring_does_not_end_the_next_wait() -> None:
    """A ring for a call its thread gave up on stays in the thread's eventfd; the next
    call of the thread must wait for its own ring, not return at the stale one."""
    bell = ThreadBell()
    bell.ring()  # the late ring of an abandoned call
    assert not bell.wait(Call(), 0.05)  # not done: the stale ring is taken, then it waits
    call = Call()

    def finish() -> None:
        call.done = True
        bell.ring()

    threading.Timer(0.05, finish).start()
    assert bell.wait(call, None) and call.done


@pytest.mark.skipif(not EVENTFD, reason="thread bells are eventfds (Linux)")
def test_each_thread_has_one_bell_closed_with_its_last_user() -> None:
    assert bell_for_this_thread() is bell_for_this_thread()
    seen: list[Bell] = []
    worker = threading.Thread(target=lambda: seen.append(bell_for_this_thread()))
    worker.start()
    worker.join()
    assert seen[0] is not bell_for_this_thread()
    bell = seen.pop()
    assert isinstance(bell, ThreadBell)
    fd = bell.fd
    os.fstat(fd)  # still open: the bell is referenced (as a call in flight would)
    del bell
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize(
    "eventfd", [True, False] if EVENTFD else [False], ids=lambda e: "eventfd" if e else "socketpair"
)
def test_the_doorbell_is_readable_once_rung_until_drained(eventfd: bool) -> None:
    doorbell = Doorbell(eventfd=eventfd)
    assert select.select([doorbell.fd], [], [], 0)[0] == []
    doorbell.ring()
    doorbell.ring()
    assert select.select([doorbell.fd], [], [], 0)[0] == [doorbell.fd]
    doorbell.drain()
    assert select.select([doorbell.fd], [], [], 0)[0] == []
    doorbell.drain()  # nothing to take: no error


def test_a_call_given_up_before_it_started_never_runs() -> None:
    """A caller that times out while its call is still queued (the loop busy): the call
    is closed, never started, and the loop thread stays usable."""
    loop_thread = LoopThread()
    holding, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    async def hold() -> None:
        holding.set()
        gate.wait(5)  # blocks the loop thread itself: the next call stays queued

    async def late() -> None:
        ran.append("late")

    async def quick() -> int:
        return 7

    holder = threading.Thread(target=lambda: loop_thread.call(hold()))
    try:
        holder.start()
        assert holding.wait(5)
        with pytest.raises(TimeoutError):
            loop_thread.call(late(), timeout=0.1)
        gate.set()
        holder.join(5)
        assert loop_thread.call(quick()) == 7
        assert ran == []
    finally:
        gate.set()
        loop_thread.close(timeout=5)


def test_errors_of_every_kind_reach_the_caller() -> None:
    loop_thread = LoopThread()

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def quick() -> int:
        return 7

    try:
        with pytest.raises(asyncio.CancelledError):
            loop_thread.call(cancelled())
        with pytest.raises(KeyboardInterrupt):  # in the caller; the loop thread lives on
            loop_thread.call(interrupted())
        assert loop_thread.call(quick()) == 7
    finally:
        loop_thread.close(timeout=5)
