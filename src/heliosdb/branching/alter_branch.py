"""ALTER TABLE and CREATE INDEX on a branch that inherited the table (not its root).

The change goes into the branch's schema version; physical relations only
gain columns. Constraints are enforced by the branch's write trigger, and
existing rows are checked before a new constraint is accepted.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp
from sqlglot.tokens import TokenType

from heliosdb import errors
from heliosdb.branching import foreign_keys, layout
from heliosdb.catalog.model import (
    Constraint,
    Snapshot,
    TableInfo,
    TableVersion,
    chain,
    phys_names,
    save_version,
)
from heliosdb.sql.names import (
    Name,
    is_word,
    matching_paren,
    read_name,
    replace,
    skip_words,
    tokenize,
    top_level_commas,
)

if TYPE_CHECKING:
    from heliosdb.session import Session

I = sql.Identifier  # noqa: E741


def _unsupported(what: str) -> errors.Error:
    return errors.NotSupportedError(
        f"ALTER TABLE ... {what} is not supported on a branch that inherited the table",
        hint="Supported there: ADD COLUMN (without REFERENCES), DROP COLUMN, RENAME COLUMN, RENAME TO, "
        "RENAME CONSTRAINT, ALTER COLUMN TYPE, ALTER COLUMN SET/DROP DEFAULT, ALTER COLUMN SET/DROP NOT NULL, "
        "ADD CONSTRAINT (PRIMARY KEY, UNIQUE, CHECK [NOT VALID], FOREIGN KEY [NOT VALID]), VALIDATE CONSTRAINT, "
        "DROP CONSTRAINT.",
    )


def _clause_end(toks: list[Any], i: int) -> int:
    depth = 0
    while i < len(toks):
        depth += toks[i].text == "("
        depth -= toks[i].text == ")"
        if depth == 0 and toks[i].text == ",":
            return i
        i += 1
    return i


_FOREIGN_KEY = re.compile(r'(?is)^ADD\s+(CONSTRAINT\s+("(?:[^"]|"")+"|\w+)\s+)?FOREIGN\s+KEY\b')


def alter_inherited(
    session: Session, version: TableVersion, info: TableInfo, text: str, toks: list[Any], i: int, lsn: int
) -> None:
    conn, branch = session.conn, session.branch
    version.branch_id = branch.id
    renames: list[tuple[str, str]] = []
    while i < len(toks):
        end = _clause_end(toks, i)
        clause = toks[i:end]
        raw = text[clause[0].start : clause[-1].end + 1] if clause else ""
        word = clause[0].text.upper() if clause else ""
        # The tokenizer reads "PRIMARY KEY" and "FOREIGN KEY" as one token: compare the first word.
        second = clause[1].text.upper().split()[0] if len(clause) > 1 else ""
        if word == "ADD" and second not in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"):
            _, k = skip_words(clause, 1, "COLUMN")
            if_not_exists, k = skip_words(clause, k, "IF", "NOT", "EXISTS")
            coldef = text[clause[k].start : clause[-1].end + 1]
            _add_column(session, version, info, coldef, if_not_exists)
        elif word == "ADD" and _FOREIGN_KEY.match(raw):
            from heliosdb.branching.added_keys import add_foreign_key

            version.constraints.append(add_foreign_key(session, version, info, raw[3:].strip()))
        elif word == "ADD":
            _add_constraint(session, version, raw[3:].strip())
        elif word == "VALIDATE" and len(clause) > 2 and clause[1].text.upper() == "CONSTRAINT":
            from heliosdb.branching.added_keys import validate

            validate(session, version, read_name(clause, 2)[0].name)
        elif word == "DROP" and len(clause) > 1 and clause[1].text.upper() == "CONSTRAINT":
            if_exists, k = skip_words(clause, 2, "IF", "EXISTS")
            cname, _ = read_name(clause, k)
            if not any(c.name == cname.name and not c.is_index for c in version.constraints):
                if not if_exists:
                    raise errors.UndefinedObject(
                        f'constraint "{cname.name}" of relation "{version.name}" does not exist'
                    )
            version.constraints = [c for c in version.constraints if c.name != cname.name or c.is_index]
        elif word == "DROP":
            _, k = skip_words(clause, 1, "COLUMN")
            if_exists, k = skip_words(clause, k, "IF", "EXISTS")
            col, _ = read_name(clause, k)
            if version.column(col.name) is None:
                if if_exists:
                    i = end + 1
                    continue
                raise errors.UndefinedColumn(f'column "{col.name}" of relation "{version.name}" does not exist')
            version.columns = [c for c in version.columns if c.name != col.name]
            version.constraints = [c for c in version.constraints if not uses_column(c, col.name)]
        elif word == "RENAME" and len(clause) > 1 and clause[1].text.upper() == "CONSTRAINT":
            old, k = read_name(clause, 2)
            _, k = skip_words(clause, k, "TO")
            new, _ = read_name(clause, k)
            con = next((c for c in version.constraints if c.name == old.name and not c.is_index), None)
            if con is None:
                raise errors.UndefinedObject(f'constraint "{old.name}" for table "{version.name}" does not exist')
            if any(c.name == new.name for c in version.constraints):
                raise errors.lookup("42710")(
                    f'constraint "{new.name}" for relation "{version.name}" already exists', sqlstate="42710")
            con.name = new.name
        elif word == "RENAME":
            _, k = skip_words(clause, 1, "COLUMN")
            old, k = read_name(clause, k)
            _, k = skip_words(clause, k, "TO")
            new, _ = read_name(clause, k)
            col = version.column(old.name)
            if col is None:
                raise errors.UndefinedColumn(f'column "{old.name}" does not exist')
            if version.column(new.name) is not None:
                raise errors.lookup("42701")(
                    f'column "{new.name}" of relation "{version.name}" already exists', sqlstate="42701"
                )
            col.name = new.name
            new_sql = str(conn.execute("SELECT quote_ident(%s)", (new.name,)).fetchone()[0])  # type: ignore[index]
            for c in version.constraints:
                c.cols = [new.name if x == old.name else x for x in c.cols]
                if c.kind == "c" and c.expr:
                    c.expr = _renamed(c.expr, old.name, new_sql)
                    c.plain = _renamed(c.plain, old.name, new_sql) if c.plain else None
                if c.kind == "i":  # an index's texts name the branch's columns ('x' keys: the stored ones)
                    c.keys = [_renamed(k, old.name, new_sql) for k in c.keys]
                    c.where = _renamed(c.where, old.name, new_sql) if c.where else None
                if c.using:
                    c.using = _renamed(c.using, old.name, new_sql)
            renames.append((old.name, new.name))
        elif word == "ALTER":
            _alter_column(session, version, clause, raw)
        else:
            raise _unsupported(raw.split("(")[0][:40])
        i = end + 1
    for old, new in renames:
        for schema in (branch.user_schema, branch.phys_schema):
            conn.execute(sql.SQL("ALTER VIEW {} RENAME COLUMN {} TO {}").format(
                I(schema, version.name), I(old), I(new)))
    if renames:
        _rename_referenced(session, version, info, dict(renames), lsn)
    save_version(conn, version, lsn)
    layout.build_views(conn, branch, chain(conn, branch.id), info, version, replace=True)


def _rename_referenced(session: Session, version: TableVersion, info: TableInfo, renames: dict[str, str],
                       lsn: int) -> None:
    """Foreign keys that reference renamed columns of this table name them anew (on this branch)."""
    snap = Snapshot(session.conn, chain(session.conn, session.branch.id))
    current = snap.tables.get(info.id)
    if current is None:
        return
    for fk in foreign_keys.incoming(snap, current):
        if not set(fk.ref_cols) & set(renames):
            continue
        child = version if fk.child.table_id == info.id else fk.child  # a self-reference: the version being saved
        for con in child.constraints:
            if con.name == fk.con.name and con.expr:
                ref = json.loads(con.expr)
                ref["cols"] = [renames.get(c, c) for c in ref["cols"]]
                con.expr = json.dumps(ref)
        if child is not version:
            child.branch_id = session.branch.id
            save_version(session.conn, child, lsn)


_ALTER_COLUMN = re.compile(r"(?is)^(SET\s+DEFAULT\s+(?P<default>.+)|DROP\s+DEFAULT|SET\s+NOT\s+NULL|DROP\s+NOT\s+NULL)$")


def _alter_column(session: Session, version: TableVersion, clause: list[Any], raw: str) -> None:
    """ALTER [COLUMN] c SET/DROP DEFAULT, SET/DROP NOT NULL: the branch's schema version only."""
    _, k = skip_words(clause, 1, "COLUMN")
    name, k = read_name(clause, k)
    m = _ALTER_COLUMN.match(raw[clause[k].start - clause[0].start :].strip()) if k < len(clause) else None
    if m is None:
        raise _unsupported(raw.split("(")[0][:40])
    col = version.column(name.name)
    if col is None:
        raise errors.UndefinedColumn(f'column "{name.name}" of relation "{version.name}" does not exist')
    action = " ".join(m.group(1).upper().split()[:3])
    if m.group("default") is not None:
        col.default = m.group("default").strip()  # checked against the column's type when the views are rebuilt
    elif action == "DROP DEFAULT":
        col.default = None
    elif action == "SET NOT NULL":
        view = I(session.branch.user_schema, version.name)
        if session.conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1").format(
                view, I(col.name))).fetchone() is not None:
            raise errors.NotNullViolation(f'column "{col.name}" of relation "{version.name}" contains null values')
        col.notnull = True
    else:
        if col.name in version.key_columns:
            raise errors.lookup("42P16")(f'column "{col.name}" is in a primary key', sqlstate="42P16")
        col.notnull = False


