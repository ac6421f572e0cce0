"""Foreign keys from a table created on a branch to a table the branch inherited.

The new table's root relation is a real table, but the referenced table is a view on this
branch, and PostgreSQL's foreign keys reference tables only. So PostgreSQL still parses and
checks the definition, against a stand-in: a table named like the referenced one, with its
columns and its primary and unique keys, in a schema of this transaction's own (`stand_in`).
PostgreSQL then resolves the referenced columns, defaults to the primary key, refuses a key
without a unique constraint (42830) or of another type (42804), all with its own messages.
The constraint it made is read back and dropped with the stand-in (`adopt`); HeliosDB keeps it
in the table's schema version (kind 'f', `"inherited": true`), where every branch forked later
finds it as an ordinary inherited foreign key.

On the branch itself a constraint trigger per key, named as the key (SET CONSTRAINTS finds it),
does PostgreSQL's check over what the branch sees (`install`): immediately, or at commit for
DEFERRABLE INITIALLY DEFERRED (and SET CONSTRAINTS). Deleting or rekeying a referenced row runs the key's action from the referenced
table's write trigger (`foreign_keys.action_sql`), as for keys between inherited tables.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb.branching import foreign_keys
from heliosdb.catalog.model import Branch, Constraint, Snapshot, TableInfo, TableVersion
from heliosdb.sql.names import quote_ident

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741
L = sql.Literal

_FUNCTION_PREFIX = "_hdb_fk_"


def is_inherited(con: Constraint) -> bool:
    """A foreign key that HeliosDB enforces on a root relation (its referenced table is inherited)."""
    return con.kind == "f" and bool(con.expr) and bool(json.loads(con.expr or "{}").get("inherited"))


def _relation(info: TableInfo) -> str:
    """The root relation's name, for ::regclass."""
    return f"{quote_ident(info.phys_schema)}.{quote_ident(info.phys_name)}"


def stand_in_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT 'hdb_ref_' || pg_backend_pid()").fetchone()
    assert row is not None
    return str(row[0])


def stand_in(conn: psycopg.Connection[Any], version: TableVersion, info: TableInfo,
             rows: sql.Composable | None = None) -> str:
    """Create (once per transaction) the stand-in of an inherited table; returns its qualified name.

    rows: the relation the branch reads the table through, for a statement that makes PostgreSQL
    check existing rows against the key (ALTER TABLE of a table with rows): the stand-in gets them.
    """
    schema = stand_in_schema(conn)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(I(schema)))
    qualified = f"{quote_ident(schema)}.{quote_ident(version.name)}"
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
    if not (exists and exists[0]):
        cols: list[sql.Composable] = [sql.SQL("{} {}").format(I(c.name), sql.SQL(c.type)) for c in version.columns]
        for con in version.constraints:
            if con.kind in ("p", "u") and all(version.column(c) is not None for c in con.cols):
                cols.append(sql.SQL("{} ({})").format(sql.SQL("PRIMARY KEY" if con.kind == "p" else "UNIQUE"),
                                                      sql.SQL(", ").join(I(c) for c in con.cols)))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(I(schema, version.name), sql.SQL(", ").join(cols)))
        # the stand-in's comment names the table it stands in for (adopt reads it back)
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            I(schema, version.name), L(json.dumps({"schema": info.phys_schema, "table": info.phys_name}))))
        if rows is not None:
            names = sql.SQL(", ").join(I(c.name) for c in version.columns)
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                I(schema, version.name), names, names, rows))
    return qualified


def adopt(conn: psycopg.Connection[Any], info: TableInfo) -> list[dict[str, Any]]:
    """The keys the last statement made to stand-ins, as HeliosDB constraints; drops them and the stand-ins."""
    schema = stand_in_schema(conn)
    exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()
    if not (exists and exists[0]):
        return []
    out = []
    for name, keys, target, ref_keys, on_delete, on_update, match, deferrable, deferred, valid in conn.execute(
        """SELECT c.conname,
                  ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                  obj_description(c.confrelid, 'pg_class'),
                  ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
                  c.confdeltype, c.confupdtype, c.confmatchtype, c.condeferrable, c.condeferred, c.convalidated
           FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid
           WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND r.relnamespace = %s::regnamespace
           ORDER BY c.oid""",
        (_relation(info), schema),
    ).fetchall():
        ref = json.loads(target)
        out.append({"name": name, "kind": "f", "cols": list(keys), "expr": json.dumps({
            "table": ref["table"], "schema": ref["schema"], "cols": list(ref_keys), "on_delete": on_delete,
            "on_update": on_update, "match": match, "inherited": True, "deferrable": deferrable,
            "deferred": deferred, "valid": valid})})
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(I(*info.cur), I(name)))
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(I(schema)))
    return out


def drop_checks(conn: psycopg.Connection[Any], info: TableInfo) -> None:
    """Drop the check triggers of the table's inherited keys (`install` makes them)."""
    for (name,) in conn.execute(  # named as their keys (SET CONSTRAINTS finds them): found by their functions
        """SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgrelid = %s::regclass AND p.proname LIKE %s""",
        (_relation(info), _FUNCTION_PREFIX.replace("_", "\\_") + "%"),
    ).fetchall():
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(I(name), I(*info.cur)))


