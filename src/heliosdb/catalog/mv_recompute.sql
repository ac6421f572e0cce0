-- Materialized views that no delta can bring up to date (catalog version 16): the next refresh
-- recomputes them, and heliosdb.mv_staleness shows them stale with unknown pending changes.
--  - recompute: refreshed inside a transaction that wrote the branch before the refresh (set by
--    _mv_record; a full refresh clears it);
--  - the garbage collector pruned history since the last refresh, on the branch or on an ancestor
--    at a point the branch still reads it at.

ALTER TABLE heliosdb._mv_state ADD COLUMN IF NOT EXISTS recompute boolean NOT NULL DEFAULT false;

-- Whether history of base tables that view m's next delta on branch b would read, from its last
-- refresh p on, may be gone (views over views: their inputs keep it, see retention.sql).
CREATE OR REPLACE FUNCTION heliosdb._mv_history_gone(m integer, b integer, p bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up AS (
        SELECT id, parent_id, fork_lsn, 9223372036854775807::bigint AS upto, gc_lsn
        FROM heliosdb._branches WHERE id = b
        UNION ALL
        SELECT a.id, a.parent_id, a.fork_lsn, least(up.upto, up.fork_lsn), a.gc_lsn
        FROM up JOIN heliosdb._branches a ON a.id = up.parent_id)
    SELECT EXISTS (SELECT 1 FROM up WHERE p < up.upto AND up.gc_lsn > p)
       AND EXISTS (SELECT 1 FROM heliosdb._mv_deps d WHERE d.mv_id = m AND d.kind = 'table')
$$;

CREATE OR REPLACE FUNCTION heliosdb._mv_recompute(m integer, b integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT s.recompute OR (s.refreshed_lsn IS NOT NULL AND heliosdb._mv_history_gone(m, b, s.refreshed_lsn))
    FROM heliosdb._mv_state s WHERE s.mv_id = m AND s.branch_id = b
$$;

CREATE OR REPLACE FUNCTION heliosdb._mv_record(m integer, b integer, h bigint, how text, why text, took float8)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('heliosdb.mv_writer', '', true);
    -- the refresh's own scans of the storage are no reads: counted now, flushed at commit
    UPDATE heliosdb._mv_state SET refreshed_lsn = h, history_from = coalesce(history_from, h),
           refreshed_at = clock_timestamp(), last_mode = how, last_reason = why, last_ms = took,
           status = CASE WHEN status = 'UPSTREAM_FAILED' THEN status ELSE 'FRESH' END,
           failures = 0, last_error = NULL, next_retry = NULL,
           reads_at_refresh = heliosdb._mv_reads(b, m), prev_lsn = refreshed_lsn,
           -- brought to the LSN of the transaction it runs in, which wrote the branch before: the
           -- transaction's later writes carry the same LSN, so no delta can tell them from the earlier ones
           recompute = coalesce(options->>'maintenance_strategy' <> 'immediate' AND h = heliosdb.held_lsn(b), false)
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

CREATE OR REPLACE FUNCTION heliosdb._mv_refresh(m integer, b integer, view_name text, mode text, wait boolean,
                                     reason text, detached boolean, full_fraction float8)
RETURNS TABLE (outcome text, mv_id integer, why text, nrows bigint, ms float8, lsn bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    n bigint;
    total bigint;
    t0 timestamptz;
    r bigint;
    took float8;
BEGIN
    IF m IS NULL THEN
        SELECT v.mv_id INTO m FROM heliosdb._mv_visible(b) v WHERE v.name = view_name;
        IF m IS NULL THEN
            RETURN QUERY SELECT 'missing', NULL::integer, NULL::text, 0::bigint, 0::float8, NULL::bigint;
            RETURN;
        END IF;
    END IF;
    IF mode = 'full' OR EXISTS (SELECT 1 FROM heliosdb._mv_deps d WHERE d.mv_id = m AND d.kind = 'mv') THEN
        RETURN QUERY SELECT 'slow', m, NULL::text, 0::bigint, 0::float8, NULL::bigint;
        RETURN;
    END IF;
    IF wait THEN
        PERFORM pg_advisory_xact_lock(heliosdb._mv_lock_key(m, b));
    ELSIF NOT pg_try_advisory_xact_lock(heliosdb._mv_lock_key(m, b)) THEN
        RETURN QUERY SELECT 'busy', m, NULL::text, 0::bigint, 0::float8, NULL::bigint;
        RETURN;
    END IF;
    SELECT st.refreshed_lsn AS p, st.options, st.pending_sql, st.size_sql, st.inc_fn, st.sql_lsn,
           coalesce(heliosdb.held_lsn(br.id), br.head_lsn) AS head, br.fork_lsn
      INTO s
      FROM heliosdb._mv_state st JOIN heliosdb._branches br ON br.id = st.branch_id
     WHERE st.mv_id = m AND st.branch_id = b
       FOR UPDATE OF st;
    IF NOT FOUND OR s.inc_fn IS NULL OR s.p IS NULL OR s.p < coalesce(s.fork_lsn, 0)
       OR heliosdb._mv_recompute(m, b)
       OR EXISTS (SELECT 1 FROM heliosdb._mv_deps d JOIN heliosdb._table_versions v ON v.table_id = d.dep_id
                  WHERE d.mv_id = m AND d.kind = 'table' AND v.valid_from > s.sql_lsn) THEN
        RETURN QUERY SELECT 'slow', m, NULL::text, 0::bigint, 0::float8, NULL::bigint;
        RETURN;
    END IF;
    n := CASE WHEN s.p < s.head THEN heliosdb._mv_exec_count(s.pending_sql, s.p) ELSE 0 END;
    IF n IS NULL OR (s.options->>'maintenance_strategy' = 'deferred' AND mode IS NULL) THEN
        RETURN QUERY SELECT 'slow', m, NULL::text, 0::bigint, 0::float8, NULL::bigint;
        RETURN;
    END IF;
    IF n = 0 THEN
        RETURN QUERY SELECT 'none', m, 'no changes'::text, 0::bigint, 0::float8, s.head;
        RETURN;
    END IF;
    total := coalesce(heliosdb._mv_exec_count(s.size_sql), 0);
    IF total > 0 AND n > full_fraction * total AND mode IS DISTINCT FROM 'incremental' THEN
        RETURN QUERY SELECT 'slow', m, NULL::text, 0::bigint, 0::float8, NULL::bigint;
        RETURN;
    END IF;
    IF detached THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM set_config('heliosdb.mv_writer', 'on', true);
    t0 := clock_timestamp();
    EXECUTE format('SELECT %s($1, $2)', s.inc_fn) INTO r USING s.p, s.head;
    took := extract(epoch FROM clock_timestamp() - t0) * 1000;
    reason := coalesce(reason, n || ' changed base rows');
    PERFORM heliosdb._mv_record(m, b, s.head, 'incremental', reason, took);
    RETURN QUERY SELECT 'done', m, reason, coalesce(r, 0), took, s.head;
END $$;

CREATE OR REPLACE FUNCTION heliosdb._mv_staleness() RETURNS TABLE (
    mv_id integer, branch_id integer, name text, branch text, strategy text, priority text,
    staleness double precision, pending_changes bigint, last_refresh_at timestamptz,
    last_refresh_lsn pg_lsn, last_refresh_mode text, last_refresh_reason text, last_refresh_ms double precision,
    next_scheduled timestamptz, status text, age_seconds double precision,
    staleness_threshold double precision, max_staleness_seconds double precision, max_cpu_percent double precision,
    reads_since_refresh bigint, last_error text, base_rows bigint, own_staleness double precision)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE base AS (
    SELECT s.*, m.name, b.name AS branch_name,
           CASE WHEN s.refreshed_lsn IS NOT NULL AND NOT heliosdb._mv_recompute(s.mv_id, s.branch_id)
                THEN heliosdb._mv_exec_count(s.pending_sql, s.refreshed_lsn) END AS pending,
           heliosdb._mv_recompute(s.mv_id, s.branch_id) AS redo,
           greatest(coalesce(heliosdb._mv_exec_count(s.size_sql), 1), 1) AS size,
           greatest(heliosdb._mv_reads(s.branch_id, s.mv_id) - s.reads_at_refresh, 0) AS reads,
           extract(epoch FROM clock_timestamp() - coalesce(s.refreshed_at, m.created_at))::float8 AS age
    FROM heliosdb._mv_state s
    JOIN heliosdb._mviews m ON m.id = s.mv_id
    JOIN heliosdb._branches b ON b.id = s.branch_id AND b.state <> 'dropped'
), own AS (
    SELECT base.*,
           CASE WHEN refreshed_lsn IS NULL OR redo THEN 1.0
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


UPDATE heliosdb._meta SET value = '16' WHERE key = 'catalog_version';
