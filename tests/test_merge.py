"""Branch merges: three-way cell-level merge, every conflict kind and strategy, MANUAL, DRY RUN, schema."""

from __future__ import annotations

import random

import pytest

import heliosdb
from tests.test_branches import rows, run, sqlstate


@pytest.fixture
def pair(conn: heliosdb.Connection, connect) -> tuple[heliosdb.Connection, heliosdb.Connection]:
    """main and a child 'dev' that share three accounts."""
    run(conn, "CREATE TABLE acc (id int PRIMARY KEY, owner text NOT NULL, bal int CHECK (bal >= 0), "
              "email text UNIQUE, hits int DEFAULT 0)",
        "INSERT INTO acc VALUES (1, 'ann', 10, 'a@x', 0), (2, 'bob', 20, 'b@x', 0), (3, 'cat', 30, 'c@x', 0)",
        "CREATE DATABASE BRANCH dev")
    return conn, connect("dev")


def acc(conn: heliosdb.Connection) -> list[tuple]:
    return rows(conn, "SELECT id, owner, bal, email, hits FROM acc ORDER BY id")


def test_manual_without_conflicts_is_applied_at_once_in_the_pending_shape(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 11 WHERE id = 1", "DELETE FROM acc WHERE id = 3")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")
    assert [d.name for d in cur.description] == ["merge_id", "strategy", "conflicts", "conflicts_table"]
    merge_id, strategy, conflicts, table = cur.fetchall()[0]
    assert (strategy, conflicts, table) == ("MANUAL", 0, None)
    assert acc(main) == [(1, "ann", 11, "a@x", 0), (2, "bob", 20, "b@x", 0)]
    assert rows(main, f"SELECT state FROM heliosdb.merges WHERE id = {merge_id}") == [("completed",)]


def test_non_conflicting_changes_and_cell_level_auto_merge(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 11 WHERE id = 1", "DELETE FROM acc WHERE id = 3",
        "INSERT INTO acc VALUES (4, 'dan', 40, 'd@x', 0)")
    run(main, "UPDATE acc SET owner = 'ANN' WHERE id = 1", "UPDATE acc SET hits = 9 WHERE id = 2")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main")
    result = cur.fetchall()
    assert result[0][1:5] == ("ABORT", "acc", 3, 0)
    assert acc(main) == [(1, "ANN", 11, "a@x", 0), (2, "bob", 20, "b@x", 9), (4, "dan", 40, "d@x", 0)]
    # the source is unchanged by a merge into its parent
    assert acc(dev) == [(1, "ann", 11, "a@x", 0), (2, "bob", 20, "b@x", 0), (4, "dan", 40, "d@x", 0)]
    log = rows(main, "SELECT source, target, strategy, state, result_lsn = heliosdb.current_lsn() FROM heliosdb.merges")
    assert log == [("dev", "main", "ABORT", "completed", True)]
    assert rows(main, "SELECT count(*) FROM heliosdb.audit_log WHERE statement LIKE 'MERGE%'") == [(1,)]


