"""Rewrite time-travel table references into subqueries over the version relations.

`t AS OF LSN 0/1A3F x` becomes `(SELECT <t's columns as of then> FROM (<state>) _hdb_s) x`,
where <state> picks, for every level of the branch's ancestry, the versions
valid at the point: the same shape as the branch views, with an LSN bound.
Schema follows time: the columns are those the table had at the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching import layout
from heliosdb.catalog.model import Branch, Level, Snapshot, TableInfo, TableVersion, chain, get_branch
from heliosdb.sql.lsn import MAX_LSN, format_lsn
from heliosdb.sql.names import quote_ident
from heliosdb.sql.temporal import Clause, Point, Range, find_clauses
from heliosdb.temporal import resolver

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741


@dataclass(frozen=True)
class Resolved:
    branch: Branch
    lsn: int


def resolve(conn: psycopg.Connection[Any], branch: Branch, point: Point) -> int:
    """A written point to an LSN on `branch`, with retention enforced."""
    kind, value = point.kind, point.value
    if kind == "OFFSET":
        kind, value = "TIMESTAMP", f"now() + make_interval(secs => ({value})::float8)"
    if point.before:
        if kind == "LSN":
            lsn = resolver.resolve_point(conn, branch, "LSN", value) - 1
        elif kind == "TIMESTAMP":
            lsn = resolver.resolve_point(conn, branch, "TIMESTAMP", f"({value})::timestamptz - interval '1 microsecond'")
        else:
            lsn = resolver.resolve_point(conn, branch, kind, value)
    else:
        lsn = resolver.resolve_point(conn, branch, kind, value)
    resolver.check_retained(conn, branch, lsn)
    return lsn


def _table_at(conn: psycopg.Connection[Any], branch: Branch, lsn: int, name: str) -> tuple[
    list[Level], Snapshot, TableVersion, TableInfo
]:
    levels = chain(conn, branch.id, lsn)
    snap = Snapshot(conn, levels)
    version = next((v for v in snap.tables.values() if v.name == name), None)
    if version is None:
        raise errors.UndefinedTable(
            f'relation "{name}" does not exist at LSN {format_lsn(lsn)} on branch "{branch.name}"',
            hint="The table did not exist at that point (or was dropped before it).",
        )
    return levels, snap, version, snap.info[version.table_id]


def point_subquery(conn: psycopg.Connection[Any], branch: Branch, lsn: int, name: str) -> sql.Composable:
    levels, snap, version, info = _table_at(conn, branch, lsn, name)
    if lsn >= MAX_LSN:
        raise errors.InvalidTemporalPoint("LSN out of range")
    state = layout.state_sql(snap, levels, info, version)
    cols = sql.SQL(", ").join(sql.SQL("_hdb_s.{}").format(I(c.name)) for c in version.columns)
    return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s)").format(c=cols, s=state)


def rewrite(session: Session, text: str) -> str:
    """The statement with every time-travel reference replaced by a plain subquery."""
    clauses = find_clauses(text)
    if not clauses:
        return text
    conn = session.conn
    out: list[str] = []
    pos = 0
    for c in clauses:
        out.append(text[pos : c.start])
        out.append(_replacement(session, conn, c, text).as_string(conn))
        if c.alias is None:
            out.append(" AS " + quote_ident(c.name.name))
        pos = c.end
    out.append(text[pos:])
    return "".join(out)


def _replacement(session: Session, conn: psycopg.Connection[Any], c: Clause, text: str) -> sql.Composable:
    if c.name.schema is not None and c.name.schema != session.branch.user_schema:
        raise errors.NotSupportedError(f'time travel on "{c.name.schema}.{c.name.name}" is not supported',
                                       hint="Time travel works on the tables of a branch.")
    branch = session.branch if c.branch is None else get_branch(conn, c.branch)
    assert branch is not None
    if c.range is not None:
        from heliosdb.temporal.versions import versions_subquery

        return versions_subquery(conn, branch, c.name.name, c.range, pseudo="VERSIONS_" in text.upper())
    point = c.point or Point("NOW")
    lsn = resolve(conn, branch, point)
    return point_subquery(conn, branch, lsn, c.name.name)


__all__ = ["Range", "Resolved", "point_subquery", "resolve", "rewrite"]
