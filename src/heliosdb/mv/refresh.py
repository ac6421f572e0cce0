"""Refreshing a view on a branch: full recomputation, or incremental from the version relations.

Every refresh brings the view to a point h of its branch (an LSN): the
contents then equal the defining query over the branch's data as of h. The
incremental path reads, for each source, the rows changed in (p, h] (p: the
last refresh) from the version relations, their old states at p and new
states at h (index probes on the row id), and applies the difference:

- spj: storage rows that came from a changed base row are deleted, and the
  query's rows over the changed base rows (new states) are inserted;
- agg: the changed rows' old contributions are subtracted from their groups
  and the new ones added; a group that loses its MIN/MAX value is recomputed
  from the base (that group only), a group left with no rows is deleted.

With several sources, the changed rows of source i are joined with the other
sources' rows, excluding the changed rows of sources before i, so each result
row is counted once (the usual delta-join expansion).

Storage keeps its own history (``__hist``, closed versions with [begin, end)
in base LSNs), so a view over this view gets its deltas the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from heliosdb import errors
from heliosdb.branching.layout import select_list, state_sql
from heliosdb.catalog.model import MAX_LSN, Branch, Snapshot, TableInfo, TableVersion, chain, phys_names
from heliosdb.merge.diff import Side, changed_rows
from heliosdb.mv import catalog as mvcat
from heliosdb.mv.catalog import MView
from heliosdb.mv.compile import Plan, source_slot
from heliosdb.mv.options import with_defaults
from heliosdb.sql.names import quote_qualified

# Stand-ins for the two points in the SQL of immediate maintenance, replaced by $1 / $2:
# above every real LSN, so ancestors are cut at their fork points as for any real p >= fork.
P_SENTINEL = 9_000_000_000_000_000_001
H_SENTINEL = 9_000_000_000_000_000_002
FULL_FRACTION = 0.25  # a delta touching more than this share of the base is refreshed in full


@dataclass
class Outcome:
    mode: str  # incremental | full | none
    reason: str
    rows: int
    ms: float
    lsn: int


def head_of(conn: psycopg.Connection[Any], branch: Branch) -> int:
    row = conn.execute(
        "SELECT coalesce(heliosdb.held_lsn(id), head_lsn) FROM heliosdb._branches WHERE id = %s", (branch.id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- source states -------------------------------------------------------------
class Sources:
    """The states of a view's sources on one branch, at the points a refresh needs."""

    def __init__(self, conn: psycopg.Connection[Any], branch: Branch, mv: MView) -> None:
        self.conn, self.branch, self.mv, self.plan = conn, branch, mv, mv.plan
        self._snaps: dict[int, tuple[list[Any], Snapshot]] = {}
        self._up: dict[int, MView] = {}

    def _snap(self, point: int) -> tuple[list[Any], Snapshot]:
        if point not in self._snaps:
            levels = chain(self.conn, self.branch.id, point)
            self._snaps[point] = (levels, Snapshot(self.conn, levels))
        return self._snaps[point]

    def table(self, tid: int, point: int) -> tuple[TableVersion, TableInfo]:
        _, snap = self._snap(point)
        if tid not in snap.tables:
            src = next(s for s in self.plan.sources if s.kind == "table" and s.id == tid) if self.plan.sources else None
            name = src.name if src else str(tid)
            raise errors.lookup("42P01")(
                f'relation "{name}" read by materialized view "{self.mv.name}" does not exist',
                hint="Drop the view, or create the table again.", sqlstate="42P01")
        return snap.tables[tid], snap.info[tid]

    def _names(self, snap: Snapshot, table_id: int) -> dict[int, str]:
        """Physical column names of the table (a snapshot at an earlier point may not have loaded them)."""
        if table_id not in snap.names:
            snap.names[table_id] = phys_names(self.conn, table_id)
        return snap.names[table_id]

    def upstream(self, mv_id: int) -> MView:
        if mv_id not in self._up:
            self._up[mv_id] = mvcat.by_id(self.conn, mv_id)
        return self._up[mv_id]

    def state(self, i: int, point: int, restrict: str | None = None) -> str:
        """SELECT _hdb_rowid, columns... of source i at `point`; restrict 'in'/'out': only (not) changed rows."""
        src = self.plan.sources[i]
        if src.kind == "table":
            version, info = self.table(src.id, MAX_LSN if point in (H_SENTINEL, P_SENTINEL) else point)
            levels, snap = self._snap(point)
            self._names(snap, version.table_id)
            body = state_sql(snap, levels, info, version).as_string(self.conn)
        else:
            up = self.upstream(src.id)
            exprs = ", ".join(up.plan.view_exprs("s"))
            body = f"SELECT s._hdb_rowid, {exprs} FROM ({storage_at(up, self.branch.id, point)}) s"
        if restrict is None:
            return body
        op = "= ANY" if restrict == "in" else "<> ALL"
        # = ANY(ARRAY(...)) reaches every arm of the state's union as an index probe on the row id
        return f"SELECT * FROM ({body}) x WHERE x._hdb_rowid {op}(ARRAY(SELECT _hdb_rowid FROM _hdb_c{i}))"

    def own_table(self, i: int) -> tuple[TableVersion, TableInfo] | None:
        """Source i's table when it was created on this branch (its rows and history are all the branch's own)."""
        src = self.plan.sources[i]
        if src.kind != "table":
            return None
        version, info = self.table(src.id, MAX_LSN)
        return (version, info) if info.root_branch == self.branch.id else None

    def delta(self, i: int, which: str, p: int, h: int) -> str:
        """The changed rows of source i (changed in (p, h]) as they were at p ('old') or are at h ('new').

        For a table created on this branch both come from range scans by LSN
        (the history's end index), without a probe per row; otherwise from the
        states at p and h restricted to the changed row ids.
        """
        own = self.own_table(i)
        if own is None:
            return self.state(i, p if which == "old" else h, "in")
        version, info = own
        _, snap = self._snap(MAX_LSN)
        names = self._names(snap, version.table_id)
        present = {c.col for c in version.columns}
        cols = select_list(version, present, names, "r").as_string(self.conn)
        cur, hist, b = quote_qualified(*info.cur), quote_qualified(*info.hist), self.branch.id
        if which == "old":  # the version valid at p of every row that changed in (p, h]
            return (f"SELECT {cols} FROM {hist} r WHERE r._hdb_branch = {b} AND r._hdb_end > {p} "
                    f"AND r._hdb_end <= {h} AND r._hdb_begin <= {p} AND NOT r._hdb_del")
        # the version valid at h of those rows: current ones written in (p, h] (the _hdb_lsn index that
        # storage.create() adds: the new versions of one statement lie together, unlike their row ids),
        # or, changed again after h, closed later
        return (f"SELECT {cols} FROM {cur} r WHERE r._hdb_lsn > {p} AND r._hdb_lsn <= {h} "
                f"UNION ALL SELECT {cols} FROM {hist} r WHERE r._hdb_branch = {b} AND r._hdb_end > {h} "
                f"AND r._hdb_begin > {p} AND r._hdb_begin <= {h} AND NOT r._hdb_del")

    def changed(self, i: int, p: int, h: int) -> str:
        """SELECT _hdb_rowid of the rows of source i changed in (p, h]."""
        src = self.plan.sources[i]
        own = self.own_table(i)
        if own is not None:  # every change leaves a history row ending at its LSN (inserts: a marker)
            return (f"SELECT _hdb_rowid FROM {quote_qualified(*own[1].hist)} WHERE _hdb_branch = {self.branch.id} "
                    f"AND _hdb_end > {p} AND _hdb_end <= {h}")
        if src.kind == "table":
            _, info = self.table(src.id, MAX_LSN if h == H_SENTINEL else h)
            side = Side(self.branch, p, h)
            return "SELECT _hdb_rowid FROM (" + changed_rows(self.conn, side, info).as_string(self.conn) + ") c"
        up = self.upstream(src.id)
        return changed_in_storage(up, self.branch.id, p, h)


