"""Result sets on the wire: RowDescription fields and DataRow values, text or binary.

Statements run on the storage connection in text format; their raw values
(psycopg's pgresult) go to the client unchanged. A column the client wants in
binary is converted: common types in Python, anything else by PostgreSQL's
own send function (a round trip per row, for exotic types only). The text must
be exact for that: the protocol runs such statements with DateStyle ISO,
IntervalStyle postgres and extra_float_digits >= 1 (Protocol.exact_text), the
form the Python converters here read.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

from heliosdb import errors
from heliosdb.server import codec
from heliosdb.server.params import type_name

Converter = Callable[[bytes], bytes]


def _int(fmt: str) -> Converter:
    s = struct.Struct(fmt)

    def conv(v: bytes) -> bytes:
        return s.pack(int(v))
    return conv


def _float(fmt: str) -> Converter:
    s = struct.Struct(fmt)

    def conv(v: bytes) -> bytes:
        return s.pack(float(v))
    return conv


def _identity(v: bytes) -> bytes:
    return v


def _bool(v: bytes) -> bytes:
    return b"\x01" if v == b"t" else b"\x00"


def _bytea(v: bytes) -> bytes:
    if v.startswith(b"\\x"):
        return bytes.fromhex(v[2:].decode())
    raise ValueError("bytea_output is not hex")


def _uuid(v: bytes) -> bytes:
    return bytes.fromhex(v.decode().replace("-", ""))


_EPOCH_DAYS = 730120  # date(2000, 1, 1).toordinal(): PostgreSQL's epoch
_DAY_US = 86_400_000_000
_DATE = re.compile(rb"(\d{4})-(\d\d)-(\d\d)\Z")
_TIME = re.compile(rb"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_ZONE = re.compile(rb"([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?\Z")
# IntervalStyle postgres: "1 year -2 mons 3 days -04:05:06.5"
_INTERVAL_PART = re.compile(rb"\s*([+-]?\d+) (year|mon|day)s?|\s*([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_INTERVAL_UNITS = {b"year": 12, b"mon": 1}


def _days(v: bytes) -> int:
    """ISO date (4-digit year, AD) -> days since 2000-01-01; anything else raises ValueError."""
    m = _DATE.match(v)
    if m is None:
        raise ValueError(v)
    return date(int(m[1]), int(m[2]), int(m[3])).toordinal() - _EPOCH_DAYS


def _micros(v: bytes) -> tuple[int, bytes]:
    """HH:MM:SS[.ffffff] at the start of v -> (microseconds, the rest of v)."""
    m = _TIME.match(v)
    if m is None:
        raise ValueError(v)
    us = ((int(m[1]) * 60 + int(m[2])) * 60 + int(m[3])) * 1_000_000 + int((m[4] or b"").ljust(6, b"0"))
    return us, v[m.end():]


def _zone(v: bytes) -> int:
    """+HH[:MM[:SS]] -> seconds east of UTC."""
    m = _ZONE.match(v)
    if m is None:
        raise ValueError(v)
    secs = int(m[2]) * 3600 + int(m[3] or 0) * 60 + int(m[4] or 0)
    return -secs if m[1] == b"-" else secs


def _date(v: bytes) -> bytes:
    return struct.pack("!i", _days(v))


def _time(v: bytes) -> bytes:
    us, rest = _micros(v)
    if rest:
        raise ValueError(v)
    return struct.pack("!q", us)


def _timetz(v: bytes) -> bytes:
    us, rest = _micros(v)
    return struct.pack("!qi", us, -_zone(rest))  # PostgreSQL keeps the zone in seconds west


def _timestamp(v: bytes) -> bytes:
    day, _, clock = v.partition(b" ")
    us, rest = _micros(clock)
    if rest:
        raise ValueError(v)
    return struct.pack("!q", _days(day) * _DAY_US + us)


def _timestamptz(v: bytes) -> bytes:
    day, _, clock = v.partition(b" ")
    us, rest = _micros(clock)
    return struct.pack("!q", _days(day) * _DAY_US + us - _zone(rest) * 1_000_000)


def _interval(v: bytes) -> bytes:
    """IntervalStyle postgres text -> (microseconds, days, months), as PostgreSQL keeps it (no folding)."""
    months = days = us = 0
    pos = 0
    while pos < len(v):
        m = _INTERVAL_PART.match(v, pos)
        if m is None:
            raise ValueError(v)
        pos = m.end()
        if m[2] is not None:
            n = int(m[1])
            if m[2] == b"day":
                days += n
            else:
                months += n * _INTERVAL_UNITS[m[2]]
        else:
            t = ((int(m[4]) * 60 + int(m[5])) * 60 + int(m[6])) * 1_000_000 + int((m[7] or b"").ljust(6, b"0"))
            us += -t if m[3] == b"-" else t
    if pos == 0:
        raise ValueError(v)
    return struct.pack("!qii", us, days, months)


_FAST: dict[int, Converter] = {
    16: _bool, 17: _bytea, 18: _identity, 19: _identity, 25: _identity, 114: _identity, 142: _identity,
    705: _identity, 1042: _identity, 1043: _identity,
    20: _int("!q"), 21: _int("!h"), 23: _int("!i"), 26: _int("!I"),
    700: _float("!f"), 701: _float("!d"),
    2950: _uuid, 3802: lambda v: b"\x01" + v,
    1082: _date, 1083: _time, 1266: _timetz, 1114: _timestamp, 1184: _timestamptz, 1186: _interval,
}
_VIA_PYTHON = {1700}  # numeric
# types whose text output no setting changes (DateStyle, IntervalStyle, extra_float_digits...)
_FIXED_TEXT = {16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 705, 1042, 1043, 1700, 2950, 3802}


class Encoder:
    """Per-session conversion of result values into the formats a client asked for."""

    def __init__(self, conn: psycopg.Connection[Any], type_names: dict[int, str]) -> None:
        self.conn = conn
        self.type_names = type_names
        self._tx = Transformer(conn)

    def converter(self, oid: int) -> Converter:
        """Text value -> binary value for a column of type `oid`."""
        fast = _FAST.get(oid)
        pg = self._via_postgres(oid)
        if fast is not None:
            return _guarded(fast, pg)
        if oid in _VIA_PYTHON:
            load = self._tx.get_loader(oid, pq.Format.TEXT).load
            dump = self.conn.adapters.get_dumper_by_oid(oid, pq.Format.BINARY)(object, self._tx).dump

            def conv(v: bytes) -> bytes:
                return bytes(dump(load(v)))  # type: ignore[arg-type]
            return _guarded(conv, pg)
        return pg

    def text_converter(self, oid: int) -> Converter | None:
        """Exact text (see Protocol.exact_text) -> text in the session's settings, for a column the client
        wants in text in a result run with other settings than its own (None: the text is the same)."""
        return None if oid in _FIXED_TEXT else self._via_postgres(oid, 0)

    def _via_postgres(self, oid: int, fmt: int = 1) -> Converter:
        name = type_name(self.conn, oid, self.type_names).encode()
        query = b"SELECT $1::text::" + name

        def conv(v: bytes) -> bytes:
            res = self.conn.pgconn.exec_params(query, [v], [25], [0], fmt)
            if res.status != pq.ExecStatus.TUPLES_OK:
                msg = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"binary conversion failed"
                raise errors.lookup("22P03")(msg.decode(), sqlstate="22P03")
            out = res.get_value(0, 0)
            return out if out is not None else b""
        return conv

    def python_text(self, value: Any, oid: int) -> bytes | None:
        """A Python value (rows HeliosDB built itself) in text format."""
        if value is None:
            return None
        if isinstance(value, bool):
            return b"t" if value else b"f"
        try:
            return bytes(self._tx.get_dumper(value, PyFormat.TEXT).dump(value))  # type: ignore[arg-type]
        except (psycopg.Error, TypeError, ValueError):
            return str(value).encode()


def _guarded(fast: Converter, slow: Converter) -> Converter:
    def conv(v: bytes) -> bytes:
        try:
            return fast(v)
        except (ValueError, OverflowError, psycopg.DataError):
            return slow(v)
    return conv


def result_formats(requested: Sequence[int], ncols: int) -> list[int]:
    """Bind's result format codes expanded to one per column."""
    if not requested:
        return [0] * ncols
    if len(requested) == 1:
        return [requested[0]] * ncols
    if len(requested) != ncols:
        raise errors.lookup("08P01")(
            f"bind message has {len(requested)} result formats but query has {ncols} columns", sqlstate="08P01")
    return list(requested)


