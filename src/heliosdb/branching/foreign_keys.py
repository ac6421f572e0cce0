"""Foreign keys on branches that inherit them: the checks and actions of a branch's write trigger.

On a table's root branch PostgreSQL enforces foreign keys natively (they are constraints of
the root relations). Another branch writes through its views' INSTEAD OF trigger, so the
trigger does what PostgreSQL's RI triggers would, over what the branch sees:

- a written row's key must exist in the referenced table (23503, PostgreSQL's message);
- deleting a referenced row, or changing its key, applies the constraint's action to the
  referencing rows: RESTRICT refuses (23503) before the row is written; CASCADE, SET NULL and
  SET DEFAULT write them through their table's view after it (so they are versioned, and
  cascade further); NO ACTION refuses after those, as PostgreSQL checks it after its cascades.

Row by row, as each row is written: PostgreSQL checks NO ACTION at the end of the statement, so
a statement that needs its own later rows to satisfy a key (a self-referencing row, a parent
inserted after its child) fails here where PostgreSQL accepts it (docs/sql-reference.md).
Write functions name other tables' views, so DDL regenerates those of related tables
(layout.refresh_writes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg import sql

from heliosdb.catalog.model import Branch, Constraint, Snapshot, TableInfo, TableVersion

I = sql.Identifier  # noqa: E741
L = sql.Literal


@dataclass(frozen=True)
class ForeignKey:
    con: Constraint
    child: TableVersion  # the referencing table
    parent: TableVersion  # the referenced table
    cols: list[str]  # referencing columns
    ref_cols: list[str]  # referenced columns
    on_delete: str  # PostgreSQL's codes: a no action, r restrict, c cascade, n set null, d set default
    on_update: str
    match: str = "s"  # s MATCH SIMPLE, f MATCH FULL (p: PARTIAL, which PostgreSQL does not implement)
    deferrable: bool = False  # its checks wait for the end of the statement, or the commit when deferred
    deferred: bool = False  # INITIALLY DEFERRED


def _referenced(snap: Snapshot, ref: dict[str, str]) -> TableVersion | None:
    """The table an FK's JSON names, as the branch sees it (None: not there, e.g. dropped on the branch)."""
    by_name: dict[str, list[TableVersion]] | None = getattr(snap, "_hdb_by_phys_name", None)
    if by_name is None:
        by_name = {}
        for v in snap.tables.values():
            if not v.dropped:
                by_name.setdefault(snap.info[v.table_id].phys_name, []).append(v)
        snap._hdb_by_phys_name = by_name  # type: ignore[attr-defined]
    # older catalogs recorded the name only: then it must be unambiguous
    found = [v for v in by_name.get(ref["table"], [])
             if snap.info[v.table_id].phys_schema == ref.get("schema", snap.info[v.table_id].phys_schema)]
    return found[0] if len(found) == 1 else None


def _foreign_keys(snap: Snapshot, version: TableVersion) -> list[ForeignKey]:
    out = []
    for con in version.constraints:
        if con.kind != "f" or not con.expr:
            continue
        ref = json.loads(con.expr)
        parent = _referenced(snap, ref)
        if parent is None:
            continue
        out.append(ForeignKey(con, version, parent, list(con.cols), list(ref["cols"]),
                              ref.get("on_delete", "a"), ref.get("on_update", "a"), ref.get("match", "s"),
                              bool(ref.get("deferrable")), bool(ref.get("deferred"))))
    return out


def _by_parent(snap: Snapshot) -> dict[int, list[ForeignKey]]:
    """Every visible foreign key by referenced table, once per snapshot (a branch's build asks per table)."""
    index: dict[int, list[ForeignKey]] | None = getattr(snap, "_hdb_fk_by_parent", None)
    if index is None:
        index = {}
        for v in snap.tables.values():
            if not v.dropped:
                for fk in _foreign_keys(snap, v):
                    index.setdefault(fk.parent.table_id, []).append(fk)
        snap._hdb_fk_by_parent = index  # type: ignore[attr-defined]
    return index


def outgoing(snap: Snapshot, version: TableVersion) -> list[ForeignKey]:
    return _foreign_keys(snap, version)


def incoming(snap: Snapshot, version: TableVersion) -> list[ForeignKey]:
    """Every visible table's foreign keys that reference `version`'s table."""
    return list(_by_parent(snap).get(version.table_id, []))


def _key_text(rec: str, cols: list[str]) -> sql.Composable:
    return sql.SQL(" || ', ' || ").join(sql.SQL("coalesce({}.{}::text, 'null')").format(sql.SQL(rec), I(c)) for c in cols)


def _view(branch: Branch, snap: Snapshot, v: TableVersion) -> sql.Composable:
    """What the branch reads of table v, with _hdb_rowid: its internal view, or the root relation."""
    info = snap.info[v.table_id]
    if info.root_branch == branch.id:
        return I(*info.cur)
    return I(branch.phys_schema, v.name)


