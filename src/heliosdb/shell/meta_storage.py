"""\\compression: per table and branch, current vs history size, TOAST compression and history overhead."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, Rows, command
from heliosdb.shell.context import ShellContext, human_size, object_name
from heliosdb.shell.meta_describe import visible_tables

G = "Storage"

# Rows and stored bytes (pg_column_size: after TOAST compression) per branch in the shared relations.
_PER_BRANCH = sql.SQL("""
SELECT b, sum(n) FILTER (WHERE k = 'c'), sum(sz) FILTER (WHERE k = 'c'),
          sum(n) FILTER (WHERE k = 'h'), sum(sz) FILTER (WHERE k = 'h')
FROM (SELECT _hdb_branch AS b, 'c' AS k, count(*) FILTER (WHERE NOT x._hdb_del) AS n,
             sum(pg_column_size(x.*)) AS sz FROM {br} x GROUP BY 1
      UNION ALL
      SELECT _hdb_branch, 'h', count(*), sum(pg_column_size(x.*)) FROM {hist} x GROUP BY 1
      UNION ALL
      SELECT %s, 'c', count(*), sum(pg_column_size(x.*)) FROM {cur} x) s
GROUP BY b
""")

_VARLENA = """
SELECT a.attname, a.attcompression FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attlen = -1
  AND a.attname !~ '^_hdb_'
"""


def _ratio(ctx: ShellContext, rel: sql.Composable, rel_text: str) -> tuple[str, str]:
    """(compression method, raw/stored ratio of the variable-length columns) of one relation."""
    cols = ctx.query(_VARLENA, (rel_text,))
    default = ctx.scalar("SELECT current_setting('default_toast_compression')")
    methods = sorted({{"p": "pglz", "l": "lz4"}.get(c or "", default) for _, c in cols}) or [default]
    if not cols:
        return ", ".join(methods), "n/a (no variable-length columns)"
    raw = sql.SQL(" + ").join(sql.SQL("coalesce(sum(octet_length({}::text)), 0)").format(sql.Identifier(c))
                              for c, _ in cols)
    stored = sql.SQL(" + ").join(sql.SQL("coalesce(sum(pg_column_size({})), 0)").format(sql.Identifier(c))
                                 for c, _ in cols)
    r, s = ctx.query(sql.SQL("SELECT {}, {} FROM {}").format(raw, stored, rel))[0]
    return ", ".join(methods), (f"{float(r) / float(s):.2f}x" if s else "n/a (empty)")


def branch_sizes(ctx: ShellContext, root: int, schema: str, phys: str) -> dict[int, tuple[int, int, int, int]]:
    """branch id -> (current rows, current bytes, history versions, history bytes) of one table's relations."""
    q = _PER_BRANCH.format(br=sql.Identifier(schema, phys + "__br"), hist=sql.Identifier(schema, phys + "__hist"),
                           cur=sql.Identifier(schema, phys))
    return {b: (int(cn or 0), int(cb or 0), int(hn or 0), int(hb or 0)) for b, cn, cb, hn, hb in ctx.query(q, (root,))}


def _pct(hist: int, cur: int) -> str:
    if not hist:
        return "0%"
    return f"{100.0 * hist / cur:.0f}%" if cur else "n/a"


@command("\\compression", "per table and branch: current vs history size, TOAST compression, history overhead",
         group=G, args=[Arg("table", ArgKind.TABLE, optional=True)])
def compression(ctx: ShellContext, args: dict[str, str]) -> Outcome | list[Outcome]:
    wanted = object_name(args["table"]) if "table" in args else None
    tables = [t for t in visible_tables(ctx) if wanted is None or t[1] == wanted]
    if not tables:
        if wanted:
            return Failure(f'table "{wanted}" does not exist on branch "{ctx.session.branch.name}"')
        return Failure(f'branch "{ctx.session.branch.name}" has no tables')
    names = dict(ctx.query("SELECT id, name FROM heliosdb._branches"))
    sizes: list[tuple[Any, ...]] = []
    disk: list[tuple[Any, ...]] = []
    for _tid, name, _c, _k, root, _rname, schema, phys in tables:
        rels = {"current": (schema, phys), "branches": (schema, phys + "__br"), "history": (schema, phys + "__hist")}
        for b, (cur_n, cur_b, hist_n, hist_b) in sorted(branch_sizes(ctx, root, schema, phys).items()):
            sizes.append((name, names.get(b, f"#{b} (dropped)"), cur_n, human_size(cur_b), hist_n,
                          human_size(hist_b), _pct(hist_b, cur_b)))
        for label, (s, r) in rels.items():
            text = sql.Identifier(s, r).as_string(ctx.session.conn)
            total, toast = ctx.query("""SELECT pg_total_relation_size(c.oid),
                                               coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
                                        FROM pg_class c WHERE c.oid = %s::regclass""", (text,))[0]
            method, ratio = _ratio(ctx, sql.Identifier(s, r), text)
            disk.append((name, label, human_size(int(total)), human_size(int(toast)), method, ratio))
    return [
        Rows(["Table", "Branch", "Current rows", "Current size", "History versions", "History size",
              "History overhead"], sizes, numeric=[False, False, True, True, True, True, True],
             title="Data per table and branch (stored bytes, after compression)"),
        Rows(["Table", "Relation", "On disk", "TOAST", "Compression", "Ratio"], disk,
             numeric=[False, False, True, True, False, True], title="Relations on disk"),
    ]
