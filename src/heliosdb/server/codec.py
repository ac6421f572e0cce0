"""PostgreSQL v3 wire protocol: message framing, decoding and encoding, with no I/O.

Frontend messages are read from a byte buffer (`read_startup`, `Framer`);
backend messages are built as bytes by the `encode_*` / module-level helpers.
Anything malformed raises ProtocolError (SQLSTATE 08P01), which the connection
answers with a FATAL ErrorResponse before closing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_PACKET = 10_000
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_HDR = struct.Struct("!ci")
_NULL = b"\xff\xff\xff\xff"


class ProtocolError(Exception):
    """A malformed message or a protocol violation (SQLSTATE 08P01 unless said otherwise)."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


# -- reading ------------------------------------------------------------------------
class Reader:
    """Cursor over one message's payload; every read checks bounds."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("invalid message format")

    def byte(self) -> int:
        self._need(1)
        self.pos += 1
        return self.data[self.pos - 1]

    def int16(self) -> int:
        self._need(2)
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def uint16(self) -> int:
        self._need(2)
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def int32(self) -> int:
        self._need(4)
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def bytes(self, n: int) -> bytes:
        self._need(n)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError("invalid string in message")
        s = self.data[self.pos : end]
        self.pos = end + 1
        return s

    def text(self) -> str:
        try:
            return self.cstring().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid byte sequence for encoding \"UTF8\"", "22021") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError("invalid message format")


@dataclass
class Startup:
    """The first packet of a connection."""

    code: int
    params: dict[str, str] = field(default_factory=dict)
    pid: int = 0  # CancelRequest
    secret: int = 0


def startup_length(buf: bytes) -> int | None:
    """The length of the startup packet at the start of buf (None: need more bytes)."""
    if len(buf) < 4:
        return None
    (n,) = _I32.unpack_from(buf, 0)
    if n < 8 or n > MAX_STARTUP_PACKET:
        raise ProtocolError("invalid length of startup packet")
    return int(n)


def parse_startup(packet: bytes) -> Startup:
    """Decode a whole startup packet (length word included)."""
    r = Reader(packet)
    r.int32()
    code = r.int32()
    if code == CANCEL_REQUEST:
        if len(packet) != 16:
            raise ProtocolError("invalid length of cancel request")
        return Startup(code, pid=r.int32(), secret=r.int32())
    if code in (SSL_REQUEST, GSSENC_REQUEST):
        r.end()
        return Startup(code)
    major = code >> 16
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{code & 0xFFFF}: server supports 3.0 to 3.0", "0A000"
        )
    params: dict[str, str] = {}
    while True:
        key = r.text()
        if not key:
            break
        params[key] = r.text()
    r.end()
    return Startup(code, params)


class Framer:
    """Splits a byte stream into (type, payload) messages after the startup phase."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.buf = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> tuple[bytes, bytes] | None:
        """The next complete message, or None when more bytes are needed."""
        buf = self.buf
        if len(buf) < 5:
            return None
        kind, n = _HDR.unpack_from(buf, 0)
        if n < 4:
            raise ProtocolError("invalid message length")
        if n - 4 > self.max_message:
            raise ProtocolError(f"message of {n} bytes exceeds the limit of {self.max_message}", "54000")
        if len(buf) < n + 1:
            return None
        payload = bytes(buf[5 : n + 1])
        del buf[: n + 1]
        return kind, payload

    def has_message(self) -> bool:
        if len(self.buf) < 5:
            return False
        _kind, n = _HDR.unpack_from(self.buf, 0)
        return len(self.buf) >= n + 1

    def _complete(self) -> Iterator[tuple[bytes, int, int]]:
        """(type, start, end) of each complete message buffered, from the start."""
        pos, buf = 0, self.buf
        while len(buf) - pos >= 5:
            kind, n = _HDR.unpack_from(buf, pos)
            if n < 4 or n - 4 > self.max_message or len(buf) - pos < n + 1:
                return
            yield kind, pos, pos + n + 1
            pos += n + 1

    def peek(self, n: int) -> list[tuple[bytes, bytes]]:
        """Up to n complete messages from the start of the buffer, not consumed."""
        return [(kind, bytes(self.buf[start + 5 : end])) for kind, start, end in islice(self._complete(), n)]

    def drop(self, n: int) -> None:
        """Consume n complete messages (seen with peek)."""
        ends = [end for _kind, _start, end in islice(self._complete(), n)]
        del self.buf[: ends[-1] if ends else 0]

    def peek_kinds(self) -> list[bytes]:
        """Types of the complete messages buffered (for look-ahead)."""
        return [kind for kind, _start, _end in self._complete()]


