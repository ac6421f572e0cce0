"""Schema side of a merge: what the source changed since the base, carried to the target.

Tables and columns are matched by identity on the source's timeline (table and
column ids) and by name on the target. Changes are replayed on the target as
the DDL a user would have written (so every DDL rule applies), inside the
merge's transaction. Both sides changing the same object incompatibly is a
schema conflict that stops the merge with an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heliosdb import errors
from heliosdb.catalog.model import Column, Constraint, Level, Snapshot, TableVersion, chain, visible_tables
from heliosdb.sql.names import quote_ident

if TYPE_CHECKING:
    import psycopg

    from heliosdb.catalog.model import Branch


class SchemaConflict(errors.HeliosError, code="HD011"):
    """Both branches changed the same table or column in incompatible ways."""


@dataclass
class SchemaPlan:
    statements: list[str] = field(default_factory=list)  # DDL to run on the target
    tables: list[str] = field(default_factory=list)  # tables the statements touch (for the preview)


def _tables(conn: psycopg.Connection, levels: list[Level]) -> dict[int, TableVersion]:
    return visible_tables(conn, levels)


def _coldef(c: Column) -> str:
    text = f"{quote_ident(c.name)} {c.type}"
    if c.default:
        text += f" DEFAULT {c.default}"
    if c.notnull:
        text += " NOT NULL"
    return text


def create_table_sql(v: TableVersion) -> str:
    parts = [_coldef(c) for c in v.columns]
    for con in v.constraints:
        if con.kind == "p":
            parts.append(f"PRIMARY KEY ({', '.join(quote_ident(c) for c in con.cols)})")
        elif con.kind == "u":
            parts.append(f"UNIQUE ({', '.join(quote_ident(c) for c in con.cols)})")
        elif con.kind == "c" and con.expr:
            parts.append(f"CONSTRAINT {quote_ident(con.name)} CHECK ({con.expr})")
    return f"CREATE TABLE {quote_ident(v.name)} ({', '.join(parts)})"


def _by_name(tables: dict[int, TableVersion]) -> dict[str, TableVersion]:
    return {v.name: v for v in tables.values()}


def plan_schema(
    conn: psycopg.Connection, source: Branch, target: Branch, base_s: int, base_t: int
) -> SchemaPlan:
    s_now = _tables(conn, chain(conn, source.id))
    s_base = _tables(conn, chain(conn, source.id, base_s))
    t_now = _tables(conn, chain(conn, target.id))
    t_base = _tables(conn, chain(conn, target.id, base_t))
    t_now_names = _by_name(t_now)
    t_base_names = _by_name(t_base)
    # the target holds the source's base state too (that is what makes it the base)
    held = set(t_base_names) | {v.name for v in s_base.values()}
    plan = SchemaPlan()
    for tid, sv in s_now.items():
        before = s_base.get(tid)
        if before is None:  # created on the source since the base
            tv = t_now_names.get(sv.name)
            if tv is None:
                plan.statements.append(create_table_sql(sv))
                plan.tables.append(sv.name)
            elif [(c.name, c.type) for c in tv.columns] != [(c.name, c.type) for c in sv.columns]:
                raise SchemaConflict(
                    f'table "{sv.name}" was created on both branches with different columns',
                    hint="Rename or align one of them, then merge again.",
                )
            continue
        tv = t_now_names.get(before.name) or t_now_names.get(sv.name)
        if tv is None:
            if before.name in held:
                raise SchemaConflict(
                    f'table "{sv.name}" was changed on "{source.name}" but dropped on "{target.name}"'
                )
            continue
        if sv.name != before.name and tv.name == before.name:
            plan.statements.append(f"ALTER TABLE {quote_ident(tv.name)} RENAME TO {quote_ident(sv.name)}")
        _plan_columns(plan, sv, before, tv, t_base_names.get(before.name), source, target)
    for tid, before in s_base.items():
        if tid in s_now:
            continue
        tv = t_now_names.get(before.name)
        if tv is None:
            continue
        tb = t_base_names.get(before.name)
        if _shape(tv) not in (_shape(tb), _shape(before)) or _rows_changed(conn, source, target, base_s, base_t, tid):
            raise SchemaConflict(
                f'table "{before.name}" was dropped on "{source.name}" but changed on "{target.name}"',
                hint=f'To accept the drop, drop the table on "{target.name}" too, then merge again.',
            )
        plan.statements.append(f"DROP TABLE {quote_ident(tv.name)}")
        plan.tables.append(before.name)
    return plan


def _plan_columns(
    plan: SchemaPlan, sv: TableVersion, before: TableVersion, tv: TableVersion, tb: TableVersion | None,
    source: Branch, target: Branch,
) -> None:
    table = quote_ident(sv.name)
    old = {c.col: c for c in before.columns}
    now = {c.col: c for c in sv.columns}
    t_cols = {c.name: c for c in tv.columns}
    # columns the target held at the base: its own, and the source's (merged into it)
    t_base_cols = {c.name for c in tb.columns} if tb else set()
    t_base_cols |= {c.name for c in before.columns}
    touched = False
    for col, c in now.items():
        if col not in old:  # added on the source
            have = t_cols.get(c.name)
            if have is None:
                plan.statements.append(f"ALTER TABLE {table} ADD COLUMN {_coldef(_nullable(c))}")
                touched = True
            elif have.type != c.type:
                raise SchemaConflict(
                    f'column "{c.name}" of "{sv.name}" was added on both branches with different types '
                    f"({c.type} on {source.name}, {have.type} on {target.name})"
                )
        elif old[col].name != c.name:  # renamed on the source
            was = old[col].name
            if was in t_cols and c.name not in t_cols:
                plan.statements.append(f"ALTER TABLE {table} RENAME COLUMN {quote_ident(was)} TO {quote_ident(c.name)}")
                touched = True
            elif c.name not in t_cols:
                raise SchemaConflict(
                    f'column "{was}" of "{sv.name}" was renamed to "{c.name}" on "{source.name}" '
                    f'but renamed or dropped on "{target.name}"'
                )
    for col, c in old.items():
        if col not in now and c.name in t_cols:  # dropped on the source
            if c.name not in t_base_cols:
                continue  # the target's column of that name is its own
            plan.statements.append(f"ALTER TABLE {table} DROP COLUMN {quote_ident(c.name)}")
            touched = True
    if touched:
        plan.tables.append(sv.name)


def _rows_changed(conn: psycopg.Connection, source: Branch, target: Branch, base_s: int, base_t: int,
                  table_id: int) -> bool:
    """Whether the target changed rows of the source's table since the base (a row that differs from both
    base states), so dropping the table would lose them."""
    from heliosdb.merge.diff import Side, build_diff
    from heliosdb.temporal.resolver import head_lsn

    s_snap = Snapshot(conn, chain(conn, source.id, base_s))
    name = s_snap.tables[table_id].name
    t_snap = Snapshot(conn, chain(conn, target.id))
    t_tid = next(tid for tid, v in t_snap.tables.items() if v.name == name)
    # the target as the changing side; the source stays at its base
    build_diff(conn, Side(target, base_t, head_lsn(conn, target)), Side(source, base_s, base_s),
               (t_snap.tables[t_tid], t_snap.info[t_tid]), (s_snap.tables[table_id], s_snap.info[table_id]))
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM _hdb_diff WHERE head_s IS DISTINCT FROM base_s "
                       "AND head_s IS DISTINCT FROM base_t)").fetchone()
    return bool(row and row[0])


def _shape(v: TableVersion | None) -> list[tuple[str, str]] | None:
    """A table's columns by name and type (column ids differ between a table and its merged copy)."""
    return None if v is None else [(c.name, c.type) for c in v.columns]


def _nullable(c: Column) -> Column:
    """A column carried by a merge: NOT NULL only holds if existing target rows get a default."""
    return Column(c.name, c.col, c.type, c.notnull and c.default is not None, c.default, c.missing)


__all__ = ["Constraint", "SchemaConflict", "SchemaPlan", "create_table_sql", "plan_schema"]
