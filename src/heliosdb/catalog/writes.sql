-- How a transaction writes (catalog version 5), applied after mv_upkeep.sql.
-- The commit-log row is written once, at commit. Until version 4 a
-- transaction's first write inserted it and a deferred trigger updated its
-- commit time: two writes of a five-index row, inside the branch lock every
-- writer of the branch waits for. Now the first write only moves the branch's
-- head, and a deferred trigger on that change inserts the row with its SCN and
-- commit time. And a session writes only its own branch (txn_lsn below).

DROP TRIGGER IF EXISTS stamp_commit ON heliosdb._commits;
DROP FUNCTION IF EXISTS heliosdb._stamp_commit();

-- The LSN of the current transaction on branch b. The first call in a
-- transaction locks the branch row until commit (so on a branch LSN order is
-- commit order) and refuses read-only branches; the commit-log row follows at
-- commit (heliosdb._record_commit). A first call from a statement's triggers
-- (pg_trigger_depth() > 0) must be for the session's own branch: a
-- schema-qualified name (public.t from a branch, as pg_dump scripts write) or
-- a search_path set by hand does not reach another branch's tables. The
-- engine's writes elsewhere (merges into another branch) call txn_lsn
-- themselves first, outside any trigger.
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

-- SCN and commit time are taken when the transaction commits, in commit order
-- (the branch row stays locked until then).
CREATE OR REPLACE FUNCTION heliosdb._record_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO heliosdb._commits VALUES
        (NEW.head_lsn, nextval('heliosdb.scn_seq'), pg_current_xact_id(), clock_timestamp(), NEW.id, current_user);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS record_commit ON heliosdb._branches;
CREATE CONSTRAINT TRIGGER record_commit AFTER UPDATE OF head_lsn ON heliosdb._branches
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.head_lsn IS DISTINCT FROM OLD.head_lsn)
    EXECUTE FUNCTION heliosdb._record_commit();

UPDATE heliosdb._meta SET value = '5' WHERE key = 'catalog_version';
