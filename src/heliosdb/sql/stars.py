"""The `*` items of a select list and the FROM items they expand to, token by token.

A VERSIONS BETWEEN reference is rewritten into a subquery that also carries
Oracle's pseudo-columns (VERSIONS_STARTSCN, ...). In Oracle `*` stands for the
table's columns only, so the rewrite writes those columns in place of `*` and
`t.*` (heliosdb.temporal.rewrite); these functions find where.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.tokens import Token, TokenType

from heliosdb.sql.names import tokenize
from heliosdb.sql.temporal import searchable

_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)
_JOIN_WORDS = {TokenType.JOIN, TokenType.INNER, TokenType.LEFT, TokenType.RIGHT, TokenType.FULL, TokenType.CROSS,
               TokenType.OUTER, TokenType.NATURAL}
_FROM_ENDS = {"WHERE", "GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT", "OFFSET", "FETCH", "FOR", "UNION", "INTERSECT",
              "EXCEPT", "RETURNING", "ON", "USING"}


@dataclass(frozen=True)
class Star:
    start: int  # offset of the item (`*` or `q.*`) in the text
    end: int  # just past it
    qualifier: str | None  # q of `q.*`, as PostgreSQL reads the name
    items: tuple[tuple[str, str], ...] | None  # bare `*`: every FROM item as (name, as written), in order;
    # None where `*` cannot be written out item by item (USING / NATURAL joins merge columns)


def _name(tok: Token) -> str:
    return tok.text if tok.token_type == TokenType.IDENTIFIER else tok.text.lower()


def _written(text: str, tok: Token) -> str:
    return text[tok.start : tok.end + 1]


class _Tokens:
    def __init__(self, text: str, clauses: dict[int, int]) -> None:
        self.text = text
        self.t = tokenize(searchable(text))
        self.clauses = clauses
        self.depth: list[int] = []
        d = 0
        for tok in self.t:
            d -= tok.token_type == TokenType.R_PAREN
            self.depth.append(d)
            d += tok.token_type == TokenType.L_PAREN

    def word(self, i: int) -> str:
        """The token's first word, upper-cased ("GROUP BY" is one token); "" for a literal or quoted name."""
        tok = self.t[i]
        return "" if tok.token_type in (TokenType.STRING, TokenType.IDENTIFIER) else tok.text.split()[0].upper()

    def back(self, i: int, word: str) -> int | None:
        """The nearest token `word` before i at i's depth, not leaving its parentheses."""
        d = self.depth[i]
        for j in range(i - 1, -1, -1):
            if self.depth[j] < d:
                return None
            if self.depth[j] == d and self.word(j) == word:
                return j
        return None

    def skip_parens(self, i: int) -> int:
        d = self.depth[i]
        i += 1
        while i < len(self.t) and self.depth[i] > d:
            i += 1
        return i + 1  # past the ')'


def select_stars(text: str, table_start: int, clauses: dict[int, int]) -> list[Star]:
    """The `*` and `q.*` items of the select list of the SELECT whose FROM holds the table reference
    starting at offset `table_start`. clauses: where each time-travel clause's table name starts ->
    where the clause ends (an alias may follow)."""
    tk = _Tokens(text, clauses)
    k = next((i for i, tok in enumerate(tk.t) if tok.start == table_start), None)
    if k is None:
        return []
    frm = tk.back(k, "FROM")
    sel = tk.back(frm, "SELECT") if frm is not None else None
    if frm is None or sel is None:
        return []
    d = tk.depth[k]
    items: tuple[tuple[str, str], ...] | None = None
    out: list[Star] = []
    first = sel + 1
    if tk.word(first) == "ALL":
        first += 1
    elif tk.word(first) == "DISTINCT":
        first += 1
        if tk.word(first) == "ON" and first + 1 < frm:
            first = tk.skip_parens(first + 1)
    start = first
    for i in range(first, frm + 1):
        if i < frm and (tk.depth[i] != d or tk.t[i].token_type != TokenType.COMMA):
            continue
        part = tk.t[start:i]
        start = i + 1
        types = [tok.token_type for tok in part]
        if types == [TokenType.STAR]:
            if items is None:
                items = from_items(tk, frm + 1)
            out.append(Star(part[0].start, part[0].end + 1, None, items or None))
        elif len(part) == 3 and types[0] in _NAMES and types[1:] == [TokenType.DOT, TokenType.STAR]:
            out.append(Star(part[0].start, part[2].end + 1, _name(part[0]), None))
    return out


def from_items(tk: _Tokens, i: int) -> tuple[tuple[str, str], ...]:
    """The name each FROM item is referred by, from token i (after FROM); () when one cannot be told."""
    d = tk.depth[i - 1]
    out: list[tuple[str, str]] = []
    n = len(tk.t)
    while i < n and tk.depth[i] >= d:
        while i < n and tk.depth[i] == d and (tk.t[i].token_type in _JOIN_WORDS or tk.word(i) in ("LATERAL", "ONLY")):
            if tk.t[i].token_type == TokenType.NATURAL:
                return ()
            i += 1
        if i >= n:
            return ()
        ref: Token | None = None
        if tk.t[i].token_type == TokenType.L_PAREN:
            i = tk.skip_parens(i)
        elif tk.t[i].token_type in _NAMES or tk.word(i).isidentifier():
            ref = tk.t[i]
            end = tk.clauses.get(ref.start)
            i += 1
            while i + 1 < n and tk.t[i].token_type == TokenType.DOT:  # schema.table: the table names it
                ref = tk.t[i + 1]
                i += 2
            if end is not None:  # past its time-travel clause
                while i < n and tk.t[i].start < end:
                    i += 1
            elif i < n and tk.t[i].token_type == TokenType.L_PAREN:  # a function: its alias or its name
                i = tk.skip_parens(i)
        else:
            return ()
        if i < n and tk.word(i) == "WITH" and i + 1 < n and tk.word(i + 1) == "ORDINALITY":
            i += 2
        if i < n and tk.word(i) == "AS":
            i += 1
        if i < n and tk.depth[i] == d and tk.t[i].token_type in _NAMES and tk.word(i) not in _FROM_ENDS \
                and tk.t[i].token_type not in _JOIN_WORDS:
            ref = tk.t[i]
            i += 1
        if ref is None:
            return ()
        out.append((_name(ref), _written(tk.text, ref)))
        # past a time-travel clause, a column alias list and a join condition, to the next item
        while i < n and tk.depth[i] >= d:
            if tk.depth[i] == d:
                if tk.t[i].token_type == TokenType.COMMA or tk.t[i].token_type in _JOIN_WORDS:
                    break
                w = tk.word(i)
                if w == "USING" and i + 1 < n and tk.t[i + 1].token_type == TokenType.L_PAREN:
                    return ()
                if w in _FROM_ENDS and w not in ("ON", "USING"):
                    return tuple(out)
            i += 1
        if i < n and tk.t[i].token_type == TokenType.COMMA and tk.depth[i] == d:
            i += 1
    return tuple(out)
