-- Constraints, indexes, NOT NULL and owned sequences of HeliosDB tables in the catalogs clients read (catalog
-- version 12), applied after fk_deferred.sql.
--
-- A HeliosDB table is a view to PostgreSQL, so pg_constraint, pg_index and pg_attribute.attnotnull
-- say nothing about it: psql's \d showed columns only, and ORMs reflected no primary key, no
-- unique or foreign key and every column nullable (a Django migration that drops a constraint
-- it looks up there did nothing). The wire endpoint reads these catalogs through the views below
-- instead (server/catalog_compat.py): PostgreSQL's own rows, plus rows made from the schema the
-- session's branch sees (heliosdb._table_versions), as PostgreSQL would show them for a table.
--
-- Made-up rows need object ids no real object has. PostgreSQL hands out ids from a counter that
-- starts at 16384; these use the top of the range: constraint ids 3,000,000,000 + table id x 128
-- + the constraint's position in the schema's list, index ids 3,700,000,000 + the same. Columns
-- PostgreSQL stores as expression trees (conbin, indexprs, indpred) are NULL in them: the text
-- forms come from heliosdb.pg_get_constraintdef and heliosdb.pg_get_indexdef.

-- A branch and its ancestors, nearest first (n), each seen as of the fork below it (upto): the
-- levels every lookup of what a branch sees walks (catalog.model.levels_of).
CREATE OR REPLACE FUNCTION heliosdb._levels(b integer) RETURNS TABLE (id integer, n integer, upto bigint)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up AS (
        SELECT id, parent_id, fork_lsn, 0 AS n, 9223372036854775807::bigint AS upto
        FROM heliosdb._branches WHERE id = b
        UNION ALL
        SELECT p.id, p.parent_id, p.fork_lsn, up.n + 1, least(up.upto, up.fork_lsn)
        FROM heliosdb._branches p JOIN up ON p.id = up.parent_id)
    SELECT id, n, upto FROM up
$$;

