"""MERGE DATABASE BRANCH: three-way, cell-level merges with strategies, rules and manual resolution.

For each table: the rows either side changed since the merge base (O(changes),
from the version relations) are read as jsonb in four states: source and
target, each at its base point and at its head. Rows only the source changed
are applied; rows both changed merge cell by cell; what is left are
conflicts, resolved by the strategy (or kept for COMPLETE MERGE). The result
is applied as one commit on the target, with row identities preserved so the
next merge recognises the same rows.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching.ddl_locks import lock_for_ddl
from heliosdb.branching.writes import apply_plan
from heliosdb.catalog.model import (
    Branch,
    Constraint,
    Snapshot,
    TableInfo,
    TableVersion,
    chain,
    find_table,
    get_branch,
    table_info,
)
from heliosdb.merge.diff import Received, Side, build_diff
from heliosdb.merge.schema import (
    SchemaConflict,
    SchemaPlan,
    plan_schema,
    run_after,
    stored,
    unheld,
    unheld_constraints,
)
from heliosdb.sql import statements as st
from heliosdb.sql.lsn import MAX_LSN, format_lsn
from heliosdb.temporal.resolver import head_lsn

if TYPE_CHECKING:
    from heliosdb.session import Result, Session

I = sql.Identifier  # noqa: E741
L = sql.Literal


class MergeConflict(errors.HeliosError, code="HD010"):
    """The merge has conflicts its strategy does not resolve; nothing was changed."""


class MergeStateError(errors.HeliosError, code="HD012"):
    """COMPLETE / ABORT MERGE on a merge that is not pending, or whose target moved."""


@dataclass
class Conflict:
    table: str
    rowid: int
    kind: str
    key: Any
    source: Any
    target: Any
    base: Any
    columns: list[str] = field(default_factory=list)
    other: int | None = None  # the target's row a key clash is with (MANUAL: the resolution decides it too)


@dataclass
class TablePlan:
    table: str
    applied: int = 0
    auto: int = 0
    resolved: int = 0


# -- merge base --------------------------------------------------------------------------
def merge_base(conn: psycopg.Connection[Any], source: Branch, target: Branch) -> tuple[int, int]:
    """(source point, target point) of the common state, as git defines the merge base.

    Each side's point is the latest of its states the other side already holds: the fork point, or that
    side's head when it was last merged into the other. A merge's result is never a base point: it also
    holds the target's own changes and resolutions (OURS), which the source has not received, and a
    no-op merge must not make them look shared. A branch's history is its ancestors' up to its fork
    points: an ancestor's merge into the other side (or into one of its ancestors, before the other
    forked from it) counts as the branch's, up to the point the branch sees the ancestor at.
    """
    base_s, base_t, _, _ = _bases(conn, source, target)
    return base_s, base_t


def sides(conn: psycopg.Connection[Any], source: Branch, target: Branch) -> tuple[Side, Side]:
    """Both sides of a merge of `source` into `target`: base points, heads, and what each last received."""
    base_s, base_t, into_s, into_t = _bases(conn, source, target)
    return (Side(source, base_s, head_lsn(conn, source), _received(into_s, base_s)),
            Side(target, base_t, head_lsn(conn, target), _received(into_t, base_t)))


def _bases(conn: psycopg.Connection[Any], source: Branch, target: Branch
           ) -> tuple[int, int, list[Received], list[Received]]:
    """Each side's base point (the latest of its points the other holds, else the fork), and the merges
    into each side of the other's history, read once for both."""
    fork = _fork_point(conn, source, target)
    into_s, into_t = _merges_into(conn, source, target), _merges_into(conn, target, source)
    return max([fork, *(r.hi for r in into_t)]), max([fork, *(r.hi for r in into_s)]), into_s, into_t


def _merges_into(conn: psycopg.Connection[Any], side: Branch, other: Branch) -> list[Received]:
    """The completed merges of `other`'s history into `side`'s, as ranges of `other`'s points.

    A merge of a level of `other`'s chain (the branch or an ancestor, seen up to `upto`) into a level of
    `side`'s chain that `side` sees (its result no later than that level's `upto`) brought `other`'s
    changes in (base_source_lsn, min(source_lsn, upto)]: an ancestor's later changes are not `other`'s.
    """
    from_levels = {lv.branch_id: lv.upto for lv in chain(conn, other.id)}
    into_levels = {lv.branch_id: lv.upto for lv in chain(conn, side.id)}
    rows = conn.execute(
        "SELECT source_id, target_id, base_source_lsn, source_lsn, result_lsn FROM heliosdb._merges "
        "WHERE state = 'completed' AND source_id = ANY(%s) AND target_id = ANY(%s) AND result_lsn IS NOT NULL",
        (list(from_levels), list(into_levels))).fetchall()
    return [Received(int(lo), min(int(hi), from_levels[src]), int(at))
            for src, dst, lo, hi, at in rows if int(at) <= into_levels[dst]]


def _received(merges: list[Received], held: int) -> Received | None:
    """What a side received of the other (`merges`: _merges_into) since the other last received it (at
    `held`): the union of the ranges of those merges. Each starts where the one before ended, and a
    repeated merge that found nothing new has an empty range: the last one alone would forget what the
    first one brought."""
    got = [r for r in merges if r.at > held]
    if not got:
        return None
    hi = max(r.hi for r in got)
    return Received(min((r.lo for r in got if r.hi > r.lo), default=hi), hi, max(r.at for r in got))


def _fork_point(conn: psycopg.Connection[Any], source: Branch, target: Branch) -> int:
    s_levels = chain(conn, source.id)
    t_up = {lv.branch_id: lv.upto for lv in chain(conn, target.id)}
    for lv in s_levels:
        if lv.branch_id in t_up:
            return min(lv.upto, t_up[lv.branch_id])
    raise errors.HeliosError("the branches share no history", sqlstate="HD000")


def side_tables(conn: psycopg.Connection[Any], branch: Branch) -> dict[str, tuple[TableVersion, TableInfo]]:
    snap = Snapshot(conn, chain(conn, branch.id))
    return {v.name: (v, snap.info[tid]) for tid, v in snap.tables.items()}


