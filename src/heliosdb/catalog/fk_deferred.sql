-- Foreign key checks a branch's write trigger queues (catalog version 11), applied after
-- gc_generation.sql.
--
-- On a branch that inherited a table, its write trigger (INSTEAD OF, row by row) checks foreign
-- keys. A DEFERRABLE key's check cannot run there: PostgreSQL makes it at commit (INITIALLY
-- DEFERRED, or after SET CONSTRAINTS ... DEFERRED), else at the end of the statement. The
-- trigger queues it instead, as a row of a temporary table of the session's whose constraint
-- triggers run it: their timing is PostgreSQL's own, SET CONSTRAINTS included
-- (heliosdb.branching.foreign_keys).
--
-- A queued check is a query that answers whether the key holds (check_sql, run with args);
-- when it does not, the error is the one stored with it.
CREATE OR REPLACE FUNCTION heliosdb._fk_queued_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    BEGIN
        EXECUTE NEW.check_sql INTO ok USING NEW.args;
    EXCEPTION WHEN undefined_table OR undefined_column THEN
        -- the check names the branch's views as they were when it was queued: DDL since then (PostgreSQL
        -- refuses most of it while checks are pending, 55006) leaves it nothing to read
        RAISE EXCEPTION USING ERRCODE = '55006', TABLE = NEW.tbl, SCHEMA = NEW.sch, CONSTRAINT = NEW.con,
            MESSAGE = format('cannot check foreign key constraint "%s" of table "%s": the tables changed since '
                             'its check was deferred', NEW.con, NEW.tbl),
            HINT = 'Change the tables in a transaction of their own, or SET CONSTRAINTS ALL IMMEDIATE before.';
    END;
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = NEW.message, DETAIL = NEW.detail,
            CONSTRAINT = NEW.con, TABLE = NEW.tbl, SCHEMA = NEW.sch;
    END IF;
    RETURN NULL;
END $$;

-- The session's queue: a temporary table with the two constraint triggers (made on first use).
CREATE OR REPLACE FUNCTION heliosdb._fk_queue_ready() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp._hdb_fk_queue') IS NULL THEN
        CREATE TEMP TABLE _hdb_fk_queue (check_sql text, args text[], deferred boolean, message text,
                                         detail text, con text, tbl text, sch text) ON COMMIT DELETE ROWS;
        CREATE CONSTRAINT TRIGGER _hdb_fk_deferred AFTER INSERT ON pg_temp._hdb_fk_queue
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.deferred)
            EXECUTE FUNCTION heliosdb._fk_queued_check();
        CREATE CONSTRAINT TRIGGER _hdb_fk_immediate AFTER INSERT ON pg_temp._hdb_fk_queue
            DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW WHEN (NOT NEW.deferred)
            EXECUTE FUNCTION heliosdb._fk_queued_check();
    END IF;
END $$;

-- Queue one check.
CREATE OR REPLACE FUNCTION heliosdb._fk_queue(check_sql text, args text[], deferred boolean, message text,
                                              detail text, con text, tbl text, sch text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM heliosdb._fk_queue_ready();
    INSERT INTO pg_temp._hdb_fk_queue VALUES (check_sql, args, deferred, message, detail, con, tbl, sch);
END $$;

UPDATE heliosdb._meta SET value = '11' WHERE key = 'catalog_version';
