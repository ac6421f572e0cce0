"""The `heliosdb` command: run SQL with -c / -f, or open the shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

if __name__ == "__main__":  # python -m heliosdb.cli: PostgreSQL starts while the rest imports
    from heliosdb import launch

    launch.early_start(sys.argv[1:])

from heliosdb import errors  # noqa: E402
from heliosdb.session import Result, Session  # noqa: E402
from heliosdb.shell import output  # noqa: E402
from heliosdb.sql.classify import Kind, classify  # noqa: E402
from heliosdb.sql.split import Scanner, strip_comments  # noqa: E402
from heliosdb.storage.instance import DEFAULT_DATABASE  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_SCRIPT_STOPPED = 0, 1, 3


class _Action(argparse.Action):
    """Keep -c and -f in command-line order, as psql does."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        kind = "c" if option_string in ("-c", "--command") else "f"
        namespace.actions = [*(namespace.actions or []), (kind, values)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heliosdb", description="HeliosDB: a branchable, time-travelling SQL database.")
    p.add_argument("-D", "--data-dir", help="data directory (default: $HELIOSDB_DATA or a per-user directory)")
    p.add_argument("--storage", help="use an existing PostgreSQL server (postgresql://...) instead of a managed one")
    p.add_argument("-d", "--dbname", default=DEFAULT_DATABASE, help="database (default: heliosdb)")
    p.add_argument("-b", "--branch", default="main", help="branch to start on (default: main)")
    p.add_argument("-c", "--command", action=_Action, dest="actions", help="run SQL (repeatable)")
    p.add_argument("-f", "--file", action=_Action, dest="actions", help="run a script file (- reads stdin)")
    p.add_argument("--csv", action="store_true", help="CSV output with a header row")
    p.add_argument("-A", "--no-align", action="store_true", help="unaligned output")
    p.add_argument("-t", "--tuples-only", action="store_true", help="print rows only")
    p.add_argument("-v", "--set", action="append", default=[], metavar="NAME=VALUE", help="set a variable")
    p.add_argument("-q", "--quiet", action="store_true", help="no command tags")
    return p


class Runner:
    """Runs statements on a session and prints results the way psql does."""

    def __init__(self, session: Session, args: argparse.Namespace, out: IO[str] = sys.stdout,
                 err: IO[str] = sys.stderr) -> None:
        self.session = session
        self.args = args
        self.out = out
        self.err = err
        self.variables = dict(v.split("=", 1) if "=" in v else (v, "") for v in args.set)

    @property
    def on_error_stop(self) -> bool:
        return self.variables.get("ON_ERROR_STOP", "").lower() in ("1", "on", "true")

    def print_result(self, result: Result) -> None:
        for notice in result.notices:
            self.err.write(notice + "\n")
        if result.description is not None:
            table = output.table_from(result.description, result.fetchall())
            if self.args.csv:
                text = output.as_csv(table, self.args.tuples_only)
            elif self.args.no_align:
                text = output.unaligned(table, self.args.tuples_only)
            else:
                text = output.aligned(table, self.args.tuples_only) + "\n"
            self.out.write(text)
        elif result.status and not self.args.quiet:
            self.out.write(result.status + "\n")
        self.out.flush()

    def print_error(self, exc: errors.Error) -> None:
        code = f"{exc.sqlstate}: " if exc.sqlstate else ""
        self.err.write(f"ERROR:  {code}{exc.message}\n")
        if exc.detail:
            self.err.write(f"DETAIL:  {exc.detail}\n")
        if exc.hint:
            self.err.write(f"HINT:  {exc.hint}\n")
        self.err.flush()

    def run_statement(self, stmt: str, data: Iterator[str] | None) -> bool:
        """Run one statement; False when it failed."""
        if stmt is _META_FAILED:
            return False
        try:
            if classify(stmt) is Kind.COPY and _is_stdio_copy(stmt):
                self._copy(stmt, data)
            else:
                self.print_result(self.session.execute(stmt))
            return True
        except errors.Error as exc:
            self.print_error(exc)
            return False

    def _copy(self, stmt: str, data: Iterator[str] | None) -> None:
        with self.session.copy(stmt) as (copy, direction):
            if direction == "out":
                for chunk in copy:
                    self.out.write(bytes(chunk).decode())
            else:
                for line in data or iter(sys.stdin.readline, ""):
                    if line.rstrip("\r\n") == "\\.":
                        break
                    copy.write(line)
        if not self.args.quiet and direction == "in":
            self.out.write(self.session.last_status + "\n")

    def run_text(self, text: str) -> int:
        """A -c argument: like psql, several statements in one -c run as one implicit transaction."""
        if text.lstrip().startswith("\\"):
            return EXIT_OK if self.meta(text.strip()) else EXIT_FAILED
        lines = iter(text.splitlines(keepends=True))
        stmts = list(_statements(lines))
        wrap = len(stmts) > 1 and not self.session.in_transaction and not any(
            classify(s) is Kind.TRANSACTION for s in stmts)
        if wrap:
            self.session.execute("BEGIN")
        for stmt in stmts:
            if not self.run_statement(stmt, lines):
                if wrap:
                    self.session.execute("ROLLBACK")
                return EXIT_FAILED
        if wrap:
            self.session.execute("COMMIT")
        return EXIT_OK

    def meta(self, line: str) -> bool:
        """The meta commands a script may use (the interactive shell has many more)."""
        parts = line[1:].split(None, 2)
        cmd = parts[0] if parts else ""
        if cmd == "set" and len(parts) >= 2:
            self.variables[parts[1]] = parts[2] if len(parts) > 2 else ""
        elif cmd == "unset" and len(parts) == 2:
            self.variables.pop(parts[1], None)
        elif cmd == "echo":
            self.out.write(line[1:].partition(" ")[2] + "\n")
        elif cmd == "q":
            raise _Quit
        else:
            self.err.write(f"invalid command \\{cmd}\n")
            return False
        return True

    def run_file(self, path: str) -> int:
        try:
            stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
        except OSError as exc:
            self.err.write(f"heliosdb: error: {path}: {exc.strerror}\n")
            return EXIT_FAILED
        try:
            lines = iter(stream.readline, "")
            for stmt in _statements(lines, self.meta):
                if stmt is _META_FAILED or not self.run_statement(stmt, lines):
                    if self.on_error_stop:
                        return EXIT_SCRIPT_STOPPED
        except _Quit:
            return EXIT_OK
        finally:
            if stream is not sys.stdin:
                stream.close()
        return EXIT_OK


def _is_stdio_copy(stmt: str) -> bool:
    words = strip_comments(stmt).upper().split()
    return "STDIN" in words or "STDOUT" in words


class _Quit(Exception):
    """\\q in a script."""


_META_FAILED = "\x00meta-failed"


def _statements(lines: Iterable[str], meta: Any = None) -> Iterator[str]:
    """Statements from a stream of lines; COPY data lines are left for the caller to read."""
    buf = ""
    for line in lines:
        if not buf.strip() and line.lstrip().startswith("\\"):
            if meta is not None and not meta(line.strip()):
                yield _META_FAILED
            buf = ""
            continue
        buf += line
        stmts, rest, _pending = Scanner.scan(buf)
        buf = rest
        yield from stmts
    if strip_comments(buf).strip():
        yield buf.strip()


def _start_early(data_dir: str | None) -> None:
    """Interactive start: bring PostgreSQL up while the shell's modules import (first prompt sooner).

    The entry point (heliosdb.launch) usually started it already, before this module imported.
    """
    from heliosdb import launch

    launch.early_start(["-D", data_dir] if data_dir else [])  # no-op when already started
    from heliosdb.shell.repl import preload

    preload()
    launch.wait_early()


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - Session() starts it again and reports the error properly
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from heliosdb.server import main as serve

        return serve(argv[1:])
    args = _parser().parse_args(argv)
    if not args.actions and not args.storage:
        _start_early(args.data_dir)
    try:
        session = Session(data_dir=args.data_dir, storage=args.storage, database=args.dbname, branch=args.branch)
    except errors.Error as exc:
        sys.stderr.write(f"heliosdb: error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"HINT:  {exc.hint}\n")
        return 2
    try:
        session.text_results = True  # print values exactly as PostgreSQL writes them
        runner = Runner(session, args)
        if not args.actions:
            from heliosdb.shell.repl import repl

            return repl(runner)
        status = EXIT_OK
        for kind, value in args.actions:
            try:
                code = runner.run_text(value) if kind == "c" else runner.run_file(value)
            except _Quit:
                break
            if code != EXIT_OK:
                status = code
                if runner.on_error_stop:
                    break
        return status
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
