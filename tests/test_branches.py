"""Branch lifecycle and isolation through the DB-API, against the managed PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

import heliosdb
from heliosdb import errors


def rows(conn: heliosdb.Connection, sql: str, params: object = None) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur.fetchall()


def run(conn: heliosdb.Connection, *stmts: str) -> None:
    cur = conn.cursor()
    for s in stmts:
        cur.execute(s)


def sqlstate(conn: heliosdb.Connection, sql: str) -> str | None:
    try:
        conn.cursor().execute(sql)
    except heliosdb.Error as exc:
        return exc.sqlstate
    return None


@pytest.fixture
def seeded(conn: heliosdb.Connection) -> heliosdb.Connection:
    run(
        conn,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int CHECK (qty >= 0), code text UNIQUE)",
        "INSERT INTO items VALUES (1, 'one', 10, 'a'), (2, 'two', 20, 'b'), (3, 'three', 30, 'c')",
    )
    return conn


def test_child_sees_parent_at_fork_and_writes_stay_isolated(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    run(seeded, "UPDATE items SET qty = 11 WHERE id = 1", "INSERT INTO items VALUES (4, 'four', 40, 'd')")
    dev = connect("dev")
    assert rows(dev, "SELECT id, name, qty FROM items ORDER BY id") == [
        (1, "one", 10), (2, "two", 20), (3, "three", 30)
    ]
    run(dev, "UPDATE items SET name = 'TWO' WHERE id = 2", "DELETE FROM items WHERE id = 3",
        "INSERT INTO items VALUES (5, 'five', 50, 'e')")
    assert rows(dev, "SELECT id, name, qty FROM items ORDER BY id") == [
        (1, "one", 10), (2, "TWO", 20), (5, "five", 50)
    ]
    assert rows(seeded, "SELECT id, name, qty FROM items ORDER BY id") == [
        (1, "one", 11), (2, "two", 20), (3, "three", 30), (4, "four", 40)
    ]


def test_grandchild_isolation_in_both_directions(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH child")
    child = connect("child")
    run(child, "UPDATE items SET qty = 0 WHERE id = 1", "CREATE DATABASE BRANCH grandchild")
    run(child, "DELETE FROM items WHERE id = 2")
    grand = connect("grandchild")
    assert rows(grand, "SELECT id, qty FROM items ORDER BY id") == [(1, 0), (2, 20), (3, 30)]
    run(grand, "UPDATE items SET qty = 99 WHERE id = 3", "INSERT INTO items VALUES (7, 'seven', 7, 'g')")
    assert rows(child, "SELECT id, qty FROM items ORDER BY id") == [(1, 0), (3, 30)]
    assert rows(seeded, "SELECT id, qty FROM items ORDER BY id") == [(1, 10), (2, 20), (3, 30)]
    assert rows(grand, "SELECT id, qty FROM items ORDER BY id") == [(1, 0), (2, 20), (3, 99), (7, 7)]


def test_writes_find_the_row_the_branch_sees(seeded: heliosdb.Connection, connect) -> None:
    """UPDATE / DELETE on a branch act on the row the branch sees under that key: its own version,
    the inherited one, none when it deleted or re-keyed the row; on a grandchild, the parent's version."""
    run(seeded, "CREATE DATABASE BRANCH child")
    child = connect("child")
    run(child, "UPDATE items SET id = 10 WHERE id = 1", "DELETE FROM items WHERE id = 2")
    cur = child.cursor()
    for stmt, n in (("UPDATE items SET qty = 1 WHERE id = 1", 0), ("UPDATE items SET qty = 1 WHERE id = 10", 1),
                    ("DELETE FROM items WHERE id = 2", 0), ("UPDATE items SET qty = 3 WHERE id = 3", 1),
                    ("UPDATE items SET qty = qty + 1 WHERE id = 3", 1)):
        cur.execute(stmt)
        assert cur.rowcount == n, stmt
    run(child, "ALTER TABLE items ADD COLUMN tag text DEFAULT 'x'", "UPDATE items SET tag = 'y' WHERE id = 10",
        "CREATE DATABASE BRANCH grandchild")
    grand = connect("grandchild")
    run(grand, "UPDATE items SET qty = 7 WHERE id = 10", "DELETE FROM items WHERE id = 3")
    assert rows(grand, "SELECT id, qty, tag FROM items ORDER BY id") == [(10, 7, "y")]
    assert rows(child, "SELECT id, qty, tag FROM items ORDER BY id") == [(3, 4, "x"), (10, 1, "y")]
    assert rows(seeded, "SELECT id, qty FROM items ORDER BY id") == [(1, 10), (2, 20), (3, 30)]
    # many rows in one statement on a fresh branch: each finds its own row
    run(seeded, "CREATE TABLE many (k int PRIMARY KEY, v int)", "INSERT INTO many SELECT g, 0 FROM generate_series(1, 3000) g",
        "CREATE DATABASE BRANCH bulk")
    bulk = connect("bulk")
    run(bulk, "UPDATE many SET v = v + 1", "UPDATE many SET v = v + 1 WHERE k % 2 = 0", "DELETE FROM many WHERE k % 3 = 0")
    assert rows(bulk, "SELECT count(*), sum(v) FROM many") == [(2000, 2000 + 1000)]
    assert rows(seeded, "SELECT count(*), sum(v) FROM many") == [(3000, 0)]


