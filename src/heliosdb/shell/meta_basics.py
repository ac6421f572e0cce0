"""psql basics: help, quitting, display settings, output redirection, scripts, the editor, variables."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

from heliosdb.shell import sqlhelp
from heliosdb.shell.commands import (
    REGISTRY,
    Arg,
    ArgKind,
    Failure,
    Outcome,
    Prefill,
    Quit,
    RunScript,
    Text,
    command,
    split_words,
)
from heliosdb.shell.context import ShellContext
from heliosdb.sql.split import Scanner, strip_comments

G, B, V = "General", "Query buffer and output", "Variables"
_ONOFF = ("on", "off")


def _switch(value: str | None, current: bool) -> bool:
    return (not current) if value is None else value == "on"


# -- general ---------------------------------------------------------------------------------------
@command("\\?", "show help on meta commands", group=G,
         args=[Arg("command", ArgKind.TEXT, optional=True, rest=True)])  # rest: "\\? branch info"
def help_commands(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    wanted = args.get("command")
    if wanted:
        wanted = " ".join(wanted.split())
        w = wanted if wanted.startswith("\\") else "\\" + wanted
        cmds = [c for c in REGISTRY.unique() if c.name == w or c.name.split()[0] == w or w in c.aliases]
        if not cmds:
            return Failure(f"\\?: no meta command {w}")
        return Text("\n".join(f"{c.syntax}\n    {c.description}" for c in cmds))
    width = max(len(c.syntax) for c in REGISTRY.unique()) + 2
    lines: list[str] = []
    for group, cmds in REGISTRY.grouped():
        lines.append(group)
        for c in cmds:
            alias = f" (also {', '.join(c.aliases)})" if c.aliases else ""
            lines.append(f"  {c.syntax.ljust(width)}{c.description}{alias}")
        lines.append("")
    return Text("\n".join(lines).rstrip("\n"))


@command("\\h", "syntax help on SQL statements (HeliosDB's included)", group=G,
         args=[Arg("statement", ArgKind.STATEMENT, optional=True, rest=True)], aliases=["\\help"])
def help_sql(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    wanted = args.get("statement")
    if not wanted or wanted == "*":
        names = sqlhelp.topic_names()
        width = max(len(n) for n in names) + 2
        cols = 3
        rows = (len(names) + cols - 1) // cols
        lines = ["Available help:"]
        for r in range(rows):
            parts = [names[c * rows + r].ljust(width) for c in range(cols) if c * rows + r < len(names)]
            lines.append("  " + "".join(parts).rstrip())
        return Text("\n".join(lines))
    topics = sqlhelp.find(wanted)
    if not topics:
        return Failure(f'No help available for "{wanted}". Try \\h with no arguments to see available help.')
    out = []
    for t in topics:
        origin = " (HeliosDB)" if t.helios else ""
        out.append(f"Command:     {t.name}{origin}\nDescription: {t.description}\nSyntax:\n{t.syntax}\n")
    return Text("\n".join(out).rstrip("\n"))


@command("\\q", "quit heliosdb", group=G, aliases=["\\quit"])
def quit_(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Quit()


@command("\\conninfo", "display information about the current connection", group=G)
def conninfo(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    s = ctx.session
    info = s.conn.info
    where = f'via socket in "{info.host}"' if info.host.startswith("/") else f'on host "{info.host}"'
    if s.instance is not None:
        where += f' (managed instance, data directory "{s.instance.data_dir}")'
    b = s.branch
    lines = [
        f'You are connected to database "{s.database}" as user "{info.user}" {where} at port "{info.port}".',
        f'Branch "{b.name}" on storage node "{b.storage_node}", compute endpoint "{b.compute_endpoint}"; '
        f"PostgreSQL {info.parameter_status('server_version') or info.server_version}.",
    ]
    if s.as_of is not None:
        from heliosdb.shell.prompt import short_lsn

        lines.append(f'Reading branch "{s.as_of.branch.name}" as of LSN {short_lsn(s.as_of.lsn)}.')
    return Text("\n".join(lines))


# -- display ---------------------------------------------------------------------------------------
@command("\\x", "toggle expanded output (auto: when a table is wider than the terminal)", group=B,
         args=[Arg("mode", ArgKind.CHOICE, optional=True, choices=("on", "off", "auto"))])
def expanded(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    mode = args.get("mode")
    if mode is None:
        mode = "off" if ctx.settings.expanded == "on" else "on"
    ctx.settings.expanded = mode
    return Text("Expanded display is used automatically." if mode == "auto" else f"Expanded display is {mode}.")


@command("\\timing", "time every statement", group=B, args=[Arg("mode", ArgKind.CHOICE, optional=True, choices=_ONOFF)])
def timing(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    ctx.settings.timing = _switch(args.get("mode"), ctx.settings.timing)
    return Text(f"Timing is {'on' if ctx.settings.timing else 'off'}.")


_FORMATS = ("aligned", "csv", "json", "unaligned")
_PSET = ("format", "null", "expanded", "tuples_only")


@command("\\pset", "set a table output option", group=B,
         args=[Arg("option", ArgKind.CHOICE, optional=True, choices=_PSET),
               Arg("value", ArgKind.TEXT, optional=True)])
def pset(ctx: ShellContext, args: dict[str, str]) -> Outcome | None:
    st = ctx.settings
    opt, value = args.get("option"), args.get("value")
    if opt is None:
        return Text("\n".join([
            f"expanded     {st.expanded}", f"format       {st.format}", f"null         '{st.null}'",
            f"tuples_only  {'on' if st.tuples_only else 'off'}",
        ]))
    if opt == "format":
        if value is None:
            return Text(f"Output format is {st.format}.")
        if value.lower() not in _FORMATS:
            return Failure(f"\\pset: allowed formats are {', '.join(_FORMATS)}")
        st.format = value.lower()
        return Text(f"Output format is {st.format}.")
    if opt == "null":
        if value is not None:  # without a value psql shows the setting
            st.null = value
        return Text(f'Null display is "{st.null}".')
    if opt == "expanded":
        if value is not None and value.lower() not in ("on", "off", "auto"):
            return Failure("\\pset: expanded must be on, off or auto")
        return expanded(ctx, {"mode": value.lower()} if value else {})
    if value is not None and value.lower() not in _ONOFF:
        return Failure("\\pset: tuples_only must be on or off")
    return tuples_only(ctx, {"mode": value.lower()} if value else {})


@command("\\t", "rows only: no header, footer or record labels (as \\pset tuples_only)", group=B,
         args=[Arg("mode", ArgKind.CHOICE, optional=True, choices=_ONOFF)])
def tuples_only(ctx: ShellContext, args: dict[str, str]) -> Outcome | None:
    st = ctx.settings
    st.tuples_only = _switch(args.get("mode"), st.tuples_only)
    if "mode" in args:  # as psql: only a toggle says what it did
        return None
    return Text(f"Tuples only is {'on' if st.tuples_only else 'off'}.")


@command("\\o", "send query results to a file (no argument: back to standard output)", group=B,
         args=[Arg("file", ArgKind.FILE, optional=True)])
def output_to(ctx: ShellContext, args: dict[str, str]) -> Outcome | None:
    path = args.get("file")
    if ctx.output is not None:
        ctx.output.close()
        ctx.output, ctx.output_name = None, None
    if path is None:
        return None
    try:
        ctx.output = open(os.path.expanduser(path), "w", encoding="utf-8")  # noqa: SIM115 - closed by \o
    except OSError as exc:
        return Failure(f"{path}: {exc.strerror}")
    ctx.output_name = path
    return None


@command("\\i", "execute commands from a file", group=B, args=[Arg("file", ArgKind.FILE)], aliases=["\\include"])
def include(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    path = os.path.expanduser(args["file"])
    try:
        with open(path, encoding="utf-8") as f:
            return RunScript(f.read(), path)
    except OSError as exc:
        return Failure(f"{args['file']}: {exc.strerror}")


def complete_statement(text: str) -> bool:
    stmts, rest, _ = Scanner.scan(text)
    return bool(stmts) and not strip_comments(rest).strip()


@command("\\e", "edit the query buffer (or a file) with $EDITOR; runs it if it ends with ;", group=B,
         args=[Arg("file", ArgKind.FILE, optional=True)], aliases=["\\edit"])
def edit(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    path = args.get("file")
    cleanup = None
    if path is None:
        fd, path = tempfile.mkstemp(prefix="heliosdb-", suffix=".sql")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(ctx.last_query + ("\n" if ctx.last_query else ""))
        cleanup = path
    try:
        code = subprocess.call([*shlex.split(editor), path])
        if code != 0:
            return Failure(f"\\e: editor exited with status {code}")
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as exc:
        return Failure(f"\\e: {exc.strerror}: {editor}")
    finally:
        if cleanup:
            os.unlink(cleanup)
    if not text:
        return Text("")
    if complete_statement(text) or text.startswith("\\"):
        return RunScript(text, "editor")
    return Prefill(text)


@command("\\echo", "write a line to standard output", group=B, args=[Arg("text", ArgKind.TEXT, optional=True, rest=True)])
def echo(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Text(" ".join(split_words(args.get("text", ""))))


# -- variables -------------------------------------------------------------------------------------
@command("\\set", "set a variable, or list them all", group=V,
         args=[Arg("name", ArgKind.VARIABLE, optional=True), Arg("value", ArgKind.TEXT, optional=True, rest=True)])
def set_var(ctx: ShellContext, args: dict[str, str]) -> Outcome | None:
    name = args.get("name")
    if name is None:
        return Text("\n".join(f"{k} = '{v}'" for k, v in sorted(ctx.variables.items())))
    if not all(c.isalnum() or c == "_" for c in name):
        return Failure(f'\\set: invalid variable name: "{name}"')
    ctx.variables[name] = "".join(split_words(args.get("value", "")))
    return None


@command("\\unset", "unset (delete) a variable", group=V, args=[Arg("name", ArgKind.VARIABLE)])
def unset_var(ctx: ShellContext, args: dict[str, str]) -> Outcome | None:
    ctx.variables.pop(args["name"], None)
    return None
