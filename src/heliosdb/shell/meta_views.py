"""Materialized-view meta commands: \\dmv, \\dmv staleness, \\dmv refresh, \\dmv deps."""

from __future__ import annotations

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, Rows, RunScript, command
from heliosdb.shell.context import ShellContext, object_name

G = "Materialized views"

_ON_BRANCH = "branch = heliosdb.current_branch()"


@command("\\dmv", "list materialized views, or show one: definition, options, staleness, last refresh",
         group=G, args=[Arg("view", ArgKind.MVIEW, optional=True)])
def dmv(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    if "view" in args:
        return _one(ctx, object_name(args["view"]))
    rows = ctx.query(
        f"""SELECT name, strategy, priority, staleness, pending_changes, status, last_refresh_at,
                   last_refresh_mode, last_refresh_lsn::text
            FROM heliosdb._mv_staleness() WHERE {_ON_BRANCH} ORDER BY name""")
    return Rows(["Name", "Strategy", "Priority", "Staleness", "Pending", "Status", "Last refresh", "Mode", "LSN"],
                rows, numeric=[False, False, False, True, True, False, False, False, False],
                title="Materialized views")


def _one(ctx: ShellContext, name: str) -> Outcome:
    row = ctx.query(
        f"""SELECT z.name, m.query, z.strategy, z.priority, z.staleness_threshold, z.max_staleness_seconds,
                   z.max_cpu_percent, z.staleness, z.own_staleness, z.pending_changes, z.base_rows, z.age_seconds,
                   z.reads_since_refresh, z.status, z.last_refresh_at, z.last_refresh_lsn::text, z.last_refresh_mode,
                   z.last_refresh_reason, z.last_refresh_ms, z.next_scheduled, z.last_error, m.plan->>'mode',
                   m.plan->>'reason'
            FROM heliosdb._mv_staleness() z JOIN heliosdb._mviews m ON m.id = z.mv_id
            WHERE z.{_ON_BRANCH} AND z.name = %s""", (name,))
    if not row:
        return Failure(f'Did not find any materialized view named "{name}".')
    (vname, query, strategy, priority, threshold, max_s, max_cpu, stale, own, pending, base, age, reads, status,
     at, lsn, mode, reason, ms, nxt, error, kind, why) = row[0]
    maintained = {"spj": "incrementally (selection, projection, joins)",
                  "agg": "incrementally (grouping and aggregates)"}.get(kind, f"by full recomputation ({why})")
    props = [
        ("Definition", query),
        ("Maintained", maintained),
        ("Strategy", strategy), ("Priority", priority), ("Staleness threshold", threshold),
        ("Max staleness (s)", max_s), ("Max CPU (%)", max_cpu),
        ("Staleness", stale),
        ("  own (changes, age, reads)", own),
        ("  pending changes", f"{pending} of ~{base} base rows" if pending is not None else None),
        ("  age (s)", round(age, 1) if age is not None else None),
        ("  reads since refresh", reads),
        ("Status", status),
        ("Last refresh", at), ("  at LSN", lsn), ("  mode", mode), ("  why", reason),
        ("  took (ms)", round(ms, 1) if ms is not None else None),
        ("Next scheduled", nxt),
    ]
    if error:
        props.append(("Last error", error))
    return Rows(["Property", "Value"], [(k, v) for k, v in props], title=f'Materialized view "{vname}"',
                count=False)


@command("\\dmv staleness", "staleness of every materialized view and its components", group=G)
def dmv_staleness(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    rows = ctx.query(
        f"""SELECT name, staleness, own_staleness,
                   round((least(1.0, coalesce(pending_changes, 0)::float8 / greatest(base_rows, 1)))::numeric, 4),
                   round((least(1.0, age_seconds / greatest(max_staleness_seconds, 0.001)))::numeric, 4),
                   reads_since_refresh, staleness_threshold, status
            FROM heliosdb._mv_staleness() WHERE {_ON_BRANCH} ORDER BY staleness DESC, name""")
    return Rows(["Name", "Staleness", "Own", "Changes", "Age", "Reads", "Threshold", "Status"], rows,
                numeric=[False, True, True, True, True, True, True, False], title="Staleness",
                footer=["staleness = max(own, inputs' staleness); own = (1 - (1 - changes)(1 - age)) * (0.5 + 0.5 * "
                        "read frequency); 0 without pending changes (docs/materialized-views.md)"])


@command("\\dmv refresh", "refresh a materialized view now (with a progress indicator)", group=G,
         args=[Arg("view", ArgKind.MVIEW)])
def dmv_refresh(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = object_name(args["view"])
    quoted = '"' + name.replace('"', '""') + '"'
    return RunScript(f"REFRESH MATERIALIZED VIEW {quoted};\n", "\\dmv refresh")


@command("\\dmv deps", "what a materialized view depends on", group=G, args=[Arg("view", ArgKind.MVIEW)])
def dmv_deps(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = object_name(args["view"])
    exists = ctx.query(f"SELECT 1 FROM heliosdb._mv_staleness() WHERE {_ON_BRANCH} AND name = %s", (name,))
    if not exists:
        return Failure(f'Did not find any materialized view named "{name}".')
    rows = ctx.query(
        """WITH RECURSIVE me AS (
               SELECT z.mv_id FROM heliosdb._mv_staleness() z WHERE z.branch = heliosdb.current_branch() AND z.name = %s),
           up(id, kind, depth) AS (
               SELECT d.dep_id, d.kind, 1 FROM heliosdb._mv_deps d JOIN me ON d.mv_id = me.mv_id
               UNION
               SELECT d.dep_id, d.kind, up.depth + 1 FROM heliosdb._mv_deps d JOIN up ON up.kind = 'mv' AND d.mv_id = up.id),
           down(id, depth) AS (
               SELECT d.mv_id, 1 FROM heliosdb._mv_deps d JOIN me ON d.kind = 'mv' AND d.dep_id = me.mv_id
               UNION
               SELECT d.mv_id, down.depth + 1 FROM heliosdb._mv_deps d JOIN down ON d.kind = 'mv' AND d.dep_id = down.id)
           SELECT 'reads', CASE up.kind WHEN 'mv' THEN 'materialized view' ELSE 'table' END,
                  coalesce(m.name, (SELECT v.name FROM heliosdb._table_versions v WHERE v.table_id = up.id
                                    ORDER BY v.valid_from DESC LIMIT 1)), min(up.depth)
           FROM up LEFT JOIN heliosdb._mviews m ON up.kind = 'mv' AND m.id = up.id GROUP BY 1, 2, 3
           UNION ALL
           SELECT 'read by', 'materialized view', m.name, min(down.depth)
           FROM down JOIN heliosdb._mviews m ON m.id = down.id GROUP BY 1, 2, 3
           ORDER BY 1 DESC, 4, 3""", (name,))
    return Rows(["Direction", "Kind", "Name", "Depth"], rows, numeric=[False, False, False, True],
                title=f'Dependencies of "{name}"')
