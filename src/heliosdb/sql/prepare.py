"""SQL PREPARE, EXECUTE and DEALLOCATE, read token by token.

The session keeps a prepared statement whose time-travel points are parameters
(`PREPARE q(timestamptz) AS SELECT * FROM t AS OF TIMESTAMP $1`) itself: its
SQL depends on the point, so PostgreSQL cannot plan it once (heliosdb.temporal.prepared).
These functions only find the parts as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot.tokens import Token, TokenType

from heliosdb.errors import SyntaxError as HeliosSyntaxError
from heliosdb.sql.names import IDENT, tokenize, top_level_commas

# PREPARE name [(types)] AS body (group 1: the name, 2: the types inside their parentheses)
_PREPARE = re.compile(rf"\s*PREPARE\s+({IDENT})\s*(?:\(((?:[^()]|\([^()]*\))*)\))?\s*AS(?=[\s(])",
                      re.IGNORECASE)
_EXECUTE = re.compile(rf"\s*EXECUTE\s+({IDENT})\s*", re.IGNORECASE)
_DEALLOCATE = re.compile(rf"\s*DEALLOCATE\s+(?:PREPARE\s+)?({IDENT})\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Prepare:
    name: str
    types: list[str]  # as written, one per declared parameter
    body: str
    body_start: int  # offset of the body in the statement


@dataclass(frozen=True)
class Param:
    start: int  # offset of `$n` in the text
    end: int  # just past it
    number: int


def _name(text: str) -> str:
    """An identifier as PostgreSQL reads it: quoted as written, else lower case."""
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _pieces(text: str, tokens: list[Token], offset: int = 0) -> list[str]:
    """The source text of each comma-separated item of a token list (commas inside parentheses kept);
    offset: where `text` starts in the statement (for error positions)."""
    if not tokens:
        return []
    cuts = [-1, *top_level_commas(tokens), len(tokens)]
    out: list[str] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        part = tokens[a + 1 : b]
        if not part:
            raise HeliosSyntaxError('syntax error at or near ","', position=offset + tokens[max(a, 0)].start + 1)
        out.append(text[part[0].start : part[-1].end + 1])
    return out


def parse_prepare(stmt: str) -> Prepare | None:
    """PREPARE name [(type, ...)] AS body, or None for any other statement."""
    m = _PREPARE.match(stmt)
    if m is None:
        return None
    types: list[str] = []
    if m.group(2) is not None:
        inner = m.group(2)
        types = [" ".join(t.split()) for t in _pieces(inner, tokenize(inner))]
    body = stmt[m.end():]
    return Prepare(_name(m.group(1)), types, body.strip().rstrip(";").rstrip(), m.end() + len(body) - len(body.lstrip()))


def parse_execute(stmt: str) -> tuple[str, list[str]] | None:
    """EXECUTE name [(argument, ...)]: the name and each argument's text; None for another statement."""
    m = _EXECUTE.match(stmt)
    if m is None:
        return None
    rest = stmt[m.end():]
    tokens = tokenize(rest)
    if not tokens:
        return _name(m.group(1)), []
    if tokens[0].token_type != TokenType.L_PAREN or tokens[-1].token_type != TokenType.R_PAREN:
        bad = tokens[0] if tokens[0].token_type != TokenType.L_PAREN else tokens[-1]
        raise HeliosSyntaxError(f'syntax error at or near "{bad.text}"', position=m.end() + bad.start + 1)
    depth = 0
    for k, t in enumerate(tokens):  # the parentheses around the arguments hold everything
        depth += (t.token_type == TokenType.L_PAREN) - (t.token_type == TokenType.R_PAREN)
        if depth == 0 and k < len(tokens) - 1:
            raise HeliosSyntaxError(f'syntax error at or near "{tokens[k + 1].text}"',
                                    position=m.end() + tokens[k + 1].start + 1)
    return _name(m.group(1)), _pieces(rest, tokens[1:-1], m.end())


ALL = ""  # parse_deallocate's answer for DEALLOCATE ALL (no statement has an empty name)


def parse_deallocate(stmt: str) -> str | None:
    """DEALLOCATE [PREPARE] name: the name (ALL for DEALLOCATE ALL), else None."""
    m = _DEALLOCATE.match(stmt)
    if m is None:
        return None
    return ALL if m.group(1).upper() == "ALL" else _name(m.group(1))


def parameters(text: str) -> list[Param]:
    """Every `$n` outside literals, quoted names and comments."""
    if "$" not in text:
        return []
    tokens = tokenize(text)
    out: list[Param] = []
    for t, n in zip(tokens, tokens[1:], strict=False):
        if t.token_type == TokenType.PARAMETER and n.token_type == TokenType.NUMBER and n.start == t.end + 1 \
                and text[t.start] == "$":
            out.append(Param(t.start, n.end + 1, int(n.text)))
    return out


def substitute(text: str, params: list[Param], values: dict[int, str]) -> str:
    """The text with every `$n` replaced by values[n]."""
    out: list[str] = []
    pos = 0
    for p in params:
        out.append(text[pos : p.start])
        out.append(values[p.number])
        pos = p.end
    out.append(text[pos:])
    return "".join(out)
