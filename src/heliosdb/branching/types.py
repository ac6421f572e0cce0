"""DROP TYPE / DROP DOMAIN where HeliosDB's storage relations use the type.

A dropped table's storage relations stay (time travel reads them), and so do the types their
columns have. PostgreSQL would refuse to drop such a type (2BP01, naming the storage), and
with CASCADE would drop those columns: history would lose them. So:

- a type a live table (on any branch) still uses: refused, naming the table, as PostgreSQL
  does; with CASCADE 0A000 (dropping a column of every branch's table is not supported);
- a type only dropped tables' history uses: retired (renamed out of the way: its name is free
  and history still reads its values), unless something else depends on it too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.catalog.model import chain, visible_tables
from heliosdb.sql.names import QUALIFIED

if TYPE_CHECKING:
    from heliosdb.session import Session

DROP_TYPE = re.compile(
    rf"\s*DROP\s+(TYPE|DOMAIN)\s+(IF\s+EXISTS\s+)?({QUALIFIED}(?:\s*,\s*{QUALIFIED})*)\s*(CASCADE|RESTRICT)?\s*;?\s*$",
    re.IGNORECASE)
_SPLIT = re.compile(QUALIFIED)


def drop_type(session: Session, m: re.Match[str]) -> bool:
    """Handle the DROP where storage relations use a named type; False: PostgreSQL's own DROP will do."""
    conn = session.conn
    kind, cascade = m.group(1).upper(), (m.group(4) or "").upper() == "CASCADE"
    names = [n.group(0) for n in _SPLIT.finditer(m.group(3))]
    plans: list[tuple[str, int, list[tuple[str, str, str]], bool]] = []
    for name in names:
        row = conn.execute("SELECT to_regtype(%s)::oid", (name,)).fetchone()
        if row is None or row[0] is None:
            return False  # PostgreSQL's error (or IF EXISTS notice)
        oid = int(row[0])
        deps = conn.execute(
            """SELECT n.nspname, c.relname, a.attname FROM pg_depend d
               JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
               WHERE d.refobjid = %s AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'""",
            (oid,)).fetchall()
        storage = [d for d in deps if d[0].startswith("hdb_t")]
        if not storage:
            continue
        others = len(deps) > len(storage) or _other_dependents(conn, oid)
        plans.append((name, oid, storage, others))
    if not plans:
        return False
    live = _live_tables(conn)
    for name, _oid, storage, others in plans:
        used = [(schema, col) for schema, _rel, col in storage if _table_id(schema) in live]
        if used:
            table, col = live[_table_id(used[0][0])], used[0][1]
            if cascade:
                raise errors.NotSupportedError(
                    f"DROP {kind} ... CASCADE is not supported while a HeliosDB table uses {name}",
                    detail=f"column {col} of table {table} depends on {kind.lower()} {name}",
                    hint="Drop the column or the table on every branch that has it first.")
            raise errors.DependentObjectsStillExist(
                f"cannot drop {kind.lower()} {name} because other objects depend on it",
                detail=f"column {col} of table {table} depends on {kind.lower()} {name}",
                hint="Use DROP ... CASCADE to drop the dependent objects too.")
        if others:
            raise errors.DependentObjectsStillExist(
                f"cannot drop {kind.lower()} {name} because other objects depend on it",
                detail="functions, views or other types use it, and the history of dropped tables keeps it",
                hint="Drop the objects that use it first.")
    for name, oid, _storage, _others in plans:
        # retired: the name is free again, the values in history stay readable
        conn.execute(sql.SQL("ALTER {} {} RENAME TO {}").format(
            sql.SQL(kind), sql.SQL(name), sql.Identifier(f"_hdb_dropped_{oid}")))
    rest = [n for n in names if n not in {p[0] for p in plans}]
    if rest:
        conn.execute(sql.SQL("DROP {} {}{}").format(sql.SQL(kind), sql.SQL(", ").join(map(sql.SQL, rest)),
                                                     sql.SQL(" CASCADE" if cascade else "")))
    return True


def _table_id(schema: str) -> int:
    return int(schema[len("hdb_t"):])


def _other_dependents(conn: psycopg.Connection[Any], oid: int) -> bool:
    """Objects other than relations' columns that use the type (functions, domains, ranges)."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = %s AND d.deptype = 'n'
                          AND d.classid <> 'pg_class'::regclass)""", (oid,)).fetchone()
    return bool(row and row[0])


def _live_tables(conn: psycopg.Connection[Any]) -> dict[int, str]:
    """The tables some live branch has: table id -> a name it has there."""
    out: dict[int, str] = {}
    for (bid,) in conn.execute("SELECT id FROM heliosdb._branches WHERE state <> 'dropped'").fetchall():
        for tid, version in visible_tables(conn, chain(conn, bid)).items():
            if not version.dropped:
                out.setdefault(tid, version.name)
    return out
