-- Materialized views' upkeep (catalog version 4): the common refresh in one
-- statement, and garbage collection of their history.
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

-- Prune history older than each branch's retention (scaled by its gc_policy),
-- keeping every version that a descendant's fork point still reads. Since
-- catalog version 4 (before, bootstrap.sql had it without the next part) also
-- the history of materialized views: a view's versions that ended before the
-- branch's retention horizon go, as far
-- as nothing still reads them: views over it refresh from their last point, and
-- branches read their parent's views as of their fork points (history_from
-- rises with the horizon, so an input's history never silently goes missing).
CREATE OR REPLACE FUNCTION heliosdb.gc() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    br record;
    t record;
    v record;
    horizon bigint;
    keep bigint;
    pruned bigint := 0;
    n bigint;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _hdb_needed (branch_id integer, upto bigint) ON COMMIT DROP;
    TRUNCATE _hdb_needed;
    -- (ancestor, LSN) pairs that live branches read their ancestors at
    INSERT INTO _hdb_needed
    WITH RECURSIVE up AS (
        SELECT b.id AS leaf, b.parent_id AS anc, b.fork_lsn AS upto
        FROM heliosdb._branches b WHERE b.state <> 'dropped' AND b.parent_id IS NOT NULL
        UNION ALL
        SELECT up.leaf, p.parent_id, least(up.upto, p.fork_lsn)
        FROM up JOIN heliosdb._branches p ON p.id = up.anc WHERE p.parent_id IS NOT NULL)
    SELECT DISTINCT anc, upto FROM up;
    FOR br IN SELECT id, options FROM heliosdb._branches WHERE state <> 'dropped' LOOP
        horizon := heliosdb._lsn_at(br.id, clock_timestamp() - (br.options->>'retention_period')::interval *
            CASE br.options->>'gc_policy' WHEN 'aggressive' THEN 1 WHEN 'conservative' THEN 2 ELSE 1.25 END);
        CONTINUE WHEN horizon IS NULL;
        FOR t IN SELECT phys_schema, phys_name FROM heliosdb._tables LOOP
            EXECUTE format(
                'DELETE FROM %I.%I h WHERE h._hdb_branch = $1 AND h._hdb_end <= $2
                 AND NOT EXISTS (SELECT 1 FROM _hdb_needed k WHERE k.branch_id = $1
                                 AND h._hdb_begin <= k.upto AND h._hdb_end > k.upto)',
                t.phys_schema, t.phys_name || '__hist') USING br.id, horizon;
            GET DIAGNOSTICS n = ROW_COUNT;
            pruned := pruned + n;
        END LOOP;
        UPDATE heliosdb._branches SET gc_lsn = greatest(gc_lsn, horizon) WHERE id = br.id;
        FOR v IN SELECT s.mv_id, s.history_from FROM heliosdb._mv_state s
                 WHERE s.branch_id = br.id AND s.history_from IS NOT NULL AND s.history_from < horizon
                   AND to_regclass(format('%I.%I', 'hdb_b' || br.id, 'mv' || s.mv_id || '__hist')) IS NOT NULL LOOP
            keep := least(horizon,
                (SELECT min(d.refreshed_lsn) FROM heliosdb._mv_deps dep
                 JOIN heliosdb._mv_state d ON d.mv_id = dep.mv_id AND d.branch_id = br.id
                 WHERE dep.kind = 'mv' AND dep.dep_id = v.mv_id),
                (SELECT min(k.upto) FROM _hdb_needed k WHERE k.branch_id = br.id));
            CONTINUE WHEN keep <= v.history_from;
            EXECUTE format('DELETE FROM %I.%I WHERE _hdb_end <= $1', 'hdb_b' || br.id, 'mv' || v.mv_id || '__hist')
                USING keep;
            GET DIAGNOSTICS n = ROW_COUNT;
            pruned := pruned + n;
            -- the refresh log: what a branch forked at or after `keep` looks up (the last refresh before it) stays
            DELETE FROM heliosdb._mv_refreshes r
            WHERE r.mv_id = v.mv_id AND r.branch_id = br.id
              AND r.lsn < (SELECT max(r2.lsn) FROM heliosdb._mv_refreshes r2
                           WHERE r2.mv_id = v.mv_id AND r2.branch_id = br.id AND r2.lsn <= keep);
            UPDATE heliosdb._mv_state SET history_from = keep WHERE mv_id = v.mv_id AND branch_id = br.id;
        END LOOP;
    END LOOP;
    RETURN pruned;
END $$;

UPDATE heliosdb._meta SET value = '4' WHERE key = 'catalog_version';