def _add_column(session: Session, version: TableVersion, info: TableInfo, coldef: str, if_not_exists: bool) -> None:
    from heliosdb.branching.tables import _register_column, column_from_probe

    conn, branch = session.conn, session.branch
    if re.search(r"(?i)\bREFERENCES\b", coldef):
        raise _unsupported("ADD COLUMN ... REFERENCES")  # a foreign key, as ADD FOREIGN KEY
    col, cons, volatile = column_from_probe(conn, coldef)
    if version.column(col.name) is not None:
        if if_not_exists:
            return
        raise errors.lookup("42701")(
            f'column "{col.name}" of relation "{version.name}" already exists', sqlstate="42701"
        )
    if volatile:
        # Inherited rows read a new column as one stored missing value; PostgreSQL would give each
        # existing row its own value (serial, identity, random(), clock_timestamp()...).
        serial = (col.default or "").startswith("nextval(")
        raise errors.NotSupportedError(
            f'ADD COLUMN "{col.name}" with a volatile default is not supported on a branch that inherited '
            f'table "{version.name}"',
            detail="PostgreSQL evaluates a volatile default once for every existing row; the rows this "
            "branch inherited can only share one value.",
            hint=("Add an integer column without a default and fill it with UPDATE"
                  if serial else "Add the column without a default, then fill the existing rows with UPDATE")
            + ", or add the column on the branch that created the table.",
        )
    taken = set(layout.user_columns(conn, info.br)) | set(layout.user_columns(conn, info.hist))
    taken |= set(layout.user_columns(conn, info.cur))
    phys = col.name
    n = 1
    while phys in taken:
        n += 1
        phys = f"{col.name}_{n}"
    col.col = _register_column(conn, info.id, phys, col.type)
    for rel in (info.br, info.hist):
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(I(*rel), I(phys), sql.SQL(col.type)))
    if col.missing is not None:
        conn.execute(
            sql.SQL("UPDATE {} SET {} = {} WHERE _hdb_branch = %s AND NOT _hdb_del").format(
                I(*info.br), I(phys), sql.SQL(col.missing)),
            (branch.id,),
        )
    if col.notnull and col.missing is None:
        row = conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(I(branch.user_schema, version.name))).fetchone()
        if row is not None:
            raise errors.NotNullViolation(f'column "{col.name}" of relation "{version.name}" contains null values')
    version.columns.append(col)
    for c in cons:
        c.name = c.name.replace("_hdb_probe", version.name)
        version.constraints.append(c)


