"""Schema side of a merge: what the source changed since the base, carried to the target.

Tables and columns are matched by identity on the source's timeline (table and
column ids) and by name on the target. Changes are replayed on the target as
the DDL a user would have written (so every DDL rule applies), inside the
merge's transaction. Both sides changing the same object incompatibly is a
schema conflict that stops the merge with an explanation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from heliosdb import errors
from heliosdb.catalog.model import Column, Constraint, Level, Snapshot, TableVersion, chain, visible_tables
from heliosdb.sql.names import quote_ident, quote_literal
from heliosdb.sql.sequences import storage_sequences

if TYPE_CHECKING:
    import psycopg

    from heliosdb.catalog.model import Branch
    from heliosdb.session import Session


class SchemaConflict(errors.HeliosError, code="HD011"):
    """Both branches changed the same table or column in incompatible ways."""


@dataclass
class SchemaPlan:
    statements: list[str] = field(default_factory=list)  # DDL to run on the target before its rows change
    after: list[str] = field(default_factory=list)  # constraints to add once the merged rows are in place
    tables: list[str] = field(default_factory=list)  # tables the statements touch (for the preview)
    keys: dict[str, list[Constraint]] = field(default_factory=dict)  # created table -> the keys `after` adds


def _tables(conn: psycopg.Connection, levels: list[Level]) -> dict[int, TableVersion]:
    return visible_tables(conn, levels)


# nextval() of a sequence in a table's storage schema: a serial or identity column's own sequence
_OWN_SEQUENCE = re.compile(r"^nextval\('(\"?hdb_t[0-9]+\"?\.(?:[^']|'')+)'::regclass\)$")
_SERIAL = {"integer": "serial", "bigint": "bigserial", "smallint": "smallserial"}


def own_sequence(c: Column) -> str | None:
    """The sequence of a serial or identity column (None: another default, or none)."""
    m = _OWN_SEQUENCE.match(c.default or "")
    return m.group(1).replace("''", "'") if m else None


def _coldef(c: Column, options: dict[str, str] | None = None) -> str:
    text = f"{quote_ident(c.name)} {c.type}"
    # a table created on the target gets sequences of its own: the source's go with the source's storage
    if c.identity in ("a", "d"):
        opts = (options or {}).get(c.name)
        return (text + " GENERATED " + ("ALWAYS" if c.identity == "a" else "BY DEFAULT") + " AS IDENTITY"
                + (f" ({opts})" if opts else ""))
    if own_sequence(c) is not None and c.type in _SERIAL:
        return f"{quote_ident(c.name)} {_SERIAL[c.type]}"
    if c.default:
        text += f" DEFAULT {c.default}"
    if c.notnull:
        text += " NOT NULL"
    return text


def create_table_sql(v: TableVersion, options: dict[str, str] | None = None) -> str:
    """CREATE TABLE with the columns, primary key, unique and check constraints (foreign keys: add_constraint).
    options: an identity column's sequence options (_sequences)."""
    parts = [_coldef(c, options) for c in v.columns]
    for con in v.constraints:  # under their own names: later DDL (a migration) drops them by name
        if con.kind == "p":
            parts.append(f"CONSTRAINT {quote_ident(con.name)} PRIMARY KEY ({', '.join(quote_ident(c) for c in con.cols)})")
        elif con.kind == "u":
            parts.append(f"CONSTRAINT {quote_ident(con.name)} UNIQUE ({', '.join(quote_ident(c) for c in con.cols)})")
        elif con.kind == "c" and con.expr:
            parts.append(f"CONSTRAINT {quote_ident(con.name)} CHECK ({con.expr})")
    return f"CREATE TABLE {quote_ident(v.name)} ({', '.join(parts)})"


_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


# Kept with a pending MANUAL merge (one list of DDL): the statements after it run once the rows are applied
AFTER_ROWS = "-- after the merged rows"


def stored(plan: SchemaPlan) -> list[str]:
    return [*plan.statements, AFTER_ROWS, *plan.after] if plan.after else list(plan.statements)


def split_stored(ddl: list[str]) -> tuple[list[str], list[str]]:
    if AFTER_ROWS not in ddl:
        return ddl, []
    i = ddl.index(AFTER_ROWS)
    return ddl[:i], ddl[i + 1 :]


