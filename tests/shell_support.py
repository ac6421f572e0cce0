"""Helpers for the shell tests: a Shell writing to strings, and golden-file comparison."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from heliosdb.cli import Runner, _parser
from heliosdb.session import Session
from heliosdb.shell.commands import Rows
from heliosdb.shell.executor import Shell

GOLDEN = Path(__file__).parent / "golden" / "shell"
UPDATE = os.environ.get("HELIOSDB_UPDATE_GOLDEN") == "1"

_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d(?::?\d\d)?)?")
_LSN = re.compile(r"\b[0-9A-F]{1,8}/[0-9A-F]{1,8}\b")
_VOLATILE = {"Created": "<time>", "Committed at": "<time>", "Oldest time": "<time>", "Txid": "<xid>",
             "Address": "<address>", "PostgreSQL": "<version>"}


def normalise_value(header: str, value: Any) -> Any:
    if value is None:
        return None
    if header in _VOLATILE:
        return _VOLATILE[header]
    if isinstance(value, str):
        return _LSN.sub("<lsn>", _TIME.sub("<time>", value))
    return value


def normalise_rows(r: Rows) -> Rows:
    rows = []
    for row in r.rows:
        if r.headers == ["Property", "Value"]:
            rows.append((row[0], normalise_value(row[0], row[1])))
        else:
            rows.append(tuple(normalise_value(h, v) for h, v in zip(r.headers, row, strict=False)))
    numeric = r.numeric or None
    if numeric is not None:
        numeric = [n and r.headers[i] not in _VOLATILE for i, n in enumerate(numeric)]
    return Rows(r.headers, rows, numeric, r.title, [normalise_text(f) for f in r.footer], r.count)


def normalise_text(text: str) -> str:
    return _LSN.sub("<lsn>", _TIME.sub("<time>", text))


class GoldenShell(Shell):
    """A boxed (interactive-style) shell whose volatile values are normalised before rendering."""

    def show(self, outcome: Any) -> None:
        if isinstance(outcome, Rows):
            outcome = normalise_rows(outcome)
        super().show(outcome)


def make_shell(session: Session, *, boxed: bool = True, cls: type[Shell] = GoldenShell,
               argv: list[str] | None = None) -> tuple[Shell, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    runner = Runner(session, _parser().parse_args(argv or []), out=out, err=err)
    shell = cls(runner, boxed=boxed, out=out, err=err)
    shell.width = 120
    return shell, out, err


def take(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            raise AssertionError(f"golden file {path.name} was missing and has been written; check it in")
        return
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name}: output differs from {path}\n--- expected\n{expected}\n--- got\n{text}"
