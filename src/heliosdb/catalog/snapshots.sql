-- heliosdb.snapshots without a temporary table (catalog version 17): it works in read-only
-- transactions, and a renamed table is one table under the name it has now, its rows counted once.
CREATE OR REPLACE FUNCTION heliosdb.snapshots(table_name text DEFAULT NULL)
RETURNS TABLE (lsn pg_lsn, scn bigint, txid xid8, committed_at timestamptz, branch text,
               tables_touched text[], rows_changed bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t record;
    parts text[] := '{}';
BEGIN
    FOR t IN SELECT tb.id, tb.phys_schema, tb.phys_name,
                    (SELECT v.name FROM heliosdb._table_versions v WHERE v.table_id = tb.id
                     ORDER BY v.valid_from DESC LIMIT 1) AS name
             FROM heliosdb._tables tb
             WHERE table_name IS NULL OR EXISTS (SELECT 1 FROM heliosdb._table_versions v
                                                 WHERE v.table_id = tb.id AND v.name = table_name) LOOP
        parts := parts || format(
            'SELECT l, %L::text AS tname, count(DISTINCT r) AS n FROM (
                 SELECT _hdb_lsn AS l, _hdb_rowid AS r FROM %I.%I
                 UNION ALL SELECT _hdb_lsn, _hdb_rowid FROM %I.%I
                 UNION ALL SELECT _hdb_begin, _hdb_rowid FROM %I.%I
                 UNION ALL SELECT _hdb_end, _hdb_rowid FROM %I.%I) x GROUP BY l',
            t.name, t.phys_schema, t.phys_name, t.phys_schema, t.phys_name || '__br',
            t.phys_schema, t.phys_name || '__hist', t.phys_schema, t.phys_name || '__hist');
    END LOOP;
    RETURN QUERY EXECUTE format(
        'WITH s AS (%s)
         SELECT heliosdb.format_lsn(c.lsn), c.scn, c.txid, c.committed_at, b.name,
                array_agg(DISTINCT s.tname ORDER BY s.tname) FILTER (WHERE s.tname IS NOT NULL),
                coalesce(sum(s.n), 0)::bigint
         FROM heliosdb._commits c
         JOIN heliosdb._branches b ON b.id = c.branch_id
         LEFT JOIN s ON s.l = c.lsn
         GROUP BY c.lsn, c.scn, c.txid, c.committed_at, b.name
         HAVING $1 IS NULL OR count(s.tname) > 0
         ORDER BY c.lsn',
        coalesce(nullif(array_to_string(parts, ' UNION ALL '), ''),
                 'SELECT NULL::bigint AS l, NULL::text AS tname, NULL::bigint AS n WHERE false'))
    USING table_name;
END $$;

UPDATE heliosdb._meta SET value = '17' WHERE key = 'catalog_version';
