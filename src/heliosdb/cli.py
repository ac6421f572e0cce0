"""The `heliosdb` command: run SQL with -c / -f, or open the shell."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

if __name__ == "__main__":  # python -m heliosdb.cli: PostgreSQL starts while the rest imports
    from heliosdb import launch

    launch.early_start(sys.argv[1:])

from heliosdb import errors  # noqa: E402
from heliosdb.session import Result, Session  # noqa: E402
from heliosdb.shell import output  # noqa: E402
from heliosdb.storage.instance import DEFAULT_DATABASE  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_CONNECTION_LOST, EXIT_SCRIPT_STOPPED = 0, 1, 2, 3


class _Action(argparse.Action):
    """Keep -c and -f in command-line order, as psql does."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        kind = "c" if option_string in ("-c", "--command") else "f"
        namespace.actions = [*(namespace.actions or []), (kind, values)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heliosdb", description="HeliosDB: a branchable, time-travelling SQL database.",
                                epilog="heliosdb serve [...] runs the PostgreSQL wire protocol endpoint "
                                       "(heliosdb serve --help).")
    p.add_argument("-D", "--data-dir", help="data directory (default: $HELIOSDB_DATA or a per-user directory)")
    p.add_argument("--storage", help="use an existing PostgreSQL server (postgresql://...) instead of a managed one")
    p.add_argument("-d", "--dbname", default=None,
                   help=f"database (default: the one --storage names, else {DEFAULT_DATABASE})")
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
    """The session, the command-line options and variables, and psql's way of printing results.

    What to run (-c, -f, piped input, the prompt) goes through shell.executor.Shell, so SQL, variables and
    meta commands behave the same everywhere."""

    def __init__(self, session: Session, args: argparse.Namespace, out: IO[str] = sys.stdout,
                 err: IO[str] = sys.stderr) -> None:
        self.session = session
        self.args = args
        self.out = out
        self.err = err
        self.variables = dict(v.split("=", 1) if "=" in v else (v, "") for v in args.set)

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
            if not self.args.quiet and (tag := output.returning_tag(result.status)):
                self.out.write(tag + "\n")
        elif result.status and not self.args.quiet:
            self.out.write(result.status + "\n")
        self.out.flush()


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
        from heliosdb.shell.executor import Shell

        # threaded: Ctrl-C sends PostgreSQL a cancel request and the statement fails with 57014, as in psql
        shell = Shell(runner, boxed=False, threaded=True)
        status = EXIT_OK
        for kind, value in args.actions:
            if kind == "c":
                code = EXIT_OK if shell.run_command(value) else EXIT_FAILED
            else:
                code = shell.run_script(value)
            if shell.lost:  # as psql: the server connection was lost
                return EXIT_CONNECTION_LOST
            if shell.cancelled:  # Ctrl-C: psql reports the cancelled statement's error and runs nothing more
                return EXIT_FAILED
            if code != EXIT_OK:
                status = code
                if shell.on_error_stop:
                    break
            if shell.quit:
                break
        return status
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
