"""Shared pieces of the benchmarks: the managed instance, connections, timing, results.

Everything runs on one managed PostgreSQL instance (one HeliosDB data
directory): the HeliosDB databases and the plain PostgreSQL peer databases
live side by side in the same server, so both sides get the same settings,
the same shared_buffers and the same disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from heliosdb.storage.instance import Instance

Sample = Callable[[], float]
"""One measured repetition: does its own setup and teardown, returns the timed part in seconds."""


# -- results ----------------------------------------------------------------------
@dataclass
class Result:
    """One line of the report.

    kind "time": values are seconds, lower is better, ratio = helios / peer.
    kind "rate": values are per second, higher is better, ratio = helios / peer.
    kind "scale": values are already ratios (large / small), shown as such.
    `ok` is None for lines that are only informational (no target).
    """

    bench: str
    name: str
    kind: str
    helios: float
    peer: float | None
    peer_label: str
    target: str
    ok: bool | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.kind == "scale" or self.peer is None or self.peer == 0:
            return None
        return self.helios / self.peer


def fmt_value(kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "time":
        if value < 1e-3:
            return f"{value * 1e6:.0f} us"
        if value < 10:
            return f"{value * 1e3:.2f} ms"
        return f"{value:.1f} s"
    if kind == "rate":
        return f"{value:.0f} tps"
    return f"{value:.2f}x"


def fmt_ok(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        ratio = r.ratio
        rows.append([
            r.bench,
            r.name,
            fmt_value(r.kind, r.helios),
            (f"{fmt_value(r.kind, r.peer)} ({r.peer_label})" if r.peer is not None else "-"),
            f"{ratio:.2f}x" if ratio is not None else "-",
            r.target,
            fmt_ok(r.ok),
        ])
    return rows


HEADER = ["#", "benchmark", "HeliosDB", "peer (same run)", "ratio", "target", "result"]


def text_table(results: Sequence[Result]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[Result]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


# -- timing -------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def interleaved(samples: dict[str, Sample], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each side's sample `reps` times, alternating sides (ABBA order) so noise hits all.

    Returns the list of measured seconds per side; warm-up repetitions are not kept.
    """
    names = list(samples)
    for _ in range(warmup):
        for name in names:
            samples[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(reps):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(samples[name]())
    return out


def backend_pid(conn: Any) -> int:
    """The PostgreSQL backend behind a psycopg or a `heliosdb.connect` connection."""
    session = getattr(conn, "session", None)
    return int((session.conn if session is not None else conn).info.backend_pid)


@contextlib.contextmanager
def pinned(conns: Sequence[Any], log: Callable[[str], None]) -> Iterator[None]:
    """Run a round-trip-bound measurement with this process on the first CPU, the backends on the others.

    Unpinned, the scheduler puts a client and its backend on one core or on two, per connection,
    and keeps it: the same lookup then takes 25-30 us on one connection and 90-100 us on the next
    (session 9), so two sides of one comparison differed by up to 2x for the same work. Pinned,
    every side pays the same cross-core round trip, as a client and its database server do.
    """
    cpus = sorted(os.sched_getaffinity(0))
    pids = [backend_pid(c) for c in conns]
    if len(cpus) < 2:
        yield
        return
    try:
        os.sched_setaffinity(0, {cpus[0]})
        for pid in pids:
            os.sched_setaffinity(pid, set(cpus[1:]))
    except OSError as exc:
        log(f"  (not pinned: {exc})")
    try:
        yield
    finally:
        for pid in (0, *pids):
            try:
                os.sched_setaffinity(pid, set(cpus))
            except OSError:
                pass


def timed(fn: Callable[[], object]) -> Sample:
    """A Sample that times a whole call."""

    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


class Log:
    def __init__(self, verbose: bool = True) -> None:
        self.t0 = time.perf_counter()
        self.verbose = verbose

    def __call__(self, msg: str) -> None:
        if self.verbose:
            print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", flush=True)


# -- tracing the statements HeliosDB sends -------------------------------------------------------
_LABEL = re.compile(r"^\s*(CREATE TEMP TABLE \w+|ALTER TABLE \w+|INSERT INTO [\w.\"]+|UPDATE [\w.\"]+|"
                    r"DELETE FROM [\w.\"]+|SELECT heliosdb\.\w+)", re.IGNORECASE)


def _label(text: str) -> str:
    m = _LABEL.match(text)
    if m:
        return re.sub(r"\s+", " ", m.group(1))
    return re.sub(r"\s+", " ", text.strip())[:40]


@dataclass
class Trace:
    """Times every statement a HeliosDB connection's engine sends through its psycopg connection's execute().

    Wraps the session's psycopg connection (instance attribute, nothing global);
    `steps` collects (label, seconds) until reset by the caller.
    """

    conn: Any
    steps: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        pg = self.conn.session.conn
        orig = pg.execute

        def traced(query: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(query, *args, **kwargs)
            finally:
                if isinstance(query, str):
                    text = query
                elif isinstance(query, bytes):
                    text = query.decode(errors="replace")
                else:
                    text = query.as_string(pg)
                self.steps.append((_label(text), time.perf_counter() - t0))

        pg.execute = traced


def top_steps(steps: list[tuple[str, float]], total: float, n: int = 3) -> str:
    """'<k> statements; slowest: <label> <time> (<share of total>), ...' (same labels summed)."""
    agg: dict[str, float] = {}
    for label, t in steps:
        agg[label] = agg.get(label, 0.0) + t
    top = sorted(agg.items(), key=lambda kv: -kv[1])[:n]
    slowest = ", ".join(f"{label} {fmt_value('time', t)} ({t / total:.0%})" for label, t in top)
    return f"{len(steps)} statements, {fmt_value('time', sum(t for _, t in steps))} in them; slowest: {slowest}"


# -- the environment --------------------------------------------------------------------
class Env:
    """The managed instance and connections to its databases."""

    def __init__(self, data_dir: Path, log: Log) -> None:
        self.data_dir = data_dir
        self.log = log
        self.inst = Instance(data_dir)
        self.inst.acquire()
        self._admin: psycopg.Connection[Any] | None = None
        self._open: list[Any] = []

    # plain PostgreSQL ------------------------------------------------------------
    def admin(self) -> psycopg.Connection[Any]:
        """Autocommit connection to the `postgres` maintenance database."""
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(**self.inst.conninfo("postgres"), autocommit=True)  # type: ignore[arg-type]
        return self._admin

    def pg(self, dbname: str, autocommit: bool = True) -> psycopg.Connection[Any]:
        conn = psycopg.connect(**self.inst.conninfo(dbname), autocommit=autocommit)  # type: ignore[arg-type]
        self._open.append(conn)
        return conn

    def create_database(self, name: str, template: str | None = None) -> None:
        adm = self.admin()
        adm.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        adm.execute(f'CREATE DATABASE "{name}"{suffix}')

    def vacuum_analyze(self, dbname: str) -> None:
        """VACUUM ANALYZE a whole database (what autovacuum would eventually do), both sides alike."""
        with psycopg.connect(**self.inst.conninfo(dbname), autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")

    # HeliosDB ---------------------------------------------------------------------
    def helios(self, database: str, branch: str = "main", autocommit: bool = True) -> Any:
        import heliosdb

        conn = heliosdb.connect(data_dir=str(self.data_dir), database=database, branch=branch)
        conn.autocommit = autocommit
        self._open.append(conn)
        return conn

    def branch_schema(self, database: str, branch: str) -> str:
        """The PostgreSQL schema a branch's user-visible tables live in."""
        with psycopg.connect(**self.inst.conninfo(database)) as conn:  # type: ignore[arg-type]
            row = conn.execute(
                "SELECT user_schema FROM heliosdb._branches WHERE name = %s AND state <> 'dropped'", (branch,)
            ).fetchone()
        if row is None:
            raise RuntimeError(f"branch {branch} not found in {database}")
        return str(row[0])

    def direct(self, database: str, branch: str, autocommit: bool = True) -> psycopg.Connection[Any]:
        """psycopg straight to a HeliosDB database, search_path set to the branch's schema.

        Reads through it skip HeliosDB's Python front end but not its storage
        layout, which separates the two costs.
        """
        schema = self.branch_schema(database, branch)
        conn = self.pg(database)
        conn.execute(f'SET search_path TO "{schema}"')
        conn.autocommit = autocommit
        return conn

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # best effort
            pass
        if conn in self._open:
            self._open.remove(conn)

    def shutdown(self) -> None:
        for conn in list(self._open):
            self.close(conn)
        if self._admin is not None:
            self._admin.close()
        self.inst.release()


def fetch_all(conn: Any, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a query through the PEP 249 cursor API (works for psycopg and HeliosDB)."""
    cur = conn.cursor()
    try:
        cur.execute(query, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def execute(conn: Any, query: str, params: Sequence[Any] | None = None) -> None:
    cur = conn.cursor()
    try:
        cur.execute(query, params)
    finally:
        cur.close()
