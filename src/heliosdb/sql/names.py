"""Find and replace object names in statement text, token by token.

DDL is rewritten by swapping only the name tokens, so the rest of the user's
statement reaches PostgreSQL exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from heliosdb.errors import SyntaxError as HeliosSyntaxError

_TOKENIZER = Postgres().tokenizer_class()

# Regular expressions of a name in SQL text: an identifier (quoted or not), and one with a schema
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
QUALIFIED = rf"{IDENT}(?:\s*\.\s*{IDENT})?"


@dataclass(frozen=True)
class Name:
    schema: str | None
    name: str
    start: int  # offset of the first character in the statement
    end: int  # offset just past the last character


# $n parameters outside string literals. sqlglot reads `$1-$1` as the start of a dollar-quoted
# string; `@1` has the same length and tokenizes as the same PARAMETER, NUMBER pair.
_PARAM = re.compile(
    r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|\$(?P<tag>(?:[A-Za-z_][A-Za-z0-9_]*)?)\$[\s\S]*?\$(?P=tag)\$)|\$(\d+)""")


def _mask_params(text: str) -> str:
    return _PARAM.sub(lambda m: m.group(1) or "@" + m.group(3), text)


def tokenize(text: str) -> list[Token]:
    if "$" in text:
        text = _mask_params(text)
    try:
        return [t for t in _TOKENIZER.tokenize(text) if t.token_type != TokenType.SEMICOLON]
    except TokenError as exc:
        raise HeliosSyntaxError(f"syntax error: {exc}") from None


def _ident(tok: Token) -> str:
    return tok.text if tok.token_type == TokenType.IDENTIFIER else tok.text.lower()


def is_word(tok: Token | None, *words: str) -> bool:
    return tok is not None and tok.token_type not in (TokenType.IDENTIFIER, TokenType.STRING) and (
        tok.text.upper() in words
    )


def read_name(tokens: list[Token], i: int) -> tuple[Name, int]:
    """A possibly schema-qualified name starting at token i; returns it and the next index."""
    if i >= len(tokens) or tokens[i].token_type in (TokenType.STRING, TokenType.L_PAREN, TokenType.NUMBER):
        raise HeliosSyntaxError("syntax error: expected a name")
    first = tokens[i]
    if i + 2 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT:
        second = tokens[i + 2]
        return Name(_ident(first), _ident(second), first.start, second.end + 1), i + 3
    return Name(None, _ident(first), first.start, first.end + 1), i + 1


def read_names(tokens: list[Token], i: int) -> tuple[list[Name], int]:
    """A comma-separated list of names starting at token i."""
    names: list[Name] = []
    while i < len(tokens):
        name, i = read_name(tokens, i)
        names.append(name)
        if i < len(tokens) and tokens[i].text == ",":
            i += 1
            continue
        break
    return names, i


def matching_paren(tokens: list[Token], i: int) -> int:
    """The index of the ')' that closes the '(' at token i (or the last token)."""
    depth = 0
    while i < len(tokens):
        depth += tokens[i].text == "("
        depth -= tokens[i].text == ")"
        if depth == 0:
            return i
        i += 1
    return len(tokens) - 1


def top_level_commas(tokens: list[Token]) -> list[int]:
    """Indexes of the commas outside parentheses among these tokens."""
    out, depth = [], 0
    for k, t in enumerate(tokens):
        depth += (t.text == "(") - (t.text == ")")
        if t.text == "," and depth == 0:
            out.append(k)
    return out


def skip_words(tokens: list[Token], i: int, *words: str) -> tuple[bool, int]:
    """Advance past `words` if they come next."""
    for k, w in enumerate(words):
        if not is_word(tokens[i + k] if i + k < len(tokens) else None, w):
            return False, i
    return True, i + len(words)


def replace(text: str, name: Name, new: str) -> str:
    return text[: name.start] + new + text[name.end :]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(*parts: str) -> str:
    """schema.name (or any dotted path), every part quoted."""
    return ".".join(quote_ident(p) for p in parts)


def quote_literal(text: str) -> str:
    """A SQL string literal (an E'' literal when there is a backslash: right whatever standard_conforming_strings)."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"
