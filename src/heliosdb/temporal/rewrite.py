"""Rewrite time-travel table references into subqueries over the version relations.

`t AS OF LSN 0/1A3F x` becomes `(SELECT <t's columns as of then> FROM (<state>) _hdb_s) x`,
where <state> picks, for every level of the branch's ancestry, the versions
valid at the point: the same shape as the branch views, with an LSN bound.
Schema follows time: the columns are those the table had at the point.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching import layout
from heliosdb.catalog.cache import CatalogCache
from heliosdb.catalog.model import Branch, Level, Snapshot, TableInfo, TableVersion, ancestry, chain, read_at
from heliosdb.sql.classify import LOCKING_READ
from heliosdb.sql.lsn import MAX_LSN, format_lsn
from heliosdb.sql.names import quote_ident
from heliosdb.sql.stars import Star, select_stars
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
        check_offset(conn, value or "")
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


def check_offset(conn: psycopg.Connection[Any], value: str) -> None:
    """HD007 naming the offset as written (AT (OFFSET => x)) when it is no number of seconds."""
    why = "the point is NULL"
    try:
        expr = resolver.timestamp_sql(value)
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT ({})::float8").format(sql.SQL(expr))).fetchone()  # type: ignore[arg-type]
        if row is not None and row[0] is not None:
            return
    except errors.InvalidTemporalPoint:
        why = "not an expression"
    except psycopg.Error as exc:
        why = errors.from_psycopg(exc).message
    raise errors.InvalidTemporalPoint(f'invalid offset "{value}": {why}',
                                      hint="OFFSET => takes a number of seconds from now (negative: the past).")


def _resolve_cached(conn: psycopg.Connection[Any], cache: CatalogCache, branch: Branch, point: Point) -> int:
    """resolve(), in one round trip that also checks the cache where the point names a commit."""
    kind, value = point.kind, point.value
    if kind in ("NOW", "LSN"):
        return resolver.resolve_now_or_lsn(conn, cache, branch, kind, value, before=point.before)
    if kind == "OFFSET":
        kind, value = "TIMESTAMP", f"now() + make_interval(secs => ({value})::float8)"
    if point.before and kind == "TIMESTAMP":
        value = f"({value})::timestamptz - interval '1 microsecond'"
    got = resolver.resolve_other(conn, cache, branch, kind, value or "")
    if got is not None:
        return got
    lsn = resolve(conn, branch, point)  # the edge cases and their exact errors
    cache.refresh(conn)  # after resolving, before reading the catalog: never older than the catalog
    return lsn


def _table_at(conn: psycopg.Connection[Any], branch: Branch, lsn: int, name: str,
              cache: CatalogCache | None = None) -> tuple[list[Level], Snapshot, TableVersion, TableInfo]:
    if cache is None:
        levels = chain(conn, branch.id, lsn)
        snap = Snapshot(conn, levels)
    else:  # the caller checked the cache against the catalog in this statement's round trips
        levels = cache.chain(conn, branch.id, lsn)
        snap = cache.snapshot(conn, levels)
    version = next((v for v in snap.tables.values() if v.name == name), None)
    if version is None:
        refuse_non_table(conn, branch, name)
        raise errors.UndefinedTable(
            f'relation "{name}" does not exist at LSN {format_lsn(lsn)} on branch "{branch.name}"',
            hint="The table did not exist at that point (or was dropped before it).",
        )
    return levels, snap, version, snap.info[version.table_id]


# What a name that is no table of the branch at a point stands for now, as the query would resolve it
_RELATION = """SELECT c.relkind::text, c.relnamespace::regnamespace::text,
       EXISTS (SELECT 1 FROM heliosdb._mv_visible(%(b)s) m WHERE m.name = %(n)s),
       EXISTS (SELECT 1 FROM heliosdb._visible_versions(%(b)s) v WHERE v.name = %(n)s)
