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

# The write functions' argument types before version 3 (DROP FUNCTION needs them).
_OLD_SIG: Final = (
    "text, text, bigint, text, text, boolean, boolean, boolean, text, text, text, text[], "
    "bigint, bigint, bigint, bigint, bigint, bigint, text, text, bigint[], text[], bigint[], "
    "text[], bigint, text[], bigint[], text[], text[]"
)

# Version 3: the event log of agent frameworks (issue #17). Events get an optional
# caller-chosen ``key`` (unique within the session, NULL for none); a page of events of
# some types, or in a time range, is an index range scan (seq is in every index, so a
# backwards page by seq is the primary key's). The write function learns the new
# Mutation fields (``truncate_after``, ``delete_seqs``, event keys) and ``events_op``
# does append (create, expiry, keys), pop, truncate, delete and trim in one call.
_V3: Final = """
ALTER TABLE {P}events ADD COLUMN key text COLLATE "C";
CREATE UNIQUE INDEX {P}events_key ON {P}events (ns, session_id, key) WHERE key IS NOT NULL;
CREATE INDEX {P}events_type ON {P}events (ns, session_id, type, seq);
CREATE INDEX {P}events_at ON {P}events (ns, session_id, at, seq);
DROP FUNCTION {P}write_or_raise(OLD_SIG);
DROP FUNCTION {P}write(OLD_SIG);
CREATE FUNCTION {P}write(
    p_ns text, p_id text, p_expect bigint, p_expect_wt text, p_wt text,
    p_delete boolean, p_reset boolean, p_doc boolean,
    p_processor text, p_status text, p_grp text, p_tags text[],
    p_created bigint, p_updated bigint, p_expires bigint,
    p_version bigint, p_event_count bigint, p_last_seq bigint,
    p_data text, p_metadata text,
    p_ev_seq bigint[], p_ev_type text[], p_ev_at bigint[], p_ev_data text[],
    p_trim_before bigint,
    p_cp_id text[], p_cp_created bigint[], p_cp_body text[], p_cp_drop text[],
    p_ev_key text[], p_truncate_after bigint, p_delete_seqs bigint[]
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
    IF p_truncate_after IS NOT NULL THEN
        DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id AND seq > p_truncate_after;
    END IF;
    IF cardinality(p_delete_seqs) > 0 THEN
        DELETE FROM {P}events
            WHERE ns = p_ns AND session_id = p_id AND seq = ANY(p_delete_seqs);
    END IF;
    IF cardinality(p_ev_seq) > 0 THEN
        INSERT INTO {P}events (ns, session_id, seq, type, at, data, key)
            SELECT p_ns, p_id, e.seq, e.type, e.at, e.data, e.key
            FROM unnest(p_ev_seq, p_ev_type, p_ev_at, p_ev_data, p_ev_key)
                AS e(seq, type, at, data, key);
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
CREATE FUNCTION {P}write_or_raise(
    p_ns text, p_id text, p_expect bigint, p_expect_wt text, p_wt text,
    p_delete boolean, p_reset boolean, p_doc boolean,
    p_processor text, p_status text, p_grp text, p_tags text[],
    p_created bigint, p_updated bigint, p_expires bigint,
    p_version bigint, p_event_count bigint, p_last_seq bigint,
    p_data text, p_metadata text,
    p_ev_seq bigint[], p_ev_type text[], p_ev_at bigint[], p_ev_data text[],
    p_trim_before bigint,
    p_cp_id text[], p_cp_created bigint[], p_cp_body text[], p_cp_drop text[],
    p_ev_key text[], p_truncate_after bigint, p_delete_seqs bigint[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    r bigint;
BEGIN
    r := {P}write(p_ns, p_id, p_expect, p_expect_wt, p_wt, p_delete, p_reset, p_doc,
        p_processor, p_status, p_grp, p_tags, p_created, p_updated, p_expires, p_version,
        p_event_count, p_last_seq, p_data, p_metadata, p_ev_seq, p_ev_type, p_ev_at,
        p_ev_data, p_trim_before, p_cp_id, p_cp_created, p_cp_body, p_cp_drop,
        p_ev_key, p_truncate_after, p_delete_seqs);
    IF r <> -1 THEN
        RAISE EXCEPTION USING ERRCODE = 'SS409', MESSAGE = 'sessionstore version check failed',
            DETAIL = p_id, HINT = r::text;
    END IF;
END
$fn$;
-- The event-log operations of one session in one call, under the session row's lock.
-- p_op: 'append' (p_ev_*; p_create: make a missing or expired session first, from
-- p_processor .. p_new_expires, version 1 with the events; p_expires_mode 1 / 2: set
-- expires_at to p_expires, 1 counting as a write only if it changes), 'pop'
-- (the newest p_n), 'truncate' (seq > p_n), 'delete' (p_seqs, p_keys), 'trim' (keep the
-- newest p_n). p_expect NULL: any version. r_code: 1 written, 2 nothing to write (the
-- stored session returned), 3 created (and written), 0 no live session, -1 p_expect did
-- not match (version holds the stored one); a key conflict raises SQLSTATE SS412
-- (DETAIL: the key) so that nothing of the call is written. The row
-- is returned in the driver's column order; data/metadata are NULL when the row's write
-- token before the call was p_known_wt (the caller holds them). A keyed event whose key
-- is stored with the same type and data (equal JSON text, or equal jsonb where no NUL
-- escape is involved) is not written again (r_new false).
CREATE FUNCTION {P}events_op(
    p_ns text, p_id text, p_op text, p_expect bigint, p_known_wt text, p_wt text,
    p_now bigint, p_n bigint, p_seqs bigint[], p_keys text[],
    p_ev_type text[], p_ev_at bigint[], p_ev_data text[], p_ev_key text[],
    p_expires_mode integer, p_expires bigint,
    p_create boolean, p_processor text, p_status text, p_grp text, p_tags text[],
    p_data text, p_metadata text, p_new_expires bigint,
    OUT r_code integer, OUT r_new boolean[],
    OUT r_ev_seq bigint[], OUT r_ev_type text[], OUT r_ev_at bigint[], OUT r_ev_data text[],
    OUT r_ev_key text[],
    OUT id text, OUT processor_id text, OUT status text, OUT data text, OUT metadata text,
    OUT tags text[], OUT created_at bigint, OUT updated_at bigint, OUT expires_at bigint,
    OUT version bigint, OUT event_count bigint, OUT last_seq bigint, OUT grp text,
    OUT wt text
) LANGUAGE plpgsql AS $fn$
DECLARE
    s {P}sessions%ROWTYPE;
    created boolean := false;
    k bigint := 0;
    n integer := coalesce(cardinality(p_ev_type), 0);
    i integer;
    j integer;
    st text;
    sd text;
    sq bigint;
    sa bigint;
    cut bigint;
    before_wt text;
BEGIN
    -- A missing row cannot be locked: two calls creating the same session both find
    -- nothing. The insert then skips a row another call committed meanwhile, and the
    -- loop reads (and locks) that row and appends to it like any existing session.
    LOOP
        SELECT * INTO s FROM {P}sessions AS x WHERE x.ns = p_ns AND x.id = p_id FOR UPDATE;
        before_wt := s.wt;
        IF NOT FOUND OR (s.expires_at IS NOT NULL AND s.expires_at <= p_now) THEN
            IF p_op <> 'append' OR NOT p_create THEN
                r_code := 0;
                RETURN;
            END IF;
            IF p_expect IS NOT NULL THEN  -- an expected version, but nothing (live) stored
                r_code := -1;
                version := 0;
                RETURN;
            END IF;
            IF FOUND THEN  -- an expired session not cleaned up yet: replaced, as by a create
                DELETE FROM {P}events AS e WHERE e.ns = p_ns AND e.session_id = p_id;
                DELETE FROM {P}checkpoints AS c WHERE c.ns = p_ns AND c.session_id = p_id;
                DELETE FROM {P}sessions AS x WHERE x.ns = p_ns AND x.id = p_id;
            END IF;
            s := ROW(p_ns, p_id, p_processor, p_status, p_grp, p_tags, p_now, p_now,
                p_new_expires, 1, 0, 0, p_data, p_metadata,
                replace(p_metadata, '\\u0000', '\\ufffd')::jsonb, p_wt);
            INSERT INTO {P}sessions VALUES (s.*) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                CONTINUE;  -- created by a concurrent call: read it
            END IF;
            created := true;
        ELSIF p_expect IS NOT NULL AND s.version <> p_expect THEN
            r_code := -1;
            version := s.version;
            RETURN;
        END IF;
        EXIT;
    END LOOP;
    IF p_op = 'append' THEN
        -- r_ev_seq / r_ev_at: for each input, the event written or the one already stored
        r_new := array_fill(true, ARRAY[n]);
        r_ev_seq := array_fill(NULL::bigint, ARRAY[n]);
        r_ev_at := array_fill(NULL::bigint, ARRAY[n]);
        FOR i IN 1..n LOOP
            IF p_ev_key[i] IS NOT NULL THEN
                j := array_position(p_ev_key, p_ev_key[i]);
                IF j < i THEN  -- the same key earlier in this call
                    st := p_ev_type[j];
                    sd := p_ev_data[j];
                    sq := r_ev_seq[j];
                    sa := r_ev_at[j];
                ELSE
                    sq := NULL;
                    SELECT e.type, e.data, e.seq, e.at INTO st, sd, sq, sa FROM {P}events AS e
                        WHERE e.ns = p_ns AND e.session_id = p_id AND e.key = p_ev_key[i];
                END IF;
                IF sq IS NOT NULL THEN
                    IF st = p_ev_type[i] AND (sd = p_ev_data[i] OR (
                            strpos(sd, '\\u0000') = 0 AND strpos(p_ev_data[i], '\\u0000') = 0
                            AND sd::jsonb = p_ev_data[i]::jsonb)) THEN
                        r_new[i] := false;
                        r_ev_seq[i] := sq;
                        r_ev_at[i] := sa;
                        CONTINUE;
                    END IF;
                    -- nothing of the call is written (a session it created included)
                    RAISE EXCEPTION USING ERRCODE = 'SS412', MESSAGE = 'event key conflict',
                        DETAIL = p_ev_key[i];
                END IF;
            END IF;
            k := k + 1;
            r_ev_seq[i] := s.last_seq + k;
            r_ev_at[i] := coalesce(p_ev_at[i], p_now);
        END LOOP;
        IF k > 0 THEN
            INSERT INTO {P}events AS e (ns, session_id, seq, type, at, data, key)
                SELECT p_ns, p_id, v.seq, v.type, v.at, v.data, v.key
                FROM unnest(r_ev_seq, p_ev_type, r_ev_at, p_ev_data, p_ev_key, r_new)
                    AS v(seq, type, at, data, key, new)
                WHERE v.new;
        END IF;
        -- p_expires_mode 1 (expires_at given): a write only if it changes; 2 (a ttl): always
        IF k = 0 AND NOT created AND (p_expires_mode = 0
                OR (p_expires_mode = 1 AND s.expires_at IS NOT DISTINCT FROM p_expires)) THEN
            r_code := 2;
        ELSE
            IF NOT created THEN
                s.version := s.version + 1;
            END IF;
            s.event_count := s.event_count + k;
            s.last_seq := s.last_seq + k;
            IF p_expires_mode > 0 THEN
                s.expires_at := p_expires;
            END IF;
            r_code := CASE WHEN created THEN 3 ELSE 1 END;
        END IF;
    ELSE
        IF p_op = 'pop' THEN
            -- the n-th newest seq from the end of the primary key, then a range delete
            -- (a DELETE ... IN (SELECT ... LIMIT n) was planned as a scan of the log)
            SELECT f.seq INTO cut FROM {P}events AS f
                WHERE f.ns = p_ns AND f.session_id = p_id
                ORDER BY f.seq DESC OFFSET p_n - 1 LIMIT 1;
            WITH d AS (
                DELETE FROM {P}events AS e
                WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq >= coalesce(cut, 0)
                RETURNING e.seq, e.type, e.at, e.data, e.key)
            SELECT array_agg(d.seq ORDER BY d.seq), array_agg(d.type ORDER BY d.seq),
                array_agg(d.at ORDER BY d.seq), array_agg(d.data ORDER BY d.seq),
                array_agg(d.key ORDER BY d.seq)
            INTO r_ev_seq, r_ev_type, r_ev_at, r_ev_data, r_ev_key FROM d;
            k := coalesce(cardinality(r_ev_seq), 0);
        ELSIF p_op = 'truncate' THEN
            DELETE FROM {P}events AS e
                WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq > p_n;
            GET DIAGNOSTICS k = ROW_COUNT;
        ELSIF p_op = 'delete' THEN
            -- one equality lookup per seq and per key (= ANY(array) was planned, in the
            -- function's cached generic plan, as a filter over the session's events)
            FOREACH cut IN ARRAY p_seqs LOOP
                DELETE FROM {P}events AS e
                    WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq = cut;
                GET DIAGNOSTICS j = ROW_COUNT;
                k := k + j;
            END LOOP;
            FOREACH st IN ARRAY p_keys LOOP
                DELETE FROM {P}events AS e
                    WHERE e.ns = p_ns AND e.session_id = p_id AND e.key = st;
                GET DIAGNOSTICS j = ROW_COUNT;
                k := k + j;
            END LOOP;
        ELSIF p_op = 'trim' AND s.event_count > p_n THEN
            -- the first kept seq, counted from the nearer end of the primary key
            IF p_n = 0 THEN
                cut := s.last_seq + 1;
            ELSIF s.event_count - p_n <= p_n THEN
                SELECT f.seq INTO cut FROM {P}events AS f
                    WHERE f.ns = p_ns AND f.session_id = p_id
                    ORDER BY f.seq ASC OFFSET s.event_count - p_n LIMIT 1;
            ELSE
                SELECT f.seq INTO cut FROM {P}events AS f
                    WHERE f.ns = p_ns AND f.session_id = p_id
                    ORDER BY f.seq DESC OFFSET p_n - 1 LIMIT 1;
            END IF;
            DELETE FROM {P}events AS e
                WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq < cut;
            GET DIAGNOSTICS k = ROW_COUNT;
        END IF;
        IF k = 0 THEN
            r_code := 2;
        ELSE
            s.version := s.version + 1;
            s.event_count := s.event_count - k;
            r_code := 1;
        END IF;
    END IF;
    IF r_code <> 2 THEN
        s.updated_at := p_now;
        s.wt := p_wt;
        UPDATE {P}sessions AS x SET updated_at = s.updated_at, expires_at = s.expires_at,
            version = s.version, event_count = s.event_count, last_seq = s.last_seq,
            wt = s.wt
        WHERE x.ns = p_ns AND x.id = p_id;
    END IF;
    id := s.id;
    processor_id := s.processor_id;
    status := s.status;
    tags := s.tags;
    created_at := s.created_at;
    updated_at := s.updated_at;
    expires_at := s.expires_at;
    version := s.version;
    event_count := s.event_count;
    last_seq := s.last_seq;
    grp := s.grp;
    wt := s.wt;
    IF created OR p_known_wt IS NULL OR before_wt IS DISTINCT FROM p_known_wt THEN
        data := s.data;
        metadata := s.metadata;
    END IF;
END
$fn$;
""".replace("OLD_SIG", _OLD_SIG)


