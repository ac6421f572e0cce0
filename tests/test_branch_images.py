"""Branch images: VACUUM on a branch copies what it sees of an inherited table into a plain table, and
reads use it only while it is current (branching/images.py)."""

from __future__ import annotations

import pytest

import heliosdb
from tests.test_branches import rows, run


def reads_image(conn: heliosdb.Connection, query: str = "SELECT * FROM items") -> bool:
    """Whether the statement read the branch's image (EXPLAIN ANALYZE: its scan ran)."""
    plan = [r[0] for r in rows(conn, "EXPLAIN ANALYZE " + query)]
    scans = [line for line in plan if "_hdb_img" in line and " on " in line]
    assert scans, "\n".join(plan)
    return all("never executed" not in line for line in scans)


def images(conn: heliosdb.Connection) -> list[tuple]:
    return rows(conn, "SELECT b.name, i.table_id FROM heliosdb._images i JOIN heliosdb._branches b "
                      "ON b.id = i.branch_id ORDER BY 1, 2")


ALL = "SELECT id, name, qty FROM items ORDER BY id"


@pytest.fixture
def dev(conn: heliosdb.Connection, connect) -> heliosdb.Connection:
    run(conn,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int CHECK (qty >= 0), code text UNIQUE)",
        "CREATE INDEX items_qty ON items (qty DESC)",
        "INSERT INTO items SELECT g, 'n' || g, g * 10, 'c' || g FROM generate_series(1, 200) g",
        "CREATE DATABASE BRANCH dev")
    d = connect("dev")
    run(d, "UPDATE items SET qty = 0 WHERE id % 50 = 0", "DELETE FROM items WHERE id = 7",
        "INSERT INTO items VALUES (1000, 'new', 1, 'x')")
    return d


def test_vacuum_builds_an_image_that_reads_return_the_same_rows(dev: heliosdb.Connection, conn) -> None:
    before = rows(dev, ALL)
    run(dev, "VACUUM items")
    assert [r[0] for r in images(dev)] == ["dev"]
    assert reads_image(dev)
    assert rows(dev, ALL) == before
    assert rows(dev, "SELECT name FROM items WHERE id = 50") == [("n50",)]
    assert rows(dev, "SELECT count(*), sum(qty) FROM items WHERE qty = 0") == [(4, 0)]
    assert rows(dev, "SELECT id FROM items WHERE id = 7") == []
    # the key's index is the image's too: a key lookup probes it
    plan = "\n".join(r[0] for r in rows(dev, "EXPLAIN SELECT * FROM items WHERE id = 50"))
    assert "Index Scan" in plan and "_hdb_img" in plan
    assert rows(conn, "SELECT count(*) FROM items") == [(200,)]  # main untouched


@pytest.mark.parametrize("write, check, want", [
    ("INSERT INTO items VALUES (2000, 'later', 5, 'y')", "SELECT name FROM items WHERE id = 2000", [("later",)]),
    ("UPDATE items SET name = 'changed' WHERE id = 3", "SELECT name FROM items WHERE id = 3", [("changed",)]),
    ("DELETE FROM items WHERE id = 4", "SELECT name FROM items WHERE id = 4", []),
    ("TRUNCATE items", "SELECT count(*) FROM items", [(0,)]),
])
def test_a_write_after_vacuum_is_read_at_once(dev: heliosdb.Connection, connect, write: str, check: str,
                                              want: list[tuple]) -> None:
    run(dev, "VACUUM items")
    other = connect("dev")
    run(dev, write)
    assert rows(dev, check) == want
    assert rows(other, check) == want
    assert not reads_image(other)


def test_an_open_transaction_reads_its_own_writes_and_others_keep_the_image(dev: heliosdb.Connection,
                                                                              connect) -> None:
    run(dev, "VACUUM items")
    writer = connect("dev", autocommit=False)
    run(writer, "UPDATE items SET name = 'mine' WHERE id = 10")
    assert rows(writer, "SELECT name FROM items WHERE id = 10") == [("mine",)]
    assert rows(dev, "SELECT name FROM items WHERE id = 10") == [("n10",)]
    assert reads_image(dev)  # the uncommitted write is not the other sessions'
    writer.rollback()
    assert rows(writer, "SELECT name FROM items WHERE id = 10") == [("n10",)]
    writer.commit()
    assert reads_image(dev)


def test_vacuum_again_brings_the_image_up_to_date(dev: heliosdb.Connection) -> None:
    run(dev, "VACUUM items", "UPDATE items SET qty = qty + 1 WHERE id < 5", "DELETE FROM items WHERE id = 9",
        "INSERT INTO items VALUES (3000, 'three thousand', 3, 'z')")
    want = rows(dev, ALL)
    assert not reads_image(dev)
    run(dev, "VACUUM")  # every table: the changed one is refreshed
    assert reads_image(dev)
    assert rows(dev, ALL) == want
    assert rows(dev, "SELECT qty FROM items WHERE id = 1") == [(11,)]


