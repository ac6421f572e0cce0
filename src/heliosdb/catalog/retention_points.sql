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

UPDATE heliosdb._meta SET value = '18' WHERE key = 'catalog_version';