# -- decoded frontend messages -----------------------------------------------------------
@dataclass
class Parse:
    name: str
    query: str
    param_types: list[int]


@dataclass
class Bind:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None]
    result_formats: list[int]


def decode_parse(payload: bytes, encoding: str = "utf-8") -> Parse:
    r = Reader(payload)
    name = r.text()
    query = _decode(r.cstring(), encoding)
    n = r.int16()
    if n < 0:
        raise ProtocolError("invalid number of parameter types")
    types = [r.int32() & 0xFFFFFFFF for _ in range(n)]
    r.end()
    return Parse(name, query, types)


def decode_bind(payload: bytes) -> Bind:
    r = Reader(payload)
    portal = r.text()
    statement = r.text()
    nf = r.int16()
    if nf < 0:
        raise ProtocolError("invalid number of parameter formats")
    formats = [r.int16() for _ in range(nf)]
    np_ = r.int16()
    if np_ < 0:
        raise ProtocolError("invalid number of parameters")
    params: list[bytes | None] = []
    for _ in range(np_):
        n = r.int32()
        params.append(None if n == -1 else r.bytes(n))
    nr = r.int16()
    if nr < 0:
        raise ProtocolError("invalid number of result formats")
    rformats = [r.int16() for _ in range(nr)]
    r.end()
    for f in (*formats, *rformats):
        if f not in (0, 1):
            raise ProtocolError(f"unsupported format code: {f}")
    if nf not in (0, 1, np_):
        raise ProtocolError(f"bind message has {nf} parameter formats but {np_} parameters")
    return Bind(portal, statement, formats, params, rformats)


def decode_target(payload: bytes) -> tuple[str, str]:
    """Describe / Close: ('S' | 'P', name)."""
    r = Reader(payload)
    kind = chr(r.byte())
    name = r.text()
    r.end()
    if kind not in ("S", "P"):
        raise ProtocolError(f"invalid DESCRIBE/CLOSE message subtype {kind!r}")
    return kind, name


def decode_execute(payload: bytes) -> tuple[str, int]:
    r = Reader(payload)
    portal = r.text()
    max_rows = r.int32()
    r.end()
    return portal, max_rows


def decode_query(payload: bytes, encoding: str = "utf-8") -> str:
    r = Reader(payload)
    q = _decode(r.cstring(), encoding)
    r.end()
    return q


def decode_string(payload: bytes) -> str:
    r = Reader(payload)
    s = r.cstring().decode("utf-8", "replace")
    r.end()
    return s


class BadText(Exception):
    """A statement's text is not valid in the client encoding: an error of that statement only (22021)."""

    def __init__(self, message: str, sqlstate: str = "22021") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        # PostgreSQL names the bytes of the character that does not decode
        lead = raw[exc.start]
        width = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
        shown = " ".join(f"0x{b:02x}" for b in raw[exc.start : exc.start + width])
        raise BadText(f'invalid byte sequence for encoding "UTF8": {shown}') from None


def decode_sasl_initial(payload: bytes) -> tuple[str, bytes]:
    r = Reader(payload)
    mech = r.text()
    n = r.int32()
    data = b"" if n == -1 else r.bytes(n)
    r.end()
    return mech, data


