"""Benchmark 3: pgbench-like TPC-B write transactions, single client, fixed duration.

One transaction (as pgbench's built-in "tpcb-like" script):
    UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
    SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
    UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
    UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
    INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
    COMMIT
HeliosDB runs it through `heliosdb.connect` on main, the peer through psycopg on
plain tables with the same rows. The total duration is cut into rounds that
alternate between the two sides; the reported number is the median of the
rounds' throughputs (transactions per second).
"""

from __future__ import annotations

import random
import time
from typing import Any

from common import Env, Result, median
from data import TPCB_ACCOUNTS_PER_BRANCH, TPCB_TELLERS_PER_BRANCH

TARGET = 0.5

UPDATE_ACCOUNTS = "UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s"
SELECT_BALANCE = "SELECT abalance FROM pgbench_accounts WHERE aid = %s"
UPDATE_TELLERS = "UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s"
UPDATE_BRANCHES = "UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s"
INSERT_HISTORY = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)"
)


class Client:
    def __init__(self, conn: Any, scale: int, seed: int) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.rng = random.Random(seed)
        self.accounts = TPCB_ACCOUNTS_PER_BRANCH * scale
        self.tellers = TPCB_TELLERS_PER_BRANCH * scale
        self.branches = scale
        self.done = 0

    def transaction(self) -> None:
        rng, cur = self.rng, self.cur
        aid = rng.randint(1, self.accounts)
        tid = rng.randint(1, self.tellers)
        bid = rng.randint(1, self.branches)
        delta = rng.randint(-5000, 5000)
        cur.execute(UPDATE_ACCOUNTS, (delta, aid))
        cur.execute(SELECT_BALANCE, (aid,))
        cur.fetchone()
        cur.execute(UPDATE_TELLERS, (delta, tid))
        cur.execute(UPDATE_BRANCHES, (delta, bid))
        cur.execute(INSERT_HISTORY, (tid, bid, aid, delta))
        self.conn.commit()
        self.done += 1

    def round(self, seconds: float) -> float:
        """Run transactions back to back for `seconds`; returns the throughput (tps)."""
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while True:
            self.transaction()
            n += 1
            now = time.perf_counter()
            if now >= end:
                return n / (now - t0)


CHECK = """SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
                  (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history)"""


def _consistent(conn: Any) -> bool:
    """Every transaction added the same delta to an account, a teller, a branch and the history."""
    cur = conn.cursor()
    cur.execute(CHECK)
    row = cur.fetchone()
    conn.commit()
    return row is not None and len(set(row)) == 1


def run(env: Env, *, scale: int, duration: float, rounds: int, warmup: float, helios_db: str,
        plain_db: str) -> list[Result]:
    clients = {
        "helios": Client(env.helios(helios_db, autocommit=False), scale, seed=1),
        "plain": Client(env.pg(plain_db, autocommit=False), scale, seed=1),
        "direct": Client(env.direct(helios_db, "main", autocommit=False), scale, seed=2),
    }
    names = list(clients)
    per_round = duration / rounds
    env.log(f"TPC-B: {warmup:g} s warm-up per side, then {rounds} alternating rounds of {per_round:.1f} s per side")
    for name in names:
        clients[name].round(warmup)
    tps: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            tps[name].append(clients[name].round(per_round))
    consistent = {name: _consistent(c.conn) for name, c in clients.items()}
    for c in clients.values():
        env.close(c.conn)
    med = {name: median(v) for name, v in tps.items()}
    for name in names:
        env.log(f"  {name} rounds (tps): {[round(x) for x in tps[name]]}")
    what = f"TPC-B transaction, scale {scale}, 1 client, {duration:g} s per side"
    return [
        Result(
            bench="3", name=f"{what} (heliosdb.connect)", kind="rate",
            helios=med["helios"], peer=med["plain"], peer_label="psycopg, plain tables",
            target=f">= {TARGET:g}x", ok=med["helios"] / med["plain"] >= TARGET,
            note=f"{clients['helios'].done} vs {clients['plain'].done} transactions in total"
            + "".join(f"; {name}: balances INCONSISTENT" for name, ok in consistent.items() if not ok),
        ),
        Result(
            bench="3", name=f"{what} (psycopg direct to HeliosDB tables)", kind="rate",
            helios=med["direct"], peer=med["plain"], peer_label="psycopg, plain tables",
            target="info", ok=None,
        ),
    ]
