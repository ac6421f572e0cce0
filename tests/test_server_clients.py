"""`heliosdb serve` with real clients: psql, psycopg 3, SQLAlchemy 2, pgbench."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests import test_server_support as support
from tests.test_server_support import ServerProcess

server = support.server

PSQL = shutil.which("psql") or "/usr/bin/psql"
PGBENCH = next((p for p in ("/usr/lib/postgresql/15/bin/pgbench", shutil.which("pgbench")) if p and Path(p).exists()),
               None)


def psql(server: ServerProcess, dbname: str, *args: str, branch: str | None = None) -> str:
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(server.port), PGUSER="postgres", PGDATABASE=dbname,
               PSQLRC="/dev/null")
    if branch:
        env["PGOPTIONS"] = f"-c heliosdb.branch={branch}"
    out = subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", *args], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "could not interpret" not in out.stderr, out.stderr
    return out.stdout


# -- psql --------------------------------------------------------------------------------------------------------
def test_psql_heliosdb_statements_and_describe_on_a_branch(server: ServerProcess, dbname: str) -> None:
    out = psql(server, dbname, "-c", "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int)",
               "-c", "INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 50)",
               "-c", "CREATE DATABASE BRANCH dev",
               "-c", "SHOW BRANCHES")
    assert "CREATE DATABASE BRANCH" in out and re.search(r"^ dev\s+\| main", out, re.M)
    out = psql(server, dbname, "-c", "ALTER TABLE accounts ADD COLUMN note text",
               "-c", "UPDATE accounts SET balance = balance + 10",
               "-c", "SELECT heliosdb.current_branch(), sum(balance) FROM accounts", branch="dev")
    assert "UPDATE 2" in out and re.search(r"dev\s+\|\s+170", out)
    assert "150" in psql(server, dbname, "-At", "-c", "SELECT sum(balance) FROM accounts")
    # a merge preview is a result set: libpq reads its tag (a "MERGE ..." tag needs a count)
    out = psql(server, dbname, "-c", "MERGE DATABASE BRANCH dev INTO main DRY RUN")
    assert re.search(r"\(\d+ rows?\)", out), out
    # \d lists the branch's tables and its columns
    out = psql(server, dbname, "-c", r"\d", branch="dev")
    assert re.search(r"br_dev\s+\|\s+accounts", out)
    out = psql(server, dbname, "-c", r"\d accounts", branch="dev")
    assert all(c in out for c in ("id", "owner", "balance", "note"))
    assert "note" not in psql(server, dbname, "-c", r"\d accounts")
    out = psql(server, dbname, "-c", r"\dt", branch="dev")
    assert re.search(r"\|\s+accounts\s+\|\s+table", out)  # a table to clients, though stored as a view
    assert "accounts" not in psql(server, dbname, "-c", r"\dv", branch="dev")
    # over the Unix socket too (-k)
    assert server.socket_dir is not None
    env = dict(os.environ, PSQLRC="/dev/null")
    out = subprocess.run([PSQL, "-X", "-At", "-h", server.socket_dir, "-p", str(server.port), "-U", "postgres",
                          "-d", dbname, "-c", "SELECT count(*) FROM accounts"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "2", out.stderr
    # psql sends a multi-statement -c as one Query
    out = psql(server, dbname, "-c", "BEGIN; INSERT INTO accounts VALUES (3, 'cy', 1); COMMIT",
               "-c", "SELECT count(*) FROM accounts")
    assert "COMMIT" in out and " 3\n" in out


def test_psql_dt_on_a_branch(server: ServerProcess, dbname: str) -> None:
    psql(server, dbname, "-c", "CREATE TABLE t (id int)", "-c", "CREATE DATABASE BRANCH dev",
         "-c", "CREATE VIEW plain AS SELECT id FROM t",
         "-c", "CREATE MATERIALIZED VIEW m AS SELECT count(*) FROM t")
    psql(server, dbname, "-c", "CREATE TABLE only_dev (x text)", branch="dev")
    out = psql(server, dbname, "-c", r"\dt", branch="dev")
    assert re.search(r"br_dev\s+\|\s+t\s+\|\s+table", out) and re.search(r"\|\s+only_dev\s+\|\s+table", out)
    assert "plain" not in out and "hdb_" not in out
    main = psql(server, dbname, "-c", r"\dt")
    assert re.search(r"\|\s+t\s+\|\s+table", main) and "only_dev" not in main
    assert re.search(r"\|\s+plain\s+\|\s+view", psql(server, dbname, "-c", r"\dv"))
    assert re.search(r"\|\s+m\s+\|\s+materialized view", psql(server, dbname, "-c", r"\dm"))
    described = psql(server, dbname, "-c", r"\d only_dev", branch="dev")
    assert 'Table "br_dev.only_dev"' in described and "x" in described


def test_psql_copy_and_errors(server: ServerProcess, dbname: str, tmp_path: Path) -> None:
    psql(server, dbname, "-c", "CREATE TABLE c (id int PRIMARY KEY, v text)")
    data = tmp_path / "rows.tsv"
    data.write_text("".join(f"{i}\tv{i}\n" for i in range(1, 101)))
    out = psql(server, dbname, "-c", rf"\copy c FROM '{data}'", "-c", "SELECT count(*), max(v) FROM c")
    assert "COPY 100" in out and "100 | v99" in out
    out = psql(server, dbname, "-c", r"\copy (SELECT * FROM c WHERE id <= 3 ORDER BY id) TO STDOUT")
    assert out.splitlines() == ["1\tv1", "2\tv2", "3\tv3"]
    env = dict(os.environ, PSQLRC="/dev/null")
    bad = subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", dbname,
                          "-v", "VERBOSITY=verbose", "-c", "INSERT INTO c VALUES (1, 'dup')"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "23505" in bad.stderr and "Key (id)=(1) already exists" in bad.stderr


# -- psycopg 3 ---------------------------------------------------------------------------------------------------
def test_psycopg_parameters_results_and_errors(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE, price numeric, tags text[])")
        assert conn.execute("SELECT %s::int + 1, %s, %s", (41, "text", None)).fetchone() == (42, "text", None)
        assert conn.execute("SELECT %b::int + 1, %b, %b", (41, "bin", b"\x00\xff")).fetchone() == (42, "bin",
                                                                                                  b"\x00\xff")
        conn.execute("INSERT INTO items (name, price, tags) VALUES (%s, %s, %s), (%b, %b, %b)",
                     ("a", Decimal("1.50"), ["x", "y"], "b", Decimal("2"), ["z"]))
        rows = conn.execute("SELECT name, price, tags FROM items ORDER BY id").fetchall()
        assert rows == [("a", Decimal("1.50"), ["x", "y"]), ("b", Decimal("2"), ["z"])]
        cur = conn.cursor(binary=True)
        row = cur.execute("SELECT 1::int2, 2::int8, 1.5::float8, true, 'x'::text, '2020-01-02'::date, "
                          "'{1,2}'::int[], '{\"a\": 1}'::jsonb, NULL::int, price FROM items WHERE name = %s",
                          ("a",)).fetchone()
        assert row is not None and row[:7] == (1, 2, 1.5, True, "x", __import__("datetime").date(2020, 1, 2), [1, 2])
        assert row[7:] == ({"a": 1}, None, Decimal("1.50"))
        for i in range(8):  # psycopg prepares the statement after a few executions
            assert conn.execute("SELECT %s::int * 2", (i,)).fetchone() == (i * 2,)
        with pytest.raises(psycopg.errors.UniqueViolation) as exc:
            conn.execute("INSERT INTO items (name) VALUES (%s)", ("a",))
        assert exc.value.sqlstate == "23505" and "already exists" in (exc.value.diag.message_detail or "")
        with pytest.raises(psycopg.errors.UndefinedTable) as exc2:
            conn.execute("SELECT * FROM nope")
        assert exc2.value.diag.statement_position == "15"
        with pytest.raises(psycopg.Error) as exc3:
            conn.execute("USE BRANCH nope")
        assert exc3.value.sqlstate == "HD001"


def test_psycopg_transactions_cursors_copy_and_branches(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.commit()
        conn.execute("INSERT INTO t VALUES (1, 'one')")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1, 'one')")
        with conn.cursor() as cur:
            with cur.copy("COPY t (id, v) FROM STDIN") as cp:
                for i in range(2, 1002):
                    cp.write_row((i, f"v{i}"))
            assert cur.rowcount == 1000
            with cur.copy("COPY (SELECT id, v FROM t ORDER BY id) TO STDOUT") as cp:
                assert sum(1 for _ in cp.rows()) == 1001
            assert cur.rowcount == 1001  # from the command tag, COPY 1001
        conn.commit()
        with conn.cursor(name="big") as sc:  # a server-side cursor (DECLARE / FETCH)
            sc.itersize = 100
            sc.execute("SELECT id FROM t ORDER BY id")
            assert sc.fetchmany(5) == [(1,), (2,), (3,), (4,), (5,)]
            assert len(sc.fetchall()) == 996
        conn.commit()
        cur = conn.cursor()
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, "many") for i in range(2000, 2050)])
        conn.commit()
        conn.autocommit = True
        conn.execute("CREATE DATABASE BRANCH feature")
        conn.execute("USE BRANCH feature")
        assert conn.info.parameter_status("heliosdb.branch") == "feature"
        conn.execute("DELETE FROM t WHERE v = %s", ("many",))
        lsn = conn.execute("SELECT heliosdb.current_lsn()").fetchone()
        assert lsn is not None
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1001,)
        conn.execute("USE BRANCH main")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1051,)
        rows = conn.execute("SELECT count(*) FROM t AS OF BRANCH feature").fetchone()
        assert rows == (1001,)
        names = [r[0] for r in conn.execute("SHOW BRANCHES").fetchall()]
        assert names == ["main", "feature"]
    with server.connect(dbname, options="-c heliosdb.branch=feature") as conn:
        assert conn.execute("SELECT heliosdb.current_branch()").fetchone() == ("feature",)


# -- SQLAlchemy 2 -------------------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    qty: Mapped[int | None]


def test_sqlalchemy_reflection_and_orm_on_a_branch(server: ServerProcess, dbname: str) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{dbname}"
    main = sa.create_engine(url)
    with main.begin() as c:
        c.exec_driver_sql("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int)")
        c.exec_driver_sql("INSERT INTO items (name, qty) VALUES ('a', 1)")
        c.exec_driver_sql("CREATE DATABASE BRANCH orm")
    dev = sa.create_engine(url, connect_args={"options": "-c heliosdb.branch=orm"})
    table = sa.Table("items", sa.MetaData(), autoload_with=dev)
    assert [c.name for c in table.columns] == ["id", "name", "qty"]
    # tables are tables to reflection (SQLAlchemy writes pg_catalog.pg_class.relkind) and information_schema
    for engine in (main, dev):
        assert sa.inspect(engine).get_table_names() == ["items"] and sa.inspect(engine).get_view_names() == []
        meta = sa.MetaData()
        meta.reflect(engine)
        assert sorted(meta.tables) == ["items"]
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT table_type FROM information_schema.tables WHERE table_name = 'items' "
                                     "AND table_schema = current_schema()")).fetchall() == [("BASE TABLE",)]
            assert c.execute(sa.text("SELECT count(*) FROM information_schema.tables "
                                     "WHERE table_schema LIKE 'hdb%'")).scalar() == 0
            res = c.execute(sa.text("SELECT c.relkind FROM pg_class c WHERE c.relname = 'items' "
                                    "AND c.relnamespace = to_regnamespace(current_schema())"))
            assert list(res.keys()) == ["relkind"] and res.fetchall() == [("r",)]

    with Session(dev) as s:
        s.add_all([Item(name="b", qty=2), Item(name="c", qty=3)])
        s.commit()
        item = s.scalars(sa.select(Item).where(Item.name == "a")).one()
        item.qty = 42
        s.commit()
        assert [(i.name, i.qty) for i in s.scalars(sa.select(Item).order_by(Item.name))] == [
            ("a", 42), ("b", 2), ("c", 3)]
    with main.connect() as c:
        assert c.execute(sa.text("SELECT name, qty FROM items")).fetchall() == [("a", 1)]
    main.dispose()
    dev.dispose()


# -- pgbench ---------------------------------------------------------------------------------------------------------
def pgbench(server: ServerProcess, dbname: str, *args: str, branch: str | None = None) -> str:
    assert PGBENCH is not None
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(server.port), PGUSER="postgres")
    if branch:
        env["PGOPTIONS"] = f"-c heliosdb.branch={branch}"
    out = subprocess.run([PGBENCH, *args, dbname], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


@pytest.mark.skipif(PGBENCH is None, reason="pgbench is not installed")
def test_pgbench_on_main_and_on_a_branch(server: ServerProcess, dbname: str) -> None:
    # server-side data generation: the default client-side COPY ... FREEZE hits an engine issue (see below)
    out = pgbench(server, dbname, "-i", "-I", "dtGvp", "-s", "1")
    assert "done in" in out and "error" not in out.lower()
    for mode in ("simple", "extended", "prepared"):
        out = pgbench(server, dbname, "-c", "4", "-j", "2", "-t", "25", "-M", mode)
        assert "number of failed transactions: 0" in out and "number of transactions actually processed: 100/100" in out
    out = pgbench(server, dbname, "-S", "-c", "4", "-j", "2", "-t", "100")
    assert "number of transactions actually processed: 400/400" in out
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute("CREATE DATABASE BRANCH bench")
    out = pgbench(server, dbname, "-c", "4", "-j", "2", "-t", "15", branch="bench")
    assert "number of failed transactions: 0" in out and "processed: 60/60" in out
    with server.connect(dbname, autocommit=True) as conn:
        # each run starts by truncating pgbench_history: main's last run was select-only
        assert conn.execute("SELECT count(*) FROM pgbench_history").fetchone() == (0,)
        conn.execute("USE BRANCH bench")
        assert conn.execute("SELECT count(*) FROM pgbench_history").fetchone() == (60,)


@pytest.mark.skipif(PGBENCH is None, reason="pgbench is not installed")
def test_pgbench_default_initialization(server: ServerProcess, dbname: str) -> None:
    out = pgbench(server, dbname, "-i", "-s", "1")
    assert "done in" in out and "WARNING" not in out


def test_drop_database_and_copies_after_its_sessions_ended(server: ServerProcess, dbname: str) -> None:
    """Once a database's sessions ended, only the endpoint's view scheduler is connected to it: it lets go
    for CREATE DATABASE ... TEMPLATE (Django's parallel test databases) and DROP DATABASE."""
    tenant = f"{dbname}_tenant"
    with server.connect(dbname) as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE {tenant}")
    with server.connect(tenant) as conn:  # its first session starts the endpoint's view scheduler there
        conn.autocommit = True
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
    with server.connect(dbname) as conn:
        conn.autocommit = True
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (tenant,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the scheduler never connected"
            time.sleep(0.1)
        conn.execute(f"CREATE DATABASE {tenant}_copy WITH TEMPLATE = {tenant}")
    with server.connect(f"{tenant}_copy") as conn:
        assert conn.execute("SELECT * FROM t").fetchall() == [(1,)]
    with server.connect(dbname) as conn:
        conn.autocommit = True
        for name in (tenant, f"{tenant}_copy"):
            conn.execute(f"DROP DATABASE {name}")
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_error_fields_name_the_users_objects(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname) as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, n int CHECK (n > 0))")
        conn.execute("INSERT INTO t VALUES (1, 'a', 1)")
        conn.execute("CREATE DATABASE BRANCH dev")
    for branch in ("main", "dev"):
        with server.connect(dbname, options=f"-c heliosdb.branch={branch}") as conn:
            conn.autocommit = True
            with pytest.raises(psycopg.errors.UniqueViolation) as e:
                conn.execute("INSERT INTO t VALUES (1, 'b', 1)")
            d = e.value.diag
            assert (d.constraint_name, d.table_name) == ("t_pkey", "t"), branch
            assert not (d.schema_name or "").startswith("hdb_"), branch  # not HeliosDB's storage schema
            with pytest.raises(psycopg.errors.NotNullViolation) as e:
                conn.execute("INSERT INTO t VALUES (2, NULL, 1)")
            assert (e.value.diag.column_name, e.value.diag.table_name) == ("v", "t"), branch
            with pytest.raises(psycopg.errors.CheckViolation) as e:
                conn.execute("INSERT INTO t VALUES (3, 'c', -1)")
            assert e.value.diag.constraint_name == "t_n_check", branch
            with pytest.raises(psycopg.errors.InvalidTextRepresentation) as e:
                with conn.cursor().copy("COPY t FROM STDIN") as cp:
                    cp.write("5\tb\tnotint\n")
            if branch == "main":  # which line of the input is bad, as PostgreSQL says it
                assert "line 1" in (e.value.diag.context or ""), e.value.diag.context


def test_clients_named_statements_survive_internal_rollbacks(server: ServerProcess, dbname: str) -> None:
    """A driver that prepares every query (asyncpg, JDBC, pgx) keeps its statements when a HeliosDB
    statement fails inside the endpoint (the storage connection's psycopg rolls back)."""
    with server.connect(dbname) as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        conn.execute("PREPARE px AS SELECT 42")
        for _ in range(3):
            assert conn.execute("SELECT v FROM t WHERE id = %s", (1,), prepare=True).fetchall() == [("a",)]
        for failing in ("SELECT * FROM t AS OF TIMESTAMP 'garbage'", "CREATE DATABASE BRANCH main",
                        "SELECT * FROM t AS OF LSN 999/0"):
            for _ in range(8):  # the endpoint's session has its own psycopg statements by now
                conn.execute("SELECT count(*) FROM t AS OF NOW")
            with pytest.raises(psycopg.Error):
                conn.execute(failing)
            assert conn.execute("SELECT v FROM t WHERE id = %s", (1,), prepare=True).fetchall() == [("a",)]
            assert conn.execute("EXECUTE px").fetchall() == [(42,)]


def test_bound_parameters_as_time_travel_points(server: ServerProcess, dbname: str) -> None:
    """psycopg binds an int as a typed parameter; as the SCN, LSN or transaction of a clause it is the point."""
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        scn, lsn, txid = conn.execute("SELECT scn, lsn::text, txid::text FROM heliosdb.commits "
                                      "ORDER BY scn DESC LIMIT 1").fetchone()
        conn.execute("UPDATE t SET v = 'b'")
        lsn_int = conn.execute("SELECT (%s::pg_lsn - '0/0')::bigint", (lsn,)).fetchone()[0]
        for sql, params in [("SELECT v FROM t AS OF SCN %s", (scn,)), ("SELECT v FROM t AS OF LSN %s", (lsn_int,)),
                            ("SELECT v FROM t AS OF TRANSACTION %s", (int(txid),)),
                            ("SELECT v FROM t VERSIONS BETWEEN SCN %s AND %s WHERE versions_endscn IS NOT NULL",
                             (scn, scn + 1))]:
            assert conn.execute(sql, params).fetchall() == [("a",)], sql


def test_a_branch_no_session_used_is_reachable_by_its_schema_through_the_endpoint(server: ServerProcess,
                                                                                  dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        conn.execute("CREATE DATABASE BRANCH fresh")
        assert conn.execute("SELECT count(*) FROM br_fresh.t").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM br_fresh.t WHERE id = %s", (1,)).fetchone() == (1,)


def test_group_by_a_primary_key_through_the_endpoint(server: ServerProcess, dbname: str) -> None:
    """Django's annotate() query (GROUP BY the key, other columns selected) through every way a client
    sends it: the simple protocol (repeated, so the endpoint's prepared fast path is tried) and bound
    parameters."""
    with server.connect(dbname) as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, name text)")
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, a_id int)")
        conn.execute("INSERT INTO a VALUES (1, 'x'), (2, 'y')")
        conn.execute("INSERT INTO b VALUES (1, 1), (2, 1), (3, 2)")
        conn.execute("CREATE DATABASE BRANCH dev")
    q = ('SELECT "a"."id", "a"."name", COUNT("b"."id") AS "n" FROM "a" LEFT OUTER JOIN "b" '
         'ON ("a"."id" = "b"."a_id") WHERE "a"."id" > {} GROUP BY "a"."id" ORDER BY "a"."id"')
    for branch in ("main", "dev"):
        with server.connect(dbname, options=f"-c heliosdb.branch={branch}") as conn:
            conn.autocommit = True
            for i in range(4):
                assert conn.execute(q.format(0)).fetchall() == [(1, "x", 2), (2, "y", 1)], (branch, i)
                assert conn.execute(q.format("%s"), (1,)).fetchall() == [(2, "y", 1)]
                assert conn.execute(q.format("%s"), (0,), prepare=True).fetchall() == [(1, "x", 2), (2, "y", 1)]
            with conn.transaction():
                assert conn.execute(q.format(1)).fetchall() == [(2, "y", 1)]


