"""``SessionStoreSession``: the SDK's ``Session`` protocol over a sessionstore store.

One SDK session is one sessionstore session (id by :func:`~sessionstore_openai_agents.store_id`);
each item is one event of type :data:`ITEM_TYPE` whose data is the item itself. Every SDK
call is one store call (one round trip on Redis):

========================  =========================================================
``add_items(items)``      ``append_events(id, items, ttl=...)`` (``create=`` on first use)
``get_items(limit)``      ``get_events(id, last=limit)`` (all events without a limit)
``pop_item()``            ``pop_events(id, 1)``
``clear_session()``       ``delete_session(id)``
compaction (SDK hooks)    ``commit([TruncateOp, AppendOp])``: one atomic batch
========================  =========================================================
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from agents import RunContextWrapper, SessionSettings, TResponseInputItem
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from sessionstore import (
    AppendOp,
    CreateOp,
    DeleteEventsOp,
    Event,
    NewSession,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
    TruncateOp,
    open_store,
)
from sessionstore.model import TTL

from . import _probes
from ._ids import METADATA_KEY, TAG, store_id

if TYPE_CHECKING:
    from agents.memory.session import _CompactionSnapshot

__all__ = ["ITEM_TYPE", "SessionStoreSession"]

#: The event type of a stored item.
ITEM_TYPE: Final = "item"
#: How often an atomic replacement re-reads after losing a race with another writer.
_REPLACE_ATTEMPTS: Final = 16
#: The largest ``last=`` one ``get_events`` call takes (sessionstore's page limit); the
#: SDK asks for "everything" as ``limit=2**31 - 1``.
_MAX_LAST: Final = 100_000

_T = TypeVar("_T")


def _relay(proxy: asyncio.Future[None], _inner: object) -> None:
    if not proxy.done():
        proxy.set_result(None)


@types.coroutine
def _uncancellable(write: Coroutine[Any, Any, _T]) -> Generator[Any, Any, _T]:
    """Drive ``write`` inside the caller's task, keeping the task's cancellation away from
    it: where ``write`` waits on a future, the task waits on a proxy future of ours (a
    ``Task.cancel`` cancels the future its task waits on: the proxy, not the write's own),
    a cancellation thrown in is kept, and the proxy is renewed until the write's future is
    done. Once ``write`` is over, the first cancellation is raised (its outcome known);
    with none, the write's result or error. No task, no extra loop turn but the relay."""
    loop = asyncio.get_running_loop()
    cancellation: asyncio.CancelledError | None = None
    try:
        awaiting = write.send(None)
        while True:
            if awaiting is None:  # a bare yield (asyncio.sleep(0)): give the loop a turn
                try:
                    yield None
                except asyncio.CancelledError as exc:
                    cancellation = cancellation or exc
            elif isinstance(awaiting, asyncio.Future):
                while not awaiting.done():
                    proxy = loop.create_future()
                    awaiting.add_done_callback(functools.partial(_relay, proxy))
                    try:
                        yield from proxy
                    except asyncio.CancelledError as exc:
                        cancellation = cancellation or exc
                awaiting._asyncio_future_blocking = False
            else:  # not a future: hand it to the task as is (unprotected, as asyncio would)
                yield awaiting
            awaiting = write.send(None)
    except StopIteration as done:
        if cancellation is not None:
            raise cancellation from None
        return cast(_T, done.value)
    except BaseException:
        if cancellation is not None:
            raise cancellation from None
        raise


async def finish_despite_cancellation(write: Awaitable[_T]) -> _T:
    """Run a write to its end even when the caller is cancelled meanwhile (as the SDK's
    own sessions do): the caller's ``CancelledError`` is raised once the outcome is known
    (a failure of the write is then not reported: the caller asked to stop), so a
    cancelled ``add_items`` has written everything or nothing, never a part, and the
    caller never mistakes a committed write for a lost one. The write runs in the
    caller's task (no task is created; see ``_uncancellable``). The contract is that of
    the SDK's ``agents.memory.await_session_mutation`` (public since openai-agents 0.25,
    whose tests of it run on this function): repeated cancellations wait for the write
    and the first one is raised; cancelling the write itself (not its caller) still
    interrupts it."""
    if isinstance(write, Coroutine):
        return await _uncancellable(write)
    return await _uncancellable(_awaited(write))


async def _awaited(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _item_events(items: Sequence[TResponseInputItem]) -> list[Mapping[str, Any]]:
    return [{"type": ITEM_TYPE, "data": item} for item in items]


def _items(events: Sequence[Event]) -> list[TResponseInputItem]:
    return [cast("TResponseInputItem", event.data) for event in events]


async def _newest(store: SessionStore, session_id: str, n: int | None) -> list[Event]:
    """The newest ``n`` events (all with ``None``), oldest first; SessionNotFoundError for
    a missing session."""
    if n is not None and n <= _MAX_LAST:
        return await store.get_events(session_id, last=n)
    events = await store.get_events(session_id)
    return events if n is None else events[-n:]


class SessionStoreSession:
    """An OpenAI Agents SDK session stored in a sessionstore store.

    Pass it wherever the SDK takes a session (``Runner.run(agent, input,
    session=session)``). Many sessions share one store; the session does not own a store
    it is given (:meth:`from_url` makes one that it owns and closes in :meth:`close`).

    Args:
        session_id: the SDK's session id, any str; the store's id is
            :func:`~sessionstore_openai_agents.store_id` of it.
        store: an async sessionstore store (initialised, or initialised by its owner
            before the first call).
        session_settings: the SDK's settings (``limit``: the default of ``get_items``).
        ttl: when set, every write moves the session's expiry to now + ``ttl`` in the
            same write (sliding expiry, as the SDK's ``RedisSession(ttl=...)``); an expired
            session reads as empty.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        store: SessionStore,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        ttl: TTL | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(dict(session_settings))
            if isinstance(session_settings, Mapping)
            else coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self.store = store
        self.store_session_id = store_id(session_id)
        self.ttl = ttl
        self._new = NewSession(
            id=self.store_session_id,
            tags=(TAG,),
            metadata={METADATA_KEY: session_id},
            ttl=ttl,
        )
        self._owns_store = False
        self._initialised = True  # a store passed in is its owner's to initialise
        self._ready = True  # initialised and not closed: the calls' fast path
        # The session existed at this object's last write (add_items then appends without
        # create=, which is cheaper; a stale True costs one retry).
        self._exists = False
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        session_id: str,
        url: str,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        ttl: TTL | None = None,
        **store_options: Any,
    ) -> SessionStoreSession:
        """A session on a store of its own, opened from ``url`` (``open_store(url,
        **store_options)``) on first use and shut down by :meth:`close`. Prefer one
        shared store for many sessions in a server; this is for scripts."""
        session = cls(
            session_id,
            open_store(url, **store_options),
            session_settings=session_settings,
            ttl=ttl,
        )
        session._owns_store = True
        session._initialised = session._ready = False
        return session

    async def _store(self) -> SessionStore:
        if self._closed:
            raise RuntimeError("this SessionStoreSession is closed")
        if not self._initialised:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:  # two first calls at once: one initialize()
                if not self._initialised:
                    await self.store.initialize()
                    self._initialised = self._ready = True
        return self.store

    async def close(self) -> None:
        """Shut the store down when this session opened it (:meth:`from_url`); a store
        passed in is left to its owner. Later calls raise ``RuntimeError``. Idempotent."""
        if self._owns_store and not self._closed:
            self._closed = True
            self._ready = False
            if self._initialised:
                await self.store.shutdown()

    # -- the Session protocol

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The session's items, oldest first; with ``limit`` (or the settings' limit),
        the newest ``limit`` of them, still oldest first. ``limit <= 0``: ``[]``."""
        store = self.store if self._ready else await self._store()
        if limit is None:
            settings = self.session_settings
            limit = (
                settings.limit
                if type(settings) is SessionSettings
                else resolve_session_limit(None, settings)
            )
        try:
            if limit is None:
                events = await store.get_events(self.store_session_id)
            elif 0 < limit <= _MAX_LAST:
                events = await store.get_events(self.store_session_id, last=limit)
            elif limit <= 0:
                return []
            else:
                events = await _newest(store, self.store_session_id, limit)
        except SessionNotFoundError:
            return []
        return [cast("TResponseInputItem", event.data) for event in events]

    async def add_items(
        self,
        items: list[TResponseInputItem],
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        """Append ``items`` in one atomic write that creates the session when missing
        (and slides its expiry when ``ttl`` is set); finishes even if the caller is
        cancelled."""
        store = self.store if self._ready else await self._store()
        if not items:
            return
        events = _item_events(items)
        if self._exists:
            # The session was there at this object's last write: a plain append (the
            # cheapest write); if it was deleted since, the append wrote nothing and the
            # creating append below runs.
            try:
                await _uncancellable(
                    store.append_events(self.store_session_id, events, ttl=self.ttl)
                )
                return
            except SessionNotFoundError:
                self._exists = False
        await finish_despite_cancellation(
            store.append_events(self.store_session_id, events, create=self._new, ttl=self.ttl)
        )
        self._exists = True

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item (``None`` when there is none), atomically;
        finishes even if the caller is cancelled."""
        store = self.store if self._ready else await self._store()
        try:
            popped = await finish_despite_cancellation(store.pop_events(self.store_session_id, 1))
        except SessionNotFoundError:
            return None
        return _items(popped.events)[-1] if popped.events else None

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete the session and all its items; finishes even if the caller is
        cancelled."""
        store = self.store if self._ready else await self._store()
        self._exists = False
        await finish_despite_cancellation(store.delete_session(self.store_session_id))

    # -- the SDK's compaction hooks (private names it looks up: _probes.py)

    def _uses_own_storage(self) -> bool:
        """True for this class; a subclass that overrides how items are read or written
        (e.g. to transform them) does not get the hooks, which would bypass it: the SDK
        then falls back to its clear + add path, through the subclass's methods."""
        cls = type(self)
        return all(
            getattr(cls, name) is getattr(SessionStoreSession, name)
            for name in ("get_items", "add_items", "pop_item", "clear_session")
        )

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """The SDK's whole-history replacement hook: every item replaced by ``items`` in
        one atomic batch (truncate + append), never a cleared history in between."""
        if not self._uses_own_storage():
            return False
        store = await self._store()
        sid = self.store_session_id
        events = _item_events(items)
        for _ in range(_REPLACE_ATTEMPTS):
            try:
                ops: list[Any] = [TruncateOp(sid, after_seq=0)]
                if events:
                    ops.append(AppendOp(sid, events, ttl=self.ttl))
                await finish_despite_cancellation(store.commit(ops))
                return True
            except SessionNotFoundError:
                pass
            if not events:
                return True  # no session, nothing to put in: already replaced
            try:
                await finish_despite_cancellation(
                    store.commit([CreateOp(self._new), AppendOp(sid, events)])
                )
                return True
            except SessionExistsError:
                continue  # created meanwhile: replace what it holds
        raise SessionConflictError(sid, -1, -1)

    async def _get_compaction_snapshot(
        self,
        limit: int,
        *,
        prune_prefix: Callable[[TResponseInputItem], bool] | None = None,
    ) -> _CompactionSnapshot | None:
        """The SDK's bounded compaction read: the newest ``limit`` items, whether they are
        the whole history, and a ``replace_suffix(start, output)`` that swaps the items
        from ``start`` on for ``output`` atomically, only if no write touched them since
        (False otherwise), first dropping the oldest items ``prune_prefix`` accepts."""
        if not self._uses_own_storage() or limit <= 0:
            return None
        store = await self._store()
        sid = self.store_session_id
        try:
            read = await _newest(store, sid, limit + 1)
        except SessionNotFoundError:
            read = []
        complete = len(read) <= limit
        events = read[-limit:]

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            expected = events[start:]
            if not expected:
                return False
            return await finish_despite_cancellation(
                self._replace_suffix(expected, output, prune_prefix, limit)
            )

        return _probes.compaction_snapshot(_items(events), complete, replace_suffix)

    async def _replace_suffix(
        self,
        expected: list[Event],
        output: list[TResponseInputItem],
        prune_prefix: Callable[[TResponseInputItem], bool] | None,
        page: int,
    ) -> bool:
        store = self.store
        sid = self.store_session_id
        first = expected[0].seq
        for _ in range(_REPLACE_ATTEMPTS):
            session = await store.get_session(sid)
            if session is None:
                return False
            # Sequence numbers are never reused: the same newest seqs are the same events.
            current = await _newest(store, sid, len(expected))
            if [e.seq for e in current] != [e.seq for e in expected]:
                return False
            pruned = await self._prunable(first, prune_prefix, max(page, 1))
            ops: list[Any] = []
            if pruned:
                ops.append(DeleteEventsOp(sid, seqs=pruned, expected_version=session.version))
            ops.append(
                TruncateOp(
                    sid,
                    after_seq=first - 1,
                    expected_version=None if pruned else session.version,
                )
            )
            if output:
                ops.append(AppendOp(sid, _item_events(output), ttl=self.ttl))
            try:
                await store.commit(ops)
            except (SessionConflictError, SessionNotFoundError):
                continue  # another write came between the read and the batch: look again
            return True
        return False

    async def _prunable(
        self,
        before: int,
        prune_prefix: Callable[[TResponseInputItem], bool] | None,
        page: int,
    ) -> list[int]:
        """The seqs of the oldest run of items (before seq ``before``) that
        ``prune_prefix`` accepts."""
        if prune_prefix is None:
            return []
        seqs: list[int] = []
        after = 0
        while True:
            chunk = await self.store.get_events(
                self.store_session_id, after_seq=after, before_seq=before, limit=page
            )
            for event in chunk:
                if not prune_prefix(cast("TResponseInputItem", event.data)):
                    return seqs
                seqs.append(event.seq)
            if len(chunk) < page:
                return seqs
            after = chunk[-1].seq
