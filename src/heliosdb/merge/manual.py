"""MANUAL merges: conflicts in _merge_conflicts_<id>, then COMPLETE MERGE or ABORT MERGE.

The plan (every non-conflicting change) and the conflicts are stored in the
catalog, so a pending merge survives restarts. Users resolve conflicts with
UPDATE (resolution 'source' | 'target' | 'base' | 'custom' with
resolved_value); COMPLETE MERGE applies plan and resolutions as one commit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.catalog.model import Branch, Snapshot, chain, get_branch_by_id
from heliosdb.merge.diff import Side, changed_rows
from heliosdb.merge.engine import (
    PENDING_COLUMNS,
    Conflict,
    MergeStateError,
    TablePlan,
    apply_all,
    values_query,
)
from heliosdb.merge.schema import run_after, split_stored
from heliosdb.temporal.resolver import head_lsn

if TYPE_CHECKING:
    from heliosdb.session import Result, Session
    from heliosdb.sql.statements import MergeBranch

I = sql.Identifier  # noqa: E741

def conflicts_table(merge_id: int) -> str:
    return f"_merge_conflicts_{merge_id}"


def _j(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def save_pending(session: Session, merge_id: int, stmt: MergeBranch, src: Side, tgt: Side,
                 plans: list[TablePlan], conflicts: list[Conflict], planned: list[tuple[Any, ...]],
                 schema_ddl: list[str], text: str) -> Result:
    from heliosdb.branching.branches import audit
    from heliosdb.session import Result

    conn = session.conn
    table = I(tgt.branch.user_schema, conflicts_table(merge_id))
    conn.execute(sql.SQL(
        """CREATE TABLE {t} (
    conflict_id integer PRIMARY KEY, table_name text NOT NULL, page_id bigint, row_key jsonb,
    source_value jsonb, target_value jsonb, base_value jsonb, conflict_kind text NOT NULL,
    resolution text CHECK (resolution IN ('source', 'target', 'base', 'custom')),
    resolved_value jsonb, resolved_by text, resolved_at timestamptz)"""
    ).format(t=table))
    for n, c in enumerate(conflicts, start=1):
        conn.execute(sql.SQL(
            "INSERT INTO {t} (conflict_id, table_name, page_id, row_key, source_value, target_value, base_value, "
            "conflict_kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)").format(t=table),
            (n, c.table, c.rowid, _j(c.key), _j(c.source), _j(c.target), _j(c.base), c.kind.rstrip("!")))
        conn.execute("INSERT INTO heliosdb._merge_plan VALUES (%s, %s, %s, 'conflict', %s, %s)",
                     (merge_id, c.table, c.rowid, None if c.other is None else _j({"other": c.other}), n))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO heliosdb._merge_plan VALUES (%s, %s, %s, %s, %s, NULL)",
                        [(merge_id, t, r, a, _j(v)) for t, r, a, v in planned])
    counts = {p.table: {"applied": p.applied, "auto_merged": p.auto} for p in plans}
    conn.execute(
        """INSERT INTO heliosdb._merges (id, source_id, target_id, base_source_lsn, base_target_lsn, source_lsn,
               target_lsn, strategy, counts, state, schema_ddl)
           VALUES (%s, %s, %s, %s, %s, %s, %s, 'MANUAL', %s, 'pending', %s)""",
        (merge_id, src.branch.id, tgt.branch.id, src.base, tgt.base, src.head, tgt.head, json.dumps(counts),
         json.dumps(schema_ddl)),
    )
    audit(conn, tgt.branch.name, text, None, f"pending: {len(conflicts)} conflict(s)")
    cur = conn.cursor()
    cur.execute(values_query(PENDING_COLUMNS, 1),  # type: ignore[arg-type]
                (merge_id, "MANUAL", len(conflicts), conflicts_table(merge_id)))
    session.notices.append(
        f"NOTICE:  merge {merge_id} has {len(conflicts)} conflict(s): resolve them in {conflicts_table(merge_id)}, "
        f"then COMPLETE MERGE {merge_id}")
    return Result(status="MERGE", cursor=cur, rowcount=1)


def _pending(session: Session, merge_id: int) -> tuple[Any, ...]:
    row = session.conn.execute(
        "SELECT id, source_id, target_id, target_lsn, state, source_lsn, base_source_lsn, schema_ddl "
        "FROM heliosdb._merges WHERE id = %s FOR UPDATE", (merge_id,)).fetchone()
    if row is None:
        raise errors.UndefinedObject(f"merge {merge_id} does not exist")
    if row[4] != "pending":
        raise MergeStateError(f"merge {merge_id} is {row[4]}, not pending")
    return row


def _changed_since(conn: psycopg.Connection[Any], target: Branch, point: int) -> bool:
    """Whether a commit on the target after `point` changed a table's rows or schema. Not the head alone:
    on a branch, writing the resolutions into the conflicts table (a plain table) is a commit too."""
    head = head_lsn(conn, target)
    if head == point:
        return False
    if conn.execute("SELECT EXISTS (SELECT 1 FROM heliosdb._table_versions WHERE branch_id = %s "
                    "AND (valid_from > %s OR valid_to BETWEEN %s + 1 AND %s))",
                    (target.id, point, point, head)).fetchone()[0]:  # type: ignore[index]
        return True
    snap = Snapshot(conn, chain(conn, target.id))
    side = Side(target, point, head)
    if not snap.tables:
        return False
    changed = sql.SQL(" OR ").join(sql.SQL("EXISTS ({})").format(changed_rows(conn, side, snap.info[tid]))
                                   for tid in snap.tables)
    return bool(conn.execute(sql.SQL("SELECT ") + changed).fetchone()[0])  # type: ignore[index]


def complete_merge(session: Session, merge_id: int) -> Result:
    from heliosdb.branching.branches import audit
    from heliosdb.merge.engine import _result

    conn = session.conn
    with conn.transaction():
        _, source_id, target_id, planned_head, _, source_lsn, base_s, schema_ddl = _pending(session, merge_id)
        target = get_branch_by_id(conn, target_id)
        if _changed_since(conn, target, planned_head):
            raise MergeStateError(
                f'branch "{target.name}" changed since merge {merge_id} was prepared',
                hint=f"ABORT MERGE {merge_id} and merge again.")
        conn.execute("SELECT heliosdb.txn_lsn(%s)", (target.id,))
        table = I(target.user_schema, conflicts_table(merge_id))
        open_ = conn.execute(sql.SQL("SELECT conflict_id FROM {} WHERE resolution IS NULL ORDER BY 1").format(table)
                             ).fetchall()
        if open_:
            ids = ", ".join(str(r[0]) for r in open_[:20])
            raise MergeStateError(
                f"merge {merge_id} still has {len(open_)} unresolved conflict(s): {ids}",
                hint=f"UPDATE {conflicts_table(merge_id)} SET resolution = 'source' | 'target' | 'base' | 'custom' "
                     "(with resolved_value) WHERE conflict_id = ...")
        bad = conn.execute(sql.SQL("SELECT conflict_id FROM {} WHERE resolution = 'custom' AND resolved_value IS NULL "
                                   "AND conflict_kind <> 'update_delete'").format(table)).fetchall()
        if bad:
            raise MergeStateError(f"conflict {bad[0][0]} is resolved as custom but has no resolved_value")
        from heliosdb.branching import tables as ddl_tables
        from heliosdb.sql.classify import classify

        before, after = split_stored(schema_ddl or [])
        with session.acting_on(target):
            for ddl in before:
                ddl_tables.execute(session, classify(ddl), ddl)
        # the plan without the rows in conflict (a key clash or a failed constraint keeps the source's row
        # there): each resolution says what becomes of them, and of the target's row a key clash is with
        conn.execute(
            "CREATE TEMP TABLE _hdb_mplan ON COMMIT DROP AS SELECT table_name, rowid, action, row_value, conflict_id "
            "FROM heliosdb._merge_plan p WHERE merge_id = %s AND action <> 'conflict' AND NOT EXISTS "
            "(SELECT 1 FROM heliosdb._merge_plan c WHERE c.merge_id = p.merge_id AND c.action = 'conflict' "
            "AND c.table_name = p.table_name AND c.rowid = p.rowid)", (merge_id,))
        conn.execute(sql.SQL(
            """INSERT INTO _hdb_mplan (table_name, rowid, action, row_value)
