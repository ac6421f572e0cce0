from tests.test_branches import rows, run, sqlstate
import heliosdb

def ex(conn, s):
    cur = conn.cursor()
    try:
        cur.execute(s)
        print("OK", s[:70], cur.notices)
    except heliosdb.Error as e:
        print("ERR", s[:70], e.sqlstate, e.message, e.hint)

def test_smoke(conn, connect):
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int, n numeric)",
        "CREATE TABLE u (id int PRIMARY KEY, k int)",
        "INSERT INTO t VALUES (1, 1, 10, 1.5), (2, 1, 20, NULL), (3, NULL, 5, 2.25), (4, 2, NULL, 3)",
        "INSERT INTO u VALUES (1, 1), (2, 2)")
    for q in ["SELECT * FROM t LIMIT 2", "SELECT t.id, u.k FROM t LEFT JOIN u ON t.g = u.k",
              "SELECT id FROM t WHERE g IN (SELECT k FROM u)", "SELECT id, row_number() OVER (ORDER BY id) AS r FROM t",
              "SELECT id, random() AS r FROM t"]:
        ex(conn, f"CREATE MATERIALIZED VIEW f AS {q} WITH (maintenance_strategy = immediate)")
        ex(conn, f"CREATE MATERIALIZED VIEW f AS {q}")
        run(conn, "INSERT INTO t VALUES (100, 1, 1, 1)")
        ex(conn, "REFRESH MATERIALIZED VIEW f INCREMENTAL")
        print(rows(conn, "SELECT last_refresh_mode, last_refresh_reason FROM heliosdb.mv_staleness WHERE name = 'f'"))
        ex(conn, "DROP MATERIALIZED VIEW f")
        run(conn, "DELETE FROM t WHERE id = 100")
    ex(conn, "CREATE MATERIALIZED VIEW a AS SELECT g, v FROM t")
    ex(conn, "CREATE MATERIALIZED VIEW IF NOT EXISTS a AS SELECT g, v FROM t")
    ex(conn, "CREATE MATERIALIZED VIEW a AS SELECT g, v FROM t")
    ex(conn, "CREATE MATERIALIZED VIEW b AS SELECT g, count(*) AS c FROM a GROUP BY g")
    ex(conn, "CREATE MATERIALIZED VIEW s AS SELECT * FROM s")
    ex(conn, "CREATE MATERIALIZED VIEW s2 AS SELECT 1 AS x FROM t, s2")
    ex(conn, "DROP MATERIALIZED VIEW a")
    ex(conn, "DROP MATERIALIZED VIEW IF EXISTS nope")
    ex(conn, "DROP MATERIALIZED VIEW nope")
    ex(conn, "REFRESH MATERIALIZED VIEW nope")
    ex(conn, "ALTER MATERIALIZED VIEW nope SET (priority = high)")
    ex(conn, "ALTER MATERIALIZED VIEW IF EXISTS nope SET (priority = high)")
    ex(conn, "ALTER MATERIALIZED VIEW a SET (priority = high, maintenance_strategy = deferred)")
    ex(conn, "ALTER MATERIALIZED VIEW a SET (max_cpu_percent = 101)")
    ex(conn, "ALTER MATERIALIZED VIEW a SET (staleness_threshold = -0.1)")
    ex(conn, "ALTER MATERIALIZED VIEW a SET (max_staleness_seconds = abc)")
    print(rows(conn, "SELECT * FROM heliosdb.mv_staleness"))
    print(rows(conn, "SELECT * FROM heliosdb.mv_dependencies"))
    ex(conn, "CREATE MATERIALIZED VIEW c AS SELECT id FROM t WITH NO DATA")
    print(rows(conn, "SELECT name, status, last_refresh_mode, pending_changes, staleness FROM heliosdb.mv_staleness"))
    ex(conn, "SELECT * FROM c")
    ex(conn, "REFRESH MATERIALIZED VIEW CONCURRENTLY c")
    print(rows(conn, "SELECT count(*) FROM c"))
    ex(conn, "CREATE MATERIALIZED VIEW d WITH (priority = low) AS SELECT id FROM t WITH NO DATA")
    ex(conn, "CREATE MATERIALIZED VIEW e AS SELECT id FROM t WITH (priority = 'low') WITH DATA")
    ex(conn, "DROP MATERIALIZED VIEW d, e")
    ex(conn, "DROP MATERIALIZED VIEW a CASCADE")
    print(rows(conn, "SELECT name FROM heliosdb.mv_staleness"))
    ex(conn, "SELECT * FROM b")
    ex(conn, "CREATE VIEW pv AS SELECT * FROM c")
    ex(conn, "DROP MATERIALIZED VIEW c")
    ex(conn, "SELECT * FROM pv")
