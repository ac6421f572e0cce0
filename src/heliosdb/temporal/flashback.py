"""FLASHBACK TABLE t TO { LSN | SCN | TIMESTAMP | TRANSACTION } <point>.

The table on the current branch gets back the rows it had at the point, as one
new commit (so a flashback can itself be flashed back). Rows are matched by
their row identity; only rows that differ are written, set at a time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from psycopg import sql

from heliosdb import errors
from heliosdb.branching import layout
from heliosdb.branching.writes import apply_plan
from heliosdb.catalog.model import Snapshot, TableVersion, chain
from heliosdb.sql.names import read_name, tokenize
from heliosdb.sql.temporal import read_point
from heliosdb.temporal.rewrite import _table_at, refuse_non_table, resolve

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741
_TO = re.compile(r"\s+TO\s+", re.IGNORECASE)


def flashback(session: Session, text: str) -> str:
    toks = tokenize(text)
    if len(toks) <= 2:
        raise errors.SyntaxError("syntax error at end of input: expected FLASHBACK TABLE <name> TO <point>")
    name, i = read_name(toks, 2)
    rest = text[toks[i].start :] if i < len(toks) else ""
    m = _TO.match(" " + rest)
    if not m:
        raise errors.SyntaxError("syntax error: expected FLASHBACK TABLE <name> TO <point>")
    point = read_point(text, toks[i].start + m.end() - 1, "LSN, SCN, TIMESTAMP or TRANSACTION")
    conn, branch = session.conn, session.branch
    with conn.transaction():
        levels_now = chain(conn, branch.id)
        snap_now = Snapshot(conn, levels_now)
        now = next((v for v in snap_now.tables.values() if v.name == name.name), None)
        if now is None:
            refuse_non_table(conn, branch, name.name)  # a view: 0A000
            raise errors.UndefinedTable(f'relation "{name.name}" does not exist')
        lsn = resolve(conn, branch, point)
        levels = chain(conn, branch.id, lsn)
        snap = Snapshot(conn, levels)
        then = snap.tables.get(now.table_id)  # the same table, whatever its name was then
        if then is None or then.dropped:
            _table_at(conn, branch, lsn, name.name)  # 42P01 naming the point, if no table had the name
            raise errors.ObjectNotInPrerequisiteState(
                f'table "{name.name}" at that point is another table (it was dropped and created again since)'
            )
        info = snap.info[now.table_id]
        values = _values_then(now, then)
        cols = [c for c in now.columns if c.generated is None]  # a stored generated column computes itself
        state = layout.state_sql(snap, levels, info, then)
        current = I(*info.cur) if branch.id == info.root_branch else I(branch.phys_schema, now.name)
        phys = snap_now.names[info.id]
        now_col = (lambda c: I(phys[c.col])) if branch.id == info.root_branch else (lambda c: I(c.name))
        differs = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("n.{}").format(now_col(c)) for c in cols) or sql.SQL("NULL"),
            sql.SQL(", ").join(values[c.col] for c in cols) or sql.SQL("NULL"),
        )
        # rows as they were (where they differ now), and deletes for rows that did not exist then
        plan = sql.SQL(
            "CREATE TEMP TABLE _hdb_plan ON COMMIT DROP AS "
            "SELECT s._hdb_rowid, 'upsert'::text AS _hdb_action{sc} FROM ({s}) s "
            "WHERE NOT EXISTS (SELECT 1 FROM {cur} n WHERE n._hdb_rowid = s._hdb_rowid AND NOT {d}) "
            "UNION ALL SELECT n._hdb_rowid, 'delete'{nulls} FROM {cur} n "
            "WHERE NOT EXISTS (SELECT 1 FROM ({s}) s WHERE s._hdb_rowid = n._hdb_rowid)"
        ).format(
            s=state, cur=current, d=differs,
            sc=sql.SQL("").join(sql.SQL(", {} AS {}").format(values[c.col], I(c.name)) for c in cols),
            nulls=sql.SQL("").join(sql.SQL(", NULL::{}").format(sql.SQL(c.type)) for c in cols),
        )
        lsn_now = int(conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch.id,)).fetchone()[0])  # type: ignore[index]
        conn.execute(plan)
        target = TableVersion(now.branch_id, now.table_id, now.name, now.valid_from, cols, now.constraints)
        apply_plan(conn, branch, info, target, phys, snap_now.br_columns[info.id], "_hdb_plan", lsn_now,
                   move_keys=True)
        conn.execute("DROP TABLE _hdb_plan")
    return "FLASHBACK"


def _values_then(now: TableVersion, then: TableVersion) -> dict[int, sql.Composable]:
    """Per column of the table now, its value at the point, over the point's state `s`: the same column;
    one retyped since (a new column under the old name), cast to its type now; one added since, what rows
    written before it read, else its DEFAULT, else NULL."""
    by_id = {c.col: c for c in then.columns}
    by_name = {c.name: c for c in then.columns}
    out: dict[int, sql.Composable] = {}
    for c in now.columns:
        old = by_id.get(c.col) or by_name.get(c.name)
        if old is not None and old.col == c.col:
            out[c.col] = sql.SQL("s.{}").format(I(old.name))
        elif old is not None:
            out[c.col] = sql.SQL("CAST(s.{} AS {})").format(I(old.name), sql.SQL(c.type))
        else:
            out[c.col] = sql.SQL("CAST({} AS {})").format(sql.SQL(c.missing or c.default or "NULL"), sql.SQL(c.type))
    return out
