"""Clients' catalog queries, adjusted so HeliosDB tables look like tables.

A HeliosDB table is a view in the branch's schema (over the versioned
storage), so psql's \\dt (relkind 'r'/'p') would list none, \\d would call it
a view and ORMs would reflect no tables. Queries that read
pg_catalog.pg_class get ``heliosdb.relkind(<rel>.oid, <rel>.relkind)`` in
place of ``<rel>.relkind``, where <rel> is an alias (``c.relkind``) or the
table itself (``pg_class.relkind``, ``pg_catalog.pg_class.relkind``, as
SQLAlchemy writes it): 'r' for HeliosDB tables, 'm' for HeliosDB
materialized views, the stored kind for everything else. The function has
the column's name, so a selected ``c.relkind`` is still called relkind.
``information_schema.tables`` reads heliosdb.information_schema_tables,
the same view with HeliosDB tables as BASE TABLE.
"""

from __future__ import annotations

import re

# <rel>.relkind, <rel> an identifier that is not itself the column of something, or [pg_catalog.]pg_class
_RELKIND = re.compile(
    r"(?<![\w\"])((?:pg_catalog\s*\.\s*)?pg_class|(?<!\.)[A-Za-z_][A-Za-z0-9_]*)\s*\.\s*relkind\b", re.IGNORECASE
)
_IS_TABLES = re.compile(r"\binformation_schema\s*\.\s*tables\b", re.IGNORECASE)


def rewrite(text: str) -> str:
    """The query with relkind read through heliosdb.relkind (the same object when there is nothing to do)."""
    out = text
    if "relkind" in text and "pg_class" in text:
        out = _RELKIND.sub(r"heliosdb.relkind(\1.oid, \1.relkind)", out)
    if "information_schema" in text and "tables" in text:
        out = _IS_TABLES.sub("heliosdb.information_schema_tables", out)
    return out if out != text else text
