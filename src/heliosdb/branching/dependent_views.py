"""The user's views over a table whose view HeliosDB makes again (DROP COLUMN, ALTER COLUMN ... TYPE).

A HeliosDB table is a view to PostgreSQL; such DDL drops and creates that view again, which the
user's views over it would block (2BP01 naming the table's view). PostgreSQL keeps them, refusing
only when a view uses the column: these views are taken out for the statement and made again after
it, with their options, comments, owner and privileges, and the refusal is PostgreSQL's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.sql.names import is_word, read_name, skip_words, top_level_commas

if TYPE_CHECKING:
    from heliosdb.session import Session

# Views over the table's view, and over those, outside HeliosDB's own schemas (materialized views
# have their own guard: mv.ddl.guard_table_change). depth orders them: a view comes after those it reads.
_DEPENDENTS = """
WITH RECURSIVE dep(oid, depth) AS (
    SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = %(table)s::regclass AND r.ev_class <> %(table)s::regclass
    UNION ALL
    SELECT r.ev_class, dep.depth + 1 FROM dep JOIN pg_depend d ON d.refobjid = dep.oid
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND r.ev_class <> dep.oid AND dep.depth < 50
)
SELECT c.oid, n.nspname, c.relname, max(dep.depth), pg_get_viewdef(c.oid), c.reloptions,
       pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT ARRAY[a.attname, col_description(c.oid, a.attnum)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL),
       ARRAY(SELECT ARRAY[CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                          x.privilege_type, x.is_grantable::text]
             FROM aclexplode(c.relacl) x WHERE x.grantee <> c.relowner)
FROM dep JOIN pg_class c ON c.oid = dep.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND heliosdb._relkind(c.oid, c.relkind) = 'v'
  AND n.nspname !~ '^(hdb_|heliosdb|pg_catalog|pg_toast)' AND n.nspname <> 'information_schema'
GROUP BY c.oid, n.nspname, c.relname
ORDER BY max(dep.depth), c.oid
"""

# The views that use a column of the table's view directly
_USERS_OF_COLUMN = """
SELECT DISTINCT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %(table)s::regclass AND a.attname = %(column)s AND r.ev_class <> %(table)s::regclass
"""


@dataclass
class _View:
    oid: int
    schema: str
    name: str
    depth: int
    definition: str
    options: list[str] | None
    owner: str
    comment: str | None
    column_comments: list[list[str]]
    grants: list[list[str]]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Change:
    """A column the statement drops (cascade: with CASCADE) or gives another type."""

    action: str  # "drop" | "type"
    column: str
    cascade: bool = False


def changes(toks: list[Any], i: int) -> list[Change]:
    """The DROP COLUMN and ALTER COLUMN ... TYPE actions of an ALTER TABLE, from token i (its actions)."""
    rest = toks[i:]
    bounds = [-1, *top_level_commas(rest), len(rest)]
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        clause = rest[lo + 1 : hi]
        if not clause or not is_word(clause[0], "DROP", "ALTER"):
            continue
        _, j = skip_words(clause, 1, "COLUMN")
        if clause[0].text.upper() == "DROP":
            _, j = skip_words(clause, j, "IF", "EXISTS")
        if j >= len(clause) or is_word(clause[j], "CONSTRAINT"):
            continue
        name, k = read_name(clause, j)
        if clause[0].text.upper() == "DROP":
            out.append(Change("drop", name.name, any(is_word(t, "CASCADE") for t in clause[k:])))
        elif any(is_word(t, "TYPE") for t in clause[k : k + 3]):
            out.append(Change("type", name.name))
    return out


@contextlib.contextmanager
def kept(session: Session, schema: str, table: str, todo: list[Change]) -> Iterator[None]:
    """Around DDL that makes the table's view again: its dependent views out before, back after.

    A view that uses a dropped column is PostgreSQL's 2BP01 (with CASCADE: dropped, as those over it);
    one that uses a column given another type is PostgreSQL's 0A000.
    """
    conn = session.conn
    rel = sql.Identifier(schema, table).as_string(conn)
    if not todo or not _has_dependents(conn, rel):
        yield
        return
    views = [_View(*row) for row in conn.execute(_DEPENDENTS, {"table": rel}).fetchall()]  # type: ignore[arg-type]
    gone = _refuse_or_cascade(session, rel, table, views, todo)
    if views:
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.SQL(", ").join(v.ident for v in reversed(views))))
    yield
    for view in views:
        if view.oid not in gone:
            _create(conn, view)


def over_table(session: Session, schema: str, table: str) -> list[str]:
    """PostgreSQL's DETAIL lines for the views that depend on the table (DROP TABLE without CASCADE)."""
    conn = session.conn
    rel = sql.Identifier(schema, table).as_string(conn)
    if not _has_dependents(conn, rel):
        return []
    views = {v.oid: v for v in (_View(*row) for row in conn.execute(_DEPENDENTS, {"table": rel}).fetchall())}  # type: ignore[arg-type]
    direct = {int(r[0]) for r in conn.execute(
        """SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
           WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass
             AND r.ev_class <> d.refobjid""", (rel,)).fetchall()}
    return [f"view {views[o].name} depends on table {table}" if via is None
            else f"view {views[o].name} depends on view {views[via].name}"
            for o, via in _with_views_over(session, direct & set(views)).items()
            if o in views and (via is None or via in views)]


