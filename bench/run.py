"""Run the HeliosDB core-engine benchmarks against plain PostgreSQL.

    python bench/run.py            # full run (1,000,000-row tables; ~25-40 min, most of it timetravel + merge)
    python bench/run.py --quick    # smoke run (100,000-row tables; ~4-7 min, most of it timetravel + merge)
    python bench/run.py --only timetravel,merge    # a subset

Everything runs in a fresh, temporary HeliosDB data directory (one managed
PostgreSQL instance holding both the HeliosDB databases and the plain peer
databases). For each benchmark it prints HeliosDB's number, the peer's number
measured in the same run, their ratio and whether the target is met.
Exit status: 0 when every target is met, 1 otherwise.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_branch  # noqa: E402
import bench_merge  # noqa: E402
import bench_mviews  # noqa: E402
import bench_reads  # noqa: E402
import bench_time_travel  # noqa: E402
import bench_tpcb  # noqa: E402
import data  # noqa: E402
from common import Env, Log, Result, markdown_table, text_table  # noqa: E402


@dataclass(frozen=True)
class Config:
    small_rows: int
    large_rows: int
    branch_reps: int
    point_reps: int
    agg_reps: int
    tpcb_scale: int
    tpcb_seconds: float
    tpcb_rounds: int
    tpcb_warmup: float
    # time travel (issue 3)
    tt_rows: int
    tt_point_reps: int
    tt_agg_reps: int
    tt_commits: int
    tt_resolve_reps: int
    tt_resolve_batch_reps: int
    # merge (issue 4)
    merge_rows: int
    merge_large_rows: int
    merge_reps: int
    merge_jit_reps: int
    merge_big_diff: int
    merge_big_reps: int
    # materialized views (issue 5)
    mv_rows: int
    mv_reps: int
    mv_imm_reps: int


FULL = Config(small_rows=1_000, large_rows=1_000_000, branch_reps=21, point_reps=5_000, agg_reps=61,
              tpcb_scale=1, tpcb_seconds=10.0, tpcb_rounds=10, tpcb_warmup=3.0,
              tt_rows=1_000_000, tt_point_reps=2_000, tt_agg_reps=31, tt_commits=1_000_000,
              tt_resolve_reps=2_000, tt_resolve_batch_reps=21,
              # 10,000,000 rows load through heliosdb.connect in ~4 min on the 2-core test machine
              # (~8 min when it is busy); --merge-large-rows 5000000 halves that
              merge_rows=1_000_000, merge_large_rows=10_000_000, merge_reps=5, merge_jit_reps=3,
              merge_big_diff=100_000, merge_big_reps=2,
              mv_rows=1_000_000, mv_reps=7, mv_imm_reps=1_000)
QUICK = Config(small_rows=1_000, large_rows=100_000, branch_reps=11, point_reps=1_000, agg_reps=21,
               tpcb_scale=1, tpcb_seconds=3.0, tpcb_rounds=3, tpcb_warmup=1.0,
               tt_rows=100_000, tt_point_reps=500, tt_agg_reps=21, tt_commits=100_000,
               tt_resolve_reps=500, tt_resolve_batch_reps=11,
               merge_rows=100_000, merge_large_rows=1_000_000, merge_reps=3, merge_jit_reps=2,
               merge_big_diff=20_000, merge_big_reps=1,
               mv_rows=1_000_000, mv_reps=3, mv_imm_reps=300)

BENCHES = ("branch", "reads", "tpcb", "timetravel", "merge", "mviews")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--data-dir", type=Path, help="data directory to use (default: a fresh temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory afterwards")
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans of the reads (and AS OF reads)")
    ap.add_argument("--markdown", type=Path, help="also write the results table (markdown) to this file")
    ap.add_argument("--json", type=Path, help="also write the raw results to this JSON file")
    ap.add_argument("--rows", type=int, help="override the large table's row count")
    ap.add_argument("--merge-large-rows", type=int, help="override the size of the large main of the merge scale check")
    args = ap.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    if args.rows:
        cfg = Config(**{**cfg.__dict__, "large_rows": args.rows})
    if args.merge_large_rows:
        cfg = Config(**{**cfg.__dict__, "merge_large_rows": args.merge_large_rows})
    only = {b.strip() for b in args.only.split(",") if b.strip()}
    unknown = only - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    try:
        import heliosdb

        heliosdb.connect  # noqa: B018 - fail early when the engine has no connect() yet
    except (ImportError, AttributeError) as exc:
        print(f"heliosdb.connect is not available: {exc}", file=sys.stderr)
        return 2

    log = Log()
    tmp = None
    if args.data_dir:
        data_dir = args.data_dir.absolute()
    else:
        tmp = tempfile.mkdtemp(prefix="hdb-bench-")
        data_dir = Path(tmp)
    mode = "quick" if args.quick else "full"
    load_before = os.getloadavg()
    log(f"{mode} run, data directory {data_dir}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f}")
    env = Env(data_dir, log)
    results: list[Result] = []
    plans = ""
    try:
        adm = env.admin()
        log(f"server: {adm.execute('SELECT version()').fetchone()[0]}")  # type: ignore[index]
        if only & {"branch", "reads"}:
            data.setup_t(env, "helios_large", "plain_large", cfg.large_rows)
        if "branch" in only:
            data.setup_t(env, "helios_small", "plain_small", cfg.small_rows)
            results += bench_branch.run(
                env, small=cfg.small_rows, large=cfg.large_rows, reps=cfg.branch_reps,
                helios_small="helios_small", helios_large="helios_large",
                plain_small="plain_small", plain_large="plain_large",
            )
        if "reads" in only:
            r, plans = bench_reads.run(
                env, rows=cfg.large_rows, helios_db="helios_large", plain_db="plain_large",
                plain_branch_db="plain_b1pct", branch="b1pct",
                point_reps=cfg.point_reps, agg_reps=cfg.agg_reps, want_plans=args.explain,
            )
            results += r
        if "tpcb" in only:
            data.setup_tpcb(env, "helios_tpcb", "plain_tpcb", cfg.tpcb_scale)
            results += bench_tpcb.run(
                env, scale=cfg.tpcb_scale, duration=cfg.tpcb_seconds, rounds=cfg.tpcb_rounds, warmup=cfg.tpcb_warmup,
                helios_db="helios_tpcb", plain_db="plain_tpcb",
            )
        if "timetravel" in only:
            r, tt_plans = bench_time_travel.run(
                env, rows=cfg.tt_rows, commits=cfg.tt_commits, point_reps=cfg.tt_point_reps,
                agg_reps=cfg.tt_agg_reps, resolve_reps=cfg.tt_resolve_reps,
                resolve_batch_reps=cfg.tt_resolve_batch_reps, want_plans=args.explain,
            )
            results += r
            plans = "\n".join(p for p in (plans, tt_plans) if p)
        if "merge" in only:
            results += bench_merge.run(
                env, small=cfg.merge_rows, large=cfg.merge_large_rows, reps=cfg.merge_reps,
                jit_reps=cfg.merge_jit_reps, big_diff=cfg.merge_big_diff, big_reps=cfg.merge_big_reps,
            )
        if "mviews" in only:
            results += bench_mviews.run(env, rows=cfg.mv_rows, reps=cfg.mv_reps, imm_reps=cfg.mv_imm_reps)
    finally:
        env.shutdown()
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    log("done")

    print()
    print(f"HeliosDB core-engine benchmarks ({mode} run, {os.cpu_count()} CPUs, "
          f"1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after)")
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 1) * 0.75:
        print("WARNING: the machine was busy with other work; absolute numbers are noisy (ratios less so).")
    print(text_table(results))
    notes = [f"  [{r.bench}] {r.name}: {r.note}" for r in results if r.note]
    if notes:
        print("\nnotes:")
        print("\n".join(notes))
    if plans:
        print("\nplans:\n" + plans)
    failed = [r for r in results if r.ok is False]
    print(f"\n{sum(r.ok is True for r in results)} targets met, {len(failed)} missed")
    if args.markdown:
        args.markdown.write_text(markdown_table(results) + "\n")
    if args.json:
        args.json.write_text(json.dumps(
            [{**r.__dict__, "ratio": r.ratio} for r in results], indent=2, default=str
        ) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
