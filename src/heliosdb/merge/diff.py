"""Three-way diff of one table between two branches, from the version relations by LSN range.

changed_rows() finds the rows a branch changed after a point through the
history index (_hdb_end) and the branch-rows index (_hdb_lsn): O(changes).
build_diff() then reads, for those rows only, four states (each side at its
base point and at its head) as jsonb, into a temporary table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb.branching.layout import levels_to_root, state_sql
from heliosdb.catalog.model import Branch, Snapshot, TableInfo, TableVersion, chain
from heliosdb.sql.lsn import MAX_LSN

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741
L = sql.Literal


@dataclass
class Received:
    """The other branch's changes in (lo, hi] that this branch merged in last, at its commit `at`.

    Since then the other branch at hi is the state both hold, also for the rows this branch kept as they
    were (OURS) or never took: relative to it, this branch changed them.
    """

    lo: int
    hi: int
    at: int


@dataclass
class Side:
    """One branch of a merge: its base point, head, and the table as it sees it."""

    branch: Branch
    base: int
    head: int
    received: Received | None = None


def changed_rows(conn: psycopg.Connection[Any], side: Side, info: TableInfo) -> sql.Composable:
    """SELECT _hdb_rowid, last LSN of every row the side's view changed after its base."""
    parts: list[sql.Composable] = []
    for lv in levels_to_root(chain(conn, side.branch.id, side.head), info):
        if lv.upto <= side.base:
            continue
        b, lo, hi = L(lv.branch_id), L(side.base), L(lv.upto)
        # a version that ended in the range, or began in it and ended later (the level's branch changed
        # the row again after `hi`: an ancestor after the fork, or a side read up to an earlier point)
        parts.append(sql.SQL(
            "SELECT _hdb_rowid, CASE WHEN _hdb_end <= {hi} THEN _hdb_end ELSE _hdb_begin END AS l FROM {h} "
            "WHERE _hdb_branch = {b} AND _hdb_end > {lo} AND (_hdb_end <= {hi} OR (_hdb_begin > {lo} AND _hdb_begin <= {hi}))"
        ).format(h=I(*info.hist), b=b, lo=lo, hi=hi))
        if lv.branch_id != info.root_branch:
            parts.append(sql.SQL(
                "SELECT _hdb_rowid, _hdb_lsn FROM {br} WHERE _hdb_branch = {b} AND _hdb_lsn > {lo} AND _hdb_lsn <= {hi}"
            ).format(br=I(*info.br), b=b, lo=lo, hi=hi))
    if not parts:
        return sql.SQL("SELECT NULL::bigint AS _hdb_rowid, NULL::bigint AS l WHERE false")
    return sql.SQL("SELECT _hdb_rowid, max(l) AS l FROM ({}) c GROUP BY _hdb_rowid").format(
        sql.SQL(" UNION ALL ").join(parts))


def _state_json(conn: psycopg.Connection[Any], side: Side, point: int, info: TableInfo,
                version: TableVersion) -> sql.Composable:
    levels = chain(conn, side.branch.id, point)
    snap = Snapshot(conn, levels)
    if version.table_id not in snap.names:
        snap.names[version.table_id] = dict(conn.execute(
            "SELECT col_id, phys_name FROM heliosdb._columns WHERE table_id = %s", (version.table_id,)).fetchall())
    state = state_sql(snap, levels, info, version)
    return sql.SQL(
        "SELECT x._hdb_rowid, to_jsonb(x.*) - '_hdb_rowid' AS j FROM ({s}) x "
        # = ANY(ARRAY(...)) is pushed into every arm of the union, where it probes the row-id indexes
        "WHERE x._hdb_rowid = ANY(ARRAY(SELECT _hdb_rowid FROM _hdb_cand))"
    ).format(s=state)


def build_diff(
    conn: psycopg.Connection[Any], src: Side, tgt: Side,
    s_table: tuple[TableVersion, TableInfo], t_table: tuple[TableVersion, TableInfo] | None,
) -> int:
    """Fill temporary table _hdb_diff for one table; returns its number of rows."""
    sv, si = s_table
    conn.execute("DROP TABLE IF EXISTS _hdb_cand; DROP TABLE IF EXISTS _hdb_diff")
    parts = [sql.SQL("SELECT _hdb_rowid, l AS ls, NULL::bigint AS lt, false AS rs, false AS rt FROM ({}) s").format(
        changed_rows(conn, src, si))]
    if t_table is not None:
        parts.append(sql.SQL("SELECT _hdb_rowid, NULL, l, false, false FROM ({}) t").format(
            changed_rows(conn, tgt, t_table[1])))
        parts += _received_rows(conn, src, tgt, t_table[1], source_side=True)
        parts += _received_rows(conn, tgt, src, si, source_side=False)
    conn.execute(sql.SQL(
        "CREATE TEMP TABLE _hdb_cand ON COMMIT DROP AS SELECT _hdb_rowid, max(ls) AS ls, max(lt) AS lt, "
        "bool_or(rs) AS rs, bool_or(rt) AS rt FROM ({}) c GROUP BY _hdb_rowid"
    ).format(sql.SQL(" UNION ALL ").join(parts)))
    conn.execute("CREATE INDEX ON _hdb_cand (_hdb_rowid)")
    # real statistics, so the planner probes the row-id indexes instead of guessing (and JIT-compiling)
    conn.execute("ANALYZE _hdb_cand")
    empty = sql.SQL("SELECT NULL::bigint AS _hdb_rowid, NULL::jsonb AS j WHERE false")
    bs = _state_json(conn, src, src.base, si, sv)
    hs = _state_json(conn, src, src.head, si, sv)
    if t_table is not None:
        tv, ti = t_table
        bt = _state_json(conn, tgt, tgt.base, ti, tv)
        ht = _state_json(conn, tgt, tgt.head, ti, tv)
    else:
        bt = ht = empty
    cur = conn.execute(sql.SQL(
        """CREATE TEMP TABLE _hdb_diff ON COMMIT DROP AS
SELECT c._hdb_rowid AS rowid, CASE WHEN c.rs THEN bt.j ELSE bs.j END AS base_s, hs.j AS head_s,
       CASE WHEN c.rt THEN bs.j ELSE bt.j END AS base_t, ht.j AS head_t,
       cs.committed_at AS time_s, ct.committed_at AS time_t, c.ls IS NOT NULL AS s_touched
FROM _hdb_cand c
LEFT JOIN ({bs}) bs ON bs._hdb_rowid = c._hdb_rowid
LEFT JOIN ({hs}) hs ON hs._hdb_rowid = c._hdb_rowid
LEFT JOIN ({bt}) bt ON bt._hdb_rowid = c._hdb_rowid
LEFT JOIN ({ht}) ht ON ht._hdb_rowid = c._hdb_rowid
LEFT JOIN heliosdb._commits cs ON cs.lsn = c.ls
LEFT JOIN heliosdb._commits ct ON ct.lsn = c.lt"""
    ).format(bs=bs, hs=hs, bt=bt, ht=ht))
    return cur.rowcount


