-- Retention (catalog version 7), applied after clients.sql: nothing a later read or
-- merge depends on goes missing without an error.

-- Raised by SQL kept to run later with a time-travel point in it (a view, a prepared statement,
-- SET AS OF, a materialized view's query; temporal/rewrite.py, _KEPT) once the garbage collector
-- pruned that point or its branch was dropped: an error, never what is left of the history.
CREATE OR REPLACE FUNCTION heliosdb._asof_gone(l bigint) RETURNS boolean
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION 'snapshot too old: LSN % is no longer in the retained history, or its branch was dropped',
                    heliosdb.format_lsn(l)
        USING ERRCODE = '72000',
              HINT = 'A view, prepared statement or SET AS OF keeps the point it was defined at; define it again at a retained point.';
END $$;

-- Prune history older than each branch's retention (scaled by its gc_policy), keeping every
-- version that a descendant's fork point or the next merge's base still reads. Also the
-- history of materialized views: a view's versions that ended before the branch's retention
-- horizon go, as far as nothing still reads them: views over it refresh from their last point,
-- and branches read their parent's views as of their fork points (history_from rises with the
-- horizon, so an input's history never silently goes missing).
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
    -- the points merges start from: each side's head when it was last merged into a live branch
    -- (merge/engine.py, merge_base): pruned, the next merge would diff against a wrong base
    INSERT INTO _hdb_needed
    SELECT m.source_id, max(m.source_lsn) FROM heliosdb._merges m
    JOIN heliosdb._branches sb ON sb.id = m.source_id AND sb.state <> 'dropped'
    JOIN heliosdb._branches tb ON tb.id = m.target_id AND tb.state <> 'dropped'
    WHERE m.state = 'completed' GROUP BY m.source_id, m.target_id;
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

UPDATE heliosdb._meta SET value = '7' WHERE key = 'catalog_version';