def test_identical_changes_are_not_conflicts(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 5 WHERE id = 1", "DELETE FROM acc WHERE id = 2")
    run(main, "UPDATE acc SET bal = 5 WHERE id = 1", "DELETE FROM acc WHERE id = 2")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert acc(main) == [(1, "ann", 5, "a@x", 0), (3, "cat", 30, "c@x", 0)]


def _conflicted(main: heliosdb.Connection, dev: heliosdb.Connection) -> None:
    run(dev, "UPDATE acc SET bal = 100 WHERE id = 1",      # concurrent update (bal)
        "UPDATE acc SET bal = 200 WHERE id = 2",          # update vs delete
        "DELETE FROM acc WHERE id = 3")                   # delete vs update
    run(main, "UPDATE acc SET bal = 111 WHERE id = 1", "DELETE FROM acc WHERE id = 2",
        "UPDATE acc SET owner = 'CAT' WHERE id = 3")


def test_abort_is_the_default_and_changes_nothing(pair) -> None:
    main, dev = pair
    _conflicted(main, dev)
    before = acc(main)
    try:
        main.cursor().execute("MERGE DATABASE BRANCH dev INTO main")
    except heliosdb.Error as exc:
        assert exc.sqlstate == "HD010"
        assert "3 unresolved conflict" in exc.message
        assert "concurrent_update" in (exc.detail or "") and "update_delete" in (exc.detail or "")
    else:
        raise AssertionError("conflicting merge succeeded")
    assert acc(main) == before
    assert rows(main, "SELECT count(*) FROM heliosdb.merges WHERE state = 'completed'") == [(0,)]


def test_ours_theirs_and_last_write_wins(pair, connect) -> None:
    main, dev = pair
    _conflicted(main, dev)
    run(main, "CREATE DATABASE BRANCH t_ours", "CREATE DATABASE BRANCH t_theirs")
    run(main, "MERGE DATABASE BRANCH dev INTO t_ours USING STRATEGY OURS")
    assert acc(connect("t_ours")) == [(1, "ann", 111, "a@x", 0), (3, "CAT", 30, "c@x", 0)]
    run(main, "MERGE DATABASE BRANCH dev INTO t_theirs USING STRATEGY THEIRS")
    assert acc(connect("t_theirs")) == [(1, "ann", 100, "a@x", 0), (2, "bob", 200, "b@x", 0)]
    # main wrote last in every conflicting row: it wins everywhere
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY LAST_WRITE_WINS")
    assert acc(main) == [(1, "ann", 111, "a@x", 0), (3, "CAT", 30, "c@x", 0)]


def test_rule_based_with_overlapping_patterns(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET hits = 5, bal = 15, owner = 'ann-dev' WHERE id = 1")
    run(main, "UPDATE acc SET hits = 3, bal = 12, owner = 'ann-main' WHERE id = 1")
    run(main, "CREATE CONFLICT RESOLUTION rs (ON 'acc'.'hits' SUM, ON 'ac.*'.'bal' MAX, "
              "ON '.*'.'.*' PREFER TARGET, ON 'acc'.'owner' PREFER SOURCE)")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY RULE_BASED WITH CONFLICT RESOLUTION rs")
    # SUM: base 0 + 5 + 3; MAX of 15 and 12; the catch-all comes before the owner rule, so TARGET
    assert rows(main, "SELECT hits, bal, owner FROM acc WHERE id = 1") == [(8, 15, "ann-main")]
    assert sqlstate(main, "CREATE CONFLICT RESOLUTION rs (ON 'a'.'b' MIN)") == "42710"
    run(main, "DROP CONFLICT RESOLUTION rs", "DROP CONFLICT RESOLUTION IF EXISTS rs")
    assert sqlstate(main, "DROP CONFLICT RESOLUTION rs") == "42704"


def test_rule_based_unmatched_conflicts_abort(pair) -> None:
    main, dev = pair
    _conflicted(main, dev)
    run(main, "CREATE CONFLICT RESOLUTION only_bal (ON 'acc'.'bal' PREFER SOURCE, ON 'x'.'y' CONCATENATE)")
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY RULE_BASED "
                          "WITH CONFLICT RESOLUTION only_bal") == "HD010"


def test_concatenate_min_and_newer(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET owner = '+dev', bal = 1, email = 'new@dev' WHERE id = 2")
    run(main, "UPDATE acc SET owner = '+main', bal = 9, email = 'new@main' WHERE id = 2")
    run(main, "CREATE CONFLICT RESOLUTION r2 (ON 'acc'.'owner' CONCATENATE, ON 'acc'.'bal' MIN, "
              "ON 'acc'.'email' PREFER NEWER)")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY RULE_BASED WITH CONFLICT RESOLUTION r2")
    assert rows(main, "SELECT owner, bal, email FROM acc WHERE id = 2") == [("+main+dev", 1, "new@main")]


@pytest.mark.parametrize("rule, value", [("MIN", 5), ("MAX", 5)])
def test_min_and_max_ignore_a_null_side(pair, rule: str, value: int) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = NULL WHERE id = 1")
    run(main, "UPDATE acc SET bal = 5 WHERE id = 1")
    run(main, f"CREATE CONFLICT RESOLUTION r (ON 'acc'.'bal' {rule})")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY RULE_BASED WITH CONFLICT RESOLUTION r")
    assert rows(main, "SELECT bal FROM acc WHERE id = 1") == [(value,)]  # MIN was NULL


def test_results_name_tables_whose_conflicts_kept_the_targets_rows(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 100 WHERE id = 1")
    run(main, "UPDATE acc SET bal = 111 WHERE id = 1")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main DRY RUN")
    assert ("tables modified", None, "acc") in cur.fetchall()  # was "none"
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")
    merge_id = cur.fetchall()[0][0]
    run(main, f"UPDATE _merge_conflicts_{merge_id} SET resolution = 'target'")
    cur.execute(f"COMPLETE MERGE {merge_id}")
    assert [r[1:5] for r in cur.fetchall()] == [("MANUAL", "acc", 0, 1)]  # was table NULL, 0 resolved
    run(dev, "UPDATE acc SET bal = 7 WHERE id = 2")
    run(main, "UPDATE acc SET bal = 8 WHERE id = 2")
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY OURS")
    assert [r[1:5] for r in cur.fetchall()] == [("OURS", "acc", 0, 1)]
    assert rows(main, "SELECT bal FROM acc WHERE id < 3 ORDER BY id") == [(111,), (8,)]


def test_custom_resolver_function(pair) -> None:
    main, dev = pair
    run(main, """CREATE FUNCTION pick(t text, base jsonb, ours jsonb, theirs jsonb) RETURNS jsonb
                 LANGUAGE sql AS $$ SELECT ours || jsonb_build_object('bal', (ours->>'bal')::int + (theirs->>'bal')::int) $$""")
    run(dev, "UPDATE acc SET bal = 1 WHERE id = 1")
    run(main, "UPDATE acc SET bal = 2 WHERE id = 1")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY CUSTOM public.pick")
    assert rows(main, "SELECT bal FROM acc WHERE id = 1") == [(3,)]


def test_custom_gets_sql_null_for_a_deleted_side_and_decides_keys_both_inserted(pair) -> None:
    main, dev = pair
    # records what it was given in the row it returns: `theirs IS NULL` is SQL NULL, not JSON null
    run(main, """CREATE FUNCTION seen(t text, base jsonb, ours jsonb, theirs jsonb) RETURNS jsonb LANGUAGE sql AS $$
                 SELECT coalesce(ours, theirs) || jsonb_build_object('owner', format('ours %s theirs %s base %s',
                     ours IS NULL, theirs IS NULL, base IS NULL)) $$""")
    run(dev, "DELETE FROM acc WHERE id = 3", "UPDATE acc SET bal = 200 WHERE id = 2",
        "INSERT INTO acc VALUES (7, 'dev7', 1, 'd7@x', 0)")
    run(main, "UPDATE acc SET owner = 'CAT' WHERE id = 3", "DELETE FROM acc WHERE id = 2",
        "INSERT INTO acc VALUES (7, 'main7', 2, 'm7@x', 0)")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY CUSTOM seen")  # was HD010 on key 7
    assert rows(main, "SELECT id, owner, bal FROM acc WHERE id > 1 ORDER BY id") == [
        (2, "ours t theirs f base f", 200), (3, "ours f theirs t base f", 30), (7, "ours f theirs f base t", 2)]
    assert rows(main, "SELECT counts -> 'acc' ->> 'conflicts_resolved' FROM heliosdb.merges") == [("3",)]


def test_constraint_and_insert_insert_conflicts(pair) -> None:
    main, dev = pair
    run(dev, "INSERT INTO acc VALUES (7, 'dev7', 1, 'seven@x', 0)", "UPDATE acc SET email = 'shared@x' WHERE id = 1",
        "INSERT INTO acc VALUES (8, 'same', 8, 'eight@x', 0)")
    run(main, "INSERT INTO acc VALUES (7, 'main7', 2, 'main7@x', 0)", "UPDATE acc SET email = 'shared@x' WHERE id = 2",
        "INSERT INTO acc VALUES (8, 'same', 8, 'eight@x', 0)")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main DRY RUN")
    preview = cur.fetchall()
    kinds = " ".join(r[2] for r in preview if r[0] == "conflict")
    assert "insert insert" in kinds and "constraint" in kinds
    assert ("conflicts", None, "2") in preview  # the identical row 8 is not a conflict
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main") == "HD010"
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY THEIRS")
    assert rows(main, "SELECT id, owner, email FROM acc WHERE id IN (1, 2, 7, 8) ORDER BY id") == [
        (1, "ann", "shared@x"), (7, "dev7", "seven@x"), (8, "same", "eight@x")
    ]


def test_keys_swapped_on_the_source_merge_into_the_root(pair, connect) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET id = -1 WHERE id = 1", "UPDATE acc SET id = 1 WHERE id = 2", "UPDATE acc SET id = 2 WHERE id = -1",
        "UPDATE acc SET email = 'tmp' WHERE id = 1", "UPDATE acc SET email = 'b@x' WHERE id = 2",
        "UPDATE acc SET email = 'a@x' WHERE id = 1")
    run(main, "MERGE DATABASE BRANCH dev INTO main")  # was a raw 23505
    assert acc(main) == acc(dev) == [(1, "bob", 20, "a@x", 0), (2, "ann", 10, "b@x", 0), (3, "cat", 30, "c@x", 0)]
    # rows written again would fire a foreign key's ON DELETE action: a merge conflict, nothing changed
    run(main, "CREATE TABLE o (id int PRIMARY KEY, acc int REFERENCES acc (id) ON DELETE CASCADE)",
        "INSERT INTO o VALUES (1, 1)", "CREATE DATABASE BRANCH d2")
    d2 = connect("d2")
    run(d2, "UPDATE acc SET id = -1 WHERE id = 2", "UPDATE acc SET id = 2 WHERE id = 3", "UPDATE acc SET id = 3 WHERE id = -1")
    with pytest.raises(heliosdb.Error) as exc:
        main.cursor().execute("MERGE DATABASE BRANCH d2 INTO main")
    assert exc.value.sqlstate == "HD010" and "o_acc_fkey" in exc.value.hint
    assert acc(main)[1:] == [(2, "ann", 10, "b@x", 0), (3, "cat", 30, "c@x", 0)]
    assert rows(main, "SELECT * FROM o") == [(1, 1)]


def test_last_write_wins_on_insert_insert_compares_commit_times(pair) -> None:
    main, dev = pair
    run(dev, "INSERT INTO acc VALUES (7, 'dev7', 1, 'd7@x', 0)")
    run(main, "INSERT INTO acc VALUES (7, 'main7', 2, 'm7@x', 0)", "INSERT INTO acc VALUES (8, 'main8', 2, 'm8@x', 0)")
    run(dev, "INSERT INTO acc VALUES (8, 'dev8', 1, 'd8@x', 0)")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY LAST_WRITE_WINS")
    assert [(r[2], r[4]) for r in cur.fetchall()] == [("acc", 2)]  # table, conflicts_resolved
    assert rows(main, "SELECT id, owner FROM acc WHERE id > 3 ORDER BY id") == [(7, "main7"), (8, "dev8")]
    assert rows(main, "SELECT counts -> 'acc' ->> 'conflicts_resolved' FROM heliosdb.merges") == [("2",)]


def test_check_constraint_conflict_from_cell_merge(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE r (id int PRIMARY KEY, lo int, hi int, CHECK (lo < hi))", "INSERT INTO r VALUES (1, 0, 10)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE r SET lo = 8 WHERE id = 1")
    run(conn, "UPDATE r SET hi = 5 WHERE id = 1")
    assert sqlstate(conn, "MERGE DATABASE BRANCH dev INTO main") == "HD010"
    assert rows(conn, "SELECT lo, hi FROM r") == [(0, 5)]


def test_manual_then_complete_and_abort(pair, connect, helios_data_dir, dbname) -> None:
    main, dev = pair
    _conflicted(main, dev)
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")
    merge_id, strategy, n, table = cur.fetchall()[0]
    assert (strategy, n, table) == ("MANUAL", 3, f"_merge_conflicts_{merge_id}")
    assert acc(main)[0][2] == 111  # nothing applied yet
    kinds = rows(main, f"SELECT conflict_kind FROM _merge_conflicts_{merge_id} ORDER BY conflict_id")
    assert sorted(k[0] for k in kinds) == ["concurrent_update", "delete_update", "update_delete"]
    assert sqlstate(main, f"COMPLETE MERGE {merge_id}") == "HD012"
    # a pending merge survives a new session
    other = heliosdb.connect(data_dir=helios_data_dir, database=dbname)
    other.autocommit = True
    run(other, f"UPDATE _merge_conflicts_{merge_id} SET resolution = 'source' WHERE conflict_kind = 'concurrent_update'",
        f"UPDATE _merge_conflicts_{merge_id} SET resolution = 'target' WHERE conflict_kind = 'update_delete'",
        f"UPDATE _merge_conflicts_{merge_id} SET resolution = 'custom', resolved_value = "
        f"'{{\"id\": 3, \"owner\": \"custom\", \"bal\": 1, \"email\": \"c@x\", \"hits\": 0}}' "
        f"WHERE conflict_kind = 'delete_update'")
    run(other, f"COMPLETE MERGE {merge_id}")
    other.close()
    assert acc(main) == [(1, "ann", 100, "a@x", 0), (3, "custom", 1, "c@x", 0)]
    assert rows(main, f"SELECT state FROM heliosdb.merges WHERE id = {merge_id}") == [("completed",)]
    assert sqlstate(main, f"COMPLETE MERGE {merge_id}") == "HD012"
    # ABORT MERGE discards a pending merge
    run(dev, "UPDATE acc SET bal = 5 WHERE id = 1")
    run(main, "UPDATE acc SET bal = 6 WHERE id = 1")
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")
    second = cur.fetchall()[0][0]
    run(main, f"ABORT MERGE {second}")
    assert rows(main, f"SELECT state FROM heliosdb.merges WHERE id = {second}") == [("aborted",)]
    assert sqlstate(main, f"SELECT * FROM _merge_conflicts_{second}") == "42P01"
    assert rows(main, "SELECT bal FROM acc WHERE id = 1") == [(6,)]


def test_manual_merge_into_a_child_branch_completes(pair, connect) -> None:
    """On a branch, writing the resolutions into the conflicts table commits on the target: that is not a
    change of the target's tables, and COMPLETE MERGE goes on. A real write there after the prepare is."""
    main, dev = pair
    run(main, "CREATE DATABASE BRANCH qa")
    qa = connect("qa")
    run(dev, "UPDATE acc SET bal = 100 WHERE id = 1")
    run(qa, "UPDATE acc SET bal = 111 WHERE id = 1")
    cur = qa.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO qa USING STRATEGY MANUAL")
    merge_id = cur.fetchall()[0][0]
    run(qa, f"UPDATE _merge_conflicts_{merge_id} SET resolution = 'source'")
    run(qa, f"COMPLETE MERGE {merge_id}")
    assert acc(qa)[0] == (1, "ann", 100, "a@x", 0)
    assert rows(qa, f"SELECT state FROM heliosdb.merges WHERE id = {merge_id}") == [("completed",)]

    run(dev, "UPDATE acc SET bal = 7 WHERE id = 2")
    run(qa, "UPDATE acc SET bal = 8 WHERE id = 2")
    cur.execute("MERGE DATABASE BRANCH dev INTO qa USING STRATEGY MANUAL")
    second = cur.fetchall()[0][0]
    run(qa, f"UPDATE _merge_conflicts_{second} SET resolution = 'source'", "UPDATE acc SET hits = 1 WHERE id = 3")
    assert sqlstate(qa, f"COMPLETE MERGE {second}") == "HD012"
    assert rows(qa, "SELECT bal FROM acc WHERE id = 2") == [(8,)]


@pytest.mark.parametrize("resolution, value, expected", [
    ("source", None, [(7, "dev7")]),
    ("target", None, [(7, "main7")]),
    ("base", None, []),
    ("custom", '{"id": 7, "owner": "both", "bal": 3, "email": "b7@x", "hits": 0}', [(7, "both")]),
])
def test_manual_resolutions_of_a_key_both_sides_inserted(pair, resolution: str, value: str | None,
                                                         expected: list[tuple]) -> None:
    """Both sides inserted id 7: the resolution says which row has the key afterwards (base: none)."""
    main, dev = pair
    run(dev, "INSERT INTO acc VALUES (7, 'dev7', 1, 'd7@x', 0)")
    run(main, "INSERT INTO acc VALUES (7, 'main7', 2, 'm7@x', 0)")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main USING STRATEGY MANUAL")
    merge_id = cur.fetchall()[0][0]
    assert rows(main, f"SELECT conflict_kind FROM _merge_conflicts_{merge_id}") == [("insert_insert",)]
    cur.execute(f"UPDATE _merge_conflicts_{merge_id} SET resolution = %s, resolved_value = %s", (resolution, value))
    run(main, f"COMPLETE MERGE {merge_id}")
    assert rows(main, "SELECT id, owner FROM acc WHERE id > 3") == expected


@pytest.mark.parametrize("renamed_on", ["target", "source"])
def test_changes_to_a_column_the_other_side_renamed_are_merged(conn: heliosdb.Connection, connect,
                                                               renamed_on: str) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, b text)", "INSERT INTO t VALUES (1, 'x1'), (2, 'x2')",
        "CREATE DATABASE BRANCH f")
    f = connect("f")
    renaming, writing = (conn, f) if renamed_on == "target" else (f, conn)
    run(renaming, "ALTER TABLE t RENAME COLUMN b TO bm")
    run(writing, "UPDATE t SET b = 'changed' WHERE id = 1", "INSERT INTO t VALUES (3, 'new')")
    if renamed_on == "target":
        run(conn, "MERGE DATABASE BRANCH f INTO main")
        target = conn
    else:
        run(f, "MERGE DATABASE BRANCH main INTO f")
        target = f
    assert rows(target, "SELECT id, bm FROM t ORDER BY id") == [(1, "changed"), (2, "x2"), (3, "new")]


@pytest.mark.parametrize("into", ["main", "qa"])
@pytest.mark.parametrize("ddl, breaking, code", [
    ("ALTER TABLE t ADD CONSTRAINT t_a_u UNIQUE (a)", "INSERT INTO t VALUES (7, 1)", "23505"),
    ("ALTER TABLE t ADD CONSTRAINT a_pos CHECK (a > 0)", "INSERT INTO t VALUES (7, -5)", "23514"),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", "INSERT INTO t VALUES (7, NULL)", "23502"),
])
def test_a_constraint_the_targets_rows_break_is_a_conflict(conn: heliosdb.Connection, connect, into: str,
                                                           ddl: str, breaking: str, code: str) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, a int)", "INSERT INTO t VALUES (1, 1), (2, 2)",
        "CREATE DATABASE BRANCH qa")
    target = conn if into == "main" else connect("qa")
    run(target, "CREATE DATABASE BRANCH f", "INSERT INTO t VALUES (3, 1), (4, -1), (5, NULL)")
    run(connect("f"), ddl)
    preview = rows(target, f"MERGE DATABASE BRANCH f INTO {into} DRY RUN")
    assert ("conflicts", None, "1") in preview
    assert sqlstate(target, f"MERGE DATABASE BRANCH f INTO {into}") == "HD011"
    assert rows(target, "SELECT count(*) FROM t") == [(5,)]
    run(target, "DELETE FROM t WHERE id >= 3")
    run(target, f"MERGE DATABASE BRANCH f INTO {into}")  # now it holds there
    assert sqlstate(target, breaking) == code


