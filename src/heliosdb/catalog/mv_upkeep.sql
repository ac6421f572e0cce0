-- Materialized views' upkeep (catalog version 4): the common refresh in one
-- statement (their history's garbage collection: retention.sql).
--
-- An incremental refresh of a view over tables, with a valid incremental
-- function, is a lock, a state read, a decision, the function and the record.
-- As separate statements these were five round trips and a commit that cost
-- more than the delta itself (docs/materialized-views.md, "Speed"). Whatever
-- this function cannot decide alone it leaves to the caller ('slow'), which
-- runs the general path in the same transaction.

-- The advisory lock of one view's refreshes on one branch (refresh.py _lock_key).
CREATE FUNCTION heliosdb._mv_lock_key(m integer, b integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (x'4D56'::bigint << 48) | ((m::bigint & 16777215) << 24) | (b::bigint & 16777215)
$$;

-- outcome: done (refreshed incrementally), none (nothing changed), busy (another
-- refresh holds the view), missing (no such view on the branch), slow (the
-- caller decides). m or, when m is NULL, the view's name on branch b.
-- detached: the refresh is its own transaction, so its commit need not wait for
-- the WAL flush: a crash can only lose the refresh itself, which leaves the view
-- at its previous refresh (consistent, staler, and refreshed again).
CREATE FUNCTION heliosdb._mv_refresh(m integer, b integer, view_name text, mode text, wait boolean,
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

-- heliosdb.gc(), with the history of materialized views since this version, is in retention.sql
-- (catalog version 7), which replaces it whole: one definition to read.

UPDATE heliosdb._meta SET value = '4' WHERE key = 'catalog_version';
