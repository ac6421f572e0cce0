"""The PEP 249 surface of heliosdb: module, Connection, Cursor, transactions, errors.

The by-hand tests below cover the checks of the `dbapi20` compliance suite
(PyPI: dbapi-compliance); when that module is installed, the suite itself
runs too (TestDBAPI20Compliance).
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import heliosdb
from heliosdb import errors

try:
    import dbapi20  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - optional test dependency
    dbapi20 = None

Connect = Callable[..., heliosdb.Connection]
_names = itertools.count()


# One database for the module (CREATE DATABASE costs ~1 s a test); tests use table names of their own.
@pytest.fixture(scope="module")
def dbname(helios_instance: object) -> Iterator[str]:
    name = f"dbapi_{os.getpid()}"
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        yield name
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def connect(helios_data_dir: Path, dbname: str) -> Iterator[Connect]:
    opened: list[heliosdb.Connection] = []

    def make(branch: str = "main", autocommit: bool = True) -> heliosdb.Connection:
        c = heliosdb.connect(data_dir=helios_data_dir, database=dbname, branch=branch)
        c.autocommit = autocommit
        opened.append(c)
        return c

    yield make
    for c in opened:
        if not c.closed:
            c.close()


@pytest.fixture
def conn(connect: Connect) -> heliosdb.Connection:
    return connect()


Names = Callable[[str], str]


@pytest.fixture
def name() -> Names:
    """name("t") -> a table name no other test of this module uses."""
    n = next(_names)
    return lambda base: f"{base}_{n}"


# --- module --------------------------------------------------------------------------


def test_module_globals() -> None:
    assert heliosdb.apilevel == "2.0"
    assert heliosdb.threadsafety in (0, 1, 2, 3)
    assert heliosdb.threadsafety == 1  # threads may share the module, not connections
    assert heliosdb.paramstyle == "pyformat"
    assert callable(heliosdb.connect)


def test_exceptions_on_module_and_connection(conn: heliosdb.Connection) -> None:
    names = [
        "Warning",
        "Error",
        "InterfaceError",
        "DatabaseError",
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
    ]
    for name in names:
        assert getattr(conn, name) is getattr(heliosdb, name), name
    assert issubclass(heliosdb.Warning, Exception)
    assert issubclass(heliosdb.Error, Exception)
    for name in names[2:]:
        assert issubclass(getattr(heliosdb, name), heliosdb.Error), name
    for name in names[4:]:
        assert issubclass(getattr(heliosdb, name), heliosdb.DatabaseError), name


_TYPE_OBJECTS = ["STRING", "BINARY", "NUMBER", "DATETIME", "ROWID"]
_CONSTRUCTORS = [
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
    "Binary",
]


def test_type_objects_and_constructors(conn: heliosdb.Connection) -> None:
    missing = [n for n in _TYPE_OBJECTS + _CONSTRUCTORS if not hasattr(heliosdb, n)]
    assert not missing, missing
    cur = conn.cursor()
    cur.execute(
        "SELECT 'a'::text, 'b'::varchar(3), 1::int, 2.5::numeric, now(), '2020-01-01'::date, "
        "'\\x01'::bytea, 1::oid"
    )
    text, varchar, int4, numeric, ts, date, bytea, oid = (d[1] for d in cur.description)
    assert text == heliosdb.STRING and varchar == heliosdb.STRING
    assert int4 == heliosdb.NUMBER and numeric == heliosdb.NUMBER
    assert ts == heliosdb.DATETIME and date == heliosdb.DATETIME
    assert bytea == heliosdb.BINARY
    assert oid == heliosdb.ROWID
    assert text != heliosdb.NUMBER and int4 != heliosdb.STRING and bytea != heliosdb.STRING
    cur.execute(
        "SELECT %s, %s, %s, %s",
        (
            heliosdb.Date(2002, 12, 25),
            heliosdb.Time(13, 45, 30),
            heliosdb.Timestamp(2002, 12, 25, 13, 45, 30),
            heliosdb.Binary(b"\x00\xffabc"),
        ),
    )
    assert cur.fetchone() == (
        datetime.date(2002, 12, 25),
        datetime.time(13, 45, 30),
        datetime.datetime(2002, 12, 25, 13, 45, 30),
        b"\x00\xffabc",
    )
    ticks = 1_000_000_000.0
    assert heliosdb.DateFromTicks(ticks) == datetime.date.fromtimestamp(ticks)
    assert heliosdb.TimestampFromTicks(ticks) == datetime.datetime.fromtimestamp(ticks)
    assert heliosdb.TimeFromTicks(ticks) == datetime.datetime.fromtimestamp(ticks).time()


# --- connect / cursor / execute -------------------------------------------------------------


def test_connect_defaults(helios_data_dir: Path, dbname: str) -> None:
    c = heliosdb.connect(data_dir=helios_data_dir, database=dbname)
    try:
        assert c.autocommit is False
        assert c.closed is False
        assert c.branch == "main"
        cur = c.cursor()
        assert cur.connection is c
        assert cur.arraysize == 1
        assert cur.description is None
        assert cur.rowcount == -1
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == (dbname,)
    finally:
        c.close()
    assert c.closed is True


def test_pyformat_positional_parameters(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute(
        "SELECT %s::int, %s::text, %s::text IS NULL, %s::numeric, %s::date, %s::bool",
        (42, 'it\'s; a "test" %s', None, decimal.Decimal("1.50"), datetime.date(2024, 2, 29), True),
    )
    assert cur.fetchone() == (
        42,
        'it\'s; a "test" %s',
        True,
        decimal.Decimal("1.50"),
        datetime.date(2024, 2, 29),
        True,
    )


def test_pyformat_named_parameters(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT %(a)s::int + %(a)s::int, %(b)s::text", {"a": 20, "b": "x"})
    assert cur.fetchall() == [(40, "x")]


def test_percent_signs(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT '100%'")  # no parameters: taken literally
    assert cur.fetchone() == ("100%",)
    cur.execute("SELECT '100%%', %s", ("x",))  # with parameters: %% is a literal %
    assert cur.fetchone() == ("100%", "x")


def test_parameters_are_not_interpolated_as_sql(conn: heliosdb.Connection, name: Names) -> None:
    p = name("p")
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {p} (v text)")
    evil = f"x'); DROP TABLE {p}; --"
    cur.execute(f"INSERT INTO {p} VALUES (%s)", (evil,))
    cur.execute(f"SELECT v FROM {p}")
    assert cur.fetchall() == [(evil,)]


def test_connection_execute_shortcut(conn: heliosdb.Connection) -> None:
    cur = conn.execute("SELECT %s * 2", (21,))
    assert isinstance(cur, heliosdb.Cursor)
    assert cur.fetchone() == (42,)


SAMPLES = ["Carlton Cold", "Carlton Draft", "Mountain Goat", "Redback", "Victoria Bitter", "XXXX"]


def _fill(c: heliosdb.Connection, table: str) -> None:
    cur = c.cursor()
    cur.execute(f"CREATE TABLE {table} (name varchar(20))")
    cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(s,) for s in SAMPLES])


@pytest.fixture(scope="module")
def _booze_table(helios_data_dir: Path, dbname: str) -> Iterator[None]:
    """A read-only table `booze` with the six SAMPLES."""
    with heliosdb.connect(data_dir=helios_data_dir, database=dbname) as c:
        _fill(c, "booze")
    yield


@pytest.fixture
def booze(conn: heliosdb.Connection, _booze_table: None) -> heliosdb.Connection:
    return conn


def test_fetchone(booze: heliosdb.Connection) -> None:
    cur = booze.cursor()
    cur.execute("SELECT name FROM booze WHERE name = 'nothing'")
    assert cur.fetchone() is None
    cur.execute("SELECT name FROM booze ORDER BY name")
    assert cur.fetchone() == ("Carlton Cold",)
    assert cur.fetchone() == ("Carlton Draft",)
    assert len(cur.fetchall()) == 4
    assert cur.fetchone() is None


def test_fetchmany_and_arraysize(booze: heliosdb.Connection) -> None:
    cur = booze.cursor()
    cur.execute("SELECT name FROM booze ORDER BY name")
    assert cur.fetchmany() == [("Carlton Cold",)]  # arraysize defaults to 1
    assert [r[0] for r in cur.fetchmany(3)] == ["Carlton Draft", "Mountain Goat", "Redback"]
    assert len(cur.fetchmany(4)) == 2
    assert cur.fetchmany(4) == []
    cur.arraysize = 4
    cur.execute("SELECT name FROM booze")
    assert len(cur.fetchmany()) == 4
    assert len(cur.fetchmany()) == 2
    assert cur.fetchmany() == []


def test_fetchall_and_mixed_fetches(booze: heliosdb.Connection) -> None:
    cur = booze.cursor()
    cur.execute("SELECT name FROM booze ORDER BY name")
    first = cur.fetchone()
    two = cur.fetchmany(2)
    rest = cur.fetchall()
    assert first is not None and len(two) == 2 and len(rest) == 3
    assert cur.fetchall() == []
    cur.execute("SELECT name FROM booze ORDER BY name")
    assert [r[0] for r in cur] == [
        "Carlton Cold",
        "Carlton Draft",
        "Mountain Goat",
        "Redback",
        "Victoria Bitter",
        "XXXX",
    ]


def test_fetch_without_a_result_set_is_an_error(conn: heliosdb.Connection, name: Names) -> None:
    nr = name("nr")
    cur = conn.cursor()
    for fetch in (cur.fetchone, cur.fetchall, lambda: cur.fetchmany(2)):
        with pytest.raises(heliosdb.Error):
            fetch()
    cur.execute(f"CREATE TABLE {nr} (a int)")
    with pytest.raises(heliosdb.ProgrammingError):
        cur.fetchone()
    cur.execute(f"INSERT INTO {nr} VALUES (1)")
    with pytest.raises(heliosdb.ProgrammingError):
        cur.fetchall()


def test_description(conn: heliosdb.Connection, name: Names) -> None:
    d = name("d")
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {d} (name varchar(20), n int, x numeric(5,2))")
    assert cur.description is None
    cur.execute(f"SELECT name, n, x AS total FROM {d}")
    desc = cur.description
    assert desc is not None
    assert [col[0] for col in desc] == ["name", "n", "total"]
    assert all(len(col) == 7 for col in desc)
    # type_code identifies the type (PostgreSQL type OIDs): varchar, int4, numeric
    assert [col[1] for col in desc] == [1043, 23, 1700]
    cur.execute(f"INSERT INTO {d} VALUES ('a', 1, 2.5)")
    assert cur.description is None


def test_rowcount(conn: heliosdb.Connection, name: Names) -> None:
    b = name("b")
    _fill(conn, b)
    cur = conn.cursor()
    assert cur.rowcount == -1
    cur.execute(f"SELECT name FROM {b}")
    assert cur.rowcount == 6
    cur.execute(f"UPDATE {b} SET name = upper(name) WHERE name LIKE 'Carlton%%'")
    assert cur.rowcount == 2
    cur.execute(f"DELETE FROM {b} WHERE name = 'nothing'")
    assert cur.rowcount == 0
    cur.execute(f"INSERT INTO {b} SELECT name FROM {b}")
    assert cur.rowcount == 6
    assert cur.statusmessage == "INSERT 0 6"


def test_executemany(conn: heliosdb.Connection, name: Names) -> None:
    m = name("m")
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {m} (id int, name text)")
    cur.executemany(f"INSERT INTO {m} VALUES (%s, %s)", [(1, "Cooper's"), (2, "Boag's"), (3, None)])
    assert cur.rowcount == 3
    cur.executemany(
        f"INSERT INTO {m} VALUES (%(id)s, %(name)s)", [{"id": 4, "name": "x"}, {"id": 5, "name": "y"}]
    )
    assert cur.rowcount == 2
    cur.execute(f"SELECT id, name FROM {m} ORDER BY id")
    assert cur.fetchall() == [(1, "Cooper's"), (2, "Boag's"), (3, None), (4, "x"), (5, "y")]


def test_null_is_none(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT NULL, NULL::int, %s", (None,))
    assert cur.fetchone() == (None, None, None)


def test_setinputsizes_and_setoutputsize_are_accepted(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.setinputsizes((25,))
    cur.setoutputsize(1000)
    cur.setoutputsize(2000, 0)
    cur.execute("SELECT %s", ("still works",))
    assert cur.fetchone() == ("still works",)


def test_cursors_of_one_connection_share_its_transaction(connect: Connect, name: Names) -> None:
    iso = name("iso")
    setup = connect()
    setup.cursor().execute(f"CREATE TABLE {iso} (v text)")
    c = connect(autocommit=False)
    cur1, cur2 = c.cursor(), c.cursor()
    cur1.execute(f"INSERT INTO {iso} VALUES ('Victoria Bitter')")
    cur2.execute(f"SELECT v FROM {iso}")
    assert cur2.fetchall() == [("Victoria Bitter",)]
    c.rollback()


# --- transactions ------------------------------------------------------------------------


class Observed:
    """A committed table (id int primary key, v text) and an autocommit connection that watches it."""

    def __init__(self, observer: heliosdb.Connection, t: str) -> None:
        self.observer = observer
        self.t = t

    def count(self, c: heliosdb.Connection | None = None) -> int:
        return _count(c or self.observer, self.t)


@pytest.fixture
def table_t(connect: Connect, name: Names) -> Observed:
    observer = connect()
    t = name("t")
    observer.cursor().execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    return Observed(observer, t)


def _count(c: heliosdb.Connection, table: str) -> int:
    cur = c.cursor()
    cur.execute(f"SELECT count(*) FROM {table}")
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def test_uncommitted_rows_are_invisible_to_others_and_rollback_discards(
    connect: Connect, table_t: Observed
) -> None:
    t = table_t.t
    writer = connect(autocommit=False)
    cur = writer.cursor()
    cur.execute(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    assert table_t.count(writer) == 2  # the writer sees its own rows
    assert table_t.count() == 0  # nobody else does
    writer.rollback()
    assert table_t.count(writer) == 0
    assert table_t.count() == 0


def test_commit_makes_rows_visible(connect: Connect, table_t: Observed) -> None:
    t = table_t.t
    writer = connect(autocommit=False)
    writer.cursor().execute(f"INSERT INTO {t} VALUES (1, 'a')")
    assert table_t.count() == 0
    writer.commit()
    assert table_t.count() == 1
    # After commit a new transaction starts with the next statement; rolling it back keeps the commit.
    writer.cursor().execute(f"INSERT INTO {t} VALUES (2, 'b')")
    writer.rollback()
    assert table_t.count() == 1


def test_rollback_discards_ddl(connect: Connect, name: Names) -> None:
    gone = name("gone")
    c = connect(autocommit=False)
    cur = c.cursor()
    cur.execute(f"CREATE TABLE {gone} (a int)")
    cur.execute(f"INSERT INTO {gone} VALUES (1)")
    c.rollback()
    with pytest.raises(heliosdb.ProgrammingError) as info:
        cur.execute(f"SELECT * FROM {gone}")
    assert info.value.sqlstate == "42P01"
    c.rollback()


def test_commit_and_rollback_without_a_transaction(connect: Connect) -> None:
    c = connect(autocommit=False)
    c.commit()
    c.rollback()
    a = connect()
    a.commit()
    a.rollback()


def test_autocommit_statements_are_visible_at_once(connect: Connect, table_t: Observed) -> None:
    a = connect(autocommit=True)
    a.cursor().execute(f"INSERT INTO {table_t.t} VALUES (1, 'a')")
    assert table_t.count() == 1
    a.rollback()  # nothing to roll back
    assert table_t.count() == 1


def test_failed_statement_aborts_the_transaction_until_rollback(connect: Connect, table_t: Observed) -> None:
    t = table_t.t
    c = connect(autocommit=False)
    cur = c.cursor()
    cur.execute(f"INSERT INTO {t} VALUES (1, 'a')")
    with pytest.raises(heliosdb.IntegrityError):
        cur.execute(f"INSERT INTO {t} VALUES (1, 'again')")
    with pytest.raises(heliosdb.Error) as info:
        cur.execute("SELECT 1")
    assert info.value.sqlstate == "25P02"
    c.rollback()
    assert table_t.count(c) == 0


# --- context managers ---------------------------------------------------------------------


def test_connection_context_manager_commits_and_closes(
    helios_data_dir: Path, dbname: str, table_t: Observed
) -> None:
    with heliosdb.connect(data_dir=helios_data_dir, database=dbname) as c:
        c.cursor().execute(f"INSERT INTO {table_t.t} VALUES (1, 'a')")
        assert table_t.count() == 0
    assert c.closed
    assert table_t.count() == 1


def test_connection_context_manager_rolls_back_on_error(
    helios_data_dir: Path, dbname: str, table_t: Observed
) -> None:
    with pytest.raises(RuntimeError), heliosdb.connect(data_dir=helios_data_dir, database=dbname) as c:
        c.cursor().execute(f"INSERT INTO {table_t.t} VALUES (1, 'a')")
        raise RuntimeError("boom")
    assert c.closed
    assert table_t.count() == 0


def test_cursor_context_manager_closes_cursor(conn: heliosdb.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    assert cur.closed
    with pytest.raises(heliosdb.InterfaceError):
        cur.execute("SELECT 1")
    # The connection is still usable.
    assert conn.execute("SELECT 2").fetchone() == (2,)


# --- errors ------------------------------------------------------------------------------------


def test_unique_violation_is_integrity_error(conn: heliosdb.Connection, name: Names) -> None:
    u = name("u")
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {u} (id int PRIMARY KEY)")
    cur.execute(f"INSERT INTO {u} VALUES (1)")
    with pytest.raises(heliosdb.IntegrityError) as info:
        cur.execute(f"INSERT INTO {u} VALUES (%s)", (1,))
    exc = info.value
    assert isinstance(exc, heliosdb.DatabaseError)
    assert isinstance(exc, errors.UniqueViolation)
    assert exc.sqlstate == "23505"
    assert exc.detail == "Key (id)=(1) already exists."
    assert not isinstance(exc, psycopg.Error)


def test_undefined_table_is_programming_error(conn: heliosdb.Connection) -> None:
    with pytest.raises(heliosdb.ProgrammingError) as info:
        conn.cursor().execute("SELECT * FROM no_such_table")
    assert info.value.sqlstate == "42P01"
    assert info.value.message == 'relation "no_such_table" does not exist'
    assert info.value.position == 15


@pytest.mark.parametrize(
    ("sql", "cls", "code"),
    [
        ("SELECT 1/0", heliosdb.DataError, "22012"),
        ("SELECT 'x'::int", heliosdb.DataError, "22P02"),
        ("SELEC 1", heliosdb.ProgrammingError, "42601"),
        ("SELECT nope FROM (SELECT 1) s", heliosdb.ProgrammingError, "42703"),
        ("SELECT * FROM (VALUES (1)) v CROSS JOIN LATERAL (SELECT 1/0) z", heliosdb.DataError, "22012"),
        (
            "CREATE TEMP TABLE nn (a int NOT NULL); INSERT INTO nn VALUES (NULL)",
            heliosdb.IntegrityError,
            "23502",
        ),
    ],
)
def test_server_errors_map_to_pep249_classes(
    conn: heliosdb.Connection, sql: str, cls: type, code: str
) -> None:
    with pytest.raises(cls) as info:
        conn.cursor().execute(sql)
    assert info.value.sqlstate == code


def test_wrong_parameter_count_is_programming_error(conn: heliosdb.Connection) -> None:
    with pytest.raises(heliosdb.ProgrammingError):
        conn.cursor().execute("SELECT %s, %s", (1,))


def test_wrong_parameter_count_is_a_heliosdb_error(conn: heliosdb.Connection) -> None:
    with pytest.raises(heliosdb.Error):
        conn.cursor().execute("SELECT %s, %s", (1,))
    with pytest.raises(heliosdb.Error):
        conn.cursor().execute("SELECT %(a)s", {})


def test_unloadable_value_raises_heliosdb_error(conn: heliosdb.Connection) -> None:
    with pytest.raises(heliosdb.Error):
        conn.cursor().execute("SELECT 'infinity'::date")


def test_connect_to_missing_database_is_operational_error(helios_data_dir: Path) -> None:
    with pytest.raises(heliosdb.OperationalError):
        heliosdb.connect(data_dir=helios_data_dir, database="no_such_database_xyz")


def test_connect_to_missing_database_is_a_heliosdb_error(helios_data_dir: Path) -> None:
    with pytest.raises(heliosdb.Error) as info:
        heliosdb.connect(data_dir=helios_data_dir, database="no_such_database_xyz")
    assert 'database "no_such_database_xyz" does not exist' in info.value.message


def test_connect_to_missing_branch(helios_data_dir: Path, dbname: str) -> None:
    with pytest.raises(errors.UndefinedBranch) as info:
        heliosdb.connect(data_dir=helios_data_dir, database=dbname, branch="no_such_branch")
    assert info.value.sqlstate == "HD001"


# --- closed objects ------------------------------------------------------------------------


def test_closed_connection_raises_interface_error(helios_data_dir: Path, dbname: str) -> None:
    c = heliosdb.connect(data_dir=helios_data_dir, database=dbname)
    cur = c.cursor()
    c.close()
    with pytest.raises(heliosdb.InterfaceError):
        c.cursor()
    with pytest.raises(heliosdb.InterfaceError):
        cur.execute("SELECT 1")
    with pytest.raises(heliosdb.InterfaceError):
        c.execute("SELECT 1")
    with pytest.raises(heliosdb.InterfaceError):
        c.commit()
    with pytest.raises(heliosdb.InterfaceError):
        c.rollback()
    c.close()  # closing twice is harmless


def test_close_discards_uncommitted_work(helios_data_dir: Path, dbname: str, table_t: Observed) -> None:
    c = heliosdb.connect(data_dir=helios_data_dir, database=dbname)
    c.cursor().execute(f"INSERT INTO {table_t.t} VALUES (1, 'a')")
    c.close()  # PEP 249: closing without commit rolls back
    assert table_t.count() == 0


def test_closed_cursor_raises_interface_error(conn: heliosdb.Connection) -> None:
    cur = conn.cursor()
    cur.close()
    with pytest.raises(heliosdb.InterfaceError):
        cur.execute("SELECT 1")


# --- the dbapi20 compliance suite (optional dependency) -------------------------------------------

if dbapi20 is not None:

    class TestDBAPI20Compliance(dbapi20.DatabaseAPI20Test):  # type: ignore[misc]
        driver = heliosdb
        connect_args = ()
        connect_kw_args: dict[str, object] = {}
        lower_func = "lower"

        @pytest.fixture(autouse=True)
        def _database(self, helios_data_dir: Path, dbname: str) -> None:
            self.connect_kw_args = {"data_dir": helios_data_dir, "database": dbname}

        def test_nextset(self) -> None:
            pytest.skip("nextset is optional and not implemented")

        def test_setoutputsize(self) -> None:
            pytest.skip("setoutputsize is a no-op, as PEP 249 allows")

        def test_non_idempotent_close(self) -> None:
            pytest.skip("closing twice is harmless here, like psycopg (the suite itself says persons differ)")

else:

    @pytest.mark.skip(reason="dbapi20 (pip install dbapi-compliance) is not installed")
    def test_dbapi20_compliance_suite() -> None:
        pass


def test_users_prepared_statements_survive_internal_rollbacks(conn: heliosdb.Connection) -> None:
    """psycopg forgets its own server-side statements after a ROLLBACK (HeliosDB rolls back a failed
    internal step) or a DROP; the user's PREPAREd statements must not go with them."""
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
    cur.execute("INSERT INTO t VALUES (1)")
    cur.execute("PREPARE px AS SELECT 42")
    for _ in range(8):  # past psycopg's prepare threshold: it holds statements of its own now
        cur.execute("SELECT count(*) FROM t WHERE id = %s", (1,))
    for failing in ("SELECT * FROM t AS OF TIMESTAMP 'garbage'", "CREATE DATABASE BRANCH main"):
        with pytest.raises(errors.Error):
            cur.execute(failing)
        cur.execute("EXECUTE px")
        assert cur.fetchall() == [(42,)]
    cur.execute("CREATE TABLE d (x int)")
    cur.execute("DROP TABLE d")
    cur.execute("EXECUTE px")
    assert cur.fetchall() == [(42,)]
    cur.execute("SELECT count(*) FROM t WHERE id = %s", (1,))  # psycopg's own statements still work
    assert cur.fetchall() == [(1,)]


