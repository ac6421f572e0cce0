"""Writes to a table a branch inherited behave as writes to a PostgreSQL table: same results, same SQLSTATEs.

Each script runs on plain PostgreSQL and on HeliosDB (the setup on main, the script on a grandchild,
a child and main; see compare_support.assert_as_postgres).
"""

from __future__ import annotations

import heliosdb
from tests.compare_support import assert_as_postgres

UPDATE_FROM_SETUP = [
    "CREATE TABLE k (id int PRIMARY KEY, n int DEFAULT 0)",
    "INSERT INTO k VALUES (1), (2), (3)",
    "CREATE TABLE j (kid int, amt int)",
    "INSERT INTO j VALUES (1, 5), (1, 7), (2, 1)",  # two rows match k's row 1
]
UPDATE_FROM_SCRIPT = [
    "UPDATE k SET n = n + 1 FROM j WHERE j.kid = k.id",
    "SELECT * FROM k ORDER BY id",
    "WITH x AS (UPDATE k SET n = n + 1 FROM j WHERE j.kid = k.id RETURNING k.id, k.n) SELECT * FROM x ORDER BY id",
    "WITH x AS (UPDATE k SET n = n + 1 FROM j WHERE j.kid = k.id RETURNING k.id) SELECT count(*) FROM x",
    "UPDATE k SET id = k.id + 10 FROM j WHERE j.kid = k.id",
    "SELECT * FROM k ORDER BY id",
    "BEGIN",
    "UPDATE k SET n = 0 FROM j WHERE j.kid = k.id - 10",
    "UPDATE k SET n = n + 1 FROM j WHERE j.kid = k.id - 10",  # a second statement updates them again
    "COMMIT",
    "SELECT * FROM k ORDER BY id",
]


def test_update_from_updates_each_row_once(plain, conn: heliosdb.Connection, connect) -> None:
    expected = assert_as_postgres(plain, conn, connect, UPDATE_FROM_SETUP, UPDATE_FROM_SCRIPT)
    assert expected[0] == ("ok", 2) and expected[3] == ("ok", [(2,)])
