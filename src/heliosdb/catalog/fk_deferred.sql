-- Foreign key checks a branch's write trigger queues (catalog version 11), applied after
-- gc_generation.sql.
--
-- On a branch that inherited a table, its write trigger (INSTEAD OF, row by row) checks foreign
-- keys. A DEFERRABLE key's check cannot run there: PostgreSQL makes it at commit (INITIALLY
-- DEFERRED, or after SET CONSTRAINTS ... DEFERRED), else at the end of the statement. The
-- trigger queues it instead, as a row of a temporary table of the session's whose constraint
-- triggers run it: their timing is PostgreSQL's own, SET CONSTRAINTS included
-- (heliosdb.branching.foreign_keys). A check that is not deferred runs when it is queued, just
-- after its row is written: row by row, not at the end of the statement.
--
-- A queued check is a query that answers whether the key holds (check_sql, with args as $1);
-- when it does not, the error is the one stored with it.
--
-- The deferred checks run in batches: when the first of them fires (at commit, or at SET
-- CONSTRAINTS ... IMMEDIATE), every deferred check queued so far is due, so one query per
-- kind of check (per key) answers them all, with $1 read from each queued row. A check per row
-- planned its query each time: 2,000 rows took 1.2 s at commit, as many batched ~0.1 s. The
-- later firings of the batch find their row already checked (heliosdb.fk_checked, local to the
-- transaction and undone with a savepoint's rollback).

-- The error for a queued check that failed, or whose tables changed since it was queued.
CREATE OR REPLACE FUNCTION heliosdb._fk_queued_fail(q record, changed boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF changed THEN
        -- the check names the branch's views as they were when it was queued: DDL since then (PostgreSQL
        -- refuses most of it while checks are pending, 55006) leaves it nothing to read
        RAISE EXCEPTION USING ERRCODE = '55006', TABLE = q.tbl, SCHEMA = q.sch, CONSTRAINT = q.con,
            MESSAGE = format('cannot check foreign key constraint "%s" of table "%s": the tables changed since '
                             'its check was deferred', q.con, q.tbl),
            HINT = 'Change the tables in a transaction of their own, or SET CONSTRAINTS ALL IMMEDIATE before.';
    END IF;
    RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = q.message, DETAIL = q.detail,
        CONSTRAINT = q.con, TABLE = q.tbl, SCHEMA = q.sch;
END $$;

CREATE OR REPLACE FUNCTION heliosdb._fk_queued_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
    upto bigint;
    top bigint;
    s text;
    bad record;
BEGIN
    IF NOT NEW.deferred THEN  -- when queued, just after its row was written (or later, deferred): this row only
        BEGIN
            EXECUTE NEW.check_sql INTO ok USING NEW.args;
        EXCEPTION WHEN undefined_table OR undefined_column THEN
            PERFORM heliosdb._fk_queued_fail(NEW, true);
        END;
        IF NOT ok THEN
            PERFORM heliosdb._fk_queued_fail(NEW, false);
        END IF;
        RETURN NULL;
    END IF;
    upto := coalesce(nullif(current_setting('heliosdb.fk_checked', true), ''), '0')::bigint;
    IF NEW.id <= upto THEN
        RETURN NULL;  -- checked with an earlier row's batch
    END IF;
    SELECT max(id) INTO top FROM pg_temp._hdb_fk_queue WHERE deferred;
    FOR s IN SELECT DISTINCT check_sql FROM pg_temp._hdb_fk_queue WHERE deferred AND id > upto AND id <= top LOOP
        bad := NULL;
        BEGIN
            EXECUTE format('SELECT q.* FROM pg_temp._hdb_fk_queue q WHERE q.deferred AND q.id > $1 AND q.id <= $2 '
                           'AND q.check_sql = $3 AND NOT (%s) ORDER BY q.id LIMIT 1', replace(s, '$1[', 'q.args['))
                INTO bad USING upto, top, s;
        EXCEPTION WHEN undefined_table OR undefined_column THEN
            PERFORM heliosdb._fk_queued_fail(NEW, true);
        END;
        IF bad IS NOT NULL THEN
            PERFORM heliosdb._fk_queued_fail(bad, false);
        END IF;
    END LOOP;
    PERFORM set_config('heliosdb.fk_checked', top::text, true);
    RETURN NULL;
END $$;

-- The session's queue: a temporary table with the two constraint triggers (made on first use).
CREATE OR REPLACE FUNCTION heliosdb._fk_queue_ready() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp._hdb_fk_queue') IS NULL THEN
        CREATE TEMP TABLE _hdb_fk_queue (id bigint GENERATED ALWAYS AS IDENTITY, check_sql text, args text[],
                                         deferred boolean, message text, detail text, con text, tbl text,
                                         sch text) ON COMMIT DELETE ROWS;
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
    INSERT INTO pg_temp._hdb_fk_queue (check_sql, args, deferred, message, detail, con, tbl, sch)
    VALUES (check_sql, args, deferred, message, detail, con, tbl, sch);
END $$;

UPDATE heliosdb._meta SET value = '11' WHERE key = 'catalog_version';
