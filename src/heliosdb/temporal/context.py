"""The session's temporal context: SET AS OF, USE BRANCH ... AS OF, SHOW AS OF, FLASHBACK TABLE.

While a context is set, every read of the session sees that point: each table
of the branch is shadowed by a temporary view of its state then (temporary
relations are found before the branch's schema), each plain view of the branch
by a temporary copy that reads those, and writes are refused with
SQLSTATE 25006 until SET AS OF NOW.

A context behaves as PostgreSQL's SET: changed inside a transaction block, it
lasts if the transaction commits and is undone by ROLLBACK (or ROLLBACK TO a
savepoint before it). The views and the heliosdb.as_of setting that records
the context are transactional; the session follows them (settle).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.catalog.model import Snapshot, chain, get_branch_by_id
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

        if session.as_of is not None:  # a write, like any other under a context
            refuse_write(session)
        return Result(status=flashback(session, text))
    m = _SET.match(text)
    if m is None:  # SHOW AS OF with something after it
        raise errors.SyntaxError("syntax error: expected SET AS OF <point>, SHOW AS OF or FLASHBACK TABLE",
                                 hint="SHOW AS OF takes nothing after it.")
    point = parse_point(text[m.end():].rstrip().rstrip(";"))
    set_context(session, session.branch, point)
    return Result(status="SET")


def set_context(session: Session, branch: Branch, point: Point) -> None:
    """Enter (or, for NOW, leave) a temporal context on `branch`; a point that does not resolve changes
    nothing."""
    if point.kind == "NOW" and session.as_of is None:
        return
    with _writable(session):
        lsn = None if point.kind == "NOW" else resolve(session.conn, branch, point)
        switch_context(session, branch, lsn)


@contextlib.contextmanager
def _writable(session: Session) -> Iterator[None]:
    """A transaction (a savepoint in the user's) in which the context's temporary views can be made or
    dropped. They are the session's state, as a setting's value is, so a read-only transaction (where
    PostgreSQL refuses CREATE VIEW, even a temporary one) is read-write while they change, and read-only
    again after. PostgreSQL allows that only before the transaction's first query."""
    conn = session.conn
    row = conn.execute("SHOW transaction_read_only").fetchone()  # SHOW takes no snapshot
    if not (row and row[0] == "on"):
        with conn.transaction():
            yield
    elif not session.in_transaction:  # default_transaction_read_only: our own transaction
        with conn.transaction():
            conn.execute("SET TRANSACTION READ WRITE")
            yield
    else:
        try:
            conn.execute("SET LOCAL transaction_read_only = off")
        except psycopg.Error:
            raise errors.ReadOnlySqlTransaction(
                "SET AS OF in a read-only transaction must come before its first query",
                hint="Run it right after BEGIN READ ONLY, or outside the read-only transaction.") from None
        try:
            with conn.transaction():
                yield
        finally:
            if not session.transaction_failed:
                conn.execute("SET LOCAL transaction_read_only = on")


_MISSING = """CREATE OR REPLACE FUNCTION pg_temp._hdb_missing(n text, l text, b text, h text) RETURNS boolean
LANGUAGE plpgsql AS $f$ BEGIN
    RAISE EXCEPTION 'relation "%" does not exist at LSN % on branch "%"', n, l, b USING ERRCODE = '42P01', HINT = h;
END $f$"""
# A relation of the context that did not exist at its point: a view whose reading is that error (the hint
# says why).
_ABSENT = "CREATE TEMP VIEW {} AS SELECT NULL AS _hdb_missing WHERE pg_temp._hdb_missing({}, {}, {}, {})"
_TABLE_HINT = "The table did not exist at that point (or was dropped before it)."
_VIEW_HINT = "The view reads a table or column that did not exist at that point."
# Makes a view's copy, or its absent-relation view (_ABSENT) where its query cannot be made over the
# relations of the point.
_TRY_VIEW = """CREATE OR REPLACE FUNCTION pg_temp._hdb_view_at(q text, absent text) RETURNS void
LANGUAGE plpgsql AS $f$ BEGIN
    EXECUTE q;
EXCEPTION WHEN undefined_table OR undefined_column OR undefined_function OR datatype_mismatch
               OR ambiguous_column OR wrong_object_type THEN
    EXECUTE absent;
END $f$"""
# The user's plain views on the branch (not its tables or materialized views, views to PostgreSQL too),
# each after the views it reads, with its definition printed where the branch's names need no schema
# and the options that change what it returns to its reader.
_PLAIN_VIEWS = """
WITH RECURSIVE mine AS (
    SELECT c.oid FROM pg_class c
    WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind = 'v' AND heliosdb._relkind(c.oid, c.relkind) = 'v'
), reads AS (
    SELECT DISTINCT r.ev_class AS oid, d.refobjid AS read FROM pg_rewrite r
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
    WHERE r.ev_class IN (SELECT oid FROM mine) AND d.refobjid IN (SELECT oid FROM mine) AND d.refobjid <> r.ev_class
), depth(oid, n) AS (
    SELECT oid, 0 FROM mine
  UNION
    SELECT r.oid, d.n + 1 FROM depth d JOIN reads r ON r.read = d.oid
)
SELECT c.relname, pg_get_viewdef(c.oid),
       ARRAY(SELECT split_part(o, '=', 1) FROM unnest(c.reloptions) o
             WHERE o ~ '^security_(barrier|invoker)=(true|on)$')
FROM depth JOIN pg_class c ON c.oid = depth.oid GROUP BY c.oid ORDER BY max(depth.n), c.oid
"""


def switch_context(session: Session, branch: Branch, lsn: int | None) -> None:
    """Replace the session's context by (branch, lsn), or none: the temporary views and the
    heliosdb.as_of setting together, so a rollback puts both back (settle() follows them)."""
    conn = session.conn
    # views over the tables' views first: they depend on them
    drops: list[sql.Composable] = [
        sql.SQL("DROP VIEW IF EXISTS pg_temp.{}").format(sql.Identifier(n)) for n in reversed(session.as_of_views)]
    stmts: list[sql.Composable] = []
    names: list[str] = []
    if lsn is not None:
        snap = Snapshot(conn, chain(conn, branch.id, lsn))
        for v in snap.tables.values():
            stmts.append(sql.SQL("CREATE TEMP VIEW {} AS {}").format(
                sql.Identifier(v.name), point_subquery(conn, branch, lsn, v.name, kept=True)))
            names.append(v.name)
        # tables made since the point: reading one is the error AS OF gives, not today's rows
        later = sorted({v.name for v in Snapshot(conn, chain(conn, branch.id)).tables.values() if not v.dropped}
                       - set(names))
        stmts.append(sql.SQL(_MISSING))
        for name in later:
            stmts.append(_absent(name, lsn, branch, _TABLE_HINT))
            names.append(name)
    ctx = Resolved(branch, lsn) if lsn is not None else None
    with conn.transaction():
        if drops:
            conn.execute(sql.SQL(";\n").join(drops))
        if ctx is not None:  # after the drops: the tables' names print without their schema
            stmts.extend(_view_copies(session, ctx, names))
        stmts.append(sql.SQL("SELECT set_config('heliosdb.as_of', {}, false)").format(
            sql.Literal(_setting(ctx, names))))
        # statements prepared before read the tables they were planned with: planned again, they read the views
        stmts.append(sql.SQL("DISCARD PLANS"))
        conn.execute(sql.SQL(";\n").join(stmts))
    session.as_of, session.as_of_views = ctx, names
    if session.in_transaction:
        session.branch_check = True  # a ROLLBACK (TO SAVEPOINT) may put the previous context back


def _absent(name: str, lsn: int, branch: Branch, hint: str) -> sql.Composable:
    """The view that stands for relation `name`, absent at `lsn`: reading it raises 42P01 with `hint`."""
    return sql.SQL(_ABSENT).format(sql.Identifier(name), sql.Literal(name), sql.Literal(format_lsn(lsn)),
                                 sql.Literal(branch.name), sql.Literal(hint))


def _view_copies(session: Session, ctx: Resolved, names: list[str]) -> list[sql.Composable]:
    """The statements that copy the branch's plain views over the context's views of its tables, so
    they read the point too (their names are appended to `names`). A view whose query cannot be made
    over the relations of the point is a relation that did not exist then."""
    conn = session.conn
    views = conn.execute(_PLAIN_VIEWS, (sql.Identifier(ctx.branch.user_schema).as_string(conn),)).fetchall()
    if not views:
        return []
    stmts: list[sql.Composable] = [sql.SQL(_TRY_VIEW)]
    for name, definition, options in views:
        with_ = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.Identifier(o) for o in options)) if options else sql.SQL("")
        create = sql.SQL("CREATE TEMP VIEW {}{} AS {}").format(
            sql.Identifier(name), with_, sql.SQL(definition.rstrip().rstrip(";")))
        absent = _absent(name, ctx.lsn, ctx.branch, _VIEW_HINT)
        stmts.append(sql.SQL("SELECT pg_temp._hdb_view_at({}, {})").format(
            sql.Literal(create.as_string(conn)), sql.Literal(absent.as_string(conn))))
        names.append(name)
    return stmts


