-- Locking reads on branches (catalog version 9), applied after types.sql.
--
-- On a branch, a table it inherited is a view over several relations: SELECT ... FOR UPDATE
-- there locks no row. The session takes the branch's write lock instead (the lock every
-- writer of the branch takes, heliosdb.txn_lsn), without an LSN: locking readers and
-- writers of the branch then take turns until their transactions end.
CREATE OR REPLACE FUNCTION heliosdb.lock_branch(b integer, nowait boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF nowait THEN
        PERFORM 1 FROM heliosdb._branches WHERE id = b FOR UPDATE NOWAIT;
    ELSE
        PERFORM 1 FROM heliosdb._branches WHERE id = b FOR UPDATE;
    END IF;
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'could not obtain lock on rows of branch "%"',
                    (SELECT name FROM heliosdb._branches WHERE id = b)
        USING ERRCODE = '55P03',
              HINT = 'On a branch, a locking read waits for the branch''s other writers and locking readers.';
END $$;

UPDATE heliosdb._meta SET value = '9' WHERE key = 'catalog_version';