def test_ddl_is_branch_local(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "ALTER TABLE items ADD COLUMN color text DEFAULT 'red'",
        "ALTER TABLE items RENAME COLUMN name TO label", "ALTER TABLE items DROP COLUMN code",
        "CREATE TABLE extra (k int PRIMARY KEY)", "INSERT INTO extra VALUES (1)")
    assert rows(dev, "SELECT * FROM items WHERE id = 1") == [(1, "one", 10, "red")]
    run(dev, "INSERT INTO items (id, label, qty) VALUES (9, 'nine', 9)")
    assert rows(dev, "SELECT label, color FROM items WHERE id = 9") == [("nine", "red")]
    assert rows(seeded, "SELECT * FROM items WHERE id = 1") == [(1, "one", 10, "a")]
    assert sqlstate(seeded, "SELECT * FROM extra") == "42P01"
    run(seeded, "DROP TABLE items")
    assert sqlstate(seeded, "SELECT * FROM items") == "42P01"
    assert rows(dev, "SELECT count(*) FROM items") == [(4,)]
    cols = rows(dev, "SELECT column_name FROM information_schema.columns WHERE table_name = 'items' "
                     "AND table_schema = current_schema() ORDER BY ordinal_position")
    assert [c[0] for c in cols] == ["id", "label", "qty", "color"]


def test_main_ddl_after_fork_does_not_reach_child(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev", "ALTER TABLE items ADD COLUMN extra int DEFAULT 1",
        "ALTER TABLE items DROP COLUMN code", "ALTER TABLE items RENAME COLUMN qty TO amount")
    assert rows(seeded, "SELECT * FROM items WHERE id = 1") == [(1, "one", 10, 1)]
    dev = connect("dev")
    assert rows(dev, "SELECT * FROM items WHERE id = 1") == [(1, "one", 10, "a")]
    run(seeded, "UPDATE items SET amount = 5 WHERE id = 1")
    assert rows(dev, "SELECT qty FROM items WHERE id = 1") == [(10,)]


@pytest.mark.parametrize("ddl", ["ALTER TABLE t RENAME COLUMN b TO bm", "ALTER TABLE t DROP COLUMN b",
                                 "ALTER TABLE t RENAME COLUMN c TO cc", "ALTER TABLE p RENAME COLUMN id TO pid"])
def test_a_branch_in_use_writes_on_after_main_renames_or_drops_a_column(conn: heliosdb.Connection, connect,
                                                                         ddl: str) -> None:
    """The branch's write triggers name the shared storage's columns, which DDL on main renames."""
    run(conn, "CREATE TABLE p (id int PRIMARY KEY)", "INSERT INTO p VALUES (1), (2), (3)",
        "CREATE TABLE t (id int PRIMARY KEY, b text, c int REFERENCES p (id))",
        "INSERT INTO t VALUES (1, 'x1', 1), (2, 'x2', 1)", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    assert rows(dev, "SELECT count(*) FROM t") == [(2,)]  # the branch is built, its triggers made
    run(conn, ddl)
    run(dev, "UPDATE t SET b = 'y1', c = 2 WHERE id = 1", "INSERT INTO t VALUES (5, 'z', 2)",
        "DELETE FROM t WHERE id = 2", "DELETE FROM p WHERE id = 1", "UPDATE p SET id = 4 WHERE id = 3")
    assert rows(dev, "SELECT * FROM t ORDER BY id") == [(1, "y1", 2), (5, "z", 2)]
    assert rows(dev, "SELECT id FROM p ORDER BY id") == [(2,), (4,)]
    assert rows(conn, "SELECT count(*) FROM t") == [(2,)]


def test_a_branch_no_session_used_yet_is_reachable_by_its_schema(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)", "CREATE DATABASE BRANCH dev",
        'CREATE DATABASE BRANCH "Quoted"')
    assert rows(conn, "SELECT count(*) FROM br_dev.t") == [(2,)]
    assert rows(conn, 'SELECT count(*) FROM "br_Quoted".t') == [(2,)]


