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

from heliosdb import errors
from heliosdb.catalog.model import Branch, TableInfo, TableVersion

I = sql.Identifier  # noqa: E741
L = sql.Literal


def apply_plan(
    conn: psycopg.Connection[Any], branch: Branch, info: TableInfo, version: TableVersion,
    names: dict[int, str], br_columns: list[str], plan: str, lsn: int, *, move_keys: bool = False,
) -> int:
    """Apply the plan held in temporary table `plan`; returns the number of rows written.

    move_keys (on the root relation): when the update collides with a unique or primary key that
    PostgreSQL checks row by row (values swapped between rows), the rows whose key values change
    are written again instead (_move_keys); the plan must then be one the caller may change.
    """
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
        def insert(action: str) -> sql.Composed:
            return sql.SQL(
                "INSERT INTO {t} (_hdb_rowid{pc}) {ov}SELECT x._hdb_rowid{xc} FROM {p} x WHERE x._hdb_action = {a}"
            ).format(t=t, p=p, pc=sql.SQL("").join(sql.SQL(", {}").format(c) for c in phys),
                     ov=sql.SQL("OVERRIDING SYSTEM VALUE " if any(c.identity == "a" for c in cols) else ""),
                     xc=sql.SQL("").join(sql.SQL(", x.{}").format(c) for c in logical), a=L(action))
        if settable:
            # ROW(...): PostgreSQL rejects a plain parenthesized source for a single column
            update = sql.SQL(
                "UPDATE {t} n SET ({pc}) = ROW({xc}) FROM {p} x WHERE x._hdb_action = 'upsert' "
                "AND n._hdb_rowid = x._hdb_rowid"
            ).format(t=t, p=p, pc=sql.SQL(", ").join(c for c, _ in settable),
                     xc=sql.SQL(", ").join(sql.SQL("x.{}").format(c) for _, c in settable))
            if move_keys:
                try:
                    with conn.transaction():  # a savepoint: a failed update leaves nothing behind
                        cur = conn.execute(update)
                except psycopg.errors.UniqueViolation as exc:
                    if (acting := _acting_key(conn, info)) is not None:
                        err = errors.from_psycopg(exc)
                        err.hint = (f'Rows swap unique values: they would be written again, which foreign key '
                                    f'"{acting}" would act on (ON DELETE). Swap them through a third value instead.')
                        raise err from None
                    written += _move_keys(conn, info, cols, names, plan, insert("move"))
                    cur = conn.execute(update)
            else:
                cur = conn.execute(update)
            written += cur.rowcount
        cur = conn.execute(insert("upsert") + sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {t} n WHERE n._hdb_rowid = x._hdb_rowid)")
                           .format(t=t))
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


# The columns of the root relation's unique indexes that PostgreSQL checks row by row (not DEFERRABLE);
# NULL for an index on an expression (its values cannot be compared here)
_KEY_COLUMNS = """SELECT DISTINCT CASE WHEN k.attnum = 0 THEN NULL ELSE a.attname END
FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) k(attnum)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(t)s::regclass AND i.indisunique AND i.indimmediate"""
# Foreign keys that act when a row they reference is deleted (all but NO ACTION)
_DELETE_ACTIONS = """SELECT conname FROM pg_constraint
WHERE confrelid = %(t)s::regclass AND contype = 'f' AND confdeltype <> 'a' LIMIT 1"""


def _acting_key(conn: psycopg.Connection[Any], info: TableInfo) -> str | None:
    """A foreign key that acts when a row of the root relation is deleted: rows may not be deleted and
    inserted again (_move_keys), it would act on them. None when there is none."""
    row = conn.execute(_DELETE_ACTIONS, {"t": _regclass(info)}).fetchone()
    return str(row[0]) if row else None


def _regclass(info: TableInfo) -> str:
    return ".".join('"' + n.replace('"', '""') + '"' for n in info.cur)


def _move_keys(conn: psycopg.Connection[Any], info: TableInfo, cols: list[Any], names: dict[int, str],
               plan: str, insert: sql.Composed) -> int:
    """Rows whose unique key values the plan changes, deleted and inserted again with their new values in
    one statement (`insert`, of the plan's 'move' rows, an unreferenced WITH, runs after the DELETE; foreign
    keys are checked at the statement's end, when the keys are back). Their history is that of an update."""
    t = I(*info.cur)
    keys = [r[0] for r in conn.execute(_KEY_COLUMNS, {"t": _regclass(info)}).fetchall()]
    by_phys = {names[c.col]: c for c in cols}
    if None in keys or any(k not in by_phys for k in keys):
        changed = sql.SQL("true")  # keys on expressions (or a column the plan does not write): every row
    else:
        changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("n.{}").format(I(k)) for k in keys) or sql.SQL("NULL"),
            sql.SQL(", ").join(sql.SQL("x.{}").format(I(by_phys[k].name)) for k in keys) or sql.SQL("NULL"))
    p = I(plan)
    conn.execute(sql.SQL(
        "UPDATE {p} x SET _hdb_action = 'move' FROM {t} n "
        "WHERE x._hdb_action = 'upsert' AND n._hdb_rowid = x._hdb_rowid AND {changed}"
    ).format(p=p, t=t, changed=changed))
    cur = conn.execute(sql.SQL(
        "WITH moved AS ({ins}) DELETE FROM {t} n USING {p} x WHERE x._hdb_action = 'move' "
        "AND n._hdb_rowid = x._hdb_rowid"
    ).format(ins=insert, t=t, p=p))
    return cur.rowcount
