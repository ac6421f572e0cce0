"""Create the HeliosDB catalog in a database the first time a session opens it."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

_LOCK_KEY = 0x48444231  # 'HDB1': serializes concurrent first opens


def ensure_catalog(conn: psycopg.Connection[Any]) -> None:
    """Bootstrap the catalog once; concurrent sessions wait for the first."""
    if _installed(conn):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if _installed(conn):
            return
        script = resources.files("heliosdb.catalog").joinpath("bootstrap.sql").read_text()
        conn.execute(script)  # type: ignore[arg-type] - a trusted constant script


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('heliosdb._meta') IS NOT NULL").fetchone()
    return bool(row and row[0])
