"""Fills HeliosDB's cache of the catalog rows clients read, before a client's catalog query runs.

The rows that make HeliosDB tables look like tables in pg_constraint, pg_index, pg_class,
pg_attribute and pg_depend are made from a branch's schema. Made on every read, they cost a
query over all of a branch's tables for every row information_schema's nested loops look at;
kept per branch and catalog generation (catalog/client_information_schema.sql), they are index
lookups. The endpoint fills them in a transaction of its own, on one connection per database, so
the fill is committed and shared before the client's statement starts, whatever transaction the
client is in; a client whose snapshot cannot see it (its own catalog changes, an older snapshot)
gets the rows made from the schema, as it does while another client's fill is running or after a
fill failed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from heliosdb.sql.names import quote_literal

log = logging.getLogger("heliosdb.server")

RETRY_AFTER = 30.0  # seconds without fills on a database after one failed (a read-only server, a full disk)


class CatalogFills:
    """One filling connection per database, used by one client thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, float] = {}  # database -> when its last fill failed
        self._closed = False

    def fill(self, session: Any) -> None:
        """Make sure the session's branch has its rows at the current catalog generation (one round
        trip when it has). Never waits for another client's fill, and never fails the client's query."""
        db = session.database
        with self._lock:
            if self._closed or time.monotonic() - self._failed.get(db, -RETRY_AFTER) < RETRY_AFTER:
                return
            lock = self._locks.setdefault(db, threading.Lock())
        if not lock.acquire(blocking=False):
            return  # another client fills it: this query makes its rows itself
        try:
            conn = self._conns.get(db)
            if conn is None or conn.closed:
                conn = self._conns[db] = session.new_connection()
                conn.execute("SET statement_timeout = '30s'; SET lock_timeout = '2s'")
            conn.execute(  # one snapshot for the generation and the rows made for it
                f"SET heliosdb.branch = {quote_literal(session.branch.name)}; "
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT heliosdb._client_cache_fill(); COMMIT")
        except psycopg.Error as exc:
            log.info("filling the client catalog cache of %s failed: %s", db, exc)
            with self._lock:
                self._failed[db] = time.monotonic()
            self._close(db)
        finally:
            lock.release()

    def close(self, database: str | None = None) -> None:
        """Close one database's connection (DROP DATABASE must not find it), or all of them for good."""
        with self._lock:
            if database is None:
                self._closed = True
            names = [database] if database is not None else list(self._conns)
        for name in names:
            lock = self._locks.get(name)
            if lock is None:
                continue
            with lock:
                self._close(name)

    def _close(self, database: str) -> None:
        conn = self._conns.pop(database, None)
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
