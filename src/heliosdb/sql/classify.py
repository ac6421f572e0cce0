"""Cheap statement classification: which statements need HeliosDB's attention.

Only the first few words are looked at (no parse on the hot path). Everything
not listed goes to PostgreSQL unchanged.
"""

from __future__ import annotations

import enum
import re

from heliosdb.sql.split import strip_comments


class Kind(enum.Enum):
    PASSTHROUGH = "passthrough"
    BRANCH = "branch"  # CREATE/ALTER/DROP DATABASE BRANCH, USE BRANCH, SHOW BRANCHES
    CREATE_TABLE = "create_table"
    DROP_TABLE = "drop_table"
    ALTER_TABLE = "alter_table"
    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    ALTER_INDEX = "alter_index"  # ALTER INDEX (RENAME TO: the index of a HeliosDB table)
    TRUNCATE = "truncate"
    COPY = "copy"
    MAINTENANCE = "maintenance"  # VACUUM / ANALYZE / REINDEX / CLUSTER naming tables
    SET_CONSTRAINTS = "set_constraints"  # SET CONSTRAINTS name, ...: the constraints of HeliosDB tables
    TRANSACTION = "transaction"  # BEGIN / COMMIT / ROLLBACK / ...
    MERGE = "merge"  # MERGE DATABASE BRANCH, conflict rule sets, COMPLETE / ABORT MERGE
    TEMPORAL = "temporal"  # SET AS OF / SHOW AS OF / FLASHBACK TABLE
    MVIEW = "mview"  # CREATE / ALTER / REFRESH / DROP MATERIALIZED VIEW, COMMENT ON MATERIALIZED VIEW
    VIEW_DDL = "view_ddl"  # DROP / ALTER VIEW: PostgreSQL's, refused on a materialized view
    ENGINE_SETTING = "engine_setting"  # SET / RESET heliosdb.*: the engine's own settings, refused


_RULES: list[tuple[re.Pattern[str], Kind]] = [
    (re.compile(r"^(CREATE|ALTER|DROP)\s+DATABASE\s+BRANCH\b"), Kind.BRANCH),
    (re.compile(r"^USE\s+BRANCH\b"), Kind.BRANCH),
    (re.compile(r"^SHOW\s+BRANCHES\b"), Kind.BRANCH),
    (re.compile(r"^MERGE\s+DATABASE\s+BRANCH\b"), Kind.MERGE),
    (re.compile(r"^(CREATE|DROP)\s+CONFLICT\s+RESOLUTION\b"), Kind.MERGE),
    (re.compile(r"^(COMPLETE|ABORT)\s+MERGE\b"), Kind.MERGE),
    (re.compile(r"^(SET|SHOW)\s+AS\s+OF\b"), Kind.TEMPORAL),
    (re.compile(r"^FLASHBACK\s+TABLE\b"), Kind.TEMPORAL),
    (re.compile(r"^(CREATE|ALTER|DROP|REFRESH)\s+MATERIALIZED\s+VIEW\b"), Kind.MVIEW),
    (re.compile(r"^COMMENT\s+ON\s+MATERIALIZED\s+VIEW\b"), Kind.MVIEW),
    (re.compile(r"^(DROP|ALTER)\s+VIEW\b"), Kind.VIEW_DDL),
    (re.compile(r"^CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY)\s"), Kind.PASSTHROUGH),
    (re.compile(r"^CREATE\s+(UNLOGGED\s+)?TABLE\b"), Kind.CREATE_TABLE),
    (re.compile(r"^DROP\s+TABLE\b"), Kind.DROP_TABLE),
    (re.compile(r"^ALTER\s+TABLE\b"), Kind.ALTER_TABLE),
    (re.compile(r"^CREATE\s+(UNIQUE\s+)?INDEX\b"), Kind.CREATE_INDEX),
    (re.compile(r"^DROP\s+INDEX\b"), Kind.DROP_INDEX),
    (re.compile(r"^ALTER\s+INDEX\b"), Kind.ALTER_INDEX),
    (re.compile(r"^TRUNCATE\b"), Kind.TRUNCATE),
    (re.compile(r"^COPY\b"), Kind.COPY),
    (re.compile(r"^(VACUUM|ANALYZE|ANALYSE|REINDEX|CLUSTER)\b"), Kind.MAINTENANCE),
    (re.compile(r"^SET\s+CONSTRAINTS\b"), Kind.SET_CONSTRAINTS),
    (re.compile(r"^(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b"),
     Kind.TRANSACTION),
]

_FIRST_WORDS = re.compile(r"[A-Za-z_]+(?:\s+[A-Za-z_]+){0,4}")


def head(sql: str) -> str:
    """The first words of a statement, upper-cased, comments skipped."""
    m = _FIRST_WORDS.match(strip_comments(sql))
    return m.group(0).upper() if m else ""


# First words that never start a statement HeliosDB handles: the hot path returns at once.
# A locking read: SELECT ... FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE (group 1: NOWAIT)
LOCKING_READ = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b(?:[^;]*?\b(NOWAIT)\b)?",
                          re.IGNORECASE)
_PLAIN = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "EXPLAIN", "TABLE", "EXECUTE",
          "DEALLOCATE", "FETCH", "CLOSE", "DECLARE", "LOCK", "NOTIFY", "LISTEN", "CALL", "DO", "GRANT", "REVOKE"}
_LEADING = re.compile(r"\s*([A-Za-z_]+)")


