"""A view's storage on one branch, the user's view over it, and immediate-maintenance triggers.

On branch B, view V (catalog id N) keeps its rows in ``hdb_b<B>.mv<N>``
(``_hdb_rowid``, ``_hdb_lsn``: the base point the row version shows, then the
storage columns) and closed versions in ``hdb_b<B>.mv<N>__hist``. The user
sees ``<B's schema>.<V>``, a plain view computing the columns. A statement
trigger refuses writes that do not come from a refresh.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from heliosdb.catalog.model import Branch, chain
from heliosdb.mv import catalog as mvcat
from heliosdb.mv.catalog import MView
from heliosdb.mv.refresh import Sources, full_select, head_of, inc_function, storage_at, store_sql
from heliosdb.sql.names import quote_literal, quote_qualified


def create(conn: psycopg.Connection[Any], branch: Branch, mv: MView) -> None:
    """Empty storage, history, indexes, guard and the user's view (no rows yet)."""
    b = branch.id
    store, hist = mv.storage(b), mv.hist(b)
    src = Sources(conn, branch, mv)
    cols = mv.plan.storage_columns()
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "hdb_b{b}"')  # type: ignore[arg-type]
    names = ", ".join(cols)
    conn.execute(  # type: ignore[arg-type]
        f"CREATE TABLE {store} AS SELECT 0::bigint AS _hdb_rowid, 0::bigint AS _hdb_lsn, f.* "
        f"FROM ({full_select(src, head_of(conn, branch))}) AS f({names}) WITH NO DATA")
    conn.execute(f"ALTER TABLE {store} ADD PRIMARY KEY (_hdb_rowid)")  # type: ignore[arg-type]
    conn.execute(f"CREATE INDEX ON {store} (_hdb_lsn)")  # type: ignore[arg-type]
    conn.execute(  # type: ignore[arg-type]
        f"CREATE TABLE {hist} AS SELECT _hdb_rowid, 0::bigint AS _hdb_begin, 0::bigint AS _hdb_end, {names} "
        f"FROM {store} WITH NO DATA")
    conn.execute(f"CREATE INDEX ON {hist} (_hdb_end)")  # type: ignore[arg-type]
    conn.execute(f"CREATE INDEX ON {hist} (_hdb_rowid, _hdb_begin)")  # type: ignore[arg-type]
    if mv.plan.mode == "spj":
        for i in range(len(mv.plan.sources)):
            conn.execute(f"CREATE INDEX ON {store} (_hdb_src{i})")  # type: ignore[arg-type]
    elif mv.plan.mode == "agg" and mv.plan.groups:
        keys = ", ".join(f"_hdb_g{k}" for k in range(len(mv.plan.groups)))
        try:
            with conn.transaction():  # a key type without a btree class just goes without
                conn.execute(f"CREATE INDEX ON {store} ({keys})")  # type: ignore[arg-type]
        except psycopg.Error:
            pass
    conn.execute(  # type: ignore[arg-type]
        sql.SQL("CREATE TRIGGER _hdb_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                "FOR EACH STATEMENT EXECUTE FUNCTION heliosdb._mv_guard({})").format(
            sql.SQL(store), sql.Literal(mv.name)))
    create_user_view(conn, branch, mv)
    index_base_lsn(conn, src)


def index_base_lsn(conn: psycopg.Connection[Any], src: Sources) -> None:
    """An index on _hdb_lsn of the branch's own base tables, so a refresh reads the new versions by range.

    Only tables read by a view get it: it costs every write an index entry
    and makes updates non-HOT (measured in docs/materialized-views.md).
    """
    for i in range(len(src.plan.sources)):
        own = src.own_table(i)
        if own is None:
            continue
        _, info = own
        conn.execute(  # type: ignore[arg-type]
            f"CREATE INDEX IF NOT EXISTS {quote_qualified(info.phys_name + '_hdb_lsn')} ON {quote_qualified(*info.cur)} (_hdb_lsn)")


def create_user_view(conn: psycopg.Connection[Any], branch: Branch, mv: MView, *, populated: bool = False,
                     replace: bool = False) -> None:
    """The user's view; until the first refresh, reading it is PostgreSQL's 55000 "has not been populated"."""
    exprs = ", ".join(mv.plan.view_exprs("s"))
    guard = "" if populated else " WHERE heliosdb._mv_unpopulated(" + quote_literal(mv.name) + ")"
    verb = "CREATE OR REPLACE VIEW" if replace else "CREATE VIEW"
    conn.execute(  # type: ignore[arg-type]
        f"{verb} {quote_qualified(branch.user_schema, mv.name)} AS SELECT {exprs} FROM {mv.storage(branch.id)} s{guard}")


