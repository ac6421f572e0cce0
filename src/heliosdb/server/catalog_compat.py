"""Clients' catalog queries, adjusted so HeliosDB tables look like tables.

A HeliosDB table is a view in the branch's schema (over the versioned storage), so to
PostgreSQL's catalogs it has no constraints, no indexes and no NOT NULL column, and its
relkind is 'v': psql's \\dt would list none, \\d would call it a view and ORMs would reflect
tables without keys. Client queries therefore read a few catalogs through HeliosDB's views of
them (catalog/client_catalog.sql): ``pg_class``, ``pg_attribute``, ``pg_attrdef``,
``pg_constraint``, ``pg_index``, ``pg_trigger``, ``pg_depend`` and ``pg_namespace``, and the
views ``pg_tables``, ``pg_indexes``, ``pg_views`` and ``pg_matviews``
(catalog/client_information_schema.sql), with or without ``pg_catalog.``, become
``heliosdb.<name>``, and so do the functions
``pg_get_constraintdef``, ``pg_get_indexdef``, ``pg_table_is_visible`` and
``pg_get_serial_sequence``. A view keeps the catalog's columns and its name, so ``c.relkind``
and ``pg_class.oid`` still resolve. ``information_schema.<view>`` reads
heliosdb.information_schema_<view>, the view's copy over those catalogs
(catalog/client_information_schema.sql). A quoted name is the same name (TypeORM writes
``"pg_catalog"."pg_constraint"``); string literals and comments are left alone (psql writes
``'pg_catalog.pg_class'::regclass``).
"""

from __future__ import annotations

from sqlglot.tokens import Token, TokenType

from heliosdb import errors
from heliosdb.sql.names import tokenize

_TABLES = ("pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger", "pg_depend",
           "pg_namespace", "pg_tables", "pg_indexes", "pg_views", "pg_matviews")
_FUNCTIONS = ("pg_get_constraintdef", "pg_get_indexdef", "pg_table_is_visible", "pg_get_serial_sequence")
_CATALOGS = _TABLES + _FUNCTIONS
# information_schema's views (PostgreSQL 15's; the catalog copies every view the server has)
_IS_VIEWS = frozenset("""
    _pg_foreign_data_wrappers _pg_foreign_servers _pg_foreign_table_columns _pg_foreign_tables _pg_user_mappings
    administrable_role_authorizations applicable_roles attributes character_sets check_constraint_routine_usage
    check_constraints collation_character_set_applicability collations column_column_usage column_domain_usage
    column_options column_privileges column_udt_usage columns constraint_column_usage constraint_table_usage
    data_type_privileges domain_constraints domain_udt_usage domains element_types enabled_roles
    foreign_data_wrapper_options foreign_data_wrappers foreign_server_options foreign_servers foreign_table_options
    foreign_tables information_schema_catalog_name key_column_usage parameters referential_constraints
    role_column_grants role_routine_grants role_table_grants role_udt_grants role_usage_grants routine_column_usage
    routine_privileges routine_routine_usage routine_sequence_usage routine_table_usage routines schemata sequences
    table_constraints table_privileges tables transforms triggered_update_columns triggers udt_privileges
    usage_privileges user_defined_types user_mapping_options user_mappings view_column_usage view_routine_usage
    view_table_usage views""".split())
# words after which a FROM list is over (at the same depth of parentheses)
_FROM_ENDS = {"WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "INTERSECT", "EXCEPT", "SELECT",
              "RETURNING", "SET", "VALUES", "WINDOW", "FOR", "FETCH"}


def touches(low: str) -> bool:
    """Whether rewrite may change this lower-cased query text."""
    return "information_schema" in low or ("pg_" in low and any(name in low for name in _CATALOGS))


def _spots(text: str) -> list[tuple[int, int, str]]:
    """(start, end, replacement) of the catalog references to rewrite: any `pg_catalog.<name>` and
    `information_schema.<view>`, a bare table name where a FROM list names a relation (after FROM, JOIN or
    a comma of the list), a bare function name before its parenthesis, quoted or not. Column names,
    aliases and qualifiers (`pg_class.oid`, which still names the view) stay; the tokenizer keeps strings
    and comments apart."""
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
        before = toks[k - 1] if k else None
        after = toks[k + 1] if k + 1 < len(toks) else None
        if _name(tok) == "information_schema" and after is not None and after.token_type == TokenType.DOT:
            view = toks[k + 2] if k + 2 < len(toks) else None
            if (view is not None and _name(view) in _IS_VIEWS
                    and (before is None or before.token_type != TokenType.DOT)):
                spots.append((tok.start, view.end + 1, _is_copy(toks, k, in_from[-1])))
            continue
        name = _name(tok)  # quoted too: TypeORM writes "pg_catalog"."pg_class"
        if name not in _CATALOGS:
            continue
        if before is not None and before.token_type == TokenType.DOT:
            schema = toks[k - 2] if k >= 2 else None
            if schema is not None and _name(schema) == "pg_catalog":
                spots.append((schema.start, tok.end + 1, "heliosdb." + name))
            continue
        if after is not None and after.token_type == TokenType.DOT:
            continue  # a qualifier: the relation it names is rewritten where the FROM list names it
        if name in _FUNCTIONS:
            if after is not None and after.token_type == TokenType.L_PAREN:
                spots.append((tok.start, tok.end + 1, "heliosdb." + name))
        elif _names_relation(before, in_from[-1]):
            spots.append((tok.start, tok.end + 1, "heliosdb." + name))
    return spots


def _is_copy(toks: list[Token], k: int, in_from: bool) -> str:
    """What `information_schema.<view>` at toks[k] becomes. The copy keeps the view's name as the FROM
    item's alias when it has none of its own, so `columns.column_name` still resolves; a column
    qualified with the whole name (`information_schema.columns.column_name`) then names that alias."""
    view = _name(toks[k + 2])
    nxt = toks[k + 3] if k + 3 < len(toks) else None
    if nxt is not None and nxt.token_type == TokenType.DOT:
        return view
    named = _names_relation(toks[k - 1] if k else None, in_from)
    aliased = nxt is not None and (nxt.token_type in (TokenType.VAR, TokenType.IDENTIFIER) or nxt.text.upper() == "AS")
    return "heliosdb.information_schema_" + view + (f' AS "{view}"' if named and not aliased else "")


def _names_relation(before: Token | None, in_from: bool) -> bool:
    """Whether the name after `before` is a FROM item: after FROM, JOIN or a comma of a FROM list."""
    return before is not None and (before.text.upper() in ("FROM", "JOIN")
                                   or (before.token_type == TokenType.COMMA and in_from))


def _name(tok: Token) -> str:
    """The name a token is: case-folded unless quoted."""
    if tok.token_type == TokenType.IDENTIFIER:
        return tok.text
    return tok.text.lower() if tok.token_type == TokenType.VAR else ""


def rewrite(text: str) -> str:
    """The query reading HeliosDB's catalog views (the same object when there is nothing to do)."""
    low = text.lower()
    out = text
    if "information_schema" in low or any(name in low for name in _CATALOGS):
        for start, end, replacement in reversed(_spots(text)):
            out = out[:start] + replacement + out[end:]
    return out if out != text else text