@pytest.mark.parametrize("direction", ["main into f", "f into main"])
def test_a_type_change_with_using_merges_with_its_using(conn: heliosdb.Connection, connect, direction: str) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, a text, b int)", "INSERT INTO t VALUES (1, 'abc', 1), (2, 'de', 2)",
        "CREATE DATABASE BRANCH f")
    f = connect("f")
    source, target = (conn, f) if direction == "main into f" else (f, conn)
    run(source, "ALTER TABLE t ALTER COLUMN a TYPE int USING length(a)",  # no automatic cast text -> int
        "ALTER TABLE t ADD COLUMN c int")  # later DDL of the table keeps what the type change converted with
    run(target, f"MERGE DATABASE BRANCH {direction.replace(' into ', ' INTO ')}")
    assert rows(target, "SELECT id, a FROM t ORDER BY id") == [(1, 3), (2, 2)]
    preview = rows(target, f"MERGE DATABASE BRANCH {direction.replace(' into ', ' INTO ')} DRY RUN")
    assert ("rows to merge", None, "0") in preview and ("conflicts", None, "0") in preview


def test_dry_run_changes_nothing(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 1", "ALTER TABLE acc ADD COLUMN note text", "CREATE TABLE extra (a int)")
    before = rows(main, "SELECT heliosdb.current_lsn()")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main DRY RUN")
    preview = {r[0]: r[2] for r in cur.fetchall()}
    assert preview["rows to merge"] == "3" and "acc" in preview["tables modified"]
    assert preview["source"].startswith("head ") and preview["common ancestor"].startswith("LSN ")
    assert rows(main, "SELECT heliosdb.current_lsn()") == before
    assert acc(main)[0][2] == 10
    assert sqlstate(main, "SELECT * FROM extra") == "42P01"
    assert rows(main, "SELECT count(*) FROM heliosdb.merges") == [(0,)]


def test_schema_changes_carry_over(pair) -> None:
    main, dev = pair
    run(dev, "ALTER TABLE acc ADD COLUMN color text DEFAULT 'red'", "ALTER TABLE acc RENAME COLUMN owner TO holder",
        "ALTER TABLE acc DROP COLUMN hits", "UPDATE acc SET color = 'blue' WHERE id = 1",
        "CREATE TABLE extra (k int PRIMARY KEY, v text)", "INSERT INTO extra VALUES (1, 'one')")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert rows(main, "SELECT * FROM acc ORDER BY id") == [
        (1, "ann", 10, "a@x", "blue"), (2, "bob", 20, "b@x", "red"), (3, "cat", 30, "c@x", "red")
    ]
    assert rows(main, "SELECT * FROM extra") == [(1, "one")]
    # a later merge recognises the rows it brought over
    run(dev, "UPDATE extra SET v = 'uno'")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert rows(main, "SELECT * FROM extra") == [(1, "uno")]


def test_merge_carries_foreign_keys_of_tables_created_on_the_source(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE base (id int PRIMARY KEY)", "CREATE DATABASE BRANCH b")
    b = connect("b")
    # the child table comes first by name: its rows are applied before its parent's
    run(b, "CREATE TABLE p (id int PRIMARY KEY)",
        "CREATE TABLE a_child (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE CASCADE, q_id int REFERENCES p)",
        "INSERT INTO p VALUES (1)", "INSERT INTO a_child VALUES (1, 1, 1)")
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    assert rows(conn, "SELECT * FROM a_child") == [(1, 1, 1)]
    assert sqlstate(conn, "INSERT INTO a_child VALUES (2, 999, NULL)") == "23503"
    assert sqlstate(conn, "INSERT INTO a_child VALUES (3, NULL, 999)") == "23503"
    run(conn, "UPDATE a_child SET q_id = NULL", "DELETE FROM p WHERE id = 1")  # ON DELETE CASCADE came along
    assert rows(conn, "SELECT count(*) FROM a_child") == [(0,)]
    # a key to a table renamed since it was created names it by its name now
    run(b, "CREATE TABLE first_name (id int PRIMARY KEY)", "ALTER TABLE first_name RENAME TO later_name",
        "CREATE TABLE kid (id int PRIMARY KEY, p int REFERENCES later_name)", "INSERT INTO later_name VALUES (5)",
        "INSERT INTO kid VALUES (1, 5)")
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    assert rows(conn, "SELECT * FROM kid") == [(1, 5)]
    assert sqlstate(conn, "INSERT INTO kid VALUES (2, 6)") == "23503"


def test_merge_carries_column_rules_and_constraints(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, s int DEFAULT 0, n int, m int CHECK (m > 0))",
        "INSERT INTO t VALUES (1, 'a', 0, 1, 1)", "CREATE DATABASE BRANCH b")
    b = connect("b")
    run(b, "ALTER TABLE t ALTER COLUMN v DROP NOT NULL", "ALTER TABLE t ALTER COLUMN s SET DEFAULT 5",
        "ALTER TABLE t ALTER COLUMN n SET NOT NULL", "ALTER TABLE t ADD CONSTRAINT t_n_chk CHECK (n > 0)",
        "ALTER TABLE t ADD CONSTRAINT t_n_uq UNIQUE (n)", "ALTER TABLE t DROP CONSTRAINT t_m_check",
        "INSERT INTO t (id, v, n, m) VALUES (2, NULL, 2, -1)")
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a", 0, 1, 1), (2, None, 5, 2, -1)]
    assert sqlstate(conn, "INSERT INTO t (id, v, n) VALUES (3, 'c', -1)") == "23514"
    assert sqlstate(conn, "INSERT INTO t (id, v, n) VALUES (4, 'x', 1)") == "23505"
    assert sqlstate(conn, "INSERT INTO t (id, v) VALUES (5, 'y')") == "23502"
    run(conn, "INSERT INTO t (id, n, m) VALUES (6, 6, -6)")  # v may be NULL, m's check is gone
    assert rows(conn, "SELECT v, s FROM t WHERE id = 6") == [(None, 5)]


def test_merge_of_a_column_added_with_a_default_later_dropped(conn: heliosdb.Connection, connect) -> None:
    """Django's AddField: ADD COLUMN ... DEFAULT x NOT NULL, then DROP DEFAULT; the old rows read x."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')", "CREATE DATABASE BRANCH b")
    b = connect("b")
    run(b, "ALTER TABLE t ADD COLUMN c varchar(2) DEFAULT 'US' NOT NULL", "ALTER TABLE t ALTER COLUMN c DROP DEFAULT")
    assert rows(b, "SELECT * FROM t") == [(1, "a", "US")]
    run(conn, "INSERT INTO t VALUES (2, 'main only')")
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a", "US"), (2, "main only", "US")]
    assert sqlstate(conn, "INSERT INTO t (id, v) VALUES (3, 'x')") == "23502"  # NOT NULL, and no default


def test_merge_carries_column_type_changes_both_ways(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL CHECK (v > 0), s varchar(5))",
        "INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b')", "CREATE DATABASE BRANCH b")
    b = connect("b")
    run(b, "ALTER TABLE t ALTER COLUMN s TYPE varchar(255)",
        "ALTER TABLE t ALTER COLUMN v TYPE numeric(10,2) USING v / 3.0", "INSERT INTO t VALUES (3, 1.5, repeat('x', 50))")
    run(conn, "UPDATE t SET s = 'm' WHERE id = 2")  # another cell of a row the type change rewrote on b
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    got = rows(conn, "SELECT id, v::text, length(s), s = 'm' FROM t ORDER BY id")
    assert got == [(1, "3.33", 1, False), (2, "6.67", 1, True), (3, "1.50", 50, False)]
    run(conn, "ALTER TABLE t ALTER COLUMN id TYPE bigint", "INSERT INTO t VALUES (5000000000, 1, 'big')")
    run(b, "MERGE DATABASE BRANCH main INTO b")
    assert rows(b, "SELECT pg_typeof(id)::text, count(*) FROM t GROUP BY 1") == [("bigint", 4)]
    assert rows(b, "SELECT s FROM t WHERE id = 2") == [("m",)]
    run(conn, "ALTER TABLE t ALTER COLUMN s TYPE text")
    run(b, "ALTER TABLE t ALTER COLUMN s TYPE varchar(300)")
    assert sqlstate(conn, "MERGE DATABASE BRANCH b INTO main") == "HD011"  # changed on both sides


def test_merge_of_a_table_the_source_dropped_and_created_again(conn: heliosdb.Connection, connect) -> None:
    """Alembic's batch mode: a copy with the new shape, the old table dropped, the copy renamed."""
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        "CREATE DATABASE BRANCH b", "CREATE DATABASE BRANCH c")
    b = connect("b")
    run(b, "CREATE TABLE t_tmp (id int PRIMARY KEY, v text, w int)", "INSERT INTO t_tmp (id, v) SELECT id, v FROM t",
        "DROP TABLE t", "ALTER TABLE t_tmp RENAME TO t", "UPDATE t SET w = id * 10")
    run(conn, "MERGE DATABASE BRANCH b INTO main")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a", 10), (2, "b", 20)]
    run(conn, "MERGE DATABASE BRANCH b INTO main")  # nothing left to carry
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a", 10), (2, "b", 20)]
    # the target changed rows of the table the source dropped: they would be lost, the merge stops
    c = connect("c")
    run(c, "UPDATE t SET v = 'c' WHERE id = 1")
    assert sqlstate(c, "MERGE DATABASE BRANCH main INTO c") == "HD011"


