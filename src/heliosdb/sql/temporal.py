"""Time-travel clauses on table references, found token by token.

Accepted after a table name (each table in a query may have its own point):

    AS OF { NOW | TIMESTAMP e | LSN l | SCN n | TRANSACTION x | SYSTEM_TIME e
          | BRANCH b [AT { LSN l | TIMESTAMP e | SCN n | TRANSACTION x }] }
    FOR SYSTEM_TIME AS OF e
    FOR SYSTEM_TIME { FROM a TO b | BETWEEN a AND b | CONTAINED IN (a, b) | ALL }
    AT ( TIMESTAMP => e | OFFSET => seconds | LSN => l )      BEFORE ( ... )
    VERSION AS OF l | TIMESTAMP AS OF e
    VERSIONS BETWEEN { SCN | TIMESTAMP | LSN } { a | MINVALUE } AND { b | MAXVALUE }

find_clauses() returns where each clause is, as written; resolving points and
rewriting the query is heliosdb.temporal's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot.tokens import Token, TokenType

from heliosdb.errors import SyntaxError as HeliosSyntaxError
from heliosdb.sql.classify import has_temporal  # noqa: F401 - the cheap test lives beside classify
from heliosdb.sql.names import Name, read_name, tokenize

_LSN_TEXT = re.compile(r"\s*('?)([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}|\d+)\1(?![\w/$])")  # not a prefix of a longer word
# A bound parameter as psycopg writes it into the text (`AS OF SCN %s` through the wire endpoint): ('2'::int8)
_TYPED_VALUE = re.compile(r"""\s*\(\s*'([^']*)'::[\w."\[\] ]+?\s*\)""")


def typed_value(text: str) -> str:
    """`('v'::type)` as v; any other text as it is."""
    m = _TYPED_VALUE.fullmatch(text)
    return m.group(1) if m else text
_NAME_TYPES = (TokenType.VAR, TokenType.IDENTIFIER)
_BEFORE_TABLE = {"FROM", "JOIN", ",", "UPDATE", "INTO", "TABLE", "ONLY", "USING"}
_OPERATORS = {
    TokenType.PLUS, TokenType.DASH, TokenType.STAR, TokenType.SLASH, TokenType.DPIPE, TokenType.MOD,
}
_TYPE_PREFIX = {"INTERVAL", "TIMESTAMP", "TIMESTAMPTZ", "DATE", "TIME", "TIMETZ"}


@dataclass(frozen=True)
class Point:
    kind: str  # NOW, LSN, TIMESTAMP, SCN, TRANSACTION, OFFSET
    value: str | None = None
    before: bool = False  # Snowflake BEFORE(...): strictly before the point


@dataclass(frozen=True)
class Range:
    """A VERSIONS / FOR SYSTEM_TIME range; None bounds are MINVALUE / MAXVALUE."""

    kind: str  # SCN, TIMESTAMP, LSN
    low: str | None
    high: str | None
    mode: str = "BETWEEN"  # BETWEEN (closed), FROM (half-open), CONTAINED, ALL
    system_time: bool = False  # FOR SYSTEM_TIME (SQL:2011): one row per version, no Oracle 'D' rows


@dataclass(frozen=True)
class Clause:
    name: Name  # the table
    start: int  # text offset where the table name starts
    end: int  # text offset just past the clause
    alias: str | None  # alias written after the clause, if any
    branch: str | None = None
    point: Point | None = None
    range: Range | None = None