def _has_dependents(conn: psycopg.Connection[Any], rel: str) -> bool:
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                          WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass
                            AND r.ev_class <> d.refobjid)""", (rel,)).fetchone()
    return bool(row and row[0])


def _refuse_or_cascade(session: Session, rel: str, table: str, views: list[_View], todo: list[Change]) -> set[int]:
    """PostgreSQL's errors for views that use a changed column; the oids of the views CASCADE drops."""
    by_oid = {v.oid: v for v in views}
    gone: dict[int, int | None] = {}
    for change in todo:
        users = [by_oid[r[0]] for r in session.conn.execute(
            _USERS_OF_COLUMN, {"table": rel, "column": change.column}).fetchall() if r[0] in by_oid]
        if not users:
            continue
        if change.action == "type":
            raise errors.NotSupportedError(
                "cannot alter type of a column used by a view or rule",
                detail=f'rule _RETURN on view {users[0].name} depends on column "{change.column}"')
        over = _with_views_over(session, {v.oid for v in users})
        lines = [f"view {by_oid[o].name} depends on column {change.column} of table {table}" if via is None
                 else f"view {by_oid[o].name} depends on view {by_oid[via].name}"
                 for o, via in over.items() if o in by_oid and (via is None or via in by_oid)]
        if not change.cascade:
            raise errors.lookup("2BP01")(
                f"cannot drop column {change.column} of table {table} because other objects depend on it",
                sqlstate="2BP01", detail="\n".join(lines), hint="Use DROP ... CASCADE to drop the dependent objects too.")
        gone.update(over)
        if len(lines) == 1:
            session.notices.append(f"NOTICE:  drop cascades to view {by_oid[next(iter(over))].name}")
        elif lines:
            session.notices.append(f"NOTICE:  drop cascades to {len(lines)} other objects")
    return set(gone)


def _with_views_over(session: Session, oids: set[int]) -> dict[int, int | None]:
    """The views and every view that reads one of them, directly or not: each with the one it reads
    (None for the given ones), in the order PostgreSQL lists them."""
    rows = session.conn.execute(
        """WITH RECURSIVE v(oid, via, depth) AS (SELECT o, NULL::oid, 0 FROM unnest(%s::oid[]) o
               UNION SELECT r.ev_class, v.oid, v.depth + 1 FROM v JOIN pg_depend d ON d.refobjid = v.oid
               JOIN pg_rewrite r ON r.oid = d.objid
               WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> v.oid AND v.depth < 50)
           SELECT DISTINCT ON (oid) oid, via, depth FROM v ORDER BY oid, depth""", (sorted(oids),)).fetchall()
    rows.sort(key=lambda r: (r[2], r[0]))
    return {int(r[0]): (int(r[1]) if r[1] is not None else None) for r in rows}


def _create(conn: psycopg.Connection[Any], view: _View) -> None:
    options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(sql.SQL(o) for o in view.options)) \
        if view.options else sql.SQL("")
    conn.execute(sql.SQL("CREATE VIEW {}{} AS {}").format(view.ident, options, sql.SQL(view.definition)))
    if view.owner != conn.execute("SELECT current_user").fetchone()[0]:  # type: ignore[index]
        conn.execute(sql.SQL("ALTER VIEW {} OWNER TO {}").format(view.ident, sql.Identifier(view.owner)))
    if view.comment is not None:
        conn.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(view.ident, sql.Literal(view.comment)))
    for column, text in view.column_comments:
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
            sql.Identifier(view.schema, view.name, column), sql.Literal(text)))
    for grantee, privilege, grantable in view.grants:
        conn.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(
            sql.SQL(privilege), view.ident, sql.SQL(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable == "true" else "")))