# -- writing ------------------------------------------------------------------------------
def message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + _I32.pack(len(payload) + 4) + payload


def cstr(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return b.replace(b"\0", b"") + b"\0"


def auth_ok() -> bytes:
    return message(b"R", _I32.pack(0))


def auth_sasl(mechanisms: list[str]) -> bytes:
    return message(b"R", _I32.pack(10) + b"".join(cstr(m) for m in mechanisms) + b"\0")


def auth_sasl_continue(data: bytes) -> bytes:
    return message(b"R", _I32.pack(11) + data)


def auth_sasl_final(data: bytes) -> bytes:
    return message(b"R", _I32.pack(12) + data)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", _I32.pack(pid) + _I32.pack(secret))


def negotiate_protocol_version(minor: int, unknown: list[str]) -> bytes:
    return message(b"v", _I32.pack(minor) + _I32.pack(len(unknown)) + b"".join(cstr(u) for u in unknown))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


EMPTY_QUERY = message(b"I")
PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
PORTAL_SUSPENDED = message(b"s")
COPY_DONE = message(b"c")


def parameter_description(oids: list[int]) -> bytes:
    return message(b"t", _I16.pack(len(oids)) + b"".join(struct.pack("!I", o & 0xFFFFFFFF) for o in oids))


@dataclass
class Field:
    name: bytes
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25
    size: int = -1
    modifier: int = -1
    format: int = 0


_FIELD = struct.Struct("!IhIhih")


def row_description(fields: list[Field]) -> bytes:
    parts = [_I16.pack(len(fields))]
    for f in fields:
        parts.append(cstr(f.name))
        parts.append(_FIELD.pack(f.table_oid & 0xFFFFFFFF, f.column, f.type_oid & 0xFFFFFFFF, f.size,
                                 f.modifier, f.format))
    return message(b"T", b"".join(parts))


def data_row(values: list[bytes | None] | tuple[bytes | None, ...]) -> bytes:
    parts = [_I16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_NULL)
        else:
            parts.append(_I32.pack(len(v)))
            parts.append(v)
    body = b"".join(parts)
    return b"D" + _I32.pack(len(body) + 4) + body


def copy_response(kind: bytes, overall: int, formats: list[int]) -> bytes:
    """CopyInResponse (G) / CopyOutResponse (H)."""
    return message(kind, bytes([overall]) + _I16.pack(len(formats)) + b"".join(_I16.pack(f) for f in formats))


def copy_data(data: bytes) -> bytes:
    return b"d" + _I32.pack(len(data) + 4) + data


def notification(pid: int, channel: str, payload: str) -> bytes:
    return message(b"A", _I32.pack(pid) + cstr(channel) + cstr(payload))


# ErrorResponse / NoticeResponse field codes
_FIELDS = (
    ("severity", b"S"), ("severity_nonlocalized", b"V"), ("sqlstate", b"C"), ("message", b"M"),
    ("detail", b"D"), ("hint", b"H"), ("position", b"P"), ("internal_position", b"p"),
    ("internal_query", b"q"), ("where", b"W"), ("schema", b"s"), ("table", b"t"), ("column", b"c"),
    ("datatype", b"d"), ("constraint", b"n"), ("file", b"F"), ("line", b"L"), ("routine", b"R"),
)


def error_fields(kind: bytes, fields: dict[str, object]) -> bytes:
    """ErrorResponse (E) or NoticeResponse (N) from named fields (None values are left out)."""
    parts = []
    for name, code in _FIELDS:
        value = fields.get(name)
        if value is None or value == "":
            continue
        parts.append(code + cstr(str(value)))
    return message(kind, b"".join(parts) + b"\0")


def error_response(severity: str, sqlstate: str, msg: str, **extra: object) -> bytes:
    return error_fields(b"E", {"severity": severity, "severity_nonlocalized": severity, "sqlstate": sqlstate,
                               "message": msg, **extra})