def storage_at(mv: MView, branch_id: int, point: int, *, with_lsn: bool = False) -> str:
    """The view's storage rows (all storage columns) as of a base point; with_lsn: each version's _hdb_lsn first."""
    cols = ", ".join(["_hdb_rowid", *mv.plan.storage_columns()])
    cur, old = ("_hdb_lsn, ", "_hdb_begin, ") if with_lsn else ("", "")
    return (f"SELECT {cur}{cols} FROM {mv.storage(branch_id)} WHERE _hdb_lsn <= {point} "
            f"UNION ALL SELECT {old}{cols} FROM {mv.hist(branch_id)} "
            f"WHERE _hdb_begin <= {point} AND _hdb_end > {point}")


def changed_in_storage(mv: MView, branch_id: int, p: int, h: int) -> str:
    return (f"SELECT _hdb_rowid FROM {mv.storage(branch_id)} WHERE _hdb_lsn > {p} AND _hdb_lsn <= {h} "
            f"UNION SELECT _hdb_rowid FROM {mv.hist(branch_id)} WHERE _hdb_end > {p} AND _hdb_end <= {h}")


def _instantiate(plan: Plan, states: list[str]) -> str:
    text = plan.from_sql
    for i, st in enumerate(states):
        text = text.replace(source_slot(i), f"({st})", 1)
    return text


def _where(plan: Plan, extra: str | None = None) -> str:
    conds = [c for c in (plan.where_sql, extra) if c]
    return (" WHERE " + " AND ".join(f"({c})" for c in conds)) if conds else ""


def _delta_arms(src: Sources, which: str, p: int, h: int, items: str) -> list[str]:
    """Rows of the query (as `items`) at p ('old') or h ('new') that involve a changed source row, each once."""
    n = len(src.plan.sources)
    point = p if which == "old" else h
    arms = []
    for i in range(n):
        states = [src.state(j, point, "out") if j < i else src.delta(j, which, p, h) if j == i
                  else src.state(j, point) for j in range(n)]
        arms.append(f"SELECT {items} {_instantiate(src.plan, states)}{_where(src.plan)}")
    return arms