def run_after(session: Session, target: Branch, statements: list[str]) -> None:
    """The constraints a merge adds once its rows are in place, and a created table's sequence values. A key
    the target cannot hold (one added to a table it inherited) is left out with a NOTICE; one the merged rows
    violate fails the merge."""
    from heliosdb.branching import tables
    from heliosdb.sql.classify import classify

    with session.acting_on(target):
        for ddl in statements:
            if "pg_get_serial_sequence(" in ddl:  # _sequences: the created table's storage sequences
                session.conn.execute(storage_sequences(ddl, session._storage_column))  # type: ignore[arg-type]
                continue
            try:
                with session.conn.transaction():
                    tables.execute(session, classify(ddl), ddl)
            except (errors.Error, psycopg.Error) as exc:
                err = exc if isinstance(exc, errors.Error) else errors.from_psycopg(exc)
                if (err.sqlstate or "").startswith("23"):
                    raise unheld(target, ddl, err) from None
                if err.sqlstate != "0A000":
                    raise
                session.notices.append(f"NOTICE:  merge: not carried to \"{target.name}\": {ddl} ({err.message})")


def unheld(target: Branch, ddl: str, exc: errors.Error) -> SchemaConflict:
    return SchemaConflict(f'the merge cannot carry "{ddl}" to "{target.name}": {exc.message}',
                          hint="The target's own rows break it: change them (or the constraint on the source) "
                               "and merge again.")


def unheld_constraints(session: Session, target: Branch, statements: list[str]) -> list[tuple[str, str]]:
    """For a DRY RUN: the constraints of run_after() that the target's rows break, as (statement, why);
    each tried in a savepoint that is rolled back."""
    from heliosdb.branching import tables
    from heliosdb.sql.classify import classify

    out = []
    with session.acting_on(target):
        for ddl in statements:
            if "pg_get_serial_sequence(" in ddl:
                continue
            try:
                with session.conn.transaction(force_rollback=True):
                    tables.execute(session, classify(ddl), ddl)
            except (errors.Error, psycopg.Error) as exc:
                err = exc if isinstance(exc, errors.Error) else errors.from_psycopg(exc)
                if (err.sqlstate or "").startswith("23"):
                    out.append((ddl, unheld(target, ddl, err).message))
    return out


def _sequences(conn: psycopg.Connection, v: TableVersion) -> tuple[dict[str, str], list[str]]:
    """A created table's sequences as the source has them: an identity column's options (for its CREATE), and
    the statements that set a serial column's options and every sequence's value (the merged rows hold it)."""
    options: dict[str, str] = {}
    after: list[str] = []
    for c in v.columns:
        seq = own_sequence(c)
        if seq is None:
            continue
        row = conn.execute(
            f"""SELECT format('INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s', s.seqincrement,
                              s.seqmin, s.seqmax, s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN 'CYCLE'
                              ELSE 'NO CYCLE' END), q.last_value, q.is_called
                FROM pg_sequence s, {seq} q WHERE s.seqrelid = {quote_literal(seq)}::regclass"""  # type: ignore[arg-type]
        ).fetchone()
        if row is None:
            continue
        opts, last, called = row
        serial = f"pg_get_serial_sequence({quote_literal(v.name)}, {quote_literal(c.name)})"
        if c.identity in ("a", "d"):
            options[c.name] = opts
        else:  # a serial column: ALTER SEQUENCE under the sequence's name on the target
            restart = "" if called else " RESTART"  # no value drawn yet: the next is the start
            after.append(f"DO $$BEGIN EXECUTE 'ALTER SEQUENCE ' || {serial} || {quote_literal(' ' + opts + restart)}; END$$")
        if called:
            after.append(f"SELECT setval({serial}, {int(last)})")
    return options, after


def add_constraint(table: str, con: Constraint, references: str | None = None) -> str | None:
    """ALTER TABLE ... ADD CONSTRAINT for a primary key, unique, check or foreign key (None: another kind).
    references: the name the referenced table has where the key comes from (the key's own record names its
    storage relation, which keeps the name the table was created with)."""
    cols = ", ".join(quote_ident(c) for c in con.cols)
    if con.kind == "p":
        body = f"PRIMARY KEY ({cols})"
    elif con.kind == "u":
        body = f"UNIQUE ({cols})"
    elif con.kind == "c" and con.expr:
        body = f"CHECK ({con.expr})"
    elif con.kind == "f" and con.expr:
        ref = json.loads(con.expr)
        body = (f"FOREIGN KEY ({cols}) REFERENCES {quote_ident(references or ref['table'])} "
                f"({', '.join(quote_ident(c) for c in ref['cols'])}) "
                f"ON DELETE {_FK_ACTIONS.get(ref.get('on_delete', 'a'), 'NO ACTION')} "
                f"ON UPDATE {_FK_ACTIONS.get(ref.get('on_update', 'a'), 'NO ACTION')}")
        if ref.get("deferrable"):
            body += " DEFERRABLE INITIALLY " + ("DEFERRED" if ref.get("deferred") else "IMMEDIATE")
        if ref.get("valid") is False:  # added NOT VALID and never validated: the rows it was added over stay
            body += " NOT VALID"
    else:
        return None
    return f"ALTER TABLE {quote_ident(table)} ADD CONSTRAINT {quote_ident(con.name)} {body}"


