"""The event-log writes of one session as one call of the schema's ``events_op``, or
for the plain append (unkeyed events, a session whose row this store holds) one
``UPDATE`` + ``INSERT`` statement that calls ``events_op`` only when its compare-and-set
fails (``_append_sql``; for one event, the commonest call, ``EventLog.append_one`` with
``_append_one_sql``).

Append (with ``create``, expiry and keys), pop, truncate, delete and trim each run as
one statement: the function locks the session row, checks the expected version, reads
what it needs of the events (the newest n, the stored keys) through the indexes and
writes the events and the session's head, all in the statement's transaction. So none
of them reads before it writes from the client, and a concurrent writer can neither
slip in between nor make the call plan again.

The function returns the session's row; its ``data``/``metadata`` only when the row's
write token before the call is not the one of this store's copy (``_cache.py``), so an
append to a session this store wrote or read last sends and receives no document.

After a lost connection the outcome is resolved as for every write (``_conn.py``): the
row's write token tells an applied call; a row that still has the token of this store's
copy, or a call with an expected version whose row still has that version, was not
applied, and the call is sent again, as is an append whose every event carries a key
(sending it again writes nothing twice). Anything else, or
an applied pop or detailed append whose reply (the popped or stored events) was lost,
is :class:`~sessionstore.OutcomeUnknownError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import orjson

from sessionstore import (
    Event,
    EventKeyConflictError,
    IntegrityError,
    OutcomeUnknownError,
    Session,
    SessionConflictError,
    SessionNotFoundError,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.planning import fast_session

from ._cache import Cached, RowCache, new_token
from ._conn import Outcome
from ._loops import LoopPools

__all__ = ["EventLog", "NewRow", "OpResult"]

_WRITTEN: Final = 1
_UNCHANGED: Final = 2
_CREATED: Final = 3
_ABSENT: Final = 0
_MISMATCH: Final = -1
_ARITY: Final = 24


@dataclass(frozen=True, slots=True)
class NewRow:
    """The session an append with ``create`` makes when there is none (its fields)."""

    processor_id: str | None
    status: str
    group: str | None
    tags: list[str]
    data: str
    metadata: str
    expires_ms: int | None


@dataclass(slots=True)
class OpResult:
    """What a call did: ``row`` is the session row (``_COLS`` order, data and metadata
    filled in), ``new``/``events`` the per-input flags and events of an append (only
    when the call asked for them, ``need_events``) or the popped events of a pop."""

    code: int
    row: list[Any]
    new: list[bool] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.code in (_WRITTEN, _CREATED)

    @property
    def created(self) -> bool:
        return self.code == _CREATED


class EventLog:
    """Runs ``events_op`` for a store (its pools, its row cache, its namespace)."""

    def __init__(
        self,
        pools: LoopPools,
        cache: RowCache,
        namespace: str,
        prefix: str,
        decode: Callable[[Sequence[Any]], Session],
    ) -> None:
        self._pools = pools
        self._cache = cache
        self._ns = namespace
        self._decode = decode
        params = ", ".join(f"${i}" for i in range(1, _ARITY + 1))
        self._sql = f"SELECT * FROM {prefix}events_op({params})"
        self._sql_append = _append_sql(prefix, self._sql, detailed=False)
        self._sql_append_detailed = _append_sql(prefix, self._sql, detailed=True)
        self._sql_append_one = _append_one_sql(prefix, self._sql)
        self._sql_append_keyed = _append_keyed_sql(prefix, self._sql)
        self._verify_sql = (
            "SELECT id, processor_id, status, data, metadata, tags, created_at, updated_at, "
            f"expires_at, version, event_count, last_seq, grp, wt FROM {prefix}sessions "
            "WHERE ns = $1 AND id = $2"
        )

    def _from_copy(
        self,
        sid: str,
        cached: Cached,
        token: str,
        now: datetime,
        now_ms: int,
        version: int,
        count: int,
        last: int,
    ) -> Session:
        """The session after a plain append whose compare-and-set on this store's token
        matched: the cached copy with the new version, counters and ``updated_at``."""
        h = cached.head
        # the stored updated_at is now_ms: a clock's own now (UTC, whole milliseconds)
        # is that instant already, without converting back
        exact = now.tzinfo is UTC and not now.microsecond % 1000
        session = fast_session(
            h.id, h.processor_id, h.status, orjson.loads(cached.data),
            orjson.loads(cached.metadata), h.tags, h.created_at,
            now if exact else from_ms(now_ms),
            h.expires_at, version, count, last, h.group,
        )  # fmt: skip
        self._cache.put(sid, Cached(session, cached.data, cached.metadata, token))
        return session

    def _resolvers(
        self,
        sid: str,
        op: str,
        token: str,
        cached: Cached | None,
        expected: int | None,
        *,
        resend: bool,
        need_events: bool,
    ) -> tuple[Callable[[asyncpg.Connection], Awaitable[Outcome]], Callable[[], Any]]:
        """``verify`` and ``applied`` for the pool's retry rules (module docstring):
        ``resend``: sending the call again writes nothing twice (every event keyed)."""
        stashed: list[Any] = []

        async def verify(conn: asyncpg.Connection) -> Outcome:
            row = await conn.fetchrow(self._verify_sql, self._ns, sid)
            if row is not None and row[13] == token:
                stashed.append(row)
                return "applied"
            if expected is not None and row is not None and row[9] == expected:
                return "not_applied"  # the lost statement's compare-and-set now fails
            if resend:
                return "not_applied"  # sending it again writes nothing twice
            if row is not None and cached is not None and row[13] == cached.token:
                # every write changes the token: none happened yet, but nothing stops
                # the lost statement from still applying it (Pool._fence ends it first)
                return "pending"
            return "unknown"

        def applied() -> Any:
            if need_events:
                raise OutcomeUnknownError(
                    f"the {op} of session {sid!r} was applied, but its reply (the events) "
                    "was lost with the connection"
                )
            return ("applied", stashed[-1])

        return verify, applied

    def _resolved(self, sid: str, reply: tuple[str, Any]) -> tuple[OpResult, Session]:
        """The result of a call found applied after a lost connection (the row read back)."""
        row = list(reply[1])
        self._cache.discard(sid)
        session = self._decode(row)
        self._cache.put(sid, Cached(session, row[3], row[4], row[13]))
        return OpResult(_WRITTEN, row), session

    def _settled(
        self, sid: str, reply: Sequence[Any], cached: Cached | None, expected: int | None
    ) -> tuple[OpResult, Session]:
        """``events_op``'s reply: the typed errors, else its row decoded and cached."""
        code = reply[0]
        if code == _ABSENT:
            raise SessionNotFoundError(sid)
        if code == _MISMATCH:
            assert expected is not None
            raise SessionConflictError(sid, expected, int(reply[16]))
        row = list(reply[7:])
        if row[3] is None or row[4] is None:  # the copy this store holds is current
            if cached is None:
                raise IntegrityError("events_op left out a document it was not sent", sid)
            row[3], row[4] = cached.data, cached.metadata
        session = self._decode(row)
        self._cache.put(sid, Cached(session, row[3], row[4], row[13]))
        return OpResult(code, row), session

    async def append_one(
        self,
        sid: str,
        expected: int | None,
        etype: str,
        edata: bytes,
        eat: datetime | None,
        now: datetime,
    ) -> tuple[bool, Session] | None:
        """The commonest call on a path of its own: one unkeyed event appended from this
        store's copy of the session (``None``: no copy, the caller takes :meth:`run`).
        The one-event statement (:func:`_append_one_sql`): scalars, a reply of four
        columns; ``(written, session)``."""
        cached = self._cache.get(sid)
        if cached is None:
            return None
        token = new_token()
        now_ms = to_ms(now)
        sql = self._sql_append_one
        args = (self._ns, sid, expected, cached.token, token, now_ms, etype,
                None if eat is None else to_ms(eat), edata.decode())  # fmt: skip
        verify, applied = self._resolvers(
            sid, "append", token, cached, expected, resend=False, need_events=False
        )
        reply = await self._pools.get().run(
            lambda conn: conn.fetchrow(sql, *args), write=True, verify=verify, applied=applied
        )
        if type(reply) is tuple:  # resolved after a lost connection
            return True, self._resolved(sid, reply)[1]
        if reply[3] is None:  # the head's update matched: the copy plus counters
            return True, self._from_copy(sid, cached, token, now, now_ms, *reply[:3])
        result, session = self._settled(sid, _op_row(reply[3]), cached, expected)
        return result.written, session

    async def run(
        self,
        sid: str,
        op: str,
        now: datetime,
        *,
        expected: int | None = None,
        n: int = 0,
        seqs: Sequence[int] = (),
        keys: Sequence[str] = (),
        events: Sequence[tuple[str, bytes, str | None, datetime | None]] = (),
        expires_mode: int = 0,
        expires: datetime | None = None,
        create: NewRow | None = None,
        need_events: bool = False,
    ) -> tuple[OpResult, Session]:
        """One ``events_op`` call; raises the typed errors (missing session, version
        mismatch, key conflict) and returns the result with the session it leaves."""
        token = new_token()
        cached = self._cache.get(sid)
        now_ms = to_ms(now)
        plain = (
            op == "append" and cached is not None and bool(events) and create is None
            and expires_mode == 0
        )  # fmt: skip
        keyed = plain and any(e[2] is not None for e in events)
        if keyed and need_events:  # (the per-input flags and seqs: events_op's reply)
            plain = keyed = False
        args: tuple[Any, ...] = (
            self._ns, sid, op, expected, None if cached is None else cached.token, token,
            now_ms, n, list(seqs), list(keys),
            [e[0] for e in events],
            [None if e[3] is None else to_ms(e[3]) for e in events],
            [e[1].decode() for e in events],
            [e[2] for e in events],
            expires_mode, None if expires is None else to_ms(expires),
            create is not None,
            None if create is None else create.processor_id,
            None if create is None else create.status,
            None if create is None else create.group,
            None if create is None else create.tags,
            None if create is None else create.data,
            None if create is None else create.metadata,
            None if create is None else create.expires_ms,
        )  # fmt: skip
        sql = self._sql
        if keyed:  # the narrow statement and the keys: ten parameters
            sql = self._sql_append_keyed
            args = (args[0], args[1], expected, args[4], token, now_ms, *args[10:14])
        elif plain:  # the narrow statement: nine parameters, events_op's reply columns
            sql = self._sql_append_detailed if need_events else self._sql_append
            args = (args[0], args[1], expected, args[4], token, now_ms, *args[10:13])

        async def call(conn: asyncpg.Connection) -> Any:
            try:
                return await conn.fetchrow(sql, *args)
            except asyncpg.exceptions.PostgresError as exc:
                if getattr(exc, "sqlstate", None) == "SS412":
                    raise EventKeyConflictError(sid, str(exc.detail)) from None
                raise

        resend = op == "append" and bool(events) and all(e[2] is not None for e in events)
        verify, applied = self._resolvers(
            sid, op, token, cached, expected, resend=resend, need_events=need_events
        )
        reply = await self._pools.get().run(call, write=True, verify=verify, applied=applied)
        if type(reply) is tuple:  # resolved after a lost connection
            return self._resolved(sid, reply)
        if plain and reply[0] == _WRITTEN and reply[7] is None:
            # the head's update matched: the copy plus counters
            assert cached is not None
            session = self._from_copy(
                sid, cached, token, now, now_ms, reply[16], reply[17], reply[18]
            )
            result = OpResult(_WRITTEN, [])
            if need_events:
                result.new = list(reply[1])
                result.events = [
                    Event(seq, etype, from_ms(at), orjson.loads(data), None)
                    for seq, at, (etype, data, _, _) in zip(reply[2], reply[4], events, strict=True)
                ]
            return result, session
        result, session = self._settled(sid, reply, cached, expected)
        if op == "append" and need_events:
            result.new = list(reply[1])
            result.events = [
                Event(seq, etype, from_ms(at), orjson.loads(data), key)
                for seq, at, (etype, data, key, _) in zip(reply[2], reply[4], events, strict=True)
            ]
        elif op == "pop" and reply[2] is not None:
            result.events = [
                Event(seq, etype, from_ms(at), _data(sid, seq, data), key)
                for seq, etype, at, data, key in zip(*reply[2:7], strict=True)
            ]
        return result, session