def _ordered(table: str, where: str, order: str, limit: str = "") -> str:
    """The ``ctid`` s of the rows of ``table`` (alias ``f``) matching ``where``, read in
    ``order``: only the index that yields that order unsorted (the primary key for seq,
    the key index for key) is cheaper than a sort, so PostgreSQL reads through it
    whatever its statistics say (see ``_events.py``)."""
    return (
        f"ctid = ANY(ARRAY(SELECT f.ctid FROM {table} AS f WHERE {where} ORDER BY {order}{limit}))"
    )


_SESSION_F: Final = "f.ns = p_ns AND f.session_id = p_id"

# Version 4: the same functions, their event lookups by seq and key made independent of
# the table's statistics. On a never-analysed events table PostgreSQL expects about one
# event per session, every index on (ns, session_id) costs the same to it, and it
# answered "seq > n" or "seq = n" through events_at (seq is not a leading column there):
# a pop, a truncate or a delete by seq read the session's whole log. Each delete now
# removes the rows whose ctid an ordered (hence primary-key / key-index) scan found, and
# the stored key of an append is the first key at or above it in the key index's order.
_V4_EDITS: Final = (
    (
        """SELECT e.type, e.data, e.seq, e.at INTO st, sd, sq, sa FROM {P}events AS e
                        WHERE e.ns = p_ns AND e.session_id = p_id AND e.key = p_ev_key[i];""",
        """SELECT f.type, f.data, f.seq, f.at INTO st, sd, sq, sa FROM (
                        SELECT e.type, e.data, e.seq, e.at, e.key FROM {P}events AS e
                        WHERE e.ns = p_ns AND e.session_id = p_id
                            AND e.key >= p_ev_key[i] COLLATE "C"
                        ORDER BY e.key LIMIT 1) AS f WHERE f.key = p_ev_key[i];""",
    ),
    (
        "WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq >= coalesce(cut, 0)",
        "WHERE e." + _ordered("{P}events", f"{_SESSION_F} AND f.seq >= coalesce(cut, 0)", "f.seq"),
    ),
    (
        "WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq > p_n;",
        "WHERE e." + _ordered("{P}events", f"{_SESSION_F} AND f.seq > p_n", "f.seq") + ";",
    ),
    (
        "WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq = cut;",
        "WHERE e."
        + _ordered("{P}events", f"{_SESSION_F} AND f.seq >= cut", "f.seq", " LIMIT 1")
        + " AND e.seq = cut;",
    ),
    (
        "WHERE e.ns = p_ns AND e.session_id = p_id AND e.key = st;",
        "WHERE e."
        + _ordered("{P}events", f'{_SESSION_F} AND f.key >= st COLLATE "C"', "f.key", " LIMIT 1")
        + " AND e.key = st;",
    ),
    (
        "WHERE e.ns = p_ns AND e.session_id = p_id AND e.seq < cut;",
        "WHERE e." + _ordered("{P}events", f"{_SESSION_F} AND f.seq < cut", "f.seq") + ";",
    ),
    (
        "DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id AND seq < p_trim_before;",
        "DELETE FROM {P}events AS e WHERE e."
        + _ordered("{P}events", f"{_SESSION_F} AND f.seq < p_trim_before", "f.seq")
        + ";",
    ),
    (
        "DELETE FROM {P}events WHERE ns = p_ns AND session_id = p_id AND seq > p_truncate_after;",
        "DELETE FROM {P}events AS e WHERE e."
        + _ordered("{P}events", f"{_SESSION_F} AND f.seq > p_truncate_after", "f.seq")
        + ";",
    ),
    (
        """DELETE FROM {P}events
            WHERE ns = p_ns AND session_id = p_id AND seq = ANY(p_delete_seqs);""",
        """DELETE FROM {P}events AS e WHERE e.ctid = ANY(ARRAY(
            SELECT f.ctid FROM unnest(p_delete_seqs) AS q(seq) CROSS JOIN LATERAL (
                SELECT g.ctid, g.seq FROM {P}events AS g
                WHERE g.ns = p_ns AND g.session_id = p_id AND g.seq >= q.seq
                ORDER BY g.seq LIMIT 1) AS f
            WHERE f.seq = q.seq));""",
    ),
)


