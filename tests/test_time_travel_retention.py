"""Retention: the oldest available point of each branch, and what the garbage collector may not change."""

from __future__ import annotations

import time

import pytest

import heliosdb
from heliosdb.catalog.bootstrap import CATALOG_VERSION
from tests.test_branches import rows, run
from tests.test_time_travel import error, lsn

SHORT = "SET OPTIONS (retention_period = '100 milliseconds', gc_policy = aggressive)"


def oldest(conn: heliosdb.Connection, branch: str) -> str:
    return rows(conn, "SELECT oldest_lsn::text FROM heliosdb.retention WHERE branch = %s", (branch,))[0][0]


def first_commit(conn: heliosdb.Connection) -> str:
    return rows(conn, "SELECT min(lsn)::text FROM heliosdb.commits")[0][0]


def test_retention_shows_the_first_commit_before_any_gc(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 0)",
        "CREATE DATABASE BRANCH dev")
    run(connect("dev"), "UPDATE t SET v = 1")
    first = first_commit(conn)
    assert first != "0/0"
    got = rows(conn, "SELECT branch, oldest_lsn::text, oldest_time = (SELECT committed_at FROM heliosdb.commits "
                     "WHERE lsn = oldest_lsn) FROM heliosdb.retention ORDER BY branch")
    assert got == [("dev", first, True), ("main", first, True)]
    assert rows(connect("dev"), f"SELECT count(*) FROM t AS OF LSN {first}") == [(0,)]  # the table, still empty


def test_snapshot_too_old_on_a_child_names_a_point_of_the_child(conn: heliosdb.Connection, connect) -> None:
    """The parent pruned its history past the child's fork: the child still reads its fork point (the
    collector keeps it), so that is its oldest point, not the parent's horizon."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 0)")
    before_fork = lsn(conn)
    run(conn, "UPDATE t SET v = 1")
    fork = lsn(conn)
    run(conn, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 10")
    run(conn, "UPDATE t SET v = 2", f"ALTER DATABASE BRANCH main {SHORT}")
    time.sleep(0.3)
    run(conn, "UPDATE t SET v = 3")
    assert rows(conn, "SELECT heliosdb.gc()")[0][0] >= 1
    main_oldest = oldest(conn, "main")
    assert rows(conn, f"SELECT '{main_oldest}'::pg_lsn > '{fork}'") == [(True,)]  # the horizon passed the fork
    assert oldest(conn, "dev") == fork
    err = error(dev, f"SELECT * FROM t AS OF LSN {before_fork}")
    assert err.sqlstate == "72000"
    assert err.hint == f"The oldest available point is LSN {fork}."
    assert rows(dev, f"SELECT v FROM t AS OF LSN {fork}") == [(1,)]  # the named point works
    err = error(conn, f"SELECT * FROM t AS OF LSN {before_fork}")
    assert err.hint == f"The oldest available point is LSN {main_oldest}."
    assert rows(conn, f"SELECT count(*) FROM t AS OF LSN {main_oldest}") == [(1,)]


@pytest.mark.parametrize("pruned", ["child", "both"])
def test_the_named_oldest_point_is_readable(conn: heliosdb.Connection, connect, pruned: str) -> None:
    """Whatever was pruned, AS OF the point the hint and heliosdb.retention name reads, one before it does not."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 0), (2, 0)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    for i in range(3):
        run(dev, f"UPDATE t SET v = {i + 1} WHERE id = 1")
        run(conn, f"UPDATE t SET v = {i + 1} WHERE id = 2")
    run(conn, f"ALTER DATABASE BRANCH dev {SHORT}")
    if pruned == "both":
        run(conn, f"ALTER DATABASE BRANCH main {SHORT}")
    time.sleep(0.3)
    run(dev, "UPDATE t SET v = 9 WHERE id = 1")
    run(conn, "UPDATE t SET v = 9 WHERE id = 2")
    run(conn, "SELECT heliosdb.gc()")
    for c, name in ((dev, "dev"), (conn, "main")):
        point = oldest(conn, name)
        unpruned = name == "main" and pruned == "child"  # main's oldest point is its first commit, CREATE TABLE
        assert rows(c, f"SELECT count(*) FROM t AS OF LSN {point}") == [(0 if unpruned else 2,)], name
        earlier = rows(conn, "SELECT max(lsn)::text FROM heliosdb.commits WHERE lsn < %s::pg_lsn", (point,))[0][0]
        if earlier is not None:
            err = error(c, f"SELECT * FROM t AS OF LSN {earlier}")
            assert (err.sqlstate, err.hint) == ("72000", f"The oldest available point is LSN {point}."), name