-- The materialized views a branch sees (mv.sql's definition, over the common levels).
CREATE OR REPLACE FUNCTION heliosdb._mv_visible(b integer) RETURNS TABLE (mv_id integer, name text, lvl integer)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (m.name) m.id, m.name, up.n
    FROM heliosdb._mviews m JOIN heliosdb._levels(b) up ON up.id = m.branch_id AND m.valid_from <= up.upto
    WHERE NOT EXISTS (SELECT 1 FROM heliosdb._mv_drops d JOIN heliosdb._levels(b) u2 ON u2.id = d.branch_id
                      WHERE d.mv_id = m.id AND d.lsn <= u2.upto)
    ORDER BY m.name, up.n, m.valid_from DESC
$$;

-- The tables a branch sees, as it sees them: its own versions over its ancestors' as of the fork
-- points below it (catalog.model._resolve).
CREATE OR REPLACE FUNCTION heliosdb._visible_versions(b integer, only_table integer DEFAULT NULL)
RETURNS TABLE (table_id integer, name text, columns jsonb, constraints jsonb)
LANGUAGE sql STABLE AS $$
    SELECT v.table_id, v.name, v.columns, v.constraints
    FROM (SELECT DISTINCT ON (v.table_id) v.*
          FROM heliosdb._levels(b) up JOIN heliosdb._table_versions v ON v.branch_id = up.id AND v.valid_from <= up.upto
               AND (only_table IS NULL OR v.table_id = only_table)
               AND (up.upto < v.valid_to OR v.valid_to = 9223372036854775807)
          ORDER BY v.table_id, up.n) v
    WHERE NOT v.dropped
$$;

-- The session's branch's tables (or one of them) with the view that stands for each, and the
-- storage relation their foreign keys name.
CREATE OR REPLACE FUNCTION heliosdb._client_tables(only_table integer DEFAULT NULL)
RETURNS TABLE (table_id integer, relid oid, nsp oid, relname name, columns jsonb, constraints jsonb,
               phys_schema text, phys_name text)
LANGUAGE sql STABLE AS $$
    SELECT v.table_id, c.oid, c.relnamespace, c.relname, v.columns, v.constraints, t.phys_schema, t.phys_name
    FROM heliosdb._branches b
    JOIN pg_catalog.pg_namespace n ON n.nspname = b.user_schema
    CROSS JOIN LATERAL heliosdb._visible_versions(b.id, only_table) v
    JOIN heliosdb._tables t ON t.id = v.table_id
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.name AND c.relkind = 'v'
    WHERE b.id = heliosdb._current_branch_id()
$$;

-- The attribute numbers of named columns of a view (0 where a name is not one of its columns).
CREATE OR REPLACE FUNCTION heliosdb._attnums(rel oid, names text[]) RETURNS int2[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(coalesce(a.attnum, 0) ORDER BY u.o), '{}')::int2[]
    FROM unnest(names) WITH ORDINALITY u(name, o)
    LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attname = u.name AND NOT a.attisdropped
$$;

CREATE OR REPLACE FUNCTION heliosdb._ident_list(names text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(quote_ident(n), ', ' ORDER BY o), '') FROM unnest(names) WITH ORDINALITY u(n, o)
$$;

-- Indexes of the session's branch's tables, from the schema it sees: primary keys, unique
-- constraints, unique and plain indexes (introspect and CREATE INDEX on a branch record them).
CREATE OR REPLACE FUNCTION heliosdb._client_indexes(only_table integer DEFAULT NULL)
RETURNS TABLE (oid oid, relid oid, nsp oid, relname name, isunique boolean, isprimary boolean,
               keys int2[], elements text[], options int2[], classes oid[], pred text, using_text text, am oid)
LANGUAGE sql STABLE AS $$
    SELECT (3700000000 + t.table_id::bigint * 128 + k.pos)::oid, t.relid, t.nsp, (k.con->>'name')::name,
           k.con->>'kind' <> 'i', k.con->>'kind' = 'p',
           heliosdb._attnums(t.relid, ARRAY(SELECT jsonb_array_elements_text(
               CASE WHEN k.con->>'kind' = 'x' THEN k.con->'keys' ELSE k.con->'cols' END))),
           CASE WHEN jsonb_array_length(coalesce(k.con->'keys', '[]')) > 0
                THEN ARRAY(SELECT jsonb_array_elements_text(k.con->'keys'))
                ELSE ARRAY(SELECT quote_ident(c) FROM jsonb_array_elements_text(k.con->'cols') c) END,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(k.con->'options', '[]'))::int2),
           ARRAY(SELECT coalesce(o.oid, 0) FROM jsonb_array_elements_text(coalesce(k.con->'opclasses', '[]'))
                 WITH ORDINALITY c(name, n)
                 LEFT JOIN pg_catalog.pg_opclass o ON o.opcname = c.name AND o.opcmethod = am.oid ORDER BY c.n),
           k.con->>'where', k.con->>'using', am.oid
    FROM heliosdb._client_tables(only_table) t
    CROSS JOIN LATERAL jsonb_array_elements(t.constraints) WITH ORDINALITY k(con, pos)
    JOIN pg_catalog.pg_am am ON am.amname = coalesce(split_part(k.con->>'using', ' ', 1), 'btree')
    WHERE k.con->>'kind' IN ('p', 'u', 'x', 'i') AND k.pos < 128
$$;