def test_the_parent_writing_later_leaves_the_branch_image_current(dev: heliosdb.Connection, conn) -> None:
    run(dev, "VACUUM items")
    want = rows(dev, ALL)
    run(conn, "UPDATE items SET name = 'main' WHERE id = 1", "INSERT INTO items VALUES (500, 'm', 1, 'm')")
    assert reads_image(dev)
    assert rows(dev, ALL) == want


def test_ddl_on_the_branch_drops_the_image(dev: heliosdb.Connection) -> None:
    run(dev, "VACUUM items", "ALTER TABLE items ADD COLUMN note text DEFAULT 'n'")
    assert images(dev) == []
    assert rows(dev, "SELECT id, note FROM items WHERE id = 1000") == [(1000, "n")]
    run(dev, "VACUUM items")
    assert reads_image(dev)
    assert rows(dev, "SELECT id, note FROM items WHERE id = 1000") == [(1000, "n")]
    run(dev, "ALTER TABLE items RENAME COLUMN name TO title")
    assert images(dev) == []
    assert rows(dev, "SELECT title FROM items WHERE id = 1") == [("n1",)]
    run(dev, "VACUUM items", "ALTER TABLE items RENAME TO goods", "VACUUM goods")
    assert rows(dev, "SELECT title FROM goods WHERE id = 1") == [("n1",)]
    assert reads_image(dev, "SELECT * FROM goods")
    run(dev, "ALTER TABLE goods RENAME TO items")
    assert rows(dev, "SELECT count(*) FROM items") == [(200,)]


def test_an_index_made_on_the_branch_reaches_the_image_at_the_next_vacuum(dev: heliosdb.Connection) -> None:
    run(dev, "INSERT INTO items SELECT g, 'm' || g, g, 'd' || g FROM generate_series(2001, 12000) g",
        "VACUUM items", "ANALYZE items")
    query = "SELECT id FROM items WHERE name = 'm5000'"

    def plan() -> str:
        return "\n".join(r[0] for r in rows(dev, "EXPLAIN " + query))

    assert "Seq Scan on _hdb_img" in plan()
    run(dev, "CREATE INDEX items_name ON items (name)")
    assert reads_image(dev, query)  # an index is not a write: the image stays current
    run(dev, "VACUUM items")
    assert "Index" in plan() and "_hdb_img" in plan() and "Seq Scan on _hdb_img" not in plan()
    assert rows(dev, query) == [(5000,)]
    run(dev, "DROP INDEX items_name", "VACUUM items")
    assert "Seq Scan on _hdb_img" in plan()


def test_drop_table_and_drop_branch_drop_images(dev: heliosdb.Connection, conn, connect) -> None:
    run(dev, "VACUUM items", "DROP TABLE items")
    assert images(dev) == []
    assert rows(dev, "SELECT to_regclass('hdb_b2._hdb_img1')") == [(None,)]
    run(conn, "CREATE DATABASE BRANCH qa")
    qa = connect("qa")
    run(qa, "UPDATE items SET qty = 1 WHERE id = 1", "VACUUM items")
    assert [r[0] for r in images(qa)] == ["qa"]
    qa.close()
    run(conn, "DROP DATABASE BRANCH qa")
    assert images(conn) == []


def test_constraints_hold_and_a_child_forked_later_sees_the_branch_at_its_fork(dev: heliosdb.Connection,
                                                                             connect) -> None:
    run(dev, "VACUUM items")
    with pytest.raises(heliosdb.Error) as exc:
        run(dev, "INSERT INTO items VALUES (1, 'dup', 1, 'q')")
    assert exc.value.sqlstate == "23505"
    with pytest.raises(heliosdb.Error) as exc:
        run(dev, "UPDATE items SET code = 'c2' WHERE id = 3")
    assert exc.value.sqlstate == "23505"
    assert reads_image(dev)  # the failed statements left nothing
    run(dev, "CREATE DATABASE BRANCH child FROM dev")
    want = rows(dev, ALL)
    run(dev, "UPDATE items SET name = 'after fork' WHERE id = 1", "VACUUM items")
    child = connect("child")
    assert rows(child, ALL) == want
    assert rows(dev, "SELECT name FROM items WHERE id = 1") == [("after fork",)]
    before = rows(dev, f"SELECT id, name, qty FROM items AS OF LSN {rows(dev, 'SELECT heliosdb.current_lsn()')[0][0]}"
                       " ORDER BY id")
    assert before == rows(dev, ALL)


