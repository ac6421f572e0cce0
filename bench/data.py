"""The benchmark data sets, loaded identically into HeliosDB and into plain PostgreSQL.

HeliosDB side: a database reached through `heliosdb.connect`, the SQL runs
through HeliosDB (so the engine creates its own physical layout).
Peer side: a plain PostgreSQL database with the same table and rows, loaded
with the very same SQL through psycopg.
"""

from __future__ import annotations

import time
from typing import Any

from common import Env, execute

T_DDL = "CREATE TABLE t (id integer PRIMARY KEY, grp integer NOT NULL, v bigint NOT NULL, pad text NOT NULL)"
# Values are spread (v is a hash-like function of id) so aggregates are not trivially ordered.
T_LOAD = "INSERT INTO t SELECT g, g % 100, (g::bigint * 7919) % 1000003, md5(g::text) FROM generate_series({lo}, {hi}) g"
# 1% of the rows, spread evenly over the whole table.
T_CHANGE_1PCT = "UPDATE t SET v = v + 1 WHERE id % 100 = 0"

TPCB_DDL = [
    "CREATE TABLE pgbench_branches (bid integer NOT NULL PRIMARY KEY, bbalance integer, filler char(88))",
    "CREATE TABLE pgbench_tellers (tid integer NOT NULL PRIMARY KEY, bid integer, tbalance integer, filler char(84))",
    "CREATE TABLE pgbench_accounts (aid integer NOT NULL PRIMARY KEY, bid integer, abalance integer, filler char(84))",
    "CREATE TABLE pgbench_history (tid integer, bid integer, aid integer, delta integer, mtime timestamp, "
    "filler char(22))",
]
TPCB_ACCOUNTS_PER_BRANCH = 100_000
TPCB_TELLERS_PER_BRANCH = 10


def tpcb_load(scale: int) -> list[str]:
    return [
        f"INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, {scale}) b",
        f"INSERT INTO pgbench_tellers SELECT t, (t - 1) / {TPCB_TELLERS_PER_BRANCH} + 1, 0, '' "
        f"FROM generate_series(1, {TPCB_TELLERS_PER_BRANCH * scale}) t",
        f"INSERT INTO pgbench_accounts SELECT a, (a - 1) / {TPCB_ACCOUNTS_PER_BRANCH} + 1, 0, '' "
        f"FROM generate_series(1, {TPCB_ACCOUNTS_PER_BRANCH * scale}) a",
    ]


def load_t(conn: Any, rows: int, chunk: int = 250_000) -> None:
    execute(conn, T_DDL)
    for lo in range(1, rows + 1, chunk):
        execute(conn, T_LOAD.format(lo=lo, hi=min(rows, lo + chunk - 1)))


def create_helios_db(env: Env, name: str) -> None:
    """A fresh HeliosDB database: an empty PostgreSQL database HeliosDB bootstraps on first connect."""
    env.create_database(name)
    conn = env.helios(name)
    env.close(conn)


def setup_t(env: Env, helios_db: str, plain_db: str, rows: int) -> None:
    """Table t with `rows` rows in a HeliosDB database (main) and in a plain database."""
    env.log(f"loading {rows:,} rows into HeliosDB database {helios_db}")
    create_helios_db(env, helios_db)
    conn = env.helios(helios_db)
    load_t(conn, rows)
    env.close(conn)
    env.log(f"loading {rows:,} rows into plain database {plain_db}")
    env.create_database(plain_db)
    conn = env.pg(plain_db)
    load_t(conn, rows)
    env.close(conn)
    env.vacuum_analyze(helios_db)
    env.vacuum_analyze(plain_db)


def helios_t(env: Env, name: str, rows: int) -> float | None:
    """A HeliosDB database `name` with table t of `rows` rows, vacuumed and analyzed.

    The first call for a row count loads a template database; later calls copy
    it with CREATE DATABASE ... TEMPLATE (a HeliosDB database is a plain
    PostgreSQL database, catalog included), which takes seconds instead of a
    minute per 1,000,000 rows. Returns the load time when it loaded the template
    (with --data-dir, templates left by an earlier run are reused).
    """
    tpl = f"helios_t_{rows}_tpl"
    exists = env.admin().execute("SELECT 1 FROM pg_database WHERE datname = %s", (tpl,)).fetchone()
    loaded = None
    if not exists:
        env.log(f"loading {rows:,} rows into HeliosDB template database {tpl}")
        t0 = time.perf_counter()
        partial = tpl + "_loading"  # renamed when complete: an interrupted load is never reused
        create_helios_db(env, partial)
        conn = env.helios(partial)
        load_t(conn, rows)
        env.close(conn)
        env.vacuum_analyze(partial)
        env.admin().execute(f'ALTER DATABASE "{partial}" RENAME TO "{tpl}"')
        loaded = time.perf_counter() - t0
        env.log(f"  loaded in {loaded:.1f} s")
    env.create_database(name, template=tpl)
    return loaded


def setup_tpcb(env: Env, helios_db: str, plain_db: str, scale: int) -> None:
    env.log(f"loading TPC-B scale {scale} into {helios_db} (HeliosDB) and {plain_db} (plain)")
    create_helios_db(env, helios_db)
    env.create_database(plain_db)
    for conn in (env.helios(helios_db), env.pg(plain_db)):
        for stmt in TPCB_DDL + tpcb_load(scale):
            execute(conn, stmt)
        env.close(conn)
    env.vacuum_analyze(helios_db)
    env.vacuum_analyze(plain_db)
