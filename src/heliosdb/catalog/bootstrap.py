"""Create the HeliosDB catalog in a database the first time a session opens it."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from heliosdb import errors

_LOCK_KEY = 0x48444231  # 'HDB1': serializes concurrent first opens
CATALOG_VERSION = "1"  # bump with every change to bootstrap.sql (and add a migration)


def ensure_catalog(conn: psycopg.Connection[Any]) -> None:
    """Bootstrap the catalog once; concurrent sessions wait for the first."""
    installed, has_gen = _installed(conn)
    if installed:
        _check_version(conn)
        if has_gen:
            return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        installed, has_gen = _installed(conn)
        if has_gen:
            return
        if not installed:
            conn.execute(_script("bootstrap.sql"))  # type: ignore[arg-type] - a trusted constant script
        # the catalog generation came later: added in place to databases made before it
        conn.execute(_script("generation.sql"))  # type: ignore[arg-type] - a trusted constant script


def _script(name: str) -> str:
    return resources.files("heliosdb.catalog").joinpath(name).read_text()


def _installed(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
    row = conn.execute(
        "SELECT to_regclass('heliosdb._meta') IS NOT NULL, to_regclass('heliosdb._catalog_gen') IS NOT NULL"
    ).fetchone()
    return (bool(row and row[0]), bool(row and row[1]))


def _check_version(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT value FROM heliosdb._meta WHERE key = 'catalog_version'").fetchone()
    if row is None or row[0] != CATALOG_VERSION:
        raise errors.OperationalError(
            f"this database has HeliosDB catalog version {row[0] if row else 'unknown'}, "
            f"this HeliosDB needs version {CATALOG_VERSION}",
            hint="Use the HeliosDB release that created it, or a new data directory.",
            sqlstate="58000",
        )