def drop(conn: psycopg.Connection[Any], branch: Branch, mv: MView, *, cascade: bool) -> None:
    mode = " CASCADE" if cascade else ""
    conn.execute(f"DROP VIEW IF EXISTS {quote_qualified(branch.user_schema, mv.name)}{mode}")  # type: ignore[arg-type]
    conn.execute(f"DROP TABLE IF EXISTS {mv.storage(branch.id)}, {mv.hist(branch.id)}")  # type: ignore[arg-type]
    conn.execute(f"DROP FUNCTION IF EXISTS {inc_function(mv, branch.id)}(bigint, bigint)")  # type: ignore[arg-type]
    conn.execute("DELETE FROM heliosdb._mv_state WHERE mv_id = %s AND branch_id = %s", (mv.id, branch.id))


def ensure_immediate_triggers(conn: psycopg.Connection[Any], branch: Branch, mv: MView) -> None:
    """Statement triggers on the relations the branch's writes to each base table land in."""
    src = Sources(conn, branch, mv)
    for s in mv.plan.sources:
        if s.kind != "table":
            continue
        _, info = src.table(s.id, 2**63 - 1)
        rel = info.cur if info.root_branch == branch.id else info.br
        ident = quote_qualified(*rel)
        exists = conn.execute(
            "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = '_hdb_mv_immediate'", (ident,)
        ).fetchone()
        if exists:
            continue
        conn.execute(  # type: ignore[arg-type]
            f"CREATE TRIGGER _hdb_mv_immediate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {ident} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION heliosdb._mv_immediate('{int(s.id)}')")


def inherit(conn: psycopg.Connection[Any], branch: Branch) -> list[MView]:
    """A new branch's copies of the views it sees, each as its nearest materialized ancestor had it at the fork."""
    levels = chain(conn, branch.id)
    views = mvcat.visible(conn, levels)
    made = []
    for mv in sorted(views.values(), key=lambda m: m.id):
        if mvcat.state(conn, mv.id, branch.id) is not None:
            continue
        create(conn, branch, mv)
        source = None
        for lv in levels[1:]:
            st = mvcat.state(conn, mv.id, lv.branch_id)
            if st is not None and st.refreshed_lsn is not None and st.history_from is not None and (
                    st.history_from <= lv.upto):
                source = (lv, st)
                break
        options = dict(source[1].options) if source else dict(mv.options)
        point = None
        if source is not None:
            lv, st = source
            row = conn.execute(
                "SELECT max(lsn) FROM heliosdb._mv_refreshes WHERE mv_id = %s AND branch_id = %s AND lsn <= %s",
                (mv.id, lv.branch_id, lv.upto),
            ).fetchone()
            logged = row[0] if row and row[0] is not None else st.history_from
            # immediate maintenance does not write the log: its stamps in the copied rows tell the point
            stamp = conn.execute(f"SELECT max(_hdb_lsn) FROM ({storage_at(mv, lv.branch_id, lv.upto, with_lsn=True)}) x").fetchone()  # type: ignore[arg-type]
            point = max(logged, stamp[0] if stamp and stamp[0] is not None else logged)
            cols = ", ".join(["_hdb_rowid", *mv.plan.storage_columns()])
            conn.execute("SELECT set_config('heliosdb.mv_writer', 'on', true)")
            conn.execute(  # type: ignore[arg-type]
                f"INSERT INTO {mv.storage(branch.id)} (_hdb_lsn, {cols}) "
                f"SELECT least(_hdb_lsn, {int(point)}), {cols} FROM ("
                + storage_at(mv, lv.branch_id, lv.upto, with_lsn=True) + ") x")
            conn.execute("SELECT set_config('heliosdb.mv_writer', '', true)")
        if point is not None:
            create_user_view(conn, branch, mv, populated=True, replace=True)
        conn.execute(
            """INSERT INTO heliosdb._mv_state (mv_id, branch_id, options, refreshed_lsn, history_from, status)
               VALUES (%s, %s, %s, %s, %s, 'STALE')""",
            (mv.id, branch.id, psycopg.types.json.Jsonb(options), point, point),
        )
        if point is not None:
            conn.execute(
                "INSERT INTO heliosdb._mv_refreshes (mv_id, branch_id, lsn, mode, reason) "
                "VALUES (%s, %s, %s, 'inherited', 'copied from the parent branch at the fork')",
                (mv.id, branch.id, point),
            )
        mv.options = options
        if point is not None:  # staleness counts the ancestors' changes since the copied point too
            store_sql(conn, Sources(conn, branch, mv), point, inherited_from=point)
        if options.get("maintenance_strategy") == "immediate":
            from heliosdb.mv.refresh import refresh

            refresh(conn, branch, mv, reason="immediate view on a new branch")
            ensure_immediate_triggers(conn, branch, mv)
        made.append(mv)
    return made


__all__ = ["create", "create_user_view", "drop", "ensure_immediate_triggers", "inherit", "storage_at"]
