"""Foreign keys hold on every branch as PostgreSQL holds them: checks, errors and ON DELETE/UPDATE actions.

The same script runs on plain PostgreSQL, on main, and on a child and a grandchild branch that
inherited the tables (where the branch's write trigger enforces them); the outcomes must agree.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import heliosdb
from tests.compare_support import assert_as_postgres, helios_executor

SETUP = [
    "CREATE TABLE c (id int PRIMARY KEY, name text)",
    "CREATE TABLE pair (x int, y int, UNIQUE (x, y))",
    "CREATE TABLE o (id int PRIMARY KEY, cid int REFERENCES c(id) ON DELETE CASCADE)",
    "CREATE TABLE r (id int PRIMARY KEY, cid int REFERENCES c(id))",
    "CREATE TABLE s (id int PRIMARY KEY, cid int DEFAULT 4 REFERENCES c(id) ON DELETE SET DEFAULT ON UPDATE CASCADE)",
    "CREATE TABLE n (id int PRIMARY KEY, a int, b int, FOREIGN KEY (a, b) REFERENCES pair (x, y) ON DELETE SET NULL)",
    "CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree(id) ON DELETE CASCADE)",
    "CREATE TABLE nf (id int PRIMARY KEY, a int, b int, FOREIGN KEY (a, b) REFERENCES pair (x, y) MATCH FULL)",
    "INSERT INTO c VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')",
    "INSERT INTO pair VALUES (1, 1), (2, 2)",
    "INSERT INTO o VALUES (10, 1), (11, 2)",
    "INSERT INTO r VALUES (20, 2)",
    "INSERT INTO s VALUES (30, 5)",
    "INSERT INTO n VALUES (40, 1, 1), (41, 2, 2), (42, NULL, 7)",
    "INSERT INTO tree VALUES (1, NULL), (2, 1), (3, 2), (4, NULL)",
]

SCRIPT = [
    "INSERT INTO o VALUES (12, 99)",  # no such key
    "INSERT INTO o VALUES (12, NULL)",  # MATCH SIMPLE: a NULL key is not checked
    "UPDATE o SET cid = 98 WHERE id = 12",
    "UPDATE o SET cid = 3 WHERE id = 12",
    "INSERT INTO n VALUES (43, 1, 2)",  # both columns together
    "INSERT INTO n VALUES (43, 1, NULL)",
    "DELETE FROM c WHERE id = 1",  # ON DELETE CASCADE
    "SELECT * FROM o ORDER BY id",
    "DELETE FROM c WHERE id = 2",  # NO ACTION: r still references it
    "UPDATE c SET id = 22 WHERE id = 2",
    "UPDATE c SET name = 'bb' WHERE id = 2",  # the key does not change: nothing to check
    "UPDATE c SET id = 55 WHERE id = 5",  # ON UPDATE CASCADE into s
    "SELECT * FROM s ORDER BY id",
    "DELETE FROM c WHERE id = 55",  # ON DELETE SET DEFAULT: s.cid = 4
    "SELECT * FROM s ORDER BY id",
    "DELETE FROM c WHERE id = 4",  # now referenced by s (NO ACTION on s? no: SET DEFAULT to 4 fails)
    "DELETE FROM pair WHERE x = 1",  # ON DELETE SET NULL on both columns
    "SELECT * FROM n ORDER BY id",
    "DELETE FROM tree WHERE id = 1",  # cascades down the tree
    "SELECT * FROM tree ORDER BY id",
    "DELETE FROM r",
    "DELETE FROM c WHERE id = 2",
    "SELECT * FROM c ORDER BY id",
    "SELECT * FROM o ORDER BY id",
    "INSERT INTO nf VALUES (1, 2, NULL)",  # MATCH FULL: all key columns NULL or none
    "INSERT INTO nf VALUES (1, NULL, NULL)",
]


def test_foreign_keys_on_main_and_on_inheriting_branches(plain: psycopg.Connection, conn: heliosdb.Connection,
                                                         connect: Any) -> None:
    def parent_unchanged(name: str) -> None:
        if name == "grandchild":  # its cascades stayed on it: its parent still equals main (not run yet)
            for t in ("c", "o", "s", "n", "tree"):
                query = f"SELECT * FROM {t} ORDER BY 1, 2"
                assert helios_executor(connect("child"))(query) == helios_executor(conn)(query), t

    expected = assert_as_postgres(plain, conn, connect, SETUP, SCRIPT, after=parent_unchanged)
    assert expected[0][1] == "23503" and expected[6] == ("ok", 1)  # the script exercises what it claims
    assert expected[-2][1] == "23503" and expected[-1] == ("ok", 1)


def test_branch_rows_keep_their_keys_inherited_from_the_fork(conn: heliosdb.Connection, connect: Any) -> None:
    main = helios_executor(conn)
    for stmt in SETUP:
        main(stmt)
    main("CREATE DATABASE BRANCH dev")
    main("DELETE FROM r")
    main("DELETE FROM c WHERE id = 2")  # on main only: dev still has c 2, and r 20 referencing it
    dev = helios_executor(connect("dev"))
    with pytest.raises(heliosdb.Error) as exc:
        dev("DELETE FROM c WHERE id = 2")
    assert (exc.value.sqlstate, exc.value.fields.get("table")) == ("23503", "r")  # the referencing table
    dev("INSERT INTO o VALUES (13, 2)")  # the key exists on dev
    assert dev("SELECT cid FROM o WHERE id = 13") == [(2,)]
    with pytest.raises(heliosdb.Error) as exc:
        main("INSERT INTO o VALUES (13, 2)")
    assert exc.value.sqlstate == "23503"


@pytest.mark.parametrize("where", ["main", "dev"])
def test_drop_table_a_foreign_key_depends_on(conn: heliosdb.Connection, connect: Any, where: str) -> None:
    main = helios_executor(conn)
    main("CREATE TABLE c (id int PRIMARY KEY)")
    main("CREATE TABLE o (id int PRIMARY KEY, cid int REFERENCES c(id))")
    main("INSERT INTO c VALUES (1)")
    main("CREATE DATABASE BRANCH dev")
    run = helios_executor(connect(where))
    with pytest.raises(heliosdb.Error) as exc:
        run("DROP TABLE c")
    assert (exc.value.sqlstate, exc.value.message) == ("2BP01", "cannot drop table c because other objects depend on it")
    run("INSERT INTO o VALUES (1, 1)")
    run("DROP TABLE c CASCADE")  # the constraint goes with it: o takes any key now
    run("INSERT INTO o VALUES (2, 7)")
    assert run("SELECT id, cid FROM o ORDER BY id") == [(1, 1), (2, 7)]
    other = helios_executor(connect("dev" if where == "main" else "main"))
    with pytest.raises(heliosdb.Error) as exc:  # the other branch keeps its table and its constraint
        other("INSERT INTO o VALUES (3, 7)")
    assert exc.value.sqlstate == "23503"


def test_renamed_tables_keep_their_rows_and_keys_on_a_branch(conn: heliosdb.Connection, connect: Any) -> None:
    main = helios_executor(conn)
    main("CREATE TABLE p (id int PRIMARY KEY)")
    main("CREATE TABLE q (id int PRIMARY KEY, pid int REFERENCES p)")
    main("CREATE DATABASE BRANCH dev")
    dev = helios_executor(connect("dev"))
    dev("ALTER TABLE p RENAME TO pp")
    dev("INSERT INTO pp VALUES (1)")  # used to fail: the write trigger still named the old view (42P01)
    dev("INSERT INTO q VALUES (1, 1)")
    dev("ALTER TABLE q RENAME TO qq")
    with pytest.raises(heliosdb.Error) as exc:
        dev("DELETE FROM pp")
    assert (exc.value.sqlstate, exc.value.detail) == ("23503", 'Key (id)=(1) is still referenced from table "qq".')
    with pytest.raises(heliosdb.Error) as exc:
        dev("INSERT INTO qq VALUES (2, 2)")
    assert exc.value.detail == 'Key (pid)=(2) is not present in table "pp".'
    assert main("SELECT count(*) FROM p") == [(0,)]


TRUNCATE_SCRIPT = [
    "TRUNCATE c",  # o, r, s reference it
    "TRUNCATE tree",  # references only itself
    "SELECT count(*) FROM tree",
    "TRUNCATE c, o, r",  # s still references c
    "TRUNCATE c CASCADE",
    "SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM o), (SELECT count(*) FROM s), (SELECT count(*) FROM n)",
    "TRUNCATE pair, n",
    "SELECT count(*) FROM pair",
]


def test_truncate_with_foreign_keys(plain: psycopg.Connection, conn: heliosdb.Connection, connect: Any) -> None:
    def same(want: tuple[Any, ...], have: tuple[Any, ...]) -> bool:
        if want[0] == "ok" and not isinstance(want[1], list):  # TRUNCATE's row count: -1 in psycopg, 0 here
            return have[0] == "ok"
        return have == want

    expected = assert_as_postgres(plain, conn, connect, SETUP, TRUNCATE_SCRIPT, same=same)
    assert expected[0][1] == "0A000" and expected[4] == ("ok", -1)  # the script exercises what it claims


DDL_SETUP = [
    "CREATE TABLE p (id int PRIMARY KEY, code text UNIQUE)",
    "CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p ON DELETE CASCADE, pcode text REFERENCES p (code) "
    "ON UPDATE CASCADE)",
    "CREATE TABLE c2 (id int PRIMARY KEY, pid int REFERENCES p)",
    "CREATE TABLE c3 (id int PRIMARY KEY, pid int REFERENCES p)",
    "INSERT INTO p VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
    "INSERT INTO c VALUES (10, 1, 'a'), (11, 2, 'b')",
    "INSERT INTO c2 VALUES (20, 3)",
    "INSERT INTO c3 VALUES (30, 4)",
]
DDL_SCRIPT = [
    "DELETE FROM p WHERE id = 2",  # c's CASCADE key and NO ACTION key both point at it: the cascade wins
    "SELECT id FROM c ORDER BY id",
    "ALTER TABLE p RENAME COLUMN code TO kode",  # the key that references it follows
    "INSERT INTO c VALUES (12, NULL, 'nope')",
    "UPDATE p SET kode = 'A' WHERE id = 1",  # ON UPDATE CASCADE through the renamed column
    "SELECT id, pcode FROM c ORDER BY id",
    "ALTER TABLE c2 DROP CONSTRAINT c2_pid_fkey",  # the parent stops checking it too
    "DELETE FROM p WHERE id = 3",
    "ALTER TABLE c3 DROP COLUMN pid",  # its key goes with the column
    "DELETE FROM p WHERE id = 4",
    "ALTER TABLE c RENAME CONSTRAINT c_pid_fkey TO c_parent",
    "DELETE FROM c",
    "DROP TABLE p",  # every dependent key in the detail
    "DROP TABLE c",
    "DELETE FROM p",  # c's keys went with it
    "SELECT count(*) FROM p",
]


def test_foreign_keys_follow_ddl(plain: psycopg.Connection, conn: heliosdb.Connection, connect: Any) -> None:
    expected = assert_as_postgres(plain, conn, connect, DDL_SETUP, DDL_SCRIPT)
    assert expected[0] == ("ok", 1) and expected[3][1] == "23503" and expected[12][1] == "2BP01"


# ALTER TABLE ... ADD FOREIGN KEY between tables the branch inherited (as Django and Alembic migrations do)
ADD_KEY_SETUP = [
    "CREATE TABLE p (id int PRIMARY KEY, code text UNIQUE, x int)",
    "CREATE TABLE c (id int PRIMARY KEY, pid int, pcode text, note text)",
    "INSERT INTO p VALUES (1, 'a', 1), (2, 'b', 2)",
    "INSERT INTO c VALUES (10, 1, 'a', 'x'), (11, 2, 'b', 'y'), (12, 99, NULL, 'z')",
]
ADD_KEY_SCRIPT = [
    "ALTER TABLE c ADD CONSTRAINT c_pid_fkey FOREIGN KEY (pid) REFERENCES p",  # the rows are checked: 99
    "ALTER TABLE c ADD FOREIGN KEY (pid) REFERENCES p (x)",  # no unique constraint on p (x): 42830
    "ALTER TABLE c ADD FOREIGN KEY (note) REFERENCES p (id)",  # 42804
    "ALTER TABLE c ADD FOREIGN KEY (pid) REFERENCES nowhere",
    "DELETE FROM c WHERE id = 12",
    "ALTER TABLE c ADD CONSTRAINT c_pid_fkey FOREIGN KEY (pid) REFERENCES p ON DELETE CASCADE",
    "ALTER TABLE c ADD FOREIGN KEY (pcode) REFERENCES p (code) ON UPDATE CASCADE DEFERRABLE",
    "INSERT INTO c VALUES (13, 5, NULL, 'no such parent')",
    "DELETE FROM p WHERE id = 1",  # cascades to c
    "UPDATE p SET code = 'bb' WHERE id = 2",  # cascades to c.pcode
    "SELECT * FROM c ORDER BY id",
    "ALTER TABLE c ADD CONSTRAINT c_self FOREIGN KEY (pid) REFERENCES c (id) NOT VALID",  # 2 is no id of c
    "INSERT INTO c VALUES (15, 11, NULL, 'refers to c 11')",
    "INSERT INTO c VALUES (16, 2, NULL, 'no c 2')",
    "ALTER TABLE c VALIDATE CONSTRAINT c_self",
    "ALTER TABLE c DROP CONSTRAINT c_self",
    "ALTER TABLE c DROP CONSTRAINT c_pid_fkey",
    "DELETE FROM p WHERE id = 2",  # c_pcode_fkey is NO ACTION: c 11 still refers to 'bb'
    "INSERT INTO c VALUES (17, 42, NULL, 'pid is free again')",
]


def test_add_foreign_key_to_inherited_tables(plain: psycopg.Connection, conn: heliosdb.Connection,
                                             connect: Any) -> None:
    def main_unchanged(name: str) -> None:
        if name != "main":  # the branch's key is its own: main's c has none
            helios_executor(conn)("INSERT INTO c VALUES (90, 12345, 'zz', 'main')")
            helios_executor(conn)("DELETE FROM c WHERE id = 90")

    expected = assert_as_postgres(plain, conn, connect, ADD_KEY_SETUP, ADD_KEY_SCRIPT, after=main_unchanged)
    assert [e[1] for e in expected[:4]] == ["23503", "42830", "42804", "42P01"]
    assert expected[7][1] == "23503" and expected[10] == ("ok", [(11, 2, "bb", "y")])
    assert expected[13][1] == "23503" and expected[14][1] == "23503" and expected[17][1] == "23503"
    assert expected[18][0] == "ok"


def test_branch_only_refusals(conn: heliosdb.Connection, connect: Any) -> None:
    main = helios_executor(conn)
    main("CREATE TABLE s (id serial PRIMARY KEY, v int)")
    main("INSERT INTO s (v) VALUES (1)")
    main("CREATE DATABASE BRANCH dev")
    dev = helios_executor(connect("dev"))
    with pytest.raises(heliosdb.Error) as exc:  # the sequence is every branch's: restarting it would repeat ids
        dev("TRUNCATE s RESTART IDENTITY")
    assert exc.value.sqlstate == "0A000"
    dev("ALTER TABLE s ADD CONSTRAINT small CHECK (v < 0) NOT VALID")  # existing rows are not checked
    with pytest.raises(heliosdb.Error) as exc:
        dev("INSERT INTO s (v) VALUES (5)")
    assert exc.value.sqlstate == "23514"


# A table created on a branch, with keys to tables the branch inherited (on main: native keys).
NEW_TABLE_SETUP = [
    "CREATE TABLE a (id int PRIMARY KEY, name text UNIQUE)",
    "CREATE TABLE pr (x int, y int, UNIQUE (x, y))",
    "INSERT INTO a VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    "INSERT INTO pr VALUES (1, 1), (2, 2)",
]
NEW_TABLE_SCRIPT = [
    "INSERT INTO a VALUES (4, 'written here')",
    "CREATE TABLE b (id int PRIMARY KEY, aid int REFERENCES a ON DELETE CASCADE, note text)",
    "CREATE TABLE m (id int PRIMARY KEY, x int, y int, CONSTRAINT m_xy FOREIGN KEY (x, y) REFERENCES pr (x, y) "
    "ON DELETE SET NULL)",
    "CREATE TABLE bad (id int REFERENCES pr (x))",  # no unique constraint on pr (x): 42830
    "CREATE TABLE bad (id text REFERENCES a (id))",  # 42804
    "INSERT INTO b VALUES (1, 4, 'to a row of this branch'), (2, 1, 'to an inherited row')",
    "INSERT INTO b VALUES (3, 99, 'no such key')",
    "UPDATE b SET aid = 98 WHERE id = 2",
    "UPDATE b SET aid = 2 WHERE id = 2",
    "INSERT INTO b VALUES (3, NULL, 'a NULL key is not checked')",
    "INSERT INTO m VALUES (1, 1, 1), (2, 2, 2), (3, NULL, 5)",
    "INSERT INTO m VALUES (4, 1, 2)",
    "DELETE FROM a WHERE id = 4",  # ON DELETE CASCADE into b
    "SELECT * FROM b ORDER BY id",
    "DELETE FROM pr WHERE x = 1",  # ON DELETE SET NULL into m
    "SELECT * FROM m ORDER BY id",
    "UPDATE a SET id = 20 WHERE id = 2",  # NO ACTION: b still references 2
    "DELETE FROM a WHERE id = 2",
    "UPDATE a SET name = 'bb' WHERE id = 2",  # the key stays: nothing to check
    "CREATE TABLE d (id int PRIMARY KEY, aname text)",
    "ALTER TABLE d ADD CONSTRAINT d_aname_fkey FOREIGN KEY (aname) REFERENCES a (name) DEFERRABLE INITIALLY DEFERRED",
    "BEGIN",
    "INSERT INTO d VALUES (1, 'late')",  # checked at commit: the parent comes later in the transaction
    "INSERT INTO a VALUES (50, 'late')",
    "COMMIT",
    "BEGIN",
    "INSERT INTO d VALUES (2, 'never')",
    "COMMIT",
    "BEGIN",
    "INSERT INTO d VALUES (3, 'fixed')",
    "UPDATE d SET aname = 'a' WHERE id = 3",  # the row as written first no longer is: only 'a' is checked
    "COMMIT",
    "SELECT * FROM d ORDER BY id",
    "ALTER TABLE d RENAME COLUMN aname TO a_name",
    "INSERT INTO d VALUES (4, 'nope')",
    "ALTER TABLE d DROP CONSTRAINT d_aname_fkey",
    "INSERT INTO d VALUES (4, 'nope')",
    "DROP TABLE a",  # b references it: 2BP01
    "DROP TABLE b",
    "DELETE FROM a WHERE id = 2",
    "SELECT * FROM a ORDER BY id",
    "CREATE TABLE e (id int PRIMARY KEY)",
    "INSERT INTO e VALUES (1), (3), (77)",
    "ALTER TABLE e ADD CONSTRAINT e_a FOREIGN KEY (id) REFERENCES a",  # the rows are checked: 77 is missing
    "DELETE FROM e WHERE id = 77",
    "ALTER TABLE e ADD CONSTRAINT e_a FOREIGN KEY (id) REFERENCES a",
    "ALTER TABLE e ADD COLUMN aid int REFERENCES a ON DELETE SET NULL",
    "INSERT INTO e VALUES (51, 3)",
    "INSERT INTO e VALUES (50, 3)",
    "UPDATE e SET aid = 1 WHERE id = 1",
    "DELETE FROM a WHERE id = 3",  # e's id 3 references it (NO ACTION)
    "DELETE FROM e WHERE id = 3",
    "DELETE FROM a WHERE id = 3",  # SET NULL in e.aid
    "SELECT * FROM e ORDER BY id",
    "CREATE TABLE f (id int PRIMARY KEY, x int, y int, FOREIGN KEY (x, y) REFERENCES pr (x, y) MATCH FULL)",
    "INSERT INTO f VALUES (1, 2, NULL)",  # MATCH FULL: all NULL or none
    "INSERT INTO f VALUES (1, NULL, NULL), (2, 2, 2)",
    "CREATE TABLE g (id int PRIMARY KEY, aid int)",
    "INSERT INTO g VALUES (1, 1), (2, 999)",
    "ALTER TABLE g ADD CONSTRAINT g_aid FOREIGN KEY (aid) REFERENCES a NOT VALID",  # the rows are not checked
    "INSERT INTO g VALUES (3, 998)",  # new rows are
    "ALTER TABLE g VALIDATE CONSTRAINT g_aid",
    "DELETE FROM g WHERE id = 2",
    "ALTER TABLE g VALIDATE CONSTRAINT g_aid",
    "ALTER TABLE g DROP CONSTRAINT g_aid",
    "INSERT INTO g VALUES (3, 998)",
    "CREATE TABLE h (id int PRIMARY KEY, aid int REFERENCES a DEFERRABLE INITIALLY DEFERRED)",
    "BEGIN", "INSERT INTO h VALUES (1, 777)", "SET CONSTRAINTS h_aid_fkey IMMEDIATE", "ROLLBACK",
    "INSERT INTO a VALUES (60, 'sixty')", "INSERT INTO h VALUES (2, 60)",
    "BEGIN", "SET CONSTRAINTS h_aid_fkey IMMEDIATE", "DELETE FROM a WHERE id = 60", "ROLLBACK",  # the parent side too
    "BEGIN", "DELETE FROM a WHERE id = 60", "DELETE FROM h WHERE id = 2", "COMMIT",
]


def test_a_new_table_references_tables_the_branch_inherited(plain: psycopg.Connection, conn: heliosdb.Connection,
                                                             connect: Any) -> None:
    def others_unchanged(name: str) -> None:
        if name == "grandchild":  # its tables, rows and cascades stayed on it (main runs the script last)
            for other in (conn, connect("child")):
                run = helios_executor(other)
                assert run("SELECT * FROM a ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]
                with pytest.raises(heliosdb.Error) as exc:
                    run("SELECT * FROM b")
                assert exc.value.sqlstate == "42P01"

    expected = assert_as_postgres(plain, conn, connect, NEW_TABLE_SETUP, NEW_TABLE_SCRIPT, after=others_unchanged)
    assert [e[1] for e in expected[3:5]] == ["42830", "42804"] and expected[6][1] == "23503"
    assert expected[13] == ("ok", [(2, 2, "to an inherited row"), (3, None, "a NULL key is not checked")])
    assert expected[24] == ("ok", -1) and expected[27][1] == "23503" and expected[31] == ("ok", -1)
    assert expected[34][1] == "23503" and expected[36] == ("ok", 1) and expected[37][1] == "2BP01"
    assert expected[43][1] == "23503" and expected[45] == ("ok", -1) and expected[47][1] == "23503"
    assert expected[50][1] == "23503" and expected[53] == ("ok", [(1, 1), (50, None)])
    assert expected[55][1] == "23503" and expected[56] == ("ok", 2) and expected[59] == ("ok", -1)
    assert expected[60][1] == "23503" and expected[61][1] == "23503" and expected[63] == ("ok", -1)
    assert expected[65] == ("ok", 1) and expected[68] == ("ok", 1) and expected[69][1] == "23503"
    assert expected[75][1] == "23503" and expected[80] == ("ok", -1)


def test_a_key_to_an_inherited_table_reaches_later_branches_and_main(conn: heliosdb.Connection, connect: Any) -> None:
    main = helios_executor(conn)
    main("CREATE TABLE a (id int PRIMARY KEY)")
    main("INSERT INTO a VALUES (1), (2)")
    main("CREATE DATABASE BRANCH dev")
    dev = helios_executor(connect("dev"))
    dev("CREATE TABLE b (id int PRIMARY KEY, aid int NOT NULL)")
    dev("ALTER TABLE b ADD CONSTRAINT b_aid_fkey FOREIGN KEY (aid) REFERENCES a (id) ON DELETE CASCADE "
        "DEFERRABLE INITIALLY DEFERRED")
    dev("INSERT INTO b VALUES (1, 1), (2, 2)")
    dev("CREATE DATABASE BRANCH later")
    later = helios_executor(connect("later"))  # inherits both tables and the key
    with pytest.raises(heliosdb.Error) as exc:
        later("INSERT INTO b VALUES (3, 7)")
    assert exc.value.sqlstate == "23503"
    later("DELETE FROM a WHERE id = 1")
    assert later("SELECT * FROM b") == [(2, 2)]
    assert dev("SELECT * FROM b ORDER BY id") == [(1, 1), (2, 2)]  # the cascade stayed on `later`
    main("MERGE DATABASE BRANCH dev INTO main")
    assert main("SELECT * FROM b ORDER BY id") == [(1, 1), (2, 2)]
    main("BEGIN")
    main("INSERT INTO b VALUES (3, 3)")  # deferred on main too: the key is PostgreSQL's there
    main("INSERT INTO a VALUES (3)")
    main("COMMIT")
    main("DELETE FROM a WHERE id = 2")  # ON DELETE CASCADE
    assert main("SELECT * FROM b ORDER BY id") == [(1, 1), (3, 3)]
    later("ALTER TABLE a RENAME TO a2")  # the key's check and action name the renamed table's view
    with pytest.raises(heliosdb.Error) as exc:
        later("INSERT INTO b VALUES (9, 7)")
    assert exc.value.sqlstate == "23503" and exc.value.detail == 'Key (aid)=(7) is not present in table "a2".'
    later("DELETE FROM a2 WHERE id = 2")
    assert later("SELECT * FROM b") == []


RENAME_SCRIPT = [
    "CREATE TABLE b (id int PRIMARY KEY, aid int REFERENCES a ON DELETE CASCADE)",
    "INSERT INTO b VALUES (1, 1), (2, 2)",
    "ALTER TABLE a RENAME COLUMN id TO ident",
    "INSERT INTO b VALUES (3, 7)",
    "DELETE FROM a WHERE ident = 2",
    "ALTER TABLE b RENAME COLUMN aid TO a_id",
    "INSERT INTO b VALUES (3, 7)",
    "INSERT INTO b VALUES (3, 3)",
    "DELETE FROM a WHERE ident = 1",
    "SELECT * FROM b ORDER BY id",
]


def test_a_key_to_an_inherited_table_follows_renamed_columns(plain: psycopg.Connection, conn: heliosdb.Connection,
                                                              connect: Any) -> None:
    expected = assert_as_postgres(plain, conn, connect, NEW_TABLE_SETUP, RENAME_SCRIPT)
    assert [expected[i][1] for i in (3, 6)] == ["23503"] * 2 and expected[9] == ("ok", [(3, 3)])


DEFERRED_SETUP = [
    "CREATE TABLE p (id int PRIMARY KEY)",
    "CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE d (id int PRIMARY KEY, pid int REFERENCES p DEFERRABLE)",  # INITIALLY IMMEDIATE
    "INSERT INTO p VALUES (1), (2)",
    "INSERT INTO c VALUES (1, 1)",
    "INSERT INTO d VALUES (1, 2)",
]
DEFERRED_SCRIPT = [
    "BEGIN", "INSERT INTO c VALUES (2, 5)", "INSERT INTO p VALUES (5)", "COMMIT",  # the parent comes later
    "BEGIN", "INSERT INTO c VALUES (3, 6)", "COMMIT",  # 23503 at commit
    "INSERT INTO d VALUES (2, 7)",  # at once
    "BEGIN", "SET CONSTRAINTS ALL DEFERRED", "INSERT INTO d VALUES (2, 7)", "INSERT INTO p VALUES (7)", "COMMIT",
    "BEGIN", "DELETE FROM p WHERE id = 1", "DELETE FROM c WHERE id = 1", "COMMIT",  # NO ACTION waits for commit
    "BEGIN", "DELETE FROM p WHERE id = 5", "COMMIT",  # 23503 at commit
    "BEGIN", "INSERT INTO c VALUES (4, 9)", "SET CONSTRAINTS ALL IMMEDIATE", "ROLLBACK",  # 23503 at the SET
    "BEGIN", "SET CONSTRAINTS ALL IMMEDIATE", "INSERT INTO c VALUES (4, 9)", "ROLLBACK",  # 23503 at once
    "BEGIN", "INSERT INTO c VALUES (4, 9)", "UPDATE c SET pid = 2 WHERE id = 4", "COMMIT",  # fixed before commit
    "DELETE FROM p WHERE id = 2",  # d references it, checked at once
    "SELECT * FROM c ORDER BY id",
    "SELECT * FROM d ORDER BY id",
    "SELECT * FROM p ORDER BY id",
    "BEGIN", "INSERT INTO c VALUES (5, 9)", "SET CONSTRAINTS c_pid_fkey IMMEDIATE", "ROLLBACK",  # 23503 at the SET
    "BEGIN", "SET CONSTRAINTS d_pid_fkey DEFERRED", "INSERT INTO d VALUES (3, 11)", "INSERT INTO p VALUES (11)",
    "COMMIT",
    "BEGIN", "SET CONSTRAINTS p_pkey DEFERRED", "ROLLBACK",  # 42809: not deferrable
    "BEGIN", "SET CONSTRAINTS no_such_key DEFERRED", "ROLLBACK",  # 42704
    "SELECT * FROM d ORDER BY id",
    # many deferred checks at commit: the first failing row is named
    "BEGIN", "INSERT INTO c SELECT g, 5 FROM generate_series(100, 150) g", "INSERT INTO c VALUES (151, 404)",
    "INSERT INTO c SELECT g, 5 FROM generate_series(152, 160) g", "COMMIT",
    "BEGIN", "INSERT INTO c VALUES (170, 405)", "DELETE FROM c WHERE id = 170", "COMMIT",  # gone before commit
    "BEGIN", "INSERT INTO c VALUES (171, 406)", "SAVEPOINT s", "SET CONSTRAINTS ALL IMMEDIATE", "ROLLBACK TO s",
    "UPDATE c SET pid = 5 WHERE id = 171", "COMMIT",  # fixed after the failed SET: only the new key is checked
    "SELECT count(*), sum(pid) FROM c",
    "BEGIN", "SET CONSTRAINTS c_pid_fkey IMMEDIATE", "SET CONSTRAINTS c_pid_fkey DEFERRED",  # deferred again
    "INSERT INTO c VALUES (180, 42)", "INSERT INTO p VALUES (42)", "COMMIT",
]


def test_deferrable_foreign_keys_on_every_branch(plain: psycopg.Connection, conn: heliosdb.Connection,
                                                connect: Any) -> None:
    expected = assert_as_postgres(plain, conn, connect, DEFERRED_SETUP, DEFERRED_SCRIPT)
    assert expected[6][1] == "23503" and expected[7][1] == "23503" and expected[12] == ("ok", -1)
    assert expected[16] == ("ok", -1) and expected[19][1] == "23503" and expected[22][1] == "23503"
    assert expected[26][1] == "23503" and expected[31] == ("ok", -1) and expected[32][1] == "23503"
    assert expected[38][1] == "23503" and expected[44] == ("ok", -1) and expected[46][1] == "42809"
    assert expected[49][1] == "42704" and expected[51] == ("ok", [(1, 2), (2, 7), (3, 11)])
    assert expected[56][1] == "23503" and expected[56][3] == 'Key (pid)=(404) is not present in table "p".'
    assert expected[60] == ("ok", -1) and expected[64][1] == "23503" and expected[67] == ("ok", -1)
    assert expected[72] == ("ok", 1) and expected[74] == ("ok", -1)
