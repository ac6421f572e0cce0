"""Benchmark 2: reads at main's head and on a branch that changed 1% of the rows.

Each query runs, many times and interleaved (one execution per side in turn,
ABBA order), on three sides:
  helios  - through `heliosdb.connect` on the branch (what a user runs)
  plain   - through psycopg on a plain PostgreSQL table with the same rows
            (for the branch: a copy of the plain table with the same 1% update)
  direct  - through psycopg on the HeliosDB database itself, search_path set to
            the branch's schema: HeliosDB's storage layout without its Python
            front end (informational, it separates the two costs)
Queries: a point lookup by key (random keys, the same sequence on every side)
and an aggregate over the whole table.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from typing import Any

from common import Env, Result, Sample, fetch_all, interleaved, median, pinned
from data import T_CHANGE_1PCT

POINT = "SELECT grp, v, pad FROM t WHERE id = %s"
AGG = "SELECT sum(v), count(*) FROM t"

MAIN_TARGET = 1.10
BRANCH_TARGET = 1.5


def query_sample(conn: Any, query: str, params: list[tuple[Any, ...]] | None = None) -> Sample:
    cur = conn.cursor()
    it = itertools.cycle(params) if params else None

    def run() -> float:
        p = next(it) if it is not None else None
        t0 = time.perf_counter()
        cur.execute(query, p)
        cur.fetchall()
        return time.perf_counter() - t0

    return run


def setup_branch(env: Env, helios_db: str, plain_large: str, plain_branch: str, branch: str) -> Result:
    """A HeliosDB branch with 1% of t's rows updated, and a plain copy with the same update."""
    env.log(f"creating branch {branch} in {helios_db} and updating 1% of t on it")
    conn = env.helios(helios_db)
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE BRANCH {branch}")
    env.close(conn)
    conn = env.helios(helios_db, branch=branch)
    t0 = time.perf_counter()
    conn.cursor().execute(T_CHANGE_1PCT)
    helios_s = time.perf_counter() - t0
    env.log(f"  HeliosDB branch update took {helios_s:.1f} s")
    env.close(conn)
    env.log(f"copying {plain_large} to {plain_branch} and applying the same update")
    env.create_database(plain_branch, template=plain_large)
    conn = env.pg(plain_branch)
    t0 = time.perf_counter()
    conn.execute(T_CHANGE_1PCT)
    plain_s = time.perf_counter() - t0
    env.log(f"  plain update took {plain_s:.1f} s")
    env.close(conn)
    env.vacuum_analyze(helios_db)
    env.vacuum_analyze(plain_branch)
    return Result(
        bench="2", name=f"setup: {T_CHANGE_1PCT} on branch {branch} (one run)", kind="time",
        helios=helios_s, peer=plain_s, peer_label="psycopg, plain table", target="info", ok=None,
    )


def compact_branch(env: Env, helios_db: str, branch: str) -> Result:
    """VACUUM t on the branch: it makes the branch's image of t (branching/images.py)."""
    conn = env.helios(helios_db, branch=branch)
    conn.autocommit = True
    t0 = time.perf_counter()
    conn.cursor().execute("VACUUM t")
    took = time.perf_counter() - t0
    env.close(conn)
    env.log(f"  VACUUM t on {branch} (its image of t) took {took:.1f} s")
    return Result(bench="2", name=f"setup: VACUUM t on branch {branch}: its image of t (one run)", kind="time",
                  helios=took, peer=None, peer_label="", target="info", ok=None)


def _compare(sides: dict[str, Any], query: str, params: list[tuple[Any, ...]]) -> list[str]:
    """Check every side returns the same rows; returns the names of sides that differ from plain."""
    bad = []
    for p in params:
        want = fetch_all(sides["plain"], query, p)
        for name, conn in sides.items():
            if name != "plain" and fetch_all(conn, query, p) != want:
                bad.append(name)
    return sorted(set(bad))


def explain(conn: Any, query: str, params: tuple[Any, ...] | None = None) -> str:
    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params).fetchall()
    return "\n".join(r[0] for r in rows)


def _measure(env: Env, label: str, where: str, target: float | None, sides: dict[str, Any],
             keys: list[tuple[int]], point_reps: int, agg_reps: int) -> list[Result]:
    results: list[Result] = []
    wrong = _compare(sides, POINT, keys[:20]) + _compare(sides, AGG, [()])
    if wrong:
        env.log(f"  WARNING: results differ from plain PostgreSQL on {label}: {', '.join(sorted(set(wrong)))}")
    for qname, query, params, reps in (
        ("point lookup by key", POINT, keys, point_reps),
        ("sum(v), count(*) over all rows", AGG, None, agg_reps),
    ):
        env.log(f"{qname} on {label}: {reps} interleaved repetitions of {len(sides)} sides")
        samples = {name: query_sample(conn, query, params if params else None) for name, conn in sides.items()}
        # a point lookup is a round trip: pinned, so that no side gets a luckier core (common.pinned)
        with pinned(list(sides.values()), env.log) if params else contextlib.nullcontext():
            t = interleaved(samples, reps=reps, warmup=max(3, reps // 20))
        med = {k: median(v) for k, v in t.items()}
        h, p, d = med["helios"], med["plain"], med["direct"]
        results.append(Result(
            bench="2", name=f"{qname}, {where} (heliosdb.connect)", kind="time",
            helios=h, peer=p, peer_label="psycopg, plain table",
            target=f"<= {target:.2f}x" if target else "info", ok=h / p <= target if target else None,
            note="results differ!" if wrong else "",
        ))
        results.append(Result(
            bench="2", name=f"{qname}, {where} (psycopg direct to HeliosDB schema)", kind="time",
            helios=d, peer=p, peer_label="psycopg, plain table",
            target="info", ok=None,
        ))
    return results


def run(env: Env, *, rows: int, helios_db: str, plain_db: str, plain_branch_db: str, branch: str,
        point_reps: int, agg_reps: int, want_plans: bool) -> tuple[list[Result], str]:
    results = [setup_branch(env, helios_db, plain_db, plain_branch_db, branch)]
    rng = random.Random(42)
    keys = [(rng.randint(1, rows),) for _ in range(max(point_reps, 100))]
    plans: list[str] = []
    for where, br, plain, target in (
        ("main head", "main", plain_db, MAIN_TARGET),
        (f"branch with 1% of rows changed ({branch}), before VACUUM", branch, plain_branch_db, None),
        (f"branch with 1% of rows changed ({branch}), after VACUUM", branch, plain_branch_db, BRANCH_TARGET),
    ):
        if where.endswith("after VACUUM"):
            results.append(compact_branch(env, helios_db, branch))
        sides = {
            "helios": env.helios(helios_db, branch=br),
            "plain": env.pg(plain),
            "direct": env.direct(helios_db, br),
        }
        results += _measure(env, br, where, target, sides, keys, point_reps, agg_reps)
        if want_plans:
            for name in ("direct", "plain"):
                for q, p in ((AGG, None), (POINT, keys[0])):
                    plans.append(f"-- {where}, {name}: {q}\n{explain(sides[name], q, p)}\n")
        for conn in sides.values():
            env.close(conn)
    return results, "\n".join(plans)