def _cands(src: Sources, p: int, h: int) -> str:
    return ", ".join(f"_hdb_c{i} AS MATERIALIZED ({src.changed(i, p, h)})" for i in range(len(src.plan.sources)))


# -- SQL of one refresh ------------------------------------------------------------
def incremental_sql(src: Sources, p: int, h: int) -> str:
    plan, mv, b = src.plan, src.mv, src.branch.id
    store, hist = mv.storage(b), mv.hist(b)
    cols = plan.storage_columns()
    col_list = ", ".join(cols)
    head = f"WITH {_cands(src, p, h)}"
    if plan.mode == "spj":
        items = ", ".join(plan.storage_exprs())
        hit = " OR ".join(f"_hdb_src{i} = ANY(ARRAY(SELECT _hdb_rowid FROM _hdb_c{i}))"
                          for i in range(len(plan.sources)))
        new_rows = " UNION ALL ".join(_delta_arms(src, "new", p, h, items))
        return f"""{head},
_hdb_arch AS (INSERT INTO {hist} (_hdb_rowid, _hdb_begin, _hdb_end, {col_list})
    SELECT _hdb_rowid, _hdb_lsn, {h}, {col_list} FROM {store} WHERE {hit} RETURNING 1),
_hdb_del AS (DELETE FROM {store} WHERE {hit} RETURNING 1),
_hdb_ins AS (INSERT INTO {store} (_hdb_rowid, _hdb_lsn, {col_list})
    SELECT nextval('heliosdb.mv_rowid_seq'), {h}, n.* FROM ({new_rows}) n RETURNING 1)
SELECT (SELECT count(*) FROM _hdb_del) + (SELECT count(*) FROM _hdb_ins)"""
    # agg: d holds each affected base row once with its sign, its group keys and aggregate arguments
    keys = [f"{g} AS _hdb_g{k}" for k, g in enumerate(plan.groups)]
    args = [f"{a.arg} AS _hdb_x{k}" for k, a in enumerate(plan.aggs) if a.arg is not None]
    items = ", ".join(keys + args)
    old = _delta_arms(src, "old", p, h, items or "1 AS _hdb_one")
    new = _delta_arms(src, "new", p, h, items or "1 AS _hdb_one")
    arms = [f"SELECT -1 AS _hdb_sign, x.* FROM ({a}) x" for a in old] + [
        f"SELECT 1 AS _hdb_sign, x.* FROM ({a}) x" for a in new]
    gk = [f"_hdb_g{k}" for k in range(len(plan.groups))]
    g_items = list(gk) + ["coalesce(sum(_hdb_sign), 0) AS _hdb_dcnt"]
    new_full = [src.state(j, h) for j in range(len(plan.sources))]
    scaled = _scale_varies(src, new_full)
    for k, a in enumerate(plan.aggs):
        if a.arg is None:
            continue
        x = f"_hdb_x{k}"
        g_items.append(f"count({x}) FILTER (WHERE _hdb_sign > 0) - count({x}) FILTER (WHERE _hdb_sign < 0) AS _hdb_dn{k}")
        if a.func in ("sum", "avg"):
            g_items += [f"sum({x}) FILTER (WHERE _hdb_sign > 0) AS _hdb_sp{k}",
                        f"sum({x}) FILTER (WHERE _hdb_sign < 0) AS _hdb_sm{k}"]
        if k in scaled:  # the largest scales added and taken away
            g_items += [f"max(scale({x})) FILTER (WHERE _hdb_sign > 0) AS _hdb_scp{k}",
                        f"max(scale({x})) FILTER (WHERE _hdb_sign < 0) AS _hdb_scm{k}"]
        elif a.func in ("min", "max"):
            g_items += [f"{a.func}({x}) FILTER (WHERE _hdb_sign > 0) AS _hdb_ep{k}",
                        f"{a.func}({x}) FILTER (WHERE _hdb_sign < 0) AS _hdb_em{k}"]
    group_by = (" GROUP BY " + ", ".join(gk)) if gk else " HAVING count(*) > 0"
    if gk:
        eq = " AND ".join(f"s1.{k} = g.{k}" for k in gk)
        any_null = " OR ".join(f"g.{k} IS NULL" for k in gk)
        nd = " AND ".join(f"s2.{k} IS NOT DISTINCT FROM g.{k}" for k in gk)
        match = (f"SELECT g.*, coalesce(s1._hdb_rowid, s2._hdb_rowid) AS _hdb_sid FROM _hdb_g g "
                 f"LEFT JOIN {store} s1 ON {eq} "
                 f"LEFT JOIN LATERAL (SELECT s2._hdb_rowid FROM {store} s2 WHERE ({any_null}) AND {nd} LIMIT 1) s2 ON true")
    else:
        match = f"SELECT g.*, s1._hdb_rowid AS _hdb_sid FROM _hdb_g g LEFT JOIN {store} s1 ON true"
    # _hdb_mr, _hdb_sr: names the user's FROM clause (in the MIN/MAX recompute) cannot shadow
    n_items = (["_hdb_mr._hdb_sid"] + [f"_hdb_mr.{k}" for k in gk]
               + ["coalesce(_hdb_sr._hdb_cnt, 0) + _hdb_mr._hdb_dcnt AS _hdb_cnt"])
    floats = {k for j, (kind, k) in enumerate(plan.outputs)
              if kind == "agg" and plan.columns[j]["type"] in ("double precision", "real")}
    for k, a in enumerate(plan.aggs):
        if a.arg is None:
            continue
        nn = f"(coalesce(_hdb_sr._hdb_n{k}, 0) + _hdb_mr._hdb_dn{k})"
        if a.func == "count":
            n_items.append(f"{nn} AS _hdb_n{k}")
        elif a.func in ("sum", "avg"):
            # '0' untyped: it takes the sum's type (interval and money have no integer 0). A NaN or an
            # infinity never leaves a running sum (x - x is then not 0): a group that held one, or loses
            # one, is summed again from the base (that group only).
            running = (f"coalesce(_hdb_sr._hdb_s{k}, '0') + coalesce(_hdb_mr._hdb_sp{k}, '0') "
                       f"- coalesce(_hdb_mr._hdb_sm{k}, '0')")
            odd = (f"coalesce((_hdb_sr._hdb_s{k} - _hdb_sr._hdb_s{k}) <> '0', false) "
                   f"OR coalesce((_hdb_mr._hdb_sm{k} - _hdb_mr._hdb_sm{k}) <> '0', false)")
            if k in floats:  # what it takes away dwarfs what is left: the rounding would be all there is
                odd += f" OR abs(coalesce(_hdb_mr._hdb_sm{k}, 0)) > 1e6 * abs({running})"
            if k in scaled:
                odd += f" OR {_scale_drops(plan, new_full, k, a.arg)}"
            n_items.append(f"CASE WHEN {nn} = 0 THEN NULL WHEN {odd} THEN {_group_again(plan, new_full, 'sum', a.arg)} "
                           f"ELSE {running} END AS _hdb_s{k}")
            n_items.append(f"{nn} AS _hdb_n{k}")
        else:
            worse = "<=" if a.func == "min" else ">="
            best = "least" if a.func == "min" else "greatest"
            recompute = _group_again(plan, new_full, a.func, a.arg)
            n_items.append(
                f"CASE WHEN {nn} = 0 THEN NULL "
                f"WHEN _hdb_mr._hdb_em{k} IS NOT NULL AND _hdb_sr._hdb_m{k} IS NOT NULL "
                f"AND _hdb_mr._hdb_em{k} {worse} _hdb_sr._hdb_m{k} "
                f"THEN {recompute} ELSE {best}(_hdb_sr._hdb_m{k}, _hdb_mr._hdb_ep{k}) END AS _hdb_m{k}")
            n_items.append(f"{nn} AS _hdb_n{k}")
    keep = "true" if plan.scalar else "n._hdb_cnt > 0"
    sets = ", ".join(f"{c} = n.{c}" for c in cols)
    return f"""{head},
_hdb_d AS ({' UNION ALL '.join(arms)}),
_hdb_g AS (SELECT {', '.join(g_items)} FROM _hdb_d{group_by}),
_hdb_m AS ({match}),
_hdb_n AS (SELECT {', '.join(n_items)} FROM _hdb_m _hdb_mr LEFT JOIN {store} _hdb_sr
    ON _hdb_sr._hdb_rowid = _hdb_mr._hdb_sid),
_hdb_arch AS (INSERT INTO {hist} (_hdb_rowid, _hdb_begin, _hdb_end, {col_list})
    SELECT s._hdb_rowid, s._hdb_lsn, {h}, {', '.join('s.' + c for c in cols)}
    FROM {store} s JOIN _hdb_n n ON s._hdb_rowid = n._hdb_sid RETURNING 1),
_hdb_upd AS (UPDATE {store} s SET _hdb_lsn = {h}, {sets} FROM _hdb_n n
    WHERE s._hdb_rowid = n._hdb_sid AND {keep} RETURNING 1),
_hdb_del AS (DELETE FROM {store} s USING _hdb_n n WHERE s._hdb_rowid = n._hdb_sid AND NOT ({keep}) RETURNING 1),
_hdb_ins AS (INSERT INTO {store} (_hdb_rowid, _hdb_lsn, {col_list})
    SELECT nextval('heliosdb.mv_rowid_seq'), {h}, {', '.join('n.' + c for c in cols)} FROM _hdb_n n
    WHERE n._hdb_sid IS NULL AND n._hdb_cnt > 0 RETURNING 1)
SELECT (SELECT count(*) FROM _hdb_upd) + (SELECT count(*) FROM _hdb_del) + (SELECT count(*) FROM _hdb_ins)"""


