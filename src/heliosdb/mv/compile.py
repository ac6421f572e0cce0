"""What a view's defining query is made of, and how its storage keeps it.

compile_query() parses the query with sqlglot and sorts it into one class:

- ``spj``: selection, projection and inner joins over HeliosDB tables and other
  materialized views. Storage keeps every result row with the row ids of the
  base rows it came from (``_hdb_src<i>``).
- ``agg``: the same, grouped, with COUNT / SUM / AVG / MIN / MAX (or DISTINCT,
  a grouping without aggregates). Storage keeps one row per group: the group
  keys, the row count and, per aggregate, the running sums, non-null counts or
  extremes from which the user's columns are computed.
- ``full``: anything else; refreshed by running the query again.

The FROM clause of spj/agg queries is kept as a template in which each source
is the table name ``"__hdb_src_<i>__"`` (its slot); a refresh puts each
source's state at some point there, restricted to the changed rows or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify

from heliosdb.sql.names import quote_ident

VOLATILE = {
    "random", "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday",
    "nextval", "setval", "currval", "lastval", "gen_random_uuid", "uuid_generate_v4", "txid_current",
    "pg_current_xact_id", "current_timestamp", "current_time", "current_date", "localtime", "localtimestamp",
    "random_normal", "setseed", "pg_sleep",
}
_AGGS = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}


@dataclass
class Source:
    alias: str
    kind: str  # 'table' | 'mv'
    id: int
    name: str


@dataclass
class Agg:
    func: str  # count_star | count | sum | avg | min | max
    arg: str | None  # the argument, qualified SQL


@dataclass
class Plan:
    mode: str  # spj | agg | full
    reason: str  # why not incremental (full), else ''
    columns: list[dict[str, str]]  # the user's columns: name, type
    sources: list[Source] = field(default_factory=list)
    from_sql: str = ""  # FROM ... [JOIN ...] with a slot per source (source_slot)
    where_sql: str | None = None
    proj: list[str] = field(default_factory=list)  # spj: one expression per column
    groups: list[str] = field(default_factory=list)  # agg: GROUP BY expressions
    aggs: list[Agg] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)  # agg: per column ['group', k] | ['agg', a]
    scalar: bool = False  # agg without GROUP BY: always exactly one row
    deps_tables: list[int] = field(default_factory=list)
    deps_mvs: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        d = dict(d)
        d["sources"] = [Source(**s) for s in d.get("sources", [])]
        d["aggs"] = [Agg(**a) for a in d.get("aggs", [])]
        return cls(**d)

    # -- storage -------------------------------------------------------------
    def storage_columns(self) -> list[str]:
        """Storage columns after _hdb_rowid and _hdb_lsn (the history has the same ones)."""
        if self.mode == "spj":
            return ([f"_hdb_src{i}" for i in range(len(self.sources))]
                    + [quote_ident(c["name"]) for c in self.columns])
        if self.mode == "agg":
            out = [f"_hdb_g{k}" for k in range(len(self.groups))] + ["_hdb_cnt"]
            for a, agg in enumerate(self.aggs):
                out += _agg_storage(a, agg)
            return out
        return [quote_ident(c["name"]) for c in self.columns]

    def view_exprs(self, alias: str = "s") -> list[str]:
        """The user's columns computed from a storage row."""
        out = []
        for j, col in enumerate(self.columns):
            name, typ = quote_ident(col["name"]), col["type"]
            if self.mode != "agg":
                out.append(f"{alias}.{name}")
                continue
            kind, k = self.outputs[j]
            if kind == "group":
                out.append(f"CAST({alias}._hdb_g{k} AS {typ}) AS {name}")
                continue
            agg = self.aggs[k]
            if agg.func == "count_star":
                e = f"{alias}._hdb_cnt"
            elif agg.func == "count":
                e = f"{alias}._hdb_n{k}"
            elif agg.func == "sum":
                e = f"CASE WHEN {alias}._hdb_n{k} > 0 THEN {alias}._hdb_s{k} END"
            elif agg.func == "avg":
                e = f"CASE WHEN {alias}._hdb_n{k} > 0 THEN CAST({alias}._hdb_s{k} AS {typ}) / {alias}._hdb_n{k} END"
            else:
                e = f"{alias}._hdb_m{k}"
            out.append(f"CAST({e} AS {typ}) AS {name}")
        return out

    def storage_exprs(self) -> list[str]:
        """SELECT items over the (grouped) template that compute the storage columns."""
        if self.mode == "spj":
            srcs = [f"{quote_ident(s.alias)}._hdb_rowid" for s in self.sources]
            return srcs + self.proj
        out = list(self.groups) + ["count(*)"]
        for agg in self.aggs:
            if agg.func == "count":
                out.append(f"count({agg.arg})")
            elif agg.func in ("sum", "avg"):
                out += [f"sum({agg.arg})", f"count({agg.arg})"]
            elif agg.func in ("min", "max"):
                out += [f"{agg.func}({agg.arg})", f"count({agg.arg})"]
        return out