def uses_column(con: Constraint, column: str) -> bool:
    """Whether a constraint or index goes with the column when it is dropped: it names it as a key, in a
    check's expression, or in an index's definition (keys, INCLUDE, predicate)."""
    return column in con.cols or any(
        t and _column_spans(t, column) for t in (con.expr if con.kind == "c" else None, con.where, con.using,
                                                 *(con.keys if con.kind == "i" else ())))


def _column_spans(text: str, column: str) -> list[tuple[int, int]]:
    """Where an expression's text names a column (not in a literal, not a function's name)."""
    try:
        toks = tokenize(text)
    except errors.Error:
        return []
    out = []
    for k, t in enumerate(toks):
        before = toks[k - 1] if k else None
        after = toks[k + 1] if k + 1 < len(toks) else None
        if t.token_type == TokenType.IDENTIFIER:
            named = t.text == column
        else:  # unquoted: a plain name, or one the tokenizer reads as a keyword (date, text, comment)
            named = (t.token_type not in (TokenType.STRING, TokenType.NUMBER) and t.text.lower() == column
                     # not a type: after ::, after AS (in CAST), or before a literal (date '2000-01-01')
                     and not (before is not None and (before.token_type == TokenType.DCOLON
                                                      or before.text.upper() == "AS"))
                     and not (after is not None and after.token_type == TokenType.STRING))
        if named and not (after is not None and after.token_type in (TokenType.L_PAREN, TokenType.DOT)):
            out.append((t.start, t.end + 1))
    return out


