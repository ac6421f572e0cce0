-- HeliosDB catalog: branches, commit log, schema versions, audit log.
-- Runs once per database, in one transaction, guarded by an advisory lock.

CREATE SCHEMA heliosdb;

CREATE SEQUENCE heliosdb.lsn_seq;
CREATE SEQUENCE heliosdb.scn_seq;
CREATE SEQUENCE heliosdb.rowid_seq CACHE 64;
CREATE SEQUENCE heliosdb.table_id_seq;
CREATE SEQUENCE heliosdb.col_id_seq;
CREATE SEQUENCE heliosdb.branch_id_seq;

CREATE TABLE heliosdb._meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO heliosdb._meta VALUES ('catalog_version', '1');

CREATE TABLE heliosdb._nodes (
    id text PRIMARY KEY,
    kind text NOT NULL,
    conninfo text,
    is_local boolean NOT NULL
);
INSERT INTO heliosdb._nodes VALUES ('node-1', 'primary', NULL, true);

CREATE TABLE heliosdb._endpoints (id text PRIMARY KEY, is_local boolean NOT NULL);
INSERT INTO heliosdb._endpoints VALUES ('endpoint-1', true);

CREATE TABLE heliosdb._branches (
    id integer PRIMARY KEY DEFAULT nextval('heliosdb.branch_id_seq'),
    name text NOT NULL,
    parent_id integer REFERENCES heliosdb._branches(id),
    fork_lsn bigint,
    head_lsn bigint NOT NULL DEFAULT 0,
    gc_lsn bigint NOT NULL DEFAULT 0,  -- history before this LSN was pruned
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'dropped')),
    read_only boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by text NOT NULL DEFAULT current_user,
    options jsonb NOT NULL DEFAULT '{}',
    storage_node text NOT NULL DEFAULT 'node-1' REFERENCES heliosdb._nodes(id),
    compute_endpoint text NOT NULL DEFAULT 'endpoint-1',
    user_schema text NOT NULL,
    built boolean NOT NULL DEFAULT false,  -- schemas and views are built on first use
    dropped_at timestamptz
);
CREATE UNIQUE INDEX ON heliosdb._branches (name) WHERE state <> 'dropped';
INSERT INTO heliosdb._branches (id, name, parent_id, fork_lsn, user_schema, built, options)
VALUES (nextval('heliosdb.branch_id_seq'), 'main', NULL, NULL, 'public', true,
        '{"read_only": false, "retention_period": "7 days", "gc_policy": "balanced"}');

-- One row per committed transaction that wrote (rolled-back ones vanish with it).
CREATE TABLE heliosdb._commits (
    lsn bigint PRIMARY KEY,
    scn bigint NOT NULL UNIQUE,
    txid xid8 NOT NULL,
    committed_at timestamptz NOT NULL,
    branch_id integer NOT NULL,
    usr text NOT NULL
);
CREATE INDEX ON heliosdb._commits (branch_id, lsn);
CREATE INDEX ON heliosdb._commits (branch_id, committed_at);
CREATE INDEX ON heliosdb._commits (txid);

CREATE TABLE heliosdb._audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    usr text NOT NULL DEFAULT current_user,
    branch text,
    statement text NOT NULL,
    lsn bigint,
    outcome text NOT NULL
);

-- Tables: identity is stable across branches; physical relations live in phys_schema.
CREATE TABLE heliosdb._tables (
    id integer PRIMARY KEY,
    root_branch integer NOT NULL,
    phys_schema text NOT NULL,
    phys_name text NOT NULL,
    created_lsn bigint NOT NULL
);

CREATE TABLE heliosdb._columns (
    table_id integer NOT NULL,
    col_id integer NOT NULL,
    phys_name text NOT NULL,
    type text NOT NULL,
    PRIMARY KEY (table_id, col_id)
);

-- What a table looks like on a branch from valid_from (an LSN) until valid_to.
CREATE TABLE heliosdb._table_versions (
    branch_id integer NOT NULL,
    table_id integer NOT NULL,
    name text NOT NULL,
    valid_from bigint NOT NULL,
    valid_to bigint NOT NULL DEFAULT 9223372036854775807,
    dropped boolean NOT NULL DEFAULT false,
    columns jsonb NOT NULL,
    constraints jsonb NOT NULL,
    PRIMARY KEY (branch_id, table_id, valid_from)
);

