"""Branch lifecycle: CREATE / USE / ALTER / DROP DATABASE BRANCH and SHOW BRANCHES."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching import ddl_locks, exclusions, layout
from heliosdb.catalog.model import (
    TYPES_SCHEMA,
    Branch,
    Snapshot,
    ancestry,
    chain,
    get_branch,
    get_branch_by_id,
)
from heliosdb.sql import statements as st
from heliosdb.sql.names import quote_ident
from heliosdb.temporal.resolver import resolve_point

if TYPE_CHECKING:
    from heliosdb.session import Result, Session

_OPTION_NAMES = ("read_only", "retention_period", "gc_policy")
_GC_POLICIES = ("aggressive", "balanced", "conservative")
_MAX_RETENTION = "1000 years"  # the collector reaches back up to twice it; much further overflows timestamps
_BRANCH_LOCK_CLASS = 0x4844
_MAX_NAME = 60


def execute(session: Session, text: str) -> Result:
    stmt = st.parse_branch_statement(text)
    if isinstance(stmt, st.ShowBranches):
        return _show(session)
    if isinstance(stmt, st.UseBranch):
        return _use(session, stmt, text)
    return _audited(session, text, stmt)


def _result(status: str, cursor: psycopg.Cursor[Any] | None = None) -> Result:
    from heliosdb.session import Result

    return Result(status=status, cursor=cursor)


def audit(conn: psycopg.Connection[Any], branch: str, text: str, lsn: int | None, outcome: str) -> None:
    conn.execute(
        "INSERT INTO heliosdb._audit (branch, statement, lsn, outcome) VALUES (%s, %s, %s, %s)",
        (branch, text.strip(), lsn, outcome),
    )


def _audit_failure(session: Session, branch: str, text: str, exc: Exception) -> None:
    """Failed branch statements are logged too, after their rollback (if we can write)."""
    if session.in_transaction:
        return
    code = getattr(exc, "sqlstate", None) or "XX000"
    try:
        audit(session.conn, branch, text, None, f"error {code}: {exc}")
    except psycopg.Error:
        pass


def _audited(session: Session, text: str, stmt: st.BranchStatement) -> Result:
    name = getattr(stmt, "name", "")
    try:
        with session.conn.transaction():
            if isinstance(stmt, st.CreateBranch):
                status, lsn = _create(session, stmt)
            elif isinstance(stmt, st.AlterBranch):
                status, lsn = _alter(session, stmt)
            else:
                assert isinstance(stmt, st.DropBranch)
                status, lsn = _drop(session, stmt)
            audit(session.conn, name, text, lsn, "ok")
    except (errors.Error, psycopg.Error) as exc:
        _audit_failure(session, name, text, exc)
        raise
    if isinstance(stmt, st.AlterBranch):
        session.refresh_branch()
    return _result(status)


# -- SHOW / USE --------------------------------------------------------------------
def _show(session: Session) -> Result:
    cur = session.conn.cursor()
    cur.execute(
        """SELECT name, parent, fork_lsn, head_lsn, state, storage_node, compute_endpoint,
                  created_at, created_by
           FROM heliosdb.branches ORDER BY id"""
    )
    return _result(f"SELECT {cur.rowcount}", cur)


def st_point(p: st.Point) -> Any:
    from heliosdb.sql.temporal import Point

    return Point(p.kind, p.value)


def _use(session: Session, stmt: st.UseBranch, text: str) -> Result:
    try:
        from heliosdb.temporal.context import switch_context
        from heliosdb.temporal.rewrite import resolve

        lsn: int | None = None
        if stmt.point is not None:  # first: a point that does not resolve leaves the session where it was
            point, named = st_point(stmt.point), get_branch(session.conn, stmt.name)
            assert named is not None
            lsn = None if point.kind == "NOW" else resolve(session.conn, named, point)
        target = session.use_branch(stmt.name, for_transaction=stmt.scope == "TRANSACTION")
        if session.as_of is not None or lsn is not None:
            switch_context(session, target, lsn)
        audit(session.conn, target.name, text, target.head_lsn, "ok")
    except (errors.Error, psycopg.Error) as exc:
        _audit_failure(session, stmt.name, text, exc)
        raise
    return _result("USE BRANCH")


# -- CREATE --------------------------------------------------------------------------
def _validate_options(conn: psycopg.Connection[Any], opts: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if key not in _OPTION_NAMES:
            raise errors.InvalidBranchOption(
                f'unknown branch option "{key}"', hint="Valid options: " + ", ".join(_OPTION_NAMES) + "."
            )
        if key == "read_only":
            if value.lower() not in ("true", "false", "on", "off", "1", "0"):
                raise errors.InvalidBranchOption(
                    f'invalid value for read_only: "{value}"', hint="Use true or false."
                )
            out[key] = value.lower() in ("true", "on", "1")
        elif key == "retention_period":
            out[key] = _retention(conn, value)
        else:
            if value.lower() not in _GC_POLICIES:
                raise errors.InvalidBranchOption(
                    f'invalid value for gc_policy: "{value}"', hint="Valid values: " + ", ".join(_GC_POLICIES) + "."
                )
            out[key] = value.lower()
    return out


def _retention(conn: psycopg.Connection[Any], value: str) -> str:
    """A retention_period: an interval from 0 to _MAX_RETENTION (a negative one would prune all history)."""
    hint = "Use an interval such as '7 days'."
    try:
        with conn.transaction():
            row = conn.execute("SELECT %s::interval BETWEEN interval '0' AND %s::interval",
                               (value, _MAX_RETENTION)).fetchone()
    except psycopg.Error:
        raise errors.InvalidBranchOption(f'invalid value for retention_period: "{value}"', hint=hint) from None
    if not (row and row[0]):
        raise errors.InvalidBranchOption(
            f'invalid value for retention_period: "{value}" (it must be from 0 to {_MAX_RETENTION})', hint=hint)
    return value


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > _MAX_NAME:
        raise errors.InvalidName(
            f'invalid branch name "{name}"', hint=f"A branch name has 1 to {_MAX_NAME} bytes.", sqlstate="42602"
        )


def _create(session: Session, stmt: st.CreateBranch) -> tuple[str, int | None]:
    conn = session.conn
    _check_name(stmt.name)
    if get_branch(conn, stmt.name, missing_ok=True) is not None:
        if stmt.if_not_exists:
            conn.execute("SELECT 1")  # keep the transaction shape
            session.notices.append(f'NOTICE:  branch "{stmt.name}" already exists, skipping')
            return "CREATE DATABASE BRANCH", None
        raise errors.DuplicateBranch(f'branch "{stmt.name}" already exists')
    parent = get_branch(conn, stmt.parent) if stmt.parent else session.branch
    assert parent is not None
    node = stmt.storage_node or parent.storage_node
    endpoint = stmt.compute_endpoint or "endpoint-1"
    known = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM heliosdb._nodes WHERE id = %s),
                  EXISTS (SELECT 1 FROM heliosdb._endpoints WHERE id = %s)""",
        (node, endpoint),
    ).fetchone()
    assert known is not None
    if not known[0]:
        names = ", ".join(r[0] for r in conn.execute("SELECT id FROM heliosdb._nodes ORDER BY id"))
        raise errors.UndefinedStorageNode(f'storage node "{node}" does not exist', hint=f"Known nodes: {names}.")
    if not known[1]:
        names = ", ".join(r[0] for r in conn.execute("SELECT id FROM heliosdb._endpoints ORDER BY id"))
        raise errors.UndefinedEndpoint(
            f'compute endpoint "{endpoint}" does not exist', hint=f"Known endpoints: {names}."
        )
    options = {"read_only": False, "retention_period": "7 days", "gc_policy": "balanced"}
    options.update(_validate_options(conn, stmt.options))
    fork = resolve_point(conn, parent, stmt.point.kind, stmt.point.value)
    schema = "br_" + stmt.name
    row = conn.execute(
        """INSERT INTO heliosdb._branches
               (name, parent_id, fork_lsn, head_lsn, read_only, options, storage_node, compute_endpoint, user_schema)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (stmt.name, parent.id, fork, fork, options["read_only"], json.dumps(options), node, endpoint, schema),
    ).fetchone()
    assert row is not None
    # Metadata only: the branch's schemas and views are built when it is first used.
    return "CREATE DATABASE BRANCH", fork


_BUILD_LOCK_CLASS = ddl_locks.BUILDS_KEY[0]


def ensure_built(conn: psycopg.Connection[Any], branch: Branch) -> Branch:
    """Build the branch's schemas and views if this is its first use (once, under a lock)."""
    if branch.built:
        return branch
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", ddl_locks.BUILDS_KEY)  # not during DDL
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_BUILD_LOCK_CLASS, branch.id))
        row = conn.execute("SELECT built FROM heliosdb._branches WHERE id = %s", (branch.id,)).fetchone()
        if row is not None and not row[0]:
            parent = get_branch_by_id(conn, branch.parent_id) if branch.parent_id is not None else None
            build_schema(conn, branch, parent)
            conn.execute("UPDATE heliosdb._branches SET built = true WHERE id = %s", (branch.id,))
    return get_branch_by_id(conn, branch.id)


