"""Materialized view definitions and their per-branch state, as the catalog holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from heliosdb.catalog.model import Level
from heliosdb.mv.compile import Plan
from heliosdb.mv.options import with_defaults


@dataclass
class MView:
    id: int
    name: str
    branch_id: int  # where it was created
    valid_from: int
    query: str
    options: dict[str, Any]
    plan: Plan

    def storage(self, branch_id: int) -> str:
        return f'"hdb_b{branch_id}"."mv{self.id}"'

    def hist(self, branch_id: int) -> str:
        return f'"hdb_b{branch_id}"."mv{self.id}__hist"'


@dataclass
class MVState:
    mv_id: int
    branch_id: int
    options: dict[str, Any]
    refreshed_lsn: int | None
    history_from: int | None
    status: str
    failures: int


def _mview(row: tuple[Any, ...]) -> MView:
    mid, name, bid, valid_from, query, options, plan = row
    return MView(mid, name, bid, valid_from, query, with_defaults(options), Plan.from_json(plan))


_COLS = "m.id, m.name, m.branch_id, m.valid_from, m.query, m.options, m.plan"


def visible(conn: psycopg.Connection[Any], levels: list[Level]) -> dict[str, MView]:
    """Views (by name) the first level sees: defined on a level before its cut, not dropped since."""
    if not levels:
        return {}
    rows = conn.execute(
        f"SELECT {_COLS} FROM heliosdb._mv_visible(%s) v JOIN heliosdb._mviews m ON m.id = v.mv_id",
        (levels[0].branch_id,),
    ).fetchall()
    return {r[1]: _mview(r) for r in rows}


def named(conn: psycopg.Connection[Any], branch_id: int, name: str) -> MView | None:
    """The view called `name` on the branch, with the branch's options (None: there is none)."""
    row = conn.execute(
        f"""SELECT {_COLS}, s.options FROM heliosdb._mv_visible(%s) v JOIN heliosdb._mviews m ON m.id = v.mv_id
            LEFT JOIN heliosdb._mv_state s ON s.mv_id = m.id AND s.branch_id = %s WHERE v.name = %s""",
        (branch_id, branch_id, name),
    ).fetchone()
    if row is None:
        return None
    mv = _mview(row[:7])
    if row[7] is not None:
        mv.options = with_defaults(row[7])
    return mv


def by_id(conn: psycopg.Connection[Any], mv_id: int) -> MView:
    row = conn.execute(f"SELECT {_COLS} FROM heliosdb._mviews m WHERE m.id = %s", (mv_id,)).fetchone()
    assert row is not None, f"materialized view {mv_id} missing from the catalog"
    return _mview(row)


def state(conn: psycopg.Connection[Any], mv_id: int, branch_id: int, *, lock: bool = False) -> MVState | None:
    row = conn.execute(
        "SELECT mv_id, branch_id, options, refreshed_lsn, history_from, status, failures "
        "FROM heliosdb._mv_state WHERE mv_id = %s AND branch_id = %s" + (" FOR UPDATE" if lock else ""),
        (mv_id, branch_id),
    ).fetchone()
    if row is None:
        return None
    mid, bid, options, refreshed, hist_from, status, failures = row
    return MVState(mid, bid, with_defaults(options), refreshed, hist_from, status, failures)


def dependents(conn: psycopg.Connection[Any], mv_id: int) -> list[int]:
    """Views that read this one, directly or through others (nearest first)."""
    rows = conn.execute(
        """WITH RECURSIVE down(id, depth) AS (
               SELECT mv_id, 1 FROM heliosdb._mv_deps WHERE kind = 'mv' AND dep_id = %s
               UNION
               SELECT d.mv_id, down.depth + 1 FROM heliosdb._mv_deps d JOIN down ON d.kind = 'mv' AND d.dep_id = down.id)
           SELECT id FROM down GROUP BY id ORDER BY max(depth)""",
        (mv_id,),
    ).fetchall()
    return [r[0] for r in rows]