def test_merge_into_the_branch_is_read_at_once(dev: heliosdb.Connection, conn) -> None:
    run(dev, "VACUUM items")
    run(conn, "UPDATE items SET name = 'from main' WHERE id = 2")
    run(dev, "MERGE DATABASE BRANCH main INTO dev")
    assert rows(dev, "SELECT name FROM items WHERE id = 2") == [("from main",)]


def test_vacuum_skips_tables_the_branch_reads_as_they_are_and_refuses_a_transaction(
        conn: heliosdb.Connection, connect) -> None:
    run(conn, "CREATE TABLE quiet (id int PRIMARY KEY)", "INSERT INTO quiet VALUES (1)",
        "CREATE DATABASE BRANCH dev")
    d = connect("dev")
    run(d, "VACUUM", "VACUUM quiet")
    assert images(d) == []  # nothing to hide: an image would only cost space
    t = connect("dev", autocommit=False)
    with pytest.raises(heliosdb.Error) as exc:
        run(t, "VACUUM quiet")
    assert exc.value.sqlstate == "25001"


def test_upkeep_builds_and_refreshes_images_of_tables_branches_wrote(
        dev: heliosdb.Connection, helios_instance, dbname: str) -> None:
    import psycopg

    from heliosdb.branching import images as branch_images

    with psycopg.connect(**helios_instance.conninfo(dbname), autocommit=True) as raw:
        assert branch_images.upkeep(raw, quiet=0, min_rows=10_000) == 0  # 200 rows: not worth an image
        assert branch_images.upkeep(raw, quiet=3600, min_rows=0) == 0  # written just now: maybe a load
        assert branch_images.upkeep(raw, quiet=0, min_rows=0) == 1
        assert reads_image(dev)
        run(dev, "UPDATE items SET name = 'again' WHERE id = 11")
        assert not reads_image(dev)
        assert branch_images.upkeep(raw, quiet=0, min_rows=0) == 1
        assert branch_images.upkeep(raw, quiet=0, min_rows=0) == 0  # nothing changed since
    assert reads_image(dev)
    assert rows(dev, "SELECT name FROM items WHERE id = 11") == [("again",)]


def test_a_long_lived_process_keeps_a_written_tables_image(conn: heliosdb.Connection, helios_data_dir,
                                                           dbname: str) -> None:
    import time

    run(conn, "CREATE TABLE big (id int PRIMARY KEY, v int)",
        "INSERT INTO big SELECT g, g FROM generate_series(1, 20000) g", "ANALYZE big",
        "CREATE DATABASE BRANCH dev")
    bg = heliosdb.connect(data_dir=helios_data_dir, database=dbname, branch="dev", background=True)
    bg.autocommit = True
    try:
        run(bg, "UPDATE big SET v = -v WHERE id % 100 = 0")
        deadline = time.monotonic() + 30
        while not images(bg) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert images(bg) == [("dev", rows(bg, "SELECT id FROM heliosdb._tables")[0][0])]
        assert reads_image(bg, "SELECT sum(v) FROM big")
        assert rows(bg, "SELECT sum(v) FROM big") == [(sum(range(1, 20001)) - 2 * sum(range(100, 20001, 100)),)]
    finally:
        bg.close()


def test_a_grandchild_gets_an_image_of_what_it_inherited_through_its_parent(dev: heliosdb.Connection,
                                                                            connect) -> None:
    run(dev, "CREATE DATABASE BRANCH grandchild FROM dev")
    run(dev, "UPDATE items SET name = 'dev later' WHERE id = 2")  # after the fork: not the grandchild's
    g = connect("grandchild")
    want = rows(g, ALL)
    run(g, "VACUUM items")  # it wrote nothing, but its parent did before the fork
    assert reads_image(g)
    assert rows(g, ALL) == want
    assert rows(g, "SELECT name FROM items WHERE id = 2") == [("n2",)]
    run(g, "DELETE FROM items WHERE id = 1000")
    assert rows(g, "SELECT count(*) FROM items WHERE id = 1000") == [(0,)]


def test_a_repeatable_read_snapshot_older_than_the_image_reads_the_rows(dev: heliosdb.Connection,
                                                                        connect) -> None:
    run(dev, "VACUUM items")
    reader = connect("dev", autocommit=False)
    run(reader, "BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT 1")  # its snapshot: before the next image
    run(dev, "ALTER TABLE items RENAME COLUMN name TO title", "VACUUM items")  # a new image, same table
    assert reads_image(dev, "SELECT * FROM items")
    assert rows(reader, "SELECT count(*) FROM items") == [(200,)]
    reader.commit()
    assert rows(reader, "SELECT count(*) FROM items") == [(200,)]