def test_merge_of_django_and_alembic_shaped_changes(conn: heliosdb.Connection, connect) -> None:
    """Columns named like the merge's own aliases; constraints keep their names; two type changes of a table
    with a deferrable key in one merge; tables related by a key dropped and created again."""
    run(conn, "CREATE TABLE c (id int PRIMARY KEY, x int, o int)", "INSERT INTO c VALUES (1, 10, 1)",
        "CREATE TABLE a (id int PRIMARY KEY)", "INSERT INTO a VALUES (1)",
        "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a DEFERRABLE INITIALLY DEFERRED, "
        "price numeric(8,2), pages int)", "INSERT INTO b VALUES (1, 1, 9.99, 400)",
        "CREATE TABLE u (id int PRIMARY KEY)", "CREATE TABLE p (id int PRIMARY KEY, u_id int REFERENCES u)",
        "INSERT INTO u VALUES (1)", "INSERT INTO p VALUES (1, 1)", "CREATE DATABASE BRANCH f")
    f = connect("f")
    run(f, "UPDATE c SET x = 11, o = 2", "CREATE TABLE t2 (id int CONSTRAINT t2_id_pk PRIMARY KEY, "
        "code text CONSTRAINT t2_code_01ab_uniq UNIQUE)",
        "ALTER TABLE b ALTER COLUMN pages TYPE bigint", "ALTER TABLE b ALTER COLUMN price TYPE numeric(10,2)",
        "DROP TABLE p", "DROP TABLE u", "CREATE TABLE u (id int PRIMARY KEY, n text)",
        "CREATE TABLE p (id int PRIMARY KEY, u_id int REFERENCES u)", "INSERT INTO u VALUES (2, 'two')",
        "INSERT INTO p VALUES (5, 2)")
    run(conn, "MERGE DATABASE BRANCH f INTO main")
    assert rows(conn, "SELECT x, o FROM c") == [(11, 2)]
    run(conn, "ALTER TABLE t2 DROP CONSTRAINT t2_code_01ab_uniq", "ALTER TABLE t2 DROP CONSTRAINT t2_id_pk")
    assert rows(conn, "SELECT pg_typeof(price)::text, pg_typeof(pages)::text FROM b") == [("numeric", "bigint")]
    assert rows(conn, "SELECT * FROM p") == [(5, 2)]
    assert sqlstate(conn, "INSERT INTO p VALUES (6, 9)") == "23503"