# -- statements ----------------------------------------------------------------------------
def execute(session: Session, text: str) -> Result:
    from heliosdb.branching.branches import audit
    from heliosdb.session import Result

    stmt = st.parse_branch_statement(text)
    conn = session.conn
    if isinstance(stmt, st.CreateRuleSet):
        with conn.transaction():
            if conn.execute("SELECT 1 FROM heliosdb._rule_sets WHERE name = %s", (stmt.name,)).fetchone():
                raise errors.DuplicateObject(f'conflict resolution "{stmt.name}" already exists')
            rules = [{"table": r.table, "column": r.column, "action": r.action} for r in stmt.rules]
            conn.execute("INSERT INTO heliosdb._rule_sets (name, rules) VALUES (%s, %s)", (stmt.name, json.dumps(rules)))
        return Result(status="CREATE CONFLICT RESOLUTION")
    if isinstance(stmt, st.DropRuleSet):
        cur = conn.execute("DELETE FROM heliosdb._rule_sets WHERE name = %s", (stmt.name,))
        if cur.rowcount == 0 and not stmt.if_exists:
            raise errors.UndefinedObject(f'conflict resolution "{stmt.name}" does not exist')
        return Result(status="DROP CONFLICT RESOLUTION")
    if isinstance(stmt, st.FinishMerge):
        from heliosdb.merge.manual import abort_merge, complete_merge

        return complete_merge(session, stmt.merge_id) if stmt.complete else abort_merge(session, stmt.merge_id)
    assert isinstance(stmt, st.MergeBranch)
    try:
        return merge(session, stmt, text)
    except (errors.Error, psycopg.Error) as exc:
        if not session.in_transaction:
            try:
                audit(conn, stmt.target, text, None, f"error {getattr(exc, 'sqlstate', 'XX000')}: {exc}")
            except psycopg.Error:
                pass
        raise


def merge(session: Session, stmt: st.MergeBranch, text: str) -> Result:
    from heliosdb.branching.branches import audit

    conn = session.conn
    started = time.perf_counter()
    source = get_branch(conn, stmt.source)
    target = get_branch(conn, stmt.target)
    assert source is not None and target is not None
    if source.id == target.id:
        raise errors.InvalidParameterValue("cannot merge a branch into itself")
    from heliosdb.branching.branches import ensure_built

    target = ensure_built(conn, target)
    rules = _rules(conn, stmt)
    opts = _options(stmt.options)
    if opts["delete_source"] and session.branch.id == source.id:
        raise errors.BranchInUse(f'cannot delete branch "{source.name}": it is the current branch of this session',
                                 hint="USE BRANCH another branch first, or leave out delete_source.")
    manual = stmt.strategy == "MANUAL"
    with conn.transaction(force_rollback=stmt.dry_run):
        # merge statements are many and short: compiling them with JIT costs seconds and saves nothing
        conn.execute("SET LOCAL jit = off")
        if not stmt.dry_run:  # waits for the target's writers; those of tables it changes first (ddl_locks)
            lock_for_ddl(conn, target.id, _reshaped(conn, source, target))
        src, tgt = sides(conn, source, target)
        base_s, base_t = src.base, tgt.base
        conflicts: list[Conflict] = []
        plans: list[TablePlan] = []
        conn.execute("CREATE TEMP TABLE _hdb_mplan (table_name text, rowid bigint, action text, row_value jsonb, "
                     "conflict_id integer) ON COMMIT DROP")
        # A MANUAL merge with conflicts changes nothing until COMPLETE MERGE: plan it in a savepoint
        # that is rolled back (schema changes included), keeping only the plan.
        with conn.transaction(force_rollback=manual):
            schema = _plan(session, stmt, rules, src, tgt, conflicts, plans)
            planned = conn.execute("SELECT table_name, rowid, action, row_value FROM _hdb_mplan").fetchall()
        if manual and conflicts and not stmt.dry_run:
            from heliosdb.merge.manual import save_pending

            merge_id = int(conn.execute("SELECT nextval('heliosdb.merge_id_seq')").fetchone()[0])  # type: ignore[index]
            return save_pending(session, merge_id, stmt, src, tgt, plans, conflicts, planned, stored(schema), text)
        if manual:
            conflicts, plans = [], []
            schema = _plan(session, stmt, rules, src, tgt, conflicts, plans)
        unresolved = [c for c in conflicts if c.kind.endswith("!")]
        merge_id = int(conn.execute("SELECT nextval('heliosdb.merge_id_seq')").fetchone()[0])  # type: ignore[index]
        if stmt.dry_run:
            for ddl, _why in unheld_constraints(session, target, schema.after):  # what run_after would refuse
                conflicts.append(_unheld_conflict(ddl))
            return _preview(session, src, tgt, schema.tables, plans, conflicts, started)
        if conflicts and (stmt.strategy == "ABORT" or unresolved):
            bad = unresolved or conflicts
            listed = "; ".join(f"{c.table} {json.dumps(c.key)}: {c.kind.rstrip('!')}" for c in bad[:5])
            raise MergeConflict(
                f'merge of "{source.name}" into "{target.name}" has {len(bad)} unresolved conflict(s)',
                detail=listed + ("; ..." if len(bad) > 5 else ""),
                hint="MERGE ... DRY RUN lists them; choose a strategy (OURS, THEIRS, LAST_WRITE_WINS, "
                     "RULE_BASED, CUSTOM) or MANUAL to resolve them by hand.",
            )
        result_lsn = int(conn.execute("SELECT heliosdb.txn_lsn(%s)", (target.id,)).fetchone()[0])  # type: ignore[index]
        apply_all(conn, target, plans, progress=session.report_progress)
        run_after(session, target, schema.after)
        counts = {p.table: {"applied": p.applied, "auto_merged": p.auto, "conflicts_resolved": p.resolved}
                  for p in plans}
        conn.execute(
            """INSERT INTO heliosdb._merges (id, source_id, target_id, base_source_lsn, base_target_lsn, source_lsn,
                   target_lsn, result_lsn, strategy, rule_set, counts, state, message)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'completed', %s)""",
            (merge_id, source.id, target.id, base_s, base_t, src.head, tgt.head, result_lsn, stmt.strategy,
             stmt.rule_set, json.dumps(counts), opts["message"]),
        )
        audit(conn, target.name, text, result_lsn, "ok")
        if opts["delete_source"]:
            from heliosdb.branching.branches import drop_branch

            drop_branch(session, source.name, cascade=False)
    if manual:
        return _manual_applied(session, merge_id, plans, result_lsn)
    return _result(session, merge_id, stmt.strategy, plans, result_lsn)