def _queue(branch: Branch, fk: ForeignKey, check: sql.Composable, args: list[sql.Composable],
           message: str, detail: sql.Composable, table: str) -> sql.Composable:
    """PL/pgSQL: hand a DEFERRABLE key's check to the session's queue (catalog fk_deferred.sql), whose
    constraint triggers run it when PostgreSQL would: at the end of the statement, or at commit."""
    return sql.SQL("PERFORM heliosdb._fk_queue({q}, ARRAY[{a}]::text[], {d}, {m}, {dt}, {cn}, {t}, {s});").format(
        q=L(check.as_string(None)), a=sql.SQL(", ").join(args), d=L(fk.deferred), m=L(message), dt=detail,
        cn=L(fk.con.name), t=L(table), s=L(branch.user_schema))


def _typed(version: TableVersion, cols: list[str]) -> list[sql.Composable]:
    """$1[k]::type for each column: the queued check's arguments come as text."""
    types = {c.name: c.type for c in version.columns}
    return [sql.SQL("$1[{}]::{}").format(sql.SQL(str(k + 1)), sql.SQL(types.get(c, "text"))) for k, c in enumerate(cols)]


def check_sql(snap: Snapshot, branch: Branch, fks: list[ForeignKey], where: sql.Composable, *,
              queue: bool = True) -> list[sql.Composable]:
    """PL/pgSQL: NEW's keys exist in the tables they reference (INSERT, or an UPDATE that changes them).

    queue: a DEFERRABLE key is left to queued_checks (run after the row is written); without it (a
    caller that is itself a deferrable trigger) every key is checked here, at once.
    """
    return _checks(snap, branch, fks, where, "immediate" if queue else "all")


def queued_checks(snap: Snapshot, branch: Branch, fks: list[ForeignKey]) -> list[sql.Composable]:
    """PL/pgSQL, after NEW is written: queue the checks of its DEFERRABLE keys (_queue). Queued after
    the write, a check PostgreSQL makes at once (INITIALLY IMMEDIATE, SET CONSTRAINTS ... IMMEDIATE)
    runs when queued and finds the row; a deferred one runs at commit."""
    return _checks(snap, branch, fks, sql.SQL(""), "queued")