def test_merge_into_a_branch_carries_a_foreign_key_to_its_inherited_tables(conn: heliosdb.Connection,
                                                                           connect) -> None:
    run(conn, "CREATE TABLE p (id int PRIMARY KEY)", "CREATE TABLE c (id int PRIMARY KEY, p_id int)",
        "INSERT INTO p VALUES (1)", "CREATE DATABASE BRANCH b")
    run(conn, "ALTER TABLE c ADD CONSTRAINT c_p_fk FOREIGN KEY (p_id) REFERENCES p", "INSERT INTO c VALUES (1, 1)")
    b = connect("b")
    cur = b.cursor()
    cur.execute("MERGE DATABASE BRANCH main INTO b")
    assert not any("c_p_fk" in n for n in cur.notices), cur.notices
    assert rows(b, "SELECT * FROM c") == [(1, 1)]
    assert sqlstate(b, "INSERT INTO c VALUES (2, 99)") == "23503"  # the branch holds the key now


def test_rows_merged_into_a_target_with_new_columns_get_their_defaults(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, a int)", "INSERT INTO t VALUES (1, 1)", "CREATE DATABASE BRANCH dev")
    run(connect("dev"), "INSERT INTO t VALUES (2, 2)")
    run(conn, "ALTER TABLE t ADD COLUMN e int DEFAULT 7", "ALTER TABLE t ADD COLUMN nn int NOT NULL DEFAULT 8")
    run(conn, "MERGE DATABASE BRANCH dev INTO main")  # as an INSERT without e and nn: no NOT NULL conflict
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, 1, 7, 8), (2, 2, 7, 8)]


