"""Time travel: every AS OF form, VERSIONS BETWEEN, temporal context, flashback, retention."""

from __future__ import annotations

import time

import pytest

import heliosdb
from tests.test_branches import rows, run, sqlstate


def lsn(conn: heliosdb.Connection) -> str:
    return rows(conn, "SELECT heliosdb.current_lsn()::text")[0][0]


@pytest.fixture
def history(conn: heliosdb.Connection) -> dict[str, object]:
    """A table with a known history: insert, update, delete, re-insert of a key, DDL in between."""
    marks: dict[str, object] = {}
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    run(conn, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    marks["insert"] = lsn(conn)
    marks["insert_scn"] = rows(conn, "SELECT heliosdb.current_scn()")[0][0]
    marks["insert_txid"] = rows(conn, "SELECT txid::text FROM heliosdb._commits ORDER BY lsn DESC LIMIT 1")[0][0]
    time.sleep(0.02)
    marks["insert_ts"] = rows(conn, "SELECT clock_timestamp()::text")[0][0]
    time.sleep(0.02)
    run(conn, "UPDATE t SET v = 'a2' WHERE id = 1")
    marks["update"] = lsn(conn)
    run(conn, "DELETE FROM t WHERE id = 2")
    marks["delete"] = lsn(conn)
    run(conn, "ALTER TABLE t ADD COLUMN w int DEFAULT 7")
    marks["ddl"] = lsn(conn)
    run(conn, "INSERT INTO t VALUES (2, 'b2', 8)")
    marks["reinsert"] = lsn(conn)
    return marks


def test_every_point_form(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    at_insert = [(1, "a"), (2, "b")]
    h = history
    for q in [
        f"SELECT * FROM t AS OF LSN {h['insert']} ORDER BY id",
        f"SELECT * FROM t AS OF LSN {int(str(h['insert']).split('/')[1], 16)} ORDER BY id",
        f"SELECT * FROM t AS OF SCN {h['insert_scn']} ORDER BY id",
        f"SELECT * FROM t AS OF TRANSACTION {h['insert_txid']} ORDER BY id",
        f"SELECT * FROM t AS OF TIMESTAMP '{h['insert_ts']}' ORDER BY id",
        f"SELECT * FROM t AS OF SYSTEM_TIME '{h['insert_ts']}' ORDER BY id",
        f"SELECT * FROM t FOR SYSTEM_TIME AS OF '{h['insert_ts']}' ORDER BY id",
        f"SELECT * FROM t AT (TIMESTAMP => '{h['insert_ts']}'::timestamptz) ORDER BY id",
        f"SELECT * FROM t AT (LSN => {h['insert']}) ORDER BY id",
        f"SELECT * FROM t BEFORE (LSN => {h['update']}) ORDER BY id",
        f"SELECT * FROM t VERSION AS OF {h['insert']} ORDER BY id",
        f"SELECT * FROM t TIMESTAMP AS OF '{h['insert_ts']}' ORDER BY id",
    ]:
        assert rows(conn, q) == at_insert, q
    assert rows(conn, f"SELECT * FROM t AS OF LSN {h['update']} ORDER BY id") == [(1, "a2"), (2, "b")]
    assert rows(conn, f"SELECT * FROM t AS OF LSN {h['delete']}") == [(1, "a2")]
    # schema follows time: the column added later is not there before the DDL
    assert rows(conn, f"SELECT * FROM t AS OF LSN {h['ddl']}") == [(1, "a2", 7)]
    assert rows(conn, f"SELECT * FROM t AS OF LSN {h['reinsert']} ORDER BY id") == [(1, "a2", 7), (2, "b2", 8)]
    assert rows(conn, "SELECT * FROM t AS OF NOW ORDER BY id") == [(1, "a2", 7), (2, "b2", 8)]
    assert rows(conn, "SELECT count(*) FROM t AT (OFFSET => -0.001)") == [(2,)]


def test_expressions_parameters_and_aliases(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    cur = conn.cursor()
    cur.execute("SELECT x.v FROM t AS OF TIMESTAMP %s x WHERE x.id = %s", (history["insert_ts"], 1))
    assert cur.fetchall() == [("a",)]
    assert rows(conn, "SELECT count(*) FROM t AS OF TIMESTAMP now() - interval '1 microsecond' AS y") == [(2,)]
    assert sqlstate(conn, "SELECT count(*) FROM t AS OF TIMESTAMP now() + interval '1 day'") == "HD007"


def test_joins_subqueries_ctes_and_writes_from_the_past(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    h = history
    q = (f"WITH old AS (SELECT * FROM t AS OF LSN {h['insert']}) "
         f"SELECT o.id, o.v, n.v FROM old o LEFT JOIN t n ON n.id = o.id ORDER BY o.id")
    assert rows(conn, q) == [(1, "a", "a2"), (2, "b", "b2")]
    assert rows(conn, f"SELECT id FROM t WHERE v IN (SELECT v FROM t AS OF LSN {h['update']}) ORDER BY id") == [(1,)]
    run(conn, f"CREATE TABLE t_old AS SELECT * FROM t AS OF LSN {h['insert']}")
    assert rows(conn, "SELECT * FROM t_old ORDER BY id") == [(1, "a"), (2, "b")]
    run(conn, "DELETE FROM t WHERE id = 1", f"INSERT INTO t (id, v) SELECT id, v FROM t AS OF LSN {h['insert']} WHERE id = 1")
    assert rows(conn, "SELECT v, w FROM t WHERE id = 1") == [("a", 7)]
    run(conn, f"CREATE VIEW t_then AS SELECT * FROM t AS OF LSN {h['insert']}")
    assert rows(conn, "SELECT count(*) FROM t_then") == [(2,)]
    for _ in range(2):  # the TABLE command, and DELETE ... USING
        assert sorted(rows(conn, f"TABLE t AS OF LSN {h['insert']}")) == [(1, "a"), (2, "b")]
    run(conn, "CREATE TABLE marks (id int)", "INSERT INTO marks VALUES (1), (2), (3)",
        f"DELETE FROM marks USING t AS OF LSN {h['update']} o WHERE o.id = marks.id")
    assert rows(conn, "SELECT * FROM marks") == [(3,)]


def test_as_of_in_prepare_explain_and_declare(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    """The bodies of PREPARE, EXPLAIN and DECLARE CURSOR are rewritten like any query; the prefix stays."""
    at = history["insert"]
    run(conn, f"PREPARE p1(int) AS SELECT v FROM t AS OF LSN {at} WHERE id = $1",
        f"PREPARE p2(int, text) AS SELECT v FROM t AS OF LSN {at} WHERE id = 1+$1-$1 AND v <> $2 AND $$1$$ = '1'",
        f'PREPARE "P 3" AS SELECT v FROM t AS OF LSN {at} x WHERE x.id = 2')
    run(conn, "UPDATE t SET v = 'later'")
    assert rows(conn, "EXECUTE p1(2)") == [("b",)]
    assert rows(conn, "EXECUTE p2(5, 'zz')") == [("a",)]
    assert rows(conn, 'EXECUTE "P 3"') == [("b",)]
    for explain in ("EXPLAIN", "EXPLAIN ANALYZE", "EXPLAIN ANALYZE VERBOSE", "EXPLAIN (COSTS OFF, FORMAT TEXT)"):
        plan = rows(conn, f"{explain} SELECT v FROM t AS OF LSN {at} WHERE id = 1")
        assert plan and all(isinstance(r[0], str) for r in plan), explain
    run(conn, "BEGIN", f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT v FROM t AS OF LSN {at} ORDER BY id")
    assert rows(conn, "FETCH ALL FROM c") == [("a",), ("b",)]
    run(conn, "CLOSE c", "ROLLBACK")
    # the prefix is not searched: a prepared statement named like a keyword of the clause
    assert sqlstate(conn, "PREPARE lsn AS SELECT 1 FROM t AS OF LSN FFFF/FFFF") == "HD007"


def test_as_of_reads_stay_identical_while_commits_land(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    point = history["reinsert"]
    before = rows(conn, f"SELECT * FROM t AS OF LSN {point} ORDER BY id")
    run(conn, "UPDATE t SET v = 'zz'", "DELETE FROM t WHERE id = 1", "INSERT INTO t VALUES (5, 'e', 1)",
        "ALTER TABLE t DROP COLUMN w", "TRUNCATE t")
    assert rows(conn, f"SELECT * FROM t AS OF LSN {point} ORDER BY id") == before


def test_on_branches_and_grandchildren(conn: heliosdb.Connection, history: dict[str, object], connect) -> None:
    run(conn, "CREATE DATABASE BRANCH child")
    child = connect("child")
    run(child, "UPDATE t SET v = 'c1' WHERE id = 1")
    c1 = lsn(child)
    run(child, "CREATE DATABASE BRANCH grand")
    run(child, "UPDATE t SET v = 'c2' WHERE id = 1")
    grand = connect("grand")
    run(grand, "DELETE FROM t WHERE id = 2")
    g1 = lsn(grand)
    run(grand, "INSERT INTO t VALUES (3, 'g', 0)")
    assert rows(grand, f"SELECT id, v FROM t AS OF LSN {g1} ORDER BY id") == [(1, "c1")]
    assert rows(grand, f"SELECT id, v FROM t AS OF LSN {c1} ORDER BY id") == [(1, "c1"), (2, "b2")]
    # a point from main's history before the child's fork
    assert rows(grand, f"SELECT id, v FROM t AS OF LSN {history['update']} ORDER BY id") == [(1, "a2"), (2, "b")]
    assert rows(child, f"SELECT v FROM t AS OF LSN {c1} WHERE id = 1") == [("c1",)]
    # cross-branch: one query, several branches and points
    q = (f"SELECT a.v, b.v, c.v FROM t AS OF BRANCH main a JOIN t AS OF BRANCH child AT LSN {c1} b ON a.id = b.id "
         f"JOIN t AS OF BRANCH grand c ON c.id = a.id")
    assert rows(conn, q) == [("a2", "c1", "c1")]  # grand forked before child wrote c2


def test_versions_between(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    h = history
    got = rows(conn, "SELECT id, v, versions_operation, versions_startlsn::text, versions_endlsn::text "
                     "FROM t VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE ORDER BY id, versions_startlsn")
    assert got == [
        (1, "a", "I", h["insert"], h["update"]),
        (1, "a2", "U", h["update"], None),
        (2, "b", "I", h["insert"], h["delete"]),
        (2, "b", "D", h["delete"], None),
        (2, "b2", "I", h["reinsert"], None),
    ]
    inside = rows(conn, f"SELECT id, v, versions_operation, versions_startlsn IS NULL FROM t "
                        f"VERSIONS BETWEEN LSN {h['update']} AND {h['update']} ORDER BY id, v")
    assert inside == [(1, "a2", "U", False), (2, "b", None, True)]  # no operation before the range (Oracle)
    by_scn = rows(conn, "SELECT count(*) FROM t VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE")
    assert by_scn == [(5,)]
    assert rows(conn, "SELECT count(*) FROM t VERSIONS BETWEEN TIMESTAMP MINVALUE AND now()") == [(5,)]
    meta = rows(conn, "SELECT versions_xid IS NOT NULL, versions_startscn IS NOT NULL, versions_starttime IS NOT NULL "
                      "FROM t VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE WHERE v = 'a2'")
    assert meta == [(True, True, True)]
    assert rows(conn, "SELECT count(*) FROM t VERSIONS BETWEEN TIMESTAMP '-infinity' AND 'infinity'") == [(5,)]
    # FOR SYSTEM_TIME: the four versions, without the D row
    assert rows(conn, "SELECT count(*) FROM t FOR SYSTEM_TIME ALL") == [(4,)]
    assert rows(conn, "SELECT count(*) FROM t FOR SYSTEM_TIME BETWEEN '-infinity' AND 'infinity'") == [(4,)]
    assert rows(conn, f"SELECT count(*) FROM t FOR SYSTEM_TIME BETWEEN '{h['insert_ts']}' AND now()") == [(4,)]


def test_versions_between_same_rows_for_every_bound_kind(conn: heliosdb.Connection,
                                                        history: dict[str, object]) -> None:
    """Oracle's rule for every bound kind: the range is closed, a change committed at the lower bound is
    inside it (its start is shown, a delete there has its D row), a version that began before shows NULL."""
    h = history
    scn = {k: rows(conn, f"SELECT heliosdb.lsn_to_scn('{h[k]}')")[0][0] for k in ("update", "delete", "reinsert")}
    cols = ("SELECT id, v, versions_operation, versions_startlsn::text, versions_startscn IS NULL, "
            "versions_endlsn::text FROM t ")
    order = " ORDER BY id, versions_startlsn NULLS FIRST, versions_operation"

    def forms(a: str, b: str) -> list[str]:
        return [f"VERSIONS BETWEEN LSN {h[a]} AND {h[b]}", f"VERSIONS BETWEEN SCN {scn[a]} AND {scn[b]}",
                f"VERSIONS BETWEEN TIMESTAMP heliosdb.scn_to_timestamp({scn[a]}) "
                f"AND heliosdb.scn_to_timestamp({scn[b]})"]

    # the update at the lower bound: its version starts inside, the version it ended is not in the range
    for form in forms("update", "delete"):
        assert rows(conn, cols + form + order) == [
            (1, "a2", "U", h["update"], False, None),
            (2, "b", None, None, True, h["delete"]),
            (2, "b", "D", h["delete"], False, None),
        ], form
    # the delete at the lower bound: its D row is in the range like the update above
    for form in forms("delete", "reinsert"):
        assert rows(conn, cols + form + order) == [
            (1, "a2", None, None, True, None),
            (2, "b", "D", h["delete"], False, None),
            (2, "b2", "I", h["reinsert"], False, None),
        ], form
    # FOR SYSTEM_TIME BETWEEN: the same versions, without the D rows (SQL:2011)
    sys_between = f"FOR SYSTEM_TIME BETWEEN heliosdb.scn_to_timestamp({scn['update']}) AND heliosdb.scn_to_timestamp("
    assert rows(conn, cols + sys_between + f"{scn['delete']})" + order) == [
        (1, "a2", "U", h["update"], False, None), (2, "b", None, None, True, h["delete"])]
    # a lower bound between two commits: the earlier commit is before the range
    got = rows(conn, cols + f"VERSIONS BETWEEN TIMESTAMP '{h['insert_ts']}' AND heliosdb.scn_to_timestamp("
                            f"{scn['update']})" + order)
    assert got == [(1, "a", None, None, True, h["update"]), (1, "a2", "U", h["update"], False, None),
                   (2, "b", None, None, True, h["delete"])]
    # half-open FROM .. TO shows the same starts as CONTAINED IN for a version opened at the lower bound
    for form in (f"FOR SYSTEM_TIME FROM heliosdb.scn_to_timestamp({h['insert_scn']}) TO now()",
                 f"FOR SYSTEM_TIME CONTAINED IN (heliosdb.scn_to_timestamp({h['insert_scn']}), now())"):
        assert rows(conn, cols + form + " WHERE v = 'a'") == [(1, "a", "I", h["insert"], False, h["update"])], form


def test_for_system_time_has_one_row_per_version(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    """SQL:2011 / SQL Server: no delete pseudo-rows; FROM a TO b: versions valid at some time in [a, b);
    BETWEEN a AND b: in [a, b]; CONTAINED IN (a, b): versions that began and ended inside. VERSIONS BETWEEN
    (Oracle) keeps its D rows."""
    ts = {k: f"heliosdb.scn_to_timestamp(heliosdb.lsn_to_scn('{history[k]}'))"
          for k in ("insert", "update", "delete", "reinsert")}

    def versions(clause: str) -> list[tuple]:
        return rows(conn, f"SELECT id, v FROM t {clause} ORDER BY id, v")

    assert versions("FOR SYSTEM_TIME ALL") == [(1, "a"), (1, "a2"), (2, "b"), (2, "b2")]
    # the version deleted exactly at a was not valid in [a, b); the one opened exactly at b begins after it
    assert versions(f"FOR SYSTEM_TIME FROM {ts['delete']} TO {ts['reinsert']}") == [(1, "a2")]
    assert versions(f"FOR SYSTEM_TIME BETWEEN {ts['delete']} AND {ts['reinsert']}") == [(1, "a2"), (2, "b2")]
    assert versions(f"FOR SYSTEM_TIME FROM {ts['update']} TO {ts['delete']}") == [(1, "a2"), (2, "b")]
    assert versions(f"FOR SYSTEM_TIME CONTAINED IN ({ts['insert']}, {ts['delete']})") == [(1, "a"), (2, "b")]
    assert versions(f"FOR SYSTEM_TIME CONTAINED IN ({ts['update']}, {ts['reinsert']})") == []
    oracle = rows(conn, f"SELECT id, v, versions_operation FROM t VERSIONS BETWEEN TIMESTAMP {ts['delete']} "
                        f"AND {ts['reinsert']} ORDER BY id, v, versions_operation")
    assert oracle == [(1, "a2", None), (2, "b", "D"), (2, "b2", "I")]


def test_temporal_context(conn: heliosdb.Connection, history: dict[str, object], connect) -> None:
    h = history
    run(conn, f"SET AS OF LSN {h['insert']}")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    show = rows(conn, "SHOW AS OF")
    assert show[0][0] == "main" and show[0][2] == h["insert"]
    assert sqlstate(conn, "INSERT INTO t VALUES (9, 'x')") == "25006"
    assert sqlstate(conn, "CREATE TABLE z (a int)") == "25006"
    run(conn, "SET AS OF NOW")
    assert rows(conn, "SELECT count(*) FROM t") == [(2,)]
    run(conn, "INSERT INTO t VALUES (9, 'x', 0)")
    run(conn, "CREATE DATABASE BRANCH dev")
    run(conn, f"USE BRANCH dev AS OF LSN {h['update']}")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a2"), (2, "b")]
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("dev",)]
    run(conn, "USE BRANCH main")
    assert rows(conn, "SELECT count(*) FROM t") == [(3,)]


def show_as_of(conn: heliosdb.Connection) -> tuple[str, str]:
    """SHOW AS OF's branch and point."""
    return rows(conn, "SHOW AS OF")[0][:2]


def test_temporal_context_is_undone_by_rollback_as_set_is(conn: heliosdb.Connection,
                                                          history: dict[str, object]) -> None:
    """SET AS OF / USE BRANCH ... AS OF in a transaction block last if it commits and are undone by
    ROLLBACK or ROLLBACK TO SAVEPOINT, as PostgreSQL's SET: SHOW AS OF, reads and writes agree."""
    h, head = history, [(1, "a2", 7), (2, "b2", 8)]
    at_insert = ("main", f"LSN {h['insert']}")
    run(conn, "CREATE DATABASE BRANCH dev")
    run(conn, "BEGIN", f"SET AS OF LSN {h['insert']}", "ROLLBACK")
    assert show_as_of(conn) == ("main", "NOW")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == head
    run(conn, "BEGIN", f"USE BRANCH dev AS OF LSN {h['update']}", "ROLLBACK")
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("main",)]
    assert show_as_of(conn) == ("main", "NOW")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == head
    # leaving a context in a rolled-back transaction: the context is back
    run(conn, f"SET AS OF LSN {h['insert']}", "BEGIN", "SET AS OF NOW", "ROLLBACK")
    assert show_as_of(conn) == at_insert
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert sqlstate(conn, "UPDATE t SET v = 'x'") == "25006"
    run(conn, "BEGIN", f"SET AS OF LSN {h['update']}", "ROLLBACK")
    assert show_as_of(conn) == at_insert
    # ROLLBACK TO SAVEPOINT undoes what came after the savepoint only
    run(conn, "BEGIN", f"SET AS OF LSN {h['update']}", "SAVEPOINT s", "SET AS OF NOW", "USE BRANCH dev",
        "ROLLBACK TO SAVEPOINT s")
    assert show_as_of(conn) == ("main", f"LSN {h['update']}")
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("main",)]
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a2"), (2, "b")]
    run(conn, "COMMIT")
    assert show_as_of(conn) == ("main", f"LSN {h['update']}")
    run(conn, "BEGIN", "SET AS OF NOW", "COMMIT")
    assert show_as_of(conn) == ("main", "NOW")
    run(conn, "UPDATE t SET v = 'x' WHERE id = 1")
    assert rows(conn, "SELECT v FROM t WHERE id = 1") == [("x",)]


def test_temporal_context_after_reset_all_and_discard_all(conn: heliosdb.Connection,
                                                          history: dict[str, object]) -> None:
    """RESET ALL keeps the context (a rollback after it still finds it); DISCARD ALL drops its views: it ends."""
    h = history
    run(conn, f"SET AS OF LSN {h['insert']}", "RESET ALL", "BEGIN", "SET AS OF NOW", "ROLLBACK")
    assert show_as_of(conn) == ("main", f"LSN {h['insert']}")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    run(conn, "DISCARD ALL")
    assert show_as_of(conn) == ("main", "NOW")
    run(conn, "UPDATE t SET v = 'x' WHERE id = 1")
    assert rows(conn, "SELECT v FROM t WHERE id = 1") == [("x",)]


def test_failed_temporal_statement_changes_nothing(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    h = history
    run(conn, f"SET AS OF LSN {h['insert']}")
    assert sqlstate(conn, "SET AS OF LSN FFFF/FFFF") == "HD007"
    assert show_as_of(conn) == ("main", f"LSN {h['insert']}")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert sqlstate(conn, "INSERT INTO t VALUES (3, 'c')") == "25006"
    run(conn, "SET AS OF NOW", "CREATE DATABASE BRANCH dev")
    assert sqlstate(conn, "USE BRANCH dev AS OF LSN FFFF/FFFF") == "HD007"
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("main",)]
    assert show_as_of(conn) == ("main", "NOW")
    run(conn, f"USE BRANCH dev AS OF LSN {h['insert']}")
    assert sqlstate(conn, "USE BRANCH main AS OF SCN 999999") == "HD007"
    assert show_as_of(conn) == ("dev", f"LSN {h['insert']}")
    assert rows(conn, "SELECT heliosdb.current_branch()") == [("dev",)]


def test_temporal_context_and_tables_made_or_renamed_since(conn: heliosdb.Connection, history) -> None:
    """Under SET AS OF, a table made after the point (or a name given since) is the error AS OF gives."""
    run(conn, "CREATE TABLE later (a int)", "INSERT INTO later VALUES (5)", "ALTER TABLE t RENAME TO renamed")
    run(conn, f"SET AS OF LSN {history['reinsert']}")
    for name in ("later", "renamed"):
        assert sqlstate(conn, f"SELECT * FROM {name}") == "42P01", name
    assert rows(conn, "SELECT count(*) FROM t") == [(2,)]  # its name then
    run(conn, "SET AS OF NOW")
    assert rows(conn, "SELECT a FROM later") == [(5,)]


def test_temporal_context_reaches_names_qualified_with_the_branchs_schema(conn: heliosdb.Connection, history,
                                                                           connect) -> None:
    expected = rows(conn, f"SELECT id, v FROM t AS OF LSN {history['insert']} ORDER BY id")
    run(conn, f"SET AS OF LSN {history['insert']}")
    for text in ("SELECT id, v FROM public.t ORDER BY id", 'SELECT x.id, x.v FROM "public"."t" x ORDER BY 1'):
        assert rows(conn, text) == expected, text
    run(conn, "SET AS OF NOW", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'dev'", f"SET AS OF LSN {history['insert']}")
    assert rows(dev, "SELECT id, v FROM br_dev.t ORDER BY id") == expected


def test_temporal_context_reaches_statements_prepared_before(conn: heliosdb.Connection, history) -> None:
    then = rows(conn, f"SELECT id, v FROM t AS OF LSN {history['insert']} ORDER BY id")
    now = rows(conn, "SELECT id, v FROM t ORDER BY id")
    cur = conn.cursor()
    cur.execute("PREPARE p AS SELECT id, v FROM t ORDER BY id")
    for _ in range(8):  # psycopg prepares the repeated one too
        assert rows(conn, "SELECT id, v FROM t ORDER BY id") == now
    assert rows(conn, "EXECUTE p") == now
    run(conn, f"SET AS OF LSN {history['insert']}")
    assert rows(conn, "EXECUTE p") == then
    assert rows(conn, "SELECT id, v FROM t ORDER BY id") == then
    run(conn, "SET AS OF NOW")
    assert rows(conn, "EXECUTE p") == now


def test_temporal_context_refuses_every_write(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    """FLASHBACK TABLE and COPY FROM are writes like INSERT (25006); COPY TO reads the context's point."""
    h = history
    commits = rows(conn, "SELECT count(*) FROM heliosdb.commits")
    run(conn, f"SET AS OF LSN {h['insert']}")
    assert sqlstate(conn, f"FLASHBACK TABLE t TO LSN {h['update']}") == "25006"
    with pytest.raises(heliosdb.Error) as info:
        with conn.cursor().copy("COPY t FROM STDIN") as cp:
            cp.write_row((9, "copied", 0))
    assert info.value.sqlstate == "25006"
    with conn.cursor().copy("COPY t TO STDOUT") as cp:
        assert sorted(cp.rows()) == [("1", "a"), ("2", "b")]
    with conn.cursor().copy("COPY t (v) TO STDOUT") as cp:
        assert sorted(cp.rows()) == [("a",), ("b",)]
    run(conn, "SET AS OF NOW")
    assert rows(conn, "SELECT count(*) FROM heliosdb.commits") == commits
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a2", 7), (2, "b2", 8)]


def test_flashback_is_a_new_commit(conn: heliosdb.Connection, history: dict[str, object], connect) -> None:
    h = history
    run(conn, f"FLASHBACK TABLE t TO LSN {h['update']}")
    assert rows(conn, "SELECT id, v FROM t ORDER BY id") == [(1, "a2"), (2, "b")]
    undo_point = h["reinsert"]
    run(conn, f"FLASHBACK TABLE t TO LSN {undo_point}")
    assert rows(conn, "SELECT id, v, w FROM t ORDER BY id") == [(1, "a2", 7), (2, "b2", 8)]
    run(conn, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'dev'", "INSERT INTO t VALUES (4, 'd', 0)")
    run(dev, f"FLASHBACK TABLE t TO LSN {h['insert']}")
    assert rows(dev, "SELECT id, v FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert rows(conn, "SELECT id, v FROM t ORDER BY id") == [(1, "a2"), (2, "b2")]


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_flashback_across_schema_changes(conn: heliosdb.Connection, connect, branch: str) -> None:
    """A column retyped since the point gets its value back cast to its type now; one added since gets what
    rows written before it read (its DEFAULT); a stored generated column computes itself."""
    run(conn, "CREATE DATABASE BRANCH dev")
    c = conn if branch == "main" else connect("dev")
    run(c, "CREATE TABLE f (id int PRIMARY KEY, n text, g int GENERATED ALWAYS AS (id * 2) STORED)",
        "INSERT INTO f (id, n) VALUES (1, '10'), (2, '20')")
    point = rows(c, "SELECT heliosdb.current_lsn()::text")[0][0]
    run(c, "DELETE FROM f WHERE id = 2", "ALTER TABLE f ALTER COLUMN n TYPE int USING n::int",
        "ALTER TABLE f ADD COLUMN w int NOT NULL DEFAULT 5", "UPDATE f SET n = 99, w = 1")
    run(c, f"FLASHBACK TABLE f TO LSN {point}")
    assert rows(c, "SELECT id, n, g, w FROM f ORDER BY id") == [(1, 10, 2, 5), (2, 20, 4, 5)]
    run(c, "UPDATE f SET n = n + 1 WHERE id = 2")  # the row put back holds its constraints
    assert rows(c, "SELECT n FROM f WHERE id = 2") == [(21,)]
    run(c, "ALTER TABLE f RENAME TO f2", f"FLASHBACK TABLE f2 TO LSN {point}")  # the table, by its name now
    assert rows(c, "SELECT id, n FROM f2 ORDER BY id") == [(1, 10), (2, 20)]
    assert sqlstate(c, f"FLASHBACK TABLE f TO LSN {point}") == "42P01"


def test_timestamp_expressions_with_at_time_zone_and_case(conn: heliosdb.Connection,
                                                           history: dict[str, object]) -> None:
    now = rows(conn, "SELECT id, v FROM t ORDER BY id")
    for point in ("now()::timestamp AT TIME ZONE 'UTC'", "localtimestamp AT TIME ZONE 'UTC'",
                  "CASE WHEN true THEN now() ELSE CASE WHEN false THEN now() END END"):
        assert rows(conn, f"SELECT id, v FROM t AS OF TIMESTAMP {point} ORDER BY id") == now, point
        assert rows(conn, f"SELECT id, v FROM t FOR SYSTEM_TIME AS OF {point} ORDER BY id") == now, point


def test_statements_after_a_failed_time_travel_read_in_a_transaction(conn: heliosdb.Connection, history,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """The transaction failed: every later statement gets 25P02 until ROLLBACK, as in PostgreSQL, and nothing
    of HeliosDB's own work on the way shows up on stderr."""
    conn.autocommit = False
    assert sqlstate(conn, "SELECT * FROM t AS OF TIMESTAMP 'bad'") == "HD007"
    for stmt in ("SELECT * FROM t AS OF TIMESTAMP now()", "SET AS OF NOW", "CREATE TABLE x (a int)",
                 "SELECT 1"):
        assert sqlstate(conn, stmt) == "25P02", stmt
    conn.rollback()
    assert rows(conn, "SELECT count(*) FROM t AS OF TIMESTAMP now()") == [(2,)]
    assert "error ignored" not in capfd.readouterr().err


def test_temporal_errors(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    assert sqlstate(conn, "SELECT * FROM t AS OF LSN FFFF/FFFF") == "HD007"
    assert sqlstate(conn, "SELECT * FROM t AS OF LSN 0") == "HD007"  # before the first commit
    run(conn, "CREATE TABLE later (a int)")
    assert sqlstate(conn, f"SELECT * FROM later AS OF LSN {history['insert']}") == "42P01"  # did not exist yet
    assert sqlstate(conn, "SELECT * FROM t AS OF TIMESTAMP '1990-01-01'") == "HD007"
    assert sqlstate(conn, "SELECT * FROM t AS OF TIMESTAMP 'yesterday-ish'") == "HD007"
    assert sqlstate(conn, "SELECT * FROM t AS OF TRANSACTION 123456789") == "HD007"
    assert sqlstate(conn, "SELECT * FROM t AS OF BRANCH nope") == "HD001"
    assert sqlstate(conn, "SELECT * FROM t AS OF SOMETHING 5") == "42601"
    assert sqlstate(conn, "SELECT * FROM t VERSIONS BETWEEN XYZ 1 AND 2") == "42601"
    for bad in ("0/zz", "0/2zz", "0/G", "12ab"):  # not an LSN followed by an alias: a syntax error
        assert sqlstate(conn, f"SELECT * FROM t AS OF LSN {bad}") == "42601", bad
    assert sqlstate(conn, "SET AS OF LSN 99999") == "HD007"
    for huge in ("99999999999999999999", "-99999999999999999999"):  # beyond bigint: no 42883 from PostgreSQL
        err = error(conn, f"SELECT * FROM t AS OF SCN {huge}")
        assert (err.sqlstate, err.message) == ("HD007", f"SCN {huge} is out of range")
        assert sqlstate(conn, f"SELECT count(*) FROM t VERSIONS BETWEEN SCN {huge} AND MAXVALUE") == "HD007"
    assert rows(conn, "SELECT count(*) FROM t") == [(2,)]


def test_bad_range_bounds_are_errors_as_for_as_of(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    """A lower bound that is no timestamp is the error AS OF TIMESTAMP gives, not "from the beginning"."""
    for bad in ("'garbage'", "1/0", "'not a time'"):
        want = error(conn, f"SELECT * FROM t AS OF TIMESTAMP {bad}")
        assert want.sqlstate == "HD007", bad
        for q in (f"SELECT * FROM t VERSIONS BETWEEN TIMESTAMP {bad} AND now()",
                  f"SELECT * FROM t FOR SYSTEM_TIME FROM {bad} TO now()",
                  f"SELECT * FROM t FOR SYSTEM_TIME BETWEEN {bad} AND now()",
                  f"SELECT * FROM t FOR SYSTEM_TIME CONTAINED IN ({bad}, now())",
                  f"SELECT * FROM t FOR SYSTEM_TIME FROM now() TO {bad}"):
            err = error(conn, q)
            assert (err.sqlstate, err.message) == (want.sqlstate, want.message), q
    # a lower bound before the history still starts before every commit
    assert rows(conn, "SELECT count(*) FROM t VERSIONS BETWEEN TIMESTAMP '1990-01-01' AND now()") == [(5,)]
    assert rows(conn, "SELECT count(*) FROM t VERSIONS BETWEEN SCN 0 AND MAXVALUE") == [(5,)]


def test_scn_before_the_first_commit_is_an_error_on_every_branch(conn: heliosdb.Connection,
                                                                 history: dict[str, object], connect) -> None:
    """As LSN 0 is (HD007 with the oldest point), on main and on a child, instead of the fork point's rows."""
    run(conn, "CREATE DATABASE BRANCH ch")
    ch = connect("ch")
    first = rows(conn, "SELECT min(scn), min(lsn)::text FROM heliosdb.commits")[0]
    for c, name in ((conn, "main"), (ch, "ch")):
        assert sqlstate(c, "SELECT * FROM t AS OF LSN 0") == "HD007"
        for scn in ("0", "-5"):
            err = error(c, f"SELECT * FROM t AS OF SCN {scn}")
            assert (err.sqlstate, err.message) == ("HD007", f'SCN {scn} is before the first commit of branch "{name}"')
            assert err.hint == f"The oldest point of {name} is SCN {first[0]} (LSN {first[1]})."
        assert sqlstate(c, "SET AS OF SCN 0") == "HD007"


def test_error_positions_count_in_the_users_text(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    lsn = history["insert"]
    for sql in (f"SELECT * FROM t AS OF LSN {lsn} WHERE nocol = 1",
                f"SELECT * FROM t AS OF LSN {lsn} a JOIN t AS OF LSN {lsn} b ON a.id = b.nocol",
                "SELECT * FROM t VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE WHERE nocol = 1",
                f"SELECT nocol FROM t AS OF LSN {lsn}",
                "SELECT nocol FROM t -- AS OF LSN 0/3",  # the words, but no clause
                "SELECT 'as of', nocol FROM t"):
        err = error(conn, sql)
        assert err.sqlstate == "42703" and err.position is not None, sql
        assert sql[err.position - 1 :].startswith(("nocol", "b.nocol")), (sql, err.position)
    # a cached statement keeps its positions while many others are rewritten
    sql = f"SELECT id FROM t AS OF LSN {lsn} WHERE nocol = 1"
    error(conn, sql)
    for i in range(300):
        rows(conn, f"SELECT {i} FROM t AS OF LSN {lsn} LIMIT 1")
    assert error(conn, sql).position == sql.index("nocol") + 1


def test_error_positions_of_writes_on_a_branch(conn: heliosdb.Connection, history: dict[str, object],
                                               connect) -> None:
    """A branch's writes run behind its lock statement: positions still count in the user's text."""
    run(conn, "CREATE TABLE u (id int)", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    lsn = history["insert"]
    for sql in (f"INSERT INTO u SELECT id + 100 FROM t AS OF LSN {lsn} WHERE nocol = 1",
                f"UPDATE u SET id = 1 FROM t AS OF LSN {lsn} o WHERE o.nocol = u.id"):
        err = error(dev, sql)
        assert err.sqlstate == "42703" and err.position is not None, sql
        assert sql[err.position - 1 :].startswith(("nocol", "o.nocol")), (sql, err.position)


def test_locking_a_time_travel_read_is_refused_clearly(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    run(conn, "CREATE TABLE u (id int)")
    err = error(conn, f"SELECT * FROM t AS OF LSN {history['insert']} FOR UPDATE")
    assert err.sqlstate == "0A000" and "time travel" in err.message and "FOR UPDATE OF" in err.hint
    assert rows(conn, f"SELECT * FROM u, t AS OF LSN {history['insert']} x FOR UPDATE OF u") == []


def error(conn: heliosdb.Connection, sql: str) -> heliosdb.Error:
    with pytest.raises(heliosdb.Error) as info:
        conn.cursor().execute(sql)
    return info.value


def test_points_after_the_head_are_errors_for_every_kind(conn: heliosdb.Connection,
                                                         history: dict[str, object]) -> None:
    """SCN and TIMESTAMP points in the future fail like LSN ones, instead of reading the head (and later
    answering differently); a timestamp between the last commit and now reads the last commit."""
    latest = rows(conn, "SELECT max(scn) FROM heliosdb.commits")[0][0]
    head = [(1, "a2", 7), (2, "b2", 8)]
    for q in [f"SELECT * FROM t AS OF SCN {latest + 1}", "SELECT * FROM t AS OF SCN 999999",
              "SELECT * FROM t AS OF TIMESTAMP now() + interval '1 minute'",
              "SELECT * FROM t AS OF TIMESTAMP '2999-01-01'", "SELECT * FROM t AT (OFFSET => 60)",
              f"SELECT * FROM t AS OF LSN {int(str(history['reinsert']).split('/')[1], 16) + 1}"]:
        err = error(conn, q)
        assert err.sqlstate == "HD007", q
        assert "\n" not in err.message and err.hint, q
    assert f"SCN {latest}" in (error(conn, f"SELECT * FROM t AS OF SCN {latest + 1}").hint or "")
    assert sqlstate(conn, f"SET AS OF SCN {latest + 1}") == "HD007"
    assert sqlstate(conn, f"CREATE DATABASE BRANCH later AS OF SCN {latest + 1}") == "HD007"
    # the latest SCN, now, and a time between the last commit and now are known states
    assert rows(conn, f"SELECT * FROM t AS OF SCN {latest} ORDER BY id") == head
    assert rows(conn, "SELECT * FROM t AS OF TIMESTAMP now() ORDER BY id") == head
    assert rows(conn, "SELECT * FROM t AS OF TIMESTAMP clock_timestamp() ORDER BY id") == head
    time.sleep(0.01)
    since = rows(conn, "SELECT clock_timestamp()::text")[0][0]
    assert rows(conn, f"SELECT * FROM t AS OF TIMESTAMP '{since}' ORDER BY id") == head
    run(conn, "UPDATE t SET v = 'later'")
    assert rows(conn, f"SELECT * FROM t AS OF TIMESTAMP '{since}' ORDER BY id") == head
    assert rows(conn, f"SELECT * FROM t AS OF SCN {latest} ORDER BY id") == head


def test_incomplete_temporal_statements_are_syntax_errors(conn: heliosdb.Connection,
                                                          history: dict[str, object]) -> None:
    for q in ("SET AS OF", "SET AS OF;", "SET AS OF  ", "set as of\n", "FLASHBACK TABLE", "FLASHBACK TABLE;",
              "FLASHBACK TABLE t", "FLASHBACK TABLE t TO", "SET AS OF LSN", "SET AS OFF", "SHOW AS OF x"):
        err = error(conn, q)
        assert err.sqlstate == "42601", (q, err.sqlstate, err.message)
        assert "\n" not in err.message, q
    assert rows(conn, "SELECT count(*) FROM t") == [(2,)]


def test_resolution_functions(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    h = history
    assert rows(conn, f"SELECT heliosdb.lsn_at('{h['insert_ts']}')::text") == [(h["insert"],)]
    assert rows(conn, f"SELECT heliosdb.timestamp_to_scn('{h['insert_ts']}')") == [(h["insert_scn"],)]
    assert rows(conn, f"SELECT heliosdb.lsn_to_scn('{h['insert']}')") == [(h["insert_scn"],)]
    assert rows(conn, f"SELECT heliosdb.scn_to_timestamp({h['insert_scn']}) < '{h['insert_ts']}'") == [(True,)]


def test_snapshots_and_retention_views(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    snaps = rows(conn, "SELECT lsn::text, tables_touched, rows_changed FROM heliosdb.snapshots('t') ORDER BY lsn")
    by_lsn = {s[0]: s for s in snaps}
    assert by_lsn[history["insert"]][1:] == (["t"], 2)
    assert by_lsn[history["update"]][1:] == (["t"], 1)
    assert rows(conn, "SELECT count(*) > 0 FROM heliosdb.snapshots") == [(True,)]
    ret = rows(conn, "SELECT branch, retention_period::text, gc_policy FROM heliosdb.retention")
    assert ret == [("main", "7 days", "balanced")]
    # a renamed table is one table, under the name it has now; read-only transactions read them too
    run(conn, "ALTER TABLE t RENAME TO t2")
    conn.autocommit = False
    run(conn, "SET TRANSACTION READ ONLY")
    snaps = rows(conn, "SELECT lsn::text, tables_touched, rows_changed FROM heliosdb.snapshots ORDER BY lsn")
    assert {s[0]: s for s in snaps}[history["insert"]][1:] == (["t2"], 2)
    assert rows(conn, "SELECT count(*) FROM heliosdb.snapshots('t')") == rows(conn, "SELECT count(*) FROM "
                                                                             "heliosdb.snapshots('t2')")
    conn.rollback()


def test_retention_period_out_of_range_is_refused(conn: heliosdb.Connection, history: dict[str, object]) -> None:
    """A negative retention_period would make the next GC prune all history; a huge one overflows its clock."""
    for bad in ("-7 days", "1 mon -40 days", "5000 years"):
        for q in (f"ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '{bad}')",
                  f"CREATE DATABASE BRANCH x OPTIONS (retention_period = '{bad}')"):
            err = error(conn, q)
            assert err.sqlstate == "HD006" and "from 0 to 1000 years" in err.message, q
    assert rows(conn, "SELECT branch, retention_period::text FROM heliosdb.retention") == [("main", "7 days")]
    run(conn, "SELECT heliosdb.gc()")
    assert rows(conn, f"SELECT * FROM t AS OF LSN {history['insert']} ORDER BY id") == [(1, "a"), (2, "b")]
    run(conn, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1000 years')",
        "CREATE DATABASE BRANCH x OPTIONS (retention_period = '0')")


def test_gc_keeps_answers_inside_retention(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE g (id int PRIMARY KEY, v int)", "INSERT INTO g VALUES (1, 0), (2, 0)")
    run(conn, "UPDATE g SET v = 1 WHERE id = 1")
    old = lsn(conn)
    run(conn, "CREATE DATABASE BRANCH keep AS OF LSN " + old)
    run(conn, "UPDATE g SET v = 2 WHERE id = 1")
    run(conn, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)")
    time.sleep(1.2)
    run(conn, "UPDATE g SET v = 3 WHERE id = 1")
    recent = lsn(conn)
    before_recent = rows(conn, f"SELECT * FROM g AS OF LSN {recent} ORDER BY id")
    keep_rows = rows(connect("keep"), "SELECT * FROM g ORDER BY id")
    pruned = rows(conn, "SELECT heliosdb.gc()")[0][0]
    assert pruned >= 1
    assert rows(conn, f"SELECT * FROM g AS OF LSN {recent} ORDER BY id") == before_recent
    assert rows(connect("keep"), "SELECT * FROM g ORDER BY id") == keep_rows == [(1, 1), (2, 0)]
    assert sqlstate(conn, f"SELECT * FROM g AS OF LSN {old}") == "72000"
    assert rows(conn, "SELECT oldest_lsn IS NOT NULL FROM heliosdb.retention WHERE branch = 'main'") == [(True,)]


def test_kept_time_travel_sql_fails_once_its_point_is_gone(conn: heliosdb.Connection, connect) -> None:
    """Views, prepared statements and SET AS OF keep their point: after GC pruned it, or its branch was
    dropped, they fail with 72000 instead of reading what is left."""
    run(conn, "CREATE TABLE g (id int PRIMARY KEY, v text)", "INSERT INTO g VALUES (1, 'a1'), (2, 'b1')")
    old = lsn(conn)
    run(conn, "UPDATE g SET v = 'a2' WHERE id = 1", "DELETE FROM g WHERE id = 2",
        "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)",
        f"PREPARE p AS SELECT id, v FROM g AS OF LSN {old} ORDER BY id",
        f"CREATE VIEW old2 AS SELECT id, v FROM g AS OF LSN {old}",
        "CREATE DATABASE BRANCH x", "CREATE VIEW vx AS SELECT id, v FROM g AS OF BRANCH x")
    pinned = connect()
    run(pinned, f"SET AS OF LSN {old}")
    then = [(1, "a1"), (2, "b1")]
    assert rows(conn, "EXECUTE p") == rows(conn, "SELECT * FROM old2 ORDER BY id") == then
    assert rows(pinned, "SELECT id, v FROM g ORDER BY id") == then
    time.sleep(1.2)
    assert rows(conn, "SELECT heliosdb.gc()")[0][0] >= 1
    for c, stmt in ((conn, "EXECUTE p"), (conn, "SELECT * FROM old2"), (pinned, "SELECT * FROM g")):
        assert sqlstate(c, stmt) == "72000", stmt
    assert rows(conn, "SELECT count(*) FROM vx") == [(1,)]
    run(conn, "DROP DATABASE BRANCH x")
    assert sqlstate(conn, "SELECT * FROM vx") == "72000"  # not main's rows
    # MINVALUE and ALL mean the oldest point still retained; a bound before it is too old
    assert sqlstate(conn, f"SELECT * FROM g VERSIONS BETWEEN LSN {old} AND MAXVALUE") == "72000"
    # (the delete of b1 is the oldest retained point: its D row is inside the range, b1's version is not)
    for kind in ("LSN", "SCN"):
        got = rows(conn, f"SELECT id, v, versions_operation FROM g VERSIONS BETWEEN {kind} MINVALUE AND MAXVALUE")
        assert "a2" in [r[1] for r in got] and [r for r in got if r[1] == "b1"] in ([], [(2, "b1", "D")]), kind
    assert "b1" not in [r[0] for r in rows(conn, "SELECT v FROM g FOR SYSTEM_TIME ALL")]


def test_background_collector_runs(conn: heliosdb.Connection) -> None:
    from heliosdb.temporal.gc import Collector

    run(conn, "CREATE TABLE g (id int PRIMARY KEY, v int)", "INSERT INTO g VALUES (1, 0)",
        "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 millisecond', gc_policy = aggressive)")
    run(conn, "UPDATE g SET v = 1")
    first = lsn(conn)
    time.sleep(0.05)
    run(conn, "UPDATE g SET v = 2")
    collector = Collector(conn.session.new_connection, interval=0.05)
    collector.start()
    deadline = time.monotonic() + 10
    while collector.pruned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    collector.stop()
    assert collector.pruned >= 1
    assert sqlstate(conn, f"SELECT * FROM g AS OF LSN {first}") == "72000"
    assert rows(conn, "SELECT v FROM g") == [(2,)]


def test_a_time_or_scn_read_while_a_commit_finishes_waits_for_it(conn: heliosdb.Connection, connect) -> None:
    """A commit's time and SCN are stamped when COMMIT starts; its other commit-time work (here a
    deferred trigger that sleeps) runs before it is visible. A point at or after the stamp, resolved
    in that window, must read the commit, as the same point does once the commit landed."""
    import threading

    run(conn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)",
        "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(0.8); RETURN NULL; END'")
    writer, reader = connect(autocommit=False), connect()
    run(writer, "CREATE TEMP TABLE slow (x int)",
        "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON slow DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION nap()")
    writer.commit()

    def in_the_window(key: int, read: str) -> tuple[list[tuple], str]:
        run(writer, f"INSERT INTO t VALUES ({key})", "INSERT INTO slow VALUES (1)")
        committing = threading.Thread(target=writer.commit)
        committing.start()
        time.sleep(0.4)  # COMMIT stamped the commit and sleeps in the deferred trigger
        point = rows(reader, read)[0][0]
        got = rows(reader, f"SELECT count(*) FROM t AS OF {point}")
        committing.join()
        assert rows(reader, f"SELECT count(*) FROM t AS OF {point}") == got, point  # the same, later
        return got, point

    assert in_the_window(2, "SELECT format('TIMESTAMP %L', clock_timestamp())")[0] == [(2,)]
    got, point = in_the_window(3, "SELECT 'SCN ' || heliosdb._last_scn()")  # the finishing commit's SCN
    assert got == [(3,)]
    assert rows(reader, f"SELECT heliosdb.scn_to_timestamp({point.split()[1]}) IS NOT NULL") == [(True,)]


def test_a_reversed_versions_range_holds_no_version(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')")
    first = lsn(conn)
    run(conn, "CREATE DATABASE BRANCH b")
    run(connect("b"), "INSERT INTO t VALUES (5, 'b')")  # an LSN main's history does not have
    run(conn, "UPDATE t SET v = 'x'")
    between = rows(conn, "SELECT lsn::text FROM heliosdb._commits WHERE branch_id <> 1 ORDER BY lsn LIMIT 1")[0][0]
    assert rows(conn, f"SELECT * FROM t VERSIONS BETWEEN LSN '{between}' AND '{first}'") == []
    assert len(rows(conn, f"SELECT * FROM t VERSIONS BETWEEN LSN '{first}' AND '{lsn(conn)}'")) == 2
