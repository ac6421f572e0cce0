"""What to suggest at the cursor: a pure function of the text (after pgcli's sqlcompletion).

`suggest(before, after)` looks at the statement around the cursor and returns
the word being typed and the kinds of things that fit there (keywords, tables,
columns of the statement's tables, branches, LSNs, meta commands, ...). It
knows nothing about the database: heliosdb.shell.completer turns kinds into
names from the catalog.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from heliosdb.shell.commands import REGISTRY, ArgKind, Registry
from heliosdb.sql.split import Scanner


class Kind(enum.Enum):
    KEYWORD = "keyword"
    TABLE = "table"  # tables and views
    VIEW = "view"
    MVIEW = "materialized view"
    COLUMN = "column"
    FUNCTION = "function"
    SCHEMA = "schema"
    BRANCH = "branch"
    LSN = "lsn"
    META = "meta command"
    FILE = "file"
    HELP = "help topic"
    VARIABLE = "variable"


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    name: str
    alias: str | None = None
    versions: bool = False  # read through a range (VERSIONS BETWEEN): has the VERSIONS_* pseudo-columns


@dataclass(frozen=True)
class Suggestion:
    kind: Kind
    words: tuple[str, ...] = ()  # KEYWORD: these words only (empty: every keyword)
    tables: tuple[TableRef, ...] = ()  # COLUMN: columns of these tables
    schema: str | None = None  # TABLE/FUNCTION: qualified by this schema


@dataclass(frozen=True)
class Context:
    word: str  # the text before the cursor that a completion replaces
    suggestions: tuple[Suggestion, ...]


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))
  | (?P<string>[Ee]?'(?:[^']|'')*(?:'|$))
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?P=tag)?\$|$))
  | (?P<ident>"(?:[^"]|"")*(?:"|$))
  | (?P<number>\d+(?:\.\d*)?(?:/[0-9A-Fa-f]+)?)
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<op>::|<>|<=|>=|!=|=>|\|\||.)
""", re.VERBOSE | re.DOTALL)


@dataclass(frozen=True)
class Tok:
    kind: str  # word, ident, string, number, op, comment, dollar
    text: str

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text

    @property
    def name(self) -> str:
        """As an identifier: "Quoted" keeps its case, a bare word is folded to lower case."""
        if self.kind == "ident":
            return self.text[1:-1].replace('""', '"') if self.text.endswith('"') and len(self.text) > 1 \
                else self.text[1:]
        return self.text.lower()


def tokens(text: str) -> list[Tok]:
    return [Tok(m.lastgroup or "op", m.group(0)) for m in _TOKEN.finditer(text) if m.lastgroup != "ws"]


# -- keyword tables --------------------------------------------------------------------------------
STARTS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "ALTER", "DROP", "TRUNCATE", "BEGIN",
          "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "EXPLAIN", "ANALYZE", "VACUUM", "COPY", "GRANT",
          "REVOKE", "SET", "SHOW", "RESET", "USE", "MERGE", "FLASHBACK", "VALUES", "TABLE", "PREPARE",
          "EXECUTE", "DEALLOCATE", "COMPLETE", "ABORT", "REFRESH", "COMMENT", "START", "END", "CALL", "DO")
AS_OF = ("TIMESTAMP", "LSN", "SCN", "TRANSACTION", "BRANCH", "SYSTEM_TIME", "NOW")
_POINTS = ("LSN", "SCN", "TIMESTAMP", "TRANSACTION")
HELIOS_WORDS = ("BRANCH", "BRANCHES", "LSN", "SCN", "SYSTEM_TIME", "FLASHBACK", "VERSIONS", "MINVALUE", "MAXVALUE",
                "READ_ONLY", "WRITABLE", "STORAGE", "NODE", "COMPUTE", "ENDPOINT", "OPTIONS", "STRATEGY",
                "CONFLICT", "RESOLUTION", "DRY", "RUN", "NOW", "OFFSET")