def clear_context(session: Session) -> None:
    if session.as_of is not None:
        switch_context(session, session.as_of.branch, None)


def _setting(ctx: Resolved | None, views: list[str]) -> str:
    """The context as heliosdb.as_of holds it: '' for none."""
    if ctx is None:
        return ""
    return json.dumps({"branch": ctx.branch.id, "lsn": ctx.lsn, "views": views})


def settle(session: Session, setting: str | None) -> None:
    """Follow heliosdb.as_of after a rollback: PostgreSQL undid the views with the setting, as for SET."""
    if (setting or "") == _setting(session.as_of, session.as_of_views):
        return
    if not setting:
        session.as_of, session.as_of_views = None, []
        return
    saved = json.loads(setting)
    branch = get_branch_by_id(session.conn, int(saved["branch"]))
    session.as_of, session.as_of_views = Resolved(branch, int(saved["lsn"])), list(saved["views"])


def rebind(session: Session) -> None:
    """After RESET ALL / DISCARD ALL: heliosdb.as_of is reset; the views stay after RESET (set it again)
    and are gone after DISCARD (the context is too)."""
    if session.as_of is None:
        return
    conn = session.conn
    if session.as_of_views:
        first = sql.Identifier("pg_temp", session.as_of_views[0]).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (first,)).fetchone()
        if not (row and row[0]):
            session.as_of, session.as_of_views = None, []
            return
    conn.execute("SELECT set_config('heliosdb.as_of', %s, false)", (_setting(session.as_of, session.as_of_views),))


