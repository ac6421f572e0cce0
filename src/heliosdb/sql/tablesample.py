"""`t TABLESAMPLE method (args) [REPEATABLE (seed)]` on a HeliosDB table.

PostgreSQL samples tables and materialized views only, and a HeliosDB table is a view to it
(0A000). On the table's root branch that view is a plain projection of the table's storage
relation, so the reference becomes a subquery that samples that relation under the same name:
`(SELECT <columns> FROM <storage> TABLESAMPLE ...) AS t`. The rest of the text is left as written.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot.tokens import Token, TokenType

from heliosdb.sql.names import Name, matching_paren, quote_ident, read_name, tokenize

# a table's name as written -> the SELECT list and FROM item that read its columns on the root relation
# (e.g. 'r."a" AS "a", ...', '"hdb_t1"."g" r'), or None: not a HeliosDB table (PostgreSQL's own answer);
# it raises for a HeliosDB table it cannot sample
Resolve = Callable[[Name], tuple[str, str] | None]

_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)


def needs_look(text: str) -> bool:
    return "tablesample" in text.lower()


def sampled(text: str, resolve: Resolve) -> str:
    """The text with each TABLESAMPLE of a HeliosDB table reading its storage relation."""
    toks = tokenize(text)
    edits: list[tuple[int, int, str]] = []
    for k, tok in enumerate(toks):
        if tok.token_type != TokenType.TABLE_SAMPLE:
            continue
        found = _reference(toks, k)
        if found is None:
            continue
        name, alias, columns = found
        target = resolve(name)
        if target is None:
            continue
        end = _sample_end(toks, k)
        select, source = target
        clause = text[tok.start : toks[end].end + 1]
        edits.append((name.start, toks[end].end + 1,
                      f"(SELECT {select} FROM {source} {clause}) AS {alias}{columns}"))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _reference(toks: list[Token], k: int) -> tuple[Name, str, str] | None:
    """The table name, alias (as written, else the name) and column alias list before TABLESAMPLE at k."""
    j = k - 1
    columns = ""
    if j >= 0 and toks[j].token_type == TokenType.R_PAREN:  # alias (a, b)
        opening = next((o for o in range(j, -1, -1) if matching_paren(toks, o) == j
                        and toks[o].token_type == TokenType.L_PAREN), None)
        if opening is None:
            return None
        columns = "(" + ", ".join(quote_ident(t.text if t.token_type == TokenType.IDENTIFIER else t.text.lower())
                                  for t in toks[opening + 1 : j] if t.token_type in _NAMES) + ")"
        j = opening - 1
    if j < 0 or toks[j].token_type not in _NAMES:
        return None
    alias_tok = None
    if j >= 2 and toks[j - 1].token_type == TokenType.ALIAS:
        alias_tok, j = toks[j], j - 2
    elif j >= 1 and toks[j - 1].token_type in _NAMES:
        alias_tok, j = toks[j], j - 1
    start = j - 2 if j >= 2 and toks[j - 1].token_type == TokenType.DOT else j
    name, _ = read_name(toks, start)
    alias = (quote_ident(alias_tok.text if alias_tok.token_type == TokenType.IDENTIFIER else alias_tok.text.lower())
             if alias_tok is not None else quote_ident(name.name))
    return name, alias, columns


def _sample_end(toks: list[Token], k: int) -> int:
    """The last token of the TABLESAMPLE clause starting at k."""
    end = matching_paren(toks, k + 2)
    if end + 2 < len(toks) and toks[end + 1].text.upper() == "REPEATABLE":
        end = matching_paren(toks, end + 2)
    return end
