"""Time-travel clauses inside statements: PREPARE with point parameters, pseudo-columns, messages, FLASHBACK."""

from __future__ import annotations

import psycopg
import pytest

import heliosdb
from tests import test_server_support as support
from tests.test_branches import rows, run, sqlstate
from tests.test_server_support import ServerProcess

server = support.server


def error(conn: heliosdb.Connection, sql: str) -> heliosdb.Error:
    with pytest.raises(heliosdb.Error) as info:
        conn.cursor().execute(sql)
    return info.value


@pytest.fixture
def marks(conn: heliosdb.Connection) -> dict[str, str]:
    """t at two points: 'first' (one row 'a') and 'second' (its value 'b', a second row)."""
    out: dict[str, str] = {}
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')")
    for name in ("first", "second"):
        if name == "second":
            run(conn, "BEGIN", "UPDATE t SET v = 'b'", "INSERT INTO t VALUES (2, 'c')", "COMMIT")
        lsn, scn, txid, ts = rows(conn, "SELECT lsn::text, scn, txid::text, committed_at::text "
                                        "FROM heliosdb._commits ORDER BY lsn DESC LIMIT 1")[0]
        out |= {name: lsn, f"{name}_scn": str(scn), f"{name}_txid": txid, f"{name}_ts": ts}
    run(conn, "DELETE FROM t")
    return out


FIRST, SECOND = [(1, "a")], [(1, "b"), (2, "c")]


