"""The materialized-view refresh scheduler (issue 5), driven one round at a time with run_once().

No thread timing is relied on: each test builds a Scheduler over the test's database with an injected
CPU reading and calls run_once() itself; what it checks is what a user sees afterwards (the views'
contents, heliosdb.mv_staleness).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import heliosdb
from heliosdb.mv.scheduler import Scheduler
from tests.test_branches import rows, run
from tests.test_mviews import assert_view_equals_query, staleness


class Cpu:
    """An injected CPU reading (percent) the test can change between rounds."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def scheduler(conn: heliosdb.Connection) -> Iterator[object]:
    """A factory of schedulers over the test's database (never started: the test calls run_once)."""
    made: list[Scheduler] = []

    def make(cpu: Cpu | None = None, per_tick: int = 1, aging_seconds: float = 1e6) -> Scheduler:
        s = Scheduler(conn.session.new_connection, cpu_reader=cpu or Cpu(0.0), per_tick=per_tick,
                      aging_seconds=aging_seconds)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def did(result: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(view, what) of one round."""
    return [(view, what) for view, _branch, what in result]


def seed_table(conn: heliosdb.Connection, name: str = "t", n: int = 100) -> None:
    run(conn, f"CREATE TABLE {name} (id int PRIMARY KEY, g int, v int)",
        f"INSERT INTO {name} SELECT i, i % 5, i FROM generate_series(1, {n}) i")


def test_priority_order_when_several_are_due(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    # created from lowest to highest priority, so creation order is not what decides
    for prio in ("low", "medium", "high", "critical"):
        run(conn, f"CREATE MATERIALIZED VIEW v_{prio} AS SELECT g, count(*) AS c, sum(v) AS s FROM t GROUP BY g "
                  f"WITH (priority = {prio}, staleness_threshold = 0)")
    run(conn, "UPDATE t SET v = -1 WHERE id = 7", "DELETE FROM t WHERE id = 8")
    for prio in ("low", "medium", "high", "critical"):
        assert staleness(conn, f"v_{prio}", "status, pending_changes") == ("STALE", 2)
    s = scheduler(per_tick=1)
    order = []
    for _ in range(4):
        got = did(s.run_once())
        assert len(got) == 1, got
        order.append(got[0])
    assert order == [("v_critical", "incremental"), ("v_high", "incremental"), ("v_medium", "incremental"),
                     ("v_low", "incremental")]
    assert s.run_once() == []  # nothing left to do
    for prio in ("low", "medium", "high", "critical"):
        assert staleness(conn, f"v_{prio}", "status, pending_changes, last_refresh_mode") == ("FRESH", 0, "incremental")
        assert_view_equals_query(conn, f"v_{prio}", "SELECT g, count(*) AS c, sum(v) AS s FROM t GROUP BY g")


def test_high_cpu_defers_non_critical_views_only(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    run(conn, "CREATE MATERIALIZED VIEW crit AS SELECT id, v FROM t WHERE v > 50 "
              "WITH (priority = critical, max_cpu_percent = 50, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW med AS SELECT id, v FROM t WHERE v > 50 "
        "WITH (priority = high, max_cpu_percent = 50, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW tolerant AS SELECT id, v FROM t WHERE v > 50 "
        "WITH (priority = low, max_cpu_percent = 99, staleness_threshold = 0)",
        "UPDATE t SET v = 0 WHERE id = 90")
    cpu = Cpu(95.0)
    s = scheduler(cpu, per_tick=4)
    got = dict(did(s.run_once()))
    assert got == {"crit": "incremental", "med": "deferred: cpu", "tolerant": "incremental"}
    assert staleness(conn, "crit", "status")[0] == "FRESH"
    assert staleness(conn, "tolerant", "status")[0] == "FRESH"
    assert staleness(conn, "med", "status, pending_changes") == ("STALE", 1)
    assert rows(conn, "SELECT count(*) FROM med WHERE id = 90") == [(1,)]  # still the old contents
    for _ in range(3):  # still high: still waiting
        assert dict(did(s.run_once())) == {"med": "deferred: cpu"}
    cpu.value = 5.0  # the load goes away: the (smoothed) reading falls under 50 within a few rounds
    for _ in range(6):
        got = dict(did(s.run_once()))
        if got:
            assert got in ({"med": "deferred: cpu"}, {"med": "incremental"}), got
            if got["med"] == "incremental":
                break
    else:
        raise AssertionError("med was never refreshed after the CPU load went away")
    assert_view_equals_query(conn, "med", "SELECT id, v FROM t WHERE v > 50")
    assert staleness(conn, "med", "status")[0] == "FRESH"


def test_max_cpu_percent_0_waits_for_an_idle_cpu(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    run(conn, "CREATE MATERIALIZED VIEW cpu0 AS SELECT count(*) AS n FROM t WITH (max_cpu_percent = 0, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW cpu1 AS SELECT count(*) AS n FROM t WITH (max_cpu_percent = 1, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW crit0 AS SELECT count(*) AS n FROM t "
        "WITH (max_cpu_percent = 0, staleness_threshold = 0, priority = critical)",
        "INSERT INTO t VALUES (1000, 0, 1)")
    busy = scheduler(Cpu(50.0), per_tick=4)
    for n in range(3):  # 0 is the strictest limit, not none; critical views still ignore it
        assert dict(did(busy.run_once())) == {"cpu0": "deferred: cpu", "cpu1": "deferred: cpu"} | (
            {"crit0": "incremental"} if n == 0 else {})
    assert staleness(conn, "cpu0", "status, pending_changes") == ("STALE", 1)
    assert staleness(conn, "crit0", "status") == ("FRESH",)
    idle = scheduler(Cpu(0.0), per_tick=4)  # an idle CPU: both may go
    assert dict(did(idle.run_once())) == {"cpu0": "incremental", "cpu1": "incremental"}
    assert_view_equals_query(conn, "cpu0", "SELECT count(*) AS n FROM t")
    assert staleness(conn, "cpu0", "status") == ("FRESH",)


def test_waiting_views_age_so_none_starves(conn: heliosdb.Connection, scheduler) -> None:
    for name in ("tl", "th", "tc"):
        seed_table(conn, name, 40)
    run(conn, "CREATE MATERIALIZED VIEW lo AS SELECT g, sum(v) AS s FROM tl GROUP BY g "
              "WITH (priority = low, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW hi AS SELECT g, sum(v) AS s FROM th GROUP BY g "
        "WITH (priority = high, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW cr AS SELECT g, sum(v) AS s FROM tc GROUP BY g "
        "WITH (priority = critical, staleness_threshold = 0)")
    s = scheduler(per_tick=1, aging_seconds=0.5)
    run(conn, "UPDATE tl SET v = 0 WHERE id = 1", "UPDATE tc SET v = 0 WHERE id = 1")
    assert did(s.run_once()) == [("cr", "incremental")]  # lo starts waiting
    time.sleep(1.8)  # several aging periods: lo is now ahead of any fresh high-priority view
    run(conn, "UPDATE th SET v = 0 WHERE id = 1")
    assert did(s.run_once()) == [("lo", "incremental")]
    assert did(s.run_once()) == [("hi", "incremental")]
    # without aging the fresh high-priority view would have gone first
    run(conn, "UPDATE tl SET v = 1 WHERE id = 2", "UPDATE th SET v = 1 WHERE id = 2")
    s2 = scheduler(per_tick=1)
    assert did(s2.run_once()) == [("hi", "incremental")]
    assert did(s2.run_once()) == [("lo", "incremental")]


def test_max_staleness_seconds_is_honoured(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    seed_table(conn, "quiet", 10)
    # staleness_threshold = 1: only the age rule can make these due
    run(conn, "CREATE MATERIALIZED VIEW aged AS SELECT g, sum(v) AS s FROM t GROUP BY g "
              "WITH (staleness_threshold = 1, max_staleness_seconds = 1)",
        "CREATE MATERIALIZED VIEW idle AS SELECT g, sum(v) AS s FROM quiet GROUP BY g "
        "WITH (staleness_threshold = 1, max_staleness_seconds = 1)",
        "CREATE MATERIALIZED VIEW patient AS SELECT g, sum(v) AS s FROM t GROUP BY g "
        "WITH (staleness_threshold = 1, max_staleness_seconds = 3600)")
    run(conn, "UPDATE t SET v = 1000 WHERE id = 3")
    s = scheduler(per_tick=4)
    assert s.run_once() == []  # pending changes, but younger than max_staleness_seconds
    status, next_at = rows(conn, "SELECT status, next_scheduled > clock_timestamp() FROM heliosdb.mv_staleness "
                                 "WHERE name = 'aged'")[0]
    assert (status, next_at) == ("STALE", True)
    time.sleep(1.2)
    assert did(s.run_once()) == [("aged", "incremental")]  # the quiet view has nothing pending; patient can wait
    assert_view_equals_query(conn, "aged", "SELECT g, sum(v) AS s FROM t GROUP BY g")
    assert staleness(conn, "patient", "status, pending_changes") == ("STALE", 1)
    assert staleness(conn, "idle", "status, pending_changes") == ("FRESH", 0)
    assert s.run_once() == []


def test_on_demand_and_immediate_views_are_left_alone(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    q = "SELECT g, count(*) AS c, sum(v) AS s FROM t GROUP BY g"
    run(conn, f"CREATE MATERIALIZED VIEW od AS {q} WITH (maintenance_strategy = on_demand, "
              "staleness_threshold = 0, max_staleness_seconds = 0, priority = critical)",
        f"CREATE MATERIALIZED VIEW im AS {q} WITH (maintenance_strategy = immediate, staleness_threshold = 0, "
        "max_staleness_seconds = 0, priority = critical)",
        f"CREATE MATERIALIZED VIEW de AS {q} WITH (maintenance_strategy = deferred, staleness_threshold = 0)",
        f"CREATE MATERIALIZED VIEW inc AS {q} WITH (staleness_threshold = 0)")
    od_before = rows(conn, "SELECT * FROM od ORDER BY g")
    run(conn, "UPDATE t SET v = v + 1 WHERE id < 4")
    s = scheduler(per_tick=10)
    got = dict(did(s.run_once()))
    assert got == {"de": "full", "inc": "incremental"}
    assert s.run_once() == []
    assert rows(conn, "SELECT * FROM od ORDER BY g") == od_before
    assert staleness(conn, "od", "status, pending_changes, next_scheduled") == ("STALE", 3, None)
    assert_view_equals_query(conn, "im", q)  # kept by the writes themselves
    assert staleness(conn, "im", "status, next_scheduled") == ("FRESH", None)
    for view in ("de", "inc"):
        assert_view_equals_query(conn, view, q)


def test_a_downstream_refresh_brings_its_input_to_the_same_point(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn)
    run(conn, "CREATE MATERIALIZED VIEW up AS SELECT id, g, v FROM t WHERE v % 2 = 0 "
              "WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW mid AS SELECT g, count(*) AS c, max(v) AS m FROM up GROUP BY g "
        "WITH (maintenance_strategy = on_demand)",
        "CREATE MATERIALIZED VIEW down AS SELECT g, c FROM mid WHERE c > 1 WITH (staleness_threshold = 0)")
    assert rows(conn, "SELECT view, depends_on_kind, depends_on FROM heliosdb.mv_dependencies ORDER BY 1") == [
        ("down", "mv", "mid"), ("mid", "mv", "up"), ("up", "table", "t")]
    run(conn, "DELETE FROM t WHERE g = 2", "UPDATE t SET v = 1000 WHERE id = 3", "INSERT INTO t VALUES (500, 9, 2)")
    # down has nothing pending of its own yet, but is as stale as its inputs
    st = rows(conn, "SELECT name, status, staleness > 0 FROM heliosdb.mv_staleness ORDER BY name")
    assert st == [("down", "STALE", True), ("mid", "STALE", True), ("up", "STALE", True)]
    s = scheduler(per_tick=4)
    got = did(s.run_once())  # the on_demand inputs are not scheduled themselves...
    assert [v for v, _ in got] == ["down"] and got[0][1] in ("incremental", "full"), got
    up_q = "SELECT id, g, v FROM t WHERE v % 2 = 0"
    mid_q = f"SELECT g, count(*) AS c, max(v) AS m FROM ({up_q}) up GROUP BY g"
    assert_view_equals_query(conn, "up", up_q)  # ... but were brought to the same point first
    assert_view_equals_query(conn, "mid", mid_q)
    assert_view_equals_query(conn, "down", f"SELECT g, c FROM ({mid_q}) mid WHERE c > 1")
    lsns = rows(conn, "SELECT DISTINCT last_refresh_lsn FROM heliosdb.mv_staleness")
    assert len(lsns) == 1, lsns
    assert [r[0] for r in rows(conn, "SELECT status FROM heliosdb.mv_staleness")] == ["FRESH"] * 3


def test_failures_retry_with_backoff_and_mark_downstream(conn: heliosdb.Connection, scheduler) -> None:
    seed_table(conn, "t", 20)
    fq = "SELECT id, 100 / v AS r FROM t ORDER BY id LIMIT 1000"  # outside the classes: refreshed in full
    run(conn, f"CREATE MATERIALIZED VIEW frail AS {fq} WITH (priority = high, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW reader AS SELECT count(*) AS c, sum(r) AS s FROM frail "
        "WITH (staleness_threshold = 0)")
    before = rows(conn, "SELECT * FROM frail ORDER BY id")
    run(conn, "UPDATE t SET v = 0 WHERE id = 3")  # the next recomputation divides by zero
    s = scheduler(per_tick=1)
    assert did(s.run_once()) == [("frail", "failed")]
    st = rows(conn, "SELECT name, status, next_scheduled > clock_timestamp(), last_error "
                    "FROM heliosdb._mv_staleness() ORDER BY name")
    assert st[0][:3] == ("frail", "FAILED", True) and "division by zero" in st[0][3], st
    assert st[1][:2] == ("reader", "UPSTREAM_FAILED"), st
    assert "frail" in st[1][3], st
    assert rows(conn, "SELECT * FROM frail ORDER BY id") == before  # readers keep the last good contents
    assert s.run_once() == []  # not before its retry time; the reader waits for its input
    wait = rows(conn, "SELECT extract(epoch FROM next_scheduled - clock_timestamp()) FROM heliosdb.mv_staleness "
                      "WHERE name = 'frail'")[0][0]
    assert 0 < wait <= 1.5
    time.sleep(float(wait) + 0.1)
    assert did(s.run_once()) == [("frail", "failed")]  # retried, fails again: a longer wait
    wait2 = rows(conn, "SELECT extract(epoch FROM next_scheduled - clock_timestamp()) FROM heliosdb.mv_staleness "
                       "WHERE name = 'frail'")[0][0]
    assert wait < wait2 <= 60
    assert staleness(conn, "reader", "status")[0] == "UPSTREAM_FAILED"
    # a manual refresh reports the error to the user as it is, and counts as a failure too
    try:
        conn.cursor().execute("REFRESH MATERIALIZED VIEW frail")
    except heliosdb.Error as exc:
        assert exc.sqlstate == "22012"
    else:
        raise AssertionError("REFRESH of a failing view succeeded")
    wait3 = rows(conn, "SELECT extract(epoch FROM next_scheduled - clock_timestamp()) FROM heliosdb.mv_staleness "
                       "WHERE name = 'frail'")[0][0]
    assert wait2 < wait3 <= 60
    run(conn, "UPDATE t SET v = 1 WHERE id = 3")  # the data is fixed
    time.sleep(float(wait3) + 0.1)
    assert did(s.run_once()) == [("frail", "full")]
    assert staleness(conn, "frail", "status")[0] == "FRESH"
    assert staleness(conn, "reader", "status")[0] == "STALE"  # may run again
    assert did(s.run_once()) == [("reader", "full")]
    assert_view_equals_query(conn, "frail", fq)
    assert_view_equals_query(conn, "reader", f"SELECT count(*) AS c, sum(r) AS s FROM ({fq}) f")
    assert [r[0] for r in rows(conn, "SELECT status FROM heliosdb.mv_staleness")] == ["FRESH", "FRESH"]


def test_a_reader_of_a_failed_view_is_upstream_failed_with_default_per_tick(conn: heliosdb.Connection,
                                                                             scheduler) -> None:
    seed_table(conn, "t", 20)
    run(conn, "CREATE MATERIALIZED VIEW frail AS SELECT id, 100 / v AS r FROM t ORDER BY id LIMIT 1000 "
              "WITH (priority = high, staleness_threshold = 0)",
        "CREATE MATERIALIZED VIEW reader AS SELECT count(*) AS c, sum(r) AS s FROM frail "
        "WITH (staleness_threshold = 0)",
        "UPDATE t SET v = 0 WHERE id = 3")
    s = scheduler(per_tick=4)
    assert did(s.run_once())[0] == ("frail", "failed")
    st = rows(conn, "SELECT name, status FROM heliosdb.mv_staleness ORDER BY name")
    assert st == [("frail", "FAILED"), ("reader", "UPSTREAM_FAILED")]  # actual: reader FAILED


def test_views_on_branches_are_scheduled_on_their_branch(conn: heliosdb.Connection, connect, scheduler) -> None:
    seed_table(conn, "t", 30)
    q = "SELECT g, count(*) AS c, sum(v) AS s FROM t GROUP BY g"
    run(conn, f"CREATE MATERIALIZED VIEW onmain AS {q} WITH (staleness_threshold = 0)", "CREATE DATABASE BRANCH dev")
    dev = connect("dev")
    run(dev, f"CREATE MATERIALIZED VIEW ondev AS {q} WITH (staleness_threshold = 0)",
        "UPDATE t SET v = 1000 WHERE id = 1")
    main_before = rows(conn, "SELECT * FROM onmain ORDER BY g")
    s = scheduler(per_tick=10)
    got = s.run_once()
    assert ("ondev", "dev", "incremental") in got, got
    assert all(branch == "dev" for _, branch, _ in got), got  # main's data did not change: nothing due there
    assert_view_equals_query(dev, "ondev", q)
    assert rows(conn, "SELECT * FROM onmain ORDER BY g") == main_before
    run(conn, "DELETE FROM t WHERE id = 2")
    got = s.run_once()
    assert ("onmain", "main", "incremental") in got and all(branch == "main" for _, branch, _ in got), got
    assert_view_equals_query(conn, "onmain", q)
    assert_view_equals_query(dev, "ondev", q)  # dev's view does not see main's delete
    assert rows(dev, "SELECT count(*) FROM t WHERE id = 2") == [(1,)]
