"""INSERT ... ON CONFLICT answers as PostgreSQL does on main and on branches that inherited the table."""

from __future__ import annotations

from typing import Any

import psycopg

import heliosdb
from tests.compare_support import assert_as_postgres

SETUP = [
    "CREATE TABLE t (id int PRIMARY KEY, u int UNIQUE, v int)",
    "INSERT INTO t VALUES (1, 1, 0), (2, 2, 0)",
]
SCRIPT = [
    "INSERT INTO t VALUES (1, 9, 9)",  # without ON CONFLICT: each unique constraint holds
    "INSERT INTO t VALUES (10, 1, 0)",
    "INSERT INTO t VALUES (1, 5, 9) ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET v = excluded.v",
    "INSERT INTO t VALUES (7, 1, 3) ON CONFLICT ON CONSTRAINT t_u_key DO NOTHING",
    "INSERT INTO t VALUES (7, 1, 3) ON CONFLICT ON CONSTRAINT nope DO NOTHING",
    # a row proposed twice: PostgreSQL's 21000, also when the first one was inserted by the statement
    "INSERT INTO t VALUES (3, 3, 0), (3, 4, 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "INSERT INTO t VALUES (2, 2, 5), (2, 2, 6) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "INSERT INTO t VALUES (5, 5, 0), (6, 6, 0) ON CONFLICT (id) DO UPDATE SET v = 1",
    "INSERT INTO t VALUES (5, 5, 0), (6, 6, 0) ON CONFLICT (id) DO UPDATE SET v = t.v + 1 RETURNING id, v",
    # the arbiter is the target: the primary key conflicts too, but the row updated is u's
    "INSERT INTO t VALUES (1, 2, 42) ON CONFLICT (u) DO UPDATE SET v = excluded.v RETURNING id, u, v",
    "INSERT INTO t VALUES (9, 5, 0) ON CONFLICT DO NOTHING",
    "INSERT INTO t VALUES (9, 5, 0) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO t VALUES (9, 5, 0) ON CONFLICT (v) DO NOTHING",  # no unique constraint on v: 42P10
    "SELECT * FROM t ORDER BY id",
]


def test_on_conflict_on_main_and_on_inheriting_branches(plain: psycopg.Connection, conn: heliosdb.Connection,
                                                         connect: Any) -> None:
    expected = assert_as_postgres(plain, conn, connect, SETUP, SCRIPT)
    assert [o[1] for o in expected[5:7]] == ["21000", "21000"]  # the script exercises what it claims
