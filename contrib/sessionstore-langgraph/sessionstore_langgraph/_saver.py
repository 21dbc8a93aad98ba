"""``SessionStoreSaver``: LangGraph's ``BaseCheckpointSaver`` over any sessionstore store.

One thread is one session (ids mapped by :func:`~sessionstore_langgraph.thread_session_id`).
Each step appends events and never rewrites what is stored: ``put`` appends the
channel values that changed (one event each, keyed by namespace, channel and version)
and the checkpoint itself (keyed by namespace and id) in one atomic append;
``put_writes`` appends one keyed event, so a re-delivered call is stored once. Reads go
by key and type, so their cost follows what they return, not the thread's history.
"""

from __future__ import annotations

import asyncio
import operator
import random
import threading
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from time import monotonic
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from sessionstore import (
    AppendOp,
    ConfigurationError,
    DeleteEventsOp,
    Event,
    EventInput,
    EventKeyConflictError,
    NewSession,
    Op,
    QueryOptions,
    Session,
    SessionFilter,
    SessionNotFoundError,
    SessionStore,
    SessionUpdate,
    UpdateOp,
    open_store,
)
from sessionstore.model import TTL
from sessionstore.sync import LoopThread, SyncSessionStore, open_sync_store

from . import _history, _maintenance
from ._ids import (
    CAPPED_TAG,
    LINK_TYPE,
    MARK_TYPE,
    MAX_THREAD_TAGS,
    NS_TYPE,
    RUN_TYPE,
    TAG_PREFIX,
    UNINDEXED,
    blob_key,
    checkpoint_key,
    checkpoint_type,
    digest,
    mark_key,
    metadata_tag,
    namespace_key,
    run_index_id,
    thread_session_id,
    writes_key,
    writes_type,
)
from ._records import (
    MISSING,
    CheckpointRecord,
    blob_events,
    blob_value,
    checkpoint_data,
    decode,
    encode,
    inline_pairs,
    link_event,
    link_value,
    metadata_tags,
    pending_writes,
    write_rows,
    writes_digest,
)

__all__ = ["SessionStoreSaver"]

R = TypeVar("R")

#: How many checkpoint events one backwards read fetches while listing.
PAGE: Final = 50
#: Checkpoints whose stored values one read fetches when at most this many events apart.
GAP: Final = 16
#: The events a listing of every namespace of a thread reads first (with the thread's
#: namespace markers): a thread this short is listed from them.
PROBE: Final = 64
#: Threads whose first read a listing of every thread starts ahead.
LOOKAHEAD: Final = 8
#: The events at the end of a thread that ``aget_tuple`` of the newest checkpoint reads
#: first: its checkpoint, mark, values and writes are there after a usual step.
TAIL: Final = 8
#: Checkpoints whose writes one read fetches.
TYPES_PER_READ: Final = 256
#: How many (thread, run) pairs the saver remembers having indexed.
_RUN_CACHE: Final = 4096
#: The most links on one value stored whole: the next value of the channel is stored
#: whole again, so a link holds at most this many steps' items.
LINKS: Final = 32
#: How many (thread, namespace, channel) list values the saver remembers (it holds their
#: items), and how many items in all: the least recently used go first.
_LIST_CACHE: Final = 256
_LIST_ITEMS: Final = 100_000
#: How many threads' metadata tags, and that they exist, the saver remembers.
_TAG_CACHE: Final = 4096
#: Seconds after which the saver checks, before linking to a value stored whole, that
#: the value is still stored (another process's prune or run delete may have removed
#: it): one read of a small checkpoint event, at most once a second per channel.
CONFIRM_AFTER: Final = 1.0
#: No event read already (the default of ``_located``'s ``known``).
_NONE_KNOWN: Final[Mapping[str, Event | None]] = {}


#: A thread's namespaces (``None``: no markers) and its first events, being read.
_Probe = asyncio.Future[tuple[list[str] | None, list[Event]]]


@dataclass(frozen=True, slots=True)
class _Written:
    """A list value this saver stored or read: where, and the items it held (by
    identity)."""

    key: str
    snapshot: str  # the key of the value stored whole it is a link to (its own if whole)
    depth: int  # links on the snapshot up to this one (0: stored whole)
    items: tuple[Any, ...]
    pairs: tuple[Sequence[str], ...]  # the encoded items after the snapshot's
    # the key of a checkpoint whose value this is: while it exists, so does the snapshot
    # (maintenance deletes a value only when no kept checkpoint needs it)
    holder: str | None = None
    confirmed: float = 0.0  # when the snapshot was last known stored (monotonic())

    def extended_by(self, key: str, items: tuple[Any, ...]) -> bool:
        """Whether ``items`` may be stored under ``key`` as a link to this value's
        snapshot: they start with this value's items (the same objects), the link
        stays within :data:`LINKS` and holds no more items than the snapshot, and
        ``key`` is not the snapshot's (a version stored again)."""
        base = len(self.items) - len(self.pairs)
        return (
            self.depth < LINKS
            and len(self.items) <= len(items) <= 2 * base
            and key != self.snapshot
            and all(map(operator.is_, self.items, items))
        )


class SessionStoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that keeps each thread in one sessionstore session.

    ``store`` is any sessionstore store (memory, file, Redis, SQL, a third-party driver
    with the ``event_log`` capability), or a :class:`~sessionstore.sync.SyncSessionStore`.
    The async methods (``aput``, ``aget_tuple``, ...) run on the caller's event loop;
    their sync twins (``put``, ``get_tuple``, ...) run the same code on a loop thread:
    the facade's when given a ``SyncSessionStore``, else one the saver starts on first
    use and stops in :meth:`close`. Calling a sync twin from a thread that runs an event
    loop raises ``BlockingCallError`` (use the async method there).

    The store must declare ``Capabilities.event_log`` (every built-in driver does), else
    :class:`~sessionstore.ConfigurationError`. ``processor_id`` tags the thread sessions
    (listing all threads reads exactly those), and ``processor_id + ".runs"`` the small
    per-run index sessions that let ``delete_for_runs`` find a run's threads.

    ``ttl`` (seconds or a ``timedelta``) makes threads expire that long after their
    last write: each write sets the thread's expiry in the same atomic append (sliding
    expiry); an expired thread reads as missing and the store's cleanup removes it.

    ``list_links``: a channel value that is a plain ``list`` extending the value of the
    same channel this saver last wrote or read for the thread (the same item objects,
    then new ones: what ``add_messages`` and ``operator.add`` produce) is stored as a
    link: the key of the channel's last value stored whole and the items after it, not
    the whole list again; after :data:`LINKS` links the value is stored whole. Items
    are compared by identity, so an item changed in place after it was stored is not
    stored again: pass ``list_links=False`` for graphs that mutate their state's list
    items in place. To compare, the saver holds the items of the lists it last wrote or
    returned from ``aget_tuple``, for at most 256 (thread, namespace, channel) slots and
    100,000 items in all, least recently used dropped first (a dropped slot's next
    value is stored whole). Before linking to a value stored whole that it last knew
    stored over :data:`CONFIRM_AFTER` seconds ago, a put checks that a checkpoint
    needing it still exists (another process's maintenance may have removed it).
    """

    def __init__(
        self,
        store: SessionStore | SyncSessionStore,
        *,
        serde: SerializerProtocol | None = None,
        processor_id: str = "langgraph",
        ttl: TTL | None = None,
        list_links: bool = True,
    ) -> None:
        super().__init__(serde=serde)
        if not getattr(store.capabilities, "event_log", False):
            raise ConfigurationError(
                f"SessionStoreSaver needs a store with the event_log capability "
                f"(keyed events, delete_events); {type(store).__name__} does not declare it"
            )
        if isinstance(store, SyncSessionStore):
            self._store: SessionStore = store.store
            self._loop_thread: LoopThread | None = store.loop_thread
            self._owns_loop_thread = False
        else:
            self._store = store
            self._loop_thread = None
            self._owns_loop_thread = True
        self.processor_id = processor_id
        self.ttl = ttl
        self.runs_processor_id = f"{processor_id}.runs"
        # (thread session id, run id) -> when this saver last wrote that pair to the run's
        # index (monotonic()); written again once half the ttl has passed
        self._indexed_runs: OrderedDict[tuple[str, str], float] = OrderedDict()
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
        self._reindex_after = None if seconds is None else seconds / 2
        self.list_links = list_links
        # (session id, namespace, channel) -> the list value last written there
        self._written: OrderedDict[tuple[str, str, str], _Written] = OrderedDict()
        self._items = 0  # the items self._written holds
        # thread session id -> the metadata tags (metadata_tags) it was last seen with
        self._tags: OrderedDict[str, frozenset[str]] = OrderedDict()
        # thread session ids this saver last saw exist (its appends need not create them)
        self._live: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- opening and closing

    @classmethod
    @asynccontextmanager
    async def from_url(
        cls,
        url: str | None = None,
        *,
        processor_id: str = "langgraph",
        ttl: TTL | None = None,
        **options: Any,
    ) -> AsyncIterator[SessionStoreSaver]:
        """``async with SessionStoreSaver.from_url("redis://...") as saver:`` — a saver
        over a store it opens (``open_store(url, **options)``) and shuts down on exit."""
        async with open_store(url, **options) as store:
            saver = cls(store, processor_id=processor_id, ttl=ttl)
            try:
                yield saver
            finally:
                saver.close()

    @classmethod
    @contextmanager
    def from_url_sync(
        cls,
        url: str | None = None,
        *,
        processor_id: str = "langgraph",
        ttl: TTL | None = None,
        **options: Any,
    ) -> Iterator[SessionStoreSaver]:
        """``with SessionStoreSaver.from_url_sync("file://./threads") as saver:`` — the
        same for sync code, over a :class:`~sessionstore.sync.SyncSessionStore`."""
        with open_sync_store(url, **options) as facade:
            yield cls(facade, processor_id=processor_id, ttl=ttl)

    @property
    def store(self) -> SessionStore:
        """The async store the saver writes to."""
        return self._store

    def close(self) -> None:
        """Stop the loop thread the sync methods started (the store stays open)."""
        if self._owns_loop_thread and self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, R]) -> R:
        if self._loop_thread is None:
            self._loop_thread = LoopThread(name="sessionstore-langgraph")
        return self._loop_thread.call(coro)

    # -- helpers

    def _new_thread(self, thread_id: str, tags: frozenset[str] = frozenset()) -> NewSession:
        return NewSession(
            processor_id=self.processor_id, metadata={"thread_id": thread_id}, tags=tags
        )

    async def _events(self, session_id: str, **query: Any) -> list[Event]:
        try:
            return await self._store.get_events(session_id, **query)
        except SessionNotFoundError:
            return []

    async def _event(self, session_id: str, key: str) -> Event | None:
        try:
            return await self._store.get_event(session_id, key=key)
        except SessionNotFoundError:
            return None

    async def _namespaces(
        self, session_id: str, *, ahead: bool = False
    ) -> tuple[list[str] | None, list[Event]]:
        """The checkpoint namespaces of a thread, from its markers (a thread whose first
        event is a marker has one for every namespace: each ``put`` sends its own);
        else the first :data:`PROBE` events, read at the same time (a thread that short
        is read whole; one written before the markers, whole from there). ``ahead``
        (a read started ahead of its use): the markers are read only after the first
        events, when the thread is longer (one read for a short thread)."""
        if ahead:
            probe = await self._events(session_id, limit=PROBE)
            if len(probe) < PROBE or probe[0].type != NS_TYPE:
                return None, probe
            markers = await self._events(session_id, types=[NS_TYPE])
        else:
            probe, markers = await asyncio.gather(
                self._events(session_id, limit=PROBE), self._events(session_id, types=[NS_TYPE])
            )
        if len(probe) == PROBE and probe[0].type == NS_TYPE:
            return [e.data["ns"] for e in markers], probe
        return None, probe

    async def _all_events(
        self, session_id: str, page: int = 500, after: int = 0
    ) -> AsyncIterator[Event]:
        while True:
            events = await self._events(session_id, after_seq=after, limit=page)
            for event in events:
                yield event
            if len(events) < page:
                return
            after = events[-1].seq

    async def _index_run(self, thread_id: str, session_id: str, run_id: str) -> None:
        """Record in the run's index session that the run wrote to this thread (before
        the write itself, so a crash can only leave an index entry too many). Once per
        pair, and again when half the ttl has passed since (the entry is keyed, so that
        write only refreshes the index session's expiry). Index sessions outlive
        ``delete_for_runs``, so what this saver remembers writing stays true whichever
        process deleted the run since."""
        pair = (session_id, run_id)
        indexed = self._indexed_runs.get(pair)
        if indexed is not None and (
            self._reindex_after is None or monotonic() - indexed < self._reindex_after
        ):
            return
        await self._store.append_events(
            run_index_id(run_id),
            [EventInput(type=RUN_TYPE, key=f"t.{digest(thread_id)}", data={"t": thread_id})],
            create=NewSession(processor_id=self.runs_processor_id, metadata={"run_id": run_id}),
            ttl=self.ttl,
        )
        with self._lock:  # the async and the sync methods may run on two threads
            self._indexed_runs[pair] = monotonic()
            self._indexed_runs.move_to_end(pair)
            if len(self._indexed_runs) > _RUN_CACHE:
                self._indexed_runs.popitem(last=False)

    async def _append(
        self,
        session_id: str,
        thread_id: str,
        events: list[EventInput],
        tags: frozenset[str] = frozenset(),
    ) -> None:
        """Append ``events``, creating the thread's session if needed, and give the
        session ``tags`` (:func:`metadata_tags`) in the same atomic write unless it is
        known to have them. A key stored with other content (a checkpoint id or channel
        version put twice with new content) is replaced, as LangGraph's own savers
        overwrite it."""
        try:
            await self._append_tagged(session_id, thread_id, events, tags)
        except EventKeyConflictError:
            tags = self._capped(session_id, tags)
            # (a namespace marker or a checkpoint's mark is never replaced: the same
            # content each time, and a mark stays before the checkpoint's writes)
            keys = [
                e.key
                for e in events
                if e.key is not None and e.type != NS_TYPE and e.type != MARK_TYPE
            ]
            ops: list[Op] = [
                DeleteEventsOp(session_id, keys=keys),
                AppendOp(session_id, events, ttl=self.ttl),
            ]
            if tags:
                ops.append(UpdateOp(session_id, SessionUpdate(add_tags=tags)))
            session = (await self._store.commit(ops))[-1]
            assert isinstance(session, Session)
            await self._tagged(session, tags)

    async def _append_tagged(
        self,
        session_id: str,
        thread_id: str,
        events: list[EventInput],
        tags: frozenset[str],
    ) -> None:
        """One append of ``events`` (see :meth:`_append`), without replacing a key."""
        tags = self._capped(session_id, tags)
        with self._lock:
            known = self._tags.get(session_id)
        create = self._new_thread(thread_id, tags)
        if tags and (known is None or not tags <= known):
            # the session's tags cover every checkpoint's: added with the checkpoint
            done = await self._store.commit(
                [
                    AppendOp(session_id, events, create=create, ttl=self.ttl),
                    UpdateOp(session_id, SessionUpdate(add_tags=tags)),
                ]
            )
            session = done[-1]
            assert isinstance(session, Session)
        elif self._exists(session_id):
            # (an append that may create costs the store more: ~9 % on PostgreSQL)
            try:
                session = await self._store.append_events(session_id, events, ttl=self.ttl)
            except SessionNotFoundError:  # deleted meanwhile (expired, another process)
                session = await self._store.append_events(
                    session_id, events, create=create, ttl=self.ttl
                )
        else:
            session = await self._store.append_events(
                session_id, events, create=create, ttl=self.ttl
            )
        self._exists(session_id, True)
        await self._tagged(session, tags)

    def _capped(self, session_id: str, tags: frozenset[str]) -> frozenset[str]:
        """The metadata tags a write to ``session_id`` adds: ``tags``, or, once the
        thread's would pass :data:`MAX_THREAD_TAGS`, those it has and :data:`CAPPED_TAG`
        instead of new ones (a listing filtered on any value reads a capped thread)."""
        if not tags:
            return tags
        with self._lock:
            known = self._tags.get(session_id)
        if known is None:  # (not known yet: one put's tags at the most)
            return tags if len(tags) <= MAX_THREAD_TAGS else frozenset({CAPPED_TAG})
        if tags <= known:
            return tags
        if CAPPED_TAG in known or len(known | tags) > MAX_THREAD_TAGS:
            return (tags & known) | {CAPPED_TAG}
        return tags

    def _exists(self, session_id: str, seen: bool = False) -> bool:
        """Whether this saver last saw the thread session ``session_id`` exist; with
        ``seen``, note that it does (a write to it just succeeded)."""
        with self._lock:
            if seen:
                self._live[session_id] = None
                self._live.move_to_end(session_id)
                if len(self._live) > _TAG_CACHE:
                    self._live.popitem(last=False)
            return session_id in self._live

    async def _tagged(self, session: Session, tags: frozenset[str]) -> None:
        """Note the metadata tags ``session`` has after a write that needed ``tags``;
        add those it lacks (it was deleted and made again by another process since this
        saver last saw it)."""
        if not tags:
            return
        if missing := tags - session.tags:
            session = await self._store.update_session(session.id, add_tags=missing)
        mine = frozenset(t for t in session.tags if t.startswith(TAG_PREFIX))
        with self._lock:
            self._tags[session.id] = mine
            self._tags.move_to_end(session.id)
            if len(self._tags) > _TAG_CACHE:
                self._tags.popitem(last=False)

    def _wanted(
        self, record: CheckpointRecord, versions: Mapping[str, str | int | float]
    ) -> list[tuple[str, str]]:
        """The channels whose values ``record``'s tuple reads: (channel, key)."""
        # A version this very step wrote without a value (a delta channel's sentinel) has
        # no event to look for.
        # A small value is in the checkpoint itself (``inline``).
        return [
            (ch, blob_key(record.ns, ch, version))
            for ch, version in versions.items()
            if (ch in record.stored or record.new_versions.get(ch) != version)
            and ch not in record.inline
        ]

    async def _near(
        self, session_id: str, records: Sequence[CheckpointRecord]
    ) -> dict[str, Event | None]:
        """The keyed events just before each of ``records`` (where its step's values
        are), by key: a read per run of records at most :data:`GAP` events apart (one for
        a page of consecutive checkpoints), run concurrently."""
        spans = sorted(_span(r) for r in records if r.evented)
        merged: list[list[int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + GAP:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        if len(merged) == 1:
            low, high = merged[0]
            pages = [await self._events(session_id, after_seq=low - 1, before_seq=high)]
        else:
            pages = await asyncio.gather(
                *(
                    self._events(session_id, after_seq=low - 1, before_seq=high)
                    for low, high in merged
                )
            )
        return {e.key: e for page in pages for e in page if e.key is not None}

    async def _values(
        self,
        session_id: str,
        ns: str,
        wanted: Sequence[tuple[str, str]],
        known: Mapping[str, Event | None],
        *,
        remember: bool = False,
        holder: str | None = None,
    ) -> dict[str, Any]:
        """The values of the ``wanted`` channels (their events read already when in
        ``known``); with ``remember``, the plain lists among them are noted as the
        channels' last values, so a next step that extends one links to it (held by
        ``holder``, the key of the checkpoint they are read for)."""
        if all(_whole_in(known, key) for _, key in wanted):  # no read left: no tasks
            found = [await self._located(session_id, key, known) for _, key in wanted]
        else:
            found = await asyncio.gather(
                *(self._located(session_id, key, known) for _, key in wanted)
            )
        if remember and self.list_links:
            # read just now, whole or through its link: stored while the checkpoint read
            # (which needs it) exists
            now = monotonic()
            self._note(
                {
                    (session_id, ns, ch): replace(written, holder=holder, confirmed=now)
                    for (ch, _), (_, written) in zip(wanted, found, strict=True)
                    if written is not None
                }
            )
        return {
            ch: value
            for (ch, _), (value, _) in zip(wanted, found, strict=True)
            if value is not MISSING
        }

    async def _value(self, session_id: str, key: str) -> Any:
        """The channel value stored under ``key`` (over several events if it was
        split, or as a link), or ``MISSING``."""
        return (await self._located(session_id, key))[0]

    async def _located(
        self,
        session_id: str,
        key: str,
        known: Mapping[str, Event | None] = _NONE_KNOWN,
        *,
        whole: bool = False,
    ) -> tuple[Any, _Written | None]:
        """The channel value stored under ``key`` (or ``MISSING``; also for a link when
        ``whole`` asks for a value stored whole) and, when it is a plain list, how.
        Events in ``known`` (by key, ``None``: none stored) are not read again."""
        event = known[key] if key in known else await self._event(session_id, key)
        if event is None or (whole and event.type == LINK_TYPE):
            return MISSING, None
        data = event.data
        if event.type == LINK_TYPE:  # the items after its snapshot's: read that one
            base, _ = await self._located(session_id, data["s"], known, whole=True)
            value = link_value(self.serde, data, base)
            if value is MISSING:
                return MISSING, None
            return value, _Written(key, data["s"], data["d"], tuple(value), tuple(data["x"]))
        raw = data["b"]
        if "n" in data:
            parts = [f"{key}.{i}" for i in range(1, data["n"])]
            rest = await asyncio.gather(
                *(
                    _ready(known[part]) if part in known else self._event(session_id, part)
                    for part in parts
                )
            )
            if any(part is None for part in rest):  # deleted meanwhile
                return MISSING, None
            raw = "".join([raw, *(part.data["b"] for part in rest if part is not None)])
        value = blob_value(self.serde, data, raw)
        if type(value) is not list:
            return value, None
        return value, _Written(key, key, 0, tuple(value), ())

    async def _writes(self, session_id: str, ns: str, checkpoint_id: str) -> list[Any]:
        events = await self._events(session_id, types=[writes_type(ns, checkpoint_id)])
        return pending_writes(self.serde, events)

    async def _writes_many(
        self, session_id: str, records: Sequence[CheckpointRecord]
    ) -> list[list[PendingWrite]]:
        """The pending writes of each of ``records``: one read per :data:`TYPES_PER_READ`
        checkpoints (each checkpoint's writes have a type, a read takes a set of types)."""
        kinds = [writes_type(r.ns, r.id) for r in records]
        events: list[Event] = []
        for i in range(0, len(kinds), TYPES_PER_READ):
            events += await self._events(session_id, types=kinds[i : i + TYPES_PER_READ])
        by_kind: dict[str, list[Event]] = {}
        for event in events:
            by_kind.setdefault(event.type, []).append(event)
        return [pending_writes(self.serde, by_kind.get(kind, ())) for kind in kinds]

    async def _tuple(
        self, thread_id: str, record: CheckpointRecord, *, remember: bool = False
    ) -> CheckpointTuple:
        return (await self._tuples(thread_id, [record], remember=remember))[0]

    async def _tuples(
        self,
        thread_id: str,
        records: Sequence[CheckpointRecord],
        *,
        remember: bool = False,
        tail: Sequence[Event] = (),
        whole: bool = False,
    ) -> list[CheckpointTuple]:
        """The tuples of ``records``: their writes in one read; concurrently the values
        each step stored with its checkpoint (the events just before it, a read per run
        of nearby records: :meth:`_near`) and by key those stored at earlier steps.

        ``tail``: the thread's last events, read already (the one record is among
        them). What it holds is not read again: the values just before the checkpoint
        when it reaches back to them, and the writes when it holds the checkpoint's
        mark (each of its writes comes after the mark). ``whole``: ``tail`` is every
        event of the thread, so nothing is read."""
        session_id = thread_session_id(thread_id)
        checkpoints = [r.checkpoint(self.serde) for r in records]
        wanted = [
            self._wanted(r, cp["channel_versions"])
            for r, cp in zip(records, checkpoints, strict=True)
        ]
        # the values stored with these checkpoints: those they read at their own step,
        # and those a later one of them reads at an unchanged version
        near = {
            blob_key(r.ns, ch, r.new_versions[ch])
            for r in records
            for ch in r.evented
            if ch in r.new_versions
        }
        # a version one of them wrote without a value (a delta channel's sentinel, a
        # channel left empty) has no event: versions are unique (get_next_version)
        # (or one of the checkpoints in the tail)
        seen = [*records, *(CheckpointRecord.of(e) for e in tail if e.type.startswith("lg.cp."))]
        absent = {
            blob_key(r.ns, ch, version)
            for r in seen
            for ch, version in r.new_versions.items()
            if ch not in r.stored and _unique(version)
        }
        had: dict[str, Event | None] = {e.key: e for e in tail if e.key is not None}
        far = list(
            {
                key
                for w in wanted
                for _, key in w
                if key not in near and key not in absent and key not in had
            }
        )
        first = records[0]
        read_writes: Awaitable[list[list[PendingWrite]] | None] | None
        if whole:
            # not in the thread: not stored
            had.update((key, None) for w in wanted for _, key in w if key not in had)
            far = []
            read_writes = None
            by_kind: dict[str, list[Event]] = {}
            for event in tail:
                by_kind.setdefault(event.type, []).append(event)
            writes = [
                pending_writes(self.serde, by_kind.get(writes_type(r.ns, r.id), ()))
                for r in records
            ]
        elif len(records) > 1:
            read_writes = self._writes_many(session_id, records)
        elif mark_key(first.ns, first.id) in had:
            read_writes = None
            kind = writes_type(first.ns, first.id)
            writes = [pending_writes(self.serde, (e for e in tail if e.type == kind))]
        else:
            read_writes = _listed(self._writes(session_id, first.ns, first.id))
        read_near = (
            None
            if whole
            or not any(r.evented for r in records)
            or (tail and tail[0].seq <= _span(first)[0])
            else self._near
        )
        if read_writes is None and read_near is None and not far:
            known = had  # all in the tail: no other read
        else:
            found_writes, known, far_events = await asyncio.gather(
                read_writes if read_writes is not None else _nothing(),
                read_near(session_id, records) if read_near else _ready({}),
                asyncio.gather(*(self._event(session_id, key) for key in far)),
            )
            if found_writes is not None:
                writes = found_writes
            known = {**had, **known}
            known.update(zip(far, far_events, strict=True))
        known.update((key, None) for key in absent - near)
        if all(_whole_in(known, key) for w in wanted for _, key in w):
            values = [
                await self._values(
                    session_id, r.ns, w, known, remember=remember, holder=checkpoint_key(r.ns, r.id)
                )
                for r, w in zip(records, wanted, strict=True)
            ]
        else:
            values = await asyncio.gather(
                *(
                    self._values(
                        session_id,
                        r.ns,
                        w,
                        known,
                        remember=remember,
                        holder=checkpoint_key(r.ns, r.id),
                    )
                    for r, w in zip(records, wanted, strict=True)
                )
            )
        for r, cp, v in zip(records, checkpoints, values, strict=True):
            if r.inline:  # the small values, carried in the checkpoint
                versions = cp["channel_versions"]
                v.update(
                    (ch, decode(self.serde, pair))
                    for ch, pair in r.inline.items()
                    if ch in versions
                )
        return [
            CheckpointTuple(
                config=_config(thread_id, r.ns, r.id),
                checkpoint={**cp, "channel_values": v},  # type: ignore[typeddict-item]
                metadata=r.metadata(self.serde),  # type: ignore[arg-type]
                parent_config=_config(thread_id, r.ns, r.parent) if r.parent else None,
                pending_writes=w,
            )
            for r, cp, v, w in zip(records, checkpoints, values, writes, strict=True)
        ]

    async def _record(
        self, session_id: str, ns: str, checkpoint_id: str | None
    ) -> CheckpointRecord | None:
        if checkpoint_id:
            event = await self._event(session_id, checkpoint_key(ns, checkpoint_id))
        else:
            newest = await self._events(session_id, types=[checkpoint_type(ns)], last=1)
            event = newest[0] if newest else None
        return CheckpointRecord.of(event) if event is not None else None

    # -- the async interface

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (``checkpoint_id``), else the thread's newest in
        the namespace, with its channel values and pending writes; ``None`` if missing."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        session_id = thread_session_id(thread_id)
        checkpoint_id = get_checkpoint_id(config)
        tail: list[Event] = []
        if checkpoint_id:
            record = await self._record(session_id, ns, checkpoint_id)
        else:
            # the newest: usually in the thread's last events, with its values and writes
            tail = await self._events(session_id, last=TAIL)
            kind = checkpoint_type(ns)
            newest = next((e for e in reversed(tail) if e.type == kind), None)
            if newest is not None:
                record = CheckpointRecord.of(newest)
            elif len(tail) < TAIL:  # the whole thread: no checkpoint in the namespace
                return None
            else:
                tail = []
                record = await self._record(session_id, ns, None)
        if record is None:
            return None
        # the graph's next step extends what it reads here: remember its lists
        return (await self._tuples(thread_id, [record], remember=True, tail=tail))[0]

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first: of one thread (``config``; one namespace when it names
        ``checkpoint_ns``), or of every thread, most recently written threads first.
        ``filter`` matches metadata keys by equality, ``before`` keeps checkpoints whose
        id is smaller than its ``checkpoint_id``."""
        if limit is not None and limit <= 0:
            return
        before_id = get_checkpoint_id(before) if before else None
        remaining = limit
        if config is not None:
            threads: AsyncGenerator[tuple[str, _Probe | None], None] = _one(
                str(config["configurable"]["thread_id"])
            )
            ns = config["configurable"].get("checkpoint_ns")
            only_id = get_checkpoint_id(config)
        else:
            # only threads tagged with the filter's values (a tag for each value some
            # checkpoint of the thread has): the session index finds them
            tags = [metadata_tag(k, v) for k, v in (filter or {}).items() if k not in UNINDEXED]
            threads = self._probed(self._threads(frozenset(t for t in tags if t)))
            ns = None
            only_id = None
        async with aclosing(threads):
            async for thread_id, probe in threads:
                batch: list[CheckpointRecord] = []
                # without a filter, the first page need hold no more than the limit
                first = min(PAGE, remaining) if remaining is not None and not filter else PAGE
                records = self._records(thread_id, ns, before_id, only_id, first, probe)
                # a thread its first read held whole (a short one): nothing else to read
                thread: list[Event] = []
                if probe is not None:
                    _, events = await probe
                    thread = events if len(events) < PROBE else []
                while True:  # a page of records at a time: their writes in one read
                    record = await anext(records, None)
                    if record is not None:
                        if filter:
                            metadata = record.metadata(self.serde)
                            if not all(metadata.get(k) == v for k, v in filter.items()):
                                continue
                        batch.append(record)
                        if len(batch) < min(PAGE, remaining or PAGE):
                            continue
                    if batch:
                        tuples = await self._tuples(
                            thread_id, batch, tail=thread, whole=bool(thread)
                        )
                        for tup in tuples:
                            yield tup
                            if remaining is not None:
                                remaining -= 1
                                if remaining == 0:
                                    await records.aclose()
                                    return
                        batch = []
                    if record is None:
                        break

    async def _probed(
        self, threads: AsyncIterator[str]
    ) -> AsyncGenerator[tuple[str, _Probe | None], None]:
        """``threads``, each with the first read of its listing (:meth:`_namespaces`)
        started ahead: two threads' reads at first, one more for every 4 threads taken,
        up to :data:`LOOKAHEAD` (a listing whose ``limit`` the first threads fill reads
        one other)."""
        ahead: deque[tuple[str, _Probe]] = deque()
        window, taken = 2, 0
        try:
            async for thread_id in threads:
                task = asyncio.ensure_future(
                    self._namespaces(thread_session_id(thread_id), ahead=True)
                )
                ahead.append((thread_id, task))
                if len(ahead) >= window:
                    taken += 1
                    window = min(LOOKAHEAD, 2 + taken // 4)
                    yield ahead.popleft()
            while ahead:
                yield ahead.popleft()
        finally:
            # the reads left are let finish, not cancelled: a driver may close the
            # connection of a cancelled query (PostgreSQL's does), which the next call
            # then opens again
            if ahead:
                await asyncio.gather(*(started for _, started in ahead), return_exceptions=True)

    async def _threads(self, tags: frozenset[str] = frozenset()) -> AsyncIterator[str]:
        """Thread ids, most recently written first: every thread, or those tagged with
        every one of ``tags`` and those whose tags were capped (:meth:`_capped`)."""
        if not tags:
            async for session in self._sessions(None):
                yield _thread_of(session)
            return
        seen: set[str] = set()  # (a thread in both listings, or moved between pages)
        async with (
            aclosing(self._sessions(tags)) as tagged,
            aclosing(self._sessions(frozenset({CAPPED_TAG}))) as capped,
        ):
            async for session in _newest_of(tagged, capped):
                if session.id not in seen:
                    seen.add(session.id)
                    yield _thread_of(session)

    async def _sessions(self, tags: frozenset[str] | None) -> AsyncGenerator[Session, None]:
        """The saver's thread sessions with every one of ``tags``, newest first."""
        cursor: str | None = None
        flt = SessionFilter(processor_id=self.processor_id, tags_all=tags or None)
        while True:
            page = await self._store.list_sessions(
                flt, QueryOptions(sort_by="updated_at", order="desc", limit=100, cursor=cursor)
            )
            for session in page.items:
                yield session
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _records(
        self,
        thread_id: str,
        ns: str | None,
        before_id: str | None,
        only_id: str | None,
        first: int = PAGE,
        probe: _Probe | None = None,
    ) -> AsyncGenerator[CheckpointRecord, None]:
        """The checkpoint records of a thread, newest id first (of one namespace: read
        backwards a page at a time, ``first`` in the first page)."""
        session_id = thread_session_id(thread_id)
        if ns is not None and only_id is not None:
            record = await self._record(session_id, ns, only_id)
            if record is not None and (before_id is None or record.id < before_id):
                yield record
            return
        if ns is None:
            namespaces, events = await (probe or self._namespaces(session_id))
            if namespaces is not None:  # the thread's namespaces, merged by id
                async for record in _newest_first(
                    [self._records(thread_id, n, before_id, only_id, first) for n in namespaces]
                ):
                    yield record
                return
            # a short thread, or one without markers: one pass, newest id first
            records = [CheckpointRecord.of(e) for e in events if e.type.startswith("lg.cp.")]
            if len(events) == PROBE:
                records += [
                    CheckpointRecord.of(e)
                    async for e in self._all_events(session_id, after=events[-1].seq)
                    if e.type.startswith("lg.cp.")
                ]
            records.sort(key=lambda r: r.id, reverse=True)
            for record in records:
                if only_id is not None and record.id != only_id:
                    continue
                if before_id is None or record.id < before_id:
                    yield record
            return
        kind = checkpoint_type(ns)
        before_seq: int | None = None
        if before_id is not None:
            start = await self._event(session_id, checkpoint_key(ns, before_id))
            before_seq = start.seq if start is not None else None
        while True:
            page = await self._events(session_id, types=[kind], before_seq=before_seq, last=first)
            for event in reversed(page):
                record = CheckpointRecord.of(event)
                if before_id is None or record.id < before_id:
                    yield record
            if len(page) < first:
                return
            before_seq = page[0].seq
            first = PAGE

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Append the channel values in ``new_versions`` and the checkpoint, in one atomic
        append to the thread's session (created on the first put)."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        session_id = thread_session_id(thread_id)
        saved: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = saved.pop("channel_values")
        full_metadata = get_checkpoint_metadata(config, metadata)
        # the namespace's marker first (stored once: the same content each time)
        events = [EventInput(type=NS_TYPE, key=namespace_key(ns), data={"ns": ns})]
        stored: list[str] = []
        written: dict[tuple[str, str, str], _Written] = {}
        holder = checkpoint_key(ns, checkpoint["id"])
        if self.list_links:
            await self._confirm(session_id, ns, values, new_versions)
        inline = inline_pairs(self.serde, values)
        for channel, version in new_versions.items():
            if channel in values:
                if channel not in inline:
                    slot = (session_id, ns, channel)
                    key = blob_key(ns, channel, version)
                    events += self._value_events(slot, key, values[channel], written, holder)
                stored.append(channel)
        events.append(_mark(ns, checkpoint["id"]))
        events.append(
            EventInput(
                type=checkpoint_type(ns),
                key=holder,
                data=checkpoint_data(
                    self.serde,
                    ns=ns,
                    checkpoint=saved,
                    parent=configurable.get("checkpoint_id"),
                    metadata=full_metadata,
                    new_versions=new_versions,
                    stored=stored,
                    inline=inline,
                ),
            )
        )
        run_id = full_metadata.get("run_id")
        if isinstance(run_id, str) and run_id:
            await self._index_run(thread_id, session_id, run_id)
        try:
            await self._append(session_id, thread_id, events, metadata_tags(full_metadata))
        except BaseException:
            self._forget(session_id)  # stored or not: link nothing to it
            raise
        self._note(written)
        return _config(thread_id, ns, checkpoint["id"])

    async def _confirm(
        self,
        session_id: str,
        ns: str,
        values: Mapping[str, Any],
        new_versions: ChannelVersions,
    ) -> None:
        """Before a put links lists to values stored whole that this saver last knew
        stored more than :data:`CONFIRM_AFTER` seconds ago, check that each still is
        (its holder checkpoint still exists): another process's ``prune`` or
        ``delete_for_runs`` may have removed it since. A channel whose value is gone is
        forgotten, so this put stores it whole instead of linking to nothing."""
        now = monotonic()
        stale: list[tuple[tuple[str, str, str], _Written]] = []
        with self._lock:
            for channel in new_versions:
                slot = (session_id, ns, channel)
                last = self._written.get(slot)
                if (
                    last is not None
                    and now - last.confirmed > CONFIRM_AFTER
                    and type(values.get(channel)) is list
                ):
                    stale.append((slot, last))
        if not stale:
            return
        holders = list(dict.fromkeys(last.holder for _, last in stale if last.holder))
        found = await asyncio.gather(*(self._event(session_id, h) for h in holders))
        alive = {h for h, event in zip(holders, found, strict=True) if event is not None}
        with self._lock:
            for slot, last in stale:
                if self._written.get(slot) is not last:
                    continue  # replaced meanwhile (a concurrent put or read)
                if last.holder in alive:
                    self._written[slot] = replace(last, confirmed=now)
                else:
                    del self._written[slot]
                    self._items -= len(last.items)

    def _value_events(
        self,
        slot: tuple[str, str, str],
        key: str,
        value: Any,
        written: dict[tuple[str, str, str], _Written],
        holder: str,
    ) -> list[EventInput]:
        """The events storing ``value`` under ``key``: a link to the list last written
        for ``slot`` when ``value`` extends it (its items, by identity, then new ones),
        else the whole value. What a list becomes is noted in ``written``, held by the
        checkpoint ``holder`` (the one being put)."""
        if not self.list_links or type(value) is not list:
            return blob_events(self.serde, key, value)
        with self._lock:
            last = self._written.get(slot)
        items = tuple(value)
        if last is not None and last.extended_by(key, items):
            pairs = last.pairs + tuple(
                encode(self.serde, item) for item in items[len(last.items) :]
            )
            written[slot] = _Written(
                key, last.snapshot, last.depth + 1, items, pairs, holder, last.confirmed
            )
            return [
                link_event(
                    key,
                    snapshot=last.snapshot,
                    depth=last.depth + 1,
                    pairs=pairs,
                    length=len(items),
                )
            ]
        written[slot] = _Written(key, key, 0, items, (), holder, monotonic())
        return blob_events(self.serde, key, value)

    def _note(self, written: Mapping[tuple[str, str, str], _Written]) -> None:
        """Remember ``written`` as the last list values of their slots."""
        with self._lock:
            for slot, entry in written.items():
                old = self._written.pop(slot, None)
                self._items += len(entry.items) - (len(old.items) if old else 0)
                self._written[slot] = entry
            while len(self._written) > _LIST_CACHE or self._items > _LIST_ITEMS:
                self._items -= len(self._written.popitem(last=False)[1].items)

    def _forget(self, session_id: str) -> None:
        """Link no new value to what this saver wrote to the session (it was deleted,
        pruned, copied over, or a write's outcome is unknown)."""
        with self._lock:
            for slot in [slot for slot in self._written if slot[0] == session_id]:
                self._items -= len(self._written.pop(slot).items)
            self._tags.pop(session_id, None)
            self._live.pop(session_id, None)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Append one event holding the writes, keyed by their content: the same call
        delivered twice is stored once."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = configurable["checkpoint_id"]
        rows = write_rows(self.serde, writes)
        event = EventInput(
            type=writes_type(ns, checkpoint_id),
            key=writes_key(ns, checkpoint_id, task_id, writes_digest(task_path, rows)),
            data={"cid": checkpoint_id, "task": task_id, "path": task_path, "w": rows},
        )
        # the checkpoint's mark first (stored once, by its put or the first writes)
        await self._append(
            thread_session_id(thread_id), thread_id, [_mark(ns, checkpoint_id), event]
        )

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the thread's session: every checkpoint, value and write of it."""
        session_id = thread_session_id(str(thread_id))
        self._forget(session_id)
        await self._store.delete_session(session_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete every checkpoint the runs wrote, in every thread and namespace, with
        its pending writes and the channel values no remaining checkpoint uses."""
        await _maintenance.delete_for_runs(self, [str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another (the whole
        parent chain, so delta channels rebuild on the copy)."""
        await _maintenance.copy_thread(self, str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (and, for a delta
        channel, its ancestors back to the nearest stored value); ``"delete"``: delete
        the threads."""
        await _maintenance.prune(self, thread_ids, strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The writes of ``channels`` along the parent chain of the checkpoint, back to the
        nearest ancestor holding each channel's value (its ``seed``), read natively: the
        chain from checkpoint events fetched a page at a time, then the writes and seeds
        it needs, concurrently."""
        return await _history.delta_channel_history(self, config, channels)

    # -- the sync twins

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking :meth:`aget_tuple`."""
        return self._call(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking :meth:`alist` (the tuples are read before the first is returned)."""

        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        return iter(self._call(collect()))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking :meth:`aput`."""
        return self._call(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking :meth:`aput_writes`."""
        self._call(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Blocking :meth:`adelete_thread`."""
        self._call(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking :meth:`adelete_for_runs`."""
        self._call(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking :meth:`acopy_thread`."""
        self._call(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking :meth:`aprune`."""
        self._call(self.aprune(thread_ids, strategy=strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Blocking :meth:`aget_delta_channel_history`."""
        return self._call(self.aget_delta_channel_history(config=config, channels=channels))

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """The next channel version: a zero-padded counter and a random fraction, as
        LangGraph's own savers make them, so versions sort and two forks that step
        the same channel from the same version still get distinct versions."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"


async def _newest_first(
    streams: Sequence[AsyncGenerator[CheckpointRecord, None]],
) -> AsyncIterator[CheckpointRecord]:
    """The records of ``streams`` (each newest id first) merged, newest id first; the
    first of each read concurrently."""
    try:
        heads = list(await asyncio.gather(*(anext(s, None) for s in streams)))
        while True:
            live = [i for i, head in enumerate(heads) if head is not None]
            if not live:
                return
            i = max(live, key=lambda j: heads[j].id)  # type: ignore[union-attr]
            record = heads[i]
            assert record is not None
            yield record
            heads[i] = await anext(streams[i], None)
    finally:
        for stream in streams:
            await stream.aclose()


def _mark(ns: str, checkpoint_id: str) -> EventInput:
    """The mark of a checkpoint (:data:`~sessionstore_langgraph._ids.MARK_TYPE`)."""
    return EventInput(type=MARK_TYPE, key=mark_key(ns, checkpoint_id), data={})


def _span(record: CheckpointRecord) -> tuple[int, int]:
    """The seqs of the events a put appended with ``record``'s checkpoint that a read of
    it may need: its values (then its mark) just before it."""
    return max(1, record.event.seq - len(record.evented) - 1), record.event.seq


def _whole_in(known: Mapping[str, Event | None], key: str) -> bool:
    """Whether the value under ``key`` is read from ``known`` alone (its event, and a
    link's snapshot, are there; not split over several events)."""
    if key not in known:
        return False
    event = known[key]
    if event is None:
        return True
    if event.type == LINK_TYPE:
        return _whole_in(known, event.data["s"])
    return "n" not in event.data


def _unique(version: object) -> bool:
    """Whether ``version`` is one :meth:`SessionStoreSaver.get_next_version` made (a
    counter and a random fraction: no other write of the channel has it)."""
    return isinstance(version, str) and len(version) > 35 and version[32:35] == ".0."


async def _ready(value: R) -> R:
    return value


async def _newest_of(
    a: AsyncIterator[Session], b: AsyncIterator[Session]
) -> AsyncGenerator[Session, None]:
    """The sessions of two newest-first listings, merged newest first."""
    x, y = await anext(a, None), await anext(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x.updated_at >= y.updated_at):
            assert x is not None
            yield x
            x = await anext(a, None)
        else:
            yield y
            y = await anext(b, None)


async def _nothing() -> None:
    return None


async def _listed(value: Awaitable[R]) -> list[R]:
    """``[await value]``: one checkpoint's writes in the shape of several's."""
    return [await value]


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _thread_of(session: Session) -> str:
    thread_id = session.metadata.get("thread_id")
    return thread_id if isinstance(thread_id, str) else session.id


async def _one(thread_id: str) -> AsyncGenerator[tuple[str, _Probe | None], None]:
    yield thread_id, None
