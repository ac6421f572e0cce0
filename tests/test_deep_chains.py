"""Deep ancestries: a branch 30 generations down reads, writes and merges like a plain table."""

from __future__ import annotations

import random

import heliosdb


def rows(conn: heliosdb.Connection, sql: str) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchall()


def run(conn: heliosdb.Connection, *stmts: str) -> None:
    cur = conn.cursor()
    for s in stmts:
        cur.execute(s)


DEPTH = 30


def _model_rows(keyed: dict[int, list], extra: bool) -> list[tuple]:
    return sorted(tuple(v if extra else v[:2]) for v in keyed.values())


def test_thirty_generations_read_like_a_plain_table(conn: heliosdb.Connection) -> None:
    """Updates, deletes and re-inserts at every level; a column added mid-chain; a table rooted mid-chain."""
    rnd = random.Random(8)
    run(conn, "CREATE TABLE k (id int PRIMARY KEY, v int)", "CREATE TABLE d (g int, v int)")
    keyed: dict[int, list] = {}  # id -> [id, v(, c)]
    dup: list[list[int]] = []  # multiset of (g, v): no primary key, duplicates allowed
    mid: dict[int, int] = {}  # table m, created at generation 7
    extra = False
    heads: dict[int, list[tuple]] = {}
    for gen in range(DEPTH + 1):
        for _ in range(4):
            i = rnd.randrange(40)  # re-inserts of deleted keys come up often
            if i in keyed:
                op = rnd.choice(["update", "delete"])
                if op == "update":
                    run(conn, f"UPDATE k SET v = v + {gen + 1} WHERE id = {i}")
                    keyed[i][1] += gen + 1
                else:
                    run(conn, f"DELETE FROM k WHERE id = {i}")
                    del keyed[i]
            else:
                run(conn, f"INSERT INTO k (id, v) VALUES ({i}, {gen})")
                keyed[i] = [i, gen] + (["x"] if extra else [])
        g = rnd.randrange(5)
        run(conn, f"INSERT INTO d VALUES ({g}, {gen}), ({g}, {gen})")
        dup += [[g, gen], [g, gen]]
        if gen % 3 == 1:
            g = rnd.randrange(5)
            run(conn, f"UPDATE d SET v = v * 2 WHERE g = {g}")
            dup = [[a, b * 2] if a == g else [a, b] for a, b in dup]
        if gen % 4 == 2:
            g = rnd.randrange(5)
            run(conn, f"DELETE FROM d WHERE g = {g} AND v % 3 = 0")
            dup = [[a, b] for a, b in dup if not (a == g and b % 3 == 0)]
        if gen == 7:
            run(conn, "CREATE TABLE m (id int PRIMARY KEY, w text)")
        if gen >= 7:
            j = rnd.randrange(8)
            if j in mid:
                run(conn, f"DELETE FROM m WHERE id = {j}")
                del mid[j]
            else:
                run(conn, f"INSERT INTO m VALUES ({j}, 'w{gen}')")
                mid[j] = gen
            if mid and gen % 2:
                j = min(mid)
                run(conn, f"UPDATE m SET w = 'u{gen}' WHERE id = {j}")
                mid[j] = -gen
        if gen == 12:
            run(conn, "ALTER TABLE k ADD COLUMN c text DEFAULT 'x'")
            extra = True
            for v in keyed.values():
                v.append("x")
        if extra and gen % 5 == 0:
            run(conn, f"UPDATE k SET c = 'c{gen}' WHERE id % 5 = {gen % 5}")
            for v in keyed.values():
                if v[0] % 5 == gen % 5:
                    v[2] = f"c{gen}"
        cols = "id, v, c" if extra else "id, v"
        assert rows(conn, f"SELECT {cols} FROM k ORDER BY id") == _model_rows(keyed, extra), gen
        assert rows(conn, "SELECT g, v FROM d ORDER BY g, v") == sorted(tuple(x) for x in dup), gen
        heads[gen] = _model_rows(keyed, extra)
        if gen < DEPTH:
            run(conn, f"CREATE DATABASE BRANCH g{gen + 1}", f"USE BRANCH g{gen + 1}")
    want_m = sorted((j, f"u{-g}" if g < 0 else f"w{g}") for j, g in mid.items())
    assert rows(conn, "SELECT id, w FROM m ORDER BY id") == want_m
    # aggregates, joins and key lookups over the whole chain
    assert rows(conn, "SELECT count(*), sum(v) FROM k") == [(len(keyed), sum(v[1] for v in keyed.values()))]
    some = next(iter(sorted(keyed)))
    assert rows(conn, f"SELECT v FROM k WHERE id = {some}") == [(keyed[some][1],)]
    assert rows(conn, "SELECT count(*) FROM k JOIN d ON d.g = k.id % 5") == [
        (sum(1 for v in keyed.values() for x in dup if x[0] == v[0] % 5),)
    ]
    # every ancestor's head, read from the deepest branch (columns as that branch had them)
    for gen in range(0, DEPTH, 5):
        name = "main" if gen == 0 else f"g{gen}"
        width = 3 if gen >= 12 else 2
        got = rows(conn, f"SELECT * FROM k AS OF BRANCH {name} ORDER BY id")
        assert got == [r[:width] for r in heads[gen]], gen


