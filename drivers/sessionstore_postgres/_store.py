"""PostgresStore: sessions, events and checkpoints in three tables, one round trip per
single-session operation (see ``docs/postgres.md``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar
from urllib.parse import SplitResult

import asyncpg
import orjson
from orjson import loads

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
    Mutation,
    NewSession,
    Page,
    PopOp,
    PoppedEvents,
    QueryOptions,
    RawEvent,
    Session,
    SessionConflictError,
    SessionFilter,
    SessionNotFoundError,
    TrimOp,
    TruncateOp,
    UnsupportedFormatError,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.codec import checkpoint_from_record, checkpoint_to_record, dumps_record
from sessionstore.driver import encode_event_inputs, new_session, prepare
from sessionstore.model import TTL, Status, Unset
from sessionstore.planning import (
    check_expected_version,
    fast_event,
    fast_raw_event,
    fast_session,
)
from sessionstore.query import (
    OrderKey,
    decode_cursor,
    encode_cursor,
    matches,
    normalize_search_text,
    order_key,
    query_fingerprint,
    search_matches,
)
from sessionstore.validation import (
    validate_event_key,
    validate_session_id,
)

from ._cache import Cached, RowCache, new_token
from ._conn import Outcome
from ._eventlog import EventLog, NewRow, OpResult
from ._events import EventWindow, event_by_key_sql, find_sql, page_sql
from ._loops import LoopPools
from ._options import PostgresOptions, options_from_url
from ._query import Where, build_where, expiry_parts, order_sql, seek_sql
from ._schema import LATEST, VERSION_TABLE, advisory_key, migration

E = TypeVar("E", Event, RawEvent)

__all__ = ["PostgresStore"]

#: The oldest server accepted (see docs/postgres.md, "Versions").
MIN_SERVER_VERSION: Final = 13
_STATUS: Final = {s.value: s for s in Status}
_COLS: Final = (
    "id, processor_id, status, data, metadata, tags, created_at, updated_at, expires_at, "
    "version, event_count, last_seq, grp, wt"
)
_SCAN_BATCH: Final = 500
#: Event times decoded and kept (epoch ms -> datetime), cleared when past this size.
_EVENT_TIMES: Final = 4096
#: Arguments of the write functions (schema version 3 added event keys, truncate_after
#: and delete_seqs to the 29 of versions 1 and 2).
_WRITE_ARITY: Final = 32
_WRITE_ARITY_V1: Final = 29


class _Stale(Exception):
    """The version matched but the write token did not: the plan's copy was stale."""


def _session(r: Any, ns: str) -> Session:
    """A row of ``_COLS`` as a Session (IntegrityError for a corrupt row)."""
    sid, processor, status, data, metadata, tags, created, updated, expires = r[:9]
    try:
        data = loads(data)
        metadata = loads(metadata)
        status = _STATUS[status]
    except (orjson.JSONDecodeError, KeyError) as exc:
        raise IntegrityError(f"corrupt session row ({type(exc).__name__})", f"{ns}/{sid}") from None
    if type(data) is not dict or type(metadata) is not dict:
        raise IntegrityError("corrupt session row (data/metadata not objects)", f"{ns}/{sid}")
    created_at = from_ms(created)
    return fast_session(
        sid, processor, status, data, metadata, frozenset(tags), created_at,
        created_at if updated == created else from_ms(updated),
        None if expires is None else from_ms(expires),
        r[9], r[10], r[11], r[12],
    )  # fmt: skip


def _window(
    after_seq: int,
    before_seq: int | None,
    limit: int | None,
    last: int | None,
    types: frozenset[str] | None,
    at_after: datetime | None,
    at_before: datetime | None,
) -> EventWindow:
    return EventWindow(
        after_seq,
        before_seq,
        limit,
        last,
        None if types is None else sorted(types),
        None if at_after is None else to_ms(at_after),
        None if at_before is None else to_ms(at_before),
    )


def _cached(session: Session, data: str, metadata: str, token: str) -> Cached:
    return Cached(session, data, metadata, token)


