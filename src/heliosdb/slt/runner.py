"""Run sqllogictest scripts in the runner's modes and compare the modes record by record.

Each file runs in each mode against a fresh database. A record passes when it
behaves as the script says; a *difference* is a record that passes in mode 1
(plain PostgreSQL, the reference) but fails in a HeliosDB mode. When mode 1 is
not run, every failure of a HeliosDB mode counts as a difference.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from heliosdb.slt.backends import Backend, Cluster, error_text, make_backend
from heliosdb.slt.parser import (
    HashedResult,
    HashThreshold,
    Query,
    Script,
    SltParseError,
    Statement,
    active_records,
    parse_file,
)
from heliosdb.slt.results import check_query, describe

ALL_MODES = (1, 2, 3, 4)
MAX_DIFFERENCES = 20


@dataclass
class Failure:
    """A record that did not behave as its script says."""

    line: int
    sql: str
    expected: str
    got: str


@dataclass
class ModeResult:
    mode: int
    records: int
    passed: int
    seconds: float
    failures: dict[int, Failure] = field(default_factory=dict)
    error: str | None = None  # the mode could not run at all (setup failed)
    not_run: int = 0  # records skipped because the time budget was spent
    first_not_run: int = 0


@dataclass
class Difference:
    file: str
    line: int
    mode: int
    sql: str
    expected: str
    got: str


@dataclass
class FileResult:
    file: str
    records: int
    modes: dict[int, ModeResult]
    differences: list[Difference]
    error: str | None = None  # the script could not be parsed

    @property
    def shown_differences(self) -> list[Difference]:
        return self.differences[:MAX_DIFFERENCES]


def _expected_text(rec: Statement | Query) -> str:
    if isinstance(rec, Statement):
        return "error" if rec.expect_error else "ok"
    expected = rec.expected
    return describe(expected if isinstance(expected, HashedResult) else list(expected))


@dataclass
class RunOutcome:
    records: int
    passed: int
    failures: dict[int, Failure]
    not_run: int = 0  # records left when the time budget ran out
    first_not_run: int = 0  # line of the first of them


def run_records(records: Iterable[object], backend: Backend, deadline: float | None = None) -> RunOutcome:
    """Run the active records of a script in order; stop once time.monotonic() passes `deadline`."""
    threshold = 0
    labels: dict[str, HashedResult] = {}
    out = RunOutcome(0, 0, {})
    for rec in records:
        if isinstance(rec, HashThreshold):
            threshold = rec.value
            continue
        if not isinstance(rec, Statement | Query):
            continue
        out.records += 1
        if deadline is not None and (out.not_run or time.monotonic() > deadline):
            out.not_run += 1
            out.first_not_run = out.first_not_run or rec.line
            continue
        got: str | None
        if isinstance(rec, Statement):
            try:
                backend.statement(rec.sql)
                got = "ok" if rec.expect_error else None
            except Exception as exc:  # noqa: BLE001 - any failure of the engine fails the record
                got = None if rec.expect_error else error_text(exc)
        else:
            try:
                columns, rows = backend.query(rec.sql)
            except Exception as exc:  # noqa: BLE001
                got = error_text(exc)
            else:
                got = check_query(rec, columns, rows, threshold, labels)
        if got is None:
            out.passed += 1
        else:
            out.failures[rec.line] = Failure(rec.line, rec.sql, _expected_text(rec), got)
    return out


def run_mode(script: Script, mode: int, cluster: Cluster, budget: float = 0) -> ModeResult:
    """Run one script in one mode, in a fresh database that is dropped afterwards.

    With a budget (seconds), records still left when it is spent are not run (counted in not_run).
    """
    records = active_records(script)
    total = sum(isinstance(r, Statement | Query) for r in records)
    start = time.monotonic()
    database = cluster.create_database()
    backend: Backend | None = None
    try:
        try:
            backend = make_backend(mode, cluster, database)
        except Exception as exc:  # noqa: BLE001
            return ModeResult(mode, total, 0, time.monotonic() - start, error=f"setup: {error_text(exc)}")
        run = run_records(records, backend, start + budget if budget > 0 else None)
        return ModeResult(
            mode,
            run.records,
            run.passed,
            time.monotonic() - start,
            run.failures,
            None,
            run.not_run,
            run.first_not_run,
        )
    finally:
        if backend is not None:
            try:
                backend.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken session must not hide the result
                pass
        cluster.drop_database(database)


def compare(file: str, modes: dict[int, ModeResult]) -> list[Difference]:
    """Records that pass in mode 1 (or, without mode 1, in the script) but fail in a HeliosDB mode."""
    reference = modes.get(1)
    out: list[Difference] = []
    for mode, res in sorted(modes.items()):
        if mode == 1:
            continue
        if res.error:
            out.append(Difference(file, 0, mode, "", "the mode runs", res.error))
            continue
        if res.not_run:
            got = f"time budget spent: this and the {res.not_run - 1} records after it were not run"
            out.append(Difference(file, res.first_not_run, mode, "", "the record runs", got))
        for line, fail in sorted(res.failures.items()):
            if reference is not None and (reference.error or line in reference.failures):
                continue
            out.append(Difference(file, line, mode, fail.sql, fail.expected, fail.got))
    out.sort(key=lambda d: (d.line, d.mode))
    return out


Progress = Callable[[str], None]


def run_file(
    path: Path,
    modes: Sequence[int],
    cluster: Cluster,
    name: str | None = None,
    progress: Progress | None = None,
    budget: float = 0,
) -> FileResult:
    """Run one file in each mode (each in a fresh database) and compare the modes."""
    name = name or str(path)
    try:
        script = parse_file(path)
    except (OSError, SltParseError) as exc:
        return FileResult(name, 0, {}, [], error=str(exc))
    results: dict[int, ModeResult] = {}
    for mode in modes:
        res = run_mode(script, mode, cluster, budget)
        results[mode] = res
        if progress:
            note = f" ({res.error})" if res.error else ""
            note += f" ({res.not_run} not run: time budget spent)" if res.not_run else ""
            progress(f"{name} mode {mode}: {res.passed}/{res.records} passed in {res.seconds:.1f}s{note}")
    records = max((r.records for r in results.values()), default=0)
    return FileResult(name, records, results, compare(name, results))


# -- many files, optionally in worker processes ----------------------------------
_worker_cluster: Cluster | None = None


def _init_worker(data_dir: str, timeout: float) -> None:
    global _worker_cluster
    _worker_cluster = Cluster(data_dir, timeout)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="slt-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose runner was killed (SIGTERM, SIGKILL) stops too, instead of running its file on."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_in_worker(path: str, name: str, modes: tuple[int, ...], verbose: bool, budget: float) -> FileResult:
    assert _worker_cluster is not None
    return run_file(Path(path), modes, _worker_cluster, name, _stderr if verbose else None, budget)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_files(
    files: Sequence[tuple[Path, str]],
    modes: Sequence[int],
    data_dir: str | os.PathLike[str],
    jobs: int = 1,
    timeout: float = 0,
    progress: Progress | None = None,
    budget: float = 0,
) -> list[FileResult]:
    """Run (path, display name) pairs in `modes`; with jobs > 1, files run in parallel processes.

    `timeout` bounds each statement, `budget` each file in each mode (seconds, 0: none).
    In worker processes, progress (when asked for) goes to stderr.
    """
    modes = tuple(modes)
    if jobs <= 1 or len(files) <= 1:
        cluster = Cluster(data_dir, timeout)
        try:
            return [run_file(path, modes, cluster, name, progress, budget) for path, name in files]
        finally:
            cluster.close()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(str(data_dir), timeout)
    ) as pool:
        futures = [
            pool.submit(_run_in_worker, str(path), name, modes, progress is not None, budget)
            for path, name in files
        ]
        return [f.result() for f in futures]
