"""Materialized views (issue 5): incremental refresh equals the query, immediate maintenance, statements
and errors, branches and merges. The scheduler has its own file (test_mviews_scheduler.py).

Everything runs against the session's managed PostgreSQL, a fresh database per test; the assertions are
about what a user sees: query results, SQLSTATEs, heliosdb.mv_staleness.
"""

from __future__ import annotations

import os
import random
import time
from decimal import Decimal

import pytest

import heliosdb
from tests.test_branches import rows, run, sqlstate

# -- helpers ------------------------------------------------------------------------------------------


def _key(row: tuple) -> tuple:
    return tuple((v is None, v if v is not None else 0) for v in row)


def multiset(conn: heliosdb.Connection, sql: str) -> list[tuple]:
    """The rows of a query, sorted (NULLs last per column): a multiset to compare."""
    return sorted(rows(conn, sql), key=_key)


def assert_view_equals_query(conn: heliosdb.Connection, view: str, query: str, note: str = "") -> None:
    got = multiset(conn, f"SELECT * FROM {view}")
    want = multiset(conn, query)
    assert got == want, f"{view} differs from its query {note}\nview:  {got}\nquery: {want}"


def staleness(conn: heliosdb.Connection, view: str, cols: str = "*") -> tuple:
    got = rows(conn, f"SELECT {cols} FROM heliosdb.mv_staleness WHERE name = %s AND branch = %s",
               (view, conn.branch))
    assert len(got) == 1, got
    return got[0]


def error_of(conn: heliosdb.Connection, sql: str) -> heliosdb.Error:
    try:
        conn.cursor().execute(sql)
    except heliosdb.Error as exc:
        return exc
    raise AssertionError(f"no error from {sql!r}")


def notices(conn: heliosdb.Connection, sql: str) -> list[str]:
    cur = conn.cursor()
    cur.execute(sql)
    return cur.notices


# -- random workload -------------------------------------------------------------------------------

GROUPS = [0, 1, 2, 3, None]


def _tval(rng: random.Random) -> dict:
    return {
        "g": rng.choice(GROUPS + [1, 2]),
        "tag": rng.choice(["a", "b", None]),
        "v": None if rng.random() < 0.2 else rng.randint(-30, 30),
        "n": None if rng.random() < 0.2 else Decimal(rng.randint(-5000, 5000)) / 100,
    }


def create_base(conn: heliosdb.Connection, rng: random.Random, n_t: int = 30, n_u: int = 8) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, tag text, v int, n numeric(10,2))",
        "CREATE TABLE u (id int PRIMARY KEY, k int, w int)")
    cur = conn.cursor()
    for i in range(1, n_t + 1):
        r = _tval(rng)
        cur.execute("INSERT INTO t VALUES (%s, %s, %s, %s, %s)", (i, r["g"], r["tag"], r["v"], r["n"]))
    for i in range(1, n_u + 1):
        cur.execute("INSERT INTO u VALUES (%s, %s, %s)", (i, rng.choice(GROUPS), rng.randint(-5, 20)))


class Workload:
    """Random inserts, updates (group keys too), deletes (current MIN/MAX rows, whole groups) on t and u."""

    def __init__(self, conn: heliosdb.Connection, rng: random.Random, with_u: bool) -> None:
        self.conn, self.rng, self.with_u = conn, rng, with_u
        self.next_id = 1000

    def _ids(self, table: str) -> list[int]:
        return [r[0] for r in rows(self.conn, f"SELECT id FROM {table} ORDER BY id")]

    def step(self) -> None:
        rng, cur = self.rng, self.conn.cursor()
        if self.with_u and rng.random() < 0.3:
            ids = self._ids("u")
            op = rng.choice(["ins", "upd", "upd", "del"]) if ids else "ins"
            if op == "ins":
                self.next_id += 1
                cur.execute("INSERT INTO u VALUES (%s, %s, %s)", (self.next_id, rng.choice(GROUPS), rng.randint(-5, 20)))
            elif op == "upd":
                cur.execute("UPDATE u SET k = %s, w = %s WHERE id = %s",
                            (rng.choice(GROUPS), rng.randint(-5, 20), rng.choice(ids)))
            else:
                cur.execute("DELETE FROM u WHERE id = %s", (rng.choice(ids),))
            return
        ids = self._ids("t")
        op = rng.choices(["ins", "upd", "updkey", "del", "delext", "empty", "move", "multi"],
                         [5, 4, 3, 2, 3, 1, 1, 1])[0]
        if not ids:
            op = "ins"
        if op == "ins":
            for _ in range(rng.randint(1, 3)):
                self.next_id += 1
                r = _tval(rng)
                cur.execute("INSERT INTO t VALUES (%s, %s, %s, %s, %s)", (self.next_id, r["g"], r["tag"], r["v"], r["n"]))
        elif op == "upd":
            r = _tval(rng)
            cols = rng.sample(["tag", "v", "n"], rng.randint(1, 3))
            sets = ", ".join(f"{c} = %s" for c in cols)
            cur.execute(f"UPDATE t SET {sets} WHERE id = %s", (*[r[c] for c in cols], rng.choice(ids)))
        elif op == "updkey":  # a row changes group
            cur.execute("UPDATE t SET g = %s WHERE id = %s", (rng.choice(GROUPS), rng.choice(ids)))
        elif op == "del":
            cur.execute("DELETE FROM t WHERE id = %s", (rng.choice(ids),))
        elif op == "delext":  # the row holding a group's current MIN or MAX (of v or n)
            col = rng.choice(["v", "n"])
            order = rng.choice(["ASC", "DESC"])
            g = rng.choice(GROUPS)
            found = rows(self.conn, f"SELECT id FROM t WHERE g IS NOT DISTINCT FROM %s AND {col} IS NOT NULL "
                                    f"ORDER BY {col} {order}, id LIMIT 1", (g,))
            if found:
                cur.execute("DELETE FROM t WHERE id = %s", (found[0][0],))
        elif op == "empty":  # a whole group goes away
            cur.execute("DELETE FROM t WHERE g IS NOT DISTINCT FROM %s", (rng.choice(GROUPS),))
        elif op == "move":  # a whole group merges into another
            cur.execute("UPDATE t SET g = %s WHERE g IS NOT DISTINCT FROM %s", (rng.choice(GROUPS), rng.choice(GROUPS)))
        else:  # several rows at once, values only
            cur.execute("UPDATE t SET v = v + %s, n = n * 2 WHERE id %% 3 = %s", (rng.randint(-3, 3), rng.randint(0, 2)))


# -- 1. randomized equivalence -------------------------------------------------------------------------

AGG_COLS = ("count(*) AS c, count(v) AS cv, sum(v) AS sv, avg(v) AS av, min(v) AS mnv, max(v) AS mxv, "
            "count(n) AS cn, sum(n) AS sn, avg(n) AS an, min(n) AS mnn, max(n) AS mxn")

# class -> ([(view name, defining query)], uses u)
CLASSES: dict[str, tuple[list[tuple[str, str]], bool]] = {
    "select_project": ([("v1", "SELECT id, g, tag, v * 2 AS v2, n FROM t WHERE v > -10 OR n IS NULL")], False),
    "inner_join": ([("v1", "SELECT t.id, t.v, t.n, u.id AS uid, u.w FROM t JOIN u ON t.g = u.k "
                           "WHERE t.v IS NULL OR t.v > -20"),
                    ("v2", "SELECT t.id, u.id AS uid, t.tag FROM t, u WHERE t.g = u.k AND u.w > 0")], True),
    "group_by": ([("v1", f"SELECT g, tag, {AGG_COLS} FROM t GROUP BY g, tag"),
                  ("v2", "SELECT g % 2 AS parity, count(*) AS c, sum(n) AS s, min(tag) AS mt "
                         "FROM t WHERE v IS DISTINCT FROM 0 GROUP BY g % 2")], False),
    "scalar_aggregate": ([("v1", f"SELECT {AGG_COLS} FROM t"),
                          ("v2", "SELECT count(*) AS c, max(v) AS m, min(n) AS mn FROM t WHERE g = 2")], False),
    "distinct": ([("v1", "SELECT DISTINCT g, tag FROM t")], False),
    "join_group_by": ([("v1", "SELECT u.k, count(*) AS c, sum(t.v) AS s, min(t.n) AS mn, max(u.w) AS mw "
                              "FROM t JOIN u ON t.g = u.k GROUP BY u.k")], True),
    "view_over_view_agg_over_spj": ([("v0", "SELECT id, g, v, n FROM t WHERE v IS NOT NULL"),
                                     ("v1", "SELECT g, count(*) AS c, sum(v) AS s, max(v) AS m, avg(n) AS a "
                                            "FROM v0 GROUP BY g")], False),
    "view_over_view_spj_over_agg": ([("v0", "SELECT g, count(*) AS c, sum(v) AS s FROM t GROUP BY g"),
                                     ("v1", "SELECT g, c, s FROM v0 WHERE c > 1")], False),
}


def _tops(views: list[tuple[str, str]]) -> list[str]:
    """The views no other view of the class reads (refreshing them refreshes their inputs too)."""
    return [n for n, _ in views if not any(f" FROM {n}" in q + " " for _, q in views)]


def _expanded(conn: heliosdb.Connection, views: list[tuple[str, str]], name: str) -> str:
    """The query of `name` over base tables only (views it reads inlined), to run directly."""
    query = dict(views)[name]
    for other, _q in views:
        if other != name and f" FROM {other} " in query + " ":
            query = query.replace(f" FROM {other}", f" FROM ({_expanded(conn, views, other)}) {other}")
    return query