class Rows:
    """A statement's result set, sent in one go (simple query) or in portions (Execute with a limit)."""

    __slots__ = ("description", "_fetch", "ntuples", "pos", "converters")

    def __init__(self, description: bytes, fetch: Callable[[int], Any], ntuples: int,
                 converters: list[Converter | None] | None) -> None:
        self.description = description  # the RowDescription message
        self._fetch = fetch  # row index -> sequence of bytes | None
        self.ntuples = ntuples
        self.pos = 0
        self.converters = converters if converters and any(c is not None for c in converters) else None

    @property
    def done(self) -> bool:
        return self.pos >= self.ntuples

    def encode(self, limit: int, out: Callable[[bytes], None]) -> int:
        """DataRow messages for up to `limit` rows (0: all); returns how many were sent."""
        end = self.ntuples if limit <= 0 else min(self.ntuples, self.pos + limit)
        fetch, convs, data_row = self._fetch, self.converters, codec.data_row
        start = self.pos
        for r in range(start, end):
            values = fetch(r)
            if convs is not None:
                values = [v if v is None or c is None else c(v) for v, c in zip(values, convs, strict=True)]
            out(data_row(values))
        self.pos = end
        return end - start


def from_pgresult(pgr: pq.abc.PGresult, formats: Sequence[int], encoder: Encoder, retext: bool = False) -> Rows:
    """A result's rows in the formats asked for; `retext`: its text was written in other settings than the
    session's (Protocol.exact_text), so columns wanted in text whose output depends on them are written again."""
    nf = pgr.nfields
    fmts = result_formats(formats, nf)
    parts = [struct.pack("!h", nf)]
    convs: list[Converter | None] | None = None
    for c in range(nf):
        oid = pgr.ftype(c)
        parts.append((pgr.fname(c) or b"?column?") + b"\0")
        parts.append(_FIELD.pack(pgr.ftable(c), pgr.ftablecol(c), oid, pgr.fsize(c), pgr.fmod(c), fmts[c]))
        if pgr.fformat(c) == 0 and (fmts[c] == 1 or retext and oid not in _FIXED_TEXT):
            convs = convs or [None] * nf
            convs[c] = encoder.converter(oid) if fmts[c] == 1 else encoder.text_converter(oid)
    description = codec.message(b"T", b"".join(parts))
    get = pgr.get_value
    cols = range(nf)
    if nf == 1:
        def fetch(r: int) -> Any:
            return (get(r, 0),)
    else:
        def fetch(r: int) -> Any:
            return [get(r, c) for c in cols]
    return Rows(description, fetch, pgr.ntuples, convs)