def _agg_storage(a: int, agg: Agg) -> list[str]:
    if agg.func == "count_star":
        return []
    if agg.func == "count":
        return [f"_hdb_n{a}"]
    if agg.func in ("sum", "avg"):
        return [f"_hdb_s{a}", f"_hdb_n{a}"]
    return [f"_hdb_m{a}", f"_hdb_n{a}"]


def _slot_name(i: int) -> str:
    return f"__hdb_src_{i}__"


def source_slot(i: int) -> str:
    """Where source i stands in Plan.from_sql (a quoted table name)."""
    return f'"{_slot_name(i)}"'


class _Full(Exception):
    """The query is outside the incremental classes (the message says why)."""


def compile_query(
    query: str, columns: list[dict[str, str]], tables: dict[str, tuple[int, dict[str, str]]],
    mvs: dict[str, tuple[int, dict[str, str]]],
) -> Plan:
    """Sort the query into a class. `tables`/`mvs`: visible name -> (id, {column: type})."""
    plan = Plan("full", "", columns)
    try:
        tree = sqlglot.parse_one(query, read="postgres")
    except (ParseError, ValueError) as exc:
        plan.reason = f"not analysed: {str(exc).splitlines()[0]}"
        return plan
    for t in tree.find_all(exp.Table):
        name = t.name
        if t.args.get("db"):
            continue
        if name in tables:
            plan.deps_tables.append(tables[name][0])
        elif name in mvs:
            plan.deps_mvs.append(mvs[name][0])
    plan.deps_tables = sorted(set(plan.deps_tables))
    plan.deps_mvs = sorted(set(plan.deps_mvs))
    try:
        _classify(plan, tree, tables, mvs)
    except _Full as why:
        plan.mode, plan.reason = "full", str(why)
        plan.sources, plan.proj, plan.groups, plan.aggs, plan.outputs = [], [], [], [], []
        plan.from_sql, plan.where_sql, plan.scalar = "", None, False
    return plan