@pytest.mark.parametrize("cls", list(CLASSES))
def test_incremental_refresh_equals_query(conn: heliosdb.Connection, cls: str) -> None:
    seed = int(os.environ.get("HELIOSDB_MV_SEED", "1"))  # other seeds for a longer hunt
    views, with_u = CLASSES[cls]
    rng = random.Random(f"{cls}-{seed}")
    create_base(conn, rng)
    for name, q in views:
        run(conn, f"CREATE MATERIALIZED VIEW {name} AS {q} WITH (maintenance_strategy = on_demand)")
    direct = {name: _expanded(conn, views, name) for name, _ in views}
    for name, _ in views:
        assert_view_equals_query(conn, name, direct[name], "after CREATE")
    work = Workload(conn, rng, with_u)
    for rnd in range(7):
        for _ in range(rng.randint(3, 9)):
            work.step()
        for top in _tops(views):
            if rnd % 3 == 2:
                run(conn, f"REFRESH MATERIALIZED VIEW {top}")  # the view's own choice (may be full)
                assert staleness(conn, top, "last_refresh_mode")[0] in ("incremental", "full")
            else:
                note = notices(conn, f"REFRESH MATERIALIZED VIEW {top} INCREMENTAL")
                mode = staleness(conn, top, "last_refresh_mode, last_refresh_reason, status, pending_changes")
                assert mode[0] == "incremental", (mode, note)
                assert any("incremental refresh" in n for n in note) or mode[1] == "no changes", note
                assert mode[2:] == ("FRESH", 0)
        for name, _ in views:  # an input view is brought to the same point first
            assert_view_equals_query(conn, name, direct[name], f"(class {cls}, seed {seed}, round {rnd})")
    for name, _ in views:
        assert staleness(conn, name, "staleness, status") == (0.0, "FRESH")


@pytest.mark.parametrize("cls", ["join_group_by", "view_over_view_agg_over_spj"])
def test_incremental_refresh_on_a_branch_equals_query(conn: heliosdb.Connection, connect, cls: str) -> None:
    """The view inherited at the fork, then refreshed incrementally on the branch while main moves too."""
    views, with_u = CLASSES[cls]
    rng = random.Random(f"branch-{cls}")
    create_base(conn, rng, 24, 6)
    for name, q in views:
        run(conn, f"CREATE MATERIALIZED VIEW {name} AS {q} WITH (maintenance_strategy = on_demand)")
    direct = {name: _expanded(conn, views, name) for name, _ in views}
    top = views[-1][0]
    on_main = Workload(conn, rng, with_u)
    for _ in range(5):
        on_main.step()
    run(conn, f"REFRESH MATERIALIZED VIEW {top}")
    for _ in range(4):
        on_main.step()  # after main's last refresh, before the fork
    run(conn, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    on_dev = Workload(dev, random.Random(f"dev-{cls}"), with_u)
    on_dev.next_id = 5000
    for rnd in range(4):
        for _ in range(rng.randint(2, 6)):
            on_dev.step()
            on_main.step()
        run(dev, f"REFRESH MATERIALIZED VIEW {top} INCREMENTAL")
        assert staleness(dev, top, "last_refresh_mode")[0] == "incremental"
        for name, _ in views:
            assert_view_equals_query(dev, name, direct[name], f"on dev, round {rnd}")
        if rnd % 2:
            run(conn, f"REFRESH MATERIALIZED VIEW {top} INCREMENTAL")
            for name, _ in views:
                assert_view_equals_query(conn, name, direct[name], f"on main, round {rnd}")


OUTSIDE = {
    "limit": ("SELECT id, v FROM t ORDER BY id LIMIT 5", "LIMIT"),
    "outer_join": ("SELECT t.id, u.w FROM t LEFT JOIN u ON t.g = u.k", "outer"),
    "subquery": ("SELECT id FROM t WHERE g IN (SELECT k FROM u)", "subquer"),
    "window": ("SELECT id, rank() OVER (PARTITION BY g ORDER BY v) AS r FROM t", "window"),
    "having": ("SELECT g, count(*) AS c FROM t GROUP BY g HAVING count(*) > 1", "HAVING"),
    "random": ("SELECT id, random() < 2 AS r FROM t", "random"),
}


def test_queries_outside_the_classes_refresh_in_full_with_a_reason(conn: heliosdb.Connection) -> None:
    rng = random.Random("outside")
    create_base(conn, rng, 12, 4)
    for case, (query, _) in OUTSIDE.items():
        run(conn, f"CREATE MATERIALIZED VIEW f_{case} AS {query}")
    work = Workload(conn, rng, True)
    for _ in range(6):
        work.step()
    for case, (query, word) in OUTSIDE.items():
        view = f"f_{case}"
        assert staleness(conn, view, "status")[0] == "STALE", case
        note = notices(conn, f"REFRESH MATERIALIZED VIEW {view} INCREMENTAL")
        mode, reason = staleness(conn, view, "last_refresh_mode, last_refresh_reason")
        assert mode == "full", case
        assert word.lower() in reason.lower(), (case, reason)
        assert any("full refresh" in n for n in note), (case, note)
        assert_view_equals_query(conn, view, query)
        # and immediate maintenance of such a query is refused, saying why
        exc = error_of(conn, f"CREATE MATERIALIZED VIEW f2 AS {query} WITH (maintenance_strategy = immediate)")
        assert exc.sqlstate == "0A000", case
        assert word.lower() in exc.message.lower(), (case, exc.message)
        assert sqlstate(conn, "SELECT * FROM f2") == "42P01"


def test_plain_refresh_of_a_large_delta_runs_full_and_says_why(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int)",
        "INSERT INTO t SELECT i, i % 3, i FROM generate_series(1, 40) i",
        "CREATE MATERIALIZED VIEW s AS SELECT g, sum(v) AS s FROM t GROUP BY g WITH (maintenance_strategy = on_demand)",
        "UPDATE t SET v = v + 1")
    run(conn, "REFRESH MATERIALIZED VIEW s")
    mode, reason = staleness(conn, "s", "last_refresh_mode, last_refresh_reason")
    assert mode == "full" and reason, (mode, reason)
    assert_view_equals_query(conn, "s", "SELECT g, sum(v) AS s FROM t GROUP BY g")
    run(conn, "UPDATE t SET v = 0 WHERE id = 7", "REFRESH MATERIALIZED VIEW s")
    assert staleness(conn, "s", "last_refresh_mode")[0] == "incremental"
    run(conn, "UPDATE t SET v = 1 WHERE id = 8", "REFRESH MATERIALIZED VIEW s FULL")
    assert staleness(conn, "s", "last_refresh_mode")[0] == "full"
    assert_view_equals_query(conn, "s", "SELECT g, sum(v) AS s FROM t GROUP BY g")
    # deferred: recomputed in full even for a small change
    run(conn, "CREATE MATERIALIZED VIEW d AS SELECT id, v FROM t WHERE v > 10 WITH (maintenance_strategy = deferred)",
        "DELETE FROM t WHERE id = 20", "REFRESH MATERIALIZED VIEW d")
    assert staleness(conn, "d", "strategy, last_refresh_mode") == ("deferred", "full")
    assert_view_equals_query(conn, "d", "SELECT id, v FROM t WHERE v > 10")


# -- 2. immediate maintenance ------------------------------------------------------------------------------

IMMEDIATE = {
    "spj": "SELECT id, g, v, n FROM t WHERE v IS NULL OR v > 0",
    "join": "SELECT t.id, u.id AS uid, t.v, u.w FROM t JOIN u ON t.g = u.k",
    "agg": f"SELECT g, {AGG_COLS} FROM t GROUP BY g",
    "scalar": "SELECT count(*) AS c, sum(v) AS s, min(n) AS mn, max(v) AS mx FROM t",
    "distinct": "SELECT DISTINCT g, tag FROM t",
}


@pytest.fixture
def immediate_db(conn: heliosdb.Connection) -> heliosdb.Connection:
    create_base(conn, random.Random("immediate"), 20, 6)
    for name, q in IMMEDIATE.items():
        run(conn, f"CREATE MATERIALIZED VIEW im_{name} AS {q} WITH (maintenance_strategy = immediate)")
    run(conn, "CREATE MATERIALIZED VIEW im_over AS SELECT g, count(*) AS c, max(v) AS m FROM im_spj GROUP BY g "
              "WITH (maintenance_strategy = immediate)")
    return conn


def _check_immediate(conn: heliosdb.Connection, note: str) -> None:
    for name, q in IMMEDIATE.items():
        assert_view_equals_query(conn, f"im_{name}", q, note)
    assert_view_equals_query(conn, "im_over", "SELECT g, count(*) AS c, max(v) AS m FROM "
                                              f"({IMMEDIATE['spj']}) x GROUP BY g", note)


def test_immediate_views_follow_every_autocommit_write(immediate_db: heliosdb.Connection) -> None:
    conn = immediate_db
    _check_immediate(conn, "after CREATE")
    work = Workload(conn, random.Random("immediate-autocommit"), True)
    for i in range(14):
        work.step()
        _check_immediate(conn, f"after write {i}")
    for name in [*IMMEDIATE, "over"]:
        st = staleness(conn, f"im_{name}", "strategy, status, staleness, next_scheduled")
        assert st == ("immediate", "FRESH", 0.0, None), (name, st)


