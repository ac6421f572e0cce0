"""Result sets on the wire: RowDescription fields and DataRow values, text or binary.

Statements run on the storage connection in text format; their raw values
(psycopg's pgresult) go to the client unchanged. A column the client wants in
binary is converted: common types in Python, anything else by PostgreSQL's
own send function (a round trip per row, for exotic types only).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
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


_FAST: dict[int, Converter] = {
    16: _bool, 17: _bytea, 18: _identity, 19: _identity, 25: _identity, 114: _identity, 142: _identity,
    705: _identity, 1042: _identity, 1043: _identity,
    20: _int("!q"), 21: _int("!h"), 23: _int("!i"), 26: _int("!I"),
    700: _float("!f"), 701: _float("!d"),
    2950: _uuid, 3802: lambda v: b"\x01" + v,
}
_VIA_PYTHON = {1700, 1082, 1083, 1114, 1184, 1186}  # numeric, date, time, timestamp(tz), interval


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

    def _via_postgres(self, oid: int) -> Converter:
        name = type_name(self.conn, oid, self.type_names).encode()
        query = b"SELECT $1::text::" + name

        def conv(v: bytes) -> bytes:
            res = self.conn.pgconn.exec_params(query, [v], [25], [0], 1)
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


def from_pgresult(pgr: pq.abc.PGresult, formats: Sequence[int], encoder: Encoder) -> Rows:
    nf = pgr.nfields
    fmts = result_formats(formats, nf)
    parts = [struct.pack("!h", nf)]
    convs: list[Converter | None] | None = None
    for c in range(nf):
        oid = pgr.ftype(c)
        parts.append((pgr.fname(c) or b"?column?") + b"\0")
        parts.append(_FIELD.pack(pgr.ftable(c), pgr.ftablecol(c), oid, pgr.fsize(c), pgr.fmod(c), fmts[c]))
        if fmts[c] == 1 and pgr.fformat(c) == 0:
            convs = convs or [None] * nf
            convs[c] = encoder.converter(oid)
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


def from_python(description: Any, rows: list[tuple[Any, ...]], formats: Sequence[int], encoder: Encoder) -> Rows:
    """Rows already turned into Python values (cursor description + tuples)."""
    fmts = result_formats(formats, len(description))
    fields = []
    for i, col in enumerate(description):
        fields.append(codec.Field(col.name.encode(), 0, 0, col.type_code or 25,
                                  col.internal_size if col.internal_size is not None else -1,
                                  getattr(col, "_fmod", -1), fmts[i]))
    oids = [f.type_oid for f in fields]
    text_rows = [[encoder.python_text(v, oids[i]) for i, v in enumerate(row)] for row in rows]
    convs: list[Converter | None] = [encoder.converter(f.type_oid) if f.format == 1 else None for f in fields]
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
