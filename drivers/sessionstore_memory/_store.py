"""MemoryStore: per-store state, indexed queries, copies in and out, O(1) event appends."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import orjson

from sessionstore import (
    BaseSessionStore,
    Capabilities,
    Checkpoint,
    Event,
    IntegrityError,
    Mutation,
    Page,
    QueryOptions,
    Session,
    SessionConflictError,
    SessionFilter,
    StoreOptions,
)
from sessionstore.codec import (
    checkpoint_from_record,
    checkpoint_to_record,
    decode_json,
    dumps_record,
)
from sessionstore.planning import fast_session
from sessionstore.query import (
    decode_cursor,
    encode_cursor,
    is_after,
    matches,
    order_key,
    paginate,
    query_fingerprint,
    sort_sessions,
)

from ._index import Indexes, Ordered

__all__ = ["MemoryBackend", "MemoryOptions", "MemoryStore"]

_EMPTY: dict[str, Any] = {}


@dataclass(frozen=True)
class MemoryOptions(StoreOptions):
    """Options of ``memory://`` (only the common ones)."""


@dataclass(frozen=True, slots=True)
class ListingPlan:
    """How :meth:`MemoryStore.list_sessions` reads a page.

    * ``"sort"``: match every candidate (from the set indexes), sort them, cut the page;
    * ``"walk"``: walk an ordered list (``ordered``, a composite list, or the global one
      of the sort field) and keep the rows that match, until the page is full;
    * ``"composite"``: the same walk over a composite list that holds only candidates.
    """

    kind: Literal["sort", "walk", "composite"]
    candidates: set[str] | None
    ordered: Ordered | None


@dataclass(slots=True)
class _Doc:
    head: Session  # data/metadata left empty: payloads live only as bytes
    data_json: bytes
    metadata_json: bytes


@dataclass(slots=True)
class _Log:
    """One session's kept events with its indexes (all kept in step):

    * ``seqs`` - kept seqs ascending (gaps allowed) and ``items`` - ``(type, at, data
      JSON, key)`` in the same order: a seq's position is one bisect away;
    * ``by_key`` - key -> seq; ``by_type`` - type -> its seqs ascending;
    * ``at_sorted`` - every ``at`` is >= the one before it (in seq order): a time
      bound is then a bisect over ``items`` too (caller-set ``at`` may break it).
    """

    seqs: list[int] = field(default_factory=list)
    items: list[tuple[str, datetime, bytes, str | None]] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, list[int]] = field(default_factory=dict)
    at_sorted: bool = True

    def add(self, events: Sequence[Event]) -> None:
        """Append events whose seqs are above every kept one."""
        seqs, items, by_type, by_key = self.seqs, self.items, self.by_type, self.by_key
        for e in events:
            if self.at_sorted and items and e.at < items[-1][1]:
                self.at_sorted = False
            seqs.append(e.seq)
            items.append((e.type, e.at, _kept(orjson.dumps(e.data)), e.key))
            typed = by_type.get(e.type)
            if typed is None:
                by_type[e.type] = [e.seq]
            else:
                typed.append(e.seq)
            if e.key is not None:
                by_key[e.key] = e.seq

    def _forget(self, seq: int, item: tuple[str, datetime, bytes, str | None]) -> None:
        etype, _, _, key = item
        if key is not None and self.by_key.get(key) == seq:
            del self.by_key[key]
        typed = self.by_type[etype]
        if typed[-1] == seq:
            typed.pop()
        else:
            del typed[bisect_left(typed, seq)]
        if not typed:
            del self.by_type[etype]

    def drop_range(self, start: int, end: int) -> None:
        """Drop the kept events at positions ``[start, end)``."""
        if start >= end:
            return
        seqs, items = self.seqs, self.items
        if end - start == 1:
            self._forget(seqs[start], items[start])
        else:
            gone: dict[str, list[int]] = {}
            for pos in range(start, end):
                etype, _, _, key = items[pos]
                if key is not None and self.by_key.get(key) == seqs[pos]:
                    del self.by_key[key]
                gone.setdefault(etype, []).append(seqs[pos])
            for etype, dropped in gone.items():
                typed = self.by_type[etype]
                lo, hi = bisect_left(typed, dropped[0]), bisect_right(typed, dropped[-1])
                if hi - lo == len(dropped):
                    del typed[lo:hi]
                else:
                    drop = set(dropped)
                    typed[lo:hi] = [q for q in typed[lo:hi] if q not in drop]
                if not typed:
                    del self.by_type[etype]
        del seqs[start:end]
        del items[start:end]

    def remove(self, mut: Mutation) -> None:
        """Apply a mutation's removals (trim, truncate, delete) to the kept events."""
        if mut.trim_before:
            self.drop_range(0, bisect_left(self.seqs, mut.trim_before))
        if mut.truncate_after is not None:
            self.drop_range(bisect_right(self.seqs, mut.truncate_after), len(self.seqs))
        for seq in mut.delete_seqs:
            pos = bisect_left(self.seqs, seq)
            if pos < len(self.seqs) and self.seqs[pos] == seq:
                self.drop_range(pos, pos + 1)

    def event(self, pos: int, session_id: str) -> Event:
        etype, at, raw, key = self.items[pos]
        try:
            return Event(self.seqs[pos], etype, at, orjson.loads(raw), key)
        except orjson.JSONDecodeError:
            raise IntegrityError("undecodable event", f"{session_id}/events") from None

    def positions(self, after_seq: int, before_seq: int | None) -> tuple[int, int]:
        """The positions of the kept events with ``after_seq < seq < before_seq``."""
        start = bisect_right(self.seqs, after_seq) if after_seq else 0
        end = len(self.seqs) if before_seq is None else bisect_left(self.seqs, before_seq)
        return start, end


