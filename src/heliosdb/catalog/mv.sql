-- Materialized views (catalog version 2). Applied after bootstrap.sql, or on
-- its own to upgrade a version-1 catalog.

-- One row per CREATE MATERIALIZED VIEW: the definition, seen by the branch that
-- created it (from valid_from on) and by branches created from it later.
CREATE TABLE heliosdb._mviews (
    id serial PRIMARY KEY,
    name text NOT NULL,
    branch_id integer NOT NULL REFERENCES heliosdb._branches(id),
    valid_from bigint NOT NULL,
    query text NOT NULL,
    options jsonb NOT NULL,
    plan jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A DROP on a branch hides the view there and on branches created from it later.
CREATE TABLE heliosdb._mv_drops (
    mv_id integer NOT NULL,
    branch_id integer NOT NULL,
    lsn bigint NOT NULL,
    PRIMARY KEY (mv_id, branch_id)
);

-- What a view reads: HeliosDB tables and other materialized views.
CREATE TABLE heliosdb._mv_deps (
    mv_id integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('table', 'mv')),
    dep_id integer NOT NULL,
    PRIMARY KEY (mv_id, kind, dep_id)
);

-- A view's life on one branch: its storage, options, last refresh and status.
CREATE TABLE heliosdb._mv_state (
    mv_id integer NOT NULL,
    branch_id integer NOT NULL,
    options jsonb NOT NULL,
    refreshed_lsn bigint,          -- the base point the contents show (NULL: never populated)
    history_from bigint,           -- the earliest point the storage can show (for downstream deltas)
    refreshed_at timestamptz,
    last_mode text,
    last_reason text,
    last_ms double precision,
    status text NOT NULL DEFAULT 'STALE',
    failures integer NOT NULL DEFAULT 0,
    last_error text,
    next_retry timestamptz,
    reads_at_refresh bigint NOT NULL DEFAULT 0,
    pending_sql text,              -- counts base rows changed since refreshed_lsn
    size_sql text,                 -- estimates the base tables' size
    immediate_sql text,            -- incremental refresh with $1 = last point, $2 = new point
    revert_sql text,               -- undoes the storage changes stamped $1
    inc_fn text,                   -- the incremental refresh function (p, h), valid while the schema is
    sql_lsn bigint,                -- the point the SQL above was generated at (schema changes after it: again)
    prev_lsn bigint,               -- immediate: the point before the writing transaction
    PRIMARY KEY (mv_id, branch_id)
);

-- Every refresh, by the point it brought the view to: a branch created later
-- starts from its parent's contents as of the fork.
CREATE TABLE heliosdb._mv_refreshes (
    mv_id integer NOT NULL,
    branch_id integer NOT NULL,
    lsn bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    mode text NOT NULL,
    reason text,
    ms double precision,
    PRIMARY KEY (mv_id, branch_id, lsn)
);

CREATE SEQUENCE heliosdb.mv_rowid_seq;

