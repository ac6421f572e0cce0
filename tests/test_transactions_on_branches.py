"""Transactions on branches: SELECT ... FOR UPDATE holds what it read; a rolled-back USE BRANCH is undone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import heliosdb
from tests import test_server_support as support

server = support.server


def _setup(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    cur.execute("INSERT INTO counter VALUES (1, 0)")
    cur.execute("CREATE DATABASE BRANCH dev")


def _second_waits(second: Callable[[], int], first_commits: Callable[[], None]) -> list[int]:
    """Run `second` (a locking read, then a write) beside a transaction that holds the lock: it must
    wait until `first_commits` ends that transaction. Returns what `second` read."""
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(second()))
    t.start()
    t.join(0.5)
    assert t.is_alive(), "the second locking read did not wait"
    first_commits()
    t.join(10)
    return seen


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_read_then_write_under_for_update_loses_no_update(conn: heliosdb.Connection, connect: Any,
                                                          branch: str) -> None:
    _setup(conn)
    a, b = connect(branch, autocommit=False), connect(branch, autocommit=False)
    ac = a.cursor()
    ac.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
    assert ac.fetchall() == [(0,)]
    def other() -> int:  # blocks until a commits, then reads a's value
        bc = b.cursor()
        bc.execute("SELECT n FROM counter WHERE id = 1 FOR UPDATE")
        n = bc.fetchone()[0]
        bc.execute("UPDATE counter SET n = %s WHERE id = 1", (n + 1,))
        b.commit()
        return n

    def first() -> None:
        ac.execute("UPDATE counter SET n = 1 WHERE id = 1")
        a.commit()

    assert _second_waits(other, first) == [1]
    assert connect(branch).cursor().execute("SELECT n FROM counter").fetchall() == [(2,)]


def test_for_update_nowait_on_a_branch(conn: heliosdb.Connection, connect: Any) -> None:
    _setup(conn)
    a, b = connect("dev", autocommit=False), connect("dev", autocommit=False)
    a.cursor().execute("SELECT * FROM counter FOR UPDATE")
    with pytest.raises(heliosdb.Error) as exc:
        b.cursor().execute("SELECT * FROM counter WHERE id = 1 FOR UPDATE NOWAIT")
    assert exc.value.sqlstate == "55P03"
    a.rollback()
    b.rollback()
    c = b.cursor()
    c.execute("SELECT n FROM counter FOR UPDATE NOWAIT")
    assert c.fetchall() == [(0,)]


@pytest.mark.parametrize("prepare", [False, True])
def test_for_update_on_a_branch_through_the_endpoint(server: Any, dbname: str, prepare: bool) -> None:
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE counter (id int PRIMARY KEY, n int)")
        c.execute("INSERT INTO counter VALUES (1, 0)")
        c.execute("CREATE DATABASE BRANCH dev")
    opts = "-c heliosdb.branch=dev"
    with server.connect(dbname, options=opts) as a, server.connect(dbname, options=opts) as b:
        query = "SELECT n FROM counter WHERE id = %s FOR UPDATE"  # simple and extended protocol alike
        assert a.execute(query, (1,), prepare=prepare).fetchall() == [(0,)]
        def other() -> int:
            n = b.execute(query, (1,), prepare=prepare).fetchone()[0]
            b.execute("UPDATE counter SET n = %s WHERE id = 1", (n + 1,))
            b.commit()
            return n

        def first() -> None:
            a.execute("UPDATE counter SET n = 1 WHERE id = 1")
            a.commit()

        assert _second_waits(other, first) == [1]


def test_use_branch_rolled_back_with_its_transaction(conn: heliosdb.Connection, connect: Any) -> None:
    _setup(conn)
    d = connect(autocommit=False)
    k = d.cursor()
    k.execute("USE BRANCH dev")
    d.rollback()  # as SET: the session is back on main, and so are its writes
    k.execute("INSERT INTO counter VALUES (2, 0)")
    d.commit()
    k.execute("SELECT heliosdb.current_branch(), count(*) FROM counter")
    assert k.fetchall() == [("main", 2)]
    k.execute("USE BRANCH dev")
    d.commit()
    k.execute("SELECT heliosdb.current_branch(), count(*) FROM counter")
    assert k.fetchall() == [("dev", 1)]


def test_use_branch_rolled_back_through_the_endpoint(server: Any, dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int)")
        c.execute("CREATE DATABASE BRANCH dev")
    with server.connect(dbname) as c:
        c.execute("USE BRANCH dev")
        assert c.info.parameter_status("heliosdb.branch") == "dev"
        c.rollback()
        assert c.info.parameter_status("heliosdb.branch") == "main"  # was left at dev
        assert c.execute("SELECT heliosdb.current_branch()").fetchone() == ("main",)


def test_heliosdb_notices_reach_endpoint_clients(server: Any, dbname: str) -> None:
    got: list[str] = []
    with server.connect(dbname, autocommit=True) as c:
        c.add_notice_handler(lambda d: got.append(d.message_primary))
        c.execute("DROP TABLE IF EXISTS nope")
        c.execute("CREATE TABLE t (id int)")
        c.execute("CREATE TABLE IF NOT EXISTS t (id int)")
        c.execute("DO $$ BEGIN RAISE NOTICE 'from plpgsql'; END $$")  # PostgreSQL's own: once
    assert got == ['table "nope" does not exist, skipping', 'relation "t" already exists, skipping', "from plpgsql"]
