"""The synchronous core of the SQLite store: every method runs in one worker-thread hop.

Each worker thread has its own connection (``threading.local``), kept for the store's
life, so its prepared statements (the ``sqlite3`` statement cache) and page cache stay
warm. A write is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock
first (so the rows it reads cannot change before it writes), reads the sessions, calls
the base store's pure planner, checks every ``Mutation.expect``, writes and commits. A
reader never blocks a writer (WAL). Another process holding the write lock is waited for
by SQLite's busy handler, then retried, up to ``lock_timeout`` seconds in all; then the
call fails with :class:`StoreUnavailableError` and nothing was written.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import MISSING, fields, make_dataclass
from datetime import datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson

from sessionstore import (
    Checkpoint,
    ConfigurationError,
    Event,
    IntegrityError,
    Mutation,
    OutcomeUnknownError,
    Page,
    QueryOptions,
    RawEvent,
    Session,
    SessionConflictError,
    SessionFilter,
    Status,
    StoreUnavailableError,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.codec import checkpoint_from_record, checkpoint_to_record, dumps_record
from sessionstore.driver import EventFacts, EventRequest, NeedEvents, Prepared, session_tag
from sessionstore.planning import fast_session
from sessionstore.query import OrderKey, encode_cursor, order_key, search_matches

from ._events import RANGE_DRIVES_BELOW, EventWindow, events_sql, range_count_sql, range_read
from ._query import canonical_at, floor_ms, page_sql, where_sql
from ._schema import check, migrate

__all__ = ["Engine"]

T = TypeVar("T")
E = TypeVar("E", Event, RawEvent)
Build = Callable[[Mapping[str, Session]], list[Mutation]]
BuildWithFacts = Callable[[Mapping[str, Session], Mapping[str, EventFacts]], list[Mutation]]
Row = tuple[Any, ...]

COLUMNS: Final = (
    "s.sk, s.id, s.processor_id, s.status, s.session_group, s.created_ms, s.updated_ms, "
    "s.expires_ms, s.version, s.event_count, s.last_seq, s.tags, s.data, s.metadata"
)
_ONE: Final = f"SELECT {COLUMNS} FROM sessions s WHERE s.namespace = ? AND s.id = ?"
_INSERT: Final = (
    "INSERT INTO sessions(namespace, id, processor_id, status, session_group, created_ms, "
    "updated_ms, expires_ms, version, event_count, last_seq, tags, data, metadata) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_NEW: Final = _INSERT + " ON CONFLICT(namespace, id) DO NOTHING"
#: ``sessions`` columns a write may change, as ``_values`` orders them (from index 2).
_SET_COLUMNS: Final = (
    "processor_id", "status", "session_group", "created_ms", "updated_ms", "expires_ms",
    "version", "event_count", "last_seq", "tags", "data", "metadata",
)  # fmt: skip
_SK: Final = "(SELECT sk FROM sessions WHERE namespace = ? AND id = ?)"
_EVENT_COLS: Final = "seq, type, at_ms, data, key"
_EVENT: Final = "INSERT INTO events(sk, seq, type, at_ms, data, key) VALUES (?, ?, ?, ?, ?, ?)"
_STATUS: Final = {status.value: status for status in Status}
_loads: Final = orjson.loads
_BUSY: Final = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_CHUNK: Final = 500  # ids per IN (...) list
_MAX_EVENT_READS: Final = 1000  # each read answers what was asked: a bound against a bug only


def _fast_constructor(cls: type[T]) -> Callable[..., T]:
    """``cls(...)`` for a frozen slots dataclass without its frozen ``__init__`` (which
    costs an ``object.__setattr__`` per field): fill a mutable twin with the same slots,
    then re-class it (as ``sessionstore.planning.fast_session`` does for sessions)."""
    spec = [
        (f.name, f.type) if f.default is MISSING else (f.name, f.type, f.default)
        for f in fields(cls)  # type: ignore[arg-type]
    ]
    twin = make_dataclass(cls.__name__, spec, slots=True, eq=False, repr=False)
    assert twin.__slots__ == cls.__slots__  # type: ignore[attr-defined]

    def build(*args: Any) -> T:
        obj = twin(*args)
        obj.__class__ = cls
        result: T = obj
        return result

    return build


#: ``Event(seq, type, at, data, key)``, a read of 20 events builds 20.
_event: Callable[..., Event] = _fast_constructor(Event)
#: ``RawEvent(seq, type, at, data JSON, key)``, for ``get_raw_events``.
_raw_event: Callable[..., RawEvent] = _fast_constructor(RawEvent)


def _page_sql(
    conn: sqlite3.Connection, ref: tuple[str, list[Any]], window: EventWindow
) -> tuple[str, list[Any]]:
    """:func:`events_sql` for ``window``; a time range with a page size is counted first
    (one more statement, in the caller's read: few events in it make ``events_at`` drive
    the read, see :func:`range_read`)."""
    drives = range_read(window)
    if drives is None:
        counted = conn.execute(*range_count_sql(ref, window)).fetchone()[0]
        drives = counted < RANGE_DRIVES_BELOW
    return events_sql(_EVENT_COLS, ref, window, range_drives=drives)


def find_sql(column: str, n: int) -> str:
    """The events of one session (namespace and id bound first) with one of ``n`` seqs
    (``column="seq"``: the primary key) or keys (``"key"``: the key index, named: without
    statistics SQLite's planner takes ``key IN (...)`` on that partial index for no
    better than the session's primary-key range, and reads every event of the session
    for each keyed append)."""
    index = " INDEXED BY events_key" if column == "key" else ""
    marks = ", ".join("?" * n)
    return f"SELECT {_EVENT_COLS} FROM events{index} WHERE sk = {_SK} AND {column} IN ({marks})"


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY
    return "locked" in str(exc) or "busy" in str(exc)


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork() -> None:
    for engine in list(_ENGINES):
        engine._forget_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork)


class Engine:
    """One namespace of a SQLite store, synchronous and thread-safe."""

    def __init__(
        self, path: str, namespace: str, *, durable: bool, lock_timeout: float, create: bool
    ) -> None:
        self.path = path
        self.namespace = namespace
        self.durable = durable
        self.lock_timeout = lock_timeout
        self.create = create
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()
        self.corrupt: list[IntegrityError] = []
        _ENGINES.add(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's connections without closing them (a
        SQLite connection must not be used, or closed, across ``fork()``: closing it could
        checkpoint and remove the WAL the parent is using); the child opens its own."""
        self._mutex = threading.Lock()
        self._all = []
        self._local = threading.local()

    # ------------------------------------------------------------------ connections

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"file:{quote(self.path)}?mode=rw",
                uri=True,
                timeout=self.lock_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            try:
                conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
                conn.create_function("ss_canonical", 2, canonical_at, deterministic=True)
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            with self._mutex:
                self._all.append(conn)
        return conn

    def open(self) -> int:
        """Create the file if allowed, switch to WAL, migrate the schema; returns the
        schema version found (0: created)."""
        if self.create:
            try:
                os.close(
                    os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
                )
            except IsADirectoryError:
                raise ConfigurationError(f"sqlite store {self.path!r} is a directory") from None
            except FileNotFoundError:
                raise ConfigurationError(
                    f"the directory of sqlite store {self.path!r} does not exist"
                ) from None
        elif not os.path.isfile(self.path):
            raise ConfigurationError(f"sqlite store {self.path!r} does not exist (create=false)")
        try:
            conn = self.conn()
            try:
                conn.execute("SELECT json_valid('{}'), (1, 2) < (1, 3)").fetchone()
            except sqlite3.OperationalError as exc:
                raise ConfigurationError(
                    f"this SQLite ({sqlite3.sqlite_version}) lacks the JSON functions or "
                    f"row values the sqlite:// driver needs: {exc}"
                ) from None
            self._retry(lambda: check(conn, self.path))  # before WAL changes the file
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise ConfigurationError(f"sqlite store {self.path!r} cannot use WAL ({mode})")
            return self._retry(lambda: migrate(conn, self.path))
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise ConfigurationError(
                f"{self.path!r} is not a usable SQLite database: {exc}"
            ) from None

    def close(self) -> None:
        """Close every connection (of every thread)."""
        with self._mutex:
            conns, self._all = self._all, []
        for index, conn in enumerate(conns):
            if index == 0:
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
            conn.close()
        self._local = threading.local()

    # ------------------------------------------------------------------ transactions

    def _retry(self, fn: Callable[[], T]) -> T:
        """``fn()``, again while the database stays locked, up to ``lock_timeout``."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreUnavailableError(
                        f"sqlite store {self.path!r} stayed locked by another connection for "
                        f"more than lock_timeout={self.lock_timeout:g} s"
                    ) from exc
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any error.

        A failed ``COMMIT`` (I/O error, disk full) leaves the outcome to SQLite's journal:
        :class:`OutcomeUnknownError`, as for a lost connection to a server.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if _is_busy(exc):
                raise
            raise OutcomeUnknownError(
                f"commit to sqlite store {self.path!r} failed ({exc}); the write may or may "
                "not have been applied"
            ) from exc

    # ------------------------------------------------------------------ rows

    def _session(self, row: Row) -> Session:
        """The session of a ``COLUMNS`` row; a corrupt row raises :class:`IntegrityError`."""
        sid = row[1]
        try:
            data = _loads(row[12])
            metadata = _loads(row[13])
            tags = _loads(row[11])
            status = _STATUS[row[3]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise IntegrityError(f"corrupt session row ({exc!r})", self._name(sid)) from None
        if type(data) is not dict or type(metadata) is not dict or type(tags) is not list:
            raise IntegrityError("data/metadata/tags of the wrong JSON type", self._name(sid))
        expires = row[7]
        if expires is not None:
            expires = from_ms(expires)
        created = row[5]
        created_at = from_ms(created)
        return fast_session(
            sid, row[2], status, data, metadata, frozenset(tags), created_at,
            created_at if row[6] == created else from_ms(row[6]), expires, row[8], row[9], row[10],
            row[4],
        )  # fmt: skip

    def _name(self, sid: str) -> str:
        return f"{self.path}#{self.namespace}/{sid}"

    def _rows(self, conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Row]:
        if len(ids) == 1:
            row = conn.execute(_ONE, (self.namespace, ids[0])).fetchone()
            return {} if row is None else {ids[0]: row}
        out: dict[str, Row] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            sql = f"SELECT {COLUMNS} FROM sessions s WHERE s.namespace = ? AND s.id IN "
            sql += f"({', '.join('?' * len(chunk))})"
            for row in conn.execute(sql, [self.namespace, *chunk]):
                out[row[1]] = row
        return out

    # ------------------------------------------------------------------ reads

    def load(self, ids: Sequence[str]) -> dict[str, Session]:
        """The stored sessions among ``ids`` (a corrupt one raises IntegrityError)."""
        rows = self._retry(lambda: self._rows(self.conn(), ids))
        return {sid: self._session(row) for sid, row in rows.items()}

    def events(self, sid: str, after_seq: int, limit: int | None, last: int | None) -> list[Event]:
        """Events with ``seq > after_seq``: the first ``limit`` or the last ``last`` (only
        those rows are read)."""
        conn = self.conn()
        window = EventWindow(after_seq, None, limit, last)
        return self._retry(lambda: self._events(conn, sid, None, window))

    def live_events(self, sid: str, now: datetime, window: EventWindow) -> list[Event] | None:
        """``get_events`` in one hop: ``None`` when the session is missing or expired.

        One ``SELECT`` of the events of the live session; only an empty result costs a
        second one (to tell "no events" from "no session")."""
        return self._live(sid, now, window, self._decode_events)

    def live_raw_events(
        self, sid: str, now: datetime, window: EventWindow
    ) -> list[RawEvent] | None:
        """``get_raw_events`` in one hop, as :meth:`live_events`: each event's data the
        stored JSON, not decoded."""
        return self._live(sid, now, window, self._raw_events)

    def _live(
        self, sid: str, now: datetime, window: EventWindow,
        decode: Callable[[str, Sequence[Row]], list[E]],
    ) -> list[E] | None:  # fmt: skip
        conn = self.conn()
        ref = self._live_ref(sid, now)

        def read() -> list[E] | None:
            rows = self._event_rows(conn, sid, ref, window)
            if rows:
                return decode(sid, rows)
            return [] if self._is_live(conn, ref) else None

        return self._retry(read)

    def _live_ref(self, sid: str, now: datetime) -> tuple[str, list[Any]]:
        """The ``sk`` subquery of the live session ``sid`` and its arguments."""
        live = f"{_SK[:-1]} AND (expires_ms IS NULL OR expires_ms > ?))"
        return live, [self.namespace, sid, floor_ms(now)]

    @staticmethod
    def _is_live(conn: sqlite3.Connection, ref: tuple[str, list[Any]]) -> bool:
        row = conn.execute(f"SELECT 1 FROM sessions WHERE sk = {ref[0]}", ref[1]).fetchone()
        return row is not None

    def live_event(self, sid: str, now: datetime, key: str) -> tuple[bool, Event | None]:
        """``get_event(key=)`` in one hop: (the session is live, the event or ``None``);
        one lookup in the key index."""
        conn = self.conn()
        ref = self._live_ref(sid, now)

        def read() -> tuple[bool, Event | None]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE sk = {ref[0]} AND key = ?",
                [*ref[1], key],
            ).fetchall()
            if rows:
                return True, self._decode_events(sid, rows)[0]
            return self._is_live(conn, ref), None

        return self._retry(read)

    def query_events(self, sid: str, window: EventWindow) -> list[Event]:
        """A window of the session's events (missing session: ``[]``)."""
        conn = self.conn()
        return self._retry(lambda: self._events(conn, sid, None, window))

    def find_events(self, sid: str, seqs: Sequence[int], keys: Sequence[str]) -> list[Event]:
        """The stored events with these seqs or keys (primary key and key index lookups),
        ascending."""
        conn = self.conn()
        return self._retry(lambda: self._find_events(conn, sid, seqs, keys))

    def _find_events(
        self, conn: sqlite3.Connection, sid: str, seqs: Sequence[int], keys: Sequence[str]
    ) -> list[Event]:
        rows: dict[int, Row] = {}
        for column, values in (("seq", seqs), ("key", keys)):
            for row in self._find_rows(conn, sid, column, values):
                rows[row[0]] = row
        return self._decode_events(sid, [rows[q] for q in sorted(rows)])

    def _find_rows(
        self, conn: sqlite3.Connection, sid: str, column: str, values: Sequence[Any]
    ) -> list[Row]:
        """The rows (``seq, type, at_ms, data, key``) of the session's events with one of
        these seqs or keys (:func:`find_sql`), undecoded, in no particular order."""
        out: list[Row] = []
        head = [self.namespace, sid]
        for start in range(0, len(values), _CHUNK):
            chunk = list(values[start : start + _CHUNK])
            out += conn.execute(find_sql(column, len(chunk)), [*head, *chunk]).fetchall()
        return out

    def event_seqs(self, sid: str, after_seq: int, last: int | None) -> list[int]:
        """The seqs above ``after_seq`` (the newest ``last``), ascending: the primary key
        alone, no event row decoded."""
        conn = self.conn()
        return self._retry(lambda: self._event_seqs(conn, sid, after_seq, last))

    def _event_seqs(
        self, conn: sqlite3.Connection, sid: str, after_seq: int, last: int | None
    ) -> list[int]:
        sql = f"SELECT seq FROM events WHERE sk = {_SK} AND seq > ? ORDER BY seq"
        args: list[Any] = [self.namespace, sid, after_seq]
        if last is not None:
            sql += " DESC LIMIT ?"
            args.append(last)
        found = [q for (q,) in conn.execute(sql, args)]
        if last is not None:
            found.reverse()
        return found

    def _events(
        self, conn: sqlite3.Connection, sid: str, ref: tuple[str, list[Any]] | None,
        window: EventWindow,
    ) -> list[Event]:  # fmt: skip
        return self._decode_events(sid, self._event_rows(conn, sid, ref, window))

    def _event_rows(
        self, conn: sqlite3.Connection, sid: str, ref: tuple[str, list[Any]] | None,
        window: EventWindow,
    ) -> list[Row]:  # fmt: skip
        """The window's rows in ascending seq (``ref``: the session's ``sk`` subquery,
        ``None`` for the plain one)."""
        sql, args = _page_sql(conn, ref or (_SK, [self.namespace, sid]), window)
        rows: list[Row] = conn.execute(sql, args).fetchall()
        if window.last is not None:
            rows.reverse()
        return rows

    def _decode_events(self, sid: str, rows: Sequence[Row]) -> list[Event]:
        out = []
        stamps: dict[int, datetime] = {}  # the events of one append share their time
        for seq, etype, at_ms, data, key in rows:
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise IntegrityError(
                    f"corrupt event ({exc})", f"{self._name(sid)}/events/{seq}"
                ) from None
            if type(payload) is not dict:
                name = f"{self._name(sid)}/events/{seq}"
                raise IntegrityError("event data is not an object", name)
            at = stamps.get(at_ms)
            if at is None:
                at = stamps[at_ms] = from_ms(at_ms)
            out.append(_event(seq, etype, at, payload, key))
        return out

    def _raw_events(self, sid: str, rows: Sequence[Row]) -> list[RawEvent]:
        """Events with their data as stored: the JSON is not parsed (a caller's parse
        finds a corrupt one), only checked to be an object's (``{`` ... ``}``)."""
        out = []
        stamps: dict[int, datetime] = {}
        for seq, etype, at_ms, data, key in rows:
            if type(data) is str:  # (a row some other writer stored as TEXT)
                data = data.encode()
            if data[:1] != b"{" or data[-1:] != b"}":
                name = f"{self._name(sid)}/events/{seq}"
                raise IntegrityError("event data is not an object", name)
            at = stamps.get(at_ms)
            if at is None:
                at = stamps[at_ms] = from_ms(at_ms)
            out.append(_raw_event(seq, etype, at, data, key))
        return out

    def checkpoints_many(self, ids: Sequence[str]) -> dict[str, list[Checkpoint]]:
        """Every checkpoint of each of ``ids``, oldest first (digests not verified)."""
        conn = self.conn()
        out: dict[str, list[Checkpoint]] = {sid: [] for sid in ids}

        def read() -> list[Row]:
            rows: list[Row] = []
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                rows += conn.execute(
                    "SELECT s.id, c.id, c.body FROM sessions s JOIN checkpoints c ON c.sk = s.sk"
                    f" WHERE s.namespace = ? AND s.id IN ({', '.join('?' * len(chunk))})",
                    [self.namespace, *chunk],
                ).fetchall()
            return rows

        for sid, cp_id, body in self._retry(read):
            name = f"{self._name(sid)}/checkpoints/{cp_id}"
            try:
                record = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise IntegrityError(f"corrupt checkpoint ({exc})", name) from None
            out[sid].append(checkpoint_from_record(record, name))
        for cps in out.values():
            cps.sort(key=lambda cp: (cp.created_at, cp.id))
        return out

    def scan_page(
        self, after_id: str, size: int
    ) -> tuple[list[Session], list[IntegrityError], str | None]:
        """Up to ``size`` sessions with ids after ``after_id`` in id order (corrupt ones
        returned apart) and the next page's ``after_id`` (``None``: this was the last)."""
        rows = self._retry(
            lambda: (
                self.conn()
                .execute(
                    f"SELECT {COLUMNS} FROM sessions s WHERE s.namespace = ? AND s.id > ? "
                    "ORDER BY s.id LIMIT ?",
                    (self.namespace, after_id, size),
                )
                .fetchall()
            )
        )
        good, bad = self._sessions(rows)
        return good, bad, rows[-1][1] if len(rows) == size else None

    def _sessions(self, rows: Sequence[Row]) -> tuple[list[Session], list[IntegrityError]]:
        good, bad = [], []
        for row in rows:
            try:
                good.append(self._session(row))
            except IntegrityError as exc:
                bad.append(exc)
        return good, bad

    def expired(self, now: datetime) -> tuple[list[Session], list[IntegrityError]]:
        """Sessions whose expiry is at or before ``now``, soonest first."""
        rows = self._retry(
            lambda: (
                self.conn()
                .execute(
                    f"SELECT {COLUMNS} FROM sessions s WHERE s.namespace = ? AND "
                    "s.expires_ms IS NOT NULL AND s.expires_ms <= ? ORDER BY s.expires_ms, s.id",
                    (self.namespace, floor_ms(now)),
                )
                .fetchall()
            )
        )
        return self._sessions(rows)

    def count(self, flt: SessionFilter, now: datetime) -> int:
        """How many sessions match (counted by SQLite)."""
        where, params = where_sql(self.namespace, flt, now)
        sql = f"SELECT COUNT(*) FROM sessions s WHERE {where}"
        return int(self._retry(lambda: self.conn().execute(sql, params).fetchone()[0]))

    def page(
        self, flt: SessionFilter, options: QueryOptions, now: datetime, after: OrderKey | None,
        fingerprint: str, needle: str | None,
    ) -> tuple[Page, list[IntegrityError]]:  # fmt: skip
        """One page in keyset order after ``after``; ``needle``: only sessions it is found
        in (checked here, row by row, as the rows come in order).

        Without a needle the statement is limited to the rows the page needs (which lets
        the planner prefer the index that gives the order); if a corrupt row among them
        was skipped, it runs again without the limit, so a skipped row never ends the
        paging early."""
        sql, params = page_sql(COLUMNS, self.namespace, flt, options, now, after)
        if needle is None:
            wanted = options.offset + options.limit + 1
            page, bad, read = self._retry(
                lambda: self._page(f"{sql} LIMIT ?", [*params, wanted], options, fingerprint, None)
            )
            if not bad or read < wanted:
                return page, bad
        page, bad, _ = self._retry(lambda: self._page(sql, params, options, fingerprint, needle))
        return page, bad

    def _page(
        self, sql: str, params: list[Any], options: QueryOptions, fingerprint: str,
        needle: str | None,
    ) -> tuple[Page, list[IntegrityError], int]:  # fmt: skip
        """The page, the corrupt rows skipped, and how many rows were read."""
        skip, limit = options.offset, options.limit
        picked: list[Session] = []
        bad: list[IntegrityError] = []
        read = 0
        cur = self.conn().execute(sql, params)
        try:
            for row in cur:
                read += 1
                try:
                    session = self._session(row)
                except IntegrityError as exc:
                    bad.append(exc)
                    continue
                if needle is not None and not search_matches(session, needle):
                    continue
                if skip:
                    skip -= 1
                    continue
                picked.append(session)
                if len(picked) > limit:
                    break
        finally:
            cur.close()
        items = picked[:limit]
        cursor = None
        if len(picked) > limit:
            cursor = encode_cursor(fingerprint, order_key(items[-1], options.sort_by))
        return Page(items, cursor), bad, read

    # ------------------------------------------------------------------ writes

    def transact(
        self, load_ids: Sequence[str], build: BuildWithFacts, requests: Mapping[str, EventRequest]
    ) -> list[Mutation]:
        """Lock, read ``load_ids``, plan with ``build``, check and write: one transaction.

        What ``requests`` ask of the stored events is read first, and what the planner
        asks for more (:class:`NeedEvents`) is read and the plan made again, all under
        the one write lock, so the facts are those of the rows the plan sees."""
        conn = self.conn()

        def run() -> list[Mutation]:
            facts: dict[str, EventFacts] = {}

            def plan(loaded: Mapping[str, Session]) -> list[Mutation]:
                self._read_facts(conn, requests, loaded, facts)
                for _ in range(_MAX_EVENT_READS):
                    try:
                        return build(loaded, facts)
                    except NeedEvents as need:
                        self._read_facts(conn, {need.session_id: need.request}, loaded, facts)
                raise StoreUnavailableError("the plan kept asking for more events")  # a bug

            with self._write(conn):
                return self._plan_and_write(conn, load_ids, plan)

        return self._retry(run)

    def _plan_and_write(
        self, conn: sqlite3.Connection, load_ids: Sequence[str], build: Build
    ) -> list[Mutation]:
        rows = self._rows(conn, load_ids) if load_ids else {}
        loaded = {sid: self._session(row) for sid, row in rows.items()}
        mutations = build(loaded)
        looked = set(load_ids)
        for _ in range(3):  # sessions the plan created with generated ids
            extra = [m.session_id for m in mutations if m.session_id not in looked]
            looked.update(extra)
            found = self._rows(conn, extra) if extra else {}
            if not found:
                break
            rows.update(found)
            loaded.update((sid, self._session(row)) for sid, row in found.items())
            mutations = build(loaded)
        if mutations:
            self._check(mutations, rows)
            self._write_all(conn, mutations, rows)
        return mutations

    def _read_facts(
        self,
        conn: sqlite3.Connection,
        requests: Mapping[str, EventRequest],
        loaded: Mapping[str, Session],
        facts: dict[str, EventFacts],
    ) -> None:
        """Answer ``requests`` about the stored events of sessions in ``loaded`` (the
        engine's reads, inside the caller's transaction) into ``facts``."""
        for sid, req in requests.items():
            tag = session_tag(loaded.get(sid))
            have = facts.get(sid)
            if have is None or have.tag != tag:
                have = facts[sid] = EventFacts(tag)
            missing = None if tag is None else have.missing(req)
            if missing is None:
                continue
            if missing.tail:
                window = EventWindow(last=missing.tail)
                have.tail = self._events(conn, sid, None, window)
                have.tail_n = missing.tail
            if missing.seq_tail:
                have.seq_tail = self._event_seqs(conn, sid, 0, missing.seq_tail)
                have.seq_tail_n = missing.seq_tail
            for after in sorted(missing.after):
                have.after[after] = self._event_seqs(conn, sid, after, None)
            if missing.seqs or missing.keys:
                found = self._find_events(conn, sid, sorted(missing.seqs), sorted(missing.keys))
                have.by_seq.update((q, None) for q in missing.seqs)
                have.by_key.update((k, None) for k in missing.keys)
                for e in found:
                    if e.seq in missing.seqs:
                        have.by_seq[e.seq] = e
                    if e.key is not None and e.key in missing.keys:
                        have.by_key[e.key] = e

    def append_plain(self, prepared: Prepared, now: datetime) -> Session | None:
        """A prepared append without ``create`` or an expiry change in one ``BEGIN
        IMMEDIATE`` transaction, without the planner: the session's row, the stored events
        of the call's keys, then the events' rows and the row's changed columns. The
        session after it; ``None`` (nothing written) for whatever the planner must
        answer: a missing session or one at or near its expiry, a version mismatch, a key
        repeated in the call, a key stored with another type or other JSON bytes (a
        conflict, or equal JSON stored otherwise), nothing new. A key stored with the
        same type and the bytes the planner's write would store (``orjson.dumps`` of the
        event's data) is not written again, as the planner does."""
        sid, expected = prepared.session_id, prepared.expected_version
        ats = prepared.event_ats
        keys_in = prepared.event_keys
        conn = self.conn()
        now_ms = to_ms(now)
        keys = [] if keys_in is None else [k for k in keys_in if k is not None]
        if len(set(keys)) != len(keys):  # a key repeated in the call: the planner's
            return None

        def run() -> Session | None:
            with self._write(conn):
                row = conn.execute(_ONE, (self.namespace, sid)).fetchone()
                if row is None or (row[7] is not None and row[7] <= now_ms + 1):
                    return None
                if expected is not None and row[8] != expected:
                    return None
                stored: dict[str, tuple[str, Any]] = {}
                if keys and row[9]:  # (no stored events: none looked up, as the planner)
                    found = self._find_rows(conn, sid, "key", keys)
                    stored = {key: (etype, data) for _, etype, _, data, key in found}
                sk, seq = row[0], row[10]
                rows: list[tuple[Any, ...]] = []
                for i, (etype, payload) in enumerate(prepared.events):
                    data = orjson.dumps(payload)
                    key = None if keys_in is None else keys_in[i]
                    if key is not None and (have := stored.get(key)) is not None:
                        if have != (etype, data):
                            return None
                        continue
                    at = None if ats is None else ats[i]
                    seq += 1
                    rows.append((sk, seq, etype, now_ms if at is None else to_ms(at), data, key))
                if not rows:
                    return None
                cur = self._session(row)
                conn.executemany(_EVENT, rows)
                conn.execute(
                    "UPDATE sessions SET updated_ms = ?, version = ?, event_count = ?, "
                    "last_seq = ? WHERE sk = ?"
                    if row[6] != now_ms
                    else "UPDATE sessions SET version = ?, event_count = ?, last_seq = ? "
                    "WHERE sk = ?",
                    (
                        *((now_ms,) if row[6] != now_ms else ()),
                        row[8] + 1,
                        row[9] + len(rows),
                        seq,
                        sk,
                    ),
                )
                return fast_session(
                    cur.id, cur.processor_id, cur.status, cur.data, cur.metadata, cur.tags,
                    cur.created_at, now, cur.expires_at, cur.version + 1,
                    cur.event_count + len(rows), seq, cur.group,
                )  # fmt: skip

        return self._retry(run)

    def apply(self, mutations: Sequence[Mutation]) -> None:
        """Check every ``expect`` against the stored versions, then write all of them."""
        conn = self.conn()

        def run() -> None:
            with self._write(conn):
                rows = self._rows(conn, list(dict.fromkeys(m.session_id for m in mutations)))
                self._check(mutations, rows)
                self._write_all(conn, mutations, rows)

        self._retry(run)

    def create_new(self, s: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """Insert a version-1 session if its id is free (no read; one statement without
        tags, which is its own transaction)."""
        conn = self.conn()
        values = self._values(s, data_json, metadata_json)

        def run() -> bool:
            if not s.tags:
                return bool(conn.execute(_INSERT_NEW, values).rowcount)
            with self._write(conn):
                cur = conn.execute(_INSERT_NEW, values)
                if not cur.rowcount:
                    return False
                self._put_tags(conn, cur.lastrowid, s)
                return True

        return self._retry(run)

    @staticmethod
    def _check(mutations: Sequence[Mutation], rows: Mapping[str, Row]) -> None:
        for mut in mutations:
            row = rows.get(mut.session_id)
            actual = 0 if row is None else row[8]
            if actual != mut.expect:
                raise SessionConflictError(mut.session_id, mut.expect, actual)

    def _values(self, s: Session, data_json: bytes, metadata_json: bytes) -> tuple[Any, ...]:
        """The ``sessions`` row of ``s`` (the status binds as the str it is: a StrEnum)."""
        return (
            self.namespace, s.id, s.processor_id, s.status, s.group, to_ms(s.created_at),
            to_ms(s.updated_at), None if s.expires_at is None else to_ms(s.expires_at),
            s.version, s.event_count, s.last_seq, orjson.dumps(sorted(s.tags)) if s.tags else b"[]",
            data_json, metadata_json,
        )  # fmt: skip

    def _put_tags(self, conn: sqlite3.Connection, sk: int | None, s: Session) -> None:
        created = to_ms(s.created_at)
        conn.executemany(
            "INSERT INTO tags(sk, tag, namespace, created_ms, id) VALUES (?, ?, ?, ?, ?)",
            [(sk, tag, self.namespace, created, s.id) for tag in s.tags],
        )

    def _write_all(
        self, conn: sqlite3.Connection, mutations: Sequence[Mutation], rows: Mapping[str, Row]
    ) -> None:
        for mut in mutations:
            row = rows.get(mut.session_id)
            sk: int | None = None if row is None else row[0]
            if mut.delete or (mut.reset and sk is not None):
                if sk is not None:
                    conn.execute("DELETE FROM events WHERE sk = ?", (sk,))
                    conn.execute("DELETE FROM checkpoints WHERE sk = ?", (sk,))
                if mut.delete:
                    if sk is not None:
                        conn.execute("DELETE FROM tags WHERE sk = ?", (sk,))
                        conn.execute("DELETE FROM sessions WHERE sk = ?", (sk,))
                    continue
            if mut.session is not None:
                sk = self._put_session(conn, mut, row)
            if sk is None:
                continue  # nothing stored to attach events or checkpoints to
            # removals apply to the events stored before the mutation: before the append
            if mut.trim_before:
                conn.execute("DELETE FROM events WHERE sk = ? AND seq < ?", (sk, mut.trim_before))
            if mut.truncate_after is not None:
                conn.execute(
                    "DELETE FROM events WHERE sk = ? AND seq > ?", (sk, mut.truncate_after)
                )
            if mut.delete_seqs:
                conn.executemany(
                    "DELETE FROM events WHERE sk = ? AND seq = ?",
                    [(sk, seq) for seq in mut.delete_seqs],
                )
            if mut.append:
                conn.executemany(
                    _EVENT,
                    [
                        (sk, e.seq, e.type, to_ms(e.at), orjson.dumps(e.data), e.key)
                        for e in mut.append
                    ],
                )
            for cp_id in mut.delete_checkpoints:
                conn.execute("DELETE FROM checkpoints WHERE sk = ? AND id = ?", (sk, cp_id))
            for cp in mut.put_checkpoints:
                conn.execute(
                    "INSERT OR REPLACE INTO checkpoints(sk, id, created_ms, body) "
                    "VALUES (?, ?, ?, ?)",
                    (sk, cp.id, to_ms(cp.created_at), dumps_record(checkpoint_to_record(cp))),
                )

    def _put_session(self, conn: sqlite3.Connection, mut: Mutation, row: Row | None) -> int:
        s = mut.session
        assert s is not None and mut.data_json is not None and mut.metadata_json is not None
        values = self._values(s, mut.data_json, mut.metadata_json)
        if row is None:
            sk = conn.execute(_INSERT, values).lastrowid
            assert sk is not None
            self._put_tags(conn, sk, s)
            return sk
        sk = int(row[0])
        # only the columns that changed: SQLite rewrites the entries of every index that
        # holds a column named in SET, changed or not (an append changes 4 columns and
        # touches the 3 updated_at indexes, not all 7)
        changed = [i for i in range(2, 14) if values[i] != row[i]]
        if changed:
            sets = ", ".join(f"{_SET_COLUMNS[i - 2]} = ?" for i in changed)
            conn.execute(
                f"UPDATE sessions SET {sets} WHERE sk = ?", [*(values[i] for i in changed), sk]
            )
        if values[11] != row[11] or values[5] != row[5]:  # tags, or created_ms (re-create)
            conn.execute("DELETE FROM tags WHERE sk = ?", (sk,))
            self._put_tags(conn, sk, s)
        return sk
