"""Set-based versioned writes that keep row identity (used by FLASHBACK and merges).

A plan is a relation (_hdb_rowid, _hdb_action, <the table's logical columns>)
with _hdb_action 'upsert' or 'delete'. On the table's root branch it is
applied to the root relation (whose triggers version it); elsewhere the
branch's old versions are archived and new versions or tombstones written,
exactly as the branch's write trigger does row by row.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from heliosdb.catalog.model import Branch, TableInfo, TableVersion

I = sql.Identifier  # noqa: E741
L = sql.Literal


def apply_plan(
    conn: psycopg.Connection[Any], branch: Branch, info: TableInfo, version: TableVersion,
    names: dict[int, str], br_columns: list[str], plan: str, lsn: int,
) -> int:
    """Apply the plan held in temporary table `plan`; returns the number of rows written."""
    p = I(plan)
    cols = version.columns
    phys = [I(names[c.col]) for c in cols]
    logical = [I(c.name) for c in cols]
    written = 0
    if branch.id == info.root_branch:
        t = I(*info.cur)
        cur = conn.execute(sql.SQL(
            "DELETE FROM {t} n USING {p} x WHERE x._hdb_action = 'delete' AND n._hdb_rowid = x._hdb_rowid"
        ).format(t=t, p=p))
        written += cur.rowcount
        # a GENERATED ALWAYS identity column takes no value in an UPDATE (nor does it change: no branch can
        # change it), and its value is given in an INSERT
        settable = [(I(names[c.col]), I(c.name)) for c in cols if c.identity != "a"]
        if settable:
            # ROW(...): PostgreSQL rejects a plain parenthesized source for a single column
            cur = conn.execute(sql.SQL(
                "UPDATE {t} n SET ({pc}) = ROW({xc}) FROM {p} x WHERE x._hdb_action = 'upsert' "
                "AND n._hdb_rowid = x._hdb_rowid"
            ).format(t=t, p=p, pc=sql.SQL(", ").join(c for c, _ in settable),
                     xc=sql.SQL(", ").join(sql.SQL("x.{}").format(c) for _, c in settable)))
            written += cur.rowcount
        cur = conn.execute(sql.SQL(
            "INSERT INTO {t} (_hdb_rowid{pc}) {ov}SELECT x._hdb_rowid{xc} FROM {p} x WHERE x._hdb_action = 'upsert' "
            "AND NOT EXISTS (SELECT 1 FROM {t} n WHERE n._hdb_rowid = x._hdb_rowid)"
        ).format(t=t, p=p, pc=sql.SQL("").join(sql.SQL(", {}").format(c) for c in phys),
                 ov=sql.SQL("OVERRIDING SYSTEM VALUE " if any(c.identity == "a" for c in cols) else ""),
                 xc=sql.SQL("").join(sql.SQL(", x.{}").format(c) for c in logical)))
        return written + cur.rowcount
    br, hist, b, lv = I(*info.br), I(*info.hist), L(branch.id), L(lsn)
    arch = sql.SQL("").join(sql.SQL("{}, ").format(I(c)) for c in br_columns)
    conn.execute(sql.SQL(
        "INSERT INTO {h} (_hdb_branch, {a}_hdb_rowid, _hdb_begin, _hdb_end, _hdb_del) "
        "SELECT _hdb_branch, {a}_hdb_rowid, _hdb_lsn, {l}, _hdb_del FROM {br} "
        "WHERE _hdb_branch = {b} AND _hdb_lsn <> {l} AND _hdb_rowid IN (SELECT _hdb_rowid FROM {p})"
    ).format(h=hist, a=arch, l=lv, br=br, b=b, p=p))
    cur = conn.execute(sql.SQL(
        "INSERT INTO {br} (_hdb_branch, _hdb_rowid, _hdb_lsn, _hdb_del) "
        "SELECT {b}, x._hdb_rowid, {l}, true FROM {p} x WHERE x._hdb_action = 'delete' "
        "ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET _hdb_lsn = {l}, _hdb_del = true"
    ).format(br=br, b=b, l=lv, p=p))
    written += cur.rowcount
    cur = conn.execute(sql.SQL(
        "INSERT INTO {br} (_hdb_branch, {pc}_hdb_rowid, _hdb_lsn, _hdb_del) "
        "SELECT {b}, {xc}x._hdb_rowid, {l}, false FROM {p} x WHERE x._hdb_action = 'upsert' "
        "ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET {up}_hdb_lsn = {l}, _hdb_del = false"
    ).format(
        br=br, b=b, l=lv, p=p,
        pc=sql.SQL("").join(sql.SQL("{}, ").format(c) for c in phys),
        xc=sql.SQL("").join(sql.SQL("x.{}, ").format(c) for c in logical),
        up=sql.SQL("").join(sql.SQL("{c} = EXCLUDED.{c}, ").format(c=c) for c in phys),
    ))
    return written + cur.rowcount
