"""The session temporal context (SET AS OF, USE BRANCH ... AS OF) and what it reaches: plain views, read-only
transactions."""

from __future__ import annotations

import time

import pytest

import heliosdb
from tests.test_branches import rows, run
from tests.test_time_travel import lsn, show_as_of

THEN = {"v": [(1, "a"), (2, "b")], "vv": [(1, "a!"), (2, "b!")], "j": [(1, "a", "x"), (2, "b", "y")]}
NOW = {"v": [(1, "a2"), (2, "b"), (3, "c")], "vv": [(1, "a2!"), (2, "b!"), (3, "c!")], "j": [(1, "a2", "x")]}


@pytest.fixture
def point(conn: heliosdb.Connection) -> dict[str, str]:
    """Two tables, a view over one, a view over that view and a view joining both; the point `then`
    (as LSN, SCN and timestamp) before updates to both tables."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "CREATE TABLE u (id int PRIMARY KEY, w text)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO u VALUES (1, 'x'), (2, 'y')",
        "CREATE VIEW v AS SELECT id, v FROM t",
        "CREATE VIEW vv (n, val) AS SELECT id, v || '!' FROM v",
        "CREATE VIEW j AS SELECT t.id, v, w FROM t JOIN u USING (id)")
    marks = {"lsn": f"LSN {lsn(conn)}", "scn": f"SCN {rows(conn, 'SELECT heliosdb.current_scn()')[0][0]}"}
    time.sleep(0.02)
    marks["timestamp"] = f"TIMESTAMP '{rows(conn, 'SELECT clock_timestamp()::text')[0][0]}'"
    time.sleep(0.02)
    run(conn, "UPDATE t SET v = 'a2' WHERE id = 1", "DELETE FROM u WHERE id = 2", "INSERT INTO t VALUES (3, 'c')")
    return marks


def views(conn: heliosdb.Connection) -> dict[str, list[tuple]]:
    return {name: rows(conn, f"SELECT * FROM {name} ORDER BY 1") for name in ("v", "vv", "j")}


def test_context_reaches_plain_views(conn: heliosdb.Connection, point: dict[str, str]) -> None:
    """Views over a table, over a view and over a join read the context's point, as the tables do."""
    for written in point.values():
        run(conn, f"SET AS OF {written}")
        assert views(conn) == THEN, written
        assert rows(conn, "SELECT * FROM public.v ORDER BY 1") == THEN["v"]
        run(conn, "SET AS OF NOW")
        assert views(conn) == NOW, written
    # from one point straight to another
    run(conn, f"SET AS OF {point['lsn']}", f"SET AS OF LSN {lsn(conn)}")
    assert views(conn) == NOW
    run(conn, f"SET AS OF {point['lsn']}")
    assert views(conn) == THEN


