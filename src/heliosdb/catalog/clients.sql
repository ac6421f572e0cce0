-- Catalog views for PostgreSQL clients (catalog version 6), applied after
-- writes.sql:
-- - heliosdb.relkind: heliosdb._relkind under the name of the column it
--   stands in for, so a client's `SELECT c.relkind` still gets a column named
--   relkind after the wire endpoint's rewrite (server/catalog_compat.py);
-- - heliosdb.information_schema_tables: information_schema.tables with
--   HeliosDB tables as BASE TABLE and without HeliosDB's internal schemas.

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

UPDATE heliosdb._meta SET value = '6' WHERE key = 'catalog_version';