# heliosdb.branch, heliosdb.lsn_<branch>, heliosdb.mv_writer...: the session and the catalog's
# functions keep them; a user's SET would make them lie (current_branch() naming another branch).
ENGINE_SETTING = re.compile(r'\s*(?:SET|RESET)\s+(?:(?:SESSION|LOCAL)\s+)?("?heliosdb"?\s*\.\s*"?[A-Za-z0-9_$]*"?)',
                            re.IGNORECASE)


# set_config('heliosdb.<name>', ...) in a statement: SET by another name (group 1: the name)
ENGINE_SET_CONFIG = re.compile(r"\bset_config\s*\(\s*'\s*(heliosdb\s*\.[^']*)'", re.IGNORECASE)


def sets_engine_setting(sql: str) -> bool:
    """A statement calling set_config() on a heliosdb.* parameter (cheap when it calls no set_config)."""
    return "set_config" in sql.lower() and ENGINE_SET_CONFIG.search(sql) is not None


def classify(sql: str) -> Kind:
    m = _LEADING.match(sql)
    if m and m.group(1).upper() in _PLAIN:
        return Kind.ENGINE_SETTING if sets_engine_setting(sql) else Kind.PASSTHROUGH
    words = head(sql)
    if not words:
        return Kind.PASSTHROUGH
    if words.startswith(("SET ", "RESET ")) and ENGINE_SETTING.match(strip_comments(sql)):
        return Kind.ENGINE_SETTING
    for pattern, kind in _RULES:
        if pattern.match(words):
            return kind
    return Kind.PASSTHROUGH


_SCHEMA_CHANGE = re.compile(r"^(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|SECURITY\s+LABEL|IMPORT\s+FOREIGN|REASSIGN)\b")
# a temporary table or sequence; not a temporary view, which would read what it reads now for good
_TEMP_OBJECT = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY)\s+(?!VIEW\b)")


def changes_schema(sql: str) -> bool:
    """DDL, grants and comments: what a read-only transaction refuses (temporary tables aside)."""
    words = head(sql)
    return _SCHEMA_CHANGE.match(words) is not None and _TEMP_OBJECT.match(words) is None


_DETECT = re.compile(
    r"\bAS\s+OF\b|\bFOR\s+SYSTEM_TIME\b|\bVERSIONS\s+BETWEEN\b|\b(?:AT|BEFORE)\s*\(\s*(?:TIMESTAMP|OFFSET|LSN)\s*=>",
    re.IGNORECASE,
)




def has_temporal(sql: str) -> bool:
    """Cheap test: could the statement hold a time-travel clause? (no parse, no sqlglot import)"""
    # Every form _DETECT finds contains one of these words: testing them first costs a tenth of
    # the regular expression, and most statements contain none.
    low = sql.lower()
    if "of" not in low and "system_time" not in low and "versions" not in low and "=>" not in low:
        return False
    return _DETECT.search(sql) is not None


def is_stdio_copy(stmt: str) -> bool:
    """COPY ... FROM STDIN or TO STDOUT: data goes through the client, not one round trip."""
    start = stmt.lstrip()
    if start[:4].upper() != "COPY" and not start.startswith(("--", "/*")):
        return False
    if classify(stmt) is not Kind.COPY:
        return False
    words = strip_comments(stmt).upper().replace(";", " ").split()
    return "STDIN" in words or "STDOUT" in words


_INTO = re.compile(r"\binto\b", re.IGNORECASE)
_SELECT_ENDS = {"FROM", "WHERE", "GROUP", "HAVING", "WINDOW", "UNION", "INTERSECT", "EXCEPT", "ORDER", "LIMIT",
                "OFFSET", "FETCH", "FOR"}


def select_into_as_create(sql: str) -> str | None:
    """`SELECT ... INTO [UNLOGGED] [TABLE] name ...` as the CREATE TABLE ... AS it means (PostgreSQL's
    reading); None for anything else, and for INTO TEMP (a temporary table stays PostgreSQL's)."""
    m = _LEADING.match(sql)
    if not m or m.group(1).upper() not in ("SELECT", "WITH") or not _INTO.search(sql):
        return None
    from heliosdb.errors import Error
    from heliosdb.sql.names import tokenize

    try:
        toks = tokenize(sql)
    except Error:
        return None
    depth, in_select = 0, False
    for k, tok in enumerate(toks):
        word = "" if tok.token_type.name in ("STRING", "IDENTIFIER") else tok.text.upper()
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and word == "SELECT":
            in_select = True
        elif depth == 0 and in_select and word in _SELECT_ENDS:
            return None
        elif depth == 0 and in_select and word == "INTO":
            j, options = k + 1, ""
            while j < len(toks) and toks[j].text.upper() in ("TEMP", "TEMPORARY", "UNLOGGED", "TABLE"):
                if toks[j].text.upper() in ("TEMP", "TEMPORARY"):
                    return None
                options += "UNLOGGED " if toks[j].text.upper() == "UNLOGGED" else ""
                j += 1
            if j >= len(toks):
                return None
            end = j + 1
            while end + 1 < len(toks) and toks[end].text == ".":  # schema.name
                end += 2
            name = sql[toks[j].start:toks[end - 1].end + 1]
            rest = (sql[:tok.start] + sql[toks[end - 1].end + 1:]).strip().rstrip(";")
            return f"CREATE {options}TABLE {name} AS {rest}"
        elif depth == 0 and in_select is False and word in ("INSERT", "UPDATE", "DELETE", "MERGE"):
            return None
    return None
