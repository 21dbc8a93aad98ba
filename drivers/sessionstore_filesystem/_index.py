"""The query index: stdlib ``sqlite3`` in WAL mode, one row per session, rebuildable.

The files are the truth; the index only answers "which ids, in which order". Every write
updates it after the durable file write, under the session's lock, so rows change in the
same order as the files, whichever process writes. A crash between the two is repaired
from the in-flight markers (see ``_engine``); ``reindex`` rebuilds it from the files.

Times are stored as epoch milliseconds (the order key of ``sessionstore.query``);
exclusive bounds given with sub-millisecond precision are rounded the way that keeps the
reference semantics for millisecond-precision timestamps. Metadata equality is checked
in Python with :func:`sessionstore.query.matches` on the stored metadata JSON, so it is
exactly the reference rule.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import orjson

from sessionstore import QueryOptions, Session, SessionFilter, Status
from sessionstore.clock import to_ms
from sessionstore.query import OrderKey, matches

from ._event_index import EventChange, apply_changes, invalidate

__all__ = ["INDEX_FORMAT", "Index", "Row"]

# 2: the event index (events, ev_cover); a format-1 index is rebuilt on open.
INDEX_FORMAT: Final = "2"
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
    metadata BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions(created_ms, id);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_ms, id);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_ms, id);
CREATE INDEX IF NOT EXISTS sessions_processor ON sessions(processor_id);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);
CREATE TABLE IF NOT EXISTS tags(
    tag TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY(tag, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_id ON tags(id);
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
_UPSERT: Final = """
INSERT INTO sessions(id, processor_id, status, created_ms, updated_ms, expires_ms, version,
                     event_count, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET processor_id = excluded.processor_id, status = excluded.status,
    created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
    expires_ms = excluded.expires_ms, version = excluded.version,
    event_count = excluded.event_count, metadata = excluded.metadata
"""
_BUMP: Final = "UPDATE sessions SET updated_ms = ?, version = ?, event_count = ? WHERE id = ?"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER: Final = datetime(2000, 1, 1, tzinfo=UTC)

#: (id, metadata JSON) as a query yields them.
Row = tuple[str, bytes]


def _us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _floor_ms(value: datetime) -> int:
    return _us(value) // 1000


def _ceil_ms(value: datetime) -> int:
    return -(-_us(value) // 1000)


def _row(s: Session) -> tuple[Any, ...]:
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
    )


class Index:
    """One namespace's index database; a connection per thread (WAL allows readers and
    one writer at a time across processes)."""

    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()

    # ------------------------------------------------------------------ connections

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
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

    def close(self) -> None:
        """Close every connection (of every thread)."""
        with self._mutex:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def create(self) -> bool:
        """Create the schema; True when the index must be (re)built from the files."""
        conn = self.conn()
        conn.execute("PRAGMA page_size=1024")  # small rows, small WAL frames per commit
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
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
    ) -> None:
        """Apply ``(id, old, new)`` changes (``new`` None: deleted) and the event rows'
        ``events`` in one transaction."""
        conn = self.conn()
        if len(changes) == 1:
            sid, old, new = changes[0]
            if (
                new is not None
                and old is not None
                and old.tags == new.tags
                and old.metadata == new.metadata
                and old.processor_id == new.processor_id
                and old.status is new.status
                and old.created_at == new.created_at
                and old.expires_at == new.expires_at
            ):
                args = (to_ms(new.updated_at), new.version, new.event_count, sid)
                if not events:
                    cur = conn.execute(_BUMP, args)
                    if cur.rowcount == 1:
                        return
                else:
                    with _tx(conn):
                        if conn.execute(_BUMP, args).rowcount != 1:
                            self._put(conn, sid, old, new)
                        apply_changes(conn, events)
                    return
        with _tx(conn):
            for sid, old, new in changes:
                self._put(conn, sid, old, new)
            apply_changes(conn, events)

    def _put(
        self, conn: sqlite3.Connection, sid: str, old: Session | None, new: Session | None
    ) -> None:
        if new is None:
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            conn.execute("DELETE FROM tags WHERE id = ?", (sid,))
            return
        cur = conn.execute(_UPSERT, _row(new))
        del cur
        if old is None or old.tags != new.tags:
            conn.execute("DELETE FROM tags WHERE id = ?", (sid,))
            conn.executemany(
                "INSERT INTO tags(tag, id) VALUES (?, ?)", [(t, sid) for t in new.tags]
            )

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
    ) -> Iterator[Row]:
        """Ids (with metadata) matching ``flt`` at ``now``, in ``options``' order."""
        where, params = _where(flt, now, self.conn() if options is not None else None)
        order = ""
        if options is not None:
            desc = options.descending
            if after is not None:
                cond, more = _after(options.sort_by, desc, after)
                where.append(cond)
                params.extend(more)
            order = " ORDER BY " + _order(options.sort_by, desc)
        sql = "SELECT id, metadata FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += order
        post = _metadata_check(flt, now)
        if limit is not None and post is None:
            sql += " LIMIT ?"
            params.append(limit)
        cur = self.conn().execute(sql, params)
        while rows := cur.fetchmany(256):
            for sid, metadata in rows:
                if post is None or post(bytes(metadata)):
                    yield sid, bytes(metadata)

    def count(self, flt: SessionFilter, now: datetime) -> int:
        if _metadata_check(flt, now) is not None:
            return sum(1 for _ in self.select(flt, now))
        where, params = _where(flt, now)
        sql = "SELECT COUNT(*) FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self.conn().execute(sql, params).fetchone()[0])


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


#: A set condition (a tag, processors, statuses) matching fewer rows than this drives the
#: query (its rows are fetched, then sorted); otherwise the query walks the sort index and
#: checks the conditions row by row, stopping once the page is full.
_DRIVE_BELOW: Final = 2000


def _where(
    flt: SessionFilter, now: datetime, conn: sqlite3.Connection | None = None
) -> tuple[list[str], list[Any]]:
    """SQL conditions for ``flt`` at ``now`` (with ``conn``: choosing the driving one)."""
    where: list[str] = []
    params: list[Any] = []
    if not flt.include_expired:
        where.append("(expires_ms IS NULL OR expires_ms > ?)")
        params.append(_floor_ms(now))
    if flt.ids is not None:
        where.append("id IN (SELECT value FROM json_each(?))")
        params.append(_json_list(flt.ids))
    # (sql that can drive, sql that cannot, params, capped count of the rows it selects)
    sets: list[tuple[str, str, list[Any], str]] = []
    if flt.processor_id is not None:
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
        best = _DRIVE_BELOW
        for index, (_, _, args, counted) in enumerate(sets):
            rows = conn.execute(counted, [*args, _DRIVE_BELOW]).fetchone()[0]
            if rows < best:
                driver, best = index, rows
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