def _checks(snap: Snapshot, branch: Branch, fks: list[ForeignKey], where: sql.Composable,
            which: str) -> list[sql.Composable]:
    out = []
    for fk in fks:
        names = snap.names[fk.parent.table_id]
        by_name = {c.name: c.col for c in fk.parent.columns}
        if any(c not in by_name for c in fk.ref_cols):
            continue
        # the root relation's physical column names, or the internal view's logical ones
        at_root = snap.info[fk.parent.table_id].root_branch == branch.id
        ref_cols = [names[by_name[c]] if at_root else c for c in fk.ref_cols]
        queued = which != "all" and fk.deferrable
        if queued != (which == "queued"):
            continue
        if fk.match == "f" and len(fk.cols) > 1:  # MATCH FULL: all key columns NULL, or none
            out.append(sql.SQL(
                "IF num_nulls({new}) BETWEEN 1 AND {n} THEN RAISE EXCEPTION USING ERRCODE = '23503', "
                "MESSAGE = {msg}, DETAIL = 'MATCH FULL does not allow mixing of null and nonnull key values.', "
                "CONSTRAINT = {cn}, {where}; END IF;"
            ).format(new=sql.SQL(", ").join(sql.SQL("NEW.{}").format(I(c)) for c in fk.cols), n=L(len(fk.cols) - 1),
                     msg=L(f'insert or update on table "{fk.child.name}" violates foreign key constraint "{fk.con.name}"'),
                     cn=L(fk.con.name), where=where))
        if queued:
            # at the check's time: the row written (found by its row id, the last argument) no longer has the key,
            # or the referenced row exists
            typed = _typed(fk.child, fk.cols)
            check = sql.SQL(
                "SELECT NOT EXISTS (SELECT 1 FROM {cv} s WHERE s._hdb_rowid = $1[{n}]::bigint AND {sm}) "
                "OR EXISTS (SELECT 1 FROM {rv} r WHERE {rm})"
            ).format(cv=I(branch.phys_schema, fk.child.name), n=sql.SQL(str(len(fk.cols) + 1)),
                     sm=sql.SQL(" AND ").join(sql.SQL("s.{} = {}").format(I(c), t) for c, t in zip(fk.cols, typed, strict=True)),
                     rv=_view(branch, snap, fk.parent),
                     rm=sql.SQL(" AND ").join(sql.SQL("r.{} = {}").format(I(rc), t) for rc, t in zip(ref_cols, typed, strict=True)))
            out.append(sql.SQL("IF {nn} AND (TG_OP = 'INSERT' OR ({new}) IS DISTINCT FROM ({old})) THEN {q} END IF;").format(
                nn=sql.SQL(" AND ").join(sql.SQL("NEW.{} IS NOT NULL").format(I(c)) for c in fk.cols),
                new=sql.SQL(", ").join(sql.SQL("NEW.{}").format(I(c)) for c in fk.cols) + sql.SQL(", NULL"),
                old=sql.SQL(", ").join(sql.SQL("OLD.{}").format(I(c)) for c in fk.cols) + sql.SQL(", NULL"),
                q=_queue(branch, fk, check, [*(sql.SQL("NEW.{}::text").format(I(c)) for c in fk.cols),
                                             sql.SQL("_hdb_rid::text")],
                         f'insert or update on table "{fk.child.name}" violates foreign key constraint "{fk.con.name}"',
                         sql.SQL("'Key (' || {} || ')=(' || {} || ') is not present in table ' || {} || '.'").format(
                             L(", ".join(fk.cols)), _key_text("NEW", fk.cols), L(f'"{fk.parent.name}"')),
                         fk.child.name)))
            continue
        out.append(sql.SQL(
            "IF {nn} AND (TG_OP = 'INSERT' OR ({new}) IS DISTINCT FROM ({old})) "
            "AND NOT EXISTS (SELECT 1 FROM {rv} r WHERE {m}) THEN RAISE EXCEPTION USING ERRCODE = '23503', "
            "MESSAGE = {msg}, DETAIL = 'Key (' || {cols} || ')=(' || {kt} || ') is not present in table ' || {pt} || '.', "
            "CONSTRAINT = {cn}, {where}; END IF;"
        ).format(
            nn=sql.SQL(" AND ").join(sql.SQL("NEW.{} IS NOT NULL").format(I(c)) for c in fk.cols),
            new=sql.SQL(", ").join(sql.SQL("NEW.{}").format(I(c)) for c in fk.cols) + sql.SQL(", NULL"),
            old=sql.SQL(", ").join(sql.SQL("OLD.{}").format(I(c)) for c in fk.cols) + sql.SQL(", NULL"),
            rv=_view(branch, snap, fk.parent),
            m=sql.SQL(" AND ").join(sql.SQL("r.{} = NEW.{}").format(I(rc), I(c))
                                    for c, rc in zip(fk.cols, ref_cols, strict=True)),
            msg=L(f'insert or update on table "{fk.child.name}" violates foreign key constraint "{fk.con.name}"'),
            cols=L(", ".join(fk.cols)), kt=_key_text("NEW", fk.cols), pt=L(f'"{fk.parent.name}"'),
            cn=L(fk.con.name), where=where,
        ))
    return out


def action_sql(branch: Branch, fks: list[ForeignKey], op: str, *, refuse: bool) -> list[sql.Composable]:
    """PL/pgSQL for OLD, a referenced row deleted (op 'DELETE') or whose key changes ('UPDATE').

    refuse: the RESTRICT checks, run before the row is written; else the other actions, run
    after it (a cascaded key must find its new parent; SET DEFAULT must not find the old one),
    and then the NO ACTION checks (which PostgreSQL makes after the cascades).
    """
    out, no_action = [], []
    for fk in fks:
        action = fk.on_delete if op == "DELETE" else fk.on_update
        if (action == "r") != refuse:
            continue
        match = sql.SQL(" AND ").join(sql.SQL("a.{} = OLD.{}").format(I(c), I(rc))
                                      for c, rc in zip(fk.cols, fk.ref_cols, strict=True))
        child = I(branch.user_schema, fk.child.name)
        if action in ("a", "r"):
            if action == "a" and fk.deferrable:  # PostgreSQL checks it at the end of the statement, or at commit
                no_action.append(_when_changed(op, fk, _queue_still_referenced(branch, fk)))
                continue
            stmt = _still_referenced(branch, fk, match)
            if action == "a":
                no_action.append(_when_changed(op, fk, stmt))
                continue
        elif action == "c" and op == "DELETE":
            stmt = sql.SQL("DELETE FROM {c} a WHERE {m};").format(c=child, m=match)
        else:
            value = {"c": lambda rc: sql.SQL("NEW.{}").format(I(rc)), "n": lambda rc: sql.SQL("NULL"),
                     "d": lambda rc: sql.SQL("DEFAULT")}[action]
            stmt = sql.SQL("UPDATE {c} a SET {s} WHERE {m};").format(
                c=child, m=match, s=sql.SQL(", ").join(sql.SQL("{} = {}").format(I(c), value(rc))
                                                       for c, rc in zip(fk.cols, fk.ref_cols, strict=True)))
            if action == "d":  # a default equal to the old key still references it, as PostgreSQL says
                stmt = stmt + sql.SQL(" ") + _still_referenced(branch, fk, match)
        out.append(_when_changed(op, fk, stmt))
    return out + no_action