def build_schema(conn: psycopg.Connection[Any], branch: Branch, parent: Branch | None) -> None:
    """The branch's schemas and a view per table it sees (metadata only: no row is copied)."""
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    stmts: list[sql.Composable] = [
        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(branch.user_schema)),
        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(branch.phys_schema)),
    ]
    inherited = [snap.info[tid] for tid in snap.tables if snap.info[tid].root_branch != branch.id]
    excluding = exclusions.read(conn, inherited)  # in one query: a branch sees many tables
    for tid, version in snap.tables.items():
        stmts += layout.view_statements(snap, branch, levels, snap.info[tid], version, or_replace=False,
                                        excluding=excluding.get(tid, []))
    with _search_path(conn, _build_path(conn, branch)):
        conn.execute(sql.SQL(";\n").join(stmts))
    if parent is not None:
        from heliosdb.mv.storage import inherit

        views = inherit(conn, branch)  # materialized views first: plain views may read them
        _copy_user_functions(conn, parent, branch)  # before the views: a view may call one
        _copy_user_views(conn, parent, branch, {v.name for v in snap.tables.values()} | {m.name for m in views})
        _copy_comments(conn, parent, branch, {v.name for v in snap.tables.values()} | {m.name for m in views})


def _build_path(conn: psycopg.Connection[Any], branch: Branch) -> str:
    """The branch's schema, then its ancestors', then the shared one: the names in its tables' defaults
    resolve as they did where the tables were made (a sequence in main's schema, made before sequences
    were shared), whichever branch the session that first uses the branch is on."""
    schemas = [b.user_schema for b in (get_branch_by_id(conn, bid) for bid, _ in ancestry(conn, branch.id))]
    return ", ".join([quote_ident(s) for s in schemas] + [TYPES_SCHEMA])


