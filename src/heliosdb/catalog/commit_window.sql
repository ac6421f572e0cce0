-- Catalog version 19: a commit's time and SCN are stamped at COMMIT, before the commit is visible
-- (other commit-time work, a deferred key check or trigger, runs in between). A read AS OF a time
-- or SCN resolved in that window missed the commit, and the same point read it once it landed.
-- The commit now holds a lock of its branch from before its stamp until it is visible, and the
-- resolution of a time or SCN waits for that lock, then reads the commit log with a new snapshot.

CREATE OR REPLACE FUNCTION heliosdb._record_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- 18499 ('HC'): released when the commit is visible (the resolvers below wait for it)
    PERFORM pg_advisory_xact_lock(18499, NEW.id);
    INSERT INTO heliosdb._commits VALUES
        (NEW.head_lsn, nextval('heliosdb.scn_seq'), pg_current_xact_id(), clock_timestamp(), NEW.id, current_user);
    RETURN NULL;
END $$;

-- The branch's commits stamped so far are visible once this returns: a commit stamped later has a
-- later time and a higher SCN than any the caller compared with the clock or the sequence before.
CREATE OR REPLACE FUNCTION heliosdb._commits_settled(b integer) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock_shared(18499, b);
    PERFORM pg_advisory_unlock_shared(18499, b);
END $$;

-- VOLATILE (not inlined, not STABLE): the commit log is read with a snapshot taken after the wait
CREATE OR REPLACE FUNCTION heliosdb._lsn_at(b integer, ts timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ts <= clock_timestamp() THEN  -- the clock first: a commit stamped after it is later than ts
        PERFORM heliosdb._commits_settled(b);
    END IF;
    RETURN heliosdb._resolve_at(b, ts, NULL);
END $$;

-- The latest SCN handed out, to a commit that may still be finishing (0 before the first)
CREATE OR REPLACE FUNCTION heliosdb._last_scn() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM heliosdb.scn_seq $$;

CREATE OR REPLACE FUNCTION heliosdb._lsn_at_scn(b integer, s bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF s <= heliosdb._last_scn() THEN  -- every SCN up to s is handed out
        PERFORM heliosdb._commits_settled(b);
    END IF;
    RETURN heliosdb._resolve_at(b, NULL, s);
END $$;

-- Their callers compute the LSN once (a VOLATILE call in a WHERE clause would run for every row of
-- the commit log) and are VOLATILE themselves (a STABLE caller of a VOLATILE function is slower).
CREATE OR REPLACE FUNCTION heliosdb._future_timestamp(ts timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    l bigint := heliosdb._lsn_at(heliosdb._current_branch_id(), now_ts);
    last timestamptz := (SELECT c.committed_at FROM heliosdb._commits c WHERE c.lsn = l);
BEGIN
    RAISE EXCEPTION 'timestamp % is in the future', ts
        USING ERRCODE = 'HD007',
              HINT = format('The newest point is the current time, %s%s.', now_ts,
                            CASE WHEN last IS NOT NULL
                                 THEN format(' (the last commit of "%s" is at %s)', heliosdb.current_branch(), last)
                                 ELSE '' END);
END $$;

CREATE OR REPLACE FUNCTION heliosdb.lsn_at(ts timestamptz) RETURNS pg_lsn
LANGUAGE plpgsql VOLATILE STRICT AS $$
BEGIN
    IF ts > clock_timestamp() THEN
        PERFORM heliosdb._future_timestamp(ts);
    END IF;
    RETURN heliosdb.format_lsn(heliosdb._lsn_at(heliosdb._current_branch_id(), ts));
END $$;

CREATE OR REPLACE FUNCTION heliosdb.timestamp_to_scn(ts timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT AS $$
DECLARE
    l bigint;
BEGIN
    IF ts > clock_timestamp() THEN
        PERFORM heliosdb._future_timestamp(ts);
    END IF;
    l := heliosdb._lsn_at(heliosdb._current_branch_id(), ts);
    RETURN (SELECT scn FROM heliosdb._commits WHERE lsn = l);
END $$;

UPDATE heliosdb._meta SET value = '19' WHERE key = 'catalog_version';
