"""The declarative registry of meta commands (after pgspecial).

Every command is one `@command(...)` entry: name (one or two words, `\\branch
info`), arguments, description, group and aliases. Dispatch, `\\?`, usage
errors and completion all read the same table. Handlers take the shell context
and their parsed arguments and return result objects; they never print.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from heliosdb.shell.context import ShellContext


class ArgKind(enum.Enum):
    """What an argument is: drives completion."""

    NONE = "none"
    BRANCH = "branch"
    TABLE = "table"
    RELATION = "relation"
    VIEW = "view"
    MVIEW = "mview"
    FILE = "file"
    CHOICE = "choice"
    STATEMENT = "statement"
    VARIABLE = "variable"
    NUMBER = "number"
    PATTERN = "pattern"
    TEXT = "text"


@dataclass(frozen=True)
class Arg:
    name: str
    kind: ArgKind = ArgKind.TEXT
    optional: bool = False
    choices: tuple[str, ...] = ()
    rest: bool = False  # takes the rest of the line, as written

    @property
    def syntax(self) -> str:
        text = "|".join(self.choices) if self.choices else self.name
        if self.rest:
            text += " ..."
        return f"[{text}]" if self.optional else (text if self.choices else f"<{text}>")


# -- results ---------------------------------------------------------------------------------------
@dataclass
class Rows:
    """A table to render: headers, rows, optional title and footer lines."""

    headers: list[str]
    rows: list[tuple[Any, ...]]
    numeric: list[bool] | None = None
    title: str | None = None
    footer: list[str] = field(default_factory=list)
    count: bool = True  # print "(N rows)"


@dataclass
class Text:
    text: str
    error: bool = False  # goes to the error stream


def nothing_found(what: str, pattern: str | None) -> Text:
    """psql's note for a listing that matches nothing: on standard error, yet not a failed command (a script
    with ON_ERROR_STOP goes on, -c exits 0)."""
    return Text(f"Did not find any {what}" + (f' named "{pattern}"' if pattern else "") + ".", error=True)


@dataclass
class Failure:
    """A one-line error (usage, unknown command, not available)."""

    message: str


@dataclass
class Quit:
    pass


@dataclass
class RunScript:
    """Lines to run as if typed (\\i, \\e)."""

    text: str
    source: str


@dataclass
class Prefill:
    """Text to put into the next prompt's buffer (\\e with an incomplete statement)."""

    text: str


Outcome = Rows | Text | Failure | Quit | RunScript | Prefill
Handler = Callable[["ShellContext", dict[str, str]], "Outcome | list[Outcome] | None"]


@dataclass(frozen=True)
class Command:
    name: str  # "\\branches", "\\branch info"
    args: tuple[Arg, ...]
    description: str
    group: str
    handler: Handler
    aliases: tuple[str, ...] = ()

    @property
    def syntax(self) -> str:
        return " ".join([self.name, *(a.syntax for a in self.args)])

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def required(self) -> int:
        return sum(1 for a in self.args if not a.optional)


GROUPS = ("General", "Query buffer and output", "Variables", "Informational", "Branches", "Time travel",
          "Materialized views", "Cluster", "Storage")


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}  # by name and alias

    def add(self, cmd: Command) -> None:
        for n in cmd.names:
            if n in self.commands:
                raise ValueError(f"meta command {n} registered twice")
            self.commands[n] = cmd

    def unique(self) -> list[Command]:
        seen: dict[int, Command] = {}
        for c in self.commands.values():
            seen.setdefault(id(c), c)
        return list(seen.values())

    def first_words(self) -> list[str]:
        """Every first word a command line can start with (for completion after a backslash)."""
        return sorted({n.split()[0] for n in self.commands})

    def subcommands(self, first: str) -> list[str]:
        return sorted({n.split()[1] for n in self.commands if " " in n and n.split()[0] == first})

    def find(self, words: list[str]) -> tuple[Command | None, int]:
        """The command a line's words name (two-word names first) and how many words it took."""
        if len(words) >= 2 and f"{words[0]} {words[1]}" in self.commands:
            return self.commands[f"{words[0]} {words[1]}"], 2
        if words and words[0] in self.commands:
            return self.commands[words[0]], 1
        return None, 0

    def grouped(self) -> list[tuple[str, list[Command]]]:
        out = []
        for g in GROUPS:
            cmds = [c for c in self.unique() if c.group == g]
            if cmds:
                out.append((g, cmds))
        return out