def test_constraints_hold_over_inherited_rows(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    assert sqlstate(dev, "INSERT INTO items VALUES (1, 'dup', 1, 'z')") == "23505"
    assert sqlstate(dev, "INSERT INTO items VALUES (8, 'dup', 1, 'a')") == "23505"
    assert sqlstate(dev, "INSERT INTO items VALUES (8, NULL, 1, 'y')") == "23502"
    assert sqlstate(dev, "INSERT INTO items VALUES (8, 'neg', -1, 'y')") == "23514"
    assert sqlstate(dev, "UPDATE items SET code = 'b' WHERE id = 1") == "23505"
    # Deleting a row frees its key on that branch only.
    run(dev, "DELETE FROM items WHERE id = 1", "INSERT INTO items VALUES (1, 'new', 1, 'a')")
    assert rows(dev, "SELECT name FROM items WHERE id = 1") == [("new",)]
    assert rows(seeded, "SELECT name FROM items WHERE id = 1") == [("one",)]
    assert sqlstate(seeded, "INSERT INTO items VALUES (1, 'x', 1, 'q')") == "23505"


def test_failed_statement_leaves_nothing(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    assert sqlstate(dev, "INSERT INTO items VALUES (10, 'ok', 1, 'k'), (1, 'dup', 1, 'l')") == "23505"
    assert rows(dev, "SELECT count(*) FROM items WHERE id = 10") == [(0,)]
    assert sqlstate(dev, "ALTER TABLE items ADD COLUMN bad int NOT NULL") == "23502"
    assert [r[0] for r in rows(dev, "SELECT column_name FROM information_schema.columns "
                                    "WHERE table_name = 'items' AND table_schema = current_schema()")].count("bad") == 0


def test_tables_without_primary_key_keep_duplicates(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (a int, b text)", "INSERT INTO t VALUES (1, 'x'), (1, 'x'), (2, 'y')",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET a = a + 10 WHERE a = 1")
    assert rows(dev, "SELECT a, b FROM t ORDER BY a") == [(2, "y"), (11, "x"), (11, "x")]
    run(dev, "DELETE FROM t WHERE a = 11")
    assert rows(dev, "SELECT a, b FROM t ORDER BY a") == [(2, "y")]
    assert rows(conn, "SELECT a, b FROM t ORDER BY a") == [(1, "x"), (1, "x"), (2, "y")]


def test_truncate_and_copy_on_branches(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "TRUNCATE items")
    assert rows(dev, "SELECT count(*) FROM items") == [(0,)]
    assert rows(seeded, "SELECT count(*) FROM items") == [(3,)]
    with dev.session.copy("COPY items (id, name, qty, code) FROM STDIN") as (cp, _):
        cp.write("5\tfive\t5\te\n6\tsix\t6\tf\n")
    assert rows(dev, "SELECT id FROM items ORDER BY id") == [(5,), (6,)]
    run(seeded, "TRUNCATE items")
    with seeded.session.copy("COPY items FROM STDIN") as (cp, _):
        cp.write("7\tseven\t7\tg\n")
    assert rows(seeded, "SELECT id FROM items") == [(7,)]
    assert rows(dev, "SELECT id FROM items ORDER BY id") == [(5,), (6,)]


def test_branch_as_of_every_point_kind(seeded: heliosdb.Connection, connect) -> None:
    lsn0 = rows(seeded, "SELECT heliosdb.current_lsn()::text")[0][0]
    scn0 = rows(seeded, "SELECT heliosdb.current_scn()")[0][0]
    txid0 = rows(seeded, "SELECT txid FROM heliosdb._commits ORDER BY lsn DESC LIMIT 1")[0][0]
    time.sleep(0.05)
    ts0 = rows(seeded, "SELECT clock_timestamp()::text")[0][0]
    time.sleep(0.05)
    run(seeded, "UPDATE items SET qty = 0", "DELETE FROM items WHERE id = 3", "INSERT INTO items VALUES (4, 'f', 4, 'd')")
    for i, point in enumerate([f"LSN {lsn0}", f"SCN {scn0}", f"TIMESTAMP '{ts0}'", f"TRANSACTION {txid0}",
                               f"LSN {int(lsn0.split('/')[1], 16)}"]):
        run(seeded, f"CREATE DATABASE BRANCH past{i} AS OF {point}")
        past = connect(f"past{i}")
        assert rows(past, "SELECT id, qty FROM items ORDER BY id") == [(1, 10), (2, 20), (3, 30)], point
    run(seeded, "CREATE DATABASE BRANCH nowb AS OF NOW")
    assert rows(connect("nowb"), "SELECT id, qty FROM items ORDER BY id") == [(1, 0), (2, 0), (4, 4)]


def test_branch_as_of_errors(seeded: heliosdb.Connection) -> None:
    assert sqlstate(seeded, "CREATE DATABASE BRANCH b1 AS OF LSN FFFF/0") == "HD007"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH b1 AS OF LSN nonsense") == "42601"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH b1 AS OF TIMESTAMP '1999-01-01'") == "HD007"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH b1 AS OF TIMESTAMP 'not a time'") == "HD007"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH b1 AS OF TRANSACTION 999999") == "HD007"
    assert sqlstate(seeded, "SELECT 1 FROM heliosdb.branches WHERE name = 'b1'") is None
    assert rows(seeded, "SELECT count(*) FROM heliosdb.branches WHERE name = 'b1'") == [(0,)]


def test_branch_statement_errors(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, 'CREATE DATABASE BRANCH "feature-auth"')
    assert sqlstate(seeded, 'CREATE DATABASE BRANCH "feature-auth"') == "HD002"
    run(seeded, 'CREATE DATABASE BRANCH IF NOT EXISTS "feature-auth"')
    assert sqlstate(seeded, "USE BRANCH nope") == "HD001"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x FROM nope") == "HD001"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x ON STORAGE NODE \"node-9\"") == "HD005"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x WITH COMPUTE ENDPOINT \"endpoint-9\"") == "HD009"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x OPTIONS (colour = 'red')") == "HD006"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x OPTIONS (gc_policy = sometimes)") == "HD006"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH x OPTIONS (retention_period = 'forever-ish')") == "HD006"
    assert sqlstate(seeded, "CREATE DATABASE BRANCH") == "42601"
    assert sqlstate(seeded, "DROP DATABASE BRANCH main") == "HD008"
    assert rows(seeded, "SELECT count(*) FROM heliosdb.branches WHERE name = 'x'") == [(0,)]
    fa = connect("feature-auth")
    assert rows(fa, "SELECT heliosdb.current_branch()") == [("feature-auth",)]


