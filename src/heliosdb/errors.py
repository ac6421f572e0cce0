"""HeliosDB errors: the PEP 249 hierarchy, one class per SQLSTATE.

Classes register themselves by SQLSTATE through a class keyword, so
``lookup("23505")`` finds ``UniqueViolation``; an unknown code falls back to
the class registered for its two-character SQLSTATE class.

HeliosDB-only conditions use codes of their own class ``HD``, listed in
docs/sql-reference.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

_by_code: dict[str, type[Error]] = {}


class Warning(Exception):  # noqa: A001 - PEP 249 name
    pass


class Error(Exception):
    """Base of every HeliosDB error; carries the PostgreSQL error fields."""

    sqlstate: ClassVar[str | None] = None

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code:
            cls.sqlstate = code
            _by_code[code] = cls

    def __init__(
        self,
        message: str = "",
        *,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        sqlstate: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
        # PostgreSQL's other error fields by protocol name (where, schema, table, column, datatype,
        # constraint): what ORMs map constraint violations with, and COPY's line number
        self.fields = fields or {}
        if sqlstate:
            self.sqlstate = sqlstate

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self.detail, self.hint, self.position, self.sqlstate,
                           self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[Error], message: str, detail: Any, hint: Any, position: Any, sqlstate: Any,
             fields: Any = None) -> Error:
    return cls(message, detail=detail, hint=hint, position=position, sqlstate=sqlstate, fields=fields)


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError, code="22000"):
    pass


class OperationalError(DatabaseError, code="08000"):
    pass


class IntegrityError(DatabaseError, code="23000"):
    pass


class InternalError(DatabaseError, code="XX000"):
    pass


class ProgrammingError(DatabaseError, code="42000"):
    pass


class NotSupportedError(DatabaseError, code="0A000"):
    pass


# --- classes that map PostgreSQL SQLSTATE classes (fallbacks) -----------------
class SqlStatementNotYetComplete(DatabaseError, code="03000"):
    pass


class ConnectionException(OperationalError, code="08006"):
    pass


class InvalidParameterValue(DataError, code="22023"):
    pass


class InvalidDatetimeFormat(DataError, code="22007"):
    pass


class InvalidTransactionState(InternalError, code="25000"):
    pass


class ReadOnlySqlTransaction(InvalidTransactionState, code="25006"):
    pass


class ActiveSqlTransaction(InvalidTransactionState, code="25001"):
    pass


class InvalidAuthorization(OperationalError, code="28000"):
    pass


class DependentObjectsStillExist(ProgrammingError, code="2BP01"):
    pass


class SerializationFailure(OperationalError, code="40001"):
    pass


class TransactionRollback(OperationalError, code="40000"):
    pass


class SyntaxError(ProgrammingError, code="42601"):  # noqa: A001 - SQLSTATE name
    pass


class UndefinedTable(ProgrammingError, code="42P01"):
    pass


class UndefinedColumn(ProgrammingError, code="42703"):
    pass


class UndefinedObject(ProgrammingError, code="42704"):
    pass


class WrongObjectType(ProgrammingError, code="42809"):
    pass


class DuplicateObject(ProgrammingError, code="42710"):
    pass


class DuplicateTable(ProgrammingError, code="42P07"):
    pass


class InvalidName(ProgrammingError, code="42602"):
    pass


class ObjectInUse(OperationalError, code="55006"):
    pass


class ObjectNotInPrerequisiteState(OperationalError, code="55000"):
    pass


class QueryCanceled(OperationalError, code="57014"):
    pass


class SnapshotTooOld(DatabaseError, code="72000"):
    """A read older than the retained history (PostgreSQL's snapshot_too_old)."""


class UniqueViolation(IntegrityError, code="23505"):
    pass


class NotNullViolation(IntegrityError, code="23502"):
    pass


class CheckViolation(IntegrityError, code="23514"):
    pass


class ForeignKeyViolation(IntegrityError, code="23503"):
    pass


# --- HeliosDB's own conditions: SQLSTATE class HD ---------------------------
class HeliosError(DatabaseError, code="HD000"):
    pass


class UndefinedBranch(HeliosError, code="HD001"):
    """The named branch does not exist (or was dropped)."""


class DuplicateBranch(HeliosError, code="HD002"):
    """A branch with this name already exists."""


class BranchInUse(HeliosError, code="HD003"):
    """Another session is using the branch."""


class BranchHasChildren(HeliosError, code="HD004"):
    """DROP without CASCADE on a branch that has children."""


class UndefinedStorageNode(HeliosError, code="HD005"):
    """ON STORAGE NODE names a node the catalog does not know."""


class InvalidBranchOption(HeliosError, code="HD006"):
    """An OPTIONS (...) entry has an unknown name or a bad value."""


class InvalidTemporalPoint(HeliosError, code="HD007"):
    """An AS OF point cannot be resolved on the branch."""


class MainBranchProtected(HeliosError, code="HD008"):
    """The main branch cannot be dropped."""


_CATEGORIES = ("InterfaceError", "DataError", "OperationalError", "IntegrityError", "InternalError",
               "ProgrammingError", "NotSupportedError")


def lookup(code: str) -> type[Error]:
    """The class for a SQLSTATE: our own, else one in psycopg's PEP 249 category, else by SQLSTATE class."""
    if code in _by_code:
        return _by_code[code]
    klass = code[:2] + "000"
    if klass in _by_code:
        return _by_code[klass]
    category = _psycopg_category(code) or _psycopg_category(klass)
    if category is None:
        return DatabaseError
    # a class for the whole SQLSTATE class, in the category psycopg gives it
    cls = type(f"Class{code[:2]}", (category,), {"sqlstate": klass})
    _by_code[klass] = cls
    return cls


def _psycopg_category(code: str) -> type[Error] | None:
    import psycopg

    try:
        pe = psycopg.errors.lookup(code)
    except KeyError:
        return None
    for name in _CATEGORIES:
        if issubclass(pe, getattr(psycopg, name)):
            return globals()[name]  # type: ignore[no-any-return]
    return DatabaseError


def from_psycopg(exc: Exception) -> Error:
    """Translate a psycopg error into the HeliosDB class with the same fields."""
    diag = getattr(exc, "diag", None)
    code = getattr(exc, "sqlstate", None) or (diag.sqlstate if diag else None) or _code_of_class(exc)
    message = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
    position = None
    if diag is not None and diag.statement_position:
        try:
            position = int(diag.statement_position)
        except ValueError:
            position = None
    cls = lookup(code)
    if isinstance(exc, _psycopg_interface_errors()):
        cls = InterfaceError if code == "XX000" else cls
    return cls(
        message,
        detail=diag.message_detail if diag else None,
        hint=diag.message_hint if diag else None,
        position=position,
        sqlstate=code,
        fields=diag_fields(diag) if diag is not None else None,
    )


def diag_fields(diag: Any) -> dict[str, str]:
    """The error's other fields, without HeliosDB's internals: a storage schema (hdb_t<N>, hdb_b<N>)
    is not the user's (the relation in it has the table's name), nor are the lines of context inside
    HeliosDB's own functions and triggers."""
    out = {k: v for k, v in (("column", diag.column_name), ("datatype", diag.datatype_name),
                             ("constraint", diag.constraint_name)) if v}
    if diag.table_name:
        out["table"] = diag.table_name
    if diag.schema_name and not internal_schema(diag.schema_name):
        out["schema"] = diag.schema_name
    if diag.context and (where := user_context(diag.context)):
        out["where"] = where
    return out


def internal_schema(name: str) -> bool:
    """A schema of HeliosDB's storage (hdb_t<N>, hdb_b<N>), not one a user made or sees."""
    return name.startswith("hdb_")


def user_context(context: str) -> str:
    """An error's CONTEXT without the lines inside HeliosDB's own functions and triggers."""
    return "\n".join(ln for ln in context.splitlines() if "hdb_" not in ln and "heliosdb." not in ln)


def _code_of_class(exc: Exception) -> str:
    """A SQLSTATE for a psycopg error that came without one (client-side errors)."""
    import psycopg

    for cls, code in ((psycopg.ProgrammingError, "42000"), (psycopg.DataError, "22000"),
                      (psycopg.OperationalError, "08000"), (psycopg.IntegrityError, "23000"),
                      (psycopg.NotSupportedError, "0A000")):
        if isinstance(exc, cls):
            return code
    return "XX000"


def _psycopg_interface_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (psycopg.InterfaceError,)


class UndefinedEndpoint(HeliosError, code="HD009"):
    """WITH COMPUTE ENDPOINT names an endpoint the catalog does not know."""
