"""Lock order for DDL on a versioned table: the views first, the storage after.

A read locks the view it names, then the views and relations under it. DDL
used to lock the other way round: it altered the storage ("<name>", "__br",
"__hist") and then replaced the views. A read that came in between held the
view and waited for the storage while the DDL held the storage and waited for
the view: PostgreSQL's deadlock detector then failed the read (40P01). Taking
every view over the storage the DDL locks, outermost first, before anything
under them gives DDL and reads one order, as PostgreSQL's own ALTER TABLE has
with one relation.

`LOCK TABLE` on a view would lock every relation under it too (the root
relation, so DDL on a branch would stop main); `ALTER VIEW ... OWNER TO` its
own owner takes the view's ACCESS EXCLUSIVE lock alone and changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from heliosdb.catalog.model import TableInfo

# Views over the given relations, with how far they sit from them (views over views count more).
# Not temporary ones (AS OF statements kept by PREPARE): another session's cannot be altered.
_VIEWS_OVER = """
WITH RECURSIVE over(oid, depth) AS (
    SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = ANY(%s::regclass[]) AND r.ev_class <> d.refobjid
  UNION
    SELECT r.ev_class, o.depth + 1 FROM over o
    JOIN pg_depend d ON d.refobjid = o.oid AND d.refclassid = 'pg_class'::regclass
                    AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> o.oid
)
SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner)
FROM over o JOIN pg_class c ON c.oid = o.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND c.relpersistence <> 't' AND pg_has_role(c.relowner, 'USAGE')
GROUP BY n.nspname, c.relname, c.relowner
ORDER BY max(o.depth) DESC, n.nspname, c.relname
"""


# Builds of branches on first use (branches.ensure_built) take this key alone, DDL shares it: a view
# a build made while DDL runs would be one the DDL did not lock. DDLs do not wait for each other here.
BUILDS_KEY = (0x4845, -1)


# The branch's write lock, as heliosdb.txn_lsn takes it (without an LSN).
_LOCK_BRANCH = "SELECT 1 FROM heliosdb._branches WHERE id = %s FOR UPDATE"


class _Busy(Exception):
    """The other lock is held by a transaction that may be waiting for the one the DDL holds."""


class _TimedOut(_Busy):
    """A lock did not come within the wait the DDL allowed itself."""


# How long DDL that holds the branch's write lock waits for the views before it lets go and starts again.
_VIEWS_WAIT_MS = 50
# How long DDL in its first turns that take the views first waits for them: below PostgreSQL's
# deadlock_timeout (1 s), so that a transaction that came back for a view the DDL holds (after a
# foreign key's check read an inner one) gets it before its deadlock check could fail it.
_VIEWS_FIRST_WAIT_MS = 400
_BOUNDED_WAITS = 5
# How soon DDL in a transaction that holds the branch's write lock checks its waits for a deadlock.
_DEADLOCK_CHECK = "50ms"


def lock_for_ddl(conn: psycopg.Connection[Any], branch_id: int, infos: list[TableInfo], *,
                 root_mode: str | None = None, referencing: list[TableInfo] | None = None,
                 referenced: list[TableInfo] | None = None) -> int:
    """Take the views over the tables and the branch's write lock; the DDL's LSN.

    referencing, referenced: tables the DDL reaches through foreign keys to or from
    the tables (their views are replaced, or PostgreSQL locks them for a key): their
    views too, not their relations. A writer takes its table's view, then a parent's
    (a key's check on a branch) or a parent's or child's relation (on the root
    branch): so the views of tables with keys to these first, these, the tables
    these have keys to, and the relations last.

    root_mode: the tables' root relations in that mode instead of the views, for statements
    that replace no view: SHARE for CREATE INDEX (readers go on), ACCESS EXCLUSIVE for TRUNCATE.
    A writer takes the relation, then the branch, as it takes the view.

    A writer takes its table's view at the start of its statement and the
    branch's write lock before its first row, and holds both to commit. So DDL
    that held one and waited for the other could wait for a writer waiting
    for it. It never waits holding either: in turns, it takes the views and
    then the branch only if free (a writer in flight on the table finishes
    first, new ones queue behind the DDL), or the branch and then the views
    if they come within 50 ms (a transaction that wrote another table first
    commits first). What it took in a failed turn it lets go (a savepoint).
    The views are not taken while the branch is busy: its writer may have
    read the table through an inner view (a foreign key's check) and come
    back for the outer one. A transaction on another branch may do the same,
    so the DDL waits for the views at most 400 ms, five times, before it queues for them.
    DDL in a transaction that already holds the branch's lock takes the views
    directly, and is the one to fail if a writer waits for it meanwhile.
    """
    def take() -> None:
        _take_all(conn, branch_id, infos, root_mode, referencing or [], referenced or [])

    held = conn.execute(
        "SELECT coalesce(current_setting('heliosdb.lsn_' || %s, true), '') <> '' "
        "OR coalesce(current_setting('heliosdb.locked_' || %s, true), '') <> ''", (branch_id, branch_id)).fetchone()
    if held and held[0]:  # the transaction wrote on the branch already: it cannot let the lock go and wait
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", BUILDS_KEY)
        with _deadlocks_found_soon(conn):
            take()
        row = conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch_id,)).fetchone()
        assert row is not None
        return int(row[0])
    views_first, timeouts = True, 0
    while True:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", BUILDS_KEY)
                if views_first:
                    if _branch_busy(conn, branch_id):  # its writer may hold an inner view already: wait first
                        raise _Busy
                    try:
                        _waiting_at_most(conn, _VIEWS_FIRST_WAIT_MS if timeouts < _BOUNDED_WAITS else None, take)
                    except psycopg.errors.DeadlockDetected:  # with a transaction of another branch: after it
                        raise _Busy from None
                    try:
                        conn.execute(_LOCK_BRANCH + " NOWAIT", (branch_id,))
                    except psycopg.errors.LockNotAvailable:
                        raise _Busy from None
                else:
                    conn.execute(_LOCK_BRANCH, (branch_id,))
                    _waiting_at_most(conn, _VIEWS_WAIT_MS, take)
                row = conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch_id,)).fetchone()
                assert row is not None
                return int(row[0])
        except _Busy as busy:
            timeouts += views_first and isinstance(busy, _TimedOut)
            views_first = not views_first


@contextlib.contextmanager
def _deadlocks_found_soon(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """deadlock_timeout short for the enclosed waits (a superuser's setting; else as it is). A writer that
    holds a view and waits for the branch's lock waits for a transaction that holds that lock and runs DDL:
    the DDL, not the writer, is the one to fail with 40P01, so it looks for the cycle first."""
    row = conn.execute("SELECT current_setting('deadlock_timeout'), current_setting('is_superuser') = 'on'"
                       ).fetchone()
    if row is None or not row[1]:
        yield
        return
    conn.execute("SELECT set_config('deadlock_timeout', %s, true)", (_DEADLOCK_CHECK,))
    yield
    conn.execute("SELECT set_config('deadlock_timeout', %s, true)", (row[0],))


def _waiting_at_most(conn: psycopg.Connection[Any], ms: int | None, take: Callable[[], None]) -> None:
    """take(), where each lock wait lasts at most `ms` (None: the session's lock_timeout): _Busy after
    that (_TimedOut). A shorter lock_timeout of the session's own stays, and so does its error."""
    own = int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'").fetchone()[0])  # type: ignore[index]
    if ms is None or 0 < own <= ms:
        take()
        return
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{ms}ms",))
    try:
        take()
    except psycopg.errors.LockNotAvailable:
        raise _TimedOut from None
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{own}ms",))


def _branch_busy(conn: psycopg.Connection[Any], branch_id: int) -> bool:
    """Whether another transaction holds the branch's write lock now (not kept: a savepoint)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(_LOCK_BRANCH + " NOWAIT", (branch_id,))
    except psycopg.errors.LockNotAvailable:
        return True
    return False


def _take_all(conn: psycopg.Connection[Any], branch_id: int, infos: list[TableInfo], root_mode: str | None,
              referencing: list[TableInfo], referenced: list[TableInfo]) -> None:
    done: set[int] = set()
    for info in [*referencing, *(infos if root_mode is None else []), *referenced]:
        if info.id not in done:
            done.add(info.id)
            take_views(conn, info, root=info.root_branch == branch_id)
    for info in infos:
        if root_mode is not None:
            conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(*info.cur), sql.SQL(root_mode)))
        elif info.root_branch == branch_id:
            # DDL on the root branch alters the relations themselves. Reads AS OF a point read them without a
            # view, the history first: in that order, so that such a read is never half way through them.
            conn.execute(sql.SQL("LOCK TABLE {}, {}, {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(*info.hist), sql.Identifier(*info.br), sql.Identifier(*info.cur)))


def take_views(conn: psycopg.Connection[Any], info: TableInfo, *, root: bool) -> None:
    """Lock, in the caller's transaction, the views that read what DDL on `info` alters.

    root: the DDL runs on the table's root branch, which alters the root
    relation (read by every branch); elsewhere it alters "__br" and "__hist"
    only, which main's view does not read, so main's readers go on.
    """
    rels = [info.br, info.hist, *([info.cur] if root else [])]
    names = [sql.Identifier(*r).as_string(conn) for r in rels]
    rows = conn.execute(_VIEWS_OVER, (names,)).fetchall()
    if rows:
        conn.execute(sql.SQL(";").join(
            sql.SQL("ALTER VIEW {} OWNER TO {}").format(sql.Identifier(s, v), sql.Identifier(o)) for s, v, o in rows))