def test_immediate_views_inside_transactions(immediate_db: heliosdb.Connection, connect) -> None:
    conn = immediate_db
    other = connect()  # autocommit: sees only committed states
    conn.autocommit = False
    work = Workload(conn, random.Random("immediate-tx"), True)
    for attempt in range(4):
        before = {n: multiset(other, f"SELECT * FROM im_{n}") for n in [*IMMEDIATE, "over"]}
        for i in range(4):
            work.step()
            _check_immediate(conn, f"inside transaction {attempt}, after write {i}")  # own writes, seen at once
        for n in [*IMMEDIATE, "over"]:
            assert multiset(other, f"SELECT * FROM im_{n}") == before[n], n  # not yet visible elsewhere
        if attempt % 2:
            conn.rollback()
            for n in [*IMMEDIATE, "over"]:
                assert multiset(conn, f"SELECT * FROM im_{n}") == before[n], f"{n} after ROLLBACK"
            conn.commit()
        else:
            conn.commit()
            _check_immediate(other, f"after COMMIT {attempt}")
    conn.autocommit = True
    work.step()
    _check_immediate(conn, "after the transactions")


def test_alter_to_immediate_and_back(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int)", "INSERT INTO t VALUES (1, 1, 1), (2, 1, 2)",
        "CREATE MATERIALIZED VIEW s AS SELECT g, sum(v) AS s FROM t GROUP BY g WITH (maintenance_strategy = on_demand)",
        "INSERT INTO t VALUES (3, 2, 3)")
    q = "SELECT g, sum(v) AS s FROM t GROUP BY g"
    assert multiset(conn, "SELECT * FROM s") == [(1, 3)]
    run(conn, "ALTER MATERIALIZED VIEW s SET (maintenance_strategy = immediate)")
    assert_view_equals_query(conn, "s", q)
    run(conn, "UPDATE t SET g = 2 WHERE id = 1")
    assert_view_equals_query(conn, "s", q)
    run(conn, "ALTER MATERIALIZED VIEW s SET (maintenance_strategy = on_demand)", "DELETE FROM t WHERE id = 3")
    assert multiset(conn, "SELECT * FROM s") == [(1, 2), (2, 4)]  # no longer maintained
    assert staleness(conn, "s", "strategy, status, pending_changes") == ("on_demand", "STALE", 1)
    run(conn, "REFRESH MATERIALIZED VIEW s")
    assert_view_equals_query(conn, "s", q)
    # an immediate view is populated even WITH NO DATA: readers never see it stale
    run(conn, "CREATE MATERIALIZED VIEW i AS SELECT id, v FROM t WITH (maintenance_strategy = immediate) WITH NO DATA")
    assert multiset(conn, "SELECT * FROM i") == [(1, 1), (2, 2)]


def test_immediate_view_over_columns_named_like_its_parameters(conn: heliosdb.Connection) -> None:
    column = "h"
    run(conn, f"CREATE TABLE t (id int PRIMARY KEY, {column} text)", "INSERT INTO t VALUES (1, 'a')",
        f"CREATE MATERIALIZED VIEW i AS SELECT id, {column} FROM t WITH (maintenance_strategy = immediate)")
    run(conn, "INSERT INTO t VALUES (2, 'b')")  # actual: 42702 column reference "h" is ambiguous
    assert multiset(conn, "SELECT * FROM i") == [(1, "a"), (2, "b")]


def test_alter_to_immediate_refused_for_a_non_incremental_query(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 1), (2, 2)",
        "CREATE MATERIALIZED VIEW f AS SELECT id, v FROM t ORDER BY id LIMIT 10")
    exc = error_of(conn, "ALTER MATERIALIZED VIEW f SET (maintenance_strategy = immediate)")
    assert exc.sqlstate == "0A000"


def test_dropping_a_column_an_immediate_view_reads(conn: heliosdb.Connection) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int)", "INSERT INTO t VALUES (1, 1, 1)",
        "CREATE MATERIALIZED VIEW im AS SELECT id, g, v FROM t WITH (maintenance_strategy = immediate)")
    refused = sqlstate(conn, "ALTER TABLE t DROP COLUMN v")
    if refused is None:
        run(conn, "INSERT INTO t VALUES (2, 1)")  # actual: 42703 column r.v does not exist
        assert rows(conn, "SELECT count(*) FROM t") == [(2,)]
    else:
        assert refused == "2BP01"  # PostgreSQL's answer for a column a materialized view reads
        run(conn, "INSERT INTO t VALUES (2, 1, 2)")
        assert_view_equals_query(conn, "im", "SELECT id, g, v FROM t")


# -- 3. statements and errors ------------------------------------------------------------------------------


@pytest.fixture
def base(conn: heliosdb.Connection) -> heliosdb.Connection:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int)",
        "INSERT INTO t VALUES (1, 1, 10), (2, 1, 20), (3, 2, 30)")
    return conn


def test_create_with_options_and_no_data(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT g, sum(v) AS s FROM t GROUP BY g "
              "WITH (maintenance_strategy = deferred, max_cpu_percent = 40, staleness_threshold = 0.5, "
              "max_staleness_seconds = 60, priority = high)")
    assert staleness(conn, "a", "strategy, priority, status, last_refresh_mode") == ("deferred", "high", "FRESH", "full")
    assert multiset(conn, "SELECT * FROM a") == [(1, 30), (2, 30)]
    # PostgreSQL's place for WITH ( ... ), quoted values, WITH NO DATA
    run(conn, "CREATE MATERIALIZED VIEW b WITH (priority = 'low', maintenance_strategy = 'on_demand') "
              "AS SELECT id, v FROM t WITH NO DATA")
    assert staleness(conn, "b", "strategy, priority, status, last_refresh_mode, staleness") == (
        "on_demand", "low", "STALE", None, 1.0)
    assert sqlstate(conn, "SELECT count(*) FROM b") == "55000"  # as PostgreSQL: not populated yet
    run(conn, "CREATE MATERIALIZED VIEW c AS SELECT id FROM t WITH (priority = critical) WITH NO DATA")
    assert staleness(conn, "c", "priority, status") == ("critical", "STALE")
    run(conn, "CREATE MATERIALIZED VIEW d AS SELECT id FROM t WITH DATA")
    assert staleness(conn, "d", "strategy, priority, status") == ("incremental", "medium", "FRESH")
    run(conn, "REFRESH MATERIALIZED VIEW b")
    assert_view_equals_query(conn, "b", "SELECT id, v FROM t")
    assert staleness(conn, "b", "status, last_refresh_mode") == ("FRESH", "full")
    # ALTER ... SET changes what heliosdb.mv_staleness shows
    run(conn, "CREATE MATERIALIZED VIEW al AS SELECT id, v FROM t")
    assert staleness(conn, "al", "strategy, priority") == ("incremental", "medium")
    run(conn, "ALTER MATERIALIZED VIEW al SET (priority = critical, maintenance_strategy = deferred)")
    assert staleness(conn, "al", "strategy, priority") == ("deferred", "critical")
    run(conn, "ALTER MATERIALIZED VIEW al SET (maintenance_strategy = 'on_demand', max_staleness_seconds = 5)")
    assert staleness(conn, "al", "strategy, priority, next_scheduled") == ("on_demand", "critical", None)
    run(conn, "INSERT INTO t VALUES (4, 4, 40)")
    assert staleness(conn, "al", "status, pending_changes, next_scheduled") == ("STALE", 1, None)


