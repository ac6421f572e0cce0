"""HeliosDB statements: small dataclasses and a token parser for them.

HeliosDB words are matched by text, so none of them is reserved: a column
named `branch` or `lsn` keeps working in ordinary SQL. A malformed HeliosDB
statement raises SyntaxError with its position (1-based character offset, as
PostgreSQL reports it) and line/column in the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from heliosdb.errors import SyntaxError as HeliosSyntaxError

_TOKENIZER = Postgres().tokenizer_class()


@dataclass(frozen=True)
class Point:
    """A temporal point as written: kind is NOW, LSN, TIMESTAMP, SCN or TRANSACTION."""

    kind: str
    value: str | None = None


@dataclass(frozen=True)
class CreateBranch:
    name: str
    if_not_exists: bool = False
    parent: str | None = None
    point: Point = Point("NOW")
    storage_node: str | None = None
    compute_endpoint: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UseBranch:
    name: str
    scope: str = "SESSION"
    point: Point | None = None  # USE BRANCH b AS OF <point>


@dataclass(frozen=True)
class AlterBranch:
    name: str
    read_only: bool | None = None
    options: dict[str, str] | None = None


@dataclass(frozen=True)
class DropBranch:
    name: str
    if_exists: bool = False
    cascade: bool = False


@dataclass(frozen=True)
class ShowBranches:
    pass


@dataclass(frozen=True)
class MergeBranch:
    source: str
    target: str
    strategy: str = "ABORT"  # ABORT OURS THEIRS MANUAL RULE_BASED LAST_WRITE_WINS CUSTOM
    function: str | None = None  # CUSTOM <function>
    rule_set: str | None = None
    dry_run: bool = False
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    table: str  # regular expression
    column: str  # regular expression
    action: str  # PREFER_SOURCE PREFER_TARGET PREFER_NEWER PREFER_OLDER CONCATENATE SUM MAX MIN


@dataclass(frozen=True)
class CreateRuleSet:
    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class DropRuleSet:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class FinishMerge:
    merge_id: int
    complete: bool  # COMPLETE MERGE (True) or ABORT MERGE (False)


BranchStatement = (CreateBranch | UseBranch | AlterBranch | DropBranch | ShowBranches | MergeBranch
                   | CreateRuleSet | DropRuleSet | FinishMerge)

_STRATEGIES = ("ABORT", "OURS", "THEIRS", "MANUAL", "RULE_BASED", "LAST_WRITE_WINS", "CUSTOM")
_ACTIONS = ("CONCATENATE", "SUM", "MAX", "MIN")

_NAME_TYPES = {TokenType.VAR, TokenType.IDENTIFIER}
_STOP_WORDS = {"ON", "WITH", "OPTIONS", "FROM", "AS"}


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        try:
            self.tokens: list[Token] = [t for t in _TOKENIZER.tokenize(sql) if t.token_type != TokenType.SEMICOLON]
        except TokenError:
            quote = min((p for p in (sql.find('"'), sql.find("'")) if p >= 0), default=0)
            raise HeliosSyntaxError("syntax error: unterminated quoted string or name", position=quote + 1) from None
        self.i = 0

    # -- token helpers ------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        if tok is None or tok.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            return ""
        return tok.text.upper()

    def accept(self, *words: str) -> bool:
        for k, w in enumerate(words):
            if self.word(k) != w:
                return False
        self.i += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            self.error(f"expected {' '.join(words)}")

    def error(self, what: str) -> None:
        tok = self.peek()
        if tok is None:
            pos = len(self.sql)
            near = "end of input"
        else:
            pos = tok.start
            near = f'"{tok.text}"'
        line = self.sql.count("\n", 0, pos) + 1
        col = pos - (self.sql.rfind("\n", 0, pos) + 1) + 1
        raise HeliosSyntaxError(
            f"syntax error at or near {near}: {what} (line {line}, column {col})", position=pos + 1
        )

    def name(self, what: str = "a name") -> str:
        tok = self.peek()
        if tok is None:
            self.error(f"expected {what}")
        assert tok is not None
        if tok.token_type == TokenType.IDENTIFIER:
            if not tok.text:
                self.error("zero-length delimited identifier")
            self.i += 1
            return tok.text
        if tok.token_type == TokenType.STRING:
            self.i += 1
            return tok.text
        if tok.token_type in _NAME_TYPES or tok.text.replace("_", "").isalnum() and not tok.text[0].isdigit():
            self.i += 1
            return tok.text.lower()
        self.error(f"expected {what}")
        return ""

    def raw_until(self, stops: set[str]) -> str:
        """The source text of the following tokens up to a stop word (for values)."""
        start_tok = self.peek()
        if start_tok is None:
            self.error("expected a value")
        assert start_tok is not None
        depth = 0
        end = start_tok.start
        while (tok := self.peek()) is not None:
            if depth == 0 and self.word() in stops:
                break
            if tok.token_type == TokenType.L_PAREN:
                depth += 1
            elif tok.token_type == TokenType.R_PAREN:
                depth -= 1
            end = tok.end
            self.i += 1
        text = self.sql[start_tok.start : end + 1].strip()
        if tok is not None and tok.token_type == TokenType.STRING:
            pass
        return text

    def done(self) -> None:
        if self.peek() is not None:
            self.error("unexpected text after the statement")

    # -- grammar ------------------------------------------------------------
    def point(self) -> Point:
        if self.accept("NOW"):
            return Point("NOW")
        if self.accept("LSN"):
            return Point("LSN", self.lsn_text())
        for kind in ("SCN", "TRANSACTION"):
            if self.accept(kind):
                tok = self.peek()
                if tok is None or tok.token_type not in (TokenType.NUMBER, TokenType.STRING):
                    self.error(f"expected a {kind} number")
                assert tok is not None
                self.i += 1
                return Point(kind, tok.text)
        if self.accept("TIMESTAMP"):
            return Point("TIMESTAMP", self.raw_until({"ON", "WITH", "OPTIONS", "FOR", "FROM", "AS"}))
        self.error("expected NOW, LSN, TIMESTAMP, SCN or TRANSACTION")
        raise AssertionError

    def lsn_text(self) -> str:
        """X/XXXXXXXX (several tokens to sqlglot), an integer, or a quoted LSN."""
        tok = self.peek()
        if tok is None:
            self.error("expected an LSN")
        assert tok is not None
        m = _LSN_TEXT.match(self.sql, tok.start)
        if not m:
            self.error("expected an LSN (X/XXXXXXXX or an integer)")
        assert m is not None
        while self.i < len(self.tokens) and self.tokens[self.i].start < m.end():
            self.i += 1
        return m.group(0).strip()

    def options(self) -> dict[str, str]:
        self.expect("(")
        opts: dict[str, str] = {}
        while True:
            key = self.name("an option name")
            self.expect("=")
            tok = self.peek()
            if tok is None:
                self.error("expected an option value")
            assert tok is not None
            self.i += 1
            opts[key] = tok.text if tok.token_type == TokenType.STRING else tok.text.lower()
            if self.accept(")"):
                return opts
            self.expect(",")

    def create_branch(self) -> CreateBranch:
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        name = self.name("a branch name")
        parent = None
        point = Point("NOW")
        node = endpoint = None
        options: dict[str, str] = {}
        seen: set[str] = set()
        while self.peek() is not None:
            clause = self.word()
            if clause in seen and clause in ("FROM", "AS", "ON", "WITH", "OPTIONS"):
                self.error(f"{clause} given twice")
            seen.add(clause)
            if self.accept("FROM"):
                parent = self.name("a parent branch name")
            elif self.accept("AS", "OF"):
                point = self.point()
            elif self.accept("ON", "STORAGE", "NODE"):
                node = self.name("a storage node id")
            elif self.accept("WITH", "COMPUTE", "ENDPOINT"):
                endpoint = self.name("a compute endpoint id")
            elif self.accept("OPTIONS"):
                options = self.options()
            else:
                self.error("expected FROM, AS OF, ON STORAGE NODE, WITH COMPUTE ENDPOINT or OPTIONS")
        return CreateBranch(name, if_not_exists, parent, point, node, endpoint, options)

    def merge(self) -> MergeBranch:
        source = self.name("a source branch")
        self.expect("INTO")
        target = self.name("a target branch")
        strategy, function, rule_set, dry_run = "ABORT", None, None, False
        options: dict[str, str] = {}
        while self.peek() is not None:
            if self.accept("USING", "STRATEGY"):
                word = self.word()
                if word not in _STRATEGIES:
                    self.error("expected " + ", ".join(_STRATEGIES))
                self.i += 1
                strategy = word
                if word == "CUSTOM":
                    function = self.raw_until({"WITH", "DRY", "OPTIONS"})
            elif self.accept("WITH", "CONFLICT", "RESOLUTION"):
                rule_set = self.name("a rule set name")
            elif self.accept("DRY", "RUN"):
                dry_run = True
            elif self.accept("OPTIONS"):
                options = self.options()
            else:
                self.error("expected USING STRATEGY, WITH CONFLICT RESOLUTION, DRY RUN or OPTIONS")
        if strategy == "RULE_BASED" and rule_set is None:
            self.error("RULE_BASED needs WITH CONFLICT RESOLUTION <rule_set>")
        return MergeBranch(source, target, strategy, function, rule_set, dry_run, options)

    def rule_set(self) -> CreateRuleSet:
        name = self.name("a rule set name")
        self.expect("(")
        rules: list[Rule] = []
        while True:
            self.expect("ON")
            table = self.pattern()
            self.expect(".")
            column = self.pattern()
            if self.accept("PREFER"):
                which = self.word()
                if which not in ("SOURCE", "TARGET", "NEWER", "OLDER"):
                    self.error("expected SOURCE, TARGET, NEWER or OLDER")
                self.i += 1
                action = "PREFER_" + which
            elif self.word() in _ACTIONS:
                action = self.word()
                self.i += 1
            else:
                self.error("expected PREFER SOURCE|TARGET|NEWER|OLDER, CONCATENATE, SUM, MAX or MIN")
                raise AssertionError
            rules.append(Rule(table, column, action))
            if self.accept(")"):
                break
            self.expect(",")
        self.done()
        return CreateRuleSet(name, tuple(rules))

    def pattern(self) -> str:
        tok = self.peek()
        if tok is None or tok.token_type not in (TokenType.STRING, TokenType.IDENTIFIER, TokenType.VAR, TokenType.STAR):
            self.error("expected a quoted regular expression")
        assert tok is not None
        self.i += 1
        if tok.token_type == TokenType.STAR:
            return ".*"
        text = tok.text
        try:
            re.compile(text)
        except re.error as exc:
            self.i -= 1
            self.error(f"invalid regular expression: {exc}")
        return text

    def parse(self) -> BranchStatement:
        stmt: BranchStatement
        if self.accept("CREATE", "DATABASE", "BRANCH"):
            stmt = self.create_branch()
        elif self.accept("USE", "BRANCH"):
            name = self.name("a branch name")
            scope = "SESSION"
            point = None
            if self.accept("AS", "OF"):
                point = self.point()
            if self.accept("FOR", "SESSION"):
                scope = "SESSION"
            elif self.accept("FOR", "TRANSACTION"):
                scope = "TRANSACTION"
            self.done()
            stmt = UseBranch(name, scope, point)
        elif self.accept("ALTER", "DATABASE", "BRANCH"):
            name = self.name("a branch name")
            self.expect("SET")
            if self.accept("READ_ONLY") or self.accept("READ", "ONLY"):
                stmt = AlterBranch(name, read_only=True)
            elif self.accept("WRITABLE") or self.accept("READ", "WRITE"):
                stmt = AlterBranch(name, read_only=False)
            elif self.accept("OPTIONS"):
                stmt = AlterBranch(name, options=self.options())
            else:
                self.error("expected READ_ONLY, WRITABLE or OPTIONS (...)")
                raise AssertionError
            self.done()
        elif self.accept("DROP", "DATABASE", "BRANCH"):
            if_exists = self.accept("IF", "EXISTS")
            name = self.name("a branch name")
            cascade = self.accept("CASCADE")
            if not cascade:
                self.accept("RESTRICT")
            self.done()
            stmt = DropBranch(name, if_exists, cascade)
        elif self.accept("MERGE", "DATABASE", "BRANCH"):
            stmt = self.merge()
        elif self.accept("CREATE", "CONFLICT", "RESOLUTION"):
            stmt = self.rule_set()
        elif self.accept("DROP", "CONFLICT", "RESOLUTION"):
            if_exists = self.accept("IF", "EXISTS")
            stmt = DropRuleSet(self.name("a rule set name"), if_exists)
            self.done()
        elif self.word() in ("COMPLETE", "ABORT") and self.word(1) == "MERGE":
            complete = self.word() == "COMPLETE"
            self.i += 2
            tok = self.peek()
            if tok is None or not tok.text.isdigit():
                self.error("expected a merge id")
            assert tok is not None
            self.i += 1
            self.done()
            stmt = FinishMerge(int(tok.text), complete)
        elif self.accept("SHOW", "BRANCHES"):
            self.done()
            stmt = ShowBranches()
        else:
            self.error("not a HeliosDB branch statement")
            raise AssertionError
        return stmt


_SHOW_BRANCHES = re.compile(r"^\s*SHOW\s+BRANCHES\s*;?\s*$", re.IGNORECASE)
_LSN_TEXT = re.compile(r"\s*('?)([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}|[0-9]+)\1")


def parse_branch_statement(sql: str) -> BranchStatement:
    from heliosdb.sql.split import strip_comments

    # sqlglot's tokenizer folds SHOW's arguments into one string token.
    bare = strip_comments(sql)
    if _SHOW_BRANCHES.match(re.sub(r"--[^\n]*$", "", bare)):
        return ShowBranches()
    return _Parser(sql).parse()
