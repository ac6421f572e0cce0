"""ALTER TABLE ... ALTER COLUMN c [SET DATA] TYPE t [USING e], on every branch.

The stored versions of a column keep the type they were written with: time travel
reads them, and other branches read the same stored rows. So, in the ALTER's
transaction, a column of the new type is added and filled with the converted values,
the old column is dropped (kept hidden, as DROP COLUMN keeps it), and the new one takes
its name, its place among the columns, its default, NOT NULL, constraints and indexes.
On the table's root branch the filling is in place (the current rows and the branch's
history: no new row versions); on a branch that inherited the table the rows are the
ancestors' too, so the branch writes its own converted copy of each.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp

from heliosdb import errors
from heliosdb.branching import foreign_keys, layout
from heliosdb.catalog.model import Snapshot, TableInfo, TableVersion, chain, save_version
from heliosdb.sql.names import IDENT, quote_ident, read_name, tokenize, top_level_commas

if TYPE_CHECKING:
    from heliosdb.session import Session

# ALTER [COLUMN] c [SET DATA] TYPE <type> [USING <expression>]: groups column, type, expression
CLAUSE = re.compile(
    rf"(?is)^\s*ALTER\s+(?:COLUMN\s+)?(?!COLUMN\b)({IDENT})\s+(?:SET\s+DATA\s+)?TYPE\s+(.+?)(?:\s+USING\s+(.+?))?\s*$"
)
# the same clause anywhere in an ALTER TABLE (it must come alone)
RETYPE = re.compile(rf"(?is)\bALTER\s+(?:COLUMN\s+)?(?!COLUMN\b)({IDENT})\s+(?:SET\s+DATA\s+)?TYPE\b")
_TEMP = "hdb_retyped__{}"  # the new column until it takes the old one's name (not "_hdb_": hidden columns)


def is_retype(rest: str) -> bool:
    return CLAUSE.match(rest) is not None


def _refused(column: str, why: str, hint: str) -> errors.Error:
    return errors.NotSupportedError(f'ALTER COLUMN "{column}" TYPE is not supported: {why}', hint=hint)


def retype(session: Session, version: TableVersion, info: TableInfo, rest: str, lsn: int) -> None:
    """Run the type change of `rest` (one ALTER COLUMN ... TYPE clause) on the session's branch."""
    if top_level_commas(tokenize(rest)):
        raise errors.NotSupportedError("ALTER TABLE with ALTER COLUMN ... TYPE and other actions is not "
                                       "supported", hint="Run each action as its own ALTER TABLE.")
    m = CLAUSE.match(rest)
    assert m is not None
    name, new_type, using = read_name(tokenize(m.group(1)), 0)[0].name, m.group(2).strip(), m.group(3)
    col = version.column(name)
    if col is None:
        raise errors.UndefinedColumn(f'column "{name}" of relation "{version.name}" does not exist')
    _check_supported(session, version, info, name)
    conn = session.conn
    table, column, temp = quote_ident(version.name), quote_ident(name), _TEMP.format(col.col)
    position = [c.name for c in version.columns].index(name)
    on_root = session.branch.id == info.root_branch
    rules = [con for con in version.constraints if _involves(con, name) and not con.is_index]
    # indexes: on the root PostgreSQL's own (made again from their definitions); elsewhere the schema's
    # (made again by CREATE INDEX on the branch: its check, its mirror over the branch's rows)
    from heliosdb.branching.alter_branch import uses_column

    indexes = _root_indexes(conn, info, name) if on_root else [  # those its DROP COLUMN takes with it
        _index_sql(version.name, con) for con in version.constraints if con.is_index and uses_column(con, name)]

    commented = sql.Identifier(session.branch.user_schema, version.name, name)
    comment = conn.execute("SELECT col_description(to_regclass(%s), a.attnum) FROM pg_attribute a "
                           "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s",
                           (sql.Identifier(session.branch.user_schema, version.name).as_string(conn),) * 2 + (name,)
                           ).fetchone()
    _ddl(session, f"ALTER TABLE {table} ADD COLUMN {temp} {new_type}")
    value = f"({using or column})"  # an assignment, as PostgreSQL converts without USING: its casts, its errors
    try:
        with conn.transaction():
            if session.branch.id == info.root_branch:
                _fill_root(conn, info, temp, value)
            else:  # the rows are the ancestors' too: the branch writes its own converted copy of each
                session._run_passthrough(f"UPDATE {table} SET {temp} = {value}", None, True)
    except (psycopg.errors.DatatypeMismatch, errors.Error) as exc:
        if getattr(exc, "sqlstate", None) != "42804":
            raise
        typ = _type_name(conn, new_type)
        raise errors.lookup("42804")(
            f'column "{name}" cannot be cast automatically to type {typ}', sqlstate="42804",
            hint=f'You might need to specify "USING {name}::{typ}".') from None
    _ddl(session, f"ALTER TABLE {table} DROP COLUMN {column}")
    _ddl(session, f"ALTER TABLE {table} RENAME COLUMN {temp} TO {column}")
    if col.default is not None:
        try:
            with conn.transaction():
                _ddl(session, f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {col.default}")
        except (psycopg.errors.DatatypeMismatch, errors.Error) as exc:
            if getattr(exc, "sqlstate", None) != "42804":
                raise
            raise errors.lookup("42804")(  # PostgreSQL's words: the default goes with the column
                f'default for column "{name}" cannot be cast automatically to type {_type_name(conn, new_type)}',
                sqlstate="42804") from None
    if col.notnull:
        _ddl(session, f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
    from heliosdb.merge.schema import add_constraint

    for con in sorted(rules, key=lambda c: c.kind != "p"):
        ddl = add_constraint(version.name, con)
        if ddl is not None:
            _ddl(session, ddl)
    for definition in indexes:
        if on_root:
            conn.execute(definition)  # type: ignore[arg-type] - pg_get_indexdef's own text
        else:
            _ddl(session, definition)
    if on_root and indexes:  # recorded in the schema, as CREATE INDEX on the root records them
        from heliosdb.branching.tables import _resync_root

        _resync_root(session, Snapshot(conn, chain(conn, session.branch.id)).tables[info.id], info, lsn)
    _put_back(session, info, name, position, lsn, using)
    if comment and comment[0] is not None:  # the column's comment goes with it, as in PostgreSQL
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(commented, sql.Literal(comment[0])))


def _index_sql(table: str, con: Any) -> str:
    """CREATE INDEX again for an index of the schema (its definition as recorded after USING)."""
    using = con.using or f"btree ({', '.join(quote_ident(c) for c in con.cols)})"
    return f"CREATE {'UNIQUE ' if con.kind != 'i' else ''}INDEX {quote_ident(con.name)} ON {quote_ident(table)} USING {using}"


def _type_name(conn: psycopg.Connection[Any], new_type: str) -> str:
    """The type as PostgreSQL's messages name it: without its modifier (numeric, not numeric(8,2))."""
    row = conn.execute("SELECT format_type(%s::regtype, NULL)", (re.split(r"(?i)\s+COLLATE\s", new_type)[0],)).fetchone()
    return str(row[0]) if row else new_type


def _fill_root(conn: psycopg.Connection[Any], info: TableInfo, temp: str, value: str) -> None:
    """On the table's root branch the new column is filled in place, in the current rows and in the root
    branch's history: reads with the new schema (this point on) see every version converted, reads of
    earlier points keep reading the old column. No row changes, so merges see none."""
    rel = sql.Identifier(*info.cur)
    fill = sql.SQL("UPDATE {} SET {} = {}").format(rel, sql.Identifier(temp), sql.SQL(value))  # type: ignore[arg-type]
    role = conn.execute("SELECT current_setting('session_replication_role')").fetchone()[0]  # type: ignore[index]
    try:  # no trigger at all: no new versions, and no foreign-key events queued (a deferred key's events
        with conn.transaction():  # would keep the next ALTER TABLE of this transaction from running)
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(fill)
            conn.execute(sql.SQL("SET LOCAL session_replication_role = {}").format(sql.Literal(role)))
    except psycopg.errors.InsufficientPrivilege:  # storage not ours to run as superuser: our triggers only
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(rel))
        conn.execute(fill)
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(rel))
    hist = sql.SQL("UPDATE {} SET {} = {} WHERE _hdb_branch = {}").format(
        sql.Identifier(*info.hist), sql.Identifier(temp), sql.SQL(value), sql.Literal(info.root_branch))  # type: ignore[arg-type]
    try:
        with conn.transaction():
            conn.execute(hist)
    except psycopg.DataError:
        # an old value the current rows no longer hold does not convert: PostgreSQL would not have seen
        # it; such versions keep NULL in the new column (reads of their time use the old one)
        conn.execute(sql.SQL(
            "DO $hdb$ DECLARE r record; BEGIN FOR r IN SELECT ctid AS t FROM {h} WHERE _hdb_branch = {b} LOOP "
            "BEGIN UPDATE {h} SET {c} = {v} WHERE ctid = r.t; EXCEPTION WHEN data_exception THEN NULL; END; "
            "END LOOP; END $hdb$").format(h=sql.Identifier(*info.hist), c=sql.Identifier(temp),
                                          v=sql.SQL(value), b=sql.Literal(info.root_branch)))  # type: ignore[arg-type]