CREATE FUNCTION heliosdb._mv_exec_count(q text, p bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE n bigint;
BEGIN
    IF q IS NULL THEN RETURN NULL; END IF;
    IF p IS NULL THEN EXECUTE q INTO n; ELSE EXECUTE q INTO n USING p; END IF;
    RETURN n;
EXCEPTION WHEN undefined_table OR undefined_column THEN
    RETURN NULL;  -- a base table went away under the view: the next refresh reports it
END $$;

-- Scans of a view's storage: how often it is read. The current transaction's own
-- scans (not yet in the shared statistics) count too, so a refresh can subtract its own.
CREATE FUNCTION heliosdb._mv_reads(b integer, m integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(pg_stat_get_numscans(r) + pg_stat_get_xact_numscans(r), 0)
    FROM (SELECT to_regclass(format('%I.%I', 'hdb_b' || b, 'mv' || m)) AS r) x
$$;

-- Staleness of every view on every branch; the formula is in docs/materialized-views.md.
CREATE FUNCTION heliosdb._mv_staleness() RETURNS TABLE (
    mv_id integer, branch_id integer, name text, branch text, strategy text, priority text,
    staleness double precision, pending_changes bigint, last_refresh_at timestamptz,
    last_refresh_lsn pg_lsn, last_refresh_mode text, last_refresh_reason text, last_refresh_ms double precision,
    next_scheduled timestamptz, status text, age_seconds double precision,
    staleness_threshold double precision, max_staleness_seconds double precision, max_cpu_percent double precision,
    reads_since_refresh bigint, last_error text, base_rows bigint, own_staleness double precision)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE base AS (
    SELECT s.*, m.name, b.name AS branch_name,
           CASE WHEN s.refreshed_lsn IS NOT NULL
                THEN heliosdb._mv_exec_count(s.pending_sql, s.refreshed_lsn) END AS pending,
           greatest(coalesce(heliosdb._mv_exec_count(s.size_sql), 1), 1) AS size,
           greatest(heliosdb._mv_reads(s.branch_id, s.mv_id) - s.reads_at_refresh, 0) AS reads,
           extract(epoch FROM clock_timestamp() - coalesce(s.refreshed_at, m.created_at))::float8 AS age
    FROM heliosdb._mv_state s
    JOIN heliosdb._mviews m ON m.id = s.mv_id
    JOIN heliosdb._branches b ON b.id = s.branch_id AND b.state <> 'dropped'
), own AS (
    SELECT base.*,
           CASE WHEN refreshed_lsn IS NULL THEN 1.0
                WHEN coalesce(pending, 0) = 0 THEN 0.0
                ELSE (1 - (1 - least(1.0, pending::float8 / size))
                        * (1 - least(1.0, age / greatest((options->>'max_staleness_seconds')::float8, 0.001))))
                     * (0.5 + 0.5 * least(1.0, reads / greatest(age / 60.0, 1.0) / 60.0))
           END AS own_staleness
    FROM base
), up(mv_id, branch_id, up_id) AS (
    SELECT d.mv_id, o.branch_id, d.dep_id FROM heliosdb._mv_deps d JOIN own o ON o.mv_id = d.mv_id
    WHERE d.kind = 'mv'
    UNION
    SELECT up.mv_id, up.branch_id, d.dep_id FROM up JOIN heliosdb._mv_deps d ON d.mv_id = up.up_id AND d.kind = 'mv'
), total AS (
    SELECT o.*, greatest(o.own_staleness, coalesce((
        SELECT max(u.own_staleness) FROM up JOIN own u ON u.mv_id = up.up_id AND u.branch_id = up.branch_id
        WHERE up.mv_id = o.mv_id AND up.branch_id = o.branch_id), 0)) AS stale
    FROM own o
)
SELECT mv_id, branch_id, name, branch_name, options->>'maintenance_strategy', options->>'priority',
       round(stale::numeric, 6)::float8, pending, refreshed_at, heliosdb.format_lsn(refreshed_lsn),
       last_mode, last_reason, last_ms,
       CASE WHEN status = 'FAILED' THEN next_retry
            WHEN options->>'maintenance_strategy' IN ('on_demand', 'immediate') THEN NULL
            WHEN stale >= (options->>'staleness_threshold')::float8 AND stale > 0 THEN clock_timestamp()
            WHEN stale > 0 THEN coalesce(refreshed_at, clock_timestamp())
                                + make_interval(secs => (options->>'max_staleness_seconds')::float8)
       END,
       CASE WHEN status IN ('REFRESHING', 'FAILED', 'UPSTREAM_FAILED') THEN status
            WHEN stale > 0 THEN 'STALE' ELSE 'FRESH' END,
       age, (options->>'staleness_threshold')::float8, (options->>'max_staleness_seconds')::float8,
       (options->>'max_cpu_percent')::float8, reads, last_error, size, round(own_staleness::numeric, 6)::float8
FROM total
$$;

CREATE VIEW heliosdb.mv_staleness AS
SELECT name, branch, strategy, priority, staleness, pending_changes, last_refresh_at, last_refresh_lsn,
       last_refresh_mode, last_refresh_reason, last_refresh_ms, next_scheduled, status, last_error
FROM heliosdb._mv_staleness()
ORDER BY branch, name;

CREATE VIEW heliosdb.mv_dependencies AS
SELECT m.name AS view, b.name AS branch, d.kind AS depends_on_kind,
       coalesce(dm.name, (SELECT v.name FROM heliosdb._table_versions v WHERE v.table_id = d.dep_id
                          ORDER BY v.valid_from DESC LIMIT 1)) AS depends_on
FROM heliosdb._mv_state s
JOIN heliosdb._mviews m ON m.id = s.mv_id
JOIN heliosdb._branches b ON b.id = s.branch_id AND b.state <> 'dropped'
JOIN heliosdb._mv_deps d ON d.mv_id = m.id
LEFT JOIN heliosdb._mviews dm ON d.kind = 'mv' AND dm.id = d.dep_id
ORDER BY b.name, m.name, d.kind, 4;

-- The views a branch sees, by name: defined on it or an ancestor before the
-- fork, not dropped since (the nearest definition wins).
CREATE FUNCTION heliosdb._mv_visible(b integer) RETURNS TABLE (mv_id integer, name text, lvl integer)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE up AS (
    SELECT id, parent_id, fork_lsn, 0 AS n, 9223372036854775807::bigint AS upto
    FROM heliosdb._branches WHERE id = b
    UNION ALL
    SELECT p.id, p.parent_id, p.fork_lsn, up.n + 1, least(up.upto, up.fork_lsn)
    FROM heliosdb._branches p JOIN up ON p.id = up.parent_id
)
SELECT DISTINCT ON (m.name) m.id, m.name, up.n
FROM heliosdb._mviews m JOIN up ON up.id = m.branch_id AND m.valid_from <= up.upto
WHERE NOT EXISTS (SELECT 1 FROM heliosdb._mv_drops d JOIN up u2 ON u2.id = d.branch_id
                  WHERE d.mv_id = m.id AND d.lsn <= u2.upto)
ORDER BY m.name, up.n, m.valid_from DESC
$$;

-- A refresh's result, in one round trip: state, log, and views waiting on this one.
CREATE FUNCTION heliosdb._mv_record(m integer, b integer, h bigint, how text, why text, took float8)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('heliosdb.mv_writer', '', true);
    -- the refresh's own scans of the storage are no reads: counted now, flushed at commit
    UPDATE heliosdb._mv_state SET refreshed_lsn = h, history_from = coalesce(history_from, h),
           refreshed_at = clock_timestamp(), last_mode = how, last_reason = why, last_ms = took,
           status = CASE WHEN status = 'UPSTREAM_FAILED' THEN status ELSE 'FRESH' END,
           failures = 0, last_error = NULL, next_retry = NULL,
           reads_at_refresh = heliosdb._mv_reads(b, m), prev_lsn = refreshed_lsn
    WHERE mv_id = m AND branch_id = b;
    PERFORM pg_stat_force_next_flush();
    INSERT INTO heliosdb._mv_refreshes (mv_id, branch_id, lsn, mode, reason, ms) VALUES (m, b, h, how, why, took)
    ON CONFLICT (mv_id, branch_id, lsn) DO UPDATE
        SET mode = EXCLUDED.mode, reason = EXCLUDED.reason, ms = EXCLUDED.ms, at = clock_timestamp();
    UPDATE heliosdb._mv_state s SET status = 'STALE', last_error = NULL
    WHERE s.branch_id = b AND s.status = 'UPSTREAM_FAILED' AND s.mv_id IN (
        WITH RECURSIVE down(id) AS (
            SELECT d.mv_id FROM heliosdb._mv_deps d WHERE d.kind = 'mv' AND d.dep_id = m
            UNION
            SELECT d.mv_id FROM heliosdb._mv_deps d JOIN down ON d.kind = 'mv' AND d.dep_id = down.id)
        SELECT id FROM down);
END $$;

-- Reading a view created WITH NO DATA, before its first refresh (as PostgreSQL).
CREATE FUNCTION heliosdb._mv_unpopulated(name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'materialized view "%" has not been populated', name
        USING ERRCODE = '55000', HINT = 'Use the REFRESH MATERIALIZED VIEW command.';
END $$;

-- A view's storage is written by refreshes only.
CREATE FUNCTION heliosdb._mv_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('heliosdb.mv_writer', true), '') <> 'on' THEN
        RAISE EXCEPTION 'cannot change materialized view "%"', TG_ARGV[0]
            USING ERRCODE = '42809', HINT = 'REFRESH MATERIALIZED VIEW brings it up to date.';
    END IF;
    RETURN NULL;
END $$;

-- Immediate maintenance, after every statement that writes a base table: the
-- immediate views over it on the writing branch are brought to the
-- transaction's LSN. A later statement of the same transaction first undoes
-- the earlier ones' changes to the view, then applies the whole transaction.
CREATE FUNCTION heliosdb._mv_immediate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    h bigint;
    p bigint;
    q text;
BEGIN
    FOR r IN
        WITH RECURSIVE affected(id) AS (
            SELECT d.mv_id FROM heliosdb._mv_deps d WHERE d.kind = 'table' AND d.dep_id = TG_ARGV[0]::integer
            UNION
            SELECT d.mv_id FROM heliosdb._mv_deps d JOIN affected a ON d.kind = 'mv' AND d.dep_id = a.id)
        SELECT s.mv_id, s.branch_id, s.refreshed_lsn, s.prev_lsn, s.immediate_sql, s.revert_sql
        FROM heliosdb._mv_state s JOIN affected a ON a.id = s.mv_id
        WHERE s.immediate_sql IS NOT NULL AND s.refreshed_lsn IS NOT NULL
          AND heliosdb.held_lsn(s.branch_id) IS NOT NULL
        ORDER BY s.mv_id
    LOOP
        h := heliosdb.held_lsn(r.branch_id);
        PERFORM set_config('heliosdb.mv_writer', 'on', true);
        IF r.refreshed_lsn >= h AND r.prev_lsn IS NOT NULL THEN
            p := r.prev_lsn;
            FOREACH q IN ARRAY string_to_array(r.revert_sql, E'\n;\n') LOOP
                EXECUTE q USING h;
            END LOOP;
        ELSE
            p := r.refreshed_lsn;
        END IF;
        IF p < h THEN
            EXECUTE r.immediate_sql USING p, h;
        END IF;
        PERFORM set_config('heliosdb.mv_writer', '', true);
        UPDATE heliosdb._mv_state SET refreshed_lsn = h, prev_lsn = p, refreshed_at = clock_timestamp(),
               last_mode = 'incremental', last_reason = 'immediate', status = 'FRESH'
        WHERE mv_id = r.mv_id AND branch_id = r.branch_id;
    END LOOP;
    RETURN NULL;
END $$;

-- What kind of relation a client should see: a HeliosDB table is a view over
-- the versioned storage (so it can hide the bookkeeping columns) but is a
-- table to the user ('r'); a HeliosDB materialized view is 'm'. The wire
-- endpoint puts this in place of pg_class.relkind in clients' catalog
-- queries (psql's \dt, \d, \dm; ORMs' reflection).
CREATE FUNCTION heliosdb._relkind(o oid, k "char") RETURNS "char"
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN k <> 'v' THEN k ELSE coalesce((
        SELECT CASE WHEN t.relname ~ '^mv[0-9]+$' THEN 'm' ELSE 'r' END::"char"
        FROM pg_catalog.pg_rewrite rw
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
        JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.oid <> o
        JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        WHERE rw.ev_class = o AND tn.nspname ~ '^hdb_[tb][0-9]+$' LIMIT 1), k) END
$$;

UPDATE heliosdb._meta SET value = '2' WHERE key = 'catalog_version';