def _reshaped(conn: psycopg.Connection[Any], source: Branch, target: Branch) -> list[TableInfo]:
    """The target's tables the source's schema changes reach, as planned before the target is locked."""
    levels = chain(conn, target.id)
    out = []
    for name in plan_schema(conn, source, target, *merge_base(conn, source, target)).tables:
        version = find_table(conn, levels, name)
        if version is not None:
            out.append(table_info(conn, version.table_id))
    return out


def _plan(session: Session, stmt: st.MergeBranch, rules: list[dict[str, str]], src: Side, tgt: Side,
          conflicts: list[Conflict], plans: list[TablePlan]) -> Any:
    """Carry the source's schema changes to the target, then plan every table into _hdb_mplan."""
    from heliosdb.branching import tables
    from heliosdb.sql.classify import classify

    conn = session.conn
    try:
        schema = plan_schema(conn, src.branch, tgt.branch, src.base, tgt.base)
    except SchemaConflict as exc:  # a DRY RUN previews it; with no schema to merge to, no rows are planned
        if not stmt.dry_run:
            raise
        table = re.search(r'(?:^table|of) "((?:[^"]|"")+)"', exc.message)
        conflicts.append(Conflict(table.group(1) if table else "", 0, "schema", {"schema": exc.message},
                                  None, None, None))
        return SchemaPlan()
    with session.acting_on(tgt.branch):
        for ddl in schema.statements:
            try:
                with conn.transaction():
                    tables.execute(session, classify(ddl), ddl)
            except (errors.Error, psycopg.Error) as exc:  # a constraint the target's own rows break
                err = exc if isinstance(exc, errors.Error) else errors.from_psycopg(exc)
                if not (err.sqlstate or "").startswith("23"):
                    raise
                if not stmt.dry_run:
                    raise unheld(tgt.branch, ddl, err) from None
                conflicts.append(_unheld_conflict(ddl))
    s_tables = side_tables(conn, src.branch)
    t_tables = side_tables(conn, tgt.branch)
    shared = [name for name in sorted(s_tables) if name in t_tables]
    for name in shared:  # a column one side renamed: the source's rows under the target's names
        s_tables[name] = (_in_names_of(s_tables[name][0], t_tables[name][0]), s_tables[name][1])
    # each side's last commit time per changed row, for LAST_WRITE_WINS on constraint conflicts
    conn.execute("DROP TABLE IF EXISTS _hdb_mtimes")
    conn.execute("CREATE TEMP TABLE _hdb_mtimes (table_name text, rowid bigint, time_s timestamptz, "
                 "time_t timestamptz, PRIMARY KEY (table_name, rowid)) ON COMMIT DROP")
    for i, name in enumerate(shared):
        session.report_progress(f"comparing {name}", i, 2 * len(shared))
        plans.append(_plan_table(conn, src, tgt, name, s_tables[name], t_tables[name], stmt, rules, conflicts))
    for name in shared:
        _fill_defaults(conn, name, s_tables[name][0], t_tables[name][0])
    first = len(conflicts)
    _constraint_conflicts(conn, tgt.branch, t_tables, stmt.strategy, conflicts, schema.keys, stmt.function)
    by_table = {p.table: p for p in plans}
    for c in conflicts[first:]:  # the row conflicts were counted as they were resolved
        if not c.kind.endswith("!") and stmt.strategy != "MANUAL" and c.table in by_table:
            by_table[c.table].resolved += 1
    return schema


def _in_names_of(version: TableVersion, target: TableVersion) -> TableVersion:
    """`version` with each column that `target` has (the same column id) under the target's name."""
    names = {c.col: c.name for c in target.columns}
    columns = [replace(c, name=names.get(c.col, c.name)) for c in version.columns]
    if len({c.name for c in columns}) < len(columns):  # a name the target gave another column: as it was
        return version
    return replace(version, columns=columns)


def _fill_defaults(conn: psycopg.Connection[Any], name: str, s_version: TableVersion, t_version: TableVersion) -> None:
    """Planned rows lack the target's columns the source never had: they take the column's DEFAULT, as a row
    inserted without them does (rows the target had keep their values: the plan holds them)."""
    s_names = {c.name for c in s_version.columns}
    for c in t_version.columns:
        if c.default is None or c.name in s_names:
            continue
        conn.execute(sql.SQL(
            "UPDATE _hdb_mplan SET row_value = row_value || jsonb_build_object({k}, to_jsonb(({d})::{t})) "
            "WHERE table_name = {n} AND action = 'upsert' AND NOT row_value ? {k}"
        ).format(k=L(c.name), d=sql.SQL(c.default), t=sql.SQL(c.type), n=L(name)))


def _options(opts: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"delete_source": False, "message": None}
    for key, value in opts.items():
        if key == "delete_source":
            if value.lower() not in ("true", "false"):
                raise errors.InvalidBranchOption(f'invalid value for delete_source: "{value}"', hint="Use true or false.")
            out[key] = value.lower() == "true"
        elif key == "message":
            out[key] = value
        else:
            raise errors.InvalidBranchOption(f'unknown merge option "{key}"', hint="Valid options: delete_source, message.")
    return out


def _rules(conn: psycopg.Connection[Any], stmt: st.MergeBranch) -> list[dict[str, str]]:
    if stmt.rule_set is None:
        return []
    row = conn.execute("SELECT rules FROM heliosdb._rule_sets WHERE name = %s", (stmt.rule_set,)).fetchone()
    if row is None:
        raise errors.UndefinedObject(f'conflict resolution "{stmt.rule_set}" does not exist')
    return list(row[0])


# -- planning one table --------------------------------------------------------------------------
def _rule_value(action: str) -> str:
    """SQL (over s, t, b: jsonb cell values; ns: source is newer) for a rule's resolved cell."""
    return {
        "PREFER_SOURCE": "s",
        "PREFER_TARGET": "t",
        "PREFER_NEWER": "CASE WHEN ns THEN s ELSE t END",
        "PREFER_OLDER": "CASE WHEN ns THEN t ELSE s END",
        "CONCATENATE": "CASE WHEN jsonb_typeof(t) = 'array' AND jsonb_typeof(s) = 'array' THEN t || s "
                       "ELSE to_jsonb(coalesce(t #>> '{}', '') || coalesce(s #>> '{}', '')) END",
        "SUM": "to_jsonb((s #>> '{}')::numeric + (t #>> '{}')::numeric - coalesce((b #>> '{}')::numeric, 0))",
        # as GREATEST and LEAST: a NULL (JSON null: the lowest jsonb) only when both are
        "MAX": "CASE WHEN coalesce(t, 'null') = 'null' OR (coalesce(s, 'null') <> 'null' AND s > t) THEN s ELSE t END",
        "MIN": "CASE WHEN coalesce(t, 'null') = 'null' OR (coalesce(s, 'null') <> 'null' AND s < t) THEN s ELSE t END",
    }[action]