def _definition(con: Constraint) -> tuple[str, tuple[str, ...], str | None]:
    """What makes two constraints of one name the same. A check's text is PostgreSQL's deparsed form, which
    moves with the column types (`v > 0` becomes `v > (0)::numeric`): its columns stand for it."""
    if con.kind == "f" and con.expr:  # the same key whether HeliosDB or PostgreSQL enforces it
        ref = json.loads(con.expr)
        return con.kind, tuple(con.cols), json.dumps([ref.get(k) for k in ("schema", "table", "cols", "on_delete", "on_update")])
    return con.kind, tuple(con.cols), None if con.kind == "c" else con.expr


def _by_name(tables: dict[int, TableVersion]) -> dict[str, TableVersion]:
    return {v.name: v for v in tables.values()}


def plan_schema(
    conn: psycopg.Connection, source: Branch, target: Branch, base_s: int, base_t: int
) -> SchemaPlan:
    s_now = _tables(conn, chain(conn, source.id))
    s_base = _tables(conn, chain(conn, source.id, base_s))
    t_now = _tables(conn, chain(conn, target.id))
    t_base = _tables(conn, chain(conn, target.id, base_t))
    t_now_names = _by_name(t_now)
    t_base_names = _by_name(t_base)
    # the target holds the source's base state too (that is what makes it the base)
    held = set(t_base_names) | {v.name for v in s_base.values()}
    plan = SchemaPlan()
    refs = _referenced_names(conn, source)
    # tables the source dropped and created again under the same name (Alembic's batch mode does)
    replaced = {b.name for btid, b in s_base.items() if btid not in s_now} & {
        v.name for tid, v in s_now.items() if tid not in s_base}
    created: list[TableVersion] = []
    dropped: list[str] = []
    for tid, sv in s_now.items():
        before = s_base.get(tid)
        if before is None:  # created on the source since the base
            tv = t_now_names.get(sv.name)
            if tv is None or sv.name in replaced:
                created.append(sv)  # after the drops below (a replaced table's old one goes first)
            elif [(c.name, c.type) for c in tv.columns] != [(c.name, c.type) for c in sv.columns]:
                raise SchemaConflict(
                    f'table "{sv.name}" was created on both branches with different columns',
                    hint="Rename or align one of them, then merge again.",
                )
            continue
        tv = t_now_names.get(before.name) or t_now_names.get(sv.name)
        if tv is None:
            if before.name in held:
                raise SchemaConflict(
                    f'table "{sv.name}" was changed on "{source.name}" but dropped on "{target.name}"'
                )
            continue
        if sv.name != before.name and tv.name == before.name:
            plan.statements.append(f"ALTER TABLE {quote_ident(tv.name)} RENAME TO {quote_ident(sv.name)}")
        _plan_columns(plan, sv, before, tv, t_base_names.get(before.name), source, target)
        _plan_constraints(plan, sv, before, tv, source, target, refs)
    for tid, before in s_base.items():
        if tid in s_now:
            continue
        tv = t_now_names.get(before.name)
        if tv is None:
            continue
        tb = t_base_names.get(before.name)
        if _shape(tv) not in (_shape(tb), _shape(before)) or _rows_changed(conn, source, target, base_s, base_t, tid):
            raise SchemaConflict(
                f'table "{before.name}" was dropped on "{source.name}" but changed on "{target.name}"',
                hint=f'To accept the drop, drop the table on "{target.name}" too, then merge again.',
            )
        dropped.append(tv.name)
        plan.tables.append(before.name)
    if dropped:  # in one statement: keys between them do not order the drops
        plan.statements.append(f"DROP TABLE {', '.join(quote_ident(n) for n in dropped)}")
    for sv in created:
        options, after = _sequences(conn, sv)
        plan.statements.append(create_table_sql(sv, options))
        plan.after += after
        plan.after += [ddl for con in sv.constraints
                       if con.kind == "f" and (ddl := add_constraint(sv.name, con, refs.get((sv.table_id, con.name))))]
        plan.keys[sv.name] = [con for con in sv.constraints if con.kind == "f" and con.expr]
        plan.tables.append(sv.name)
    return plan


