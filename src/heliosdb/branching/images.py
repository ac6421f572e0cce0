"""Branch images: a branch's rows of a table it inherited, kept as a plain table for reads.

A branch reads an inherited table through a view that puts its own rows together with the root's rows as
of the fork, minus those it rewrote (`layout.state_sql`): per row of the root an LSN filter and an
anti-join probe, 2.4x-2.9x the aggregate of a plain table. VACUUM on the branch copies what that view
returns into a plain table in the branch's schema, with the table's keys and plain indexes (its image), as
an LSM store compacts its deltas. The view then reads the image as long as the branch has written nothing
to the table since: the check is one probe of `__br`'s (_hdb_branch, _hdb_lsn) index, run once per
statement as an InitPlan; otherwise, in the same statement, the combined rows as before. Every write of a
branch's rows (INSERT, UPDATE, DELETE, tombstones, merges into the branch) leaves its `__br` row at the
writer's LSN, which is above the image's, so a stale image is never read. A later VACUUM (or the
background upkeep in long-lived processes) brings the image up to date from the rows the branch wrote
since, without copying the table again. DDL of the table on the branch drops the image.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb.catalog.model import Snapshot, TableInfo, TableVersion, chain, table_info

if TYPE_CHECKING:
    from heliosdb.catalog.model import Branch, Level

I = sql.Identifier  # noqa: E741
L = sql.Literal


def relation(branch: Branch, table_id: int) -> sql.Identifier:
    """The image of a table on a branch: in the branch's schema, named by table id (renames keep it)."""
    return I(branch.phys_schema, f"_hdb_img{table_id}")


def signature(version: TableVersion) -> str:
    """What the image's columns depend on: names and types, in order."""
    return json.dumps([[c.name, c.type] for c in version.columns])


def gate(branch_id: int, info: TableInfo) -> sql.Composable:
    """True when the branch's image of the table holds what the branch sees now: it has one, and the
    branch wrote no row of the table at a later LSN (in this snapshot; the own transaction's writes too).
    The newest LSN is one backward step of __br's (_hdb_branch, _hdb_lsn) index (a NOT EXISTS with the
    image's LSN as a parameter was planned as a scan of the branch's rows)."""
    return sql.SQL(
        "coalesce((SELECT coalesce((SELECT max(w._hdb_lsn) FROM {br} w WHERE w._hdb_branch = {b}), 0) <= i.lsn "
        "FROM heliosdb._images i WHERE i.branch_id = {b} AND i.table_id = {t}), false)"
    ).format(br=I(*info.br), b=L(branch_id), t=L(info.id))


def view_sql(branch: Branch, info: TableInfo, version: TableVersion, state: sql.Composable) -> sql.Composable:
    """The branch's internal view with its image: the image's rows or the combined ones, by the gate.

    The gate sits above a qual-free UNION ALL, so PostgreSQL flattens both arms into plain scans and
    pushes it down as a one-time filter on each; as one sublink at the top it is one InitPlan, whose
    value the leader passes to parallel workers (a sublink inside each arm would make the plan serial).
    """
    cols = [I(c.name) for c in version.columns]
    m = sql.SQL(", ").join([sql.SQL("m._hdb_rowid"), *(sql.SQL("m.{}").format(c) for c in cols)])
    f = sql.SQL(", ").join([sql.SQL("f._hdb_rowid"), *(sql.SQL("f.{}").format(c) for c in cols)])
    u = sql.SQL(", ").join([sql.SQL("u._hdb_rowid"), *(sql.SQL("u.{}").format(c) for c in cols)])
    return sql.SQL(
        "SELECT {u} FROM (SELECT true AS _hdb_img, {m} FROM {img} m "
        "UNION ALL SELECT false, {f} FROM ({state}) f) u WHERE u._hdb_img = {gate}"
    ).format(u=u, m=m, f=f, img=relation(branch, info.id), state=state, gate=gate(branch.id, info))


def has_image(conn: psycopg.Connection[Any], branch_id: int, table_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM heliosdb._images WHERE branch_id = %s AND table_id = %s",
                       (branch_id, table_id)).fetchone()
    return row is not None


def forget(conn: psycopg.Connection[Any], branch_id: int, table_id: int) -> bool:
    """Take the image out of the catalog (the view is then made without it); True when there was one."""
    row = conn.execute("DELETE FROM heliosdb._images WHERE branch_id = %s AND table_id = %s RETURNING 1",
                       (branch_id, table_id)).fetchone()
    return row is not None