def test_prepare_with_a_parameter_as_the_point(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    """Each EXECUTE resolves its own point, in every form of the clause."""
    run(conn,
        "PREPARE ts(timestamptz) AS SELECT * FROM t AS OF TIMESTAMP $1 ORDER BY id",
        "PREPARE scn(bigint) AS SELECT * FROM t AS OF SCN $1 ORDER BY id",
        "PREPARE lsn(pg_lsn) AS SELECT * FROM t AS OF LSN $1 ORDER BY id",
        "PREPARE txn AS SELECT * FROM t AS OF TRANSACTION $1 ORDER BY id",
        "PREPARE st AS SELECT * FROM t FOR SYSTEM_TIME AS OF $1 ORDER BY id",
        'PREPARE "Ago"(interval) AS SELECT count(*) FROM t AS OF TIMESTAMP now() - $1')
    for point, want in (("first", FIRST), ("second", SECOND)):
        assert rows(conn, f"EXECUTE ts('{marks[point + '_ts']}')") == want
        assert rows(conn, f"EXECUTE scn({marks[point + '_scn']})") == want
        assert rows(conn, f"EXECUTE lsn('{marks[point]}')") == want
        assert rows(conn, f"EXECUTE txn({marks[point + '_txid']})") == want
        assert rows(conn, f"EXECUTE st('{marks[point + '_ts']}')") == want
        assert rows(conn, "EXECUTE scn(%s)", (int(marks[point + "_scn"]),)) == want  # a driver's parameter
    assert rows(conn, "EXECUTE \"Ago\"('1 microsecond')") == [(0,)]
    assert rows(conn, "EXECUTE ts((SELECT committed_at FROM heliosdb._commits ORDER BY lsn LIMIT 1 OFFSET 1))") \
        == FIRST  # an argument is any expression, evaluated once


def test_prepare_with_parameters_in_ranges_and_elsewhere(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    run(conn, "PREPARE vb(bigint, bigint) AS SELECT id, v, versions_operation FROM t "
              "VERSIONS BETWEEN SCN $1 AND $2 ORDER BY id, versions_startscn",
        "PREPARE two(bigint, int) AS SELECT v FROM t AS OF SCN $1 WHERE id = $2 AND $2 > 0")
    s1, s2 = marks["first_scn"], marks["second_scn"]
    assert rows(conn, f"EXECUTE vb({s1}, {s1})") == [(1, "a", "I")]
    assert rows(conn, f"EXECUTE vb({s1}, {s2})") == [(1, "a", "I"), (1, "b", "U"), (2, "c", "I")]
    assert rows(conn, f"EXECUTE two({s2}, 2)") == [("c",)]
    assert rows(conn, f"EXECUTE two({s1}, 1)") == [("a",)]


def test_prepare_with_point_parameters_errors(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    """A bad value at EXECUTE fails as the same point written as a literal; DEALLOCATE drops the statement."""
    run(conn, "PREPARE scn(bigint) AS SELECT * FROM t AS OF SCN $1",
        "PREPARE ts(timestamptz) AS SELECT * FROM t AS OF TIMESTAMP $1")
    for bad in ("'x'", "99999999", "NULL"):
        err = error(conn, f"EXECUTE scn({bad})")
        assert err.sqlstate == "HD007" == sqlstate(conn, f"SELECT * FROM t AS OF SCN {bad}"), bad
        assert err.position is None
    assert str(error(conn, "EXECUTE scn('x')")) == str(error(conn, "SELECT * FROM t AS OF SCN 'x'"))
    assert str(error(conn, "EXECUTE ts('garbage')")) == str(error(conn, "SELECT * FROM t AS OF TIMESTAMP 'garbage'"))
    assert sqlstate(conn, "EXECUTE ts(now() + interval '1 day')") == "HD007"
    err = error(conn, "EXECUTE scn(1, 2)")
    assert (err.sqlstate, str(err), err.detail) == (
        "42601", 'wrong number of parameters for prepared statement "scn"', "Expected 1 parameters but got 2.")
    assert sqlstate(conn, "PREPARE scn AS SELECT 1") == "42P05"
    assert sqlstate(conn, "PREPARE bad(no_such_type) AS SELECT * FROM t AS OF SCN $1") == "42704"
    run(conn, "PREPARE plain AS SELECT 1")
    assert sqlstate(conn, "PREPARE plain(bigint) AS SELECT * FROM t AS OF SCN $1") == "42P05"
    # in a transaction block, a failed EXECUTE fails the transaction as any statement does
    run(conn, "BEGIN")
    assert sqlstate(conn, "EXECUTE scn()") == "42601"
    assert sqlstate(conn, f"EXECUTE scn({marks['first_scn']})") == "25P02"
    run(conn, "ROLLBACK")
    assert rows(conn, f"EXECUTE scn({marks['first_scn']})") == FIRST  # PREPARE is not transactional
    run(conn, "DEALLOCATE scn")
    assert sqlstate(conn, f"EXECUTE scn({marks['first_scn']})") == "26000"
    assert sqlstate(conn, "DEALLOCATE scn") == "26000"
    run(conn, "DEALLOCATE PREPARE ALL")
    assert sqlstate(conn, "EXECUTE ts(now())") == "26000"
    run(conn, "PREPARE ts(timestamptz) AS SELECT * FROM t AS OF TIMESTAMP $1", "DISCARD ALL")
    assert sqlstate(conn, "EXECUTE ts(now())") == "26000"


def test_prepare_with_point_parameters_through_the_endpoint(server: ServerProcess, dbname: str) -> None:
    """psql's simple protocol and psycopg's extended protocol reach the session's prepared statement."""
    with server.connect(dbname, autocommit=True) as pg:
        pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        pg.execute("INSERT INTO t VALUES (1, 'a')")
        first = pg.execute("SELECT heliosdb.current_scn()").fetchone()[0]  # type: ignore[index]
        pg.execute("UPDATE t SET v = 'b'")
        pg.execute("PREPARE q(bigint) AS SELECT v FROM t AS OF SCN $1")
        assert pg.execute(f"EXECUTE q({first})").fetchall() == [("a",)]
        assert pg.execute("EXECUTE q(%s)", (first + 1,)).fetchall() == [("b",)]
        for k in range(8):  # psycopg prepares a query it runs often on the server: Parse, Describe
            assert pg.execute("EXECUTE q(%s)", (first + k % 2,)).fetchall() == [("ab"[k % 2],)]
        with psycopg.ClientCursor(pg) as cur:
            assert cur.execute("EXECUTE q(%s)", (first,)).fetchall() == [("a",)]
        with pytest.raises(psycopg.Error) as info:
            pg.execute("EXECUTE q('x')")
        assert info.value.sqlstate == "HD007"
        pg.execute("DEALLOCATE q")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            pg.execute(f"EXECUTE q({first})")


def test_star_over_versions_is_the_tables_columns(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    """As in Oracle, `*` and `t.*` are the table's columns; a pseudo-column is there where it is named."""
    rng = "VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE"
    run(conn, "CREATE TABLE u (id int, w text)", "INSERT INTO u VALUES (2, 'u')")
    cases = {
        f"SELECT *, versions_operation FROM t {rng} ORDER BY id, versions_startscn":
            (["id", "v", "versions_operation"], [(1, "a", "I"), (1, "b", "U"), (1, "b", "D"), (2, "c", "I"),
                                                 (2, "c", "D")]),
        f"SELECT t.*, versions_xid IS NOT NULL AS x FROM t {rng} WHERE versions_operation = 'I' ORDER BY id":
            (["id", "v", "x"], [(1, "a", True), (2, "c", True)]),
        f'SELECT "V".* FROM t {rng} AS "V" WHERE "V".versions_operation = \'U\'': (["id", "v"], [(1, "b")]),
        f"SELECT *, x.versions_operation FROM u, t {rng} x WHERE x.id = u.id AND x.versions_operation = 'I'":
            (["id", "w", "id", "v", "versions_operation"], [(2, "u", 2, "c", "I")]),
        f"SELECT * FROM (SELECT DISTINCT *, versions_operation AS op FROM t {rng}) s WHERE op = 'U'":
            (["id", "v", "op"], [(1, "b", "U")]),
    }
    for query, (names, want) in cases.items():
        cur = conn.cursor()
        cur.execute(query)
        assert [d[0] for d in cur.description] == names, query
        assert cur.fetchall() == want, query


def test_messages_name_what_the_user_wrote(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    err = error(conn, "FLASHBACK TABLE t TO BRANCH main")
    assert (err.sqlstate, str(err), err.position) == (
        "42601", 'syntax error at or near "BRANCH": expected LSN, SCN, TIMESTAMP or TRANSACTION (line 1, column 22)',
        22)
    err = error(conn, "FLASHBACK TABLE t TO LSN 0/1 now")
    assert (err.sqlstate, err.position) == ("42601", 30)
    err = error(conn, "SELECT * FROM t AS OF BRANCH main AT BRANCH x")
    assert "expected NOW, TIMESTAMP, LSN, SCN or TRANSACTION" in str(err)
    for offset, why in (("'x'", 'invalid input syntax for type double precision: "x"'), ("1/0", "division by zero"),
                        ("NULL", "the point is NULL")):
        err = error(conn, f"SELECT * FROM t AT (OFFSET => {offset})")
        assert (err.sqlstate, str(err)) == ("HD007", f'invalid offset "{offset}": {why}'), offset
        assert "make_interval" not in (err.hint or "")
    assert str(error(conn, "SELECT * FROM t AS OF TIMESTAMP NULL")) == 'invalid timestamp "NULL": the point is NULL'


def test_time_travel_on_views_is_not_supported(conn: heliosdb.Connection, marks: dict[str, str]) -> None:
    """A view or a materialized view has no history of its own: 0A000 with a hint, as a table outside the branch."""
    run(conn, "CREATE VIEW vw AS SELECT * FROM t", "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t")
    first = marks["first"]
    for branch in ("main", "dev"):
        if branch == "dev":
            run(conn, "CREATE DATABASE BRANCH dev", "USE BRANCH dev")
        for query, what in ((f"SELECT * FROM vw AS OF LSN {first}", 'view "vw"'),
                            (f"SELECT * FROM mv AS OF LSN {first}", 'materialized view "mv"'),
                            ("SELECT * FROM vw VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE", 'view "vw"'),
                            ("SELECT * FROM mv FOR SYSTEM_TIME ALL", 'materialized view "mv"'),
                            (f"FLASHBACK TABLE vw TO LSN {first}", 'view "vw"')):
            err = error(conn, query)
            assert (err.sqlstate, str(err)) == ("0A000", f"time travel on {what} is not supported"), query
            assert err.hint and "apply to tables" in err.hint
        err = error(conn, f"SELECT * FROM pg_class AS OF LSN {first}")
        assert (err.sqlstate, str(err)) == ("0A000", 'time travel on "pg_catalog.pg_class" is not supported')
        # a table made after the point still says so
        run(conn, f"CREATE TABLE later_{branch} (x int)")
        err = error(conn, f"SELECT * FROM later_{branch} AS OF LSN {first}")
        assert err.sqlstate == "42P01" and "at LSN" in str(err)


def head(conn: heliosdb.Connection) -> str:
    return rows(conn, "SELECT heliosdb.current_lsn()::text")[0][0]


def swap(conn: heliosdb.Connection, table: str, column: str, one: str, two: str, through: str) -> None:
    """Rows 1 and 2 (holding one and two) swap their values of `column`, through a third value:
    PostgreSQL checks a unique key row by row."""
    run(conn, "BEGIN", f"UPDATE {table} SET {column} = {through} WHERE id = 1",
        f"UPDATE {table} SET {column} = {one} WHERE id = 2", f"UPDATE {table} SET {column} = {two} WHERE id = 1",
        "COMMIT")


def test_flashback_restores_swapped_keys_on_the_root_branch(conn: heliosdb.Connection) -> None:
    """Unique values and primary keys swapped after the point come back, as one new commit whose history
    is an update of each row; foreign keys without ON DELETE actions are checked as usual."""
    run(conn, "CREATE TABLE s (id int PRIMARY KEY, u text UNIQUE, n int)",
        "CREATE TABLE c (id int PRIMARY KEY, su text REFERENCES s (u))",
        "INSERT INTO s VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)", "INSERT INTO c VALUES (1, 'a'), (2, 'b')")
    point = head(conn)
    run(conn, "BEGIN", "DELETE FROM c", "COMMIT")
    swap(conn, "s", "u", "'a'", "'b'", "'tmp'")
    run(conn, "UPDATE s SET n = 0 WHERE id = 3", "INSERT INTO s VALUES (4, 'd', 40)",
        "INSERT INTO c VALUES (1, 'a'), (2, 'b')")
    swapped = head(conn)
    commits = rows(conn, "SELECT count(*) FROM heliosdb._commits")[0][0]
    run(conn, f"FLASHBACK TABLE s TO LSN {point}")
    then = [(1, "a", 10), (2, "b", 20), (3, "c", 30)]
    assert rows(conn, "SELECT * FROM s ORDER BY id") == then
    assert rows(conn, "SELECT count(*) FROM heliosdb._commits")[0][0] == commits + 1
    back = head(conn)
    assert rows(conn, f"SELECT * FROM s AS OF LSN {swapped} ORDER BY id") == [
        (1, "b", 10), (2, "a", 20), (3, "c", 0), (4, "d", 40)]
    assert rows(conn, f"SELECT * FROM s AS OF LSN {back} ORDER BY id") == then
    assert rows(conn, f"SELECT id, u, versions_operation FROM s VERSIONS BETWEEN LSN {back} AND MAXVALUE "
                      "WHERE versions_startlsn IS NOT NULL OR versions_operation = 'D' ORDER BY id") == [
        (1, "a", "U"), (2, "b", "U"), (3, "c", "U"), (4, "d", "D")]
    assert rows(conn, "SELECT * FROM c ORDER BY id") == [(1, "a"), (2, "b")]
    # primary keys, and a DEFERRABLE unique constraint
    run(conn, "CREATE TABLE k (id int PRIMARY KEY, v text)", "INSERT INTO k VALUES (1, 'a'), (2, 'b')",
        "CREATE TABLE d (id int PRIMARY KEY, u int UNIQUE DEFERRABLE)", "INSERT INTO d VALUES (1, 1), (2, 2)")
    point = head(conn)
    run(conn, "BEGIN", "UPDATE k SET id = 3 WHERE id = 1", "UPDATE k SET id = 1 WHERE id = 2",
        "UPDATE k SET id = 2 WHERE id = 3", "COMMIT")
    run(conn, "UPDATE d SET u = 3 - u")
    assert rows(conn, "SELECT * FROM k ORDER BY id") == [(1, "b"), (2, "a")]
    run(conn, f"FLASHBACK TABLE k TO LSN {point}", f"FLASHBACK TABLE d TO LSN {point}")
    assert rows(conn, "SELECT * FROM k ORDER BY id") == [(1, "a"), (2, "b")]
    assert rows(conn, "SELECT * FROM d ORDER BY id") == [(1, 1), (2, 2)]


def test_flashback_of_swapped_keys_refused_where_a_foreign_key_acts(conn: heliosdb.Connection) -> None:
    """Rows written again would fire ON DELETE CASCADE: 23505 with a hint, and nothing changed."""
    run(conn, "CREATE TABLE p (id int PRIMARY KEY, u text UNIQUE)",
        "CREATE TABLE pc (id int PRIMARY KEY, pid int REFERENCES p (id) ON DELETE CASCADE)",
        "INSERT INTO p VALUES (1, 'a'), (2, 'b')", "INSERT INTO pc VALUES (1, 1), (2, 2)")
    point = head(conn)
    swap(conn, "p", "u", "'a'", "'b'", "'tmp'")
    err = error(conn, f"FLASHBACK TABLE p TO LSN {point}")
    assert err.sqlstate == "23505" and err.hint and "pc_pid_fkey" in err.hint
    assert rows(conn, "SELECT * FROM p ORDER BY id") == [(1, "b"), (2, "a")]
    assert rows(conn, "SELECT * FROM pc ORDER BY id") == [(1, 1), (2, 2)]
    run(conn, "BEGIN", "INSERT INTO pc VALUES (3, 1)")  # in a transaction block: it fails, nothing half done
    assert sqlstate(conn, f"FLASHBACK TABLE p TO LSN {point}") == "23505"
    run(conn, "ROLLBACK")
    assert rows(conn, "SELECT * FROM pc ORDER BY id") == [(1, 1), (2, 2)]