def test_resolution_functions_refuse_future_points_as_as_of_does(conn: heliosdb.Connection, connect) -> None:
    """A point whose state is not known yet is HD007 with a hint naming the newest point, for the
    functions as for AS OF, instead of the latest commit (or NULL) that a later commit changes."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 0)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 1")
    head, dev_head = lsn(conn), lsn(dev)
    latest = rows(conn, "SELECT max(scn) FROM heliosdb.commits")[0][0]
    after = f"{int(dev_head.split('/')[1], 16) + 1:X}"
    for c, name, tip in ((conn, "main", head), (dev, "dev", dev_head)):
        for func, as_of in ((f"heliosdb.lsn_to_scn('0/{after}')", f"LSN 0/{after}"),
                            (f"heliosdb.scn_to_timestamp({latest + 1})", f"SCN {latest + 1}"),
                            ("heliosdb.lsn_at(now() + interval '1 hour')", "TIMESTAMP now() + interval '1 hour'"),
                            ("heliosdb.timestamp_to_scn('2999-01-01')", "TIMESTAMP '2999-01-01'")):
            got, want = error(c, f"SELECT {func}"), error(c, f"SELECT * FROM t AS OF {as_of}")
            assert got.sqlstate == want.sqlstate == "HD007", func
            assert got.hint and want.hint and "\n" not in got.message, func
            if "TIMESTAMP" not in as_of:  # a timestamp's text differs (Python's and PostgreSQL's)
                assert (got.message, got.hint) == (want.message, want.hint), func
            else:
                assert got.message.endswith("is in the future") and got.hint.startswith(
                    "The newest point is the current time, ") and f'last commit of "{name}"' in got.hint, func
        assert error(c, f"SELECT heliosdb.lsn_to_scn('0/{after}')").hint == f"The head of {name} is {tip}."
    assert error(conn, f"SELECT heliosdb.scn_to_timestamp({latest + 1})").hint == f"The newest point is SCN {latest}."
    # the newest points themselves, and NULL, still answer
    assert rows(conn, f"SELECT heliosdb.lsn_to_scn('{head}') <= {latest}, heliosdb.scn_to_timestamp({latest}) "
                      f"IS NOT NULL, heliosdb.lsn_at(clock_timestamp())::text, "
                      f"heliosdb.timestamp_to_scn(now()) IS NOT NULL") == [(True, True, head, True)]
    assert rows(conn, "SELECT heliosdb.lsn_at(NULL), heliosdb.lsn_to_scn(NULL), heliosdb.scn_to_timestamp(NULL), "
                      "heliosdb.timestamp_to_scn(NULL)") == [(None, None, None, None)]


VERSIONS = ("SELECT id, v, versions_operation, versions_startlsn::text, versions_endlsn::text, versions_xid IS NULL "
            "FROM t {} ORDER BY id, versions_startlsn NULLS FIRST, versions_operation")


def test_gc_changes_no_versions_answer_inside_retention(conn: heliosdb.Connection) -> None:
    """VERSIONS BETWEEN from the oldest retained point answers after GC what it answered before: the
    update and the delete committed at that point keep their U and D, versions from before it show no
    operation (as in Oracle); MINVALUE and ALL mean that point, so the versions kept for a child's fork
    point add no rows (a D for a row that was updated, an I for its next version)."""
    # the collector runs within a second of `later` even on a busy machine: the horizon stays at `horizon`
    run(conn, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)",
        "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (2, 'b')",
        "UPDATE t SET v = 'b2' WHERE id = 2", "CREATE DATABASE BRANCH pin",  # pins b2
        "INSERT INTO t VALUES (1, 'a'), (3, 'c')",
        "UPDATE t SET v = 'b3' WHERE id = 2", "UPDATE t SET v = 'b4' WHERE id = 2")
    conn.autocommit = False
    run(conn, "UPDATE t SET v = 'a2' WHERE id = 1", "DELETE FROM t WHERE id = 3")
    conn.commit()
    conn.autocommit = True
    horizon = lsn(conn)
    time.sleep(1.3)
    run(conn, "UPDATE t SET v = 'a3' WHERE id = 1")
    later = lsn(conn)
    since = f"FOR SYSTEM_TIME BETWEEN heliosdb.scn_to_timestamp(heliosdb.lsn_to_scn('{horizon}')) AND now()"
    before = rows(conn, VERSIONS.format(f"VERSIONS BETWEEN LSN {horizon} AND MAXVALUE"))
    before_since = rows(conn, VERSIONS.format(since))
    assert before == [
        (1, "a2", "U", horizon, later, False), (1, "a3", "U", later, None, False),
        (2, "b4", None, None, None, True),
        (3, "c", "D", horizon, None, False)]
    assert rows(conn, "SELECT heliosdb.gc()")[0][0] >= 1
    assert oldest(conn, "main") == horizon
    assert rows(conn, VERSIONS.format(f"VERSIONS BETWEEN LSN {horizon} AND MAXVALUE")) == before
    assert rows(conn, VERSIONS.format("VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE")) == before
    assert rows(conn, VERSIONS.format("VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE")) == before
    assert rows(conn, VERSIONS.format(since)) == rows(conn, VERSIONS.format("FOR SYSTEM_TIME ALL")) == before_since


def test_gc_changes_no_versions_answer_of_a_child_from_its_fork_point(conn: heliosdb.Connection, connect) -> None:
    """The parent pruned past the child's fork: from the fork point (the child's oldest point) on, the
    child's VERSIONS BETWEEN answers as before, the parent's update and delete at the fork included."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    conn.autocommit = False
    run(conn, "UPDATE t SET v = 'a2' WHERE id = 1", "DELETE FROM t WHERE id = 3")
    conn.commit()
    conn.autocommit = True
    fork = lsn(conn)
    run(conn, "CREATE DATABASE BRANCH dev", f"ALTER DATABASE BRANCH main {SHORT}")
    dev = connect("dev")
    run(dev, "UPDATE t SET v = 'b2' WHERE id = 2")
    run(conn, "UPDATE t SET v = 'a3' WHERE id = 1", "UPDATE t SET v = 'b9' WHERE id = 2")
    time.sleep(0.3)
    run(conn, "UPDATE t SET v = 'a4' WHERE id = 1")
    query = VERSIONS.format(f"VERSIONS BETWEEN LSN {fork} AND MAXVALUE")
    before = rows(dev, query)
    assert [r[:3] for r in before] == [(1, "a2", "U"), (2, "b", None), (2, "b2", "U"), (3, "c", "D")]
    assert rows(conn, "SELECT heliosdb.gc()")[0][0] >= 1
    assert oldest(conn, "dev") == fork
    assert rows(dev, query) == rows(dev, VERSIONS.format("VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE")) == before


