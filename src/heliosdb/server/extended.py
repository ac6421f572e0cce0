"""The extended query protocol: Parse, Bind, Describe, Execute (row limits, suspension), Close, Sync.

Statements are kept as text with their placeholders; a Bind keeps the client's
values as they came (bytes, format, type). Executing a portal runs the whole
statement once and keeps its rows, and Execute hands out the rows in portions.
Describe of a statement asks PostgreSQL (an unnamed prepare on the session's
storage connection) for parameter and column types; so does Describe of a
portal, unless an Execute of it follows before the next Sync (drivers' Bind,
Describe, Execute), where the run answers both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

import psycopg
from psycopg import pq

from heliosdb import errors
from heliosdb.server import catalog_compat, codec
from heliosdb.server.params import Raw, param_count, placeholders
from heliosdb.server.protocol import (
    Bound,
    Protocol,
    error,
    pgresult_error,
    quick_plain_command,
    quick_plain_select,
)
from heliosdb.server.relay import Hider, frame
from heliosdb.server.values import Rows, describe_fields, result_formats
from heliosdb.session import statement_info
from heliosdb.sql.classify import Kind, classify, head, is_stdio_copy
from heliosdb.sql.split import split_statements


def _runs_and_syncs(msgs: list[tuple[bytes, bytes]], kinds: bytes) -> bool:
    """[Describe portal '',] Execute portal '' without a row limit, Sync: what relay_batch relays after a Bind."""
    if kinds[:2] == b"ES":
        return msgs[0][1] == b"\0\0\0\0\0" and not msgs[1][1]
    if kinds[:3] == b"DES":
        return msgs[0][1] == b"P\0" and msgs[1][1] == b"\0\0\0\0\0" and not msgs[2][1]
    return False


_DEALLOCATE = re.compile(r'\s*DEALLOCATE\s+(?:PREPARE\s+)?(?:"((?:[^"]|"")+)"|(\w+))\s*;?\s*$', re.IGNORECASE)


@dataclass
class Prepared:
    query: str
    param_types: list[int]
    spans: list[tuple[int, int, int]]
    nparams: int
    described: tuple[list[int], bytes | None] | None = None  # parameter types, RowDescription
    catalog: bool = False  # reads HeliosDB's views of the catalogs (catalog_compat rewrote it)
    named: bool = False  # a named statement: its described result shape holds, as PostgreSQL's plan cache's


@dataclass
class Portal:
    prep: Prepared
    values: list[Raw]
    formats: list[int]
    copy: bool = False
    executed: bool = False
    suspended: bool = False
    rows: Rows | None = None
    tag: str = ""


class ExtendedProtocol(Protocol):
    """Protocol plus the extended query messages."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        # Statements whose Parse was relayed (relay_batch): the Parse, decoded when the full path needs
        # it. A named one also lives on the storage connection: storage_names[name] = (its name there,
        # its number of parameters, whether it writes: relayed only where writes pass through).
        self.relayed: dict[str, bytes] = {}
        self.storage_names: dict[str, tuple[bytes, int, bool]] = {}
        self._storage_garbage: list[bytes] = []  # storage statements to deallocate when idle
        self._storage_seq = 0
        # when each was made on the storage connection, in session_runs (see Protocol.__init__)
        self._storage_made: dict[str, int] = {}

    def local_command(self, stmt: str) -> str | None:
        """SQL DEALLOCATE of a protocol-level statement; DISCARD ALL also drops ours (and goes on)."""
        h = head(stmt)
        if h.startswith("DEALLOCATE"):
            m = _DEALLOCATE.match(stmt)
            if m:
                name = m.group(1) or m.group(2).lower()
                if m.group(2) and m.group(2).upper() == "ALL":
                    self._forget_statements()  # PostgreSQL deallocates the storage side itself
                elif self._drop_statement(name):
                    return "DEALLOCATE"
        elif h.startswith("DISCARD ALL"):
            self._forget_statements()
            self.portals.clear()
        return None

    def _forget_statements(self) -> None:
        self.statements.clear()
        self.relayed.clear()
        self.storage_names.clear()
        self._storage_made.clear()
        self.auto.clear()

    def _drop_statement(self, name: str) -> bool:
        found = self.statements.pop(name, None) is not None
        found = self.relayed.pop(name, None) is not None or found
        storage = self.storage_names.pop(name, None)
        self._storage_made.pop(name, None)
        if storage is not None:
            self._storage_garbage.append(storage[0])
        return found

    def collect_storage_garbage(self) -> None:
        """Deallocate the storage side of statements the client closed (outside a transaction only)."""
        if self._storage_garbage and not self.s.in_transaction:
            names, self._storage_garbage = self._storage_garbage, []
            self.s.conn.pgconn.exec_(b";".join(b'DEALLOCATE "' + n + b'"' for n in names))

    def parse(self, payload: bytes) -> None:
        msg = codec.decode_parse(payload)
        if msg.name and (msg.name in self.statements or msg.name in self.relayed):
            raise error("42P05", f'prepared statement "{msg.name}" already exists')
        prep = self._prepared(msg)
        prep.named = bool(msg.name)
        if self.peek_kinds()[:1] != [b"B"] and not statement_info(prep.query).sequence:
            # a statement kept for later (PQprepare: Parse, Sync): PostgreSQL's errors now, as at its Parse
            # (a Bind next runs it, which reports them; not checking saves a round trip). Not for calls of
            # pg_get_serial_sequence: the session rewrites them with their arguments.
            self.describe_statement(prep)
        if not msg.name:
            self._drop_statement("")
        self.statements[msg.name] = prep
        self.send(codec.PARSE_COMPLETE)

    @staticmethod
    def _prepared(msg: codec.Parse) -> Prepared:
        compat = catalog_compat.rewrite(msg.query)
        stmts = split_statements(compat)
        if len(stmts) > 1:
            raise error("42601", "cannot insert multiple commands into a prepared statement")
        query = stmts[0] if stmts else ""
        spans = placeholders(query)
        nparams = max(len(msg.param_types), param_count(spans))
        return Prepared(query, msg.param_types, spans, nparams, catalog=compat is not msg.query)

    def _statement(self, name: str) -> Prepared | None:
        prep = self.statements.get(name)
        if prep is None and name in self.relayed:
            # a statement whose Parse was relayed, now used where the session runs it
            prep = self.statements[name] = self._prepared(codec.decode_parse(self.relayed[name]))
        return prep

    def relay_batch(self, first: bytes, payload: bytes) -> bool:
        """A batch that starts with this Parse or Bind, relayed to PostgreSQL as it is (see relay.py):

        - Parse, Bind, [Describe,] Execute, Sync of one statement in the unnamed statement and portal;
        - Parse of a named statement, Sync (libpq's PQprepare): the statement is made on the storage
          connection too, under a name of ours;
        - Bind of such a statement to the unnamed portal, [Describe,] Execute, Sync.
        The statement is a plain read, or, where writes pass through (Session.writes_pass_through), a
        plain transaction command or INSERT/UPDATE/DELETE; also inside a transaction. Anything else
        (row limits, named portals) takes the full path.
        """
        session = self.session
        if session is None or session.as_of is not None:
            return False
        rest = self.peek_messages(4)
        kinds = b"".join(k for k, _ in rest)
        writes = session.writes_pass_through
        remade = False
        if first == b"B":
            name, bind = self._storage_bind(payload)
            if name is None or not _runs_and_syncs(rest, kinds) or self.storage_names[name][2] and not writes:
                return False
            head_msgs, rest = [(b"B", bind)], rest[: 2 if kinds[:2] == b"ES" else 3]
            if self._storage_made.get(name) != self.session_runs:  # it may be gone: make it again
                storage, parse = self.storage_names[name][0], self.relayed[name]
                remake = [(b"C", b"S" + storage + b"\0"), (b"P", storage + parse[parse.index(b"\0"):])]
                head_msgs, remade = remake + head_msgs, True
        else:
            nul = payload.find(b"\0")
            end = payload.find(b"\0", nul + 1) if nul >= 0 else -1
            if end < 0:
                return False
            query = payload[nul + 1 : end + 1]
            write = not quick_plain_select(query)
            if write and not (writes and quick_plain_command(query)):
                return False
            name = payload[:nul].decode("utf-8", "replace")
            if name:
                if kinds[:1] != b"S" or rest[0][1] or name in self.statements or name in self.relayed:
                    return False
                rest = rest[:1]
                try:
                    nparams = self._prepared(codec.decode_parse(payload)).nparams
                except codec.ProtocolError:
                    return False
                self._storage_seq += 1
                storage = b"_hdb_s%d" % self._storage_seq
                head_msgs = [(b"P", storage + payload[nul:])]
            else:
                if kinds[:1] != b"B" or rest[0][1][:2] != b"\0\0" or not _runs_and_syncs(rest[1:], kinds[1:]):
                    return False
                rest = rest[: 3 if kinds[1:3] == b"ES" else 4]
                head_msgs = [(b"P", payload)]
            try:
                codec.decode_parse(payload)  # well formed, as PostgreSQL will want it
                if not name:
                    codec.decode_bind(rest[0][1])
            except codec.ProtocolError:
                return False
        if not self._can_relay(idle_only=False):
            return False
        self.drop_messages(len(rest))
        if first == b"P":
            self._drop_statement(name)
            self.relayed[name] = payload
            if name:
                self.storage_names[name] = (storage, nparams, write)
        if name:
            self._storage_made[name] = self.session_runs
        # hides the answers to a Close and Parse of our own; tells whether a Parse succeeded
        watch = Hider(self.send, b"31" if remade else b"") if remade or first == b"P" else None
        try:
            return self._relay(b"".join(frame(k, p) for k, p in head_msgs + rest), watch)
        finally:
            if watch is not None and first == b"P" and watch.shown != b"1":  # the Parse failed: none made
                self.relayed.pop(name, None)
                self.storage_names.pop(name, None)
                self._storage_made.pop(name, None)
            elif watch is not None and remade and 0x31 not in watch.hidden:
                self._storage_made.pop(name, None)  # not made again: try again next time

    def _storage_bind(self, payload: bytes) -> tuple[str | None, bytes]:
        """A Bind of a statement made on the storage connection to the unnamed portal, renamed to ours."""
        if payload[:1] != b"\0":
            return None, payload
        end = payload.find(b"\0", 1)
        name = payload[1:end].decode("utf-8", "replace") if end > 0 else ""
        made = self.storage_names.get(name)
        if made is None:
            return None, payload
        bind = b"\0" + made[0] + payload[end:]
        try:
            if len(codec.decode_bind(bind).params) != made[1]:
                return None, payload  # the full path reports it, with the client's name
        except codec.ProtocolError:
            return None, payload
        return name, bind

    def bind(self, payload: bytes) -> None:
        msg = codec.decode_bind(payload)
        prep = self._statement(msg.statement)
        if prep is None:
            raise error("26000", f'prepared statement "{msg.statement}" does not exist')
        n = len(msg.params)
        if n != prep.nparams:
            raise error("08P01", f'bind message supplies {n} parameters, but prepared statement '
                                 f'"{msg.statement}" requires {prep.nparams}')
        fmts = msg.param_formats * n if len(msg.param_formats) == 1 else (msg.param_formats or [0] * n)
        types = prep.param_types + [0] * (n - len(prep.param_types))
        if any(f == 1 and types[i] in (0, 705) and msg.params[i] is not None for i, f in enumerate(fmts)):
            inferred = self.describe_statement(prep)[0]
            types = [t if t not in (0, 705) else inferred[i] for i, t in enumerate(types)]
        if msg.portal and msg.portal in self.portals:
            raise error("42P03", f'portal "{msg.portal}" already exists')
        values = [Raw(v, types[i], fmts[i]) for i, v in enumerate(msg.params)]
        if prep.catalog:  # each run of a catalog query: the rows it reads kept for the current catalog
            self.server.catalog_fills.fill(self.session)
        self.portals[msg.portal] = Portal(prep, values, msg.result_formats, copy=is_stdio_copy(prep.query))
        self.send(codec.BIND_COMPLETE)

    def describe(self, payload: bytes) -> None:
        kind, name = codec.decode_target(payload)
        if kind == "S":
            prep = self._statement(name)
            if prep is None:
                raise error("26000", f'prepared statement "{name}" does not exist')
            oids, description = self.describe_statement(prep)
            self.send(codec.parameter_description(oids))
            self.send(description if description is not None else codec.NO_DATA)
            return
        portal = self.portals.get(name)
        if portal is None:
            self._describe_sql_cursor(name)
            return
        if portal.executed or portal.copy or not portal.prep.query:
            self.send(portal.rows.description if portal.rows is not None else codec.NO_DATA)
        elif self._executes_next(name):  # Bind, Describe, Execute: the run answers both
            self._run_portal(portal, at_describe=True)
            self.send(portal.rows.description if portal.rows is not None else codec.NO_DATA)
        else:  # as PostgreSQL: described, not run (a write must not happen before its Execute)
            description = self.describe_statement(portal.prep)[1]
            self.send(codec.NO_DATA if description is None else _with_formats(description, portal.formats))

    def execute_portal(self, payload: bytes) -> None:
        name, max_rows = codec.decode_execute(payload)
        portal = self.portals.get(name)
        if portal is None:
            raise error("34000", f'portal "{name}" does not exist')
        if not portal.prep.query:
            self.send(codec.EMPTY_QUERY)
            return
        if portal.copy:
            if not portal.executed:
                portal.executed = True
                self.copy(portal.prep.query)
            return
        self._run_portal(portal, at_describe=False)
        rows, tag = portal.rows, portal.tag
        if rows is not None:
            sent = rows.encode(max_rows, self.send)
            if not rows.done:
                portal.suspended = True
                self.send(codec.PORTAL_SUSPENDED)
                return
            if portal.suspended and tag.startswith("SELECT"):
                tag = f"SELECT {sent}"
        self.send(codec.command_complete(tag))

    def close(self, payload: bytes) -> None:
        kind, name = codec.decode_target(payload)
        if kind == "S":
            self._drop_statement(name)
        else:
            self.portals.pop(name, None)
        self.send(codec.CLOSE_COMPLETE)

    def sync(self) -> None:
        self.skipping = False
        self.end_implicit(not self.batch_failed)
        self.batch_failed = False
        if self.session is not None and not self.s.in_transaction:
            self.portals.clear()
        self.emit_parameter_status()
        self.ready()

    def _executes_next(self, portal: str) -> bool:
        """Whether the next Execute among the messages already received, before a Sync, runs this portal."""
        for kind, payload in self.peek_messages(64):
            if kind == b"S":
                return False
            if kind == b"E":
                try:
                    return codec.decode_execute(payload)[0] == portal
                except codec.ProtocolError:
                    return False
        return False

    def _more_before_sync(self, at_describe: bool) -> bool:
        """Whether another statement may follow before the next Sync (so: an implicit transaction)."""
        kinds = self.peek_kinds()
        if at_describe and b"E" in kinds:
            kinds = kinds[kinds.index(b"E") + 1 :]
        for k in kinds:
            if k == b"S":
                return False
            if k == b"E":
                return True
        return True

    def _run_portal(self, portal: Portal, at_describe: bool) -> None:
        if portal.executed or portal.copy or not portal.prep.query:
            return
        portal.executed = True
        query = portal.prep.query
        if self.begin_implicit(query, self._more_before_sync(at_describe)):
            portal.tag = "BEGIN"
            return
        described = portal.prep.described[1] if portal.prep.named and portal.prep.described else None
        write = described is not None and statement_info(query).write
        if write and _result_changed(self._describe_uncached(portal.prep)[1], described):
            _refuse_changed_result()  # a write (RETURNING) is checked before it runs: it must not happen
        portal.rows, portal.tag = self.run_statement(query, Bound(portal.values, portal.prep.spans), portal.formats)
        if described is not None and portal.rows is not None and not write and (
                _result_changed(portal.rows.description, described)):
            portal.rows = None  # a read is checked after it ran (no second round trip): it changed nothing
            _refuse_changed_result()

    def describe_statement(self, prep: Prepared) -> tuple[list[int], bytes | None]:
        if prep.described is None:
            prep.described = self._describe_uncached(prep)
        return prep.described

    def _describe_uncached(self, prep: Prepared) -> tuple[list[int], bytes | None]:
        declared = prep.param_types + [0] * (prep.nparams - len(prep.param_types))
        fallback = [t if t not in (0, 705) else 25 for t in declared]
        q = prep.query
        if not q:
            return fallback, None
        kind = classify(q)
        if kind in (Kind.PASSTHROUGH, Kind.TRANSACTION):
            info = statement_info(q)
            text = self.s.regrouped(q) if info.grouped and not info.temporal else q
            text = self.s.sampled(text) if info.sampled and not info.temporal else text
            if info.temporal:
                from heliosdb.temporal.rewrite import rewrite

                try:
                    text = rewrite(self.s, q)
                except (errors.Error, psycopg.Error):
                    return fallback, None
            return self._prepare_on_storage(text, declared)
        if head(q).startswith("SHOW") and not prep.spans:
            rows = self.result_rows(self.execute(q), [])
            return fallback, rows.description if rows is not None else None
        if kind is Kind.MERGE and not prep.spans:  # its result columns, without running it (or its syntax error)
            from heliosdb.merge.engine import result_columns

            columns = result_columns(q)
            return fallback, self._prepare_on_storage(columns, [])[1] if columns is not None else None
        return fallback, None

    def _prepare_on_storage(self, text: str, types: list[int]) -> tuple[list[int], bytes | None]:
        pg = self.s.conn.pgconn
        self._quiet = True
        try:
            res = pg.prepare(b"", text.encode("utf-8"), types or None)
            if res.status != pq.ExecStatus.COMMAND_OK:
                raise pgresult_error(res)
            d = pg.describe_prepared(b"")
            if d.status != pq.ExecStatus.COMMAND_OK:
                raise pgresult_error(d)
        finally:
            self._quiet = False
        oids = [d.param_type(i) for i in range(d.nparams)]
        return oids, codec.row_description(describe_fields(d)) if d.nfields else None

    def _describe_sql_cursor(self, name: str) -> None:
        """Describe of a portal we did not bind: a cursor DECLAREd in SQL (psycopg's server-side cursors)."""
        res = self.s.conn.pgconn.describe_portal(name.encode("utf-8"))
        if res.status != pq.ExecStatus.COMMAND_OK:
            raise pgresult_error(res)
        self.send(codec.row_description(describe_fields(res)) if res.nfields else codec.NO_DATA)


