"""VERSIONS BETWEEN (Oracle) and FOR SYSTEM_TIME ranges (SQL:2011): every row version in a range.

One row per version of a row that was visible on the branch at some point of
the range; VERSIONS BETWEEN adds Oracle's one 'D' row per delete inside it
(showing the row as it was before), FOR SYSTEM_TIME does not (SQL:2011, SQL
Server). Pseudo-columns follow Oracle: VERSIONS_START* is NULL when the
version began before the range, VERSIONS_END* is NULL while it is current.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching.layout import levels_to_root, select_list
from heliosdb.catalog.model import Branch, Snapshot, chain
from heliosdb.sql.lsn import MAX_LSN, parse_lsn
from heliosdb.sql.temporal import Range
from heliosdb.temporal import resolver

I = sql.Identifier  # noqa: E741
L = sql.Literal



def _infinite(value: str) -> int | None:
    """'-infinity' / 'infinity' as a timestamp bound: before / after every commit."""
    word = value.strip().strip("'").lower()
    if word not in ("infinity", "+infinity", "-infinity"):
        return None
    return -1 if word.startswith("-") else MAX_LSN


def _bound(conn: psycopg.Connection[Any], branch: Branch, kind: str, value: str | None, *, low: bool,
           shift: str = "") -> int:
    if value is None:
        return -1 if low else MAX_LSN
    if kind == "LSN":
        return parse_lsn(value)
    if kind == "TIMESTAMP" and (edge := _infinite(value)) is not None:
        return edge
    if shift:
        resolver.eval_timestamp(conn, value)  # a bad bound's error names the bound as written
        value = f"({value})::timestamptz {shift}"
    # a bound after the head reads up to it, for every kind (LSN bounds are not checked either); a lower
    # bound before the branch's history starts before every commit; a malformed bound is an error as for AS OF
    return resolver.resolve_point(conn, branch, kind, value, future_ok=True, before_ok=low)


def _first_inside(conn: psycopg.Connection[Any], branch: Branch, kind: str, value: str | None) -> int:
    """The first LSN at or after the lower bound: a change committed exactly at the bound is inside
    the range (Oracle), one before it is not. For SCN and TIMESTAMP bounds that is one past the last
    commit strictly before the point, whether or not a commit is exactly at it."""
    if value is None:
        return 0
    if kind == "LSN":
        return parse_lsn(value)
    if kind == "TIMESTAMP" and (edge := _infinite(value)) is not None:
        return 0 if edge < 0 else edge
    if kind == "SCN":
        before = str(resolver.parse_scn(value) - 1)
    else:
        before = f"({value})::timestamptz - interval '1 microsecond'"
    return _bound(conn, branch, kind, before, low=True) + 1


def versions_subquery(conn: psycopg.Connection[Any], branch: Branch, name: str, rng: Range, *,
                      pseudo: bool) -> tuple[sql.Composable, list[str]]:
    """The subquery of the range's versions, and the table's columns (the pseudo-columns follow them)."""
    head = resolver.head_lsn(conn, branch)
    contained = rng.mode == "CONTAINED"
    if rng.mode == "ALL" or rng.low is None:
        # MINVALUE and ALL start at the oldest retained point, as a bound there would: what the
        # collector kept for descendants' fork points before it is not in the range
        low = first = resolver.retained_lsn(conn, branch)
    else:
        low = _bound(conn, branch, rng.kind, rng.low, low=True)
        first = _first_inside(conn, branch, rng.kind, rng.low)
        resolver.check_retained(conn, branch, max(low, 0))
    if rng.mode == "ALL":
        high = head
    else:
        high = _bound(conn, branch, rng.kind, rng.high, low=False,
                      shift="- interval '1 microsecond'" if rng.mode == "FROM" else "")
        high = min(high, head)
    levels = chain(conn, branch.id, head)
    snap = Snapshot(conn, levels)
    version = next((v for v in snap.tables.values() if v.name == name), None)
    if version is None:
        from heliosdb.temporal.rewrite import refuse_non_table

        refuse_non_table(conn, branch, name)
        raise errors.UndefinedTable(f'relation "{name}" does not exist')
    info = snap.info[version.table_id]
    names = snap.names[info.id]
    levels = levels_to_root(levels, info)
    parts: list[sql.Composable] = []
    for i, lv in enumerate(levels):
        v = snap.visible(levels[i:]).get(info.id)
        present = {c.col for c in v.columns} if v else set()
        if i == 0:
            present = {c.col for c in version.columns}
        cols = select_list(version, present, names, "r")
        b = L(lv.branch_id)
        if lv.branch_id == info.root_branch:
            own = sql.SQL(
                "SELECT {c}, r._hdb_lsn AS _b, {m}::bigint AS _e, false AS _d FROM {t} r "
                "UNION ALL SELECT {c}, r._hdb_begin, r._hdb_end, r._hdb_del FROM {h} r WHERE r._hdb_branch = {b}"
            ).format(c=cols, m=L(MAX_LSN), t=I(*info.cur), h=I(*info.hist), b=b)
        else:
            own = sql.SQL(
                "SELECT {c}, r._hdb_lsn AS _b, {m}::bigint AS _e, r._hdb_del AS _d FROM {br} r WHERE r._hdb_branch = {b} "
                "UNION ALL SELECT {c}, r._hdb_begin, r._hdb_end, r._hdb_del FROM {h} r WHERE r._hdb_branch = {b}"
            ).format(c=cols, m=L(MAX_LSN), br=I(*info.br), h=I(*info.hist), b=b)
        parts.append(sql.SQL("SELECT {lvl} AS _lvl, o.* FROM ({own}) o WHERE o._b <= {u}").format(
            lvl=L(i), own=own, u=L(lv.upto)))
    user_cols = [I(c.name) for c in version.columns]
    vcols = sql.SQL(", ").join(sql.SQL("v.{}").format(c) for c in user_cols)
    uptos = sql.SQL(", ").join(sql.SQL("({}, {})").format(L(i), L(lv.upto)) for i, lv in enumerate(levels))
    query = sql.SQL(
        """WITH raw AS ({parts}),
