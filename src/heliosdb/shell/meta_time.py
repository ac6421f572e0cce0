"""Time-travel meta commands: \\snapshots, \\retention, \\scn, \\lsn, \\timeline."""

from __future__ import annotations

from heliosdb import errors
from heliosdb.shell.commands import Arg, ArgKind, Outcome, Rows, Text, command
from heliosdb.shell.context import ShellContext, object_name
from heliosdb.shell.prompt import short_lsn

G = "Time travel"


@command("\\snapshots", "commit points (LSN, SCN, txid, time, branch, tables touched, rows changed)", group=G,
         args=[Arg("table", ArgKind.TABLE, optional=True)])
def snapshots(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    table = object_name(args["table"]) if "table" in args else None
    # the snapshots of a table include those of its dropped or renamed past: any name it ever had counts
    if table is not None and not ctx.scalar(
            "SELECT EXISTS (SELECT 1 FROM heliosdb._table_versions WHERE name = %s)", (table,)):
        raise errors.UndefinedTable(f'table "{table}" does not exist',
                                    hint="\\snapshots takes a table that exists, or existed, on some branch.")
    rows = ctx.query(
        """SELECT lsn, scn, txid::text, committed_at, branch, array_to_string(tables_touched, ', '), rows_changed
           FROM heliosdb.snapshots(%s) ORDER BY scn""", (table,))
    title = f'Snapshots of "{table}"' if table else "Snapshots"
    return Rows(["LSN", "SCN", "Txid", "Committed at", "Branch", "Tables touched", "Rows changed"], rows,
                numeric=[False, True, True, False, False, False, True], title=title)


@command("\\retention", "each branch's retention period, GC policy and oldest available point", group=G)
def retention(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    rows = ctx.query("""SELECT branch, retention_period, gc_policy, oldest_lsn, oldest_time
                        FROM heliosdb.retention ORDER BY branch = 'main' DESC, branch""")
    return Rows(["Branch", "Retention period", "GC policy", "Oldest LSN", "Oldest time"], rows, title="Retention")


@command("\\scn", "the current SCN of the branch", group=G)
def scn(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    s = ctx.session
    if s.as_of is not None:
        value = ctx.scalar("SELECT scn FROM heliosdb._commits WHERE lsn <= %s ORDER BY lsn DESC LIMIT 1", (s.as_of.lsn,))
        return Text(f"SCN: {value if value is not None else 0} (branch {s.as_of.branch.name} as of LSN "
                    f"{short_lsn(s.as_of.lsn)})")
    return Text(f"SCN: {ctx.scalar('SELECT heliosdb.current_scn()')} (branch {s.branch.name})")


@command("\\lsn", "the current LSN; on|off: print the commit LSN after every statement", group=G,
         args=[Arg("mode", ArgKind.CHOICE, optional=True, choices=("on", "off"))])
def lsn(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    mode = args.get("mode")
    if mode is not None:
        ctx.settings.lsn_echo = mode == "on"
        return Text(f"LSN display is {mode}.")
    s = ctx.session
    if s.as_of is not None:
        return Text(f"LSN: {short_lsn(s.as_of.lsn)} (branch {s.as_of.branch.name}, temporal context; "
                    f"head {ctx.scalar('SELECT heliosdb.current_lsn()::text')})")
    return Text(f"LSN: {ctx.scalar('SELECT heliosdb.current_lsn()::text')} (branch {s.branch.name})")


@command("\\timeline", "recent commits: LSN, SCN, time, branch, user (default 20)", group=G,
         args=[Arg("limit", ArgKind.NUMBER, optional=True)])
def timeline(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    limit = int(args.get("limit", "20"))
    rows = ctx.query("""SELECT lsn, scn, committed_at, branch, "user" FROM heliosdb.commits
                        ORDER BY scn DESC LIMIT %s""", (limit,))
    return Rows(["LSN", "SCN", "Committed at", "Branch", "User"], rows, numeric=[False, True, False, False, False],
                title=f"Timeline (last {limit} commits)")