def test_context_reaches_plain_views_on_a_branch(conn: heliosdb.Connection, point: dict[str, str], connect) -> None:
    run(conn, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'dev' WHERE id = 2")
    on_dev = lsn(dev)
    run(dev, "DELETE FROM t WHERE id = 1", "UPDATE u SET w = 'z'")
    then = {"v": [(1, "a2"), (2, "dev"), (3, "c")], "vv": [(1, "a2!"), (2, "dev!"), (3, "c!")],
            "j": [(1, "a2", "x")]}
    run(dev, f"SET AS OF LSN {on_dev}")
    assert views(dev) == then
    assert rows(dev, "SELECT * FROM br_dev.v ORDER BY 1") == then["v"]
    run(dev, f"SET AS OF {point['lsn']}")  # a point of main's, before the fork
    assert views(dev) == THEN
    run(dev, "SET AS OF NOW")
    assert views(dev) == {"v": [(2, "dev"), (3, "c")], "vv": [(2, "dev!"), (3, "c!")], "j": []}
    run(conn, f"USE BRANCH dev AS OF LSN {on_dev}")
    assert views(conn) == then
    run(conn, "USE BRANCH main")
    assert views(conn) == NOW


def test_views_made_after_the_point_and_views_with_their_own_point(conn: heliosdb.Connection,
                                                                   point: dict[str, str]) -> None:
    """A view whose query reads a table or column that did not exist at the point is a relation that did
    not exist then (42P01); a view with its own AS OF keeps that point."""
    mid = lsn(conn)
    run(conn, "CREATE TABLE later (a int)", "INSERT INTO later VALUES (5)", "ALTER TABLE t ADD COLUMN x int",
        "CREATE VIEW on_later AS SELECT a FROM later", "CREATE VIEW wide AS SELECT * FROM t",
        "CREATE VIEW narrow AS SELECT id FROM t",
        f"CREATE VIEW pinned AS SELECT id, v FROM t AS OF {point['lsn']}")
    run(conn, f"SET AS OF {point['lsn']}")
    for name in ("on_later", "wide"):
        err = error(conn, f"SELECT * FROM {name}")
        assert (err.sqlstate, err.message) == ("42P01", f'relation "{name}" does not exist at {point["lsn"]} '
                                                        'on branch "main"'), name
        assert err.hint == "The view reads a table or column that did not exist at that point."
    assert rows(conn, "SELECT * FROM narrow ORDER BY 1") == [(1,), (2,)]  # its query could run then
    run(conn, f"SET AS OF LSN {mid}")
    assert rows(conn, "SELECT * FROM pinned ORDER BY 1") == THEN["v"]
    assert views(conn) == NOW
    run(conn, "SET AS OF NOW")
    assert rows(conn, "SELECT * FROM on_later") == [(5,)]
    assert rows(conn, "SELECT * FROM pinned ORDER BY 1") == THEN["v"]


def error(conn: heliosdb.Connection, stmt: str) -> heliosdb.Error:
    with pytest.raises(heliosdb.Error) as info:
        conn.cursor().execute(stmt)
    return info.value


def test_rollback_puts_the_views_context_back(conn: heliosdb.Connection, point: dict[str, str]) -> None:
    run(conn, "BEGIN", f"SET AS OF {point['lsn']}")
    assert views(conn) == THEN
    run(conn, "ROLLBACK")
    assert views(conn) == NOW
    run(conn, f"SET AS OF {point['lsn']}", "BEGIN", "SET AS OF NOW")
    assert views(conn) == NOW
    run(conn, "ROLLBACK")
    assert show_as_of(conn) == ("main", point["lsn"])
    assert views(conn) == THEN
    run(conn, "BEGIN", "SAVEPOINT s", "SET AS OF NOW", "ROLLBACK TO SAVEPOINT s")
    assert views(conn) == THEN
    run(conn, "COMMIT", "SET AS OF NOW")
    assert views(conn) == NOW


def test_context_in_read_only_transactions(conn: heliosdb.Connection, point: dict[str, str]) -> None:
    """SET AS OF works in a read-only transaction (at its start: PostgreSQL allows the session's views to
    be made only then) and with default_transaction_read_only; writes under it still get 25006."""
    for begin in (("BEGIN READ ONLY",), ("BEGIN", "SET TRANSACTION READ ONLY")):
        run(conn, *begin, f"SET AS OF {point['lsn']}")
        assert views(conn) == THEN
        assert rows(conn, "SELECT * FROM t ORDER BY id") == THEN["v"]
        assert rows(conn, "SHOW transaction_read_only") == [("on",)]  # read-only again
        assert error(conn, "UPDATE t SET v = 'x'").message.startswith("cannot write while the session reads")
        run(conn, "ROLLBACK")
        assert show_as_of(conn) == ("main", "NOW")
        assert views(conn) == NOW
    run(conn, "BEGIN READ ONLY", f"SET AS OF {point['scn']}", "COMMIT")
    assert views(conn) == THEN
    run(conn, "BEGIN READ ONLY", "SET AS OF NOW")
    assert views(conn) == NOW
    run(conn, "COMMIT")
    assert show_as_of(conn) == ("main", "NOW")
    # after the transaction's first query PostgreSQL refuses it: a clear error, the context as it was
    run(conn, "BEGIN READ ONLY", "SELECT 1")
    err = error(conn, f"SET AS OF {point['lsn']}")
    assert (err.sqlstate, err.message) == ("25006", "SET AS OF in a read-only transaction must come before its "
                                                    "first query")
    run(conn, "ROLLBACK")
    assert show_as_of(conn) == ("main", "NOW")
    run(conn, "SET default_transaction_read_only = on", f"SET AS OF {point['timestamp']}")
    assert views(conn) == THEN
    assert error(conn, "DELETE FROM t").sqlstate == "25006"
    run(conn, "SET AS OF NOW")
    assert views(conn) == NOW
    assert error(conn, "DELETE FROM t").sqlstate == "25006"  # PostgreSQL's: the transaction is read-only
    run(conn, "RESET default_transaction_read_only")


def test_prepare_as_of_in_a_read_only_transaction(conn: heliosdb.Connection, point: dict[str, str]) -> None:
    run(conn, "BEGIN READ ONLY", "SELECT 1", f"PREPARE q AS SELECT id, v FROM t AS OF {point['lsn']} ORDER BY id")
    assert rows(conn, "EXECUTE q") == THEN["v"]
    run(conn, "COMMIT", "UPDATE t SET v = 'later'")
    assert rows(conn, "EXECUTE q") == THEN["v"]
    run(conn, "SET default_transaction_read_only = on",
        f"PREPARE q2 AS SELECT id, v FROM t AS OF {point['lsn']} ORDER BY id")
    assert rows(conn, "EXECUTE q2") == THEN["v"]
    run(conn, "RESET default_transaction_read_only")


def test_schema_changes_are_refused_under_the_context(conn: heliosdb.Connection, point: dict[str, str]) -> None:
    """DDL is a write: under the context it would act on the context's temporary views (a view made
    over them, the copy of a view dropped) and leave the session unable to SET AS OF NOW."""
    from tests.test_branches import sqlstate

    run(conn, f"SET AS OF {point['lsn']}")
    for stmt in ("CREATE VIEW w AS SELECT * FROM t", "DROP VIEW v", "ALTER VIEW v RENAME TO v2",
                 "COMMENT ON TABLE t IS 'c'", "GRANT SELECT ON t TO PUBLIC", "CREATE FUNCTION f() RETURNS int "
                 "LANGUAGE sql AS 'SELECT 1'", "CREATE TEMP VIEW tv AS SELECT * FROM v"):
        assert sqlstate(conn, stmt) == "25006", stmt
    run(conn, "CREATE TEMP TABLE kept AS SELECT * FROM vv")  # copying the point's rows away is a read
    run(conn, "SET AS OF NOW")
    assert views(conn) == NOW
    assert rows(conn, "SELECT * FROM kept ORDER BY 1") == THEN["vv"]
    assert rows(conn, "SELECT count(*) FROM pg_class WHERE relname IN ('w', 'v2', 'tv')") == [(0,)]