-- Constraints of the session's branch's tables, from the schema it sees.
CREATE OR REPLACE FUNCTION heliosdb._client_constraints(only_table integer DEFAULT NULL)
RETURNS TABLE (oid oid, conname name, nsp oid, contype "char", isdeferrable boolean, isdeferred boolean,
               isvalidated boolean, relid oid, indid oid, frelid oid, fupd "char", fdel "char", fmatch "char",
               conkey int2[], confkey int2[], def text)
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
           CASE WHEN c.kind IN ('p', 'u') THEN (3700000000 + c.table_id::bigint * 128 + c.pos)::oid ELSE 0::oid END,
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
           END
    FROM cols c
    LEFT JOIN heliosdb._tables ft ON c.kind = 'f' AND ft.phys_schema = c.fk->>'schema' AND ft.phys_name = c.fk->>'table'
    LEFT JOIN LATERAL (  -- the referenced table: among those at hand, or looked up when there is one
        SELECT r.relid, r.relname FROM t r WHERE only_table IS NULL AND r.table_id = ft.id
        UNION ALL
        SELECT r.relid, r.relname FROM heliosdb._client_tables(ft.id) r WHERE only_table IS NOT NULL) r ON true
    WHERE c.kind <> 'f' OR r.relid IS NOT NULL  -- a key to a table the branch does not see is not enforced either
$$;

-- Per view of a HeliosDB table, what its pg_class row should say: psql's \d looks for indexes,
-- check constraints and foreign keys only where relhasindex, relchecks and relhastriggers say so.
CREATE OR REPLACE FUNCTION heliosdb._client_relations()
RETURNS TABLE (relid oid, hasindex boolean, checks int2, hastriggers boolean)
LANGUAGE sql STABLE AS $$
    WITH t AS MATERIALIZED (SELECT * FROM heliosdb._client_tables()),
    refs AS (SELECT DISTINCT (c->>'expr')::jsonb->>'schema' AS s, (c->>'expr')::jsonb->>'table' AS n
             FROM t, jsonb_array_elements(t.constraints) c WHERE c->>'kind' = 'f')
    SELECT t.relid,
           EXISTS (SELECT FROM jsonb_array_elements(t.constraints) c WHERE c->>'kind' IN ('p', 'u', 'x', 'i')),
           (SELECT count(*) FROM jsonb_array_elements(t.constraints) c WHERE c->>'kind' = 'c')::int2,
           EXISTS (SELECT FROM jsonb_array_elements(t.constraints) c WHERE c->>'kind' = 'f')
           OR EXISTS (SELECT FROM refs WHERE refs.s = t.phys_schema AND refs.n = t.phys_name)
    FROM t
$$;

-- The views' columns as the schema has them: NOT NULL (the column's own, or the primary key's) and
-- identity ('a' ALWAYS, 'd' BY DEFAULT).
CREATE OR REPLACE FUNCTION heliosdb._client_columns()
RETURNS TABLE (relid oid, attname name, notnull boolean, identity "char")
LANGUAGE sql STABLE AS $$
    SELECT t.relid, (c->>'name')::name,
           coalesce((c->>'notnull')::boolean, false)
           OR EXISTS (SELECT FROM jsonb_array_elements(t.constraints) k
                      WHERE k->>'kind' = 'p' AND k->'cols' ? (c->>'name')),
           coalesce(c->>'identity', '')::"char"
    FROM heliosdb._client_tables() t, jsonb_array_elements(t.columns) c
$$;