def _append_one_sql(prefix: str, events_op: str) -> str:
    """:func:`_append_sql` for one event, not ``detailed``: the event's type, time and
    data as scalars (no arrays to encode or unnest), and a reply of four columns: the
    version and counters when the head's ``UPDATE`` matched, else ``events_op``'s row
    as one JSON text in the fourth (:func:`_op_row` reads it)."""
    call = events_op.split("(", 1)[0].removeprefix("SELECT * FROM ") + (
        "($1, $2, 'append', $3::bigint, $4, $5, $6, 0, '{}'::bigint[], '{}'::text[], "
        "ARRAY[$7::text], ARRAY[$8::bigint], ARRAY[$9::text], ARRAY[NULL::text], "
        "0, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    return (
        f"WITH u AS (UPDATE {prefix}sessions AS x SET version = x.version + 1, "
        "event_count = x.event_count + 1, last_seq = x.last_seq + 1, updated_at = $6, "
        "wt = $5 WHERE x.ns = $1 AND x.id = $2 AND x.wt = $4 "
        "AND (x.expires_at IS NULL OR x.expires_at > $6) "
        "AND ($3::bigint IS NULL OR x.version = $3) "
        "RETURNING x.version, x.event_count, x.last_seq), "
        f"i AS (INSERT INTO {prefix}events (ns, session_id, seq, type, at, data) "
        "SELECT $1, $2, u.last_seq, $7::text, coalesce($8::bigint, $6), $9::text FROM u) "
        "SELECT u.version, u.event_count, u.last_seq, NULL::text FROM u UNION ALL "
        f"SELECT NULL, NULL, NULL, row_to_json(f)::text FROM {call} AS f "
        "WHERE NOT EXISTS (SELECT FROM u)"
    )