def test_a_statement_whose_result_type_ddl_elsewhere_changed_runs_again(connect: Connect, name: Names) -> None:
    """psycopg prepares a query it has run a few times. ALTER COLUMN ... TYPE on another connection
    changes its result type; PostgreSQL then refuses that prepared statement (0A000) every time, before
    it runs. Outside a transaction it is planned again at once; inside one the error fails the
    transaction, and the statement works after the rollback. The user's own PREPAREd one stays."""
    t = name("t")
    ddl, app = connect(), connect()
    ddl.cursor().execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int)")
    ddl.cursor().execute(f"INSERT INTO {t} VALUES (7, 1)")
    cur = app.cursor()
    cur.execute("PREPARE mine AS SELECT 42")
    query = f"SELECT v FROM {t} WHERE id = %s"
    for _ in range(8):  # past psycopg's prepare threshold
        cur.execute(query, (7,))
    ddl.cursor().execute(f"ALTER TABLE {t} ALTER COLUMN v TYPE bigint")
    for _ in range(3):
        assert cur.execute(query, (7,)).fetchall() == [(1,)]
    cur.execute("EXECUTE mine")
    assert cur.fetchall() == [(42,)]

    app.autocommit = False
    for _ in range(8):
        cur.execute(query, (7,))
    app.commit()
    ddl.cursor().execute(f"ALTER TABLE {t} ALTER COLUMN v TYPE int")
    with pytest.raises(errors.Error) as err:
        cur.execute(query, (7,))
    assert err.value.sqlstate == "0A000"
    app.rollback()
    assert cur.execute(query, (7,)).fetchall() == [(1,)]