def _renamed(text: str, old: str, new_sql: str) -> str:
    """The expression's text with a renamed column's new name (quoted as PostgreSQL quotes it)."""
    for start, end in reversed(_column_spans(text, old)):
        text = text[:start] + new_sql + text[end:]
    return text


def _add_constraint(session: Session, version: TableVersion, spec: str) -> None:
    conn, branch = session.conn, session.branch
    not_valid = re.search(r"(?is)\s+NOT\s+VALID\s*$", spec)
    if not_valid:  # CHECK ... NOT VALID: existing rows are not checked, new ones are
        spec = spec[: not_valid.start()]
    m = re.match(r"(?is)^(?:CONSTRAINT\s+(\"[^\"]+\"|\w+)\s+)?(PRIMARY\s+KEY|UNIQUE|CHECK)\s*\((.*)\)\s*$", spec)
    if m and not_valid and m.group(2).upper() != "CHECK":
        m = None  # PostgreSQL allows NOT VALID only for CHECK and FOREIGN KEY
    if not m:
        raise _unsupported("ADD " + spec[:40])
    cname = m.group(1)
    kind_word = m.group(2).upper().split()[0]
    body = m.group(3)
    view = I(branch.user_schema, version.name)
    if kind_word == "CHECK":
        name = cname.strip('"') if cname else _choose_name(version, _first_column(version, body), "check")
        expr, plain, cols = _check_shape(conn, branch, version, body)
        if not not_valid:
            check_holds(conn, view, expr, name, version.name)
        version.constraints.append(Constraint(name, "c", cols, expr, valid=not not_valid, plain=plain))
        return
    cols = [c.strip().strip('"') if c.strip().startswith('"') else c.strip().lower() for c in body.split(",")]
    for c in cols:
        if version.column(c) is None:
            raise errors.UndefinedColumn(f'column "{c}" named in key does not exist')
    kind = "p" if kind_word == "PRIMARY" else "u"
    if kind == "p" and any(c.kind == "p" for c in version.constraints):
        raise errors.lookup("42P16")(f'multiple primary keys for table "{version.name}" are not allowed',
                                     sqlstate="42P16")
    if cname:
        name = cname.strip('"')
    else:
        name = _choose_name(version, None, "pkey") if kind == "p" else _choose_name(version, "_".join(cols), "key")
    _check_unique(conn, view, cols, name, version.name)
    if kind == "p":
        for c in version.columns:
            if c.name in cols:
                c.notnull = True
        nulls = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {} LIMIT 1").format(
            view, sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(I(c)) for c in cols))).fetchone()
        if nulls is not None:
            raise errors.NotNullViolation(f'column "{cols[0]}" of relation "{version.name}" contains null values')
    version.constraints.append(Constraint(name, kind, cols, None))


def _first_column(version: TableVersion, expr: str) -> str | None:
    """The first column an expression names: PostgreSQL names an unnamed CHECK after it."""
    for tok in tokenize(expr):
        word = tok.text[1:-1].replace('""', '"') if tok.text.startswith('"') else tok.text.lower()
        if version.column(word) is not None:
            return word
    return None


def _choose_name(version: TableVersion, column: str | None, label: str) -> str:
    """PostgreSQL's default constraint name (<table>_<column>_<label>), numbered if it is taken."""
    base = "_".join(x for x in (version.name, column, label) if x)
    taken = {c.name for c in version.constraints}
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}{n}"
    return name


def _check_unique(conn: psycopg.Connection[Any], view: sql.Identifier, cols: list[str], name: str, table: str) -> None:
    key = sql.SQL(", ").join(I(c) for c in cols)
    dup = conn.execute(sql.SQL("SELECT {k} FROM {v} WHERE {nn} GROUP BY {k} HAVING count(*) > 1 LIMIT 1").format(
        k=key, v=view, nn=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(I(c)) for c in cols))).fetchone()
    if dup is not None:
        raise errors.UniqueViolation(
            f'could not create unique index "{name}"',
            detail=f"Key ({', '.join(cols)})=({', '.join(str(v) for v in dup)}) is duplicated.",
        )