class _Scan:
    def __init__(self, sql: str, tokens: list[Token]) -> None:
        self.sql = sql
        self.t = tokens
        self.i = 0

    def word(self, k: int = 0) -> str:
        j = self.i + k
        if j >= len(self.t) or self.t[j].token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            return ""
        return self.t[j].text.upper()

    def accept(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def error(self, what: str) -> HeliosSyntaxError:
        pos = self.t[self.i].start if self.i < len(self.t) else len(self.sql)
        line = self.sql.count("\n", 0, pos) + 1
        col = pos - (self.sql.rfind("\n", 0, pos) + 1) + 1
        near = f'"{self.t[self.i].text}"' if self.i < len(self.t) else "end of input"
        return HeliosSyntaxError(f"syntax error at or near {near}: {what} (line {line}, column {col})", position=pos + 1)

    def offset(self) -> int:
        return self.t[self.i].start if self.i < len(self.t) else len(self.sql)

    def lsn(self) -> str:
        if self.i + 1 < len(self.t) and self.t[self.i].token_type == TokenType.PARAMETER \
                and self.sql[self.offset()] == "$":  # $n of a PREPAREd statement: its value comes at EXECUTE
            self.i += 2
            return self.sql[self.t[self.i - 2].start : self.t[self.i - 1].end + 1]
        typed = _TYPED_VALUE.match(self.sql, self.offset())
        if typed and _LSN_TEXT.fullmatch(typed.group(1)):
            while self.i < len(self.t) and self.t[self.i].start < typed.end():
                self.i += 1
            return _LSN_TEXT.fullmatch(typed.group(1)).group(2)  # type: ignore[union-attr]
        m = _LSN_TEXT.match(self.sql, self.offset())
        if not m:
            raise self.error("expected an LSN (X/XXXXXXXX or an integer)")
        end = m.end()
        while self.i < len(self.t) and self.t[self.i].start < end:
            self.i += 1
        return m.group(2)

    def expr(self, stop: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        """Source text of one scalar expression."""
        if self.i >= len(self.t):
            raise self.error("expected an expression")
        start = self.offset()
        expect_operand = True
        end = start
        while self.i < len(self.t):
            tok = self.t[self.i]
            tt = tok.token_type
            up = tok.text.upper() if tt not in (TokenType.STRING, TokenType.IDENTIFIER) else ""
            if expect_operand:
                if up in _TYPE_PREFIX and self.i + 1 < len(self.t) and self.t[self.i + 1].token_type == TokenType.STRING:
                    self.i += 1
                    continue
                if tt == TokenType.L_PAREN:
                    self._skip_parens()
                elif up == "CASE":
                    self._skip_case()
                elif tt in (TokenType.DASH, TokenType.PLUS):
                    self.i += 1
                    continue
                elif tt == TokenType.PARAMETER:
                    self.i += 2 if self.i + 1 < len(self.t) and self.t[self.i + 1].token_type == TokenType.NUMBER else 1
                else:
                    self.i += 1
                    # schema-qualified names: heliosdb.scn_to_timestamp(...)
                    while (tt in (TokenType.VAR, TokenType.IDENTIFIER) and self.i + 1 < len(self.t)
                           and self.t[self.i].token_type == TokenType.DOT):
                        self.i += 2
                    if self.i < len(self.t) and self.t[self.i].token_type == TokenType.L_PAREN and (
                            tt in (TokenType.VAR, TokenType.IDENTIFIER) or up in ("NOW", "CAST")):
                        self._skip_parens()
                end = self.t[self.i - 1].end + 1
                expect_operand = False
                continue
            if tt in _OPERATORS and up not in stop:
                expect_operand = True
                self.i += 1
                continue
            if up == "AT" and self.word(1) == "TIME" and self.word(2) == "ZONE":  # x AT TIME ZONE 'UTC'
                expect_operand = True
                self.i += 3
                continue
            if tt == TokenType.DCOLON:
                self.i += 1
                # a type name, possibly with (n) or two words (timestamp with time zone)
                while self.i < len(self.t) and self.t[self.i].token_type not in (
                    TokenType.COMMA, TokenType.R_PAREN) and self.word() not in stop and not self._clause_word():
                    self.i += 1
                    end = self.t[self.i - 1].end + 1
                    if self.word() in ("WITH", "WITHOUT"):
                        continue
                    break
                continue
            break
        if expect_operand:
            raise self.error("expected an expression")
        return self.sql[start:end].strip()

    def _clause_word(self) -> bool:
        return self.word() in ("WHERE", "JOIN", "ON", "AND", "TO", "GROUP", "ORDER", "LIMIT")

    def _skip_case(self) -> None:
        """Past CASE ... END (nested ones too)."""
        depth = 0
        while self.i < len(self.t):
            w = self.word()
            depth += (w == "CASE") - (w == "END")
            self.i += 1
            if depth == 0:
                return
        raise self.error("expected END")

    def _skip_parens(self) -> None:
        depth = 0
        while self.i < len(self.t):
            tt = self.t[self.i].token_type
            depth += tt == TokenType.L_PAREN
            depth -= tt == TokenType.R_PAREN
            self.i += 1
            if depth == 0:
                return
        raise self.error("unbalanced parentheses")

    def point(self, expected: str = "NOW, TIMESTAMP, LSN, SCN, TRANSACTION, SYSTEM_TIME or BRANCH") -> Point:
        """expected: the words the error lists where no point starts."""
        if self.accept("NOW"):
            return Point("NOW")
        if self.accept("LSN"):
            return Point("LSN", self.lsn())
        if self.accept("TIMESTAMP") or self.accept("SYSTEM_TIME"):
            return Point("TIMESTAMP", self.expr())
        if self.accept("SCN"):
            return Point("SCN", self.expr())
        if self.accept("TRANSACTION"):
            return Point("TRANSACTION", self.expr())
        raise self.error("expected " + expected)

    def arrow_point(self, before: bool) -> Point:
        if not self.accept("("):
            raise self.error("expected (")
        kind = self.word()
        if kind not in ("TIMESTAMP", "OFFSET", "LSN"):
            raise self.error("expected TIMESTAMP, OFFSET or LSN")
        self.i += 1
        if self.i >= len(self.t) or self.t[self.i].token_type != TokenType.FARROW:
            raise self.error("expected =>")
        self.i += 1
        value = self.lsn() if kind == "LSN" else self.expr()
        if not self.accept(")"):
            raise self.error("expected )")
        return Point(kind, value, before)

    def bound(self, kind: str, maxword: str, stop: set[str]) -> str | None:
        if self.accept(maxword):
            return None
        return self.lsn() if kind == "LSN" else self.expr(stop)

    def clause(self) -> tuple[str | None, Point | None, Range | None] | None:
        """Parse a clause at the cursor, or None (cursor unchanged) if there is none."""
        save = self.i
        if self.accept("AS", "OF"):
            if self.accept("BRANCH"):
                if self.i >= len(self.t):
                    raise self.error("expected a branch name")
                tok = self.t[self.i]
                branch = tok.text if tok.token_type in (TokenType.STRING, TokenType.IDENTIFIER) else tok.text.lower()
                self.i += 1
                point = self.point("NOW, TIMESTAMP, LSN, SCN or TRANSACTION") if self.accept("AT") else None
                return branch, point, None
            return None, self.point(), None
        if self.accept("FOR", "SYSTEM_TIME"):
            if self.accept("AS", "OF"):
                return None, Point("TIMESTAMP", self.expr()), None
            if self.accept("ALL"):
                return None, None, Range("TIMESTAMP", None, None, "ALL", system_time=True)
            if self.accept("FROM"):
                low = self.expr({"TO"})
                if not self.accept("TO"):
                    raise self.error("expected TO")
                return None, None, Range("TIMESTAMP", low, self.expr(), "FROM", system_time=True)
            if self.accept("BETWEEN"):
                low = self.expr({"AND"})
                if not self.accept("AND"):
                    raise self.error("expected AND")
                return None, None, Range("TIMESTAMP", low, self.expr(), "BETWEEN", system_time=True)
            if self.accept("CONTAINED", "IN"):
                if not self.accept("("):
                    raise self.error("expected (")
                low = self.expr()
                if not self.accept(","):
                    raise self.error("expected ,")
                high = self.expr()
                if not self.accept(")"):
                    raise self.error("expected )")
                return None, None, Range("TIMESTAMP", low, high, "CONTAINED", system_time=True)
            raise self.error("expected AS OF, FROM, BETWEEN, CONTAINED IN or ALL")
        if self.word() in ("AT", "BEFORE") and self.i + 1 < len(self.t) and self.t[self.i + 1].text == "(":
            before = self.word() == "BEFORE"
            self.i += 1
            return None, self.arrow_point(before), None
        if self.accept("VERSION", "AS", "OF"):
            return None, Point("LSN", self.lsn()), None
        if self.accept("TIMESTAMP", "AS", "OF"):
            return None, Point("TIMESTAMP", self.expr()), None
        if self.accept("VERSIONS", "BETWEEN"):
            kind = self.word()
            if kind not in ("SCN", "TIMESTAMP", "LSN"):
                raise self.error("expected SCN, TIMESTAMP or LSN")
            self.i += 1
            first = self.bound(kind, "MINVALUE", {"AND"})
            if not self.accept("AND"):
                raise self.error("expected AND")
            last = self.bound(kind, "MAXVALUE", set())
            return None, None, Range(kind, first, last, "BETWEEN")
        self.i = save
        return None


def read_point(sql: str, start: int, expected: str) -> Point:
    """The point written from offset `start` to the end of the statement (FLASHBACK TABLE t TO ...);
    errors give the statement's own line and column. expected: the words an error lists."""
    tokens = tokenize(sql)
    scan = _Scan(sql, tokens)
    scan.i = next((k for k, t in enumerate(tokens) if t.start >= start), len(tokens))
    point = scan.point(expected)
    if scan.i < len(tokens):
        raise scan.error("unexpected text after the point")
    return point


# Statements sqlglot's tokenizer reads as one command word and one string: what follows the match
# is a query of its own, searched like any statement (the prefix, names and types included, is not).
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_BODY = re.compile(
    rf"""\s*(?:
        PREPARE\s+{_IDENT}\s*(?:\((?:[^()]|\([^()]*\))*\))?\s*AS
      | EXPLAIN(?:\s*\([^()]*\)|(?:\s+(?:ANALYZE|ANALYSE|VERBOSE))*)
      | DECLARE\s+{_IDENT}(?:\s+(?:BINARY|ASENSITIVE|INSENSITIVE|NO|SCROLL))*\s+CURSOR
            (?:\s+(?:WITH|WITHOUT)\s+HOLD)?\s+FOR
    )(?=[\s(])""",
    re.IGNORECASE | re.VERBOSE,
)


def searchable(sql: str) -> str:
    """The text with the prefix of PREPARE, EXPLAIN and DECLARE blanked (see _BODY), newlines kept:
    offsets, lines and columns stay the statement's own."""
    body = _BODY.match(sql)
    if body is not None:
        sql = re.sub(r"[^\n]", " ", sql[: body.end()]) + sql[body.end():]
    return sql


def find_clauses(sql: str) -> list[Clause]:
    """Every table reference in `sql` that carries a time-travel clause."""
    sql = searchable(sql)
    tokens = tokenize(sql)
    scan = _Scan(sql, tokens)
    out: list[Clause] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        prev = tokens[i - 1].text.upper() if i > 0 else ""
        if tok.token_type in _NAME_TYPES and prev in _BEFORE_TABLE:
            name, j = read_name(tokens, i)
            scan.i = j
            found = scan.clause()
            if found is not None:
                branch, point, rng = found
                end = tokens[scan.i - 1].end + 1
                alias = None
                if scan.accept("AS"):
                    if scan.i >= len(tokens) or tokens[scan.i].token_type not in _NAME_TYPES:
                        raise scan.error("expected an alias")
                if scan.i < len(tokens) and tokens[scan.i].token_type in _NAME_TYPES:
                    t = tokens[scan.i]
                    alias = t.text if t.token_type == TokenType.IDENTIFIER else t.text.lower()
                out.append(Clause(name, name.start, end, alias, branch, point, rng))
                i = scan.i
                continue
            i = j
            continue
        i += 1
    return out
