"""CREATE / ALTER / REFRESH / DROP MATERIALIZED VIEW on the session's branch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from heliosdb import errors
from heliosdb.branching.ddl_locks import lock_for_ddl
from heliosdb.catalog.model import Branch, Snapshot, chain
from heliosdb.mv import catalog as mvcat
from heliosdb.mv import options as mvopts
from heliosdb.mv import parse as mvparse
from heliosdb.mv import refresh as mvrefresh
from heliosdb.mv import status as mvstatus
from heliosdb.mv import storage
from heliosdb.mv.catalog import MView
from heliosdb.mv.compile import compile_query

if TYPE_CHECKING:
    from heliosdb.session import Result, Session


def _result(status: str) -> Result:
    from heliosdb.session import Result

    return Result(status=status)


def _undefined(name: str) -> errors.Error:
    return errors.lookup("42P01")(f'materialized view "{name}" does not exist', sqlstate="42P01")


@contextlib.contextmanager
def on_branch_path(conn: psycopg.Connection[Any], branch: Branch) -> Iterator[None]:
    """search_path at the branch's schema for the enclosed statements (names in queries resolve there)."""
    saved = conn.execute("SELECT current_setting('search_path')").fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT set_config('search_path', %s, true)", (branch.search_path,))
    try:
        yield
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute("SELECT set_config('search_path', %s, true)", (saved,))


def execute(session: Session, text: str) -> Result:
    stmt = mvparse.parse(text)
    conn = session.conn
    if isinstance(stmt, mvparse.RefreshMV) and stmt.with_data and not session.in_transaction:
        return _refresh_alone(session, stmt)
    alone = not session.in_transaction  # the statement is its own transaction: nothing follows it
    with conn.transaction():
        branch = session.branch
        if isinstance(stmt, mvparse.CreateMV):
            return _create(session, branch, stmt, alone)
        if isinstance(stmt, mvparse.AlterMV):
            return _alter(session, branch, stmt)
        if isinstance(stmt, mvparse.RefreshMV):
            return _refreshed(session, stmt.name.name, _refresh(session, branch, stmt))
        if isinstance(stmt, mvparse.CommentMV):
            return _comment(session, branch, stmt)
        return _drop(session, branch, stmt)


def _visible(conn: psycopg.Connection[Any], branch: Branch) -> dict[str, MView]:
    return mvcat.visible(conn, chain(conn, branch.id))


# The HeliosDB tables and materialized views whose storage a view reads, through any views in between:
# what PostgreSQL recorded for the probe view (names in the query can be qualified, or be plain views).
_READS = """
WITH RECURSIVE rels(oid) AS (
    SELECT %s::regclass::oid
  UNION
    SELECT d.refobjid FROM rels JOIN pg_rewrite r ON r.ev_class = rels.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
)
SELECT 'table', t.id FROM rels JOIN pg_class c ON c.oid = rels.oid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN heliosdb._tables t ON t.phys_schema = n.nspname
 AND c.relname IN (t.phys_name, t.phys_name || '__br', t.phys_name || '__hist')
UNION
SELECT 'mv', substring(c.relname FROM '^mv([0-9]+)$')::int FROM rels JOIN pg_class c ON c.oid = rels.oid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname ~ '^hdb_b[0-9]+$' AND c.relname ~ '^mv[0-9]+$'
"""


def _describe(conn: psycopg.Connection[Any], query: str, names: list[str]
              ) -> tuple[list[dict[str, str]], list[tuple[str, int]]]:
    """The query's result columns (names, types) as PostgreSQL sees them on the current search_path, and
    what it reads: ('table' | 'mv', id) pairs."""
    conn.execute("CREATE TEMP VIEW _hdb_mv_probe AS " + query)  # type: ignore[operator]
    try:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'pg_temp._hdb_mv_probe'::regclass AND attnum > 0 ORDER BY attnum"
        ).fetchall()
        reads = [(str(k), int(i)) for k, i in conn.execute(_READS, ("pg_temp._hdb_mv_probe",)).fetchall()]
    finally:
        conn.execute("DROP VIEW pg_temp._hdb_mv_probe")
    if names:
        if len(names) > len(rows):
            raise errors.lookup("42601")("too many column names were specified", sqlstate="42601")
        rows = [(names[i] if i < len(names) else n, t) for i, (n, t) in enumerate(rows)]
    seen: set[str] = set()
    for n, _ in rows:
        if n in seen:
            raise errors.lookup("42701")(f'column "{n}" specified more than once', sqlstate="42701")
        seen.add(n)
    return [{"name": n, "type": t} for n, t in rows], reads


