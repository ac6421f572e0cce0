-- Clients' catalogs, part two (catalog version 13), applied after client_catalog.sql.
--
-- information_schema. PostgreSQL's information_schema views read pg_catalog's tables, where a
-- HeliosDB table is a view without keys, constraints or NOT NULL columns: table_constraints,
-- key_column_usage and referential_constraints listed nothing for it, and columns called every
-- column nullable (ORMs that introspect through information_schema, as Prisma, TypeORM and
-- Sequelize do, saw tables without keys). Each information_schema view gets a copy here,
-- heliosdb.information_schema_<name>, with the same definition bound to HeliosDB's versions of
-- the catalogs: the definition is printed with only pg_catalog on the search path, so every
-- catalog name in it comes unqualified, and made again with HeliosDB's schemas first on the
-- path. The wire endpoint reads information_schema.<name> as the copy
-- (server/catalog_compat.py). Copies are made from the server's own definitions, so they follow
-- its PostgreSQL version.
--
-- A cache of the made-up rows. client_catalog.sql's views make their rows from the branch's
-- schema on every read, per table a query asks about; information_schema's views join
-- everything in nested loops, so those rows were made again for every row of the outer side
-- (100 tables: 0.9 s for key_column_usage, 300 tables: up to 12 s). The rows a branch sees are
-- now kept in tables, per branch, catalog generation (heliosdb._catalog_gen, moved by every
-- committed change of tables, columns, schema versions and branches) and database: the endpoint
-- fills them, in a transaction of its own, before it runs a client's catalog query
-- (heliosdb._client_cache_fill(), server/catalog_fills.py), and each heliosdb._client_<rows>()
-- function reads them when they are the ones its snapshot should see. A branch is filled once
-- it is built (its views made on first use, which moves no generation). A transaction with
-- catalog changes of its own, or one whose snapshot predates the fill, still gets the rows made
-- from the schema (heliosdb._live_client_<rows>()).

-- client_catalog.sql's views over those functions are made again at the end, in place (same
-- columns: a view a user made over one stays), over the cached ones.
CREATE TEMP TABLE hdb_v13_views (name text PRIMARY KEY, def text NOT NULL) ON COMMIT DROP;
DO $$
DECLARE
    path text := current_setting('search_path');
    v text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog', true);  -- catalogs' names unqualified
    FOREACH v IN ARRAY ARRAY['pg_class', 'pg_attribute', 'pg_attrdef', 'pg_constraint', 'pg_index'] LOOP
        INSERT INTO hdb_v13_views
        VALUES (v, rtrim(pg_catalog.pg_get_viewdef(format('heliosdb.%I', v)::regclass), '; '));
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
END $$;

DO $$
BEGIN
    IF to_regprocedure('heliosdb._live_client_indexes(integer)') IS NULL THEN
        ALTER FUNCTION heliosdb._client_indexes(integer) RENAME TO _live_client_indexes;
        ALTER FUNCTION heliosdb._client_relations() RENAME TO _live_client_relations;
        ALTER FUNCTION heliosdb._client_columns() RENAME TO _live_client_columns;
    END IF;
END $$;

-- A foreign key's conindid names the referenced table's key it uses, as PostgreSQL's does
-- (information_schema.referential_constraints and key_column_usage follow it).
CREATE OR REPLACE FUNCTION heliosdb._live_client_constraint_rows(only_table integer DEFAULT NULL)
RETURNS TABLE (oid oid, conname name, nsp oid, contype "char", isdeferrable boolean, isdeferred boolean,
               isvalidated boolean, relid oid, indid oid, frelid oid, fupd "char", fdel "char", fmatch "char",
               conkey int2[], confkey int2[], def text, plain text)