_FIELD = struct.Struct("!IhIhih")


def from_python(description: Any, rows: list[tuple[Any, ...]], formats: Sequence[int], encoder: Encoder,
                retext: bool = False) -> Rows:
    """Rows already turned into Python values (cursor description + tuples); `retext` as in from_pgresult."""
    fmts = result_formats(formats, len(description))
    fields = []
    for i, col in enumerate(description):
        fields.append(codec.Field(col.name.encode(), 0, 0, col.type_code or 25,
                                  col.internal_size if col.internal_size is not None else -1,
                                  getattr(col, "_fmod", -1), fmts[i]))
    oids = [f.type_oid for f in fields]
    text_rows = [[encoder.python_text(v, oids[i]) for i, v in enumerate(row)] for row in rows]
    convs: list[Converter | None] = [
        encoder.converter(f.type_oid) if f.format == 1 else encoder.text_converter(f.type_oid) if retext else None
        for f in fields]
    return Rows(codec.row_description(fields), text_rows.__getitem__, len(text_rows), convs)


def describe_fields(pgr: pq.abc.PGresult, formats: Sequence[int] = ()) -> list[codec.Field]:
    """RowDescription fields of a described statement or portal."""
    n = pgr.nfields
    fmts = result_formats(formats, n) if formats else [pgr.fformat(c) for c in range(n)]
    return [
        codec.Field(pgr.fname(c) or b"?column?", pgr.ftable(c), pgr.ftablecol(c), pgr.ftype(c), pgr.fsize(c),
                    pgr.fmod(c), fmts[c])
        for c in range(pgr.nfields)
    ]
