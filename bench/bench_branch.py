"""Benchmark 1: branch creation, and how it scales with the size of the database.

HeliosDB: `CREATE DATABASE BRANCH <name>` through `heliosdb.connect` (autocommit),
timed from the client; the branch is dropped again after each repetition
(untimed) so every repetition starts from the same state.
Peer: `CREATE DATABASE <name> TEMPLATE <plain db with the same table and rows>`
through psycopg, dropped again after each repetition (untimed).

The four sides (HeliosDB small/large, PostgreSQL small/large) run interleaved.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from common import Env, Result, Sample, interleaved, median

_seq = itertools.count(1)

TARGET_MS = 10.0
TARGET_SCALE = 1.5


def helios_sample(conn: Any) -> Sample:
    cur = conn.cursor()

    def run() -> float:
        name = f"bench_branch_{next(_seq)}"
        t0 = time.perf_counter()
        cur.execute(f"CREATE DATABASE BRANCH {name}")
        dt = time.perf_counter() - t0
        cur.execute(f"DROP DATABASE BRANCH {name}")
        return dt

    return run


def template_sample(env: Env, template: str) -> Sample:
    adm = env.admin()

    def run() -> float:
        name = f"{template}_copy_{next(_seq)}"
        t0 = time.perf_counter()
        adm.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        dt = time.perf_counter() - t0
        adm.execute(f'DROP DATABASE "{name}"')
        return dt

    return run


def run(env: Env, *, small: int, large: int, reps: int,
        helios_small: str, helios_large: str, plain_small: str, plain_large: str) -> list[Result]:
    hs = env.helios(helios_small)
    hl = env.helios(helios_large)
    sides = {
        "helios_small": helios_sample(hs),
        "helios_large": helios_sample(hl),
        "pg_small": template_sample(env, plain_small),
        "pg_large": template_sample(env, plain_large),
    }
    env.log(f"branch creation: {reps} interleaved repetitions of 4 sides")
    t = interleaved(sides, reps=reps, warmup=2)
    env.close(hs)
    env.close(hl)
    med = {k: median(v) for k, v in t.items()}
    p90 = {k: sorted(v)[int(0.9 * (len(v) - 1))] for k, v in t.items()}
    results = []
    for size, key in ((small, "small"), (large, "large")):
        h, p = med[f"helios_{key}"], med[f"pg_{key}"]
        results.append(Result(
            bench="1", name=f"branch creation, {size:,} rows (median)", kind="time",
            helios=h, peer=p, peer_label="CREATE DATABASE TEMPLATE",
            target=f"< {TARGET_MS:g} ms", ok=h * 1000 < TARGET_MS,
            note=f"p90 HeliosDB {p90[f'helios_{key}'] * 1e3:.2f} ms, PostgreSQL {p90[f'pg_{key}'] * 1e3:.2f} ms",
            extra={"samples_helios": t[f"helios_{key}"], "samples_peer": t[f"pg_{key}"]},
        ))
    h_scale = med["helios_large"] / med["helios_small"]
    p_scale = med["pg_large"] / med["pg_small"]
    results.append(Result(
        bench="1", name=f"branch creation {large:,} vs {small:,} rows (median ratio)", kind="scale",
        helios=h_scale, peer=p_scale, peer_label="TEMPLATE",
        target=f"<= {TARGET_SCALE:g}x", ok=h_scale <= TARGET_SCALE,
    ))
    return results
