"""What meta command handlers see: the session, the shell's settings and catalog query helpers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    from heliosdb.session import Session


@dataclass
class Settings:
    expanded: str = "off"  # on | off | auto
    timing: bool = False
    format: str = "aligned"  # aligned | csv | json | unaligned
    null: str = "<null>"
    lsn_echo: bool = False
    tuples_only: bool = False
    quiet: bool = False


@dataclass
class ShellContext:
    session: Session
    settings: Settings = field(default_factory=Settings)
    variables: dict[str, str] = field(default_factory=dict)
    output: IO[str] | None = None  # \o target (None: standard output)
    output_name: str | None = None
    last_query: str = ""
    interactive: bool = False
    refresh: Callable[..., None] = lambda full=True: None  # ask the completer to reload (full: every name)

    # -- catalog queries -------------------------------------------------------------------------
    def query(self, text: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows of a catalog query; inside the user's transaction it runs under a savepoint,
        so a failing meta command does not abort the user's work."""
        s = self.session
        if isinstance(text, sql.Composable):
            text = text.as_string(s.conn)
        if s.in_transaction and not s.transaction_failed:
            with s.conn.transaction():
                return s.query(text, params)
        return s.query(text, params)

    def scalar(self, text: str, params: Any = None) -> Any:
        rows = self.query(text, params)
        return rows[0][0] if rows else None

    def ident(self, name: str) -> str:
        return sql.Identifier(name).as_string(self.session.conn)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        s = self.session
        if s.in_transaction and not s.transaction_failed:
            with s.conn.transaction():
                yield
        else:
            yield


def object_name(text: str) -> str:
    """A meta command's name argument: "Quoted" keeps its case, otherwise folded to lower case."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text.lower()


def pattern_regex(pattern: str | None) -> str | None:
    """psql's name patterns: * any text, ? one character, "..." literal; None matches everything."""
    if not pattern:
        return None
    out, quoted = [], False
    for ch in pattern:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "*":
            out.append(".*")
        elif not quoted and ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch if quoted else ch.lower()))
    return "^(" + "".join(out) + ")$"


def human_size(n: int | None) -> str:
    """Bytes as pg_size_pretty prints them."""
    if n is None:
        return ""
    size, unit = float(n), "bytes"
    for u in ("kB", "MB", "GB", "TB"):
        if abs(size) < 10 * 1024:
            break
        size, unit = size / 1024, u
    return f"{int(round(size))} {unit}"
