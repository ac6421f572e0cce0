"""The session's temporal context: SET AS OF, USE BRANCH ... AS OF, SHOW AS OF, FLASHBACK TABLE.

While a context is set, every read of the session sees that point: each table
of the branch is shadowed by a temporary view of its state then (temporary
relations are found before the branch's schema), and writes are refused with
SQLSTATE 25006 until SET AS OF NOW.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.catalog.model import Snapshot, chain
from heliosdb.sql.lsn import format_lsn
from heliosdb.sql.names import tokenize
from heliosdb.sql.temporal import Point, _Scan
from heliosdb.temporal.rewrite import Resolved, point_subquery, resolve

if TYPE_CHECKING:
    from heliosdb.catalog.model import Branch
    from heliosdb.session import Result, Session

# \b, not \s+: classify() sends these words even with nothing after them, a syntax error below
_SET = re.compile(r"^\s*SET\s+AS\s+OF\b", re.IGNORECASE)
_SHOW = re.compile(r"^\s*SHOW\s+AS\s+OF\s*;?\s*$", re.IGNORECASE)
_FLASHBACK = re.compile(r"^\s*FLASHBACK\s+TABLE\b", re.IGNORECASE)


def parse_point(text: str) -> Point:
    """A point written after AS OF / TO: NOW | LSN l | TIMESTAMP e | SCN n | TRANSACTION x."""
    scan = _Scan(text, tokenize(text))
    point = scan.point()
    if scan.i < len(scan.t):
        raise scan.error("unexpected text after the point")
    return point


def execute(session: Session, text: str) -> Result:
    from heliosdb.session import Result

    if _SHOW.match(text):
        cur = session.conn.cursor()
        ctx = session.as_of
        if ctx is None:
            cur.execute("SELECT %s::text AS branch, 'NOW'::text AS as_of, NULL::pg_lsn AS lsn, NULL::bigint AS scn, "
                        "NULL::timestamptz AS committed_at", (session.branch.name,))
        else:
            cur.execute(
                "SELECT %s::text AS branch, %s::text AS as_of, heliosdb.format_lsn(%s) AS lsn, c.scn, c.committed_at "
                "FROM (SELECT 1) one LEFT JOIN heliosdb._commits c ON c.lsn = %s",
                (ctx.branch.name, "LSN " + format_lsn(ctx.lsn), ctx.lsn, ctx.lsn),
            )
        return Result(status="SHOW", cursor=cur)
    if _FLASHBACK.match(text):
        from heliosdb.temporal.flashback import flashback

        return Result(status=flashback(session, text))
    m = _SET.match(text)
    if m is None:  # SHOW AS OF with something after it
        raise errors.SyntaxError("syntax error: expected SET AS OF <point>, SHOW AS OF or FLASHBACK TABLE",
                                 hint="SHOW AS OF takes nothing after it.")
    point = parse_point(text[m.end():].rstrip().rstrip(";"))
    set_context(session, session.branch, point)
    return Result(status="SET")


def set_context(session: Session, branch: Branch, point: Point) -> None:
    """Enter (or, for NOW, leave) a temporal context on `branch`."""
    conn = session.conn
    clear_context(session)
    if point.kind == "NOW":
        return
    lsn = resolve(conn, branch, point)
    levels = chain(conn, branch.id, lsn)
    snap = Snapshot(conn, levels)
    stmts: list[sql.Composable] = []
    for v in snap.tables.values():
        stmts.append(sql.SQL("CREATE TEMP VIEW {} AS {}").format(
            sql.Identifier(v.name), point_subquery(conn, branch, lsn, v.name, kept=True)))
    if stmts:
        with conn.transaction():
            conn.execute(sql.SQL(";\n").join(stmts))
    session.as_of = Resolved(branch, lsn)
    session.as_of_views = [v.name for v in snap.tables.values()]


def clear_context(session: Session) -> None:
    if session.as_of is None:
        return
    conn: psycopg.Connection[Any] = session.conn
    if session.as_of_views and not session.transaction_failed:
        conn.execute(sql.SQL(";\n").join(
            sql.SQL("DROP VIEW IF EXISTS pg_temp.{}").format(sql.Identifier(n)) for n in session.as_of_views))
    session.as_of = None
    session.as_of_views = []


def refuse_write(session: Session) -> None:
    ctx = session.as_of
    assert ctx is not None
    raise errors.ReadOnlySqlTransaction(
        f'cannot write while the session reads branch "{ctx.branch.name}" as of LSN {format_lsn(ctx.lsn)}',
        hint="SET AS OF NOW returns to the present.",
    )
