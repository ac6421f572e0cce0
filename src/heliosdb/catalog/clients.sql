-- heliosdb.relkind (catalog version 6): heliosdb._relkind under the name of
-- the column it stands in for, so a client's `SELECT c.relkind` still gets a
-- column named relkind after the wire endpoint's rewrite; and
-- heliosdb.information_schema_tables, information_schema.tables with
-- HeliosDB tables as BASE TABLE and without HeliosDB's internal schemas. Applied after commit_record.sql.

CREATE OR REPLACE FUNCTION heliosdb.relkind(o oid, k "char") RETURNS "char"
LANGUAGE sql STABLE AS $$ SELECT heliosdb._relkind(o, k) $$;

CREATE OR REPLACE VIEW heliosdb.information_schema_tables AS
SELECT t.table_catalog, t.table_schema, t.table_name,
       CASE WHEN t.table_type = 'VIEW' AND heliosdb._relkind(c.oid, c.relkind) = 'r' THEN 'BASE TABLE'
            ELSE t.table_type END::information_schema.character_data AS table_type,
       t.self_referencing_column_name, t.reference_generation, t.user_defined_type_catalog,
       t.user_defined_type_schema, t.user_defined_type_name, t.is_insertable_into, t.is_typed, t.commit_action
FROM information_schema.tables t
JOIN pg_catalog.pg_namespace n ON n.nspname = t.table_schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
WHERE t.table_schema !~ '^hdb_[tb][0-9]+$';  -- storage relations and branch internals are not the user's
GRANT SELECT ON heliosdb.information_schema_tables TO PUBLIC;

-- As in catalog version 5, plus: the first write of a statement's triggers (pg_trigger_depth() > 0)
-- must be to the session's own branch. The engine's writes elsewhere (merges into another branch)
-- call txn_lsn themselves first, outside any trigger.
CREATE OR REPLACE FUNCTION heliosdb.txn_lsn(b integer) RETURNS bigint
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
    IF pg_trigger_depth() > 0 AND r.name <> heliosdb.current_branch() THEN
        RAISE EXCEPTION 'cannot write to a table of branch "%" from a session on branch "%"',
                        r.name, heliosdb.current_branch()
            USING ERRCODE = 'HD020',
                  HINT = format('USE BRANCH %I first; a table name qualified with another branch''s schema, '
                                'or a search_path set by hand, reaches that branch''s tables.', r.name);
    END IF;
    IF r.read_only THEN
        RAISE EXCEPTION 'cannot write to read-only branch "%"', r.name
            USING ERRCODE = '25006',
                  HINT = format('ALTER DATABASE BRANCH %I SET WRITABLE makes it writable again.', r.name);
    END IF;
    l := nextval('heliosdb.lsn_seq');
    UPDATE heliosdb._branches SET head_lsn = l WHERE id = b;
    PERFORM set_config('heliosdb.lsn_' || b, l::text, true);
    RETURN l;
END $$;

UPDATE heliosdb._meta SET value = '6' WHERE key = 'catalog_version';
