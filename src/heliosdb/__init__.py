"""HeliosDB: a branchable, time-travelling SQL database over PostgreSQL.

The DB-API names (``connect``, ``Connection``, type objects) load on first
use, so tools that only need part of the package (the `heliosdb` command
starting PostgreSQL while the rest imports) do not pay for psycopg up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heliosdb.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)

if TYPE_CHECKING:
    from heliosdb.dbapi import (
        BINARY,
        DATETIME,
        NUMBER,
        ROWID,
        STRING,
        Binary,
        Connection,
        Cursor,
        Date,
        DateFromTicks,
        Time,
        TimeFromTicks,
        Timestamp,
        TimestampFromTicks,
        connect,
    )

__version__ = "0.1.0"
apilevel = "2.0"
threadsafety = 1
paramstyle = "pyformat"

_DBAPI = ("BINARY", "DATETIME", "NUMBER", "ROWID", "STRING", "Binary", "Date", "DateFromTicks", "Time",
          "TimeFromTicks", "Timestamp", "TimestampFromTicks", "Connection", "Cursor", "connect")

__all__ = [
    "BINARY", "DATETIME", "NUMBER", "ROWID", "STRING", "Binary", "Date", "DateFromTicks", "Time",
    "TimeFromTicks", "Timestamp", "TimestampFromTicks", "Connection", "Cursor", "connect",
    "DatabaseError", "DataError", "Error", "IntegrityError",
    "InterfaceError", "InternalError", "NotSupportedError", "OperationalError", "ProgrammingError", "Warning",
]


def __getattr__(name: str) -> Any:
    if name in _DBAPI:
        from heliosdb import dbapi

        value = getattr(dbapi, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'heliosdb' has no attribute {name!r}")
