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

_CATALOGS = ("pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger", "pg_depend",
             "pg_namespace", "pg_get_constraintdef", "pg_get_indexdef", "pg_table_is_visible",
             "pg_get_serial_sequence")
_NAME = re.compile(
    r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*[\s\S]*?\*/|\$(?P<tag>(?:[A-Za-z_]\w*)?)\$[\s\S]*?\$(?P=tag)\$)"""
    r"|(?<![\w.$])(?:pg_catalog\s*\.\s*)?(" + "|".join(_CATALOGS) + r")\b",
    re.IGNORECASE,
)
_IS_TABLES = re.compile(r"\binformation_schema\s*\.\s*tables\b", re.IGNORECASE)


def _swap(m: re.Match[str]) -> str:
    return m.group(1) or "heliosdb." + m.group(3).lower()


def touches(low: str) -> bool:
    """Whether rewrite may change this lower-cased query text."""
    return any(name in low for name in _CATALOGS) or "information_schema" in low


def rewrite(text: str) -> str:
    """The query reading HeliosDB's catalog views (the same object when there is nothing to do)."""
    low = text.lower()
    out = text
    if any(name in low for name in _CATALOGS):
        out = _NAME.sub(_swap, out)
    if "information_schema" in low and "tables" in low:
        out = _IS_TABLES.sub("heliosdb.information_schema_tables", out)
    return out if out != text else text
