-- The garbage collector moves the catalog generation (catalog version 10), applied after locks.sql.
--
-- A cached AS OF rewrite checks one thing inside its statement: that the catalog generation is
-- still the one it was made at (heliosdb.temporal.rewrite, _GUARD). When GC advances a branch's
-- retained history (gc_lsn), the generation now moves too, at GC's commit, so that single check
-- also catches a point that left the retained history: one row read per statement instead of a
-- second look at heliosdb._branches. GC advances a branch's horizon at most once a run (every
-- minute in long-lived processes); the sessions' caches are read again after it.
DROP TRIGGER IF EXISTS _hdb_catalog_gen_gc ON heliosdb._branches;
CREATE CONSTRAINT TRIGGER _hdb_catalog_gen_gc AFTER UPDATE OF gc_lsn ON heliosdb._branches
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.gc_lsn > OLD.gc_lsn)
    EXECUTE FUNCTION heliosdb._catalog_bump();

UPDATE heliosdb._meta SET value = '10' WHERE key = 'catalog_version';