def test_postgresql_forms(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW v1 AS SELECT id, v FROM t",
        "CREATE MATERIALIZED VIEW v2 (grp, total) AS SELECT g, sum(v) FROM t GROUP BY g",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS v3 AS SELECT id FROM t")
    assert multiset(conn, "SELECT grp, total FROM v2") == [(1, 30), (2, 30)]
    run(conn, "INSERT INTO t VALUES (4, 2, 40)", "REFRESH MATERIALIZED VIEW v2",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY v1")
    assert multiset(conn, "SELECT * FROM v2") == [(1, 30), (2, 70)]
    assert_view_equals_query(conn, "v1", "SELECT id, v FROM t")
    # a materialized view reads like a table: joins, WHERE, aggregates over it
    assert rows(conn, "SELECT v1.id FROM v1 JOIN v2 ON v1.v = v2.total - 30 ORDER BY 1") == [(4,)]
    run(conn, "DROP MATERIALIZED VIEW v1, v2")
    assert sqlstate(conn, "SELECT * FROM v1") == "42P01"
    assert sqlstate(conn, "SELECT * FROM v2") == "42P01"
    assert [r[0] for r in rows(conn, "SELECT name FROM heliosdb.mv_staleness")] == ["v3"]
    run(conn, "DROP MATERIALIZED VIEW v3 RESTRICT")
    assert rows(conn, "SELECT count(*) FROM heliosdb.mv_staleness") == [(0,)]
    # time travel over the base tables keeps working next to a view
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT g, sum(v) AS s FROM t GROUP BY g")
    lsn = rows(conn, "SELECT heliosdb.current_lsn()")[0][0]
    run(conn, "UPDATE t SET v = 0", "REFRESH MATERIALIZED VIEW a")
    assert multiset(conn, "SELECT * FROM a") == [(1, 0), (2, 0)]
    assert multiset(conn, f"SELECT g, sum(v) FROM t AS OF LSN {lsn} GROUP BY g") == [(1, 30), (2, 70)]


def test_refresh_with_no_data(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW v1 AS SELECT id, v FROM t", "CREATE MATERIALIZED VIEW v2 AS SELECT id FROM t")
    # as PostgreSQL: the view is emptied and unreadable until the next REFRESH
    run(conn, "REFRESH MATERIALIZED VIEW v1 WITH NO DATA")
    assert sqlstate(conn, "SELECT * FROM v1") == "55000"
    assert rows(conn, "SELECT name, status FROM heliosdb.mv_staleness ORDER BY 1") == [  # actual: 42P02
        ("v1", "STALE"), ("v2", "FRESH")]
    run(conn, "REFRESH MATERIALIZED VIEW v1")
    assert_view_equals_query(conn, "v1", "SELECT id, v FROM t")
    assert staleness(conn, "v1", "status")[0] == "FRESH"


def test_if_exists_and_if_not_exists_notices(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT id FROM t")
    assert notices(conn, "CREATE MATERIALIZED VIEW IF NOT EXISTS a AS SELECT v FROM t") == [
        'NOTICE:  relation "a" already exists, skipping']
    assert rows(conn, "SELECT * FROM a ORDER BY 1") == [(1,), (2,), (3,)]  # the first definition stays
    assert notices(conn, "DROP MATERIALIZED VIEW IF EXISTS nope") == [
        'NOTICE:  materialized view "nope" does not exist, skipping']
    assert notices(conn, "ALTER MATERIALIZED VIEW IF EXISTS nope SET (priority = low)") == [
        'NOTICE:  relation "nope" does not exist, skipping']
    got = notices(conn, "DROP MATERIALIZED VIEW IF EXISTS nope, a")
    assert got == ['NOTICE:  materialized view "nope" does not exist, skipping']
    assert sqlstate(conn, "SELECT * FROM a") == "42P01"
    # names clash with tables as in PostgreSQL
    assert sqlstate(conn, "CREATE MATERIALIZED VIEW t AS SELECT 1 AS x FROM t") == "42P07"
    run(conn, "CREATE MATERIALIZED VIEW b AS SELECT id FROM t")
    assert sqlstate(conn, "CREATE MATERIALIZED VIEW b AS SELECT id FROM t") == "42P07"
    for stmt in ["REFRESH MATERIALIZED VIEW nope", "REFRESH MATERIALIZED VIEW nope INCREMENTAL",
                 "DROP MATERIALIZED VIEW nope", "ALTER MATERIALIZED VIEW nope SET (priority = low)",
                 "SELECT * FROM nope"]:
        assert sqlstate(base, stmt) == "42P01", stmt
    # a plain table is not a materialized view
    assert sqlstate(base, "REFRESH MATERIALIZED VIEW t") == "42P01"


BAD_OPTIONS = [
    ("maintenance_strategy", "fast", ["incremental", "deferred", "on_demand", "immediate"]),
    ("priority", "urgent", ["critical", "high", "medium", "low"]),
    ("max_cpu_percent", "150", ["0", "100"]),
    ("max_cpu_percent", "-1", ["0", "100"]),
    ("staleness_threshold", "1.5", ["0", "1"]),
    ("staleness_threshold", "abc", ["0", "1"]),
    ("max_staleness_seconds", "-5", ["0"]),
    # infinities and NaN: refused here, not later by the catalog's JSON (22P02)
    ("max_staleness_seconds", "'infinity'", ["0", "1000000000"]),
    ("max_staleness_seconds", "1e400", ["0", "1000000000"]),
    ("max_staleness_seconds", "'inf'", ["0", "1000000000"]),
    ("max_staleness_seconds", "'nan'", ["0", "1000000000"]),
    ("max_staleness_seconds", "1e12", ["0", "1000000000"]),  # next_scheduled past what clients can read
    ("colour", "1", ["maintenance_strategy", "max_cpu_percent", "staleness_threshold", "max_staleness_seconds",
                     "priority"]),
]


def test_bad_options_are_22023_and_list_the_valid_values(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT id FROM t WITH (priority = low)")
    for option, value, valid in BAD_OPTIONS:
        for stmt in (f"CREATE MATERIALIZED VIEW b AS SELECT id FROM t WITH ({option} = {value})",
                     f"CREATE MATERIALIZED VIEW b WITH ({option} = {value}) AS SELECT id FROM t",
                     f"ALTER MATERIALIZED VIEW a SET ({option} = {value})"):
            exc = error_of(conn, stmt)
            assert exc.sqlstate == "22023", stmt
            assert option in exc.message, (stmt, exc.message)
            said = f"{exc.message} {exc.hint or ''}"
            for word in valid:
                assert word in said, (stmt, word, said)
    assert sqlstate(conn, "SELECT * FROM b") == "42P01"  # nothing was created
    assert staleness(conn, "a", "priority, strategy") == ("low", "incremental")  # nothing was changed


def test_statements_postgresql_refuses_are_42601(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t WITH (priority = low)")
    before = staleness(conn, "mv", "priority, last_refresh_reason")
    for stmt, near in [("DROP MATERIALIZED VIEW", None), ("DROP MATERIALIZED VIEW IF EXISTS", None),
                       ("ALTER MATERIALIZED VIEW mv SET ()", ")"), ("ALTER MATERIALIZED VIEW mv RESET ()", ")"),
                       ("CREATE MATERIALIZED VIEW mv2 AS SELECT id FROM t WITH ()", ")"),
                       ("CREATE MATERIALIZED VIEW mv2 WITH () AS SELECT id FROM t", ")"),
                       ("REFRESH MATERIALIZED VIEW mv INCREMENTAL FULL", "FULL"),
                       ("REFRESH MATERIALIZED VIEW mv FULL FULL", "FULL")]:
        exc = error_of(conn, stmt)
        assert exc.sqlstate == "42601", (stmt, exc.sqlstate, exc.message)
        want = "syntax error at end of input" if near is None else f'syntax error at or near "{near}"'
        assert exc.message == want, (stmt, exc.message)
        if near is not None:
            assert exc.position is not None and stmt[exc.position - 1:].startswith(near), (stmt, exc.position)
    assert sqlstate(conn, "SELECT * FROM mv2") == "42P01"  # nothing was created, changed or refreshed
    assert staleness(conn, "mv", "priority, last_refresh_reason") == before
    assert [r[0] for r in rows(conn, "SELECT name FROM heliosdb.mv_staleness")] == ["mv"]


def test_drop_view_or_alter_view_of_a_materialized_view_is_42809(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM t", "CREATE VIEW pv AS SELECT id FROM t")
    for stmt in ["DROP VIEW mv", "DROP VIEW IF EXISTS mv", "DROP VIEW pv, mv", "DROP VIEW IF EXISTS nope, mv CASCADE",
                 "ALTER VIEW mv RENAME TO other", "ALTER VIEW IF EXISTS mv RENAME COLUMN v TO w"]:
        exc = error_of(conn, stmt)
        assert (exc.sqlstate, exc.message) == ("42809", '"mv" is not a view'), (stmt, exc.sqlstate, exc.message)
        verb = stmt.split()[0]
        assert exc.hint == f"Use {verb} MATERIALIZED VIEW to {'remove' if verb == 'DROP' else 'change'} a " \
                           "materialized view.", exc.hint
    # nothing was dropped or renamed: the view, its catalog rows, the plain view named with it
    assert_view_equals_query(conn, "mv", "SELECT id, v FROM t")
    assert rows(conn, "SELECT name, status FROM heliosdb.mv_staleness") == [("mv", "FRESH")]
    assert rows(conn, "SELECT view, depends_on FROM heliosdb.mv_dependencies") == [("mv", "t")]
    assert rows(conn, "SELECT count(*) FROM pv") == [(3,)]
    assert sqlstate(conn, "SELECT * FROM other") == "42P01"
    # plain views are PostgreSQL's business as before, notices included
    assert notices(conn, "DROP VIEW IF EXISTS nope") == ['NOTICE:  view "nope" does not exist, skipping']
    run(conn, "ALTER VIEW pv RENAME TO pv2", "DROP VIEW pv2")
    assert sqlstate(conn, "SELECT * FROM pv2") == "42P01"
    run(conn, "DROP MATERIALIZED VIEW mv")
    assert rows(conn, "SELECT count(*) FROM heliosdb.mv_staleness") == [(0,)]


def test_comment_reset_using_and_tablespace_as_postgresql(base: heliosdb.Connection, connect) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM t")
    comment = "SELECT obj_description('mv'::regclass, 'pg_class')"
    run(conn, "COMMENT ON MATERIALIZED VIEW mv IS 'nightly totals'")
    assert rows(conn, comment) == [("nightly totals",)]
    run(conn, "CREATE DATABASE BRANCH dev")  # a branch's copy of the view has the comment too
    assert rows(connect("dev"), comment) == [("nightly totals",)]
    run(conn, "REFRESH MATERIALIZED VIEW mv WITH NO DATA", "REFRESH MATERIALIZED VIEW mv")
    assert rows(conn, comment) == [("nightly totals",)]  # the view made again keeps it
    run(conn, "COMMENT ON MATERIALIZED VIEW mv IS NULL")
    assert rows(conn, comment) == [(None,)]
    assert sqlstate(conn, "COMMENT ON MATERIALIZED VIEW nope IS 'x'") == "42P01"
    assert sqlstate(conn, "COMMENT ON MATERIALIZED VIEW mv IS 42") == "42601"
    # RESET: the options given go back to their defaults, the others stay
    run(conn, "ALTER MATERIALIZED VIEW mv SET (priority = critical, max_cpu_percent = 10, staleness_threshold = 0.9)",
        "ALTER MATERIALIZED VIEW mv RESET (priority, MAX_CPU_PERCENT)")
    got = rows(conn, "SELECT priority, max_cpu_percent, staleness_threshold FROM heliosdb._mv_staleness() "
                     "WHERE name = 'mv' AND branch = 'main'")
    assert got == [("medium", 80.0, 0.9)]
    run(conn, "ALTER MATERIALIZED VIEW mv SET (maintenance_strategy = immediate)",
        "ALTER MATERIALIZED VIEW mv RESET (maintenance_strategy, staleness_threshold)")
    assert staleness(conn, "mv", "strategy") == ("incremental",)
    run(conn, "INSERT INTO t VALUES (4, 4, 40)")  # no longer immediate: it waits for a refresh
    assert staleness(conn, "mv", "status, pending_changes") == ("STALE", 1)
    exc = error_of(conn, "ALTER MATERIALIZED VIEW mv RESET (colour)")
    assert exc.sqlstate == "22023" and "max_staleness_seconds" in (exc.hint or "")
    # USING heap and TABLESPACE pg_default as PostgreSQL's defaults; others 0A000, nothing created
    run(conn, "CREATE MATERIALIZED VIEW a USING heap AS SELECT id FROM t",
        "CREATE MATERIALIZED VIEW b TABLESPACE pg_default AS SELECT id FROM t",
        "CREATE MATERIALIZED VIEW c (n) USING heap WITH (priority = high) TABLESPACE pg_default AS SELECT id FROM t")
    assert staleness(conn, "c", "priority, status") == ("high", "FRESH")
    assert rows(conn, "SELECT n FROM c ORDER BY 1") == [(1,), (2,), (3,), (4,)]
    for stmt in ["CREATE MATERIALIZED VIEW d USING brin AS SELECT id FROM t",
                 "CREATE MATERIALIZED VIEW d TABLESPACE elsewhere AS SELECT id FROM t"]:
        exc = error_of(conn, stmt)
        assert exc.sqlstate == "0A000" and exc.hint, (stmt, exc.sqlstate)
    assert sqlstate(conn, "SELECT * FROM d") == "42P01"
    # RENAME is refused whole (0A000), never half done
    run(conn, "CREATE MATERIALIZED VIEW reader AS SELECT id FROM mv WHERE v > 10")
    deps = rows(conn, "SELECT view, depends_on_kind, depends_on FROM heliosdb.mv_dependencies ORDER BY 1, 3")
    for stmt, hint in [("ALTER MATERIALIZED VIEW mv RENAME TO mv2", "DROP MATERIALIZED VIEW mv"),
                       ("ALTER MATERIALIZED VIEW mv RENAME COLUMN v TO val", "column list"),
                       ("ALTER MATERIALIZED VIEW mv RENAME v TO val", "column list")]:
        exc = error_of(conn, stmt)
        assert exc.sqlstate == "0A000" and hint in (exc.hint or ""), (stmt, exc.sqlstate, exc.hint)
    assert sqlstate(conn, "ALTER MATERIALIZED VIEW nope RENAME TO x") == "42P01"
    assert notices(conn, "ALTER MATERIALIZED VIEW IF EXISTS nope RENAME TO x") == [
        'NOTICE:  relation "nope" does not exist, skipping']
    assert sqlstate(conn, "SELECT * FROM mv2") == "42P01"
    assert sqlstate(conn, "SELECT val FROM mv") == "42703"
    run(conn, "REFRESH MATERIALIZED VIEW mv", "REFRESH MATERIALIZED VIEW reader")
    assert_view_equals_query(conn, "reader", "SELECT id FROM t WHERE v > 10")
    assert rows(conn, "SELECT view, depends_on_kind, depends_on FROM heliosdb.mv_dependencies ORDER BY 1, 3") == deps
    assert [r[0] for r in rows(conn, "SELECT name FROM heliosdb.mv_staleness WHERE branch = 'main' ORDER BY 1")] == [
        "a", "b", "c", "mv", "reader"]


def test_drop_of_a_view_another_reads(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT id, g, v FROM t WHERE v > 10",
        "CREATE MATERIALIZED VIEW b AS SELECT g, count(*) AS c FROM a GROUP BY g",
        "CREATE MATERIALIZED VIEW c AS SELECT g FROM b WHERE c > 0",
        "CREATE MATERIALIZED VIEW other AS SELECT id FROM t")
    exc = error_of(conn, "DROP MATERIALIZED VIEW a")
    assert exc.sqlstate == "2BP01"
    assert '"b"' in (exc.detail or "")
    assert multiset(conn, "SELECT * FROM c") == [(1,), (2,)]  # nothing was dropped
    assert sqlstate(conn, "DROP MATERIALIZED VIEW b") == "2BP01"
    run(conn, "DROP MATERIALIZED VIEW a, b, c")  # all of them at once needs no CASCADE
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT id, g, v FROM t WHERE v > 10",
        "CREATE MATERIALIZED VIEW b AS SELECT g, count(*) AS c FROM a GROUP BY g",
        "CREATE MATERIALIZED VIEW c AS SELECT g FROM b WHERE c > 0")
    run(conn, "DROP MATERIALIZED VIEW a CASCADE")
    for name in ("a", "b", "c"):
        assert sqlstate(conn, f"SELECT * FROM {name}") == "42P01", name
    assert [r[0] for r in rows(conn, "SELECT name FROM heliosdb.mv_staleness")] == ["other"]
    # a plain view over a materialized view: PostgreSQL's own dependency rules
    run(conn, "CREATE VIEW pv AS SELECT * FROM other")
    assert sqlstate(conn, "DROP MATERIALIZED VIEW other") == "2BP01"
    run(conn, "DROP MATERIALIZED VIEW other CASCADE")
    assert sqlstate(conn, "SELECT * FROM pv") == "42P01"


def test_writes_into_a_view_are_refused(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT g, sum(v) AS s FROM t GROUP BY g",
        "CREATE MATERIALIZED VIEW i AS SELECT id, v FROM t WITH (maintenance_strategy = immediate)")
    for view in ("a", "i"):
        before = multiset(conn, f"SELECT * FROM {view}")
        for stmt in [f"INSERT INTO {view} VALUES (9, 9)", f"UPDATE {view} SET s = 0" if view == "a" else
                     f"UPDATE {view} SET v = 0", f"DELETE FROM {view}", f"TRUNCATE {view}"]:
            exc = error_of(conn, stmt)
            assert exc.sqlstate in ("42809", "0A000"), (stmt, exc.sqlstate, exc.message)
            assert f'"{view}"' in exc.message, exc.message
        assert multiset(conn, f"SELECT * FROM {view}") == before
    # what a user gets: a computed column is PostgreSQL's 0A000, anything reaching the rows HeliosDB's 42809
    assert error_of(conn, "INSERT INTO a VALUES (9, 9)").sqlstate == "0A000"
    assert error_of(conn, "DELETE FROM a").sqlstate == "42809"
    assert error_of(conn, "INSERT INTO i VALUES (9, 9)").sqlstate == "42809"
    # and inside a transaction the refusal fails that transaction only
    conn.autocommit = False
    assert sqlstate(conn, "DELETE FROM i") == "42809"
    conn.rollback()
    conn.autocommit = True
    assert_view_equals_query(conn, "i", "SELECT id, v FROM t")


def test_immediate_on_a_non_incremental_query_is_refused(base: heliosdb.Connection) -> None:
    for q in ["SELECT id FROM t ORDER BY id LIMIT 2", "SELECT t.id FROM t LEFT JOIN t t2 ON t.g = t2.v",
              "SELECT g, count(*) AS c FROM t GROUP BY g HAVING count(*) > 1"]:
        exc = error_of(base, f"CREATE MATERIALIZED VIEW i AS {q} WITH (maintenance_strategy = immediate)")
        assert exc.sqlstate == "0A000", q
        assert "immediate" in exc.message
        assert sqlstate(base, "SELECT * FROM i") == "42P01"
    assert rows(base, "SELECT count(*) FROM heliosdb.mv_staleness") == [(0,)]
    for q in ["SELECT * FROM s", "SELECT t.id FROM t JOIN s ON s.id = t.id"]:
        exc = error_of(base, f"CREATE MATERIALIZED VIEW s AS {q}")
        assert exc.sqlstate in ("42P01", "42P17"), (exc.sqlstate, exc.message)
        assert sqlstate(base, "SELECT * FROM s") == "42P01"
    assert rows(base, "SELECT count(*) FROM heliosdb.mv_staleness") == [(0,)]


def test_mv_dependencies_lists_the_graph(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE TABLE u (id int PRIMARY KEY, k int)",
        "CREATE MATERIALIZED VIEW a AS SELECT t.id, u.k FROM t JOIN u ON t.g = u.k",
        "CREATE MATERIALIZED VIEW b AS SELECT k, count(*) AS c FROM a GROUP BY k",
        "CREATE MATERIALIZED VIEW c AS SELECT b.k, t.v FROM b JOIN t ON t.g = b.k")
    got = rows(conn, "SELECT view, branch, depends_on_kind, depends_on FROM heliosdb.mv_dependencies "
                     "ORDER BY 1, 3, 4")
    assert got == [("a", "main", "table", "t"), ("a", "main", "table", "u"), ("b", "main", "mv", "a"),
                   ("c", "main", "mv", "b"), ("c", "main", "table", "t")]


def test_mv_dependencies_forgets_dropped_views(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW a AS SELECT id FROM t", "DROP MATERIALIZED VIEW a")
    assert rows(conn, "SELECT * FROM heliosdb.mv_dependencies") == []


# -- 4. branches and merges ------------------------------------------------------------------------------

Q_AGG = "SELECT g, count(*) AS c, sum(v) AS s, max(v) AS m FROM t GROUP BY g"


def test_view_on_main_is_inherited_by_a_later_branch(base: heliosdb.Connection, connect) -> None:
    main = base
    run(main, f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        "INSERT INTO t VALUES (4, 2, 5)", "REFRESH MATERIALIZED VIEW a")
    at_fork_view = multiset(main, "SELECT * FROM a")
    run(main, "UPDATE t SET v = 99 WHERE id = 1")  # after the last refresh: the view does not show it
    at_fork_query = multiset(main, Q_AGG)
    run(main, "CREATE DATABASE BRANCH dev")
    run(main, "DELETE FROM t WHERE id = 2", "REFRESH MATERIALIZED VIEW a")  # after the fork: not dev's business
    main_view = multiset(main, "SELECT * FROM a")
    dev = connect("dev")
    assert multiset(dev, "SELECT * FROM a") == at_fork_view
    run(dev, "REFRESH MATERIALIZED VIEW a")
    assert multiset(dev, "SELECT * FROM a") == at_fork_query
    # changes on the branch, refreshed on the branch: main's view does not move
    run(dev, "INSERT INTO t VALUES (10, 7, 70)", "UPDATE t SET g = 7 WHERE id = 3", "DELETE FROM t WHERE id = 1",
        "REFRESH MATERIALIZED VIEW a INCREMENTAL")
    assert staleness(dev, "a", "last_refresh_mode, status")[0] == "incremental"
    assert_view_equals_query(dev, "a", Q_AGG)
    assert multiset(main, "SELECT * FROM a") == main_view
    assert_view_equals_query(main, "a", Q_AGG)
    branches = rows(main, "SELECT branch, strategy FROM heliosdb.mv_staleness WHERE name = 'a' ORDER BY branch")
    assert branches == [("dev", "on_demand"), ("main", "on_demand")]


def test_inherited_view_counts_the_branch_changes(base: heliosdb.Connection, connect) -> None:
    main = base
    run(main, f"CREATE MATERIALIZED VIEW a AS {Q_AGG}", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "INSERT INTO t VALUES (10, 7, 70)", "UPDATE t SET v = 0 WHERE id = 1")
    assert staleness(dev, "a", "status, pending_changes") == ("STALE", 2)


def test_view_created_or_dropped_on_a_branch_stays_there(base: heliosdb.Connection, connect) -> None:
    main = base
    run(main, "CREATE MATERIALIZED VIEW shared AS SELECT id, v FROM t", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "CREATE MATERIALIZED VIEW mine AS SELECT g, count(*) AS c FROM t GROUP BY g")
    assert multiset(dev, "SELECT * FROM mine") == [(1, 2), (2, 1)]
    assert sqlstate(main, "SELECT * FROM mine") == "42P01"
    assert sqlstate(main, "REFRESH MATERIALIZED VIEW mine") == "42P01"
    # main may reuse the name for a view of its own
    run(main, "CREATE MATERIALIZED VIEW mine AS SELECT id FROM t")
    assert multiset(main, "SELECT * FROM mine") == [(1,), (2,), (3,)]
    assert multiset(dev, "SELECT * FROM mine") == [(1, 2), (2, 1)]
    # options are per branch too
    run(dev, "ALTER MATERIALIZED VIEW shared SET (priority = low, maintenance_strategy = deferred)")
    assert staleness(dev, "shared", "priority, strategy") == ("low", "deferred")
    assert staleness(main, "shared", "priority, strategy") == ("medium", "incremental")
    run(dev, "CREATE DATABASE BRANCH dev_alt")
    assert staleness(connect("dev_alt"), "shared", "priority, strategy") == ("low", "deferred")
    run(dev, "DROP MATERIALIZED VIEW shared")
    assert sqlstate(dev, "SELECT * FROM shared") == "42P01"
    assert_view_equals_query(main, "shared", "SELECT id, v FROM t")
    run(main, "INSERT INTO t VALUES (5, 5, 5)", "REFRESH MATERIALIZED VIEW shared")
    assert_view_equals_query(main, "shared", "SELECT id, v FROM t")
    # a branch of dev made after the drop does not see the view; one of main does
    run(dev, "CREATE DATABASE BRANCH dev2")
    assert sqlstate(connect("dev2"), "SELECT * FROM shared") == "42P01"
    assert multiset(connect("dev2"), "SELECT * FROM mine") == [(1, 2), (2, 1)]
    assert [r[0] for r in rows(main, "SELECT name FROM heliosdb.mv_staleness WHERE branch = 'main' ORDER BY 1")] == [
        "mine", "shared"]


def test_merge_into_main_immediate_follows_incremental_goes_stale(base: heliosdb.Connection, connect) -> None:
    main = base
    run(main, f"CREATE MATERIALIZED VIEW im AS {Q_AGG} WITH (maintenance_strategy = immediate)",
        f"CREATE MATERIALIZED VIEW inc AS {Q_AGG} WITH (maintenance_strategy = incremental, staleness_threshold = 1, "
        "max_staleness_seconds = 3600)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "INSERT INTO t VALUES (10, 7, 70), (11, 1, 1)", "UPDATE t SET v = 15 WHERE id = 2",
        "DELETE FROM t WHERE id = 3")
    assert_view_equals_query(dev, "im", Q_AGG)
    run(main, "UPDATE t SET v = 12 WHERE id = 1")  # a change of main's own, not conflicting
    assert_view_equals_query(main, "im", Q_AGG)
    before = multiset(main, "SELECT * FROM inc")
    run(main, "REFRESH MATERIALIZED VIEW inc")
    before = multiset(main, "SELECT * FROM inc")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert rows(main, "SELECT id, g, v FROM t ORDER BY id") == [(1, 1, 12), (2, 1, 15), (10, 7, 70), (11, 1, 1)]
    assert_view_equals_query(main, "im", Q_AGG)
    assert staleness(main, "im", "status")[0] == "FRESH"
    assert multiset(main, "SELECT * FROM inc") == before
    status, pending = staleness(main, "inc", "status, pending_changes")
    assert status == "STALE" and pending > 0, (status, pending)
    run(main, "REFRESH MATERIALIZED VIEW inc")
    assert_view_equals_query(main, "inc", Q_AGG)
    assert staleness(main, "inc", "status, pending_changes") == ("FRESH", 0)
    # the branch's views are untouched by the merge
    assert_view_equals_query(dev, "im", Q_AGG)


def test_long_refreshes_and_merges_report_progress_for_the_shell_bar(conn: heliosdb.Connection) -> None:
    from heliosdb.shell.executor import progress_line

    session = conn.session
    run(conn, "CREATE TABLE a (id int PRIMARY KEY, v int)", "CREATE TABLE b (id int PRIMARY KEY, v int)",
        "INSERT INTO a VALUES (1, 1)", "INSERT INTO b VALUES (1, 1)",
        "CREATE MATERIALIZED VIEW up AS SELECT v, count(*) FROM a GROUP BY v WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW down AS SELECT v FROM up")
    run(conn, "INSERT INTO a VALUES (2, 2)", "REFRESH MATERIALIZED VIEW down")
    assert session.progress is not None
    what, done, total = session.progress
    assert (done, total) == (1, 2) and "refresh of down" in what  # the input view came first
    assert "[##########..........] 1/2" in progress_line(session, 3.0)
    run(conn, "CREATE DATABASE BRANCH dev", "USE BRANCH dev", "UPDATE a SET v = 5", "UPDATE b SET v = 6",
        "USE BRANCH main", "MERGE DATABASE BRANCH dev INTO main")
    assert session.progress == ("applying b", 3, 4)  # two tables compared, then two applied
    run(conn, "SELECT 1")
    assert session.progress is None and "running 2.0 s" in progress_line(session, 2.0)


def _view_history_rows(conn: heliosdb.Connection, name: str) -> int:
    """Versions kept in the view's history relation on the connection's branch (storage, not SQL surface)."""
    mv_id, branch_id = rows(conn, "SELECT m.id, b.id FROM heliosdb._mviews m, heliosdb._branches b "
                                  "WHERE m.name = %s AND b.name = %s", (name, conn.branch))[0]
    return rows(conn, f'SELECT count(*) FROM "hdb_b{branch_id}"."mv{mv_id}__hist"')[0][0]


def test_gc_prunes_view_history_but_keeps_what_readers_need(base: heliosdb.Connection, connect) -> None:
    main = base
    run(main, f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW b AS SELECT g, s FROM a WHERE c > 1 WITH (maintenance_strategy = on_demand)")
    run(main, "ALTER DATABASE BRANCH main SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)")
    for i in range(4):  # old refreshes of a; b last refreshed after the second
        run(main, f"UPDATE t SET v = v + {i + 1} WHERE id = 1", "REFRESH MATERIALIZED VIEW a")
        if i == 1:
            run(main, "REFRESH MATERIALIZED VIEW b")
    time.sleep(1.2)
    run(main, "UPDATE t SET v = v + 1 WHERE id = 3", "REFRESH MATERIALIZED VIEW a")
    before = _view_history_rows(main, "a")
    assert rows(main, "SELECT heliosdb.gc()")[0][0] >= 1
    # b refreshed from its last point: the versions of a since then stay, the ones before go
    kept = _view_history_rows(main, "a")
    assert 0 < kept < before
    run(main, "REFRESH MATERIALIZED VIEW b INCREMENTAL")
    assert staleness(main, "b", "last_refresh_mode")[0] == "incremental"
    assert_view_equals_query(main, "b", "SELECT g, sum(v) FROM t GROUP BY g HAVING count(*) > 1")
    # with b up to date, everything before the horizon can go; the views still answer, a new branch inherits them
    time.sleep(1.2)
    run(main, "INSERT INTO t VALUES (9, 2, 1)", "REFRESH MATERIALIZED VIEW a", "REFRESH MATERIALIZED VIEW b")
    run(main, "SELECT heliosdb.gc()")
    assert _view_history_rows(main, "a") < kept
    assert_view_equals_query(main, "a", Q_AGG)
    run(main, "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    assert multiset(dev, "SELECT * FROM a") == multiset(main, "SELECT * FROM a")
    run(dev, "UPDATE t SET v = 0 WHERE id = 2", "REFRESH MATERIALIZED VIEW a INCREMENTAL")
    assert_view_equals_query(dev, "a", Q_AGG)


@pytest.mark.parametrize("strategy", ["on_demand", "immediate"])
def test_aggregates_of_other_types_aliases_and_quoted_names(conn: heliosdb.Connection, strategy: str) -> None:
    """SUM/AVG of interval and money, AVG of real (summed in double precision, as PostgreSQL), a FROM alias
    the maintenance SQL also uses (m), result columns that need quoting."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, dur interval, price money, r real, v int)",
        "INSERT INTO t VALUES (1, 1, '1 hour', 2.5, 16777216, 10), (2, 1, '2 days', 1, 1, 20), "
        "(3, 2, '5 minutes', 4, 3, 30)")
    queries = {
        "d": "SELECT g, sum(dur) AS total, avg(dur) AS mean FROM t GROUP BY g",
        "p": "SELECT g, sum(price) AS total FROM t GROUP BY g",
        "r": "SELECT g, avg(r) AS mean FROM t GROUP BY g",
        "m": "SELECT m.g, min(m.v) AS lo, max(m.v) AS hi FROM t m GROUP BY m.g",
        "q": 'SELECT id AS "ID", v AS "my col", g AS "order" FROM t',
        "qa": 'SELECT g AS "Grp", count(*) AS "N" FROM t GROUP BY g',
    }
    for name, query in queries.items():
        run(conn, f"CREATE MATERIALIZED VIEW {name} AS {query} WITH (maintenance_strategy = {strategy})")
    assert rows(conn, "SELECT mean FROM r WHERE g = 1") == [(8388608.5,)]  # a real sum would lose the .5
    run(conn, "INSERT INTO t VALUES (4, 2, '1 minute', 7, 2, 5)", "DELETE FROM t WHERE id = 1",
        "UPDATE t SET v = 1, dur = dur * 2, price = price * 3 WHERE id = 3")
    for name, query in queries.items():
        if strategy == "on_demand":
            run(conn, f"REFRESH MATERIALIZED VIEW {name} INCREMENTAL")
            assert staleness(conn, name, "last_refresh_mode")[0] == "incremental"
        assert_view_equals_query(conn, name, query)
    assert rows(conn, "SELECT mean FROM r WHERE g = 1") == [(1.0,)]


def test_a_view_over_a_plain_view_or_a_qualified_name_notices_changes(base: heliosdb.Connection) -> None:
    """What a view reads is what PostgreSQL resolved, through plain views and schema-qualified names."""
    conn = base
    run(conn, "CREATE VIEW pv AS SELECT id, v FROM t",
        "CREATE MATERIALIZED VIEW over_pv AS SELECT id, v FROM pv WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW qual AS SELECT id, v FROM public.t WITH (maintenance_strategy = on_demand)")
    assert rows(conn, "SELECT view, depends_on_kind, depends_on FROM heliosdb.mv_dependencies ORDER BY 1") == [
        ("over_pv", "table", "t"), ("qual", "table", "t")]
    run(conn, "INSERT INTO t VALUES (4, 2, 40)")
    for name in ("over_pv", "qual"):
        assert staleness(conn, name, "status, pending_changes") == ("STALE", 1)
        run(conn, f"REFRESH MATERIALIZED VIEW {name}")
        assert_view_equals_query(conn, name, "SELECT id, v FROM t")
    assert error_of(conn, "DROP TABLE t").sqlstate == "2BP01"


@pytest.mark.parametrize("strategy", ["on_demand", "immediate"])
def test_sums_recover_from_nan_infinity_and_cancellation(conn: heliosdb.Connection, strategy: str) -> None:
    """A running sum that held a NaN or an infinity, or lost a float value far larger than what is left, is
    summed again for that group: the view keeps matching its query."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, n numeric, f float8)",
        "INSERT INTO t VALUES (1, 1, 'NaN', 'Infinity'), (2, 1, 1, 1), (3, 2, 5, 1e20), (4, 2, 2, 1)")
    query = "SELECT g, sum(n) AS sn, avg(n) AS an, sum(f) AS sf, avg(f) AS af FROM t GROUP BY g"
    run(conn, f"CREATE MATERIALIZED VIEW s AS {query} WITH (maintenance_strategy = {strategy})")
    run(conn, "DELETE FROM t WHERE id IN (1, 3)", "INSERT INTO t VALUES (5, 1, 10, 10)")
    if strategy == "on_demand":
        run(conn, "REFRESH MATERIALIZED VIEW s INCREMENTAL")
    assert_view_equals_query(conn, "s", query)
    assert rows(conn, "SELECT sf FROM s ORDER BY g") == [(11.0,), (1.0,)]


def as_text(conn: heliosdb.Connection, view: str, query: str, cols: str) -> tuple[list[tuple], list[tuple]]:
    """The view's and its query's rows with every column as text (numeric scales show), sorted."""
    casts = ", ".join(f"{c}::text" for c in cols.split(", "))
    return (sorted(rows(conn, f"SELECT {casts} FROM {view}"), key=_key),
            sorted(rows(conn, f"SELECT {casts} FROM ({query}) q"), key=_key))


@pytest.mark.parametrize("strategy", ["on_demand", "immediate"])
@pytest.mark.parametrize("branch", ["main", "dev"])
def test_numeric_sums_show_the_scale_of_the_values_left(conn: heliosdb.Connection, connect, strategy: str,
                                                        branch: str) -> None:
    """PostgreSQL shows a numeric sum with the largest scale among the values summed: after a delete the view
    shows what its query shows, as text too (1.5, not 1.500)."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, n numeric, d numeric(10,2))",
        "INSERT INTO t VALUES (1, 1, 1.5, 1), (2, 1, 2.125, 2), (3, 2, 7, 3), (4, 2, 0.25, 4), (5, 3, 1.50, 5)")
    if branch == "dev":
        run(conn, "CREATE DATABASE BRANCH dev")
        conn = connect("dev")
    views = {"s": ("SELECT g, sum(n) AS sn, avg(n) AS an, sum(d) AS sd, count(*) AS c FROM t GROUP BY g",
                   "g, sn, an, sd, c"),
             "total": ("SELECT sum(n) AS sn, avg(n) AS an FROM t", "sn, an")}
    for name, (query, _) in views.items():
        run(conn, f"CREATE MATERIALIZED VIEW {name} AS {query} WITH (maintenance_strategy = {strategy})")
    steps = ["DELETE FROM t WHERE id = 2",  # 1.5 + 2.125 -> 1.5
             "UPDATE t SET n = 0.2 WHERE id = 3",  # 7 + 0.25 -> 0.2 + 0.25: scale 2 stays
             "DELETE FROM t WHERE id = 4",  # -> 0.2
             "INSERT INTO t VALUES (6, 3, 2.000, 6)",  # 1.50 + 2.000
             "UPDATE t SET n = 2 WHERE id = 6",  # -> 1.50 + 2
             "UPDATE t SET g = 1 WHERE id = 5"]  # 1.50 moves to 1.5's group: 3.00
    for step in steps:
        run(conn, step)
        for name, (query, cols) in views.items():
            if strategy == "on_demand":
                run(conn, f"REFRESH MATERIALIZED VIEW {name} INCREMENTAL")
                assert staleness(conn, name, "last_refresh_mode")[0] == "incremental"
            got, want = as_text(conn, name, query, cols)
            assert got == want, f"after {step}: {name}"


def test_pending_changes_count_each_changed_row_once(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW self2 AS SELECT a.id, b.v FROM t a JOIN t b ON a.g = b.g "
              "WITH (maintenance_strategy = on_demand)",
        "UPDATE t SET v = v + 1 WHERE id IN (1, 2)")
    assert staleness(conn, "self2", "pending_changes")[0] == 2


def test_renames_and_drops_of_what_a_view_reads_are_refused(base: heliosdb.Connection) -> None:
    """A view's stored query names the table and its columns: renaming them would break its refreshes and,
    for an immediate view, every write of the table. SELECT * reads every column."""
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW agg AS SELECT g, sum(v) AS s FROM t GROUP BY g "
              "WITH (maintenance_strategy = immediate)",
        "CREATE TABLE u (id int PRIMARY KEY, v int, w int)",
        "CREATE MATERIALIZED VIEW everything AS SELECT * FROM u WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW counted AS SELECT count(*) AS n, sum(v * 2) AS s FROM t "
        "WITH (maintenance_strategy = on_demand)")
    for ddl in ("ALTER TABLE t RENAME COLUMN v TO val", "ALTER TABLE t RENAME TO t2"):
        assert error_of(conn, ddl).sqlstate == "0A000"
    assert error_of(conn, "ALTER TABLE u DROP COLUMN w").sqlstate == "2BP01"
    # the views read g and v only; their stored SQL named every column, and is made again
    run(conn, "ALTER TABLE t RENAME COLUMN id TO ident", "ALTER TABLE t ADD COLUMN w int", "ALTER TABLE t DROP COLUMN w")
    run(conn, "INSERT INTO t VALUES (9, 1, 5)", "REFRESH MATERIALIZED VIEW counted")
    assert_view_equals_query(conn, "agg", "SELECT g, sum(v) FROM t GROUP BY g")
    assert_view_equals_query(conn, "counted", "SELECT count(*), sum(v * 2) FROM t")


def test_an_immediate_view_reads_only_immediate_views(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "CREATE MATERIALIZED VIEW up AS SELECT g, sum(v) AS s FROM t GROUP BY g "
              "WITH (maintenance_strategy = on_demand)")
    err = error_of(conn, "CREATE MATERIALIZED VIEW dn AS SELECT g, s FROM up WITH (maintenance_strategy = immediate)")
    assert err.sqlstate == "0A000" and "on_demand" in err.message
    run(conn, "ALTER MATERIALIZED VIEW up SET (maintenance_strategy = immediate)",
        "CREATE MATERIALIZED VIEW dn AS SELECT g, s FROM up WHERE s > 25 WITH (maintenance_strategy = immediate)",
        "INSERT INTO t VALUES (4, 1, 100)", "DELETE FROM t WHERE id = 3")
    assert_view_equals_query(conn, "dn", "SELECT g, sum(v) FROM t GROUP BY g HAVING sum(v) > 25")
    assert error_of(conn, "ALTER MATERIALIZED VIEW up SET (maintenance_strategy = incremental)").sqlstate == "0A000"
    assert staleness(conn, "up", "strategy")[0] == "immediate"


def test_a_view_created_in_a_transaction_sees_its_later_writes(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "BEGIN", "INSERT INTO t VALUES (50, 1, 5)",
        f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        "INSERT INTO t VALUES (51, 1, 7)", "COMMIT", "REFRESH MATERIALIZED VIEW a")
    assert_view_equals_query(conn, "a", Q_AGG)
    run(conn, f"CREATE MATERIALIZED VIEW b AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        "UPDATE t SET v = 0 WHERE id = 50", "REFRESH MATERIALIZED VIEW b")  # created alone: deltas as usual
    assert staleness(conn, "b", "last_refresh_mode")[0] == "incremental"
    assert_view_equals_query(conn, "b", Q_AGG)


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_a_view_whose_base_history_was_pruned_is_recomputed(base: heliosdb.Connection, connect, branch: str) -> None:
    """The garbage collector pruned base-table history the next delta would read: the view says it is stale
    and the next refresh recomputes it, instead of applying what is left of the delta."""
    run(base, "CREATE DATABASE BRANCH dev")
    conn = base if branch == "main" else connect("dev")
    run(conn, f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        f"ALTER DATABASE BRANCH {branch} SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)",
        "UPDATE t SET v = v + 100 WHERE id = 1", "UPDATE t SET v = v + 1 WHERE id = 1", "DELETE FROM t WHERE id = 2")
    time.sleep(1.2)
    run(conn, "INSERT INTO t VALUES (60, 1, 1)")  # a commit after the horizon, so that GC prunes up to it
    assert rows(conn, "SELECT heliosdb.gc()")[0][0] >= 1
    assert staleness(conn, "a", "status, pending_changes") == ("STALE", None)
    run(conn, "REFRESH MATERIALIZED VIEW a INCREMENTAL")
    assert staleness(conn, "a", "last_refresh_mode")[0] == "full"
    assert_view_equals_query(conn, "a", Q_AGG)


def test_refresh_inside_a_transaction_follows_it(base: heliosdb.Connection) -> None:
    conn = base
    run(conn, "INSERT INTO t SELECT g, g % 5, g FROM generate_series(10, 109) g",  # small deltas: incremental
        f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)")
    before = multiset(conn, "SELECT * FROM a")
    lsn_before = staleness(conn, "a", "last_refresh_lsn")[0]
    run(conn, "BEGIN", "UPDATE t SET v = v + 100 WHERE id = 1", "REFRESH MATERIALIZED VIEW a INCREMENTAL")
    assert_view_equals_query(conn, "a", Q_AGG, "inside the transaction")
    run(conn, "ROLLBACK")
    assert multiset(conn, "SELECT * FROM a") == before
    assert staleness(conn, "a", "last_refresh_lsn")[0] == lsn_before
    run(conn, "BEGIN", "UPDATE t SET v = v + 1 WHERE id = 2", "REFRESH MATERIALIZED VIEW a",
        "UPDATE t SET v = v + 1 WHERE id = 4", "COMMIT")
    # the write after the refresh has the refresh's LSN: no delta can tell it from the one before
    assert staleness(conn, "a", "last_refresh_mode, status, pending_changes") == ("incremental", "STALE", None)
    run(conn, "REFRESH MATERIALIZED VIEW a INCREMENTAL")
    assert_view_equals_query(conn, "a", Q_AGG, "after COMMIT")
    assert staleness(conn, "a", "last_refresh_mode, status") == ("full", "FRESH")
    # and as a statement of its own (one statement, see catalog/mv_upkeep.sql)
    run(conn, "DELETE FROM t WHERE id = 3", "REFRESH MATERIALIZED VIEW a")
    assert_view_equals_query(conn, "a", Q_AGG, "after a refresh of its own")
    assert staleness(conn, "a", "last_refresh_mode")[0] == "incremental"


def test_a_user_refresh_shows_refreshing_while_it_runs(base: heliosdb.Connection, connect) -> None:
    """Another session sees REFRESHING while a REFRESH (its own transaction) runs, here waiting for another
    refresher of the view (a session holding its refresh lock), and FRESH after it."""
    import threading

    conn = base
    run(conn, f"CREATE MATERIALIZED VIEW a AS {Q_AGG} WITH (maintenance_strategy = on_demand)",
        "INSERT INTO t VALUES (7, 3, 70)")
    other, watcher = connect(), connect()
    key = rows(other, "SELECT heliosdb._mv_lock_key(s.mv_id, s.branch_id) FROM heliosdb._mv_state s "
                      "JOIN heliosdb._mviews m ON m.id = s.mv_id WHERE m.name = 'a'")[0][0]
    run(other, f"SELECT pg_advisory_lock({int(key)})")
    errors_seen: list[BaseException] = []

    def refresh() -> None:
        try:
            run(conn, "REFRESH MATERIALIZED VIEW a")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors_seen.append(exc)

    worker = threading.Thread(target=refresh)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while staleness(watcher, "a", "status")[0] != "REFRESHING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert staleness(watcher, "a", "status")[0] == "REFRESHING"
    finally:
        run(other, f"SELECT pg_advisory_unlock({int(key)})")
        worker.join(30)
    assert not errors_seen, errors_seen
    assert staleness(watcher, "a", "status")[0] == "FRESH"
    assert_view_equals_query(watcher, "a", Q_AGG)
    # a REFRESH that finds nothing to do ends FRESH too
    run(conn, "REFRESH MATERIALIZED VIEW a")
    assert staleness(watcher, "a", "status")[0] == "FRESH"


@pytest.mark.parametrize("mode", ["", " FULL"])
def test_a_failed_user_refresh_sets_failed_and_upstream_failed(base: heliosdb.Connection, connect,
                                                               mode: str) -> None:
    conn = base
    frail = "SELECT id, 100 / v AS r FROM t"
    run(conn, f"CREATE MATERIALIZED VIEW frail AS {frail} WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW reader AS SELECT count(*) AS c, sum(r) AS s FROM frail "
        "WITH (maintenance_strategy = on_demand)",
        "UPDATE t SET v = 0 WHERE id = 2")
    before = multiset(conn, "SELECT * FROM frail")
    lsn_before = staleness(conn, "frail", "last_refresh_lsn")[0]
    err = error_of(conn, f"REFRESH MATERIALIZED VIEW frail{mode}")
    assert err.sqlstate == "22012"
    watcher = connect()
    got = rows(watcher, "SELECT name, status, last_error FROM heliosdb.mv_staleness ORDER BY name")
    assert got == [("frail", "FAILED", "division by zero"),
                   ("reader", "UPSTREAM_FAILED", 'input view "frail" failed to refresh')]
    # the failed refresh left nothing behind
    assert multiset(watcher, "SELECT * FROM frail") == before
    assert staleness(watcher, "frail", "last_refresh_lsn")[0] == lsn_before
    run(conn, "UPDATE t SET v = 5 WHERE id = 2", f"REFRESH MATERIALIZED VIEW frail{mode}")
    got = rows(watcher, "SELECT name, status, last_error FROM heliosdb.mv_staleness ORDER BY name")
    assert got == [("frail", "FRESH", None), ("reader", "STALE", None)]
    assert_view_equals_query(watcher, "frail", frail)


def test_a_refresh_in_a_transaction_shows_its_status_at_commit(base: heliosdb.Connection, connect) -> None:
    """Inside a transaction block the REFRESH is part of the transaction: other sessions see its outcome at
    COMMIT and nothing of it before; a failure aborts the transaction and, like it, leaves nothing."""
    conn, watcher = base, connect()
    run(conn, "CREATE MATERIALIZED VIEW frail AS SELECT id, 100 / v AS r FROM t "
              "WITH (maintenance_strategy = on_demand)", "UPDATE t SET v = 5 WHERE id = 2")
    run(conn, "BEGIN", "REFRESH MATERIALIZED VIEW frail")
    assert staleness(watcher, "frail", "status")[0] == "STALE"  # not committed yet
    run(conn, "COMMIT")
    assert staleness(watcher, "frail", "status")[0] == "FRESH"
    run(conn, "UPDATE t SET v = 0 WHERE id = 2", "BEGIN")
    assert error_of(conn, "REFRESH MATERIALIZED VIEW frail").sqlstate == "22012"
    assert error_of(conn, "SELECT 1").sqlstate == "25P02"
    run(conn, "ROLLBACK")
    assert staleness(watcher, "frail", "status, last_error") == ("STALE", None)
