"""The driver's tables, its write function and the versioned migrations that make them.

Every name starts with the ``table_prefix`` option (``P`` below, validated as
``[a-z_][a-z0-9_]*``, so it is safe to splice into SQL). ``initialize()`` upgrades the
schema step by step under a transaction-scoped advisory lock (DDL is transactional in
PostgreSQL: an upgrade is all or nothing) and refuses a schema newer than this driver.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["LATEST", "MIGRATIONS", "advisory_key", "migration"]

# Version 1: the tables and the write function (everything needed for correctness).
_V1: Final = """
CREATE TABLE {P}sessions (
    ns text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    processor_id text COLLATE "C",
    status text NOT NULL,
    grp text COLLATE "C",
    tags text[] COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint,
    version bigint NOT NULL,
    event_count bigint NOT NULL,
    last_seq bigint NOT NULL,
    data text NOT NULL,
    metadata text NOT NULL,
    metadata_jsonb jsonb NOT NULL,
    wt text NOT NULL,
    PRIMARY KEY (ns, id)
);
CREATE TABLE {P}events (
    ns text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    at bigint NOT NULL,
    data text NOT NULL,
    PRIMARY KEY (ns, session_id, seq)
);
CREATE TABLE {P}checkpoints (
    ns text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (ns, session_id, id)
);
CREATE FUNCTION {P}write(
    p_ns text, p_id text, p_expect bigint, p_expect_wt text, p_wt text,
    p_delete boolean, p_reset boolean, p_doc boolean,
    p_processor text, p_status text, p_grp text, p_tags text[],
    p_created bigint, p_updated bigint, p_expires bigint,
    p_version bigint, p_event_count bigint, p_last_seq bigint,
    p_data text, p_metadata text,
    p_ev_seq bigint[], p_ev_type text[], p_ev_at bigint[], p_ev_data text[],
    p_trim_before bigint,
    p_cp_id text[], p_cp_created bigint[], p_cp_body text[], p_cp_drop text[]
) RETURNS bigint LANGUAGE plpgsql AS $fn$
-- -1: written; -2: the version matched but the write token did not (the session was
-- re-created, or the caller's copy is stale); otherwise the stored version (0: absent),
-- which did not match p_expect. Nothing is written unless -1 is returned.
-- p_data / p_metadata NULL on an existing session: unchanged (not sent, not rewritten).
DECLARE
    cur bigint;
    cur_wt text;
BEGIN
    IF p_expect = 0 THEN
        IF NOT p_doc THEN
            RETURN coalesce((SELECT version FROM {P}sessions WHERE ns = p_ns AND id = p_id), 0);
        END IF;
        INSERT INTO {P}sessions VALUES (
            p_ns, p_id, p_processor, p_status, p_grp, p_tags, p_created, p_updated,
            p_expires, p_version, p_event_count, p_last_seq, p_data, p_metadata,
            replace(p_metadata, '\\u0000', '\\ufffd')::jsonb, p_wt
        ) ON CONFLICT (ns, id) DO NOTHING;
        IF NOT FOUND THEN  -- it exists (a concurrent creator committed first)
            RETURN coalesce((SELECT version FROM {P}sessions WHERE ns = p_ns AND id = p_id), 0);
        END IF;
        -- a new session may still have leftovers of a crashed write: none by construction
        -- (a delete removes events and checkpoints in the same transaction)
    ELSIF p_delete THEN
        DELETE FROM {P}sessions WHERE ns = p_ns AND id = p_id AND version = p_expect
            AND (p_expect_wt IS NULL OR wt = p_expect_wt);
        IF NOT FOUND THEN
            SELECT version, wt INTO cur, cur_wt FROM {P}sessions WHERE ns = p_ns AND id = p_id;
            IF cur = p_expect THEN RETURN -2; END IF;
            RETURN coalesce(cur, 0);
        END IF;
        DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id;
        DELETE FROM {P}checkpoints WHERE ns = p_ns AND session_id = p_id;
        RETURN -1;
    ELSIF p_doc THEN
        -- the compare-and-set and the write in one statement (no separate row lock)
        UPDATE {P}sessions SET
            processor_id = p_processor, status = p_status, grp = p_grp, tags = p_tags,
            created_at = p_created, updated_at = p_updated, expires_at = p_expires,
            version = p_version, event_count = p_event_count, last_seq = p_last_seq,
            data = coalesce(p_data, data), metadata = coalesce(p_metadata, metadata),
            metadata_jsonb = CASE WHEN p_metadata IS NULL THEN metadata_jsonb
                ELSE replace(p_metadata, '\\u0000', '\\ufffd')::jsonb END,
            wt = p_wt
        WHERE ns = p_ns AND id = p_id AND version = p_expect
            AND (p_expect_wt IS NULL OR wt = p_expect_wt);
        IF NOT FOUND THEN
            SELECT version, wt INTO cur, cur_wt FROM {P}sessions WHERE ns = p_ns AND id = p_id;
            IF cur = p_expect THEN RETURN -2; END IF;
            RETURN coalesce(cur, 0);
        END IF;
    ELSE
        -- checkpoints only (the version does not change): lock the row for the check
        SELECT version, wt INTO cur, cur_wt FROM {P}sessions
            WHERE ns = p_ns AND id = p_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        IF cur <> p_expect THEN
            RETURN cur;
        END IF;
        IF p_expect_wt IS NOT NULL AND cur_wt IS DISTINCT FROM p_expect_wt THEN
            RETURN -2;
        END IF;
    END IF;
    IF p_reset THEN
        DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id;
        DELETE FROM {P}checkpoints WHERE ns = p_ns AND session_id = p_id;
    END IF;
    IF p_trim_before > 0 THEN
        DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id AND seq < p_trim_before;
    END IF;
    IF cardinality(p_ev_seq) > 0 THEN
        INSERT INTO {P}events (ns, session_id, seq, type, at, data)
            SELECT p_ns, p_id, e.seq, e.type, e.at, e.data
            FROM unnest(p_ev_seq, p_ev_type, p_ev_at, p_ev_data) AS e(seq, type, at, data);
    END IF;
    IF cardinality(p_cp_drop) > 0 THEN
        DELETE FROM {P}checkpoints
            WHERE ns = p_ns AND session_id = p_id AND id = ANY(p_cp_drop);
    END IF;
    IF cardinality(p_cp_id) > 0 THEN
        INSERT INTO {P}checkpoints (ns, session_id, id, created_at, body)
            SELECT p_ns, p_id, c.id, c.created_at, c.body
            FROM unnest(p_cp_id, p_cp_created, p_cp_body) AS c(id, created_at, body)
            ON CONFLICT (ns, session_id, id) DO UPDATE
                SET created_at = excluded.created_at, body = excluded.body;
    END IF;
    RETURN -1;
END
$fn$;
-- The same write for a batch sent with executemany (one pipelined, atomic round trip):
-- a failed check raises SQLSTATE SS409 (DETAIL: the session id, HINT: the result), which
-- rolls the whole batch back.
CREATE FUNCTION {P}write_or_raise(
    p_ns text, p_id text, p_expect bigint, p_expect_wt text, p_wt text,
    p_delete boolean, p_reset boolean, p_doc boolean,
    p_processor text, p_status text, p_grp text, p_tags text[],
    p_created bigint, p_updated bigint, p_expires bigint,
    p_version bigint, p_event_count bigint, p_last_seq bigint,
    p_data text, p_metadata text,
    p_ev_seq bigint[], p_ev_type text[], p_ev_at bigint[], p_ev_data text[],
    p_trim_before bigint,
    p_cp_id text[], p_cp_created bigint[], p_cp_body text[], p_cp_drop text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    r bigint;
BEGIN
    r := {P}write(p_ns, p_id, p_expect, p_expect_wt, p_wt, p_delete, p_reset, p_doc,
        p_processor, p_status, p_grp, p_tags, p_created, p_updated, p_expires, p_version,
        p_event_count, p_last_seq, p_data, p_metadata, p_ev_seq, p_ev_type, p_ev_at,
        p_ev_data, p_trim_before, p_cp_id, p_cp_created, p_cp_body, p_cp_drop);
    IF r <> -1 THEN
        RAISE EXCEPTION USING ERRCODE = 'SS409', MESSAGE = 'sessionstore version check failed',
            DETAIL = p_id, HINT = r::text;
    END IF;
END
$fn$;
"""

# Version 2: the indexes of the listings and filters. Each ordered listing has an index
# that yields it in order (ns, [filter column,] sort column, id), so a page reads about
# `limit` rows; tags and metadata have GIN indexes for containment.
_V2: Final = """
CREATE INDEX {P}sessions_created ON {P}sessions (ns, created_at, id);
CREATE INDEX {P}sessions_updated ON {P}sessions (ns, updated_at, id);
CREATE INDEX {P}sessions_expires ON {P}sessions (ns, expires_at, id);
CREATE INDEX {P}sessions_proc_created ON {P}sessions (ns, processor_id, created_at, id);
CREATE INDEX {P}sessions_proc_updated ON {P}sessions (ns, processor_id, updated_at, id);
CREATE INDEX {P}sessions_status_updated ON {P}sessions (ns, status, updated_at, id);
CREATE INDEX {P}sessions_tags ON {P}sessions USING gin (tags);
CREATE INDEX {P}sessions_metadata ON {P}sessions USING gin (metadata_jsonb jsonb_path_ops);
"""

#: Migration ``n`` (1-based) upgrades a schema of version ``n - 1`` to version ``n``.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)
LATEST: Final = len(MIGRATIONS)

#: The schema-version table: one row, created before any migration runs.
VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {P}schema (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL,
    upgraded_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration(step: int, prefix: str) -> str:
    """The SQL of migration ``step`` (1-based) for ``prefix``."""
    return MIGRATIONS[step - 1].replace("{P}", prefix)


def advisory_key(prefix: str) -> int:
    """The advisory lock (a signed 64-bit key) that serialises upgrades of ``prefix``."""
    digest = hashlib.sha256(f"sessionstore-schema:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
