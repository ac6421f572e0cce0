"""The interactive loop: read statements line by line, run them, print results."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from heliosdb.sql.split import Scanner

if TYPE_CHECKING:
    from heliosdb.cli import Runner


def prompt(runner: Runner, continuation: bool) -> str:
    s = runner.session
    state = "!" if s.transaction_failed else "*" if s.in_transaction else ""
    mark = "-" if continuation else "="
    return f"{s.database}[{s.branch.name}]{state}{mark}> "


def repl(runner: Runner) -> int:
    """A plain line-reading shell (\\q quits)."""
    buf = ""
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input(prompt(runner, bool(buf.strip()))) if interactive else sys.stdin.readline()
        except EOFError:
            break
        except KeyboardInterrupt:
            buf = ""
            print()
            continue
        if not interactive and line == "":
            break
        if not buf.strip() and line.strip() in ("\\q", "quit", "exit"):
            break
        buf += line + ("\n" if interactive else "")
        stmts, rest, _ = Scanner.scan(buf)
        buf = rest
        for stmt in stmts:
            runner.run_statement(stmt, None)
    return 0