def _definition(script: str, start: str) -> str:
    """A CREATE statement of one of the catalog's scripts, as that script has it."""
    from importlib import resources

    text = resources.files("heliosdb.catalog").joinpath(script).read_text()
    begin = text.index(start)
    stop = text.index(";", begin)
    end = text.index("$$;", begin) + 3 if "$$" in text[begin:stop] else stop + 1  # a function's body, or a view
    return text[begin:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
        "CREATE VIEW", "CREATE OR REPLACE VIEW")


def test_catalog_version_17_is_upgraded(conn: heliosdb.Connection, connect, helios_instance, dbname) -> None:
    """A database made at catalog version 17 gets the retained points, the functions that refuse future
    points and the collector of version 18 when a session opens it."""
    import psycopg

    run(conn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    first = first_commit(conn)
    with psycopg.connect(**helios_instance.conninfo(dbname), autocommit=True) as raw:  # as version 17 had them
        raw.execute(_definition("bootstrap.sql", "CREATE VIEW heliosdb.retention"))
        for name in ("lsn_at", "timestamp_to_scn", "scn_to_timestamp", "lsn_to_scn"):
            raw.execute(f"DROP FUNCTION heliosdb.{name}")
            raw.execute(_definition("bootstrap.sql", f"CREATE FUNCTION heliosdb.{name}("))
        raw.execute(_definition("retention.sql", "CREATE OR REPLACE FUNCTION heliosdb.gc()"))
        raw.execute("DROP FUNCTION heliosdb._oldest_lsn, heliosdb._retained_lsn, heliosdb._future_timestamp")
        raw.execute("UPDATE heliosdb._meta SET value = '17' WHERE key = 'catalog_version'")
        assert raw.execute("SELECT oldest_lsn::text FROM heliosdb.retention").fetchall() == [("0/0",)]
        assert raw.execute("SELECT heliosdb.lsn_at('2999-01-01') IS NOT NULL").fetchall() == [(True,)]
    fresh = connect()  # upgrades the catalog
    assert rows(fresh, "SELECT value FROM heliosdb._meta WHERE key = 'catalog_version'") == [(CATALOG_VERSION,)]
    assert oldest(fresh, "main") == first
    assert error(fresh, "SELECT heliosdb.lsn_at('2999-01-01')").sqlstate == "HD007"
    assert rows(fresh, "SELECT pg_get_functiondef('heliosdb.gc()'::regprocedure) LIKE '%h._hdb_end < $2%'") == [(True,)]


def test_catalog_version_18_is_upgraded(conn: heliosdb.Connection, connect, helios_instance, dbname) -> None:
    """A database made at catalog version 18 gets the commit lock and the resolvers that wait for it."""
    import psycopg

    run(conn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    with psycopg.connect(**helios_instance.conninfo(dbname), autocommit=True) as raw:  # as version 18 had them
        raw.execute(_definition("writes.sql", "CREATE OR REPLACE FUNCTION heliosdb._record_commit()"))
        for name in ("_lsn_at(", "_lsn_at_scn("):
            raw.execute(_definition("bootstrap.sql", f"CREATE FUNCTION heliosdb.{name}"))
        raw.execute("DROP FUNCTION heliosdb._commits_settled, heliosdb._last_scn")
        raw.execute("UPDATE heliosdb._meta SET value = '18' WHERE key = 'catalog_version'")
    fresh = connect()  # upgrades the catalog
    assert rows(fresh, "SELECT value FROM heliosdb._meta WHERE key = 'catalog_version'") == [(CATALOG_VERSION,)]
    assert rows(fresh, "SELECT provolatile FROM pg_proc WHERE oid = 'heliosdb._lsn_at'::regproc") == [("v",)]
    assert rows(fresh, "SELECT pg_get_functiondef('heliosdb._record_commit'::regproc) LIKE '%pg_advisory_xact_lock%'") \
        == [(True,)]
    run(fresh, "INSERT INTO t VALUES (2)")
    assert rows(fresh, "SELECT count(*) FROM t AS OF SCN %s", (rows(fresh, "SELECT heliosdb._last_scn()")[0][0],)) \
        == [(2,)]