def _group_again(plan: Plan, states: list[str], func: str, arg: str | None) -> str:
    """A scalar subquery: the aggregate of the current group (_hdb_mr's keys) computed from the base."""
    return f"(SELECT {func}({arg}) {_in_group(plan, states)})"


def _in_group(plan: Plan, states: list[str], extra: str | None = None) -> str:
    """FROM ... WHERE of the base rows in the current group (_hdb_mr's keys) [that also meet `extra`]."""
    same = [f"({g}) IS NOT DISTINCT FROM _hdb_mr._hdb_g{i}" for i, g in enumerate(plan.groups)]
    cond = " AND ".join(same + ([f"({extra})"] if extra else []))
    return f"{_instantiate(plan, states)}{_where(plan, cond or None)}"


NUMERIC_OID = 1700


def _scale_varies(src: Sources, states: list[str]) -> set[int]:
    """The SUM/AVG arguments (by aggregate) that are numeric without a declared scale.

    PostgreSQL shows a numeric sum with the largest scale among the values summed
    (1.5 + 2.125 = 3.625; 1.5 alone: 1.5), so taking a value away may lower it,
    which a running sum does not (3.625 - 2.125 = 1.500). With a declared scale
    (numeric(10,2)) every value has that scale.
    """
    plan = src.plan
    ks = [k for k, a in enumerate(plan.aggs) if a.func in ("sum", "avg")]
    if not ks:
        return set()
    items = ", ".join(str(plan.aggs[k].arg) for k in ks)
    cur = src.conn.execute(f"SELECT {items} {_instantiate(plan, states)}{_where(plan)} LIMIT 0")  # type: ignore[arg-type]
    assert cur.description is not None
    return {k for k, col in zip(ks, cur.description, strict=True) if col.type_code == NUMERIC_OID and col.scale is None}


