"""ALTER TABLE ... ADD [CONSTRAINT name] FOREIGN KEY and VALIDATE CONSTRAINT on a table the branch
inherited.

The table is a view on the branch, and PostgreSQL's foreign keys are between tables. So
PostgreSQL reads and checks the definition on stand-ins of both tables (`inherited_keys.stand_in`:
named as the tables, with their keys and the branch's rows, in a schema of the transaction's own).
PostgreSQL then resolves the referenced columns (the primary key when none are named), refuses a
key without a unique constraint (42830) or of another type (42804) and checks the existing rows
(23503, unless NOT VALID), with its own messages. The key it made is read back into the table's
schema version; from there the branch's write triggers enforce it, both ways (foreign_keys), as
for keys the branch inherited. VALIDATE CONSTRAINT checks the branch's rows against a NOT VALID
check or key, then marks it valid.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from psycopg import sql

from heliosdb import errors
from heliosdb.branching import foreign_keys, inherited_keys, layout
from heliosdb.catalog.model import (
    Constraint,
    Snapshot,
    TableInfo,
    TableVersion,
    chain,
    find_table,
    table_info,
)
from heliosdb.sql.names import is_word, read_name, replace, tokenize

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741


def add_foreign_key(session: Session, version: TableVersion, info: TableInfo, spec: str) -> Constraint:
    """The key `spec` (what follows ADD) defines, checked by PostgreSQL."""
    conn, branch = session.conn, session.branch
    toks = tokenize(spec)
    at = next((k for k, t in enumerate(toks) if is_word(t, "REFERENCES")), None)
    if at is None:
        raise errors.SyntaxError("syntax error: expected REFERENCES")
    ref_name, _ = read_name(toks, at + 1)
    if ref_name.schema not in (None, branch.user_schema):
        raise errors.NotSupportedError("a foreign key to another branch's table is not supported")
    referenced = find_table(conn, chain(conn, branch.id), ref_name.name)
    if referenced is None:
        raise errors.UndefinedTable(f'relation "{ref_name.name}" does not exist')
    ref_info = table_info(conn, referenced.table_id)
    if ref_info.root_branch == branch.id and referenced.table_id != info.id:
        # its writes go straight to its root relation: nothing would apply the key's actions there
        raise errors.NotSupportedError(
            f'a foreign key from "{version.name}", which this branch inherited, to "{referenced.name}", which it '
            "created, is not supported", hint=f'Reference "{version.name}" from "{referenced.name}" instead, or '
            "create the key on the branch that created both tables.")
    checked = "NOT VALID" not in " ".join(t.text.upper() for t in toks[-2:])
    with conn.transaction():  # the copies go with the savepoint, whatever happens
        mine = inherited_keys.stand_in(conn, version, info, I(branch.user_schema, version.name) if checked else None)
        target = mine if referenced.table_id == info.id else inherited_keys.stand_in(
            conn, referenced, ref_info, I(branch.user_schema, referenced.name) if checked else None)
        conn.execute(f"ALTER TABLE {mine} ADD {replace(spec, ref_name, target)}")  # type: ignore[arg-type]
        row = conn.execute(
            """SELECT c.conname,
                      ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                      ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                            JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
                      c.confdeltype, c.confupdtype, c.confmatchtype, c.condeferrable, c.condeferred, c.convalidated
               FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype = 'f'""",
            (mine,)).fetchone()
        assert row is not None
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(I(inherited_keys.stand_in_schema(conn))))
    name, cols, ref_cols, on_delete, on_update, match, deferrable, deferred, valid = row
    taken = {c.name for c in version.constraints}
    if name in taken:
        if is_word(toks[0], "CONSTRAINT"):
            raise errors.lookup("42710")(f'constraint "{name}" for relation "{version.name}" already exists',
                                         sqlstate="42710")
        name = layout.free_name(name, taken)  # PostgreSQL numbers a default name that is taken
    expr: dict[str, Any] = {"table": ref_info.phys_name, "schema": ref_info.phys_schema, "cols": list(ref_cols),
                            "on_delete": on_delete, "on_update": on_update, "match": match,
                            "deferrable": deferrable, "deferred": deferred, "valid": valid}
    return Constraint(name, "f", list(cols), json.dumps(expr))


def validate(session: Session, version: TableVersion, name: str) -> None:
    """ALTER TABLE ... VALIDATE CONSTRAINT of a NOT VALID check or foreign key: the rows the branch sees
    are checked (PostgreSQL's errors), then the constraint is valid."""
    conn, branch = session.conn, session.branch
    con = next((c for c in version.constraints if c.name == name and c.kind in ("c", "f")), None)
    if con is None:
        raise errors.UndefinedObject(f'constraint "{name}" of relation "{version.name}" does not exist')
    view = I(branch.user_schema, version.name)
    if con.kind == "c":
        from heliosdb.branching.alter_branch import check_holds

        check_holds(conn, view, con.expr or "true", name, version.name)
        con.valid = True
        return
    snap = Snapshot(conn, chain(conn, branch.id))
    fk = next((k for k in foreign_keys.outgoing(snap, version) if k.con.name == name), None)
    if fk is None:  # its referenced table is gone from the branch
        raise errors.UndefinedTable(f'relation "{json.loads(con.expr or "{}").get("table")}" does not exist')
    inherited_keys.check_rows(session, fk, view)
    con.expr = json.dumps({**json.loads(con.expr or "{}"), "valid": True})