FROM pg_class c WHERE c.oid = to_regclass(%(q)s)"""


def refuse_non_table(conn: psycopg.Connection[Any], branch: Branch, name: str) -> None:
    """0A000 for time travel on a view, a materialized view or a relation outside the branch's tables
    (as for a schema-qualified name outside the branch): they have no history."""
    row = conn.execute(_RELATION, {"b": branch.id, "n": name, "q": quote_ident(name)}).fetchone()
    if row is None or row[3]:
        return  # no such relation, or a table of the branch made after the point: 42P01 names the point
    kind, schema, mv = row[0], row[1], row[2]
    if mv or kind in ("v", "m"):
        raise errors.NotSupportedError(
            f'time travel on {"materialized view" if mv or kind == "m" else "view"} "{name}" is not supported',
            hint="AS OF, VERSIONS BETWEEN and FOR SYSTEM_TIME apply to tables: read the tables it reads at "
                 "that point.")
    raise errors.NotSupportedError(f'time travel on "{schema}.{name}" is not supported',
                                   hint="Time travel works on the tables of a branch.")


def point_subquery(conn: psycopg.Connection[Any], branch: Branch, lsn: int, name: str,
                   cache: CatalogCache | None = None, guard: int | None = None,
                   *, kept: bool = False, outer: bool = False) -> sql.Composable:
    """The subquery of `name` on `branch` at `lsn`; guard=the catalog generation it was made at makes
    it check, when it runs, that the generation did not move (cached rewrites). outer: the statement
    carries that check itself (_OUTER); the subquery only keeps it where it keeps a plan serial."""
    levels, snap, version, info = _table_at(conn, branch, lsn, name, cache)
    if lsn >= MAX_LSN:
        raise errors.InvalidTemporalPoint("LSN out of range")
    cols = sql.SQL(", ").join(sql.SQL("_hdb_s.{}").format(I(c.name)) for c in version.columns)
    if guard is None:
        state = layout.state_sql(snap, levels, info, version)
        if kept:  # read later (a view, a prepared statement, SET AS OF): the point must still be there then
            steps = cache.steps(conn, branch.id) if cache is not None else ancestry(conn, branch.id)
            check = _KEPT.format(lsn=sql.Literal(lsn),
                                 bids=sql.Literal("{" + ",".join(map(str, read_at(steps, lsn))) + "}"))
            return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s WHERE (SELECT {g}))").format(c=cols, s=state, g=check)
        return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s)").format(c=cols, s=state)
    check = _GUARD.format(gen=sql.Literal(guard))
    if layout.root_guardable(levels, info) and not snap.parallel.get(info.id, False):
        # In the history arm: the plan stays serial. For a table PostgreSQL scans serially at head,
        # it would otherwise pick a two-worker Parallel Append for the union (measured twice as slow
        # at 100,000 rows on 2 cores).
        state = layout.state_sql(snap, levels, info, version, check)
        return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s)").format(c=cols, s=state)
    state = layout.state_sql(snap, levels, info, version)
    if outer:
        return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s)").format(c=cols, s=state)
    # Above the state: an InitPlan evaluated once, before any row (in the leader, before the
    # workers start, when the plan is parallel), pushed into a gating Result over each arm
    return sql.SQL("(SELECT {c} FROM ({s}) _hdb_s WHERE {g})").format(c=cols, s=state, g=check)


# -- statement rewriting ------------------------------------------------------------------------
_CLAUSES: dict[str, list[Clause]] = {}  # statement text -> its clauses (a pure function of the text)
_MAX_CLAUSES = 512
# Statements whose AS OF reads may be served from the session's cache: they run once, now, so a
# guard inside them can check the cache (not CREATE VIEW / PREPARE / DECLARE: they keep the SQL).
_GUARDED = re.compile(r"\s*(SELECT|WITH|VALUES|TABLE|INSERT|UPDATE|DELETE|EXPLAIN)\b", re.IGNORECASE)


# Checks a cached rewrite inside its statement (one InitPlan, run once before any row): the catalog
# generation it was made at. The generation also moves when GC advances a branch's retained history
# (gc_generation.sql), so a point read by a cached rewrite cannot have been pruned since it was
# resolved. Inline SQL, not a function: cheaper per execution of a prepared statement.
_GUARD = sql.SQL(
    "(SELECT CASE WHEN gen = {gen} THEN true ELSE heliosdb._asof_stale() END FROM heliosdb._catalog_gen)"
)
# The same check for a whole query (_OUTER): its OFFSET, 0 while the generation holds. The Limit node
# evaluates it before it reads its first row; PostgreSQL plans an OFFSET it cannot estimate for
# queries read to the end as if it were absent (preprocess_limit), so plans do not change.
_OFFSET = sql.SQL(
    "(SELECT CASE WHEN gen = {gen} THEN 0 ELSE CASE WHEN heliosdb._asof_stale() THEN 0 END END "
    "FROM heliosdb._catalog_gen)"
)
# Queries that can take the check as their OFFSET: one plain query (no INTO, no locking clause, no
# write in a WITH), wrapped whole, so its own ORDER BY, LIMIT and FETCH stay as written.
_OUTER = re.compile(r"\s*(SELECT|WITH|VALUES|TABLE)\b", re.IGNORECASE)
_INTO = re.compile(r"\bINTO\b", re.IGNORECASE)


def _wrappable(text: str) -> bool:
    """Whether a guarded statement can take its guard as the OFFSET of a wrapping query (_OFFSET)."""
    from heliosdb.session import is_write

    return (_OUTER.match(text) is not None and ";" not in text.rstrip().rstrip(";")
            and _INTO.search(text) is None and LOCKING_READ.search(text) is None and not is_write(text))


# SQL kept to be run later (CREATE VIEW, PREPARE, DECLARE, materialized views' queries, SET AS OF):
# once the garbage collector pruned the point or its branch was dropped it fails with 72000,
# instead of reading what is left (no catalog generation check: DDL elsewhere does not matter).
_KEPT = sql.SQL(
    "CASE WHEN NOT EXISTS (SELECT 1 FROM heliosdb._branches b WHERE b.id = ANY({bids}::integer[]) "
    "AND (b.gc_lsn > {lsn} OR b.state = 'dropped')) THEN true ELSE heliosdb._asof_gone({lsn}) END"
)
_KEPT_HEADS = re.compile(r"\s*(PREPARE|CREATE|DECLARE)\b", re.IGNORECASE)


def clauses_of(text: str) -> list[Clause]:
    found = _CLAUSES.get(text)
    if found is None:
        found = find_clauses(text)
        if len(_CLAUSES) >= _MAX_CLAUSES:
            _CLAUSES.clear()
        _CLAUSES[text] = found
    return found


def rewrite(session: Session, text: str, *, escape: bool = False, kept: bool | None = None) -> str:
    """The statement with every time-travel reference replaced by a plain subquery.

    Every point is resolved now; the catalog comes from the session's cache, checked in the
    same round trip. escape doubles `%` in the generated SQL (for text run with parameters).
    kept: the SQL is kept and run later (see _KEPT); by default, for PREPARE, CREATE and DECLARE.
    """
    clauses = clauses_of(text)
    if not clauses:
        return text
    if kept is None:
        kept = _KEPT_HEADS.match(text) is not None
    return _assemble(session, text, clauses, escape, guarded=False, kept=kept)


def prepare(session: Session, text: str, params: Any) -> tuple[str, Any, bool]:
    """What the session runs for a statement with time-travel clauses: (text, params, guarded).

    In autocommit, statements whose points are all literal LSNs are rewritten once and kept:
    their SQL carries a guard (_GUARD) that fails with HDC01 when the catalog or the
    retained history changed since, and the session then prepares the statement again (`forget`).
    Parameters stay parameters (so psycopg can prepare the statement server side), unless they
    are part of a time-travel clause.
    """
    cache = session.catalog
    escape = params is not None
    branch = session.branch
    key = (text, branch.id, branch.user_schema, escape)
    out = cache.rewrites.get(key)
    if out is not None and not session.in_transaction:
        return out, params, True  # the hot path: the guard inside checks it
    try:
        clauses = clauses_of(text)
    except errors.SyntaxError:
        if not params:
            raise
        clauses = None  # a query parameter stands where a point must be: `AS OF LSN %s`
    if clauses is not None and not clauses:
        return text, params, False
    if params and (clauses is None or any("%" in text[c.start : c.end] for c in clauses)):
        # a parameter is part of a clause: the point depends on it, resolve it with the value in place
        text = psycopg.ClientCursor(session.conn).mogrify(text, params)
        return rewrite(session, text), None, False
    assert clauses is not None
    if _GUARDED.match(text) is None:
        kept = _KEPT_HEADS.match(text) is not None
        return _assemble(session, text, clauses, escape, guarded=False, kept=kept), params, False
    # Guarded also when not kept: a point resolved in an earlier round trip may be pruned by the time the
    # statement runs (GC commits in between); the guard then fails it, and in autocommit it runs again.
    if _wrappable(text) and any(c.range is None for c in clauses):  # (VERSIONS BETWEEN reads no point)
        out = _assemble(session, text.rstrip().rstrip(";"), clauses, escape, guarded=True, outer=True)
    else:
        out = _assemble(session, text, clauses, escape, guarded=True)
    if not session.in_transaction and all(c.range is None and c.point is not None and c.point.kind == "LSN"
                                          for c in clauses):
        cache.remember(key, out)  # the point is a constant of the text: the same rewrite serves it again
    return out, params, True


def forget(session: Session, text: str) -> None:
    """Drop a statement's cached rewrites (its guard failed): the next run prepares it again."""
    session.catalog.rewrites.clear()  # the generated pieces too: they carry the same guard


