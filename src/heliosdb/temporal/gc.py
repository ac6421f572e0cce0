"""Background garbage collection of history, for long-lived HeliosDB processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

INTERVAL_SECONDS = 60.0


class Collector(threading.Thread):
    """Runs heliosdb.gc() on its own connection every `interval` seconds until stopped."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], interval: float = INTERVAL_SECONDS) -> None:
        super().__init__(name="heliosdb-gc", daemon=True)
        self._connect = connect
        self._interval = interval
        self._stop_event = threading.Event()
        self.runs = 0
        self.pruned = 0

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop_event.wait(self._interval):
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                row = conn.execute("SELECT heliosdb.gc()").fetchone()
                self.runs += 1
                self.pruned += int(row[0]) if row and row[0] is not None else 0
            except psycopg.Error:
                conn = None  # retried at the next interval: GC is never urgent
        if conn is not None and not conn.closed:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)