#: ``events_op``'s reply columns, in order (the keys of its row as JSON).
_OP_COLUMNS: Final = (
    "r_code", "r_new", "r_ev_seq", "r_ev_type", "r_ev_at", "r_ev_data", "r_ev_key", "id",
    "processor_id", "status", "data", "metadata", "tags", "created_at", "updated_at",
    "expires_at", "version", "event_count", "last_seq", "grp", "wt",
)  # fmt: skip


def _op_row(text: str) -> list[Any]:
    """``events_op``'s row from its JSON (``row_to_json``: bigints as JSON integers,
    arrays as lists, NULL as null), in reply-column order."""
    d = orjson.loads(text)
    return [d[k] for k in _OP_COLUMNS]


def _append_sql(prefix: str, events_op: str, *, detailed: bool) -> str:
    """The unkeyed append from a current copy (no create, no expiry change) as one
    statement of nine parameters: namespace, id, expected version, this store's token,
    the new token, now, and the events' types, times and data. An ``UPDATE`` of the head
    whose ``WHERE`` is the compare-and-set (this store's token, a live session, the
    expected version) and an ``INSERT`` of the events numbered from the head it returns;
    only when that ``UPDATE`` matches no row (a stale copy, an expired or missing
    session, a version mismatch, a concurrent writer that committed first) does the
    statement call ``events_op`` with the same append (a one-time filter gates it),
    which answers as it always has. The reply has ``events_op``'s columns; when the
    ``UPDATE`` matched, only the code, version, counters and ``updated_at`` are filled
    in (the token matched, so every other column is the caller's copy: ``id`` is NULL to
    say so), and the per-event flags, seqs and times only if ``detailed``."""
    n = "cardinality($7::text[])"
    events = "NULL::boolean[], NULL::bigint[], NULL::text[], NULL::bigint[], NULL::text[], "
    if detailed:
        events = (
            f"array_fill(true, ARRAY[{n}]), "
            f"ARRAY(SELECT generate_series(u.last_seq - {n} + 1, u.last_seq)), NULL::text[], "
            "ARRAY(SELECT coalesce(a.at, $6) FROM unnest($8::bigint[]) AS a(at)), NULL::text[], "
        )
    call = events_op.split("(", 1)[0] + (
        "($1, $2, 'append', $3::bigint, $4, $5, $6, 0, '{}'::bigint[], '{}'::text[], "
        f"$7::text[], $8::bigint[], $9::text[], array_fill(NULL::text, ARRAY[{n}]), "
        "0, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    return (
        f"WITH u AS (UPDATE {prefix}sessions AS x SET version = x.version + 1, "
        f"event_count = x.event_count + {n}, last_seq = x.last_seq + {n}, updated_at = $6, "
        "wt = $5 WHERE x.ns = $1 AND x.id = $2 AND x.wt = $4 "
        "AND (x.expires_at IS NULL OR x.expires_at > $6) "
        "AND ($3::bigint IS NULL OR x.version = $3) "
        "RETURNING x.version, x.event_count, x.last_seq), "
        f"i AS (INSERT INTO {prefix}events (ns, session_id, seq, type, at, data) "
        f"SELECT $1, $2, u.last_seq - {n} + v.i, v.type, coalesce(v.at, $6), v.data "
        "FROM u, unnest($7::text[], $8::bigint[], $9::text[]) WITH ORDINALITY "
        "AS v(type, at, data, i)) "
        f"SELECT 1, {events}"
        "NULL::text[], NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, "
        "NULL::text[], NULL::bigint, NULL::bigint, NULL::bigint, u.version, u.event_count, "
        f"u.last_seq, NULL::text, NULL::text FROM u UNION ALL {call} "
        "WHERE NOT EXISTS (SELECT FROM u)"
    )


