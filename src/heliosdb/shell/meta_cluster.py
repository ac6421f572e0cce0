"""Cluster meta commands: what exists today (one local storage node), nothing more."""

from __future__ import annotations

from heliosdb.shell.commands import Arg, ArgKind, Failure, Outcome, Rows, Text, command
from heliosdb.shell.context import ShellContext, object_name
from heliosdb.shell.meta_describe import visible_tables

G = "Cluster"


@command("\\nodes", "storage nodes: kind, location, PostgreSQL version, branches stored", group=G)
def nodes(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    s = ctx.session
    info = s.conn.info
    here = f"{info.host}:{info.port}" + (f" (data directory {s.instance.data_dir})" if s.instance else "")
    version = info.parameter_status("server_version") or str(info.server_version)
    rows = ctx.query("""SELECT n.id, n.kind, n.is_local,
                               (SELECT count(*) FROM heliosdb._branches b
                                WHERE b.storage_node = n.id AND b.state <> 'dropped')
                        FROM heliosdb.nodes n ORDER BY n.id""")
    out = [(nid, kind, "local" if local else "remote", here if local else "", version if local else "", count)
           for nid, kind, local, count in rows]
    return Rows(["Node", "Kind", "Where", "Address", "PostgreSQL", "Branches"], out,
                numeric=[False, False, False, False, False, True], title="Storage nodes")


@command("\\shards", "how a table is distributed across nodes", group=G, args=[Arg("table", ArgKind.TABLE)])
def shards(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    name = object_name(args["table"])
    if not any(t[1] == name for t in visible_tables(ctx)):
        return Failure(f'table "{name}" does not exist on branch "{ctx.session.branch.name}"')
    node = ctx.session.branch.storage_node
    return Text(f'Table "{name}" is not sharded: all of its rows are on storage node "{node}".')


@command("\\replication", "replication status of the local PostgreSQL (pg_stat_replication)", group=G)
def replication(ctx: ShellContext, args: dict[str, str]) -> Outcome:
    rows = ctx.query("""SELECT application_name, coalesce(client_addr::text, 'local'), state,
                               sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
                               replay_lag::text, sync_state
                        FROM pg_stat_replication ORDER BY application_name""")
    wal = ctx.scalar("SELECT current_setting('wal_level')")
    if not rows:
        return Text(f"No replicas: the local PostgreSQL has no standby connected (wal_level={wal}).")
    return Rows(["Replica", "Address", "State", "Sent LSN", "Write LSN", "Flush LSN", "Replay LSN", "Replay lag",
                 "Sync"], rows, title=f"Replication (wal_level={wal})")