def _scale_drops(plan: Plan, states: list[str], k: int, arg: str | None) -> str:
    """Whether the running sum k keeps a scale no value left in its group has: then it is summed again.

    Only when the delta took away a value of the running sum's scale and added
    none: a probe for a remaining value of that scale (usually the group's first
    row) decides.
    """
    sc = f"scale(_hdb_sr._hdb_s{k})"
    return (f"({sc} > 0 AND _hdb_mr._hdb_scm{k} >= {sc} AND coalesce(_hdb_mr._hdb_scp{k}, -1) < {sc} "
            f"AND NOT EXISTS (SELECT 1 {_in_group(plan, states, f'scale({arg}) >= {sc}')}))")


def full_select(src: Sources, h: int) -> str:
    """The storage rows of the view as of h (without _hdb_rowid / _hdb_lsn)."""
    plan = src.plan
    if plan.mode == "full":
        return f"SELECT * FROM ({src.mv.query}) _hdb_q"
    states = [src.state(j, h) for j in range(len(plan.sources))]
    group = (" GROUP BY " + ", ".join(plan.groups)) if plan.mode == "agg" and plan.groups else ""
    return f"SELECT {', '.join(plan.storage_exprs())} {_instantiate(plan, states)}{_where(plan)}{group}"


def full_sql(src: Sources, h: int) -> str:
    mv, b = src.mv, src.branch.id
    store, hist = mv.storage(b), mv.hist(b)
    col_list = ", ".join(src.plan.storage_columns())
    return f"""WITH _hdb_arch AS (INSERT INTO {hist} (_hdb_rowid, _hdb_begin, _hdb_end, {col_list})
    SELECT _hdb_rowid, _hdb_lsn, {h}, {col_list} FROM {store} RETURNING 1),
_hdb_del AS (DELETE FROM {store} RETURNING 1),
_hdb_ins AS (INSERT INTO {store} (_hdb_rowid, _hdb_lsn, {col_list})
    SELECT nextval('heliosdb.mv_rowid_seq'), {h}, f.* FROM ({full_select(src, h)}) f RETURNING 1)
SELECT (SELECT count(*) FROM _hdb_ins)"""


def pending_sql(src: Sources, point: int | None = None) -> str | None:
    """Counts the base rows changed since `point` (None: since $1, the last refresh), up to the head when run."""
    p = P_SENTINEL if point is None else point
    plan = src.plan
    parts: list[str] = []
    if plan.mode == "full":
        tables = [(t, "table") for t in plan.deps_tables] + [(m, "mv") for m in plan.deps_mvs]
        for ref, kind in tables:
            try:
                if kind == "table":
                    _, info = src.table(ref, MAX_LSN)
                    side = Side(src.branch, p, MAX_LSN)
                    parts.append("SELECT count(*) FROM (" + changed_rows(src.conn, side, info).as_string(src.conn) + ") c")
                else:
                    parts.append(f"SELECT count(*) FROM ({changed_in_storage(src.upstream(ref), src.branch.id, p, MAX_LSN)}) c")
            except errors.Error:
                continue
    else:
        seen: set[tuple[str, int]] = set()
        for i, source in enumerate(plan.sources):
            if (source.kind, source.id) not in seen:  # a self-join reads a changed row more than once
                seen.add((source.kind, source.id))
                parts.append(f"SELECT count(DISTINCT _hdb_rowid) FROM ({src.changed(i, p, MAX_LSN)}) c")
    if not parts:
        return None
    return ("SELECT " + " + ".join(f"({x})" for x in parts)).replace(str(P_SENTINEL), "$1")