uptos(_lvl, _upto) AS (VALUES {uptos}),
firsts AS (SELECT a._lvl, a._hdb_rowid, (SELECT min(x._b) FROM raw x WHERE x._hdb_rowid = a._hdb_rowid
                                           AND x._lvl < a._lvl) AS _fw
           FROM (SELECT DISTINCT _lvl, _hdb_rowid FROM raw WHERE _lvl > 0) a),
vers AS (
    SELECT r._hdb_rowid, {rcols}, r._b,
           CASE WHEN r._lvl = 0 OR r._e <= u._upto THEN r._e ELSE coalesce(f._fw, {m}) END AS _e, r._d
    FROM raw r JOIN uptos u ON u._lvl = r._lvl
    LEFT JOIN firsts f ON f._lvl = r._lvl AND f._hdb_rowid = r._hdb_rowid
    WHERE r._lvl = 0 OR f._fw IS NULL OR r._b < f._fw),
rows AS (
    SELECT {vcols}, v._b, v._e,
           CASE WHEN EXISTS (SELECT 1 FROM vers p WHERE p._hdb_rowid = v._hdb_rowid AND p._e = v._b AND NOT p._d)
                THEN 'U' ELSE 'I' END AS _op
    FROM vers v WHERE NOT v._d{deletes})
SELECT {ucols}{pseudo} FROM rows x
LEFT JOIN heliosdb._commits cs ON cs.lsn = x._b
LEFT JOIN heliosdb._commits ce ON ce.lsn = x._e
WHERE {filter}"""
    ).format(
        parts=sql.SQL(" UNION ALL ").join(parts), uptos=uptos, m=L(MAX_LSN),
        rcols=sql.SQL(", ").join(sql.SQL("r.{}").format(c) for c in user_cols), vcols=vcols,
        ucols=sql.SQL(", ").join(sql.SQL("x.{}").format(c) for c in user_cols),
        pseudo=_pseudo(first) if pseudo else sql.SQL(""),
        deletes=sql.SQL("") if rng.system_time else _DELETES.format(vcols=vcols, m=L(MAX_LSN)),
        filter=_filter(low, first, high, contained),
    )
    return sql.SQL("({})").format(query), [c.name for c in version.columns]


# Oracle's 'D' rows (VERSIONS BETWEEN only): the row as it was before each delete, from the delete on
_DELETES = sql.SQL("""
    UNION ALL
    SELECT {vcols}, v._e, {m}, 'D'
    FROM vers v WHERE NOT v._d AND v._e < {m}
      AND NOT EXISTS (SELECT 1 FROM vers n WHERE n._hdb_rowid = v._hdb_rowid AND n._b = v._e AND NOT n._d)""")


def _pseudo(first: int) -> sql.Composable:
    """first: the first LSN inside the range. Versions that began earlier show NULL starts, and (as in
    Oracle) NULL VERSIONS_XID and VERSIONS_OPERATION: the change that made them is outside the range,
    possibly pruned (the garbage collector keeps what a retained lower bound reads, no more)."""
    lo, m = L(first), L(MAX_LSN)
    return sql.SQL(
        """,
    CASE WHEN x._b < {lo} THEN NULL ELSE cs.scn END AS versions_startscn,
    CASE WHEN x._e = {m} THEN NULL ELSE ce.scn END AS versions_endscn,
    CASE WHEN x._b < {lo} THEN NULL ELSE cs.committed_at END AS versions_starttime,
    CASE WHEN x._e = {m} THEN NULL ELSE ce.committed_at END AS versions_endtime,
    CASE WHEN x._b < {lo} THEN NULL ELSE heliosdb.format_lsn(x._b) END AS versions_startlsn,
    CASE WHEN x._e = {m} THEN NULL ELSE heliosdb.format_lsn(x._e) END AS versions_endlsn,
    CASE WHEN x._b < {lo} THEN NULL ELSE cs.txid END AS versions_xid,
    CASE WHEN x._b < {lo} THEN NULL ELSE x._op END AS versions_operation"""
    ).format(lo=lo, m=m)


def _filter(low: int, first: int, high: int, contained: bool) -> sql.Composable:
    """low: the state at the lower bound (versions visible there or later are in the range);
    first: the first LSN inside the range (deletes from there on get their D row)."""
    lo, fi, hi, m = L(low), L(first), L(high), L(MAX_LSN)
    if low > high:  # a reversed range (BETWEEN LSN 0/5 AND 0/2) holds no version
        return sql.SQL("false")
    if contained:
        return sql.SQL("x._op <> 'D' AND x._b >= {fi} AND x._e <= {hi}").format(fi=fi, hi=hi)
    return sql.SQL(
        "x._b <= {hi} AND (CASE WHEN x._op = 'D' THEN x._b >= {fi} ELSE x._e > {lo} OR x._e = {m} END)"
    ).format(lo=lo, fi=fi, hi=hi, m=m)


__all__ = ["versions_subquery"]
