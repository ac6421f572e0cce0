"""The session's time-travel cache: whatever another session changes, AS OF reads see the truth.

Session A runs a statement until its rewrite is cached (a repeated AS OF LSN read in
autocommit is served from the cache, checked by a guard inside the statement); session B
(another connection) then changes the catalog, the branches or the retained history.
"""

from __future__ import annotations

import time

import pytest

import heliosdb
from heliosdb import errors
from tests.test_branches import rows, run, sqlstate


def lsn(conn: heliosdb.Connection) -> str:
    return rows(conn, "SELECT heliosdb.current_lsn()::text")[0][0]


def gen(conn: heliosdb.Connection) -> int:
    return rows(conn, "SELECT gen FROM heliosdb._catalog_gen")[0][0]


def cached(conn: heliosdb.Connection, sql: str) -> bool:
    return any(k[0] == sql for k in conn.session.catalog.rewrites)


def test_generation_moves_with_committed_catalog_changes_only(connect) -> None:
    a = connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v int)")
    g = gen(a)
    run(a, "INSERT INTO t VALUES (1, 1)", "UPDATE t SET v = 2")  # data only: no change
    assert gen(a) == g
    run(a, "ALTER TABLE t ADD COLUMN w int")
    assert gen(a) == g + 1
    b = connect(autocommit=False)
    b.cursor().execute("ALTER TABLE t ADD COLUMN x int")
    b.cursor().execute("ALTER TABLE t ADD COLUMN y int")
    # B's own change is marked in its transaction at once; A sees nothing until B commits
    mark = rows(b, "SELECT current_setting('heliosdb.catalog_mark', true)")[0][0]
    assert mark
    assert gen(a) == g + 1
    b.rollback()
    assert gen(a) == g + 1
    b.cursor().execute("ALTER TABLE t ADD COLUMN x int")
    b.commit()
    assert gen(a) == g + 2  # once per transaction


def test_cached_point_read_sees_a_dropped_column_on_the_root(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v text, w int)", "INSERT INTO t VALUES (1, 'a', 10)")
    point = lsn(a)
    run(a, "UPDATE t SET v = 'b', w = 20")
    q = f"SELECT * FROM t AS OF LSN {point} WHERE id = %s"
    for _ in range(3):
        assert rows(a, q, (1,)) == [(1, "a", 10)]
    assert cached(a, q)
    # the root's physical column is renamed, the old point still has the column
    run(b, "ALTER TABLE t DROP COLUMN w")
    assert rows(a, q, (1,)) == [(1, "a", 10)]
    assert rows(a, "SELECT * FROM t WHERE id = %s", (1,)) == [(1, "b")]