@dataclass
class _Space:
    docs: dict[str, _Doc] = field(default_factory=dict)
    logs: dict[str, _Log] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, bytes]] = field(default_factory=dict)
    index: Indexes = field(default_factory=Indexes)
    # Writes (check-then-write) and the reads that walk the indexes hold it: on one event
    # loop they never interleave anyway (no await inside), but a store used from several
    # threads at once (each with its own loop, e.g. the sync facade's per-thread loops)
    # would otherwise lose updates between a check and its write.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class MemoryBackend:
    """The data of one or more namespaces. Share one between stores to share data."""

    def __init__(self) -> None:
        self._spaces: dict[str, _Space] = {}

    def space(self, namespace: str) -> _Space:
        """The state of ``namespace`` (created empty on first use)."""
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = _Space()
        return space

    def drop(self, namespace: str) -> None:
        """Forget a namespace entirely."""
        self._spaces.pop(namespace, None)


def _kept(raw: bytes) -> bytes:
    """An exact-size copy of bytes the store keeps.

    orjson returns even a 20-byte result in a buffer of at least 4 KiB (1 KiB before
    3.12) and never shrinks it: keeping its output as is cost ~9 KB per tiny session.
    """
    return memoryview(raw).tobytes()


def _at(item: tuple[str, datetime, bytes, str | None]) -> datetime:
    return item[1]


def _decode_checkpoint(session_id: str, checkpoint_id: str, raw: bytes) -> Checkpoint:
    record = f"{session_id}/checkpoints/{checkpoint_id}"
    cp = checkpoint_from_record(decode_json(raw, record), record)
    if cp.session_id != session_id or cp.id != checkpoint_id:
        raise IntegrityError("the checkpoint record names another checkpoint", record)
    return cp


def _materialize(doc: _Doc) -> Session:
    h = doc.head
    try:
        data, metadata = orjson.loads(doc.data_json), orjson.loads(doc.metadata_json)
    except orjson.JSONDecodeError:
        raise IntegrityError("undecodable session document", h.id) from None
    return fast_session(
        h.id,
        h.processor_id,
        h.status,
        data,
        metadata,
        h.tags,
        h.created_at,
        h.updated_at,
        h.expires_at,
        h.version,
        h.event_count,
        h.last_seq,
        h.group,
    )


def _with_metadata(doc: _Doc) -> Session:
    """A head with metadata decoded (enough for filters; never handed out)."""
    h = doc.head
    return fast_session(
        h.id, h.processor_id, h.status, _EMPTY, orjson.loads(doc.metadata_json), h.tags,
        h.created_at, h.updated_at, h.expires_at, h.version, h.event_count, h.last_seq, h.group,
    )  # fmt: skip


