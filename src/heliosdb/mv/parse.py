"""CREATE / ALTER / REFRESH / DROP MATERIALIZED VIEW, token by token.

The defining query is kept as the user wrote it; only the clauses around it
are parsed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot.tokens import Token, TokenType

from heliosdb.errors import SyntaxError as HeliosSyntaxError
from heliosdb.sql.names import Name, is_word, matching_paren, read_name, read_names, skip_words, tokenize


@dataclass
class CreateMV:
    name: Name
    query: str
    columns: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    with_data: bool = True
    if_not_exists: bool = False
    access_method: str | None = None  # USING ...: heap is the only one (ddl refuses others)
    tablespace: str | None = None  # TABLESPACE ...: pg_default likewise


@dataclass
class AlterMV:
    name: Name
    options: dict[str, str] = field(default_factory=dict)  # SET ( ... )
    if_exists: bool = False
    reset: list[str] = field(default_factory=list)  # RESET ( ... ): back to the defaults
    rename: str | None = None  # RENAME TO (refused: see ddl._alter)
    rename_column: tuple[str, str] | None = None  # RENAME [COLUMN] a TO b (refused likewise)


@dataclass
class RefreshMV:
    name: Name
    mode: str | None = None  # 'incremental' | 'full' | None (the view's strategy decides)
    with_data: bool = True


@dataclass
class DropMV:
    names: list[Name]
    if_exists: bool = False
    cascade: bool = False


@dataclass
class CommentMV:
    name: Name
    literal: str  # the string literal or NULL, as the user wrote it


Statement = CreateMV | AlterMV | RefreshMV | DropMV | CommentMV


def _error(text: str) -> HeliosSyntaxError:
    return HeliosSyntaxError(f"syntax error: {text}")


def _near(tokens: list[Token], i: int, hint: str | None = None) -> HeliosSyntaxError:
    """PostgreSQL's words for an unexpected token (or a missing one at the end)."""
    if i >= len(tokens):
        return HeliosSyntaxError("syntax error at end of input", hint=hint)
    return HeliosSyntaxError(f'syntax error at or near "{tokens[i].text}"', hint=hint, position=tokens[i].start + 1)


def _options(text: str, tokens: list[Token], i: int) -> tuple[dict[str, str], int]:
    """( name = value, ... ) starting at the '(' at token i."""
    end = matching_paren(tokens, i)
    if tokens[end].text != ")":
        raise _error("unterminated option list")
    if end == i + 1:  # as PostgreSQL's grammar: an option list holds at least one option
        raise _near(tokens, end)
    opts: dict[str, str] = {}
    j = i + 1
    while j < end:
        key = tokens[j].text.lower() if tokens[j].token_type != TokenType.IDENTIFIER else tokens[j].text
        j += 1
        if j >= end or tokens[j].text != "=":
            raise _error(f'expected "=" after option "{key}"')
        j += 1
        start = j
        while j < end and tokens[j].text != ",":
            j += 1
        if start == j:
            raise _error(f'option "{key}" has no value')
        value = text[tokens[start].start:tokens[j - 1].end + 1]
        if tokens[start].token_type == TokenType.STRING and start == j - 1:
            value = tokens[start].text
        opts[key] = value
        j += 1
    return opts, end + 1


def parse(text: str) -> Statement:
    tokens = tokenize(text)
    if not tokens:
        raise _error("empty statement")
    verb = tokens[0].text.upper()
    if verb == "CREATE":
        return _create(text, tokens)
    if verb == "ALTER":
        return _alter(text, tokens)
    if verb == "REFRESH":
        # sqlglot reads REFRESH as a command and the rest as one string: tokenize the rest
        rest = tokenize(text[tokens[0].end + 1:])
        for tok in rest:  # offsets in the whole statement, for error positions
            tok.start, tok.end = tok.start + tokens[0].end + 1, tok.end + tokens[0].end + 1
        return _refresh(tokens[:1] + rest)
    if verb == "DROP":
        return _drop(tokens)
    if verb == "COMMENT":
        return _comment(text, tokens)
    raise _error(f'unexpected "{tokens[0].text}"')


