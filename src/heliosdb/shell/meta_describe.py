"""\\d and friends, branch-aware: HeliosDB tables are what the catalog says the current branch sees
(their views live in the branch's schema: public for main, br_<name> otherwise); the internal
hdb_* schemas are never listed."""

from __future__ import annotations

import json
import re
from typing import Any

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, Rows, Text, command, nothing_found
from heliosdb.shell.context import ShellContext, object_name, pattern_regex

G = "Informational"
MAX_LSN = 9223372036854775807

# Tables the branch sees at its head: its own table versions, then each ancestor's as of the fork point.
VISIBLE_TABLES = """
SELECT v.table_id, v.name, v.columns, v.constraints, t.root_branch, rb.name, t.phys_schema, t.phys_name
FROM heliosdb._visible_versions(%(branch)s) v JOIN heliosdb._tables t ON t.id = v.table_id
LEFT JOIN heliosdb._branches rb ON rb.id = t.root_branch
ORDER BY v.name
"""

# Ancestry of a branch (itself first), for the indexes its reads use.
_CHAIN = """
WITH RECURSIVE up AS (
    SELECT id, parent_id, name FROM heliosdb._branches WHERE id = %s
    UNION ALL SELECT p.id, p.parent_id, p.name FROM heliosdb._branches p JOIN up ON p.id = up.parent_id)
SELECT id, name FROM up
"""

_INDEXES = """
SELECT ic.relname, c.relname, i.indisunique, i.indisprimary, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s)
ORDER BY ic.relname
"""

_RELATIONS = """
SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
ORDER BY c.relname
"""

_SCHEMA_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') AND n.nspname !~ '^(pg_|hdb_|br_)'
  AND n.nspname NOT IN ('information_schema', 'public')
ORDER BY 1, 2
"""

_KINDS = {"r": "plain table", "v": "view", "m": "materialized view", "S": "sequence", "f": "foreign table",
          "p": "partitioned table"}


# HeliosDB materialized views of the branch (as \dmv lists them): views in its schema over internal storage
_MVIEWS = """
SELECT z.name, m.query FROM heliosdb._mv_staleness() z JOIN heliosdb._mviews m ON m.id = z.mv_id
WHERE z.branch = heliosdb.current_branch()
"""
# the branch each of the branch's HeliosDB materialized views was created on
_MVIEW_ORIGINS = """
SELECT z.name, b.name FROM heliosdb._mv_staleness() z JOIN heliosdb._mviews m ON m.id = z.mv_id
JOIN heliosdb._branches b ON b.id = m.branch_id WHERE z.branch = heliosdb.current_branch()
"""


def helios_mviews(ctx: ShellContext) -> dict[str, str]:
    """name -> the query the user wrote, of the branch's HeliosDB materialized views."""
    return dict(ctx.query(_MVIEWS))


def visible_tables(ctx: ShellContext) -> list[tuple[Any, ...]]:
    """(table_id, name, columns, constraints, root_branch_id, root_branch_name, phys_schema, phys_name)."""
    return ctx.query(VISIBLE_TABLES, {"branch": ctx.session.branch.id})


def _match(regex: str | None, name: str) -> bool:
    return regex is None or re.match(regex, name) is not None


def _schema(ctx: ShellContext) -> str:
    return ctx.session.branch.user_schema


def _title(ctx: ShellContext, what: str) -> str:
    b = ctx.session.branch
    return f'{what} on branch "{b.name}" (schema {b.user_schema})'


# -- listings --------------------------------------------------------------------------------------
def split_qualified(text: str) -> tuple[str | None, str]:
    """schema.name (or a pattern) -> (schema or None, name), at the last dot outside double quotes."""
    quoted, dot = False, -1
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            dot = i
    return (text[:dot], text[dot + 1:]) if dot >= 0 else (None, text)