def _cell_resolution(table: str, version: TableVersion, strategy: str, rules: list[dict[str, str]]) -> str:
    """SQL CASE over column name k: the resolved jsonb value of a conflicting cell (NULL: unresolved)."""
    if strategy == "OURS":
        return "t"
    if strategy == "THEIRS":
        return "s"
    if strategy == "LAST_WRITE_WINS":
        return "CASE WHEN ns THEN s ELSE t END"
    if strategy != "RULE_BASED":
        return "NULL::jsonb"
    whens = []
    for c in version.columns:
        for r in rules:
            if re.fullmatch(r["table"], table) and re.fullmatch(r["column"], c.name):
                whens.append(f"WHEN {_lit(c.name)} THEN {_rule_value(r['action'])}")
                break
    if not whens:
        return "NULL::jsonb"
    return f"CASE k {' '.join(whens)} ELSE NULL::jsonb END"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# A side changed a cell when its head differs from both base values: a value that came from the
# other side in an earlier merge is not a change of this side.
_S_CHANGED = "((d.head_s -> k) IS DISTINCT FROM (d.base_s -> k) AND (d.head_s -> k) IS DISTINCT FROM (d.base_t -> k))"
_T_CHANGED = "((d.head_t -> k) IS DISTINCT FROM (d.base_t -> k) AND (d.head_t -> k) IS DISTINCT FROM (d.base_s -> k))"


def _plan_table(
    conn: psycopg.Connection[Any], src: Side, tgt: Side, name: str, s_table: tuple[TableVersion, TableInfo],
    t_table: tuple[TableVersion, TableInfo], stmt: st.MergeBranch, rules: list[dict[str, str]],
    conflicts: list[Conflict],
) -> TablePlan:
    plan = TablePlan(name)
    if build_diff(conn, src, tgt, s_table, t_table) == 0:
        return plan
    if stmt.strategy == "LAST_WRITE_WINS":
        conn.execute("INSERT INTO _hdb_mtimes SELECT %s, rowid, time_s, time_t FROM _hdb_diff", (name,))
    tv = t_table[0]
    cell = _cell_resolution(name, tv, stmt.strategy, rules)
    key_cols = tv.key_columns
    key = ("jsonb_build_object(" + ", ".join(f"{_lit(k)}, coalesce(d.head_t, d.head_s, d.base_t)->{_lit(k)}"
                                             for k in key_cols) + ")") if key_cols else "to_jsonb(d.rowid)"
    # classify: only rows the source changed matter; identical outcomes are not conflicts
    conn.execute(sql.SQL(
        """CREATE TEMP TABLE _hdb_cls ON COMMIT DROP AS
SELECT d.*, {key} AS row_key,
       coalesce(d.time_s > d.time_t, d.time_s IS NOT NULL) AS ns,
       CASE
         WHEN d.base_t IS NOT DISTINCT FROM d.head_t THEN 'apply'
         WHEN d.head_s IS NOT DISTINCT FROM d.head_t THEN 'same'
         WHEN d.head_s IS NULL THEN 'delete_update'
         WHEN d.head_t IS NULL THEN 'update_delete'
         ELSE 'cells'
       END AS how,
       CASE WHEN {cells} THEN
         ARRAY(SELECT k FROM jsonb_object_keys(d.head_s) k
               WHERE {s_changed} AND {t_changed} AND (d.head_s -> k) IS DISTINCT FROM (d.head_t -> k)) END AS clash,
       CASE WHEN {cells} THEN
         d.head_t || coalesce((SELECT jsonb_object_agg(k, d.head_s -> k) FROM jsonb_object_keys(d.head_s) k
               WHERE {s_changed} AND (NOT {t_changed} OR (d.head_s -> k) IS NOT DISTINCT FROM (d.head_t -> k))),
               '{{}}') END AS merged
FROM _hdb_diff d WHERE d.s_touched AND d.head_s IS DISTINCT FROM d.base_s AND d.head_s IS DISTINCT FROM d.base_t"""
    ).format(key=sql.SQL(key), s_changed=sql.SQL(_S_CHANGED), t_changed=sql.SQL(_T_CHANGED),
             # the per-cell work only for rows both sides changed ('cells'): most rows of a big merge are 'apply'
             cells=sql.SQL("d.head_s IS NOT NULL AND d.head_t IS NOT NULL AND d.base_t IS DISTINCT FROM d.head_t "
                           "AND d.head_s IS DISTINCT FROM d.head_t")))
    # resolve conflicting cells (strategy / rules), set-based
    conn.execute(sql.SQL(
        """ALTER TABLE _hdb_cls ADD COLUMN resolved jsonb, ADD COLUMN unresolved text[];
UPDATE _hdb_cls c SET
  resolved = c.merged || coalesce((SELECT jsonb_object_agg(k, v) FROM (
      SELECT k, ({cell}) AS v FROM unnest(c.clash) k,
             LATERAL (SELECT c.head_s -> k AS s, c.head_t -> k AS t, c.base_t -> k AS b, c.ns AS ns) x) r
      WHERE v IS NOT NULL), '{{}}'),
  unresolved = ARRAY(SELECT k FROM unnest(c.clash) k,
             LATERAL (SELECT c.head_s -> k AS s, c.head_t -> k AS t, c.base_t -> k AS b, c.ns AS ns) x
             WHERE ({cell}) IS NULL)
WHERE c.how = 'cells'"""
    ).format(cell=sql.SQL(cell)))
    n = L(name)
    # 1. rows only the source changed, and cell merges without a clash
    cur = conn.execute(sql.SQL(
        """INSERT INTO _hdb_mplan (table_name, rowid, action, row_value)
SELECT {n}, rowid, CASE WHEN head_s IS NULL THEN 'delete' ELSE 'upsert' END,
       CASE WHEN head_s IS NULL THEN NULL ELSE coalesce(head_t, '{{}}') || head_s END
FROM _hdb_cls WHERE how = 'apply' AND NOT (head_s IS NULL AND head_t IS NULL)"""
    ).format(n=n))
    plan.applied += cur.rowcount
    cur = conn.execute(sql.SQL(
        """INSERT INTO _hdb_mplan (table_name, rowid, action, row_value)
SELECT {n}, rowid, 'upsert', merged FROM _hdb_cls
WHERE how = 'cells' AND cardinality(clash) = 0 AND merged IS DISTINCT FROM head_t"""
    ).format(n=n))
    plan.applied += cur.rowcount
    plan.auto += cur.rowcount
    # 2. conflicts
    rows = conn.execute(
        """SELECT rowid, how, row_key, head_s, head_t, base_t, clash, resolved, unresolved, ns FROM _hdb_cls
           WHERE how IN ('delete_update', 'update_delete') OR (how = 'cells' AND cardinality(clash) > 0)
           ORDER BY rowid"""
    ).fetchall()
    for rowid, how, row_key, head_s, head_t, base_t, clash, resolved, unresolved, ns in rows:
        kind = "concurrent_update" if how == "cells" else how
        conflict = Conflict(name, rowid, kind, row_key, head_s, head_t, base_t, list(clash or []))
        outcome: Any = _NO
        if stmt.strategy == "MANUAL":
            pass
        elif stmt.strategy == "CUSTOM":
            outcome = _custom(conn, stmt.function or "", name, base_t, head_t, head_s)
        elif how == "cells":
            if unresolved:
                conflict.kind = kind + "!"
            else:
                outcome = resolved
        elif stmt.strategy == "OURS" or (stmt.strategy == "LAST_WRITE_WINS" and not ns):
            outcome = head_t
        elif stmt.strategy == "THEIRS" or (stmt.strategy == "LAST_WRITE_WINS" and ns):
            outcome = head_s
        else:
            conflict.kind = kind + "!"  # ABORT, or a rule set (rules are per column)
        conflicts.append(conflict)
        if outcome is _NO or conflict.kind.endswith("!") or stmt.strategy in ("ABORT", "MANUAL"):
            continue
        plan.resolved += 1
        if outcome != head_t:
            conn.execute(
                "INSERT INTO _hdb_mplan (table_name, rowid, action, row_value) VALUES (%s, %s, %s, %s)",
                (name, rowid, "delete" if outcome is None else "upsert",
                 None if outcome is None else json.dumps(outcome)),
            )
            plan.applied += 1
    conn.execute("DROP TABLE _hdb_cls")
    return plan