def _append_keyed_sql(prefix: str, events_op: str) -> str:
    """:func:`_append_sql` (not ``detailed``) for events some of which carry a key; a
    tenth parameter, the keys (NULL for none). Each key is looked up once; the
    ``UPDATE`` of the head also requires that the call's keys are distinct, that at
    least one input is new, and that every key already stored holds the same type and
    the same JSON text (that input is then not written again, as ``events_op``
    answers). Anything else (a key stored with other text, even equal JSON; a key
    repeated in the call; nothing new) and every case the plain append hands over (a
    stale copy, an expired or missing session, a version mismatch) makes the statement
    call ``events_op`` with the same append, which answers as it always has: a conflict
    raises, nothing new returns the stored row.

    Each lookup is a scalar subquery that descends ``events_key`` as
    :func:`~._events.event_by_key_sql` does (a join on the keys was planned,
    generically, as a hash join over the session's keyed events; an equality, on a
    never-analysed table, as a filter over the session's events). The inputs are
    numbered by ``generate_subscripts``, whose row estimate does not depend on the
    arrays, so PostgreSQL keeps the generic plan after five calls (``unnest`` estimates
    a custom plan's arrays exactly, so every custom plan looked cheaper and each call
    was planned again: ~0.4 ms). The lookups read the statement's snapshot; the
    ``UPDATE`` re-checks this store's token on the newest row, and every write of the
    session changes it, so the keys read are the keys stored."""
    n = "c.n"
    call = events_op.split("(", 1)[0] + (
        "($1, $2, 'append', $3::bigint, $4, $5, $6, 0, '{}'::bigint[], '{}'::text[], "
        "$7::text[], $8::bigint[], $9::text[], $10::text[], "
        "0, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    return (
        "WITH f AS MATERIALIZED (SELECT v.i, ($7::text[])[v.i] AS type, "
        "($8::bigint[])[v.i] AS at, ($9::text[])[v.i] AS data, ($10::text[])[v.i] AS key, "
        f"(SELECT e FROM {prefix}events AS e WHERE e.ns = $1 AND e.session_id = $2 "
        'AND e.key >= ($10::text[])[v.i] COLLATE "C" ORDER BY e.key LIMIT 1) AS s '
        "FROM generate_subscripts($7::text[], 1) AS v(i)), "
        "v AS (SELECT f.i, f.type, f.at, f.data, f.key, "
        "CASE WHEN (f.s).key = f.key THEN (f.s).seq END AS sseq, "
        "(f.s).type AS stype, (f.s).data AS sdata FROM f), "
        "c AS (SELECT count(*) FILTER (WHERE v.sseq IS NULL) AS n, "
        "coalesce(bool_and(v.sseq IS NULL OR (v.stype = v.type AND v.sdata = v.data)), true) "
        "AND count(v.key) = count(DISTINCT v.key) AS ok FROM v), "
        f"u AS (UPDATE {prefix}sessions AS x SET version = x.version + 1, "
        f"event_count = x.event_count + {n}, last_seq = x.last_seq + {n}, updated_at = $6, "
        "wt = $5 FROM c WHERE x.ns = $1 AND x.id = $2 AND x.wt = $4 "
        "AND (x.expires_at IS NULL OR x.expires_at > $6) "
        "AND ($3::bigint IS NULL OR x.version = $3) AND c.ok AND c.n > 0 "
        f"RETURNING x.version, x.event_count, x.last_seq, {n}), "
        f"i AS (INSERT INTO {prefix}events (ns, session_id, seq, type, at, data, key) "
        "SELECT $1, $2, u.last_seq - u.n + w.r, w.type, coalesce(w.at, $6), w.data, w.key "
        "FROM u, (SELECT v.*, row_number() OVER (ORDER BY v.i) AS r FROM v "
        "WHERE v.sseq IS NULL) AS w) "
        "SELECT 1, NULL::boolean[], NULL::bigint[], NULL::text[], NULL::bigint[], "
        "NULL::text[], NULL::text[], NULL::text, NULL::text, NULL::text, NULL::text, "
        "NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::bigint, u.version, "
        "u.event_count, u.last_seq, NULL::text, NULL::text FROM u UNION ALL "
        f"{call} WHERE NOT EXISTS (SELECT FROM u)"
    )


def _data(sid: str, seq: int, text: str) -> Any:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise IntegrityError("corrupt event row", f"{sid}/{seq}") from None
    if type(data) is not dict:
        raise IntegrityError("corrupt event row (data not an object)", f"{sid}/{seq}")
    return data