def _listing(ctx: ShellContext, pattern: str | None, kinds: set[str], what: str) -> Outcome:
    schema_pattern, name_pattern = split_qualified(pattern) if pattern else (None, None)
    if schema_pattern is not None and not _match(pattern_regex(schema_pattern), _schema(ctx)):
        return _other_schemas(ctx, schema_pattern, name_pattern, kinds, what, pattern)
    regex = pattern_regex(name_pattern)  # the branch's own schema (public on main) is the bare names' schema
    tables = visible_tables(ctx)
    names = {t[1] for t in tables}
    rows: list[tuple[Any, ...]] = []
    if "table" in kinds:
        rows += [(t[1], "table", t[5]) for t in tables if _match(regex, t[1])]
    mviews = dict(ctx.query(_MVIEW_ORIGINS)) if kinds & {"view", "materialized view"} else {}
    for name, kind, _owner in ctx.query(_RELATIONS, (_schema(ctx),)):
        label = "materialized view" if kind == "v" and name in mviews else _KINDS.get(kind, kind)
        if name in names or not _match(regex, name) or label not in kinds:
            continue
        rows.append((name, label, mviews.get(name, "") if label == "materialized view" else ""))
    if not rows:
        return nothing_found(what, pattern)
    rows.sort()
    return Rows(["Name", "Type", "Created on branch"], rows, title=_title(ctx, f"List of {what}"))


def _other_schemas(ctx: ShellContext, schema_pattern: str, name_pattern: str | None, kinds: set[str], what: str,
                   pattern: str | None) -> Outcome:
    """A listing for schemas other than the branch's (heliosdb.*): their relations, named with their schema;
    never the internal hdb_* schemas nor other branches' br_* schemas."""
    schema_regex, regex = pattern_regex(schema_pattern), pattern_regex(name_pattern)
    rows = [(f"{schema}.{name}", _KINDS.get(kind, kind).replace("plain table", "table"), "")
            for schema, name, kind in ctx.query(_SCHEMA_RELATIONS)
            if _match(schema_regex, schema) and _match(regex, name) and _KINDS.get(kind, kind) in kinds | {"plain table"}
            and ("table" in kinds or kind != "r")]
    if not rows:
        return nothing_found(what, pattern)
    return Rows(["Name", "Type", "Created on branch"], sorted(rows), title=f"List of {what}")


_P = [Arg("pattern", ArgKind.PATTERN, optional=True)]


