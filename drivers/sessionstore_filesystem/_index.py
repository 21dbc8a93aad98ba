"""The query index: stdlib ``sqlite3`` in WAL mode, one row per session, rebuildable.

The files are the truth; the index answers "which sessions, in which order" and holds
what a listing returns (every field of the current session: a page is one indexed query,
no file is read). Every write updates it after the durable file write, under the
session's lock, so rows change in the same order as the files, whichever process writes.
A crash between the two is repaired from the in-flight markers (see ``_engine``);
``reindex`` rebuilds it from the files. A row without ``data`` (NULL: an index upgraded
from format 2 and not yet rebuilt) or one that does not decode is read from the files.

Times are stored as epoch milliseconds (the order key of ``sessionstore.query``);
exclusive bounds given with sub-millisecond precision are rounded the way that keeps the
reference semantics for millisecond-precision timestamps. Metadata equality is checked
in Python with :func:`sessionstore.query.matches` on the stored metadata JSON, so it is
exactly the reference rule.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import fields, make_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import orjson

from sessionstore import QueryOptions, Session, SessionFilter, Status
from sessionstore.clock import to_ms
from sessionstore.query import OrderKey, matches

from ._event_index import EventChange, apply_changes, invalidate

__all__ = ["INDEX_FORMAT", "Index", "Row", "session_of"]

# 2: the event index (events, ev_cover); a format-1 index is rebuilt on open.
# 3: rows hold the whole session (last_seq, grp, tag_list, data) and the processor's
# index is (processor_id, updated_ms, id); a format-2 index gains the columns and is
# rebuilt on open (see Index.create).
# 4: fewer pages a create writes: no ``tags_id`` (a row's tag rows are found by the keys
# of its ``tag_list``), ``sessions_expires`` only holds sessions that expire, and a new
# session's empty event cover is written by its first append. A format-3 index is
# upgraded in place on open (see ``_upgrade_4``); a format-3 process would rebuild it.
INDEX_FORMAT: Final = "4"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY,
    processor_id TEXT,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    version INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    metadata BLOB NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    grp TEXT,
    tag_list BLOB,
    data BLOB
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions(created_ms, id);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_ms, id);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_ms, id)
    WHERE expires_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_proc_updated ON sessions(processor_id, updated_ms, id);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);
CREATE TABLE IF NOT EXISTS tags(
    tag TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY(tag, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ev_cover(
    id TEXT PRIMARY KEY, inc TEXT NOT NULL, gen INTEGER NOT NULL,
    end_off INTEGER NOT NULL, tail_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
    id TEXT NOT NULL, seq INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL,
    type TEXT NOT NULL, at_us INTEGER NOT NULL, key TEXT,
    PRIMARY KEY(id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_type ON events(id, type, seq);
CREATE INDEX IF NOT EXISTS events_at ON events(id, at_us, seq);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(id, key) WHERE key IS NOT NULL;
"""
# Format 2 -> 3: the columns a listing returns (the table is rebuilt after this).
_UPGRADE_3: Final = (
    "ALTER TABLE sessions ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN grp TEXT",
    "ALTER TABLE sessions ADD COLUMN tag_list BLOB",
    "ALTER TABLE sessions ADD COLUMN data BLOB",
    "DROP INDEX IF EXISTS sessions_processor",
    "DELETE FROM meta WHERE key = 'complete'",
)
# Format 3 -> 4: the expiry index made partial (``tags_id`` is dropped by _upgrade_4 once
# every row's tag_list is filled).
_UPGRADE_4: Final = (
    "DROP INDEX sessions_expires",
    "CREATE INDEX sessions_expires ON sessions(expires_ms, id) WHERE expires_ms IS NOT NULL",
)
_UPSERT: Final = """
INSERT INTO sessions(id, processor_id, status, created_ms, updated_ms, expires_ms, version,
                     event_count, metadata, last_seq, grp, tag_list, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET processor_id = excluded.processor_id, status = excluded.status,
    created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
    expires_ms = excluded.expires_ms, version = excluded.version,
    event_count = excluded.event_count, metadata = excluded.metadata,
    last_seq = excluded.last_seq, grp = excluded.grp, tag_list = excluded.tag_list,
    data = excluded.data
"""
# Only the columns that changed (SQLite rewrites the entries of every index on a column
# it sets): an append moves the time, version and counts; a save also the data. Never
# on a row without data (upgraded in place, its other new columns not filled yet): that
# one gets the whole row.
_BUMP: Final = (
    "UPDATE sessions SET updated_ms = ?, version = ?, event_count = ?, last_seq = ?"
    " WHERE id = ? AND data IS NOT NULL"
)
_BUMP_DATA: Final = (
    "UPDATE sessions SET updated_ms = ?, version = ?, event_count = ?, last_seq = ?, data = ?"
    " WHERE id = ? AND data IS NOT NULL"
)
#: What a listing reads of a row (``session_of`` decodes it); metadata at ``_META``.
_SELECT_FULL: Final = (
    "SELECT id, processor_id, status, created_ms, updated_ms, expires_ms, version,"
    " event_count, last_seq, grp, tag_list, metadata, data FROM sessions"
)
_META: Final = 11
_STATUS: Final = {s.value: s for s in Status}
_NO_TAGS: Final[frozenset[str]] = frozenset()
#: Tag sets by their JSON and datetimes by their epoch milliseconds, as listings decoded
#: them lately (immutable, so shared; a page is listed again and again).
_TAG_SETS: dict[bytes, frozenset[str]] = {}
_TIMES: dict[int, datetime] = {}
_CACHE_MAX: Final = 8192
_ONE_MS: Final = timedelta(milliseconds=1)
_loads = orjson.loads
#: ``Session``'s twin: the same slots without the frozen ``__setattr__``; a row's session
#: is built as one and re-classed (callgrind, per session: ~7k instructions through
#: ``planning.fast_session``, which adds a call with ``*args``; ~14k setting the slots
#: through their descriptors; ~5k this way).
_SESSION_SLOTS: Final = tuple(f.name for f in fields(Session))
if _SESSION_SLOTS != (
    "id", "processor_id", "status", "data", "metadata", "tags", "created_at", "updated_at",
    "expires_at", "version", "event_count", "last_seq", "group",
) or hasattr(Session, "__post_init__"):  # fmt: skip
    raise ImportError("sessionstore.Session changed: update session_of")  # pragma: no cover