-- The text of a made-up constraint or index, and whether a made-up index is visible: for
-- the one table the object id names.
CREATE OR REPLACE FUNCTION heliosdb._made_constraintdef(c oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT k.def FROM heliosdb._client_constraints(((c::bigint - 3000000000) / 128)::integer) k WHERE k.oid = c
$$;

CREATE OR REPLACE FUNCTION heliosdb._made_indexdef(i oid, col integer, pretty boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN col > 0 THEN x.elements[col] ELSE
        'CREATE ' || CASE WHEN x.isunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || quote_ident(x.relname)
        || ' ON ' || CASE WHEN pretty AND pg_catalog.pg_table_is_visible(c.oid) THEN '' -- as PostgreSQL's
                          ELSE quote_ident(n.nspname) || '.' END || quote_ident(c.relname) || ' USING '
        || coalesce(x.using_text, 'btree (' || array_to_string(x.elements, ', ') || ')'
                    || coalesce(' WHERE ' || x.pred, '')) END
    FROM heliosdb._client_indexes(((i::bigint - 3700000000) / 128)::integer) x
    JOIN pg_catalog.pg_class c ON c.oid = x.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE x.oid = i
$$;

CREATE OR REPLACE FUNCTION heliosdb._made_index_visible(i oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.pg_table_is_visible(x.relid)
    FROM heliosdb._client_indexes(((i::bigint - 3700000000) / 128)::integer) x WHERE x.oid = i
$$;

-- What clients call. Single expressions without subqueries, so PostgreSQL inlines them and a
-- real object costs what PostgreSQL's own function does.
-- Sequences owned by a column (serial, identity): PostgreSQL links them to the storage relation's
-- column; the same link to the view's column (Django's get_sequences follows it).
CREATE OR REPLACE FUNCTION heliosdb._client_depends()
RETURNS TABLE (seq oid, relid oid, attnum int2, deptype "char")
LANGUAGE sql STABLE AS $$
    SELECT d.objid, t.relid, va.attnum, d.deptype
    FROM heliosdb._client_tables() t
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::regclass
         AND d.refobjid = to_regclass(format('%I.%I', t.phys_schema, t.phys_name)) AND d.refobjsubid > 0
         AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
    JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_catalog.pg_attribute pa ON pa.attrelid = d.refobjid AND pa.attnum = d.refobjsubid
    JOIN heliosdb._columns hc ON hc.table_id = t.table_id AND hc.phys_name = pa.attname
    JOIN LATERAL jsonb_array_elements(t.columns) c ON (c->>'col')::integer = hc.col_id
    JOIN pg_catalog.pg_attribute va ON va.attrelid = t.relid AND va.attname = c->>'name'
$$;

CREATE OR REPLACE FUNCTION heliosdb.pg_get_constraintdef(c oid, pretty boolean DEFAULT false) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c < 3000000000::oid THEN pg_catalog.pg_get_constraintdef(c, pretty)
                ELSE coalesce(heliosdb._made_constraintdef(c), pg_catalog.pg_get_constraintdef(c, pretty)) END
$$;

-- CREATE INDEX text of an index, or (col > 0) the text of one of its keys.
CREATE OR REPLACE FUNCTION heliosdb.pg_get_indexdef(i oid, col integer DEFAULT 0, pretty boolean DEFAULT false)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN i < 3700000000::oid THEN pg_catalog.pg_get_indexdef(i, col, pretty)
                ELSE coalesce(heliosdb._made_indexdef(i, col, pretty), pg_catalog.pg_get_indexdef(i, col, pretty)) END
$$;

-- pg_get_serial_sequence of a HeliosDB table: PostgreSQL finds no sequence for the view, so the
-- call goes to the storage relation's column (SQLAlchemy passes attrelid::regclass::text, which the
-- session's rewrite of literal calls, sql/sequences.py, cannot see).
CREATE OR REPLACE FUNCTION heliosdb.pg_get_serial_sequence(tbl text, col text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
BEGIN
    SELECT t.phys_schema, t.phys_name, hc.phys_name AS phys_col INTO r
    FROM heliosdb._client_tables() t
    JOIN LATERAL jsonb_array_elements(t.columns) c ON c->>'name' = col
    JOIN heliosdb._columns hc ON hc.table_id = t.table_id AND hc.col_id = (c->>'col')::integer
    WHERE t.relid = to_regclass(tbl);
    IF NOT FOUND THEN
        RETURN pg_catalog.pg_get_serial_sequence(tbl, col);
    END IF;
    RETURN pg_catalog.pg_get_serial_sequence(format('%I.%I', r.phys_schema, r.phys_name), r.phys_col);
END $$;

-- A made-up index is visible where its table is (psql's \di asks).
CREATE OR REPLACE FUNCTION heliosdb.pg_table_is_visible(r oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r < 3700000000::oid THEN pg_catalog.pg_table_is_visible(r)
                ELSE coalesce(heliosdb._made_index_visible(r), pg_catalog.pg_table_is_visible(r)) END
$$;

-- The views: every column of the catalog PostgreSQL has (read from pg_attribute, so the views
-- follow the server's version), PostgreSQL's rows (o) with the made-up ones after them.
DO $$
DECLARE
    spec record;
    cols text;
    made text;
BEGIN
    FOR spec IN SELECT * FROM (VALUES
        ('pg_constraint', NULL, NULL::jsonb, 'heliosdb._client_constraints() k', jsonb_build_object(
            'oid', 'k.oid', 'conname', 'k.conname', 'connamespace', 'k.nsp', 'contype', 'k.contype',
            'condeferrable', 'k.isdeferrable', 'condeferred', 'k.isdeferred', 'convalidated', 'k.isvalidated',
            'conrelid', 'k.relid', 'contypid', '0', 'conindid', 'k.indid', 'conparentid', '0',
            'confrelid', 'k.frelid', 'confupdtype', 'k.fupd', 'confdeltype', 'k.fdel',
            'confmatchtype', 'k.fmatch', 'conislocal', 'true', 'coninhcount', '0', 'connoinherit', 'false',
            'conkey', 'k.conkey', 'confkey', 'k.confkey', 'conperiod', 'false')),
        ('pg_index', NULL, NULL, 'heliosdb._client_indexes() x', jsonb_build_object(
            'indexrelid', 'x.oid', 'indrelid', 'x.relid', 'indnatts', 'cardinality(x.keys)',
            'indnkeyatts', 'cardinality(x.keys)', 'indisunique', 'x.isunique', 'indnullsnotdistinct', 'false',
            'indisprimary', 'x.isprimary', 'indisexclusion', 'false', 'indimmediate', 'true',
            'indisclustered', 'false', 'indisvalid', 'true', 'indcheckxmin', 'false', 'indisready', 'true',
            'indislive', 'true', 'indisreplident', 'false', 'indkey', 'array_to_string(x.keys, '' '')',
            'indcollation', 'array_to_string(array_fill(0, ARRAY[cardinality(x.keys)]), '' '')',
            'indclass', 'array_to_string(x.classes || array_fill(0::oid, ARRAY[cardinality(x.keys) - cardinality(x.classes)]), '' '')',
            'indoption', 'array_to_string(x.options || array_fill(0::int2, ARRAY[cardinality(x.keys) - cardinality(x.options)]), '' '')')),
        ('pg_class', 'LEFT JOIN heliosdb._client_relations() h ON h.relid = o.oid', jsonb_build_object(
            -- the branch's tables are known here; other views (other branches', materialized
            -- views) are looked up, once each
            'relkind', 'CASE WHEN h.relid IS NOT NULL THEN ''r'' WHEN o.relkind <> ''v'' THEN o.relkind
                             ELSE heliosdb._relkind(o.oid, o.relkind) END', 'relhasindex', 'coalesce(h.hasindex, o.relhasindex)',
            'relchecks', 'coalesce(h.checks, o.relchecks)',
            'relhastriggers', 'coalesce(h.hastriggers, o.relhastriggers)',
            'relhasrules', 'o.relhasrules AND h.relid IS NULL',
            'relreplident', 'CASE WHEN h.relid IS NULL THEN o.relreplident ELSE ''d'' END'),
         'heliosdb._client_indexes() x JOIN pg_catalog.pg_class t ON t.oid = x.relid', jsonb_build_object(
            'oid', 'x.oid', 'relname', 'x.relname', 'relnamespace', 'x.nsp', 'reltype', '0', 'reloftype', '0',
            'relowner', 't.relowner', 'relam', 'x.am', 'relfilenode', '0', 'reltablespace', '0', 'relpages', '0',
            'reltuples', '0', 'relallvisible', '0', 'reltoastrelid', '0', 'relhasindex', 'false',
            'relisshared', 'false', 'relpersistence', '''p''', 'relkind', '''i''',
            'relnatts', 'cardinality(x.keys)', 'relchecks', '0', 'relhasrules', 'false',
            'relhastriggers', 'false', 'relhassubclass', 'false', 'relrowsecurity', 'false',
            'relforcerowsecurity', 'false', 'relispopulated', 'true', 'relreplident', '''n''',
            'relispartition', 'false', 'relrewrite', '0', 'relfrozenxid', '''0''', 'relminmxid', '''0''')),
        -- an identity column has no default of its own in PostgreSQL: the view's (for a branch's
        -- writes) is not shown
        ('pg_attribute', 'LEFT JOIN heliosdb._client_columns() h ON h.relid = o.attrelid AND h.attname = o.attname',
         jsonb_build_object('attnotnull', 'o.attnotnull OR coalesce(h.notnull, false)',
                            'attidentity', 'coalesce(h.identity, o.attidentity)',
                            'atthasdef', 'o.atthasdef AND coalesce(h.identity, '''') = '''''), NULL, NULL),
        ('pg_attrdef', 'LEFT JOIN heliosdb._client_columns() h ON h.relid = o.adrelid '
                       'AND h.attname = (SELECT a.attname FROM pg_catalog.pg_attribute a '
                       'WHERE a.attrelid = o.adrelid AND a.attnum = o.adnum) WHERE coalesce(h.identity, '''') = ''''',
         NULL, NULL, NULL),
        ('pg_trigger', 'WHERE o.tgname !~ ''^_hdb_''', NULL, NULL, NULL),  -- HeliosDB's own are not the user's
        -- HeliosDB's schemas (storage, branch internals, its catalog) and other branches' are not the
        -- session's: a tool that lists schemas (Alembic's include_schemas) leaves them alone
        ('pg_namespace', 'WHERE o.nspname !~ ''^hdb_[tb][0-9]+$'' AND o.nspname <> ''heliosdb'' AND NOT EXISTS ('
                         'SELECT FROM heliosdb._branches b WHERE b.user_schema = o.nspname AND b.state <> ''dropped'' '
                         'AND b.id IS DISTINCT FROM heliosdb._current_branch_id())', NULL, NULL, NULL),
        ('pg_depend', NULL, NULL, 'heliosdb._client_depends() x', jsonb_build_object(
            'classid', '''pg_catalog.pg_class''::regclass', 'objid', 'x.seq', 'objsubid', '0',
            'refclassid', '''pg_catalog.pg_class''::regclass', 'refobjid', 'x.relid',
            'refobjsubid', 'x.attnum', 'deptype', 'x.deptype'))
    ) AS v(rel, own_join, own_cols, made_from, made_cols)
    LOOP
        SELECT string_agg(CASE WHEN spec.own_cols ? a.attname
                               THEN format('(%s)::%s AS %I', spec.own_cols->>a.attname,
                                           format_type(a.atttypid, a.atttypmod), a.attname)
                               ELSE 'o.' || quote_ident(a.attname) END, ', ' ORDER BY a.attnum),
               string_agg(format('(%s)::%s AS %I', coalesce(spec.made_cols->>a.attname, 'NULL'),
                                 format_type(a.atttypid, a.atttypmod), a.attname), ', ' ORDER BY a.attnum)
        INTO cols, made
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = ('pg_catalog.' || spec.rel)::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid <> 'anyarray'::regtype;  -- a view cannot have one (pg_attribute.attmissingval)
        EXECUTE format('CREATE OR REPLACE VIEW heliosdb.%I AS SELECT %s FROM pg_catalog.%I o %s%s', spec.rel, cols,
                       spec.rel, coalesce(spec.own_join, ''),
                       CASE WHEN spec.made_from IS NOT NULL
                            THEN format(' UNION ALL SELECT %s FROM %s', made, spec.made_from) ELSE '' END);
        EXECUTE format('GRANT SELECT ON heliosdb.%I TO PUBLIC', spec.rel);
    END LOOP;
END $$;

-- Catalogs written before this version call every unique index of a table a constraint, keep a
-- check's text in the non-pretty form and record no plain index. Every schema version of a table
-- learns the first two from the root relation: a unique key named as one of its indexes that no
-- constraint owns is that index, a check with the text of the root's check of its name takes its
-- pretty text. The root branch's current version also gets the plain indexes (introspect records
-- them from now on); other versions cannot tell which of them there were, and show none.
UPDATE heliosdb._table_versions v SET constraints = (
    SELECT coalesce(jsonb_agg(CASE WHEN c->>'kind' = 'u' AND k.oid IS NULL
                                        AND to_regclass(format('%I.%I', t.phys_schema, c->>'name')) IS NOT NULL
                                   THEN c || '{"index": true}'
                                   WHEN c->>'kind' = 'c' AND k.oid IS NOT NULL
                                        AND c->>'expr' = pg_catalog.pg_get_expr(k.conbin, k.conrelid)
                                   THEN c || jsonb_build_object('expr', pg_catalog.pg_get_expr(k.conbin, k.conrelid, true),
                                                                'valid', k.convalidated)
                                   ELSE c END ORDER BY o), '[]'::jsonb)
    FROM jsonb_array_elements(v.constraints) WITH ORDINALITY e(c, o)
    LEFT JOIN pg_catalog.pg_constraint k
           ON k.conrelid = to_regclass(format('%I.%I', t.phys_schema, t.phys_name)) AND k.conname = c->>'name')
FROM heliosdb._tables t
WHERE t.id = v.table_id
  AND NOT EXISTS (SELECT FROM jsonb_array_elements(v.constraints) c WHERE c ? 'using' OR c ? 'valid');

UPDATE heliosdb._table_versions v SET constraints = v.constraints || coalesce((
    SELECT jsonb_agg(jsonb_build_object(
               'name', ic.relname, 'kind', 'i', 'expr', NULL, 'index', false,
               'cols', ARRAY(SELECT coalesce(a.attname::text, '') FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                             WHERE k.o <= i.indnkeyatts ORDER BY k.o),
               'keys', ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true)
                             FROM generate_series(1, i.indnkeyatts) k),
               'where', pg_catalog.pg_get_expr(i.indpred, i.indrelid, true),
               'using', substring(pg_catalog.pg_get_indexdef(i.indexrelid, 0, true) FROM ' USING (.*)$'),
               'options', (i.indoption::int2[])[0:i.indnkeyatts - 1],
               'opclasses', ARRAY(SELECT CASE WHEN o.opcdefault THEN '' ELSE o.opcname::text END
                                  FROM unnest(i.indclass::oid[]) WITH ORDINALITY k(c, n)
                                  JOIN pg_catalog.pg_opclass o ON o.oid = k.c ORDER BY k.n)) ORDER BY ic.relname)
    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = to_regclass(format('%I.%I', t.phys_schema, t.phys_name)) AND NOT i.indisunique
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid)
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid
                      AND a.attnum = ANY(i.indkey::int2[]) AND a.attname LIKE '\_hdb\_%')), '[]'::jsonb)
FROM heliosdb._tables t
WHERE t.id = v.table_id AND v.branch_id = t.root_branch AND v.valid_to = 9223372036854775807 AND NOT v.dropped
  AND NOT EXISTS (SELECT FROM jsonb_array_elements(v.constraints) c WHERE c->>'kind' = 'i');

-- pg_class.relkind was read through this function; heliosdb.pg_class has it in place now
DROP FUNCTION IF EXISTS heliosdb.relkind(oid, "char");

UPDATE heliosdb._meta SET value = '12' WHERE key = 'catalog_version';
