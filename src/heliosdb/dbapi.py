"""PEP 249 interface: heliosdb.connect() returns a Connection bound to a branch."""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from heliosdb import errors
from heliosdb.session import Result, Session
from heliosdb.sql.classify import is_stdio_copy
from heliosdb.sql.split import split_statements


# -- PEP 249 type objects and constructors ---------------------------------------------
class _TypeObject:
    """Compares equal to the PostgreSQL type OIDs of one PEP 249 category (description type_code)."""

    def __init__(self, name: str, *oids: int) -> None:
        self.name = name
        self.oids = frozenset(oids)

    def __eq__(self, other: object) -> bool:
        return other in self.oids if isinstance(other, int) else other is self

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<{self.name}>"


STRING = _TypeObject("STRING", 25, 1042, 1043, 19, 18)
BINARY = _TypeObject("BINARY", 17)
NUMBER = _TypeObject("NUMBER", 20, 21, 23, 26, 700, 701, 1700, 790)
DATETIME = _TypeObject("DATETIME", 1082, 1083, 1114, 1184, 1186, 1266)
ROWID = _TypeObject("ROWID", 26)

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:  # noqa: N802 - PEP 249 name
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:  # noqa: N802 - PEP 249 name
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:  # noqa: N802 - PEP 249 name
    return Timestamp(*time.localtime(ticks)[:6])


def Binary(data: bytes | bytearray | memoryview) -> bytes:  # noqa: N802 - PEP 249 name
    return bytes(data)


def connect(
    data_dir: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    database: str | None = None,
    branch: str = "main",
    background: bool = False,
) -> Connection:
    """Open a session on `database` (managed data directory, or `storage` URL) at `branch`. Without
    `database`: the one the storage URL names, else `heliosdb`.

    background=True runs the history garbage collector, the materialized-view refresh scheduler and the
    branch images' upkeep in threads while the connection is open (``connection.session.scheduler``).
    """
    return Connection(
        Session(data_dir=data_dir, storage=storage, database=database, branch=branch, background=background)
    )


class Connection:
    """A PEP 249 connection. Not autocommit by default: the first statement opens a transaction."""

    Error = errors.Error
    Warning = errors.Warning
    InterfaceError = errors.InterfaceError
    DatabaseError = errors.DatabaseError
    DataError = errors.DataError
    OperationalError = errors.OperationalError
    IntegrityError = errors.IntegrityError
    InternalError = errors.InternalError
    ProgrammingError = errors.ProgrammingError
    NotSupportedError = errors.NotSupportedError

    def __init__(self, session: Session) -> None:
        self.session = session
        self.autocommit = False
        self._closed = False

    @property
    def branch(self) -> str:
        return self.session.branch.name

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise errors.InterfaceError("the connection is closed")

    def cursor(self) -> Cursor:
        self._check()
        return Cursor(self)

    def _begin(self) -> None:
        """Outside autocommit, a statement starts the transaction (PEP 249's implicit BEGIN)."""
        if not self.autocommit and not self.session.in_transaction:
            self.session.conn.execute("BEGIN")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Cursor:
        cur = self.cursor()
        cur.execute(sql, params)
        return cur

    def commit(self) -> None:
        self._check()
        if self.session.in_transaction:
            self.session.execute("COMMIT")

    def rollback(self) -> None:
        self._check()
        if self.session.in_transaction:
            self.session.execute("ROLLBACK")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.session.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if not self._closed:
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
        finally:
            self.close()


_SPLIT: dict[str, list[str]] = {}


def _split(text: str) -> list[str]:
    """split_statements, remembered for the texts an application repeats."""
    stmts = _SPLIT.get(text)
    if stmts is None:
        stmts = split_statements(text)
        if len(text) <= 4096:
            if len(_SPLIT) >= 1024:
                _SPLIT.clear()
            _SPLIT[text] = stmts
    return stmts


class Cursor:
    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._result: Result | None = None
        self._rows: list[tuple[Any, ...]] | None = None
        self._pos = 0
        self.closed = False
        self._pgcur: psycopg.Cursor[Any] | None = None  # reused: psycopg keeps its loaders per cursor

    @property
    def description(self) -> Any:
        return self._result.description if self._result else None

    @property
    def rowcount(self) -> int:
        return self._result.rowcount if self._result else -1

    @property
    def statusmessage(self) -> str | None:
        return self._result.status if self._result else None

    @property
    def notices(self) -> list[str]:
        return self._result.notices if self._result else []

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Cursor:
        if self.closed:
            raise errors.InterfaceError("the cursor is closed")
        conn = self.connection
        if conn._closed:
            raise errors.InterfaceError("the connection is closed")
        session = conn.session
        stmts = _SPLIT.get(sql) or _split(sql)
        if any(is_stdio_copy(s) for s in stmts):  # refused before it is sent: the connection stays usable
            raise errors.ProgrammingError(
                "COPY FROM STDIN and COPY TO STDOUT run through cursor.copy(), not execute()", sqlstate="0A000",
                hint='with cur.copy("COPY t FROM STDIN") as copy: copy.write_row((1, "a"))')
        conn._begin()
        if len(stmts) == 1:
            # the common case, kept short: one statement, rows fetched at once, so the psycopg
            # cursor of the previous result can be reused
            if self._pgcur is None:
                self._pgcur = session.result_cursor()
            self._result = session.execute(stmts[0], params, self._pgcur)
        else:
            results = list(session.run(sql, params))
            self._result = results[-1] if results else None
        result = self._result
        try:
            self._rows = result.cursor.fetchall() if result and result.has_rows else None  # type: ignore[union-attr]
        except psycopg.Error as exc:
            raise errors.from_psycopg(exc) from None
        self._pos = 0
        return self

    @contextlib.contextmanager
    def copy(self, sql: str) -> Iterator[psycopg.Copy]:
        """COPY ... FROM STDIN / TO STDOUT, as psycopg's cursor.copy(): write_row()/write() the rows
        in, or iterate rows()/the blocks out. On a branch the rows go to the branch's table."""
        if self.closed or self.connection._closed:
            raise errors.InterfaceError("the cursor is closed" if self.closed else "the connection is closed")
        if not is_stdio_copy(sql):
            raise errors.ProgrammingError("cursor.copy() takes COPY ... FROM STDIN or COPY ... TO STDOUT",
                                          sqlstate="42601")
        session = self.connection.session
        self.connection._begin()
        self._rows = None
        with session.copy(sql) as (cp, _direction):
            yield cp
        status = session.last_status
        self._result = Result(status, rowcount=int(status.split()[-1]) if status[-1:].isdigit() else -1)

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[Any] | dict[str, Any]]) -> None:
        total = 0
        for params in seq_of_params:
            self.execute(sql, params)
            total += max(self.rowcount, 0)
        if self._result is not None:
            self._result.rowcount = total

    def _need_rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            raise errors.ProgrammingError("the last statement returned no rows", sqlstate="42000")
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._need_rows()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        rows = self._need_rows()
        n = size or self.arraysize
        out = rows[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._need_rows()
        out = rows[self._pos :]
        self._pos = len(rows)
        return out

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