def _check_supported(session: Session, version: TableVersion, info: TableInfo, name: str) -> None:
    col = version.column(name)
    assert col is not None
    if col.identity or (col.default or "").startswith("nextval(") or col.generated:
        raise _refused(name, "it is an identity, serial or generated column",
                       "Add a column of the new type, copy the values with UPDATE, drop the old column and "
                       "rename the new one.")
    snap = Snapshot(session.conn, chain(session.conn, session.branch.id))
    current = snap.tables.get(info.id)
    keys = [fk for fk in foreign_keys.outgoing(snap, current) if name in fk.cols] if current else []
    keys += [fk for fk in foreign_keys.incoming(snap, current) if name in fk.ref_cols] if current else []
    if keys:
        raise _refused(name, f'foreign key "{keys[0].con.name}" uses it',
                       "Drop the foreign key, change the types of the columns on both sides, then add it again.")
    if any(c.kind == "x" and not c.using and _involves(c, name) for c in version.constraints):
        # recorded before catalog version 12: no definition to make it again from
        raise _refused(name, "a unique index on an expression uses it", "Drop the index first, then create it again.")


def _involves(con: Any, name: str) -> bool:
    """Whether a constraint uses the column: in its columns, else in its expressions' column references
    (a check a branch added, an index on expressions)."""
    if name in con.cols:
        return True
    if con.cols and con.kind != "x":
        return False
    for text in (con.expr if con.kind == "c" else None, *con.keys, con.where):
        try:
            if text and any(c.name == name for c in sqlglot.parse_one(text, read="postgres").find_all(exp.Column)):
                return True
        except sqlglot.errors.ParseError:
            return True  # unknown: treated as using it (it is dropped and added again)
    return False