def requalified(session: Session, stmt: str) -> str:
    """A statement under the context with the branch's own schema in front of a table's name (`public.t`)
    reading the context's view of the table instead, as the bare name does."""
    ctx = session.as_of
    schema = ctx.branch.user_schema if ctx is not None else ""
    if ctx is None or schema.lower() not in stmt.lower():
        return stmt
    try:
        toks = tokenize(stmt)
    except errors.Error:
        return stmt
    views, out, pos = set(session.as_of_views), [], 0
    for k in range(len(toks) - 2):
        first, dot, name = toks[k], toks[k + 1], toks[k + 2]
        if (dot.text == "." and first.text == schema and name.text in views and (k == 0 or toks[k - 1].text != ".")
                and first.token_type.name in ("VAR", "IDENTIFIER") and name.token_type.name in ("VAR", "IDENTIFIER")):
            out.append(stmt[pos:first.start] + "pg_temp")
            pos = first.end + 1
    return "".join(out) + stmt[pos:]


def refuse_write(session: Session) -> None:
    ctx = session.as_of
    assert ctx is not None
    raise errors.ReadOnlySqlTransaction(
        f'cannot write while the session reads branch "{ctx.branch.name}" as of LSN {format_lsn(ctx.lsn)}',
        hint="SET AS OF NOW returns to the present.",
    )
