"""DDL and writes beside readers and writers: they wait for each other, and nobody gets a deadlock error.

Each test stalls the DDL at a lock a third transaction holds, so that the other session's statement
arrives while the DDL is half way through; then the third transaction ends and everything must finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import heliosdb


def _setup(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
    cur.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    cur.execute("CREATE TABLE u (id int PRIMARY KEY, v int)")
    cur.execute("INSERT INTO u VALUES (1, 0)")
    cur.execute("CREATE DATABASE BRANCH dev")


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _waiting(conn: heliosdb.Connection, n: int) -> None:
    """Until `n` other sessions of this database wait for a lock."""
    cur = conn.cursor()
    for _ in range(200):
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")
        if cur.fetchone()[0] >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"expected {n} sessions waiting for a lock")


def _read_and_commit(conn: heliosdb.Connection, query: str) -> Any:
    """Run a query in a transaction of its own, commit it, and return its first row."""
    row = conn.cursor().execute(query).fetchone()
    conn.commit()
    return row


def _write_and_commit(conn: heliosdb.Connection, stmt: str) -> int:
    """Run a write in the connection's open transaction, commit it, and return its row count."""
    cur = conn.cursor()
    cur.execute(stmt)
    n = cur.rowcount
    conn.commit()
    return n


def _finish(*pairs: tuple[threading.Thread, list[Any]]) -> list[Any]:
    results = []
    for t, out in pairs:
        t.join(30)
        assert not t.is_alive(), "a session never finished"
        assert out and not isinstance(out[0], Exception), out
        results.append(out[0])
    return results


@pytest.mark.parametrize("ddl", ["ALTER TABLE t ADD COLUMN w int", "ALTER TABLE t ALTER COLUMN v TYPE bigint",
                                 "ALTER TABLE t RENAME COLUMN v TO w"])
def test_a_read_arriving_during_ddl_on_main_waits_instead_of_deadlocking(
        conn: heliosdb.Connection, connect: Any, ddl: str) -> None:
    _setup(conn)
    holder = connect("dev", autocommit=False)  # a reader on dev holds the storage main's DDL must lock
    holder.cursor().execute("SELECT count(*) FROM t")
    ddl_conn, reader = connect(), connect(autocommit=False)
    d = _in_thread(lambda: ddl_conn.cursor().execute(ddl).statusmessage)
    _waiting(conn, 1)

    r = _in_thread(lambda: _read_and_commit(reader, "SELECT count(*), sum(id) FROM t"))
    time.sleep(0.3)
    holder.rollback()
    assert _finish(d, r) == ["ALTER TABLE", (100, 5050)]
    assert len(conn.cursor().execute("SELECT * FROM t WHERE id = 1").fetchone()) == 2 + ("ADD" in ddl)


def test_a_read_arriving_during_ddl_on_a_branch_waits_instead_of_deadlocking(
        conn: heliosdb.Connection, connect: Any) -> None:
    _setup(conn)
    run = connect("dev")
    run.cursor().execute("UPDATE t SET v = -v WHERE id <= 10")  # the branch's own rows
    run.cursor().execute("CREATE DATABASE BRANCH feature")  # a child: it reads dev's rows too
    holder = connect("feature", autocommit=False)
    holder.cursor().execute("SELECT count(*) FROM t")
    ddl_conn, reader = connect("dev"), connect("dev", autocommit=False)
    d = _in_thread(lambda: ddl_conn.cursor().execute("ALTER TABLE t ADD COLUMN w int").statusmessage)
    _waiting(conn, 1)

    r = _in_thread(lambda: _read_and_commit(reader, "SELECT count(*), sum(v) FROM t"))
    time.sleep(0.3)
    main = conn.cursor()  # main's table is not the branch's DDL's: reading it waits for nothing
    main.execute("SET statement_timeout = '5s'")
    assert main.execute("SELECT count(*) FROM t WHERE v < 0").fetchone() == (0,)
    holder.rollback()
    assert _finish(d, r) == ["ALTER TABLE", (100, 5050 - 2 * 55)]


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_ddl_gives_way_to_a_writer_that_holds_the_branch(conn: heliosdb.Connection, connect: Any,
                                                          branch: str) -> None:
    """A transaction that wrote another table holds the branch's write lock, then writes the DDL's table."""
    _setup(conn)
    writer, ddl_conn = connect(branch, autocommit=False), connect(branch)
    wc = writer.cursor()
    wc.execute("UPDATE u SET v = v + 1 WHERE id = 1")
    d = _in_thread(lambda: ddl_conn.cursor().execute("ALTER TABLE t ADD COLUMN w int").statusmessage)
    _waiting(conn, 1)

    w = _in_thread(lambda: _write_and_commit(writer, "UPDATE t SET v = 0 WHERE id = 1"))
    assert _finish(w, d) == [1, "ALTER TABLE"]
    assert connect(branch).cursor().execute("SELECT v, w FROM t WHERE id = 1").fetchone() == (0, None)