@contextlib.contextmanager
def _search_path(conn: psycopg.Connection[Any], path: str) -> Iterator[None]:
    """search_path for the enclosed statements (transaction-local), then back."""
    saved = conn.execute("SELECT current_setting('search_path')").fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT set_config('search_path', %s, true)", (path,))
    try:
        yield
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:  # else: the error is what matters
            conn.execute("SELECT set_config('search_path', %s, true)", (saved,))


def _built_parent(conn: psycopg.Connection[Any], parent: Branch) -> Branch:
    """The nearest ancestor that was used (an unused one has no objects of its own)."""
    while not parent.built and parent.parent_id is not None:
        parent = get_branch_by_id(conn, parent.parent_id)
    return parent


def _copy_user_functions(conn: psycopg.Connection[Any], parent: Branch, branch: Branch) -> None:
    """Functions and procedures the user created on the parent exist on the child too.

    Copied into the child's schema, as views are: printed where the parent's names need no schema,
    created where they resolve to the child's (a BEGIN ATOMIC body binds them then; a string body
    when it runs). Aggregates and extensions' functions are not copied.
    """
    parent = _built_parent(conn, parent)
    with _search_path(conn, parent.search_path):
        rows = conn.execute(
            # the schema as pg_get_functiondef writes it (quoted only where needed)
            """SELECT p.pronamespace::regnamespace::text, pg_get_functiondef(p.oid) FROM pg_proc p
               WHERE p.pronamespace = to_regnamespace(%s) AND p.prokind IN ('f', 'p')
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                 AND d.objid = p.oid AND d.deptype = 'e')
               ORDER BY p.oid""",
            (quote_ident(parent.user_schema),),
        ).fetchall()
    if not rows:
        return
    dst = quote_ident(branch.user_schema)
    with _search_path(conn, branch.search_path):
        for src, definition in rows:
            # the header names the function with its schema: "CREATE OR REPLACE FUNCTION public.f(...)"
            head, sep, rest = definition.partition(src + ".")
            if sep and "\n" not in head:
                conn.execute(head + dst + "." + rest)  # type: ignore[arg-type]