class MemoryStore(BaseSessionStore):
    """In-process store. Fast, not durable, not shared across processes."""

    Options = MemoryOptions
    CAPABILITIES = Capabilities(
        atomic_multi_session=True,
        shared_namespace=True,
        cross_process=False,
        durable=False,
        native_ttl=False,
        indexed_query=True,
        any_event_loop=True,
        event_log=True,
    )

    def __init__(self, *, backend: MemoryBackend | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.backend = backend if backend is not None else MemoryBackend()
        self._space = self.backend.space(self.namespace)
        if backend is None:
            # A private backend: another store object never sees this one's data.
            self._capabilities = replace(self.CAPABILITIES, shared_namespace=False)
        else:
            self._capabilities = self.CAPABILITIES

    @property
    def capabilities(self) -> Capabilities:
        """``shared_namespace`` only when the backend was passed in (and so can be shared)."""
        return self._capabilities

    # ------------------------------------------------------------------ primitives

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        docs = self._space.docs
        return {sid: _materialize(doc) for sid in session_ids if (doc := docs.get(sid)) is not None}

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        # No await below: the check-then-write is atomic on the event loop; the lock makes
        # it atomic between threads too.
        space = self._space
        docs = space.docs
        with space.lock:
            for mut in mutations:
                doc = docs.get(mut.session_id)
                actual = 0 if doc is None else doc.head.version
                if actual != mut.expect:
                    raise SessionConflictError(mut.session_id, mut.expect, actual)
            for mut in mutations:
                self._apply_one(space, mut)

    async def _create_new(self, session: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """Insert-if-absent without building a :class:`Mutation` (the create hot path)."""
        space = self._space
        sid = session.id
        with space.lock:
            if sid in space.docs:
                return False
            self._insert(space, session, data_json, metadata_json)
        return True

    @staticmethod
    def _insert(space: _Space, s: Session, data_json: bytes, metadata_json: bytes) -> None:
        """Store a session that is not stored yet (no events or checkpoints either)."""
        head = fast_session(
            s.id, s.processor_id, s.status, _EMPTY, _EMPTY, s.tags, s.created_at, s.updated_at,
            s.expires_at, s.version, s.event_count, s.last_seq, s.group,
        )  # fmt: skip
        space.docs[s.id] = _Doc(head, _kept(data_json), _kept(metadata_json))
        space.index.add(head)

    def _apply_one(self, space: _Space, mut: Mutation) -> None:
        sid = mut.session_id
        old = space.docs.get(sid)
        if mut.delete or mut.reset:
            space.logs.pop(sid, None)
            space.checkpoints.pop(sid, None)
        if mut.delete:
            if old is not None:
                space.index.remove(old.head)
                del space.docs[sid]
            return
        if mut.session is not None:
            s = mut.session
            assert mut.data_json is not None and mut.metadata_json is not None
            if old is None:
                self._insert(space, s, mut.data_json, mut.metadata_json)
            else:
                head = fast_session(
                    s.id, s.processor_id, s.status, _EMPTY, _EMPTY, s.tags, s.created_at,
                    s.updated_at, s.expires_at, s.version, s.event_count, s.last_seq, s.group,
                )  # fmt: skip
                space.index.replace(old.head, head)
                old.head, old.data_json, old.metadata_json = (
                    head, _kept(mut.data_json), _kept(mut.metadata_json)
                )  # fmt: skip
        if mut.trim_before or mut.truncate_after is not None or mut.delete_seqs:
            log = space.logs.get(sid)
            if log is not None:
                log.remove(mut)
        if mut.append:
            log = space.logs.get(sid)
            if log is None:
                log = space.logs[sid] = _Log()
            log.add(mut.append)
        if mut.put_checkpoints or mut.delete_checkpoints:
            cps = space.checkpoints.setdefault(sid, {})
            for cp_id in mut.delete_checkpoints:
                cps.pop(cp_id, None)
            for cp in mut.put_checkpoints:
                cps[cp.id] = _kept(dumps_record(checkpoint_to_record(cp)))

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        log = self._space.logs.get(session_id)
        if log is None or not log.items or limit == 0 or last == 0:
            return []
        start, end = log.positions(after_seq, None)
        if last is not None:
            start = max(start, end - last)
        if limit is not None:
            end = min(end, start + limit)
        return [log.event(pos, session_id) for pos in range(start, end)]

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
        """Indexed: seq bounds and (while ``at`` grows with seq) time bounds are bisects,
        ``types`` walks the per-type seq lists; the cost grows with the page."""
        log = self._space.logs.get(session_id)
        if log is None or not log.items or limit == 0 or last == 0:
            return []
        start, end = log.positions(after_seq, before_seq)
        timed = at_after is not None or at_before is not None
        if timed and log.at_sorted:
            items = log.items
            if at_after is not None:
                start = max(start, bisect_right(items, at_after, start, end, key=_at))
            if at_before is not None:
                end = min(end, bisect_left(items, at_before, start, max(start, end), key=_at))
            timed = False
        if start >= end:
            return []
        want = limit if limit is not None else last
        backwards = last is not None
        if types is None:
            candidates: Any = range(end - 1, start - 1, -1) if backwards else range(start, end)
        else:
            candidates = self._typed_positions(log, types, start, end, backwards)
        out: list[Event] = []
        for pos in candidates:
            if timed:
                at = log.items[pos][1]
                if (at_after is not None and at <= at_after) or (
                    at_before is not None and at >= at_before
                ):
                    continue
            out.append(log.event(pos, session_id))
            if want is not None and len(out) >= want:
                break
        if backwards:
            out.reverse()
        return out

    @staticmethod
    def _typed_positions(
        log: _Log, types: frozenset[str], start: int, end: int, backwards: bool
    ) -> Any:
        """Positions in ``[start, end)`` of events of ``types``, in seq order (reversed
        when ``backwards``), merged lazily from the per-type seq lists."""
        import heapq

        if start >= end:
            return iter(())
        lo_seq, hi_seq = log.seqs[start], log.seqs[end - 1]
        runs = []
        for etype in types:
            typed = log.by_type.get(etype)
            if not typed:
                continue
            a, b = bisect_left(typed, lo_seq), bisect_right(typed, hi_seq)
            if a < b:
                runs.append(reversed(typed[a:b]) if backwards else iter(typed[a:b]))
        if len(runs) == 1:
            merged: Any = runs[0]
        else:
            merged = heapq.merge(*runs, reverse=backwards)
        seqs = log.seqs
        return (bisect_left(seqs, q, start, end) for q in merged)

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        log = self._space.logs.get(session_id)
        if log is None or not log.items:
            return []
        wanted = set(seqs)
        wanted.update(q for k in keys if (q := log.by_key.get(k)) is not None)
        out = []
        for q in sorted(wanted):
            pos = bisect_left(log.seqs, q)
            if pos < len(log.seqs) and log.seqs[pos] == q:
                out.append(log.event(pos, session_id))
        return out

    async def _load_event_seqs(
        self, session_id: str, *, after_seq: int = 0, last: int | None = None
    ) -> list[int]:
        log = self._space.logs.get(session_id)
        if log is None or not log.seqs:
            return []
        start, end = log.positions(after_seq, None)
        if last is not None:
            start = max(start, end - last)
        return log.seqs[start:end]

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        cps = self._space.checkpoints.get(session_id, {})
        out = []
        for cp_id, raw in cps.items():
            try:
                out.append(_decode_checkpoint(session_id, cp_id, raw))
            except IntegrityError as exc:  # left out and reported (see the base class)
                self._report_corrupt(exc)
        out.sort(key=lambda cp: (cp.created_at, cp.id))
        return out

    async def _load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        raw = self._space.checkpoints.get(session_id, {}).get(checkpoint_id)
        return None if raw is None else _decode_checkpoint(session_id, checkpoint_id, raw)

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        for doc in list(self._space.docs.values()):
            try:
                session = _materialize(doc)
            except IntegrityError as exc:  # skipped and reported, never raised by a scan
                self._report_corrupt(exc)
                continue
            yield session

    # ------------------------------------------------------------------ fast paths

    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None:
        """The session, or ``None`` (a private copy: mutate it freely)."""
        # Only a str can be stored; anything else (even unhashable) goes to validation.
        doc = self._space.docs.get(session_id) if type(session_id) is str else None
        if doc is None:
            from sessionstore.validation import validate_session_id

            validate_session_id(session_id)
            self._check_open()
            return None
        self._check_open()
        if not include_expired and doc.head.is_expired(self.clock.now()):
            return None
        return _materialize(doc)

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        from sessionstore.clock import to_ms

        space = self._space
        due = space.index.expires.sorted().irange(None, (to_ms(now), "\U0010ffff"))
        return [_materialize(space.docs[sid]) for _, sid in list(due)]

    def _view(self, sid: str, flt: SessionFilter) -> Session:
        doc = self._space.docs[sid]
        return _with_metadata(doc) if flt.metadata else doc.head

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """Indexed: cost grows with the page (and the filter's selectivity), not the store."""
        self._check_open()
        flt = filter or SessionFilter()
        opts = options or QueryOptions()
        with self._space.lock:
            return self._listing(flt, opts, self._plan(flt, opts))

    def _plan(self, flt: SessionFilter, opts: QueryOptions) -> ListingPlan:
        """Choose how to read a page (see ``docs/decisions.md``, "Listing plans").

        The costs compared are rows touched: a walk of an ordered list touches about
        ``wanted * walked / matching`` rows before it has ``wanted`` matches (the matches
        spread evenly along the order); sorting the candidate set touches all of them.
        A composite list that covers the filter's set conditions holds only candidates,
        so its walk touches about ``wanted`` rows and needs no candidate set at all.
        """
        index = self._space.index
        wanted = opts.offset + opts.limit + 1
        source = index.composite_source(flt, opts.sort_by, self._heads)
        if source is not None and source[1]:
            return ListingPlan("composite", None, source[0])
        candidates = index.candidates(flt, self._space.docs)
        if candidates is None:
            return ListingPlan("walk", None, None)
        walked = len(self._space.docs) if source is None else len(source[0])
        walk_rows = wanted * walked / max(1, len(candidates))
        if len(candidates) <= max(walk_rows, 64):
            return ListingPlan("sort", candidates, None)
        return ListingPlan("walk", candidates, None if source is None else source[0])

    def _heads(self) -> Iterator[Session]:
        return (doc.head for doc in self._space.docs.values())

    def _listing(self, flt: SessionFilter, opts: QueryOptions, plan: ListingPlan) -> Page:
        """Read a page with ``plan`` (every plan returns the same page: the benchmark's
        plan sweep forces each in turn)."""
        now = self.clock.now()
        candidates = plan.candidates
        if plan.kind == "sort":
            assert candidates is not None
            heads = [h for sid in candidates if matches(h := self._view(sid, flt), flt, now)]
            ordered = sort_sessions(heads, opts.sort_by, opts.descending)
            page = paginate(ordered, flt, opts)
            return Page(
                [_materialize(self._space.docs[s.id]) for s in page.items], page.next_cursor
            )
        fingerprint = query_fingerprint(flt, opts)
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        skip = opts.offset
        picked: list[Session] = []
        walk = self._space.index.walk(opts.sort_by, opts.descending, after, flt, plan.ordered)
        for sid in walk:
            if candidates is not None and sid not in candidates:
                continue
            head = self._view(sid, flt)
            if not matches(head, flt, now):
                continue
            if after is not None and not is_after(
                order_key(head, opts.sort_by), after, opts.descending
            ):
                continue
            if skip:
                skip -= 1
                continue
            picked.append(head)
            if len(picked) > opts.limit:
                break
        items = picked[: opts.limit]
        next_cursor = None
        if len(picked) > opts.limit:
            next_cursor = encode_cursor(fingerprint, order_key(items[-1], opts.sort_by))
        return Page([_materialize(self._space.docs[h.id]) for h in items], next_cursor)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """Counted from the indexes where the filter allows."""
        self._check_open()
        flt = filter or SessionFilter()
        now = self.clock.now()
        with self._space.lock:
            if flt == SessionFilter(include_expired=flt.include_expired):
                return self._count_all(now, include_expired=flt.include_expired)
            candidates = self._space.index.candidates(flt, self._space.docs)
            ids = candidates if candidates is not None else self._space.docs.keys()
            return sum(1 for sid in ids if matches(self._view(sid, flt), flt, now))

    def _count_all(self, now: datetime, *, include_expired: bool) -> int:
        """Every session of the namespace, less the expired ones counted on the expiry
        index: O(log n) (a count over a million sessions took 19 s with the matcher)."""
        from sessionstore.clock import to_ms

        docs = self._space.docs
        if include_expired:
            return len(docs)
        expires = self._space.index.expires.sorted()
        now_ms = to_ms(now)
        # every expiry in an earlier millisecond is past; those in now's own millisecond
        # are compared exactly
        past: int = expires.bisect_left((now_ms, ""))
        edge = expires.irange((now_ms, ""), (now_ms + 1, ""), inclusive=(True, False))
        return len(docs) - past - sum(1 for _, sid in edge if docs[sid].head.is_expired(now))

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """A scan of the (index-narrowed) candidates with the reference matcher."""
        from sessionstore.query import evaluate, normalize_search_text

        normalize_search_text(text)
        self._check_open()
        flt = filter or SessionFilter()
        docs = self._space.docs
        with self._space.lock:
            candidates = self._space.index.candidates(flt, docs)
            ids = list(candidates) if candidates is not None else list(docs)
            found = [_materialize(docs[sid]) for sid in ids]
        return evaluate(found, flt, options, self.clock.now(), search=text)

    async def _shutdown(self) -> None:
        """Nothing to release: the data lives as long as the backend object."""
