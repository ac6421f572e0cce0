"""Exclusion constraints (EXCLUDE USING gist (r WITH &&)) on the branches that inherited a table.

The root relation has PostgreSQL's own constraint, over the rows of the table's root branch. On
another branch the rows live in __br and the branch's view: its write trigger checks each row it
writes against what the branch sees, as PostgreSQL does (23P01, its message and detail). The
constraints are read from the root relation when the trigger is generated (the catalog does not
record them: a branch cannot add or drop one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp

from heliosdb.catalog.model import TableInfo, TableVersion

L = sql.Literal


@dataclass(frozen=True, slots=True)
class Exclusion:
    """One exclusion constraint of a root relation: its key expressions (the root relation's column names)
    with their operators, and its predicate."""

    name: str
    keys: list[str]
    ops: list[str]  # OPERATOR(schema.op), per key
    where: str | None


# Every exclusion constraint of the given root relations, in one query (a branch's build asks for all)
_READ = """SELECT n.nspname, r.relname, c.conname,
       ARRAY(SELECT pg_get_indexdef(c.conindid, k, true) FROM generate_series(1, i.indnkeyatts) k),
       ARRAY(SELECT format('OPERATOR(%%s.%%s)', o.oprnamespace::regnamespace, o.oprname)
             FROM unnest(c.conexclop) WITH ORDINALITY e(op, pos) JOIN pg_operator o ON o.oid = e.op
             ORDER BY e.pos),
       pg_get_expr(i.indpred, i.indrelid, true)
FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.contype = 'x' AND (n.nspname, r.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY c.oid"""


def read(conn: psycopg.Connection[Any], infos: Iterable[TableInfo]) -> dict[int, list[Exclusion]]:
    """The exclusion constraints of these tables' root relations, by table id (tables without: absent)."""
    by_rel = {info.cur: info.id for info in infos}
    if not by_rel:
        return {}
    out: dict[int, list[Exclusion]] = {}
    rows = conn.execute(_READ, ([s for s, _ in by_rel], [n for _, n in by_rel])).fetchall()
    for schema, rel, name, keys, ops, where in rows:
        out.setdefault(by_rel[(schema, rel)], []).append(Exclusion(name, list(keys), list(ops), where))
    return out


def on_row(text: str, alias: str, logical: dict[str, str]) -> str | None:
    """An expression over the root relation's columns (`logical`: physical name -> the branch's name), put to
    a row: `alias` (NEW, or a view's alias) under the branch's names. None when it names a column the branch
    does not have (dropped there)."""
    gone: list[str] = []

    def put(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Column):
            return node
        if node.name not in logical:
            gone.append(node.name)
            return node
        return exp.Column(this=exp.to_identifier(logical[node.name], quoted=True),
                          table=exp.to_identifier(alias))  # NEW unquoted: plpgsql's record

    out = sqlglot.parse_one(text, read="postgres").transform(put)  # the root itself may be the column
    return None if gone else out.sql(dialect="postgres")


def check_sql(excl: Exclusion, version: TableVersion, names: dict[int, str], internal: sql.Identifier,
              where: sql.Composable, skip: sql.Composable) -> sql.Composable | None:
    """PL/pgSQL that refuses NEW when a row the branch sees (other than the one being updated, _hdb_rid)
    conflicts with it (`skip`: what runs first, ON CONFLICT DO NOTHING's skip); None when the constraint
    names a column the branch dropped."""
    logical = {names[c.col]: c.name for c in version.columns}
    keys_s = [on_row(k, "s", logical) for k in excl.keys]
    keys_new = [on_row(k, "NEW", logical) for k in excl.keys]
    where_s, where_new = (on_row(excl.where, "s", logical), on_row(excl.where, "NEW", logical)) \
        if excl.where else ("TRUE", "TRUE")
    if None in keys_s or None in keys_new or where_s is None or where_new is None:
        return None
    # the index compares the existing row's value (left) with the new one's, as PostgreSQL's check does
    match = " AND ".join(f"({a}) {op} ({b})" for a, op, b in zip(keys_s, excl.ops, keys_new, strict=True))

    def shown(keys: list[str | None]) -> str:
        return " || ', ' || ".join(f"coalesce(({k})::text, 'null')" for k in keys)

    names_text = ", ".join(excl.keys)
    return sql.SQL(
        "IF ({wn}) THEN\n"
        "  _hdb_x := NULL;\n"
        "  SELECT {olds} INTO _hdb_x FROM {iv} s WHERE {m} AND ({ws}) "
        "AND (_hdb_rid IS NULL OR s._hdb_rowid <> _hdb_rid) LIMIT 1;\n"
        "  IF _hdb_x IS NOT NULL THEN {skip} RAISE EXCEPTION USING ERRCODE = '23P01', MESSAGE = {msg}, "
        "DETAIL = 'Key (' || {kn} || ')=(' || {news} || ') conflicts with existing key (' || {kn} || ')=(' "
        "|| _hdb_x || ').', CONSTRAINT = {cn}, {where}; END IF;\n"
        "END IF;"
    ).format(wn=sql.SQL(where_new), olds=sql.SQL(shown(keys_s)), iv=internal, m=sql.SQL(match),
             ws=sql.SQL(where_s), msg=L(f'conflicting key value violates exclusion constraint "{excl.name}"'),
             kn=L(names_text), news=sql.SQL(shown(keys_new)), cn=L(excl.name), where=where, skip=skip)