LANGUAGE sql STABLE AS $$
    WITH t AS MATERIALIZED (SELECT * FROM heliosdb._client_tables(only_table)),
    k AS (
        SELECT t.*, k.con, k.pos, k.con->>'kind' AS kind,
               CASE WHEN k.con->>'kind' = 'f' THEN (k.con->>'expr')::jsonb END AS fk
        FROM t CROSS JOIN LATERAL jsonb_array_elements(t.constraints) WITH ORDINALITY k(con, pos)
        WHERE k.con->>'kind' IN ('p', 'u', 'c', 'f') AND k.pos < 128
          AND NOT coalesce((k.con->>'index')::boolean, false)),  -- a unique index is not a constraint
    cols AS (SELECT k.*, ARRAY(SELECT jsonb_array_elements_text(k.con->'cols')) AS names FROM k)
    SELECT (3000000000 + c.table_id::bigint * 128 + c.pos)::oid, (c.con->>'name')::name, c.nsp, c.kind::"char",
           coalesce((c.fk->>'deferrable')::boolean, false), coalesce((c.fk->>'deferred')::boolean, false),
           coalesce((c.fk->>'valid')::boolean, (c.con->>'valid')::boolean, true), c.relid,
           CASE WHEN c.kind IN ('p', 'u') THEN (3700000000 + c.table_id::bigint * 128 + c.pos)::oid
                WHEN c.kind = 'f' THEN coalesce(r.key_index, 0::oid) ELSE 0::oid END,
           coalesce(r.relid, 0::oid),
           coalesce(c.fk->>'on_update', ' ')::"char", coalesce(c.fk->>'on_delete', ' ')::"char",
           coalesce(c.fk->>'match', ' ')::"char",
           heliosdb._attnums(c.relid, c.names),
           CASE WHEN c.kind = 'f' THEN heliosdb._attnums(r.relid, ARRAY(SELECT jsonb_array_elements_text(c.fk->'cols'))) END,
           CASE c.kind
               WHEN 'p' THEN 'PRIMARY KEY (' || heliosdb._ident_list(c.names) || ')'
               WHEN 'u' THEN 'UNIQUE (' || heliosdb._ident_list(c.names) || ')'
               WHEN 'c' THEN 'CHECK (' || (c.con->>'expr') || ')'  -- PostgreSQL's pretty form
                             || CASE WHEN (c.con->>'valid')::boolean IS FALSE THEN ' NOT VALID' ELSE '' END
               ELSE 'FOREIGN KEY (' || heliosdb._ident_list(c.names) || ') REFERENCES '
                    || quote_ident(r.relname) || '(' || heliosdb._ident_list(ARRAY(SELECT jsonb_array_elements_text(c.fk->'cols'))) || ')'
                    || CASE c.fk->>'match' WHEN 'f' THEN ' MATCH FULL' ELSE '' END
                    || CASE c.fk->>'on_update' WHEN 'r' THEN ' ON UPDATE RESTRICT' WHEN 'c' THEN ' ON UPDATE CASCADE'
                           WHEN 'n' THEN ' ON UPDATE SET NULL' WHEN 'd' THEN ' ON UPDATE SET DEFAULT' ELSE '' END
                    || CASE c.fk->>'on_delete' WHEN 'r' THEN ' ON DELETE RESTRICT' WHEN 'c' THEN ' ON DELETE CASCADE'
                           WHEN 'n' THEN ' ON DELETE SET NULL' WHEN 'd' THEN ' ON DELETE SET DEFAULT' ELSE '' END
                    || CASE WHEN (c.fk->>'deferrable')::boolean THEN ' DEFERRABLE' ELSE '' END
                    || CASE WHEN (c.fk->>'deferred')::boolean THEN ' INITIALLY DEFERRED' ELSE '' END
                    || CASE WHEN (c.fk->>'valid')::boolean IS FALSE THEN ' NOT VALID' ELSE '' END
           END,
           -- a check as pg_get_constraintdef(oid) prints it, not pretty (model.Constraint.plain)
           CASE WHEN c.kind = 'c' AND c.con->>'plain' IS NOT NULL
                THEN 'CHECK (' || (c.con->>'plain') || ')'
                     || CASE WHEN (c.con->>'valid')::boolean IS FALSE THEN ' NOT VALID' ELSE '' END END
    FROM cols c
    LEFT JOIN heliosdb._tables ft ON c.kind = 'f' AND ft.phys_schema = c.fk->>'schema' AND ft.phys_name = c.fk->>'table'
    LEFT JOIN LATERAL (  -- the referenced table: among those at hand, or looked up when there is one
        SELECT r.relid, r.relname, r.table_id, r.constraints FROM t r WHERE only_table IS NULL AND r.table_id = ft.id
        UNION ALL
        SELECT r.relid, r.relname, r.table_id, r.constraints
        FROM heliosdb._client_tables(ft.id) r WHERE only_table IS NOT NULL) r0 ON true
    LEFT JOIN LATERAL (  -- and its key the foreign key's columns match (as a set, as PostgreSQL picks it)
        SELECT r0.relid, r0.relname,
               (SELECT (3700000000 + r0.table_id::bigint * 128 + rk.pos)::oid
                FROM jsonb_array_elements(r0.constraints) WITH ORDINALITY rk(con, pos)
                WHERE rk.con->>'kind' IN ('p', 'u') AND rk.pos < 128 AND rk.con->>'where' IS NULL
                  AND (rk.con->'cols') @> (c.fk->'cols') AND (c.fk->'cols') @> (rk.con->'cols')
                ORDER BY rk.pos LIMIT 1) AS key_index) r ON r0.relid IS NOT NULL
    WHERE c.kind <> 'f' OR r.relid IS NOT NULL  -- a key to a table the branch does not see is not enforced either
