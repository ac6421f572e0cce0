"""DDL as in PostgreSQL on every branch: sequences, domains, LIKE, views over tables, COPY, GROUP BY."""

from __future__ import annotations

from typing import Any

import psycopg

import heliosdb
from tests.compare_support import assert_as_postgres, helios_executor, outcomes, psycopg_executor


def test_a_users_sequence_is_shared_by_every_branch_as_one_database_has_one(
        plain: psycopg.Connection[Any], conn: heliosdb.Connection, connect) -> None:
    setup = ["CREATE SEQUENCE sq START 10",
             "CREATE TABLE t (id int DEFAULT nextval('sq') PRIMARY KEY, v text)",
             "INSERT INTO t (v) VALUES ('a')"]
    script = ["SELECT nextval('sq')", "SELECT currval('sq')", "SELECT last_value, is_called FROM sq",
              "INSERT INTO t (v) VALUES ('b') RETURNING id", "SELECT setval('sq', currval('sq') + 100)",
              "ALTER SEQUENCE sq INCREMENT 2", "SELECT nextval('sq')", "ALTER SEQUENCE sq INCREMENT 1"]
    reference = psycopg_executor(plain)
    for stmt in setup:
        reference(stmt)
    main = helios_executor(conn)
    for stmt in setup:
        main(stmt)
    main("CREATE DATABASE BRANCH c1")
    c1 = connect("c1")
    helios_executor(c1)("CREATE DATABASE BRANCH c2")  # a grandchild could not be used at all
    # one sequence for the database: each branch's session goes on from the last one's values,
    # as consecutive sessions of one PostgreSQL database do
    for name in ("c2", "c1", "main"):
        expected = outcomes(psycopg_executor(plain), script)
        assert all(o[0] == "ok" for o in expected)
        got = outcomes(helios_executor(connect(name)), script)
        assert got == expected, name
        assert helios_executor(connect(name))("SELECT count(*) FROM t") == [(2,)]  # the rows are the branch's
    c1.cursor().execute("DROP SEQUENCE sq CASCADE")  # the table's default goes with it, on every branch
    plain.execute("DROP SEQUENCE sq CASCADE")
    assert outcomes(helios_executor(conn), ["SELECT nextval('sq')"]) == outcomes(
        psycopg_executor(plain), ["SELECT nextval('sq')"])


def test_a_grandchild_of_a_table_whose_default_reads_a_sequence_of_mains_schema_is_usable(
        conn: heliosdb.Connection, connect) -> None:
    main = helios_executor(conn)
    main("CREATE SEQUENCE public.ps START 5")  # named with main's schema: main's own
    main("CREATE TABLE p (id int DEFAULT nextval('ps') PRIMARY KEY, v text)")
    main("CREATE DATABASE BRANCH c1")
    c1 = helios_executor(connect("c1"))
    c1("CREATE DATABASE BRANCH c2")
    c1("USE BRANCH c2")  # first used from c1: was 42P01, relation "ps" does not exist
    assert c1("INSERT INTO p (v) VALUES ('x') RETURNING id") == [(5,)]