_Twin = make_dataclass(
    "Session", [(f.name, f.type) for f in fields(Session)], slots=True, eq=False, repr=False
)
if _Twin.__slots__ != Session.__slots__:  # type: ignore[attr-defined]
    raise ImportError("sessionstore.Session's slots changed: update session_of")  # pragma: no cover


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER: Final = datetime(2000, 1, 1, tzinfo=UTC)

#: A row as a query yields it: ``(id, metadata JSON)``, or with ``full=True`` the columns
#: of ``_SELECT_FULL`` (for :func:`session_of`).
Row = tuple[Any, ...]


def _us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _floor_ms(value: datetime) -> int:
    return _us(value) // 1000


def _ceil_ms(value: datetime) -> int:
    return -(-_us(value) // 1000)


def _row(s: Session, data_json: bytes | None = None) -> tuple[Any, ...]:
    """The columns of ``s`` (``data_json``: its data already encoded, or None)."""
    return (
        s.id,
        s.processor_id,
        s.status.value,
        to_ms(s.created_at),
        to_ms(s.updated_at),
        None if s.expires_at is None else to_ms(s.expires_at),
        s.version,
        s.event_count,
        orjson.dumps(s.metadata),
        s.last_seq,
        s.group,
        orjson.dumps(sorted(s.tags)) if s.tags else None,
        orjson.dumps(s.data) if data_json is None else data_json,
    )


def session_of(row: Row) -> Session | None:
    """The session of a ``full`` row; None when the row has no data (an index upgraded
    in place, not yet rebuilt) or does not decode: read that one from its files."""
    sid, processor, status, created, updated, expires, version, count, last, grp, tags, meta, data = row  # fmt: skip  # noqa: E501
    if data is None:
        return None
    try:
        data = _loads(data)
        meta = {} if meta == b"{}" else _loads(meta)
        if tags is None:
            tag_set = _NO_TAGS
        elif (tag_set := _TAG_SETS.get(tags)) is None:  # type: ignore[assignment]
            tag_set = frozenset(_loads(tags))
            if len(_TAG_SETS) >= _CACHE_MAX:
                _TAG_SETS.clear()
            _TAG_SETS[tags] = tag_set
        state = _STATUS[status]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(data) is not dict or type(meta) is not dict:
        return None
    times = _TIMES
    created_at = times.get(created) or _time(created)
    updated_at = created_at if updated == created else times.get(updated) or _time(updated)
    session = _Twin(
        sid, processor, state, data, meta, tag_set, created_at, updated_at,
        None if expires is None else times.get(expires) or _time(expires),
        version, count, last, grp,
    )  # fmt: skip
    session.__class__ = Session
    return session  # type: ignore[no-any-return]


def _time(ms: int) -> datetime:
    """``clock.from_ms``, kept in ``_TIMES`` (a page is listed again and again)."""
    if len(_TIMES) >= _CACHE_MAX:
        _TIMES.clear()
    when: datetime = _EPOCH + _ONE_MS * ms
    _TIMES[ms] = when
    return when


def _create_schema(conn: sqlite3.Connection) -> None:
    """Switch a new index file to WAL and create its tables (each step idempotent)."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA page_size=1024")  # small rows, small WAL frames per commit
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError("database is locked (journal mode not switched)")
    conn.executescript(_SCHEMA)


def _while_locked(step: Callable[[], None], timeout: float) -> None:
    """Run ``step``, again while another process holds the file (up to ``timeout``).

    Switching a new database to WAL, and the first read of one another connection is
    switching, can fail with "database is locked" at once, without the busy handler
    that ``timeout`` sets for ordinary statements: processes opening a new store at the
    same moment retry here instead of failing their first open."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class _Local(threading.local):
    """A thread's state of an :class:`Index`: its connection; whether it is inside a
    :meth:`Index.snapshot` block and began the block's read transaction; its memo of
    listing plans and the index version the memo holds for."""

    conn: sqlite3.Connection | None = None
    snapshot = False
    began = False
    memo: dict[Any, Any] | None = None
    version: tuple[int, int] | None = None


class _Snapshot:
    """:meth:`Index.snapshot`'s block (one object per index: entering it costs two
    attribute writes, where a generator-based context manager cost ~1 us a listing)."""

    __slots__ = ("_index",)

    def __init__(self, index: Index) -> None:
        self._index = index

    def __enter__(self) -> None:
        self._index._local.snapshot = True

    def __exit__(self, *exc: object) -> None:
        local = self._index._local
        local.snapshot = False
        if local.began:
            local.began = False
            conn = local.conn
            if conn is not None:
                conn.execute("COMMIT")


class Index:
    """One namespace's index database; a connection per thread (WAL allows readers and
    one writer at a time across processes)."""

    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._local = _Local()
        self._snapshot = _Snapshot(self)
        self._all: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ connections

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = self._local.conn
        if conn is None:
            conn = sqlite3.connect(
                f"file:{quote(self.path)}?nofollow=1",
                uri=True,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._mutex:
                self._all.append(conn)
        return conn

    def snapshot(self) -> _Snapshot:
        """A block (``with index.snapshot():``) whose listings (:meth:`select` with
        options) read one snapshot of the index and reuse what they weigh their plan by
        while the index is unchanged.

        A listing whose filter has a set condition to weigh (a tag, statuses, several
        processors) reads ``PRAGMA data_version`` and the connection's ``total_changes``
        (any commit by another connection, of this process or another, moves the
        first; this connection's own writes the second): while both are as before, the
        counts that chose the driving condition and the soonest expiry are this
        thread's memo's (:func:`_where`). That listing then runs in a read transaction,
        begun before the version is read and ended when the block ends, so its query
        sees exactly the rows the memo was checked against. No index write may run
        inside the block (on this thread)."""
        return self._snapshot

    def _memo(self, conn: sqlite3.Connection) -> dict[Any, Any] | None:
        """This thread's memo, valid for the index as ``conn`` now sees it (None outside
        :meth:`snapshot`: nothing is reused)."""
        local = self._local
        if not local.snapshot:
            return None
        if not conn.in_transaction:
            conn.execute("BEGIN")  # the version and the query read one snapshot
            local.began = True
        version = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        memo = local.memo
        if memo is None or local.version != version or len(memo) >= _MEMO_MAX:
            memo = local.memo = {}
            local.version = version
        return memo

    def close(self) -> None:
        """Close every connection (of every thread)."""
        with self._mutex:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = _Local()

    def create(self) -> bool:
        """Create the schema; True when the index must be (re)built from the files."""
        conn = self.conn()
        _while_locked(lambda: _create_schema(conn), self.timeout)
        with _tx(conn):  # one process upgrades an older index; the others see it done
            columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
            if "data" not in columns:
                for step in _UPGRADE_3:
                    conn.execute(step)
            _upgrade_4(conn)
        fmt = self.get_meta("format")
        complete = self.get_meta("complete")
        return fmt != INDEX_FORMAT or complete != "1"

    def get_meta(self, key: str) -> str | None:
        row = self.conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, **values: str) -> None:
        conn = self.conn()
        with _tx(conn):
            for key, value in values.items():
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ writes

    def write(
        self,
        changes: Sequence[tuple[str, Session | None, Session | None]],
        events: Sequence[EventChange] = (),
        encoded: Mapping[str, bytes] | None = None,
    ) -> None:
        """Apply ``(id, old, new)`` changes (``new`` None: deleted) and the event rows'
        ``events`` in one transaction (``encoded``: the new sessions' data as JSON, by
        id, where the write already has it)."""
        conn = self.conn()
        if len(changes) == 1:
            sid, old, new = changes[0]
            if (
                new is not None
                and old is not None
                and (old.tags is new.tags or old.tags == new.tags)
                and (old.metadata is new.metadata or old.metadata == new.metadata)
                and old.processor_id == new.processor_id
                and old.status is new.status
                and old.created_at == new.created_at
                and old.expires_at == new.expires_at
                and old.group == new.group
            ):
                if old.data is new.data or old.data == new.data:
                    sql = _BUMP
                    args: tuple[Any, ...] = (
                        to_ms(new.updated_at), new.version, new.event_count, new.last_seq, sid
                    )  # fmt: skip
                else:
                    data_json = None if encoded is None else encoded.get(sid)
                    sql = _BUMP_DATA
                    args = (
                        to_ms(new.updated_at), new.version, new.event_count, new.last_seq,
                        orjson.dumps(new.data) if data_json is None else data_json, sid,
                    )  # fmt: skip
                if not events:
                    cur = conn.execute(sql, args)
                    if cur.rowcount == 1:
                        return
                else:
                    with _tx(conn):
                        if conn.execute(sql, args).rowcount != 1:
                            self._put(conn, sid, old, new, encoded)
                        apply_changes(conn, events)
                    return
        with _tx(conn):
            for sid, old, new in changes:
                self._put(conn, sid, old, new, encoded)
            apply_changes(conn, events)

    def _put(
        self,
        conn: sqlite3.Connection,
        sid: str,
        old: Session | None,
        new: Session | None,
        encoded: Mapping[str, bytes] | None = None,
    ) -> None:
        if new is None:
            _retag(conn, sid, _stored_tags(conn, sid), _NO_TAGS)
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            return
        if old is None or old.tags != new.tags:
            stored = _stored_tags(conn, sid)  # read before the upsert replaces tag_list
            conn.execute(_UPSERT, _row(new, None if encoded is None else encoded.get(sid)))
            _retag(conn, sid, stored, new.tags)
        else:
            conn.execute(_UPSERT, _row(new, None if encoded is None else encoded.get(sid)))

    def replace_rows(self, rows: Iterable[tuple[str, Session | None]]) -> None:
        """Make rows exactly match the given sessions (tags rewritten); their event rows
        are rebuilt when next needed (a repair follows a write that may have failed
        after its index update, whose lines were then cut off: their seqs come again)."""
        conn = self.conn()
        with _tx(conn):
            for sid, session in rows:
                self._put(conn, sid, None, session)
                if session is None:
                    apply_changes(conn, [EventChange(sid, None, None)])  # rows and cover
                else:
                    invalidate(conn, (sid,))

    def optimize(self) -> None:
        """Refresh the planner's statistics and fold the WAL back into the database."""
        conn = self.conn()
        conn.execute("PRAGMA optimize")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def clear(self) -> None:
        conn = self.conn()
        with _tx(conn):
            conn.execute("DELETE FROM sessions")
            conn.execute("DELETE FROM tags")
            conn.execute("DELETE FROM events")
            conn.execute("DELETE FROM ev_cover")
            conn.execute("DELETE FROM meta WHERE key = 'complete'")

    # ------------------------------------------------------------------ reads

    def all_ids(self) -> set[str]:
        return {row[0] for row in self.conn().execute("SELECT id FROM sessions")}

    def expired_ids(self, now: datetime) -> list[str]:
        rows = self.conn().execute(
            "SELECT id FROM sessions WHERE expires_ms IS NOT NULL AND expires_ms <= ? "
            "ORDER BY expires_ms, id",
            (_floor_ms(now),),
        )
        return [row[0] for row in rows]

    def select(
        self,
        flt: SessionFilter,
        now: datetime,
        options: QueryOptions | None = None,
        after: OrderKey | None = None,
        *,
        limit: int | None = None,
        full: bool = False,
    ) -> Iterator[Row]:
        """Rows matching ``flt`` at ``now``, in ``options``' order: ``(id, metadata)``, or
        with ``full`` every column a listing returns (:func:`session_of`)."""
        post = _metadata_check(flt, now)
        conn = self.conn()
        where, params = _where(
            flt, now, conn if options is not None else None,
            None if options is None else options.sort_by,
            limit if post is None else None,
            None if options is None else self._memo,
        )  # fmt: skip
        order = ""
        if options is not None:
            desc = options.descending
            if after is not None:
                cond, more = _after(options.sort_by, desc, after)
                where.append(cond)
                params.extend(more)
            order = " ORDER BY " + _order(options.sort_by, desc)
        sql = _SELECT_FULL if full else "SELECT id, metadata FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += order
        if limit is not None and post is None:
            sql += " LIMIT ?"
            params.append(limit)
        cur = conn.execute(sql, params)
        if post is None:
            return cur  # the cursor steps the statement row by row (C, no generator)
        return _passing(cur, post, _META if full else 1)

    def count(self, flt: SessionFilter, now: datetime) -> int:
        if _metadata_check(flt, now) is not None:
            return sum(1 for _ in self.select(flt, now))
        where, params = _where(flt, now)
        if where == [_LIVE]:
            # the live sessions are all but the expired ones: the expiry index holds only
            # sessions that expire, so it cannot cover ``expires_ms IS NULL`` (a count of
            # the condition itself would read every row)
            return int(self.conn().execute(_COUNT_LIVE, params).fetchone()[0])
        sql = "SELECT COUNT(*) FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self.conn().execute(sql, params).fetchone()[0])


def _passing(cur: sqlite3.Cursor, post: Any, meta: int) -> Iterator[Row]:
    """The rows of ``cur`` whose metadata (column ``meta``) passes ``post``."""
    for row in cur:
        if post(bytes(row[meta])):
            yield row


def _upgrade_4(conn: sqlite3.Connection) -> None:
    """Bring a format-3 schema to format 4 (in the caller's transaction; no rebuild:
    the rows are the same). ``tags_id`` stays while a row has no ``data`` (an index
    upgraded from format 2, not yet rebuilt: its ``tag_list`` is not filled), so those
    rows' tags are still found by id; a later open drops it."""
    schema = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'"))
    if "WHERE" not in (schema.get("sessions_expires") or "WHERE"):
        for step in _UPGRADE_4:
            conn.execute(step)
    if (
        "tags_id" in schema
        and conn.execute("SELECT 1 FROM sessions WHERE data IS NULL LIMIT 1").fetchone() is None
    ):
        conn.execute("DROP INDEX tags_id")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'format' AND value = '3'", (INDEX_FORMAT,))


_STORED_TAGS: Final = "SELECT tag_list, data IS NULL FROM sessions WHERE id = ?"


def _stored_tags(conn: sqlite3.Connection, sid: str) -> frozenset[str] | None:
    """The tags of ``sid``'s row as its ``tag_list`` holds them (none: no row); None
    when the row has no ``data`` (upgraded in place: ``tag_list`` not filled)."""
    row = conn.execute(_STORED_TAGS, (sid,)).fetchone()
    if row is None:
        return _NO_TAGS
    if row[1]:
        return None
    return _NO_TAGS if row[0] is None else frozenset(_loads(row[0]))


def _retag(
    conn: sqlite3.Connection, sid: str, stored: frozenset[str] | None, tags: frozenset[str]
) -> None:
    """Make ``sid``'s tag rows ``tags`` from ``stored`` (None: unknown, so every row of
    ``sid`` is deleted first: by ``tags_id`` while such rows exist, see _upgrade_4)."""
    if stored is None:
        conn.execute("DELETE FROM tags WHERE id = ?", (sid,))
        stored = _NO_TAGS
    if stored:
        gone = stored - tags
        if gone:
            conn.executemany("DELETE FROM tags WHERE tag = ? AND id = ?", [(t, sid) for t in gone])
        tags = tags - stored
    if tags:
        conn.executemany(
            "INSERT OR REPLACE INTO tags(tag, id) VALUES (?, ?)", [(t, sid) for t in tags]
        )


class _tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _json_list(values: Iterable[str]) -> bytes:
    return orjson.dumps(sorted(values))


#: A session not expired at the parameter (epoch ms); all sessions less the expired ones.
_LIVE: Final = "(expires_ms IS NULL OR expires_ms > ?)"
_COUNT_LIVE: Final = (
    "SELECT (SELECT COUNT(*) FROM sessions)"
    " - (SELECT COUNT(*) FROM sessions WHERE expires_ms IS NOT NULL AND expires_ms <= ?)"
)
#: What a row a set condition drives to costs (fetched, then sorted with the others), in
#: rows of a walk (a sort index's entry, its row, the conditions checked): ~3 us against
#: ~0.8 us (``benchmarks/bench_filesystem.py``'s plan sweep, 10,000 sessions).
_SORT_COST: Final = 4
#: Estimated sessions: the largest rowid (one step down the table's b-tree; deleted rows
#: make it an overestimate, which only moves the choice towards driving).
_TOTAL: Final = "SELECT max(rowid) FROM sessions"
#: The soonest expiry (None: no session expires), also the key of its memo entry.
_SOONEST: Final = "SELECT min(expires_ms) FROM sessions WHERE expires_ms IS NOT NULL"
#: Entries of a thread's memo (choices by sets and page size) before it starts over.
_MEMO_MAX: Final = 256


def _drive_below(conn: sqlite3.Connection, want: int | None) -> int:
    """A set condition (a tag, processors, statuses) matching fewer rows than this drives
    the query (its n rows fetched, then sorted); otherwise the query walks the sort index
    and checks the conditions row by row, stopping once ``want`` rows passed (None: no
    limit). Spread evenly, the walk reads ``want * total / n`` rows (at most ``total``):
    the set drives when ``n * _SORT_COST`` is less, as memory's planner weighs it."""
    total = conn.execute(_TOTAL).fetchone()[0] or 0
    every = total // _SORT_COST
    if want is None:
        return every
    return min(every, math.isqrt(want * total // _SORT_COST))


#: A set condition of a filter: (sql that can drive, sql that cannot, params, the sql
#: that counts its rows, capped).
_Set = tuple[str, str, list[Any], str]


def _choose(conn: sqlite3.Connection, sets: Sequence[_Set], walks: bool, want: int | None) -> int:
    """Which of ``sets`` drives the query (-1: none, the sort index is walked), counting
    each set's rows up to the threshold (:func:`_drive_below`)."""
    driver = -1
    best = _drive_below(conn, want)
    # each count stops at the smallest so far; the tags (narrow, as a rule) first
    for index in reversed(range(len(sets)) if best else ()):
        _, _, args, counted = sets[index]
        rows = conn.execute(counted, [*args, best]).fetchone()[0]
        if rows < best:
            driver, best = index, rows
    if driver < 0 and walks:
        driver = 0  # every set is big: walk the processor's index, not all sessions'
    return driver


def _none_expired(conn: sqlite3.Connection, facts: dict[Any, Any], now_ms: int) -> bool:
    """No session of the snapshot has expired at ``now_ms`` (the soonest expiry, one
    step into the partial expiry index, kept in ``facts``)."""
    soonest = facts.get(_SOONEST, -1)
    if soonest == -1:
        soonest = facts[_SOONEST] = conn.execute(_SOONEST).fetchone()[0]
    return soonest is None or soonest > now_ms


def _where(
    flt: SessionFilter,
    now: datetime,
    conn: sqlite3.Connection | None = None,
    sort_by: str | None = None,
    want: int | None = None,
    memo: Callable[[sqlite3.Connection], dict[Any, Any] | None] | None = None,
) -> tuple[list[str], list[Any]]:
    """SQL conditions for ``flt`` at ``now`` (with ``conn``: choosing the driving one for
    a query sorted by ``sort_by`` that stops after ``want`` rows, None: reads them all).

    ``memo`` (:meth:`Index._memo`) is asked only when there is a choice to weigh: it
    gives the facts of the index's current snapshot that earlier listings read (the
    choice for the same sets and ``want``; the soonest expiry), or None (count)."""
    where: list[str] = []
    params: list[Any] = []
    if not flt.include_expired:
        where.append(_LIVE)
        params.append(_floor_ms(now))
    if flt.ids is not None:
        where.append("id IN (SELECT value FROM json_each(?))")
        params.append(_json_list(flt.ids))
    sets: list[_Set] = []
    # one processor, sorted by updated_at: (processor_id, updated_ms, id) is already in
    # the page's order, so walking it is the plan unless a smaller set drives
    walks = False
    if flt.processor_id is not None and len(flt.processor_id) == 1:
        (one,) = flt.processor_id
        walks = sort_by == "updated_at"
        sets.append((
            "processor_id = ?",
            "+processor_id = ?",
            [one],
            "SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE processor_id = ? LIMIT ?)",
        ))  # fmt: skip
    elif flt.processor_id is not None:
        values = _json_list(flt.processor_id)
        sets.append((
            "processor_id IN (SELECT value FROM json_each(?))",
            "+processor_id IN (SELECT value FROM json_each(?))",
            [values],
            "SELECT COUNT(*) FROM (SELECT 1 FROM sessions"
            " WHERE processor_id IN (SELECT value FROM json_each(?)) LIMIT ?)",
        ))  # fmt: skip
    if flt.status is not None:
        values = _json_list(s.value for s in flt.status)
        sets.append((
            "status IN (SELECT value FROM json_each(?))",
            "+status IN (SELECT value FROM json_each(?))",
            [values],
            "SELECT COUNT(*) FROM (SELECT 1 FROM sessions"
            " WHERE status IN (SELECT value FROM json_each(?)) LIMIT ?)",
        ))  # fmt: skip
    for tag in sorted(flt.tags_all or ()):
        sets.append((
            "id IN (SELECT id FROM tags WHERE tag = ?)",
            "EXISTS (SELECT 1 FROM tags t WHERE t.tag = ? AND t.id = sessions.id)",
            [tag],
            "SELECT COUNT(*) FROM (SELECT 1 FROM tags WHERE tag = ? LIMIT ?)",
        ))  # fmt: skip
    if flt.tags_any is not None:
        values = _json_list(flt.tags_any)
        sets.append((
            "id IN (SELECT id FROM tags WHERE tag IN (SELECT value FROM json_each(?)))",
            "EXISTS (SELECT 1 FROM tags t WHERE t.id = sessions.id"
            " AND t.tag IN (SELECT value FROM json_each(?)))",
            [values],
            "SELECT COUNT(*) FROM (SELECT 1 FROM tags"
            " WHERE tag IN (SELECT value FROM json_each(?)) LIMIT ?)",
        ))  # fmt: skip
    driver = -1
    if conn is not None and sets and flt.ids is None:
        if walks and len(sets) == 1:
            driver = 0  # nothing to weigh it against: no count
        else:
            facts = None if memo is None else memo(conn)
            if facts is None:
                driver = _choose(conn, sets, walks, want)
            else:
                key = (want, walks, *((counted, *args) for _, _, args, counted in sets))
                driver = facts.get(key, -2)
                if driver == -2:
                    driver = facts[key] = _choose(conn, sets, walks, want)
                if not flt.include_expired and _none_expired(conn, facts, params[0]):
                    # a walk need not look up each passed-over entry's row for its expiry
                    del where[0], params[0]
    for index, (drives, checks, args, _) in enumerate(sets):
        where.append(drives if index == driver or conn is None else checks)
        params.extend(args)
    for column, low, high in (
        ("created_ms", flt.created_after, flt.created_before),
        ("updated_ms", flt.updated_after, flt.updated_before),
    ):
        if low is not None:  # t_ms * 1000 > low_us  <=>  t_ms > floor(low_us / 1000)
            where.append(f"{column} > ?")
            params.append(_floor_ms(low))
        if high is not None:  # t_ms * 1000 < high_us  <=>  t_ms < ceil(high_us / 1000)
            where.append(f"{column} < ?")
            params.append(_ceil_ms(high))
    if flt.expires_before is not None:
        where.append("(expires_ms IS NOT NULL AND expires_ms < ?)")
        params.append(_ceil_ms(flt.expires_before))
    if flt.has_events is not None:
        where.append("event_count > 0" if flt.has_events else "event_count = 0")
    return where, params


def _metadata_check(flt: SessionFilter, now: datetime) -> Any:
    if flt.metadata is None:
        return None
    only = SessionFilter(metadata=flt.metadata, include_expired=True)

    def check(raw: bytes) -> bool:
        probe = Session(
            "x", None, Status.ACTIVE, {}, orjson.loads(raw), frozenset(),
            _PLACEHOLDER, _PLACEHOLDER, None, 1,
        )  # fmt: skip
        return matches(probe, only, now)

    return check


def _order(sort_by: str, desc: bool) -> str:
    d = "DESC" if desc else "ASC"
    if sort_by == "id":
        return f"id {d}"
    if sort_by == "expires_at":
        return f"(expires_ms IS NULL) ASC, expires_ms {d}, id {d}"
    column = "created_ms" if sort_by == "created_at" else "updated_ms"
    return f"{column} {d}, id {d}"


def _after(sort_by: str, desc: bool, key: OrderKey) -> tuple[str, list[Any]]:
    """Rows strictly after the keyset position ``key`` (see ``query.is_after``)."""
    op = "<" if desc else ">"
    missing, value, sid = key
    if sort_by == "id":
        return f"id {op} ?", [sid]
    if sort_by == "expires_at":
        if missing:
            return f"(expires_ms IS NULL AND id {op} ?)", [sid]
        return f"(expires_ms IS NULL OR (expires_ms, id) {op} (?, ?))", [value, sid]
    column = "created_ms" if sort_by == "created_at" else "updated_ms"
    return f"({column}, id) {op} (?, ?)", [value, sid]