def _create(text: str, tokens: list[Token]) -> CreateMV:
    ok, i = skip_words(tokens, 1, "MATERIALIZED", "VIEW")
    if not ok:
        raise _error("expected MATERIALIZED VIEW")
    if_not_exists, i = skip_words(tokens, i, "IF", "NOT", "EXISTS")
    name, i = read_name(tokens, i)
    columns: list[str] = []
    if i < len(tokens) and tokens[i].text == "(":
        end = matching_paren(tokens, i)
        columns = [n.name for n in read_names(tokens, i + 1)[0]]
        i = end + 1
    access_method, i = _word_after(tokens, i, "USING")
    options: dict[str, str] = {}
    if is_word(tokens[i] if i < len(tokens) else None, "WITH") and i + 1 < len(tokens) and tokens[i + 1].text == "(":
        options, i = _options(text, tokens, i + 1)  # PostgreSQL's place for WITH ( ... ): before AS
    tablespace, i = _word_after(tokens, i, "TABLESPACE")
    if not is_word(tokens[i] if i < len(tokens) else None, "AS"):
        raise _error('expected AS and the defining query')
    i += 1
    if i >= len(tokens):
        raise _error("expected the defining query")
    end = len(tokens)
    with_data = True
    # trailing WITH [NO] DATA, then WITH ( options ): both after the query
    if end - i >= 3 and is_word(tokens[end - 1], "DATA") and is_word(tokens[end - 2], "NO") and is_word(tokens[end - 3], "WITH"):
        with_data, end = False, end - 3
    elif end - i >= 2 and is_word(tokens[end - 1], "DATA") and is_word(tokens[end - 2], "WITH"):
        end -= 2
    if end - i >= 3 and tokens[end - 1].text == ")":
        depth, j = 0, end - 1
        while j > i:
            depth += tokens[j].text == ")"
            depth -= tokens[j].text == "("
            if depth == 0:
                break
            j -= 1
        if j > i and is_word(tokens[j - 1], "WITH"):
            more, _ = _options(text, tokens, j)
            options.update(more)
            end = j - 1
            if end - i >= 3 and is_word(tokens[end - 1], "DATA") and is_word(tokens[end - 2], "NO") and (
                    is_word(tokens[end - 3], "WITH")):
                with_data, end = False, end - 3
            elif end - i >= 2 and is_word(tokens[end - 1], "DATA") and is_word(tokens[end - 2], "WITH"):
                end -= 2
    if end <= i:
        raise _error("expected the defining query")
    query = text[tokens[i].start:tokens[end - 1].end + 1]
    return CreateMV(name, query, columns, options, with_data, if_not_exists, access_method, tablespace)


def _word_after(tokens: list[Token], i: int, keyword: str) -> tuple[str | None, int]:
    """`keyword name` (USING heap, TABLESPACE pg_default) if it comes next: the name, lower-cased unless quoted."""
    if not is_word(tokens[i] if i < len(tokens) else None, keyword):
        return None, i
    if i + 1 >= len(tokens) or tokens[i + 1].token_type in (TokenType.STRING, TokenType.L_PAREN, TokenType.NUMBER):
        raise _near(tokens, i + 1)
    tok = tokens[i + 1]
    return (tok.text if tok.token_type == TokenType.IDENTIFIER else tok.text.lower()), i + 2


def _alter(text: str, tokens: list[Token]) -> AlterMV:
    ok, i = skip_words(tokens, 1, "MATERIALIZED", "VIEW")
    if not ok:
        raise _error("expected MATERIALIZED VIEW")
    if_exists, i = skip_words(tokens, i, "IF", "EXISTS")
    name, i = read_name(tokens, i)
    stmt = AlterMV(name, if_exists=if_exists)
    word = tokens[i].text.upper() if i < len(tokens) and tokens[i].token_type != TokenType.IDENTIFIER else ""
    if word in ("SET", "RESET") and i + 1 < len(tokens) and tokens[i + 1].text == "(":
        if word == "SET":
            stmt.options, i = _options(text, tokens, i + 1)
        else:
            stmt.reset, i = _option_names(tokens, i + 1)
    elif word == "RENAME":
        i = _rename(tokens, i + 1, stmt)
    else:
        raise _error("expected SET ( option = value, ... ), RESET ( option, ... ) or RENAME")
    if i != len(tokens):
        raise _near(tokens, i)
    return stmt


