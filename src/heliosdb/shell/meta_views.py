"""Materialized-view meta commands. HeliosDB's self-refreshing views are another issue, not built yet:
the commands are registered (so \\? lists them and completion knows them) and say so plainly."""

from __future__ import annotations

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, command
from heliosdb.shell.context import ShellContext

G = "Materialized views"
NOT_YET = "materialized views are not available yet"


@command("\\dmv", "list materialized views, or show one: definition, options, staleness, last refresh",
         group=G, args=[Arg("view", ArgKind.MVIEW, optional=True)])
def dmv(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Failure(NOT_YET)


@command("\\dmv staleness", "staleness of every materialized view and its components", group=G)
def dmv_staleness(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Failure(NOT_YET)


@command("\\dmv refresh", "refresh a materialized view now (with a progress indicator)", group=G,
         args=[Arg("view", ArgKind.MVIEW)])
def dmv_refresh(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Failure(NOT_YET)


@command("\\dmv deps", "what a materialized view depends on", group=G, args=[Arg("view", ArgKind.MVIEW)])
def dmv_deps(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    return Failure(NOT_YET)