def size_sql(src: Sources) -> str | None:
    rels: list[str] = []
    plan = src.plan
    ids = plan.deps_tables if plan.mode == "full" else [s.id for s in plan.sources if s.kind == "table"]
    for tid in ids:
        try:
            _, info = src.table(tid, MAX_LSN)
        except errors.Error:
            continue
        rels += [f"{info.phys_schema}.{info.phys_name}", f"{info.phys_schema}.{info.phys_name}__br"]
    mv_ids = plan.deps_mvs if plan.mode == "full" else [s.id for s in plan.sources if s.kind == "mv"]
    rels += [f"hdb_b{src.branch.id}.mv{m}" for m in mv_ids]
    if not rels:
        return None
    arr = ", ".join("'" + r.replace("'", "''") + "'" for r in rels)
    # live tuples as the statistics count them: maintained by every write, no ANALYZE needed
    return (f"SELECT sum(pg_stat_get_live_tuples(to_regclass(r)))::bigint FROM unnest(ARRAY[{arr}]) r")


def create_inc_function(src: Sources) -> str | None:
    """The view's incremental refresh as a function of (p, h) with static SQL: each backend plans it once.

    Valid while p >= the branch's fork point (ancestors are then cut at their
    forks, whatever p is) and the source tables keep their schema. Immediate
    maintenance calls it too.
    """
    if src.plan.mode == "full":
        return None
    text = incremental_sql(src, P_SENTINEL, H_SENTINEL)
    # positional parameters: a named one could clash with a base table's column of the same name
    text = text.replace(str(P_SENTINEL), "$1").replace(str(H_SENTINEL), "$2")
    head, sep, tail = text.rpartition("\nSELECT ")
    fn = inc_function(src.mv, src.branch.id)
    # a generic plan (no planning per call) without JIT (its compile time dwarfs small deltas)
    src.conn.execute(  # type: ignore[arg-type]
        f"CREATE OR REPLACE FUNCTION {fn}(bigint, bigint) RETURNS bigint LANGUAGE plpgsql "
        f"SET plan_cache_mode = force_generic_plan SET jit = off AS $hdb$ DECLARE _hdb_rows bigint; BEGIN\n"
        f"{head}{sep}{tail} INTO _hdb_rows;\nRETURN _hdb_rows;\nEND $hdb$")
    return fn


def inc_function(mv: MView, branch_id: int) -> str:
    return f'"hdb_b{branch_id}"."mv{mv.id}__inc"'


def revert_sql(mv: MView, branch_id: int) -> str:
    """Undo the storage changes stamped $1 (earlier statements of the same writing transaction).

    Two statements, separated by REVERT_SEP: the stamped rows must be gone before
    the archived versions (same row ids) come back.
    """
    cols = ", ".join(mv.plan.storage_columns())
    store, hist = mv.storage(branch_id), mv.hist(branch_id)
    return (f"DELETE FROM {store} WHERE _hdb_lsn = $1" + REVERT_SEP
            + f"WITH _hdb_back AS (DELETE FROM {hist} WHERE _hdb_end = $1 RETURNING *) "
            f"INSERT INTO {store} (_hdb_rowid, _hdb_lsn, {cols}) SELECT _hdb_rowid, _hdb_begin, {cols} FROM _hdb_back")


REVERT_SEP = "\n;\n"


# -- one refresh -----------------------------------------------------------------
@dataclass
class _State:
    p: int | None
    history_from: int | None
    options: dict[str, Any]
    head: int
    pending: int | None
    size: int | None
    fn: str | None  # the incremental function, when still valid
    fork: int | None
    recompute: str | None  # why no delta can bring it up to date (catalog/mv_recompute.sql)