-- The LSN of the current transaction on branch b. The first call in a
-- transaction locks the branch row until commit (so on a branch LSN order is
-- commit order), refuses read-only branches and writes the commit-log row.
CREATE FUNCTION heliosdb.txn_lsn(b integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v text := current_setting('heliosdb.lsn_' || b, true);
    l bigint;
    r record;
BEGIN
    IF v IS NOT NULL AND v <> '' THEN
        RETURN v::bigint;
    END IF;
    SELECT name, read_only, state INTO r FROM heliosdb._branches WHERE id = b FOR UPDATE;
    IF NOT FOUND OR r.state = 'dropped' THEN
        RAISE EXCEPTION 'branch % does not exist', b USING ERRCODE = 'HD001';
    END IF;
    IF r.read_only THEN
        RAISE EXCEPTION 'cannot write to read-only branch "%"', r.name
            USING ERRCODE = '25006',
                  HINT = format('ALTER DATABASE BRANCH %I SET WRITABLE makes it writable again.', r.name);
    END IF;
    l := nextval('heliosdb.lsn_seq');
    UPDATE heliosdb._branches SET head_lsn = l WHERE id = b;
    INSERT INTO heliosdb._commits VALUES
        (l, nextval('heliosdb.scn_seq'), pg_current_xact_id(), clock_timestamp(), b, current_user);
    PERFORM set_config('heliosdb.lsn_' || b, l::text, true);
    RETURN l;
END $$;

-- The LSN this transaction already holds on branch b, or NULL.
CREATE FUNCTION heliosdb.held_lsn(b integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('heliosdb.lsn_' || b, true), '')::bigint
$$;

-- Commit time is taken when the transaction commits, not at its first write.
CREATE FUNCTION heliosdb._stamp_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE heliosdb._commits SET committed_at = clock_timestamp() WHERE lsn = NEW.lsn;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER stamp_commit AFTER INSERT ON heliosdb._commits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION heliosdb._stamp_commit();

CREATE FUNCTION heliosdb.format_lsn(l bigint) RETURNS pg_lsn
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT '0/0'::pg_lsn + l $$;

CREATE FUNCTION heliosdb.current_branch() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('heliosdb.branch', true), ''), 'main')
$$;

CREATE FUNCTION heliosdb.current_lsn() RETURNS pg_lsn
LANGUAGE sql STABLE AS $$
    SELECT heliosdb.format_lsn(coalesce(heliosdb.held_lsn(b.id), b.head_lsn))
    FROM heliosdb._branches b
    WHERE b.name = heliosdb.current_branch() AND b.state <> 'dropped'
$$;

CREATE FUNCTION heliosdb.current_scn() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(c.scn), 0)
    FROM heliosdb._commits c
    WHERE c.lsn <= (SELECT coalesce(heliosdb.held_lsn(b.id), b.head_lsn) FROM heliosdb._branches b
                    WHERE b.name = heliosdb.current_branch() AND b.state <> 'dropped')
$$;

CREATE VIEW heliosdb.branches AS
WITH RECURSIVE tree AS (
    SELECT id, 0 AS depth FROM heliosdb._branches WHERE parent_id IS NULL
    UNION ALL
    SELECT b.id, t.depth + 1 FROM heliosdb._branches b JOIN tree t ON b.parent_id = t.id
)
SELECT b.id, b.name, p.name AS parent, heliosdb.format_lsn(b.fork_lsn) AS fork_lsn,
       heliosdb.format_lsn(b.head_lsn) AS head_lsn,
       CASE WHEN b.state = 'dropped' THEN 'dropped' WHEN b.read_only THEN 'read-only' ELSE 'active' END AS state,
       b.read_only, t.depth, b.storage_node, b.compute_endpoint, b.created_at, b.created_by, b.options
FROM heliosdb._branches b
LEFT JOIN heliosdb._branches p ON p.id = b.parent_id
JOIN tree t ON t.id = b.id
WHERE b.state <> 'dropped';

CREATE VIEW heliosdb.commits AS
SELECT heliosdb.format_lsn(c.lsn) AS lsn, c.scn, c.txid, c.committed_at, b.name AS branch, c.usr AS "user"
FROM heliosdb._commits c JOIN heliosdb._branches b ON b.id = c.branch_id;