def _check_placement(stmt: mvparse.CreateMV) -> None:
    """USING / TABLESPACE: PostgreSQL's defaults are accepted, as they change nothing here."""
    if stmt.access_method not in (None, "heap"):
        raise errors.lookup("0A000")(
            f'access method "{stmt.access_method}" is not supported for materialized views', sqlstate="0A000",
            hint="HeliosDB keeps a materialized view's rows in heap tables: leave out USING or write USING heap.")
    if stmt.tablespace not in (None, "pg_default"):
        raise errors.lookup("0A000")(
            f'tablespace "{stmt.tablespace}" is not supported for materialized views', sqlstate="0A000",
            hint="HeliosDB keeps a materialized view's rows in the default tablespace: leave out TABLESPACE or "
                 "write TABLESPACE pg_default.")


def _create(session: Session, branch: Branch, stmt: mvparse.CreateMV, alone: bool) -> Result:
    conn = session.conn
    name = stmt.name.name
    _check_placement(stmt)
    opts = mvopts.with_defaults(mvopts.validate(stmt.options))
    views = _visible(conn, branch)
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    if name in views or conn.execute(
        "SELECT 1 FROM pg_class WHERE relname = %s AND relnamespace = to_regnamespace(%s)",
        (name, '"' + branch.user_schema + '"'),
    ).fetchone():
        if stmt.if_not_exists:
            session.notices.append(f'NOTICE:  relation "{name}" already exists, skipping')
            return _result("CREATE MATERIALIZED VIEW")
        raise errors.lookup("42P07")(f'relation "{name}" already exists', sqlstate="42P07")
    if any(t.name == name for t in snap.tables.values()):
        raise errors.lookup("42P07")(f'relation "{name}" already exists', sqlstate="42P07")
    query = stmt.query
    from heliosdb.sql.classify import has_temporal

    if has_temporal(query):
        from heliosdb.temporal.rewrite import rewrite

        query = rewrite(session, query, kept=True)  # refreshes run it again later
    with on_branch_path(conn, branch):
        columns, reads = _describe(conn, query, stmt.columns)
    tables = {
        v.name: (tid, {c.name: c.type for c in v.columns}) for tid, v in snap.tables.items()
    }
    mvs = {m.name: (m.id, {c["name"]: c["type"] for c in m.plan.columns}) for m in views.values()}
    plan = compile_query(query, columns, tables, mvs)
    plan.deps_tables = sorted({*plan.deps_tables, *(i for k, i in reads if k == "table")})
    plan.deps_mvs = sorted({*plan.deps_mvs, *(i for k, i in reads if k == "mv")})
    if opts["maintenance_strategy"] == "immediate" and plan.mode == "full":
        raise errors.lookup("0A000")(
            f'materialized view "{name}" cannot be maintained immediately: {plan.reason}',
            hint="Use maintenance_strategy = incremental or deferred; docs/materialized-views.md lists the "
                 "query classes maintained incrementally.", sqlstate="0A000")
    _immediate_inputs(conn, branch, name, plan.deps_mvs, opts["maintenance_strategy"])
    # the LSN index it gives the branch's own tables: as CREATE INDEX, their relations before the branch
    own = [snap.info[s.id] for s in plan.sources if s.kind == "table" and snap.info[s.id].root_branch == branch.id]
    lsn = lock_for_ddl(conn, branch.id, own, root_mode="SHARE")
    row = conn.execute(
        """INSERT INTO heliosdb._mviews (name, branch_id, valid_from, query, options, plan)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
        (name, branch.id, lsn, query, Jsonb(opts), Jsonb(plan.to_json())),
    ).fetchone()
    assert row is not None
    for tid in plan.deps_tables:
        conn.execute("INSERT INTO heliosdb._mv_deps VALUES (%s, 'table', %s) ON CONFLICT DO NOTHING", (row[0], tid))
    for mid in plan.deps_mvs:
        conn.execute("INSERT INTO heliosdb._mv_deps VALUES (%s, 'mv', %s) ON CONFLICT DO NOTHING", (row[0], mid))
    mv = mvcat.by_id(conn, row[0])
    with on_branch_path(conn, branch):
        storage.create(conn, branch, mv)
    conn.execute(
        "INSERT INTO heliosdb._mv_state (mv_id, branch_id, options, status) VALUES (%s, %s, %s, 'STALE')",
        (mv.id, branch.id, Jsonb(opts)),
    )
    if stmt.with_data:
        with on_branch_path(conn, branch):
            mvrefresh.refresh(conn, branch, mv, mode="full", reason="created WITH DATA")
    if opts["maintenance_strategy"] == "immediate":
        if not stmt.with_data:
            with on_branch_path(conn, branch):
                mvrefresh.refresh(conn, branch, mv, mode="full", reason="immediate views are always populated")
        storage.ensure_immediate_triggers(conn, branch, mv)
    if alone:  # populated at the DDL's own LSN, which no later write of this transaction shares
        conn.execute("UPDATE heliosdb._mv_state SET recompute = false WHERE mv_id = %s AND branch_id = %s",
                     (mv.id, branch.id))
    return _result("CREATE MATERIALIZED VIEW")


def guard_table_change(session: Session, table_id: int, table: str, column: str | None, *, cascade: bool,
                       action: str = "drop") -> None:
    """Before DROP TABLE / DROP COLUMN / ALTER COLUMN TYPE of a table views read: 2BP01 (0A000 for a type change)
    as PostgreSQL answers, or with CASCADE (drops only) drop those views first."""
    conn, branch = session.conn, session.branch
    views = _visible(conn, branch)
    hit = [v for v in views.values() if table_id in v.plan.deps_tables and (column is None or _uses(v.query, column))]
    if not hit:
        return
    what = f'column {column} of table {table}' if column else f'table {table}'
    detail = "\n".join(f'materialized view {v.name} depends on {what}' for v in hit)
    if action == "alter type":
        raise errors.lookup("0A000")(
            "cannot alter type of a column used by a view or rule", detail=detail, sqlstate="0A000")
    if action == "rename":  # PostgreSQL's views follow a rename; a stored query text would not
        raise errors.lookup("0A000")(
            f"cannot rename {what} because a materialized view reads it", detail=detail, sqlstate="0A000",
            hint="Drop the materialized view first and create it again after the rename.")
    if not cascade:
        raise errors.lookup("2BP01")(
            f"cannot drop {what} because other objects depend on it", detail=detail,
            hint="Use DROP ... CASCADE to drop the dependent objects too.", sqlstate="2BP01")
    names = [mvparse.Name(None, v.name, 0, 0) for v in hit]
    _drop(session, branch, mvparse.DropMV(names, if_exists=True, cascade=True))
    for v in hit:
        session.notices.append(f"NOTICE:  drop cascades to materialized view {v.name}")


def resync_sql(conn: psycopg.Connection[Any], table_id: int, at: int) -> None:
    """After DDL of a base table (on any branch: the root's renames reach the branches below it): the stored
    SQL of the views reading it (their incremental function, which immediate maintenance runs too), made
    again from the table as it is now."""
    from heliosdb.catalog.model import get_branch_by_id

    rows = conn.execute(
        "SELECT s.mv_id, s.branch_id FROM heliosdb._mv_state s JOIN heliosdb._mv_deps d ON d.mv_id = s.mv_id "
        "AND d.kind = 'table' AND d.dep_id = %s WHERE s.inc_fn IS NOT NULL ORDER BY 1, 2", (table_id,)).fetchall()
    for mv_id, branch_id in rows:
        branch, mv = get_branch_by_id(conn, branch_id), mvcat.by_id(conn, mv_id)
        state = mvcat.state(conn, mv_id, branch_id)
        if state is not None:
            mv.options = state.options
        with on_branch_path(conn, branch):
            mvrefresh.store_sql(conn, mvrefresh.Sources(conn, branch, mv), at)


def _uses(query: str, column: str) -> bool:
    """Whether the query names the column anywhere (conservative: any identifier spelled so), or reads every
    column (`*` or `x.*` in a select list)."""
    from heliosdb.sql.names import is_word, tokenize

    try:
        toks = tokenize(query)
    except errors.Error:
        return True
    star = any(t.text == "*" and k > 0
               and (toks[k - 1].text in (",", ".") or is_word(toks[k - 1], "SELECT", "DISTINCT"))
               for k, t in enumerate(toks))
    return star or any((t.text if t.token_type.name == "IDENTIFIER" else t.text.lower()) == column for t in toks)


def _get(session: Session, branch: Branch, name: str) -> MView | None:
    return mvcat.named(session.conn, branch.id, name)


def _alter(session: Session, branch: Branch, stmt: mvparse.AlterMV) -> Result:
    conn = session.conn
    mv = _get(session, branch, stmt.name.name)
    if mv is None:
        if stmt.if_exists:
            session.notices.append(f'NOTICE:  relation "{stmt.name.name}" does not exist, skipping')
            return _result("ALTER MATERIALIZED VIEW")
        raise _undefined(stmt.name.name)
    _refuse_rename(mv, stmt)
    st = mvcat.state(conn, mv.id, branch.id, lock=True)
    assert st is not None
    new = {**st.options, **mvopts.validate(stmt.options), **mvopts.defaults_of(stmt.reset)}
    if new["maintenance_strategy"] == "immediate" and mv.plan.mode == "full":
        raise errors.lookup("0A000")(
            f'materialized view "{mv.name}" cannot be maintained immediately: {mv.plan.reason}',
            hint="docs/materialized-views.md lists the query classes maintained incrementally.", sqlstate="0A000")
    _immediate_inputs(conn, branch, mv.name, mv.plan.deps_mvs, new["maintenance_strategy"])
    _immediate_readers(conn, branch, mv, new["maintenance_strategy"])
    conn.execute("UPDATE heliosdb._mv_state SET options = %s WHERE mv_id = %s AND branch_id = %s",
                 (Jsonb(new), mv.id, branch.id))
    mv.options = new
    if new["maintenance_strategy"] == "immediate" and st.options.get("maintenance_strategy") != "immediate":
        with on_branch_path(conn, branch):
            out = mvrefresh.refresh(conn, branch, mv, reason="now immediate")
        h = out.lsn if out is not None else mvrefresh.head_of(conn, branch)
        mvrefresh.store_sql(conn, mvrefresh.Sources(conn, branch, mv), h)  # writes its immediate SQL
        storage.ensure_immediate_triggers(conn, branch, mv)
    elif new["maintenance_strategy"] != "immediate":
        conn.execute("UPDATE heliosdb._mv_state SET immediate_sql = NULL WHERE mv_id = %s AND branch_id = %s",
                     (mv.id, branch.id))
    return _result("ALTER MATERIALIZED VIEW")


def _immediate_inputs(conn: psycopg.Connection[Any], branch: Branch, name: str, inputs: list[int],
                      strategy: str) -> None:
    """An immediate view is current inside every writing transaction; a view it reads must be too."""
    if strategy != "immediate":
        return
    for up_id in inputs:
        st = mvcat.state(conn, up_id, branch.id)
        if st is not None and st.options.get("maintenance_strategy") != "immediate":
            up = mvcat.by_id(conn, up_id).name
            raise errors.lookup("0A000")(
                f'materialized view "{name}" cannot be maintained immediately: it reads "{up}", '
                f'which is {st.options.get("maintenance_strategy")}',
                hint=f"ALTER MATERIALIZED VIEW {up} SET (maintenance_strategy = immediate) first, or use "
                     "maintenance_strategy = incremental.", sqlstate="0A000")


def _immediate_readers(conn: psycopg.Connection[Any], branch: Branch, mv: MView, strategy: str) -> None:
    """The other side of _immediate_inputs: a view an immediate view reads stays immediate."""
    if strategy == "immediate":
        return
    for reader_id in mvcat.dependents(conn, mv.id):
        st = mvcat.state(conn, reader_id, branch.id)
        reader = mvcat.by_id(conn, reader_id)
        if st is not None and st.options.get("maintenance_strategy") == "immediate" and mv.id in reader.plan.deps_mvs:
            raise errors.lookup("0A000")(
                f'materialized view "{mv.name}" must stay immediate: immediate view "{reader.name}" reads it',
                hint=f"ALTER MATERIALIZED VIEW {reader.name} SET (maintenance_strategy = ...) first.",
                sqlstate="0A000")


def _refuse_rename(mv: MView, stmt: mvparse.AlterMV) -> None:
    """RENAME: the name is in the catalog of every branch that sees the view and in the queries of views that
    read it; a rename that missed one would leave a view half renamed, so none is done."""
    if stmt.rename is not None:
        raise errors.lookup("0A000")(
            f'materialized view "{mv.name}" cannot be renamed', sqlstate="0A000",
            hint=f"Create it again under the new name: DROP MATERIALIZED VIEW {mv.name}; "
                 f"CREATE MATERIALIZED VIEW {stmt.rename} AS ...")
    if stmt.rename_column is not None:
        raise errors.lookup("0A000")(
            f'columns of materialized view "{mv.name}" cannot be renamed', sqlstate="0A000",
            hint=f"Create it again with the new names in its column list: CREATE MATERIALIZED VIEW {mv.name} "
                 "(column, ...) AS ...")


def _comment(session: Session, branch: Branch, stmt: mvparse.CommentMV) -> Result:
    """COMMENT ON MATERIALIZED VIEW: the comment goes on the branch's view, where psql and obj_description look."""
    mv = _get(session, branch, stmt.name.name)
    if mv is None:
        raise _undefined(stmt.name.name)
    # the literal is one string token (or NULL) of the user's statement, passed as written
    session.conn.execute(sql.SQL("COMMENT ON VIEW {} IS ").format(sql.Identifier(branch.user_schema, mv.name))
                         + sql.SQL(stmt.literal))  # type: ignore[arg-type]
    return _result("COMMENT")


def refuse_view_ddl(session: Session, text: str) -> None:
    """DROP VIEW / ALTER VIEW naming a materialized view of the branch: 42809 as PostgreSQL (the view they would
    change is only the user's window on the view's storage)."""
    from heliosdb.sql.names import read_name, read_names, skip_words, tokenize

    try:
        toks = tokenize(text)
        drop = toks[0].text.upper() == "DROP"
        _, i = skip_words(toks, 2, "IF", "EXISTS")
        names = read_names(toks, i)[0] if drop else [read_name(toks, i)[0]]
    except (errors.Error, IndexError):
        return  # malformed: PostgreSQL's own syntax error
    views = _visible(session.conn, session.branch)
    for n in names:
        if n.name in views and n.schema in (None, session.branch.user_schema):
            raise errors.lookup("42809")(
                f'"{n.name}" is not a view', sqlstate="42809",
                hint="Use DROP MATERIALIZED VIEW to remove a materialized view." if drop else
                     "Use ALTER MATERIALIZED VIEW to change a materialized view.")


def _refresh_alone(session: Session, stmt: mvparse.RefreshMV) -> Result:
    """A REFRESH that is its own transaction: REFRESHING while it runs, FAILED after a failure (mv/status.py)."""
    conn, branch, name = session.conn, session.branch, stmt.name.name
    mv_id = mvstatus.mark_refreshing(conn, branch.id, name)
    try:
        # the common case in one statement that is its own transaction
        outcome, out = mvrefresh.fast_refresh(conn, branch.id, name=name, mode=stmt.mode, detached=True)
        if outcome == "missing":
            raise _undefined(name)
        if out is None:
            with conn.transaction():
                out = _refresh(session, branch, stmt, try_fast=outcome != "slow")
    except Exception as exc:  # whatever ended it, the view must not stay REFRESHING
        if mv_id is not None:
            mvstatus.record_user_failure(conn, mv_id, branch, exc)
        raise
    if mv_id is not None and (out is None or out.mode == "none"):
        mvstatus.mark_done(conn, mv_id, branch.id)
    return _refreshed(session, name, out)


def _refresh(session: Session, branch: Branch, stmt: mvparse.RefreshMV, *,
             try_fast: bool = True) -> mvrefresh.Outcome | None:
    conn = session.conn
    mv = _get(session, branch, stmt.name.name)
    if mv is None:
        raise _undefined(stmt.name.name)
    if not stmt.with_data:  # PostgreSQL's WITH NO DATA: empty, and unreadable until the next refresh
        conn.execute("SELECT set_config('heliosdb.mv_writer', 'on', true)")
        conn.execute(f"DELETE FROM {mv.storage(branch.id)}")  # type: ignore[arg-type]
        conn.execute(f"DELETE FROM {mv.hist(branch.id)}")  # type: ignore[arg-type]
        conn.execute("SELECT set_config('heliosdb.mv_writer', '', true)")
        conn.execute("UPDATE heliosdb._mv_state SET refreshed_lsn = NULL, history_from = NULL, prev_lsn = NULL, "
                     "immediate_sql = NULL, pending_sql = NULL, inc_fn = NULL "
                     "WHERE mv_id = %s AND branch_id = %s", (mv.id, branch.id))
        storage.create_user_view(conn, branch, mv, populated=False, replace=True)
        return None
    # names in the query resolve on the branch (only queries refreshed in full run as written)
    path = on_branch_path(conn, branch) if mv.plan.mode == "full" or mv.plan.deps_mvs else contextlib.nullcontext()
    with path:
        return mvrefresh.refresh(conn, branch, mv, mode=stmt.mode, reason=None, progress=session.report_progress,
                                 try_fast=try_fast)


def _refreshed(session: Session, name: str, out: mvrefresh.Outcome | None) -> Result:
    if out is not None and out.mode != "none":
        session.notices.append(
            f"NOTICE:  {out.mode} refresh of \"{name}\" to LSN {_fmt(out.lsn)}: {out.reason} ({out.ms:.1f} ms)")
    return _result("REFRESH MATERIALIZED VIEW")


def _fmt(lsn: int) -> str:
    from heliosdb.sql.lsn import format_lsn

    return format_lsn(lsn)


def _drop(session: Session, branch: Branch, stmt: mvparse.DropMV) -> Result:
    conn = session.conn
    views = _visible(conn, branch)
    targets: list[MView] = []
    for n in stmt.names:
        mv = views.get(n.name)
        if mv is None:
            if stmt.if_exists:
                session.notices.append(f'NOTICE:  materialized view "{n.name}" does not exist, skipping')
                continue
            raise _undefined(n.name)
        targets.append(mv)
    if not targets:
        return _result("DROP MATERIALIZED VIEW")
    ids = {m.id for m in targets}
    order: list[MView] = []
    for mv in targets:
        downs = set(mvcat.dependents(conn, mv.id))
        live = [v for v in views.values() if v.id in downs and v.id not in ids]
        if live and not stmt.cascade:
            raise errors.lookup("2BP01")(
                f'cannot drop materialized view "{mv.name}" because other objects depend on it',
                detail="\n".join(f'materialized view "{v.name}" depends on materialized view "{mv.name}"' for v in live),
                hint="Use DROP ... CASCADE to drop the dependent objects too.", sqlstate="2BP01")
        for v in sorted(live, key=lambda v: -v.id):
            if v.id not in ids:
                ids.add(v.id)
                order.append(v)
        order.append(mv)
    lsn = conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch.id,)).fetchone()[0]  # type: ignore[index]
    for mv in sorted(order, key=lambda v: -v.id):  # dependents (created later) first
        storage.drop(conn, branch, mv, cascade=stmt.cascade)
        conn.execute(
            "INSERT INTO heliosdb._mv_drops VALUES (%s, %s, %s) ON CONFLICT (mv_id, branch_id) DO UPDATE SET lsn = EXCLUDED.lsn",
            (mv.id, branch.id, lsn),
        )
    return _result("DROP MATERIALIZED VIEW")
