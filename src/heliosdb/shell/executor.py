"""Running what the user typed: SQL statements and meta commands, and showing what they return.

`Shell` is the same for the interactive prompt, piped input, `heliosdb -c` / `-f` and `\\i` scripts.
Interactive statements run on a worker thread so that Ctrl-C can cancel them
(PostgreSQL cancel) while the shell stays up. Output is box-drawn when the
shell is interactive (`boxed`) and psql-compatible otherwise, so scripts that
pipe into `heliosdb` keep their byte-stable output.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from heliosdb import errors
from heliosdb.shell import (  # noqa: F401 - importing a meta module registers its commands
    meta_basics,
    meta_branches,
    meta_cluster,
    meta_describe,
    meta_storage,
    meta_time,
    meta_views,
    output,
    render,
)
from heliosdb.shell import prompt as prompt_state
from heliosdb.shell.commands import Failure, Prefill, Quit, Rows, RunScript, Text, UsageError, parse
from heliosdb.shell.context import Settings, ShellContext
from heliosdb.sql.classify import Kind, classify, head, is_stdio_copy
from heliosdb.sql.split import Scanner, split_statements, strip_comments

if TYPE_CHECKING:
    from heliosdb.cli import Runner
    from heliosdb.session import Result

_REFRESH_AFTER = ("CREATE", "ALTER", "DROP", "COMMIT", "END", "ROLLBACK", "ABORT", "USE", "MERGE", "COMPLETE",
                  "IMPORT", "REFRESH", "SET")  # may change names: reload the completer's catalog
_NEW_LSN_AFTER = ("INSERT", "UPDATE", "DELETE", "COPY", "TRUNCATE", "FLASHBACK", "WITH")  # new commits only
# Skipped as psql skips them: casts, quoted strings and names, comments, dollar-quoted bodies (function and DO
# bodies keep their text); then a variable reference (groups 1 and 2).
# E'...' strings first: a backslash escapes a quote there (E'it\'s :v' is one string).
_VARIABLE = re.compile(r"""::|(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/"""
                       r"""|:(['"]?)([A-Za-z_]\w*)\1"""
                       r"""|(?<![\w$])\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$""", re.DOTALL)
HELP = """You are using heliosdb, the HeliosDB shell.
Type:  \\? for help with meta commands (branches: \\branches, \\use, \\branch tree; time travel: \\timeline)
       \\h for help with SQL commands (\\h create database branch)
       \\q or Ctrl-D to quit; end statements with ;"""
_MAX_INCLUDE_DEPTH = 16
PROGRESS_AFTER = 1.0  # seconds before a running statement shows its progress line
_BAR = 20  # cells of the progress bar


def progress_line(session: Any, elapsed: float) -> str:
    """The running statement's line: a bar with what it does when it reports progress (merges,
    refreshes), else a spinner; always the elapsed time."""
    spin = _SPINNER[int(elapsed * 10) % len(_SPINNER)]
    state = getattr(session, "progress", None)
    if state is None or state[2] <= 0:
        return f"{spin} running {elapsed:.1f} s (Ctrl-C cancels)"
    what, done, total = state
    filled = min(_BAR, _BAR * done // total)
    return f"{spin} [{'#' * filled}{'.' * (_BAR - filled)}] {done}/{total} {what}, {elapsed:.1f} s (Ctrl-C cancels)"
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def settings_from(args: Any) -> Settings:
    fmt = "csv" if getattr(args, "csv", False) else "unaligned" if getattr(args, "no_align", False) else "aligned"
    return Settings(format=fmt, tuples_only=bool(getattr(args, "tuples_only", False)),
                    quiet=bool(getattr(args, "quiet", False)))


class Shell:
    def __init__(self, runner: Runner, *, boxed: bool, colour: bool = False, threaded: bool = False,
                 out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.runner = runner
        self.session = runner.session
        self.boxed = boxed
        self.colour = colour
        self.threaded = threaded
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.ctx = ShellContext(self.session, settings_from(runner.args), runner.variables, interactive=boxed)
        if not boxed:
            self.ctx.settings.null = ""  # psql's default: NULL prints as nothing
        self.quit = False
        self.failed = False
        self.prefill = ""
        self.warned_open_tx = False
        self.cancelled = False  # Ctrl-C cancelled a statement: psql stops a script or -c list there
        self.lost = False  # the server connection was lost without a terminal to reset it: exit status 2
        self.width: int | None = None  # terminal width for tables (None: ask the terminal)
        self._depth = 0
        self._tx_lsn: str | None = None  # the LSN the open transaction's writes took (\lsn on)

    # -- where text goes ----------------------------------------------------------------------------
    @property
    def stdout(self) -> IO[str]:
        return self.ctx.output or self.out

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def note(self, line: str) -> None:
        """A message line (Time:, LSN:, meta command output): to the terminal, \\o redirects results only (as psql)."""
        self.out.write(line + "\n")
        self.out.flush()

    @property
    def verbosity(self) -> str:
        """psql's VERBOSITY variable (default, verbose, terse, sqlstate): how much of an error to print."""
        value = self.ctx.variables.get("VERBOSITY", "default").lower()
        return value if value in render.VERBOSITY else "default"

    def write_err(self, text: str) -> None:
        self.err.write(text)
        self.err.flush()

    def _opts(self) -> render.RenderOptions:
        st = self.ctx.settings
        width = self.width
        if width is None and self.ctx.output is None:
            width = shutil.get_terminal_size((0, 0)).columns or None
        return render.RenderOptions(st.format, st.expanded, st.null, st.tuples_only,
                                    self.colour and self.ctx.output is None, width)

    # -- input --------------------------------------------------------------------------------------
    def run_command(self, text: str) -> bool:
        """A -c argument, as psql runs it: one backslash command, or SQL sent as written (psql does not
        interpolate variables there); several statements run as one implicit transaction. COPY FROM STDIN
        reads standard input. False when it failed."""
        self.failed = False
        if text.lstrip().startswith("\\"):
            self.run_meta(text.strip())
            return not self.failed
        stmts = split_statements(text)
        s = self.session
        wrap = len(stmts) > 1 and not s.in_transaction and not any(classify(x) is Kind.TRANSACTION for x in stmts)
        if wrap:
            s.execute("BEGIN")
        for stmt in stmts:
            if not self.run_sql(stmt, None, interpolate=False):
                if wrap and not self.lost:
                    s.execute("ROLLBACK")
                return False
        if wrap:
            s.execute("COMMIT")
        return True

    def run_script(self, path: str) -> int:
        """A -f argument (- is standard input): 0, 1 when the file cannot be read, 3 when ON_ERROR_STOP stopped it."""
        try:
            stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            self.write_err(f"heliosdb: error: {path}: {exc.strerror}\n")
            return 1
        try:
            return 0 if self.run_lines(iter(stream.readline, "")) else 3
        finally:
            if stream is not sys.stdin:
                stream.close()

    def run_lines(self, lines: Iterable[str], copy_data: bool = True) -> bool:
        """Run lines as psql reads a script: meta commands on lines of their own, statements up to ';'.
        COPY ... FROM STDIN reads the lines that follow (copy_data) or the terminal.
        False when ON_ERROR_STOP stopped it."""
        it: Iterator[str] = iter(lines)
        data = it if copy_data else None
        buf = ""
        for line in it:
            if self.quit or self._stopped_by_cancel:
                return True
            if not strip_comments(buf).strip() and line.lstrip().startswith("\\"):
                buf = ""
                self.failed = False  # ON_ERROR_STOP looks at this command only
                self.run_meta(line.strip())
                if self.failed and self.on_error_stop:
                    return False
                continue
            if self.boxed and not buf.strip() and line.strip().lower() in ("quit", "exit", "quit;", "exit;"):
                # psql knows quit/exit only at its prompt; in a script they are SQL (a syntax error)
                self.request_quit()
                continue
            if not buf.strip() and line.strip().lower() == "help" and self.boxed:
                self.show(Text(HELP))
                continue
            buf += line if line.endswith("\n") else line + "\n"
            stmts, buf, _ = Scanner.scan(buf)
            for stmt in stmts:
                if not self.run_sql(stmt, data) and self.on_error_stop and not self.lost:
                    return False
                if self.lost or self._stopped_by_cancel:
                    return True
            if buf.strip().startswith("\\"):  # "SELECT 1; \x": a meta command after the statement
                meta, buf = buf.strip(), ""
                self.run_meta(meta)
        if strip_comments(buf).strip() and not self.quit:
            if not self.run_sql(buf.strip(), data) and self.on_error_stop:
                return False
        return True

    @property
    def _stopped_by_cancel(self) -> bool:
        """Ctrl-C cancelled a statement of a script (-f, piped input, \\i): as psql, the script stops there."""
        return self.cancelled and (not self.boxed or self._depth > 0)

    @property
    def on_error_stop(self) -> bool:
        return self.ctx.variables.get("ON_ERROR_STOP", "").lower() in ("1", "on", "true")

    def request_quit(self) -> None:
        """\\q, quit, Ctrl-D: inside an open transaction the first request only warns."""
        s = self.session
        if self.boxed and s.in_transaction and not s.connection_lost and not self.warned_open_tx:
            self.warned_open_tx = True
            self.write_err("WARNING:  a transaction is open; quitting rolls it back. "
                           "Quit again (\\q or Ctrl-D) to roll back and leave, or COMMIT first.\n")
            return
        self.quit = True

    # -- meta commands ------------------------------------------------------------------------------
    def run_meta(self, line: str) -> None:
        try:
            parsed = parse(self.interpolate(line, meta=True))  # psql replaces variables in meta-command arguments too
        except UsageError as exc:
            self.failed = True
            self._show_failure(str(exc))
            return
        try:
            outcome = parsed.command.handler(self.ctx, parsed.args)
        except errors.Error as exc:
            self.failed = True
            if not self._connection_lost():
                self.write_err(render.error_text(exc, None, self.colour, self.verbosity))
            return
        except KeyboardInterrupt:
            self.write_err("Cancelled.\n")
            return
        except Exception as exc:  # noqa: BLE001 - a broken meta command must not end the shell
            self.failed = True
            if not self._connection_lost():
                self._show_failure(f"{parsed.command.name}: internal error: {type(exc).__name__}: {exc}")
            return
        self.show(outcome)

    def show(self, outcome: Any) -> None:
        if outcome is None:
            return
        if isinstance(outcome, list):
            for i, o in enumerate(outcome):
                if i and isinstance(o, Rows) and self.boxed:
                    self.write("\n")
                self.show(o)
            return
        if isinstance(outcome, Rows):
            self.write(self._rows_text(outcome))
        elif isinstance(outcome, Text):
            if outcome.error:
                self.write_err(outcome.text + "\n")
            elif outcome.text:
                self.note(outcome.text)
        elif isinstance(outcome, Failure):
            self.failed = True
            self._show_failure(outcome.message)
        elif isinstance(outcome, Quit):
            self.request_quit()
        elif isinstance(outcome, RunScript):
            self._include(outcome)
        elif isinstance(outcome, Prefill):
            self.prefill = outcome.text

    def _show_failure(self, message: str) -> None:
        self.write_err((f"\x1b[31m{message}\x1b[0m" if self.colour else message) + "\n")

    def _rows_text(self, r: Rows) -> str:
        if self.boxed:
            return render.render(r.headers, r.rows, self._opts(), numeric=r.numeric, title=r.title, footer=r.footer,
                                 count=r.count)
        numeric = r.numeric or render.numeric_flags(r.rows, len(r.headers))
        cells = [tuple(render.cell_text(v) if isinstance(v, list) else v for v in row) for row in r.rows]
        text = output.aligned(output.Table(r.headers, cells, numeric), self.ctx.settings.tuples_only)
        if not r.count and text.endswith(")\n"):
            text = text[: text.rstrip("\n").rfind("\n") + 1]
        title = f"{r.title}\n" if r.title and not self.ctx.settings.tuples_only else ""
        extra = "".join(f"{ln}\n" for ln in r.footer) if not self.ctx.settings.tuples_only else ""
        return title + text + extra + "\n"

    def _include(self, script: RunScript) -> None:
        if self._depth >= _MAX_INCLUDE_DEPTH:
            self._show_failure(f"{script.source}: \\i nested too deeply")
            return
        self._depth += 1
        try:
            self.run_lines(script.text.splitlines(keepends=True))
        finally:
            self._depth -= 1
        self.ctx.refresh()

    # -- SQL ----------------------------------------------------------------------------------------
    def interpolate(self, stmt: str, *, meta: bool = False) -> str:
        """psql variables: :name, :'name' (a literal), :"name" (an identifier); unknown names stay.
        meta: a meta command's line, whose arguments are split and unquoted afterwards: a value is put in
        single quotes there, so that it comes out as it is (O'Brien stays O'Brien), not read again as quoting."""
        variables = self.ctx.variables
        if ":" not in stmt or not variables:
            return stmt

        def sub(m: re.Match[str]) -> str:
            name = m.group(2)
            if name is None or name not in variables:
                return m.group(0)
            value, q = variables[name], m.group(1)
            if q == "'":
                value = "'" + value.replace("'", "''") + "'"
            elif q == '"':
                return '"' + value.replace('"', '""') + '"'
            return "'" + value.replace("'", "''") + "'" if meta else value

        return _VARIABLE.sub(sub, stmt)

    def run_sql(self, stmt: str, data: Iterator[str] | None = None, *, interpolate: bool = True) -> bool:
        """Run one statement and show its result; False when it failed."""
        if interpolate:
            stmt = self.interpolate(stmt)
        self.ctx.last_query = stmt
        self.warned_open_tx = False
        s = self.session
        branch_before = s.branch.id
        lsn_before = self._lsn() if self.ctx.settings.lsn_echo else None
        started = time.perf_counter()
        try:
            if is_stdio_copy(stmt):
                self._copy(stmt, data)
                result, rows = None, None
            else:
                result, rows = self._execute(stmt)
        except errors.Error as exc:
            self.failed = True
            self._after(stmt, started, branch_before, None)
            # piped input and scripts: no statement line, as before (psql's would name the file and line)
            self.write_err(render.error_text(exc, stmt if self.boxed else None, self.colour, self.verbosity))
            self._connection_lost()
            return False
        if result is not None:
            self._print_result(result, rows)
        self._after(stmt, started, branch_before, lsn_before)
        return True

    def _connection_lost(self) -> bool:
        """After a failure: whether it lost the server connection. As psql: interactive, reconnect to the
        same branch; otherwise stop (exit status 2)."""
        s = self.session
        if not s.connection_lost:
            return False
        self.write_err("server closed the connection unexpectedly\n"
                       "\tThis probably means the server terminated abnormally\n"
                       "\tbefore or while processing the request.\n")
        if not self.boxed:
            self.write_err("connection to server was lost\n")
            self.lost = self.quit = True
            return True
        as_of = s.as_of
        try:
            s.reconnect()
        except errors.Error as exc:
            self.write_err(f"The connection to the server was lost. Attempting reset: Failed.\n{exc.message}\n")
            return True
        self.write_err("The connection to the server was lost. Attempting reset: Succeeded.\n")
        if as_of is not None:
            self.write_err(f"The temporal context (AS OF LSN {prompt_state.short_lsn(as_of.lsn)}) is gone: "
                           f"the new session reads branch {s.branch.name} as of now.\n")
        self.ctx.refresh()
        return True

    def _after(self, stmt: str, started: float, branch_before: int, lsn_before: str | None) -> None:
        if self.ctx.settings.timing:
            self.note(render.timing_text((time.perf_counter() - started) * 1000))
        if self.session.connection_lost:
            return
        if lsn_before is not None and not self.session.transaction_failed:
            now = self._lsn()
            if now is not None:
                note = ""
                if self.session.in_transaction:
                    if now != lsn_before:
                        note, self._tx_lsn = " (this transaction)", now
                elif self._tx_lsn is not None:  # the transaction ended: committed with its LSN, or rolled back
                    note = " (committed)" if now == self._tx_lsn else ""
                    self._tx_lsn = None
                elif now != lsn_before:
                    note = " (committed)"
                self.note(f"LSN: {now}{note}")
        words = head(stmt).split()
        if (words and words[0] in _REFRESH_AFTER) or self.session.branch.id != branch_before:
            self.ctx.refresh()
        elif words and words[0] in _NEW_LSN_AFTER and not self.session.in_transaction:
            self.ctx.refresh(False)

    def _lsn(self) -> str | None:
        if self.session.transaction_failed:
            return None
        try:
            value = self.ctx.scalar("SELECT heliosdb.current_lsn()::text")
        except errors.Error:
            return None
        return None if value is None else str(value)

    def _execute(self, stmt: str) -> tuple[Result, list[tuple[Any, ...]] | None]:
        def work() -> tuple[Result, list[tuple[Any, ...]] | None]:
            s = self.session
            text_results = s.text_results
            if self.ctx.settings.format == "json":
                s.text_results = False  # JSON wants typed values (numbers, booleans, json, arrays), not text
            try:
                r = s.execute(stmt)
                fetch = r.description is not None and (self.boxed or not self._as_cli())
                return r, (r.fetchall() if fetch else None)
            finally:
                s.text_results = text_results

        if not self.threaded:
            return work()
        box: dict[str, Any] = {}
        # An Event, not Thread.join(): a join() interrupted by Ctrl-C can mark the thread finished while it
        # still runs (CPython), and the result would be read before it exists.
        done = threading.Event()

        def target() -> None:
            try:
                box["ok"] = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                box["error"] = exc
            finally:
                done.set()

        t = threading.Thread(target=target, name="heliosdb-statement", daemon=True)
        started = time.monotonic()
        t.start()
        shown = False
        while not done.is_set():
            try:
                done.wait(0.1)
                elapsed = time.monotonic() - started
                if elapsed >= PROGRESS_AFTER and not done.is_set() and self.err.isatty():
                    self.write_err(f"\r{progress_line(self.session, elapsed)}\x1b[K")
                    shown = True
            except KeyboardInterrupt:
                self.session.cancel()
                self.cancelled = True
                self.write_err(("\r\x1b[K" if self.err.isatty() else "") + "Cancel request sent\n")
                shown = False
        if shown:
            self.write_err("\r\x1b[K")
        if "error" in box:
            raise box["error"]
        return box["ok"]  # type: ignore[no-any-return]

    def _as_cli(self) -> bool:
        """Whether results print through Runner.print_result, psql's defaults (non-interactive, the options
        of the command line, no \\x or \\pset changes)."""
        st, initial = self.ctx.settings, settings_from(self.runner.args)
        # \x auto needs a terminal to measure: psql never expands output that is not one
        return not self.boxed and st.expanded != "on" and not st.null and (st.format, st.tuples_only, st.quiet) == (
            initial.format, initial.tuples_only, initial.quiet)

    def _print_result(self, result: Result, rows: list[tuple[Any, ...]] | None) -> None:
        st = self.ctx.settings
        if self._as_cli():  # the very code -c and -f print with: byte-identical by construction
            saved, self.runner.out = self.runner.out, self.stdout
            try:
                self.runner.print_result(result)
            finally:
                self.runner.out = saved
            return
        for notice in result.notices:
            self.write_err(notice + "\n")
        if result.description is not None:
            assert rows is not None
            headers = [d[0] for d in result.description]
            types = render.types_of(result.description)
            if self.boxed:
                self.write(render.render(headers, rows, self._opts(), types=types))
            else:
                self.write(self._plain(headers, rows, types))
            if not st.quiet and (tag := output.returning_tag(result.status)):
                self.write(tag + "\n")
        elif result.status and not st.quiet:
            self.write(result.status + "\n")

    def _plain(self, headers: list[str], rows: list[tuple[Any, ...]], types: list[int | None]) -> str:
        """psql's output for the current \\pset settings (format, expanded, null, tuples only)."""
        st = self.ctx.settings
        table = output.Table(headers, rows, [t in output._NUMERIC_OIDS for t in types])  # noqa: SLF001
        if st.format == "csv":
            return output.as_csv(table, st.tuples_only, st.null)
        if st.format == "json":
            return render.as_json(headers, rows, [t in (114, 3802) for t in types])
        if st.format == "unaligned":
            if st.expanded == "on":
                return output.expanded_unaligned(table, st.tuples_only, st.null)
            return output.unaligned(table, st.tuples_only, null=st.null)
        if st.expanded == "on":
            return output.expanded(table, st.tuples_only, st.null)
        return output.aligned(table, st.tuples_only, st.null) + "\n"

    def _copy(self, stmt: str, data: Iterator[str] | None) -> None:
        with self.session.copy(stmt) as (copy, direction):
            if direction == "out":
                for chunk in copy:
                    self.stdout.write(bytes(chunk).decode())
            else:
                if self.boxed and data is None:
                    self.write_err("Enter data to be copied followed by a newline.\n"
                                   "End with a backslash and a period on a line by itself, or an EOF signal.\n")
                for line in data if data is not None else _stdin_lines(self.boxed):
                    if line.rstrip("\r\n") == "\\.":
                        break
                    copy.write(line if line.endswith("\n") else line + "\n")
        if not self.ctx.settings.quiet and direction == "in":
            self.write(self.session.last_status + "\n")
        self.stdout.flush()


def _stdin_lines(prompted: bool) -> Iterator[str]:
    while True:
        try:
            line = input(">> ") if prompted else sys.stdin.readline()
        except EOFError:
            return
        if not prompted and line == "":
            return
        yield line