def _option_names(tokens: list[Token], i: int) -> tuple[list[str], int]:
    """( name, ... ) starting at the '(' at token i: RESET's list."""
    end = matching_paren(tokens, i)
    if tokens[end].text != ")":
        raise _error("unterminated option list")
    names: list[str] = []
    j = i + 1
    while True:
        if j >= end or tokens[j].token_type in (TokenType.COMMA, TokenType.L_PAREN, TokenType.R_PAREN):
            raise _near(tokens, j)
        names.append(tokens[j].text if tokens[j].token_type == TokenType.IDENTIFIER else tokens[j].text.lower())
        j += 1
        if j == end:
            return names, end + 1
        if tokens[j].token_type != TokenType.COMMA:
            raise _near(tokens, j)
        j += 1


def _rename(tokens: list[Token], i: int, stmt: AlterMV) -> int:
    """RENAME TO new | RENAME [COLUMN] old TO new, from the token after RENAME."""
    if is_word(tokens[i] if i < len(tokens) else None, "TO"):
        new, i = read_name(tokens, i + 1)
        stmt.rename = new.name
        return i
    _, i = skip_words(tokens, i, "COLUMN")
    old, i = read_name(tokens, i)
    ok, i = skip_words(tokens, i, "TO")
    if not ok:
        raise _near(tokens, i)
    new, i = read_name(tokens, i)
    stmt.rename_column = (old.name, new.name)
    return i


def _refresh(tokens: list[Token]) -> RefreshMV:
    ok, i = skip_words(tokens, 1, "MATERIALIZED", "VIEW")
    if not ok:
        raise _error("expected MATERIALIZED VIEW")
    _, i = skip_words(tokens, i, "CONCURRENTLY")  # readers never block on a HeliosDB refresh anyway
    name, i = read_name(tokens, i)
    stmt = RefreshMV(name)
    while i < len(tokens):
        if is_word(tokens[i], "INCREMENTAL", "FULL"):
            if stmt.mode is not None:
                raise _near(tokens, i, hint="Give one of INCREMENTAL | FULL.")
            stmt.mode = tokens[i].text.lower()
            i += 1
        elif is_word(tokens[i], "WITH"):
            no, i = skip_words(tokens, i + 1, "NO")
            ok, i = skip_words(tokens, i, "DATA")
            if not ok:
                raise _error("expected WITH [NO] DATA")
            stmt.with_data = not no
        else:
            raise _error(f'unexpected "{tokens[i].text}"')
    return stmt


def _drop(tokens: list[Token]) -> DropMV:
    ok, i = skip_words(tokens, 1, "MATERIALIZED", "VIEW")
    if not ok:
        raise _error("expected MATERIALIZED VIEW")
    if_exists, i = skip_words(tokens, i, "IF", "EXISTS")
    names, i = read_names(tokens, i)
    if not names:
        raise _near(tokens, i)
    cascade = False
    if i < len(tokens) and is_word(tokens[i], "CASCADE", "RESTRICT"):
        cascade = tokens[i].text.upper() == "CASCADE"
        i += 1
    if i != len(tokens):
        raise _error(f'unexpected "{tokens[i].text}"')
    return DropMV(names, if_exists, cascade)


def _comment(text: str, tokens: list[Token]) -> CommentMV:
    ok, i = skip_words(tokens, 1, "ON", "MATERIALIZED", "VIEW")
    if not ok:
        raise _error("expected ON MATERIALIZED VIEW")
    name, i = read_name(tokens, i)
    ok, i = skip_words(tokens, i, "IS")
    if not ok:
        raise _near(tokens, i)
    if i >= len(tokens) or not (tokens[i].token_type in _STRINGS or is_word(tokens[i], "NULL")):
        raise _near(tokens, i)
    if i + 1 != len(tokens):
        raise _near(tokens, i + 1)
    return CommentMV(name, text[tokens[i].start:tokens[i].end + 1])


_STRINGS = (TokenType.STRING, TokenType.BYTE_STRING, TokenType.HEREDOC_STRING, TokenType.NATIONAL_STRING,
            TokenType.UNICODE_STRING)
