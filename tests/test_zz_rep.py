from tests.test_branches import rows, run, sqlstate
from tests.test_mviews import multiset, staleness
import heliosdb
from heliosdb.mv.scheduler import Scheduler

def test_rep(conn, connect):
    run(conn, "CREATE TABLE t (id int PRIMARY KEY, g int, v int)", "INSERT INTO t SELECT i, i % 3, i FROM generate_series(1, 20) i")
    fq = "SELECT id, 100 / v AS r FROM t ORDER BY id LIMIT 1000"
    run(conn, f"CREATE MATERIALIZED VIEW frail AS {fq} WITH (priority = high, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW reader AS SELECT count(*) AS c, sum(r) AS s FROM frail WITH (staleness_threshold = 0)",
        "UPDATE t SET v = 0 WHERE id = 3")
    s = Scheduler(conn.session.new_connection, cpu_reader=lambda: 0.0, per_tick=4)
    print(s.run_once())
    print(rows(conn, "SELECT name, status, last_error FROM heliosdb._mv_staleness() ORDER BY name"))
    s.stop()
