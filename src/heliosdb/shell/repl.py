"""The interactive heliosdb shell (prompt_toolkit) and the plain loop for piped input.

`repl(runner)` is what `heliosdb` runs without -c/-f:
- standard input and output are terminals: the full shell (state-aware prompt,
  multi-line editing, history, highlighting, completion, Ctrl-C cancels the
  running statement, box-drawn output);
- otherwise: statements and meta commands are read line by line and printed
  in psql's format, byte for byte what `heliosdb -f -` prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heliosdb.shell import prompt as prompt_state
from heliosdb.shell.executor import Shell
from heliosdb.sql.split import Scanner, strip_comments

if TYPE_CHECKING:
    from heliosdb.cli import Runner

EXIT_OK, EXIT_CANCELLED, EXIT_CONNECTION_LOST, EXIT_SCRIPT_STOPPED = 0, 1, 2, 3


def history_path() -> Path:
    env = os.environ.get("HELIOSDB_HISTORY")
    return Path(env) if env else Path.home() / ".heliosdb_history"


def use_colour() -> bool:
    return "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb"


def buffer_complete(text: str) -> bool:
    """Whether Enter should run the buffer: a meta command, quit/exit, or statements ending at ';'
    (outside quotes, comments, dollar quotes and parentheses)."""
    s = text.strip()
    if not s or s.startswith("\\") or s.lower() in ("quit", "exit", "help"):
        return True
    stmts, rest, _ = Scanner.scan(text)
    rest = strip_comments(rest).strip()
    return bool(stmts) and (not rest or (rest.startswith("\\") and "\n" not in rest))


def preload() -> None:
    """Import what the interactive shell needs (prompt_toolkit, pygments, the completer).

    Safe to call from a thread while something else is waiting, e.g. while the
    managed PostgreSQL starts: the imports then cost nothing at the first prompt."""
    import prompt_toolkit.shortcuts  # noqa: F401
    from prompt_toolkit.lexers import PygmentsLexer  # noqa: F401

    from heliosdb.shell import completer, executor, highlight  # noqa: F401


def repl(runner: Runner) -> int:
    if sys.stdin.isatty() and sys.stdout.isatty():
        return Interactive(runner).run()
    # threaded: Ctrl-C cancels the running statement (57014) and stops, as -f - does
    shell = Shell(runner, boxed=False, threaded=True)
    lines = iter(sys.stdin.readline, "")
    ok = shell.run_lines(lines)
    if shell.lost:
        return EXIT_CONNECTION_LOST
    if shell.cancelled:
        return EXIT_CANCELLED
    return EXIT_OK if ok else EXIT_SCRIPT_STOPPED


class Interactive:
    """The prompt_toolkit front end around a Shell."""

    def __init__(self, runner: Runner) -> None:
        self.colour = use_colour()
        self.shell = Shell(runner, boxed=True, colour=self.colour, threaded=True)
        self.session = runner.session
        self.nodes = 1

    def _start_background(self) -> None:
        from heliosdb.shell.completer import HeliosCompleter, Metadata, Refresher

        s = self.session
        self.completer = HeliosCompleter(variables=self.shell.ctx.variables)

        def done(md: Metadata) -> None:
            self.nodes = md.nodes

        self.refresher = Refresher(self.completer, s.new_connection,
                                   lambda: (s.branch.id, s.branch.user_schema), done)
        self.shell.ctx.refresh = self.refresher.refresh
        self.refresher.refresh()
        if hasattr(s, "start_background"):
            s.start_background()  # history GC and the materialized-view scheduler

    def _state(self) -> prompt_state.PromptState:
        return prompt_state.state_of(self.session, self.nodes > 1)

    def _prompt_session(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.filters import completion_is_selected
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.lexers import PygmentsLexer
        from prompt_toolkit.output import ColorDepth
        from prompt_toolkit.styles import Style

        kb = KeyBindings()

        @kb.add("enter", filter=completion_is_selected)
        def _close_menu(event: Any) -> None:
            event.current_buffer.complete_state = None

        @kb.add("enter", filter=~completion_is_selected)
        def _enter(event: Any) -> None:
            buf = event.current_buffer
            if buffer_complete(buf.text) and buf.document.is_cursor_at_the_end:
                buf.validate_and_handle()
            else:
                buf.insert_text("\n")

        history: Any
        path = history_path()
        try:
            with path.open("a", encoding="utf-8"):  # a directory or an unwritable file fails here, not at every prompt
                pass
            history = FileHistory(str(path))
        except OSError as exc:
            self.shell.write_err(f"heliosdb: warning: cannot use history file {path}: {exc.strerror}; "
                                 "history is kept in memory for this session\n")
            history = InMemoryHistory()
        kwargs: dict[str, Any] = {}
        if self.colour:
            from heliosdb.shell.highlight import STYLE, HeliosLexer

            kwargs["lexer"] = PygmentsLexer(HeliosLexer)
            kwargs["style"] = Style.from_dict({**{k: v for k, v in prompt_state.STYLE.items() if v}, **STYLE})
        else:
            kwargs["color_depth"] = ColorDepth.MONOCHROME
        return PromptSession(
            history=history, completer=self.completer, complete_in_thread=True, complete_while_typing=True,
            multiline=True, key_bindings=kb, enable_open_in_editor=True, include_default_pygments_style=False,
            prompt_continuation=self._continuation,
            **kwargs,
        )

    def _continuation(self, width: int, line: int, wrap: int) -> Any:
        if wrap:  # a line wider than the terminal goes on in the next row as it is, as in psql
            return []
        return prompt_state.fragments(self._state(), True)

    def _message(self) -> Any:
        frags = prompt_state.fragments(self._state())
        return frags if self.colour else "".join(t for _, t in frags)

    def run(self) -> int:
        self._start_background()
        ps = self._prompt_session()
        shell = self.shell
        try:
            while not shell.quit:
                try:
                    text = ps.prompt(self._message, default=shell.prefill)
                except KeyboardInterrupt:
                    shell.prefill = ""
                    continue
                except EOFError:
                    shell.request_quit()
                    continue
                shell.prefill = ""
                shell.cancelled = False  # a Ctrl-C stops the \i script it interrupts, not later input
                try:
                    shell.run_lines(text.splitlines(keepends=True), copy_data=False)
                except KeyboardInterrupt:
                    shell.write_err("Cancelled.\n")
        finally:
            self.refresher.close()
            if shell.ctx.output is not None:
                shell.ctx.output.close()
        return EXIT_OK
