"""Bound parameters of the extended protocol: $n placeholders, raw values, SQL literals.

Two ways to hand a bound statement to the session:

- `to_psycopg`: the `$n` placeholders become psycopg's `%(pN)s` and every value
  travels as a `Raw` (the client's bytes, format and type OID, unchanged), so
  PostgreSQL itself parses and types the parameters exactly as it would for
  the client;
- `substitute`: the values are written into the text as typed SQL literals,
  for the statements that HeliosDB rewrites before PostgreSQL sees them
  (branch DDL, time travel, writes on inherited branch tables).
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types

from heliosdb import errors
from heliosdb.sql.names import quote_literal

_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$([0-9]+)")
_MAX_PARAMS = 65535


def placeholders(query: str) -> list[tuple[int, int, int]]:
    """(start, end, n) of every $n outside strings, quoted names, comments and dollar quotes."""
    out: list[tuple[int, int, int]] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c == "'":
            escape = i > 0 and query[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(query[i - 2]))
            i += 1
            while i < n:
                ch = query[i]
                if escape and ch == "\\":
                    i += 2
                    continue
                if ch == "'":
                    if i + 1 < n and query[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == '"':
            end = query.find('"', i + 1)
            while end >= 0 and end + 1 < n and query[end + 1] == '"':
                end = query.find('"', end + 2)
            i = n if end < 0 else end + 1
        elif c == "-" and query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and query.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if query.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif query.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "$" and (i == 0 or not _IDENT_CHAR.match(query[i - 1])):
            m = _PARAM.match(query, i)
            if m:
                num = int(m.group(1))
                if num < 1 or num > _MAX_PARAMS:
                    raise errors.lookup("42P02")(f"there is no parameter ${num}", sqlstate="42P02",
                                                 position=i + 1)
                out.append((i, m.end(), num))
                i = m.end()
                continue
            t = _DOLLAR_TAG.match(query, i)
            if t:
                end = query.find(t.group(0), t.end())
                i = n if end < 0 else end + len(t.group(0))
            else:
                i += 1
        elif _IDENT_CHAR.match(c):
            i += 1
            while i < n and _IDENT_CHAR.match(query[i]):
                i += 1
        else:
            i += 1
    return out


def param_count(spans: list[tuple[int, int, int]]) -> int:
    return max((s[2] for s in spans), default=0)


def _replace(query: str, spans: list[tuple[int, int, int]], make: Callable[[int], str],
             escape_percent: bool) -> str:
    out: list[str] = []
    pos = 0
    for start, end, num in spans:
        chunk = query[pos:start]
        out.append(chunk.replace("%", "%%") if escape_percent else chunk)
        out.append(make(num))
        pos = end
    tail = query[pos:]
    out.append(tail.replace("%", "%%") if escape_percent else tail)
    return "".join(out)


# -- raw values through psycopg -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Raw:
    """A parameter exactly as the client bound it."""

    data: bytes | None
    oid: int
    fmt: int  # 0 text, 1 binary


class _RawDumper(Dumper):
    def get_key(self, obj: Any, format: Any) -> Any:
        return (Raw, obj.oid, obj.fmt)

    def upgrade(self, obj: Any, format: Any) -> Dumper:
        d = _RawDumper(Raw)
        d.oid = obj.oid
        d.format = pq.Format(obj.fmt)
        return d

    def dump(self, obj: Any) -> Any:
        return obj.data


psycopg.adapters.register_dumper(Raw, _RawDumper)


def to_psycopg(query: str, spans: list[tuple[int, int, int]], values: list[Raw]) -> tuple[str, dict[str, Raw]]:
    """The query with psycopg placeholders, and its parameters."""
    text = _replace(query, spans, lambda num: f"%(p{num})s", escape_percent=True)
    return text, {f"p{num}": values[num - 1] for _s, _e, num in spans}


# -- SQL literals -----------------------------------------------------------------------------
_BUILTIN_NAMES: dict[int, str] = {}
for _t in pg_types:
    _BUILTIN_NAMES.setdefault(_t.oid, f'pg_catalog."{_t.name}"')
    if _t.array_oid:
        _BUILTIN_NAMES.setdefault(_t.array_oid, f'pg_catalog."{_t.name}"[]')
_UNKNOWN = {0, 705}  # unspecified, unknown: the literal stays untyped


def type_name(conn: psycopg.Connection[Any], oid: int, cache: dict[int, str]) -> str:
    """A name to cast to for a type OID (builtins without a round trip)."""
    name = _BUILTIN_NAMES.get(oid) or cache.get(oid)
    if name:
        return name
    row = conn.execute("SELECT format_type(oid, NULL) FROM pg_type WHERE oid = %s", (oid,)).fetchone()
    if row is None:
        raise errors.UndefinedObject(f"type with OID {oid} does not exist", sqlstate="42704")
    cache[oid] = str(row[0])
    return cache[oid]


def _i(fmt: str) -> Callable[[bytes], str]:
    s = struct.Struct(fmt)

    def conv(b: bytes) -> str:
        return str(s.unpack(b)[0])
    return conv


def _f(fmt: str) -> Callable[[bytes], str]:
    s = struct.Struct(fmt)

    def conv(b: bytes) -> str:
        return repr(s.unpack(b)[0]).replace("inf", "Infinity").replace("nan", "NaN")
    return conv


def _utf8(b: bytes) -> str:
    return b.decode("utf-8")


_BINARY_TO_TEXT: dict[int, Callable[[bytes], str]] = {
    16: lambda b: "true" if b[0] else "false",
    17: lambda b: "\\x" + b.hex(),
    18: _utf8, 19: _utf8, 25: _utf8, 1042: _utf8, 1043: _utf8, 114: _utf8, 142: _utf8, 705: _utf8,
    3802: lambda b: b[1:].decode("utf-8"),
    20: _i("!q"), 21: _i("!h"), 23: _i("!i"), 26: _i("!I"),
    700: _f("!f"), 701: _f("!d"),
    2950: lambda b: str(uuid.UUID(bytes=b)),
}


def binary_to_text(conn: psycopg.Connection[Any], oid: int, data: bytes) -> str:
    """A binary parameter's text form (common types here, the others through PostgreSQL)."""
    conv = _BINARY_TO_TEXT.get(oid)
    if conv is not None:
        try:
            return conv(data)
        except (struct.error, ValueError, IndexError, UnicodeDecodeError):
            raise errors.lookup("22P03")("incorrect binary data format in bind parameter",
                                         sqlstate="22P03") from None
    res = conn.pgconn.exec_params(b"SELECT $1::text", [data], [oid], [1], 0)
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise errors.lookup("22P03")(
            (res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"bad binary parameter").decode(),
            sqlstate=(res.error_field(pq.DiagnosticField.SQLSTATE) or b"22P03").decode())
    value = res.get_value(0, 0)
    return (value or b"").decode("utf-8")


def literal(conn: psycopg.Connection[Any], value: Raw, cache: dict[int, str]) -> str:
    """A typed SQL literal for one bound value."""
    typed = value.oid not in _UNKNOWN
    if value.data is None:
        text = "NULL"
    elif value.fmt == 1:
        if not typed:
            raise errors.lookup("08P01")("binary parameter without a type", sqlstate="08P01")
        text = quote_literal(binary_to_text(conn, value.oid, value.data))
    else:
        text = quote_literal(value.data.decode("utf-8"))
    if not typed:
        return text
    return f"({text}::{type_name(conn, value.oid, cache)})"


def substitute(conn: psycopg.Connection[Any], query: str, spans: list[tuple[int, int, int]],
               values: list[Raw], cache: dict[int, str]) -> str:
    """The query with every $n replaced by its value as a literal."""
    lits = {num: literal(conn, values[num - 1], cache) for num in {s[2] for s in spans}}
    return _replace(query, spans, lits.__getitem__, escape_percent=False)
