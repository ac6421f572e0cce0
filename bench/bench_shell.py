"""Speed of the interactive shell: start to first prompt, completion latency, rendering.

    python bench/bench_shell.py [--tables 1000] [--runs 5] [--data-dir DIR]

Targets (issue 7):
- start to first prompt within 1.5 s on an existing data directory (its first initdb excluded);
  measured twice: "cold" (no process uses the data directory, so the shell starts PostgreSQL)
  and "warm" (PostgreSQL already running for another client);
- completion p95 under 50 ms with 1,000 tables of 20 columns (catalog loaded from the database);
- 10,000 rows x 10 columns rendered aligned (box-drawn) in under 1 s.

The exit status is 0 when every target is met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import psycopg

from heliosdb.session import Session
from heliosdb.shell import executor  # noqa: F401 - registers the meta commands
from heliosdb.shell.completer import HeliosCompleter, load
from heliosdb.shell.completion import suggest
from heliosdb.shell.render import RenderOptions, render, types_of
from heliosdb.storage.instance import Instance

DB = "bench_shell"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: list[float] = []  # CPU seconds the shell process used up to its first prompt, per run


def first_prompt(data_dir: Path, db: str) -> float:
    env = dict(os.environ, NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
               HELIOSDB_HISTORY=str(data_dir / "bench_history"))
    start = time.perf_counter()
    child = pexpect.spawn(sys.executable, ["-m", "heliosdb.cli", "-D", str(data_dir), "-d", db], env=env,
                          encoding="utf-8", timeout=60, dimensions=(40, 120))
    child.expect(rf"{db}\[main\]=>")
    elapsed = time.perf_counter() - start
    try:
        CPU.append(_cpu_seconds(child.pid))
    except OSError:
        pass
    child.send("\\q\r")
    child.expect(pexpect.EOF)
    child.close()
    return elapsed


def wait_stopped(inst: Instance, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while inst.running() and time.monotonic() < end:
        time.sleep(0.1)


def bench_startup(data_dir: Path, runs: int) -> dict[str, list[float]]:
    inst = Instance(data_dir)
    cold: list[float] = []
    for _ in range(runs):
        wait_stopped(inst)
        cold.append(first_prompt(data_dir, DB))
    inst.acquire()  # keep PostgreSQL up, as another client would
    try:
        first_prompt(data_dir, DB)  # warm-up
        warm = [first_prompt(data_dir, DB) for _ in range(runs)]
    finally:
        inst.release()
    imports = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import heliosdb.cli; "
                              "a = time.perf_counter(); import heliosdb.shell.repl, heliosdb.shell.executor, "
                              "prompt_toolkit.shortcuts, heliosdb.shell.completer, heliosdb.shell.highlight; "
                              "print(a - t, time.perf_counter() - a)"], capture_output=True, text=True, check=True)
        imports.append(tuple(float(x) for x in out.stdout.split()))
    python = [_time_python() for _ in range(runs)]
    return {"cold": cold, "warm": warm, "import_engine": [a for a, _ in imports],
            "import_shell": [b for _, b in imports], "python": python}


def _time_python() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def bench_completion(session: Session, tables: int) -> dict[str, float]:
    existing = session.query("SELECT count(*) FROM heliosdb._tables")[0][0]
    start = time.perf_counter()
    for i in range(existing, tables):
        cols = ", ".join(f"col_{j} {'int' if j % 2 else 'text'}" for j in range(20))
        session.execute(f"CREATE TABLE table_{i:04d} (id int PRIMARY KEY, {cols})")
    created = time.perf_counter() - start
    conn = session.new_connection()
    try:
        start = time.perf_counter()
        md = load(conn, session.branch.id, session.branch.user_schema)
        loaded = time.perf_counter() - start
    finally:
        conn.close()
    assert len(md.relations) >= tables, len(md.relations)
    comp = HeliosCompleter()
    comp.metadata = md
    inputs = [("SELECT * FROM ", ""), ("SELECT * FROM table_05", ""), ("SELECT ", " FROM table_0001"),
              ("SELECT * FROM table_0001 t WHERE t.", ""), ("SELECT col_1 FROM table_0001 JOIN table_0002 ON ", ""),
              ("SELECT * FROM table_0001 WHERE col_", ""), ("sel", ""), ("SELECT * FROM t AS OF ", ""),
              ("SELECT * FROM t AS OF LSN ", ""), ("USE BRANCH ", ""), ("\\d table_09", ""), ("SELECT cou", "")]
    times = []
    for _ in range(30):
        for before, after in inputs:
            t = time.perf_counter()
            comp.candidates(suggest(before, after))
            times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=100)
    return {"create_s": created, "load_s": loaded, "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000,
            "max_ms": max(times) * 1000, "relations": float(len(md.relations))}


def bench_render(session: Session) -> dict[str, float]:
    start = time.perf_counter()
    r = session.execute("""SELECT g AS id, 'name ' || g AS name, g * 1.5 AS score, NULLIF(g % 7, 0) AS maybe,
                                  repeat('x', g % 17) AS pad, g % 2 = 0 AS even, now() AS at, md5(g::text) AS hash,
                                  g::numeric / 3 AS third, 'end' AS tail
                           FROM generate_series(1, 10000) g""")
    rows = r.fetchall()
    fetched = time.perf_counter() - start
    headers = [d[0] for d in r.description]
    types = types_of(r.description)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        text = render(headers, rows, RenderOptions(width=250), types=types)
        times.append(time.perf_counter() - t)
    assert text.endswith("(10000 rows)\n")
    return {"fetch_s": fetched, "render_s": statistics.median(times), "render_max_s": max(times)}


def report(start: dict[str, list[float]] | None, comp: dict[str, float] | None, rend: dict[str, float] | None,
           runs: int) -> bool:
    med = statistics.median
    checks = []
    if start:
        checks += [
            ("first prompt, PostgreSQL already running (median)", f"{med(start['warm']):.2f} s", "< 1.5 s",
             med(start["warm"]) < 1.5),
            ("first prompt, cold: the shell starts PostgreSQL (median)", f"{med(start['cold']):.2f} s", "< 1.5 s",
             med(start["cold"]) < 1.5),
        ]
    if comp:
        checks.append((f"completion p95, {int(comp['relations'])} relations x 20 columns", f"{comp['p95_ms']:.2f} ms",
                       "< 50 ms", comp["p95_ms"] < 50))
    if rend:
        checks.append(("10,000 x 10 rendered box-drawn (median of 5)", f"{rend['render_s']:.3f} s", "< 1 s",
                       rend["render_s"] < 1.0))
    width = max(len(c[0]) for c in checks)
    for name, value, target, ok in checks:
        print(f"{name.ljust(width)}  {value:>10}  target {target:<8} {'ok' if ok else 'MISSED'}")
    print()
    if start:
        print(f"  best of {runs} (the least disturbed run): cold {min(start['cold']):.2f} s, warm "
              f"{min(start['warm']):.2f} s, python {min(start['python']):.2f} s, import heliosdb.cli "
              f"{min(start['import_engine']):.2f} s, shell + prompt_toolkit {min(start['import_shell']):.2f} s")
        if CPU:
            print(f"  CPU time of the shell process up to its first prompt: median {med(CPU):.2f} s, min "
                  f"{min(CPU):.2f} s (wall time minus this is waiting: PostgreSQL starting, or a busy machine)")
        print(f"  startup parts (median): python {med(start['python']):.2f} s, import heliosdb.cli "
              f"{med(start['import_engine']):.2f} s, shell + prompt_toolkit {med(start['import_shell']):.2f} s; "
              f"cold runs {', '.join(f'{x:.2f}' for x in start['cold'])}; "
              f"warm runs {', '.join(f'{x:.2f}' for x in start['warm'])}")
    if comp:
        print(f"  completion: p50 {comp['p50_ms']:.2f} ms, max {comp['max_ms']:.2f} ms; catalog load (background "
              f"refresh) {comp['load_s']:.2f} s; creating the tables took {comp['create_s']:.1f} s")
    if rend:
        print(f"  render: fetching the 10,000 rows {rend['fetch_s']:.3f} s, render max {rend['render_max_s']:.3f} s")
    return all(c[3] for c in checks)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="startup,completion,render", help="a subset: startup,completion,render")
    p.add_argument("--data-dir", help="an existing or new data directory, kept afterwards (default: a temporary "
                   "one); creating 1,000 tables takes minutes, so reuse one with --data-dir")
    args = p.parse_args()
    only = set(args.only.split(","))
    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="heliosdb-bench-shell-")
        data_dir = Path(tmp)
    os.chmod(data_dir, 0o755)
    comp = rend = start = None
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        inst = Instance(data_dir)
        inst.acquire()
        with psycopg.connect(**inst.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[arg-type]
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
                admin.execute(f'CREATE DATABASE "{DB}"')
        session = Session(data_dir=data_dir, database=DB)
        try:
            comp = bench_completion(session, args.tables) if "completion" in only else None
            rend = bench_render(session) if "render" in only else None
        finally:
            session.close()
            inst.release()
        start = bench_startup(data_dir, args.runs) if "startup" in only else None
        print(f"load average after:  {os.getloadavg()[0]:.2f}\n")
        return 0 if report(start, comp, rend, args.runs) else 1
    finally:
        if tmp:
            wait_stopped(Instance(data_dir))
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