def _assemble(session: Session, text: str, clauses: list[Clause], escape: bool, *, guarded: bool,
              kept: bool = False, outer: bool = False) -> str:
    """The statement with its clauses replaced. outer (guarded only): the whole query becomes a
    subquery whose OFFSET is the guard (_OFFSET), instead of a gating node over every arm."""
    conn = session.conn
    out: list[str] = []
    pos = 0
    seen = 0  # characters PostgreSQL sees so far (an escaped '%%' is one)
    spans: list[tuple[int, int, int, int]] = []
    if outer:
        out.append(_WRAP_HEAD)
        spans.append((0, 0, 0, len(_WRAP_HEAD)))  # an error there points at the start of the text
        seen = len(_WRAP_HEAD)
    gen: int | None = None  # the catalog generation the first point was checked at
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in the user's text
    columns: dict[str, list[str]] = {}  # VERSIONS references with pseudo-columns: their table's columns
    for c in clauses:
        piece, names = _replacement(session, conn, c, text, "outer" if outer else "guard" if guarded else kept)
        if gen is None and session.catalog.key is not None:
            gen = session.catalog.key[0]  # a later point checked at a newer one fails this guard: prepared again
        if kept and _PREPARE.match(text) and piece.startswith("(") and c.range is None:
            piece = _as_temp_view(conn, piece)
        if c.alias is None:
            piece += " AS " + quote_ident(c.name.name)
        if names is not None:
            columns[c.alias or c.name.name] = names
        edits.append((c.start, c.end, piece))
    if columns:
        edits = sorted(edits + _star_edits(text, clauses, columns))
    for start, end, piece in edits:
        between = text[pos : start]
        if pos == 0 and (m := _TABLE_HEAD.fullmatch(between)) is not None:  # TABLE t AS OF ...: a SELECT
            between = m.group(1) + "SELECT * FROM "
            spans.append((0, len(m.group(0)), seen, seen + len(between)))
        out.append(between)
        seen += len(between)
        spans.append((start, end, seen, seen + len(piece)))
        seen += len(piece)
        out.append(piece.replace("%", "%%") if escape else piece)
        pos = end
    out.append(text[pos:])
    if outer:
        assert gen is not None
        out.append(_WRAP_TAIL + _OFFSET.format(gen=sql.Literal(gen)).as_string(conn))
    result = "".join(out)
    if spans:
        with _SPANS_LOCK:  # sessions of the endpoint share it across threads
            _SPANS[result] = spans
            _SPANS.move_to_end(result)
            while len(_SPANS) > _MAX_SPANS:
                _SPANS.popitem(last=False)  # the least recently made or used
    return result


