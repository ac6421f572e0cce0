"""INSERT ... ON CONFLICT on a branch view.

PostgreSQL does not run ON CONFLICT against views with INSTEAD OF triggers.
For a table the branch inherited, the clause is taken off the statement and
handed to the branch's write trigger (in the transaction-local setting
heliosdb.on_conflict), which skips the row or updates the conflicting one.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from heliosdb import errors
from heliosdb.sql.names import IDENT

if TYPE_CHECKING:
    from heliosdb.session import Session

_ON_CONFLICT = re.compile(r"\bON\s+CONFLICT\b", re.IGNORECASE)
_PARAMS = re.compile(r"%(?:\(\w+\))?s")
_ON_CONSTRAINT = re.compile(rf"\bON\s+CONFLICT\s+ON\s+CONSTRAINT\s+({IDENT})", re.IGNORECASE)


def constraint_columns(session: Session, stmt: str) -> str:
    """`ON CONFLICT ON CONSTRAINT name` -> `ON CONFLICT (its columns)`, for a table rooted on this branch.

    The user's object there is a view over the root relation, and PostgreSQL looks the
    constraint up on the view (42704); the column list finds the same unique index.
    """
    m = _ON_CONSTRAINT.search(stmt)
    if m is None:
        return stmt
    from heliosdb.catalog.model import chain, find_table, table_info

    try:  # only the target is needed: query parameters may stand anywhere else
        tree = sqlglot.parse_one(_PARAMS.sub("NULL", stmt), read="postgres")
    except sqlglot.errors.ParseError:
        return stmt
    target = tree.this.this if isinstance(tree, exp.Insert) and isinstance(tree.this, exp.Schema) else tree.this
    if not isinstance(tree, exp.Insert) or not isinstance(target, exp.Table):
        return stmt
    if target.db and target.db != session.branch.user_schema:
        return stmt
    version = find_table(session.conn, chain(session.conn, session.branch.id), target.name)
    if version is None or table_info(session.conn, version.table_id).root_branch != session.branch.id:
        return stmt
    word = m.group(1)
    name = word[1:-1].replace('""', '"') if word.startswith('"') else word.lower()
    con = next((c for c in version.constraints if c.name == name and c.kind in ("p", "u") and c.cols), None)
    if con is None:
        return stmt
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in con.cols)
    return stmt[: m.start()] + f"ON CONFLICT ({cols})" + stmt[m.end() :]


def split_upsert(session: Session, stmt: str) -> tuple[str, str] | None:
    """(INSERT without ON CONFLICT, the conflict action as JSON) when the target is inherited."""
    if not _ON_CONFLICT.search(stmt):
        return None
    from heliosdb.catalog.model import chain, find_table, table_info

    try:
        tree = sqlglot.parse_one(stmt, read="postgres")
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(tree, exp.Insert) or tree.args.get("conflict") is None:
        return None
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    if not isinstance(target, exp.Table):
        return None
    if target.db and target.db != session.branch.user_schema:
        return None
    version = find_table(session.conn, chain(session.conn, session.branch.id), target.name)
    if version is None or table_info(session.conn, version.table_id).root_branch == session.branch.id:
        return None
    conflict: exp.OnConflict = tree.args["conflict"]
    alias = target.alias or target.name
    action = "nothing" if "NOTHING" in conflict.args["action"].name.upper() else "update"
    spec: dict[str, object] = {"action": action, "alias": alias}
    keys = conflict.args.get("conflict_keys")
    if keys:
        spec["keys"] = [k.this.name if isinstance(k, exp.Ordered) else k.name for k in keys]
        plain = all(isinstance(k.this if isinstance(k, exp.Ordered) else k, exp.Column) for k in keys)
        if plain and not conflict.args.get("index_predicate") and not any(
                c.kind in ("p", "u") and sorted(c.cols) == sorted(spec["keys"]) for c in version.constraints) \
                and not any(c.kind == "x" for c in version.constraints):
            raise errors.lookup("42P10")(
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                sqlstate="42P10")
    if conflict.args.get("constraint") is not None:
        spec["constraint"] = conflict.args["constraint"].name
        if not any(c.name == spec["constraint"] and c.kind in ("p", "u") for c in version.constraints):
            raise errors.UndefinedObject(f'constraint "{spec["constraint"]}" for table "{target.name}" does not exist')
    if action == "update":
        sets = []
        for eq in conflict.expressions:
            value = eq.expression.copy()
            for col in value.find_all(exp.Column):
                if not col.table:
                    col.set("table", exp.to_identifier(alias))
            sets.append(f"{eq.this.sql('postgres')} = {value.sql('postgres')}")
        spec["set"] = ", ".join(sets)
        where = conflict.args.get("where")
        if where is not None:
            cond = where.this.copy()
            for col in cond.find_all(exp.Column):
                if not col.table:
                    col.set("table", exp.to_identifier(alias))
            spec["where"] = cond.sql("postgres")
    tree.set("conflict", None)
    return tree.sql("postgres"), json.dumps(spec)