def _received_rows(conn: psycopg.Connection[Any], side: Side, other: Side, info: TableInfo, *,
                   source_side: bool) -> list[sql.Composable]:
    """The rows `side` last received from `other` (other's changes up to its base point), as candidates
    whose base on both sides is `other` at that point: side's later merge decisions are its changes."""
    r = side.received
    if r is None:
        return []
    rows = changed_rows(conn, Side(other.branch, r.lo, r.hi), info)
    shape = "SELECT _hdb_rowid, {at}, NULL, true, false FROM ({rows}) r" if source_side else \
        "SELECT _hdb_rowid, NULL, {at}, false, true FROM ({rows}) r"
    return [sql.SQL(shape).format(at=L(r.at), rows=rows)]


@dataclass
class TableDiff:
    table: str
    added: int
    changed: int
    deleted: int


def summarize(session: Session, a: str, b: str) -> list[TableDiff]:
    """Per table: rows added, changed and deleted on branch b relative to branch a (their heads)."""
    from heliosdb.catalog.model import get_branch
    from heliosdb.merge.engine import side_tables, sides

    conn = session.conn
    ba, bb = get_branch(conn, a), get_branch(conn, b)
    assert ba is not None and bb is not None
    out: list[TableDiff] = []
    with conn.transaction(force_rollback=True):
        src, tgt = sides(conn, bb, ba)
        a_tables = side_tables(conn, ba)
        for name, (v, info) in sorted(side_tables(conn, bb).items()):
            other = a_tables.get(name)
            build_diff(conn, src, tgt, (v, info), other)
            # compare heads: what b has that a does not
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE head_t IS NULL AND head_s IS NOT NULL), "
                "count(*) FILTER (WHERE head_t IS NOT NULL AND head_s IS NOT NULL AND head_t <> head_s), "
                "count(*) FILTER (WHERE head_t IS NOT NULL AND head_s IS NULL) FROM _hdb_diff"
            ).fetchone()
            assert row is not None
            if any(row):
                out.append(TableDiff(name, int(row[0]), int(row[1]), int(row[2])))
    return out


def diff_rows(session: Session, a: str, b: str, table: str) -> Any:
    """The rows of `table` that differ between the heads of a and b: change, then each side's row."""
    from heliosdb.catalog.model import get_branch
    from heliosdb.errors import UndefinedTable
    from heliosdb.merge.engine import side_tables, sides
    from heliosdb.session import Result, _Rows

    conn = session.conn
    ba, bb = get_branch(conn, a), get_branch(conn, b)
    assert ba is not None and bb is not None
    with conn.transaction(force_rollback=True):
        b_tables, a_tables = side_tables(conn, bb), side_tables(conn, ba)
        if table not in b_tables and table not in a_tables:
            raise UndefinedTable(f'relation "{table}" does not exist on "{a}" or "{b}"')
        src, tgt = sides(conn, bb, ba)
        if table in b_tables:
            build_diff(conn, src, tgt, b_tables[table], a_tables.get(table))
        else:  # only on a: everything there is "deleted" as seen from b
            build_diff(conn, tgt, src, a_tables[table], None)
            conn.execute("UPDATE _hdb_diff SET head_t = head_s, head_s = NULL")
        cur = conn.execute(
            """SELECT CASE WHEN head_t IS NULL THEN 'added' WHEN head_s IS NULL THEN 'deleted' ELSE 'changed' END
                          AS change, head_t::text AS in_a, head_s::text AS in_b
               FROM _hdb_diff WHERE head_t IS DISTINCT FROM head_s ORDER BY rowid"""
        )
        rows, desc = cur.fetchall(), cur.description
    return Result(status=f"SELECT {len(rows)}", cursor=_Rows(desc, rows), rowcount=len(rows))  # type: ignore[arg-type]


__all__ = ["diff_rows", "MAX_LSN", "Received", "Side", "TableDiff", "build_diff", "changed_rows", "summarize"]
