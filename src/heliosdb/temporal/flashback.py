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
from heliosdb.catalog.model import Snapshot, chain
from heliosdb.sql.names import read_name, tokenize
from heliosdb.temporal.context import parse_point
from heliosdb.temporal.rewrite import _table_at, resolve

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741
L = sql.Literal
_TO = re.compile(r"\s+TO\s+", re.IGNORECASE)


def flashback(session: Session, text: str) -> str:
    toks = tokenize(text)
    name, i = read_name(toks, 2)
    rest = text[toks[i].start :] if i < len(toks) else ""
    m = _TO.match(" " + rest)
    if not m:
        raise errors.SyntaxError("syntax error: expected FLASHBACK TABLE <name> TO <point>")
    point = parse_point((" " + rest)[m.end():].rstrip().rstrip(";"))
    conn, branch = session.conn, session.branch
    with conn.transaction():
        levels_now = chain(conn, branch.id)
        snap_now = Snapshot(conn, levels_now)
        now = next((v for v in snap_now.tables.values() if v.name == name.name), None)
        if now is None:
            raise errors.UndefinedTable(f'relation "{name.name}" does not exist')
        lsn = resolve(conn, branch, point)
        levels, snap, then, info = _table_at(conn, branch, lsn, name.name)
        if then.table_id != now.table_id:
            raise errors.ObjectNotInPrerequisiteState(
                f'table "{name.name}" at that point is another table (it was dropped and created again since)'
            )
        then_names = {c.col: c.name for c in then.columns}
        cols = [c for c in now.columns if c.col in then_names]
        phys = snap_now.names[info.id]
        state = layout.state_sql(snap, levels, info, then)
        l = int(conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch.id,)).fetchone()[0])  # type: ignore[index]  # noqa: E741
        differs = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("n.{}").format(I(phys[c.col])) for c in cols) or sql.SQL("NULL"),
            sql.SQL(", ").join(sql.SQL("s.{}").format(I(then_names[c.col])) for c in cols) or sql.SQL("NULL"),
        )
        if branch.id == info.root_branch:
            t = I(*info.cur)
            conn.execute(sql.SQL("DELETE FROM {t} n WHERE NOT EXISTS (SELECT 1 FROM ({s}) s "
                                 "WHERE s._hdb_rowid = n._hdb_rowid)").format(t=t, s=state))
            if cols:
                conn.execute(sql.SQL("UPDATE {t} n SET {sets} FROM ({s}) s WHERE n._hdb_rowid = s._hdb_rowid AND {d}")
                             .format(t=t, s=state, d=differs, sets=sql.SQL(", ").join(
                                 sql.SQL("{} = s.{}").format(I(phys[c.col]), I(then_names[c.col])) for c in cols)))
            conn.execute(sql.SQL("INSERT INTO {t} (_hdb_rowid{cl}) SELECT s._hdb_rowid{sl} FROM ({s}) s "
                                 "WHERE NOT EXISTS (SELECT 1 FROM {t} n WHERE n._hdb_rowid = s._hdb_rowid)").format(
                t=t, s=state,
                cl=sql.SQL("").join(sql.SQL(", {}").format(I(phys[c.col])) for c in cols),
                sl=sql.SQL("").join(sql.SQL(", s.{}").format(I(then_names[c.col])) for c in cols)))
            return "FLASHBACK"
        internal = I(branch.phys_schema, now.name)
        br, hist, b = I(*info.br), I(*info.hist), L(branch.id)
        arch = sql.SQL("").join(sql.SQL("{}, ").format(I(c)) for c in snap_now.br_columns[info.id])
        changed = sql.SQL(
            "SELECT n._hdb_rowid FROM {iv} n WHERE NOT EXISTS (SELECT 1 FROM ({s}) s WHERE s._hdb_rowid = n._hdb_rowid) "
            "UNION SELECT s._hdb_rowid FROM ({s}) s WHERE NOT EXISTS (SELECT 1 FROM {iv} n "
            "WHERE n._hdb_rowid = s._hdb_rowid AND NOT {d})"
        ).format(iv=internal, s=state, d=differs)
        conn.execute(sql.SQL("CREATE TEMP TABLE _hdb_changed ON COMMIT DROP AS {}").format(changed))
        conn.execute(sql.SQL(
            "INSERT INTO {h} (_hdb_branch, {a}_hdb_rowid, _hdb_begin, _hdb_end, _hdb_del) "
            "SELECT _hdb_branch, {a}_hdb_rowid, _hdb_lsn, {l}, _hdb_del FROM {br} "
            "WHERE _hdb_branch = {b} AND _hdb_lsn <> {l} AND _hdb_rowid IN (SELECT _hdb_rowid FROM _hdb_changed)"
        ).format(h=hist, a=arch, l=L(l), br=br, b=b))
        conn.execute(sql.SQL(
            "INSERT INTO {br} (_hdb_branch, _hdb_rowid, _hdb_lsn, _hdb_del) "
            "SELECT {b}, c._hdb_rowid, {l}, true FROM _hdb_changed c "
            "WHERE NOT EXISTS (SELECT 1 FROM ({s}) s WHERE s._hdb_rowid = c._hdb_rowid) "
            "ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET _hdb_lsn = {l}, _hdb_del = true"
        ).format(br=br, b=b, l=L(l), s=state))
        conn.execute(sql.SQL(
            "INSERT INTO {br} (_hdb_branch, {pc}_hdb_rowid, _hdb_lsn, _hdb_del) "
            "SELECT {b}, {sc}s._hdb_rowid, {l}, false FROM ({s}) s JOIN _hdb_changed c ON c._hdb_rowid = s._hdb_rowid "
            "ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET {up}_hdb_lsn = {l}, _hdb_del = false"
        ).format(
            br=br, b=b, l=L(l), s=state,
            pc=sql.SQL("").join(sql.SQL("{}, ").format(I(phys[c.col])) for c in cols),
            sc=sql.SQL("").join(sql.SQL("s.{}, ").format(I(then_names[c.col])) for c in cols),
            up=sql.SQL("").join(sql.SQL("{c} = EXCLUDED.{c}, ").format(c=I(phys[c.col])) for c in cols),
        ))
        conn.execute("DROP TABLE _hdb_changed")
    return "FLASHBACK"
