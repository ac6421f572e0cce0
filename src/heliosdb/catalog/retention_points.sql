-- Retained points (catalog version 18), applied after snapshots.sql.

-- The oldest LSN from which every read of branch b is inside the retained history: a read at a
-- point needs the history of the branch, and of each ancestor while the point is before the fork
-- below it; from a fork point up, ancestors are read at the fork, which gc() keeps for the child.
-- The same walk as temporal/resolver.py, oldest_retained (the "snapshot too old" hint).
CREATE OR REPLACE FUNCTION heliosdb._retained_lsn(b integer) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur integer := b;
    r record;
    m bigint := 0;
    best bigint;
BEGIN
    LOOP
        SELECT parent_id, fork_lsn, gc_lsn INTO r FROM heliosdb._branches WHERE id = cur;
        EXIT WHEN NOT FOUND;
        m := greatest(m, r.gc_lsn);
        EXIT WHEN r.parent_id IS NULL OR r.fork_lsn IS NULL OR r.fork_lsn <= m;
        best := least(best, r.fork_lsn);  -- points from the fork on stop here
        cur := r.parent_id;
    END LOOP;
    RETURN least(best, m);
END $$;

-- The oldest point AS OF accepts on branch b: retained, and not before the first commit of its
-- history (its own commits and its ancestors' up to the fork points).
CREATE OR REPLACE FUNCTION heliosdb._oldest_lsn(b integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up AS (
        SELECT id, parent_id, fork_lsn, 9223372036854775807::bigint AS upto FROM heliosdb._branches WHERE id = b
        UNION ALL
        SELECT p.id, p.parent_id, p.fork_lsn, least(up.upto, up.fork_lsn)
        FROM heliosdb._branches p JOIN up ON p.id = up.parent_id)
    SELECT greatest(heliosdb._retained_lsn(b),
                    min((SELECT min(c.lsn) FROM heliosdb._commits c WHERE c.branch_id = up.id AND c.lsn <= up.upto)))
    FROM up
$$;

CREATE OR REPLACE VIEW heliosdb.retention AS
SELECT b.name AS branch, (b.options->>'retention_period')::interval AS retention_period,
       b.options->>'gc_policy' AS gc_policy,
       heliosdb.format_lsn(o.lsn) AS oldest_lsn,
       (SELECT c.committed_at FROM heliosdb._commits c WHERE c.lsn = o.lsn) AS oldest_time
FROM heliosdb._branches b CROSS JOIN LATERAL (SELECT heliosdb._oldest_lsn(b.id) AS lsn) o
WHERE b.state <> 'dropped';

-- The resolution functions refuse a point whose state is not known yet, as AS OF does (HD007, the
-- same messages and hints as temporal/resolver.py): a time after the current time, an SCN not
-- assigned yet, an LSN after the current branch's head. They used to answer the latest commit
-- (lsn_at, timestamp_to_scn, lsn_to_scn) or NULL (scn_to_timestamp), which a later commit changes.
-- PL/pgSQL: as fast as the inlined SQL functions they replace (clock_timestamp() is volatile,
-- which keeps a SQL function from being inlined: 3x slower per call).
CREATE OR REPLACE FUNCTION heliosdb._future_timestamp(ts timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    last timestamptz;
BEGIN
    SELECT c.committed_at INTO last FROM heliosdb._commits c
    WHERE c.lsn = heliosdb._lsn_at(heliosdb._current_branch_id(), now_ts);
    RAISE EXCEPTION 'timestamp % is in the future', ts
        USING ERRCODE = 'HD007',
              HINT = format('The newest point is the current time, %s%s.', now_ts,
                            CASE WHEN last IS NOT NULL
                                 THEN format(' (the last commit of "%s" is at %s)', heliosdb.current_branch(), last)
                                 ELSE '' END);
END $$;

CREATE OR REPLACE FUNCTION heliosdb.lsn_at(ts timestamptz) RETURNS pg_lsn
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    IF ts > clock_timestamp() THEN
        PERFORM heliosdb._future_timestamp(ts);
    END IF;
    RETURN heliosdb.format_lsn(heliosdb._lsn_at(heliosdb._current_branch_id(), ts));
END $$;

CREATE OR REPLACE FUNCTION heliosdb.timestamp_to_scn(ts timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    IF ts > clock_timestamp() THEN
        PERFORM heliosdb._future_timestamp(ts);
    END IF;
    RETURN (SELECT scn FROM heliosdb._commits WHERE lsn = heliosdb._lsn_at(heliosdb._current_branch_id(), ts));
END $$;

CREATE OR REPLACE FUNCTION heliosdb.scn_to_timestamp(s bigint) RETURNS timestamptz
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    latest bigint := (SELECT coalesce(max(scn), 0) FROM heliosdb._commits);
BEGIN
    IF s > latest THEN  -- SCNs are global: one not assigned yet names a state nobody knows
        RAISE EXCEPTION 'SCN % is in the future', s
            USING ERRCODE = 'HD007', HINT = format('The newest point is SCN %s.', latest);
    END IF;
    RETURN (SELECT committed_at FROM heliosdb._commits WHERE scn = s);
END $$;

CREATE OR REPLACE FUNCTION heliosdb.lsn_to_scn(l pg_lsn) RETURNS bigint
LANGUAGE plpgsql STABLE STRICT AS $$
DECLARE
    n bigint := (l - '0/0'::pg_lsn)::bigint;
    head bigint := (SELECT coalesce(heliosdb.held_lsn(b.id), b.head_lsn) FROM heliosdb._branches b
                    WHERE b.id = heliosdb._current_branch_id());
BEGIN
    IF n > head THEN
        RAISE EXCEPTION 'LSN % is after the head of branch "%"', l, heliosdb.current_branch()
            USING ERRCODE = 'HD007',
                  HINT = format('The head of %s is %s.', heliosdb.current_branch(), heliosdb.format_lsn(head));
    END IF;
    RETURN (SELECT scn FROM heliosdb._commits WHERE lsn <= n ORDER BY lsn DESC LIMIT 1);
END $$;

-- Garbage collection that keeps what VERSIONS BETWEEN reads at a retained point: the versions that
-- ended exactly at the horizon, or at a point a descendant or a merge reads, stay (as in retention.sql
-- they went). A version that starts at such a point is then still an update ('U', its predecessor
-- ends there) and a delete there keeps its 'D' row: GC changes no answer inside retention.
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
                'DELETE FROM %I.%I h WHERE h._hdb_branch = $1 AND h._hdb_end < $2
                 AND NOT EXISTS (SELECT 1 FROM _hdb_needed k WHERE k.branch_id = $1
                                 AND h._hdb_begin <= k.upto AND h._hdb_end >= k.upto)',
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

UPDATE heliosdb._meta SET value = '18' WHERE key = 'catalog_version';