def _read_state(conn: psycopg.Connection[Any], branch: Branch, mv: MView, wait: bool) -> _State | None:
    """Lock, state, head, pending changes and base size in one round trip (None: locked by another)."""
    # one refresh at a time per view and branch (the key: catalog/mv_upkeep.sql)
    key = "heliosdb._mv_lock_key(%s, %s)"
    lock = f"(SELECT true FROM pg_advisory_xact_lock({key}))" if wait else f"pg_try_advisory_xact_lock({key})"
    row = conn.execute(
        f"""SELECT l.got, s.refreshed_lsn, s.history_from, s.options,
                   coalesce(heliosdb.held_lsn(b.id), b.head_lsn),
                   CASE WHEN s.refreshed_lsn IS NOT NULL
                        THEN heliosdb._mv_exec_count(s.pending_sql, s.refreshed_lsn) END,
                   heliosdb._mv_exec_count(s.size_sql),
                   CASE WHEN s.inc_fn IS NOT NULL AND NOT EXISTS (
                            SELECT 1 FROM heliosdb._table_versions v
                            WHERE v.table_id = ANY(%s) AND v.valid_from > s.sql_lsn) THEN s.inc_fn END,
                   b.fork_lsn, CASE WHEN s.recompute THEN 'refreshed inside a transaction that wrote its branch before'
                                    WHEN heliosdb._mv_history_gone(s.mv_id, b.id, s.refreshed_lsn)
                                    THEN 'history since the last refresh was garbage-collected' END,
                   set_config('heliosdb.mv_writer', 'on', true)
            FROM (SELECT {lock} AS got) l
            JOIN heliosdb._mv_state s ON l.got AND s.mv_id = %s AND s.branch_id = %s
            JOIN heliosdb._branches b ON b.id = s.branch_id
            FOR UPDATE OF s""",  # type: ignore[arg-type]
        (mv.plan.deps_tables, mv.id, branch.id, mv.id, branch.id),
    ).fetchone()
    if row is None:
        got = conn.execute("SELECT 1 FROM heliosdb._mv_state WHERE mv_id = %s AND branch_id = %s",
                           (mv.id, branch.id)).fetchone()
        if got is None:
            raise errors.lookup("42P01")(
                f'materialized view "{mv.name}" does not exist on branch "{branch.name}"', sqlstate="42P01")
        return None
    _, p, hist_from, options, head, pending, size, fn, fork, recompute, _ = row
    return _State(p, hist_from, with_defaults(options), int(head), pending, size, fn, fork, recompute)


def fast_refresh(
    conn: psycopg.Connection[Any], branch_id: int, *, mv_id: int | None = None, name: str | None = None,
    mode: str | None = None, wait: bool = True, reason: str | None = None, detached: bool = False,
) -> tuple[str, Outcome | None]:
    """The common refresh as one statement (catalog/mv_upkeep.sql): (outcome, result).

    outcome: done / none (result given), busy, missing, or slow: refresh() decides.
    detached: the statement is its own transaction (its commit need not wait for the WAL flush).
    """
    row = conn.execute(
        "SELECT * FROM heliosdb._mv_refresh(%s, %s, %s, %s, %s, %s, %s, %s)",
        (mv_id, branch_id, name, mode, wait, reason, detached, FULL_FRACTION),
    ).fetchone()
    assert row is not None
    outcome, _, why, rows, ms, lsn = row
    if outcome not in ("done", "none"):
        return outcome, None
    return outcome, Outcome("incremental" if outcome == "done" else "none", why, int(rows), float(ms), int(lsn))


def refresh(
    conn: psycopg.Connection[Any], branch: Branch, mv: MView, *, mode: str | None = None,
    h: int | None = None, wait: bool = True, reason: str | None = None, _seen: set[int] | None = None,
    progress: Any = None, detached: bool = False, try_fast: bool = True,
) -> Outcome | None:
    """Bring the view to the branch's head (or h); in the caller's transaction. None: someone else is at it.

    progress(what, done, total), if given, hears of each view refreshed (inputs first).
    detached: the caller's transaction holds nothing but this refresh.
    try_fast: False when the caller's fast_refresh() already said 'slow'.
    """
    if try_fast and h is None and mode != "full" and not mv.plan.deps_mvs and mv.plan.mode != "full":
        outcome, out = fast_refresh(conn, branch.id, mv_id=mv.id, mode=mode, wait=wait, reason=reason,
                                       detached=detached)
        if outcome == "busy":
            return None
        if out is not None:
            return out
    seen = (_seen or set()) | {mv.id}
    total = len(mv.plan.deps_mvs) + 1
    if mv.plan.deps_mvs:  # inputs first, to the same point
        h = head_of(conn, branch) if h is None else h
        for k, up_id in enumerate(mv.plan.deps_mvs):
            if progress is not None:
                progress(f"refreshing input view {k + 1}", k, total)
            if up_id in seen:
                continue
            up = mvcat.by_id(conn, up_id)
            ust = mvcat.state(conn, up_id, branch.id)
            if ust is not None and (ust.refreshed_lsn is None or ust.refreshed_lsn < h):
                refresh(conn, branch, up, h=h, reason="input of " + mv.name, _seen=seen)
    st = _read_state(conn, branch, mv, wait)
    if st is None:
        return None
    mv.options = st.options
    h = st.head if h is None else h
    p = st.p
    fast = (st.fn is not None and p is not None and (st.fork is None or p >= st.fork) and st.pending is not None
            and not st.recompute)
    src = Sources(conn, branch, mv)
    if fast and mode != "full" and not mv.plan.deps_mvs:
        chosen, why = _choose_fast(st, mode, h)
    else:
        chosen, why = _choose(conn, src, st, mode, p, h)
    if chosen == "none":
        conn.execute("SELECT set_config('heliosdb.mv_writer', '', true)")
        if st.fn is None and mv.plan.mode != "full":
            store_sql(conn, src, h)
        return Outcome("none", why, 0, 0.0, h)
    if progress is not None:
        progress(f"{chosen} refresh of {mv.name}", total - 1, total)
    start = time.perf_counter()
    if chosen == "incremental" and fast:
        row = conn.execute(f"SELECT {st.fn}(%s, %s)", (p, h)).fetchone()  # type: ignore[arg-type]
    elif chosen == "incremental":
        assert p is not None
        row = conn.execute(incremental_sql(src, p, h)).fetchone()  # type: ignore[arg-type]
    else:
        row = conn.execute(full_sql(src, h)).fetchone()  # type: ignore[arg-type]
    ms = (time.perf_counter() - start) * 1000
    rows = int(row[0]) if row and row[0] is not None else 0
    why = reason or why
    conn.execute("SELECT heliosdb._mv_record(%s, %s, %s, %s, %s, %s)", (mv.id, branch.id, h, chosen, why, ms))
    if p is None:  # first population: the view stops saying "has not been populated"
        from heliosdb.mv.storage import create_user_view

        create_user_view(conn, branch, mv, populated=True, replace=True)
    if st.fn is None or chosen == "full":
        store_sql(conn, src, h)
    return Outcome(chosen, why, rows, ms, h)