def _classify(plan: Plan, tree: exp.Expression, tables: dict[str, Any], mvs: dict[str, Any]) -> None:
    if not isinstance(tree, exp.Select):
        raise _Full(f"{type(tree).__name__.lower()} queries are refreshed in full")
    for key, what in (("with", "WITH"), ("limit", "LIMIT"), ("offset", "OFFSET"), ("having", "HAVING"),
                      ("laterals", "LATERAL"), ("windows", "WINDOW")):
        if tree.args.get(key):
            raise _Full(f"{what} is refreshed in full")
    if any(isinstance(n, (exp.Subquery, exp.Exists)) or (isinstance(n, exp.Select) and n is not tree)
           for n in tree.walk()):
        raise _Full("subqueries are refreshed in full")
    if any(isinstance(n, exp.Window) for n in tree.walk()):
        raise _Full("window functions are refreshed in full")
    for n in tree.walk():
        fname = ""
        if isinstance(n, exp.Anonymous):
            fname = str(n.this).lower()
        elif isinstance(n, exp.Func):
            fname = n.sql("postgres").split("(")[0].strip().lower()
        if fname in VOLATILE or isinstance(n, (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)):
            raise _Full(f"{fname or 'a volatile function'} is not deterministic: refreshed in full")
    frm = tree.args.get("from_")
    if frm is None:
        raise _Full("a query without FROM is refreshed in full")
    items = [frm.this] + [j.this for j in tree.args.get("joins") or []]
    for j in tree.args.get("joins") or []:
        if j.side or (j.kind and j.kind.upper() not in ("INNER", "CROSS")) or j.args.get("using") or (
                j.method):
            raise _Full("outer, natural and USING joins are refreshed in full")
    schema: dict[str, dict[str, str]] = {}
    for it in items:
        if not isinstance(it, exp.Table) or it.args.get("db"):
            raise _Full("only HeliosDB tables and materialized views in FROM are maintained incrementally")
        if it.name in tables:
            schema[it.name] = tables[it.name][1]
        elif it.name in mvs:
            schema[it.name] = mvs[it.name][1]
        else:
            raise _Full(f'"{it.name}" is not a HeliosDB table or materialized view: refreshed in full')
    try:
        q = qualify(tree.copy(), schema=schema, dialect="postgres", quote_identifiers=True)
    except (OptimizeError, ValueError) as exc:
        raise _Full(f"not analysed: {exc}") from None
    assert isinstance(q, exp.Select)
    q.set("order", None)  # row order means nothing in a stored result
    sources: list[Source] = []
    qitems = [q.args["from_"].this] + [j.this for j in q.args.get("joins") or []]
    for i, it in enumerate(qitems):
        name, alias = it.name, it.alias_or_name
        kind, ref = ("table", tables[name][0]) if name in tables else ("mv", mvs[name][0])
        sources.append(Source(alias, kind, ref, name))
        it.replace(exp.Table(this=exp.to_identifier(_slot_name(i), quoted=True),
                             alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
    plan.sources = sources
    from_sql = q.args["from_"].sql("postgres")
    for j in q.args.get("joins") or []:
        from_sql += " " + j.sql("postgres")
    plan.from_sql = from_sql
    where = q.args.get("where")
    plan.where_sql = where.this.sql("postgres") if where is not None else None
    select_items = [e.unalias() if isinstance(e, exp.Alias) else e for e in q.expressions]
    if len(select_items) != len(plan.columns):
        raise _Full("the select list could not be matched to the columns")
    group = q.args.get("group")
    distinct = q.args.get("distinct")
    if distinct is not None and distinct.args.get("on"):
        raise _Full("DISTINCT ON is refreshed in full")
    has_agg = any(isinstance(n, exp.AggFunc) for e in select_items for n in e.walk())
    if group is None and not has_agg and distinct is None:
        plan.mode = "spj"
        plan.proj = [e.sql("postgres") for e in select_items]
        return
    if group is not None and (group.args.get("grouping_sets") or group.args.get("cube") or group.args.get("rollup")):
        raise _Full("GROUPING SETS, CUBE and ROLLUP are refreshed in full")
    if distinct is not None and (has_agg or group is not None):
        raise _Full("DISTINCT with aggregates is refreshed in full")
    plan.mode = "agg"
    groups = [g.sql("postgres") for g in (group.expressions if group is not None else [])]
    if distinct is not None:
        groups = [e.sql("postgres") for e in select_items]
    plan.groups = list(dict.fromkeys(groups))
    plan.scalar = not plan.groups
    for j, e in enumerate(select_items):
        text = e.sql("postgres")
        if text in plan.groups:
            plan.outputs.append(["group", plan.groups.index(text)])
            continue
        func = _AGGS.get(type(e))
        if func is None:
            raise _Full("only plain COUNT, SUM, AVG, MIN and MAX columns are maintained incrementally")
        arg = e.this
        if isinstance(arg, exp.Distinct) or e.args.get("distinct") or any(
                isinstance(n, exp.AggFunc) for n in arg.walk() if n is not e):
            raise _Full("aggregates over DISTINCT are refreshed in full")
        if isinstance(e, exp.Count) and (arg is None or isinstance(arg, exp.Star)):
            plan.aggs.append(Agg("count_star", None))
        elif func == "avg" and plan.columns[j]["type"] == "double precision":
            # avg(real) sums in double precision, as PostgreSQL's own (sum(real) would be real)
            plan.aggs.append(Agg(func, f"CAST({arg.sql('postgres')} AS double precision)"))
        else:
            plan.aggs.append(Agg(func, arg.sql("postgres")))
        plan.outputs.append(["agg", len(plan.aggs) - 1])
