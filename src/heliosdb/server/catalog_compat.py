"""Clients' catalog queries, adjusted so HeliosDB tables look like tables.

A HeliosDB table is a view in the branch's schema (over the versioned
storage), so psql's \\dt (relkind 'r'/'p') would list none and \\d would call
it a view. Queries that read pg_catalog.pg_class get
``heliosdb._relkind(alias.oid, alias.relkind)`` in place of
``alias.relkind``: 'r' for HeliosDB tables, 'm' for HeliosDB materialized
views, the stored kind for everything else.
"""

from __future__ import annotations

import re

_RELKIND = re.compile(r"(?<![\w.\"])([A-Za-z_][A-Za-z0-9_]*)\.relkind\b")


def rewrite(text: str) -> str:
    """The query with relkind read through heliosdb._relkind (unchanged when it reads no pg_class)."""
    if "relkind" not in text or "pg_class" not in text:
        return text
    return _RELKIND.sub(r"heliosdb._relkind(\1.oid, \1.relkind)", text)