def test_cached_read_of_a_named_branch_sees_it_dropped_and_created_again(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'main-1')")
    run(a, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'dev-1'")
    point = lsn(dev)
    q = f"SELECT v FROM t AS OF BRANCH dev AT LSN {point}"
    for _ in range(3):
        assert rows(a, q) == [("dev-1",)]
    assert cached(a, q)
    dev.close()
    run(b, "DROP DATABASE BRANCH dev", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'dev-2'")
    # the same LSN is before the new branch's history now, or shows the new branch's rows
    now = lsn(dev)
    state = sqlstate(a, q)
    assert state == "HD007" or rows(a, q) == [("main-1",)]
    assert rows(a, f"SELECT v FROM t AS OF BRANCH dev AT LSN {now}") == [("dev-2",)]
    # dropped for good: a clear error, not the old rows
    dev.close()
    run(b, "DROP DATABASE BRANCH dev")
    assert sqlstate(a, f"SELECT v FROM t AS OF BRANCH dev AT LSN {now}") == "HD001"


def test_cached_read_refused_once_gc_pruned_its_point(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE g (id int PRIMARY KEY, v int)", "INSERT INTO g VALUES (1, 0)")
    run(a, "UPDATE g SET v = 1")
    old = lsn(a)
    run(a, "UPDATE g SET v = 2")
    q = f"SELECT v FROM g AS OF LSN {old}"
    for _ in range(3):
        assert rows(a, q) == [(1,)]
    assert cached(a, q)
    run(b, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 millisecond', gc_policy = aggressive)")
    time.sleep(0.05)
    run(b, "UPDATE g SET v = 3")
    assert rows(b, "SELECT heliosdb.gc()")[0][0] >= 1
    assert sqlstate(a, q) == "72000"  # "snapshot too old", never the pruned answer


def test_cached_read_sees_a_table_dropped_and_created_again(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'old')")
    q = "SELECT * FROM t AS OF LSN {} ORDER BY id"
    at_old = lsn(a)
    for _ in range(3):
        assert rows(a, q.format(at_old)) == [(1, "old")]
    run(b, "DROP TABLE t", "CREATE TABLE t (id int PRIMARY KEY, n int, m int)", "INSERT INTO t VALUES (5, 6, 7)")
    at_new = lsn(b)
    assert rows(a, q.format(at_old)) == [(1, "old")]
    for _ in range(3):
        assert rows(a, q.format(at_new)) == [(5, 6, 7)]
    run(b, "ALTER TABLE t ADD COLUMN o int DEFAULT 9")
    assert rows(a, q.format(lsn(b))) == [(5, 6, 7, 9)]


def test_as_of_now_and_own_transaction_changes(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 1)")
    q = "SELECT * FROM t AS OF NOW"
    assert rows(a, q) == [(1, 1)]
    run(b, "ALTER TABLE t ADD COLUMN w int DEFAULT 5")
    assert rows(a, q) == [(1, 1, 5)]
    # inside a transaction: its own, uncommitted DDL is seen at once, and forgotten after a rollback
    tx = connect(autocommit=False)
    assert rows(tx, q) == [(1, 1, 5)]
    tx.cursor().execute("ALTER TABLE t ADD COLUMN x int DEFAULT 6")
    assert rows(tx, q) == [(1, 1, 5, 6)]
    tx.cursor().execute("SAVEPOINT s")
    tx.cursor().execute("ALTER TABLE t DROP COLUMN w")
    assert rows(tx, q) == [(1, 1, 6)]
    tx.cursor().execute("ROLLBACK TO SAVEPOINT s")
    assert rows(tx, q) == [(1, 1, 5, 6)]
    tx.rollback()
    assert rows(tx, q) == [(1, 1, 5)]
    assert rows(a, q) == [(1, 1, 5)]


def test_parameters_stay_parameters(connect) -> None:
    a = connect()
    run(a, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, '50%'), (2, 'x')")
    point = lsn(a)
    run(a, "DELETE FROM t")
    q = f"SELECT v, %s::text FROM t AS OF LSN {point} WHERE v LIKE '%%\\%%' ORDER BY id"
    for _ in range(7):  # past psycopg's prepare threshold
        assert rows(a, q, ("p",)) == [("50%", "p")]
    # a parameter inside the clause itself
    assert rows(a, "SELECT count(*) FROM t AS OF LSN %s", (point,)) == [(2,)]
    # in a transaction the same statement is resolved afresh each time
    tx = connect(autocommit=False)
    assert rows(tx, q, ("p",)) == [("50%", "p")]
    tx.rollback()


@pytest.mark.parametrize("shape", ["offset", "gate"])
def test_large_table_guard_sees_changes(connect, shape: str) -> None:
    """Tables big enough for parallel scans keep parallel plans: a query takes the guard as its
    OFFSET, other statements (here an INSERT ... SELECT) get it above the state."""
    a, b = connect(), connect()
    run(a, "SET min_parallel_table_scan_size = 0")  # every table counts as large for this session
    run(a, "CREATE TABLE g (id int PRIMARY KEY, v int, w int)", "INSERT INTO g VALUES (1, 0, 0), (2, 0, 0)")
    run(a, "CREATE TABLE sink (id int, v int, w int)")
    run(a, "UPDATE g SET v = 1 WHERE id = 1")
    old = lsn(a)
    run(a, "UPDATE g SET v = 2, w = 5 WHERE id = 1")
    q = f"SELECT id, v, w FROM g AS OF LSN {old} ORDER BY id"
    if shape == "gate":
        q = f"WITH c AS (DELETE FROM sink RETURNING *) INSERT INTO sink SELECT id, v, w FROM g AS OF LSN {old}"
    sink = "SELECT id, v, w FROM sink ORDER BY id"

    def read() -> list[tuple]:
        got = rows(a, q) if shape == "offset" else (run(a, q), rows(a, sink))[1]
        assert got == [(1, 1, 0), (2, 0, 0)]
        return got

    for _ in range(3):
        read()
    cached = [str(v) for v in a.session.catalog.rewrites.values()]
    if shape == "offset":
        assert any(v.endswith(f"_hdb_q OFFSET (SELECT CASE WHEN gen = {a.session.catalog.key[0]} THEN 0 "
                              "ELSE CASE WHEN heliosdb._asof_stale() THEN 0 END END FROM heliosdb._catalog_gen)")
                   for v in cached)
        assert not any(") _hdb_s WHERE (SELECT CASE" in v for v in cached)
    else:
        assert any(") _hdb_s WHERE (SELECT CASE" in v for v in cached)
        assert not any("_hdb_q OFFSET" in v for v in cached)
    run(b, "ALTER TABLE g DROP COLUMN w")
    read()
    run(b, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 millisecond', gc_policy = aggressive)")
    time.sleep(0.05)
    run(b, "UPDATE g SET v = 3")
    assert rows(b, "SELECT heliosdb.gc()")[0][0] >= 1
    assert sqlstate(a, q) == "72000"


def test_query_wrapped_for_its_guard_answers_as_written(connect) -> None:
    """A cached query checks its guard as the OFFSET of a query around it: its own ORDER BY, LIMIT,
    columns, trailing semicolon or comment and error positions stay as the user wrote them."""
    a = connect()
    run(a, "CREATE TABLE w (id int PRIMARY KEY, v int)", "INSERT INTO w SELECT g, g * 10 FROM generate_series(1, 5) g")
    old = lsn(a)
    run(a, "DELETE FROM w WHERE id > 2")
    cases = {
        f"SELECT id FROM w AS OF LSN {old} ORDER BY id DESC LIMIT 2 OFFSET 1;": [(4,), (3,)],
        f"SELECT id, id, v FROM w AS OF LSN {old} ORDER BY v DESC -- the end": [
            (5, 5, 50), (4, 4, 40), (3, 3, 30), (2, 2, 20), (1, 1, 10)],
        f"SELECT count(*) FROM w AS OF LSN {old} WHERE id > 100": [(0,)],
        f"VALUES ((SELECT sum(v) FROM w AS OF LSN {old}))": [(150,)],
        f"WITH x AS (SELECT * FROM w AS OF LSN {old}) SELECT max(id) FROM x": [(5,)],
    }
    for q, want in cases.items():
        for _ in range(3):
            assert rows(a, q) == want, q
        assert [v for k, v in a.session.catalog.rewrites.items()
                if k[0] == q.rstrip(";") and v.startswith("SELECT * FROM (\n")], q
    bad = f"SELECT 1, nocol FROM w AS OF LSN {old}"
    for _ in range(2):
        with pytest.raises(errors.Error) as info:
            rows(a, bad)
        assert info.value.sqlstate == "42703" and info.value.position == bad.index("nocol") + 1
    with pytest.raises(errors.Error) as info:
        rows(a, f"SELECT 1 / (id - 1) FROM w AS OF LSN {old} ORDER BY id")
    assert info.value.sqlstate == "22012"


def test_branch_reads_at_and_after_its_fork_survive_the_parents_gc(connect) -> None:
    """The collector keeps a parent's history at its children's fork points: a child read at its fork (a
    child without commits of its own reads there at its head) or later is never "too old" after the
    parent's GC, also through statements kept to run later."""
    a = connect()
    run(a, "CREATE TABLE g (id int PRIMARY KEY, v int)", "INSERT INTO g VALUES (1, 0)", "UPDATE g SET v = 1",
        "CREATE DATABASE BRANCH quiet", "CREATE DATABASE BRANCH busy")
    busy = connect("busy")
    run(busy, "UPDATE g SET v = 5")
    k = lsn(busy)
    run(busy, f"PREPARE pk AS SELECT v FROM g AS OF LSN {k}", f"CREATE VIEW vk AS SELECT v FROM g AS OF LSN {k}")
    quiet = connect("quiet")
    fork = lsn(quiet)
    run(a, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 millisecond', gc_policy = aggressive)")
    time.sleep(0.05)
    run(a, "UPDATE g SET v = 2")
    time.sleep(0.05)
    run(a, "UPDATE g SET v = 3")
    assert rows(a, "SELECT heliosdb.gc()")[0][0] >= 1
    assert sqlstate(a, f"SELECT v FROM g AS OF LSN {fork}") == "72000"  # main's own past is gone
    for q in ("SELECT v FROM g", "SELECT v FROM g AS OF NOW", f"SELECT v FROM g AS OF LSN {fork}"):
        for _ in range(2):
            assert rows(quiet, q) == [(1,)], q
    assert rows(a, "SELECT v FROM g AS OF BRANCH quiet") == [(1,)]
    assert rows(busy, "EXECUTE pk") == [(5,)]
    assert rows(busy, "SELECT * FROM vk") == [(5,)]
    assert rows(busy, f"SELECT v FROM g AS OF LSN {k}") == [(5,)]


def test_gc_between_resolving_a_point_and_reading_it_fails_the_read(connect) -> None:
    """A statement whose points are resolved in an earlier round trip (here a TIMESTAMP, slow to compute)
    while GC prunes one of them: "snapshot too old", never the rows that are left."""
    import threading

    a, b = connect(), connect()
    run(a, "CREATE TABLE r (id int PRIMARY KEY, v text)", "INSERT INTO r VALUES (1, 'one')")
    old = lsn(a)
    run(a, "CREATE FUNCTION slow_ts() RETURNS timestamptz LANGUAGE sql AS "
           "'SELECT clock_timestamp() FROM pg_sleep(1.5)'")
    run(a, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 millisecond', gc_policy = aggressive)")
    time.sleep(0.05)
    run(a, "DELETE FROM r")
    q = f"SELECT x.id FROM r AS OF LSN {old} x WHERE x.id NOT IN (SELECT id FROM r AS OF TIMESTAMP slow_ts())"
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sqlstate(a, q) or rows(a, q)))
    reader.start()
    time.sleep(0.5)  # the reader is resolving slow_ts(); its LSN point was checked already
    assert rows(b, "SELECT heliosdb.gc()")[0][0] >= 1
    reader.join()
    assert got == ["72000"]


def test_prepared_as_of_statement_reads_the_same_after_ddl(connect) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE kr (id int PRIMARY KEY, v text, w int)", "INSERT INTO kr VALUES (1, 'one', 10), (2, 'two', 20)")
    old = lsn(a)
    run(a, "UPDATE kr SET w = 11 WHERE id = 1", f"PREPARE r1 AS SELECT * FROM kr AS OF LSN {old} ORDER BY id")
    want = [(1, "one", 10), (2, "two", 20)]
    assert rows(a, "EXECUTE r1") == want
    for ddl in ("ALTER TABLE kr DROP COLUMN w", "ALTER TABLE kr ADD COLUMN w int", "ALTER TABLE kr RENAME COLUMN v TO x",
                "ALTER TABLE kr ALTER COLUMN id TYPE bigint"):
        run(b, ddl)
        assert rows(a, "EXECUTE r1") == want, ddl
