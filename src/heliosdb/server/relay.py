"""Relay statements straight to PostgreSQL on the session's storage socket.

For a statement Session.execute would hand to PostgreSQL unchanged (a plain
read, see Protocol.is_plain_read; on main also plain transaction commands and
INSERT/UPDATE/DELETE) the client's messages go to PostgreSQL as they are and
PostgreSQL's answer, through ReadyForQuery, goes back to the client as it is:
no PGresult is built and no message re-encoded, which is most of the cost of a
short statement in Python. Relayed are one-statement Queries and
extended-protocol batches (see Protocol.relay_quick and
ExtendedProtocol.relay_batch); a Query seen again with other numbers may go as
a prepared statement (autoparam.py), its extra answers left out (Hider).

libpq is idle between commands and reads its socket only when asked to, so a
whole request/response cycle done beside it leaves it as it was, except for
its idea of the transaction status, which the connection brings up to date
before psycopg runs anything (Protocol.storage_for_psycopg). The connection
does not relay once the session may receive asynchronous messages between
commands (LISTEN), and never over TLS.

The socket is in blocking mode while relaying (switched back before psycopg
uses it again): a blocking read waits for the answer without a poll() per
statement, which measurably shortens the path through three processes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from heliosdb.errors import internal_schema, user_context

_LEN = struct.Struct("!i")
_READY = 0x5A  # 'Z'
_ERROR = 0x45  # 'E'
_PASSING = b"NS"  # NoticeResponse, ParameterStatus


class RelayError(Exception):
    """The storage connection broke or sent something unexpected. `relayed`: PostgreSQL's own error
    (FATAL 57P01, 25P03...) went to the client before it closed the connection."""

    def __init__(self, message: str, relayed: bool = False) -> None:
        super().__init__(message)
        self.relayed = relayed


def frame(kind: bytes, payload: bytes) -> bytes:
    """One protocol message: type byte, length, payload."""
    return kind + _LEN.pack(len(payload) + 4) + payload


def relay_messages(fd: int, data: bytes, send: Callable[[bytes], None], schema: bytes = b"public") -> int:
    """Send `data` (whole messages, the last a Query or a Sync) on `fd` (blocking mode), pass every
    answer message to `send` (whole messages at a time); the ReadyForQuery status byte. `schema`:
    the session's branch's, which errors name for a table in a storage schema (scrub_errors)."""
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        lost: str | None = str(exc)  # PostgreSQL may have said why before closing: read on
    else:
        lost = None
    buf, told = b"", False  # told: an ErrorResponse went to the client
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError as exc:
            data, lost = b"", lost or str(exc)
        if not data:  # closed: typically after PostgreSQL's FATAL ErrorResponse (passed on below)
            raise RelayError(lost or "the storage server closed the connection", relayed=told)
        buf = buf + data if buf else data
        pos, n, failed = 0, len(buf), False
        while n - pos >= 5:
            end = pos + 1 + _LEN.unpack_from(buf, pos + 1)[0]
            if end > n:
                break
            if buf[pos] == _READY:
                if end != n:
                    raise RelayError("unexpected data after ReadyForQuery")
                send(scrub_errors(buf, schema) if failed else buf)
                return buf[pos + 5]
            failed = failed or buf[pos] == _ERROR
            pos = end
        if pos:
            send(scrub_errors(buf[:pos], schema) if failed else buf[:pos])
            buf, told = buf[pos:], told or failed


def scrub_errors(chunk: bytes, schema: bytes = b"public") -> bytes:
    """The messages with HeliosDB's internals taken out of each ErrorResponse, as errors.diag_fields
    does for the session's errors: a storage schema (hdb_t<N>: the relation in it has the table's
    name; the user sees it in `schema`, the branch's) and the lines of context inside HeliosDB's own
    functions and triggers."""
    out, pos = [], 0
    while pos < len(chunk):
        end = pos + 1 + _LEN.unpack_from(chunk, pos + 1)[0]
        if chunk[pos] != _ERROR:
            out.append(chunk[pos:end])
        else:
            fields = []
            for field in chunk[pos + 5 : end - 1].split(b"\0")[:-1]:
                code, value = field[:1], field[1:]
                if code == b"s" and internal_schema(value.decode("utf-8", "replace")):
                    value = schema
                if code == b"W":
                    value = user_context(value.decode("utf-8", "replace")).encode("utf-8")
                    if not value:
                        continue
                fields.append(code + value + b"\0")
            out.append(frame(b"E", b"".join(fields) + b"\0"))
        pos = end
    return b"".join(out)


class Hider:
    """A `send` for relay_messages that leaves out the answers to messages put in front of the
    client's: answers of the given kinds, up to the first answer of another kind (notices and
    parameter status reports pass and do not end it). `hidden` lists what was left out, `shown`
    the kind of the first answer passed on (other than those), so the caller can tell whether a
    Parse succeeded.

    `until`: a kind among `kinds` that must come before anything reaches the client. Answers
    before it are held back; an error before it sets `failed` and nothing at all is passed on
    (the caller then does something else, see Protocol._relay_prepared).
    """

    __slots__ = ("send", "kinds", "hidden", "shown", "active", "until", "held", "failed")

    def __init__(self, send: Callable[[bytes], None], kinds: bytes, until: int | None = None) -> None:
        self.send = send
        self.kinds = kinds
        self.hidden = bytearray()
        self.shown = b""
        self.active = True
        self.until = until
        self.held = b""
        self.failed = False

    def __call__(self, chunk: bytes) -> None:
        if not self.active:
            if not self.failed:
                self.send(chunk)
            return
        pos, n, kinds, keep = 0, len(chunk), self.kinds, self.held
        while pos < n:
            kind = chunk[pos]
            end = pos + 1 + _LEN.unpack_from(chunk, pos + 1)[0]
            if kind in kinds:
                self.hidden.append(kind)
                if kind == self.until:
                    self.until = None
            elif kind in _PASSING:
                keep += chunk[pos:end]
            else:
                self.active = False
                self.shown = chunk[pos : pos + 1]
                if self.until is not None:
                    self.failed, keep = True, b""  # an error before `until`: nothing goes out
                else:
                    keep += chunk[pos:] if pos else chunk
                break
            pos = end
        if self.until is not None and not self.failed:
            self.held = keep
        elif keep:
            self.held = b""
            self.send(keep)

