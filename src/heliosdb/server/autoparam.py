"""Automatic parameterization of relayed simple-protocol statements.

A client that sends the same statement again and again with only its numbers
changed (pgbench, most ORMs with inlined literals) makes PostgreSQL parse,
rewrite (a HeliosDB table is a view) and plan it every time. The endpoint
turns such a Query into a named prepared statement on the storage connection
and runs it with Bind/Execute, as SQL Server's simple parameterization and
Oracle's CURSOR_SHARING=FORCE do. The client still speaks the simple protocol
and gets the answer PostgreSQL would have sent for its Query.

What is replaced keeps the statement's meaning:

- only integer literals of 2 to 18 digits right after `=`, `<` or `>` (also
  the ends of `<=`, `<>`, `!=`, `->`); never a literal inside a quoted string
  or identifier, never after a `+` or `-` (PostgreSQL folds a unary minus into
  the constant: `ORDER BY -10` is a position, `-2147483648` an int4), never
  where PostgreSQL reads a number as something else (ORDER BY 1, varchar(20):
  no comparison comes before those);
- each becomes a parameter of the literal's own type (int4, or int8 when it
  does not fit), which PostgreSQL resolves exactly as the constant;
- the placeholder is padded to the literal's length, so error positions in
  the text still point where the client's text has them;
- texts with `$` (parameters, dollar quotes), a backslash (escape strings) or
  an unterminated quote are left alone.

Only outside a transaction. Whatever PostgreSQL refuses before running the
statement (a text that does not parse with parameters, a plan that needs a
constant, such as ON CONFLICT on a partial index, a cached plan whose result
type DDL elsewhere changed) is not passed on: the client's Query runs as it
is, and that text is not parameterized again (Protocol._relay_prepared).
"""

from __future__ import annotations

import re
import struct

from heliosdb.server.relay import frame

_INT4_MAX = 2147483647
_INT4, _INT8 = struct.pack("!I", 23), struct.pack("!I", 20)
# A number after an operator (captured, for split); quoted strings and identifiers (captured, for split).
_NUMBER = re.compile(rb"([=<>]\s*)(\d{2,18})(?![\w.$'\"])")
_QUOTED = re.compile(rb"('[^']*'|\"[^\"]*\")")
_SPECIAL = re.compile(rb"['\"$\\]")
_ESCAPES = re.compile(rb"[$\\]")
_H = struct.Struct("!h")
_I = struct.Struct("!i")
_DESCRIBE_EXECUTE_SYNC = frame(b"D", b"P\0") + frame(b"E", b"\0\0\0\0\0") + frame(b"S", b"")


def parameterize(query: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(text with $n placeholders, the literals, their type OIDs packed) for a statement's text
    (without its terminating NUL); None when there is nothing to replace."""
    special = _SPECIAL.search(query)
    if special is None:
        segments = [query]
    elif _ESCAPES.search(query, special.start()) is None and not (query.count(b"'") | query.count(b'"')) & 1:
        segments = _QUOTED.split(query)  # outside quotes at even indexes, quoted at odd ones
    else:
        return None  # parameters, dollar quotes, escape strings, an unterminated quote
    values: list[bytes] = []
    types = b""
    out: list[bytes] = []
    for j, segment in enumerate(segments):
        parts = _NUMBER.split(segment) if not j & 1 else None
        if parts is None or len(parts) == 1:
            out.append(segment)
            continue
        out.append(parts[0])
        for i in range(1, len(parts), 3):  # parts: text, (operator, number, text)...
            digits = parts[i + 1]
            out.append(parts[i])
            placeholder = b"$%d" % (len(values) + 1)
            if len(placeholder) > len(digits):
                out.append(digits)
            else:
                out.append(placeholder.ljust(len(digits)))
                values.append(digits)
                types += _INT4 if len(digits) < 10 or int(digits) <= _INT4_MAX else _INT8
            out.append(parts[i + 2])
    if not values:
        return None
    return b"".join(out), values, types


class AutoStatement:
    """One statement made on the storage connection from a parameterized text."""

    __slots__ = ("name", "text", "types", "select", "made", "_bind_head")

    def __init__(self, name: bytes, text: bytes, types: bytes, select: bool) -> None:
        self.name = name
        self.text = text
        self.types = types
        self.select = select  # a SELECT (else a write, relayed only where writes pass through)
        self.made = -1  # Protocol.session_runs when it was made; -1: not made
        self._bind_head = b"\0" + name + b"\0\0\0" + _H.pack(len(types) // 4)

    def parse_message(self) -> bytes:
        return frame(b"P", self.name + b"\0" + self.text + b"\0" + _H.pack(len(self.types) // 4) + self.types)

    def run_messages(self, values: list[bytes]) -> bytes:
        """Bind to the unnamed portal (text values, text results), Describe of the portal, Execute
        of all rows, Sync."""
        body = self._bind_head
        for v in values:
            body += _I.pack(len(v)) + v
        return b"B" + _I.pack(len(body) + 6) + body + b"\0\0" + _DESCRIBE_EXECUTE_SYNC


class AutoStatements:
    """The prepared statements one connection made from its clients' Queries, by parameterized text
    (with its parameter types).

    A text becomes a statement the second time it is seen (a one-off statement costs PostgreSQL no
    more than before). At most `limit` statements live at once: the oldest made is closed first.
    A text PostgreSQL refused as a statement is not made again.
    """

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.made: dict[bytes, AutoStatement] = {}
        self._seen: set[bytes] = set()
        self._refused: set[bytes] = set()
        self._closing: list[bytes] = []  # names to close on the storage connection
        self._seq = 0

    def clear(self) -> None:
        self.made.clear()
        self._seen.clear()
        self._closing.clear()

    def add(self, key: bytes, text: bytes, types: bytes, select: bool) -> AutoStatement | None:
        """The statement for a text that passed the relay checks; none the first time it is seen."""
        if key not in self._seen:
            if len(self._seen) >= 4 * self.limit:
                self._seen.clear()
            self._seen.add(key)
            return None
        if key in self._refused:
            return None
        if len(self.made) >= self.limit:
            self._closing.append(self.made.pop(next(iter(self.made))).name)
        self._seq += 1
        stmt = self.made[key] = AutoStatement(b"_hdb_a%d" % self._seq, text, types, select)
        return stmt

    def refuse(self, stmt: AutoStatement) -> None:
        """PostgreSQL refused to run the text as a statement: forget it, never make it again."""
        key = stmt.text + stmt.types
        self.made.pop(key, None)
        if len(self._refused) >= 4 * self.limit:
            self._refused.clear()
        self._refused.add(key)
        if stmt.made >= 0:
            self._closing.append(stmt.name)

    def take_closing(self) -> list[bytes]:
        """The statements to close before the next one runs (evicted or refused ones)."""
        names, self._closing = self._closing, []
        return names