def _referenced_names(conn: psycopg.Connection, branch: Branch) -> dict[tuple[int, str], str]:
    """(table id, foreign key name) -> the name of the table it references, on the branch."""
    from heliosdb.branching import foreign_keys

    snap = Snapshot(conn, chain(conn, branch.id))
    return {(fk.child.table_id, fk.con.name): fk.parent.name
            for v in snap.tables.values() if not v.dropped for fk in foreign_keys.outgoing(snap, v)}


def _plan_columns(
    plan: SchemaPlan, sv: TableVersion, before: TableVersion, tv: TableVersion, tb: TableVersion | None,
    source: Branch, target: Branch,
) -> None:
    table = quote_ident(sv.name)
    old = {c.col: c for c in before.columns}
    now = {c.col: c for c in sv.columns}
    t_cols = {c.name: c for c in tv.columns}
    # columns the target held at the base: its own, and the source's (merged into it)
    t_base_cols = {c.name for c in tb.columns} if tb else set()
    t_base_cols |= {c.name for c in before.columns}
    touched = False
    # a type change on the source: the old column dropped, a new one of the same name added (retype.py)
    gone = {c.name: c for col, c in old.items() if col not in now}
    retyped = {c.name for col, c in now.items() if col not in old and c.name in gone}
    for name in retyped:
        have, was, new = t_cols.get(name), gone[name], next(c for c in now.values() if c.name == name)
        if have is None or have.type == new.type:
            continue
        if have.type != was.type:
            raise SchemaConflict(f'the type of column "{name}" of "{sv.name}" was changed on both branches '
                                 f"({new.type} on {source.name}, {have.type} on {target.name})")
        using = f" USING {new.using}" if new.using else ""  # as the source converted its rows
        plan.statements.append(f"ALTER TABLE {table} ALTER COLUMN {quote_ident(name)} TYPE {new.type}{using}")
        touched = True
    for col, c in now.items():
        if col not in old and c.name in retyped:
            continue
        if col not in old:  # added on the source
            have = t_cols.get(c.name)
            if have is None and tb is not None and any(b.name == c.name and b.type == c.type for b in tb.columns):
                continue  # the source has it from the target (a merge), which dropped it since
            if have is None:
                plan.statements += _add_column(table, c)
                touched = True
            elif have.type != c.type:
                raise SchemaConflict(
                    f'column "{c.name}" of "{sv.name}" was added on both branches with different types '
                    f"({c.type} on {source.name}, {have.type} on {target.name})"
                )
        elif (have := t_cols.get(old[col].name)) is not None and (
                old[col].default != c.default or old[col].notnull != c.notnull):
            touched |= _plan_column_rules(plan, table, sv.name, old[col], c, have, target)
        if col in old and old[col].name != c.name:  # renamed on the source
            was = old[col].name
            if was in t_cols and c.name not in t_cols:
                plan.statements.append(f"ALTER TABLE {table} RENAME COLUMN {quote_ident(was)} TO {quote_ident(c.name)}")
                touched = True
            elif c.name not in t_cols:
                raise SchemaConflict(
                    f'column "{was}" of "{sv.name}" was renamed to "{c.name}" on "{source.name}" '
                    f'but renamed or dropped on "{target.name}"'
                )
    for col, c in old.items():
        if col not in now and c.name in t_cols and c.name not in retyped:  # dropped on the source
            if c.name not in t_base_cols:
                continue  # the target's column of that name is its own
            plan.statements.append(f"ALTER TABLE {table} DROP COLUMN {quote_ident(c.name)}")
            touched = True
    if touched:
        plan.tables.append(sv.name)


def _add_column(table: str, c: Column) -> list[str]:
    """ADD COLUMN as the source has it: the target's rows take the value the source's older rows read
    (the value the column was added with), then the column gets the source's own default."""
    fill = c.missing if c.missing is not None else c.default
    added = Column(c.name, c.col, c.type, c.notnull and fill is not None, fill)
    out = [f"ALTER TABLE {table} ADD COLUMN {_coldef(added)}"]
    if fill != c.default:
        out.append(f"ALTER TABLE {table} ALTER COLUMN {quote_ident(c.name)} "
                   + (f"SET DEFAULT {c.default}" if c.default is not None else "DROP DEFAULT"))
    return out


