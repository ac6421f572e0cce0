"""Automatic parameterization of relayed simple-protocol statements.

A client that sends the same statement again and again with only its numbers
changed (pgbench, most ORMs with inlined literals) makes PostgreSQL parse,
rewrite (a HeliosDB table is a view) and plan it every time. The endpoint
turns such a Query into a named prepared statement on the storage connection
and runs it with Bind/Execute, as SQL Server's simple parameterization and
Oracle's CURSOR_SHARING=FORCE do. The client still speaks the simple protocol
and gets the answer PostgreSQL would have sent for its Query.

What is replaced keeps the statement's meaning exactly:

- only integer literals of 2 to 18 digits right after a comparison operator
  (`=`, `<`, `>`, also ends of `<=`, `<>`, `!=`, `->`) or after a `+`/`-` that
  follows whitespace; never a literal inside a quoted string or identifier,
  nor in a position where PostgreSQL reads a number as something else (ORDER
  BY 1, varchar(20): those follow no such operator);
- each becomes a parameter of the literal's own type (int4, or int8 when it
  does not fit), which PostgreSQL resolves exactly as the constant;
- the placeholder is padded to the literal's length, so error positions in
  the text still point where the client's text has them;
- texts with `$` (parameters, dollar quotes) or a backslash (escape strings)
  are left alone.
"""

from __future__ import annotations

import re
import struct

from heliosdb.server.relay import frame

_INT4_MAX = 2147483647
_INT4, _INT8 = struct.pack("!I", 23), struct.pack("!I", 20)
# A number after an operator (group 1); the second form also skips quoted strings and identifiers
# (no group), for texts that have quotes.
_NUMBER = re.compile(rb"[=<>+-]\s*(\d{2,18})(?![\w.$'\"])")
_QUOTED_OR_NUMBER = re.compile(rb"'[^']*'|\"[^\"]*\"|[=<>+-]\s*(\d{2,18})(?![\w.$'\"])")
_SPECIAL = re.compile(rb"['\"$\\]")
_ESCAPES = re.compile(rb"[$\\]")
_SPACE = b" \t\n\r\f\v"
_H = struct.Struct("!h")
_I = struct.Struct("!i")
_DESCRIBE_EXECUTE_SYNC = frame(b"D", b"P\0") + frame(b"E", b"\0\0\0\0\0") + frame(b"S", b"")


def parameterize(query: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(text with $n placeholders, the literals, their type OIDs packed) for a statement's text
    (without its terminating NUL); None when there is nothing to replace."""
    special = _SPECIAL.search(query)
    if special is None:
        scan = _NUMBER
    elif _ESCAPES.search(query, special.start()) is None:
        scan = _QUOTED_OR_NUMBER
    else:
        return None
    values: list[bytes] = []
    types: list[bytes] = []
    out: list[bytes] = []
    pos = 0
    for m in scan.finditer(query):
        start = m.start(1)
        if start < 0:
            continue  # a quoted string or identifier
        op = m.start()
        if query[op] in b"+-" and (op == 0 or query[op - 1] not in _SPACE):
            continue  # 1e-10, x-1: part of a number, or not clearly a binary/unary operator
        digits = m.group(1)
        placeholder = b"$%d" % (len(values) + 1)
        if len(placeholder) > len(digits):
            continue
        out.append(query[pos:start])
        out.append(placeholder.ljust(len(digits)))
        pos = m.end(1)
        values.append(digits)
        types.append(_INT4 if len(digits) < 10 or int(digits) <= _INT4_MAX else _INT8)
    if not values:
        return None
    out.append(query[pos:])
    return b"".join(out), values, b"".join(types)


def parse_message(name: bytes, text: bytes, types: bytes) -> bytes:
    """Parse of `text` as the named statement `name`, with its parameter types."""
    return frame(b"P", name + b"\0" + text + b"\0" + _H.pack(len(types) // 4) + types)


def run_messages(name: bytes, values: list[bytes]) -> bytes:
    """Bind of the named statement to the unnamed portal (text values, text results), Describe of
    the portal, Execute of all rows, Sync."""
    parts = [b"\0", name, b"\0\0\0", _H.pack(len(values))]
    for v in values:
        parts.append(_I.pack(len(v)))
        parts.append(v)
    parts.append(b"\0\0")
    return frame(b"B", b"".join(parts)) + _DESCRIBE_EXECUTE_SYNC


class AutoStatements:
    """The prepared statements one connection made from its clients' Queries, by parameterized text.

    A text becomes a statement the second time it is seen (a one-off statement costs PostgreSQL no
    more than before). At most `limit` statements live at once: the oldest made is closed first.
    """

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.made: dict[bytes, list] = {}  # key -> [storage name, session_runs when made]
        self.seen: set[bytes] = set()
        self._seq = 0

    def clear(self) -> None:
        self.made.clear()
        self.seen.clear()

    def name_for(self, key: bytes) -> tuple[bytes | None, bytes | None]:
        """(the statement's name, the name of one to close first) for a parameterized text; a name
        of None: not yet (first sight)."""
        entry = self.made.get(key)
        if entry is not None:
            return entry[0], None
        if key not in self.seen:
            if len(self.seen) >= 4 * self.limit:
                self.seen.clear()
            self.seen.add(key)
            return None, None
        evict = None
        if len(self.made) >= self.limit:
            evict = self.made.pop(next(iter(self.made)))[0]
        self._seq += 1
        name = b"_hdb_a%d" % self._seq
        self.made[key] = [name, -1]
        return name, evict