def test_vacuum_does_not_wait_for_a_transaction_reading_the_table(dev: heliosdb.Connection, connect) -> None:
    reader = connect("dev", autocommit=False)
    assert rows(reader, "SELECT name FROM items WHERE id = 1") == [("n1",)]  # holds the view until it ends
    cur = dev.cursor()
    cur.execute("VACUUM items")  # a new image would replace the view: it gives up instead of queueing readers
    assert any('image of table "items" is not in use yet' in n for n in cur.notices), cur.notices
    assert rows(dev, "SELECT installed FROM heliosdb._images") == [(False,)]
    assert "_hdb_img" not in "\n".join(r[0] for r in rows(dev, "EXPLAIN SELECT * FROM items"))
    run(dev, "UPDATE items SET name = 'meanwhile' WHERE id = 2")
    reader.commit()
    run(dev, "VACUUM items")  # catches the image up (no second copy) and puts it in place
    assert reads_image(dev)
    assert rows(dev, "SELECT name FROM items WHERE id = 2") == [("meanwhile",)]


def test_an_index_with_an_operator_class_is_left_out_of_the_image(dev: heliosdb.Connection) -> None:
    run(dev, "CREATE INDEX items_name_pattern ON items (name text_pattern_ops)",
        "CREATE INDEX items_code_hash ON items USING hash (code)")
    if rows(dev, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'") == [(1,)]:
        run(dev, "CREATE EXTENSION IF NOT EXISTS pg_trgm", "CREATE INDEX items_trgm ON items USING gin (name gin_trgm_ops)")
    cur = dev.cursor()
    cur.execute("VACUUM")
    assert cur.notices == []
    assert reads_image(dev)
    made = [r[0] for r in rows(dev, "SELECT indexdef FROM pg_indexes WHERE tablename = '_hdb_img1'")]
    assert any("USING hash (code)" in d for d in made), made  # over the image: the hash index, not the others
    assert not any("pattern" in d or "trgm" in d for d in made), made


def test_ddl_while_a_new_image_waits_to_be_put_in_place(dev: heliosdb.Connection, connect) -> None:
    reader = connect("dev", autocommit=False)
    rows(reader, "SELECT 1 FROM items LIMIT 1")
    run(dev, "VACUUM items")  # copied, not in place: the reader holds the view
    reader.commit()
    run(dev, "CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items (id))",
        "INSERT INTO orders VALUES (1, 5)", "VACUUM items")
    assert reads_image(dev)
    with pytest.raises(heliosdb.Error) as exc:  # the write trigger still knows the new foreign key
        run(dev, "DELETE FROM items WHERE id = 5")
    assert exc.value.sqlstate == "23503"
    rows(reader, "SELECT 1 FROM items LIMIT 1")
    run(dev, "UPDATE items SET qty = 1 WHERE id = 1", "VACUUM items")  # refreshed: the view stays as it is
    assert reads_image(dev)
    reader.commit()
    run(dev, "ALTER TABLE items ADD COLUMN note text DEFAULT 'x'")
    assert images(dev) == []
    run(dev, "VACUUM items")
    assert rows(dev, "SELECT note FROM items WHERE id = 1000") == [("x",)]
    assert reads_image(dev)


def test_upkeep_leaves_branches_never_used(dev: heliosdb.Connection, helios_instance, dbname: str) -> None:
    import psycopg

    from heliosdb.branching import images as branch_images

    run(dev, "CREATE DATABASE BRANCH unused FROM dev")
    with psycopg.connect(**helios_instance.conninfo(dbname), autocommit=True) as raw:
        assert branch_images.upkeep(raw, quiet=0, min_rows=0) == 1  # dev's; unused has no schema yet
    assert [r[0] for r in images(dev)] == ["dev"]


def test_maintenance_names_the_table_with_the_branch_schema_too(dev: heliosdb.Connection, conn) -> None:
    """VACUUM/ANALYZE/REINDEX public.t on main, and <the branch's schema>.t on a branch, as the bare name."""
    run(conn, "ANALYZE public.items", "REINDEX TABLE public.items", "VACUUM (ANALYZE) public.items")
    assert rows(conn, "SELECT c.reltuples FROM heliosdb._tables t JOIN pg_class c "
                      "ON c.oid = format('%I.%I', t.phys_schema, t.phys_name)::regclass") == [(200.0,)]
    schema = rows(dev, "SELECT current_schemas(false)")[0][0][0]
    assert schema != "public"
    run(dev, f"VACUUM {schema}.items")
    assert [r[0] for r in images(dev)] == ["dev"]
    assert reads_image(dev)
