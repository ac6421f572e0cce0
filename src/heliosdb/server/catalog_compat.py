"""Clients' catalog queries, adjusted so HeliosDB tables look like tables.

A HeliosDB table is a view in the branch's schema (over the versioned storage), so to
PostgreSQL's catalogs it has no constraints, no indexes and no NOT NULL column, and its
relkind is 'v': psql's \\dt would list none, \\d would call it a view and ORMs would reflect
tables without keys. Client queries therefore read a few catalogs through HeliosDB's views of
them (catalog/client_catalog.sql): ``pg_class``, ``pg_attribute``, ``pg_attrdef``,
``pg_constraint``, ``pg_index``, ``pg_trigger``, ``pg_depend`` and ``pg_namespace``, with or
without ``pg_catalog.``, become ``heliosdb.<name>``, and so do the functions
``pg_get_constraintdef``, ``pg_get_indexdef``, ``pg_table_is_visible`` and
``pg_get_serial_sequence``. A view keeps the catalog's columns and its name, so ``c.relkind``
and ``pg_class.oid`` still resolve. ``information_schema.tables`` reads
heliosdb.information_schema_tables, the same view with HeliosDB tables as BASE TABLE. Names
inside string literals, quoted identifiers and comments are left alone (psql writes
``'pg_catalog.pg_class'::regclass``).
"""

from __future__ import annotations

import re

from sqlglot.tokens import TokenType

from heliosdb import errors
from heliosdb.sql.names import tokenize

_TABLES = ("pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger", "pg_depend",
           "pg_namespace")
_FUNCTIONS = ("pg_get_constraintdef", "pg_get_indexdef", "pg_table_is_visible", "pg_get_serial_sequence")
_CATALOGS = _TABLES + _FUNCTIONS
_IS_TABLES = re.compile(r"\binformation_schema\s*\.\s*tables\b", re.IGNORECASE)
# words after which a FROM list is over (at the same depth of parentheses)
_FROM_ENDS = {"WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "INTERSECT", "EXCEPT", "SELECT",
              "RETURNING", "SET", "VALUES", "WINDOW", "FOR", "FETCH"}


def touches(low: str) -> bool:
    """Whether rewrite may change this lower-cased query text."""
    return "information_schema" in low or ("pg_" in low and any(name in low for name in _CATALOGS))


def _spots(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of the catalog references to rewrite: any `pg_catalog.<name>`, a bare table name
    where a FROM list names a relation (after FROM, JOIN or a comma of the list), a bare function name
    before its parenthesis. Column names, aliases and qualifiers (`pg_class.oid`, which still names the
    view) stay; the tokenizer keeps strings, quoted names and comments apart."""
    try:
        toks = tokenize(text)
    except errors.Error:
        return []
    spots: list[tuple[int, int, str]] = []
    in_from = [False]  # per depth of parentheses
    for k, tok in enumerate(toks):
        word = tok.text.upper() if tok.token_type != TokenType.IDENTIFIER else ""
        if tok.token_type == TokenType.L_PAREN:
            in_from.append(False)
            continue
        if tok.token_type == TokenType.R_PAREN:
            if len(in_from) > 1:
                in_from.pop()
            continue
        if word in ("FROM", "JOIN"):
            in_from[-1] = True
        elif word in _FROM_ENDS:
            in_from[-1] = False
        if tok.token_type != TokenType.VAR or tok.text.lower() not in _CATALOGS:
            continue
        name = tok.text.lower()
        before = toks[k - 1] if k else None
        after = toks[k + 1] if k + 1 < len(toks) else None
        if before is not None and before.token_type == TokenType.DOT:
            schema = toks[k - 2] if k >= 2 else None
            if schema is not None and schema.token_type == TokenType.VAR and schema.text.lower() == "pg_catalog":
                spots.append((schema.start, tok.end + 1, name))
            continue
        if after is not None and after.token_type == TokenType.DOT:
            continue  # a qualifier: the relation it names is rewritten where the FROM list names it
        if name in _FUNCTIONS:
            if after is not None and after.token_type == TokenType.L_PAREN:
                spots.append((tok.start, tok.end + 1, name))
        elif before is not None and (before.text.upper() in ("FROM", "JOIN")
                                     or (before.token_type == TokenType.COMMA and in_from[-1])):
            spots.append((tok.start, tok.end + 1, name))
    return spots


def rewrite(text: str) -> str:
    """The query reading HeliosDB's catalog views (the same object when there is nothing to do)."""
    low = text.lower()
    out = text
    if any(name in low for name in _CATALOGS):
        for start, end, name in reversed(_spots(text)):
            out = out[:start] + "heliosdb." + name + out[end:]
    if "information_schema" in low and "tables" in low:
        out = _IS_TABLES.sub("heliosdb.information_schema_tables", out)
    return out if out != text else text