def _copy_user_views(conn: psycopg.Connection[Any], parent: Branch, branch: Branch, table_names: set[str]) -> None:
    """Plain views the user created on the parent exist on the child too, over the child's tables.

    The parent's schema also holds the views that are its tables and materialized views: those the child
    sees it has built from its own schema versions (table_names); those the parent made after the fork are
    not the child's. A plain view over such a table cannot exist on the child either, so it is left out.
    """
    parent = _built_parent(conn, parent)
    with _search_path(conn, parent.search_path):
        views = conn.execute(
            """SELECT c.relname, pg_get_viewdef(c.oid), coalesce(c.reloptions, '{}'),
                      ARRAY(SELECT ARRAY[a.attname, d.description] FROM pg_description d
                            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
                            WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass)
               FROM pg_class c
               WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind = 'v'
                 AND heliosdb._relkind(c.oid, c.relkind) = 'v' ORDER BY c.oid""",
            (sql.Identifier(parent.user_schema).as_string(conn),),
        ).fetchall()
    with _search_path(conn, branch.search_path):
        for name, definition, options, comments in views:
            if name in table_names:
                continue
            view = sql.Identifier(branch.user_schema, name)
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE VIEW {}{} AS {}").format(  # CHECK OPTION, security_barrier
                        view, sql.SQL(" WITH ({})").format(sql.SQL(", ").join(map(sql.SQL, options)))
                        if options else sql.SQL(""), sql.SQL(definition)))
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
                    psycopg.errors.UndefinedFunction, psycopg.errors.DuplicateTable):
                continue  # it reads what the child does not have
            layout.put_comments(conn, branch.user_schema, [(name, column, text) for column, text in comments])


def _copy_comments(conn: psycopg.Connection[Any], parent: Branch, branch: Branch, names: set[str]) -> None:
    """COMMENT ON TABLE / COLUMN of the tables and materialized views the child inherited: they are the
    parent's views' (the child's are other objects), so they are copied over, for the columns both have."""
    parent = _built_parent(conn, parent)
    rows = conn.execute(
        """SELECT c.relname, a.attname, d.description FROM pg_description d
           JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
           JOIN pg_class mine ON mine.relnamespace = to_regnamespace(%s) AND mine.relname = c.relname
           WHERE c.relnamespace = to_regnamespace(%s) AND c.relname = ANY(%s)
             AND (d.objsubid = 0 OR EXISTS (SELECT 1 FROM pg_attribute m WHERE m.attrelid = mine.oid
                                            AND m.attname = a.attname AND NOT m.attisdropped))""",
        (sql.Identifier(branch.user_schema).as_string(conn), sql.Identifier(parent.user_schema).as_string(conn),
         sorted(names)),
    ).fetchall()
    layout.put_comments(conn, branch.user_schema, rows)


# -- ALTER -----------------------------------------------------------------------------
def _alter(session: Session, stmt: st.AlterBranch) -> tuple[str, int | None]:
    conn = session.conn
    branch = get_branch(conn, stmt.name)
    assert branch is not None
    if stmt.read_only is not None:
        conn.execute(
            """UPDATE heliosdb._branches SET read_only = %s,
                   options = options || jsonb_build_object('read_only', %s::boolean) WHERE id = %s""",
            (stmt.read_only, stmt.read_only, branch.id),
        )
    if stmt.options is not None:
        opts = _validate_options(conn, stmt.options)
        conn.execute(
            "UPDATE heliosdb._branches SET options = options || %s::jsonb WHERE id = %s",
            (json.dumps(opts), branch.id),
        )
        if "read_only" in opts:
            conn.execute(
                "UPDATE heliosdb._branches SET read_only = %s WHERE id = %s", (opts["read_only"], branch.id)
            )
    return "ALTER DATABASE BRANCH", branch.head_lsn


