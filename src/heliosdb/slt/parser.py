"""Parse sqllogictest scripts (the validation format of SQLite's sqllogictest).

A script is a sequence of records separated by blank lines:

    statement ok|error          SQL lines up to the next blank line
    query <types> <sort> [label] SQL lines, a line ``----``, then the expected
                                 values, one per line, or ``N values hashing to <md5>``
    hash-threshold N            compare results of more than N values by hash
    halt                        stop reading the script

Any record may be preceded by ``skipif <engine>`` / ``onlyif <engine>`` lines
(with an optional ``# comment``); lines starting with ``#`` between records are
comments. The parser is pure: no database, no I/O beyond reading the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENGINE = "postgresql"
TYPE_LETTERS = frozenset("ITR")
SORT_MODES = ("nosort", "rowsort", "valuesort")
HASH_RE = re.compile(r"^(\d+) values hashing to ([0-9a-f]{32})$")

SortMode = Literal["nosort", "rowsort", "valuesort"]


class SltParseError(ValueError):
    """A malformed record; carries the file and line where it starts."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Condition:
    kind: Literal["skipif", "onlyif"]
    engine: str


@dataclass(frozen=True)
class HashedResult:
    """An expected result given as ``N values hashing to <md5>``."""

    count: int
    md5: str

    def __str__(self) -> str:
        return f"{self.count} values hashing to {self.md5}"


@dataclass(frozen=True)
class Statement:
    line: int
    sql: str
    expect_error: bool
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Query:
    line: int
    sql: str
    types: str
    sort: SortMode
    label: str | None
    expected: tuple[str, ...] | HashedResult
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class HashThreshold:
    line: int
    value: int
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Halt:
    line: int
    conditions: tuple[Condition, ...] = ()


Record = Statement | Query | HashThreshold | Halt


@dataclass(frozen=True)
class Script:
    path: str
    records: tuple[Record, ...]


def applies(conditions: tuple[Condition, ...], engine: str = ENGINE) -> bool:
    """Whether a record guarded by `conditions` runs on `engine`."""
    for cond in conditions:
        if cond.kind == "skipif" and cond.engine == engine:
            return False
        if cond.kind == "onlyif" and cond.engine != engine:
            return False
    return True


def active_records(script: Script, engine: str = ENGINE) -> list[Record]:
    """The records that run on `engine`, up to the first applicable ``halt``."""
    out: list[Record] = []
    for rec in script.records:
        if not applies(rec.conditions, engine):
            continue
        if isinstance(rec, Halt):
            break
        out.append(rec)
    return out


def _tokens(line: str) -> list[str]:
    """Whitespace-separated words of a directive line, without a trailing ``# comment``."""
    words = line.split()
    for i, word in enumerate(words):
        if word.startswith("#"):
            return words[:i]
    return words


def _parse_expected(lines: list[str]) -> tuple[str, ...] | HashedResult:
    if len(lines) == 1:
        m = HASH_RE.match(lines[0])
        if m:
            return HashedResult(int(m.group(1)), m.group(2))
    return tuple(lines)


def parse(text: str, path: str = "<string>") -> Script:
    """Parse a whole script; raises SltParseError on a malformed record."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    records: list[Record] = []
    conditions: list[Condition] = []
    i, n = 0, len(lines)

    def block(start: int, stop_at_dashes: bool) -> tuple[list[str], int]:
        """Lines from `start` up to a blank line (or ``----`` when asked); returns them and the stop index."""
        out: list[str] = []
        j = start
        while j < n and lines[j].strip() != "":
            if stop_at_dashes and lines[j] == "----":
                break
            out.append(lines[j])
            j += 1
        return out, j

    while i < n:
        raw = lines[i]
        if raw.strip() == "" or raw.lstrip().startswith("#"):
            if raw.strip() == "":
                conditions = []  # a blank line ends a record: stray conditions guard nothing
            i += 1
            continue
        lineno = i + 1
        words = _tokens(raw)
        head = words[0] if words else ""
        conds = tuple(conditions)
        if head in ("skipif", "onlyif"):
            if len(words) < 2:
                raise SltParseError(path, lineno, f"{head} needs an engine name")
            conditions.append(Condition(head, words[1]))  # type: ignore[arg-type]
            i += 1
            continue
        conditions = []
        if head == "statement":
            if len(words) < 2 or words[1] not in ("ok", "error"):
                raise SltParseError(path, lineno, "expected 'statement ok' or 'statement error'")
            body, i = block(i + 1, stop_at_dashes=False)
            if not body:
                raise SltParseError(path, lineno, "statement without SQL")
            records.append(Statement(lineno, "\n".join(body), words[1] == "error", conds))
        elif head == "query":
            if len(words) < 2 or not words[1] or set(words[1]) - TYPE_LETTERS:
                raise SltParseError(path, lineno, "query needs a type string of I, R and T")
            sort = words[2] if len(words) > 2 else "nosort"
            if sort not in SORT_MODES:
                raise SltParseError(path, lineno, f"unknown sort mode {sort!r}")
            label = words[3] if len(words) > 3 else None
            body, i = block(i + 1, stop_at_dashes=True)
            if not body:
                raise SltParseError(path, lineno, "query without SQL")
            expected: tuple[str, ...] | HashedResult = ()
            if i < n and lines[i] == "----":
                values, i = block(i + 1, stop_at_dashes=False)
                expected = _parse_expected(values)
            records.append(Query(lineno, "\n".join(body), words[1], sort, label, expected, conds))  # type: ignore[arg-type]
        elif head == "hash-threshold":
            if len(words) < 2 or not words[1].isdigit():
                raise SltParseError(path, lineno, "hash-threshold needs a number")
            records.append(HashThreshold(lineno, int(words[1]), conds))
            i += 1
        elif head == "halt":
            records.append(Halt(lineno, conds))
            i += 1
        else:
            raise SltParseError(path, lineno, f"unknown record type {head!r}")
    return Script(path, tuple(records))


def parse_file(path: str | Path) -> Script:
    p = Path(path)
    return parse(p.read_text(encoding="utf-8", errors="replace"), str(p))
