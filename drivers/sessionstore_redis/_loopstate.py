"""What one event loop holds of a Redis store (:class:`LoopState`), and how the states of
every loop are closed from any one of them (:func:`close_states`); ``_loops.py`` keeps
one state per loop, ``docs/redis.md`` (*Event loops*) describes the behaviour."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from . import _redis_internals as internals
from ._lane import Lane

__all__ = ["LoopState", "close_states"]

log = logging.getLogger("sessionstore.redis")


class LoopState:
    """What one event loop uses of a store (see ``_loops.py``): its redis-py clients (with
    their pools, gates and connections), its lane and its lane's timer, its Sentinel, its
    Cluster slot-map state and lock, and its Cluster index queue (``index``)."""

    __slots__ = (
        "_closing",
        "_jobs",
        "client",
        "closed",
        "index",
        "lane",
        "loop",
        "mapped",
        "sentinel",
        "stale_topology",
        "topology_lock",
        "wait_clients",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Any,
        lane: Lane | None,
        sentinel: Sentinel | None,
        wait_clients: dict[str, aioredis.Redis],
        *,
        cluster: bool,
    ) -> None:
        self.loop = loop
        self.client = client
        self.lane = lane
        self.sentinel = sentinel
        self.wait_clients = wait_clients
        #: Cluster: re-read the slot map before the next call (a new loop's client has
        #: not read it yet)
        self.stale_topology = cluster
        self.mapped = False
        self.topology_lock = asyncio.Lock()
        self.index: Any = None  # the store's IndexQueue of this loop (set by the store)
        self.closed = False
        self._closing = False
        self._jobs: set[asyncio.Task[None]] = set()  # on_its_loop's, while they run

    def _clients(self) -> list[Any]:
        clients = [self.client, *self.wait_clients.values()]
        if self.sentinel is not None:
            clients += self.sentinel.sentinels
        return clients

    def take_pending(self) -> list[Any]:
        """The index updates queued and not sent yet (to hand over to another loop)."""
        return [] if self.index is None else list(self.index.take())

    async def aclose(self) -> None:
        """Send the pending index updates, then close every connection (on its loop)."""
        if self._closing:
            return
        self._closing = True
        try:
            if self.index is not None:
                await self.index.close()
        finally:
            self.closed = True
            await self._close_clients()

    async def _close_clients(self) -> None:
        if self.lane is not None:
            self.lane.deadlines.close()
        for client in self._clients():
            try:
                await client.aclose()
            except Exception as exc:  # closing must not fail shutdown
                log.debug("closing a redis client failed: %s", exc)

    def abandon(self) -> None:
        """Close without running the loop (closed, stopped, or not answering), from any
        thread: every socket is shut down at once (the server drops the connection),
        nothing is awaited here. A loop that is not closed closes the clients itself
        when it runs again; a closed loop's connections are detached from their
        streams (asyncio may still warn about the transports when they are collected)."""
        self._closing = self.closed = True
        connections: list[Any] = []
        for client in self._clients():
            try:
                connections += internals.connections_of(client)
            except AttributeError as exc:  # a redis-py that moved them: collected later
                log.debug("cannot list a client's connections: %s", exc)
        for conn in connections:
            writer = internals.stream_writer(conn)
            sock = None if writer is None else writer.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if not self.loop.is_closed():
            try:
                if self.index is not None:
                    self.loop.call_soon_threadsafe(self.index.abandon)
                self.on_its_loop(self._close_clients)
                return
            except RuntimeError:  # closed meanwhile
                pass
        if self.index is not None:
            self.index.abandon()
        for conn in connections:
            internals.forget_streams(conn)

    def on_its_loop(self, job: Callable[[], Coroutine[Any, Any, None]]) -> cf.Future[None]:
        """Run ``job()`` on this state's loop (from any thread). The coroutine is made only
        when that loop runs the callback: a loop closed before that leaves no coroutine
        "never awaited" behind. RuntimeError when the loop is closed already."""
        future: cf.Future[None] = cf.Future()

        def start() -> None:
            if not future.set_running_or_notify_cancel():
                return
            task = self.loop.create_task(job())
            self._jobs.add(task)

            def done(task: asyncio.Task[None]) -> None:
                self._jobs.discard(task)
                if task.cancelled():
                    future.set_exception(asyncio.CancelledError())
                elif task.exception() is not None:
                    future.set_exception(task.exception())
                else:
                    future.set_result(None)

            task.add_done_callback(done)

        self.loop.call_soon_threadsafe(start)
        return future

    def adopt(self, other: LoopState) -> None:
        """Take over the pending index updates of an abandoned state (on this loop)."""
        pending = other.take_pending()
        if pending and self.index is not None:
            self.index.put(pending)


async def close_states(
    states: list[LoopState],
    new_state: Callable[[asyncio.AbstractEventLoop], LoopState],
    wait: float,
) -> None:
    """Close the states of every loop, from the running one: its own here; another
    running loop's on that loop (waited for up to ``wait`` seconds, as it first sends its
    queued index updates); a loop that is stopped, closed or does not answer in time is
    abandoned (sockets shut down at once) and its queued index updates are sent from here
    (by a state made for that when this loop had none)."""
    loop = asyncio.get_running_loop()
    mine = [s for s in states if s.loop is loop and not s.closed]
    handed: list[Any] = []
    for state in states:
        if state.loop is loop:
            continue
        if state.loop.is_running() and await _close_there(state, wait):
            continue
        handed += state.take_pending()
        state.abandon()
    if handed:
        if not mine:  # this loop never used the store: a state just to send them
            mine = [new_state(loop)]
        if mine[0].index is not None:
            mine[0].index.put(handed)
    for state in mine:
        await state.aclose()


async def _close_there(state: LoopState, wait: float) -> bool:
    """Close ``state`` on its own (running) loop; False when that loop closes first or
    does not answer within ``wait`` seconds (then it is abandoned)."""
    try:
        done = asyncio.wrap_future(state.on_its_loop(state.aclose))
    except RuntimeError:  # closed meanwhile
        return False
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait
    while not done.done():
        # in slices: a loop that closes meanwhile (asyncio.run ending) never runs it
        await asyncio.wait({done}, timeout=0.05)
        if not done.done() and (state.loop.is_closed() or loop.time() > give_up):
            log.warning(
                "shutdown: the event loop %r did not close its connections; closing them directly",
                state.loop,
            )
            return False
    if done.cancelled() or done.exception() is not None:
        log.debug("closing another loop's connections failed: %r", done)
        return False
    return True