def _top_level_items(toks: list[Any], open_at: int, close_at: int, text: str) -> list[str]:
    """The comma-separated items between two matching parentheses, as written."""
    inner = toks[open_at + 1 : close_at]
    commas = [inner[k] for k in top_level_commas(inner)]
    bounds = [toks[open_at].end + 1] + [c.end + 1 for c in commas]
    ends = [c.start for c in commas] + [toks[close_at].start]
    return [text[a:b].strip() for a, b in zip(bounds, ends, strict=True)]


def _unique_on_expressions(session: Session, version: TableVersion, info: TableInfo, name: str, items: list[str],
                       where: str | None) -> Constraint:
    """A UNIQUE index on expressions or with a predicate over an inherited table: checked against the rows
    the branch sees now (PostgreSQL's 23505 when two share a key), kept with the root relation's names."""
    conn, branch = session.conn, session.branch
    keys = [re.sub(r"(?i)\s+(asc|desc)(\s+nulls\s+(first|last))?$|\s+nulls\s+(first|last)$", "", k) for k in items]
    phys = phys_names(conn, info.id)
    by_name = {c.name: phys[c.col] for c in version.columns}

    def physical(text: str) -> str:
        def put(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and not node.table:
                if node.name not in by_name:
                    raise errors.UndefinedColumn(f'column "{node.name}" does not exist')
                return exp.Column(this=exp.to_identifier(by_name[node.name]))
            return node
        # as PostgreSQL writes an index's keys (pg_get_indexdef): lower-case functions, quotes where needed
        return sqlglot.parse_one(text, read="postgres").transform(put).sql(dialect="postgres",
                                                                           normalize_functions="lower")

    try:
        stored = [physical(k) for k in keys]
        stored_where = physical(where) if where else None
    except sqlglot.errors.ParseError:
        raise errors.SyntaxError(f'syntax error in the index definition of "{name}"') from None
    view = I(branch.user_schema, version.name)
    key_list = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(k)) for k in keys)
    dup = conn.execute(sql.SQL(
        "SELECT {k} FROM {v} WHERE {w} AND {nn} GROUP BY {k} HAVING count(*) > 1 LIMIT 1").format(
        k=key_list, v=view, w=sql.SQL(where or "TRUE"),
        nn=sql.SQL(" AND ").join(sql.SQL("({}) IS NOT NULL").format(sql.SQL(k)) for k in keys))).fetchone()
    if dup is not None:
        raise errors.UniqueViolation(f'could not create unique index "{name}"',
                                     detail=f"Key ({', '.join(keys)})=({', '.join(str(v) for v in dup)}) is duplicated.")
    return Constraint(name, "x", [], None, stored, stored_where)


@contextlib.contextmanager
def _scratch(conn: psycopg.Connection[Any], branch: Any, version: TableVersion) -> Iterator[str]:
    """An empty table shaped like the branch's view and named as it, for the length of a savepoint: DDL run
    on it is read by PostgreSQL itself (its errors, its normal form of expressions, the names it chooses),
    then read back from its catalogs."""
    scratch = sql.Identifier("pg_temp", version.name).as_string(conn)
    with conn.transaction():  # a failed statement takes the scratch table with it
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
            I(version.name), I(branch.user_schema, version.name)))
        yield scratch
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(scratch)))


def _index_shape(conn: psycopg.Connection[Any], branch: Any, version: TableVersion, text: str,
                 table: Name) -> dict[str, Any]:
    """CREATE INDEX as PostgreSQL reads it, recorded as introspect records the root relation's indexes."""
    with _scratch(conn, branch, version) as scratch:
        conn.execute(re.sub(r"(?i)\bCONCURRENTLY\b", "", replace(text, table, scratch), count=1))  # type: ignore[arg-type]
        (record,) = layout.index_records(conn, scratch)
    return record


def relation_names(session: Session) -> set[str]:
    """The names relations of the branch's schema have: an index, like a table, needs one of its own."""
    conn, branch = session.conn, session.branch
    names = {str(r[0]) for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s)",
        (I(branch.user_schema).as_string(conn),)).fetchall()}
    for v in Snapshot(conn, chain(conn, branch.id)).tables.values():
        if not v.dropped:
            names |= {c.name for c in v.constraints if c.kind in ("p", "u", "x", "i")}
    return names


