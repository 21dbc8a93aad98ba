"""The index queue: index updates sent to the index shards in the background.

On Cluster with key layout 3 a write script cannot touch the index shards (other hash
slots), so each write queues its index update here and returns after one round trip; a
background task sends the queue, pipelined and grouped by shard (``lua/reindex.lua``,
guarded by each record's (created_at, version), so late or repeated updates never go
backwards). Every query of the same store waits for the queue first, so a client always
sees its own writes; other clients see them once the queue is sent (about one more round
trip). Readers' repairs of stale entries go through the same queue, on every topology
and layout (with key layout 4 a write script updates its session's shard itself).

Each event loop that uses the store has a queue of its own (its timer task and lock
belong to that loop; see ``_loops.py``): a query flushes the queue of its loop, so a loop
sees its own writes at once and the writes of another loop of the same store within
:data:`IndexQueue.DELAY`, as another client would. A loop's queue is sent when that loop
winds down or the store shuts down; the updates of a loop that cannot send them (closed,
or not answering) are handed over to another loop's queue (``LoopState.adopt``,
``Backend.close``): none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sessionstore import Session
from sessionstore.clock import to_ms

from ._conn import Backend, LoopState
from ._encoding import record_of
from ._keys import Keys
from ._scripts import REINDEX

__all__ = ["IndexQueue"]

log = logging.getLogger("sessionstore.redis")

#: One queued update: (session id, ["P", id, record] | ["D", id, ca, ver] | ["X", id, record]);
#: the record of an upsert may be the :class:`Session` itself, turned into its record
#: (``record_of``) only if it is the one sent: a stream of writes to one session builds
#: one record per batch instead of one per write (a session's fields are immutable).
Item = tuple[str, list[Any]]


class IndexQueue:
    """Pending index updates of one store on one event loop and the task that sends them.

    Updates are held for up to :data:`DELAY` seconds so that a burst of writes shares one
    pipelined call per shard; :meth:`flush` sends at once. 20 ms, measured: with 5 ms a
    stream of creates paid ~40 % over the raw script on Cluster (a flush every dozen
    writes, one request per node each time), with 20 ms ~10 %; 50 ms gained nothing more.
    Only other clients wait for it (this store's queries flush first).
    """

    DELAY: float = 0.02

    def __init__(self, backend: Backend, keys: Keys, here: LoopState) -> None:
        self._backend = backend
        self._keys = keys
        self._here = here  # the loop state whose connections send the updates
        self._pending: list[Item] = []
        # a timer handle, not a sleeping task: a loop closed without running it again
        # drops it silently (a pending task would be "destroyed but pending")
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None  # the timer's flush, while it runs
        self._lock = asyncio.Lock()

    def put(self, items: Sequence[Item]) -> None:
        """Queue updates; they are sent soon, in order, by a background task."""
        if not items:
            return
        self._pending.extend(items)
        if self._timer is None and self._sending is None:
            self._timer = asyncio.get_running_loop().call_later(self.DELAY, self._fire)

    def take(self) -> list[Item]:
        """Remove and return the updates not sent yet (handed over to another loop)."""
        taken, self._pending = self._pending, []
        return taken

    def abandon(self) -> None:
        """Stop the timer without the loop (see ``LoopState.abandon``); what is queued
        stays for :meth:`take`."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _fire(self) -> None:
        self._timer = None
        self._sending = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        try:
            await self.flush()
        finally:
            self._sending = None
            if self._pending and self._timer is None:  # queued while it was sent
                self._timer = asyncio.get_running_loop().call_later(self.DELAY, self._fire)

    async def flush(self) -> None:
        """Send everything queued before this call (in order; one batch at a time).

        What is queued while a batch is on its way waits for the next one (its timer runs
        already): a flush that kept sending until the queue was empty would, under a
        steady stream of writes, send every few writes instead of once per burst."""
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await self.send(batch)
            except Exception as exc:  # the writes succeeded: never fail them afterwards
                log.warning("index update failed, entries stay stale until repaired: %s", exc)
            except BaseException:
                # cancelled (a loop winding down cancels its tasks before its keeper
                # closes the queue): queued again, sent by close (sending twice is safe)
                self._pending[:0] = batch
                raise

    async def close(self) -> None:
        """Stop the timer and send everything queued, including a batch the timer is
        sending (the connection closes after this)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        async with self._lock:  # wait for a batch on its way
            pass
        while self._pending:
            await self.flush()

    async def send(self, items: Sequence[Item]) -> None:
        """Apply ``items`` now (pipelined, one script call per shard)."""
        by_shard: dict[int, list[Any]] = {}
        counts: dict[int, int] = {}
        for sid, item in _newest_only(items):
            if item[0] == "P" and not isinstance(item[2], str):
                item = ["P", item[1], record_of(item[2])]
            shard = self._keys.ix_shard(sid, _group(item))
            by_shard.setdefault(shard, []).extend(item)
            counts[shard] = counts.get(shard, 0) + 1
        calls = []
        for shard, flat in by_shard.items():
            ix = self._keys.index(shard)
            calls.append(("script", REINDEX, [ix + "r"], [ix, counts[shard], *flat]))
        backend, here = self._backend, self._here
        await backend.run(
            lambda: backend.pipeline(calls, here), idempotent=True, what="index update", here=here
        )


def _group(item: list[Any]) -> str | None:
    """The group of an upsert's or a repair's record (its 7th field, ``lua/index.lua``):
    with key layout 4 a grouped session's entry lives in its group's shard. A delete
    (``D``, queued on layout 3 only) names none."""
    if item[0] == "D":
        return None
    fields = item[2].split("\0", 7)
    return fields[6] if len(fields) > 6 and fields[6] else None


def _version(record: str | Session) -> tuple[int, int]:
    """``(created_at, version)`` of an index record (see ``lua/index.lua``)."""
    if not isinstance(record, str):
        return to_ms(record.created_at), record.version
    ver, ca = record.split("\0", 2)[:2]
    return int(ca), int(ver)


def _newest_only(items: Sequence[Item]) -> list[Item]:
    """``items`` without the upserts (``P``) that another upsert of the same session in the
    batch supersedes: the script would refuse them anyway (it keeps the newest record by
    ``(created_at, version)``), and a chatty session would otherwise cost one script
    step per write. Deletes and repairs are kept as they are (they are conditional)."""
    newest: dict[str, tuple[tuple[int, int], int]] = {}
    for index, (sid, item) in enumerate(items):
        if item[0] == "P":
            key = _version(item[2])
            best = newest.get(sid)
            if best is None or key >= best[0]:
                newest[sid] = (key, index)
    if len(newest) == sum(1 for _, item in items if item[0] == "P"):
        return list(items)
    keep = {index for _, index in newest.values()}
    return [entry for index, entry in enumerate(items) if entry[1][0] != "P" or index in keep]
