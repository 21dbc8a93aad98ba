"""SqliteStore: the ``sqlite://`` driver. One database file, durable, multi-process, indexed.

Each call makes one worker-thread hop (the store's own :class:`EngineThreads`) into the
synchronous :class:`~sessionstore_sqlite._engine.Engine`: a write reads, plans and
writes inside one ``BEGIN IMMEDIATE`` transaction; a query is one SQL statement. No
SQLite call and no lock wait ever runs on the event loop.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar, cast
from urllib.parse import SplitResult, unquote

from sessionstore import (
    UNSET,
    BaseSessionStore,
    Capabilities,
    Checkpoint,
    ConfigurationError,
    Event,
    EventInput,
    IntegrityError,
    InvalidArgumentError,
    MergeStrategy,
    Mutation,
    NewSession,
    Page,
    PutResult,
    QueryOptions,
    RawEvent,
    Session,
    SessionConflictError,
    SessionExistsError,
    SessionFilter,
    SessionNotFoundError,
    SessionRecord,
    StoreOptions,
    StoreUnavailableError,
)
from sessionstore.clock import to_ms
from sessionstore.driver import (
    EngineThreads,
    EventFacts,
    EventRequest,
    Planner,
    Prepared,
    check_strategy,
    merge_decision,
    prepare,
)
from sessionstore.model import TTL, Unset, fast_append_op
from sessionstore.options import redact_url
from sessionstore.query import decode_cursor, normalize_search_text, query_fingerprint
from sessionstore.validation import (
    validate_event_key,
    validate_session_id,
)

from ._engine import Engine
from ._events import EventWindow

__all__ = ["SqliteOptions", "SqliteStore"]

T = TypeVar("T")
E = TypeVar("E", Event, RawEvent)
_SCAN_PAGE = 256


@dataclass(frozen=True)
class SqliteOptions(StoreOptions):
    """Options of ``sqlite://`` (besides the common ones).

    * ``path`` - the database file (from the URL: ``sqlite:///abs/path.db`` or
      ``sqlite://./relative.db``); created (0600) if missing unless ``create=False``.
      Its directory must exist. ``:memory:`` is refused: use ``memory://``.
    * ``durability`` - ``"fsync"`` (default, ``PRAGMA synchronous=FULL``): every
      acknowledged write was fsynced and survives a power loss. ``"none"``
      (``synchronous=NORMAL``): writes stay atomic and survive a crash of the process,
      but a power loss may lose the last transactions (never corrupts the database).
    * ``lock_timeout`` - seconds to wait for the database's write lock (held by another
      connection or process) before :class:`StoreUnavailableError`.
    """

    path: str = ""
    durability: Literal["fsync", "none"] = "fsync"
    lock_timeout: float = 30.0
    create: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigurationError(
                "the sqlite store needs a database file: sqlite:///abs/path.db, "
                "sqlite://./relative.db or path=..."
            )
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigurationError(
                f"sqlite store path {self.path!r} is not supported: give a file path "
                "(for a private in-memory store use memory://)"
            )
        if not self.lock_timeout > 0:
            raise ConfigurationError("option 'lock_timeout' must be positive")


def _window(
    after_seq: int,
    before_seq: int | None,
    limit: int | None,
    last: int | None,
    types: frozenset[str] | None,
    at_after: datetime | None,
    at_before: datetime | None,
) -> EventWindow:
    """The engine's window (``0`` counts read nothing: one row keeps the liveness check
    in the statement; the caller returns ``[]``)."""
    return EventWindow(
        after_seq,
        before_seq,
        1 if limit == 0 else limit,
        1 if last == 0 else last,
        None if types is None else tuple(sorted(types)),
        None if at_after is None else to_ms(at_after),
        None if at_before is None else to_ms(at_before),
    )


def _apply_one(prepared: Prepared, planner: Planner) -> Session | bool:
    return planner.apply(prepared)


def _unavailable(path: str, exc: sqlite3.Error | OSError) -> StoreUnavailableError:
    """The store's error for a failed SQLite call or I/O error in its engine."""
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailableError(f"sqlite store {path!r}: {exc}")
    return StoreUnavailableError(f"I/O error in sqlite store {path!r}: {exc.strerror or exc}")


