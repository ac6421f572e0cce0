"""The background threads of long-lived HeliosDB processes: one round of work every few seconds."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from heliosdb import errors


class Periodic(threading.Thread, metaclass=abc.ABCMeta):
    """A daemon thread that runs `round()` every `interval` seconds, on a connection of its own, until
    stop(). A round that fails (the connection went, a statement failed) closes the connection; the
    next round opens a new one, so background work is retried rather than fatal."""

    def __init__(self, name: str, connect: Callable[[], psycopg.Connection[Any]], interval: float,
                 join_timeout: float = 30.0) -> None:
        super().__init__(name=name, daemon=True)
        self._connect = connect
        self.interval, self.join_timeout = interval, join_timeout
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None

    @abc.abstractmethod
    def round(self, conn: psycopg.Connection[Any]) -> None:
        """One round of the thread's work (the collector's, the scheduler's, the images' upkeep)."""

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.round(self._connection())
            except (psycopg.Error, errors.Error):
                self._close()
        self._close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=self.join_timeout)
        else:
            self._close()