def test_writes_at_depth_keep_constraints_and_merge_back(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text UNIQUE)",
        "INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i")
    for gen in range(1, 21):
        run(conn, f"CREATE DATABASE BRANCH d{gen}", f"USE BRANCH d{gen}",
            f"UPDATE t SET v = 'g{gen}' WHERE id = {gen}", f"DELETE FROM t WHERE id = {gen + 50}",
            f"INSERT INTO t VALUES ({gen + 1000}, 'n{gen}')")
    # a key deleted 19 levels up, re-inserted here; a unique value from 15 levels up is still taken
    run(conn, "INSERT INTO t VALUES (51, 'again')")
    try:
        run(conn, "INSERT INTO t VALUES (5000, 'g5')")
        raise AssertionError("duplicate accepted")
    except heliosdb.IntegrityError as exc:
        assert exc.sqlstate == "23505"
    try:
        run(conn, "UPDATE t SET id = 1001 WHERE id = 2")
        raise AssertionError("duplicate key accepted")
    except heliosdb.IntegrityError as exc:
        assert exc.sqlstate == "23505"
    want = sorted(
        [(i, f"g{i}" if i <= 20 else f"v{i}") for i in range(1, 101) if not 51 <= i <= 70]
        + [(51, "again")] + [(1000 + g, f"n{g}") for g in range(1, 21)]
    )
    assert rows(conn, "SELECT id, v FROM t ORDER BY id") == want
    main = connect("main")
    run(main, "MERGE DATABASE BRANCH d20 INTO main")
    assert rows(main, "SELECT id, v FROM t ORDER BY id") == want


def test_unique_index_with_sort_order_on_a_branch(conn: heliosdb.Connection) -> None:
    # sqllogictest's index/ files create such indexes after many generations (found by mode 4)
    run(conn, "CREATE TABLE s (a int, b int)", "INSERT INTO s VALUES (1, 1), (2, 2)",
        "CREATE DATABASE BRANCH k1", "USE BRANCH k1",
        "CREATE UNIQUE INDEX s_ab ON s (a DESC, b NULLS FIRST)", "CREATE INDEX s_b ON s (b DESC NULLS LAST)")
    try:
        run(conn, "INSERT INTO s VALUES (1, 1)")
        raise AssertionError("duplicate accepted")
    except heliosdb.IntegrityError as exc:
        assert exc.sqlstate == "23505"
    run(conn, "INSERT INTO s VALUES (1, 2)")
    assert rows(conn, "SELECT a, b FROM s ORDER BY a, b") == [(1, 1), (1, 2), (2, 2)]
