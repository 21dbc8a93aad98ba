"""The database schema and its versioned migrations (``PRAGMA user_version``).

Version 1 holds the tables; version 2 adds the composite indexes of the common listings
(a processor's or a status's sessions by time); version 3 gives tag rows the session's
namespace, creation time and id, indexed, for a tag's sessions in creation order;
version 4 gives events their optional ``key`` (unique per session) and the indexes of
event queries by type and by time; version 5 makes the two processor indexes partial
(``WHERE processor_id IS NOT NULL``: a session without a processor has no entry to
rewrite when an append changes its ``updated_ms``). A database is upgraded step by step
on open, every step and the new version number in the one ``BEGIN IMMEDIATE``
transaction (SQLite DDL is transactional), so a crash mid-upgrade leaves the old
version, and two processes opening an old database at once upgrade it once. A database
of a newer version than this code knows is refused with :class:`UnsupportedFormatError`;
a SQLite file of another application (its ``application_id`` is not ours) with
:class:`ConfigurationError`.

Times are epoch milliseconds (the model's resolution and the query order key); ``data``
and ``metadata`` are the exact JSON bytes the codec produced (a BLOB, never re-encoded);
``tags`` is the sorted JSON list of the session's tags (the session row alone rebuilds a
``Session``), mirrored one row per tag in ``tags`` for filtering. ``sk`` is a surrogate
key the child tables use, so events and checkpoints are keyed by a small integer.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from sessionstore import ConfigurationError, UnsupportedFormatError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "check", "migrate"]

#: ``PRAGMA application_id`` of a sessionstore database ("ssdb").
APPLICATION_ID: Final = 0x73736462

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the tables, the session lookup and the listing indexes by time
    """
    CREATE TABLE sessions(
        sk INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        processor_id TEXT,
        status TEXT NOT NULL,
        session_group TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        version INTEGER NOT NULL,
        event_count INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        tags TEXT NOT NULL,
        data BLOB NOT NULL,
        metadata BLOB NOT NULL,
        UNIQUE(namespace, id)
    );
    CREATE INDEX sessions_created ON sessions(namespace, created_ms, id);
    CREATE INDEX sessions_updated ON sessions(namespace, updated_ms, id);
    CREATE INDEX sessions_expires ON sessions(namespace, expires_ms, id);
    CREATE TABLE tags(
        sk INTEGER NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY(sk, tag)
    ) WITHOUT ROWID;
    CREATE INDEX tags_tag ON tags(tag, sk);
    CREATE TABLE events(
        sk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(sk, seq)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints(
        sk INTEGER NOT NULL,
        id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY(sk, id)
    ) WITHOUT ROWID;
    """,
    # 2: composite indexes: a processor's / a status's sessions in time order
    """
    CREATE INDEX sessions_processor_updated
        ON sessions(namespace, processor_id, updated_ms, id);
    CREATE INDEX sessions_processor_created
        ON sessions(namespace, processor_id, created_ms, id);
    CREATE INDEX sessions_status_updated ON sessions(namespace, status, updated_ms, id);
    CREATE INDEX sessions_status_created ON sessions(namespace, status, created_ms, id);
    """,
    # 3: a tag's sessions in creation order: tag rows carry the session's namespace,
    # created_ms and id (never changed by a write, except a re-create, which rewrites them)
    """
    CREATE TABLE tags_v3(
        sk INTEGER NOT NULL,
        tag TEXT NOT NULL,
        namespace TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY(sk, tag)
    ) WITHOUT ROWID;
    INSERT INTO tags_v3(sk, tag, namespace, created_ms, id)
        SELECT t.sk, t.tag, s.namespace, s.created_ms, s.id
        FROM tags t JOIN sessions s ON s.sk = t.sk;
    DROP TABLE tags;
    ALTER TABLE tags_v3 RENAME TO tags;
    CREATE INDEX tags_tag ON tags(tag, sk);
    CREATE INDEX tags_created ON tags(namespace, tag, created_ms, id);
    """,
    # 4: the event log of agent frameworks: a caller-chosen key per event, unique within
    # its session (NULL for events without one), and the indexes that make a page of
    # events of some types, or of a time range, a range scan (seq is the table's key, so
    # each index entry carries it: backwards paging by seq needs no index of its own)
    """
    ALTER TABLE events ADD COLUMN key TEXT;
    CREATE UNIQUE INDEX events_key ON events(sk, key) WHERE key IS NOT NULL;
    CREATE INDEX events_type ON events(sk, type, seq);
    CREATE INDEX events_at ON events(sk, at_ms, seq);
    """,
    # 5: the processor indexes leave out the sessions without a processor (most of an
    # agent framework's), so their append rewrites two updated_ms index entries, not three.
    # A processor filter is `processor_id = ?` or `IN (...)`, which implies the predicate:
    # SQLite still reads such a listing or count from the partial index
    """
    DROP INDEX sessions_processor_updated;
    DROP INDEX sessions_processor_created;
    CREATE INDEX sessions_processor_updated
        ON sessions(namespace, processor_id, updated_ms, id) WHERE processor_id IS NOT NULL;
    CREATE INDEX sessions_processor_created
        ON sessions(namespace, processor_id, created_ms, id) WHERE processor_id IS NOT NULL;
    """,
)

#: The schema version this code writes and reads.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run the statements of ``sql`` one by one (``executescript`` would COMMIT)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def check(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of the database (0: empty); refuses a database of another
    application or of a newer schema, without changing it."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app not in (0, APPLICATION_ID) or (
        found == 0
        and app == 0
        and conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sessions'").fetchone()
    ):
        raise ConfigurationError(
            f"{path!r} is a SQLite database of another application, not a sessionstore one"
        )
    if found > SCHEMA_VERSION:
        raise UnsupportedFormatError(
            f"sqlite store schema version {found} is newer than this sessionstore "
            f"understands ({SCHEMA_VERSION}); upgrade sessionstore to open it",
            path,
        )
    return found


def migrate(conn: sqlite3.Connection, path: str, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to ``target`` (creating it from nothing); returns the version
    found. Runs in one ``BEGIN IMMEDIATE`` transaction; ``conn`` must be in autocommit."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = check(conn, path)
        for version in range(found, target):
            _script(conn, MIGRATIONS[version])
        if found < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