# --- COPY ----------------------------------------------------------------------------
def test_copy_through_execute_is_refused_and_the_connection_stays_usable(conn: heliosdb.Connection,
                                                                        name: Names) -> None:
    t = name("c")
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    for stmt in (f"COPY {t} TO STDOUT", f"COPY {t} FROM STDIN", "SELECT 1; COPY (SELECT 1) TO STDOUT"):
        with pytest.raises(errors.ProgrammingError) as info:
            cur.execute(stmt)
        assert info.value.sqlstate == "0A000" and "cursor.copy()" in str(info.value)
    assert cur.execute("SELECT 2").fetchall() == [(2,)]
    with pytest.raises(errors.ProgrammingError):
        with cur.copy(f"SELECT * FROM {t}"):
            pass


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_cursor_copy_in_and_out_on_a_branch(connect: Connect, name: Names, branch: str) -> None:
    t = name("c")
    main = connect()
    main.cursor().execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    main.cursor().execute(f"INSERT INTO {t} VALUES (1, 'one')")
    if branch == "dev":
        main.cursor().execute(f"CREATE DATABASE BRANCH {t}_dev")
        branch = f"{t}_dev"
    conn = connect(branch)
    cur = conn.cursor()
    with cur.copy(f"COPY {t} (id, v) FROM STDIN") as copy:
        copy.write_row((2, "two"))
        copy.write(b"3\tthree\n")
    assert (cur.statusmessage, cur.rowcount) == ("COPY 2", 2)
    with cur.copy(f"COPY (SELECT id, v FROM {t} ORDER BY id) TO STDOUT") as copy:
        copy.set_types(["int4", "text"])
        assert list(copy.rows()) == [(1, "one"), (2, "two"), (3, "three")]
    assert cur.rowcount == 3
    if branch != "main":  # the rows went to the branch only
        assert main.cursor().execute(f"SELECT count(*) FROM {t}").fetchall() == [(1,)]
    conn.autocommit = False
    with cur.copy(f"COPY {t} (id, v) FROM STDIN") as copy:
        copy.write_row((4, "four"))
    conn.rollback()
    with pytest.raises(errors.IntegrityError):
        with cur.copy(f"COPY {t} (id, v) FROM STDIN") as copy:
            copy.write_row((2, "again"))
    conn.rollback()
    assert cur.execute(f"SELECT id FROM {t} ORDER BY id").fetchall() == [(1,), (2,), (3,)]
