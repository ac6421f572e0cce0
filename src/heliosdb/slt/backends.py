"""Where sqllogictest records run: plain PostgreSQL or HeliosDB, in the four modes of the runner.

    1  plain PostgreSQL: a fresh database of the managed instance, psycopg, autocommit (the reference)
    2  HeliosDB, everything on main
    3  HeliosDB, statements on main; every query on a child branch forked from main's current state
    4  HeliosDB, a new child of the current branch after every 5 successful statements

Every backend runs in autocommit mode, so an error fails only its statement and
leaves the session usable; a connection that died is reopened on its branch.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from heliosdb.storage.instance import Instance

MODES: dict[int, str] = {
    1: "postgresql",
    2: "heliosdb main",
    3: "query on child",
    4: "generations",
}
GENERATION_EVERY = 5

_names = itertools.count(1)
_STALE = re.compile(r"^slt_(\d+)_\d+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Backend(Protocol):
    def statement(self, text: str) -> None: ...

    def query(self, text: str) -> tuple[int, Sequence[Sequence[Any]]]: ...

    def close(self) -> None: ...


def error_text(exc: BaseException) -> str:
    """One line naming an error: class, SQLSTATE when known, first line of the message."""
    state = getattr(exc, "sqlstate", None)
    first = (str(exc).strip().splitlines() or [""])[0]
    name = type(exc).__name__
    return f"{name} [{state}]: {first}" if state else f"{name}: {first}"


def _is_closed(conn: Any) -> bool:
    closed = getattr(conn, "closed", False)
    return bool(closed)


def _run(conn: Any, text: str) -> tuple[int, list[Any]] | None:
    """Execute one SQL text through a PEP 249 connection; (columns, rows) when it returned rows."""
    cur = conn.cursor()
    try:
        cur.execute(text)
        if cur.description is None:
            return None
        return len(cur.description), list(cur.fetchall())
    finally:
        cur.close()


class Cluster:
    """The managed PostgreSQL instance of a data directory, and fresh databases in it."""

    def __init__(self, data_dir: str | os.PathLike[str], timeout: float = 0) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout
        self.instance = Instance(self.data_dir)
        self.instance.acquire()
        self.admin = psycopg.connect(**self.instance.conninfo("postgres"), autocommit=True)  # type: ignore[arg-type]
        self.drop_stale_databases()

    def drop_stale_databases(self) -> None:
        """Drop databases left by runs that were killed (slt_<pid>_<n> whose process is gone)."""
        for (name,) in self.admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'slt\\_%'"
        ).fetchall():
            m = _STALE.match(name)
            if m and not _alive(int(m.group(1))):
                self.drop_database(name)

    def create_database(self) -> str:
        name = f"slt_{os.getpid()}_{next(_names)}"
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _timeout_options(self) -> str:
        return f"-c statement_timeout={int(self.timeout * 1000)}" if self.timeout > 0 else ""

    def plain_connect(self, database: str) -> psycopg.Connection[Any]:
        info = dict(self.instance.conninfo(database))
        options = self._timeout_options()
        if options:
            info["options"] = options
        return psycopg.connect(**info, autocommit=True)  # type: ignore[arg-type]

    def helios_connect(self, database: str, branch: str = "main") -> Any:
        import heliosdb

        conn = heliosdb.connect(data_dir=self.data_dir, database=database, branch=branch)
        conn.autocommit = True
        if self.timeout > 0:
            try:
                _run(conn, f"SET statement_timeout = {int(self.timeout * 1000)}")
            except Exception:  # noqa: BLE001 - a timeout is a safety net, not a requirement
                pass
        return conn

    def close(self) -> None:
        self.admin.close()
        self.instance.release()


class PlainBackend:
    """Mode 1: plain PostgreSQL through psycopg."""

    def __init__(self, cluster: Cluster, database: str) -> None:
        self.cluster = cluster
        self.database = database
        self.conn = cluster.plain_connect(database)

    def _conn(self) -> Any:
        if _is_closed(self.conn):
            self.conn = self.cluster.plain_connect(self.database)
        return self.conn

    def statement(self, text: str) -> None:
        _run(self._conn(), text)

    def query(self, text: str) -> tuple[int, Sequence[Sequence[Any]]]:
        res = _run(self._conn(), text)
        if res is None:
            raise RuntimeError("the query returned no result set")
        return res

    def close(self) -> None:
        self.conn.close()


class HeliosBackend:
    """Mode 2: HeliosDB, every record on main."""

    def __init__(self, cluster: Cluster, database: str) -> None:
        self.cluster = cluster
        self.database = database
        self.branch = "main"
        self.conn = cluster.helios_connect(database)

    def _conn(self) -> Any:
        if _is_closed(self.conn):
            self.conn = self.cluster.helios_connect(self.database, self.branch)
        return self.conn

    def statement(self, text: str) -> None:
        _run(self._conn(), text)

    def query(self, text: str) -> tuple[int, Sequence[Sequence[Any]]]:
        res = _run(self._conn(), text)
        if res is None:
            raise RuntimeError("the query returned no result set")
        return res

    def close(self) -> None:
        self.conn.close()


class ChildQueryBackend(HeliosBackend):
    """Mode 3: statements on main; before a query that follows statements, fork q<n> from main.

    Queries run on a second connection that switched to the newest q<n> with USE BRANCH.
    """

    def __init__(self, cluster: Cluster, database: str) -> None:
        super().__init__(cluster, database)
        self.reader: Any = None
        self.reader_branch = "main"
        self.forks = 0
        self.dirty = True

    def statement(self, text: str) -> None:
        self.dirty = True
        super().statement(text)

    def _reader(self) -> Any:
        if self.reader is None or _is_closed(self.reader):
            self.reader = self.cluster.helios_connect(self.database, self.reader_branch)
        return self.reader

    def query(self, text: str) -> tuple[int, Sequence[Sequence[Any]]]:
        if self.dirty:
            name = f"q{self.forks + 1}"
            try:
                _run(self._conn(), f"CREATE DATABASE BRANCH {name} FROM main")
                self.forks += 1
                _run(self._reader(), f"USE BRANCH {name}")
            except Exception as exc:
                raise RuntimeError(f"forking {name} for the query failed: {error_text(exc)}") from exc
            self.reader_branch = name
            self.dirty = False
        res = _run(self._reader(), text)
        if res is None:
            raise RuntimeError("the query returned no result set")
        return res

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        super().close()


class GenerationsBackend(HeliosBackend):
    """Mode 4: after every 5 successful statements, CREATE DATABASE BRANCH g<n> and USE BRANCH g<n>."""

    def __init__(self, cluster: Cluster, database: str) -> None:
        super().__init__(cluster, database)
        self.succeeded = 0
        self.generations = 0

    def statement(self, text: str) -> None:
        super().statement(text)
        self.succeeded += 1
        if self.succeeded % GENERATION_EVERY:
            return
        name = f"g{self.generations + 1}"
        try:
            _run(self._conn(), f"CREATE DATABASE BRANCH {name}")
            self.generations += 1
            _run(self._conn(), f"USE BRANCH {name}")
            self.branch = name
        except Exception as exc:
            raise RuntimeError(
                f"statement ok, but then branching to {name} failed: {error_text(exc)}"
            ) from exc


def make_backend(mode: int, cluster: Cluster, database: str) -> Backend:
    if mode == 1:
        return PlainBackend(cluster, database)
    if mode == 2:
        return HeliosBackend(cluster, database)
    if mode == 3:
        return ChildQueryBackend(cluster, database)
    if mode == 4:
        return GenerationsBackend(cluster, database)
    raise ValueError(f"unknown mode {mode}")