def test_tables_whose_only_column_is_the_key_merge(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE n (k int PRIMARY KEY)", "CREATE DATABASE BRANCH g", "CREATE DATABASE BRANCH h")
    run(connect("g"), "INSERT INTO n VALUES (1), (2)")
    run(connect("h"), "CREATE TABLE k1 (k int PRIMARY KEY)", "INSERT INTO k1 VALUES (1)")
    run(conn, "MERGE DATABASE BRANCH g INTO main", "MERGE DATABASE BRANCH h INTO main", "MERGE DATABASE BRANCH main INTO h")
    assert rows(conn, "SELECT k FROM n ORDER BY k") == [(1,), (2,)]
    assert rows(conn, "SELECT k FROM k1") == [(1,)]
    assert rows(connect("h"), "SELECT k FROM n ORDER BY k") == [(1,), (2,)]


def test_incompatible_schema_changes_stop_the_merge(pair) -> None:
    main, dev = pair
    run(dev, "ALTER TABLE acc ADD COLUMN extra int")
    run(main, "ALTER TABLE acc ADD COLUMN extra text")
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main") == "HD011"


def test_dry_run_previews_a_schema_conflict(pair) -> None:
    main, dev = pair
    run(dev, "ALTER TABLE acc ADD COLUMN extra int")
    run(main, "ALTER TABLE acc ADD COLUMN extra text")
    cur = main.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main DRY RUN")  # was HD011
    preview = cur.fetchall()
    assert ("conflicts", None, "1") in preview
    assert ("conflict", "acc", 'schema: column "extra" of "acc" was added on both branches with different types '
            "(integer on dev, text on main)") in preview
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main") == "HD011"


def test_table_dropped_on_source_with_rows_changed_on_target_stops_the_merge(pair) -> None:
    main, dev = pair
    run(dev, "DROP TABLE acc")
    run(main, "UPDATE acc SET bal = 0 WHERE id = 1")
    for strategy in ("ABORT", "THEIRS"):
        assert sqlstate(main, f"MERGE DATABASE BRANCH dev INTO main USING STRATEGY {strategy}") == "HD011"
    assert acc(main)[0] == (1, "ann", 0, "a@x", 0)
    run(main, "UPDATE acc SET bal = 10 WHERE id = 1")  # back to the base: nothing of main's would be lost
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert sqlstate(main, "SELECT * FROM acc") == "42P01"


def test_repeated_merges_both_directions(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 11 WHERE id = 1")
    run(main, "UPDATE acc SET owner = 'BOB' WHERE id = 2")
    run(main, "MERGE DATABASE BRANCH dev INTO main", "MERGE DATABASE BRANCH main INTO dev")
    assert acc(dev) == acc(main)
    run(dev, "UPDATE acc SET bal = 12 WHERE id = 1")
    run(main, "UPDATE acc SET hits = 1 WHERE id = 1")
    run(main, "MERGE DATABASE BRANCH dev INTO main")  # merged changes never conflict again
    run(main, "MERGE DATABASE BRANCH main INTO dev")
    assert acc(dev) == acc(main) == [(1, "ann", 12, "a@x", 1), (2, "BOB", 20, "b@x", 0), (3, "cat", 30, "c@x", 0)]


def test_parent_into_child_after_a_no_op_merge_brings_the_parents_resolution(pair) -> None:
    main, dev = pair
    run(main, "UPDATE acc SET bal = 100 WHERE id = 1")
    run(dev, "UPDATE acc SET bal = 10 WHERE id = 1", "UPDATE acc SET bal = 22 WHERE id = 2")
    run(main, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY OURS",
        "MERGE DATABASE BRANCH dev INTO main")  # nothing new: a no-op merge must not move the base
    run(main, "MERGE DATABASE BRANCH main INTO dev")
    assert acc(dev) == acc(main) == [(1, "ann", 100, "a@x", 0), (2, "bob", 22, "b@x", 0), (3, "cat", 30, "c@x", 0)]


@pytest.mark.parametrize("source, target", [("dev", "main"), ("main", "dev")])
def test_a_delete_or_revert_after_a_repeated_merge_is_merged(pair, source: str, target: str) -> None:
    main, dev = pair
    conns = {"main": main, "dev": dev}
    src, tgt = conns[source], conns[target]
    run(src, "INSERT INTO acc VALUES (4, 'dan', 40, 'd@x', 0)", "UPDATE acc SET bal = 99 WHERE id = 1")
    run(main, f"MERGE DATABASE BRANCH {source} INTO {target}",
        f"MERGE DATABASE BRANCH {source} INTO {target}")  # nothing new: a no-op
    run(src, "DELETE FROM acc WHERE id = 4", "UPDATE acc SET bal = 10 WHERE id = 1")  # the insert gone, bal back
    run(main, f"MERGE DATABASE BRANCH {source} INTO {target}")  # was: row 4 and bal 99 stayed
    assert acc(tgt) == acc(src) == [(1, "ann", 10, "a@x", 0), (2, "bob", 20, "b@x", 0), (3, "cat", 30, "c@x", 0)]


def test_target_change_between_merges_still_conflicts(pair) -> None:
    main, dev = pair
    run(dev, "UPDATE acc SET bal = 11 WHERE id = 1")
    run(main, "MERGE DATABASE BRANCH dev INTO main", "UPDATE acc SET owner = 'BOB' WHERE id = 2",
        "MERGE DATABASE BRANCH dev INTO main")  # a no-op merge after the target's own change
    run(dev, "UPDATE acc SET owner = 'bobby' WHERE id = 2")
    # dev never received 'BOB': both changed owner of row 2 since their common state
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main") == "HD010"
    assert rows(main, "SELECT owner FROM acc WHERE id = 2") == [("BOB",)]


def test_schema_changes_merged_earlier_carry_over_again(pair) -> None:
    main, dev = pair
    run(dev, "ALTER TABLE acc ADD COLUMN x int", "CREATE TABLE u (id int PRIMARY KEY, v int)")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    run(dev, "ALTER TABLE acc DROP COLUMN x", "ALTER TABLE u ADD COLUMN y int")
    run(main, "MERGE DATABASE BRANCH dev INTO main")
    assert rows(main, "SELECT * FROM acc ORDER BY id LIMIT 1") == [(1, "ann", 10, "a@x", 0)]
    assert rows(main, "SELECT id, v, y FROM u") == []
    run(dev, "DROP TABLE u")
    run(main, "MERGE DATABASE BRANCH dev INTO main")  # main has u as dev had it: nothing of its own is lost
    assert sqlstate(main, "SELECT * FROM u") == "42P01"


def test_siblings_parent_into_child_read_only_and_delete_source(pair, connect) -> None:
    main, dev = pair
    run(main, "CREATE DATABASE BRANCH sib")
    sib = connect("sib")
    run(dev, "UPDATE acc SET bal = 1 WHERE id = 1")
    run(sib, "UPDATE acc SET bal = 2 WHERE id = 2")
    run(main, "MERGE DATABASE BRANCH dev INTO sib")
    assert rows(sib, "SELECT bal FROM acc ORDER BY id") == [(1,), (2,), (30,)]
    run(main, "UPDATE acc SET bal = 3 WHERE id = 3", "MERGE DATABASE BRANCH main INTO dev")
    assert rows(dev, "SELECT bal FROM acc ORDER BY id") == [(1,), (20,), (3,)]
    run(main, "ALTER DATABASE BRANCH sib SET READ_ONLY")
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO sib") == "25006"
    run(main, "ALTER DATABASE BRANCH sib SET WRITABLE")
    sib.close()
    run(main, "MERGE DATABASE BRANCH sib INTO main OPTIONS (delete_source = true, message = 'ship it')")
    assert rows(main, "SELECT count(*) FROM heliosdb.branches WHERE name = 'sib'") == [(0,)]
    assert rows(main, "SELECT message FROM heliosdb.merges ORDER BY id DESC LIMIT 1") == [("ship it",)]
    assert sqlstate(main, "MERGE DATABASE BRANCH nope INTO main") == "HD001"
    assert sqlstate(main, "MERGE DATABASE BRANCH main INTO main") == "22023"
    assert sqlstate(main, "MERGE DATABASE BRANCH dev INTO main OPTIONS (colour = 1)") == "HD006"


# -- randomized: merges of random histories against a reference three-way merge ---------------------------
def _reference(base: dict, ours: dict, theirs: dict, prefer: str) -> dict:
    out = {}
    for k in set(base) | set(ours) | set(theirs):
        b, o, t = base.get(k), ours.get(k), theirs.get(k)
        if t == b:
            val = o
        elif o == b:
            val = t
        elif o == t:
            val = o
        elif o is None or t is None or b is None:  # b None: both inserted the key (a key clash)
            val = t if prefer == "THEIRS" else o
        else:
            val = tuple((tv if prefer == "THEIRS" else ov) if (ov != bv and tv != bv and ov != tv)
                        else (tv if tv != bv else ov) for bv, ov, tv in zip(b, o, t, strict=True))
        if val is not None:
            out[k] = val
    return out


def _edit(conn: heliosdb.Connection, rnd: random.Random, next_id: list[int], shared: range = range(0)) -> None:
    """Random inserts, updates and deletes; an insert takes a key of `shared` (both sides may) when one is free.

    Rows of shared keys are never changed again: after both sides inserted one, they are two rows (two
    identities), which the key-based reference model cannot follow.
    """
    cur = conn.cursor()
    for _ in range(rnd.randint(1, 6)):
        op = rnd.random()
        held = [r[0] for r in rows(conn, "SELECT id FROM r")]
        free = [k for k in shared if k not in held]
        ids = [k for k in held if k not in shared]
        if op < 0.3 and free and rnd.random() < 0.5:
            cur.execute("INSERT INTO r VALUES (%s, %s, %s)", (rnd.choice(free), rnd.randint(0, 3), rnd.randint(0, 3)))
        elif op < 0.3 or not ids:
            next_id[0] += 1
            cur.execute("INSERT INTO r VALUES (%s, %s, %s)", (next_id[0], rnd.randint(0, 3), rnd.randint(0, 3)))
        elif op < 0.8:
            col = rnd.choice(["a", "b"])
            cur.execute(f"UPDATE r SET {col} = %s WHERE id = %s", (rnd.randint(0, 3), rnd.choice(ids)))
        else:
            cur.execute("DELETE FROM r WHERE id = %s", (rnd.choice(ids),))


@pytest.mark.parametrize("seed", range(6))
def test_random_histories_match_a_reference_merge(conn: heliosdb.Connection, connect, seed: int) -> None:
    rnd = random.Random(seed)
    run(conn, "CREATE TABLE r (id int PRIMARY KEY, a int, b int)",
        "INSERT INTO r SELECT g, g % 3, g % 2 FROM generate_series(1, 8) g")
    next_id = [1000 * (seed + 1)]
    strategy = "THEIRS" if seed % 2 else "OURS"
    for rnd_round in range(3):
        name = f"b{rnd_round}"
        run(conn, f"CREATE DATABASE BRANCH {name}")
        child = connect(name)
        base = {r[0]: r[1:] for r in rows(conn, "SELECT * FROM r")}
        _edit(child, rnd, [next_id[0] + 100])
        next_id[0] += 200
        _edit(conn, rnd, next_id)
        ours = {r[0]: r[1:] for r in rows(conn, "SELECT * FROM r")}
        theirs = {r[0]: r[1:] for r in rows(child, "SELECT * FROM r")}
        run(conn, f"MERGE DATABASE BRANCH {name} INTO main USING STRATEGY {strategy}")
        got = {r[0]: r[1:] for r in rows(conn, "SELECT * FROM r")}
        assert got == _reference(base, ours, theirs, strategy), (seed, rnd_round)
        child.close()


@pytest.mark.parametrize("seed", range(8))
def test_merges_back_and_forth_match_a_reference_merge(conn: heliosdb.Connection, connect, seed: int) -> None:
    """One branch merged into main and main into it, in turns: each merge's base is the state both hold
    (the source as it was merged last), also for rows a merge kept out (OURS over a key both inserted)."""
    rnd = random.Random(100 + seed)
    run(conn, "CREATE TABLE r (id int PRIMARY KEY, a int, b int)",
        "INSERT INTO r SELECT g, g % 3, g % 2 FROM generate_series(1, 8) g", "CREATE DATABASE BRANCH pp")
    sides = {"main": conn, "pp": connect("pp")}

    def state(c: heliosdb.Connection) -> dict:
        return {r[0]: r[1:] for r in rows(c, "SELECT * FROM r")}

    base = state(conn)
    next_id = {"main": [1000], "pp": [2000]}
    for rnd_round in range(6):
        for name, c in sides.items():
            _edit(c, rnd, next_id[name], shared=range(900, 904))
        src, tgt = ("pp", "main") if rnd_round % 2 == 0 else ("main", "pp")
        strategy = rnd.choice(["OURS", "THEIRS"])
        theirs, ours = state(sides[src]), state(sides[tgt])
        run(conn, f"MERGE DATABASE BRANCH {src} INTO {tgt} USING STRATEGY {strategy}")
        assert state(sides[tgt]) == _reference(base, ours, theirs, strategy), (seed, rnd_round, src, strategy)
        base = theirs


def test_a_row_kept_out_by_ours_leaves_the_branch_when_the_target_merges_back(conn: heliosdb.Connection,
                                                                           connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        "CREATE DATABASE BRANCH f")
    f = connect("f")
    run(f, "DELETE FROM t WHERE id = 2", "INSERT INTO t VALUES (2, 'f2'), (3, 'f3')")
    run(conn, "UPDATE t SET v = 'm2' WHERE id = 2", "MERGE DATABASE BRANCH f INTO main USING STRATEGY OURS")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "m2"), (3, "f3")]
    cur = conn.cursor()
    cur.execute("MERGE DATABASE BRANCH main INTO f DRY RUN")
    preview = {r[0]: r[2] for r in cur.fetchall()}
    assert (preview["conflicts"], preview["rows to merge"]) == ("0", "2")
    run(conn, "MERGE DATABASE BRANCH main INTO f")  # was HD010: "insert insert" on id 2
    assert rows(f, "SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "m2"), (3, "f3")]
    cur.execute("MERGE DATABASE BRANCH f INTO main DRY RUN")
    assert {r[0]: r[2] for r in cur.fetchall()}["rows to merge"] == "0"  # nothing left between them
    # the other way round: the branch keeps its own row over main's, and main takes that decision back
    run(conn, "INSERT INTO t VALUES (4, 'm4')")
    run(f, "INSERT INTO t VALUES (4, 'f4')")
    run(conn, "MERGE DATABASE BRANCH main INTO f USING STRATEGY OURS", "MERGE DATABASE BRANCH f INTO main")
    assert rows(conn, "SELECT * FROM t WHERE id = 4") == [(4, "f4")]


def test_a_grandchild_carries_its_parents_change_that_the_parent_changed_again_later(conn, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        "CREATE DATABASE BRANCH c")
    c = connect("c")
    run(c, "UPDATE t SET v = 'c1' WHERE id = 1", "DELETE FROM t WHERE id = 2", "CREATE DATABASE BRANCH gc",
        "UPDATE t SET v = 'c2' WHERE id = 1", "INSERT INTO t VALUES (2, 'c2')")  # after gc's fork
    assert rows(connect("gc"), "SELECT * FROM t ORDER BY id") == [(1, "c1")]
    run(conn, "MERGE DATABASE BRANCH gc INTO main")  # was a silent no-op: c's later versions hid the changes
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "c1")]