def drop_branch(session: Session, name: str, *, cascade: bool) -> None:
    """Drop a branch inside the caller's transaction (as DROP DATABASE BRANCH does)."""
    _drop(session, st.DropBranch(name, False, cascade))


# -- DROP ------------------------------------------------------------------------------
def _drop(session: Session, stmt: st.DropBranch) -> tuple[str, int | None]:
    conn = session.conn
    branch = get_branch(conn, stmt.name, missing_ok=stmt.if_exists)
    if branch is None:
        session.notices.append(f'NOTICE:  branch "{stmt.name}" does not exist, skipping')
        return "DROP DATABASE BRANCH", None
    if branch.parent_id is None:
        raise errors.MainBranchProtected(
            f'cannot drop branch "{branch.name}"', detail="It is the root of the branch tree."
        )
    subtree = [
        (bid, name)
        for bid, name in conn.execute(
            """WITH RECURSIVE d AS (
                   SELECT id, name, 0 AS depth FROM heliosdb._branches WHERE id = %s
                   UNION ALL
                   SELECT b.id, b.name, d.depth + 1 FROM heliosdb._branches b JOIN d ON b.parent_id = d.id
                   WHERE b.state <> 'dropped')
               SELECT id, name FROM d ORDER BY depth DESC""",
            (branch.id,),
        ).fetchall()
    ]
    children = [name for bid, name in subtree if bid != branch.id]
    if children and not stmt.cascade:
        raise errors.BranchHasChildren(
            f'cannot drop branch "{branch.name}" because other branches depend on it',
            detail="Child branches: " + ", ".join(sorted(children)) + ".",
            hint="Use DROP DATABASE BRANCH ... CASCADE to drop them too.",
        )
    current = session.branch.id
    for bid, name in subtree:
        if bid == current or bid == session._session_branch.id:
            raise errors.BranchInUse(
                f'cannot drop branch "{name}": it is the current branch of this session',
                hint="USE BRANCH another branch first.",
            )
        if not _lock_branch_exclusively(conn, bid):
            raise errors.BranchInUse(
                f'branch "{name}" is being used by another session',
                hint="Drop it once the other sessions have moved to another branch or disconnected.",
            )
    for bid, _name in subtree:
        _drop_one(conn, bid)
    return "DROP DATABASE BRANCH", branch.head_lsn


def _lock_branch_exclusively(conn: psycopg.Connection[Any], bid: int) -> bool:
    """Wait briefly for sessions on the branch to go (a closing session's backend exits asynchronously)."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '1s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_BRANCH_LOCK_CLASS, bid))
            conn.execute("SET LOCAL lock_timeout = DEFAULT")
    except psycopg.errors.LockNotAvailable:
        return False
    # the savepoint released nothing: transaction-level advisory locks live until the transaction ends
    return True


def _drop_one(conn: psycopg.Connection[Any], bid: int) -> None:
    """Drop a branch's schemas and reclaim every row it stored."""
    row = conn.execute(
        "UPDATE heliosdb._branches SET state = 'dropped', dropped_at = clock_timestamp() WHERE id = %s "
        "RETURNING user_schema",
        (bid,),
    ).fetchone()
    assert row is not None
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(row[0])))
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"hdb_b{bid}")))
    for tid, schema, name, root in conn.execute(
        "SELECT id, phys_schema, phys_name, root_branch FROM heliosdb._tables"
    ).fetchall():
        if root == bid:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute("DELETE FROM heliosdb._tables WHERE id = %s", (tid,))
            conn.execute("DELETE FROM heliosdb._columns WHERE table_id = %s", (tid,))
            continue
        for suffix in ("__br", "__hist"):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE _hdb_branch = %s").format(sql.Identifier(schema, name + suffix)),
                (bid,),
            )
    conn.execute("DELETE FROM heliosdb._table_versions WHERE branch_id = %s", (bid,))
    conn.execute("DELETE FROM heliosdb._images WHERE branch_id = %s", (bid,))  # their tables went with the schema
    conn.execute("DELETE FROM heliosdb._mv_state WHERE branch_id = %s", (bid,))