def _plan_column_rules(plan: SchemaPlan, table: str, name: str, was: Column, now: Column, have: Column,
                       target: Branch) -> bool:
    """A column's DEFAULT or NOT NULL changed on the source: the same change on the target, where the target
    still has the base's rule (a different change on both sides is a conflict)."""
    col = f"ALTER TABLE {table} ALTER COLUMN {quote_ident(have.name)}"
    touched = False
    if was.default != now.default and have.default != now.default:
        if have.default != was.default:
            raise SchemaConflict(f'the default of column "{have.name}" of "{name}" was changed on both branches',
                                 hint=f'Set the same default on "{target.name}", then merge again.')
        plan.statements.append(f"{col} SET DEFAULT {now.default}" if now.default is not None else f"{col} DROP DEFAULT")
        touched = True
    if was.notnull != now.notnull and have.notnull == was.notnull:
        if now.notnull:
            plan.after.append(f"{col} SET NOT NULL")  # once the merged rows are there
        else:
            plan.statements.append(f"{col} DROP NOT NULL")  # before: the source's rows may hold NULLs
        touched = True
    return touched


def _plan_constraints(plan: SchemaPlan, sv: TableVersion, before: TableVersion, tv: TableVersion,
                      source: Branch, target: Branch, refs: dict[tuple[int, str], str]) -> None:
    """Constraints the source added or dropped since the base (by name): added ones are added on the target once
    the merged rows are there, dropped ones are dropped first; the target keeps what it changed itself."""
    # plain indexes are not carried (docs/sql-reference.md, merges)
    was = {c.name: c for c in before.constraints if c.kind != "i"}
    now = {c.name: c for c in sv.constraints if c.kind != "i"}
    have = {c.name: c for c in tv.constraints if c.kind != "i"}
    for name, con in now.items():
        if name in was and _definition(was[name]) == _definition(con):
            continue
        if name in have:
            if _definition(have[name]) == _definition(con):
                continue
            if name not in was or _definition(have[name]) != _definition(was[name]):
                raise SchemaConflict(f'constraint "{name}" of "{sv.name}" differs on "{source.name}" and "{target.name}"',
                                     hint=f'Drop or align it on "{target.name}", then merge again.')
            plan.statements.append(f"ALTER TABLE {quote_ident(tv.name)} DROP CONSTRAINT {quote_ident(name)}")
        ddl = add_constraint(tv.name, con, refs.get((sv.table_id, name)))
        if ddl is not None:
            plan.after.append(ddl)
            plan.tables.append(sv.name)
    for name, con in was.items():
        if name not in now and name in have and _definition(have[name]) == _definition(con):
            plan.statements.append(f"ALTER TABLE {quote_ident(tv.name)} DROP CONSTRAINT {quote_ident(name)}")
            plan.tables.append(sv.name)


def _rows_changed(conn: psycopg.Connection, source: Branch, target: Branch, base_s: int, base_t: int,
                  table_id: int) -> bool:
    """Whether the target changed rows of the source's table since the base (a row that differs from both
    base states), so dropping the table would lose them."""
    from heliosdb.merge.diff import Side, build_diff
    from heliosdb.temporal.resolver import head_lsn

    s_snap = Snapshot(conn, chain(conn, source.id, base_s))
    name = s_snap.tables[table_id].name
    t_snap = Snapshot(conn, chain(conn, target.id))
    t_tid = next(tid for tid, v in t_snap.tables.items() if v.name == name)
    # the target as the changing side; the source stays at its base
    build_diff(conn, Side(target, base_t, head_lsn(conn, target)), Side(source, base_s, base_s),
               (t_snap.tables[t_tid], t_snap.info[t_tid]), (s_snap.tables[table_id], s_snap.info[table_id]))
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM _hdb_diff WHERE head_s IS DISTINCT FROM base_s "
                       "AND head_s IS DISTINCT FROM base_t)").fetchone()
    return bool(row and row[0])


def _shape(v: TableVersion | None) -> list[tuple[str, str]] | None:
    """A table's columns by name and type (column ids differ between a table and its merged copy)."""
    return None if v is None else [(c.name, c.type) for c in v.columns]


__all__ = ["AFTER_ROWS", "Constraint", "SchemaConflict", "SchemaPlan", "add_constraint", "create_table_sql",
           "plan_schema", "run_after", "split_stored", "stored"]