# Exact statement prefixes (upper-cased words) -> the words that may follow.
_NEXT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("CREATE",): ("TABLE", "DATABASE BRANCH", "DATABASE", "INDEX", "UNIQUE INDEX", "VIEW", "OR REPLACE",
                  "MATERIALIZED VIEW", "SCHEMA", "SEQUENCE", "FUNCTION", "ROLE", "TEMP", "CONFLICT RESOLUTION"),
    ("CREATE", "DATABASE"): ("BRANCH",),
    ("DROP",): ("TABLE", "DATABASE BRANCH", "INDEX", "VIEW", "MATERIALIZED VIEW", "SCHEMA", "SEQUENCE",
                "FUNCTION", "ROLE", "CONFLICT RESOLUTION"),
    ("DROP", "DATABASE"): ("BRANCH",),
    ("ALTER",): ("TABLE", "DATABASE BRANCH", "INDEX", "VIEW", "SEQUENCE", "ROLE"),
    ("ALTER", "DATABASE"): ("BRANCH",),
    ("MERGE",): ("DATABASE BRANCH", "INTO"),
    ("MERGE", "DATABASE"): ("BRANCH",),
    ("USE",): ("BRANCH",),
    ("SHOW",): ("BRANCHES", "AS OF", "ALL"),
    ("SET",): ("AS OF",),
    ("SET", "AS"): ("OF",),
    ("SHOW", "AS"): ("OF",),
    ("FLASHBACK",): ("TABLE",),
    ("REFRESH",): ("MATERIALIZED VIEW",),
    ("REFRESH", "MATERIALIZED"): ("VIEW",),
    ("COMPLETE",): ("MERGE",),
    ("ABORT",): ("MERGE",),
    ("DELETE",): ("FROM",),
    ("INSERT",): ("INTO",),
}
_AFTER_BRANCH_NAME = {
    "CREATE": ("FROM", "AS OF", "ON STORAGE NODE", "WITH COMPUTE ENDPOINT", "OPTIONS"),
    "ALTER": ("SET READ_ONLY", "SET WRITABLE", "SET OPTIONS"),
    "DROP": ("CASCADE",),
    "USE": ("FOR SESSION", "FOR TRANSACTION", "AS OF"),
    "MERGE": ("INTO",),
}
_TABLE_AFTER = {"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "TRUNCATE", "COPY", "ONLY"}
_COLUMN_AFTER = {"SELECT", "WHERE", "ON", "BY", "HAVING", "SET", "AND", "OR", "NOT", "RETURNING", "DISTINCT",
                 "WHEN", "THEN", "ELSE", "CASE", "USING", "=", "<", ">", "<=", ">=", "<>", "!=", "+", "-", "*",
                 "/", "(", ",", "||", "IN", "LIKE", "ILIKE", "BETWEEN", "IS"}
_CLAUSES = {"SELECT", "FROM", "WHERE", "JOIN", "ON", "BY", "HAVING", "SET", "INTO", "VALUES", "RETURNING",
            "UPDATE", "USING", "LIMIT", "OFFSET", "WINDOW", "TABLE"}
_NOT_ALIAS = {"WHERE", "JOIN", "ON", "LEFT", "RIGHT", "INNER", "OUTER", "FULL", "CROSS", "NATURAL", "GROUP",
              "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "EXCEPT", "INTERSECT", "SET", "USING", "AS", "FOR",
              "VERSIONS", "AT", "BEFORE", "VERSION", "TIMESTAMP", "RETURNING", "VALUES", "SELECT", "DEFAULT",
              "WINDOW", "FETCH", "LATERAL", "TABLESAMPLE", "ONLY", "OVERRIDING"}


def _kw(*words: str) -> tuple[Suggestion, ...]:
    return (Suggestion(Kind.KEYWORD, tuple(words)),)


# -- the statement around the cursor ---------------------------------------------------------------
def _current_statement(before: str, after: str) -> tuple[str, str]:
    """(text of the current statement before the cursor, the whole current statement)."""
    _, rest, _ = Scanner.scan(before)
    stmts, tail, _ = Scanner.scan(rest + after)
    return rest, (stmts[0] if stmts else tail)


def referenced_tables(toks: list[Tok]) -> tuple[TableRef, ...]:
    """Tables named after FROM / JOIN / UPDATE / INTO / TABLE (and commas of a FROM list), with aliases."""
    out: list[TableRef] = []
    i, n = 0, len(toks)
    in_from = False
    while i < n:
        t = toks[i]
        if t.kind == "word" and t.up in _CLAUSES:
            in_from = t.up in ("FROM", "JOIN", "UPDATE", "INTO", "TABLE", "USING")
        starts = (t.kind == "word" and t.up in ("FROM", "JOIN", "UPDATE", "INTO", "TABLE", "USING")) or \
            (t.text == "," and in_from)
        if not starts or i + 1 >= n or toks[i + 1].kind not in ("word", "ident"):
            i += 1
            continue
        if toks[i + 1].kind == "word" and toks[i + 1].up in ("ONLY", "LATERAL", "SELECT"):
            i += 1
            continue
        j = i + 1
        schema, name = None, toks[j].name
        if j + 2 < n and toks[j + 1].text == "." and toks[j + 2].kind in ("word", "ident"):
            schema, name, j = name, toks[j + 2].name, j + 2
        j, versions = skip_time_travel(toks, j + 1)
        alias = None
        if j < n and toks[j].up == "AS" and j + 1 < n and toks[j + 1].kind in ("word", "ident"):
            alias = toks[j + 1].name
        elif j < n and toks[j].kind in ("word", "ident") and toks[j].up not in _NOT_ALIAS:
            alias = toks[j].name
        out.append(TableRef(schema, name, alias, versions))
        i = j
    return tuple(out)


# -- time-travel clauses after a table name (the forms heliosdb.sql.temporal parses, read leniently:
# the statement is still being typed, so nothing here may fail) ----------------------------------------
_TYPE_PREFIX = {"INTERVAL", "TIMESTAMP", "TIMESTAMPTZ", "DATE", "TIME", "TIMETZ"}
_EXPR_OPS = {"+", "-", "*", "/", "%", "||"}
_POINT_WORDS = {"LSN", "TIMESTAMP", "SCN", "TRANSACTION", "SYSTEM_TIME"}


def _word_at(toks: list[Tok], j: int) -> str:
    return toks[j].up if j < len(toks) and toks[j].kind == "word" else ""


def _skip_parens(toks: list[Tok], j: int) -> int:
    """Past the parenthesised group opening at j (to the end when it is not closed yet)."""
    depth = 0
    while j < len(toks):
        depth += (toks[j].text == "(") - (toks[j].text == ")")
        j += 1
        if depth == 0:
            break
    return j


def _skip_operand(toks: list[Tok], j: int) -> int:
    n = len(toks)
    while j < n and toks[j].text in ("+", "-"):
        j += 1
    if j >= n:
        return j
    t = toks[j]
    if t.up in _TYPE_PREFIX and j + 1 < n and toks[j + 1].kind == "string":  # interval '1 hour'
        return j + 2
    if t.text == "(":
        return _skip_parens(toks, j)
    if t.up == "CASE":
        depth = 0
        while j < n:
            depth += (_word_at(toks, j) == "CASE") - (_word_at(toks, j) == "END")
            j += 1
            if depth == 0:
                break
        return j
    j += 1
    if t.kind in ("word", "ident"):
        while j + 1 < n and toks[j].text == "." and toks[j + 1].kind in ("word", "ident"):
            j += 2
        if j < n and toks[j].text == "(":
            j = _skip_parens(toks, j)
    return j


def _skip_type(toks: list[Tok], j: int) -> int:
    """Past the type name after `::` (timestamp with time zone, numeric(10,2), int[])."""
    j += 1
    while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind in ("word", "ident"):
        j += 2
    if j < len(toks) and toks[j].text == "(":
        j = _skip_parens(toks, j)
    if _word_at(toks, j) in ("WITH", "WITHOUT") and _word_at(toks, j + 1) == "TIME" and _word_at(toks, j + 2) == "ZONE":
        j += 3
    while j + 1 < len(toks) and toks[j].text == "[" and toks[j + 1].text == "]":
        j += 2
    return j


def _skip_expr(toks: list[Tok], j: int) -> int:
    """Past one scalar expression (a point's value): operands joined by operators, casts, AT TIME ZONE."""
    while j < len(toks):
        j = _skip_operand(toks, j)
        while j < len(toks) and toks[j].text == "::":
            j = _skip_type(toks, j + 1)
        if j < len(toks) and toks[j].text in _EXPR_OPS:
            j += 1
        elif _word_at(toks, j) == "AT" and _word_at(toks, j + 1) == "TIME" and _word_at(toks, j + 2) == "ZONE":
            j += 3
        else:
            break
    return j


def _skip_point(toks: list[Tok], j: int) -> int:
    if _word_at(toks, j) == "NOW":
        return j + 1
    if _word_at(toks, j) in _POINT_WORDS:
        return _skip_expr(toks, j + 1)
    return j


def _skip_range_bound(toks: list[Tok], j: int, word: str) -> int:
    return j + 1 if _word_at(toks, j) == word else _skip_expr(toks, j)


def skip_time_travel(toks: list[Tok], j: int) -> tuple[int, bool]:
    """Past a time-travel clause starting at j, if there is one: (index after it, whether it is a range
    with the VERSIONS_* pseudo-columns)."""
    w0, w1, w2 = _word_at(toks, j), _word_at(toks, j + 1), _word_at(toks, j + 2)
    if (w0, w1) == ("AS", "OF"):
        if w2 != "BRANCH":
            return _skip_point(toks, j + 2), False
        j += 4  # AS OF BRANCH name
        return (_skip_point(toks, j + 1) if _word_at(toks, j) == "AT" else j), False
    if (w0, w1) == ("FOR", "SYSTEM_TIME"):
        j += 2
        w = _word_at(toks, j)
        if w == "AS" and _word_at(toks, j + 1) == "OF":
            return _skip_expr(toks, j + 2), False
        if w in ("FROM", "BETWEEN"):
            j = _skip_expr(toks, j + 1)
            return (_skip_expr(toks, j + 1) if _word_at(toks, j) in ("TO", "AND") else j), True
        if w == "CONTAINED" and _word_at(toks, j + 1) == "IN":
            return _skip_parens(toks, j + 2), True
        return j + (w == "ALL"), True
    if w0 in ("AT", "BEFORE") and j + 1 < len(toks) and toks[j + 1].text == "(":
        return _skip_parens(toks, j + 1), False
    if (w0, w1, w2) in (("VERSION", "AS", "OF"), ("TIMESTAMP", "AS", "OF")):
        return _skip_expr(toks, j + 3), False
    if (w0, w1) == ("VERSIONS", "BETWEEN"):
        j = _skip_range_bound(toks, j + 3, "MINVALUE")  # past the bound kind (SCN, TIMESTAMP, LSN)
        if _word_at(toks, j) == "AND":
            j = _skip_range_bound(toks, j + 1, "MAXVALUE")
        return j, True
    return j, False


def _clause(prev: list[Tok]) -> str | None:
    """The innermost clause keyword before the cursor (skipping parenthesised parts)."""
    depth = 0
    for t in reversed(prev):
        if t.text == ")":
            depth += 1
        elif t.text == "(":
            if depth == 0:
                return "("
            depth -= 1
        elif depth == 0 and t.kind == "word" and t.up in _CLAUSES:
            return t.up
    return None


def _meta(line: str, registry: Registry) -> Context:
    stripped = line.lstrip()
    parts = stripped.split()
    ends_space = stripped != stripped.rstrip() or not parts
    if len(parts) <= 1 and not ends_space:
        return Context(stripped, (Suggestion(Kind.META),))
    word = "" if ends_space else parts[-1]
    done = parts if ends_space else parts[:-1]
    subs = registry.subcommands(done[0])
    if len(done) == 1 and subs:
        extra: tuple[Suggestion, ...] = ()
        base = registry.commands.get(done[0])
        if base is not None and base.args:
            extra = _arg_suggestion(base.args[0].kind, base.args[0].choices)
        return Context(word, (Suggestion(Kind.KEYWORD, tuple(subs)), *extra))
    cmd, used = registry.find(done[:2])
    if cmd is None or not cmd.args:
        return Context(word, ())
    index = len(done) - used
    if index >= len(cmd.args):
        if not cmd.args[-1].rest:
            return Context(word, ())
        index = len(cmd.args) - 1
    arg = cmd.args[index]
    return Context(word, _arg_suggestion(arg.kind, arg.choices))


def _arg_suggestion(kind: ArgKind, choices: tuple[str, ...]) -> tuple[Suggestion, ...]:
    return {
        ArgKind.BRANCH: (Suggestion(Kind.BRANCH),),
        ArgKind.TABLE: (Suggestion(Kind.TABLE),),
        ArgKind.RELATION: (Suggestion(Kind.TABLE),),
        ArgKind.PATTERN: (Suggestion(Kind.TABLE),),
        ArgKind.VIEW: (Suggestion(Kind.VIEW),),
        ArgKind.MVIEW: (Suggestion(Kind.MVIEW),),
        ArgKind.FILE: (Suggestion(Kind.FILE),),
        ArgKind.STATEMENT: (Suggestion(Kind.HELP),),
        ArgKind.VARIABLE: (Suggestion(Kind.VARIABLE),),
        ArgKind.CHOICE: (Suggestion(Kind.KEYWORD, choices),),
    }.get(kind, ())


def _unterminated(t: Tok) -> bool:
    """Whether the cursor is inside this (last) token: a string, comment or dollar quote still open."""
    if t.kind == "string":
        body = t.text[1:] if t.text[:1] in "Ee" else t.text
        return len(body) < 2 or not body.endswith("'")
    if t.kind == "comment":
        return not (t.text.endswith("\n") or (t.text.startswith("/*") and t.text.endswith("*/") and len(t.text) > 3))
    if t.kind == "dollar":
        m = re.match(r"\$\w*\$", t.text)
        return m is None or len(t.text) < 2 * len(m.group(0)) or not t.text.endswith(m.group(0))
    return False


# \Z, not $: $ also matches before a final newline, and would take the previous line's last word
_PARTIAL = re.compile(r'(?:(?P<q>[A-Za-z_][\w$]*|"(?:[^"]|"")*")\.)?(?P<w>"(?:[^"]|"")*|[A-Za-z_][\w$]*|\d[\w/]*)?\Z')


def _partial(current: str) -> re.Match[str]:
    """The (qualified) word at the end, starting at a token boundary: searched anywhere, a quote that
    closes an identifier (`AS OF BRANCH "x" AT ...`) would look like one that opens a word."""
    for pos in [m.start() for m in _TOKEN.finditer(current)][-3:]:
        m = _PARTIAL.match(current, pos)
        if m is not None:
            return m
    m = _PARTIAL.match(current, len(current))  # an empty word
    assert m is not None
    return m


def suggest(before: str, after: str = "", registry: Registry = REGISTRY) -> Context:
    """What fits at the cursor, given the buffer text before and after it."""
    line = before.rsplit("\n", 1)[-1]
    if line.lstrip().startswith("\\"):
        return _meta(line, registry)
    current, whole = _current_statement(before, after)
    toks = tokens(current)
    if toks and _unterminated(toks[-1]):
        return Context("", ())
    m = _partial(current)
    word = m.group("w") or ""
    qual_tok = m.group("q")
    head = current[: m.start()]
    prev = [t for t in tokens(head) if t.kind != "comment"]
    qualifier = tokens(qual_tok)[0].name if qual_tok else None
    if word[:1].isdigit() and not (prev and prev[-1].up == "LSN"):
        return Context(word, ())
    return Context(word, _sql(prev, qualifier, tokens(whole)))


def _sql(prev: list[Tok], qualifier: str | None, whole: list[Tok]) -> tuple[Suggestion, ...]:
    ups = [t.up for t in prev]
    p1 = ups[-1] if ups else ""
    p2 = ups[-2] if len(ups) > 1 else ""
    p3 = ups[-3] if len(ups) > 2 else ""
    tables = referenced_tables([t for t in whole if t.kind != "comment"])
    if qualifier is not None:
        if any(qualifier in (t.alias, t.name) for t in tables) and p1 not in _TABLE_AFTER:
            hits = tuple(t for t in tables if qualifier in (t.alias, t.name))
            return (Suggestion(Kind.COLUMN, tables=hits),)
        return (Suggestion(Kind.TABLE, schema=qualifier), Suggestion(Kind.FUNCTION, schema=qualifier))
    if not ups:
        return _kw(*STARTS)
    if tuple(ups) in _NEXT:
        return _kw(*_NEXT[tuple(ups)])
    first = ups[0]
    # LSNs from the timeline
    if p1 == "LSN" and p2 in ("OF", "AT", "TO", "BETWEEN", "AND"):
        return (Suggestion(Kind.LSN),)
    if (p1, p2, p3) == ("OF", "AS", "VERSION"):
        return (Suggestion(Kind.LSN),)
    if (p2, p1) == ("AS", "OF"):
        return _kw(*AS_OF)
    if p1 in ("TO", "AT") and (first == "FLASHBACK" or p3 == "BRANCH"):
        return _kw(*_POINTS)
    # branch names
    if p1 == "BRANCH" and (p2 in ("USE", "OF") or (p2 == "DATABASE" and p3 in ("DROP", "ALTER", "MERGE"))):
        return (Suggestion(Kind.BRANCH),)
    if ups[:3] == ["DROP", "DATABASE", "BRANCH"] and ups[3:] == ["IF", "EXISTS"]:
        return (Suggestion(Kind.BRANCH),)
    if ups[:3] == ["CREATE", "DATABASE", "BRANCH"]:
        if p1 == "FROM":
            return (Suggestion(Kind.BRANCH),)
        if len(ups) == 3:
            return _kw("IF NOT EXISTS")
    if ups[:3] == ["MERGE", "DATABASE", "BRANCH"] and p1 == "INTO":
        return (Suggestion(Kind.BRANCH),)
    if ups[:3] == ["MERGE", "DATABASE", "BRANCH"] and (p2, p1) == ("USING", "STRATEGY"):
        return _kw("ABORT", "OURS", "THEIRS", "MANUAL", "RULE_BASED", "LAST_WRITE_WINS", "CUSTOM")
    if p2 == "BRANCH" and p1 not in ("IF",) and prev[-1].kind in ("word", "ident") and first in _AFTER_BRANCH_NAME:
        return _kw(*_AFTER_BRANCH_NAME[first])
    if first == "MERGE" and ups[:2] == ["MERGE", "DATABASE"] and "INTO" in ups[3:-1]:
        return _kw("USING STRATEGY", "WITH CONFLICT RESOLUTION", "DRY RUN", "OPTIONS")
    # views
    if p1 == "VIEW" and (p2 in ("MATERIALIZED",) and p3 == "REFRESH"):
        return (Suggestion(Kind.MVIEW), *_kw("CONCURRENTLY"))
    if p1 == "CONCURRENTLY" and "REFRESH" in ups:
        return (Suggestion(Kind.MVIEW),)
    if p1 == "VIEW" and p2 in ("DROP", "ALTER"):
        return (Suggestion(Kind.VIEW),)
    if p1 == "VIEW" and p2 == "MATERIALIZED" and p3 == "DROP":
        return (Suggestion(Kind.MVIEW),)
    # tables
    if p1 in _TABLE_AFTER and not (p1 == "TABLE" and p2 in ("CREATE", "TEMP", "TEMPORARY", "UNLOGGED")) and \
            not (p1 == "FROM" and first == "CREATE" and "BRANCH" in ups[:3]):
        if p1 == "INTO" and first == "SELECT":
            return ()
        return (Suggestion(Kind.TABLE), Suggestion(Kind.SCHEMA))
    if p1 == "," and _clause(prev) in ("FROM", "JOIN"):
        return (Suggestion(Kind.TABLE), Suggestion(Kind.SCHEMA))
    if p1 == "EXISTS" and p2 == "IF" and p3 in ("TABLE", "VIEW"):
        return (Suggestion(Kind.TABLE if p3 == "TABLE" else Kind.VIEW),)
    # INSERT INTO t (col, ...
    if first == "INSERT" and _clause(prev) == "(" and "VALUES" not in ups and "SELECT" not in ups:
        into = [t for t in tables]
        return (Suggestion(Kind.COLUMN, tables=tuple(into[:1])),)
    # after a table name: what may follow it
    if len(ups) >= 2 and p2 in ("FROM", "JOIN") and prev[-1].kind in ("word", "ident"):
        return _kw("WHERE", "JOIN", "LEFT JOIN", "INNER JOIN", "ON", "AS OF", "FOR SYSTEM_TIME", "VERSIONS BETWEEN",
                   "GROUP BY", "ORDER BY", "LIMIT", "AS")
    # columns
    if p1 in _COLUMN_AFTER or (p1 == "BY" and p2 in ("ORDER", "GROUP", "PARTITION")):
        if p1 == "(" and p2 in _TABLE_AFTER:
            return ()
        return (Suggestion(Kind.COLUMN, tables=tables), Suggestion(Kind.FUNCTION), Suggestion(Kind.KEYWORD))
    return (Suggestion(Kind.KEYWORD),)