def _check_shape(conn: psycopg.Connection[Any], branch: Any, version: TableVersion,
                 body: str) -> tuple[str, str, list[str]]:
    """A CHECK's expression as PostgreSQL prints it (pretty, as psql shows it; and not pretty) and the
    columns it uses."""
    with _scratch(conn, branch, version) as scratch:
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT _hdb_check CHECK ({}) NOT VALID").format(
            sql.SQL(scratch), sql.SQL(body)))  # type: ignore[arg-type]
        row = conn.execute(
            """SELECT pg_get_expr(c.conbin, c.conrelid, true),
                      ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                      pg_get_expr(c.conbin, c.conrelid)
               FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.conname = '_hdb_check'""",
            (scratch,)).fetchone()
    assert row is not None
    return row[0], row[2], list(row[1])


def check_holds(conn: psycopg.Connection[Any], view: sql.Composable, expr: str, name: str, table: str) -> None:
    """Every row of `view` passes the CHECK expression `expr`: PostgreSQL's 23514 otherwise."""
    bad = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE ({}) IS FALSE LIMIT 1").format(view, sql.SQL(expr))).fetchone()
    if bad is not None:
        raise errors.CheckViolation(f'check constraint "{name}" of relation "{table}" is violated by some row')


def _key_column(item: str) -> str:
    """A column of an index's key list, without its sort order (ASC/DESC, NULLS FIRST/LAST)."""
    item = re.sub(r"(?i)\s+nulls\s+(first|last)$", "", item.strip())
    item = re.sub(r"(?i)\s+(asc|desc)$", "", item).strip()
    return item[1:-1].replace('""', '"') if item.startswith('"') and item.endswith('"') else item.lower()


def index_on_branch(
    session: Session, version: TableVersion, info: TableInfo, toks: list[Any], text: str, name: Name,
    unique: bool, lsn: int,
) -> None:
    """CREATE INDEX on an inherited table: recorded in the branch's schema; UNIQUE is checked by the branch's
    write trigger, a plain index on columns is mirrored by an index over the branch's own rows."""
    conn, branch = session.conn, session.branch
    j = next(k for k, t in enumerate(toks) if is_word(t, "ON"))
    _, k = skip_words(toks, 2 if unique else 1, "INDEX")
    _, k = skip_words(toks, k, "CONCURRENTLY")
    if_not_exists, k = skip_words(toks, k, "IF", "NOT", "EXISTS")
    named = k < j
    idx_name = read_name(toks, k)[0].name if named else ""
    paren = next((p for p in range(j, len(toks)) if toks[p].text == "("), None)
    if paren is None:
        raise errors.SyntaxError("syntax error: expected a column list")
    taken = relation_names(session)
    if idx_name in taken:
        if if_not_exists:
            session.notices.append(f'NOTICE:  relation "{idx_name}" already exists, skipping')
            return
        raise errors.lookup("42P07")(f'relation "{idx_name}" already exists', sqlstate="42P07")
    e = matching_paren(toks, paren)
    items = _top_level_items(toks, paren, e, text)
    shape = _index_shape(conn, branch, version, text, name)
    idx_name = shape["name"] = idx_name or layout.free_name(shape["name"], taken)
    if unique:
        where = re.search(r"(?is)\bWHERE\b(.*)$", text[toks[e].end + 1 :])
        cols = [_key_column(c) for c in items]
        if where is None and all(version.column(c) is not None for c in cols):
            _check_unique(conn, I(branch.user_schema, version.name), cols, idx_name, version.name)
            con = Constraint(idx_name, "u", cols, None, index=True)
        else:  # on expressions or partial: the branch's write trigger checks it (layout._expression_unique)
            con = _unique_on_expressions(session, version, info, idx_name, items,
                                         where.group(1).strip() if where else None)
        con.using, con.options, con.opclasses = shape["using"], shape["options"], shape["opclasses"]
        version.constraints.append(con)
        version.branch_id = branch.id
        save_version(conn, version, lsn)
        layout.build_views(conn, branch, chain(conn, branch.id), info, version, replace=True)
        return
    version.constraints.append(Constraint(**shape))
    version.branch_id = branch.id
    save_version(conn, version, lsn)
    # It only speeds things up: index the branch relation on the same columns.
    names = {c.name: c.col for c in version.columns}
    phys = phys_names(conn, info.id)
    try:
        cols_sql = sql.SQL(", ").join(I(phys[names[_key_column(c)]]) for c in items)
    except KeyError:
        return  # expression index: nothing to mirror
    mirror = layout.mirror_name(idx_name, branch.id)
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(I(info.phys_schema, mirror)))  # one a type change replaced
    conn.execute(sql.SQL("CREATE INDEX {} ON {} (_hdb_branch, {})").format(I(mirror), I(*info.br), cols_sql))
