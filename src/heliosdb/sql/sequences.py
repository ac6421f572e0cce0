"""pg_get_serial_sequence('table', 'column') on a HeliosDB table.

A HeliosDB table is a view to PostgreSQL; its serial or identity column's sequence belongs to
the storage relation, so PostgreSQL's function finds none for the view and returns NULL
(Django's `loaddata` and `sqlsequencereset` then reset nothing, and the next insert collides
with a loaded key). Calls with literal arguments are pointed at the storage relation.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from heliosdb.sql.names import quote_literal

# pg_get_serial_sequence('<table>', '<column>'), both literals: groups table, column
# (not heliosdb.pg_get_serial_sequence, the endpoint's, which resolves any call in SQL)
CALL = re.compile(r"(?i)(?<!\.)\bpg_get_serial_sequence\s*\(\s*'((?:[^']|'')*)'\s*,\s*'((?:[^']|'')*)'\s*\)")

# the same call with DB-API parameters for its arguments: run with the values in place, it is read as above
PARAMETER_CALL = re.compile(r"(?i)(?<!\.)\bpg_get_serial_sequence\s*\(\s*%(?:s|\(\w+\)s)\s*,\s*%(?:s|\(\w+\)s)\s*\)")

# (table as written, column) -> (storage relation, its column), None: not a HeliosDB table's,
# "": a HeliosDB table's column that has no sequence
Resolve = Callable[[str, str], tuple[str, str] | None | str]


def needs_look(text: str) -> bool:
    return "pg_get_serial_sequence" in text.lower()


def storage_sequences(text: str, resolve: Resolve) -> str:
    def call(m: re.Match[str]) -> str:
        target = resolve(m.group(1).replace("''", "'"), m.group(2).replace("''", "'"))
        if target is None:
            return m.group(0)
        if target == "":
            return "NULL::text"
        relation, column = target
        return f"pg_catalog.pg_get_serial_sequence({quote_literal(relation)}, {quote_literal(column)})"

    return CALL.sub(call, text)