def _star_edits(text: str, clauses: list[Clause], columns: dict[str, list[str]]) -> list[tuple[int, int, str]]:
    """`*` and `t.*` over a VERSIONS reference that carries pseudo-columns, written out as the table's
    columns: as in Oracle, the pseudo-columns are there only where the query names them."""
    spans = {c.start: c.end for c in clauses}
    stars: dict[int, Star] = {}
    for c in clauses:
        if c.range is not None and (c.alias or c.name.name) in columns:
            stars.update((star.start, star) for star in select_stars(text, c.start, spans))
    edits = []
    for star in stars.values():
        if star.qualifier is not None:
            if star.qualifier in columns:
                q = text[star.start : star.end - 1].rstrip().rstrip(".").rstrip()  # as written
                edits.append((star.start, star.end, ", ".join(f"{q}.{quote_ident(n)}" for n in columns[star.qualifier])))
        elif star.items is not None:  # (USING and NATURAL joins merge columns: * stays)
            edits.append((star.start, star.end, ", ".join(
                ", ".join(f"{written}.{quote_ident(n)}" for n in columns[name]) if name in columns else f"{written}.*"
                for name, written in star.items)))
    return edits


def _as_temp_view(conn: psycopg.Connection[Any], piece: str) -> str:
    """A PREPAREd statement is planned again after DDL, from its text: storage columns named in it
    may have been renamed or replaced by then. A view binds them once, as CREATE VIEW over AS OF
    does; a temporary one lives as long as the prepared statement (the session, or DISCARD ALL)."""
    row = conn.execute("SHOW transaction_read_only").fetchone()
    if row and row[0] == "on":  # PostgreSQL makes no view there, not even a temporary one
        return piece
    name = "_hdb_asof_" + hashlib.md5(piece.encode()).hexdigest()[:16]
    conn.execute(sql.SQL("CREATE OR REPLACE TEMP VIEW {} AS {}").format(  # type: ignore[arg-type]
        sql.Identifier(name), sql.SQL(piece[1:-1])))
    return "pg_temp." + name


