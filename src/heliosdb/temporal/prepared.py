"""SQL PREPARE of a statement whose time-travel points are parameters.

`PREPARE q(timestamptz) AS SELECT * FROM t AS OF TIMESTAMP $1` names a different
table state (and maybe other columns) at each EXECUTE, so PostgreSQL cannot plan it
once. The session keeps such a statement itself: EXECUTE evaluates the arguments
once, writes their values into the text as literals (as the wire endpoint does for
bound parameters of time-travel statements, server/params.substitute) and runs the
result as a statement of its own, resolving its points then. DEALLOCATE and DISCARD
ALL drop it. A PREPARE whose points are constants still goes to PostgreSQL
(rewrite._as_temp_view keeps its state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.sql.classify import head
from heliosdb.sql.names import quote_literal
from heliosdb.sql.prepare import (
    ALL,
    Param,
    parameters,
    parse_deallocate,
    parse_execute,
    parse_prepare,
    substitute,
)
from heliosdb.temporal.rewrite import clauses_of

if TYPE_CHECKING:
    from heliosdb.session import Result, Session

_AT_LINE = re.compile(r" \(line \d+, column \d+\)$")  # where sql/temporal.py's syntax errors say they are
_HEADS = ("EXECUTE", "DEALLOCATE", "DISCARD ALL", "PREPARE")
_BODY_HEADS = ("SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE")


@dataclass(frozen=True)
class Held:
    """A prepared statement the session keeps (see the module's docstring)."""

    body: str
    types: list[str | None]  # by parameter number - 1: the declared type, None where none was declared
    params: list[Param]  # every $n in body
    points: frozenset[int]  # the numbers of the parameters written as a whole point (`AS OF SCN $1`)


def define(session: Session, stmt: str) -> Result | None:
    """PREPARE of a statement with a parameter in a time-travel clause: kept by the session.
    None for any other statement (PostgreSQL prepares it)."""
    from heliosdb.session import Result

    prep = parse_prepare(stmt)
    if prep is None:
        return None
    params = parameters(prep.body)
    clauses = clauses_of(stmt)
    inside = [p for p in params
              if any(c.start <= p.start + prep.body_start < c.end for c in clauses)]
    if not inside:
        return None
    if not head(prep.body).startswith(_BODY_HEADS):
        raise errors.SyntaxError(f'syntax error at or near "{prep.body.split(None, 1)[0]}"',
                                 position=prep.body_start + 1)
    refuse_taken(session, prep.name)
    declared = _type_names(session, prep.types)
    count = max([len(declared), *(p.number for p in params)])
    types = [declared[k] if k < len(declared) else None for k in range(count)]
    whole = {c.point.value if c.point else None for c in clauses} | {
        b for c in clauses if c.range for b in (c.range.low, c.range.high)}
    points = frozenset(p.number for p in inside if prep.body[p.start : p.end] in whole)
    session.held_statements[prep.name] = Held(prep.body, types, params, points)
    return Result(status="PREPARE")


def refuse_taken(session: Session, name: str) -> None:
    """42P05 when a prepared statement of that name exists, the session's or PostgreSQL's."""
    taken = name in session.held_statements or session.conn.execute(
        "SELECT 1 FROM pg_prepared_statements WHERE name = %s", (name,)).fetchone() is not None
    if taken:
        raise errors.lookup("42P05")(f'prepared statement "{name}" already exists', sqlstate="42P05")


def _type_names(session: Session, written: list[str]) -> list[str | None]:
    """Declared parameter types by PostgreSQL's name for them (42704 for an unknown one)."""
    if not written:
        return []
    out: list[str | None] = []
    try:
        for text in written:
            row = session.conn.execute("SELECT format_type(%s::regtype, NULL)", (text,)).fetchone()
            out.append(str(row[0]) if row else None)
    except psycopg.Error as exc:
        raise errors.from_psycopg(exc) from None
    return out


def run(session: Session, stmt: str, params: Any, cursor: psycopg.Cursor[Any] | None) -> Result | None:
    """EXECUTE or DEALLOCATE of a statement the session keeps; DEALLOCATE ALL and DISCARD ALL drop
    them all (and go on to PostgreSQL); a PREPARE reusing the name of one: 42P05. None: not ours."""
    from heliosdb.session import Result

    words = head(stmt)
    if not words.startswith(_HEADS):
        return None
    held = session.held_statements
    if words.startswith("DISCARD ALL"):
        held.clear()
        return None
    if words.startswith("PREPARE"):
        prep = parse_prepare(stmt)
        if prep is not None and prep.name in held:
            refuse_taken(session, prep.name)
        return None
    if words.startswith("DEALLOCATE"):
        name = parse_deallocate(stmt)
        if name == ALL:
            held.clear()
        elif name is not None and held.pop(name, None) is not None:
            return Result(status="DEALLOCATE")
        return None
    call = parse_execute(stmt)
    if call is None or call[0] not in held:
        return None
    return _execute(session, call[0], held[call[0]], call[1], params, cursor)


def _execute(session: Session, name: str, held: Held, args: list[str], params: Any,
             cursor: psycopg.Cursor[Any] | None) -> Result:
    """EXECUTE of a kept statement: its arguments as literals in its text, then that text run as a statement.
    `params` are the driver's or the wire protocol's values for placeholders inside the arguments."""
    if len(args) != len(held.types):
        raise errors.SyntaxError(f'wrong number of parameters for prepared statement "{name}"',
                                 detail=f"Expected {len(held.types)} parameters but got {len(args)}.")
    values = _values(session, held, args, params)
    text = substitute(held.body, held.params, values)
    try:
        return session.execute(text, None, cursor)
    except errors.Error as exc:
        # a place in the statement made from the arguments, not in the user's text
        exc.position = None
        if exc.message != (msg := _AT_LINE.sub("", exc.message)):
            exc.message, exc.args = msg, (msg,)
        raise


def _values(session: Session, held: Held, args: list[str], params: Any) -> dict[int, str]:
    """Each parameter as an SQL literal: every argument evaluated once, in one round trip (with the
    statement's own parameters, so PostgreSQL types them). A whole point (`AS OF SCN $1`) gets its
    value as text, so a bad one fails as the same point written as a literal."""
    if not args:
        return {}
    exprs = []
    for k, arg in enumerate(args):
        cast = held.types[k] if held.types[k] is not None and k + 1 not in held.points else "text"
        exprs.append(sql.SQL("(({}))::{}::text").format(sql.SQL(arg), sql.SQL(cast)))  # type: ignore[arg-type]
    try:
        row = session.conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(exprs), params or None).fetchone()
    except psycopg.Error as exc:
        err = errors.from_psycopg(exc)
        err.position = None
        raise err from None
    assert row is not None
    out: dict[int, str] = {}
    for k, value in enumerate(row):
        if value is None and k + 1 in held.points:
            raise errors.InvalidTemporalPoint(f"the time-travel point ${k + 1} is NULL",
                                              hint="Pass an LSN, SCN, timestamp or transaction id.")
        typ = held.types[k]
        lit = "NULL" if value is None else quote_literal(value)
        out[k + 1] = lit if typ is None or k + 1 in held.points else f"({lit}::{typ})"
    return out


__all__ = ["Held", "define", "refuse_taken", "run"]
