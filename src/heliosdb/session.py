"""One HeliosDB session: a storage connection, its branch and its transaction.

Statements that carry no HeliosDB syntax go to PostgreSQL as they are (the
branch is selected through search_path); branch statements and table DDL are
handled here, each atomically (a transaction, or a savepoint inside the
user's transaction).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from heliosdb import errors
from heliosdb.branching.types import DROP_TYPE
from heliosdb.catalog.bootstrap import ensure_catalog
from heliosdb.catalog.cache import CatalogCache
from heliosdb.catalog.model import TYPES_SCHEMA, Branch, Snapshot, get_branch, get_branch_by_id
from heliosdb.sql import groupby, sequences, tablesample
from heliosdb.sql.classify import (
    LOCKING_READ,
    Kind,
    changes_schema,
    classify,
    has_temporal,
    head,
    select_into_as_create,
)
from heliosdb.sql.names import IDENT, QUALIFIED, Name, quote_ident, quote_qualified, read_name, tokenize
from heliosdb.sql.split import split_statements, strip_comments
from heliosdb.storage.instance import DEFAULT_DATABASE, Instance
from heliosdb.storage.statements import execute_replanned, keep_users_statements
from heliosdb.temporal import rewrite

if TYPE_CHECKING:
    from heliosdb.temporal.prepared import Held

_BRANCH_LOCK_CLASS = 0x4844  # advisory lock class: sessions hold it shared on their branch


class _Rows:
    """Rows already fetched, shaped like the part of a cursor Result uses."""

    def __init__(self, description: Any, rows: list[tuple[Any, ...]] | None) -> None:
        self.description = description
        self._rows = rows
        self.pgresult: Any = None  # held(): the values as PostgreSQL sent them (the wire endpoint's)
        self._tx: Any = None

    @classmethod
    def held(cls, cur: psycopg.Cursor[Any]) -> _Rows:
        """The cursor's current result, kept as PostgreSQL sent it before the cursor moves on; its values
        are loaded into Python only when asked."""
        rows = cls(cur.description, None)
        rows.pgresult = cur.pgresult
        rows._tx = psycopg.adapt.Transformer(cur)
        rows._tx.set_pgresult(rows.pgresult)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = self._tx.load_rows(0, self.pgresult.ntuples, tuple)
        rows, self._rows = self._rows, []
        return rows


class Result:
    """What one statement returned: rows (through a cursor) and/or a command tag.

    A plain class with slots, not a dataclass: one is built per statement, and building
    a dataclass (a default factory) cost a measurable share of a point lookup's overhead.
    """

    __slots__ = ("_status", "cursor", "rowcount", "notices", "_description", "_pgresult")

    def __init__(self, status: str | None, cursor: Any = None, rowcount: int = -1,
                 notices: list[str] | None = None, pgresult: Any = None) -> None:
        self._status = status
        self.cursor: psycopg.Cursor[Any] | None = cursor
        self.rowcount = rowcount
        self.notices: list[str] = notices if notices is not None else []
        self._description: Any = False
        self._pgresult = pgresult  # status None: the command tag comes from here when asked

    @property
    def status(self) -> str:
        # decoded when asked: most DB-API reads never look at the command tag
        if self._status is None:
            tag = self._pgresult.command_status if self._pgresult is not None else None
            self._status = tag.decode() if tag else ""
        return self._status

    def __repr__(self) -> str:
        return f"Result(status={self.status!r}, rowcount={self.rowcount})"

    @property
    def description(self) -> Any:
        # psycopg builds description objects on every access: take them once, when asked
        if self._description is False:
            self._description = self.cursor.description if self.cursor is not None else None
        return self._description

    @property
    def has_rows(self) -> bool:
        """Whether the statement returned a result set (cheaper than building its description)."""
        pgresult = self._pgresult
        if pgresult is None:
            if self.cursor is None:
                return False
            pgresult = getattr(self.cursor, "pgresult", None)
            if pgresult is None:
                return self.description is not None
        return pgresult.status == _TUPLES_OK

    def fetchall(self) -> list[tuple[Any, ...]]:
        if not self.has_rows:
            return []
        return self.cursor.fetchall()  # type: ignore[union-attr]


_WRITE_HEADS = ("INSERT", "UPDATE", "DELETE", "MERGE")
_IDLE = pq.TransactionStatus.IDLE
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_INERROR = pq.TransactionStatus.INERROR
_NOTHING = sql.SQL("")
_DDL_INITIALS = frozenset("CcDd")  # CREATE TYPE, DROP TYPE, COMMENT ON TABLE: rewritten before running
# COMMENT ON TABLE name IS ...: group 1 the word TABLE, group 2 the name
_COMMENT_ON_TABLE = re.compile(rf"\s*COMMENT\s+ON\s+(TABLE)\s+({QUALIFIED})\s+IS\b", re.IGNORECASE)
# A type named with a schema that does not have it (group 1: its name)
_QUALIFIED_TYPE = re.compile(r'type "(?!' + TYPES_SCHEMA + r'\.)[^".]+\.([^".]+)" does not exist')
# CREATE TYPE / CREATE DOMAIN with an unqualified name (group 2)
_CREATE_TYPE = re.compile(rf'\s*CREATE\s+(TYPE|DOMAIN)\s+({IDENT})(?![\w$"]|\s*\.)', re.IGNORECASE)
# CREATE [UNLOGGED] SEQUENCE [IF NOT EXISTS] with an unqualified name (group 2); not TEMP ones
_CREATE_SEQUENCE = re.compile(
    rf'\s*CREATE\s+(?:UNLOGGED\s+)?(SEQUENCE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?!IF\s+NOT\b)({IDENT})(?![\w$"]|\s*\.)',
    re.IGNORECASE)
_RESETS = re.compile(r"\s*(DISCARD\s+ALL|RESET\s+(ALL|search_path))\b", re.IGNORECASE)
_WRITE_IN_CTE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def is_write(stmt: str) -> bool:
    """Whether a plain statement may write rows (cheap: first word, or a CTE's verbs)."""
    words = head(stmt)
    if words.startswith(_WRITE_HEADS):
        return True
    return words.startswith("WITH") and bool(_WRITE_IN_CTE.search(stmt))


# The rows an INSERT ... ON CONFLICT DO UPDATE on an inherited table inserted or updated so far
# (the branch's write trigger refuses a second one with 21000), or an UPDATE ... FROM updated so far
# (the trigger skips a row's later matches); emptied after each statement.
_OC_ROWS = sql.SQL(
    "DO $$ BEGIN IF to_regclass('pg_temp._hdb_oc_rows') IS NULL THEN "
    "CREATE TEMP TABLE _hdb_oc_rows (rid bigint PRIMARY KEY); END IF; END $$;\n"
)
# An UPDATE that may join (UPDATE ... FROM, also in a WITH): a view's INSTEAD OF trigger runs once per
# joined row, where PostgreSQL updates each row of a table once (by one of its matches)
_UPDATE_FROM = re.compile(r"\bUPDATE\b.*\bFROM\b", re.IGNORECASE | re.DOTALL)
_OC_ROWS_OFF = sql.SQL(";\nDELETE FROM pg_temp._hdb_oc_rows")
# INSERT ... OVERRIDING USER VALUE: the trigger gives identity columns their next value
_OVERRIDING_USER = re.compile(r"\bOVERRIDING\s+USER\s+VALUE\b", re.IGNORECASE)


def _setting(name: str, value: str) -> tuple[sql.Composable, sql.Composable]:
    """Statements that set a transaction-local setting for the branch's write triggers, and reset it."""
    return (sql.SQL("SELECT set_config({}, {}, true);\n").format(sql.Literal(name), sql.Literal(value)),
            sql.SQL(";\nSELECT set_config({}, '', true)").format(sql.Literal(name)))


def _write_settings(stmt: str, upsert: tuple[str, str] | None) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """What a write on a branch's inherited tables tells their write triggers: the statements to run before it
    (one result each) and after it (none: nothing to tell)."""
    on: list[sql.Composable] = []
    off: list[sql.Composable] = []
    if upsert is not None:
        setting = _setting("heliosdb.on_conflict", upsert[1])
        on, off = [setting[0]], [setting[1]]
        if '"action": "update"' in upsert[1]:  # the rows it wrote, for the trigger's 21000 check
            on, off = [*on, _OC_ROWS], [_OC_ROWS_OFF, *off]
    elif _UPDATE_FROM.search(stmt) is not None:  # the trigger updates each row once
        setting = _setting("heliosdb.update_once", "on")
        on, off = [setting[0], _OC_ROWS], [_OC_ROWS_OFF, setting[1]]
    if _OVERRIDING_USER.search(stmt) is not None:
        setting = _setting("heliosdb.overriding_user", "on")
        on, off = [*on, setting[0]], [*off, setting[1]]
    return on, off

@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What the session needs to know about a statement's text before running it."""

    kind: Kind
    temporal: bool  # may hold a time-travel clause (PASSTHROUGH / CREATE TABLE only)
    grouped: bool  # may have a GROUP BY (see Session.regrouped)
    sequence: bool  # may call pg_get_serial_sequence (see sql/sequences.py)
    write: bool  # may write rows
    resets: bool  # DISCARD ALL / RESET ...: the branch binding must be put back
    as_create: str | None = None  # SELECT ... INTO a table, as the CREATE TABLE ... AS it means
    branch_schema: bool = False  # may name a branch's schema (br_<name>.t), made at the branch's first use
    sampled: bool = False  # may have a TABLESAMPLE (sql/tablesample.py)


_INFO: dict[str, StatementInfo] = {}
_INFO_MAX = 1024  # distinct statement texts remembered (applications repeat a few texts)
_INFO_MAX_LEN = 4096  # longer texts (bulk INSERTs) are classified every time


def statement_info(stmt: str) -> StatementInfo:
    """classify() and friends for a statement text, remembered: the per-statement hot path is a dict lookup."""
    info = _INFO.get(stmt)
    if info is None:
        kind = classify(stmt)
        info = StatementInfo(
            kind,
            kind in (Kind.PASSTHROUGH, Kind.CREATE_TABLE) and has_temporal(stmt),
            groupby.needs_look(stmt),
            sequences.needs_look(stmt),
            is_write(stmt),
            _RESETS.match(stmt) is not None,
            select_into_as_create(stmt) if kind is Kind.PASSTHROUGH else None,
            "br_" in stmt.lower(),
            tablesample.needs_look(stmt),
        )
        if len(stmt) <= _INFO_MAX_LEN:
            if len(_INFO) >= _INFO_MAX:
                _INFO.clear()
            _INFO[stmt] = info
    return info


def refuse_engine_setting(stmt: str) -> None:
    """SET / RESET (or set_config()) of a heliosdb.* parameter: HeliosDB keeps them (USE BRANCH moves the
    session)."""
    from heliosdb.sql.classify import ENGINE_SET_CONFIG, ENGINE_SETTING

    m = ENGINE_SETTING.match(stmt) or ENGINE_SET_CONFIG.search(stmt)
    name = re.sub(r'[\s"]', "", m.group(1)).lower() if m else "heliosdb.*"
    raise errors.lookup("55P02")(
        f'parameter "{name}" cannot be changed: HeliosDB sets it', sqlstate="55P02",
        hint="Use USE BRANCH <name> to change the session's branch.",
    )


# How many times an autocommit AS OF statement is prepared again when DDL or GC keeps moving the catalog.
_TEMPORAL_ATTEMPTS = 5


_PREPARE = re.compile(r"\s*PREPARE\s", re.IGNORECASE)


def _url_database(storage: str | None) -> str | None:
    if not storage:
        return None
    try:
        return psycopg.conninfo.conninfo_to_dict(storage).get("dbname") or None  # type: ignore[return-value]
    except psycopg.Error:
        return None  # connecting reports the bad URL


def _guard_failed(exc: Exception) -> bool:
    return getattr(exc, "sqlstate", None) == "HDC01"


class Session:
    """A connection to one HeliosDB database, bound to a branch."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        storage: str | None = None,
        database: str | None = None,
        branch: str = "main",
        background: bool = False,
    ) -> None:
        self.instance: Instance | None = None
        if database is None:  # the one a storage URL names, else the default
            database = _url_database(storage) or DEFAULT_DATABASE
        self.database = database
        self.collector: Any = None
        self.scheduler: Any = None
        try:
            if storage:
                self._connect_args: dict[str, Any] = {"conninfo": storage, "dbname": database}
            else:
                self.instance = Instance(data_dir)
                self.instance.acquire()
                self._connect_args = dict(self.instance.conninfo(database))
            self.conn = self.new_connection()
        except psycopg.Error as exc:
            if self.instance is not None:
                self.instance.release()
            raise errors.from_psycopg(exc) from None
        try:
            self._open(branch, background)
        except psycopg.Error as exc:
            self.close()
            raise errors.from_psycopg(exc) from None
        except errors.Error:
            self.close()
            raise

    def _open(self, branch: str, background: bool) -> None:
        self.notices: list[str] = []
        self.progress: tuple[str, int, int] | None = None  # (what, done, total) of a long statement, for the shell
        self.last_status = ""
        self.text_results = False
        self._internal = False
        self.as_of: Any = None  # temporal context (heliosdb.temporal.rewrite.Resolved) or None
        self.as_of_views: list[str] = []
        # PREPAREd statements with a parameter in a time-travel clause, by name (temporal/prepared.py)
        self.held_statements: dict[str, Held] = {}
        self.catalog = CatalogCache()  # time travel's catalog reads, checked against the catalog generation
        self.conn.add_notice_handler(self._on_notice)
        ensure_catalog(self.conn)
        self._session_branch: Branch = get_branch(self.conn, "main")  # type: ignore[assignment]
        self._tx_branch: Branch | None = None
        # USE BRANCH or a temporal context inside a transaction block: a rollback reverts its search_path
        # and views, as for SET; the session follows at the transaction's end or ROLLBACK TO (_settle_branch)
        self.branch_check = False
        self._locked_branch: int | None = None
        self._bind(self._session_branch, local=False)
        if branch != "main":
            self.use_branch(branch)
        if background:
            self.start_background()

    def start_background(self) -> None:
        """History garbage collection and the materialized-view scheduler (which runs the branch images'
        upkeep), for long-lived processes."""
        from heliosdb.mv.scheduler import Scheduler
        from heliosdb.temporal.gc import Collector

        if self.collector is None:
            self.collector = Collector(self.new_connection)
            self.collector.start()
        if self.scheduler is None:
            self.scheduler = Scheduler(self.new_connection)
            self.scheduler.start()

    def new_connection(self) -> psycopg.Connection[Any]:
        """Another autocommit connection to this session's storage database."""
        return keep_users_statements(psycopg.connect(**self._connect_args, autocommit=True))

    # -- state ----------------------------------------------------------------
    @property
    def branch(self) -> Branch:
        if self._tx_branch is not None and self.in_transaction:
            return self._tx_branch
        return self._session_branch

    @property
    def writes_pass_through(self) -> bool:
        """Whether plain INSERT/UPDATE/DELETE go to PostgreSQL unchanged: on a root branch (main), not in
        a USE BRANCH ... FOR TRANSACTION, no temporal context (see _run_passthrough)."""
        return self._tx_branch is None and self._session_branch.parent_id is None and self.as_of is None

    # pgconn directly: conn.info builds a new object per access (3 us, on every statement's path)
    @property
    def in_transaction(self) -> bool:
        return self.conn.pgconn.transaction_status != _IDLE

    @property
    def transaction_failed(self) -> bool:
        return self.conn.pgconn.transaction_status == _INERROR

    def _on_notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if self._internal:
            return  # notices of HeliosDB's own catalog work are not the user's business
        self.notices.append(f"{diag.severity}:  {diag.message_primary}")

    def refresh_branch(self) -> None:
        """Re-read the session's branch row (options, read-only flag) from the catalog."""
        self._session_branch = get_branch_by_id(self.conn, self._session_branch.id)

    def _bind(self, branch: Branch, *, local: bool) -> None:
        """Point search_path (and heliosdb.branch) at the branch."""
        path = branch.search_path
        if local:  # for this transaction: the branch is in use until it ends (DROP refuses it, HD003)
            self.conn.execute(
                "SELECT set_config('search_path', %s, true), set_config('heliosdb.branch', %s, true), "
                "pg_advisory_xact_lock_shared(%s, %s)", (path, branch.name, _BRANCH_LOCK_CLASS, branch.id))
            return
        self.conn.execute(
            "SELECT set_config('search_path', %s, false), set_config('heliosdb.branch', %s, false)",
            (path, branch.name),
        )
        if self._locked_branch != branch.id:
            if self._locked_branch is not None:
                self.conn.execute(
                    "SELECT pg_advisory_unlock_shared(%s, %s)", (_BRANCH_LOCK_CLASS, self._locked_branch)
                )
            self.conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (_BRANCH_LOCK_CLASS, branch.id))
            self._locked_branch = branch.id

    @contextlib.contextmanager
    def acting_on(self, branch: Branch) -> Iterator[None]:
        """Inside a transaction: run HeliosDB's own statements as if on `branch`, then come back."""
        from heliosdb.branching.branches import ensure_built

        branch = ensure_built(self.conn, branch)
        saved_tx, saved_path = self._tx_branch, self.conn.execute("SELECT current_setting('search_path')").fetchone()
        self._tx_branch = branch
        self.conn.execute("SELECT set_config('search_path', %s, true)", (branch.search_path,))
        try:
            yield
        finally:
            self._tx_branch = saved_tx
            if not self.transaction_failed:
                self.conn.execute("SELECT set_config('search_path', %s, true)", (saved_path[0],))  # type: ignore[index]

    def use_branch(self, name: str, *, for_transaction: bool = False) -> Branch:
        from heliosdb.branching.branches import ensure_built

        target = get_branch(self.conn, name)
        assert target is not None
        target = ensure_built(self.conn, target)
        if for_transaction:
            if not self.in_transaction:
                raise errors.lookup("25P01")(
                    "USE BRANCH ... FOR TRANSACTION can only be used in transaction blocks",
                    sqlstate="25P01",
                )
            self._tx_branch = target
            self._bind(target, local=True)
        else:
            self._session_branch = target
            self._tx_branch = None
            self._bind(target, local=False)
            if self.in_transaction:
                self.branch_check = True
        return target

    def _settle_branch(self) -> None:
        """After a transaction, or a ROLLBACK TO SAVEPOINT, that ran USE BRANCH or changed the temporal
        context: a rollback put search_path, heliosdb.branch, heliosdb.as_of and the context's
        temporary views back; follow them."""
        if self.transaction_failed:
            return  # nothing was undone yet
        self.branch_check = self.in_transaction  # a later rollback may undo more
        row = self.conn.execute(
            "SELECT current_setting('heliosdb.branch', true), current_setting('heliosdb.as_of', true)").fetchone()
        name, as_of = row if row else (None, None)
        # inside USE BRANCH ... FOR TRANSACTION heliosdb.branch names the transaction's branch
        if name and name != self._session_branch.name and self._tx_branch is None:
            back = get_branch(self.conn, name, missing_ok=True)
            if back is not None:
                self._session_branch = back
            self._bind(self._session_branch, local=False)  # and its shared lock (not transactional)
        from heliosdb.temporal.context import settle

        settle(self, as_of)

    # -- execution --------------------------------------------------------------
    def run(self, text: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Iterator[Result]:
        """Execute every statement in `text`, yielding one Result each."""
        stmts = split_statements(text)
        if params is not None and len(stmts) == 1:
            yield self.execute(stmts[0], params)
            return
        for stmt in stmts:
            yield self.execute(stmt, params)

    def report_progress(self, what: str, done: int, total: int) -> None:
        """A long statement's progress (merges: per table; refreshes: per view), read by the shell's progress bar."""
        self.progress = (what, done, total)

    def execute(self, stmt: str, params: Sequence[Any] | dict[str, Any] | None = None,
                cursor: psycopg.Cursor[Any] | None = None) -> Result:
        """Run one statement. `cursor`: a psycopg cursor to reuse for the result (its previous one is done)."""
        if self.held_statements:
            held = self._held(stmt, params, cursor)
            if held is not None:
                return held
        notices: list[str] = []
        self.notices = notices
        self.progress = None
        if self.branch_check and not self.in_transaction:
            self._settle_branch()
        info = statement_info(stmt)
        if info.as_create is not None:  # SELECT ... INTO a table: a HeliosDB table, as CREATE TABLE AS makes
            stmt, info = info.as_create, statement_info(info.as_create)
        kind = info.kind
        if (self.transaction_failed and kind is not Kind.TRANSACTION
                and (kind is not Kind.PASSTHROUGH or info.temporal)):
            # as PostgreSQL answers any statement there; our own work first would only fail on the way
            raise errors.lookup("25P02")("current transaction is aborted, commands ignored until end of "
                                         "transaction block", sqlstate="25P02")
        try:
            if self.as_of is not None and kind not in (Kind.BRANCH, Kind.TEMPORAL, Kind.TRANSACTION,
                                                       Kind.SET_CONSTRAINTS) and (
                    kind is not Kind.PASSTHROUGH or info.write or changes_schema(stmt)):
                from heliosdb.temporal.context import refuse_write

                refuse_write(self)
            if self.as_of is not None and kind is Kind.PASSTHROUGH:
                from heliosdb.temporal.context import requalified

                stmt = requalified(self, stmt)
            if kind is Kind.PASSTHROUGH and info.branch_schema:
                self._build_named_branches(stmt)
            if info.temporal and kind is Kind.PASSTHROUGH:
                result = self._temporal(stmt, params, info, cursor)
            else:
                if info.temporal:
                    if params:
                        stmt = psycopg.ClientCursor(self.conn).mogrify(stmt, params)
                        params = None
                    stmt = rewrite.rewrite(self, stmt)
                if kind is Kind.PASSTHROUGH or kind is Kind.TRANSACTION:
                    if info.grouped and not info.temporal:
                        stmt = self.regrouped(stmt)
                    if info.sampled:
                        stmt = self.sampled(stmt)
                    if info.sequence:
                        if params and sequences.PARAMETER_CALL.search(stmt):  # its arguments as literals
                            stmt, params = psycopg.ClientCursor(self.conn).mogrify(stmt, params), None
                        stmt = sequences.storage_sequences(stmt, self._storage_column)
                    result = self._passthrough(stmt, params, info, cursor)
                else:
                    if params:
                        stmt = psycopg.ClientCursor(self.conn).mogrify(stmt, params)
                    result = self._helios(kind, strip_comments(stmt))
        except psycopg.Error as exc:
            err = errors.from_psycopg(exc)
            if err.sqlstate == "42704" and not err.hint and (m := _QUALIFIED_TYPE.match(err.message)):
                err.hint = (f"HeliosDB keeps types in schema {TYPES_SCHEMA}, shared by every branch: "
                            f"write {m.group(1)} or {TYPES_SCHEMA}.{m.group(1)}.")
            # an error inside HeliosDB's own savepoint (DDL, TRUNCATE) left the transaction going
            self._fail_transaction()
            raise err from None
        except errors.Error:
            self._fail_transaction()
            raise
        except Exception as exc:  # a bug of ours: still an error with a SQLSTATE, never a traceback
            self._fail_transaction()
            raise errors.InternalError(f"internal error: {type(exc).__name__}: {exc}", sqlstate="XX000") from exc
        finally:
            if self._tx_branch is not None and not self.in_transaction:
                self._tx_branch = None
        if self.branch_check and (kind is Kind.TRANSACTION or not self.in_transaction):
            self._settle_branch()  # this statement ended the transaction, or rolled back to a savepoint
        result.notices = notices
        return result

    def _held(self, stmt: str, params: Any, cursor: psycopg.Cursor[Any] | None) -> Result | None:
        """EXECUTE, DEALLOCATE... of a statement the session keeps (temporal/prepared.py), else None."""
        from heliosdb.temporal import prepared

        try:
            return prepared.run(self, stmt, params, cursor)
        except psycopg.Error as exc:
            self._fail_transaction()
            raise errors.from_psycopg(exc) from None
        except errors.Error:
            self._fail_transaction()
            raise

    def _snapshot_now(self) -> Snapshot:
        """The branch's tables as the catalog has them now (checked in one round trip, then cached)."""
        cache = self.catalog
        cache.refresh(self.conn)
        return cache.snapshot(self.conn, cache.chain(self.conn, self.branch.id))

    def _build_named_branches(self, stmt: str) -> None:
        """Branches whose schema the statement names (`br_dev.t`) that no session used yet: their views
        are made now (a branch's schema exists from its first use on)."""
        from heliosdb.branching.branches import ensure_built

        rows = self.conn.execute(
            "SELECT id FROM heliosdb._branches WHERE NOT built AND state <> 'dropped' "
            "AND (strpos(%s, user_schema || '.') > 0 OR strpos(%s, '\"' || user_schema || '\".') > 0)",
            (stmt, stmt)).fetchall()
        for (bid,) in rows:
            ensure_built(self.conn, get_branch_by_id(self.conn, bid))

    def regrouped(self, stmt: str) -> str:
        """The statement with the columns that depend on a grouped primary key added to its GROUP BY
        (sql/groupby.py: PostgreSQL knows no key of a view); remembered per text while the catalog holds."""
        key = ("groupby", stmt, self.branch.id)
        out = self.catalog.rewrites.get(key)
        if out is None:
            out = groupby.add_dependent_columns(stmt, self._keyed_tables)
            self.catalog.remember(key, out)
        return out

    def _storage_column(self, table: str, column: str) -> tuple[str, str] | None | str:
        """A HeliosDB table's column (pg_get_serial_sequence's arguments) in its storage relation."""
        try:
            name = read_name(tokenize(table), 0)[0]
        except errors.Error:
            return None
        if name.schema is not None and name.schema != self.branch.user_schema:
            return None
        snap = self._snapshot_now()
        version = next((v for v in snap.tables.values() if v.name == name.name and not v.dropped), None)
        if version is None:
            return None
        col, info = version.column(column), snap.info[version.table_id]
        if col is None:
            return None  # PostgreSQL's own error for the view
        phys = snap.names[version.table_id].get(col.col, "")
        row = self.conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s "
                                "AND NOT attisdropped", (quote_qualified(*info.cur), phys)).fetchone()
        return (quote_qualified(*info.cur), phys) if row else ""  # a column the branch added has no sequence

    def sampled(self, stmt: str) -> str:
        """The statement with TABLESAMPLE of the branch's tables reading their storage (sql/tablesample.py)."""
        return stmt if self.as_of is not None else tablesample.sampled(stmt, self._sample_source)

    def _sample_source(self, name: Name) -> tuple[str, str] | None:
        """TABLESAMPLE of a HeliosDB table (sql/tablesample.py): its columns on its storage relation."""
        if name.schema is not None and name.schema != self.branch.user_schema:
            return None
        snap = self._snapshot_now()
        version = next((v for v in snap.tables.values() if v.name == name.name and not v.dropped), None)
        if version is None:
            return None
        info = snap.info[version.table_id]
        if info.root_branch != self.branch.id:  # the rows are the branch's and its ancestors': no one relation
            raise errors.NotSupportedError(
                f'TABLESAMPLE is not supported on table "{name.name}": this branch inherited it',
                hint="Sample it on the branch that created it, or filter with WHERE random() < <fraction>.")
        phys = snap.names[version.table_id]
        select = ", ".join(f"r.{quote_ident(phys[c.col])} AS {quote_ident(c.name)}" if c.col in phys
                           else f"CAST({c.missing or 'NULL'} AS {c.type}) AS {quote_ident(c.name)}"
                           for c in version.columns)
        return select, quote_qualified(*info.cur) + " r"

    def _keyed_tables(self) -> dict[str, tuple[list[str], list[str]]]:
        """The branch's tables: their columns and primary key columns, by name."""
        snap = self._snapshot_now()
        return {v.name: ([c.name for c in v.columns], next((c.cols for c in v.constraints if c.kind == "p"), []))
                for v in snap.tables.values() if not v.dropped}

    def _fail_transaction(self) -> None:
        """An error HeliosDB raised itself inside a transaction block fails that transaction, as any error
        does in PostgreSQL: later statements get 25P02 and COMMIT rolls back (else COMMIT would keep the
        statements before the error)."""
        if self.conn.closed or self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            return  # no transaction block, or PostgreSQL failed it already
        try:
            self.conn.execute("DO $$BEGIN RAISE EXCEPTION 'the transaction failed'; END$$")
        except psycopg.Error:
            pass

    def _temporal(self, stmt: str, params: Any, info: StatementInfo, cursor: psycopg.Cursor[Any] | None) -> Result:
        """A plain statement with time-travel clauses: rewritten (or taken from the cache) and run.

        A cached rewrite is checked by its guard inside the statement; when the guard fails
        (HDC01), or the statement failed after the catalog moved, the statement is prepared
        again from the catalog as it is now and run again (up to five times in all, while DDL
        keeps committing). Only in autocommit: a failed statement changed nothing.
        """
        if _PREPARE.match(stmt) is not None:
            from heliosdb.temporal import prepared

            held = prepared.define(self, stmt)
            if held is not None:
                return held
        text, run_params, guarded = rewrite.prepare(self, stmt, params)
        if not guarded:
            return self._rewritten(text, run_params, info, cursor, stmt)
        for _ in range(_TEMPORAL_ATTEMPTS - 1):
            key = self.catalog.key
            try:
                return self._rewritten(text, run_params, info, cursor)
            except (psycopg.Error, errors.Error) as exc:
                if self.in_transaction or not (_guard_failed(exc) or self.catalog.read_key(self.conn) != key):
                    raise
            rewrite.forget(self, stmt)  # DDL or GC committed in between: again, from the catalog as it is now
            text, run_params, _ = rewrite.prepare(self, stmt, params)
        return self._rewritten(text, run_params, info, cursor)

    def _rewritten(self, text: str, params: Any, info: StatementInfo, cursor: psycopg.Cursor[Any] | None,
                   stmt: str | None = None) -> Result:
        """Run a rewritten statement; an error's position points into the user's text."""
        try:
            return self._passthrough(text, params, info, cursor)
        except psycopg.Error as exc:
            err = errors.from_psycopg(exc)
        except errors.Error as exc:  # from a branch's write path (_prefixed): positions in `text` too
            err = exc
        if err.position is not None and text is not stmt:  # a statement the rewrite left as it was keeps it
            err.position = rewrite.original_position(text, err.position)
        if err.sqlstate == "0A000" and "is not allowed with UNION" in err.message and LOCKING_READ.search(text):
            err = errors.NotSupportedError(  # the UNION is the AS OF state's, not the user's
                "SELECT FOR UPDATE/SHARE cannot lock rows read with time travel",
                hint="Lock only the tables read at their head: FOR UPDATE OF <table>.")
        raise err

    def _prefixed(self, cur: psycopg.Cursor[Any], prefix: sql.Composable, stmt: str,
                  suffix: sql.Composable = _NOTHING) -> None:
        """Run statements put in front of the user's one; error positions still count from the user's text."""
        head = prefix.as_string(self.conn)
        try:
            cur.execute(sql.SQL(head) + sql.SQL(stmt) + suffix)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            err = errors.from_psycopg(exc)
            if err.position is not None:
                err.position = err.position - len(head) if err.position > len(head) else None
            if err.sqlstate == "25006" and "SELECT FOR UPDATE" in err.message:  # our lock, in a read-only
                err.message = err.message.replace("SELECT FOR UPDATE", _command_word(stmt))  # transaction
                err.args = (err.message,)
            raise err from None

    def result_cursor(self) -> psycopg.Cursor[Any]:
        """A cursor for a user statement; with text_results, values come as PostgreSQL's text output."""
        cur = self.conn.cursor()
        if self.text_results:
            from psycopg.types.string import TextLoader

            adapters = cur.adapters
            for t in psycopg.postgres.types:
                adapters.register_loader(t.oid, TextLoader)
                if t.array_oid:
                    adapters.register_loader(t.array_oid, TextLoader)
        return cur

    def _passthrough(self, stmt: str, params: Any, info: StatementInfo | None = None,
                     cursor: psycopg.Cursor[Any] | None = None) -> Result:
        info = info or statement_info(stmt)
        result = self._run_passthrough(stmt, params, info.write, cursor)
        if info.resets:
            # DISCARD ALL / RESET ALL drop search_path and advisory locks: put the branch back
            self._locked_branch = None
            self._bind(self._session_branch, local=False)
            if self.as_of is not None:
                from heliosdb.temporal.context import rebind

                rebind(self)
        return result

    def _is_view(self, name: str) -> bool:
        row = self.conn.execute("SELECT relkind = 'v' FROM pg_class WHERE oid = to_regclass(%s)", (name,)).fetchone()
        return bool(row and row[0])

    def _run_passthrough(self, stmt: str, params: Any, write: bool,
                         cursor: psycopg.Cursor[Any] | None = None) -> Result:
        cur = cursor if cursor is not None else self.result_cursor()
        if stmt.lstrip()[:1] in _DDL_INITIALS:  # not on the path of reads and writes
            if (m := _CREATE_TYPE.match(stmt) or _CREATE_SEQUENCE.match(stmt)) is not None:
                # the types and sequences every branch shares (TYPES_SCHEMA)
                stmt = stmt[: m.start(2)] + TYPES_SCHEMA + "." + stmt[m.start(2) :]
            elif (m := DROP_TYPE.match(stmt)) is not None:
                from heliosdb.branching.types import drop_type

                with self.conn.transaction():
                    if drop_type(self, m):
                        return Result(status=f"DROP {m.group(1).upper()}")
            elif (m := _COMMENT_ON_TABLE.match(stmt)) is not None and self._is_view(m.group(2)):
                stmt = stmt[: m.start(1)] + "VIEW" + stmt[m.end(1) :]  # a HeliosDB table is a view to PostgreSQL
        if write and self.branch.parent_id is not None:
            # Views of inherited tables have no EvalPlanQual: take the branch's write
            # lock before the statement takes its snapshot, so concurrent writers on
            # the branch serialize instead of overwriting each other's updates.
            if params is not None:
                stmt = psycopg.ClientCursor(self.conn).mogrify(stmt, params)
            from heliosdb.branching.upsert import constraint_columns, split_upsert

            lock = sql.SQL("SELECT heliosdb.txn_lsn({});\n").format(sql.Literal(self.branch.id))
            upsert = split_upsert(self, stmt)
            text = upsert[0] if upsert is not None else constraint_columns(self, stmt)
            on, off = _write_settings(stmt, upsert)
            if not on:
                self._prefixed(cur, lock, text)
                cur.nextset()
            else:
                self._prefixed(cur, lock + sql.SQL("").join(on), text, sql.SQL("").join(off))
                for _ in range(1 + len(on)):  # the results in front of the statement's
                    cur.nextset()
                status, rowcount = cur.statusmessage, cur.rowcount
                held = _Rows.held(cur) if cur.description else None
                cur.nextset()
                return Result(status=status or "", cursor=held, rowcount=rowcount)  # type: ignore[arg-type]
        elif self.branch.parent_id is not None and (m := LOCKING_READ.search(stmt)) is not None:
            # SELECT ... FOR UPDATE / SHARE: a branch's inherited rows are views, no row lock holds
            # them; take the branch's write lock for the transaction (see catalog/locks.sql)
            if params is not None:
                stmt = psycopg.ClientCursor(self.conn).mogrify(stmt, params)
            lock = sql.SQL("SELECT heliosdb.lock_branch({}, {});\n").format(
                sql.Literal(self.branch.id), sql.Literal(m.group(1) is not None))
            self._prefixed(cur, lock, stmt)
            cur.nextset()
        else:
            if write:
                from heliosdb.branching.upsert import constraint_columns

                stmt = constraint_columns(self, stmt)
            execute_replanned(cur, stmt, params)
        return Result(None, cur, cur.rowcount, None, cur.pgresult)

    def _helios(self, kind: Kind, stmt: str) -> Result:
        from heliosdb.branching import branches, tables

        self._internal = kind not in (Kind.MAINTENANCE, Kind.VIEW_DDL)  # their notices are PostgreSQL's own
        try:
            if kind is Kind.ENGINE_SETTING:
                refuse_engine_setting(stmt)
            if kind is Kind.BRANCH:
                return branches.execute(self, stmt)
            if kind is Kind.TEMPORAL:
                from heliosdb.temporal import context

                return context.execute(self, stmt)
            if kind is Kind.MERGE:
                from heliosdb.merge import engine

                return engine.execute(self, stmt)
            if kind is Kind.MVIEW:
                from heliosdb.mv import ddl

                return ddl.execute(self, stmt)
            if kind is Kind.VIEW_DDL:
                from heliosdb.mv import ddl

                ddl.refuse_view_ddl(self, stmt)  # a materialized view is a view to PostgreSQL
                return self._passthrough(stmt, None)
            return tables.execute(self, kind, stmt)
        finally:
            self._internal = False

    @contextlib.contextmanager
    def copy(self, stmt: str) -> Iterator[tuple[psycopg.Copy, str]]:
        """COPY ... FROM STDIN / TO STDOUT: yields (psycopg Copy, "in" | "out")."""
        from heliosdb.branching.tables import copy_statement

        direction = "out" if "STDOUT" in stmt.upper().split() else "in"
        if direction == "in" and self.as_of is not None:  # a write; COPY TO reads the context's point
            from heliosdb.temporal.context import refuse_write

            self._fail_transaction()  # as any failed COPY does
            refuse_write(self)
        try:
            # a savepoint only when we own the transaction: COPY FREEZE needs the table truncated or
            # created in the current subtransaction, and a failed COPY must fail the user's transaction
            atomic = direction == "in" and not self.in_transaction
            with self.conn.transaction() if atomic else contextlib.nullcontext():
                rewritten = copy_statement(self, stmt)
                cur = self.conn.cursor()
                with cur.copy(rewritten) as cp:  # type: ignore[arg-type]
                    yield cp, direction
                # psycopg keeps no command tag after COPY TO, only the row count
                self.last_status = cur.statusmessage or (f"COPY {cur.rowcount}" if cur.rowcount >= 0 else "")
        except psycopg.Error as exc:
            raise errors.from_psycopg(exc) from None

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows of an internal query (catalog reads by the shell and tools)."""
        try:
            return self.conn.execute(text, params).fetchall()  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise errors.from_psycopg(exc) from None

    def cancel(self) -> None:
        self.conn.cancel_safe()

    @property
    def connection_lost(self) -> bool:
        """Whether the server closed the connection (terminated backend, restart): only reconnect() helps."""
        return self.conn.broken

    def reconnect(self) -> None:
        """A new connection in place of a lost one, as psql's reset: on the same branch, outside any
        transaction, without a temporal context."""
        branch = self._session_branch.name
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        try:
            self.conn = self.new_connection()
            self._open(branch, background=False)
        except psycopg.Error as exc:
            raise errors.from_psycopg(exc) from None

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        try:
            if not self.conn.closed:
                self.conn.close()
        finally:
            if self.instance is not None:
                self.instance.release()
                self.instance = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _command_word(stmt: str) -> str:
    """The statement's command as PostgreSQL names it in errors (INSERT, UPDATE, DELETE, SELECT FOR UPDATE...)."""
    word = head(stmt).split(None, 1)[0] if stmt.strip() else ""
    return "SELECT FOR UPDATE" if word == "SELECT" else word