_PREPARE = re.compile(r"\s*PREPARE\b", re.IGNORECASE)
_TABLE_HEAD = re.compile(r"(\s*)TABLE\s+(?:ONLY\s+)?", re.IGNORECASE)
_WRAP_HEAD = "SELECT * FROM (\n"
_WRAP_TAIL = "\n) _hdb_q OFFSET "  # on its own line: a comment that ends the text stays one


# rewritten text -> (clause start, clause end, start, end of its replacement) for error positions
_SPANS: OrderedDict[str, list[tuple[int, int, int, int]]] = OrderedDict()
_SPANS_LOCK = threading.Lock()
_MAX_SPANS = 4096


def original_position(rewritten: str, position: int) -> int | None:
    """Where an error position (1-based) in a rewritten statement lies in the user's text: in a
    copied part, the same character; inside a replacement, the start of its time-travel clause."""
    with _SPANS_LOCK:
        spans = _SPANS.get(rewritten)
        if spans is not None:
            _SPANS.move_to_end(rewritten)  # a cached statement's map stays while it is in use
    if spans is None:
        return None
    at, shift = position - 1, 0
    for start, end, new_start, new_end in spans:
        if at < new_start:
            break
        if at < new_end:
            return start + 1
        shift += (new_end - new_start) - (end - start)
    return at - shift + 1


def _replacement(session: Session, conn: psycopg.Connection[Any], c: Clause, text: str,
                 mode: str | bool) -> tuple[str, list[str] | None]:
    """One clause's subquery, and for a VERSIONS reference with pseudo-columns its table's columns.
    mode: "guard" (checks the catalog generation itself), "outer" (the statement checks it, see
    _assemble) or whether the SQL is kept to run later (unguarded)."""
    if c.name.schema is not None and c.name.schema != session.branch.user_schema:
        raise errors.NotSupportedError(f'time travel on "{c.name.schema}.{c.name.name}" is not supported',
                                       hint="Time travel works on the tables of a branch.")
    cache = session.catalog
    if c.branch is None:
        branch = session.branch
    else:
        cache.refresh(conn)  # a name can move to another branch (drop and create again)
        branch = cache.branch(conn, c.branch)
    if c.range is not None:
        from heliosdb.temporal.versions import versions_subquery

        pseudo = "VERSIONS_" in text.upper()
        query, names = versions_subquery(conn, branch, c.name.name, c.range, pseudo=pseudo)
        return query.as_string(conn), names if pseudo else None
    lsn = _resolve_cached(conn, cache, branch, c.point or Point("NOW"))
    # the SQL of (branch, point, table) under the cache's key: the key was checked just now
    key = ("sql", branch.id, lsn, c.name.name, mode)
    piece = cache.rewrites.get(key)
    if piece is None:
        guard = None
        if isinstance(mode, str):
            assert cache.key is not None
            guard = cache.key[0]
        piece = point_subquery(conn, branch, lsn, c.name.name, cache, guard, kept=mode is True,
                               outer=mode == "outer").as_string(conn)
        cache.remember(key, piece)
    return piece, None


__all__ = ["Range", "Resolved", "forget", "original_position", "point_subquery", "prepare", "refuse_non_table",
           "resolve", "rewrite"]