def test_a_parents_merge_counts_for_a_child_forked_before_it(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')",
        "CREATE DATABASE BRANCH c")
    c = connect("c")
    run(c, "INSERT INTO t VALUES (2, 'x'), (3, 'y')", "CREATE TABLE n (id int PRIMARY KEY, a text)",
        "INSERT INTO n VALUES (1, 'c')", "CREATE DATABASE BRANCH d")
    run(conn, "MERGE DATABASE BRANCH c INTO main")
    d = connect("d")
    run(d, "DELETE FROM t WHERE id = 2", "UPDATE t SET v = 'dy' WHERE id = 3", "UPDATE n SET a = 'd' WHERE id = 1")
    cur = conn.cursor()
    cur.execute("MERGE DATABASE BRANCH d INTO main DRY RUN")
    assert {r[0]: r[2] for r in cur.fetchall()}["conflicts"] == "0"
    run(conn, "MERGE DATABASE BRANCH d INTO main")  # was HD010 on t 3 and n 1; THEIRS kept row 2
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a"), (3, "dy")]
    assert rows(conn, "SELECT * FROM n") == [(1, "d")]


def test_a_parents_merge_counts_for_a_child_forked_after_it(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')",
        "CREATE TABLE u (id int PRIMARY KEY)", "INSERT INTO u VALUES (1)", "CREATE DATABASE BRANCH c")
    c = connect("c")
    run(c, "INSERT INTO t VALUES (2, 'x')", "ALTER TABLE u ADD COLUMN w int")
    run(conn, "MERGE DATABASE BRANCH c INTO main")
    run(c, "DELETE FROM t WHERE id = 2", "ALTER TABLE u DROP COLUMN w", "CREATE DATABASE BRANCH d")
    run(conn, "MERGE DATABASE BRANCH main INTO d")  # main has nothing d lacks but what c removed later
    d = connect("d")
    assert rows(d, "SELECT * FROM t ORDER BY id") == [(1, "a")]  # was: row 2 came back
    assert rows(d, "SELECT * FROM u") == [(1,)]  # was: column w came back
    run(conn, "MERGE DATABASE BRANCH d INTO main")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == [(1, "a")]


