"""The query part of the protocol for one HeliosDB session: simple and extended query, COPY.

`Protocol` is transport-agnostic: a subclass provides send(), flush(),
next_message() and peek_kinds() (see heliosdb.server.connection). Statements
run through Session.execute, so branches, time travel and HeliosDB statements
behave exactly as in the shell.

Transactions: like PostgreSQL, the statements of one multi-statement Query, or
of one extended-protocol batch up to Sync, run in one implicit transaction
(when they are statements that may run inside one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from heliosdb import errors
from heliosdb.server import catalog_compat, codec
from heliosdb.server.autoparam import AutoStatement, AutoStatements, parameterize
from heliosdb.server.params import Raw, substitute, to_psycopg
from heliosdb.server.relay import Hider, RelayError, frame, relay_messages
from heliosdb.server.values import Encoder, Rows, from_pgresult, from_python
from heliosdb.session import Result, Session, is_write, statement_info
from heliosdb.sql.classify import LOCKING_READ, Kind, classify, head, is_stdio_copy
from heliosdb.sql.split import split_statements, strip_comments
from heliosdb.sql.temporal import has_temporal

log = logging.getLogger("heliosdb.server")

REPORTED_PARAMETERS = (
    "application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
    "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
    "session_authorization", "standard_conforming_strings", "TimeZone",
)
_REPORTED_KEYS = [(n, n.encode()) for n in REPORTED_PARAMETERS]
_READ_HEADS = ("SELECT", "VALUES", "TABLE", "SHOW")
_IMPLICIT_HEADS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "MERGE")
_IMPLICIT_KINDS = (Kind.CREATE_TABLE, Kind.DROP_TABLE, Kind.ALTER_TABLE, Kind.CREATE_INDEX, Kind.DROP_INDEX,
                   Kind.ALTER_INDEX,
                   Kind.TRUNCATE)
_RFQ_IDLE = codec.ready_for_query(b"I")
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_RELAYED_STATUS = {0x49: _IDLE, 0x54: _INTRANS, 0x45: _INERROR}  # ReadyForQuery's status byte
_RFQ = {pq.TransactionStatus.INERROR: codec.ready_for_query(b"E"),
        pq.TransactionStatus.INTRANS: codec.ready_for_query(b"T"),
        pq.TransactionStatus.ACTIVE: codec.ready_for_query(b"T")}


class ClientGone(Exception):
    """The client closed the connection (or the server is shutting it down)."""


class Fatal(Exception):
    """An error after which the connection is closed (FATAL ErrorResponse; `told`: the client already
    has PostgreSQL's own, relayed)."""

    def __init__(self, sqlstate: str, message: str, told: bool = False) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.told = told


def storage_lost(err: errors.Error | None = None) -> Fatal:
    """The storage connection is gone: PostgreSQL's reason when it gave one (57P01 terminated by an
    administrator, 25P03 idle-in-transaction timeout...), else 08006."""
    if err is not None and err.sqlstate and not err.sqlstate.startswith(("08", "XX")):
        return Fatal(err.sqlstate, err.message)
    return Fatal("08006", "the connection to the storage server was lost")


def error(sqlstate: str, message: str, **kw: Any) -> errors.Error:
    return errors.lookup(sqlstate)(message, sqlstate=sqlstate, **kw)


def pgresult_error(res: pq.abc.PGresult) -> errors.Error:
    def f(code: pq.DiagnosticField) -> str | None:
        v = res.error_field(code)
        return v.decode("utf-8", "replace") if v is not None else None

    pos = f(pq.DiagnosticField.STATEMENT_POSITION)
    return error(f(pq.DiagnosticField.SQLSTATE) or "XX000",
                 f(pq.DiagnosticField.MESSAGE_PRIMARY) or res.get_error_message(),
                 detail=f(pq.DiagnosticField.MESSAGE_DETAIL), hint=f(pq.DiagnosticField.MESSAGE_HINT),
                 position=int(pos) if pos and pos.isdigit() else None,
                 fields=errors.diag_fields(psycopg.errors.Diagnostic(res)))


def split_with_offsets(text: str) -> list[tuple[str, int]]:
    """Statements of a Query and the character offset of each in the text."""
    semi = text.find(";")
    if semi < 0 or (semi == len(text.rstrip()) - 1 and "--" not in text and "/*" not in text):
        # one statement (a ';' inside a quote would leave the quote open): no scan needed
        stmt = text.rstrip().rstrip(";").strip()
        if stmt and strip_comments(stmt):
            return [(stmt, text.find(stmt))]
        return []
    out: list[tuple[str, int]] = []
    pos = 0
    for stmt in split_statements(text):
        at = text.find(stmt, pos)
        at = pos if at < 0 else at
        out.append((stmt, at))
        pos = at + len(stmt)
    return out


def quick_plain_select(payload: bytes) -> bool:
    """A conservative test on a Query message's bytes: one plain SELECT that relay_simple would relay.

    True only for ASCII text starting with SELECT, with no ';' before its end, no comment, no
    word of a time-travel clause (see classify.has_temporal), no set_config, no SELECT INTO and
    nothing catalog_compat rewrites: decoding, splitting and classifying it is then known to say
    "relay" and is skipped. False means "ask relay_simple", not "do not relay".
    """
    if not payload.isascii() or payload.find(b"\0") != len(payload) - 1:
        return False
    low = payload.decode("ascii").lower()  # str: its substring tests cost a tenth of bytes' ones
    if not low.startswith("select") or low[6:7] not in (" ", "\n", "\t", "\r"):
        return False
    semi = low.find(";")
    if semi >= 0 and low[semi + 1 : -1].strip():
        return False  # a second statement, or a ';' inside a literal
    return "into" not in low and not _refused_words(low)


def _refused_words(low: str) -> bool:
    """A comment, a word of a time-travel clause, set_config, what catalog_compat rewrites, a locking
    read (`for update`: on a branch the session takes the branch's lock first), or a branch's schema (the
    session makes it at the branch's first use)."""
    return ("--" in low or "/*" in low or "of" in low or "system_time" in low or "versions" in low
            or "=>" in low or "set_config" in low or catalog_compat.touches(low)
            or "for" in low or "group" in low or "serial_sequence" in low or "br_" in low)


_TRANSACTION_COMMANDS = {"begin", "begin work", "begin transaction", "start transaction", "commit", "commit work",
                         "commit transaction", "end", "end work", "end transaction", "rollback", "rollback work",
                         "rollback transaction", "abort", "abort work", "abort transaction"}
_WRITE_HEADS = ("insert into ", "update ", "delete from ")


def quick_plain_command(payload: bytes) -> bool:
    """A conservative test on a Query message's bytes: a plain transaction command (BEGIN, COMMIT,
    ROLLBACK, ... without options) or a plain INSERT/UPDATE/DELETE, which Session.execute passes to
    PostgreSQL unchanged on a root branch (Session.writes_pass_through). Same refusals as
    quick_plain_select; False means "ask the full path"."""
    if not payload.isascii() or payload.find(b"\0") != len(payload) - 1:
        return False
    low = payload[:-1].decode("ascii").lower().strip().rstrip(";").rstrip()
    if " ".join(low.split()) in _TRANSACTION_COMMANDS:
        return True
    return low.startswith(_WRITE_HEADS) and ";" not in low and not _refused_words(low)


# Text that converts exactly to binary (values.py): the settings read and, where they differ, set (in a
# subquery, so every setting is read before one is set); the client's are put back after the statement.
_EXACT_TEXT = (b"SELECT d, i, f, CASE WHEN d NOT LIKE 'ISO%' THEN set_config('DateStyle', 'ISO', false) END, "
               b"CASE WHEN i <> 'postgres' THEN set_config('IntervalStyle', 'postgres', false) END, "
               b"CASE WHEN f::int < 1 THEN set_config('extra_float_digits', '3', false) END "
               b"FROM (SELECT current_setting('DateStyle') d, current_setting('IntervalStyle') i, "
               b"current_setting('extra_float_digits') f OFFSET 0) s")
_SETTINGS_BACK = b"SELECT set_config($1, $2, false), set_config($3, $4, false), set_config($5, $6, false)"
_ROWLESS_HEADS = ("INSERT", "UPDATE", "DELETE", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT",
                  "RELEASE", "SET", "RESET", "DISCARD", "LOCK", "LISTEN", "UNLISTEN", "NOTIFY")


def may_return_rows(stmt: str) -> bool:
    """False for statements that never return rows (cheap; True when unsure)."""
    return not head(stmt).startswith(_ROWLESS_HEADS) or "RETURNING" in stmt.upper()


# SET client_encoding / SET NAMES / set_config('client_encoding', ...): group 2 the value
_SET_ENCODING = re.compile(r"\s*SET\s+(?:SESSION\s+|LOCAL\s+)?(?:client_encoding\s*(?:=|\bTO\b)\s*|NAMES\s+)('?)([^';\s]*)"
                           r"|.*?\bset_config\s*\(\s*'client_encoding'\s*,\s*(')([^']*)'", re.IGNORECASE | re.DOTALL)
UTF8_NAMES = {"UTF8", "UNICODE", "SQLASCII"}


def is_utf8(encoding: str) -> bool:
    """Whether a client_encoding name means UTF8 (as PostgreSQL's clean_encoding_name: only letters and
    digits count, so 'utf-8' from asyncpg, quotes included)."""
    return "".join(ch for ch in encoding.upper() if ch.isalnum()) in UTF8_NAMES


def refuse_client_encoding(stmt: str) -> None:
    """A statement setting client_encoding to anything but UTF8: refused, as at startup (the endpoint
    reads and writes UTF8 only)."""
    low = stmt.lower()
    if "encoding" not in low and "names" not in low:
        return
    m = _SET_ENCODING.match(stmt)
    if m is None:
        return
    value = m.group(2) if m.group(2) is not None else m.group(4)
    if value and not is_utf8(value) and value.upper() != "DEFAULT":
        raise error("0A000", f'client_encoding "{value}" is not supported: use UTF8',
                    hint="The HeliosDB endpoint speaks UTF8 only: let the client convert text.")


def may_run_in_transaction(stmt: str) -> bool:
    """Statements an implicit transaction may wrap (never VACUUM, CREATE DATABASE, branch statements...)."""
    kind = classify(stmt)
    if kind is Kind.PASSTHROUGH:
        return head(stmt).startswith(_IMPLICIT_HEADS)
    return kind in _IMPLICIT_KINDS and "CONCURRENTLY" not in head(stmt)


@dataclass
class Bound:
    """Parameter values bound to a statement's $n placeholders."""

    values: list[Raw]
    spans: list[tuple[int, int, int]]


class Protocol:
    """Statement handling for one client connection bound to one Session."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.portals: dict[str, Any] = {}  # the extended protocol's portals (see extended.py)
        self.implicit = False
        self.skipping = False  # after an error in an extended batch: discard until Sync
        self.batch_failed = False
        self.busy = False
        self.statements_run = 0
        self.type_names: dict[int, str] = {}
        self.reported: dict[str, str] = {}
        self._raw_status: dict[bytes, bytes] = {}
        self._status_dirty = True  # a statement may have changed a reported setting or the branch
        self._no_relay = False
        self._storage_blocking = False  # the storage socket is in blocking mode (relay.py)
        self._relayed_status: pq.TransactionStatus | None = None  # set when libpq's status is out of date
        # psycopg deallocates every prepared statement of its connection after some commands (DROP,
        # ROLLBACK, ...): a statement made on the storage connection is known to exist only until the
        # session runs something itself (session_runs counts those); after that it is made again.
        self.session_runs = 0
        self.auto = AutoStatements()  # statements made from parameterized Queries (autoparam.py)
        self.listening = False  # after LISTEN: notifications may arrive between commands
        self._notices: list[dict[str, Any]] = []
        self._notifies: list[psycopg.Notify] = []
        self._quiet = False
        self.encoder: Encoder | None = None

    # -- transport (provided by the connection) -------------------------------------------
    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def next_message(self) -> tuple[bytes, bytes] | None:
        raise NotImplementedError

    def peek_kinds(self) -> list[bytes]:
        raise NotImplementedError

    def peek_messages(self, n: int) -> list[tuple[bytes, bytes]]:
        """Up to n complete messages buffered after the current one, not consumed."""
        raise NotImplementedError

    def drop_messages(self, n: int) -> None:
        """Consume the next n buffered messages (after peek_messages)."""
        raise NotImplementedError

    # -- session ------------------------------------------------------------------------------
    def attach(self, session: Session) -> None:
        self.session = session
        self.encoder = Encoder(session.conn, self.type_names)
        session.conn.add_notice_handler(self._on_notice)
        session.conn.add_notify_handler(self._notifies.append)
        self._no_relay = session.conn.pgconn.ssl_in_use  # relayed bytes would bypass the TLS layer

    def _on_notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if not self._quiet and not getattr(self.session, "_internal", False):
            # read the fields now: the Diagnostic is only valid during the callback
            self._notices.append({
                "severity": diag.severity, "severity_nonlocalized": diag.severity_nonlocalized or diag.severity,
                "sqlstate": diag.sqlstate, "message": diag.message_primary, "detail": diag.message_detail,
                "hint": diag.message_hint, "position": diag.statement_position, "where": diag.context,
            })

    @property
    def s(self) -> Session:
        assert self.session is not None
        return self.session

    def ready_message(self) -> bytes:
        if self.session is None:
            return _RFQ_IDLE
        return _RFQ.get(self.session.conn.pgconn.transaction_status, _RFQ_IDLE)

    def emit_notices(self) -> None:
        if not self._notices:
            return
        for fields in self._notices:
            self.send(codec.error_fields(b"N", fields))
        self._notices.clear()

    def emit_parameter_status(self) -> None:
        """ParameterStatus for every reported setting that changed since it was last sent."""
        if not self._status_dirty:
            return
        self._status_dirty = False
        status = self.s.conn.pgconn.parameter_status
        seen = self._raw_status
        for name, key in _REPORTED_KEYS:
            raw = status(key)
            if raw is None or seen.get(key) == raw:
                continue
            seen[key] = raw
            value = raw.decode("utf-8", "replace")
            self.reported[name] = value
            self.send(codec.parameter_status(name, value))
        branch = self.s.branch.name
        if self.reported.get("heliosdb.branch") != branch:
            self.reported["heliosdb.branch"] = branch
            self.send(codec.parameter_status("heliosdb.branch", branch))

    def drain_notifies(self) -> None:
        """Forward the notifications libpq has queued (and those psycopg handed us)."""
        if self._notifies:
            for n in self._notifies:
                self.send(codec.notification(n.pid, n.channel, n.payload))
            self._notifies.clear()
        if self.listening and self.session is not None:
            pg = self.session.conn.pgconn
            while (note := pg.notifies()) is not None:
                self.send(codec.notification(note.be_pid, note.relname.decode("utf-8", "replace"),
                                             note.extra.decode("utf-8", "replace")))

    def ready(self) -> None:
        self.drain_notifies()
        self.send(self.ready_message())

    def send_error(self, exc: errors.Error, offset: int = 0) -> None:
        self.emit_notices()
        pos = exc.position + offset if exc.position else None
        fields = exc.fields
        if "table" in fields and "schema" not in fields and self.session is not None:
            # a HeliosDB table's error came from its storage schema (left out): the schema the user sees it
            # in is the branch's, as PostgreSQL names a table's schema with it
            fields = {**fields, "schema": self.s.branch.user_schema}
        self.send(codec.error_response("ERROR", exc.sqlstate or "XX000", exc.message or "error",
                                       detail=exc.detail, hint=exc.hint, position=pos, **fields))

    def execute(self, stmt: str, params: Any = None) -> Result:
        self.busy = True
        self._status_dirty = True
        if not self.listening and head(stmt).startswith("LISTEN"):
            self.listening = True
        failure: errors.Error | None = None
        try:
            result = self.s.execute(stmt, params)
        except errors.Error as exc:
            failure = exc
            raise
        except psycopg.Error as exc:
            failure = errors.from_psycopg(exc)
            raise failure from None
        except (ClientGone, Fatal):
            raise
        except Exception as exc:  # an engine bug: report it, keep the connection if the storage one lives
            log.exception("internal error running %r", stmt[:200])
            raise error("XX000", f"internal error: {type(exc).__name__}: {exc}") from None
        finally:
            self.busy = False
            self.statements_run += 1
            if self.s.conn.broken or self.s.conn.closed:
                raise storage_lost(failure)
        if result.notices:  # HeliosDB's own ("NOTICE:  table ... does not exist, skipping"); PostgreSQL's
            relayed = {n["message"] for n in self._notices}  # came with all their fields (_on_notice)
            for text in result.notices:
                severity, _, message = text.partition(":")
                if message.strip() not in relayed:
                    self._notices.append({"severity": severity, "severity_nonlocalized": severity,
                                          "sqlstate": "00000", "message": message.strip()})
        return result

    def result_rows(self, result: Result, formats: list[int], retext: bool = False) -> Rows | None:
        cur = result.cursor
        if cur is None:
            return None
        assert self.encoder is not None
        pgr = getattr(cur, "pgresult", None)  # a cursor's, or the one rows held by the session came from
        if pgr is not None and pgr.status == pq.ExecStatus.TUPLES_OK:
            return from_pgresult(pgr, formats, self.encoder, retext)
        if isinstance(cur, psycopg.Cursor) and cur.description is None:
            return None
        if result.description is None:
            return None
        return from_python(result.description, result.fetchall(), formats, self.encoder, retext)

    @contextlib.contextmanager
    def exact_text(self, stmt: str, formats: list[int]) -> Iterator[bool]:
        """Around a statement whose text results may become binary ones here (values.py): DateStyle ISO,
        IntervalStyle postgres and extra_float_digits >= 1 while it runs, where the client's differ (their
        text is not exact: abbreviated time zones, rounded floats), the client's put back after it. Yields
        whether settings were changed: then columns wanted in text are written again in the client's.
        In a transaction the statement fails, the client's rollback puts them back."""
        changed = self._exact_settings(stmt, formats)
        try:
            yield bool(changed)
        finally:
            if changed:
                pg = self.s.conn.pgconn
                if pg.transaction_status != _INERROR and pg.status == pq.ConnStatus.OK:
                    back = [v.encode() for pair in changed for v in pair]
                    back += back[:2] * (3 - len(changed))
                    pg.exec_params(_SETTINGS_BACK, back)

    def _exact_settings(self, stmt: str, formats: list[int]) -> list[tuple[str, str]]:
        """The settings _EXACT_TEXT changed, with the client's values; nothing for a statement that does not
        want binary results, returns no rows or sets a setting itself."""
        pg = self.s.conn.pgconn
        if (1 not in formats or pg.transaction_status == _INERROR or not may_return_rows(stmt)
                or "set_config" in stmt.lower()):
            return []
        res = pg.exec_(_EXACT_TEXT)
        if res.status != pq.ExecStatus.TUPLES_OK:
            raise pgresult_error(res)
        names = ("DateStyle", "IntervalStyle", "extra_float_digits")
        return [(names[c], (res.get_value(0, c) or b"").decode()) for c in range(3) if res.get_value(0, c + 3)]

    # -- implicit transactions -------------------------------------------------------------------
    def begin_implicit(self, stmt: str, more: bool) -> bool:
        """Open (or leave) the implicit transaction around `stmt`; True when `stmt` was a BEGIN absorbed."""
        s = self.s
        if self.implicit:
            if not s.in_transaction:
                self.implicit = False
            elif classify(stmt) is Kind.TRANSACTION:
                self.implicit = False  # the user's BEGIN adopts it; COMMIT/ROLLBACK end it
                return head(stmt).startswith(("BEGIN", "START"))
            elif not may_run_in_transaction(stmt):
                self.end_implicit(True)
            return False
        if more and not s.in_transaction and may_run_in_transaction(stmt):
            self.execute("BEGIN")
            self.implicit = True
        return False

    def end_implicit(self, ok: bool) -> None:
        if not self.implicit:
            return
        self.implicit = False
        if not self.s.in_transaction:
            return
        try:
            self.execute("COMMIT" if ok and not self.s.transaction_failed else "ROLLBACK")
        except errors.Error as exc:
            self.send_error(exc)

    # -- simple query -------------------------------------------------------------------------------
    def relay_simple(self, text: str, payload: bytes) -> bool:
        """A one-statement plain read outside a transaction: relayed to PostgreSQL as it is (see relay.py)."""
        if not self._can_relay():
            return False
        stmts = split_with_offsets(text)
        if len(stmts) != 1 or not self.is_plain_read(stmts[0][0]) or "set_config" in text.lower():
            return False
        return self._relay(frame(b"Q", payload))

    def relay_quick(self, payload: bytes) -> bool:
        """relay_simple for a Query that quick_plain_select or quick_plain_command accepts (a command
        only where writes pass through): no decoding, no classification. Also inside a transaction.
        Outside one, a text seen before with other numbers runs as a prepared statement (autoparam.py)."""
        session = self.session
        if session is None or session.as_of is not None or payload.find(b"\0") != len(payload) - 1:
            return False
        auto = parameterize(payload[:-1])
        if auto is not None:
            key = auto[0] + auto[2]
            stmt = self.auto.made.get(key)
            if stmt is not None:  # its text passed the checks below (numbers do not change their outcome)
                if not (stmt.select or session.writes_pass_through) or not self._can_relay(idle_only=False):
                    return False
                if self.transaction_idle():
                    return self._relay_prepared(stmt, auto[1], payload)
                return self._relay(frame(b"Q", payload))
        select = quick_plain_select(payload)
        if not (select or session.writes_pass_through and quick_plain_command(payload)):
            return False
        if not self._can_relay(idle_only=False):
            return False
        if auto is not None and self.transaction_idle():
            stmt = self.auto.add(key, auto[0], auto[2], select)
            if stmt is not None:
                return self._relay_prepared(stmt, auto[1], payload)
        return self._relay(frame(b"Q", payload))

    def _relay_prepared(self, stmt: AutoStatement, values: list[bytes], payload: bytes) -> bool:
        """Run a parameterized Query (outside a transaction) as its storage statement, made first when
        it may not exist; the client sees only the answers a Query would have had. Should PostgreSQL
        refuse the statement before running it (a text that does not parse with parameters, a plan
        that needs a constant, a result type changed by DDL elsewhere), the answer is not passed on:
        the text is not parameterized again and the client's Query runs as it is."""
        closing = self.auto.take_closing()
        make = stmt.made != self.session_runs
        if not make and not closing:
            data = stmt.run_messages(values)
        else:
            msgs = [frame(b"C", b"S" + name + b"\0") for name in closing]
            if make:
                if stmt.made >= 0:
                    msgs.append(frame(b"C", b"S" + stmt.name + b"\0"))  # it may still be there
                msgs.append(stmt.parse_message())
            msgs.append(stmt.run_messages(values))
            data = b"".join(msgs)
        hider = Hider(self.send, b"312n", until=0x32)  # up to BindComplete: nothing has run yet
        self._relay(data, hider)
        if make:
            stmt.made = self.session_runs if 0x31 in hider.hidden else -1
        if not hider.failed:
            return True
        self.auto.refuse(stmt)
        return self._relay(frame(b"Q", payload))

    def storage_for_psycopg(self) -> None:
        """Hand the storage connection back to psycopg after relaying: the socket in the non-blocking
        mode libpq expects, and libpq's idea of the transaction status brought up to date (an empty
        query: relayed BEGIN, COMMIT and errors went past it)."""
        if self._storage_blocking:
            self._storage_blocking = False
            if self.session is not None and not self.s.conn.closed:
                os.set_blocking(self.s.conn.pgconn.socket, False)
        if self._relayed_status is not None:
            self._relayed_status = None
            if self.session is not None and not self.s.conn.closed:
                self.s.conn.pgconn.exec_(b"")

    def _can_relay(self, idle_only: bool = True) -> bool:
        if self._no_relay or self.listening or self.implicit or self.session is None or self.session.branch_check:
            return False  # branch_check: the session must first see where a rollback left it
        if self._relayed_status is not None:
            return not idle_only or self._relayed_status == _IDLE
        status = self.session.conn.pgconn.transaction_status
        return status == _IDLE or not idle_only and status in (_INTRANS, _INERROR)

    def transaction_idle(self) -> bool:
        """Whether the storage connection is outside a transaction (relayed answers included)."""
        status = self._relayed_status
        return (status if status is not None else self.s.conn.pgconn.transaction_status) == _IDLE

    def _relay(self, data: bytes, hider: Hider | None = None) -> bool:
        """Relay whole messages ending in a Query or a Sync (the caller checked _can_relay); `hider`
        leaves out the answers to messages the endpoint put in front of the client's."""
        pg = self.s.conn.pgconn
        fd = pg.socket
        if not self._storage_blocking:
            os.set_blocking(fd, True)
            self._storage_blocking = True
        self.busy = True
        try:
            status = relay_messages(fd, data, hider or self.send, self.s.branch.user_schema.encode("utf-8"))
        except RelayError as exc:
            raise Fatal("08006", f"the connection to the storage server was lost: {exc}", exc.relayed) from None
        finally:
            self.busy = False
            self.statements_run += 1
        # libpq did not see this ReadyForQuery: remember the status when it differs from libpq's
        now = _RELAYED_STATUS.get(status)
        if now is None:
            raise Fatal("XX000", f"unexpected transaction status {status!r} from the storage server")
        self._relayed_status = None if now == pg.transaction_status else now
        if now == _IDLE:
            self.portals.clear()  # no transaction: no portal (a relayed COMMIT ends the session's ones)
        else:
            self.portals.pop("", None)
        return True

    def simple_query(self, text: str) -> None:
        self.portals.pop("", None)
        stmts = split_with_offsets(text)
        if not stmts:
            self.send(codec.EMPTY_QUERY)
        ok = True
        for i, (stmt, offset) in enumerate(stmts):
            try:
                if self.begin_implicit(stmt, more=i < len(stmts) - 1):
                    self.send(codec.command_complete("BEGIN"))
                    continue
                if is_stdio_copy(stmt):
                    self.copy(stmt)
                    continue
                rows, tag = self.run_statement(stmt, None, [])
                if rows is not None:
                    self.send(rows.description)
                    rows.encode(0, self.send)
                self.send(codec.command_complete(tag))
            except errors.Error as exc:
                self.send_error(exc, offset)
                ok = False
                break
        self.end_implicit(ok)
        self.emit_parameter_status()
        self.ready()

    # -- COPY ----------------------------------------------------------------------------------------------
    def copy(self, stmt: str) -> None:
        self.busy = True
        try:
            with self.s.copy(stmt) as (cp, direction):
                pgr = cp.cursor.pgresult
                assert pgr is not None
                formats = [pgr.fformat(i) for i in range(pgr.nfields)]
                overall = 1 if pgr.binary_tuples else 0
                if direction == "in":
                    self.send(codec.copy_response(b"G", overall, formats))
                    self._copy_in(cp)
                else:
                    self.send(codec.copy_response(b"H", overall, formats))
                    for chunk in cp:
                        self.send(codec.copy_data(bytes(chunk)))
                    self.send(codec.COPY_DONE)
        finally:
            self.busy = False
            self.statements_run += 1
        self.emit_notices()
        self.send(codec.command_complete(self.s.last_status or "COPY"))

    def _copy_in(self, cp: psycopg.Copy) -> None:
        self.busy = False  # waiting for the client's data
        try:
            while True:
                msg = self.next_message()
                if msg is None:
                    raise ClientGone("client closed the connection during COPY")
                kind, payload = msg
                if kind == b"d":
                    cp.write(payload)
                elif kind == b"c":
                    return
                elif kind == b"f":
                    raise error("57014", "COPY from stdin failed: " + codec.decode_string(payload))
                elif kind in (b"H", b"S"):
                    continue
                else:
                    raise error("08P01", f"unexpected message type 0x{kind[0]:02X} during COPY from stdin")
        finally:
            self.busy = True
    def run_statement(self, stmt: str, bound: Bound | None, formats: list[int]) -> tuple[Rows | None, str]:
        """Run one statement (with bound parameters); its rows and command tag."""
        tag = self.local_command(stmt)
        if tag is not None:
            return None, tag
        refuse_client_encoding(stmt)
        if self.is_plain_read(stmt):
            rows, tag = self._plain_read(stmt, bound, formats)
        else:
            text, params = (stmt, None) if bound is None else self._bound_text(stmt, bound)
            with self.exact_text(stmt, formats) as retext:
                result = self.execute(text, params)
                rows = self.result_rows(result, formats, retext)
            tag = result.status or _default_tag(rows)
        self.emit_notices()
        return rows, tag

    def local_command(self, stmt: str) -> str | None:
        """A statement about the protocol's own objects, answered here (its command tag), else None."""
        return None

    def is_plain_read(self, stmt: str) -> bool:
        """A read that Session.execute would hand to PostgreSQL unchanged (no HeliosDB syntax, no context)."""
        if not head(stmt).startswith(_READ_HEADS) or self.s.as_of is not None:
            return False
        info = statement_info(stmt)  # remembered per text, as the session classifies it
        return (info.kind is Kind.PASSTHROUGH and not info.temporal and not info.sequence
                # a branch's schema: the session makes it at the branch's first use
                and not info.branch_schema
                # a locking read on a branch takes the branch's lock first (Session._run_passthrough)
                and (self.s.branch.parent_id is None or LOCKING_READ.search(stmt) is None)
                # GROUP BY a table's key: the session adds the columns that depend on it
                and (not info.grouped or self.s.regrouped(stmt) == stmt) and not info.sampled)

    def _plain_read(self, stmt: str, bound: Bound | None, formats: list[int]) -> tuple[Rows | None, str]:
        """Run a plain read on the session's storage connection directly (no cursor object needed)."""
        pg = self.s.conn.pgconn
        self.busy = True
        if "set_config" in stmt.lower():
            self._status_dirty = True
        # one format for all columns: PostgreSQL's own values; mixed ones: exact text, converted here
        fmt = formats[0] if formats and all(f == formats[0] for f in formats) else 0
        try:
            with self.exact_text(stmt, formats if fmt == 0 else []) as retext:
                if fmt == 0 and (bound is None or not bound.values):
                    res = pg.exec_(stmt.encode("utf-8"))
                else:
                    vals = bound.values if bound is not None else []
                    res = pg.exec_params(stmt.encode("utf-8"), [v.data for v in vals], [v.oid for v in vals],
                                         [v.fmt for v in vals], fmt)
        finally:
            self.busy = False
            self.statements_run += 1
        status = res.status
        if status == pq.ExecStatus.TUPLES_OK:
            assert self.encoder is not None
            rows = from_pgresult(res, formats, self.encoder, retext)
            return rows, (res.command_status or b"").decode() or _default_tag(rows)
        if status == pq.ExecStatus.COMMAND_OK:
            return None, (res.command_status or b"").decode()
        if status == pq.ExecStatus.EMPTY_QUERY:
            return None, "OK"
        if self.s.conn.broken or pg.status != pq.ConnStatus.OK:
            raise storage_lost(pgresult_error(res))
        raise pgresult_error(res)

    def _bound_text(self, q: str, bound: Bound) -> tuple[str, Any]:
        if not bound.spans:
            return q, None
        s = self.s
        kind = classify(q)
        literal = (kind not in (Kind.PASSTHROUGH, Kind.TRANSACTION) or has_temporal(q)
                   or (s.branch.parent_id is not None and (is_write(q) or LOCKING_READ.search(q) is not None)))
        if literal:
            self._quiet = True
            try:
                return substitute(s.conn, q, bound.spans, bound.values, self.type_names), None
            except psycopg.Error as exc:
                raise errors.from_psycopg(exc) from None
            finally:
                self._quiet = False
        return to_psycopg(q, bound.spans, bound.values)


def _default_tag(rows: Rows | None) -> str:
    return f"SELECT {rows.ntuples}" if rows is not None else "OK"