def _choose_fast(st: _State, mode: str | None, h: int) -> tuple[str, str]:
    """_choose() from what _read_state() already knows (the common case: nothing else to look up)."""
    assert st.p is not None
    if st.p >= h or not st.pending:
        return "none", "no changes"
    return _by_size(st, mode, int(st.pending), int(st.size or 0))


def _by_size(st: _State, mode: str | None, n: int, total: int) -> tuple[str, str]:
    """Incremental, unless the strategy recomputes or the delta is a large share of the base."""
    if st.options.get("maintenance_strategy") == "deferred" and mode is None:
        return "full", "deferred strategy recomputes"
    if total > 0 and n > FULL_FRACTION * total and mode != "incremental":
        return "full", f"delta of {n} rows exceeds {FULL_FRACTION:.0%} of the {total} base rows"
    return "incremental", f"{n} changed base rows"


def _choose(conn: psycopg.Connection[Any], src: Sources, st: _State, mode: str | None,
            p: int | None, h: int) -> tuple[str, str]:
    plan = src.plan
    if mode == "full":
        return "full", "REFRESH ... FULL"
    if p is None:
        return "full", "first population"
    if st.recompute:
        return "full", st.recompute
    if plan.mode == "full":
        if p >= h and mode is None:
            return "none", "no changes"
        return "full", plan.reason
    if p >= h:
        return "none", "no changes"
    if st.options.get("maintenance_strategy") == "deferred" and mode is None:
        return "full", "deferred strategy recomputes"  # before the look-ups below, which it does not need
    for s in plan.sources:
        if s.kind == "table":
            version, _ = src.table(s.id, MAX_LSN)
            if version.valid_from > p:
                return "full", f'table "{s.name}" changed its schema since the last refresh'
        else:
            ust = mvcat.state(conn, s.id, src.branch.id)
            if ust is None or ust.history_from is None or ust.history_from > p:
                return "full", f'input view "{s.name}" has no history back to the last refresh'
    pending = conn.execute(pending_sql(src, p) or "SELECT 0").fetchone()  # type: ignore[arg-type]
    size = conn.execute(size_sql(src) or "SELECT 1").fetchone()  # type: ignore[arg-type]
    n, total = int(pending[0] or 0) if pending else 0, int(size[0] or 0) if size else 0
    if n == 0:
        return "none", "no changes"
    return _by_size(st, mode, n, total)


def store_sql(conn: psycopg.Connection[Any], src: Sources, at: int, *, inherited_from: int | None = None) -> None:
    """The SQL that counts pending changes and refreshes incrementally (also inside writing transactions).

    inherited_from: a new branch's copy, whose last refresh precedes the fork:
    its pending changes include the ancestors' up to the fork (counted from
    that literal point), and it gets no incremental function before its
    first own refresh.
    """
    mv, b = src.mv, src.branch
    if inherited_from is not None:
        conn.execute(
            "UPDATE heliosdb._mv_state SET pending_sql = %s, size_sql = %s WHERE mv_id = %s AND branch_id = %s",
            (pending_sql(src, inherited_from), size_sql(src), mv.id, b.id))
        return
    fn = create_inc_function(src)
    immediate = mv.options.get("maintenance_strategy") == "immediate" and fn is not None
    conn.execute(
        """UPDATE heliosdb._mv_state SET pending_sql = %s, size_sql = %s, immediate_sql = %s, revert_sql = %s,
               inc_fn = %s, sql_lsn = %s
           WHERE mv_id = %s AND branch_id = %s""",
        (pending_sql(src), size_sql(src), f"SELECT {fn}($1, $2)" if immediate else None, revert_sql(mv, b.id),
         fn, at, mv.id, b.id),
    )
