"""Create the HeliosDB catalog in a database the first time a session opens it."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from heliosdb import errors

_LOCK_KEY = 0x48444231  # 'HDB1': serializes concurrent first opens
CATALOG_VERSION = "19"  # bump with every change to the catalog scripts (and add a migration)
# version -> the script that brings it to the next one (generation.sql: the catalog generation
# that lets sessions cache catalog reads, see catalog/cache.py)
# mv_upkeep.sql: the common refresh of a materialized view as one statement, GC of view history
# writes.sql: the commit-log row written at commit, writes to the own branch only; clients.sql: catalog
# views for PostgreSQL clients; retention.sql: kept time-travel SQL and merge bases against GC;
# types.sql: the user's types in one schema every branch sees; locks.sql: locking reads on branches;
# gc_generation.sql: GC's advance of the retained history moves the catalog generation; fk_deferred.sql: the
# queue of foreign key checks a branch's write trigger defers; client_catalog.sql: constraints, indexes and
# NOT NULL of HeliosDB tables in the catalogs clients read; client_information_schema.sql: information_schema
# over those catalogs; images.sql: branch images (branching/images.py); write_lock.sql: writes on a
# table's root branch take the branch's write lock before any row; retention_points.sql: each branch's oldest
# available point, GC that keeps what VERSIONS BETWEEN reads at it, resolution functions that refuse the future;
# commit_window.sql: a time or SCN resolves only after the branch's commits stamped before it are visible
_MIGRATIONS = {"1": "mv.sql", "2": "generation.sql", "3": "mv_upkeep.sql", "4": "writes.sql",
               "5": "clients.sql", "6": "retention.sql", "7": "types.sql",
               "8": "locks.sql", "9": "gc_generation.sql", "10": "fk_deferred.sql",
               "11": "client_catalog.sql", "12": "client_information_schema.sql",
               "13": "images.sql", "14": "write_lock.sql",
               "15": "mv_recompute.sql", "16": "snapshots.sql",
               "17": "retention_points.sql", "18": "commit_window.sql"}


def ensure_catalog(conn: psycopg.Connection[Any]) -> None:
    """Bootstrap the catalog once; concurrent sessions wait for the first."""
    try:  # one round trip on every open of an installed, current catalog
        if _version(conn) == CATALOG_VERSION:
            return
    except psycopg.errors.UndefinedTable:
        pass  # not installed yet (the connection is in autocommit: nothing is left aborted)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if not _installed(conn):
            _run(conn, "bootstrap.sql")
        while (version := _version(conn)) in _MIGRATIONS:
            _run(conn, _MIGRATIONS[version])
    _check_version(conn)


def _run(conn: psycopg.Connection[Any], name: str) -> None:
    script = resources.files("heliosdb.catalog").joinpath(name).read_text()
    conn.execute(script)  # type: ignore[arg-type] - a trusted constant script


def _version(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT value FROM heliosdb._meta WHERE key = 'catalog_version'").fetchone()
    return row[0] if row else None


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('heliosdb._meta') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _check_version(conn: psycopg.Connection[Any]) -> None:
    version = _version(conn)
    if version != CATALOG_VERSION:
        raise errors.OperationalError(
            f"this database has HeliosDB catalog version {version or 'unknown'}, "
            f"this HeliosDB needs version {CATALOG_VERSION}",
            hint="Use the HeliosDB release that created it, or a new data directory.",
            sqlstate="58000",
        )