def _result_changed(now: bytes | None, described: bytes) -> bool:
    return now is None or _column_types(now) != _column_types(described)


def _refuse_changed_result() -> NoReturn:
    """DDL since the Describe changed the result (ADD COLUMN under SELECT *): PostgreSQL refuses to run the
    statement, and clients (asyncpg) prepare it again on this error, which they know by its routine field."""
    raise error("0A000", "cached plan must not change result type", fields={"routine": "RevalidateCachedQuery"})


def _with_formats(description: bytes, formats: list[int]) -> bytes:
    """A statement's RowDescription (text format) with a portal's result format codes."""
    count = int.from_bytes(description[5:7], "big")
    fmts = result_formats(formats, count)
    out, pos = bytearray(description), 7
    for fmt in fmts:
        pos = description.index(b"\0", pos) + 1 + 16  # the name, then 16 bytes before the format code
        out[pos : pos + 2] = fmt.to_bytes(2, "big")
        pos += 2
    return bytes(out)


def _column_types(description: bytes) -> list[int]:
    """The column type OIDs of a RowDescription message."""
    count = int.from_bytes(description[5:7], "big")
    pos, types = 7, []
    for _ in range(count):
        pos = description.index(b"\0", pos) + 1  # the name
        types.append(int.from_bytes(description[pos + 6 : pos + 10], "big"))
        pos += 18
    return types