REGISTRY = Registry()


F = TypeVar("F", bound=Handler)


def command(name: str, description: str, *, group: str, args: Iterable[Arg] = (),
            aliases: Iterable[str] = ()) -> Callable[[F], F]:
    """Register a meta command handler."""

    def deco(fn: F) -> F:
        REGISTRY.add(Command(name, tuple(args), description, group, fn, tuple(aliases)))
        return fn

    return deco


# -- parsing a command line ------------------------------------------------------------------------
class UsageError(Exception):
    pass


def split_words(text: str) -> list[str]:
    """psql-style arguments: whitespace separated; '...' is unquoted, "..." is kept with its quotes."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        word = ""
        while i < n and not text[i].isspace():
            q = text[i]
            if q in "'\"":
                end = i + 1
                while True:
                    end = text.find(q, end)
                    if end < 0:
                        raise UsageError("unterminated quoted string")
                    if end + 1 < n and text[end + 1] == q:
                        end += 2
                        continue
                    break
                body = text[i + 1:end]
                word += body.replace("''", "'") if q == "'" else q + body + q
                i = end + 1
            else:
                word += q
                i += 1
        words.append(word)
    return words


@dataclass
class Parsed:
    command: Command
    args: dict[str, str]


def parse(line: str, registry: Registry = REGISTRY) -> Parsed:
    """A meta command line -> the command and its arguments; UsageError with the right usage if wrong."""
    line = line.strip()
    head, _, tail = line.partition(" ")
    words = [head, *split_words(tail)] if tail.strip() else [head]
    cmd, used = registry.find(words[:2])
    if cmd is None:
        subs = registry.subcommands(head)
        if subs:
            usage = "; ".join(c.syntax for c in registry.unique() if c.name.split()[0] == head)
            raise UsageError(f"{head}: expected one of {', '.join(subs)} (usage: {usage})")
        raise UsageError(f"invalid command {head}; try \\? for help")
    rest_text = tail.strip()
    if used == 2:
        rest_text = rest_text.split(None, 1)[1] if len(rest_text.split(None, 1)) > 1 else ""
    values = words[used:]
    out: dict[str, str] = {}
    for i, arg in enumerate(cmd.args):
        if arg.rest:
            text = _rest_after(rest_text, i)
            if text:
                out[arg.name] = text
            values = []
            break
        if i < len(values):
            v = values[i]
            if arg.choices and v.lower() not in arg.choices:
                raise UsageError(f"{cmd.name}: unrecognized value \"{v}\"; usage: {cmd.syntax}")
            if arg.kind is ArgKind.NUMBER and not v.isdigit():
                raise UsageError(f"{cmd.name}: \"{v}\" is not a number; usage: {cmd.syntax}")
            out[arg.name] = v.lower() if arg.choices else v
        elif not arg.optional:
            raise UsageError(f"{cmd.name}: missing argument <{arg.name}>; usage: {cmd.syntax}")
    else:
        if len(values) > len(cmd.args):
            extra = values[len(cmd.args)]
            raise UsageError(f"{cmd.name}: unexpected argument \"{extra}\"; usage: {cmd.syntax}")
    return Parsed(cmd, out)


def _rest_after(text: str, n: int) -> str:
    """The text after the first n whitespace-separated words, as written."""
    for _ in range(n):
        parts = text.split(None, 1)
        text = parts[1] if len(parts) > 1 else ""
    return text.strip()