def test_foreign_key_conflicts(conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE cust (id int PRIMARY KEY, name text)",
        "CREATE TABLE orders (id int PRIMARY KEY, cust int REFERENCES cust(id))",
        "INSERT INTO cust VALUES (1, 'a'), (2, 'b')", "INSERT INTO orders VALUES (10, 1)",
        "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "DELETE FROM orders WHERE cust = 2", "DELETE FROM cust WHERE id = 2")  # dev removes customer 2
    run(conn, "INSERT INTO orders VALUES (20, 2)")  # main gives customer 2 an order
    assert sqlstate(conn, "MERGE DATABASE BRANCH dev INTO main") == "HD010"
    cur = conn.cursor()
    cur.execute("MERGE DATABASE BRANCH dev INTO main DRY RUN")
    assert any(r[0] == "conflict" and "foreign_key" in r[2] for r in cur.fetchall())
    run(conn, "MERGE DATABASE BRANCH dev INTO main USING STRATEGY OURS")
    assert rows(conn, "SELECT id FROM cust ORDER BY id") == [(1,), (2,)]
    # an order inserted on a branch for a customer the target deleted
    run(conn, "CREATE DATABASE BRANCH dev2")
    dev2 = connect("dev2")
    run(dev2, "INSERT INTO orders VALUES (30, 1)")
    run(conn, "DELETE FROM orders WHERE cust = 1", "DELETE FROM cust WHERE id = 1")
    assert sqlstate(conn, "MERGE DATABASE BRANCH dev2 INTO main USING STRATEGY THEIRS") == "HD010"
    assert rows(conn, "SELECT count(*) FROM orders WHERE id = 30") == [(0,)]


def test_branch_diff_summary_and_rows(pair) -> None:
    from heliosdb.merge.diff import diff_rows, summarize

    main, dev = pair
    run(dev, "UPDATE acc SET bal = 99 WHERE id = 1", "DELETE FROM acc WHERE id = 2",
        "INSERT INTO acc VALUES (5, 'eve', 5, 'e@x', 0)")
    diffs = summarize(main.session, "main", "dev")
    assert [(d.table, d.added, d.changed, d.deleted) for d in diffs] == [("acc", 1, 1, 1)]
    got = diff_rows(main.session, "main", "dev", "acc").fetchall()
    assert [g[0] for g in got] == ["changed", "deleted", "added"]
    assert '"bal": 99' in got[0][2] and got[1][2] is None and got[2][1] is None


def test_killed_merge_leaves_the_target_untouched_or_fully_merged(conn, connect, helios_data_dir, dbname) -> None:
    import signal
    import subprocess
    import sys
    import time

    run(conn, "CREATE TABLE big (id int PRIMARY KEY, v int)",
        "INSERT INTO big SELECT g, 0 FROM generate_series(1, 3000) g", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, "UPDATE big SET v = 1")
    before = rows(conn, "SELECT sum(v), count(*) FROM big")
    proc = subprocess.Popen(
        [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", dbname,
         "-c", "MERGE DATABASE BRANCH dev INTO main"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it once the merge holds main's write lock
        busy = rows(conn, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%_hdb_%' AND pid <> pg_backend_pid() "
                          "AND state = 'active'")
        if busy[0][0] or proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    after = rows(conn, "SELECT sum(v), count(*) FROM big")
    assert after in (before, [(3000, 3000)])  # all or nothing
    merged = rows(conn, "SELECT count(*) FROM heliosdb.merges WHERE state = 'completed'")[0][0]
    assert (after == before) == (merged == 0)


def test_gc_keeps_what_the_next_merge_starts_from(conn: heliosdb.Connection, connect) -> None:
    """The source's head at the last merge is the next merge's base: the collector keeps its versions."""
    import time

    cur = conn.cursor()
    for stmt in ("CREATE TABLE m (id int PRIMARY KEY, a int)", "INSERT INTO m VALUES (1, 0), (2, 0)",
                 "CREATE DATABASE BRANCH kid"):
        cur.execute(stmt)
    kid = connect("kid")
    kid.cursor().execute("UPDATE m SET a = 1 WHERE id = 1")
    cur.execute("MERGE DATABASE BRANCH kid INTO main")
    for stmt in ("UPDATE m SET a = 2 WHERE id = 1", "UPDATE m SET a = 3 WHERE id = 1", "UPDATE m SET a = 4 WHERE id = 1",
                 "ALTER DATABASE BRANCH kid SET OPTIONS (retention_period = '1 second', gc_policy = aggressive)"):
        kid.cursor().execute(stmt)
    time.sleep(1.2)
    cur.execute("SELECT heliosdb.gc()")
    assert cur.fetchone()[0] >= 1
    cur.execute("MERGE DATABASE BRANCH kid INTO main")  # ABORT on any conflict: there is none
    cur.execute("SELECT id, a FROM m ORDER BY id")
    assert cur.fetchall() == [(1, 4), (2, 0)]


def test_a_table_merged_from_a_branch_keeps_its_sequences_after_the_branch_is_dropped(pair, connect) -> None:
    main, dev = pair
    run(dev, "CREATE TABLE n (id serial PRIMARY KEY, v int, w int GENERATED ALWAYS AS IDENTITY, "
             "x bigint GENERATED BY DEFAULT AS IDENTITY)",
        "INSERT INTO n (v) VALUES (1), (2), (3)", "DELETE FROM n WHERE v = 3",
        "CREATE TABLE g (id bigint GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY -1 MINVALUE -5 "
        "MAXVALUE 10) PRIMARY KEY, v text)", "INSERT INTO g (v) VALUES ('a'), ('b')")
    dev.close()
    run(main, "MERGE DATABASE BRANCH dev INTO main", "DROP DATABASE BRANCH dev")
    # the sequences are main's own now, and continue after the values the source drew
    assert rows(main, "INSERT INTO n (v) VALUES (10) RETURNING *") == [(4, 10, 4, 4)]
    assert rows(main, "INSERT INTO g (v) VALUES ('m') RETURNING id") == [(8,)]  # the sequence's options too
    run(main, "CREATE DATABASE BRANCH later")
    later = connect("later")
    assert rows(later, "INSERT INTO n (v) VALUES (20) RETURNING *") == [(5, 20, 5, 5)]
    run(later, "UPDATE n SET v = 11 WHERE id = 1")
    assert sqlstate(main, "INSERT INTO n (id, v, w) VALUES (99, 0, 99)") == "428C9"  # still GENERATED ALWAYS
    run(main, "MERGE DATABASE BRANCH later INTO main")  # updates and inserts into the identity table
    assert rows(main, "SELECT id, v, w FROM n ORDER BY id") == [(1, 11, 1), (2, 2, 2), (4, 10, 4), (5, 20, 5)]


def test_a_merge_into_a_branch_never_leaves_rows_referencing_nothing(conn, connect) -> None:
    """Into a branch, the plan writes the branch's versions directly: the keys' actions would not run, so a
    delete or rekey of a row the branch's rows reference is a constraint conflict (PostgreSQL would cascade)."""
    run(conn, "CREATE TABLE pp (id int PRIMARY KEY, code text UNIQUE)", "INSERT INTO pp VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "CREATE DATABASE BRANCH g")
    g = connect("g")
    run(g, "CREATE TABLE oa (id int PRIMARY KEY, code text REFERENCES pp (code) ON UPDATE CASCADE)",
        "CREATE TABLE ob (id int PRIMARY KEY, pid int REFERENCES pp ON DELETE SET NULL)",
        "INSERT INTO oa VALUES (1, 'a')", "INSERT INTO ob VALUES (1, 2)")
    run(conn, "UPDATE pp SET code = 'A' WHERE id = 1", "DELETE FROM pp WHERE id = 2",
        "UPDATE pp SET code = 'cc' WHERE id = 3")  # nothing references 3: no conflict
    assert sqlstate(g, "MERGE DATABASE BRANCH main INTO g") == "HD010"
    assert rows(g, "SELECT * FROM pp ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]  # nothing half done
    run(g, "MERGE DATABASE BRANCH main INTO g USING STRATEGY OURS")
    assert rows(g, "SELECT * FROM pp ORDER BY id") == [(1, "a"), (2, "b"), (3, "cc")]
    assert rows(g, "SELECT pp.id FROM oa JOIN pp USING (code)") == [(1,)]
    assert rows(g, "SELECT pp.id FROM ob JOIN pp ON pp.id = ob.pid") == [(2,)]


def test_rows_of_a_created_table_referencing_a_deleted_row_are_a_conflict(conn, connect) -> None:
    run(conn, "CREATE TABLE pp (id int PRIMARY KEY)", "INSERT INTO pp VALUES (1), (2)", "CREATE DATABASE BRANCH g")
    run(connect("g"), "CREATE TABLE ob (id int PRIMARY KEY, pid int REFERENCES pp ON DELETE SET NULL)",
        "INSERT INTO ob VALUES (1, 2), (2, 1)")
    run(conn, "DELETE FROM pp WHERE id = 2")
    assert sqlstate(conn, "MERGE DATABASE BRANCH g INTO main") == "HD010"  # was PostgreSQL's 23503 from the key
    assert sqlstate(conn, "SELECT * FROM ob") == "42P01"  # nothing half done: the table is not there either
    run(conn, "MERGE DATABASE BRANCH g INTO main USING STRATEGY OURS")  # the row stays out
    assert rows(conn, "SELECT * FROM ob") == [(2, 1)]
    assert sqlstate(conn, "INSERT INTO ob VALUES (3, 9)") == "23503"


def test_a_key_added_not_valid_is_merged_not_valid(conn, connect) -> None:
    run(conn, "CREATE TABLE p3 (id int PRIMARY KEY)", "INSERT INTO p3 VALUES (1)", "CREATE DATABASE BRANCH n")
    run(connect("n"), "CREATE TABLE o6 (id int PRIMARY KEY, pid int)", "INSERT INTO o6 VALUES (1, 99)",
        "ALTER TABLE o6 ADD CONSTRAINT o6_fk FOREIGN KEY (pid) REFERENCES p3 NOT VALID",
        "CREATE TABLE o7 (id int PRIMARY KEY, pid int)", "INSERT INTO o7 VALUES (1, 1)",
        "ALTER TABLE o7 ADD CONSTRAINT o7_fk FOREIGN KEY (pid) REFERENCES p3 NOT VALID",
        "ALTER TABLE o7 VALIDATE CONSTRAINT o7_fk")
    run(conn, "MERGE DATABASE BRANCH n INTO main")  # the row that never satisfied o6_fk comes along, as on n
    assert rows(conn, "SELECT * FROM o6") == [(1, 99)]
    assert sqlstate(conn, "INSERT INTO o6 VALUES (2, 98)") == "23503"  # new rows are checked
    assert rows(conn, "SELECT conname, convalidated FROM pg_constraint WHERE conname IN ('o6_fk', 'o7_fk') "
                      "AND contype = 'f' ORDER BY 1") == [("o6_fk", False), ("o7_fk", True)]