@pytest.mark.parametrize("ddl, status", [
    ("CREATE INDEX t_v ON t (v)", "CREATE INDEX"), ("ALTER TABLE t ADD COLUMN w int", "ALTER TABLE"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT v % 3 AS k, count(*) AS n FROM t GROUP BY v % 3",
     "CREATE MATERIALIZED VIEW")])
def test_ddl_queued_for_the_branch_lets_a_writer_of_its_table_through(
        conn: heliosdb.Connection, connect: Any, ddl: str, status: str) -> None:
    """The DDL waits for the branch's write lock first; a writer of its table then takes the table
    and waits for the branch behind the DDL. Neither may end up waiting for the other."""
    _setup(conn)
    holder, ddl_conn, writer = connect(autocommit=False), connect(), connect()
    holder.cursor().execute("UPDATE u SET v = v + 1 WHERE id = 1")  # main's write lock, until commit
    d = _in_thread(lambda: ddl_conn.cursor().execute(ddl).statusmessage)
    _waiting(conn, 1)
    w = _in_thread(lambda: writer.cursor().execute("UPDATE t SET v = 0 WHERE id = 1").rowcount)
    _waiting(conn, 2)
    holder.commit()
    assert _finish(w, d) == [1, status]
    assert conn.cursor().execute("SELECT v FROM t WHERE id = 1").fetchone() == (0,)


@pytest.mark.parametrize("branch, ddl_branch", [("dev", "dev"), ("main", "main"), ("dev", "main")])
def test_a_transaction_that_checked_a_foreign_key_goes_on_beside_ddl_of_the_parent(
        conn: heliosdb.Connection, connect: Any, branch: str, ddl_branch: str) -> None:
    """The foreign key's check read the parent table (on a branch: through its inner view); then DDL of
    the parent arrives, and then the transaction reads or writes the parent itself."""
    cur = conn.cursor()
    for s in ("CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t SELECT g, g FROM generate_series(1, 10) g",
              "CREATE TABLE ch (id int PRIMARY KEY, pid int REFERENCES t (id))", "INSERT INTO ch VALUES (1, 1)",
              "CREATE DATABASE BRANCH dev"):
        cur.execute(s)
    writer, ddl_conn = connect(branch, autocommit=False), connect(ddl_branch)
    wc = writer.cursor()
    wc.execute("INSERT INTO ch VALUES (2, 2)")
    d = _in_thread(lambda: ddl_conn.cursor().execute("ALTER TABLE t ADD COLUMN c int").statusmessage)
    _waiting(conn, 1)

    w = _in_thread(lambda: _write_and_commit(writer, "UPDATE t SET v = v + 1 WHERE id = 5"))
    assert _finish(w, d) == [1, "ALTER TABLE"]
    assert connect(branch).cursor().execute("SELECT v FROM t WHERE id = 5").fetchone() == (6,)


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_two_writers_of_one_row_queue_as_in_postgresql(conn: heliosdb.Connection, connect: Any, branch: str) -> None:
    """A transaction wrote another table (it holds the branch's write lock); a single UPDATE of row 1
    arrives; then the transaction updates row 1 too. No DDL at all: PostgreSQL queues them."""
    _setup(conn)
    holder, other = connect(branch, autocommit=False), connect(branch)
    hc = holder.cursor()
    hc.execute("UPDATE u SET v = v + 1 WHERE id = 1")
    o = _in_thread(lambda: other.cursor().execute("UPDATE t SET v = v + 10 WHERE id = 1").rowcount)
    _waiting(conn, 1)

    h = _in_thread(lambda: _write_and_commit(holder, "UPDATE t SET v = v + 100 WHERE id = 1"))
    assert _finish(h, o) == [1, 1]
    assert connect(branch).cursor().execute("SELECT v FROM t WHERE id = 1").fetchone() == (111,)