CREATE VIEW heliosdb.audit_log AS
SELECT a.at AS "time", a.usr AS "user", a.branch, a.statement, heliosdb.format_lsn(a.lsn) AS lsn, a.outcome
FROM heliosdb._audit a;

CREATE VIEW heliosdb.nodes AS SELECT id, kind, is_local FROM heliosdb._nodes;

CREATE INDEX ON heliosdb._commits (branch_id, scn);

-- The last commit at or before `ts` (or, with ts NULL, at or before SCN `s`) in branch b's
-- history: its own commits, then its ancestors' up to the fork points. On a branch, commit
-- time, SCN and LSN grow together, so each level costs two index probes: O(log n).
CREATE FUNCTION heliosdb._resolve_at(b integer, ts timestamptz, s bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur integer := b;
    upto bigint;
    r bigint;
    par integer;
    fork bigint;
BEGIN
    SELECT coalesce(heliosdb.held_lsn(id), head_lsn) INTO upto FROM heliosdb._branches WHERE id = b;
    LOOP
        IF ts IS NOT NULL THEN
            SELECT lsn INTO r FROM heliosdb._commits
            WHERE branch_id = cur AND committed_at <= ts ORDER BY committed_at DESC LIMIT 1;
        ELSE
            SELECT lsn INTO r FROM heliosdb._commits
            WHERE branch_id = cur AND scn <= s ORDER BY scn DESC LIMIT 1;
        END IF;
        IF r IS NOT NULL AND r > upto THEN
            SELECT lsn INTO r FROM heliosdb._commits WHERE branch_id = cur AND lsn <= upto ORDER BY lsn DESC LIMIT 1;
        END IF;
        IF r IS NOT NULL THEN
            RETURN r;
        END IF;
        SELECT parent_id, fork_lsn INTO par, fork FROM heliosdb._branches WHERE id = cur;
        EXIT WHEN par IS NULL;
        upto := least(upto, fork);
        cur := par;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION heliosdb._lsn_at(b integer, ts timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT heliosdb._resolve_at(b, ts, NULL) $$;

CREATE FUNCTION heliosdb._lsn_at_scn(b integer, s bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT heliosdb._resolve_at(b, NULL, s) $$;

CREATE FUNCTION heliosdb._current_branch_id() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT id FROM heliosdb._branches WHERE name = heliosdb.current_branch() AND state <> 'dropped'
$$;

CREATE FUNCTION heliosdb.lsn_at(ts timestamptz) RETURNS pg_lsn
LANGUAGE sql STABLE AS $$ SELECT heliosdb.format_lsn(heliosdb._lsn_at(heliosdb._current_branch_id(), ts)) $$;

CREATE FUNCTION heliosdb.timestamp_to_scn(ts timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT scn FROM heliosdb._commits WHERE lsn = heliosdb._lsn_at(heliosdb._current_branch_id(), ts)
$$;

CREATE FUNCTION heliosdb.scn_to_timestamp(s bigint) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT committed_at FROM heliosdb._commits WHERE scn = s $$;

CREATE FUNCTION heliosdb.lsn_to_scn(l pg_lsn) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT scn FROM heliosdb._commits WHERE lsn <= (l - '0/0'::pg_lsn)::bigint ORDER BY lsn DESC LIMIT 1
$$;

-- Commit points, with the tables each commit touched and how many rows it
-- changed (a version beginning or ending at that LSN). Diagnostic: it reads
-- the version relations, so its cost grows with their size.
CREATE FUNCTION heliosdb.snapshots(table_name text DEFAULT NULL)
RETURNS TABLE (lsn pg_lsn, scn bigint, txid xid8, committed_at timestamptz, branch text,
               tables_touched text[], rows_changed bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t record;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _hdb_snap (lsn bigint, tname text, n bigint) ON COMMIT DROP;
    TRUNCATE _hdb_snap;
    FOR t IN SELECT DISTINCT tb.id, tb.phys_schema, tb.phys_name, v.name
             FROM heliosdb._tables tb JOIN heliosdb._table_versions v ON v.table_id = tb.id
             WHERE table_name IS NULL OR v.name = table_name LOOP
        EXECUTE format(
            'INSERT INTO _hdb_snap SELECT l, %L, count(DISTINCT r) FROM (
                 SELECT _hdb_lsn AS l, _hdb_rowid AS r FROM %I.%I
                 UNION ALL SELECT _hdb_lsn, _hdb_rowid FROM %I.%I
                 UNION ALL SELECT _hdb_begin, _hdb_rowid FROM %I.%I
                 UNION ALL SELECT _hdb_end, _hdb_rowid FROM %I.%I) x GROUP BY l',
            t.name, t.phys_schema, t.phys_name, t.phys_schema, t.phys_name || '__br',
            t.phys_schema, t.phys_name || '__hist', t.phys_schema, t.phys_name || '__hist');
    END LOOP;
    RETURN QUERY
        SELECT heliosdb.format_lsn(c.lsn), c.scn, c.txid, c.committed_at, b.name,
               array_agg(DISTINCT s.tname ORDER BY s.tname) FILTER (WHERE s.tname IS NOT NULL),
               coalesce(sum(s.n), 0)::bigint
        FROM heliosdb._commits c
        JOIN heliosdb._branches b ON b.id = c.branch_id
        LEFT JOIN _hdb_snap s ON s.lsn = c.lsn
        GROUP BY c.lsn, c.scn, c.txid, c.committed_at, b.name
        HAVING table_name IS NULL OR count(s.tname) > 0
        ORDER BY c.lsn;
END $$;

CREATE VIEW heliosdb.snapshots AS SELECT * FROM heliosdb.snapshots(NULL);

CREATE VIEW heliosdb.retention AS
SELECT b.name AS branch, (b.options->>'retention_period')::interval AS retention_period,
       b.options->>'gc_policy' AS gc_policy,
       heliosdb.format_lsn(b.gc_lsn) AS oldest_lsn,
       (SELECT c.committed_at FROM heliosdb._commits c WHERE c.lsn = b.gc_lsn) AS oldest_time
FROM heliosdb._branches b WHERE b.state <> 'dropped';

-- heliosdb.gc(), the pruning of history by retention, is defined in mv_upkeep.sql (it covers
-- materialized views' history too, so it comes after mv.sql).

-- Merges: every MERGE DATABASE BRANCH, pending (MANUAL), completed or aborted.
CREATE SEQUENCE heliosdb.merge_id_seq;
CREATE TABLE heliosdb._merges (
    id bigint PRIMARY KEY,
    source_id integer NOT NULL,
    target_id integer NOT NULL,
    base_source_lsn bigint NOT NULL,
    base_target_lsn bigint NOT NULL,
    source_lsn bigint NOT NULL,         -- the source head that was merged
    target_lsn bigint NOT NULL,         -- the target head the plan was made against
    result_lsn bigint,                  -- the target commit of the merge
    strategy text NOT NULL,
    rule_set text,
    usr text NOT NULL DEFAULT current_user,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    counts jsonb NOT NULL DEFAULT '{}',
    state text NOT NULL CHECK (state IN ('pending', 'completed', 'aborted')),
    message text,
    schema_ddl jsonb                    -- DDL a pending merge replays on the target at COMPLETE MERGE
);
CREATE INDEX ON heliosdb._merges (source_id, target_id);

-- The changes a pending (MANUAL) merge will apply, conflicts included.
CREATE TABLE heliosdb._merge_plan (
    merge_id bigint NOT NULL,
    table_name text NOT NULL,
    rowid bigint NOT NULL,
    action text NOT NULL,              -- upsert | delete
    row_value jsonb,
    conflict_id integer
);
CREATE INDEX ON heliosdb._merge_plan (merge_id);

CREATE TABLE heliosdb._rule_sets (
    name text PRIMARY KEY,
    rules jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE VIEW heliosdb.merges AS
SELECT m.id, s.name AS source, t.name AS target,
       heliosdb.format_lsn(m.base_target_lsn) AS base_lsn, heliosdb.format_lsn(m.source_lsn) AS source_lsn,
       heliosdb.format_lsn(m.result_lsn) AS result_lsn, m.strategy, m.rule_set, m.usr AS "user", m.at AS "time",
       m.counts, m.state, m.message
FROM heliosdb._merges m
JOIN heliosdb._branches s ON s.id = m.source_id
JOIN heliosdb._branches t ON t.id = m.target_id;

CREATE VIEW heliosdb.conflict_resolutions AS SELECT name, rules, created_at FROM heliosdb._rule_sets;