_NO = object()


def _unheld_conflict(ddl: str) -> Conflict:
    """A DRY RUN's conflict for a constraint of the merge (`ALTER TABLE <name> ...`) the target's rows break."""
    from heliosdb.sql.names import read_name, tokenize

    try:
        table = read_name(tokenize(ddl), 2)[0].name
    except (errors.Error, IndexError):
        table = ""
    return Conflict(table, 0, "constraint", {"statement": ddl}, None, None, None)


def _custom(conn: psycopg.Connection[Any], function: str, table: str, base: Any, ours: Any, theirs: Any) -> Any:
    import sqlglot

    try:
        fn = sqlglot.parse_one(function + "(1)", read="postgres")
    except sqlglot.errors.ParseError:
        fn = None
    if fn is None:
        raise errors.SyntaxError(f'invalid function name "{function}"')
    parts = [p.strip().strip('"') for p in function.split(".")]
    try:
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT {}(%s::text, %s::jsonb, %s::jsonb, %s::jsonb)").format(I(*parts)),
                               (table, *(None if v is None else json.dumps(v) for v in (base, ours, theirs)))).fetchone()
    except psycopg.Error as exc:
        raise errors.from_psycopg(exc) from None
    return row[0] if row else None


# -- constraints ------------------------------------------------------------------------------------
def _typed(version_view: sql.Composable) -> sql.Composable:
    return sql.SQL("jsonb_populate_record(NULL::{}, p.row_value)").format(version_view)


def _constraint_conflicts(
    conn: psycopg.Connection[Any], target: Branch, t_tables: dict[str, tuple[TableVersion, TableInfo]],
    strategy: str, conflicts: list[Conflict], added_keys: dict[str, list[Constraint]] | None = None,
    function: str | None = None,
) -> None:
    """PRIMARY KEY / UNIQUE collisions and NOT NULL / CHECK / FOREIGN KEY failures the plan would create on the
    target. added_keys: the foreign keys of tables the merge creates, which it adds once the rows are in.
    function: CUSTOM's, which decides the row of a key both sides hold."""
    _referenced_deletes(conn, target, t_tables, strategy, conflicts)
    names = [r[0] for r in conn.execute("SELECT DISTINCT table_name FROM _hdb_mplan WHERE action = 'upsert'")]
    for name in names:
        version, info = t_tables[name]
        view = I(target.user_schema, name)
        current = I(*info.cur) if target.id == info.root_branch else I(target.phys_schema, name)
        for con in version.constraints:
            if con.kind not in ("p", "u"):
                continue
            match = sql.SQL(" AND ").join(sql.SQL("o.{c} = r.{c}").format(c=I(c)) for c in con.cols)
            clash = conn.execute(sql.SQL(
                """SELECT p.rowid, o._hdb_rowid, to_jsonb(o.*) - '_hdb_rowid' = p.row_value AS same, p.row_value,
                          to_jsonb(o.*) - '_hdb_rowid' AS other
                   FROM _hdb_mplan p, {typed} r, {cur} o
                   WHERE p.table_name = {n} AND p.action = 'upsert' AND {m} AND o._hdb_rowid <> p.rowid
                     AND NOT EXISTS (SELECT 1 FROM _hdb_mplan q WHERE q.table_name = {n} AND q.rowid = o._hdb_rowid)"""
            ).format(typed=_typed(view), cur=_projected(current, version, info, target), n=L(name), m=match)).fetchall()
            for rowid, other, same, row_value, other_value in clash:
                if same:  # the same row on both sides: nothing to merge
                    conn.execute("DELETE FROM _hdb_mplan WHERE table_name = %s AND rowid = %s", (name, rowid))
                    continue
                key = {c: row_value.get(c) for c in con.cols}
                kind = "insert_insert" if con.kind == "p" else "constraint"
                c = Conflict(name, rowid, kind, key, row_value, other_value, None, list(con.cols), other)
                source_wins = strategy == "THEIRS" or (strategy == "LAST_WRITE_WINS"
                                                       and _source_newer(conn, name, rowid, other))
                if strategy == "CUSTOM":
                    _custom_clash(conn, function or "", name, rowid, other, row_value, other_value)
                elif strategy == "OURS" or (strategy == "LAST_WRITE_WINS" and not source_wins):
                    conn.execute("DELETE FROM _hdb_mplan WHERE table_name = %s AND rowid = %s", (name, rowid))
                elif source_wins:
                    conn.execute("INSERT INTO _hdb_mplan (table_name, rowid, action) VALUES (%s, %s, 'delete')",
                                 (name, other))
                elif strategy != "MANUAL":
                    c.kind += "!"
                conflicts.append(c)
        for col in version.columns:
            if col.notnull:
                bad = conn.execute(sql.SQL(
                    "SELECT p.rowid, p.row_value FROM _hdb_mplan p WHERE p.table_name = {n} AND p.action = 'upsert' "
                    "AND coalesce(p.row_value -> {c}, 'null'::jsonb) = 'null'::jsonb").format(n=L(name), c=L(col.name))
                ).fetchall()
                for rowid, value in bad:
                    conflicts.append(Conflict(name, rowid, "constraint" + ("" if strategy == "MANUAL" else "!"),
                                              {"not_null": col.name}, value, None, None, [col.name]))
        added = (added_keys or {}).get(name, [])
        _foreign_key_conflicts(conn, target, name, [*version.constraints, *added], t_tables, strategy, conflicts,
                               added)
        for con in version.constraints:
            if con.kind == "c" and con.expr:
                bad = conn.execute(sql.SQL(
                    "SELECT p.rowid, p.row_value FROM _hdb_mplan p, LATERAL (SELECT ({e}) AS ok FROM {typed} r_) x "
                    "WHERE p.table_name = {n} AND p.action = 'upsert' AND x.ok IS FALSE"
                ).format(e=sql.SQL(con.expr), typed=_typed(view), n=L(name))).fetchall()
                for rowid, value in bad:
                    conflicts.append(Conflict(name, rowid, "constraint" + ("" if strategy == "MANUAL" else "!"),
                                              {"check": con.name}, value, None, None, []))