def test_truncate_on_main_gives_way_to_a_transaction_that_holds_the_branch(
        conn: heliosdb.Connection, connect: Any) -> None:
    _setup(conn)
    holder, truncating = connect(autocommit=False), connect()
    hc = holder.cursor()
    hc.execute("UPDATE t SET v = 0 WHERE id = 1")  # main's write lock, until commit
    d = _in_thread(lambda: truncating.cursor().execute("TRUNCATE u").statusmessage)
    _waiting(conn, 1)

    w = _in_thread(lambda: _write_and_commit(holder, "UPDATE u SET v = v + 1 WHERE id = 1"))
    assert _finish(w, d) == [1, "TRUNCATE TABLE"]
    assert conn.cursor().execute("SELECT count(*) FROM u").fetchone() == (0,)


@pytest.mark.parametrize("ddl, write", [
    ("ALTER TABLE t ALTER COLUMN v TYPE bigint", "INSERT INTO ch VALUES (2, 2)"),
    ("ALTER TABLE ch DROP CONSTRAINT ch_pid_fkey", "INSERT INTO t VALUES (1000, 1)"),
    ("ALTER TABLE ch ADD CONSTRAINT ch_t FOREIGN KEY (pid) REFERENCES t (id)", "INSERT INTO t VALUES (1000, 1)"),
    ("CREATE TABLE ch2 (id int PRIMARY KEY, pid int REFERENCES t (id))", "INSERT INTO t VALUES (1000, 1)"),
    ("DROP TABLE ch", "INSERT INTO t VALUES (1000, 1)"),
])
def test_ddl_reaching_a_related_table_lets_its_writer_through(conn: heliosdb.Connection, connect: Any,
                                                               ddl: str, write: str) -> None:
    """DDL of one table that locks or rebuilds another through a foreign key, queued behind main's write
    lock; a writer of that other table arrives and queues behind the DDL."""
    _setup(conn)
    cur = conn.cursor()
    cur.execute("CREATE TABLE ch (id int PRIMARY KEY, pid int REFERENCES t (id))")
    cur.execute("INSERT INTO ch VALUES (1, 1)")
    holder, ddl_conn, writer = connect(autocommit=False), connect(), connect()
    holder.cursor().execute("UPDATE u SET v = v + 1 WHERE id = 1")
    d = _in_thread(lambda: ddl_conn.cursor().execute(ddl).statusmessage)
    _waiting(conn, 1)
    w = _in_thread(lambda: writer.cursor().execute(write).rowcount)
    _waiting(conn, 2)
    holder.commit()
    assert _finish(w, d) == [1, " ".join(ddl.split()[:2])]