class _Refused(Exception):
    """The plan refused the write (the caller's expected version): not retried."""

    def __init__(self, error: SessionConflictError) -> None:
        super().__init__(str(error))
        self.error = error


class SqliteStore(BaseSessionStore):
    """Sessions in one SQLite database file: durable, safe across processes, indexed."""

    Options = SqliteOptions
    CAPABILITIES = Capabilities(
        atomic_multi_session=True,
        shared_namespace=True,
        cross_process=True,
        durable=True,
        native_ttl=False,
        indexed_query=True,
        any_event_loop=True,
        event_log=True,
    )
    options: SqliteOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.path = os.path.abspath(os.path.expanduser(self.options.path))
        self._engine = Engine(
            self.path,
            self.namespace,
            durable=self.options.durability == "fsync",
            lock_timeout=self.options.lock_timeout,
            create=self.options.create,
        )
        self._threads = EngineThreads(
            "sessionstore-sqlite", (sqlite3.Error, OSError), partial(_unavailable, self.path)
        )
        self._capabilities = (
            self.CAPABILITIES
            if self.options.durability == "fsync"
            else replace(self.CAPABILITIES, durable=False)
        )

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        """``sqlite:///abs/path.db``, ``sqlite://localhost/abs/path.db``,
        ``sqlite://./relative.db``."""
        host, path = parts.netloc, unquote(parts.path)
        if host in ("", "localhost"):
            target = path
        elif host in (".", ".."):
            target = host + path
        else:
            raise ConfigurationError(
                f"sqlite:// URLs take a file path, not a host: {redact_url(parts.geturl())!r} "
                "(use sqlite:///abs/path.db or sqlite://./relative.db)"
            )
        if target in ("", "/") or target.endswith("/"):
            raise ConfigurationError(f"sqlite:// URL has no database file: {parts.geturl()!r}")
        if target == "/:memory:":
            target = ":memory:"
        return {"path": target}

    @property
    def capabilities(self) -> Capabilities:
        """``durable`` only with ``durability="fsync"``."""
        return self._capabilities

    def __repr__(self) -> str:
        return f"SqliteStore(path={self.path!r}, namespace={self.namespace!r})"

    # ------------------------------------------------------------------ plumbing

    def _report(self, bad: Sequence[IntegrityError]) -> None:
        for error in bad:
            self._report_corrupt(error)

    async def _initialize(self) -> None:
        try:
            await self._threads.run(self._engine.open)
        except BaseException:
            await self._shutdown()
            raise

    async def _shutdown(self) -> None:
        await self._threads.close(self._engine.close)

    # ------------------------------------------------------------------ primitives

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
        """The base store's ``append_events``. An append without ``create`` or an expiry
        change is first tried by :meth:`Engine.append_plain` (no planner), in the same
        worker-thread hop; what that leaves (nothing written: a missing or expiring
        session, a version mismatch, a key conflict, nothing new) is planned as before."""
        if create is not False or ttl is not None or expires_at is not UNSET:
            return await super().append_events(
                session_id, events, expected_version=expected_version, create=create,
                ttl=ttl, expires_at=expires_at,
            )  # fmt: skip
        prepared = prepare(fast_append_op(session_id, events, expected_version), self._limits)
        self._check_capable(prepared)
        session = await self._execute(
            [prepared.session_id],
            partial(_apply_one, prepared),
            requests=self._requests([prepared]),
            first=partial(self._engine.append_plain, prepared),
        )
        assert isinstance(session, Session)
        return session

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        return await self._threads.run(self._engine.load, list(session_ids))

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """Write ``mutations`` in one transaction (also with ``atomic=False``)."""
        await self._threads.run(self._engine.apply, list(mutations))

    async def _execute(
        self,
        load_ids: Sequence[str],
        plan: Callable[[Planner], T],
        *,
        atomic: bool = True,
        requests: Mapping[str, EventRequest] | None = None,
        first: Callable[[datetime], Session | None] | None = None,
    ) -> T:
        """Every planned write in one worker-thread hop and one ``BEGIN IMMEDIATE``
        transaction: read the rows and the stored events the plan needs (``requests``,
        then whatever the planner asks for with ``NeedEvents``), plan, write. The write
        lock is held from the first read, so the plan never meets a concurrent change
        (the base store reads events, then loads, plans and writes with a version check,
        and plans again when a writer came in between). ``first``: a write without the
        planner tried first in the same hop (given the write's time), whose session is
        the outcome (an update) unless it returns ``None`` (it wrote nothing)."""
        self._check_open()
        now = self.clock.now()
        outcome: list[T] = []
        limits = self._limits

        def build(loaded: Mapping[str, Session], facts: Mapping[str, EventFacts]) -> list[Mutation]:
            planner = Planner(loaded, now, limits, facts)
            try:
                outcome.append(plan(planner))
            except SessionConflictError as error:
                raise _Refused(error) from None
            return planner.mutations()

        engine = self._engine
        ids, wanted = list(load_ids), dict(requests or {})

        def work() -> list[Mutation] | Session:
            if first is not None and (done := first(now)) is not None:
                return done
            return engine.transact(ids, build, wanted)

        try:
            got = await self._threads.run(work)
        except _Refused as refused:
            exc = refused.error
            self._notify(
                "sessionstore_conflict",
                session_id=exc.session_id,
                expected=exc.expected,
                actual=exc.actual,
            )
            raise exc from None
        if isinstance(got, Session):
            self._notify("sessionstore_session_updated", session=got)
            return cast(T, got)
        if got:
            self._after_write(got)
        return outcome[-1]

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult:
        """Write whole records back exactly, all of the call in one transaction (one
        commit, one fsync; the base store writes one transaction per record). The merge
        strategy is decided on the rows read under the write lock."""
        check_strategy(strategy)
        batch = list(records)
        encoded = [self._check_record(r) for r in batch]
        self._check_open()
        ids = [r.session.id for r in batch]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("put_records got the same session twice in one call")
        if not batch:
            return PutResult()
        now = self.clock.now()
        totals: list[PutResult] = []

        def build(loaded: Mapping[str, Session], _: Mapping[str, EventFacts]) -> list[Mutation]:
            if strategy == "fail_on_conflict":
                for sid in ids:
                    if (s := loaded.get(sid)) is not None and not s.is_expired(now):
                        raise SessionExistsError(sid)
            total = PutResult()
            mutations = []
            for record, (data_json, meta_json) in zip(batch, encoded, strict=True):
                new = record.session
                stored = loaded.get(new.id)
                decision = merge_decision(strategy, new, stored, now)
                if decision == "skip":
                    total += PutResult(skipped=1)
                    continue
                if decision == "conflict":
                    total += PutResult(conflicts=1)
                    continue
                live = decision == "overwrite"
                mutations.append(
                    Mutation(
                        session_id=new.id,
                        expect=0 if stored is None else stored.version,
                        session=new,
                        data_json=data_json,
                        metadata_json=meta_json,
                        reset=stored is not None,
                        append=list(record.events),
                        put_checkpoints=list(record.checkpoints),
                        created=not live,
                    )
                )
                total += PutResult(overwritten=1) if live else PutResult(created=1)
            totals[:] = [total]
            return mutations

        mutations = await self._threads.run(self._engine.transact, ids, build, {})
        if mutations:
            self._after_write(mutations)
        return totals[-1]

    async def _create_new(self, session: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """One ``INSERT ... ON CONFLICT DO NOTHING`` (a fresh id needs no read)."""
        return await self._threads.run(self._engine.create_new, session, data_json, metadata_json)

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        return await self._threads.run(self._engine.events, session_id, after_seq, limit, last)

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        found = await self._threads.run(self._engine.checkpoints_many, [session_id])
        return found[session_id]

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        """One ``SELECT`` (one hop) for all of them."""
        return await self._threads.run(self._engine.checkpoints_many, list(session_ids))

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        self._check_open()
        after: str | None = ""
        while after is not None:
            found, bad, after = await self._threads.run(self._engine.scan_page, after, _SCAN_PAGE)
            self._report(bad)
            for session in found:
                yield session

    # ------------------------------------------------------------------ fast paths

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
        """Events in seq order (one hop: the session check and one indexed ``SELECT``
        reading only the page, see ``_events.py``)."""
        return await self._live_page(
            self._engine.live_events, session_id, after_seq, before_seq, limit, last,
            types, at_after, at_before,
        )  # fmt: skip

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
        """:meth:`get_events` with each event's data the JSON stored in its row (one hop,
        the same ``SELECT``; the JSON not parsed)."""
        return await self._live_page(
            self._engine.live_raw_events, session_id, after_seq, before_seq, limit, last,
            types, at_after, at_before,
        )  # fmt: skip

    async def _live_page(
        self,
        read: Callable[[str, datetime, EventWindow], list[E] | None],
        session_id: str,
        after_seq: int,
        before_seq: int | None,
        limit: int | None,
        last: int | None,
        types: Iterable[str] | None,
        at_after: datetime | None,
        at_before: datetime | None,
    ) -> list[E]:
        kinds, low, high = self._check_event_read(
            session_id, after_seq, before_seq, limit, last, types, at_after, at_before
        )
        self._check_open()
        window = _window(after_seq, before_seq, limit, last, kinds, low, high)
        found = await self._threads.run(read, session_id, self.clock.now(), window)
        if found is None:
            raise SessionNotFoundError(session_id)
        if limit == 0 or last == 0:
            return []
        return found

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        """One lookup in the event-key index, with the session check (one hop)."""
        validate_session_id(session_id)
        validate_event_key(key, "key")
        self._check_open()
        live, event = await self._threads.run(
            self._engine.live_event, session_id, self.clock.now(), key
        )
        if not live:
            raise SessionNotFoundError(session_id)
        return event

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
        window = _window(after_seq, before_seq, limit, last, types, at_after, at_before)
        return await self._threads.run(self._engine.query_events, session_id, window)

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        if not seqs and not keys:
            return []
        return await self._threads.run(self._engine.find_events, session_id, list(seqs), list(keys))

    async def _load_event_seqs(
        self, session_id: str, *, after_seq: int = 0, last: int | None = None
    ) -> list[int]:
        return await self._threads.run(self._engine.event_seqs, session_id, after_seq, last)

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        expired, bad = await self._threads.run(self._engine.expired, now)
        self._report(bad)
        return expired

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One indexed ``SELECT`` in keyset order; only the page's rows are decoded."""
        return await self._page(filter, options, None)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """``SELECT COUNT(*)`` with the filter in SQL."""
        self._check_open()
        return await self._threads.run(
            self._engine.count, filter or SessionFilter(), self.clock.now()
        )

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """SQL narrows by ``filter`` and gives the order; the text is matched row by row
        until the page is full."""
        normalize_search_text(text)
        return await self._page(filter, options, text)

    async def _page(
        self, flt: SessionFilter | None, options: QueryOptions | None, text: str | None
    ) -> Page:
        self._check_open()
        flt = flt or SessionFilter()
        opts = options or QueryOptions()
        fingerprint = query_fingerprint(flt, opts, text)
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        needle = None if text is None else normalize_search_text(text)
        page, bad = await self._threads.run(
            self._engine.page, flt, opts, self.clock.now(), after, fingerprint, needle
        )
        self._report(bad)
        return page
