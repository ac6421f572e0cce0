-- A write on a table's root branch takes the branch's write lock first (catalog version 15), applied
-- after images.sql.
--
-- The write lock (heliosdb.txn_lsn) was taken by the first row a statement wrote, after PostgreSQL
-- had locked that row. A statement that locked a row and then waited for the lock deadlocked with
-- the transaction holding the lock as soon as that one wanted the row: two ordinary writers, which
-- PostgreSQL alone would have queued. A statement trigger takes the lock before any row (without an
-- LSN: a statement that writes no row leaves no commit). Statements on other branches take it in
-- front of the statement already (session.py).
CREATE OR REPLACE FUNCTION heliosdb._write_lock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    b text := TG_ARGV[0];
BEGIN
    IF coalesce(current_setting('heliosdb.lsn_' || b, true), '') = ''
       AND coalesce(current_setting('heliosdb.locked_' || b, true), '') = '' THEN
        PERFORM 1 FROM heliosdb._branches WHERE id = b::integer FOR UPDATE;
        PERFORM set_config('heliosdb.locked_' || b, 'on', true);
    END IF;
    RETURN NULL;
END $$;

-- A locking read on a branch takes the same lock: noted, so that DDL later in the transaction knows it
-- holds it (branching/ddl_locks.py).
CREATE OR REPLACE FUNCTION heliosdb.lock_branch(b integer, nowait boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF nowait THEN
        PERFORM 1 FROM heliosdb._branches WHERE id = b FOR UPDATE NOWAIT;
    ELSE
        PERFORM 1 FROM heliosdb._branches WHERE id = b FOR UPDATE;
    END IF;
    PERFORM set_config('heliosdb.locked_' || b, 'on', true);
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'could not obtain lock on rows of branch "%"',
                    (SELECT name FROM heliosdb._branches WHERE id = b)
        USING ERRCODE = '55P03',
              HINT = 'On a branch, a locking read waits for the branch''s other writers and locking readers.';
END $$;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.root_branch, format('%I.%I', t.phys_schema, t.phys_name) AS rel FROM heliosdb._tables t
             WHERE to_regclass(format('%I.%I', t.phys_schema, t.phys_name)) IS NOT NULL LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = r.rel::regclass AND tgname = '_hdb_lock') THEN
            EXECUTE format('CREATE TRIGGER _hdb_lock BEFORE INSERT OR UPDATE OR DELETE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION heliosdb._write_lock(%L)', r.rel, r.root_branch);
        END IF;
    END LOOP;
END $$;

UPDATE heliosdb._meta SET value = '15' WHERE key = 'catalog_version';