def test_options_and_catalog_views(seeded: heliosdb.Connection) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev ON STORAGE NODE \"node-1\" WITH COMPUTE ENDPOINT \"endpoint-1\" "
                "OPTIONS (retention_period = '3 days', gc_policy = aggressive)")
    info = rows(seeded, "SELECT name, parent, state, read_only, depth, storage_node, compute_endpoint, "
                        "options->>'retention_period', options->>'gc_policy' FROM heliosdb.branches ORDER BY id")
    assert info == [
        ("main", None, "active", False, 0, "node-1", "endpoint-1", "7 days", "balanced"),
        ("dev", "main", "active", False, 1, "node-1", "endpoint-1", "3 days", "aggressive"),
    ]
    run(seeded, "ALTER DATABASE BRANCH dev SET OPTIONS (gc_policy = conservative)")
    assert rows(seeded, "SELECT options->>'gc_policy' FROM heliosdb.branches WHERE name = 'dev'") == [
        ("conservative",)
    ]
    cur = seeded.cursor()
    cur.execute("SHOW BRANCHES")
    assert [r[0] for r in cur.fetchall()] == ["main", "dev"]
    audit = rows(seeded, "SELECT statement, outcome, branch FROM heliosdb.audit_log ORDER BY time")
    assert audit[0][0].startswith("CREATE DATABASE BRANCH dev") and audit[0][1] == "ok"
    assert audit[-1][0].startswith("ALTER DATABASE BRANCH dev")


def test_commit_log_records_every_transaction(seeded: heliosdb.Connection, connect) -> None:
    before = rows(seeded, "SELECT count(*) FROM heliosdb.commits")[0][0]
    w = connect(autocommit=False)
    run(w, "INSERT INTO items VALUES (20, 'x', 1, 'x')", "UPDATE items SET qty = 2 WHERE id = 20")
    w.commit()
    run(w, "INSERT INTO items VALUES (21, 'y', 1, 'y')")
    w.rollback()
    log = rows(seeded, "SELECT lsn, scn, txid, committed_at, branch, \"user\" FROM heliosdb.commits ORDER BY lsn")
    assert len(log) == before + 1
    lsn, scn, txid, at, branch, user = log[-1]
    assert branch == "main" and user == "postgres" and at is not None and int(txid) > 0
    assert rows(seeded, "SELECT heliosdb.current_lsn() = %s::pg_lsn", (str(lsn),)) == [(True,)]
    # SCN and commit time come from the commit, not from the first write
    run(seeded, "CREATE DATABASE BRANCH dev")
    run(w, "INSERT INTO items VALUES (22, 'z', 1, 'z')")
    mid = rows(seeded, "SELECT clock_timestamp()")[0][0]
    run(connect("dev"), "INSERT INTO items VALUES (23, 'd', 1, 'd')")  # commits while w is open
    w.commit()
    log = rows(seeded, "SELECT branch, scn, committed_at FROM heliosdb.commits ORDER BY lsn")
    (b1, scn1, at1), (b2, scn2, at2) = log[-2:]
    assert (b1, b2) == ("main", "dev") and at1 > at2 > mid and scn1 > scn2