$$;

-- Made-up rows of pg_depend: sequences their columns own (client_catalog.sql), and what
-- PostgreSQL records for constraints: a key's index belongs to the key, a foreign key depends on
-- the referenced key's index, a check on the columns it reads (information_schema's
-- referential_constraints, constraint_column_usage).
CREATE OR REPLACE FUNCTION heliosdb._live_client_all_depends()
RETURNS TABLE (classid oid, objid oid, objsubid integer, refclassid oid, refobjid oid, refobjsubid integer,
               deptype "char")
LANGUAGE sql STABLE AS $$
    WITH k AS MATERIALIZED (SELECT * FROM heliosdb._live_client_constraint_rows())
    SELECT 'pg_catalog.pg_class'::regclass, x.seq, 0, 'pg_catalog.pg_class'::regclass, x.relid, x.attnum::integer,
           x.deptype
    FROM heliosdb._client_depends() x
    UNION ALL
    SELECT 'pg_catalog.pg_class'::regclass, k.indid, 0, 'pg_catalog.pg_constraint'::regclass, k.oid, 0, 'i'
    FROM k WHERE k.contype IN ('p', 'u')
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::regclass, k.oid, 0, 'pg_catalog.pg_class'::regclass, k.indid, 0, 'n'
    FROM k WHERE k.contype = 'f' AND k.indid <> 0
    UNION ALL
    SELECT 'pg_catalog.pg_constraint'::regclass, k.oid, 0, 'pg_catalog.pg_class'::regclass, k.relid, a.n, 'n'
    FROM k CROSS JOIN LATERAL unnest(k.conkey) a(n) WHERE k.contype = 'c' AND a.n > 0
$$;

-- The cache: one fill per branch and catalog generation, and per function its rows of a fill.
CREATE TABLE IF NOT EXISTS heliosdb._client_fills (
    id bigserial PRIMARY KEY,
    branch_id integer NOT NULL,
    gen bigint NOT NULL,
    db oid NOT NULL  -- the database filled: a dump restored elsewhere has other object ids, and fills again
);
CREATE INDEX IF NOT EXISTS _client_fills_branch_gen ON heliosdb._client_fills (branch_id, gen);

-- The fill the session's statement reads: of its branch, at the generation its snapshot sees,
-- and none while its transaction has catalog changes of its own (heliosdb.catalog_mark).
CREATE OR REPLACE FUNCTION heliosdb._client_fill() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT max(f.id) FROM heliosdb._client_fills f
    WHERE f.branch_id = heliosdb._current_branch_id() AND f.gen = (SELECT g.gen FROM heliosdb._catalog_gen g)
      AND f.db = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
      AND coalesce(current_setting('heliosdb.catalog_mark', true), '') = ''
$$;

-- Per cached function: its table (the fill, the table a made-up object id names, its rows),
-- indexes for the lookups clients make, and the function itself: the fill's rows, else rows
-- made now. The fill is read through scalar subqueries, so a statement looks it up once.
CREATE OR REPLACE FUNCTION heliosdb._client_cached() RETURNS TABLE (name text, table_id text, keys text[])
LANGUAGE sql IMMUTABLE AS $$
    VALUES ('constraint_rows', '((oid::bigint - 3000000000) / 128)::integer', ARRAY['relid', 'oid', 'table_id']),
           ('indexes', '((oid::bigint - 3700000000) / 128)::integer', ARRAY['relid', 'oid', 'table_id']),
           ('relations', '0', ARRAY['relid']),
           ('columns', '0', ARRAY['relid, attname']),
           ('all_depends', '0', ARRAY['refobjid, refobjsubid', 'objid'])
