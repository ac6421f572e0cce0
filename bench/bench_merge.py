"""Benchmark 5: MERGE DATABASE BRANCH (issue 4): wall time, and how it scales with main's size.

Every repetition creates a fresh branch of main, applies a change set on it
through `heliosdb.connect` (untimed; statements of at most 1,000 rows), then
times only `MERGE DATABASE BRANCH <b> INTO main` (autocommit, through
`heliosdb.connect` on main, result fetched), and drops the branch (untimed). The change sets:
  1,000 changes: 990 updates (`v = v + 1, pad = md5(pad)`, spread evenly over
                 the table), 5 inserts of new keys, 5 deletes;
  big diff:      D changes (100,000; quick 20,000): D - 2*(D/200) updates spread
                 over the table, D/200 inserts, D/200 deletes.
Each repetition touches other rows (the keys move with a counter), so main
keeps changing between repetitions, as in real use.

Sides (interleaved, ABBA):
  helios S      merge into a main of S rows (1,000,000; quick 100,000)
  helios L      merge into a main of L rows (10,000,000: ~4 minutes to load on the
                2-core test machine, ~8 when it is busy, --merge-large-rows to
                change it; quick 1,000,000)
  peer          plain PostgreSQL table with the same S rows: the same change set,
                prepared (untimed) in a table `changes`, applied as a
                hand-written merge script would, in one transaction:
                  UPDATE t SET ... FROM changes WHERE op = 'U' AND t.id = changes.id;
                  INSERT INTO t SELECT ... FROM changes WHERE op = 'I';
                  DELETE FROM t USING changes WHERE op = 'D' AND t.id = changes.id;
                  COMMIT
A second, informational pass runs the same merges with `SET jit = off` in the
HeliosDB sessions (PostgreSQL's JIT compilation of the engine's diff query
costs seconds, see docs/benchmarks.md), against the peer again. At the end
HeliosDB's main (S rows) and the peer table must hold the same rows
(checksums compared).

The statements the merge engine sends are timed (the session's psycopg
connection's execute is wrapped); the slowest ones of the middle repetition
are printed in the notes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from common import Env, Result, Sample, Trace, execute, fetch_all, interleaved, median, top_steps
from data import helios_t, load_t

TARGET_SMALL_S = 1.0
TARGET_SCALE = 1.5
TARGET_BIG_S = 10.0

_seq = itertools.count(1)


@dataclass
class Changes:
    """Deterministic change sets for a table of n rows; the k-th set depends only on k (and its kind).

    Keys never collide across sets: updates use ids <= 0.99 n (never deleted),
    deletes of 1,000-change sets come down from n, deletes of big sets go up
    from 0.99 n, inserts use fresh keys above n (small sets) and above 3 n (big sets).
    """

    n: int
    small_done: int = 0
    big_done: int = 0

    def small(self) -> tuple[list[int], list[int], list[int]]:
        r = self.small_done
        self.small_done += 1
        step = self.n // 1000
        off = (r * 13) % step
        upd = [1 + off + k * step for k in range(990)]
        dels = [self.n - 5 * r - j for j in range(5)]
        ins = [self.n + 1 + 5 * r + j for j in range(5)]
        return upd, dels, ins

    def big(self, d: int) -> tuple[list[int], list[int], list[int]]:
        b = self.big_done
        self.big_done += 1
        k = d // 200
        u = d - 2 * k
        stride = int(self.n * 0.99) // u
        upd = [1 + (b % stride) + i * stride for i in range(u)]
        lo = int(self.n * 0.99) + 1 + b * k
        dels = list(range(lo, lo + k))
        ins = list(range(3 * self.n + 1 + b * k, 3 * self.n + 1 + (b + 1) * k))
        return upd, dels, ins


UPDATE = "UPDATE t SET v = v + 1, pad = md5(pad) WHERE id = ANY(%s)"
DELETE = "DELETE FROM t WHERE id = ANY(%s)"
INSERT = "INSERT INTO t SELECT g, mod(g, 100), mod(g::bigint * 7919, 1000003), md5(g::text) FROM unnest(%s::int[]) g"
# Rows per write statement on the branch. One UPDATE of k rows on a branch costs O(k^2) (every row's
# INSTEAD OF trigger rescans all rows the branch wrote, see docs/benchmarks.md); statements of 1,000
# rows keep the untimed setup of the big diff in minutes.
WRITE_BATCH = 1_000
CHECKSUM = "SELECT count(*), sum(v), sum(grp), sum(hashtext(pad)::bigint) FROM t"


# -- the sides -------------------------------------------------------------------------------------
class HeliosSide:
    def __init__(self, env: Env, db: str, n: int, changes: Changes, jit: bool = True) -> None:
        self.env, self.db, self.n, self.changes = env, db, n, changes
        self.main = env.helios(db)
        if not jit:
            execute(self.main, "SET jit = off")
        self.trace = Trace(self.main)
        self.steps: list[list[tuple[str, float]]] = []
        self.setup: list[float] = []
        self.wrong: list[str] = []

    def sample(self, big: int = 0) -> Sample:
        def run() -> float:
            upd, dels, ins = self.changes.big(big) if big else self.changes.small()
            name = f"mb_{next(_seq)}"
            t0 = time.perf_counter()
            execute(self.main, f"CREATE DATABASE BRANCH {name}")
            b = self.env.helios(self.db, branch=name)
            for stmt, ids in ((UPDATE, upd), (DELETE, dels), (INSERT, ins)):
                for k in range(0, len(ids), WRITE_BATCH):
                    execute(b, stmt, (ids[k:k + WRITE_BATCH],))
            self.env.close(b)
            self.setup.append(time.perf_counter() - t0)
            self.trace.steps = []
            t0 = time.perf_counter()
            rows = fetch_all(self.main, f"MERGE DATABASE BRANCH {name} INTO main")
            dt = time.perf_counter() - t0
            self.steps.append(self.trace.steps)
            applied = sum(r[3] or 0 for r in rows)
            if applied != len(upd) + len(dels) + len(ins):
                self.wrong.append(f"{name}: {applied} rows applied, {len(upd) + len(dels) + len(ins)} changed")
            execute(self.main, f"DROP DATABASE BRANCH {name}")
            return dt

        return run

    def breakdown(self, times: list[float]) -> str:
        """The slowest statements of the middle repetition (the last len(times) runs are the measured ones)."""
        steps = self.steps[-len(times):]
        i = sorted(range(len(times)), key=lambda k: times[k])[len(times) // 2]
        return top_steps(steps[i], times[i])


class PlainSide:
    def __init__(self, env: Env, db: str, changes: Changes) -> None:
        self.env, self.changes = env, changes
        self.conn = env.pg(db)

    def sample(self, big: int = 0) -> Sample:
        c = self.conn

        def run() -> float:
            upd, dels, ins = self.changes.big(big) if big else self.changes.small()
            c.execute("CREATE TABLE changes (op \"char\" NOT NULL, id integer PRIMARY KEY, grp integer, v bigint, "
                      "pad text)")
            c.execute("INSERT INTO changes SELECT 'U', id, grp, v + 1, md5(pad) FROM t WHERE id = ANY(%s)", (upd,))
            c.execute("INSERT INTO changes SELECT 'D', id FROM unnest(%s::int[]) id", (dels,))
            c.execute("INSERT INTO changes SELECT 'I', g, mod(g, 100), mod(g::bigint * 7919, 1000003), md5(g::text) "
                      "FROM unnest(%s::int[]) g", (ins,))
            c.execute("ANALYZE changes")
            t0 = time.perf_counter()
            with c.transaction():
                c.execute("UPDATE t SET grp = x.grp, v = x.v, pad = x.pad FROM changes x "
                          "WHERE x.op = 'U' AND t.id = x.id")
                c.execute("INSERT INTO t SELECT id, grp, v, pad FROM changes WHERE op = 'I'")
                c.execute("DELETE FROM t USING changes x WHERE x.op = 'D' AND t.id = x.id")
            dt = time.perf_counter() - t0
            c.execute("DROP TABLE changes")
            return dt

        return run


# -- setup -------------------------------------------------------------------------------------------
def setup(env: Env, *, small: int, large: int, helios_s: str, helios_l: str, plain_s: str) -> list[Result]:
    helios_t(env, helios_s, small)
    load_l = helios_t(env, helios_l, large)
    env.log(f"loading {small:,} rows into plain database {plain_s}")
    env.create_database(plain_s)
    conn = env.pg(plain_s)
    load_t(conn, small)
    env.close(conn)
    env.vacuum_analyze(plain_s)
    if load_l is None:
        return []
    return [Result(bench="5", name=f"setup: load {large:,} rows through heliosdb.connect (one run)", kind="time",
                   helios=load_l, peer=None, peer_label="", target="info", ok=None)]


def _measure(env: Env, sides: dict[str, Callable[[], float]], reps: int, warmup: int,
             what: str) -> dict[str, list[float]]:
    env.log(f"merge {what}: {reps} interleaved repetitions of {len(sides)} sides (+{warmup} warm-up)")
    return interleaved(sides, reps=reps, warmup=warmup)


def run(env: Env, *, small: int, large: int, reps: int, jit_reps: int, big_diff: int, big_reps: int,
        helios_s: str = "helios_merge_s", helios_l: str = "helios_merge_l",
        plain_s: str = "plain_merge_s") -> list[Result]:
    results = setup(env, small=small, large=large, helios_s=helios_s, helios_l=helios_l, plain_s=plain_s)
    ch_s, ch_l, ch_p = Changes(small), Changes(large), Changes(small)
    hs = HeliosSide(env, helios_s, small, ch_s)
    hl = HeliosSide(env, helios_l, large, ch_l)
    peer = PlainSide(env, plain_s, ch_p)

    # 1. 1,000 changes into S and L rows, and the peer
    t = _measure(env, {"s": hs.sample(), "l": hl.sample(), "peer": peer.sample()}, reps, 1,
                 "of 1,000 changed rows")
    med = {k: median(v) for k, v in t.items()}
    setup_s = median(hs.setup[-reps:])
    results.append(Result(
        bench="5", name=f"merge 1,000 changed rows into main of {small:,} rows (median)", kind="time",
        helios=med["s"], peer=med["peer"], peer_label="UPDATE ... FROM changes + INSERT + DELETE",
        target=f"< {TARGET_SMALL_S:g} s", ok=med["s"] < TARGET_SMALL_S,
        note=f"middle run: {hs.breakdown(t['s'])}; untimed branch setup {setup_s:.1f} s"
             + (f"; WRONG: {hs.wrong[:2]}" if hs.wrong else ""),
        extra={"samples_helios": t["s"], "samples_peer": t["peer"]},
    ))
    results.append(Result(
        bench="5", name=f"merge 1,000 changed rows into main of {large:,} rows (median)", kind="time",
        helios=med["l"], peer=None, peer_label="", target="info", ok=None,
        note=f"middle run: {hl.breakdown(t['l'])}; untimed branch setup {median(hl.setup[-reps:]):.1f} s"
             + (f"; WRONG: {hl.wrong[:2]}" if hl.wrong else ""),
        extra={"samples_helios": t["l"]},
    ))
    scale = med["l"] / med["s"]
    results.append(Result(
        bench="5", name=f"merge 1,000 rows: main of {large:,} vs {small:,} rows (median ratio)", kind="scale",
        helios=scale, peer=None, peer_label="", target=f"<= {TARGET_SCALE:g}x", ok=scale <= TARGET_SCALE,
    ))

    # 2. the same with JIT compilation off in the merging sessions (informational)
    if jit_reps:
        hn = HeliosSide(env, helios_s, small, ch_s, jit=False)
        hln = HeliosSide(env, helios_l, large, ch_l, jit=False)
        t = _measure(env, {"s": hn.sample(), "l": hln.sample(), "peer": peer.sample()}, jit_reps, 1,
                     "of 1,000 rows, SET jit = off")
        med = {k: median(v) for k, v in t.items()}
        for key, side, rows in (("s", hn, small), ("l", hln, large)):
            results.append(Result(
                bench="5", name=f"merge 1,000 changed rows into main of {rows:,} rows, SET jit = off (median)",
                kind="time", helios=med[key], peer=med["peer"] if key == "s" else None,
                peer_label="UPDATE ... FROM changes + INSERT + DELETE" if key == "s" else "", target="info", ok=None,
                note=f"middle run: {side.breakdown(t[key])}",
            ))
        results.append(Result(
            bench="5", name=f"merge 1,000 rows, SET jit = off: main of {large:,} vs {small:,} rows (median ratio)",
            kind="scale", helios=med["l"] / med["s"], peer=None, peer_label="", target="info", ok=None,
        ))
        env.close(hn.main)
        env.close(hln.main)

    # 3. a big diff into S rows
    if big_reps:
        t = _measure(env, {"s": hs.sample(big_diff), "peer": peer.sample(big_diff)}, big_reps, 0,
                     f"of {big_diff:,} changed rows")
        results.append(Result(
            bench="5", name=f"merge {big_diff:,} changed rows into main of {small:,} rows (median)", kind="time",
            helios=median(t["s"]), peer=median(t["peer"]), peer_label="UPDATE ... FROM changes + INSERT + DELETE",
            target=f"< {TARGET_BIG_S:g} s", ok=median(t["s"]) < TARGET_BIG_S,
            note=f"middle run: {hs.breakdown(t['s'])}; untimed branch setup {median(hs.setup[-big_reps:]):.1f} s"
                 + (f"; WRONG: {hs.wrong[:2]}" if hs.wrong else ""),
            extra={"samples_helios": t["s"], "samples_peer": t["peer"]},
        ))

    # the merged main must equal the peer table
    h = fetch_all(hs.main, CHECKSUM)[0]
    p = fetch_all(peer.conn, CHECKSUM)[0]
    if h != p:
        env.log(f"  WARNING: after the merges main differs from the peer: {h} vs {p}")
        for r in results:
            if r.ok is not None:
                r.note = (r.note + "; " if r.note else "") + f"main != peer after merges: {h} vs {p}"
    for conn in (hs.main, hl.main, peer.conn):
        env.close(conn)
    return results
