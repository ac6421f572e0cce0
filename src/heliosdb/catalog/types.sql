-- Shared types (catalog version 8), applied after retention.sql.
--
-- The user's types (enums, domains, composites, ranges) live in heliosdb_types, which is
-- on every branch's search path (after the branch's own schema): a table a branch inherited
-- and a table it created use the same type, and casts like 'ok'::mood work on every branch.
-- The session puts an unqualified CREATE TYPE / CREATE DOMAIN there. Types made before this
-- version on main (in public) move there.
CREATE SCHEMA IF NOT EXISTS heliosdb_types;
GRANT USAGE, CREATE ON SCHEMA heliosdb_types TO PUBLIC;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT ty.oid::regtype::text AS name, ty.typtype FROM pg_type ty
        LEFT JOIN pg_class c ON c.oid = ty.typrelid
        WHERE ty.typnamespace = 'public'::regnamespace AND ty.typtype IN ('e', 'd', 'c', 'r')
          AND (ty.typrelid = 0 OR c.relkind = 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                          AND d.objid = ty.oid AND d.deptype = 'e')
        ORDER BY ty.oid
    LOOP
        IF t.typtype = 'd' THEN
            EXECUTE format('ALTER DOMAIN %s SET SCHEMA heliosdb_types', t.name);
        ELSE
            EXECUTE format('ALTER TYPE %s SET SCHEMA heliosdb_types', t.name);
        END IF;
    END LOOP;
END $$;

UPDATE heliosdb._meta SET value = '8' WHERE key = 'catalog_version';