def test_a_writer_of_a_child_table_checks_its_key_while_ddl_of_the_parent_waits_for_its_view(
        conn: heliosdb.Connection, connect: Any) -> None:
    """A writer of ch holds ch's view and has not yet checked its foreign key to t when DDL of t arrives;
    the DDL then stops at a view of ch that a reader on a branch holds. The DDL takes the views of the tables
    with keys to t before t's relations, so the writer's check of t does not wait for the DDL, which would
    wait for the writer's view: before, the writer got 40P01."""
    _setup(conn)
    cur = conn.cursor()
    cur.execute("CREATE TABLE ch (id int PRIMARY KEY, pid int REFERENCES t (id))")
    cur.execute("INSERT INTO ch VALUES (1, 1)")
    cur.execute("CREATE DATABASE BRANCH feature")
    storage = conn.session.conn  # a stall in the writer, ahead of HeliosDB's own statement triggers
    schema = storage.execute("SELECT relnamespace::regnamespace::text FROM pg_class "
                             "WHERE relname = 'ch' AND relkind = 'r'").fetchone()[0]
    storage.execute(f"CREATE FUNCTION {schema}.stall() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$BEGIN PERFORM pg_advisory_xact_lock_shared(4711); RETURN NULL; END$$")
    storage.execute(f'CREATE TRIGGER "A_stall" BEFORE INSERT ON {schema}.ch '
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.stall()")
    stall, reader = connect(autocommit=False), connect("feature", autocommit=False)
    stall.cursor().execute("SELECT pg_advisory_xact_lock(4711)")
    reader.cursor().execute("SELECT count(*) FROM ch")  # the branch's views of ch
    writer, ddl_conn = connect(), connect()
    w = _in_thread(lambda: writer.cursor().execute("INSERT INTO ch VALUES (2, 2)").rowcount)
    _waiting(conn, 1)
    d = _in_thread(lambda: ddl_conn.cursor().execute("ALTER TABLE t ALTER COLUMN v TYPE bigint").statusmessage)
    _waiting(conn, 2)

    stall.rollback()  # the writer goes on to its key's check
    time.sleep(0.3)
    reader.rollback()  # the DDL goes on to the writer's view
    assert _finish(w, d) == [1, "ALTER TABLE"]
    assert conn.cursor().execute("SELECT count(*) FROM ch").fetchone() == (2,)


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_ddl_in_a_transaction_that_wrote_and_a_writer_waiting_for_it(conn: heliosdb.Connection, connect,
                                                                      branch: str) -> None:
    """A transaction wrote u (it holds the branch's write lock) and a writer of t waits for that lock; then
    the transaction alters t. On main the writer holds t's view while it waits (it takes the lock in a
    statement trigger), so the two wait for each other: the DDL is the one that fails, and the writer goes
    on once the transaction rolls back. On a branch the writer takes the lock first: the DDL goes on."""
    _setup(conn)
    tx, writer = connect(branch, autocommit=False), connect(branch)
    tx.cursor().execute("UPDATE u SET v = v + 1 WHERE id = 1")
    w = _in_thread(lambda: writer.cursor().execute("UPDATE t SET v = v + 1 WHERE id = 1").rowcount)
    _waiting(conn, 1)
    if branch == "main":
        with pytest.raises(heliosdb.Error) as err:
            tx.cursor().execute("ALTER TABLE t ADD COLUMN w int")
        assert err.value.sqlstate == "40P01"
        tx.rollback()
    else:
        tx.cursor().execute("ALTER TABLE t ADD COLUMN w int")
        tx.commit()
    assert _finish(w) == [1]
    assert connect(branch).cursor().execute("SELECT v FROM t WHERE id = 1").fetchone() == (2,)


def test_reads_as_of_a_point_wait_for_ddl_on_main(conn: heliosdb.Connection, connect: Any) -> None:
    """A read AS OF a point reads the history and the root relation without a view: DDL on main takes
    them in the same order, so the read waits and then answers."""
    _setup(conn)
    point = conn.cursor().execute("SELECT heliosdb.current_lsn()::text").fetchone()[0]
    conn.cursor().execute("UPDATE t SET v = 0")
    holder = connect(autocommit=False)  # holds the root relation: the DDL stops half way through its locks
    holder.cursor().execute(f"SELECT count(*) FROM t AS OF LSN '{point}'")
    ddl_conn, reader = connect(), connect()
    d = _in_thread(lambda: ddl_conn.cursor().execute("ALTER TABLE t ADD COLUMN w int").statusmessage)
    _waiting(conn, 1)
    r = _in_thread(lambda: reader.cursor().execute(f"SELECT sum(v) FROM t AS OF LSN '{point}'").fetchone())
    time.sleep(0.3)
    holder.rollback()
    assert _finish(d, r) == ["ALTER TABLE", (5050,)]


def test_a_merge_that_changes_a_tables_schema_lets_its_writers_through(conn: heliosdb.Connection,
                                                                       connect: Any) -> None:
    """MERGE of a branch that added a column to u, queued behind main's write lock; a writer of u on main
    arrives and queues behind the merge."""
    _setup(conn)
    dev = connect("dev")
    dev.cursor().execute("ALTER TABLE u ADD COLUMN x int")
    dev.cursor().execute("UPDATE u SET x = 7 WHERE id = 1")
    holder, merging, writer = connect(autocommit=False), connect(), connect()
    holder.cursor().execute("UPDATE t SET v = 0 WHERE id = 1")
    m = _in_thread(lambda: merging.cursor().execute("MERGE DATABASE BRANCH dev INTO main").fetchall())
    _waiting(conn, 1)
    w = _in_thread(lambda: writer.cursor().execute("UPDATE u SET v = v + 1 WHERE id = 1").rowcount)
    _waiting(conn, 2)
    holder.commit()
    _finish(m, w)
    assert conn.cursor().execute("SELECT v, x FROM u WHERE id = 1").fetchone() == (1, 7)
