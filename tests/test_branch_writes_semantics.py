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

EXCLUDE_SETUP = [
    "CREATE TABLE e (id int PRIMARY KEY, r int4range, EXCLUDE USING gist (r WITH &&))",
    "CREATE TABLE w (id int PRIMARY KEY, a int, b int, active bool, "
    "CONSTRAINT w_span EXCLUDE USING gist (int4range(a, b) WITH &&) WHERE (active))",
    "INSERT INTO e VALUES (1, '[1,5)')",
    "INSERT INTO w VALUES (1, 1, 5, true), (2, 1, 5, false)",
]
EXCLUDE_SCRIPT = [
    "INSERT INTO e VALUES (2, '[3,8)')",  # overlaps an inherited row
    "INSERT INTO e VALUES (3, '[5,9)')",
    "UPDATE e SET r = '[4,6)' WHERE id = 3",  # overlaps row 1
    "UPDATE e SET r = '[6,7)' WHERE id = 3",  # overlaps only its own old value
    "INSERT INTO e VALUES (4, '[8,10)'), (5, '[9,12)')",  # within one statement
    "INSERT INTO e VALUES (6, NULL)",
    "DELETE FROM e WHERE id = 1",
    "INSERT INTO e VALUES (7, '[1,3)')",
    "INSERT INTO w VALUES (3, 2, 3, true)",
    "INSERT INTO w VALUES (4, 2, 3, false)",  # outside the predicate
    "UPDATE w SET active = true WHERE id = 2",
    "SELECT * FROM e ORDER BY id",
    "SELECT * FROM w ORDER BY id",
]


def test_exclusion_constraints_hold_for_a_branchs_rows(plain, conn: heliosdb.Connection, connect) -> None:
    expected = assert_as_postgres(plain, conn, connect, EXCLUDE_SETUP, EXCLUDE_SCRIPT)
    assert [e[1] for e in expected if e[0] == "error"] == ["23P01"] * 5

GENERATED_SETUP = [
    "CREATE TABLE s (id int PRIMARY KEY, v int, gen int GENERATED ALWAYS AS (v * 2) STORED)",
    "INSERT INTO s (id, v) VALUES (1, 1)",
]
GENERATED_SCRIPT = [
    "INSERT INTO s (id, v, gen) VALUES (2, 2, 1)",
    "INSERT INTO s VALUES (3, 3, 7)",
    "UPDATE s SET gen = 3",
    "UPDATE s SET gen = 3, v = 4 WHERE id = 1",
    "INSERT INTO s (id, v, gen) VALUES (4, 4, DEFAULT)",
    "INSERT INTO s VALUES (5, 5)",
    "UPDATE s SET v = 6 WHERE id = 1",
    "UPDATE s SET v = v + 1 WHERE id = 4",
    "SELECT * FROM s ORDER BY id",
]


def test_generated_columns_refuse_given_values_on_a_branch(plain, conn: heliosdb.Connection, connect) -> None:
    expected = assert_as_postgres(plain, conn, connect, GENERATED_SETUP, GENERATED_SCRIPT)
    assert [e[1] for e in expected if e[0] == "error"] == ["428C9"] * 4
