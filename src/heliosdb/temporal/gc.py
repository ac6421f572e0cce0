"""Background garbage collection of history, for long-lived HeliosDB processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from heliosdb.storage.periodic import Periodic

INTERVAL_SECONDS = 60.0


class Collector(Periodic):
    """Runs heliosdb.gc() on its own connection every `interval` seconds until stopped."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], interval: float = INTERVAL_SECONDS) -> None:
        super().__init__("heliosdb-gc", connect, interval, join_timeout=10)
        self.runs = 0
        self.pruned = 0

    def round(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT heliosdb.gc()").fetchone()  # a failure is retried: GC is never urgent
        self.runs += 1
        self.pruned += int(row[0]) if row and row[0] is not None else 0