def _v4() -> str:
    """``CREATE OR REPLACE`` of version 3's ``write`` and ``events_op`` with
    :data:`_V4_EDITS` applied (each edit must match exactly once)."""
    start = _V3.index("CREATE FUNCTION {P}write(")
    end = _V3.index("CREATE FUNCTION {P}write_or_raise(", start)
    ops = _V3.index("CREATE FUNCTION {P}events_op(")
    text = _V3[start:end] + _V3[ops:]
    for old, new in _V4_EDITS:
        if text.count(old) != 1:  # pragma: no cover - a broken edit fails at import
            raise AssertionError(f"schema v4 edit matches {text.count(old)} times: {old!r}")
        text = text.replace(old, new)
    return text.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


_V4: Final = _v4()

# Version 5: the GIN indexes of tags and metadata leave out the sessions that have none.
# An append updates the session row (version, counters, the indexed ``updated_at``), so
# the update is not HOT and every index of the row gets a new entry, GIN included: GIN
# indexes an empty array or object too (an "empty item" entry), and its pending-list
# insert was the costliest part of the append's WAL. A filter on tags or metadata only
# matches rows that have some, so the listings add the index's predicate
# (``_query.TAGS_PRESENT``, ``_query.METADATA_PRESENT``) and use the partial index.
_V5: Final = """
DROP INDEX {P}sessions_tags;
CREATE INDEX {P}sessions_tags ON {P}sessions USING gin (tags) WHERE tags <> '{}';
DROP INDEX {P}sessions_metadata;
CREATE INDEX {P}sessions_metadata ON {P}sessions USING gin (metadata_jsonb jsonb_path_ops)
    WHERE metadata_jsonb <> '{}';
"""

# Version 6: the B-tree indexes leave out the sessions whose key column is NULL. The
# append's update is not HOT (see version 5), so a session without an expiry paid for an
# ``expires_at`` entry, and one without a processor for two processor entries, on every
# write. Nothing looks them up through those indexes: the expiry sweep and
# ``expires_before`` compare ``expires_at`` (which implies it is not NULL), a processor
# filter is an equality; the listing sorted by expiry reads the sessions that have one
# through the index and the others (sorted last) by the primary key
# (``_query.expiry_parts``).
_V6: Final = """
DROP INDEX {P}sessions_expires;
CREATE INDEX {P}sessions_expires ON {P}sessions (ns, expires_at, id)
    WHERE expires_at IS NOT NULL;
DROP INDEX {P}sessions_proc_created;
CREATE INDEX {P}sessions_proc_created ON {P}sessions (ns, processor_id, created_at, id)
    WHERE processor_id IS NOT NULL;
DROP INDEX {P}sessions_proc_updated;
CREATE INDEX {P}sessions_proc_updated ON {P}sessions (ns, processor_id, updated_at, id)
    WHERE processor_id IS NOT NULL;
"""

#: Migration ``n`` (1-based) upgrades a schema of version ``n - 1`` to version ``n``.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6)
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
