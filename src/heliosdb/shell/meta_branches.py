"""Branch meta commands: \\branches, \\use, \\branch info | tree | diff."""

from __future__ import annotations

import json
import re
from typing import Any

from psycopg import sql

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, Rows, Text, command, nothing_found
from heliosdb.shell.context import ShellContext, human_size, object_name, pattern_regex
from heliosdb.shell.render import cell_text

G = "Branches"

_BRANCHES = """
SELECT name, coalesce(parent, ''), state, head_lsn::text, coalesce(fork_lsn::text, ''), storage_node, date_trunc('second', created_at)
FROM heliosdb.branches ORDER BY id
"""


@command("\\branches", "list branches (name, parent, state, head LSN, storage node, created)", group=G,
         args=[Arg("pattern", ArgKind.PATTERN, optional=True)], aliases=["\\db"])
def branches(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    regex = pattern_regex(args.get("pattern"))
    rows = [r for r in ctx.query(_BRANCHES) if regex is None or re.match(regex, r[0])]
    if not rows:
        return nothing_found("branch", args.get("pattern"))
    current = ctx.session.branch.name
    marked = [((f"{r[0]} *" if r[0] == current else r[0]), *r[1:]) for r in rows]
    return Rows(["Name", "Parent", "State", "Head LSN", "Fork LSN", "Storage node", "Created"], marked,
                footer=["* current branch"])


@command("\\use", "switch the session to a branch (USE BRANCH)", group=G, args=[Arg("branch", ArgKind.BRANCH)])
def use(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = object_name(args["branch"])
    stmt = sql.SQL("USE BRANCH {}").format(sql.Identifier(name)).as_string(ctx.session.conn)
    ctx.session.execute(stmt)
    ctx.refresh()
    return Text(f'You are now on branch "{name}".')


# -- \branch info ----------------------------------------------------------------------------------
_INFO = """
SELECT b.id, b.name, b.parent, b.fork_lsn, b.head_lsn, b.state, b.storage_node, b.compute_endpoint,
       b.created_at, b.created_by, b.options, r.retention_period, r.oldest_lsn,
       (SELECT count(*) FROM heliosdb._branches c WHERE c.parent_id = b.id AND c.state <> 'dropped'),
       (SELECT count(*) FROM heliosdb._commits c WHERE c.branch_id = b.id)
FROM heliosdb.branches b
LEFT JOIN heliosdb.retention r ON r.branch = b.name
WHERE b.name = %s
"""

def own_data(ctx: ShellContext, branch_id: int) -> tuple[int, int, int, int]:
    """(current bytes, current rows, history bytes, history versions) stored by the branch itself:
    its rows in every table's __br and __hist relations, plus the current relation of tables it created.
    Bytes are stored row sizes (after TOAST compression), counted as \\compression counts them."""
    from heliosdb.shell.meta_storage import branch_sizes

    cur_b = cur_n = hist_b = hist_n = 0
    for _tid, root, schema, name in ctx.query("SELECT id, root_branch, phys_schema, phys_name FROM heliosdb._tables"):
        cn, cb, hn, hb = branch_sizes(ctx, root, schema, name).get(branch_id, (0, 0, 0, 0))
        cur_b, cur_n, hist_b, hist_n = cur_b + cb, cur_n + cn, hist_b + hb, hist_n + hn
    return cur_b, cur_n, hist_b, hist_n


@command("\\branch info", "a branch's parent, fork and head LSN, node, endpoint, options, size of its own data",
         group=G, args=[Arg("branch", ArgKind.BRANCH, optional=True)])
def branch_info(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = object_name(args["branch"]) if "branch" in args else ctx.session.branch.name
    rows = ctx.query(_INFO, (name,))
    if not rows:
        return Failure(f'branch "{name}" does not exist')
    (bid, bname, parent, fork, head, state, node, endpoint, created, by, options, retention, oldest,
     children, commits) = rows[0]
    cur_b, cur_n, hist_b, hist_n = own_data(ctx, bid)
    opts = options if isinstance(options, dict) else json.loads(options or "{}")
    pairs: list[tuple[str, Any]] = [
        ("Name", bname), ("Id", bid), ("Parent", parent or "(none)"), ("Fork LSN", fork or ""), ("Head LSN", head),
        ("State", state), ("Storage node", node), ("Compute endpoint", endpoint),
        ("Created", f"{cell_text(created.replace(microsecond=0))} by {by}"),
        ("Options", ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(opts.items()))),
        ("Retention", f"{cell_text(retention)} (history kept from LSN {oldest})"),
        ("Children", children), ("Commits", commits),
        ("Own data", f"{human_size(cur_b)} in {cur_n} current row(s), "
                     f"{human_size(hist_b)} in {hist_n} history version(s)"),
    ]
    return Rows(["Property", "Value"], [(k, "" if v is None else str(v)) for k, v in pairs],
                numeric=[False, False], title=f'Branch "{bname}"', count=False)


# -- \branch tree ----------------------------------------------------------------------------------
@command("\\branch tree", "the branch hierarchy as a tree, with fork and head LSNs", group=G)
def branch_tree(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    rows = ctx.query("""SELECT b.id, b.name, b.parent_id, heliosdb.format_lsn(b.fork_lsn)::text,
                               heliosdb.format_lsn(b.head_lsn)::text, b.read_only
                        FROM heliosdb._branches b WHERE b.state <> 'dropped' ORDER BY b.id""")
    children: dict[int | None, list[tuple[Any, ...]]] = {}
    for r in rows:
        children.setdefault(r[2], []).append(r)
    current = ctx.session.branch.name
    lines: list[str] = []

    def label(r: tuple[Any, ...]) -> str:
        parts = [r[1]]
        if r[3]:
            parts.append(f"fork {r[3]}")
        parts.append(f"head {r[4]}")
        if r[5]:
            parts.append("read-only")
        text = f"{parts[0]}  ({', '.join(parts[1:])})"
        return text + ("  *" if r[1] == current else "")

    def walk(parent: int, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, r in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(prefix + ("└── " if last else "├── ") + label(r))
            walk(r[0], prefix + ("    " if last else "│   "))

    for root in children.get(None, []):
        lines.append(label(root))
        walk(root[0], "")
    lines.append("(* current branch)")
    return Text("\n".join(lines))


# -- \branch diff ----------------------------------------------------------------------------------
@command("\\branch diff", "rows added, changed, deleted per table between two branch heads; with a table, the rows",
         group=G, args=[Arg("a", ArgKind.BRANCH), Arg("b", ArgKind.BRANCH), Arg("table", ArgKind.TABLE, optional=True)])
def branch_diff(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    try:
        from heliosdb.merge import diff  # type: ignore[attr-defined]

        summarize, diff_rows = diff.summarize, diff.diff_rows  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return Failure("branch diff is not available yet")
    a, b = object_name(args["a"]), object_name(args["b"])
    if "table" in args:
        result = diff_rows(ctx.session, a, b, object_name(args["table"]))
        desc = getattr(result, "description", None)
        rows = result.fetchall() if hasattr(result, "fetchall") else list(result)
        headers = [d[0] for d in desc] if desc else [f"column{i + 1}" for i in range(len(rows[0]) if rows else 0)]
        return Rows(headers, rows, title=f'Rows of "{args["table"]}" that differ between {a} and {b}')
    diffs = summarize(ctx.session, a, b)
    rows = [(d.table, d.added, d.changed, d.deleted) for d in diffs]
    return Rows(["Table", "Added", "Changed", "Deleted"], rows, numeric=[False, True, True, True],
                title=f"Differences from {a} to {b}")
