"""BaseSessionStore: the whole :class:`SessionStore` contract on top of a few primitives.

A driver subclasses :class:`BaseSessionStore` and implements five primitives:

* ``_load(ids)`` - the stored sessions for ``ids`` (expired ones included), as private
  copies the caller may keep;
* ``_apply(mutations, atomic=True)`` - write :class:`Mutation` s, all or nothing, checking
  each ``expect`` version under the driver's own atomicity (a lock, a script, a
  transaction) and raising :class:`SessionConflictError` on a mismatch;
* ``_load_events(session_id, after_seq, limit, last)`` and ``_load_checkpoints``;
* ``_iter_sessions()`` - every stored session (for generic queries, expiry, scans).

Optional primitives with O(history) defaults, for the event log (a driver that declares
``Capabilities.event_log`` overrides them natively): ``_query_events`` (a filtered,
paged read), ``_find_events`` (stored events by seqs / keys) and ``_load_event_seqs``
(seqs only).

Everything else (validation, version checks, retries on write races, transactions,
checkpoints, queries through the reference evaluator, expiry, backup records, hooks) is
implemented here once. Drivers override public methods for speed (indexes, native
scripts) and must then keep the semantics, which the conformance suite checks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property, partial
from typing import Any, ClassVar, Final, Self, TypeVar, Unpack
from urllib.parse import SplitResult

import orjson

from . import observers
from ._eventlog import read_event_facts
from ._expiry import expire_due, remove_due
from ._planner import (
    CREATE_OP,
    EventFacts,
    EventRequest,
    Limits,
    Mutation,
    NeedEvents,
    Planner,
    Prepared,
    check_expected_version,
    check_new_fields,
    make_checkpoint,
    new_session,
    prepare,
    prepare_new,
    static_request,
)
from ._primitives import CAS_ATTEMPTS, StorePrimitives, sound_checkpoints
from ._record_copy import check_record, check_strategy, put_record, scan_records
from .clock import Clock, SystemClock
from .codec import checkpoint_digest
from .errors import (
    ConfigurationError,
    IntegrityError,
    InvalidArgumentError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    StoreUnavailableError,
    TransactionError,
    UnsupportedOperationError,
)
from .model import (
    TTL,
    UNSET,
    AppendOp,
    AppendResult,
    Checkpoint,
    CreateOp,
    DeleteEventsOp,
    DeleteOp,
    Event,
    EventInput,
    NewSession,
    NewSessionFields,
    Op,
    PopOp,
    PoppedEvents,
    RawEvent,
    Session,
    SessionChanges,
    SessionRecord,
    TrimOp,
    TruncateOp,
    Unset,
    UpdateOp,
    fast_append_op,
    fast_raw_event,
    fast_session_update,
    fast_update_op,
)
from .options import StoreOptions, build_options, options_from_query, redact_url, split_url
from .protocol import Capabilities, MergeStrategy, PutResult
from .query import Page, QueryOptions, SessionFilter, evaluate, matches
from .transaction import Transaction
from .validation import (
    validate_event_filters,
    validate_event_key,
    validate_label,
    validate_positive_int,
    validate_session_id,
    validate_ttl,
)

__all__ = ["BaseSessionStore", "Mutation"]

log = logging.getLogger("sessionstore")
T = TypeVar("T")

MAX_EVENTS_PAGE: Final = 100_000


class _PlanConflict(Exception):
    """A conflict found while planning (the caller's ``expected_version``): not retried."""

    def __init__(self, error: SessionConflictError) -> None:
        super().__init__(str(error))
        self.error = error


def _apply_one(prepared: Prepared, planner: Planner) -> Session | bool:
    return planner.apply(prepared)


_OPS: Final = (CreateOp, UpdateOp, DeleteOp, AppendOp, PopOp, TruncateOp, TrimOp, DeleteEventsOp)


class _BasePrimitives:
    """A base store's :class:`StorePrimitives`: its ``_``-methods under public names.

    It calls through the store on every call, so a driver's overrides (and a test's
    patches) of ``_load``, ``_apply`` ... are what backup, migrate and transactions use.
    """

    __slots__ = ("_store",)

    def __init__(self, store: BaseSessionStore) -> None:
        self._store = store

    @property
    def limits(self) -> Limits:
        return self._store._limits

    @property
    def clock(self) -> Clock:
        return self._store.clock

    @property
    def capabilities(self) -> Capabilities:
        return self._store.capabilities

    def check_open(self) -> None:
        self._store._check_open()

    async def load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        return await self._store._load(session_ids)

    async def apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        await self._store._apply(mutations, atomic=atomic)

    async def load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        return await self._store._load_events(
            session_id, after_seq=after_seq, limit=limit, last=last
        )

    async def load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._store._load_checkpoint(session_id, checkpoint_id)

    async def load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        return await self._store._load_checkpoints(session_id)

    async def load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        return await self._store._load_checkpoints_many(session_ids)

    def iter_sessions(self) -> AsyncIterator[Session]:
        return self._store._iter_sessions()

    def report_corrupt(self, error: IntegrityError) -> None:
        self._store._report_corrupt(error)

    def after_write(self, mutations: Sequence[Mutation]) -> None:
        self._store._after_write(mutations)

    async def commit_prepared(self, prepared: Sequence[Prepared]) -> list[Session | bool]:
        return await self._store._commit_prepared(prepared)


class BaseSessionStore(ABC):
    """Generic implementation of the :class:`~sessionstore.SessionStore` protocol."""

    #: The typed options of this driver (a :class:`StoreOptions` subclass).
    Options: ClassVar[type[StoreOptions]] = StoreOptions
    #: What this driver promises (instances may refine it through :attr:`capabilities`).
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()
    #: A write that lost a race to another writer tries again at once twice, then after a
    #: random pause of up to this many seconds times the attempt's number (about 2.5 s in
    #: all for a write that loses all ``CAS_ATTEMPTS``).
    _cas_backoff: float = 0.001

    def __init__(self, *, clock: Clock | None = None, **options: Any) -> None:
        self.options = build_options(self.Options, options)
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigurationError("clock must provide now() and async sleep()")
        self.clock: Clock = clock or SystemClock()
        self._limits = Limits(self.options.max_session_bytes, self.options.max_event_bytes)
        self._url: str | None = None  # redacted: no password is kept with the store
        self._state = "new"  # new -> open -> closed
        self._corrupt: dict[str, str] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Self:
        """Build the store from its URL; query options are typed, keywords override them."""
        parts, query = split_url(url)
        values = cls._options_from_url(parts)
        values.update(options_from_query(cls.Options, query))
        values.update(overrides)
        store = cls(**values)
        store._url = redact_url(url)  # the password is never kept (only the options use it)
        return store

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        """Options encoded in the URL outside its query (host, path...). Override."""
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"{parts.scheme}:// URLs take no host or path, got {redact_url(parts.geturl())!r}"
            )
        return {}

    @property
    def capabilities(self) -> Capabilities:
        """What this store promises (see :class:`Capabilities`)."""
        return self.CAPABILITIES

    @property
    def namespace(self) -> str:
        """The namespace isolating this store's sessions."""
        return self.options.namespace

    @property
    def url(self) -> str | None:
        """The URL the store was opened with, password redacted."""
        # `_url` is kept redacted; redacting again guards a subclass that sets it itself
        return None if self._url is None else redact_url(self._url)

    def __repr__(self) -> str:
        where = f"{self.url!r}, " if self._url else ""
        return f"{type(self).__name__}({where}namespace={self.namespace!r})"

    # ------------------------------------------------------------------ lifecycle

    async def initialize(self) -> None:
        """Connect / open the backend. Idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise StoreUnavailableError(f"{self!r} was shut down; open a new store")
        await self._initialize()
        self._state = "open"

    async def shutdown(self) -> None:
        """Release the backend. Idempotent."""
        if self._state == "open":
            self._state = "closed"
            await self._shutdown()
        self._state = "closed"

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def _check_open(self) -> None:
        if self._state != "open":
            if self._state == "new":
                raise StoreUnavailableError(
                    f"{self!r} is not initialised: "
                    "use 'async with store' or 'await store.initialize()'"
                )
            raise StoreUnavailableError(f"{self!r} was shut down")

    async def _initialize(self) -> None:
        """Driver hook: open connections, files, load scripts."""

    async def _shutdown(self) -> None:
        """Driver hook: close what ``_initialize`` opened."""

    # ------------------------------------------------------------------ primitives

    @abstractmethod
    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        """Stored sessions for ``session_ids`` (expired included; absent ids left out)."""

    @abstractmethod
    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """Write ``mutations`` all or nothing (``atomic=False``: each on its own).

        Must raise :class:`SessionConflictError` without writing when a stored version
        differs from ``Mutation.expect`` (``0``: the session must not exist).
        """

    @abstractmethod
    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        """Events with ``seq > after_seq`` in order: the first ``limit`` or the last ``last``."""

    @abstractmethod
    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Every readable checkpoint of the session, oldest first (digests not verified).

        A checkpoint record that cannot be read (undecodable, wrong type, a symlink) is
        left out and reported with :meth:`_report_corrupt` (an :class:`IntegrityError`
        whose ``record`` is ``<session id>/checkpoints/<checkpoint id>``), never raised:
        one bad record must not take the session's listing, its next checkpoint or a
        backup down. :meth:`_load_checkpoint` still raises for it.
        """

    async def _load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint (digest not verified), ``None`` when there is none by that id.

        Optional primitive: a corrupt record raises :class:`IntegrityError`. The default
        looks the id up in :meth:`_load_checkpoints` (so a record that method leaves out
        reads as missing); override it to read the one record, strictly.
        """
        for cp in await self._load_checkpoints(session_id):
            if cp.id == checkpoint_id:
                return cp
        return None

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        """``_load_checkpoints`` of several sessions: id -> checkpoints (absent ids: ``[]``
        or left out). Used by backup, a window of sessions at a time.

        Optional primitive: the default calls ``_load_checkpoints`` per id (concurrently on
        a driver that does I/O). Override it to read them all in one round trip (one
        pipeline, one thread hop).
        """
        caps = self.capabilities
        if len(session_ids) < 2 or not (caps.durable or caps.cross_process):
            return {sid: await self._load_checkpoints(sid) for sid in session_ids}
        tasks = [asyncio.ensure_future(self._load_checkpoints(sid)) for sid in session_ids]
        try:
            found = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return dict(zip(session_ids, found, strict=True))

    @abstractmethod
    def _iter_sessions(self) -> AsyncIterator[Session]:
        """Every stored session, expired included, in any order."""

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
        """Events with ``after_seq < seq < before_seq``, of one of ``types``, with
        ``at_after < at < at_before`` (each bound optional), ascending: the first
        ``limit`` or the newest ``last`` of them (``0``: ``[]``).

        Optional primitive: the default filters :meth:`_load_events` in Python, O(history)
        for anything but a plain window. A driver declaring ``event_log`` overrides it
        with an indexed read (O(page)).
        """
        if limit == 0 or last == 0:
            return []
        if before_seq is None and types is None and at_after is None and at_before is None:
            return await self._load_events(session_id, after_seq=after_seq, limit=limit, last=last)
        events = await self._load_events(session_id, after_seq=after_seq, limit=None, last=None)
        out = [
            e
            for e in events
            if (before_seq is None or e.seq < before_seq)
            and (types is None or e.type in types)
            and (at_after is None or e.at > at_after)
            and (at_before is None or e.at < at_before)
        ]
        if limit is not None:
            return out[:limit]
        if last is not None:
            return out[-last:]
        return out

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        """The stored events whose seq is in ``seqs`` or whose key is in ``keys``
        (missing ones left out), ascending.

        Optional primitive: the default scans :meth:`_load_events` (O(history)); a driver
        declaring ``event_log`` overrides it with lookups (O(len(seqs) + len(keys))).
        """
        if not seqs and not keys:
            return []
        seq_set, key_set = set(seqs), set(keys)
        events = await self._load_events(session_id, after_seq=0, limit=None, last=None)
        return [e for e in events if e.seq in seq_set or (e.key is not None and e.key in key_set)]

    async def _load_event_seqs(
        self, session_id: str, *, after_seq: int = 0, last: int | None = None
    ) -> list[int]:
        """The seqs of the stored events above ``after_seq``, ascending (the newest
        ``last`` of them when given).

        Optional primitive: the default reads the events with :meth:`_load_events`; a
        driver may read the seqs only.
        """
        events = await self._load_events(session_id, after_seq=after_seq, limit=None, last=last)
        return [e.seq for e in events]

    async def _read_event_facts(
        self, requests: Mapping[str, EventRequest], facts: dict[str, EventFacts]
    ) -> None:
        """Read what ``requests`` ask of the stored events into ``facts`` (through the
        primitives above; see :mod:`sessionstore.driver`'s ``EventFacts``)."""
        await read_event_facts(
            requests,
            facts,
            load=self._load,
            query_events=self._query_events,
            load_event_seqs=self._load_event_seqs,
            find_events=self._find_events,
        )

    # ------------------------------------------------------------------ write engine

    _MAX_CORRUPT_REPORTS: ClassVar[int] = 1000

    def _report_corrupt(self, error: IntegrityError) -> None:
        """Record (and log) a corrupt record that a scan skipped.

        Drivers call this from ``_iter_sessions`` (and similar scans) instead of raising, so
        one corrupt record never takes a listing, a cleanup or a backup down.
        """
        log.warning("skipping corrupt record %s: %s", error.record or "?", error)
        if len(self._corrupt) < self._MAX_CORRUPT_REPORTS:
            self._corrupt[error.record or f"#{len(self._corrupt)}"] = str(error)

    @cached_property
    def primitives(self) -> StorePrimitives:
        """This store's :class:`~sessionstore.driver.StorePrimitives` (what backup,
        migrate and transactions use): the ``_``-methods the driver implements, under
        public names."""
        return _BasePrimitives(self)

    @property
    def corrupt_records(self) -> dict[str, str]:
        """Corrupt records skipped by scans so far: record name -> problem."""
        return dict(self._corrupt)

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if observers.has_observers(hook):
            observers.notify(hook, store=self, **kwargs)

    def _notify_conflict(self, exc: SessionConflictError) -> None:
        """Fire ``sessionstore_conflict`` for a refused write (before it is raised)."""
        self._notify(
            "sessionstore_conflict",
            session_id=exc.session_id,
            expected=exc.expected,
            actual=exc.actual,
        )

    def _after_write(self, mutations: Sequence[Mutation]) -> None:
        for mut in mutations:
            if mut.delete:
                self._notify("sessionstore_session_deleted", session_id=mut.session_id)
            elif mut.session is not None:
                hook = (
                    "sessionstore_session_created"
                    if mut.created
                    else "sessionstore_session_updated"
                )
                self._notify(hook, session=mut.session)

    async def _load_and_apply(
        self,
        load_ids: Sequence[str],
        build: Callable[[Mapping[str, Session]], list[Mutation]],
        *,
        atomic: bool = True,
    ) -> list[Mutation]:
        """Load ``load_ids``, plan with ``build``, apply the mutations it returns.

        The default is ``_load`` then ``_apply`` (which re-checks every version). A driver
        that can read and write under one lock (or in one round trip) may override this to
        do all three in one step, e.g. one worker-thread hop. ``build`` is pure: no I/O and
        no awaiting, so it may run in a worker thread; whatever it raises (not found,
        exists, quota, a conflict with ``expected_version``) must propagate unchanged.
        Returns the mutations written (empty: nothing to write).
        """
        loaded = await self._load(load_ids) if load_ids else {}
        mutations = build(loaded)
        if mutations:
            await self._apply(mutations, atomic=atomic)
        return mutations

    async def _create_new(self, session: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """Write a new session whose id was just generated; ``False`` if the id is taken.

        ``create_session`` without an ``id`` calls this instead of loading and planning: a
        fresh ULID cannot exist, so one conditional write (expect version 0) is enough.
        ``session`` is version 1 with its data and metadata encoded as given. The default
        is ``_apply`` of one :class:`Mutation`; a driver may override it with a cheaper
        insert-if-absent. Hooks are called by the caller, not here.
        """
        mutation = Mutation(session.id, 0, session, data_json, metadata_json, created=True)
        try:
            await self._apply([mutation])
        except SessionConflictError:
            return False
        return True

    async def _execute(
        self,
        load_ids: Sequence[str],
        plan: Callable[[Planner], T],
        *,
        atomic: bool = True,
        requests: Mapping[str, EventRequest] | None = None,
    ) -> T:
        """Load, plan, apply with CAS; re-plan on a write race (bounded).

        ``requests``: event reads the plan needs (read first); the planner asks for
        more with :class:`~sessionstore.driver.NeedEvents`, then they are read and the
        plan runs again.
        """
        self._check_open()
        last_error: SessionConflictError | None = None
        facts: dict[str, EventFacts] = {}
        gapless = not self.capabilities.event_log
        if requests:
            await self._read_event_facts(requests, facts)
        for attempt in range(CAS_ATTEMPTS):
            now = self.clock.now()
            outcome: list[T] = []

            def build(
                loaded: Mapping[str, Session], now: datetime = now, outcome: list[T] = outcome
            ) -> list[Mutation]:
                planner = Planner(loaded, now, self._limits, facts, gapless=gapless)
                try:
                    outcome.append(plan(planner))
                except SessionConflictError as error:
                    raise _PlanConflict(error) from None
                return planner.mutations()

            try:
                mutations = await self._load_and_apply(load_ids, build, atomic=atomic)
            except _PlanConflict as planned:
                exc = planned.error
                self._notify_conflict(exc)
                raise exc from None
            except NeedEvents as need:
                await self._read_event_facts({need.session_id: need.request}, facts)
                continue
            except SessionConflictError as exc:
                # Another writer got in between our read and our write: re-read and
                # re-plan. A caller's expected_version is re-checked by the new plan.
                last_error = exc
                pause = 0.0 if attempt < 3 else random.uniform(0, self._cas_backoff * attempt)
                await asyncio.sleep(pause)
                continue
            if mutations:
                self._after_write(mutations)
            return outcome[-1]  # the plan that was applied (a driver may re-run it)
        if last_error is None:
            raise StoreUnavailableError(
                "the session's events kept changing while a write was planned; try again"
            )
        raise last_error

    def _check_capable(self, prepared: Prepared) -> None:
        if prepared.needs_event_log and not self.capabilities.event_log:
            raise UnsupportedOperationError(
                f"{type(self).__name__} does not support this event-log operation "
                f"({type(prepared.op).__name__} with keys, caller-set 'at', pop, truncate "
                "or delete of events need the event_log capability)"
            )

    async def _commit_prepared(self, prepared: Sequence[Prepared]) -> list[Session | bool]:
        for p in prepared:
            self._check_capable(p)
        max_batch = self.capabilities.max_batch
        if max_batch is not None and len(prepared) > max_batch:
            raise TransactionError(
                f"batch of {len(prepared)} ops is over this driver's max of {max_batch}"
            )
        load = [
            p.session_id
            for p in prepared
            if not (isinstance(p.op, CreateOp) and p.op.new.id is None)
        ]

        def plan(planner: Planner) -> list[Session | bool]:
            return [planner.apply(p) for p in prepared]

        return await self._execute(
            list(dict.fromkeys(load)), plan, requests=self._requests(prepared)
        )

    def _requests(self, prepared: Sequence[Prepared]) -> dict[str, EventRequest]:
        gapless = not self.capabilities.event_log
        out: dict[str, EventRequest] = {}
        for p in prepared:
            req = static_request(p, gapless)
            if req is not None:
                if p.session_id in out:
                    out[p.session_id].merge(req)
                else:
                    out[p.session_id] = req
        return out

    async def _single(self, op: Op) -> Any:
        """One update, delete or append (a create goes through ``create_session``)."""
        prepared = prepare(op, self._limits)
        self._check_capable(prepared)
        return await self._execute(
            [prepared.session_id],
            partial(_apply_one, prepared),
            requests=self._requests([prepared]),
        )

    # ------------------------------------------------------------------ sessions

    async def create_session(self, **fields: Unpack[NewSessionFields]) -> Session:
        """Create a session (a ULID id unless ``id`` is given). Version 1.

        Arguments: ``processor_id``, ``data``, ``metadata``, ``tags``, ``status``, ``ttl``
        or ``expires_at``, ``id``, ``group`` (see :class:`NewSession`). Raises
        :class:`SessionExistsError` when ``id`` is taken by a live session.
        """
        check_new_fields(fields)
        prepared = prepare_new(self._limits, CREATE_OP, **fields)
        if fields.get("id") is None:
            # A fresh ULID cannot exist yet: no read, one conditional write (expect 0).
            self._check_open()
            session = new_session(prepared, self.clock.now())
            assert prepared.data is not None and prepared.metadata is not None
            if await self._create_new(session, prepared.data[0], prepared.metadata[0]):
                self._notify("sessionstore_session_created", session=session)
                return session
            # an id collision after all: the general path reports it properly
        created: Session | bool = await self._execute(
            [prepared.session_id], partial(_apply_one, prepared)
        )
        assert isinstance(created, Session)
        return created

    async def get_session(
        self, session_id: str, *, include_expired: bool = False
    ) -> Session | None:
        """The session, or ``None`` when it does not exist or has expired."""
        validate_session_id(session_id)
        self._check_open()
        session = (await self._load([session_id])).get(session_id)
        if session is None or (not include_expired and session.is_expired(self.clock.now())):
            return None
        return session

    async def get_sessions(
        self, session_ids: Iterable[str], *, include_expired: bool = False
    ) -> dict[str, Session]:
        """The live sessions among ``session_ids``, by id (missing ones left out)."""
        ids = self._check_get_sessions(session_ids)
        if not ids:
            return {}
        return self._live_sessions(ids, await self._load(ids), include_expired)

    def _check_get_sessions(self, session_ids: Iterable[str]) -> list[str]:
        """What ``get_sessions`` checks before reading: the ids, once each, in order (a
        driver's blocking reads for ``sessionstore.sync`` share it)."""
        if isinstance(session_ids, str):
            raise InvalidArgumentError("get_sessions takes a collection of ids, not one string")
        ids = list(dict.fromkeys(validate_session_id(i) for i in session_ids))
        self._check_open()
        return ids

    def _live_sessions(
        self, ids: list[str], loaded: Mapping[str, Session], include_expired: bool
    ) -> dict[str, Session]:
        """``get_sessions``'s result from the sessions ``_load`` found."""
        now = self.clock.now()
        return {
            sid: s
            for sid in ids
            if (s := loaded.get(sid)) is not None and (include_expired or not s.is_expired(now))
        }

    async def update_session(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        **changes: Unpack[SessionChanges],
    ) -> Session:
        """Change part of a session; version + 1. The changes are :class:`SessionUpdate`'s
        fields (``data`` or ``merge_data``, ``metadata`` or ``merge_metadata``,
        ``remove_*_keys``, ``status``, ``processor_id``, ``tags`` or ``add_tags`` /
        ``remove_tags``, ``expires_at`` or ``ttl``)."""
        update = fast_session_update(**changes)
        result: Session = await self._single(fast_update_op(session_id, update, expected_version))
        return result

    async def delete_session(self, session_id: str, *, expected_version: int | None = None) -> bool:
        """Delete a session with its events and checkpoints; False if there was none."""
        result: bool = await self._single(DeleteOp(session_id, expected_version, missing_ok=True))
        return result

    async def touch(
        self, session_id: str, *, ttl: TTL | None = None, expected_version: int | None = None
    ) -> Session:
        """Sliding expiry: set ``updated_at``; with ``ttl`` also ``expires_at = now + ttl``."""
        validate_session_id(session_id)
        delta = None if ttl is None else validate_ttl(ttl)
        expected = check_expected_version(expected_version)
        return await self._execute(
            [session_id], lambda planner: planner.touch(session_id, delta, expected)
        )

    # ------------------------------------------------------------------ events

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
        """Append events in one atomic step (version + 1 for the call, not per event).

        * ``create`` - ``True`` (or a :class:`NewSession` whose ``id`` is ``None`` or
          ``session_id``, for its fields): a missing session is created with the events,
          in the same step (version 1).
        * ``ttl`` / ``expires_at`` - set the session's expiry in the same write.
        * Keyed events (``EventInput(key=...)``): one whose key is already kept with the
          same ``type`` and ``data`` is not written again; other content raises
          :class:`EventKeyConflictError` and nothing is written. A call that has nothing
          to write (every event already there, no create, no expiry) leaves the version.
          :meth:`append_events_detailed` tells which events were new.
        """
        if create is False and ttl is None and expires_at is UNSET:
            op = fast_append_op(session_id, events, expected_version)
        else:
            op = AppendOp(session_id, events, expected_version, create, ttl, expires_at)
        result: Session = await self._single(op)
        return result

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
        """:meth:`append_events`, returning an :class:`AppendResult`: the new session and,
        for each input event, the stored event and whether this call wrote it."""
        prepared = prepare(
            AppendOp(session_id, events, expected_version, create, ttl, expires_at), self._limits
        )
        self._check_capable(prepared)

        def plan(planner: Planner) -> AppendResult:
            session = planner.append_prepared(prepared)
            stored, new = planner.appended[-1]
            return AppendResult(session, stored, new)

        return await self._execute([prepared.session_id], plan, requests=self._requests([prepared]))

    @staticmethod
    def _check_event_read(
        session_id: str,
        after_seq: int,
        before_seq: int | None,
        limit: int | None,
        last: int | None,
        types: Iterable[str] | None,
        at_after: datetime | None,
        at_before: datetime | None,
    ) -> tuple[frozenset[str] | None, datetime | None, datetime | None]:
        """``get_events``' (and ``get_raw_events``') arguments checked, with the same
        errors on every driver: the id, the window, then the filters; returns
        :func:`~sessionstore.validation.validate_event_filters`' ``(types, at_after,
        at_before)``."""
        validate_session_id(session_id)
        validate_positive_int(after_seq, "after_seq", maximum=2**62, allow_zero=True)
        if limit is not None:
            validate_positive_int(limit, "limit", maximum=MAX_EVENTS_PAGE, allow_zero=True)
        if last is not None:
            validate_positive_int(last, "last", maximum=MAX_EVENTS_PAGE, allow_zero=True)
        if limit is not None and last is not None:
            raise InvalidArgumentError("give limit or last, not both")
        return validate_event_filters(before_seq, types, at_after, at_before)

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
        """Events in ascending seq order: those with ``after_seq < seq < before_seq``, of
        one of ``types``, with ``at_after < at < at_before`` (bounds exclusive, each
        optional); the first ``limit`` or the newest ``last`` of them (``0``: ``[]``).

        Raises :class:`SessionNotFoundError` for a missing or expired session.
        """
        kinds, low, high = self._check_event_read(
            session_id, after_seq, before_seq, limit, last, types, at_after, at_before
        )
        if await self.get_session(session_id) is None:
            raise SessionNotFoundError(session_id)
        if limit == 0 or last == 0:
            return []
        if before_seq is None and kinds is None and low is None and high is None:
            return await self._load_events(session_id, after_seq=after_seq, limit=limit, last=last)
        return await self._query_events(
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            last=last,
            types=kinds,
            at_after=low,
            at_before=high,
        )

    async def get_raw_events(
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
    ) -> list[RawEvent]:
        """:meth:`get_events`, each event's data left as JSON (:class:`RawEvent`'s
        ``data_json``), for a caller that parses or forwards it itself: the same events,
        arguments and errors.

        This generic version encodes the data :meth:`get_events` decoded (the memory,
        file and Redis drivers use it: their stored records hold more than the data, and
        are parsed whole to be checked); the SQLite and PostgreSQL drivers hand over the
        JSON of each event's row without parsing it.
        """
        events = await self.get_events(
            session_id,
            after_seq=after_seq,
            before_seq=before_seq,
            limit=limit,
            last=last,
            types=types,
            at_after=at_after,
            at_before=at_before,
        )
        dumps = orjson.dumps
        return [fast_raw_event(e.seq, e.type, e.at, dumps(e.data), e.key) for e in events]

    def _require_event_log(self, what: str) -> None:
        if not self.capabilities.event_log:
            raise UnsupportedOperationError(
                f"{type(self).__name__} does not support {what} "
                "(its driver does not declare the event_log capability)"
            )

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        """The kept event with this ``key``, ``None`` when there is none.

        Raises :class:`SessionNotFoundError` for a missing or expired session.
        """
        validate_session_id(session_id)
        validate_event_key(key, "key")
        self._require_event_log("get_event")
        if await self.get_session(session_id) is None:
            raise SessionNotFoundError(session_id)
        found = await self._find_events(session_id, keys=[key])
        return next((e for e in found if e.key == key), None)

    async def trim_events(
        self, session_id: str, *, keep_last: int, expected_version: int | None = None
    ) -> Session:
        """Drop all but the newest ``keep_last`` events (sequence numbers are never reused)."""
        result: Session = await self._single(TrimOp(session_id, keep_last, expected_version))
        return result

    async def pop_events(
        self, session_id: str, n: int = 1, *, expected_version: int | None = None
    ) -> PoppedEvents:
        """Remove the newest ``n`` events atomically (fewer when fewer are kept) and
        return them (ascending seq) with the new session; an empty log: no write."""
        prepared = prepare(PopOp(session_id, n, expected_version), self._limits)
        self._check_capable(prepared)

        def plan(planner: Planner) -> PoppedEvents:
            session = planner.pop(prepared.session_id, prepared.count, prepared.expected_version)
            return PoppedEvents(planner.popped[-1], session)

        return await self._execute([prepared.session_id], plan, requests=self._requests([prepared]))

    async def truncate_events(
        self, session_id: str, after_seq: int, *, expected_version: int | None = None
    ) -> Session:
        """Drop every event with ``seq > after_seq`` (none there: no write)."""
        result: Session = await self._single(TruncateOp(session_id, after_seq, expected_version))
        return result

    async def delete_events(
        self,
        session_id: str,
        *,
        seqs: Iterable[int] = (),
        keys: Iterable[str] = (),
        expected_version: int | None = None,
    ) -> Session:
        """Drop the events with these ``seqs`` or ``keys`` atomically (missing ones
        ignored; none found: no write)."""
        op = DeleteEventsOp(session_id, seqs, keys, expected_version)
        result: Session = await self._single(op)
        return result

    # ------------------------------------------------------------------ checkpoints

    async def save_checkpoint(
        self, session_id: str, *, label: str | None = None, keep_last: int | None = None
    ) -> Checkpoint:
        """Snapshot the session (data, metadata, status, tags, version, event counters).

        ``keep_last`` (default: the ``checkpoint_keep_last`` option) prunes the oldest.
        Saving a checkpoint does not change the session's version.
        """
        validate_session_id(session_id)
        label = validate_label(label)
        if keep_last is None:
            keep_last = self.options.checkpoint_keep_last
        if keep_last is not None:
            validate_positive_int(keep_last, "keep_last", maximum=1_000_000)
        self._check_open()
        existing: list[str] = []
        if keep_last:
            # Only sound checkpoints count and are pruned: a corrupt one (unreadable, or
            # its digest does not match) is left where it is, reported, for `doctor` to
            # quarantine or `delete_checkpoint` to remove; pruning never destroys it.
            loaded = await self._load_checkpoints(session_id)
            existing = [cp.id for cp in sound_checkpoints(self.primitives, session_id, loaded)]

        def plan(planner: Planner) -> Checkpoint:
            session = planner.require(session_id, None)
            cp = make_checkpoint(session, label, planner.now)
            drop = existing[: max(0, len(existing) + 1 - keep_last)] if keep_last else []
            planner.add_checkpoint(cp, drop)
            return cp

        cp = await self._execute([session_id], plan)
        self._notify("sessionstore_checkpoint_created", checkpoint=cp)
        return cp

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """The session's checkpoints, oldest first, each digest verified.

        A corrupt checkpoint (unreadable, or its digest does not match) is left out and
        reported in :attr:`corrupt_records` and the ``sessionstore`` log;
        :meth:`get_checkpoint` of it raises :class:`IntegrityError`.
        """
        if await self.get_session(session_id) is None:
            raise SessionNotFoundError(session_id)
        loaded = await self._load_checkpoints(session_id)
        return sound_checkpoints(self.primitives, session_id, loaded)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint, its digest verified (:class:`IntegrityError` when the record is
        corrupt or the digest does not match)."""
        validate_session_id(checkpoint_id, "checkpoint id")
        if await self.get_session(session_id) is None:
            raise SessionNotFoundError(session_id)
        cp = await self._load_checkpoint(session_id, checkpoint_id)
        if cp is None:
            raise SessionNotFoundError(f"{session_id}/checkpoint/{checkpoint_id}")
        if checkpoint_digest(cp) != cp.digest:
            raise IntegrityError(
                "checkpoint digest does not match its content",
                f"{session_id}/checkpoints/{checkpoint_id}",
            )
        return cp

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        """Delete one checkpoint (a corrupt one too); False when it did not exist."""
        validate_session_id(session_id)
        validate_session_id(checkpoint_id, "checkpoint id")
        self._check_open()
        try:
            found = await self._load_checkpoint(session_id, checkpoint_id) is not None
        except IntegrityError:
            found = True  # there, but corrupt: deleting it is how a caller gets rid of it
        if not found:
            return False

        def plan(planner: Planner) -> bool:
            planner.require(session_id, None)
            planner.drop_checkpoint(session_id, checkpoint_id)
            return True

        return await self._execute([session_id], plan)

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, expected_version: int | None = None
    ) -> Session:
        """Write the checkpoint's snapshot back as a new version; later events stay."""
        expected = check_expected_version(expected_version)
        cp = await self.get_checkpoint(session_id, checkpoint_id)
        return await self._execute(
            [session_id], lambda planner: planner.restore_checkpoint(cp, expected)
        )

    # ------------------------------------------------------------------ queries

    async def _all_sessions(self) -> list[Session]:
        self._check_open()
        return [s async for s in self._iter_sessions()]

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One page of sessions matching ``filter``, ordered and paged by ``options``."""
        return evaluate(await self._all_sessions(), filter, options, self.clock.now())

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """How many sessions match ``filter``."""
        flt = filter or SessionFilter()
        now = self.clock.now()
        return sum(1 for s in await self._all_sessions() if matches(s, flt, now))

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """Case-insensitive plain-text search over id, processor, tags and string values."""
        return evaluate(await self._all_sessions(), filter, options, self.clock.now(), search=text)

    # ------------------------------------------------------------------ batches

    async def commit(self, ops: Sequence[Op]) -> list[Session | bool]:
        """Apply a batch of ops all or nothing: :class:`CreateOp`, :class:`UpdateOp`,
        :class:`DeleteOp`, :class:`AppendOp`, :class:`PopOp`, :class:`TruncateOp`,
        :class:`TrimOp`, :class:`DeleteEventsOp`. One result per op: the new session
        (a bool for a delete)."""
        if isinstance(ops, _OPS) or not isinstance(ops, Sequence):
            raise InvalidArgumentError("commit takes a list of ops")
        prepared = [prepare(op, self._limits) for op in ops]
        if not prepared:
            return []
        return await self._commit_prepared(prepared)

    def transaction(self) -> Transaction:
        """Stage writes in ``async with store.transaction() as tx:``; commit on exit."""
        return Transaction(self)

    # ------------------------------------------------------------------ expiry

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        """Stored sessions whose expiry is due (drivers with an expiry index override)."""
        return [s for s in await self._all_sessions() if s.is_expired(now)]

    async def expire_sessions(self) -> list[str]:
        """Mark due sessions ``expired`` (version + 1); returns their ids."""
        self._check_open()
        due = await self._expired_sessions(self.clock.now())
        return await expire_due(due, self._execute, self._notify)

    async def cleanup_expired_sessions(self) -> int:
        """Remove due sessions with their events, checkpoints and index entries."""
        self._check_open()
        due = await self._expired_sessions(self.clock.now())
        return await remove_due(due, self._execute, self._notify)

    # ------------------------------------------------------------------ whole records

    async def scan(
        self, *, include_expired: bool = False, filter: SessionFilter | None = None
    ) -> AsyncIterator[SessionRecord]:
        """Stream whole records (session, events, checkpoints) for backup."""
        self._check_open()
        flt = filter or SessionFilter(include_expired=include_expired)
        if include_expired and not flt.include_expired:
            raise InvalidArgumentError(
                "give include_expired in the filter or the argument, not both"
            )
        async for record in scan_records(self.primitives, flt):
            yield record

    def _check_record(self, record: SessionRecord) -> tuple[bytes, bytes]:
        """A record's data and metadata JSON, checked for ``put_records``."""
        return check_record(record, self._limits, event_log=self.capabilities.event_log)

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult:
        """Write whole records back exactly (ids, versions, timestamps, events, checkpoints).

        ``strategy`` decides what happens to a session that exists: ``skip_existing``,
        ``overwrite``, ``update_newer`` (newer ``updated_at``, then higher ``version``
        wins) or ``fail_on_conflict`` (:class:`SessionExistsError`, nothing of this call
        written).
        """
        check_strategy(strategy)
        batch = list(records)
        encoded = [self._check_record(r) for r in batch]
        self._check_open()
        ids = [r.session.id for r in batch]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("put_records got the same session twice in one call")
        existing = await self._load(ids)
        now = self.clock.now()
        if strategy == "fail_on_conflict":
            for sid in ids:
                if (s := existing.get(sid)) is not None and not s.is_expired(now):
                    raise SessionExistsError(sid)
        total = PutResult()
        for record, (data_json, meta_json) in zip(batch, encoded, strict=True):
            total += await self._put_record(
                record, data_json, meta_json, strategy, existing.get(record.session.id)
            )
        return total

    async def _put_record(
        self,
        record: SessionRecord,
        data_json: bytes,
        meta_json: bytes,
        strategy: str,
        stored: Session | None,
    ) -> PutResult:
        """Write one checked record (a driver that batches restores calls this per record)."""
        return await put_record(self.primitives, record, data_json, meta_json, strategy, stored)