def _custom_clash(conn: psycopg.Connection[Any], function: str, name: str, rowid: int, other: int,
                  theirs: Any, ours: Any) -> None:
    """CUSTOM over a key both sides hold (no base): the function's row takes the key (the target's row as it
    is, or the source's row with the returned value); NULL leaves neither."""
    outcome = _custom(conn, function, name, None, ours, theirs)
    if outcome != ours:
        conn.execute("INSERT INTO _hdb_mplan (table_name, rowid, action) VALUES (%s, %s, 'delete')", (name, other))
    if outcome is None or outcome == ours:
        conn.execute("DELETE FROM _hdb_mplan WHERE table_name = %s AND rowid = %s AND action = 'upsert'",
                     (name, rowid))
    else:
        conn.execute("UPDATE _hdb_mplan SET row_value = %s WHERE table_name = %s AND rowid = %s AND action = 'upsert'",
                     (json.dumps(outcome), name, rowid))


def _source_newer(conn: psycopg.Connection[Any], name: str, rowid: int, other: int) -> bool:
    """LAST_WRITE_WINS between the source's row and the target's row it collides with: whether the source's
    last change committed later (a side that did not change its row since the base is older)."""
    row = conn.execute(
        """SELECT coalesce(s.time_s > t.time_t, s.time_s IS NOT NULL) FROM (SELECT 1) one
           LEFT JOIN _hdb_mtimes s ON s.table_name = %s AND s.rowid = %s
           LEFT JOIN _hdb_mtimes t ON t.table_name = %s AND t.rowid = %s""",
        (name, rowid, name, other)).fetchone()
    return bool(row and row[0])


def _foreign_key_conflicts(
    conn: psycopg.Connection[Any], target: Branch, name: str, constraints: list[Constraint],
    t_tables: dict[str, tuple[TableVersion, TableInfo]], strategy: str, conflicts: list[Conflict],
    added: list[Constraint] | None = None,
) -> None:
    """Rows the plan writes into `name` whose foreign key finds no row after the merge (a key added NOT VALID
    and never validated is the merge's to add over the rows as they are)."""
    for con in constraints:
        if con.kind != "f" or not con.expr:
            continue
        ref = json.loads(con.expr)
        if ref.get("valid") is False and con in (added or []):
            continue
        if ref["table"] not in t_tables:
            continue
        ref_version, ref_info = t_tables[ref["table"]]
        ref_rows = _projected(I(*ref_info.cur) if target.id == ref_info.root_branch
                              else I(target.phys_schema, ref["table"]), ref_version, ref_info, target)
        view = I(target.user_schema, name)
        ref_view = I(target.user_schema, ref["table"])
        fk = sql.SQL(" AND ").join(sql.SQL("r.{} IS NOT NULL").format(I(c)) for c in con.cols)
        match_current = sql.SQL(" AND ").join(
            sql.SQL("o.{} = r.{}").format(I(rc), I(c)) for c, rc in zip(con.cols, ref["cols"], strict=True))
        match_planned = sql.SQL(" AND ").join(
            sql.SQL("q_.{} = r.{}").format(I(rc), I(c)) for c, rc in zip(con.cols, ref["cols"], strict=True))
        bad = conn.execute(sql.SQL(
            """SELECT p.rowid, p.row_value FROM _hdb_mplan p, {typed} r
               WHERE p.table_name = {n} AND p.action = 'upsert' AND {fk}
                 AND NOT EXISTS (SELECT 1 FROM {ref} o WHERE {mc} AND NOT EXISTS (
                       SELECT 1 FROM _hdb_mplan d WHERE d.table_name = {rn} AND d.rowid = o._hdb_rowid))
                 AND NOT EXISTS (SELECT 1 FROM _hdb_mplan q, jsonb_populate_record(NULL::{rv}, q.row_value) q_
                       WHERE q.table_name = {rn} AND q.action = 'upsert' AND {mp})"""
        ).format(typed=_typed(view), n=L(name), fk=fk, ref=ref_rows, mc=match_current, rn=L(ref["table"]),
                 rv=ref_view, mp=match_planned)).fetchall()
        for rowid, value in bad:
            c = Conflict(name, rowid, "constraint", {"foreign_key": con.name}, value, None, None, list(con.cols))
            if strategy == "OURS":
                conn.execute("DELETE FROM _hdb_mplan WHERE table_name = %s AND rowid = %s", (name, rowid))
            elif strategy != "MANUAL":
                c.kind += "!"
            conflicts.append(c)