def test_read_only_branch_refuses_writes(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH ro OPTIONS (read_only = true)")
    ro = connect("ro")
    for stmt in ["INSERT INTO items VALUES (9, 'n', 1, 'n')", "UPDATE items SET qty = 1",
                 "DELETE FROM items", "CREATE TABLE z (a int)", "ALTER TABLE items ADD COLUMN q int",
                 "TRUNCATE items"]:
        try:
            ro.cursor().execute(stmt)
        except errors.ReadOnlySqlTransaction as exc:
            assert '"ro"' in exc.message
        else:
            raise AssertionError(f"{stmt} was allowed on a read-only branch")
    run(seeded, "ALTER DATABASE BRANCH ro SET WRITABLE")
    run(ro, "UPDATE items SET qty = 1 WHERE id = 1")
    run(seeded, "ALTER DATABASE BRANCH main SET READ_ONLY")
    assert sqlstate(seeded, "INSERT INTO items VALUES (9, 'n', 1, 'n')") == "25006"
    run(seeded, "ALTER DATABASE BRANCH main SET WRITABLE")


def test_drop_rules(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH a", "USE BRANCH a", "CREATE DATABASE BRANCH b",
        "INSERT INTO items VALUES (30, 'a-only', 1, 'z')", "USE BRANCH main")
    assert sqlstate(seeded, "DROP DATABASE BRANCH a") == "HD004"
    other = connect("b")
    assert sqlstate(seeded, "DROP DATABASE BRANCH a CASCADE") == "HD003"
    other.close()
    run(seeded, "DROP DATABASE BRANCH a CASCADE")
    assert rows(seeded, "SELECT name FROM heliosdb.branches ORDER BY id") == [("main",)]
    assert sqlstate(seeded, "USE BRANCH b") == "HD001"
    run(seeded, "DROP DATABASE BRANCH IF EXISTS a")
    # the dropped branches' rows are reclaimed
    left = rows(seeded, "SELECT count(*) FROM heliosdb._branches b JOIN heliosdb._commits c ON c.branch_id = b.id "
                        "WHERE b.state = 'dropped'")
    assert left[0][0] >= 1
    phys = rows(seeded, "SELECT phys_schema, phys_name FROM heliosdb._tables")[0]
    assert rows(seeded, f'SELECT count(*) FROM "{phys[0]}"."{phys[1]}__br"') == [(0,)]
    # a session cannot drop the branch it is on
    run(seeded, "CREATE DATABASE BRANCH c", "USE BRANCH c")
    assert sqlstate(seeded, "DROP DATABASE BRANCH c") == "HD003"


def test_use_branch_for_transaction(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE items SET qty = 77 WHERE id = 1")
    w = connect(autocommit=True)
    run(w, "BEGIN", "USE BRANCH dev FOR TRANSACTION")
    assert rows(w, "SELECT qty FROM items WHERE id = 1") == [(77,)]
    run(w, "COMMIT")
    assert rows(w, "SELECT qty FROM items WHERE id = 1") == [(10,)]
    assert w.branch == "main"
    assert sqlstate(w, "USE BRANCH dev FOR TRANSACTION") == "25P01"


def test_concurrent_writers_lose_no_update(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE TABLE counter (id int PRIMARY KEY, n int)", "INSERT INTO counter VALUES (1, 0)",
        "CREATE DATABASE BRANCH dev")
    conns = [connect(autocommit=False) for _ in range(3)] + [connect("dev", autocommit=False) for _ in range(3)]
    failures: list[BaseException] = []

    def work(c: heliosdb.Connection) -> None:
        try:
            for _ in range(20):
                c.cursor().execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                c.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert rows(seeded, "SELECT n FROM counter") == [(60,)]
    assert rows(connect("dev"), "SELECT n FROM counter") == [(60,)]
    # LSN order is commit order on each branch: commit times never go backwards as LSNs grow.
    for branch in ("main", "dev"):
        log = rows(seeded, "SELECT committed_at FROM heliosdb.commits WHERE branch = %s ORDER BY lsn", (branch,))
        assert [r[0] for r in log] == sorted(r[0] for r in log)


def test_writers_on_different_branches_do_not_block(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    a = connect(autocommit=False)
    b = connect("dev", autocommit=False)
    run(a, "UPDATE items SET qty = 1 WHERE id = 1")  # holds main's write lock until commit
    done = threading.Event()

    def other() -> None:
        run(b, "UPDATE items SET qty = 2 WHERE id = 1")
        b.commit()
        done.set()

    t = threading.Thread(target=other)
    t.start()
    assert done.wait(10), "a writer on another branch was blocked"
    a.commit()
    t.join()


def test_branch_creation_copies_no_rows(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE big (id int PRIMARY KEY, v int)",
        "INSERT INTO big SELECT g, g FROM generate_series(1, 50000) g")
    size = rows(conn, "SELECT pg_database_size(current_database())")[0][0]
    run(conn, "CREATE DATABASE BRANCH b1")
    grown = rows(conn, "SELECT pg_database_size(current_database())")[0][0] - size
    assert grown < 1_000_000, grown
    phys = rows(conn, "SELECT phys_schema, phys_name FROM heliosdb._tables")[0]
    assert rows(conn, f'SELECT count(*) FROM "{phys[0]}"."{phys[1]}__br"') == [(0,)]


def test_system_functions(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    assert rows(dev, "SELECT heliosdb.current_branch()") == [("dev",)]
    main_lsn = rows(seeded, "SELECT heliosdb.current_lsn()")[0][0]
    assert rows(dev, "SELECT heliosdb.current_lsn()")[0][0] == main_lsn
    run(dev, "INSERT INTO items VALUES (50, 'x', 1, 'x')")
    assert rows(dev, "SELECT heliosdb.current_lsn() > %s::pg_lsn", (str(main_lsn),)) == [(True,)]
    assert rows(dev, "SELECT heliosdb.current_scn() > 0") == [(True,)]


def test_killed_client_mid_transaction_leaves_nothing(seeded: heliosdb.Connection, helios_data_dir, dbname) -> None:
    import signal
    import subprocess
    import sys

    before = rows(seeded, "SELECT count(*) FROM heliosdb.commits")[0][0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", dbname, "-f", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write("BEGIN;\nINSERT INTO items VALUES (60, 'ghost', 1, 'ghost');\nSELECT pg_sleep(0);\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = rows(seeded, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                               "WHERE c.relname = '_branches' AND l.mode = 'RowShareLock' AND l.pid <> pg_backend_pid()")
        if waiting[0][0]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert rows(seeded, "SELECT count(*) FROM items WHERE id = 60") == [(0,)]
    assert rows(seeded, "SELECT count(*) FROM heliosdb.commits")[0][0] == before
    run(seeded, "INSERT INTO items VALUES (61, 'after', 1, 'after')")  # the branch lock is free again
    assert rows(seeded, "SELECT count(*) FROM items WHERE id = 61") == [(1,)]


def test_insert_on_conflict_on_a_branch(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    cur = dev.cursor()
    cur.execute("INSERT INTO items VALUES (1, 'x', 1, 'x'), (9, 'nine', 9, 'n') ON CONFLICT DO NOTHING")
    assert cur.rowcount == 1
    cur.execute("INSERT INTO items AS i VALUES (2, 'two!', 5, 'zz') ON CONFLICT (id) "
                "DO UPDATE SET qty = i.qty + excluded.qty, name = excluded.name RETURNING id, name, qty")
    assert cur.fetchall() == [(2, "two!", 25)]
    cur.execute("INSERT INTO items VALUES (3, 'no', 1, 'c') ON CONFLICT (id) DO UPDATE SET qty = 0 "
                "WHERE items.qty > 100")
    assert cur.rowcount == 0
    assert sqlstate(dev, "INSERT INTO items VALUES (10, 'dup', 1, 'a') ON CONFLICT (id) DO NOTHING") == "23505"
    assert rows(dev, "SELECT id, name, qty FROM items ORDER BY id") == [
        (1, "one", 10), (2, "two!", 25), (3, "three", 30), (9, "nine", 9)
    ]
    assert rows(seeded, "SELECT id, name, qty FROM items ORDER BY id") == [(1, "one", 10), (2, "two", 20), (3, "three", 30)]
    run(seeded, "INSERT INTO items VALUES (1, 'x', 1, 'x') ON CONFLICT (id) DO UPDATE SET qty = 11")
    assert rows(seeded, "SELECT qty FROM items WHERE id = 1") == [(11,)]


def test_user_views_and_foreign_keys(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE c (id int PRIMARY KEY, name text)",
        "CREATE TABLE o (id int PRIMARY KEY, cid int REFERENCES c(id) ON DELETE CASCADE)",
        "INSERT INTO c VALUES (1, 'a'), (2, 'b')", "INSERT INTO o VALUES (10, 1), (20, 2)",
        "CREATE VIEW named_orders AS SELECT o.id, c.name FROM o JOIN c ON c.id = o.cid")
    assert sqlstate(conn, "INSERT INTO o VALUES (30, 3)") == "23503"
    run(conn, "CREATE DATABASE BRANCH dev", "DELETE FROM c WHERE id = 1")
    assert rows(conn, "SELECT id FROM o ORDER BY id") == [(20,)]
    dev = connect("dev")
    assert rows(dev, "SELECT * FROM named_orders ORDER BY id") == [(10, "a"), (20, "b")]
    run(dev, "UPDATE c SET name = 'B' WHERE id = 2")
    assert rows(dev, "SELECT name FROM named_orders WHERE id = 20") == [("B",)]
    assert rows(conn, "SELECT name FROM named_orders ORDER BY id") == [("b",)]


def test_a_branch_first_used_after_its_parent_made_tables_does_not_see_them(conn: heliosdb.Connection,
                                                                           connect) -> None:
    """A branch's schemas are built on its first use; the parent's tables, views and materialized views
    made after the fork are not the branch's (they were copied in as live views of the parent's rows)."""
    run(conn, "CREATE TABLE old (id int PRIMARY KEY)", "CREATE VIEW old_v AS SELECT id FROM old",
        "CREATE DATABASE BRANCH dev",
        "CREATE TABLE late (id int PRIMARY KEY)", "INSERT INTO late VALUES (1)",
        "CREATE VIEW late_v AS SELECT id FROM late", "CREATE VIEW old_v2 AS SELECT id + 1 AS n FROM old",
        "CREATE MATERIALIZED VIEW late_m AS SELECT count(*) FROM late")
    dev = connect("dev")
    for name in ("late", "late_v", "late_m"):
        assert sqlstate(dev, f"SELECT * FROM {name}") == "42P01", name
    assert rows(dev, "SELECT * FROM old_v") == [] and rows(dev, "SELECT * FROM old_v2") == []
    run(dev, "CREATE TABLE late (id int PRIMARY KEY, note text)", "INSERT INTO late VALUES (7, 'own')")
    assert rows(dev, "SELECT * FROM late") == [(7, "own")]
    assert rows(conn, "SELECT * FROM late") == [(1,)]


def test_columns_named_like_trigger_variables(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE v (l int, rid int, oc int, n int, s int)", "INSERT INTO v VALUES (1, 2, 3, 4, 5)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE v SET n = n + 1, l = l + 1", "INSERT INTO v VALUES (9, 9, 9, 9, 9)")
    run(conn, "UPDATE v SET n = n + 10")
    assert rows(dev, "SELECT * FROM v ORDER BY l") == [(2, 2, 3, 5, 5), (9, 9, 9, 9, 9)]
    assert rows(conn, "SELECT * FROM v") == [(1, 2, 3, 14, 5)]


def test_pgbench_style_initialisation_and_maintenance(conn: heliosdb.Connection, connect) -> None:
    run(conn, "DROP TABLE IF EXISTS acc_a, acc_b",
        "CREATE TABLE acc_a (aid int NOT NULL, abalance int, filler char(84)) WITH (fillfactor = 100)",
        "CREATE TABLE acc_b (bid int NOT NULL, bbalance int)",
        "INSERT INTO acc_a SELECT g, 0, '' FROM generate_series(1, 1000) g", "INSERT INTO acc_b VALUES (1, 0)")
    cur = conn.cursor()
    cur.execute("VACUUM ANALYZE acc_a, acc_b")
    assert cur.notices == []  # no "skipping ... cannot vacuum non-tables" warnings
    run(conn, "ALTER TABLE acc_a ADD PRIMARY KEY (aid)", "ALTER TABLE acc_b ADD PRIMARY KEY (bid)")
    assert sqlstate(conn, "INSERT INTO acc_a VALUES (1, 0, '')") == "23505"
    run(conn, "CREATE DATABASE BRANCH pb")
    pb = connect("pb")
    run(pb, "UPDATE acc_a SET abalance = abalance + 5 WHERE aid = 7", "VACUUM acc_a", "ANALYZE acc_a (aid)")
    assert sqlstate(pb, "INSERT INTO acc_a VALUES (7, 0, '')") == "23505"
    assert rows(pb, "SELECT abalance FROM acc_a WHERE aid = 7") == [(5,)]
    assert rows(conn, "SELECT abalance FROM acc_a WHERE aid = 7") == [(0,)]


def test_copy_freeze_in_a_transaction_and_discard_all_keeps_the_branch(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE f1 (id int, v text)", "BEGIN", "TRUNCATE f1")
    with conn.session.copy("COPY f1 FROM STDIN WITH (FREEZE ON)") as (cp, _):
        cp.write("1\tx\n")
    run(conn, "COMMIT")
    assert rows(conn, "SELECT * FROM f1") == [(1, "x")]
    run(conn, "CREATE DATABASE BRANCH keep", "USE BRANCH keep", "DISCARD ALL")
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("keep",)]
    run(conn, "INSERT INTO f1 VALUES (2, 'branch only')")
    other = connect()
    assert rows(other, "SELECT count(*) FROM f1") == [(1,)]
    assert sqlstate(other, "DROP DATABASE BRANCH keep") == "HD003"  # still in use after DISCARD ALL


def test_a_session_writes_only_its_own_branch(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH dev", "CREATE DATABASE BRANCH other")
    dev = connect("dev")
    before = rows(seeded, "SELECT * FROM items ORDER BY id")
    assert rows(connect("other"), "SELECT count(*) FROM items") == [(len(before),)]  # built on first use
    # main's tables are in public, another branch's in its own schema: reachable by name, not writable
    other = rows(dev, "SELECT user_schema FROM heliosdb._branches WHERE name = 'other'")[0][0]
    for stmt in ("INSERT INTO public.items VALUES (50, 'via public', 1, 'p50')",
                 "UPDATE public.items SET qty = 99",
                 f"DELETE FROM {other}.items"):
        with pytest.raises(errors.Error) as exc:
            dev.cursor().execute(stmt)
        assert exc.value.sqlstate == "HD020" and '"dev"' in exc.value.message
    run(dev, "SET search_path TO public")  # as pg_dump scripts and some ORMs do
    with pytest.raises(errors.Error) as exc:
        dev.cursor().execute("UPDATE items SET qty = 7 WHERE id = 1")
    assert exc.value.sqlstate == "HD020"
    assert rows(seeded, "SELECT * FROM items ORDER BY id") == before
    assert rows(connect("other"), "SELECT count(*) FROM items") == [(len(before),)]
    # its own branch, and main from main, still write
    run(connect("dev"), "UPDATE items SET qty = 5 WHERE id = 1")
    run(seeded, "UPDATE items SET qty = 6 WHERE id = 1")
    assert rows(connect("dev"), "SELECT qty FROM items WHERE id = 1") == [(5,)]
    assert rows(seeded, "SELECT qty FROM items WHERE id = 1") == [(6,)]


def test_engine_settings_cannot_be_set(conn: heliosdb.Connection) -> None:
    """SET heliosdb.branch would make current_branch() name a branch the session is not on: refused, with
    USE BRANCH as the way; plain PostgreSQL SET and RESET ALL keep working."""
    run(conn, "CREATE TABLE only_main (a int)", "CREATE DATABASE BRANCH dev")
    for q in ("SET heliosdb.branch = 'nosuch'", "SET heliosdb.branch TO dev", "set local heliosdb.branch = 'dev'",
              "SET SESSION heliosdb.branch = 'dev'", "RESET heliosdb.branch", "SET heliosdb.mv_writer = 'on'",
              "/* c */ SET HeliosDB.Branch = 'dev'"):
        with pytest.raises(heliosdb.Error) as info:
            conn.cursor().execute(q)
        err = info.value
        assert err.sqlstate == "55P02", q
        assert "USE BRANCH" in (err.hint or ""), q
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("main",)]
    assert rows(conn, "SHOW heliosdb.branch") == [("main",)]
    run(conn, "SET work_mem = '8MB'", "SET LOCAL statement_timeout = 0", "RESET work_mem", "RESET ALL")
    assert rows(conn, "SELECT heliosdb.current_branch(), count(*) FROM only_main") == [("main", 0)]
    run(conn, "USE BRANCH dev")
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("dev",)]


def test_unnamed_constraints_on_inherited_table(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int, v int)", "INSERT INTO t VALUES (1, 1), (2, 2)",
        "CREATE TABLE d (id int, v int)", "INSERT INTO d VALUES (1, 1), (1, 2)", "CREATE DATABASE BRANCH b")
    b = connect("b")
    run(b, "ALTER TABLE t ADD PRIMARY KEY (id)", "ALTER TABLE t ADD UNIQUE (v)", "ALTER TABLE t ADD CHECK (v > 0)")
    assert sqlstate(b, "INSERT INTO t VALUES (1, 9)") == "23505"
    assert sqlstate(b, "INSERT INTO t VALUES (9, 1)") == "23505"
    assert sqlstate(b, "INSERT INTO t VALUES (9, -1)") == "23514"
    # PostgreSQL's default names: DROP CONSTRAINT finds them
    run(b, "ALTER TABLE t DROP CONSTRAINT t_pkey", "ALTER TABLE t DROP CONSTRAINT t_v_key",
        "ALTER TABLE t DROP CONSTRAINT t_v_check", "INSERT INTO t VALUES (1, -1)")
    assert rows(b, "SELECT id, v FROM t ORDER BY id, v") == [(1, -1), (1, 1), (2, 2)]
    # over inherited duplicates the unnamed form fails as in PostgreSQL
    assert sqlstate(b, "ALTER TABLE d ADD PRIMARY KEY (id)") == "23505"
    assert sqlstate(b, "ALTER TABLE d ADD FOREIGN KEY (id) REFERENCES t (id)") == "42830"  # t (id) is not unique


def test_add_column_with_volatile_default_on_inherited_table(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)",
        "CREATE DOMAIN pos AS int CHECK (VALUE > 0)", "CREATE DATABASE BRANCH b")
    b = connect("b")
    # PostgreSQL gives every existing row its own value; the branch cannot, so it refuses
    for coldef in ("k serial", "e timestamptz DEFAULT clock_timestamp()", "f float8 DEFAULT random()",
                   "g int GENERATED ALWAYS AS IDENTITY", "h float8 DEFAULT (CASE WHEN random() < 2 THEN NULL::float8 END)"):
        try:
            b.cursor().execute(f"ALTER TABLE t ADD COLUMN {coldef}")
        except heliosdb.Error as exc:
            assert exc.sqlstate == "0A000", coldef
            assert exc.hint, coldef
        else:
            pytest.fail(f"ADD COLUMN {coldef} was accepted")
    assert rows(b, "SELECT * FROM t ORDER BY id") == [(1,), (2,)]
    # stable and constant defaults still work: one value for every row, as in PostgreSQL
    run(b, "ALTER TABLE t ADD COLUMN s timestamptz DEFAULT now()", "ALTER TABLE t ADD COLUMN c int DEFAULT 7",
        "ALTER TABLE t ADD COLUMN n int DEFAULT NULL", "ALTER TABLE t ADD COLUMN p pos DEFAULT 5",
        "INSERT INTO t (id) VALUES (3)")
    assert rows(b, "SELECT count(DISTINCT s), count(*), sum(c), count(n), sum(p) FROM t") == [(2, 3, 21, 0, 15)]


def test_a_branch_used_for_a_transaction_is_not_dropped(seeded: heliosdb.Connection, connect) -> None:
    run(seeded, "CREATE DATABASE BRANCH w")
    b = connect(autocommit=False)
    run(b, "USE BRANCH w FOR TRANSACTION", "SELECT count(*) FROM items")
    outcome: dict[str, str | None] = {}

    def drop() -> None:
        try:
            seeded.cursor().execute("DROP DATABASE BRANCH w")
            outcome["sqlstate"] = None
        except errors.Error as exc:
            outcome["sqlstate"] = exc.sqlstate

    dropper = threading.Thread(target=drop)
    dropper.start()
    dropper.join(10)  # unrefused, the DROP would wait for b's transaction and then drop its work
    run(b, "INSERT INTO items VALUES (50, 'w', 1, 'w50')")
    b.commit()
    dropper.join()
    assert outcome["sqlstate"] == "HD003"
    assert rows(connect("w"), "SELECT name FROM items WHERE id = 50") == [("w",)]


def test_branch_renames_and_drops_columns_named_like_keywords(conn: heliosdb.Connection, connect) -> None:
    """A check or index that names a column called date, text or comment follows its rename and goes with
    its DROP COLUMN on a branch (the names are keywords to the tokenizer, not plain names)."""
    cur = conn.cursor()
    cur.execute("CREATE TABLE ev (id int PRIMARY KEY, date date CHECK (date > '2000-01-01'::date), "
                "comment text, text text)")
    cur.execute("CREATE INDEX ev_comment ON ev (comment) WHERE comment IS NOT NULL")
    cur.execute("CREATE INDEX ev_text ON ev (lower(text))")
    cur.execute("CREATE DATABASE BRANCH b")
    b = connect("b")
    bc = b.cursor()
    bc.execute("ALTER TABLE ev RENAME COLUMN date TO d")
    bc.execute("ALTER TABLE ev RENAME COLUMN text TO body")
    bc.execute("ALTER TABLE ev DROP COLUMN comment")
    bc.execute("INSERT INTO ev VALUES (1, '2020-01-01', 'x')")
    with pytest.raises(heliosdb.Error) as exc:
        bc.execute("INSERT INTO ev VALUES (2, '1999-01-01', 'y')")
    assert exc.value.sqlstate == "23514"
    assert rows(b, "SELECT id, d::text, body FROM ev") == [(1, "2020-01-01", "x")]
    bc.execute("CREATE INDEX ev_comment ON ev (body)")  # the dropped column's index went with it (not 42P07)
    assert rows(conn, "SELECT count(*) FROM ev") == [(0,)]
