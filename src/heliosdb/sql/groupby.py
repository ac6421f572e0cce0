"""GROUP BY a table's primary key, selecting its other columns: PostgreSQL's functional dependency.

PostgreSQL lets `SELECT a.id, a.name, count(*) FROM a JOIN b ... GROUP BY a.id` through
because a.id is a's primary key, so a's other columns depend on it (Django's annotate()
groups this way). A HeliosDB table is a view to PostgreSQL, and a view has no primary
key: the same query fails with 42803. Here the columns of such a table that the query
uses outside aggregates are added to the GROUP BY list, which changes no group (they
depend on the key), after the list's last column, leaving the rest of the text as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlglot
from sqlglot import exp

from heliosdb.sql.names import quote_ident

# table name -> (its columns, its primary key columns), for the tables of the session's branch
Tables = Callable[[], dict[str, tuple[list[str], list[str]]]]


def needs_look(text: str) -> bool:
    """Cheap: may the text group by something (the caller then calls add_dependent_columns)."""
    return "group" in text.lower()


def add_dependent_columns(text: str, tables: Tables) -> str:
    """The text with the dependent columns added to its GROUP BY lists, or the text itself."""
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError):
        return text
    if tree is None:
        return text
    inserts: list[tuple[int, str]] = []
    known: dict[str, tuple[list[str], list[str]]] | None = None
    for select in tree.find_all(exp.Select):
        group = select.args.get("group")
        if group is None or not group.expressions or any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")):
            continue
        last = group.expressions[-1]
        ends = [i.meta.get("end") for i in last.find_all(exp.Identifier)] if isinstance(last, exp.Column) else []
        if not ends or None in ends:
            continue  # the list's end is not known for certain: left as it is
        sources = _sources(select)
        grouped = {_qualify(c, sources) for c in group.expressions if isinstance(c, exp.Column)}
        wanted = [q for c in _outside_aggregates(select) if (q := _qualify(c, sources)) not in grouped]
        stars = _stars(select, sources)
        if not wanted and not stars:
            continue
        if known is None:
            known = tables()
        for alias in stars:  # `*` and `t.*` stand for the table's columns
            table = known.get(sources[alias])
            wanted += [(alias, c) for c in (table[0] if table else []) if (alias, c) not in grouped]
        added: list[str] = []
        for alias, name in dict.fromkeys(wanted):
            table = sources.get(alias or "")
            if table is None or table not in known:
                continue
            columns, key = known[table]
            if key and name in columns and all((alias, k) in grouped for k in key):
                added.append(f", {quote_ident(alias)}.{quote_ident(name)}" if alias else f", {quote_ident(name)}")
        if added:
            inserts.append((max(ends) + 1, "".join(added)))  # type: ignore[type-var]
    for at, extra in sorted(inserts, reverse=True):
        text = text[:at] + extra + text[at:]
    return text


def _sources(select: exp.Select) -> dict[str, str]:
    """Alias (or name) -> table name, for the plain tables of the SELECT's FROM and JOINs."""
    out: dict[str, str] = {}
    frm = select.args.get("from") or select.args.get("from_")
    items = [frm.this] if frm is not None else []
    items += [j.this for j in select.args.get("joins") or []]
    for item in items:
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier) and not item.db:
            out[item.alias_or_name] = item.name
    return out


def _stars(select: exp.Select, sources: dict[str, str]) -> list[str]:
    """The aliases of the sources that `*` (all of them) and `alias.*` in the select list stand for."""
    out: list[str] = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            out += list(sources)
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and item.table in sources:
            out.append(item.table)
    return list(dict.fromkeys(out))


def _qualify(col: exp.Column, sources: dict[str, str]) -> tuple[str | None, str]:
    """(alias, column); an unqualified column belongs to the only source, if there is one."""
    if col.table:
        return col.table, col.name
    return (next(iter(sources)) if len(sources) == 1 else None), col.name


def _outside_aggregates(select: exp.Select) -> Iterator[exp.Column]:
    """The SELECT's own column references outside aggregates: its list, HAVING and ORDER BY."""
    roots: list[Any] = list(select.expressions)
    roots += [select.args[k] for k in ("having", "order") if select.args.get(k) is not None]
    for root in roots:
        yield from _columns(root)


def _columns(node: exp.Expression) -> Iterator[exp.Column]:
    if isinstance(node, exp.Column):
        yield node
        return
    if isinstance(node, exp.AggFunc | exp.Window | exp.Subquery | exp.Select):
        return
    for child in node.iter_expressions():
        yield from _columns(child)
