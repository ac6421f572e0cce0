"""Running the same SQL on plain PostgreSQL and on HeliosDB, and comparing what users see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

import heliosdb

Execute = Callable[[str], Any]


def outcomes(execute: Execute, script: list[str]) -> list[tuple[Any, ...]]:
    """Per statement: ("ok", rows or row count) or ("error", SQLSTATE, message, detail)."""
    out: list[tuple[Any, ...]] = []
    for stmt in script:
        try:
            out.append(("ok", execute(stmt)))
        except (psycopg.Error, heliosdb.Error) as exc:
            diag = getattr(exc, "diag", None)
            message = diag.message_primary if diag is not None else getattr(exc, "message", None)
            detail = diag.message_detail if diag is not None else getattr(exc, "detail", None)
            out.append(("error", exc.sqlstate, message, detail))
    return out


def helios_executor(conn: heliosdb.Connection) -> Execute:
    cur = conn.cursor()

    def execute(stmt: str) -> Any:
        cur.execute(stmt)
        return cur.fetchall() if cur.description else cur.rowcount

    return execute


def psycopg_executor(conn: psycopg.Connection[Any]) -> Execute:
    def execute(stmt: str) -> Any:
        cur = conn.execute(stmt)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else cur.rowcount

    return execute