def _referenced_deletes(
    conn: psycopg.Connection[Any], target: Branch, t_tables: dict[str, tuple[TableVersion, TableInfo]],
    strategy: str, conflicts: list[Conflict],
) -> None:
    """Rows the plan deletes, or whose referenced key it changes, that rows of the target still reference.

    Under NO ACTION / RESTRICT that is a constraint conflict. The other actions (CASCADE, SET NULL,
    SET DEFAULT) are PostgreSQL's to run where both tables' rows are the target's root relations (the
    plan writes them, their keys' triggers fire). Elsewhere the plan writes the target's versions
    directly and no action would run: the rows would be left referencing nothing, so it is a conflict
    too (resolve it by running the action on the target, or with a strategy).
    """
    changed = {r[0] for r in conn.execute("SELECT DISTINCT table_name FROM _hdb_mplan")}
    for name, (version, info) in t_tables.items():
        for con in version.constraints:
            ref = json.loads(con.expr) if con.kind == "f" and con.expr else {}
            if ref.get("table") not in changed:
                continue
            ref_version, ref_info = t_tables[ref["table"]]
            native = target.id == info.root_branch == ref_info.root_branch and not ref.get("inherited")
            deletes = ref.get("on_delete", "a") in ("a", "r") or not native
            rekeys = ref.get("on_update", "a") in ("a", "r") or not native
            if not (deletes or rekeys):
                continue
            rows_a = _projected(I(*info.cur) if target.id == info.root_branch else I(target.phys_schema, name),
                                version, info, target)
            match = sql.SQL(" AND ").join(
                sql.SQL("a.{} = x.{}").format(I(c), I(rc)) for c, rc in zip(con.cols, ref["cols"], strict=True))
            ref_rows = _projected(I(*ref_info.cur) if target.id == ref_info.root_branch
                                  else I(target.phys_schema, ref["table"]), ref_version, ref_info, target)
            # a delete, or an upsert whose referenced columns differ from the row's current ones
            which = sql.SQL(" OR ").join([
                *([sql.SQL("p.action = 'delete'")] if deletes else []),
                *([sql.SQL("p.action = 'upsert' AND ({}, NULL) IS DISTINCT FROM ({}, NULL)").format(
                    sql.SQL(", ").join(sql.SQL("x.{}").format(I(rc)) for rc in ref["cols"]),
                    sql.SQL(", ").join(sql.SQL("({}).{}").format(_typed(I(target.user_schema, ref["table"])), I(rc))
                                       for rc in ref["cols"]))]
                  if rekeys else []),
            ])
            bad = conn.execute(sql.SQL(
                """SELECT p.rowid, to_jsonb(x.*) - '_hdb_rowid' FROM _hdb_mplan p
                   JOIN {refrows} x ON x._hdb_rowid = p.rowid
                   WHERE p.table_name = {rn} AND ({which})
                     AND EXISTS (SELECT 1 FROM {arows} a WHERE {m} AND NOT EXISTS (
                           SELECT 1 FROM _hdb_mplan d WHERE d.table_name = {an} AND d.rowid = a._hdb_rowid))"""
            ).format(refrows=ref_rows, rn=L(ref["table"]), which=which, arows=rows_a, m=match,
                     an=L(name))).fetchall()
            for rowid, value in bad:
                c = Conflict(ref["table"], rowid, "constraint", {"foreign_key": con.name}, None, value, None, [])
                if strategy == "OURS":
                    conn.execute("DELETE FROM _hdb_mplan WHERE table_name = %s AND rowid = %s", (ref["table"], rowid))
                elif strategy != "MANUAL":
                    c.kind += "!"
                conflicts.append(c)


def _projected(current: sql.Composable, version: TableVersion, info: TableInfo, target: Branch) -> sql.Composable:
    """The target's current rows with _hdb_rowid and logical column names (root: they are the physical ones)."""
    if target.id != info.root_branch:
        return sql.SQL("(SELECT * FROM {})").format(current)
    cols = sql.SQL(", ").join(I(c.name) for c in version.columns)
    return sql.SQL("(SELECT _hdb_rowid, {} FROM {})").format(cols, current)


# -- applying ------------------------------------------------------------------------------------------
def apply_all(conn: psycopg.Connection[Any], target: Branch, plans: list[TablePlan], source: str = "_hdb_mplan",
              progress: Any = None) -> None:
    lsn = int(conn.execute("SELECT heliosdb.txn_lsn(%s)", (target.id,)).fetchone()[0])  # type: ignore[index]
    snap = Snapshot(conn, chain(conn, target.id))
    by_name = {v.name: (v, tid) for tid, v in snap.tables.items()}
    for i, p in enumerate(plans):
        if progress is not None:
            progress(f"applying {p.table}", len(plans) + i, 2 * len(plans))
        if p.table not in by_name:
            continue
        version, tid = by_name[p.table]
        info = snap.info[tid]
        view = I(target.user_schema, p.table)
        conn.execute("DROP TABLE IF EXISTS _hdb_plan")
        conn.execute(sql.SQL(
            "CREATE TEMP TABLE _hdb_plan ON COMMIT DROP AS SELECT DISTINCT ON (p.rowid) p.rowid AS _hdb_rowid, "
            "p.action AS _hdb_action, r.* FROM {src} p, "
            "jsonb_populate_record(NULL::{v}, CASE WHEN p.action = 'delete' THEN NULL ELSE p.row_value END) r "
            "WHERE p.table_name = {n} ORDER BY p.rowid, (p.action = 'delete') DESC"
        ).format(src=I(source), v=view, n=L(p.table)))
        # values of a unique key swapped between rows (through a third value on the source) collide in the
        # root relation, which checks them row by row: those rows are written again (move_keys)
        try:
            apply_plan(conn, target, info, version, snap.names[tid], snap.br_columns[tid], "_hdb_plan", lsn,
                       move_keys=True)
        except errors.Error as exc:
            if exc.sqlstate != "23505":
                raise
            # with a hint: move_keys refused, a foreign key would act (ON DELETE) on rows written again
            raise MergeConflict(
                f'merge into "{target.name}" breaks a unique key of "{p.table}"', detail=exc.detail or exc.message,
                hint=(f'{exc.hint.split(". ")[0]}. Make the same change on "{target.name}" (through a third value), '
                      "then merge again." if exc.hint else
                      "Change the rows on one branch so that their keys agree, then merge again."),
            ) from None