def _when_changed(op: str, fk: ForeignKey, stmt: sql.Composable) -> sql.Composable:
    """For an UPDATE, only when it changes the referenced key."""
    if op != "UPDATE":
        return stmt
    changed = sql.SQL("TG_OP = 'UPDATE' AND ({}, NULL) IS DISTINCT FROM ({}, NULL)").format(
        sql.SQL(", ").join(sql.SQL("OLD.{}").format(I(rc)) for rc in fk.ref_cols),
        sql.SQL(", ").join(sql.SQL("NEW.{}").format(I(rc)) for rc in fk.ref_cols))
    return sql.SQL("IF {} THEN {} END IF;").format(changed, stmt)


def _queue_still_referenced(branch: Branch, fk: ForeignKey) -> sql.Composable:
    """PL/pgSQL: queue the check that no row references OLD's key, unless a row with that key is there again."""
    typed = _typed(fk.parent, fk.ref_cols)
    check = sql.SQL(
        "SELECT NOT EXISTS (SELECT 1 FROM {cv} a WHERE {am}) OR EXISTS (SELECT 1 FROM {pv} r WHERE {rm})"
    ).format(cv=I(branch.user_schema, fk.child.name),
             am=sql.SQL(" AND ").join(sql.SQL("a.{} = {}").format(I(c), t) for c, t in zip(fk.cols, typed, strict=True)),
             pv=I(branch.phys_schema, fk.parent.name),
             rm=sql.SQL(" AND ").join(sql.SQL("r.{} = {}").format(I(rc), t) for rc, t in zip(fk.ref_cols, typed, strict=True)))
    return _queue(branch, fk, check, [sql.SQL("OLD.{}::text").format(I(rc)) for rc in fk.ref_cols],
                  f'update or delete on table "{fk.parent.name}" violates foreign key constraint "{fk.con.name}" '
                  f'on table "{fk.child.name}"',
                  sql.SQL("'Key (' || {} || ')=(' || {} || ') is still referenced from table ' || {} || '.'").format(
                      L(", ".join(fk.ref_cols)), _key_text("OLD", fk.ref_cols), L(f'"{fk.child.name}"')),
                  fk.child.name)


def _still_referenced(branch: Branch, fk: ForeignKey, match: sql.Composable) -> sql.Composable:
    """PL/pgSQL: refuse (23503) while a row of the referencing table matches OLD's key.

    The error names the referencing table in its table field, as PostgreSQL's does.
    """
    own = fk.child.table_id == fk.parent.table_id
    where = sql.SQL("TABLE = {}, SCHEMA = {}").format(L(fk.child.name), L(branch.user_schema))
    # a self-referencing row does not hold its own key: read the branch's rows with their ids
    src = I(branch.phys_schema, fk.child.name) if own else I(branch.user_schema, fk.child.name)
    return sql.SQL(
        "IF EXISTS (SELECT 1 FROM {src} a WHERE {m}{skip}) THEN RAISE EXCEPTION USING ERRCODE = '23503', "
        "MESSAGE = {msg}, DETAIL = 'Key (' || {rcols} || ')=(' || {kt} || ') is still referenced from table ' "
        "|| {ct} || '.', CONSTRAINT = {cn}, {where}; END IF;"
    ).format(
        src=src, m=match, skip=sql.SQL(" AND a._hdb_rowid <> _hdb_rid") if own else sql.SQL(""),
        msg=L(f'update or delete on table "{fk.parent.name}" violates foreign key constraint '
              f'"{fk.con.name}" on table "{fk.child.name}"'),
        rcols=L(", ".join(fk.ref_cols)), kt=_key_text("OLD", fk.ref_cols), ct=L(f'"{fk.child.name}"'),
        cn=L(fk.con.name), where=where,
    )


def related(snap: Snapshot, info: TableInfo) -> list[TableVersion]:
    """The other visible tables whose write trigger names `info`'s table (an FK either way)."""
    children, parents = related_by_side(snap, info)
    return children + parents


def related_by_side(snap: Snapshot, info: TableInfo) -> tuple[list[TableVersion], list[TableVersion]]:
    """The other visible tables with a foreign key to `info`'s table, and those it has one to (not both)."""
    version = next((v for v in snap.tables.values() if v.table_id == info.id and not v.dropped), None)
    if version is None:
        return [], []
    children = {fk.child.table_id: fk.child for fk in incoming(snap, version)}
    parents = {fk.parent.table_id: fk.parent for fk in outgoing(snap, version) if fk.parent.table_id not in children}
    children.pop(info.id, None)
    parents.pop(info.id, None)
    return list(children.values()), list(parents.values())