def drop(conn: psycopg.Connection[Any], branch: Branch, table_id: int) -> None:
    """Drop the image's relation (after the view no longer names it)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(relation(branch, table_id)))


def worth_one(conn: psycopg.Connection[Any], branch: Branch, info: TableInfo, levels: list[Level]) -> bool:
    """Whether the branch's view of the table has rows to hide: the branch (or an ancestor below the
    root) wrote the table, or the root changed it after the fork. Otherwise the view reads nearly as a
    plain table does, and an image would only cost space."""
    written = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {br} WHERE _hdb_branch = ANY(%s))").format(br=I(*info.br)),
        ([lv.branch_id for lv in levels if lv.branch_id != info.root_branch],),
    ).fetchone()
    if written and written[0]:
        return True
    fork = next(lv.upto for lv in levels if lv.branch_id == info.root_branch)
    # every change of the root relation leaves a history row ending at its LSN (inserts: a marker)
    changed = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {h} WHERE _hdb_branch = %s AND _hdb_end > %s)").format(
            h=I(*info.hist)), (info.root_branch, fork)).fetchone()
    return bool(changed and changed[0])


def compact(conn: psycopg.Connection[Any], branch: Branch, table_ids: list[int] | None = None) -> int:
    """Build or bring up to date the branch's images of the inherited tables given (all when None).

    Each table in a transaction of its own, REPEATABLE READ, so that the image and the LSN it is exact
    at come from one snapshot. Returns how many images were built or refreshed.
    """
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    done = 0
    for tid, version in sorted(snap.tables.items()):
        if version.dropped or (table_ids is not None and tid not in table_ids):
            continue
        info = table_info(conn, tid)
        if info.root_branch == branch.id:
            continue  # its rows are a plain table already
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # no snapshot before the lock: image work on the database takes turns, each sees the last one's
            conn.execute("LOCK TABLE heliosdb._images IN SHARE ROW EXCLUSIVE MODE")
            changed = _compact_one(conn, branch, levels, snap, info, version)
        if changed:
            # all-visible pages: a scan of the image skips the per-row visibility checks a plain
            # table's scan skips (VACUUM cannot run inside the transaction above)
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(relation(branch, tid)))
            done += 1
    return done


def _compact_one(conn: psycopg.Connection[Any], branch: Branch, levels: list[Level], snap: Snapshot,
                 info: TableInfo, version: TableVersion) -> int:
    from heliosdb.branching import layout

    img = relation(branch, info.id)
    br, b = I(*info.br), L(branch.id)
    head_row = conn.execute(
        sql.SQL("SELECT coalesce(max(_hdb_lsn), 0) FROM {br} WHERE _hdb_branch = {b}").format(br=br, b=b)).fetchone()
    head = int(head_row[0]) if head_row else 0
    row = conn.execute("SELECT lsn, columns FROM heliosdb._images WHERE branch_id = %s AND table_id = %s",
                       (branch.id, info.id)).fetchone()
    state = layout.state_sql(snap, levels, info, version)
    if row is not None and row[1] == signature(version):
        lsn = int(row[0])
        if head <= lsn:
            return 0
        changed = sql.SQL("SELECT _hdb_rowid FROM {br} WHERE _hdb_branch = {b} AND _hdb_lsn > {lsn}").format(
            br=br, b=b, lsn=L(lsn))
        conn.execute(sql.SQL("DELETE FROM {img} WHERE _hdb_rowid IN ({changed})").format(img=img, changed=changed))
        conn.execute(sql.SQL("INSERT INTO {img} SELECT * FROM ({state}) s WHERE s._hdb_rowid IN ({changed})").format(
            img=img, state=state, changed=changed))
        conn.execute("UPDATE heliosdb._images SET lsn = %s, refreshed_at = now() WHERE branch_id = %s "
                     "AND table_id = %s", (head, branch.id, info.id))
        return 1
    if row is not None:  # made for another shape of the table (DDL drops images; this is a safety net)
        forget(conn, branch.id, info.id)
        conn.execute(layout.internal_view_sql(snap, branch, levels, info, version, image=False))
        drop(conn, branch, info.id)
    elif not worth_one(conn, branch, info, levels):
        return 0
    conn.execute(sql.SQL("CREATE TABLE {img} AS {state}").format(img=img, state=state))
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {img} (_hdb_rowid)").format(img=img))
    for stmt in _index_statements(img, version):
        conn.execute(stmt)
    conn.execute("INSERT INTO heliosdb._images (branch_id, table_id, lsn, columns) VALUES (%s, %s, %s, %s)",
                 (branch.id, info.id, head, signature(version)))
    conn.execute(layout.internal_view_sql(snap, branch, levels, info, version, image=True))
    return 1


def _index_statements(img: sql.Identifier, version: TableVersion) -> list[sql.Composable]:
    """The table's keys and its indexes on plain columns, over the image (whose columns have the table's
    names). Indexes on expressions or with a predicate are left out: their text names the root relation's
    columns, and reads that would use them still get a plain scan of the image."""
    names = {c.name for c in version.columns}
    out: list[sql.Composable] = []
    for con in version.constraints:
        if con.kind in ("p", "u") and con.cols and set(con.cols) <= names:
            out.append(sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(img, sql.SQL(", ").join(I(c) for c in con.cols)))
        elif con.kind == "i" and con.cols and all(con.cols) and set(con.cols) <= names and not con.where:
            method = (con.using or "btree").split(" ", 1)[0]
            keys = []
            for k, c in enumerate(con.cols):
                opt = con.options[k] if k < len(con.options) else 0
                keys.append(sql.SQL("{}{}{}").format(
                    I(c), sql.SQL(" DESC" if opt & 1 else ""),
                    sql.SQL(" NULLS FIRST" if opt & 2 and not opt & 1 else " NULLS LAST" if opt & 1 and not opt & 2
                            else "")))
            out.append(sql.SQL("CREATE INDEX ON {} USING {} ({})").format(img, I(method), sql.SQL(", ").join(keys)))
    return out
