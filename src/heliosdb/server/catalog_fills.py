"""Fills HeliosDB's cache of the catalog rows clients read, before a client's catalog query runs.

The rows that make HeliosDB tables look like tables in pg_constraint, pg_index, pg_class,
pg_attribute and pg_depend are made from a branch's schema. Made on every read, they cost a
query over all of a branch's tables for every row information_schema's nested loops look at;
kept per branch and catalog generation (catalog/client_information_schema.sql), they are index
lookups. The endpoint fills them in a transaction of its own, on one connection per database, so
the fill is committed and shared before the client's statement starts, whatever transaction the
client is in; a client whose snapshot cannot see it (its own catalog changes, an older snapshot)
gets the rows made from the schema, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from heliosdb.sql.names import quote_literal

log = logging.getLogger("heliosdb.server")


class CatalogFills:
    """One filling connection per database, used by one client thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self._locks: dict[str, threading.Lock] = {}

    def fill(self, session: Any) -> None:
        """Make sure the session's branch has its rows at the current catalog generation (one round
        trip when it has). A failure leaves the client's query to the rows made from the schema."""
        db = session.database
        with self._lock:
            lock = self._locks.setdefault(db, threading.Lock())
        with lock:
            conn = self._conns.get(db)
            try:
                if conn is None or conn.closed:
                    conn = self._conns[db] = session.new_connection()
                conn.execute(  # one snapshot for the generation and the rows made for it
                    f"SET heliosdb.branch = {quote_literal(session.branch.name)}; "
                    "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT heliosdb._client_cache_fill(); COMMIT")
            except psycopg.Error as exc:
                log.info("filling the client catalog cache of %s failed: %s", db, exc)
                self._close(db)

    def close(self, database: str | None = None) -> None:
        """Close one database's connection (DROP DATABASE must not find it), or all of them."""
        with self._lock:
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
