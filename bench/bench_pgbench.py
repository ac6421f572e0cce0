"""pgbench through `heliosdb serve` against pgbench straight to the storage PostgreSQL, in the same run.

    python bench/bench_pgbench.py                 # 4 clients, 3 rounds of 10 s per side and workload
    python bench/bench_pgbench.py --seconds 3 --rounds 1   # a quick look

One fresh data directory (one managed PostgreSQL instance). Three databases:

- `helios`: a HeliosDB database; pgbench -i and the runs go through the endpoint;
- the same `helios` database with pgbench connected straight to PostgreSQL's Unix
  socket (the same relations, HeliosDB's triggers included): what the endpoint costs;
- `plain`: pgbench's own tables, initialized and run straight against PostgreSQL:
  what HeliosDB as a whole costs. The target (>= 0.5x) is against this one.

Workloads: select-only (-S) and TPC-B-like (the default script), same clients
and threads on every side, rounds interleaved (ABC, CBA, ...) so machine noise
hits all sides; the median TPS of each side is reported with the ratios.
Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import psycopg

from heliosdb.storage.instance import Instance

TARGET = 0.5


def pgbench_binary() -> str:
    for p in ("/usr/lib/postgresql/15/bin/pgbench", shutil.which("pgbench")):
        if p and Path(p).exists():
            return p
    sys.exit("pgbench not found")


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.pgbench = pgbench_binary()
        self.data_dir = data_dir
        self.inst = Instance(data_dir)
        self.inst.acquire()
        self.port = free_port()
        src = str(Path(__file__).resolve().parents[1] / "src")
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(data_dir / "serve.log", "w")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "heliosdb.cli", "serve", "-D", str(data_dir), "--port", str(self.port),
             "--socket-dir", str(data_dir)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while "listening on" not in (data_dir / "serve.log").read_text():
            if self.server.poll() is not None or time.monotonic() > deadline:
                sys.exit("heliosdb serve did not start:\n" + (data_dir / "serve.log").read_text())
            time.sleep(0.05)

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(60)
        self.log.close()
        self.inst.release()

    def env(self, direct: bool) -> dict[str, str]:
        if direct:
            info = self.inst.conninfo()
            return dict(os.environ, PGHOST=str(info["host"]), PGPORT=str(info["port"]), PGUSER="postgres")
        host = str(self.data_dir) if self.args.transport == "unix" else "127.0.0.1"
        return dict(os.environ, PGHOST=host, PGPORT=str(self.port), PGUSER="postgres")

    def run(self, args: list[str], dbname: str, direct: bool) -> str:
        out = subprocess.run([self.pgbench, *args, dbname], env=self.env(direct), capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"pgbench {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout + out.stderr

    def setup(self) -> None:
        with psycopg.connect(**self.inst.conninfo("postgres"), autocommit=True) as adm:  # type: ignore[arg-type]
            for db in ("helios", "plain"):
                adm.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                adm.execute(f"CREATE DATABASE {db}")
        scale = str(self.args.scale)
        # server-side generation: pgbench's client-side COPY ... FREEZE does not work through HeliosDB yet
        self.run(["-i", "-q", "-I", "dtGvp", "-s", scale], "helios", direct=False)
        self.run(["-i", "-q", "-I", "dtGvp", "-s", scale], "plain", direct=True)
        with psycopg.connect(**self.inst.conninfo("postgres"), autocommit=True) as adm:  # type: ignore[arg-type]
            adm.execute("CHECKPOINT")

    def tps(self, workload: list[str], dbname: str, direct: bool) -> float:
        a = self.args
        out = self.run([*workload, "-n", "-c", str(a.clients), "-j", str(a.jobs), "-T", str(a.seconds),
                        "-M", a.mode], dbname, direct)
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if m is None or (failed and failed.group(1) != "0"):
            sys.exit("pgbench failed:\n" + out)
        return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--mode", choices=("simple", "extended", "prepared"), default="simple")
    ap.add_argument("--transport", choices=("unix", "tcp"), default="unix",
                    help="how pgbench reaches the endpoint (the direct sides always use the Unix socket)")
    ap.add_argument("--data-dir", type=Path, help="data directory (default: a fresh temporary one, removed after)")
    args = ap.parse_args(argv)
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="helios-pgbench-")
        os.chmod(tmp, 0o755)
        data_dir = Path(tmp)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.clients} clients, {args.jobs} threads, "
          f"{args.rounds} x {args.seconds} s per side, -M {args.mode}, scale {args.scale}, "
          f"endpoint over {args.transport}", flush=True)
    bench = Bench(args, data_dir)
    ok = True
    try:
        bench.setup()
        sides = [("heliosdb serve", "helios", False), ("direct, same db", "helios", True),
                 ("direct, plain pgbench db", "plain", True)]
        for label, workload in (("select-only", ["-S"]), ("TPC-B-like", [])):
            results: dict[str, list[float]] = {s[0]: [] for s in sides}
            bench.tps(workload, "helios", False)  # warm-up
            bench.tps(workload, "plain", True)
            for r in range(args.rounds):
                for name, db, direct in (sides if r % 2 == 0 else sides[::-1]):
                    results[name].append(bench.tps(workload, db, direct))
            med = {k: statistics.median(v) for k, v in results.items()}
            helios = med["heliosdb serve"]
            r_same = helios / med["direct, same db"]
            r_plain = helios / med["direct, plain pgbench db"]
            passed = r_plain >= TARGET
            ok = ok and passed
            print(f"\n{label}:")
            for name, values in results.items():
                print(f"  {name:26s} {med[name]:9.0f} tps   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
            print(f"  ratio vs direct, same db:   {r_same:.2f}x  (what the endpoint costs)")
            print(f"  ratio vs plain PostgreSQL:  {r_plain:.2f}x  target >= {TARGET}x: {'PASS' if passed else 'FAIL'}",
                  flush=True)
    finally:
        bench.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