# -- results ------------------------------------------------------------------------------------------------
# The columns of a merge's result, of a preview (DRY RUN) and of a MANUAL merge left pending: (name, type)
RESULT_COLUMNS = (("merge_id", "bigint"), ("strategy", "text"), ("table_name", "text"), ("rows_applied", "int"),
                  ("conflicts_resolved", "int"), ("target_lsn", "pg_lsn"))
PREVIEW_COLUMNS = (("item", "text"), ("table_name", "text"), ("detail", "text"))
PENDING_COLUMNS = (("merge_id", "bigint"), ("strategy", "text"), ("conflicts", "int"), ("conflicts_table", "text"))


def values_query(columns: tuple[tuple[str, str], ...], nrows: int) -> str:
    """A SELECT of `nrows` rows of query parameters, typed and named as `columns`."""
    row = "(" + ", ".join(f"%s::{t}" for _n, t in columns) + ")"
    names = ", ".join(n for n, _t in columns)
    return f"SELECT * FROM (VALUES {', '.join([row] * nrows)}) AS m({names})"


def result_columns(text: str) -> str | None:
    """A query with the columns a merge statement returns, no rows (None: it returns none). A MANUAL
    merge always returns the pending merge's (with no conflicts table when it was applied at once)."""
    stmt = st.parse_branch_statement(text)
    if isinstance(stmt, st.FinishMerge):
        columns = RESULT_COLUMNS if stmt.complete else None
    elif isinstance(stmt, st.MergeBranch):
        columns = PREVIEW_COLUMNS if stmt.dry_run else PENDING_COLUMNS if stmt.strategy == "MANUAL" else RESULT_COLUMNS
    else:
        columns = None
    if columns is None:
        return None
    return "SELECT " + ", ".join(f"NULL::{t} AS {n}" for n, t in columns) + " LIMIT 0"


def _result(session: Session, merge_id: int, strategy: str, plans: list[TablePlan], lsn: int) -> Result:
    from heliosdb.session import Result

    cur = session.conn.cursor()
    data = [(merge_id, strategy, p.table, p.applied, p.resolved, format_lsn(lsn)) for p in plans
            if p.applied or p.resolved]
    if not data:
        data = [(merge_id, strategy, None, 0, 0, format_lsn(lsn))]
    cur.execute(values_query(RESULT_COLUMNS, len(data)), [v for row in data for v in row])  # type: ignore[arg-type]
    return Result(status="MERGE", cursor=cur, rowcount=len(data))


def _manual_applied(session: Session, merge_id: int, plans: list[TablePlan], lsn: int) -> Result:
    """A MANUAL merge that found no conflict is applied at once; its result keeps the pending merge's
    columns (what Describe promised: a client cannot know beforehand), with no conflicts table."""
    from heliosdb.session import Result

    cur = session.conn.cursor()
    cur.execute(values_query(PENDING_COLUMNS, 1), (merge_id, "MANUAL", 0, None))  # type: ignore[arg-type]
    session.notices.append(f"NOTICE:  merge {merge_id} has no conflicts: applied "
                           f"{sum(p.applied for p in plans)} row(s) at LSN {format_lsn(lsn)}")
    return Result(status="MERGE", cursor=cur, rowcount=1)


def _common_state(src: Side, tgt: Side) -> tuple[str, str | None, str]:
    """The DRY RUN's "common ancestor": the fork, or the side a merge last brought in (git's merge base)."""
    if src.received is not None:
        return "common ancestor", tgt.branch.name, f"LSN {format_lsn(src.received.hi)}"
    if tgt.received is not None:
        return "common ancestor", src.branch.name, f"LSN {format_lsn(tgt.received.hi)}"
    return "common ancestor", None, f"LSN {format_lsn(min(src.base, tgt.base))}"


def _preview(session: Session, src: Side, tgt: Side, schema_tables: list[str], plans: list[TablePlan],
             conflicts: list[Conflict], started: float) -> Result:
    from heliosdb.session import Result

    rows_to_merge = sum(p.applied for p in plans)
    auto = sum(p.auto for p in plans)
    tables = sorted({p.table for p in plans if p.applied} | set(schema_tables) | {c.table for c in conflicts if c.table})
    items: list[tuple[str, str | None, str]] = [
        ("source", src.branch.name, f"head {format_lsn(src.head)}"),
        ("target", tgt.branch.name, f"head {format_lsn(tgt.head)}"),
        _common_state(src, tgt),
        ("tables modified", None, ", ".join(tables) or "none"),
        ("rows to merge", None, str(rows_to_merge)),
        ("auto-resolvable", None, str(auto)),
        ("conflicts", None, str(len(conflicts))),
    ]
    for c in conflicts[:20]:
        if c.kind == "schema":  # the merge would stop with HD011
            items.append(("conflict", c.table or None, f"schema: {c.key['schema']}"))
            continue
        detail = c.kind.rstrip("!").replace("_", " ")
        if c.columns:
            detail += f" ({', '.join(c.columns)})"
        items.append(("conflict", c.table, f"key {json.dumps(c.key)}: {detail}"))
    elapsed = (time.perf_counter() - started) * 1000
    items.append(("estimated time", None, f"{max(1.0, elapsed * 1.5):.0f} ms"))
    items.append(("storage impact", None, f"~{rows_to_merge * 2} row versions"))
    cur = session.conn.cursor()
    cur.execute(values_query(PREVIEW_COLUMNS, len(items)), [v for row in items for v in row])  # type: ignore[arg-type]
    # a preview is a result set: the SELECT tag, which libpq reads as a row count ("MERGE <n>" is
    # PostgreSQL 15's MERGE, and psql warns at a MERGE tag without one)
    return Result(status=f"SELECT {len(items)}", cursor=cur, rowcount=len(items))


__all__ = ["MAX_LSN", "Conflict", "MergeConflict", "MergeStateError", "TablePlan", "apply_all", "execute",
           "merge", "merge_base", "side_tables", "sides"]