class PostgresStore(BaseSessionStore):
    """Sessions in PostgreSQL (asyncpg). Durable, shared across processes, ACID batches."""

    Options = PostgresOptions
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
    options: PostgresOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        p = opts.table_prefix
        self._t_sessions = f"{p}sessions"
        self._t_events = f"{p}events"
        self._t_checkpoints = f"{p}checkpoints"
        self._prefix = p
        where = f"{opts.host}:{opts.port}/{opts.database or opts.user or ''}"
        self._pools = LoopPools(opts, where)
        self._cache = RowCache()
        # an event read decodes each time once: the events of one append share it, and a
        # caller re-reading a log's tail (the last N after each append) finds the times
        # decoded (from_ms is a third of a page's decoding); datetimes are immutable
        self._event_times: dict[int, datetime] = {}
        #: The schema version ``initialize()`` upgrades to (tests pin older ones).
        self._target_schema = LATEST
        self._write_statements(LATEST)
        self._sql_load_one = f"SELECT {_COLS} FROM {p}sessions WHERE ns = $1 AND id = $2"
        #: The expiry sweep's read (``expires_at <= $2`` implies the partial index's
        #: ``expires_at IS NOT NULL``).
        self._sql_expired = (
            f"SELECT {_COLS} FROM {p}sessions WHERE ns = $1 AND expires_at <= $2 "
            "ORDER BY expires_at, id"
        )
        self._sql_event_by_key = event_by_key_sql(self._t_sessions, self._t_events)
        self._sql_find_events = find_sql(self._t_events)
        self._eventlog = EventLog(self._pools, self._cache, self.namespace, p, self._decode)
        self._sql_load_many = (
            f"SELECT {_COLS} FROM {p}sessions WHERE ns = $1 AND id = ANY($2::text[])"
        )

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        return options_from_url(parts)

    def _write_statements(self, schema: int) -> None:
        """The calls of the write functions of schema version ``schema`` (a store pinned
        to an older schema, as the migration tests pin one, calls the older functions)."""
        self._write_arity = _WRITE_ARITY if schema >= 3 else _WRITE_ARITY_V1
        self._native_events = schema >= 3  # events_op
        params = ", ".join(f"${i}" for i in range(1, self._write_arity + 1))
        self._sql_write = f"SELECT {self._prefix}write({params})"
        self._sql_write_batch = f"SELECT {self._prefix}write_or_raise({params})"

    # ------------------------------------------------------------------ lifecycle

    async def _initialize(self) -> None:
        pool = await self._pools.open()
        try:
            await pool.run(self._migrate)  # once per store, whichever loops use it later
        except BaseException:
            await self._pools.close(final=False)
            raise

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Upgrade the schema to :data:`LATEST` under the prefix's advisory lock."""
        major = conn.get_server_version().major
        if major < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"PostgreSQL {major} is too old: the driver needs {MIN_SERVER_VERSION} or later"
            )
        p = self._prefix
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(p))
            await conn.execute(VERSION_TABLE.replace("{P}", p))
            version = await conn.fetchval(f"SELECT version FROM {p}schema")
            current = 0 if version is None else int(version)
            target = self._target_schema
            if current > LATEST:
                raise UnsupportedFormatError(
                    f"the schema of table prefix {p!r} is version {current}, newer than this "
                    f"driver's {LATEST}: upgrade sessionstore"
                )
            self._write_statements(target)
            for step in range(current + 1, target + 1):
                await conn.execute(migration(step, p))
            if current < target:
                await conn.execute(
                    f"INSERT INTO {p}schema (one, version) VALUES (true, $1) "
                    "ON CONFLICT (one) DO UPDATE SET version = excluded.version, "
                    "upgraded_at = now()",
                    target,
                )

    async def _shutdown(self) -> None:
        await self._pools.close()

    # ------------------------------------------------------------------ reads

    async def _load_rows(self, session_ids: Sequence[str]) -> list[Any]:
        ns = self.namespace
        if len(session_ids) == 1:
            sid = session_ids[0]
            return await self._pools.get().run(lambda c: c.fetch(self._sql_load_one, ns, sid))
        ids = list(session_ids)
        return await self._pools.get().run(lambda c: c.fetch(self._sql_load_many, ns, ids))

    def _decode(self, row: Sequence[Any]) -> Session:
        return _session(row, self.namespace)

    def _remember(self, rows: Sequence[Any]) -> dict[str, Session]:
        out: dict[str, Session] = {}
        ns = self.namespace
        for r in rows:
            s = _session(r, ns)
            out[s.id] = s
            self._cache.put(s.id, Cached(s, r[3], r[4], r[13]))
        return out

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        if not session_ids:
            return {}
        return self._remember(await self._load_rows(session_ids))

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        return await self._query_events(session_id, after_seq=after_seq, limit=limit, last=last)

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
        rows = await self._page(session_id, window)
        return self._events_of(session_id, rows, window)

    async def _page(self, session_id: str, window: EventWindow) -> list[Any]:
        """The rows of :func:`page_sql` (one statement)."""
        sql, args = page_sql(self._t_sessions, self._t_events, window)
        ns = self.namespace
        return await self._pools.get().run(lambda c: c.fetch(sql, ns, session_id, *args))

    def _events_of(self, session_id: str, rows: Sequence[Any], window: EventWindow) -> list[Event]:
        if not rows or rows[0][1] is None:
            return []
        times = self._event_times
        if len(times) > _EVENT_TIMES:
            times.clear()
        try:
            events = [
                fast_event(
                    r[1],
                    r[2],
                    times.get(r[3]) or times.setdefault(r[3], from_ms(r[3])),
                    orjson.loads(r[4]),
                    r[5],
                )
                for r in rows
            ]
        except orjson.JSONDecodeError:
            events = [self._event(session_id, r[1:]) for r in rows]  # names the bad one
        if window.last is not None:
            events.reverse()
        return events

    def _raw_events_of(
        self, session_id: str, rows: Sequence[Any], window: EventWindow
    ) -> list[RawEvent]:
        """:meth:`_events_of` with each event's data its row's JSON text as UTF-8 bytes,
        not parsed (a caller's parse finds a corrupt one), only checked to be an
        object's (``{`` ... ``}``)."""
        if not rows or rows[0][1] is None:
            return []
        times = self._event_times
        if len(times) > _EVENT_TIMES:
            times.clear()
        events = []
        for r in rows:
            data = r[4]
            if data[:1] != "{" or data[-1:] != "}":
                record = f"{self.namespace}/{session_id}/{r[1]}"
                raise IntegrityError("corrupt event row", record)
            at = times.get(r[3]) or times.setdefault(r[3], from_ms(r[3]))
            events.append(fast_raw_event(r[1], r[2], at, data.encode(), r[5]))
        if window.last is not None:
            events.reverse()
        return events

    def _event(self, session_id: str, r: Any) -> Event:
        try:
            data = orjson.loads(r[3])
        except orjson.JSONDecodeError:
            raise IntegrityError(
                "corrupt event row", f"{self.namespace}/{session_id}/{r[0]}"
            ) from None
        return Event(r[0], r[1], from_ms(r[2]), data, r[4])

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
        """Events in seq order (one statement: the session's liveness and the page, read
        through the index that yields it in order, see ``_events.py``)."""
        return await self._live_page(
            self._events_of, session_id, after_seq, before_seq, limit, last, types,
            at_after, at_before,
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
        """:meth:`get_events` with each event's data the JSON text of its row (the same
        statement; the JSON not parsed)."""
        return await self._live_page(
            self._raw_events_of, session_id, after_seq, before_seq, limit, last, types,
            at_after, at_before,
        )  # fmt: skip

    async def _live_page(
        self,
        decode: Callable[[str, Sequence[Any], EventWindow], list[E]],
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
        # a zero count reads one row: the statement still tells a missing session
        window = _window(
            after_seq, before_seq, limit or (None if limit is None else 1),
            last or (None if last is None else 1), kinds, low, high,
        )  # fmt: skip
        rows = await self._page(session_id, window)
        if not rows:
            raise SessionNotFoundError(session_id)
        expires = rows[0][0]
        if expires is not None and expires <= to_ms(self.clock.now()):
            raise SessionNotFoundError(session_id)
        if limit == 0 or last == 0:
            return []
        return decode(session_id, rows, window)

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        """One lookup in the event-key index, with the session's liveness (one statement)."""
        validate_session_id(session_id)
        validate_event_key(key, "key")
        self._check_open()
        sql = self._sql_event_by_key
        ns = self.namespace
        row = await self._pools.get().run(lambda c: c.fetchrow(sql, ns, session_id, key))
        if row is None or (row[0] is not None and row[0] <= to_ms(self.clock.now())):
            raise SessionNotFoundError(session_id)
        return None if row[1] is None else self._event(session_id, row[1:])

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        if not seqs and not keys:
            return []
        # one index descent per seq and per key, whatever the table's statistics
        # (``_events.py``); an event asked for by seq and by key comes back once
        sql = self._sql_find_events
        ns = self.namespace
        q, k = list(seqs), list(keys)
        rows = await self._pools.get().run(lambda c: c.fetch(sql, ns, session_id, q, k))
        out: list[Event] = []
        for r in rows:
            if not out or out[-1].seq != r[0]:
                out.append(self._event(session_id, r))
        return out

    async def _load_event_seqs(
        self, session_id: str, *, after_seq: int = 0, last: int | None = None
    ) -> list[int]:
        order = "ASC" if last is None else "DESC"
        sql = (
            f"SELECT seq FROM {self._t_events} WHERE ns = $1 AND session_id = $2 AND seq > $3 "
            f"ORDER BY seq {order} LIMIT $4"
        )
        ns = self.namespace
        rows = await self._pools.get().run(lambda c: c.fetch(sql, ns, session_id, after_seq, last))
        seqs = [r[0] for r in rows]
        if last is not None:
            seqs.reverse()
        return seqs

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        return (await self._load_checkpoints_many([session_id])).get(session_id, [])

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        sql = (
            f"SELECT session_id, id, body FROM {self._t_checkpoints} "
            "WHERE ns = $1 AND session_id = ANY($2::text[]) ORDER BY created_at, id"
        )
        ns = self.namespace
        ids = list(session_ids)
        rows = await self._pools.get().run(lambda c: c.fetch(sql, ns, ids))
        out: dict[str, list[Checkpoint]] = {sid: [] for sid in ids}
        for sid, cp_id, body in rows:
            name = f"{sid}/{cp_id}"
            try:
                rec = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise IntegrityError("corrupt checkpoint row", name) from None
            out[sid].append(checkpoint_from_record(rec, name))
        return out

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        after = ""
        sql = (
            f"SELECT {_COLS} FROM {self._t_sessions} WHERE ns = $1 AND id > $2 "
            f"ORDER BY id LIMIT {_SCAN_BATCH}"
        )
        ns = self.namespace
        while True:
            start = after
            rows = await self._pools.get().run(lambda c, start=start: c.fetch(sql, ns, start))  # type: ignore[misc]
            for r in rows:
                try:
                    yield _session(r, ns)
                except IntegrityError as exc:
                    self._report_corrupt(exc)
            if len(rows) < _SCAN_BATCH:
                return
            after = rows[-1][0]

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        sql = self._sql_expired
        ns = self.namespace
        rows = await self._pools.get().run(lambda c: c.fetch(sql, ns, to_ms(now)))
        out = []
        for r in rows:
            try:
                out.append(_session(r, ns))
            except IntegrityError as exc:
                self._report_corrupt(exc)
        return out

    # ------------------------------------------------------------------ writes

    def _args(self, mut: Mutation, base: Cached | None, token: str) -> tuple[Any, ...]:
        """The write function's arguments; ``base`` is the row the plan was made from
        (its token is checked; data/metadata equal to it are not sent again)."""
        s = mut.session
        ev = mut.append
        cps = mut.put_checkpoints
        data = metadata = None
        if s is not None and mut.data_json is not None and mut.metadata_json is not None:
            data = mut.data_json.decode()
            metadata = mut.metadata_json.decode()
            if base is not None and not mut.reset:
                data = None if data == base.data else data
                metadata = None if metadata == base.metadata else metadata
        return (
            self.namespace,
            mut.session_id,
            mut.expect,
            None if base is None else base.token,
            token,
            mut.delete,
            mut.reset,
            s is not None,
            s.processor_id if s else None,
            s.status.value if s else None,
            s.group if s else None,
            sorted(s.tags) if s else None,
            to_ms(s.created_at) if s else None,
            to_ms(s.updated_at) if s else None,
            (None if s.expires_at is None else to_ms(s.expires_at)) if s else None,
            s.version if s else None,
            s.event_count if s else None,
            s.last_seq if s else None,
            data,
            metadata,
            [e.seq for e in ev],
            [e.type for e in ev],
            [to_ms(e.at) for e in ev],
            [orjson.dumps(e.data).decode() for e in ev],
            mut.trim_before,
            [cp.id for cp in cps],
            [to_ms(cp.created_at) for cp in cps],
            [dumps_record(checkpoint_to_record(cp)).decode() for cp in cps],
            list(mut.delete_checkpoints),
            [e.key for e in ev],
            mut.truncate_after,
            list(mut.delete_seqs),
        )

    @staticmethod
    def _check(mut: Mutation, result: int) -> None:
        if result == -1:
            return
        if result == -2:
            raise _Stale(mut.session_id)
        raise SessionConflictError(mut.session_id, mut.expect, result)

    async def _write(
        self, mutations: Sequence[Mutation], bases: Mapping[str, Cached], *, atomic: bool = True
    ) -> None:
        """Write ``mutations`` with version (and token) checks: one statement for one
        session; for several, one pipelined atomic ``executemany`` (ids in order, so
        batches never deadlock). ``atomic=False`` (restores) is written the same way: all
        or nothing is allowed, and a conflict makes the caller retry one by one."""
        token = new_token()
        sql = self._sql_write
        arity = self._write_arity
        calls = [(m, self._args(m, bases.get(m.session_id), token)[:arity]) for m in mutations]
        if len(calls) == 1:
            for mut, args in calls:
                result = await self._pools.get().run(
                    lambda c, args=args: c.fetchval(sql, *args),  # type: ignore[misc]
                    write=True,
                    verify=self._verifier([mut], token, bases),
                    applied=lambda: -1,
                )
                self._check(mut, result)
                self._remember_written([mut], token)
            return
        calls.sort(key=lambda item: item[0].session_id)  # a fixed lock order: no deadlock
        expects = {m.session_id: m.expect for m in mutations}
        batch_sql = self._sql_write_batch

        async def batch(conn: asyncpg.Connection) -> None:
            # one pipelined round trip, all or nothing (asyncpg's executemany is atomic)
            try:
                await conn.executemany(batch_sql, [args for _, args in calls])
            except asyncpg.exceptions.PostgresError as exc:
                if getattr(exc, "sqlstate", None) != "SS409":
                    raise
                sid, result = str(exc.detail), int(str(exc.hint))
                if result == -2:
                    raise _Stale(sid) from None
                raise SessionConflictError(sid, expects.get(sid, -1), result) from None

        try:
            await self._pools.get().run(
                batch,
                write=True,
                verify=self._verifier([m for m, _ in calls], token, bases),
                applied=lambda: None,
            )
        except (SessionConflictError, _Stale):
            self._cache.discard_all(m.session_id for m in mutations)
            raise
        self._remember_written(mutations, token)

    def _remember_written(self, mutations: Sequence[Mutation], token: str) -> None:
        cache = self._cache
        for mut in mutations:
            s = mut.session
            if mut.delete:
                cache.discard(mut.session_id)
            elif s is not None and mut.data_json is not None and mut.metadata_json is not None:
                cache.put(
                    mut.session_id,
                    Cached(s, mut.data_json.decode(), mut.metadata_json.decode(), token),
                )

    def _verifier(
        self, mutations: Sequence[Mutation], token: str, bases: Mapping[str, Cached]
    ) -> Callable[[asyncpg.Connection], Any]:
        """After a lost connection: did the write with ``token`` happen?"""
        ns = self.namespace
        ids = [m.session_id for m in mutations]
        sql = f"SELECT id, version, wt FROM {self._t_sessions} WHERE ns = $1 AND id = ANY($2)"
        cp_sql = (
            f"SELECT session_id, id FROM {self._t_checkpoints} "
            "WHERE ns = $1 AND session_id = ANY($2)"
        )

        async def verify(conn: asyncpg.Connection) -> Outcome:
            rows = {r[0]: (r[1], r[2]) for r in await conn.fetch(sql, ns, ids)}
            cps = {(r[0], r[1]) for r in await conn.fetch(cp_sql, ns, ids)}
            seen: set[bool] = set()
            for mut in mutations:
                stored = rows.get(mut.session_id)
                before = (
                    stored is None
                    if mut.expect == 0
                    else (
                        stored is not None
                        and stored[0] == mut.expect
                        and ((base := bases.get(mut.session_id)) is None or stored[1] == base.token)
                    )
                )
                if mut.delete:
                    done = stored is None
                elif mut.session is not None:
                    done = stored is not None and stored[1] == token
                else:  # checkpoints only: the version does not change
                    done = all((mut.session_id, cp.id) in cps for cp in mut.put_checkpoints) and (
                        not any((mut.session_id, c) in cps for c in mut.delete_checkpoints)
                    )
                    before = before and not done
                if done == before:
                    return "unknown"
                seen.add(done)
            if seen == {True}:
                return "applied"
            if seen == {False}:
                return "not_applied"
            return "unknown"

        return verify

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        try:
            await self._write(mutations, {}, atomic=atomic)
        except _Stale as stale:  # not possible without tokens; kept for safety
            raise SessionConflictError(str(stale), -1, -1) from None

    async def _load_and_apply(
        self,
        load_ids: Sequence[str],
        build: Callable[[Mapping[str, Session]], list[Mutation]],
        *,
        atomic: bool = True,
    ) -> list[Mutation]:
        """Plan from what this store already knows, then write in one round trip; read,
        plan and write again only when the write's checks say the guess was wrong.

        A session in the cache is planned from its copy (the write checks its version
        and token); one not in the cache is first assumed absent (right for a create
        with a given id; the write checks that it does not exist). A plan that fails on
        the guess (not found, exists, a version mismatch) is simply made again on fresh
        rows: ``build`` is pure.
        """
        cache = self._cache
        bases: dict[str, Cached] = {}
        loaded: dict[str, Session] = {}
        for sid in load_ids:
            row = cache.get(sid)
            if row is not None:
                bases[sid] = row
                loaded[sid] = row.materialize()
        if load_ids:
            try:
                mutations = build(loaded)
            except Exception:
                mutations = []
            if mutations:
                try:
                    await self._write(mutations, bases, atomic=atomic)
                    return mutations
                except (_Stale, SessionConflictError):
                    cache.discard_all(load_ids)
        fresh = await self._load_rows(load_ids) if load_ids else []
        loaded = self._remember(fresh)
        bases = {r[0]: Cached(loaded[r[0]], r[3], r[4], r[13]) for r in fresh}
        mutations = build(loaded)
        if mutations:
            try:
                await self._write(mutations, bases, atomic=atomic)
            except _Stale as stale:
                cache.discard_all(load_ids)
                raise SessionConflictError(str(stale), -1, -1) from None
        return mutations

    async def _create_new(self, session: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """One INSERT through the write function (expect 0: must not exist)."""
        mutation = Mutation(session.id, 0, session, data_json, metadata_json, created=True)
        try:
            await self._write([mutation], {})
        except SessionConflictError:
            return False
        return True

    # ------------------------------------------------------------------ event log writes

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
        """Append in one call of ``events_op`` (keys, ``create`` and expiry included)."""
        if not self._native_events:  # a store pinned to a schema before version 3
            return await super().append_events(
                session_id, events, expected_version=expected_version, create=create, ttl=ttl,
                expires_at=expires_at,
            )  # fmt: skip
        if create is False and ttl is None and expires_at is UNSET:
            # the common append, without building an AppendOp (see _append_plain)
            return await self._append_plain(session_id, events, expected_version)
        op = AppendOp(session_id, events, expected_version, create, ttl, expires_at)
        _, session = await self._append(op, detailed=False)
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
        """:meth:`append_events` with the stored event for each input and whether it is new."""
        op = AppendOp(session_id, events, expected_version, create, ttl, expires_at)
        result, session = await self._append(op, detailed=True)
        return AppendResult(session, result.events, result.new)

    async def _append(self, op: AppendOp, *, detailed: bool) -> tuple[OpResult, Session]:
        if op.create is False and op.ttl is None and op.expires_at is UNSET:
            sid, expected, encoded = self._plain_inputs(
                op.session_id, op.events, op.expected_version
            )
            return await self._event_op(
                sid, "append", self.clock.now(), expected, events=_plain(encoded),
                need_events=detailed,
            )  # fmt: skip
        p = prepare(op, self._limits)
        self._check_open()
        now = self.clock.now()
        keys = p.event_keys
        ats = p.event_ats
        events = [
            (
                etype,
                orjson.dumps(data),
                None if keys is None else keys[i],
                None if ats is None else ats[i],
            )
            for i, (etype, data) in enumerate(p.events)
        ]
        mode, expires = 0, None
        if p.ttl is not None:
            mode, expires = 2, now + p.ttl
        elif p.expires_at is not UNSET:
            mode, expires = 1, p.expires_at
        new_row = None
        if p.create is not None:
            fresh = new_session(p.create, now)
            assert p.create.data is not None and p.create.metadata is not None
            new_row = NewRow(
                fresh.processor_id, fresh.status.value, fresh.group, sorted(fresh.tags),
                p.create.data[0].decode(), p.create.metadata[0].decode(),
                None if fresh.expires_at is None else to_ms(fresh.expires_at),
            )  # fmt: skip
        return await self._event_op(
            p.session_id, "append", now, p.expected_version,
            events=events, expires_mode=mode, expires=expires, create=new_row,
            need_events=detailed,
        )  # fmt: skip

    def _plain_inputs(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        expected_version: int | None,
    ) -> tuple[str, int | None, list[tuple[str, bytes, Any, str | None, datetime | None]]]:
        """The checks of a plain append (no ``create``, no expiry change), as prepare()
        makes them and in its order, with the events' JSON as the codec made it (prepare
        keeps only the copies): ``encode_event_inputs``'s type, data, copy, key and time
        of each event (:func:`_plain` drops the copies)."""
        sid = validate_session_id(session_id)
        expected = check_expected_version(expected_version)
        encoded = encode_event_inputs(events, self._limits)
        self._check_open()
        return sid, expected, encoded

    async def _append_plain(
        self,
        session_id: str,
        events: Sequence[EventInput | Mapping[str, Any]],
        expected_version: int | None,
    ) -> Session:
        """``append_events`` without ``create`` or an expiry change. One unkeyed event
        appended from this store's copy, the commonest call, takes
        :meth:`EventLog.append_one` (no lists, no ``OpResult``); anything else
        :meth:`_event_op`."""
        sid, expected, encoded = self._plain_inputs(session_id, events, expected_version)
        now = self.clock.now()
        if len(encoded) == 1:
            etype, data, _, key, at = encoded[0]
            if key is None:
                try:
                    done = await self._eventlog.append_one(sid, expected, etype, data, at, now)
                except SessionConflictError as exc:
                    self._notify_conflict(exc)
                    raise
                if done is not None:
                    if done[0]:
                        self._notify("sessionstore_session_updated", session=done[1])
                    return done[1]
        _, session = await self._event_op(sid, "append", now, expected, events=_plain(encoded))
        return session

    async def _event_op(
        self, sid: str, op: str, now: datetime, expected: int | None, **kwargs: Any
    ) -> tuple[OpResult, Session]:
        try:
            result, session = await self._eventlog.run(sid, op, now, expected=expected, **kwargs)
        except SessionConflictError as exc:
            self._notify_conflict(exc)
            raise
        if result.created:
            self._notify("sessionstore_session_created", session=session)
        elif result.written:
            self._notify("sessionstore_session_updated", session=session)
        return result, session

    async def pop_events(
        self, session_id: str, n: int = 1, *, expected_version: int | None = None
    ) -> PoppedEvents:
        """The newest ``n`` events deleted and returned by one call of ``events_op``."""
        p = prepare(PopOp(session_id, n, expected_version), self._limits)
        self._check_open()
        result, session = await self._event_op(
            p.session_id, "pop", self.clock.now(), p.expected_version, n=p.count,
            need_events=True,
        )  # fmt: skip
        return PoppedEvents(result.events, session)

    async def truncate_events(
        self, session_id: str, after_seq: int, *, expected_version: int | None = None
    ) -> Session:
        """One ``DELETE`` of the events after ``after_seq`` (in ``events_op``)."""
        p = prepare(TruncateOp(session_id, after_seq, expected_version), self._limits)
        self._check_open()
        _, session = await self._event_op(
            p.session_id, "truncate", self.clock.now(), p.expected_version, n=p.after_seq
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
        """One ``DELETE`` by seqs and keys (primary key and key index, in ``events_op``)."""
        p = prepare(DeleteEventsOp(session_id, seqs, keys, expected_version), self._limits)
        self._check_open()
        _, session = await self._event_op(
            p.session_id, "delete", self.clock.now(), p.expected_version, seqs=p.seqs, keys=p.keys
        )
        return session

    async def trim_events(
        self, session_id: str, *, keep_last: int, expected_version: int | None = None
    ) -> Session:
        """The first kept seq found from the newest end of the primary key and one
        ``DELETE`` below it (in ``events_op``): gaps in the numbering are fine."""
        p = prepare(TrimOp(session_id, keep_last, expected_version), self._limits)
        self._check_open()
        _, session = await self._event_op(
            p.session_id, "trim", self.clock.now(), p.expected_version, n=p.count
        )
        return session

    # ------------------------------------------------------------------ queries

    async def _fetch_page(
        self, base: Where, opts: QueryOptions, after: OrderKey | None, limit: int, offset: int
    ) -> list[Any]:
        """Up to ``limit`` rows of ``base`` in the listing's order after ``after``,
        ``offset`` skipped. A listing by expiry reads its two parts in turn
        (:func:`~._query.expiry_parts`), the second only when the first runs out."""
        if opts.sort_by == "expires_at":
            parts = expiry_parts(base, opts.descending, after)
        else:
            w = Where(list(base.clauses), list(base.params))
            if after is not None:
                seek_sql(w, opts.sort_by, opts.descending, after)
            parts = [(w, order_sql(opts.sort_by, opts.descending))]
        rows: list[Any] = []
        for i, (w, order) in enumerate(parts):
            sql = f"SELECT {_COLS} FROM {self._t_sessions} WHERE {w.sql()} ORDER BY {order}"
            sql += f" LIMIT {int(limit - len(rows))}"
            if offset:
                sql += f" OFFSET {int(offset)}"
            got = await self._fetch(sql, w.params)
            rows.extend(got)
            if len(rows) >= limit or i == len(parts) - 1:
                break
            if offset and not got:  # the offset may reach past this part: skip its rows
                count = f"SELECT count(*) FROM {self._t_sessions} WHERE {w.sql()}"
                offset = max(0, offset - (await self._fetch(count, w.params))[0][0])
            else:
                offset = 0
        return rows

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._pools.get().run(lambda c: c.fetch(sql, *params))

    async def _query(
        self,
        flt: SessionFilter,
        opts: QueryOptions,
        needle: str | None,
        fingerprint: str,
    ) -> Page:
        now = self.clock.now()
        ns = self.namespace
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        base = build_where(ns, flt, now)
        exact = base.exact and needle is None
        picked: list[Session] = []
        wanted = opts.limit + 1
        if exact:
            rows = await self._fetch_page(base, opts, after, wanted, opts.offset)
            try:
                picked = [_session(r, ns) for r in rows]
            except IntegrityError:  # page again, reporting and skipping the corrupt rows
                exact, picked = False, []
        if not exact:
            skip = opts.offset
            batch = max(64, min(wanted + skip, 2000))
            position = after
            while len(picked) < wanted:
                rows = await self._fetch_page(base, opts, position, batch, 0)
                for r in rows:
                    position = _row_key(r, opts.sort_by)
                    s = self._row_or_report(r)
                    if s is _CORRUPT or not matches(s, flt, now):
                        continue
                    if needle is not None and not search_matches(s, needle):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    picked.append(s)
                    if len(picked) >= wanted:
                        break
                if len(rows) < batch:
                    break
        items = picked[: opts.limit]
        next_cursor = None
        if len(picked) > opts.limit:
            next_cursor = encode_cursor(fingerprint, order_key(items[-1], opts.sort_by))
        return Page(items, next_cursor)

    def _row_or_report(self, r: Any) -> Session:
        try:
            return _session(r, self.namespace)
        except IntegrityError as exc:
            self._report_corrupt(exc)
            return _CORRUPT

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One indexed query (plus re-checks for metadata filters, see ``_query.py``)."""
        self._check_open()
        flt = filter or SessionFilter()
        opts = options or QueryOptions()
        return await self._query(flt, opts, None, query_fingerprint(flt, opts))

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """The filter in SQL, the text checked by the reference matcher, page by page."""
        needle = normalize_search_text(text)
        self._check_open()
        flt = filter or SessionFilter()
        opts = options or QueryOptions()
        return await self._query(flt, opts, needle, query_fingerprint(flt, opts, text))

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """``count(*)`` over the indexes (metadata conditions re-checked on the rows)."""
        self._check_open()
        flt = filter or SessionFilter()
        now = self.clock.now()
        w = build_where(self.namespace, flt, now)
        params = list(w.params)
        if w.exact:
            sql = f"SELECT count(*) FROM {self._t_sessions} WHERE {w.sql()}"
            return int(await self._pools.get().run(lambda c: c.fetchval(sql, *params)))
        sql = f"SELECT {_COLS} FROM {self._t_sessions} WHERE {w.sql()}"
        rows = await self._pools.get().run(lambda c: c.fetch(sql, *params))
        total = 0
        for r in rows:
            s = self._row_or_report(r)
            if s is not _CORRUPT and matches(s, flt, now):
                total += 1
        return total


def _plain(
    encoded: Sequence[tuple[str, bytes, Any, str | None, datetime | None]],
) -> list[tuple[str, bytes, str | None, datetime | None]]:
    """``encode_event_inputs``' events without their decoded copies: type, data JSON,
    key and time, as :meth:`EventLog.run` takes them."""
    return [(t, data, key, at) for t, data, _, key, at in encoded]


def _row_key(r: Any, sort_by: str) -> OrderKey:
    """The keyset position of a row of ``_COLS`` (read from its columns, so a corrupt
    row still moves the scan on)."""
    sid = r[0]
    if sort_by == "id":
        return (0, sid, sid)
    value = {"created_at": r[6], "updated_at": r[7], "expires_at": r[8]}[sort_by]
    return (1, 0, sid) if value is None else (0, value, sid)


_CORRUPT: Final = fast_session(
    "corrupt", None, Status.ACTIVE, {}, {}, frozenset(), from_ms(0), from_ms(0), None, 1, 0, 0,
    None,
)  # fmt: skip
