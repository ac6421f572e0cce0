"""Benchmark 4: time travel (issue 3): reads AS OF an LSN, and timestamp -> LSN resolution.

Reads: table t with N rows in a HeliosDB database; take an LSN
(`heliosdb.current_lsn()`), then update 10% of the rows spread over the table
(`UPDATE t SET v = v + 1 WHERE id % 10 = 3`, one statement on main). Then,
interleaved, the same query AS OF that LSN and at head:
  aggregate     SELECT sum(v), count(*) FROM t [AS OF LSN <lsn>]
  point lookup  SELECT * FROM t [AS OF LSN <lsn>] WHERE id = %s   (random keys, same sequence)
each through `heliosdb.connect` (what a user runs; the AS OF clause is
rewritten by the Python front end on every statement) and through psycopg
directly on the HeliosDB database with the rewritten SQL (computed once with
`heliosdb.temporal.rewrite.rewrite`): the storage layout without the front end.
The target compares AS OF against head on the same path: <= 1.5x.

Resolution: a commit log of C commits (heliosdb._commits, filled with
generate_series: one commit per millisecond, increasing lsn/scn/time), then
`heliosdb.lsn_at(<random timestamp in range>)`: server-side per call (EXPLAIN
ANALYZE execution time of one call; and of a batch of calls in one statement,
divided by the batch size) and the client round trip. Peer: a plain table
c (lsn, committed_at) with the same rows and a btree index on committed_at,
`SELECT lsn FROM c WHERE committed_at <= $1 ORDER BY committed_at DESC LIMIT 1`.
Target: under 1 ms.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
import time
from typing import Any

from bench_reads import explain, query_sample
from common import Env, Result, Sample, Trace, execute, fetch_all, interleaved, median, pinned, top_steps
from data import create_helios_db, helios_t

TARGET_RATIO = 1.5
TARGET_RESOLVE_MS = 1.0

UPDATE_10PCT = "UPDATE t SET v = v + 1 WHERE id % 10 = 3"
AGG = "SELECT sum(v), count(*) FROM t{asof}"
POINT = "SELECT * FROM t{asof} WHERE id = %s"
PEER_LOOKUP = "SELECT lsn FROM c WHERE committed_at <= %s ORDER BY committed_at DESC LIMIT 1"
BATCH = 1_000


# -- setup --------------------------------------------------------------------------------------
def setup_reads(env: Env, db: str, rows: int) -> tuple[str, Result]:
    helios_t(env, db, rows)
    conn = env.helios(db)
    lsn = str(fetch_all(conn, "SELECT heliosdb.current_lsn()::text")[0][0])
    env.log(f"time travel: LSN {lsn} taken; {UPDATE_10PCT} on main")
    t0 = time.perf_counter()
    execute(conn, UPDATE_10PCT)
    upd = time.perf_counter() - t0
    env.log(f"  update took {upd:.1f} s")
    env.close(conn)
    env.vacuum_analyze(db)
    return lsn, Result(
        bench="4", name=f"setup: {UPDATE_10PCT} on main, {rows // 10:,} rows (one run)", kind="time",
        helios=upd, peer=None, peer_label="", target="info", ok=None,
    )


def _rewrite(conn: Any, text: str) -> str:
    from heliosdb.temporal.rewrite import rewrite

    return rewrite(conn.session, text)


def _check(env: Env, sides: dict[str, Any], queries: dict[str, str], lsn_rows: int, keys: list[tuple[int]]) -> str:
    """AS OF must return the state before the update: sum lower by the number of updated rows."""
    problems = []
    head = fetch_all(sides["helios_head"], queries["agg_head"])[0]
    for name in ("helios_asof", "direct_asof"):
        asof = fetch_all(sides[name], queries["agg_asof" if name.startswith("helios") else "agg_rw"])[0]
        if asof[1] != head[1] or head[0] - asof[0] != lsn_rows:
            problems.append(f"{name} aggregate {asof} vs head {head}")
    for (k,) in keys[:20]:
        h = fetch_all(sides["direct_head"], queries["point_head"], (k,))
        for name in ("helios_asof", "direct_asof"):
            q = queries["point_asof"] if name.startswith("helios") else queries["point_rw"]
            a = fetch_all(sides[name], q, (k,))
            want = [(r[0], r[1], r[2] - (1 if k % 10 == 3 else 0), r[3]) for r in h]
            if a != want:
                problems.append(f"{name} id {k}: {a} vs {want}")
    if problems:
        env.log("  WARNING: AS OF results are wrong: " + "; ".join(problems[:3]))
    return "; ".join(problems[:3])


def run_reads(env: Env, *, rows: int, db: str, point_reps: int, agg_reps: int,
              want_plans: bool) -> tuple[list[Result], str]:
    lsn, setup = setup_reads(env, db, rows)
    results = [setup]
    asof = f" AS OF LSN {lsn}"
    hconn = env.helios(db)
    queries = {
        "agg_head": AGG.format(asof=""), "agg_asof": AGG.format(asof=asof),
        "point_head": POINT.format(asof=""), "point_asof": POINT.format(asof=asof),
    }
    queries["agg_rw"] = _rewrite(hconn, queries["agg_asof"])
    queries["point_rw"] = _rewrite(hconn, queries["point_asof"])
    sides = {
        "helios_asof": hconn,
        "helios_head": env.helios(db),
        "direct_asof": env.direct(db, "main"),
        "direct_head": env.direct(db, "main"),
    }
    rng = random.Random(7)
    keys = [(rng.randint(1, rows),) for _ in range(max(point_reps, 100))]
    wrong = _check(env, sides, queries, len(range(3, rows + 1, 10)), keys)

    # The front end's own work per AS OF statement: rewrite() alone (resolve the point, read the catalog).
    rconn = env.helios(db)  # its own connection: the trace wrapper stays off the measured sides
    trace = Trace(rconn)
    rewrites: list[tuple[float, list[tuple[str, float]]]] = []

    def rewrite_sample() -> float:
        trace.steps = []
        t0 = time.perf_counter()
        _rewrite(rconn, queries["point_asof"])
        dt_ = time.perf_counter() - t0
        rewrites.append((dt_, trace.steps))
        return dt_

    for qname, kind, reps in (("sum(v), count(*) over all rows", "agg", agg_reps),
                              ("point lookup by key", "point", point_reps)):
        params = keys if kind == "point" else None
        samples = {
            "helios_asof": query_sample(sides["helios_asof"], queries[f"{kind}_asof"], params),
            "helios_head": query_sample(sides["helios_head"], queries[f"{kind}_head"], params),
            "direct_asof": query_sample(sides["direct_asof"], queries[f"{kind}_rw"], params),
            "direct_head": query_sample(sides["direct_head"], queries[f"{kind}_head"], params),
        }
        if kind == "point":
            samples["rewrite"] = rewrite_sample
        env.log(f"time travel {qname}: {reps} interleaved repetitions of {len(samples)} sides")
        # a point lookup is a round trip: pinned, so that no side gets a luckier core (common.pinned)
        with pinned([*sides.values(), rconn], env.log) if kind == "point" else contextlib.nullcontext():
            t = interleaved(samples, reps=reps, warmup=max(3, reps // 20))
        med = {k: median(v) for k, v in t.items()}
        results.append(Result(
            bench="4", name=f"{qname}, AS OF LSN before a 10% update (heliosdb.connect)", kind="time",
            helios=med["helios_asof"], peer=med["helios_head"], peer_label="same query at head",
            target=f"<= {TARGET_RATIO:g}x", ok=med["helios_asof"] / med["helios_head"] <= TARGET_RATIO,
            note="results wrong: " + wrong if wrong else "",
            extra={"samples_helios": t["helios_asof"], "samples_peer": t["helios_head"]},
        ))
        results.append(Result(
            bench="4", name=f"{qname}, AS OF LSN (psycopg direct, rewritten SQL)", kind="time",
            helios=med["direct_asof"], peer=med["direct_head"], peer_label="same, head, psycopg direct",
            target="info", ok=None,
        ))
        if kind == "point":
            mid = sorted(rewrites[-reps:], key=lambda r: r[0])[reps // 2]
            results.append(Result(
                bench="4", name="AS OF rewrite alone (rewrite(): resolve point + read catalog), per statement",
                kind="time", helios=med["rewrite"], peer=None, peer_label="", target="info", ok=None,
                note="middle run: " + top_steps(mid[1], mid[0]),
            ))
    plans = []
    if want_plans:
        for label, q, p in (("AS OF, rewritten", queries["agg_rw"], None), ("head", queries["agg_head"], None),
                            ("AS OF, rewritten", queries["point_rw"], keys[0]),
                            ("head", queries["point_head"], keys[0])):
            plans.append(f"-- time travel, {label}, psycopg direct: {q[:200]}\n{explain(sides['direct_asof'], q, p)}\n")
    for conn in [*sides.values(), rconn]:
        env.close(conn)
    return results, "\n".join(plans)


# -- timestamp -> LSN ------------------------------------------------------------------------------
def setup_commits(env: Env, helios_db: str, plain_db: str, commits: int) -> tuple[dt.datetime, dt.datetime, float]:
    """Fill the commit log of a fresh HeliosDB database, and the peer table, with the same commits."""
    env.log(f"filling heliosdb._commits of {helios_db} with {commits:,} commits")
    create_helios_db(env, helios_db)
    conn = env.pg(helios_db)
    lo_lsn, lo_scn, last = conn.execute(
        "SELECT coalesce(max(lsn), 0), coalesce(max(scn), 0), max(committed_at) FROM heliosdb._commits"
    ).fetchone()  # type: ignore[misc]
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    start = now - dt.timedelta(milliseconds=commits) - dt.timedelta(minutes=1)
    if last is not None and last >= start:
        start = last + dt.timedelta(seconds=1)
    t0 = time.perf_counter()
    conn.execute("SET session_replication_role = replica")  # no triggers: keep the given times
    conn.execute(
        """INSERT INTO heliosdb._commits (lsn, scn, txid, committed_at, branch_id, usr)
           SELECT %(l)s + g, %(s)s + g, (1000 + g)::text::xid8, %(t)s + g * interval '1 millisecond', 1, 'bench'
           FROM generate_series(1, %(n)s) g""",
        {"l": lo_lsn, "s": lo_scn, "t": start, "n": commits},
    )
    top_lsn, top_scn = lo_lsn + commits, lo_scn + commits
    conn.execute("SELECT setval('heliosdb.lsn_seq', %s), setval('heliosdb.scn_seq', %s)", (top_lsn, top_scn))
    # still without triggers: moving the head would log one more commit at top_lsn (record_commit)
    conn.execute("UPDATE heliosdb._branches SET head_lsn = %s WHERE id = 1", (top_lsn,))
    conn.execute("RESET session_replication_role")
    fill = time.perf_counter() - t0
    env.close(conn)
    env.log(f"  filled in {fill:.1f} s; peer table c in {plain_db}")
    env.create_database(plain_db)
    conn = env.pg(plain_db)
    conn.execute("CREATE TABLE c (lsn bigint NOT NULL, committed_at timestamptz NOT NULL)")
    conn.execute(
        "INSERT INTO c SELECT %(l)s + g, %(t)s + g * interval '1 millisecond' FROM generate_series(1, %(n)s) g",
        {"l": lo_lsn, "t": start, "n": commits},
    )
    conn.execute("CREATE INDEX ON c (committed_at)")
    env.close(conn)
    env.vacuum_analyze(helios_db)
    env.vacuum_analyze(plain_db)
    return start + dt.timedelta(milliseconds=1), start + dt.timedelta(milliseconds=commits), fill


_EXEC = re.compile(r"Execution Time: ([0-9.]+) ms")


def _exec_ms(conn: Any, query: str, params: Any = None) -> float:
    rows = conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF) {query}", params).fetchall()
    for (line,) in rows:
        m = _EXEC.search(line)
        if m:
            return float(m.group(1))
    raise RuntimeError(f"no execution time in EXPLAIN ANALYZE of {query}")


def server_sample(conn: Any, query: str, stamps: list[dt.datetime], per: int) -> Sample:
    """Server-side seconds per lookup: EXPLAIN ANALYZE execution time (of `per` lookups) / per."""
    rng = random.Random(3)

    def run() -> float:
        if per == 1:
            return _exec_ms(conn, query, (rng.choice(stamps),)) / 1e3
        batch = [rng.choice(stamps) for _ in range(per)]
        return _exec_ms(conn, query, (batch,)) / 1e3 / per

    return run


def run_resolve(env: Env, *, commits: int, helios_db: str, plain_db: str, reps: int, batch_reps: int) -> list[Result]:
    first, last, fill = setup_commits(env, helios_db, plain_db, commits)
    rng = random.Random(11)
    span = (last - first).total_seconds()
    stamps = [first + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(2_000)]
    helios = env.helios(helios_db)
    direct = env.direct(helios_db, "main")
    plain = env.pg(plain_db)
    # the same answers on both sides
    bad = 0
    for ts in stamps[:50]:
        h = direct.execute("SELECT (heliosdb.lsn_at(%s) - '0/0'::pg_lsn)::bigint", (ts,)).fetchone()
        p = plain.execute(PEER_LOOKUP, (ts,)).fetchone()
        bad += h != p
    if bad:
        env.log(f"  WARNING: heliosdb.lsn_at differs from the peer on {bad} of 50 timestamps")
    h_one = "SELECT heliosdb.lsn_at(%s)"
    h_batch = "SELECT heliosdb.lsn_at(ts) FROM unnest(%s::timestamptz[]) ts"
    p_one = PEER_LOOKUP
    p_batch = ("SELECT (SELECT lsn FROM c WHERE committed_at <= ts ORDER BY committed_at DESC LIMIT 1) "
               "FROM unnest(%s::timestamptz[]) ts")
    env.log(f"lsn_at: server side, {reps} single calls and {batch_reps} batches of {BATCH} per side, interleaved")
    single = interleaved({"helios": server_sample(direct, h_one, stamps, 1),
                          "peer": server_sample(plain, p_one, stamps, 1)}, reps=reps, warmup=10)
    batch = interleaved({"helios": server_sample(direct, h_batch, stamps, BATCH),
                         "peer": server_sample(plain, p_batch, stamps, BATCH)}, reps=batch_reps, warmup=2)
    env.log(f"lsn_at: client round trip, {reps} calls per side, interleaved")
    keys = [(s,) for s in stamps]
    trip = interleaved({"helios": query_sample(helios, h_one, keys), "direct": query_sample(direct, h_one, keys),
                        "peer": query_sample(plain, p_one, keys)}, reps=reps, warmup=20)
    for conn in (helios, direct, plain):
        env.close(conn)
    note = f"results differ on {bad} of 50 timestamps!" if bad else ""
    s = {k: median(v) for k, v in single.items()}
    b = {k: median(v) for k, v in batch.items()}
    r = {k: median(v) for k, v in trip.items()}
    label = "plain table + btree, ORDER BY committed_at DESC LIMIT 1"
    return [
        Result(bench="4", name=f"setup: {commits:,} commits into heliosdb._commits (one run)", kind="time",
               helios=fill, peer=None, peer_label="", target="info", ok=None),
        Result(bench="4", name=f"lsn_at(random ts), {commits:,} commits: server side, one call (EXPLAIN ANALYZE)",
               kind="time", helios=s["helios"], peer=s["peer"], peer_label=label,
               target=f"< {TARGET_RESOLVE_MS:g} ms", ok=s["helios"] * 1e3 < TARGET_RESOLVE_MS, note=note),
        Result(bench="4", name=f"lsn_at(random ts), {commits:,} commits: server side, per call in a batch of {BATCH:,}",
               kind="time", helios=b["helios"], peer=b["peer"], peer_label=label,
               target=f"< {TARGET_RESOLVE_MS:g} ms", ok=b["helios"] * 1e3 < TARGET_RESOLVE_MS),
        Result(bench="4", name=f"lsn_at(random ts), {commits:,} commits: client round trip (heliosdb.connect)",
               kind="time", helios=r["helios"], peer=r["peer"], peer_label="psycopg, " + label,
               target=f"< {TARGET_RESOLVE_MS:g} ms", ok=r["helios"] * 1e3 < TARGET_RESOLVE_MS),
        Result(bench="4", name=f"lsn_at(random ts), {commits:,} commits: client round trip (psycopg direct)",
               kind="time", helios=r["direct"], peer=r["peer"], peer_label="psycopg, " + label,
               target="info", ok=None),
    ]


def run(env: Env, *, rows: int, commits: int, point_reps: int, agg_reps: int, resolve_reps: int,
        resolve_batch_reps: int, want_plans: bool) -> tuple[list[Result], str]:
    results, plans = run_reads(env, rows=rows, db="helios_tt", point_reps=point_reps, agg_reps=agg_reps,
                               want_plans=want_plans)
    results += run_resolve(env, commits=commits, helios_db="helios_commits", plain_db="plain_commits",
                           reps=resolve_reps, batch_reps=resolve_batch_reps)
    return results, plans