$$;

DO $$
DECLARE
    spec record;
    live regprocedure;
    cols text;
    args text;
    key text;
BEGIN
    FOR spec IN SELECT * FROM heliosdb._client_cached() LOOP
        live := to_regprocedure(format('heliosdb._live_client_%s(%s)', spec.name,
                                       CASE WHEN spec.table_id = '0' THEN '' ELSE 'integer' END));
        EXECUTE format('CREATE TABLE IF NOT EXISTS heliosdb.%I AS SELECT 0::bigint AS fill, 0 AS table_id, * '
                       'FROM %s WITH NO DATA', '_client_cache_' || spec.name,
                       format('heliosdb._live_client_%s(%s)', spec.name,
                              CASE WHEN spec.table_id = '0' THEN '' ELSE 'NULL' END));
        FOREACH key IN ARRAY spec.keys LOOP
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON heliosdb.%I (fill, %s)',
                           format('_client_cache_%s_%s', spec.name, replace(replace(key, ', ', '_'), ' ', '')),
                           '_client_cache_' || spec.name, key);
        END LOOP;
        SELECT string_agg(quote_ident(n), ', ' ORDER BY o) INTO cols
        FROM pg_catalog.pg_proc p, unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY a(n, m, o)
        WHERE p.oid = live AND a.m = 't';
        args := pg_catalog.pg_get_function_arguments(live);
        -- The choice between the two sits above a UNION ALL without quals of its own, so PostgreSQL
        -- flattens it (an arm with a WHERE stays a subquery, and a join condition cannot reach its
        -- indexes): the cache's rows of the fill through its index, or, when there is none, the
        -- made rows (their arm's test has no column in it: checked once, the arm skipped).
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION heliosdb.%I(%s) RETURNS %s LANGUAGE sql STABLE AS $f$ '
            'SELECT %s FROM (SELECT c.fill AS _fill, c.table_id AS _table, %s FROM heliosdb.%I c '
            'UNION ALL SELECT 0::bigint, %s, l.* FROM %s(%s) l) u '
            'WHERE u._fill = coalesce((SELECT heliosdb._client_fill()), 0)%s $f$',
            '_client_' || spec.name, args, pg_catalog.pg_get_function_result(live),
            'u.' || replace(cols, ', ', ', u.'), 'c.' || replace(cols, ', ', ', c.'), '_client_cache_' || spec.name,
            CASE WHEN args = '' THEN '0' ELSE 'only_table' END,
            'heliosdb._live_client_' || spec.name, CASE WHEN args = '' THEN '' ELSE 'only_table' END,
            CASE WHEN args = '' THEN '' ELSE ' AND (only_table IS NULL OR u._table = only_table)' END);
    END LOOP;
END $$;

-- The constraints as client_catalog.sql's views read them (the not-pretty text of a check is for
-- heliosdb._made_constraintdef only).
CREATE OR REPLACE FUNCTION heliosdb._client_constraints(only_table integer DEFAULT NULL)
RETURNS TABLE (oid oid, conname name, nsp oid, contype "char", isdeferrable boolean, isdeferred boolean,
               isvalidated boolean, relid oid, indid oid, frelid oid, fupd "char", fdel "char", fmatch "char",
               conkey int2[], confkey int2[], def text)
LANGUAGE sql STABLE AS $$
    SELECT k.oid, k.conname, k.nsp, k.contype, k.isdeferrable, k.isdeferred, k.isvalidated, k.relid, k.indid,
           k.frelid, k.fupd, k.fdel, k.fmatch, k.conkey, k.confkey, k.def
    FROM heliosdb._client_constraint_rows(only_table) k
$$;

-- Fills the cache for the session's branch at the current generation (once: a later call finds
-- it), and drops fills no session reads any more. Run in a REPEATABLE READ transaction of its
-- own, so the generation and the rows come from one snapshot.
CREATE OR REPLACE FUNCTION heliosdb._client_cache_fill() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    b integer := heliosdb._current_branch_id();
    g bigint;
    d oid;
    f bigint;
    old bigint[];
    spec record;
