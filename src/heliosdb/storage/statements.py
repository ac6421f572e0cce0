"""psycopg's automatic server-side statements, without wiping the user's own.

psycopg prepares a query it has seen a few times; after a ROLLBACK, or a DROP or ALTER, it
forgets them and sends DEALLOCATE ALL. On a HeliosDB storage connection that also drops the
statements the user prepared: SQL `PREPARE`, and through `heliosdb serve` every named statement
of the client's extended protocol (asyncpg, JDBC and pgx prepare each query). Here psycopg
closes only its own statements, one protocol Close each (closing an unknown name is no error).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import _connection_base
from psycopg._preparing import PrepareManager


class OwnStatements(PrepareManager):
    """psycopg's prepared-statement cache; its `clear` closes psycopg's statements only."""

    def clear(self) -> bool:
        self._counts.clear()
        if not self._names:
            return False
        self._to_flush.clear()
        self._to_flush.extend(self._names.values())
        self._names.clear()
        return True


def keep_users_statements(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Install OwnStatements on a fresh connection (libpq >= 17 closes by protocol message; with an
    older libpq psycopg would send SQL DEALLOCATE, which fails inside an aborted transaction)."""
    if getattr(_connection_base, "_HAS_SEND_CLOSE", False):
        manager = OwnStatements()
        manager.prepare_threshold = conn._prepared.prepare_threshold
        manager.prepared_max = conn._prepared.prepared_max
        conn._prepared = manager
    return conn


_STALE_PLAN = "cached plan must not change result type"


def execute_replanned(cur: psycopg.Cursor[Any], stmt: Any, params: Any) -> None:
    """cur.execute(stmt, params); when the statement psycopg prepared earlier fails because DDL on
    another connection changed its result type (0A000, before it ran), psycopg would send the same
    prepared statement again every time. Forget psycopg's statements, and outside a transaction
    (where the error failed nothing else) run it again unprepared."""
    try:
        cur.execute(stmt, params)
    except psycopg.errors.FeatureNotSupported as exc:
        if not str(exc).startswith(_STALE_PLAN):
            raise
        cur.connection._prepared.clear()
        if cur.connection.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise
        cur.execute(stmt, params, prepare=False)
