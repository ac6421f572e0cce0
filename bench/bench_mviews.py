"""Benchmark 6: materialized views (issue 5).

Refresh: table t with N rows (grp = id % 100: 100 groups) in a HeliosDB
database and in a plain database; the view
    SELECT grp, sum(v), count(*), avg(v) FROM t GROUP BY grp
is a HeliosDB materialized view (on_demand, so only the benchmark refreshes
it) and a PostgreSQL materialized view. Per repetition, untimed, both sides
get the same change: `UPDATE t SET v = v + 1 WHERE id % K = r` (K = 1000 for
0.1% of the rows, 100 for 1%; r moves on every repetition). Timed:
`REFRESH MATERIALIZED VIEW mv INCREMENTAL` through heliosdb.connect against
PostgreSQL's `REFRESH MATERIALIZED VIEW mv` through psycopg. Targets: the peer
takes at least 50x (0.1%) and 5x (1%) as long. Afterwards both views must equal
the query.

Immediate maintenance: two HeliosDB tables w_imm and w_base with the same
100,000 rows; w_imm has an immediate view grouped like the one above.
Interleaved, `UPDATE w_x SET v = v + 1 WHERE id = %s` (random keys, autocommit)
through heliosdb.connect on both. Target: at most 2x the write without the view.
"""

from __future__ import annotations

import random
import time
from typing import Any

from common import Env, Result, execute, fetch_all, interleaved, median
from data import helios_t, load_t

VIEW = "SELECT grp, sum(v), count(*), avg(v) FROM t GROUP BY grp"
TARGETS = {1000: 50.0, 100: 5.0}  # K -> how many times faster than the peer's full refresh
IMM_TARGET = 2.0
W_ROWS = 100_000


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return sorted(map(repr, a)) == sorted(map(repr, b))


def run(env: Env, rows: int, reps: int, imm_reps: int) -> list[Result]:
    results: list[Result] = []
    helios_t(env, "helios_mv", rows)
    env.create_database("plain_mv")
    plain = env.pg("plain_mv")
    load_t(plain, rows)
    env.vacuum_analyze("plain_mv")
    helios = env.helios("helios_mv")
    env.log("materialized views: creating the view on both sides")
    t0 = time.perf_counter()
    execute(helios, f"CREATE MATERIALIZED VIEW mv AS {VIEW} WITH (maintenance_strategy = on_demand)")
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    execute(plain, f"CREATE MATERIALIZED VIEW mv AS {VIEW}")
    results.append(Result(bench="6", name=f"CREATE MATERIALIZED VIEW ... WITH DATA ({rows:,} rows, one run)",
                          kind="time", helios=created, peer=time.perf_counter() - t0,
                          peer_label="PostgreSQL CREATE MATERIALIZED VIEW", target="info", ok=None))
    for k, target in TARGETS.items():
        r = [0]

        def change(conn: Any, k: int = k, r: list[int] = r) -> None:
            execute(conn, f"UPDATE t SET v = v + 1 WHERE id % {k} = {r[0] % k}")

        def helios_side() -> float:
            change(helios)
            t = time.perf_counter()
            execute(helios, "REFRESH MATERIALIZED VIEW mv INCREMENTAL")
            return time.perf_counter() - t

        def peer_side(r: list[int] = r) -> float:
            change(plain)
            r[0] += 1  # both sides got the change: the next repetition moves on
            t = time.perf_counter()
            execute(plain, "REFRESH MATERIALIZED VIEW mv")
            return time.perf_counter() - t

        env.log(f"materialized views: refresh after {100 / k:g}% changed, {reps} repetitions")
        times = interleaved({"helios": helios_side, "peer": peer_side}, reps)
        h, p = median(times["helios"]), median(times["peer"])
        mode = fetch_all(helios, "SELECT last_refresh_mode FROM heliosdb.mv_staleness WHERE name = 'mv'")[0][0]
        ok_h = _same(fetch_all(helios, "SELECT * FROM mv"), fetch_all(helios, VIEW))
        ok_p = _same(fetch_all(plain, "SELECT * FROM mv"), fetch_all(plain, VIEW))
        note = "" if ok_h and ok_p else f"WRONG RESULT: helios view matches query: {ok_h}, peer: {ok_p}"
        results.append(Result(
            bench="6", name=f"incremental refresh after {100 / k:g}% of {rows:,} rows changed ({mode})",
            kind="time", helios=h, peer=p, peer_label="PostgreSQL REFRESH MATERIALIZED VIEW",
            target=f"<= {1 / target:.3g}x ({target:g}x faster)", ok=(p / h >= target) and not note, note=note))
    env.close(helios)
    env.close(plain)
    results.append(_immediate(env, imm_reps))
    return results


def _immediate(env: Env, reps: int) -> Result:
    conn = env.helios("helios_mv")
    for name in ("w_imm", "w_base"):
        execute(conn, f"CREATE TABLE {name} (id integer PRIMARY KEY, grp integer, v bigint)")
        execute(conn, f"INSERT INTO {name} SELECT g, g % 100, g FROM generate_series(1, {W_ROWS}) g")
    execute(conn, "CREATE MATERIALIZED VIEW w_mv AS SELECT grp, sum(v), count(*), avg(v) FROM w_imm GROUP BY grp "
                  "WITH (maintenance_strategy = immediate)")
    env.vacuum_analyze("helios_mv")
    rng = random.Random(7)
    keys = [rng.randint(1, W_ROWS) for _ in range(reps + 10)]
    pos = {"w_imm": 0, "w_base": 0}

    def write(name: str) -> Any:
        def sample() -> float:
            k = keys[pos[name] % len(keys)]
            pos[name] += 1
            t = time.perf_counter()
            execute(conn, f"UPDATE {name} SET v = v + 1 WHERE id = %s", (k,))
            return time.perf_counter() - t
        return sample

    env.log(f"materialized views: single-row writes with and without an immediate view, {reps} repetitions")
    times = interleaved({"imm": write("w_imm"), "base": write("w_base")}, reps, warmup=10)
    h, p = median(times["imm"]), median(times["base"])
    ok = _same(fetch_all(conn, "SELECT * FROM w_mv"),
               fetch_all(conn, "SELECT grp, sum(v), count(*), avg(v) FROM w_imm GROUP BY grp"))
    env.close(conn)
    return Result(bench="6", name="single-row UPDATE with an immediate view (vs the same table without)",
                  kind="time", helios=h, peer=p, peer_label="HeliosDB UPDATE, no view", target=f"<= {IMM_TARGET}x",
                  ok=(h / p <= IMM_TARGET) and ok, note="" if ok else "WRONG RESULT: the view differs from its query")