BEGIN
    SELECT gen INTO g FROM heliosdb._catalog_gen;
    SELECT oid INTO d FROM pg_catalog.pg_database WHERE datname = current_database();
    SELECT max(id) INTO f FROM heliosdb._client_fills WHERE branch_id = b AND gen = g AND db = d;
    IF f IS NOT NULL OR b IS NULL THEN
        RETURN f;
    END IF;
    -- a branch is built (its schema and views made) on first use, which moves no generation: until
    -- that is committed there is nothing to keep (its views are not there for this snapshot)
    IF NOT (SELECT built FROM heliosdb._branches WHERE id = b) THEN
        RETURN NULL;
    END IF;
    INSERT INTO heliosdb._client_fills (branch_id, gen, db) VALUES (b, g, d) RETURNING id INTO f;
    FOR spec IN SELECT * FROM heliosdb._client_cached() LOOP
        EXECUTE format('INSERT INTO heliosdb.%I SELECT %s, %s, * FROM heliosdb.%I()', '_client_cache_' || spec.name,
                       f, spec.table_id, '_live_client_' || spec.name);
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_stats st
                       WHERE st.schemaname = 'heliosdb' AND st.tablename = '_client_cache_' || spec.name) THEN
            -- never analyzed (autovacuum keeps them analyzed later): without statistics the planner
            -- takes a fill for a handful of rows and rescans it in nested loops
            EXECUTE format('ANALYZE heliosdb.%I', '_client_cache_' || spec.name);
        END IF;
    END LOOP;
    SELECT array_agg(x.id) INTO old FROM heliosdb._client_fills x
    WHERE (x.branch_id = b AND x.gen < g) OR x.db <> d
       OR NOT EXISTS (SELECT FROM heliosdb._branches r WHERE r.id = x.branch_id AND r.state <> 'dropped');
    IF old IS NOT NULL THEN
        DELETE FROM heliosdb._client_fills WHERE id = ANY (old);
        FOR spec IN SELECT * FROM heliosdb._client_cached() LOOP
            EXECUTE format('DELETE FROM heliosdb.%I WHERE fill = ANY ($1)', '_client_cache_' || spec.name) USING old;
        END LOOP;
    END IF;
    RETURN f;
END $$;

-- client_catalog.sql's views again, now over the cached functions
DO $$
DECLARE
    path text := current_setting('search_path');
    v record;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog', true);
    FOR v IN SELECT * FROM hdb_v13_views LOOP
        EXECUTE format('CREATE OR REPLACE VIEW heliosdb.%I AS %s', v.name,
                       replace(v.def, 'heliosdb._live_client_', 'heliosdb._client_'));
        EXECUTE format('GRANT SELECT ON heliosdb.%I TO PUBLIC', v.name);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
END $$;

CREATE OR REPLACE VIEW heliosdb.pg_depend AS
SELECT o.classid, o.objid, o.objsubid, o.refclassid, o.refobjid, o.refobjsubid, o.deptype
FROM pg_catalog.pg_depend o
UNION ALL
SELECT * FROM heliosdb._client_all_depends();