@command("\\dt", "list tables of the current branch", group=G, args=_P)
def list_tables(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return _listing(ctx, args.get("pattern"), {"table"}, "tables")


@command("\\dv", "list views of the current branch", group=G, args=_P)
def list_views(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return _listing(ctx, args.get("pattern"), {"view"}, "views")


@command("\\dm", "list materialized views of the current branch", group=G, args=_P)
def list_matviews(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return _listing(ctx, args.get("pattern"), {"materialized view"}, "materialized views")


def _index_rows(ctx: ShellContext, table: tuple[Any, ...]) -> list[tuple[str, str, bool, bool, str, str]]:
    """(index, table, unique, primary, definition, created on) of one HeliosDB table on this branch: the stored
    indexes the branch's schema names (one made on the root after the branch's fork is not the branch's)."""
    tid, name, _cols, cons, root_id, root_name, phys_schema, phys_name = table
    named = {c["name"] for c in cons}
    chain = ctx.query(_CHAIN, (ctx.session.branch.id,))
    on_chain = {bid: bname for bid, bname in chain}
    out = []
    for idx, rel, unique, primary, definition in ctx.query(_INDEXES, (phys_schema, [phys_name, phys_name + "__br"])):
        using = definition[definition.find(" USING ") + 1:] if " USING " in definition else definition
        if rel == phys_name:
            if "_hdb_" in using or root_id not in on_chain or idx not in named:
                continue
            out.append((idx, name, unique, primary, using, root_name))
            continue
        m = re.fullmatch(r"(.+)__b(\d+)", idx)
        if m is None or int(m.group(2)) not in on_chain or m.group(1) not in named:
            continue
        using = using.replace("(_hdb_branch, ", "(")
        out.append((m.group(1), name, unique, primary, using, on_chain[int(m.group(2))]))
    return out


@command("\\di", "list indexes of the current branch's tables", group=G, args=_P)
def list_indexes(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    regex = pattern_regex(args.get("pattern"))
    rows = []
    for t in visible_tables(ctx):
        for idx, table, unique, primary, using, origin in _index_rows(ctx, t):
            if _match(regex, idx):
                kind = "primary key" if primary else "unique" if unique else ""
                rows.append((idx, table, kind, using, origin))
    if not rows:
        return nothing_found("indexes", args.get("pattern"))
    return Rows(["Name", "Table", "Kind", "Definition", "Created on branch"], sorted(rows),
                title=_title(ctx, "List of indexes"))


@command("\\dn", "list schemas (with the branch each belongs to)", group=G, args=_P)
def list_schemas(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    regex = pattern_regex(args.get("pattern"))
    rows = ctx.query(
        """SELECT n.nspname, pg_get_userbyid(n.nspowner),
                  CASE WHEN n.nspname = 'heliosdb' THEN 'HeliosDB catalog'
                       WHEN n.nspname = 'heliosdb_types' THEN 'types of every branch'
                       WHEN b.name IS NOT NULL THEN 'branch ' || b.name END
           FROM pg_namespace n
           LEFT JOIN heliosdb._branches b ON b.user_schema = n.nspname AND b.state <> 'dropped'
           WHERE n.nspname !~ '^(pg_|hdb_)' AND n.nspname <> 'information_schema'
             AND (n.nspname !~ '^br_' OR b.name IS NOT NULL)
           ORDER BY 1""")
    rows = [r for r in rows if _match(regex, r[0])]
    return Rows(["Name", "Owner", "Holds"], rows, title="List of schemas")


@command("\\du", "list roles", group=G, args=_P)
def list_roles(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    regex = pattern_regex(args.get("pattern"))
    rows = ctx.query(
        """SELECT rolname, array_to_string(array_remove(ARRAY[
                  CASE WHEN rolsuper THEN 'Superuser' END, CASE WHEN rolcreaterole THEN 'Create role' END,
                  CASE WHEN rolcreatedb THEN 'Create DB' END, CASE WHEN NOT rolcanlogin THEN 'Cannot login' END,
                  CASE WHEN rolreplication THEN 'Replication' END, CASE WHEN rolbypassrls THEN 'Bypass RLS' END],
                  NULL), ', ')
           FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1""")
    rows = [r for r in rows if _match(regex, r[0])]
    return Rows(["Role name", "Attributes"], rows, title="List of roles")


# -- \d --------------------------------------------------------------------------------------------
_FK_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}  # "a" (no action): not shown


def _fk_target(c: dict[str, Any]) -> dict[str, Any]:
    expr = c.get("expr")
    return json.loads(expr) if isinstance(expr, str) else (expr or {})


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def foreign_key_def(c: dict[str, Any]) -> str:
    """A foreign key from the catalog, as pg_get_constraintdef writes it (what psql's \\d shows)."""
    ref = _fk_target(c)
    cols, ref_cols = ", ".join(map(_ident, c["cols"])), ", ".join(map(_ident, ref.get("cols", [])))
    text = f"FOREIGN KEY ({cols}) REFERENCES {_ident(str(ref.get('table')))}({ref_cols})"
    if ref.get("match") == "f":
        text += " MATCH FULL"
    for event, key in (("UPDATE", "on_update"), ("DELETE", "on_delete")):
        if ref.get(key) in _FK_ACTIONS:
            text += f" ON {event} {_FK_ACTIONS[ref[key]]}"
    if ref.get("deferrable"):
        text += " DEFERRABLE" + (" INITIALLY DEFERRED" if ref.get("deferred") else "")
    if not ref.get("valid", True):
        text += " NOT VALID"
    return text


def _describe_table(ctx: ShellContext, t: tuple[Any, ...], tables: list[tuple[Any, ...]]) -> Rows:
    tid, name, cols, cons, _root_id, root_name, phys_schema, phys_name = t
    rows = [(c["name"], c["type"], "not null" if c.get("notnull") else "", c.get("default") or "") for c in cols]
    footer: list[str] = []
    idx = _index_rows(ctx, t)
    constraint_names = {c["name"] for c in cons if c["kind"] in ("p", "u") and not c.get("index")}
    lines = []
    for c in cons:
        if c["name"] in constraint_names:
            kind = "PRIMARY KEY" if c["kind"] == "p" else "UNIQUE CONSTRAINT"
            lines.append(f'    "{c["name"]}" {kind} ({", ".join(c["cols"])})')
    shown = set(constraint_names)
    for i, _table, unique, _primary, using, origin in idx:
        if i in shown:
            continue
        shown.add(i)
        note = f" (created on branch {origin})" if origin != ctx.session.branch.name else ""
        lines.append(f'    "{i}"{" UNIQUE," if unique else ""} {using}{note}')
    for c in cons:  # the schema's indexes with no stored index of their own (a branch's write trigger checks them)
        if c["kind"] in ("u", "x", "i") and c["name"] not in shown and c.get("using"):
            lines.append(f'    "{c["name"]}"{" UNIQUE," if c["kind"] != "i" else ""} USING {c["using"]}')
    if lines:
        footer += ["Indexes:", *lines]
    checks = [c for c in cons if c["kind"] == "c"]
    if checks:
        footer.append("Check constraints:")
        footer += [f'    "{c["name"]}" CHECK ({c["expr"]})' for c in checks]
    fks = [c for c in cons if c["kind"] == "f"]
    if fks:
        footer.append("Foreign-key constraints:")
        footer += [f'    "{c["name"]}" {foreign_key_def(c)}' for c in fks]
    referencing = [(other[1], c) for other in tables for c in other[3]
                   if c["kind"] == "f" and _fk_target(c).get("table") == name]
    if referencing:
        footer.append("Referenced by:")
        footer += [f'    TABLE "{child}" CONSTRAINT "{c["name"]}" {foreign_key_def(c)}' for child, c in referencing]
    footer.append(f"HeliosDB table {tid}, created on branch {root_name}; storage {phys_schema}.{phys_name}")
    return Rows(["Column", "Type", "Nullable", "Default"], rows,
                title=f'Table "{name}" on branch "{ctx.session.branch.name}"', footer=footer, count=False)


def _describe_relation(ctx: ShellContext, name: str) -> Outcome:
    schema, _, rel = name.rpartition(".")
    target = f"{ctx.ident(object_name(schema))}.{ctx.ident(object_name(rel))}" if schema else \
        f"{ctx.ident(_schema(ctx))}.{ctx.ident(object_name(rel))}"
    oid = ctx.scalar("SELECT to_regclass(%s)::oid", (target,))
    if oid is None and not schema:
        oid = ctx.scalar("SELECT to_regclass(%s)::oid", (ctx.ident(object_name(rel)),))
    if oid is None:
        return Failure(f'Did not find any relation named "{name}".')
    kind, shown, schema_name, rel_name = ctx.query(
        """SELECT c.relkind, c.oid::regclass::text, n.nspname, c.relname
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s""", (oid,))[0]
    rows = ctx.query(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod),
                  CASE WHEN a.attnotnull THEN 'not null' ELSE '' END, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", (oid,))
    footer = []
    mv_query = helios_mviews(ctx).get(rel_name) if kind == "v" and schema_name == _schema(ctx) else None
    if mv_query is not None:  # a HeliosDB materialized view: the user's query, not the view over its storage
        kind = "m"
        definition = mv_query.rstrip().rstrip(";") + ";"
    elif kind in ("v", "m"):
        definition = ctx.scalar("SELECT pg_get_viewdef(%s::oid, true)", (oid,)) or ""
    if kind in ("v", "m"):
        footer = ["View definition:", *("  " + ln for ln in definition.rstrip().splitlines())]
    label = _KINDS.get(kind, "relation").capitalize().replace("Plain table", "Table")
    return Rows(["Column", "Type", "Nullable", "Default"], rows, title=f'{label} "{shown}"', footer=footer, count=False)


@command("\\d", "describe a table, view or other relation; without a name, list relations", group=G,
         args=[Arg("name", ArgKind.RELATION, optional=True)])
def describe(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = args.get("name")
    if name is None or "*" in name or "?" in name:
        found = _listing(ctx, name, {"table", "view", "materialized view", "sequence", "plain table",
                                     "foreign table", "partitioned table"}, "relations")
        if name is not None and isinstance(found, Text):  # as psql: \d with a pattern fails when nothing matches
            return Failure(f'Did not find any relation named "{name}".')
        return found
    schema, rel = split_qualified(name)
    if schema is None or object_name(schema) == _schema(ctx):  # public.t on main is t
        wanted = object_name(rel)
        tables = visible_tables(ctx)
        for t in tables:
            if t[1] == wanted:
                return _describe_table(ctx, t, tables)
    return _describe_relation(ctx, name)
