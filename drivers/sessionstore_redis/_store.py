"""RedisStore: sessions in Redis (single server, Sentinel or Cluster), one round trip per
operation. The layout is in ``_keys.py``, the scripts in ``lua/``, the query planner in
``_query.py``; ``docs/redis.md`` describes all of it for users."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, Final, Unpack, cast
from urllib.parse import SplitResult

from redis.crc import key_slot

from sessionstore import (
    UNSET,
    AppendOp,
    AppendResult,
    BaseSessionStore,
    Capabilities,
    Checkpoint,
    ConfigurationError,
    DeleteEventsOp,
    Event,
    EventInput,
    IntegrityError,
    InvalidArgumentError,
    MergeStrategy,
    Mutation,
    NewSession,
    NewSessionFields,
    OutcomeUnknownError,
    Page,
    PoppedEvents,
    PutResult,
    QueryOptions,
    Session,
    SessionChanges,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    SessionUpdate,
    StoreUnavailableError,
    UnsupportedFormatError,
    UpdateOp,
)
from sessionstore.clock import to_ms
from sessionstore.driver import CREATE_OP, check_new_fields, prepare_new
from sessionstore.model import TTL, Unset
from sessionstore.planning import (
    Prepared,
    check_expected_version,
    check_strategy,
    new_session,
    prepare,
)
from sessionstore.query import normalize_search_text
from sessionstore.validation import (
    validate_event_key,
    validate_positive_int,
    validate_session_id,
    validate_ttl,
)

from ._appends import Appends
from ._blocking_reads import RedisBlockingReads
from ._cache import DocCache
from ._commits import Commits
from ._conn import Backend
from ._encoding import (
    Doc,
    decode_checkpoint,
    decode_doc,
    decode_full,
    decode_listed,
    documents,
    documents_or_failure,
    record_of,
)
from ._eventlog import EventLog, Steps
from ._indexer import IndexQueue
from ._keys import Keys, Loc
from ._lane import pack_get
from ._options import RedisOptions, options_from_url
from ._put_records import RecordWriter
from ._query import Queries
from ._scripts import READ
from ._secret import HIDDEN, Credentials
from ._write_call import Moved, Unclaimed
from ._writes import Reply, Writes

__all__ = ["RedisStore"]

log = logging.getLogger("sessionstore.redis")


#: ``_fetch_steps``'s passes (a stub followed, a stale group dropped: at most three reads)
_PASSES: Final = (1, 2, 3)
#: the groups tried for each place on the first pass: none but its own (``None``)
_FIRST_PASS: Final = itertools.repeat(None)


class RedisStore(BaseSessionStore):
    """Sessions in Redis. ``open_store("redis://host:6379/0")`` (see ``docs/redis.md``).

    The store reads and runs the single-session writes itself; it holds the write path
    (``Writes`` in ``_writes.py``: calls, retries, stubs, the generic ``_apply``), the
    record writer (``put_records``) and the queries as collaborators."""

    Options = RedisOptions
    CAPABILITIES = Capabilities(
        any_event_loop=True,
        atomic_multi_session=True,
        shared_namespace=True,
        cross_process=True,
        durable=False,
        native_ttl=True,
        indexed_query=True,
        event_log=True,
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        given = cast(RedisOptions, self.options)
        # the passwords go to redis-py as credential providers and nowhere else: the
        # options keep "***" (see _secret.py)
        main = None if given.password is None else Credentials(given.username, given.password)
        sentinel = (
            None
            if given.sentinel_password is None
            else Credentials(given.sentinel_username, given.sentinel_password)
        )
        self._redis_options = replace(
            given,
            password=None if main is None else HIDDEN,
            sentinel_password=None if sentinel is None else HIDDEN,
        )
        self.options = self._redis_options
        self._cluster = self._redis_options.mode == "cluster"
        self._backend = Backend(self._redis_options, main, sentinel)
        self._blocking: RedisBlockingReads | None = None
        opts = self._redis_options
        self._keys = Keys(opts.key_prefix, self.namespace, opts.shards)
        keys = self._keys
        self._backend.make_index = lambda here: IndexQueue(self._backend, keys, here)
        self._cache = DocCache()
        self._grace_ms = int(self._redis_options.expiry_grace * 1000)
        self._writes = writes = Writes(
            self._backend,
            keys,
            self.clock,
            self._limits,
            self._cache,
            cluster=self._cluster,
            grace_ms=self._grace_ms,
            wait_replicas=bool(self._redis_options.wait_replicas),
            index=self._here_index,
            on_conflict=self._notify_conflict,
        )
        self._groups = writes.groups
        self._records = RecordWriter(
            writes, load=self._load, put_record=self._put_record, after_write=self._after_write
        )
        self._queries = Queries(
            writes,
            fetch=self._fetch,
            fetch_rows=self._fetch_rows,
            iter_sessions=self._iter_sessions,
            index=self._here_index,
        )
        self._log = EventLog(writes, self._written, self._session_of)
        self._appends = Appends(
            writes,
            self._cache,
            self._limits,
            cluster=self._cluster,
            grace_ms=self._grace_ms,
            session_of=self._session_of,
            written=self._written,
            notify=self._notify,
            generic=lambda op: BaseSessionStore.append_events_detailed(
                self,
                op.session_id,
                op.events,
                expected_version=op.expected_version,
                create=op.create,
                ttl=op.ttl,
                expires_at=op.expires_at,
            ),
        )
        self._commits = Commits(
            writes,
            self._cache,
            self._limits,
            fetch=lambda ids: self._fetch(ids, strict=True),
            notify=self._notify,
        )
        self._caps = (
            replace(self.CAPABILITIES, atomic_multi_session=False)
            if self._cluster
            else self.CAPABILITIES
        )

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        return options_from_url(parts)

    @property
    def capabilities(self) -> Capabilities:
        """On Cluster a batch is atomic only within one slot: ``atomic_multi_session`` is
        false (a batch over several slots raises :class:`~sessionstore.errors.TransactionError`)."""
        return self._caps

    @property
    def client(self) -> Any:
        """The underlying redis-py client (``redis.asyncio.Redis`` or ``RedisCluster``) of
        the calling event loop: each loop that uses the store has its own (see
        ``docs/redis.md``, *Event loops*); ``None`` outside a running loop."""
        return self._backend.client

    def key_names(self, session_id: str, group: str | None = None) -> dict[str, str]:
        """The Redis keys of a session (for operators; see ``docs/redis.md``)."""
        loc = self._keys.loc(validate_session_id(session_id), group)
        return {
            "doc": loc.doc,
            "events": loc.events,
            "ckpt": loc.ckpt,
            "etypes": loc.etypes,
            "ekeys": loc.ekeys,
        }

    @property
    def key_layout(self) -> int:
        """The key layout of this store's namespace (``docs/redis.md``, *Key layout*): 3
        on one server and Sentinel, and on Cluster for a namespace that held data before
        layout 4; 4 on Cluster for a namespace created since (each session's keys in its
        index shard's slot). Known once the store is open."""
        return self._keys.layout

    async def _initialize(self) -> None:
        await self._backend.open()
        if self._cluster:
            self._keys.use_layout(await self._cluster_layout())
            self._writes.use_layout()

    async def _cluster_layout(self) -> int:
        """The namespace's key layout on Cluster, from its marker ``P{~0}:layout``
        (``"<layout>:<index shards>"``). A namespace without one is given one, once (``SET
        NX``: concurrent openers agree): 3 if any index shard holds an entry (data
        written before layout 4 existed: it stays where it is), else the option
        ``key_layout`` (4 unless set to 3)."""
        keys = self._keys
        marker = keys.layout_key

        async def get() -> Any:
            return await self._backend.client.get(marker)

        found, _ = await self._backend.run(get, idempotent=True, what="key layout")
        if found is None:
            calls: list[tuple[Any, ...]] = [
                ("cmd", "EXISTS", keys.index(k) + "r") for k in range(keys.shards)
            ]
            replies, _ = await self._backend.run(
                lambda: self._backend.pipeline(calls), idempotent=True, what="key layout"
            )
            for reply in replies:
                if isinstance(reply, Exception):
                    raise StoreUnavailableError(f"key layout: {reply}")
            old = any(int(r) for r in replies)
            layout = 3 if old else self._redis_options.key_layout
            value = f"{layout}:{keys.shards}"

            async def claim() -> Any:
                await self._backend.client.set(marker, value, nx=True)
                return await self._backend.client.get(marker)

            found, _ = await self._backend.run(claim, idempotent=True, what="key layout")
        text = found.decode(errors="replace") if isinstance(found, bytes) else str(found)
        layout_s, _, shards_s = text.partition(":")
        if layout_s not in ("3", "4"):
            raise UnsupportedFormatError(
                f"key layout {text!r} of namespace {self.namespace!r} is not one this "
                "sessionstore understands (upgrade sessionstore)"
            )
        if layout_s == "4" and shards_s != str(keys.shards):
            raise ConfigurationError(
                f"namespace {self.namespace!r} was created with index_shards={shards_s}, "
                f"opened with {keys.shards}: a session's keys are placed by its index shard "
                "(key layout 4), so the count cannot change"
            )
        return int(layout_s)

    async def _shutdown(self) -> None:
        if self._blocking is not None:
            self._blocking.close()
        await self._backend.close()  # every loop's index queue is sent first

    # ------------------------------------------------------------------ plumbing

    def _here_index(self) -> IndexQueue:
        index: IndexQueue = self._backend.here().index
        return index

    def _session_of(self, reply: Reply, sid: str) -> Session:
        doc = decode_full(reply.results[0], sid)
        if not isinstance(doc, Doc):
            raise IntegrityError("the write script returned no session document", sid)
        self._cache.put(doc.token, doc.session, doc.data, doc.metadata)
        return doc.session

    # ------------------------------------------------------------------ reads

    async def _read_docs(self, locs: Sequence[Loc]) -> list[Any]:
        """Documents as one string each (``lua/read.lua``): one call on a single server,
        one per document (pipelined, grouped by node) on Cluster."""
        calls: list[tuple[Any, ...]]
        if len(locs) == 1:
            doc = locs[0].doc
            # a layout-3 document is one string: a plain GET (no script); a layout-2
            # hash answers WRONGTYPE (and Cluster may redirect): then the script reads it
            plain, _ = await self._backend.run(
                lambda: self._backend.commands(doc, pack_get(doc), 1),
                idempotent=True,
                what="read",
            )
            if plain is not None and not isinstance(plain[0], Exception):
                return [plain[0] or b""]
            reply, _ = await self._backend.run(
                lambda: self._backend.script(READ, [doc], []),
                idempotent=True,
                what="read",
            )
            return [reply]
        if self._cluster:
            calls = [("script", READ, [loc.doc], []) for loc in locs]
        else:
            calls = [("script", READ, [loc.doc for loc in locs], [])]
        results, _ = await self._backend.run(
            lambda: self._backend.pipeline(calls), idempotent=True, what="read"
        )
        if self._cluster:
            return list(results)
        return documents_or_failure(results[0], len(locs))

    async def _fetch(self, ids: Sequence[str], *, strict: bool) -> dict[str, Session]:
        """Stored sessions (expired included), following stubs; corrupt ones raise
        (``strict``) or are reported and skipped (:meth:`_fetch_steps`, its documents
        read by :meth:`_read_docs`)."""
        steps = self._fetch_steps(ids, strict=strict)
        try:
            locs = next(steps)
            while True:
                locs = steps.send(await self._read_docs(locs))
        except StopIteration as done:
            result: dict[str, Session] = done.value
            return result

    def _fetch_steps(
        self, ids: Sequence[str], *, strict: bool
    ) -> Generator[list[Loc], list[Any], dict[str, Session]]:
        """The steps of :meth:`_fetch` without its I/O: yields the places of documents
        to read (at most 1,000 at a time), is sent their raw replies in order (as
        ``lua/read.lua`` returns them, or an Exception), returns the sessions. Shared by
        the async reads and the blocking ones (``_blocking_reads.py``)."""
        # (written for the usual read: one pass, every document found where this store
        # expected it; each list comprehension, ``zip(strict=True)``, ``range`` or frame
        # costs ~1-2k instructions, a tenth of a blocking read's Python)
        out: dict[str, Session] = {}
        current = self._cache.current
        sids: Sequence[str] = ids
        locs = list(map(self._writes.loc, ids))
        # the groups tried for each place: None on the first pass (its own group only)
        tried: Iterable[set[str | None] | None] = _FIRST_PASS
        for _ in _PASSES:
            if not locs:
                break
            results: list[Any]
            if len(locs) <= 1000:
                results = yield locs  # (not changed by the caller)
            else:
                results = []
                for start in range(0, len(locs), 1000):
                    results += yield locs[start : start + 1000]
            if len(results) != len(locs):
                raise ValueError("a read step's replies do not match its places")
            again: list[tuple[str, Loc, set[str | None]]] = []
            for sid, loc, raw, seen in zip(sids, locs, results, tried):  # noqa: B905 (checked)
                # the very document this store's create stored: its copy (_cache.py)
                doc: Session | str | None = current(sid, raw)
                if doc is None:
                    try:
                        if isinstance(raw, Exception):
                            raise IntegrityError(f"unreadable document ({raw})", sid)
                        doc = decode_doc(raw, sid)
                    except IntegrityError as exc:
                        if strict:
                            raise
                        self._report_corrupt(exc)
                        continue
                if isinstance(doc, Session):
                    if doc.id != sid:
                        raise IntegrityError("the document holds another session's id", sid)
                    if doc.group is not None:
                        self._writes.remember(sid, doc.group)
                    out[sid] = doc
                    continue
                if seen is None:
                    seen = {loc.group}
                if isinstance(doc, str) and doc not in seen:
                    self._writes.remember(sid, doc)
                    again.append((sid, self._keys.grouped(sid, doc), {*seen, doc}))
                elif doc is None and loc.group is not None and None not in seen:
                    self._writes.remember(sid, None)
                    again.append((sid, self._keys.home(sid), {*seen, None}))
            if not again:
                break
            sids = [entry[0] for entry in again]
            locs = [entry[1] for entry in again]
            tried = [entry[2] for entry in again]
        return out

    async def _read_places(self, ids: Sequence[str]) -> list[Any]:
        """The documents of ``ids`` where this store expects them (:meth:`_read_by_node`
        on Cluster, else :meth:`_read_docs`), 1,000 a call."""
        read: list[Any] = []
        for start in range(0, len(ids), 1000):
            locs = [self._writes.loc(sid) for sid in ids[start : start + 1000]]
            if self._cluster:
                read += await self._read_by_node(locs)
            else:
                read += await self._read_docs(locs)
        return read

    async def _read_by_node(self, locs: Sequence[Loc]) -> list[Any]:
        """Cluster: documents as :meth:`_read_docs` sends them, one ``lua/read.lua`` call
        per node instead of one per document (its first key routes the call, the node's
        other documents ride in ``ARGV``: a script without flags may read any key of its
        node). A document the call could not read (its slot moved meanwhile: ``'\\1'``,
        or the whole call failed) is left to the exact path (:meth:`_fetch`)."""
        # the node of each key from its slot (the same lookup as ``get_node_from_key``
        # without its encoder and layers: ~3 µs of a page's 101 documents each)
        node_of = self._backend.client.nodes_manager.get_node_from_slot
        by_node: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_node.setdefault(node_of(key_slot(loc.doc.encode())).name, []).append(i)
        groups = list(by_node.values())
        calls: list[tuple[Any, ...]] = [
            ("script", READ, [locs[g[0]].doc], [locs[i].doc for i in g[1:]]) for g in groups
        ]
        results, _ = await self._backend.run(
            lambda: self._backend.pipeline(calls), idempotent=True, what="read"
        )
        out: list[Any] = [b"\x01"] * len(locs)
        for group, reply in zip(groups, results, strict=True):
            for i, blob in zip(group, documents(reply, len(group)) or (), strict=True):
                out[i] = blob
        return out

    async def _fetch_rows(
        self, ids: list[str], blobs: list[bytes | None] | None
    ) -> dict[str, tuple[Session, bytes]]:
        """Stored sessions (expired included) with the index records their stored fields
        make (``decode_listed``), for a listing's rows: from ``blobs`` (the documents as
        the walk read them, in ``ids`` order; ``None`` for one it did not send) or read
        here. Anything but a plain document at its place (a stub, a missing grouped
        document, anything corrupt) goes through :meth:`_fetch`, which follows stubs and
        reports corrupt documents."""
        read: list[Any]  # bytes, or an Exception: that document's failure
        if blobs is None:
            read = await self._read_places(ids)
        elif None in blobs:  # a Cluster node sent only its share's (lua/walkn.lua)
            missing = [i for i, blob in enumerate(blobs) if blob is None]
            read = list(blobs)
            for i, blob in zip(
                missing, await self._read_places([ids[i] for i in missing]), strict=True
            ):
                read[i] = blob
        else:
            read = blobs
        out: dict[str, tuple[Session, bytes]] = {}
        slow: list[str] = []
        groups = self._groups
        for sid, blob in zip(ids, read, strict=True):
            try:
                if isinstance(blob, Exception):
                    raise IntegrityError(f"unreadable document ({blob})", sid)
                got = decode_listed(blob, sid)
            except IntegrityError:
                slow.append(sid)  # read again and reported there
                continue
            if isinstance(got, tuple):
                session = got[0]
                if session.id != sid:
                    slow.append(sid)
                    continue
                if session.group is not None and groups.get(sid) != session.group:
                    self._writes.remember(sid, session.group)
                out[sid] = (session, got[1])
            elif got is not None or groups.get(sid) is not None:
                slow.append(sid)  # a stub, or nothing where this store saw a group
        if slow:
            for sid, session in (await self._fetch(slow, strict=False)).items():
                out[sid] = (session, record_of(session).encode())
        return out

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        return await self._fetch(session_ids, strict=True)

    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None:
        """The session, or ``None`` when it does not exist or has expired. One GET."""
        self._check_get_session(session_id)
        session = (await self._fetch([session_id], strict=True)).get(session_id)
        return self._visible(session, include_expired)

    def _check_get_session(self, session_id: str) -> None:
        """What ``get_session`` checks before reading (shared with the blocking reads)."""
        validate_session_id(session_id)
        self._check_open()

    def _check_still_open(self) -> None:
        """``StoreUnavailableError`` once the store is shut down (the blocking reads ask
        before every retry, as ``Backend.run`` does through the loop's state)."""
        self._check_open()

    def _visible(self, session: Session | None, include_expired: bool) -> Session | None:
        """``session`` as ``get_session`` returns it (``None`` if expired, unless asked)."""
        if session is None:
            return None
        # (the clock is read only for a session that has an expiry: ~6k instructions)
        if include_expired or session.expires_at is None:
            return session
        return None if session.is_expired(self.clock.now()) else session

    def _sessions_to_get(self, session_ids: Iterable[str]) -> list[str]:
        """``get_sessions``'s checks (the base store's), for the blocking reads."""
        return self._check_get_sessions(session_ids)

    def _visible_sessions(
        self, ids: list[str], loaded: Mapping[str, Session], include_expired: bool
    ) -> dict[str, Session]:
        """``get_sessions``'s result (the base store's filter), for the blocking reads."""
        return self._live_sessions(ids, loaded, include_expired)

    def blocking_reads(self) -> RedisBlockingReads | None:
        """The store's one-round-trip reads (``get_session``, ``get_sessions``,
        ``get_events``, ``get_event``) made by the calling thread
        on a blocking connection of its own, for ``sessionstore.sync``
        (:class:`sessionstore.sync.BlockingReads`): the same read logic and errors,
        without the hand-off to an event loop. Made on the first call, closed by
        ``shutdown()``. ``None`` on Sentinel and Cluster (their reads stay on the
        loop)."""
        if self._redis_options.mode != "single":
            return None
        if self._blocking is None:
            self._blocking = RedisBlockingReads(self, self._backend)
        return self._blocking

    async def get_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: Iterable[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        """A page of the event log in one round trip, O(log n + page) for every filter
        (``lua/events.lua``, or plain commands for a plain window; SessionNotFoundError if
        absent)."""
        events = await self._log.run_steps(
            self._events_steps(
                session_id,
                after_seq=after_seq,
                before_seq=before_seq,
                limit=limit,
                last=last,
                types=types,
                at_after=at_after,
                at_before=at_before,
            )
        )
        if events is None:
            raise SessionNotFoundError(session_id)
        return events

    def _events_steps(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: Iterable[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> Steps:
        """``get_events``'s checks (now, before any I/O), then its steps
        (:meth:`EventLog.query_steps`: ``None`` for a missing or expired session). Shared
        with the blocking reads (``_blocking_reads.py``)."""
        kinds, low, high = self._check_event_read(
            session_id, after_seq, before_seq, limit, last, types, at_after, at_before
        )
        self._check_open()
        return self._log.query_steps(
            session_id,
            str(to_ms(self.clock.now())),
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            last=last,
            types=kinds,
            at_after=low,
            at_before=high,
        )

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        log = self._log
        steps = log.query_steps(session_id, "", after_seq=after_seq, limit=limit, last=last)
        return await log.run_steps(steps) or []

    async def _query_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: frozenset[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        if limit == 0 or last == 0:
            return []
        found = await self._log.run_steps(
            self._log.query_steps(
                session_id,
                "",
                after_seq=after_seq,
                before_seq=before_seq,
                limit=limit,
                last=last,
                types=types,
                at_after=at_after,
                at_before=at_before,
            )
        )
        return found or []

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        if not seqs and not keys:
            return []
        return await self._log.find(session_id, "", seqs=seqs, keys=keys) or []

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        """The kept event with this ``key`` (``None``: none), in one round trip: the key
        index gives its seq, the log its record (``lua/event.lua``)."""
        return self._the_event(
            session_id, await self._log.run_steps(self._event_steps(session_id, key))
        )

    def _event_steps(self, session_id: str, key: str) -> Steps:
        """``get_event``'s checks (now, before any I/O), then its steps
        (:meth:`EventLog.find_steps`). Shared with the blocking reads."""
        validate_session_id(session_id)
        validate_event_key(key, "key")
        self._check_open()
        return self._log.find_steps(session_id, str(to_ms(self.clock.now())), keys=[key])

    @staticmethod
    def _the_event(session_id: str, found: list[Event] | None) -> Event | None:
        """``get_event``'s result from its steps' (``None``: no such session)."""
        if found is None:
            raise SessionNotFoundError(session_id)
        return found[0] if found else None

    async def _checkpoints_key(self, session_id: str) -> str:
        found = await self._fetch([session_id], strict=False)
        loc = self._writes.loc(session_id) if session_id in found else self._keys.home(session_id)
        return loc.ckpt

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        key = await self._checkpoints_key(session_id)
        try:
            raw, _ = await self._backend.run(
                lambda: self._backend.client.hgetall(key),
                idempotent=True,
                what=f"{session_id}/checkpoints",
            )
        except IntegrityError as exc:  # the key holds no hash: no checkpoint is readable
            self._report_corrupt(exc)
            return []
        return self._checkpoints_of(session_id, raw)

    def _checkpoints_of(self, session_id: str, raw: Mapping[bytes, bytes]) -> list[Checkpoint]:
        """The readable checkpoints of a ``ckpt`` hash's fields, oldest first."""
        out = []
        for cp_id, blob in raw.items():
            try:
                out.append(decode_checkpoint(session_id, cp_id, blob))
            except IntegrityError as exc:  # left out and reported (see the base class)
                self._report_corrupt(exc)
        out.sort(key=lambda cp: (cp.created_at, cp.id))
        return out

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        """Checkpoints of a backup's window of sessions in one round trip whatever their
        number (the default read a document and a hash per id): one pipeline of each
        id's home ``ckpt`` hash and its home document's ``grp`` field; a grouped
        session's hash lives in its group's slot, read in a second round trip."""
        ids = list(dict.fromkeys(session_ids))
        if len(ids) < 2:
            return {sid: await self._load_checkpoints(sid) for sid in ids}
        calls: list[tuple[Any, ...]] = []
        for sid in ids:
            home = self._keys.home(sid)
            # a stub (layout 3) is "\x03G<group>"; a layout-2 hash answers WRONGTYPE
            calls += [("cmd", "HGETALL", home.ckpt), ("cmd", "GETRANGE", home.doc, 0, 1023)]
        results = await self._checkpoint_reads(calls)
        out: dict[str, list[Checkpoint]] = {}
        grouped: list[tuple[str, str]] = []
        unsure: list[tuple[str, Any]] = []  # a hash, or a stub longer than the range
        for sid, raw, head in zip(ids, results[0::2], results[1::2], strict=True):
            if isinstance(head, bytes) and head[:2] == b"\x03G" and len(head) < 1024:
                grouped.append((sid, self._keys.grouped(sid, head[2:].decode()).ckpt))
            elif isinstance(head, Exception) or head[:2] == b"\x03G":
                unsure.append((sid, raw))
            else:
                out[sid] = self._checkpoints_reply(sid, raw)
        if unsure:
            homes = [self._keys.home(sid).doc for sid, _ in unsure]
            heads = await self._checkpoint_reads([("script", READ, [h], []) for h in homes])
            for (sid, raw), head in zip(unsure, heads, strict=True):
                try:
                    group = decode_doc(head, sid) if isinstance(head, bytes) else None
                except IntegrityError:
                    group = None  # the session's own reads report it
                if isinstance(group, str):
                    grouped.append((sid, self._keys.grouped(sid, group).ckpt))
                else:
                    out[sid] = self._checkpoints_reply(sid, raw)
        if grouped:
            replies = await self._checkpoint_reads([("cmd", "HGETALL", key) for _, key in grouped])
            for (sid, _), raw in zip(grouped, replies, strict=True):
                out[sid] = self._checkpoints_reply(sid, raw)
        return out

    async def _checkpoint_reads(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        results, _ = await self._backend.run(
            lambda: self._backend.pipeline(calls), idempotent=True, what="checkpoints"
        )
        return list(results)

    def _checkpoints_reply(self, sid: str, raw: Any) -> list[Checkpoint]:
        """:meth:`_checkpoints_of` a pipelined ``HGETALL`` reply (an error: the key holds
        no hash, no checkpoint is readable, reported)."""
        if isinstance(raw, Exception):
            where = f"{sid}/checkpoints"
            self._report_corrupt(
                IntegrityError("a key of this store holds a value of the wrong type", where)
            )
            return []
        if isinstance(raw, list):  # a reply left as pairs
            pairs = iter(raw)
            raw = dict(zip(pairs, pairs, strict=False))
        return self._checkpoints_of(sid, raw)

    async def _load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One field of the checkpoints hash (``HGET``); a corrupt record raises."""
        key = await self._checkpoints_key(session_id)
        blob, _ = await self._backend.run(
            lambda: self._backend.client.hget(key, checkpoint_id),
            idempotent=True,
            what=f"{session_id}/checkpoints",
        )
        if blob is None:
            return None
        return decode_checkpoint(session_id, checkpoint_id.encode(), blob)

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        batch: list[str] = []
        async for key in self._backend.client.scan_iter(match=self._keys.doc_pattern, count=1000):
            parsed = self._keys.parse_doc_key(key.decode(errors="replace"))
            if parsed is None:
                continue
            sid, group = parsed
            if group is not None:
                self._writes.remember(sid, group)
            batch.append(sid)
            if len(batch) >= 500:
                for s in (await self._fetch(batch, strict=False)).values():
                    yield s
                batch = []
        if batch:
            for s in (await self._fetch(batch, strict=False)).values():
                yield s

    # ------------------------------------------------------------------ fast writes

    async def create_session(self, **fields: Unpack[NewSessionFields]) -> Session:
        """Create a session in one round trip (``lua/create.lua``; with a ``group``,
        ``lua/write.lua``, which also writes the id's stub; on Cluster two when the id and
        the group hash to different slots: the stub is claimed first)."""
        check_new_fields(fields)  # (the base engine's way: no NewSession, no CreateOp built)
        p = prepare_new(self._limits, CREATE_OP, **fields)
        self._check_open()
        assert p.data is not None and p.metadata is not None and p.status is not None
        # (prepare_new has refused a session over max_session_bytes)
        now = self.clock.now()
        now_ms = to_ms(now)
        session = new_session(p, now)
        sid, group = session.id, session.group
        loc = self._keys.loc(sid, group)
        stub = None
        if group is not None:
            stub = self._writes.stub_key(loc)  # the id's stub, written by the same script
            if stub is None:  # Cluster, another slot: claim the id first
                await self._writes.claim(sid, group, now_ms)
        expires = None if session.expires_at is None else to_ms(session.expires_at)
        fresh = fields.get("id") is None  # a new ULID: nothing of it to clear (create.lua)
        data, metadata = p.data[0], p.metadata[0]
        for _ in range(4):
            call = self._writes.call(now_ms)
            during = None
            if group is None:
                call.create_one(loc, p, expires, fresh=fresh)
                # the copy of the document (_cache.py), made while the request is on its
                # way: the lane's CPU would otherwise idle until the reply. Harmless if
                # the create fails: a copy is used only when the server finds its token
                # or its bytes stored, which no other write has.
                during = partial(
                    self._cache.put, call.token, session, data, metadata, doc=call.document()
                )
            else:
                call.create(loc, p, "" if expires is None else str(expires), stub)
            try:
                await self._writes.run(call, idempotent=True, what=f"create {sid}", during=during)
                break
            except Unclaimed:  # something holds the id: the separate claim sorts it out
                assert group is not None
                await self._writes.claim(sid, group, now_ms)
                stub = None
            except Moved as moved:  # an (expired?) grouped session holds the id
                await self._writes.delete_expired(self._keys.grouped(sid, moved.group), now_ms)
                await self._writes.release(sid, moved.group)
        else:
            raise SessionExistsError(sid)
        self._writes.remember(sid, group)
        if group is not None:  # (write.lua builds a grouped session's document)
            self._cache.put(call.token, session, data, metadata)
        self._writes.reindex_later([session])
        self._notify("sessionstore_session_created", session=session)
        return session

    async def update_session(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        **changes: Unpack[SessionChanges],
    ) -> Session:
        """Change part of a session in one round trip (merged in the script, ``lua/doc.lua``)."""
        p = prepare(UpdateOp(session_id, SessionUpdate(**changes), expected_version), self._limits)
        self._check_open()
        now_ms = to_ms(self.clock.now())
        reply, _ = await self._writes.run_on(
            p.session_id,
            lambda call, loc: call.update(loc, p, p.expected_version),
            now_ms,
            idempotent=p.expected_version is not None,
            what=f"update {session_id}",
        )
        return await self._written(reply, p.session_id)

    async def _written(self, reply: Reply, sid: str) -> Session:
        session = self._session_of(reply, sid)
        self._writes.reindex_later([session])
        self._notify("sessionstore_session_updated", session=session)
        return session

    async def append_events(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        create: bool | NewSession = False,
        ttl: TTL | None = None,
        expires_at: datetime | Unset | None = UNSET,
    ) -> Session:
        """Append events in one round trip (``lua/append.lua``): O(1) in history (a
        ``ZADD`` per event and one to the type index); the reply is the new version
        alone when this store holds the document the append started from
        (``_cache.py``). Keyed events are checked against the key index in the same
        script. With ``create`` / ``ttl`` / ``expires_at``: ``lua/write.lua``'s append
        op, also one round trip (``_appends.py``)."""
        self._check_open()
        if create is not False or ttl is not None or expires_at is not UNSET:
            op = AppendOp(session_id, events, expected_version, create, ttl, expires_at)
            return (await self._appends.append_with(op)).session
        session, _ = await self._appends.append(
            session_id, events, expected_version, detailed=False
        )
        return session

    async def append_events_detailed(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        create: bool | NewSession = False,
        ttl: TTL | None = None,
        expires_at: datetime | Unset | None = UNSET,
    ) -> AppendResult:
        """:meth:`append_events`, telling which events were new (one round trip)."""
        self._check_open()
        if create is not False or ttl is not None or expires_at is not UNSET:
            op = AppendOp(session_id, events, expected_version, create, ttl, expires_at)
            return await self._appends.append_with(op)
        session, result = await self._appends.append(
            session_id, events, expected_version, detailed=True
        )
        assert result is not None
        stored, new = result
        return AppendResult(session, stored, new)

    async def touch(
        self, session_id: str, *, ttl: TTL | None = None, expected_version: int | None = None
    ) -> Session:
        """Sliding expiry in one round trip."""
        validate_session_id(session_id)
        delta = None if ttl is None else validate_ttl(ttl)
        expected = check_expected_version(expected_version)
        self._check_open()
        now = self.clock.now()
        now_ms = to_ms(now)
        expires_ms = None if delta is None else to_ms(now + delta)
        reply, _ = await self._writes.run_on(
            session_id,
            lambda call, loc: call.touch(loc, expires_ms, expected),
            now_ms,
            idempotent=expected is not None,
            what=f"touch {session_id}",
        )
        return await self._written(reply, session_id)

    async def trim_events(
        self, session_id: str, *, keep_last: int, expected_version: int | None = None
    ) -> Session:
        """Drop all but the newest ``keep_last`` events, in one round trip."""
        validate_session_id(session_id)
        validate_positive_int(keep_last, "keep_last", maximum=2**62, allow_zero=True)
        expected = check_expected_version(expected_version)
        self._check_open()
        session, _ = await self._log.remove(
            session_id,
            lambda call, loc: call.trim(loc, keep_last, expected),
            to_ms(self.clock.now()),
            idempotent=expected is not None,
            what=f"trim {session_id}",
        )
        return session

    async def pop_events(
        self, session_id: str, n: int = 1, *, expected_version: int | None = None
    ) -> PoppedEvents:
        """Remove the newest ``n`` events in one round trip (``ZPOPMAX``). Never retried
        once sent (a retry could not return what the first attempt popped): an unknown
        outcome raises :class:`~sessionstore.errors.OutcomeUnknownError`."""
        validate_session_id(session_id)
        validate_positive_int(n, "n", maximum=2**62)
        expected = check_expected_version(expected_version)
        self._check_open()
        session, popped = await self._log.remove(
            session_id,
            lambda call, loc: call.pop(loc, n, expected),
            to_ms(self.clock.now()),
            idempotent=False,
            what=f"pop {session_id}",
        )
        return PoppedEvents(popped, session)

    async def truncate_events(
        self, session_id: str, after_seq: int, *, expected_version: int | None = None
    ) -> Session:
        """Drop every event with ``seq > after_seq``, in one round trip."""
        validate_session_id(session_id)
        validate_positive_int(after_seq, "after_seq", maximum=2**62, allow_zero=True)
        expected = check_expected_version(expected_version)
        self._check_open()
        session, _ = await self._log.remove(
            session_id,
            lambda call, loc: call.truncate(loc, after_seq, expected),
            to_ms(self.clock.now()),
            idempotent=expected is not None,
            what=f"truncate {session_id}",
        )
        return session

    async def delete_events(
        self,
        session_id: str,
        *,
        seqs: Iterable[int] = (),
        keys: Iterable[str] = (),
        expected_version: int | None = None,
    ) -> Session:
        """Drop events by seq and by key (missing ones ignored), in one round trip."""
        p = prepare(DeleteEventsOp(session_id, seqs, keys, expected_version), self._limits)
        self._check_open()
        session, _ = await self._log.remove(
            p.session_id,
            lambda call, loc: call.delete_events(loc, p.seqs, p.keys, p.expected_version),
            to_ms(self.clock.now()),
            idempotent=p.expected_version is not None,
            what=f"delete events of {session_id}",
        )
        return session

    async def delete_session(self, session_id: str, *, expected_version: int | None = None) -> bool:
        """Delete a session with its events and checkpoints, in one round trip."""
        validate_session_id(session_id)
        expected = check_expected_version(expected_version)
        self._check_open()
        now_ms = to_ms(self.clock.now())
        reply, loc = await self._writes.run_on(
            session_id,
            lambda call, loc: call.delete(loc, expected),
            now_ms,
            idempotent=expected is not None,
            what=f"delete {session_id}",
        )
        flag, ca, ver = reply.results[0]
        if reply.ambiguous and not flag:
            raise OutcomeUnknownError(
                f"delete {session_id}: a retried delete found nothing; the first attempt "
                "may have deleted it"
            )
        self._cache.drop(session_id)
        if int(ver):
            if loc.group is not None:
                await self._writes.release(session_id, loc.group)
            self._writes.remember(session_id, None)
            await self._writes.reindex([(session_id, ["D", session_id, ca, ver])])
            self._notify("sessionstore_session_deleted", session_id=session_id)
        return bool(flag)

    # ------------------------------------------------------------------ collaborators

    async def _commit_prepared(self, prepared: Sequence[Prepared]) -> list[Session | bool]:
        """Updates and appends in one round trip (``_commits.py``: ``lua/write.lua``'s
        ``U`` and ``A`` ops as ``update_session`` and ``append_events`` send them); any
        other batch by the base engine (read, plan, write the documents)."""
        if self._commits.takes(prepared):
            for p in prepared:
                self._check_capable(p)
            self._check_open()
            done = await self._commits.commit(prepared)
            if done is not None:
                return done
        return await super()._commit_prepared(prepared)

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        await self._writes.apply(mutations, atomic=atomic)

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult:
        """Write whole records back exactly, pipelined in chunks of 500 (one write script
        per record, the merge strategy decided in the script; not atomic across records)."""
        check_strategy(strategy)
        batch = list(records)
        encoded = [self._check_record(r) for r in batch]
        self._check_open()
        ids = [r.session.id for r in batch]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("put_records got the same session twice in one call")
        return await self._records.put(batch, encoded, strategy)

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One page in O(page): the indexes narrow and order, the documents confirm."""
        self._check_open()
        return await self._queries.list_sessions(filter, options)

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """Plain-text search: walks the (filtered) index in the requested order, checking
        each document, until the page is full. Cost grows with the sessions examined."""
        normalize_search_text(text)
        self._check_open()
        return await self._queries.search_sessions(text, options, filter)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """Counted on the server from the indexes (documents are read only for
        ``ids`` and ``metadata`` conditions)."""
        self._check_open()
        return await self._queries.count_sessions(filter)

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        self._check_open()
        return await self._queries.expired_sessions(now)

    async def rebuild_indexes(self) -> tuple[int, int]:
        """Reconcile the indexes with the documents (after a crash between a Cluster write
        and its queued index update, or data written behind the store's back): every
        document is (re)indexed, every entry without a document removed. Safe to run
        while the store is in use. Returns ``(indexed, removed)``."""
        self._check_open()
        return await self._queries.rebuild_indexes()