-- pg_get_constraintdef(oid) of a check prints its expression not pretty (information_schema's
-- check_constraints shows that text): the schema keeps both forms (model.Constraint.plain).
CREATE OR REPLACE FUNCTION heliosdb._made_constraintdef(c oid, pretty boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN pretty THEN k.def ELSE coalesce(k.plain, k.def) END
    FROM heliosdb._client_constraint_rows(((c::bigint - 3000000000) / 128)::integer) k WHERE k.oid = c
$$;

CREATE OR REPLACE FUNCTION heliosdb.pg_get_constraintdef(c oid, pretty boolean DEFAULT false) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c < 3000000000::oid THEN pg_catalog.pg_get_constraintdef(c, pretty)
                ELSE coalesce(heliosdb._made_constraintdef(c, pretty), pg_catalog.pg_get_constraintdef(c, pretty)) END
$$;

DROP FUNCTION IF EXISTS heliosdb._made_constraintdef(oid);

-- Checks recorded before this version have only the pretty text: those of a root relation's check
-- with that text take its other form too.
UPDATE heliosdb._table_versions v SET constraints = (
    SELECT jsonb_agg(CASE WHEN c->>'kind' = 'c' AND NOT c ? 'plain' AND k.oid IS NOT NULL
                               AND c->>'expr' = pg_catalog.pg_get_expr(k.conbin, k.conrelid, true)
                          THEN c || jsonb_build_object('plain', pg_catalog.pg_get_expr(k.conbin, k.conrelid))
                          ELSE c END ORDER BY o)
    FROM jsonb_array_elements(v.constraints) WITH ORDINALITY e(c, o)
    LEFT JOIN pg_catalog.pg_constraint k
           ON k.conrelid = to_regclass(format('%I.%I', t.phys_schema, t.phys_name)) AND k.conname = c->>'name'
              AND k.contype = 'c')
FROM heliosdb._tables t
WHERE t.id = v.table_id AND jsonb_array_length(v.constraints) > 0;

-- The storage relations' own constraints are not the session's: hidden with the schemas
-- heliosdb.pg_namespace hides (information_schema.check_constraints does not join the table's
-- schema, so it listed them). The schemas are looked up once per statement (an uncorrelated
-- ARRAY(...) subquery).
DO $$
DECLARE
    path text := current_setting('search_path');
    def text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog', true);  -- pg_constraint: pg_catalog's
    def := pg_catalog.pg_get_viewdef('heliosdb.pg_constraint'::regclass);
    IF position('heliosdb.pg_namespace' IN def) = 0 THEN
        EXECUTE format('CREATE OR REPLACE VIEW heliosdb.pg_constraint AS SELECT * FROM (%s) c '
                       'WHERE c.connamespace = ANY (ARRAY(SELECT n.oid FROM heliosdb.pg_namespace n))',
                       rtrim(def, '; '));
    END IF;
    -- and the relations in schemas heliosdb.pg_namespace hides (HeliosDB's, other branches'): views
    -- that join pg_namespace with LEFT JOIN (pg_tables, pg_views) listed them without a schema. The
    -- sequences of serial and identity columns stay (they live in the storage schema; Django finds a
    -- table's through pg_class and pg_depend).
    def := pg_catalog.pg_get_viewdef('heliosdb.pg_class'::regclass);
    IF position('heliosdb.pg_namespace' IN def) = 0 THEN
        EXECUTE format('CREATE OR REPLACE VIEW heliosdb.pg_class AS SELECT * FROM (%s) c '
                       'WHERE c.relnamespace = ANY (ARRAY(SELECT n.oid FROM heliosdb.pg_namespace n)) '
                       'OR (c.relkind = ''S'' AND c.relnamespace = ANY (ARRAY(SELECT n.oid FROM pg_namespace n '
                       'WHERE n.nspname ~ ''^hdb_t[0-9]+$'')))', rtrim(def, '; '));
    END IF;
    PERFORM pg_catalog.set_config('search_path', path, true);
END $$;


DO $$
DECLARE
    views text[];
    bodies jsonb := '{}';
    name text;
    body text;
    pending text[];
    left_over text[];
    path text := current_setting('search_path');
    fn record;
    functions text[] := '{}';
    fn_defs text[] := '{}';
    catalogs text;
    system_views jsonb := '{}';
BEGIN
    SELECT array_agg(c.relname::text ORDER BY length(c.relname) DESC) INTO views
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'information_schema'::regnamespace AND c.relkind = 'v';
    SELECT string_agg(c.relname, '|') INTO catalogs  -- HeliosDB's views of catalogs (client_catalog.sql)
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'heliosdb'::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'pg\_%';
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog', true);
    -- information_schema's functions that read a catalog HeliosDB has a view of (_pg_index_position
    -- reads pg_index) or take a row of one (_pg_truetypid(pg_attribute, pg_type)): a copy over
    -- HeliosDB's, for the copies of the views to call
    FOR fn IN
        SELECT p.oid, p.proname::text AS proname, pg_catalog.pg_get_functiondef(p.oid) AS def,
               string_agg(CASE WHEN y.typrelid <> 0 AND mine.rel IS NOT NULL THEN mine.rel::text
                               ELSE format_type(a.t, NULL) END, ', ' ORDER BY a.n) AS args,
               bool_or(y.typrelid <> 0 AND mine.rel IS NOT NULL) AS takes_row
        FROM pg_catalog.pg_proc p
        LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n) ON true
        LEFT JOIN pg_catalog.pg_type y ON y.oid = a.t
        LEFT JOIN LATERAL (SELECT to_regclass('heliosdb.' || y.typname) AS rel) mine ON true
        WHERE p.pronamespace = 'information_schema'::regnamespace AND p.prokind = 'f'
        GROUP BY p.oid, p.proname
    LOOP
        CONTINUE WHEN NOT (fn.takes_row OR fn.def ~ ('\m(' || catalogs || ')\M'));
        functions := functions || fn.proname;
        body := substr(fn.def, position(E'\n' IN fn.def) + 1);  -- from its RETURNS line
        IF position(E'\nAS ' IN body) > 0 THEN
            -- a body kept as text (PostgreSQL 13) resolves its names when it runs, and may name
            -- pg_catalog's: both pointed at HeliosDB's (a SQL-standard body is bound as it is made)
            body := split_part(body, E'\n', 1) || E'\n SET search_path = heliosdb, pg_catalog'
                    || regexp_replace(substr(body, position(E'\n' IN body)),
                                      '\mpg_catalog\.(' || catalogs || ')\M', 'heliosdb.\1', 'g');
        END IF;
        fn_defs := fn_defs || (format('CREATE OR REPLACE FUNCTION heliosdb.%I(%s)', fn.proname, coalesce(fn.args, ''))
                               || E'\n' || body);
    END LOOP;
    FOREACH name IN ARRAY views LOOP
        body := pg_catalog.pg_get_viewdef(format('information_schema.%I', name)::regclass);
        -- one copy reads the others, under the name the definition qualifies their columns with
        body := regexp_replace(body, '\minformation_schema\.(' || array_to_string(views, '|') || ')\M'
                                     '(?!\s+(?!(?:WHERE|UNION|EXCEPT|INTERSECT|JOIN|LEFT|RIGHT|FULL|CROSS|INNER|NATURAL'
                                     '|ON|USING|GROUP|ORDER|HAVING|LIMIT|OFFSET|WINDOW)\M)[a-z_"])',
                               'heliosdb.information_schema_\1 AS \1', 'g');
        body := regexp_replace(body, '\minformation_schema\.(' || array_to_string(views, '|') || ')\M',
                               'heliosdb.information_schema_\1', 'g');  -- those with an alias of their own
        IF cardinality(functions) > 0 THEN
            body := regexp_replace(body, '\minformation_schema\.(' || array_to_string(functions, '|') || ')\(',
                                   'heliosdb.\1(', 'g');
        END IF;
        -- an object id written as a name would be read again with heliosdb first: keep pg_catalog's
        body := regexp_replace(body, '''(pg_[a-z_]+)''::regclass', '''pg_catalog.\1''::regclass', 'g');
        bodies := bodies || jsonb_build_object(name, body);
    END LOOP;
    -- pg_catalog's views over those catalogs that tools list tables and indexes with (peewee's pwiz
    -- reads pg_tables and pg_indexes), copied under their own names as heliosdb's other views are
    FOREACH name IN ARRAY ARRAY['pg_tables', 'pg_indexes', 'pg_views', 'pg_matviews'] LOOP
        system_views := system_views || jsonb_build_object(name, regexp_replace(
            pg_catalog.pg_get_viewdef(format('pg_catalog.%I', name)::regclass),
            '''(pg_[a-z_]+)''::regclass', '''pg_catalog.\1''::regclass', 'g'));
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', 'heliosdb, pg_catalog', true);
    FOREACH body IN ARRAY fn_defs LOOP
        EXECUTE body;
    END LOOP;
    FOR name, body IN SELECT * FROM jsonb_each_text(system_views) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW heliosdb.%I AS %s', name, body);
        EXECUTE format('GRANT SELECT ON heliosdb.%I TO PUBLIC', name);
    END LOOP;
    pending := views;
    LOOP  -- a copy that reads another waits for it
        left_over := '{}';
        FOREACH name IN ARRAY pending LOOP
            BEGIN
                EXECUTE format('CREATE OR REPLACE VIEW heliosdb.%I AS %s', 'information_schema_' || name,
                               bodies->>name);
                EXECUTE format('GRANT SELECT ON heliosdb.%I TO PUBLIC', 'information_schema_' || name);
            EXCEPTION WHEN undefined_table THEN
                left_over := left_over || name;
            END;
        END LOOP;
        EXIT WHEN cardinality(left_over) = 0;
        IF cardinality(left_over) = cardinality(pending) THEN
            RAISE EXCEPTION 'information_schema views not copied: %', left_over;
        END IF;
        pending := left_over;
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
END $$;

UPDATE heliosdb._meta SET value = '13' WHERE key = 'catalog_version';
