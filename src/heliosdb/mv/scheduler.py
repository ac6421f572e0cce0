"""The refresh scheduler of long-lived HeliosDB processes (the shell, `heliosdb serve`, connect(..., background=True)).

It starts and stops the branch images' upkeep with itself (`branching.images.Upkeep`, a thread of its own).

Every tick it reads heliosdb._mv_staleness() for every view on every branch
and refreshes the due ones (incremental and deferred strategies) one at a
time, in priority order:

- due: staleness reached staleness_threshold, or the view has pending
  changes and its age reached max_staleness_seconds, or it FAILED and its
  retry time came;
- order: priority (critical > high > medium > low), then staleness; a view
  that has been waiting moves up one priority level per `aging_seconds`, so
  none starves;
- CPU: the smoothed system CPU (psutil) is checked before each refresh;
  non-critical views wait while it is above their max_cpu_percent (0: while
  it is above 0 at all);
- a refresh brings the view's input views to the same point first; a
  failure is retried with bounded backoff and marks the views that read it
  UPSTREAM_FAILED; an advisory lock keeps two processes from refreshing one
  view at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from heliosdb import errors
from heliosdb.branching import images
from heliosdb.catalog.model import get_branch_by_id
from heliosdb.mv import catalog as mvcat
from heliosdb.mv.options import PRIORITY_RANK
from heliosdb.mv.refresh import Outcome, refresh
from heliosdb.mv.status import error_line, record_failure
from heliosdb.storage.periodic import Periodic

TICK_SECONDS = 0.5
AGING_SECONDS = 30.0
CPU_SMOOTHING = 0.3  # weight of the newest reading in the moving average


def system_cpu() -> float:
    import psutil

    return float(psutil.cpu_percent(interval=None))


@dataclass
class Candidate:
    mv_id: int
    branch_id: int
    name: str
    branch: str
    priority: str
    staleness: float
    max_cpu: float
    waited: float

    def rank(self, aging: float) -> tuple[float, float]:
        return (PRIORITY_RANK.get(self.priority, 2) - self.waited / aging, -self.staleness)


class Scheduler(Periodic):
    """Keeps the views of one database within their staleness budgets."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], *, cpu_reader: Callable[[], float] | None = None,
        tick: float = TICK_SECONDS, aging_seconds: float = AGING_SECONDS, per_tick: int = 4,
    ) -> None:
        super().__init__("heliosdb-mv-scheduler", connect, tick)
        self.cpu_reader = cpu_reader or system_cpu
        self.tick, self.aging_seconds, self.per_tick = tick, aging_seconds, per_tick
        self._cpu: float | None = None
        self._waiting_since: dict[tuple[int, int], float] = {}
        self.log: list[tuple[str, str, str]] = []  # (view, branch, mode or 'failed' / 'deferred: cpu')

    # -- CPU ---------------------------------------------------------------------
    def cpu(self) -> float:
        reading = float(self.cpu_reader())
        self._cpu = reading if self._cpu is None else CPU_SMOOTHING * reading + (1 - CPU_SMOOTHING) * self._cpu
        return self._cpu

    # -- one tick ------------------------------------------------------------------
    def due(self, conn: psycopg.Connection[Any]) -> list[Candidate]:
        rows = conn.execute(
            """SELECT z.mv_id, z.branch_id, z.name, z.branch, z.priority, z.staleness, z.max_cpu_percent
               FROM heliosdb._mv_staleness() z JOIN heliosdb._mv_state s USING (mv_id, branch_id)
               WHERE z.strategy IN ('incremental', 'deferred')
                 AND ((z.status = 'FAILED' AND s.next_retry <= clock_timestamp())
                      OR (z.status = 'STALE' AND (z.staleness >= z.staleness_threshold
                          OR (z.pending_changes > 0 AND z.age_seconds >= z.max_staleness_seconds
                              -- critical views start early enough to finish before the limit
                              - CASE WHEN z.priority = 'critical'
                                     THEN 2 * %s + coalesce(z.last_refresh_ms, 0) / 1000.0 ELSE 0 END))))""",
            (self.tick,),
        ).fetchall()
        now = time.monotonic()
        keys = {(r[0], r[1]) for r in rows}
        for k in list(self._waiting_since):
            if k not in keys:
                del self._waiting_since[k]
        out = []
        for mv_id, bid, name, branch, priority, staleness, max_cpu in rows:
            since = self._waiting_since.setdefault((mv_id, bid), now)
            # 0 is a limit too (refresh only while the CPU is idle): only a missing value means none
            limit = 100.0 if max_cpu is None else max_cpu
            out.append(Candidate(mv_id, bid, name, branch, priority, staleness or 0.0, limit, now - since))
        out.sort(key=lambda c: c.rank(self.aging_seconds))
        return out

    def run_once(self) -> list[tuple[str, str, str]]:
        """One scheduling round; returns what it did per view: (view, branch, mode | 'failed' | 'deferred: cpu')."""
        conn = self._connection()
        done: list[tuple[str, str, str]] = []
        refreshed = 0
        blocked: set[tuple[int, int]] = set()  # readers of a view that failed in this round
        for cand in self.due(conn):
            if refreshed >= self.per_tick:
                break
            if (cand.mv_id, cand.branch_id) in blocked:
                continue
            if cand.priority != "critical" and self.cpu() > cand.max_cpu:
                done.append((cand.name, cand.branch, "deferred: cpu"))
                continue
            outcome = self._refresh(conn, cand)
            if outcome == "failed":
                blocked |= {(d, cand.branch_id) for d in mvcat.dependents(conn, cand.mv_id)}
            done.append((cand.name, cand.branch, outcome))
            refreshed += 1
            self._waiting_since.pop((cand.mv_id, cand.branch_id), None)
        self.log.extend(done)
        return done

    def _refresh(self, conn: psycopg.Connection[Any], cand: Candidate) -> str:
        from heliosdb.mv.ddl import on_branch_path

        mv = mvcat.by_id(conn, cand.mv_id)
        branch = get_branch_by_id(conn, cand.branch_id)
        conn.execute("UPDATE heliosdb._mv_state SET status = 'REFRESHING' WHERE mv_id = %s AND branch_id = %s",
                     (mv.id, branch.id))
        try:
            with conn.transaction():
                st = mvcat.state(conn, mv.id, branch.id)
                if st is None:
                    return "gone"
                mv.options = st.options
                with on_branch_path(conn, branch):
                    out: Outcome | None = refresh(conn, branch, mv, wait=False, detached=True)
            if out is None or out.mode == "none":
                conn.execute("UPDATE heliosdb._mv_state SET status = 'FRESH' WHERE mv_id = %s AND branch_id = %s "
                             "AND status = 'REFRESHING'", (mv.id, branch.id))
            return "busy" if out is None else out.mode
        except (psycopg.Error, errors.Error) as exc:
            with conn.transaction():
                record_failure(conn, mv, branch, error_line(exc))
            return "failed"

    # -- thread ----------------------------------------------------------------------
    def round(self, conn: psycopg.Connection[Any]) -> None:
        self.run_once()

    def run(self) -> None:
        upkeep = images.Upkeep(self._connect)
        upkeep.start()
        self.cpu()  # psutil's first reading only starts its interval
        try:
            super().run()
        finally:
            upkeep.stop()