def test_django_sequence_reset_through_the_endpoint(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname) as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE s (id serial PRIMARY KEY, v text)")
        conn.execute("INSERT INTO s (id, v) VALUES (1, 'a'), (4, 'b')")
        reset = """SELECT setval(pg_get_serial_sequence('"s"','id'), coalesce(max("id"), 1), max("id") IS NOT null) FROM "s";"""
        assert conn.execute(reset).fetchall() == [(4,)]
        assert conn.execute("INSERT INTO s (v) VALUES ('c') RETURNING id").fetchall() == [(5,)]
        # bound parameters, as SQLAlchemy sends them
        got = conn.execute("SELECT pg_get_serial_sequence(%s, %s) IS NOT NULL", ("s", "id")).fetchall()
        assert got == [(True,)]


def test_branch_chosen_at_startup_whatever_the_case_and_set_config_refused(server: ServerProcess,
                                                                           dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t VALUES (1, 'main')")
        c.execute("CREATE DATABASE BRANCH dev")
        c.execute("USE BRANCH dev")
        c.execute("UPDATE t SET v = 'dev'")
    # setting names are case-insensitive; a startup search_path is ignored (the branch owns it)
    for opts in ("-c HELIOSDB.BRANCH=dev", "-c heliosdb.Branch=dev", "-c heliosdb.branch=dev -c search_path=public"):
        with server.connect(dbname, autocommit=True, options=opts) as c:
            assert c.info.parameter_status("heliosdb.branch") == "dev", opts
            assert c.execute("SELECT heliosdb.current_branch(), v FROM t").fetchone() == ("dev", "dev"), opts
            assert c.execute("UPDATE t SET v = v WHERE id = 1").rowcount == 1
    # set_config() of heliosdb.branch is refused as SET is
    with server.connect(dbname, autocommit=True) as c:
        for stmt in ("SELECT set_config('heliosdb.branch', 'dev', false)",
                     "SELECT 1 FROM t WHERE set_config('HELIOSDB.branch', 'dev', false) IS NOT NULL",
                     "SET heliosdb.branch = dev"):
            with pytest.raises(psycopg.errors.CantChangeRuntimeParam):
                c.execute(stmt)
        assert c.execute("SELECT heliosdb.current_branch(), v FROM t").fetchone() == ("main", "main")
        assert c.execute("SELECT set_config('application_name', 'x', false)").fetchone() == ("x",)


def test_describe_of_heliosdb_statements_names_their_columns(server: ServerProcess, dbname: str) -> None:
    """libpq's PQdescribePrepared (asyncpg describes every statement before running it) of HeliosDB statements
    that return rows: the columns Execute then sends."""
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY)")
        c.execute("CREATE DATABASE BRANCH dev")
        c.execute("USE BRANCH dev")
        c.execute("INSERT INTO t VALUES (1)")
        c.execute("USE BRANCH main")
        pg = c.pgconn
        for i, sql in enumerate(("SHOW BRANCHES", "SHOW AS OF", "MERGE DATABASE BRANCH dev INTO main DRY RUN",
                                 "MERGE DATABASE BRANCH dev INTO main USING STRATEGY OURS",
                                 "MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")):  # no conflict
            name = f"s{i}".encode()
            assert pg.prepare(name, sql.encode()).status == psycopg.pq.ExecStatus.COMMAND_OK, sql
            described = pg.describe_prepared(name)
            res = pg.exec_prepared(name, [])
            assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.get_error_message()
            assert described.nfields == res.nfields > 0, sql
            assert [(described.fname(f), described.ftype(f)) for f in range(res.nfields)] \
                == [(res.fname(f), res.ftype(f)) for f in range(res.nfields)], sql
        assert c.execute("SELECT count(*) FROM t").fetchone() == (1,)
        res = pg.prepare(b"bad", b"MERGE DATABASE BRANCH dev INTO main STRATEGY OURS")  # its syntax error at Parse
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42601"


def test_constraint_errors_name_the_tables_schema(server: ServerProcess, dbname: str) -> None:
    """As PostgreSQL: schema_name with table_name ('public' on main, the branch's schema on a branch),
    relayed or through the session."""
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, n text NOT NULL)")
        c.execute("INSERT INTO t VALUES (1, 'a')")
        c.execute("CREATE DATABASE BRANCH dev")
    for branch, schema in (("main", "public"), ("dev", "br_dev")):
        with server.connect(dbname, autocommit=True, options=f"-c heliosdb.branch={branch}") as c:
            for sql, params in (("INSERT INTO t VALUES (1, 'b')", None), ("INSERT INTO t VALUES (%s, NULL)", (2,))):
                with pytest.raises(psycopg.IntegrityError) as exc:
                    c.execute(sql, params)
                d = exc.value.diag
                assert (d.schema_name, d.table_name) == (schema, "t"), (branch, sql)
