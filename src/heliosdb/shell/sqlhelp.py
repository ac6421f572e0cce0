"""Syntax help for \\h: HeliosDB's statements (as in docs/sql-reference.md) and PostgreSQL's common ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    syntax: str
    helios: bool = False


_POINT = "{ NOW | LSN <lsn> | TIMESTAMP <expr> | SCN <scn> | TRANSACTION <txid> }"

TOPICS: list[Topic] = [
    # -- HeliosDB ---------------------------------------------------------------------------------
    Topic("CREATE DATABASE BRANCH", "create a copy-on-write branch of the database (metadata only)",
          "CREATE DATABASE BRANCH [IF NOT EXISTS] <name>\n"
          "  [FROM <parent>]\n"
          f"  [AS OF {_POINT}]\n"
          "  [ON STORAGE NODE <node_id>]\n"
          "  [WITH COMPUTE ENDPOINT <endpoint_id>]\n"
          "  [OPTIONS (read_only = true|false, retention_period = '<interval>',\n"
          "            gc_policy = aggressive|balanced|conservative)]", True),
    Topic("USE BRANCH", "switch the session (or the transaction) to a branch",
          "USE BRANCH <name> [FOR SESSION | FOR TRANSACTION]\n"
          "USE BRANCH <name> AS OF <point>", True),
    Topic("ALTER DATABASE BRANCH", "make a branch read-only or writable, or change its options",
          "ALTER DATABASE BRANCH <name> SET { READ_ONLY | WRITABLE }\n"
          "ALTER DATABASE BRANCH <name> SET OPTIONS (<option> = <value>, ...)", True),
    Topic("DROP DATABASE BRANCH", "drop a branch and reclaim every row it stored",
          "DROP DATABASE BRANCH [IF EXISTS] <name> [CASCADE]", True),
    Topic("SHOW BRANCHES", "list the branches of the database", "SHOW BRANCHES", True),
    Topic("MERGE DATABASE BRANCH", "merge a branch into another (three-way, with conflict rules)",
          "MERGE DATABASE BRANCH <source> INTO <target>\n"
          "  [USING STRATEGY { ABORT | OURS | THEIRS | MANUAL | RULE_BASED | LAST_WRITE_WINS | CUSTOM <function> }]\n"
          "  [WITH CONFLICT RESOLUTION <rule_set>]\n"
          "  [DRY RUN]\n"
          "  [OPTIONS (<option> = <value>, ...)]", True),
    Topic("COMPLETE MERGE", "apply a pending (MANUAL) merge", "COMPLETE MERGE <merge_id>", True),
    Topic("ABORT MERGE", "discard a pending (MANUAL) merge", "ABORT MERGE <merge_id>", True),
    Topic("CREATE CONFLICT RESOLUTION", "define a rule set for RULE_BASED merges",
          "CREATE CONFLICT RESOLUTION <name> (\n"
          "  ON <table_regex>.<column_regex> { PREFER { SOURCE | TARGET | NEWER | OLDER }\n"
          "                                  | CONCATENATE | SUM | MAX | MIN } [, ...] )", True),
    Topic("DROP CONFLICT RESOLUTION", "drop a rule set", "DROP CONFLICT RESOLUTION [IF EXISTS] <name>", True),
    Topic("SET AS OF", "read the whole session as of a point in the branch's history (writes are refused)",
          f"SET AS OF {_POINT}", True),
    Topic("SHOW AS OF", "show the session's temporal context", "SHOW AS OF", True),
    Topic("FLASHBACK TABLE", "restore a table on the current branch to its rows at a point (one new commit)",
          "FLASHBACK TABLE <table> TO { LSN | SCN | TIMESTAMP | TRANSACTION } <point>", True),
    Topic("AS OF", "time travel on a table reference (in any query)",
          "<table> AS OF { NOW | TIMESTAMP <expr> | LSN <lsn> | SCN <scn> | TRANSACTION <txid>\n"
          "              | SYSTEM_TIME <expr>\n"
          "              | BRANCH <name> [ AT { LSN <lsn> | TIMESTAMP <expr> | SCN <scn> | TRANSACTION <txid> } ] }\n"
          "              [ [AS] alias ]\n"
          "<table> FOR SYSTEM_TIME AS OF <expr>\n"
          "<table> FOR SYSTEM_TIME { FROM a TO b | BETWEEN a AND b | CONTAINED IN (a, b) | ALL }\n"
          "<table> AT ( TIMESTAMP => <expr> | OFFSET => <seconds> | LSN => <lsn> )\n"
          "<table> VERSION AS OF <lsn> | <table> TIMESTAMP AS OF <expr>", True),
    Topic("VERSIONS BETWEEN", "every version of the rows in a range (Oracle flashback query)",
          "<table> VERSIONS BETWEEN { SCN | TIMESTAMP | LSN } { <a> | MINVALUE } AND { <b> | MAXVALUE }\n"
          "  pseudo-columns: VERSIONS_STARTSCN, VERSIONS_ENDSCN, VERSIONS_STARTTIME, VERSIONS_ENDTIME,\n"
          "  VERSIONS_STARTLSN, VERSIONS_ENDLSN, VERSIONS_XID, VERSIONS_OPERATION", True),
    # -- PostgreSQL -------------------------------------------------------------------------------
    Topic("SELECT", "retrieve rows from a table or view",
          "[ WITH [ RECURSIVE ] with_query [, ...] ]\n"
          "SELECT [ ALL | DISTINCT [ ON ( expression [, ...] ) ] ]\n"
          "    [ * | expression [ [ AS ] output_name ] [, ...] ]\n"
          "    [ FROM from_item [, ...] ]\n"
          "    [ WHERE condition ]\n"
          "    [ GROUP BY grouping_element [, ...] ]\n"
          "    [ HAVING condition ]\n"
          "    [ WINDOW window_name AS ( window_definition ) [, ...] ]\n"
          "    [ { UNION | INTERSECT | EXCEPT } [ ALL | DISTINCT ] select ]\n"
          "    [ ORDER BY expression [ ASC | DESC ] [ NULLS { FIRST | LAST } ] [, ...] ]\n"
          "    [ LIMIT { count | ALL } ] [ OFFSET start ]\n"
          "    [ FOR { UPDATE | SHARE } [ OF table_name [, ...] ] [ NOWAIT | SKIP LOCKED ] ]"),
    Topic("INSERT", "create new rows in a table",
          "[ WITH with_query [, ...] ]\n"
          "INSERT INTO table_name [ AS alias ] [ ( column_name [, ...] ) ]\n"
          "    { DEFAULT VALUES | VALUES ( { expression | DEFAULT } [, ...] ) [, ...] | query }\n"
          "    [ ON CONFLICT [ ( column_name [, ...] ) ] { DO NOTHING | DO UPDATE SET ... [ WHERE condition ] } ]\n"
          "    [ RETURNING * | output_expression [ [ AS ] output_name ] [, ...] ]"),
    Topic("UPDATE", "update rows of a table",
          "[ WITH with_query [, ...] ]\n"
          "UPDATE [ ONLY ] table_name [ [ AS ] alias ]\n"
          "    SET { column_name = { expression | DEFAULT } } [, ...]\n"
          "    [ FROM from_item [, ...] ]\n"
          "    [ WHERE condition ]\n"
          "    [ RETURNING * | output_expression [ [ AS ] output_name ] [, ...] ]"),
    Topic("DELETE", "delete rows of a table",
          "[ WITH with_query [, ...] ]\n"
          "DELETE FROM [ ONLY ] table_name [ [ AS ] alias ]\n"
          "    [ USING from_item [, ...] ]\n"
          "    [ WHERE condition ]\n"
          "    [ RETURNING * | output_expression [ [ AS ] output_name ] [, ...] ]"),
    Topic("MERGE", "conditionally insert, update, or delete rows of a table",
          "MERGE INTO target_table [ [ AS ] alias ] USING data_source ON join_condition\n"
          "    WHEN MATCHED [ AND condition ] THEN { UPDATE SET ... | DELETE | DO NOTHING }\n"
          "    WHEN NOT MATCHED [ AND condition ] THEN { INSERT ... | DO NOTHING } [...]"),
    Topic("CREATE TABLE", "define a new table (on the current branch)",
          "CREATE [ UNLOGGED ] TABLE [ IF NOT EXISTS ] table_name ( [\n"
          "  { column_name data_type [ DEFAULT expr ] [ NOT NULL | NULL ] [ PRIMARY KEY | UNIQUE ]\n"
          "    [ CHECK ( expression ) ] [ REFERENCES reftable [ ( refcolumn ) ] ]\n"
          "    | table_constraint } [, ... ] ] )\n"
          "CREATE TABLE table_name [ ( column_name [, ...] ) ] AS query [ WITH [ NO ] DATA ]"),
    Topic("ALTER TABLE", "change the definition of a table (on the current branch)",
          "ALTER TABLE [ IF EXISTS ] name action [, ... ]\n"
          "ALTER TABLE name RENAME [ COLUMN ] column_name TO new_column_name\n"
          "ALTER TABLE name RENAME TO new_name\n"
          "where action is one of:\n"
          "    ADD [ COLUMN ] [ IF NOT EXISTS ] column_name data_type [ column_constraint [ ... ] ]\n"
          "    DROP [ COLUMN ] [ IF EXISTS ] column_name [ RESTRICT | CASCADE ]\n"
          "    ALTER [ COLUMN ] column_name [ SET DATA ] TYPE data_type [ USING expression ]\n"
          "    ALTER [ COLUMN ] column_name { SET DEFAULT expression | DROP DEFAULT | { SET | DROP } NOT NULL }\n"
          "    ADD table_constraint\n"
          "    DROP CONSTRAINT [ IF EXISTS ] constraint_name [ RESTRICT | CASCADE ]"),
    Topic("DROP TABLE", "remove a table (from the current branch)",
          "DROP TABLE [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]"),
    Topic("TRUNCATE", "empty a table", "TRUNCATE [ TABLE ] [ ONLY ] name [, ... ] [ RESTART IDENTITY ] [ CASCADE ]"),
    Topic("CREATE INDEX", "define a new index",
          "CREATE [ UNIQUE ] INDEX [ CONCURRENTLY ] [ [ IF NOT EXISTS ] name ] ON [ ONLY ] table_name\n"
          "    [ USING method ] ( { column_name | ( expression ) } [ ASC | DESC ] [, ...] )\n"
          "    [ INCLUDE ( column_name [, ...] ) ] [ WHERE predicate ]"),
    Topic("DROP INDEX", "remove an index", "DROP INDEX [ CONCURRENTLY ] [ IF EXISTS ] name [, ...] [ CASCADE ]"),
    Topic("CREATE VIEW", "define a new view",
          "CREATE [ OR REPLACE ] [ TEMP | TEMPORARY ] [ RECURSIVE ] VIEW name [ ( column_name [, ...] ) ]\n"
          "    AS query [ WITH [ CASCADED | LOCAL ] CHECK OPTION ]"),
    Topic("DROP VIEW", "remove a view", "DROP VIEW [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]"),
    Topic("CREATE MATERIALIZED VIEW", "define a self-refreshing materialized view (HeliosDB options)",
          "CREATE MATERIALIZED VIEW [ IF NOT EXISTS ] name [ (column_name [, ...] ) ]\n"
          "    [ USING heap ] [ TABLESPACE pg_default ] AS query\n"
          "    [ WITH ( maintenance_strategy = incremental | deferred | on_demand | immediate,\n"
          "             max_cpu_percent = 0-100, staleness_threshold = 0.0-1.0,\n"
          "             max_staleness_seconds = 0-1000000000, priority = critical | high | medium | low ) ]\n"
          "    [ WITH [ NO ] DATA ]"),
    Topic("ALTER MATERIALIZED VIEW", "change a materialized view's options",
          "ALTER MATERIALIZED VIEW [ IF EXISTS ] name SET ( option = value [, ...] )\n"
          "ALTER MATERIALIZED VIEW [ IF EXISTS ] name RESET ( option [, ...] )"),
    Topic("REFRESH MATERIALIZED VIEW", "bring a materialized view up to date (incrementally when it can)",
          "REFRESH MATERIALIZED VIEW [ CONCURRENTLY ] name [ INCREMENTAL | FULL ] [ WITH [ NO ] DATA ]"),
    Topic("DROP MATERIALIZED VIEW", "remove materialized views",
          "DROP MATERIALIZED VIEW [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]"),
    Topic("CREATE SCHEMA", "define a new schema", "CREATE SCHEMA [ IF NOT EXISTS ] schema_name [ AUTHORIZATION role ]"),
    Topic("CREATE SEQUENCE", "define a new sequence generator",
          "CREATE [ TEMP ] SEQUENCE [ IF NOT EXISTS ] name [ INCREMENT [ BY ] increment ]\n"
          "    [ MINVALUE minvalue ] [ MAXVALUE maxvalue ] [ START [ WITH ] start ] [ CACHE cache ] [ [ NO ] CYCLE ]"),
    Topic("CREATE FUNCTION", "define a new function",
          "CREATE [ OR REPLACE ] FUNCTION name ( [ [ argmode ] [ argname ] argtype [ DEFAULT expr ] [, ...] ] )\n"
          "    [ RETURNS rettype | RETURNS TABLE ( column_name column_type [, ...] ) ]\n"
          "    LANGUAGE lang_name [ IMMUTABLE | STABLE | VOLATILE ] AS 'definition'"),
    Topic("CREATE DATABASE", "create a new database (with its own branches)", "CREATE DATABASE name"),
    Topic("CREATE ROLE", "define a new database role",
          "CREATE ROLE name [ [ WITH ] option [ ... ] ]\n"
          "where option can be: SUPERUSER | CREATEDB | CREATEROLE | LOGIN | PASSWORD 'password' | ..."),
    Topic("GRANT", "define access privileges",
          "GRANT { { SELECT | INSERT | UPDATE | DELETE | TRUNCATE | REFERENCES | TRIGGER } [, ...] | ALL }\n"
          "    ON { [ TABLE ] table_name [, ...] | ALL TABLES IN SCHEMA schema_name [, ...] }\n"
          "    TO role_specification [, ...] [ WITH GRANT OPTION ]"),
    Topic("REVOKE", "remove access privileges",
          "REVOKE { SELECT | INSERT | UPDATE | DELETE | ... | ALL } ON ... FROM role_specification [, ...]"),
    Topic("BEGIN", "start a transaction block",
          "BEGIN [ WORK | TRANSACTION ] [ ISOLATION LEVEL { SERIALIZABLE | REPEATABLE READ | READ COMMITTED }\n"
          "    | READ WRITE | READ ONLY ]"),
    Topic("START TRANSACTION", "start a transaction block", "START TRANSACTION [ transaction_mode [, ...] ]"),
    Topic("COMMIT", "commit the current transaction", "COMMIT [ WORK | TRANSACTION ] [ AND [ NO ] CHAIN ]"),
    Topic("ROLLBACK", "abort the current transaction", "ROLLBACK [ WORK | TRANSACTION ] [ AND [ NO ] CHAIN ]"),
    Topic("SAVEPOINT", "define a new savepoint within the current transaction", "SAVEPOINT savepoint_name"),
    Topic("RELEASE SAVEPOINT", "release a previously defined savepoint", "RELEASE [ SAVEPOINT ] savepoint_name"),
    Topic("ROLLBACK TO SAVEPOINT", "roll back to a savepoint", "ROLLBACK [ WORK | TRANSACTION ] TO [ SAVEPOINT ] name"),
    Topic("COPY", "copy data between a file and a table",
          "COPY table_name [ ( column_name [, ...] ) ] FROM { 'filename' | STDIN } [ [ WITH ] ( option [, ...] ) ]\n"
          "COPY { table_name [ ( column_name [, ...] ) ] | ( query ) } TO { 'filename' | STDOUT }\n"
          "    [ [ WITH ] ( option [, ...] ) ]"),
    Topic("EXPLAIN", "show the execution plan of a statement",
          "EXPLAIN [ ( option [, ...] ) ] statement\n"
          "where option can be: ANALYZE | VERBOSE | COSTS | BUFFERS | TIMING | SUMMARY | FORMAT { TEXT | JSON }"),
    Topic("VACUUM", "garbage-collect and optionally analyze a database",
          "VACUUM [ ( option [, ...] ) ] [ table_name [ (column_name [, ...] ) ] ] [, ...]"),
    Topic("ANALYZE", "collect statistics about a database", "ANALYZE [ VERBOSE ] [ table_name [ ( column_name [, ...] ) ] ]"),
    Topic("SET", "change a run-time parameter", "SET [ SESSION | LOCAL ] configuration_parameter { TO | = } { value | DEFAULT }"),
    Topic("SHOW", "show the value of a run-time parameter", "SHOW name\nSHOW ALL"),
    Topic("RESET", "restore a run-time parameter to its default", "RESET configuration_parameter\nRESET ALL"),
    Topic("PREPARE", "prepare a statement for execution", "PREPARE name [ ( data_type [, ...] ) ] AS statement"),
    Topic("EXECUTE", "execute a prepared statement", "EXECUTE name [ ( parameter [, ...] ) ]"),
    Topic("DEALLOCATE", "deallocate a prepared statement", "DEALLOCATE [ PREPARE ] { name | ALL }"),
    Topic("VALUES", "compute a set of rows", "VALUES ( expression [, ...] ) [, ...] [ ORDER BY ... ] [ LIMIT ... ]"),
    Topic("WITH", "common table expressions",
          "WITH [ RECURSIVE ] name [ ( column_name [, ...] ) ] AS ( query ) [, ...] statement"),
    Topic("COMMENT", "define or change the comment of an object", "COMMENT ON { TABLE | COLUMN | ... } object IS 'text'"),
]


def topic_names() -> list[str]:
    return sorted(t.name for t in TOPICS)


def find(query: str) -> list[Topic]:
    """Topics named by `query` (case-insensitive): an exact name, else names starting with it."""
    q = " ".join(query.upper().split()).rstrip(";")
    exact = [t for t in TOPICS if t.name == q]
    if exact:
        return exact
    return [t for t in TOPICS if t.name.startswith(q)]
