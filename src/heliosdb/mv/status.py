"""A view's refresh status on a branch (heliosdb.mv_staleness.status): REFRESHING, FAILED, UPSTREAM_FAILED.

The status lives in the catalog row of the view (heliosdb._mv_state), so it is transactional: a
refresh that is its own transaction (the scheduler's, or a REFRESH outside a transaction block)
commits REFRESHING before it starts, so that other sessions see it while it runs, and records a
failure after the failed transaction rolled back. A REFRESH inside a user's transaction block is
part of that transaction: other sessions see its outcome at COMMIT and nothing of it before, as
they see nothing else of an open transaction (docs/materialized-views.md, "Staleness").
"""

from __future__ import annotations

from typing import Any

import psycopg

from heliosdb import errors
from heliosdb.catalog.model import Branch
from heliosdb.mv import catalog as mvcat
from heliosdb.mv.catalog import MView

# by name, as REFRESH names the view (the name resolves on the branch as _mv_refresh resolves it);
# the marker need not survive a crash (a crash ends the refresh too), so no WAL flush is waited for
_MARK_BY_NAME = """UPDATE heliosdb._mv_state s SET status = 'REFRESHING'
    FROM heliosdb._mv_visible(%s) v, (SELECT set_config('synchronous_commit', 'off', true)) c
    WHERE v.name = %s AND s.mv_id = v.mv_id AND s.branch_id = %s
    RETURNING s.mv_id"""


def mark_refreshing(conn: psycopg.Connection[Any], branch_id: int, name: str) -> int | None:
    """REFRESHING for view `name` on the branch, committed (autocommit); its id, None if there is none."""
    row = conn.execute(_MARK_BY_NAME, (branch_id, name, branch_id)).fetchone()  # type: ignore[arg-type]
    return None if row is None else int(row[0])


def mark_done(conn: psycopg.Connection[Any], mv_id: int, branch_id: int) -> None:
    """The refresh found nothing to do (_mv_record, which ends every other refresh, did not run)."""
    conn.execute(
        "UPDATE heliosdb._mv_state SET status = 'FRESH', failures = 0, last_error = NULL, next_retry = NULL "
        "WHERE mv_id = %s AND branch_id = %s AND status = 'REFRESHING'", (mv_id, branch_id))


def error_line(exc: BaseException) -> str:
    """The first line of an error's message, as the status shows it."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def record_failure(conn: psycopg.Connection[Any], mv: MView, branch: Branch, error: str) -> None:
    """Outside the failed transaction: FAILED with bounded exponential backoff; inputs of others mark them."""
    conn.execute(
        """UPDATE heliosdb._mv_state SET status = 'FAILED', failures = failures + 1, last_error = %s,
               next_retry = clock_timestamp() + make_interval(secs => least(60, 2 ^ least(failures, 6)))
           WHERE mv_id = %s AND branch_id = %s""",
        (error, mv.id, branch.id),
    )
    for down in mvcat.dependents(conn, mv.id):
        conn.execute(
            "UPDATE heliosdb._mv_state SET status = 'UPSTREAM_FAILED', last_error = %s "
            "WHERE mv_id = %s AND branch_id = %s",
            (f'input view "{mv.name}" failed to refresh', down, branch.id),
        )


def record_user_failure(conn: psycopg.Connection[Any], mv_id: int, branch: Branch, exc: BaseException) -> None:
    """After a failed REFRESH that was its own transaction (rolled back): FAILED, as the scheduler records it.

    Best effort: when the connection itself is gone, the user hears of the refresh's error, not of this.
    """
    try:
        with conn.transaction():
            record_failure(conn, mvcat.by_id(conn, mv_id), branch, error_line(exc))
    except (psycopg.Error, errors.Error):
        pass
