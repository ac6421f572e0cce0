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


def postgres_outcomes(plain: Any, setup: list[str], script: list[str]) -> list[tuple[Any, ...]]:
    """`setup`, then `script` on plain PostgreSQL: the script's outcomes."""
    reference = psycopg_executor(plain)
    for stmt in setup:
        reference(stmt)
    return outcomes(reference, script)


def assert_as_postgres(plain: psycopg.Connection[Any], conn: heliosdb.Connection, connect: Callable[..., Any],
                       setup: list[str], script: list[str], *,
                       same: Callable[[tuple[Any, ...], tuple[Any, ...]], bool] | None = None,
                       after: Callable[[str], None] | None = None) -> list[tuple[Any, ...]]:
    """Run `setup` then `script` on plain PostgreSQL, and on HeliosDB: `setup` on main, then `script` on a
    grandchild, a child and main (the branches inherit the setup); every outcome must be PostgreSQL's.

    same: compares one outcome (default: equality); after(branch): called after each branch's run.
    Returns PostgreSQL's outcomes, for the caller to check the script exercises what it claims.
    """
    expected = postgres_outcomes(plain, setup, script)
    main = helios_executor(conn)
    for stmt in setup:
        main(stmt)
    main("CREATE DATABASE BRANCH child")
    helios_executor(connect("child"))("CREATE DATABASE BRANCH grandchild")
    for name in ("grandchild", "child", "main"):
        got = outcomes(helios_executor(connect(name)), script)
        for stmt, want, have in zip(script, expected, got, strict=True):
            assert (same(want, have) if same else have == want), (name, stmt, have, want)
        if after is not None:
            after(name)
    return expected
