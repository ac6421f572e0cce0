-- Catalog generation (catalog version 3): lets sessions cache catalog reads and
-- check them cheaply. Applied after mv.sql, or on its own to upgrade a
-- version-2 catalog.
--
-- heliosdb._catalog_gen.gen grows by one with every committed transaction that
-- changed the catalog rows time travel reads (branches' identity and ancestry,
-- tables, columns, schema versions). It is bumped by a deferred trigger, at
-- commit, so a reader that sees the new number also sees the new rows. A
-- transaction's own, not yet committed changes are marked in the
-- transaction-local setting heliosdb.catalog_mark (a fresh number per change,
-- rolled back with a savepoint), so a cache keyed by (gen, mark) never serves
-- a state that differs from what the reader's snapshot sees.

CREATE TABLE IF NOT EXISTS heliosdb._catalog_gen (gen bigint NOT NULL);
INSERT INTO heliosdb._catalog_gen SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM heliosdb._catalog_gen);
CREATE SEQUENCE IF NOT EXISTS heliosdb.catalog_mark_seq;

CREATE OR REPLACE FUNCTION heliosdb._catalog_mark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('heliosdb.catalog_mark', nextval('heliosdb.catalog_mark_seq')::text, true);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION heliosdb._catalog_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('heliosdb.catalog_bumped', true) = 'on' THEN
        RETURN NULL;  -- once per transaction
    END IF;
    UPDATE heliosdb._catalog_gen SET gen = gen + 1;
    PERFORM set_config('heliosdb.catalog_bumped', 'on', true);
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
    ev text;
BEGIN
    FOREACH t IN ARRAY ARRAY['_branches', '_tables', '_columns', '_table_versions'] LOOP
        -- head_lsn, gc_lsn, built, read_only, options change often and time travel rechecks them itself
        ev := CASE t WHEN '_branches'
                     THEN 'INSERT OR DELETE OR UPDATE OF name, parent_id, fork_lsn, state, user_schema'
                     ELSE 'INSERT OR DELETE OR UPDATE' END;
        EXECUTE format('DROP TRIGGER IF EXISTS _hdb_catalog_mark ON heliosdb.%I', t);
        EXECUTE format('CREATE TRIGGER _hdb_catalog_mark AFTER %s ON heliosdb.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION heliosdb._catalog_mark()', ev, t);
        EXECUTE format('DROP TRIGGER IF EXISTS _hdb_catalog_gen ON heliosdb.%I', t);
        EXECUTE format('CREATE CONSTRAINT TRIGGER _hdb_catalog_gen AFTER %s ON heliosdb.%I '
                       'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION heliosdb._catalog_bump()', ev, t);
    END LOOP;
END $$;

-- Raised by the guard of a cached AS OF rewrite (heliosdb.temporal.rewrite), an inline
-- CASE evaluated once inside the statement it guards, so in that statement's snapshot:
-- when the catalog is no longer the one the SQL was generated from, or the point left a
-- branch's retained history, the session regenerates the statement. Parallel safe: a
-- guard evaluated above a Gather (in the leader) leaves the plan's parallelism alone.
CREATE OR REPLACE FUNCTION heliosdb._asof_stale() RETURNS boolean
LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
    RAISE EXCEPTION 'the catalog or the retained history changed since this statement was prepared'
        USING ERRCODE = 'HDC01', HINT = 'Run the statement again.';
END $$;

UPDATE heliosdb._meta SET value = '3' WHERE key = 'catalog_version';