def install(conn: psycopg.Connection[Any], branch: Branch, info: TableInfo, version: TableVersion,
            snap: Snapshot) -> None:
    """(Re)create the check triggers of the table's inherited keys on its root relation."""
    drop_checks(conn, info)
    fks = [fk for fk in foreign_keys.outgoing(snap, version) if is_inherited(fk.con)]
    where = sql.SQL("TABLE = {}, SCHEMA = {}").format(L(version.name), L(branch.user_schema))
    for k, fk in enumerate(fks):
        check = foreign_keys.check_sql(snap, branch, [fk], where, queue=False)
        if not check:
            continue
        ref = json.loads(fk.con.expr or "{}")
        fn = I(info.phys_schema, f"{_FUNCTION_PREFIX}{k}_b{branch.id}")
        # a check at commit reads the row as it was written: skip it when a later change replaced it
        # (that change queued its own check) or deleted it, as PostgreSQL's own check does
        current = sql.SQL(" AND ").join(sql.SQL("r.{c} IS NOT DISTINCT FROM NEW.{c}").format(c=I(c)) for c in fk.cols)
        conn.execute(sql.SQL(
            """CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {t} r WHERE r._hdb_rowid = NEW._hdb_rowid AND {current}) THEN RETURN NULL; END IF;
    {check}
    RETURN NULL;
END $f$"""
        ).format(fn=fn, t=I(*info.cur), current=current, check=sql.SQL("\n    ").join(check)))
        timing = sql.SQL("")
        if ref.get("deferrable"):
            timing = sql.SQL(" DEFERRABLE INITIALLY {}").format(
                sql.SQL("DEFERRED" if ref.get("deferred") else "IMMEDIATE"))
        conn.execute(sql.SQL(
            "CREATE CONSTRAINT TRIGGER {tg} AFTER INSERT OR UPDATE ON {t}{timing} FOR EACH ROW EXECUTE FUNCTION {fn}()"
        ).format(tg=I(fk.con.name), t=I(*info.cur), timing=timing, fn=fn))


def referenced_tables(snap: Snapshot, version: TableVersion) -> list[int]:
    """The inherited tables the table's inherited keys reference (their write triggers run the actions)."""
    return sorted({fk.parent.table_id for fk in foreign_keys.outgoing(snap, version) if is_inherited(fk.con)})


def after_ddl(session: Session, info: TableInfo, version: TableVersion, old: TableVersion | None = None) -> None:
    """Install the table's checks and regenerate the write triggers of the tables its keys reference now,
    or did before the DDL (`old`: the version it replaced), from one read of the catalog."""
    from heliosdb.branching import layout
    from heliosdb.catalog.model import chain

    conn, branch = session.conn, session.branch
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    version = snap.tables.get(info.id, version)
    install(conn, branch, info, version, snap)
    tables = set(referenced_tables(snap, version)) | (set(referenced_tables(snap, old)) if old is not None else set())
    if tables:
        layout.refresh_writes(conn, branch, levels, sorted(tables), snap)


def validate(session: Session, info: TableInfo, version: TableVersion, name: str) -> dict[str, Any] | None:
    """ALTER TABLE ... VALIDATE CONSTRAINT of an inherited key: every row's key is in the referenced table.
    Returns the key, now valid (None: no such key)."""
    from heliosdb.catalog.model import chain

    conn, branch = session.conn, session.branch
    snap = Snapshot(conn, chain(conn, branch.id))
    fk = next((k for k in foreign_keys.outgoing(snap, version) if k.con.name == name), None)
    if fk is None:
        return None
    check_rows(session, fk, I(*info.cur))
    return {"name": name, "kind": "f", "cols": list(fk.con.cols),
            "expr": json.dumps({**json.loads(fk.con.expr or "{}"), "valid": True})}


def check_rows(session: Session, fk: foreign_keys.ForeignKey, rows: sql.Composable) -> None:
    """Every row of `rows` (the referencing table as the branch reads it) has its key in the referenced
    table as the branch sees it: PostgreSQL's errors otherwise (VALIDATE CONSTRAINT)."""
    from heliosdb import errors

    conn, branch = session.conn, session.branch
    name, table = fk.con.name, fk.child.name
    if fk.match == "f" and len(fk.cols) > 1:
        mixed = conn.execute(sql.SQL("SELECT 1 FROM {t} r WHERE num_nulls({cols}) BETWEEN 1 AND {n} LIMIT 1").format(
            t=rows, cols=sql.SQL(", ").join(sql.SQL("r.{}").format(I(c)) for c in fk.cols),
            n=L(len(fk.cols) - 1))).fetchone()
        if mixed is not None:
            raise errors.ForeignKeyViolation(
                f'insert or update on table "{table}" violates foreign key constraint "{name}"',
                detail="MATCH FULL does not allow mixing of null and nonnull key values.")
    row = conn.execute(sql.SQL(
        "SELECT {key} FROM {t} r WHERE {nn} AND NOT EXISTS (SELECT 1 FROM {rv} p WHERE {m}) LIMIT 1"
    ).format(
        key=sql.SQL(" || ', ' || ").join(sql.SQL("r.{}::text").format(I(c)) for c in fk.cols), t=rows,
        nn=sql.SQL(" AND ").join(sql.SQL("r.{} IS NOT NULL").format(I(c)) for c in fk.cols),
        rv=I(branch.phys_schema, fk.parent.name),
        m=sql.SQL(" AND ").join(sql.SQL("p.{} = r.{}").format(I(rc), I(c)) for c, rc in zip(fk.cols, fk.ref_cols, strict=True)),
    )).fetchone()
    if row is not None:
        raise errors.ForeignKeyViolation(
            f'insert or update on table "{table}" violates foreign key constraint "{name}"',
            detail=f'Key ({", ".join(fk.cols)})=({row[0]}) is not present in table "{fk.parent.name}".')