def _root_indexes(conn: psycopg.Connection[Any], info: TableInfo, name: str) -> list[str]:
    """Definitions of the root relation's indexes on the column that no constraint owns (DROP COLUMN drops them)."""
    rel = quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name)
    return [r[0] for r in conn.execute(  # those that depend on the column (keys, expressions, INCLUDE, predicate)
        """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid = %s::regclass
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid)
             AND EXISTS (SELECT 1 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = i.indrelid
                                                                     AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid AND a.attname = %s)""",
        (rel, name)).fetchall()]


def _ddl(session: Session, text: str) -> None:
    from heliosdb.branching import tables
    from heliosdb.sql.classify import classify

    tables.execute(session, classify(text), text)


def _put_back(session: Session, info: TableInfo, name: str, position: int, lsn: int, using: str | None) -> None:
    """The new column where the old one was among the table's columns, with the change's USING."""
    conn, branch = session.conn, session.branch
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    version = snap.tables[info.id]
    new = next(c for c in version.columns if c.name == name)
    new.using = using.strip() if using else None
    cols = [c for c in version.columns if c.name != name]
    cols.insert(position, new)
    moved = [c.name for c in cols] != [c.name for c in version.columns]
    if not moved and new.using is None:
        return
    version.columns = cols
    version.branch_id = branch.id
    save_version(conn, version, lsn)
    if not moved:
        return
    with layout.keeping_comments(conn, branch.user_schema, version.name):
        if branch.id == info.root_branch:  # the user's view selects the columns in this order: made again
            conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(branch.user_schema, version.name)))
        layout.build_views(conn, branch, levels, info, version, replace=True)