SELECT c.table_name, p.rowid,
       CASE WHEN v IS NULL OR v = 'null'::jsonb THEN 'delete' ELSE 'upsert' END, v
FROM {t} c JOIN heliosdb._merge_plan p ON p.merge_id = %s AND p.conflict_id = c.conflict_id,
LATERAL (SELECT CASE c.resolution WHEN 'source' THEN c.source_value WHEN 'base' THEN c.base_value
                                  WHEN 'custom' THEN c.resolved_value END AS v) x
WHERE c.resolution <> 'target'
UNION ALL
SELECT c.table_name, (p.row_value ->> 'other')::bigint, 'delete', NULL
FROM {t} c JOIN heliosdb._merge_plan p ON p.merge_id = %s AND p.conflict_id = c.conflict_id
WHERE c.resolution <> 'target' AND p.row_value ? 'other'""").format(t=table), (merge_id, merge_id))
        per_table = dict(conn.execute(sql.SQL("SELECT table_name, count(*) FROM {} GROUP BY 1").format(table)).fetchall())
        # a table whose conflicts all kept the target's rows has nothing to write, and is in the result still
        tables = {r[0] for r in conn.execute("SELECT DISTINCT table_name FROM _hdb_mplan")} | set(per_table)
        plans = [TablePlan(t) for t in sorted(tables)]
        for p in plans:
            p.applied = int(conn.execute("SELECT count(*) FROM _hdb_mplan WHERE table_name = %s", (p.table,)
                                         ).fetchone()[0])  # type: ignore[index]
        result_lsn = int(conn.execute("SELECT heliosdb.txn_lsn(%s)", (target.id,)).fetchone()[0])  # type: ignore[index]
        apply_all(conn, target, plans, progress=session.report_progress)
        run_after(session, target, after)
        for p in plans:
            p.resolved = int(per_table.get(p.table, 0))
        conn.execute("UPDATE heliosdb._merges SET state = 'completed', result_lsn = %s, target_lsn = %s "
                     "WHERE id = %s", (result_lsn, planned_head, merge_id))
        conn.execute("DELETE FROM heliosdb._merge_plan WHERE merge_id = %s", (merge_id,))
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
        audit(conn, target.name, f"COMPLETE MERGE {merge_id}", result_lsn, "ok")
        del source_id, source_lsn, base_s
    return _result(session, merge_id, "MANUAL", plans, result_lsn)


def abort_merge(session: Session, merge_id: int) -> Result:
    from heliosdb.branching.branches import audit
    from heliosdb.session import Result

    conn = session.conn
    with conn.transaction():
        _, _, target_id, *_ = _pending(session, merge_id)
        target = get_branch_by_id(conn, target_id)
        conn.execute("UPDATE heliosdb._merges SET state = 'aborted' WHERE id = %s", (merge_id,))
        conn.execute("DELETE FROM heliosdb._merge_plan WHERE merge_id = %s", (merge_id,))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(I(target.user_schema, conflicts_table(merge_id))))
        audit(conn, target.name, f"ABORT MERGE {merge_id}", None, "ok")
    return Result(status="ABORT MERGE")


__all__ = ["abort_merge", "complete_merge", "conflicts_table", "save_pending"]
