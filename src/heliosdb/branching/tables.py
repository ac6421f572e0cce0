"""Table DDL and bulk statements on a branch: CREATE/DROP/ALTER TABLE, indexes, TRUNCATE, COPY, VACUUM.

On the branch that created a table (its root) the user's statement runs
natively against the root relation, with only the table name swapped; the
catalog is then re-read from PostgreSQL. On other branches the statement is
applied to the branch's schema version and its views are rebuilt.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching import (
    ddl_locks,
    dependent_views,
    foreign_keys,
    images,
    inherited_keys,
    layout,
    like,
    retype,
)
from heliosdb.branching.retype import RETYPE
from heliosdb.catalog.model import (
    Column,
    Constraint,
    Snapshot,
    TableInfo,
    TableVersion,
    chain,
    find_table,
    save_version,
    table_info,
    visible_tables,
)
from heliosdb.sql.classify import Kind
from heliosdb.sql.names import (
    Name,
    is_word,
    matching_paren,
    quote_ident,
    read_name,
    read_names,
    replace,
    skip_words,
    tokenize,
    top_level_commas,
)

if TYPE_CHECKING:
    from heliosdb.session import Result, Session

I = sql.Identifier  # noqa: E741


def execute(session: Session, kind: Kind, text: str) -> Result:
    handler = _HANDLERS[kind]
    return handler(session, text)


def _result(status: str, cursor: Any = None, rowcount: int = -1) -> Result:
    from heliosdb.session import Result

    return Result(status=status, cursor=cursor, rowcount=rowcount)


def _passthrough(session: Session, text: str) -> Result:
    cur = session.result_cursor()
    cur.execute(text)  # type: ignore[arg-type]
    return _result(cur.statusmessage or "", cur if cur.description else None, cur.rowcount)


def _own(session: Session, name: Name) -> bool:
    """Whether a (possibly qualified) name refers to the current branch's tables."""
    return name.schema is None or name.schema == session.branch.user_schema


def _lsn(conn: psycopg.Connection[Any], branch_id: int) -> int:
    row = conn.execute("SELECT heliosdb.txn_lsn(%s)", (branch_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _find(session: Session, name: str) -> tuple[TableVersion, TableInfo] | None:
    levels = chain(session.conn, session.branch.id)
    v = find_table(session.conn, levels, name)
    if v is None:
        return None
    return v, table_info(session.conn, v.table_id)


def _other_relation(session: Session, name: Name) -> bool:
    """A relation the name resolves to that is not a HeliosDB table (a temporary table, say)."""
    text = (quote_ident(name.schema) + "." if name.schema else "") + quote_ident(name.name)
    row = session.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (text,)).fetchone()
    return bool(row and row[0])


def _undefined(name: str) -> errors.Error:
    return errors.UndefinedTable(f'relation "{name}" does not exist')


# -- CREATE TABLE -----------------------------------------------------------------------
def _create_table(session: Session, text: str) -> Result:
    toks = tokenize(text)
    i = 1
    _, i = skip_words(toks, i, "UNLOGGED")
    i += 1  # TABLE
    if_not_exists, i = skip_words(toks, i, "IF", "NOT", "EXISTS")
    name, _ = read_name(toks, i)
    if not _own(session, name):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    with conn.transaction():
        levels = chain(conn, branch.id)
        if find_table(conn, levels, name.name) is not None:
            if if_not_exists:
                session.notices.append(f'NOTICE:  relation "{name.name}" already exists, skipping')
                return _result("CREATE TABLE")
            raise errors.DuplicateTable(f'relation "{name.name}" already exists')
        # a key to another table locks it: as other DDL, its views before the branch (ddl_locks)
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [], referenced=_referenced(session, text))
        tid = int(conn.execute("SELECT nextval('heliosdb.table_id_seq')").fetchone()[0])  # type: ignore[index]
        info = TableInfo(tid, branch.id, f"hdb_t{tid}", name.name)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(I(info.phys_schema)))
        target = quote_ident(info.phys_schema) + "." + quote_ident(name.name)
        likes = like.expand(session, text)  # LIKE of a HeliosDB table (a view to PostgreSQL), written out
        cur = conn.execute(rewrite_references(session, replace(likes.text, name, target),  # type: ignore[arg-type]
                                              creating=(name.name, target)))
        for index in likes.indexes:
            conn.execute(index.replace("{}", target, 1))  # type: ignore[arg-type]
        rowcount = cur.rowcount
        status = cur.statusmessage or "CREATE TABLE"
        inherited = inherited_keys.adopt(conn, info)  # keys to tables this branch inherited
        conn.execute(
            sql.SQL(
                "ALTER TABLE {t} ADD COLUMN _hdb_rowid bigint NOT NULL DEFAULT nextval('heliosdb.rowid_seq'), "
                "ADD COLUMN _hdb_lsn bigint NOT NULL DEFAULT {l}"
            ).format(t=I(*info.cur), l=sql.Literal(lsn))
        )
        conn.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN _hdb_lsn DROP DEFAULT").format(t=I(*info.cur)))
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {t} (_hdb_rowid)").format(t=I(*info.cur)))
        conn.execute(
            "INSERT INTO heliosdb._tables VALUES (%s, %s, %s, %s, %s)",
            (tid, branch.id, info.phys_schema, info.phys_name, lsn),
        )
        cols, cons = layout.introspect(conn, info, {})
        cons += inherited
        for c in cols:
            c.col = _register_column(conn, tid, c.name, c.type)
        layout.create_side_relations(conn, info, cols)
        for con in cons:
            if con["kind"] in ("p", "u"):
                layout.mirror_index(conn, info, con["cols"])
        layout.install_root_triggers(conn, info)
        version = TableVersion(branch.id, tid, name.name, lsn, cols, [Constraint(**x) for x in cons])
        save_version(conn, version, lsn)
        layout.build_views(conn, branch, levels, info, version)
        if inherited:
            inherited_keys.after_ddl(session, info, version)
    if status.startswith("SELECT"):
        return _result(status, rowcount=rowcount)
    return _result("CREATE TABLE AS" if status == "CREATE TABLE AS" else "CREATE TABLE")  # AS ... WITH NO DATA


def rewrite_references(session: Session, text: str, creating: tuple[str, str] | None = None) -> str:
    """REFERENCES t -> the root relation of t, when t is rooted on this branch too; for a table the
    branch inherited, a stand-in (inherited_keys: the caller adopts the keys made to it).

    creating: (name, root relation) of the table being created, for a table that references itself.
    """
    toks = tokenize(text)
    out, pos = [], 0
    for k, t in enumerate(toks):
        if not is_word(t, "REFERENCES"):
            continue
        name, _ = read_name(toks, k + 1)
        if not _own(session, name):
            continue
        if creating is not None and name.name == creating[0]:
            out.append(text[pos : name.start] + creating[1])
            pos = name.end
            continue
        hit = _find(session, name.name)
        if hit is None:
            raise _undefined(name.name)
        info = hit[1]
        if info.root_branch != session.branch.id:  # PostgreSQL checks the key against a stand-in
            # (an ALTER TABLE makes it check the table's rows too: the stand-in holds what the branch sees)
            rows = None if creating is not None else I(session.branch.user_schema, hit[0].name)
            out.append(text[pos : name.start] + inherited_keys.stand_in(session.conn, hit[0], info, rows))
        else:
            out.append(text[pos : name.start] + quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name))
        pos = name.end
    out.append(text[pos:])
    return "".join(out)


def _register_column(conn: psycopg.Connection[Any], tid: int, phys: str, typ: str) -> int:
    row = conn.execute(
        "INSERT INTO heliosdb._columns VALUES (%s, nextval('heliosdb.col_id_seq'), %s, %s) RETURNING col_id",
        (tid, phys, typ),
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- DROP TABLE ----------------------------------------------------------------------------
def _drop_table(session: Session, text: str) -> Result:
    toks = tokenize(text)
    if_exists, i = skip_words(toks, 2, "IF", "EXISTS")
    names, i = read_names(toks, i)
    cascade = is_word(toks[i] if i < len(toks) else None, "CASCADE")
    if not all(_own(session, n) for n in names) or all(
            _find(session, n.name) is None and _other_relation(session, n) for n in names):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    with conn.transaction():
        found = []
        for n in names:
            hit = _find(session, n.name)
            if hit is None:
                if if_exists:
                    session.notices.append(f'NOTICE:  table "{n.name}" does not exist, skipping')
                    continue
                raise errors.UndefinedTable(f'table "{n.name}" does not exist')
            found.append(hit)
        if not found:
            return _result("DROP TABLE")
        from heliosdb.mv.ddl import guard_table_change

        for version, _info in found:
            guard_table_change(session, version.table_id, version.name, None, cascade=cascade)
        sides = [_related(session, info, "") for _version, info in found]
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info for _version, info in found],
                                     referencing=[r for children, _ in sides for r in children],
                                     referenced=[r for _, parents in sides for r in parents])
        levels = chain(conn, branch.id)
        snap = Snapshot(conn, levels, only=[v.table_id for v, _info in found])
        dropping = {v.table_id for v, _info in found}
        referencing = [fk for v, _info in found for fk in foreign_keys.incoming(snap, v)
                       if fk.child.table_id not in dropping]
        views = [] if cascade else [line for v, _info in found
                                    for line in dependent_views.over_table(session, branch.user_schema, v.name)]
        if (referencing or views) and not cascade:  # as PostgreSQL: the keys and views depend on the table
            table = referencing[0].parent.name if referencing else next(
                v.name for v, _info in found if dependent_views.over_table(session, branch.user_schema, v.name))
            raise errors.DependentObjectsStillExist(
                f"cannot drop table {table} because other objects depend on it",
                detail="\n".join([f"constraint {fk.con.name} on table {fk.child.name} depends on table "
                                   f"{fk.parent.name}" for fk in referencing] + views),
                hint="Use DROP ... CASCADE to drop the dependent objects too.")
        for fk in referencing:
            _drop_foreign_key(session, snap, fk, lsn)
        related = {t for _version, info in found for t in layout.related_tables(snap, info)}
        for version, info in found:
            layout.drop_views(conn, branch, version.name, cascade,
                              table_id=version.table_id if info.root_branch != branch.id else None)
            if info.root_branch == branch.id:  # its root relation stays (history): its native keys must go
                for con in version.constraints:
                    if con.kind == "f" and not inherited_keys.is_inherited(con):
                        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                            I(*info.cur), I(con.name)))
                inherited_keys.drop_checks(conn, info)
            version.branch_id = branch.id
            version.dropped = True
            save_version(conn, version, lsn)
        layout.refresh_writes(conn, branch, levels, sorted(related))  # their foreign keys to it are gone
    return _result("DROP TABLE")


def _drop_foreign_key(session: Session, snap: Snapshot, fk: foreign_keys.ForeignKey, lsn: int) -> None:
    """DROP TABLE ... CASCADE: the referencing table loses its foreign key, as in PostgreSQL.

    The dropped table's root relation stays (its history), so a native constraint to it must go.
    """
    conn, branch = session.conn, session.branch
    info = snap.info[fk.child.table_id]
    session.notices.append(f"NOTICE:  drop cascades to constraint {fk.con.name} on table {fk.child.name}")
    if info.root_branch == branch.id:
        if inherited_keys.is_inherited(fk.con):  # no constraint of PostgreSQL's: the schema version's only
            _resync_root(session, fk.child, info, lsn, drop_keys={fk.con.name})
            return
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(I(*info.cur), I(fk.con.name)))
        _resync_root(session, fk.child, info, lsn)
        return
    version = dataclasses.replace(fk.child, branch_id=branch.id,
                                  constraints=[c for c in fk.child.constraints if c.name != fk.con.name])
    save_version(conn, version, lsn)


def _resync_referencing(session: Session, info: TableInfo, lsn: int) -> None:
    """Re-read the foreign keys of the tables rooted here that reference `info`'s table (their catalog
    entry names the referenced columns, which descendant branches check by name)."""
    snap = Snapshot(session.conn, chain(session.conn, session.branch.id))
    version = snap.tables.get(info.id)
    if version is None:
        return
    for fk in foreign_keys.incoming(snap, version):
        child = snap.info[fk.child.table_id]
        if child.root_branch == session.branch.id and child.id != info.id:
            _resync_root(session, fk.child, child, lsn)


# -- ALTER TABLE ------------------------------------------------------------------------------
_DROPS = re.compile(r'(?is)^\s*(DROP\b|ALTER\s+(COLUMN\s+)?("(?:[^"]|"")+"|\S+)\s+DROP\s+(DEFAULT|NOT\s+NULL)\b)')


def _one_action_at_a_time(session: Session, text: str, toks: list[Any], i: int) -> None:
    """An ALTER TABLE with a type change among other actions (Django's AlterField sends TYPE with SET
    DEFAULT): each action (from token i on) as its own ALTER TABLE, in PostgreSQL's order of passes
    (drops, DROP DEFAULT and DROP NOT NULL first, then type changes, then the others as written)."""
    starts = [i, *(i + k + 1 for k in top_level_commas(toks[i:]))]
    ends = [toks[s - 1].start for s in starts[1:]] + [len(text)]
    clauses = [text[toks[s].start : e].strip().rstrip(";").strip() for s, e in zip(starts, ends, strict=True)]
    for clause in sorted(clauses, key=lambda c: 0 if _DROPS.match(c) else 1 if retype.is_retype(c) else 2):
        _alter_table(session, text[: toks[i].start] + clause)


def _alter_table(session: Session, text: str) -> Result:
    toks = tokenize(text)
    if_exists, i = skip_words(toks, 2, "IF", "EXISTS")
    _, i = skip_words(toks, i, "ONLY")
    name, i = read_name(toks, i)
    if not _own(session, name):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    with conn.transaction():
        hit = _find(session, name.name)
        if hit is None:
            if _other_relation(session, name):
                return _passthrough(session, text)
            if if_exists:
                session.notices.append(f'NOTICE:  relation "{name.name}" does not exist, skipping')
                return _result("ALTER TABLE")
            raise _undefined(name.name)
        version, info = hit
        rest = text[toks[i].start :] if i < len(toks) else ""
        _guard_views(session, version, toks, i)
        children, parents = _related(session, info, rest)
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info], referencing=children, referenced=parents)
        # DROP COLUMN and type changes make the table's view again: the user's views over it wait outside
        with dependent_views.kept(session, branch.user_schema, version.name, dependent_views.changes(toks, i)):
            result = _alter_actions(session, text, toks, i, version, info, rest, lsn)
        # the stored SQL of materialized views over the table names its columns: made again
        from heliosdb.mv.ddl import resync_sql

        resync_sql(conn, info.id, lsn)
        return result


def _alter_actions(session: Session, text: str, toks: list[Any], i: int, version: TableVersion, info: TableInfo,
                   rest: str, lsn: int) -> Result:
    conn, branch = session.conn, session.branch
    sub = [t.text.upper() for t in toks[i : i + 3]]
    if sub[:2] == ["RENAME", "TO"]:
        new_name, _ = read_name(toks, i + 2)
        if find_table(conn, chain(conn, branch.id), new_name.name) is not None:
            raise errors.DuplicateTable(f'relation "{new_name.name}" already exists')
        conn.execute(
            sql.SQL("ALTER VIEW {} RENAME TO {}").format(I(branch.user_schema, version.name), I(new_name.name))
        )
        if branch.id != info.root_branch:
            conn.execute(
                sql.SQL("ALTER VIEW {} RENAME TO {}").format(
                    I(branch.phys_schema, version.name), I(new_name.name)
                )
            )
            conn.execute(
                sql.SQL("ALTER FUNCTION {}() RENAME TO {}").format(
                    I(branch.phys_schema, version.name + "__w"), I(new_name.name + "__w")
                )
            )
        version.branch_id = branch.id
        version.name = new_name.name
        save_version(conn, version, lsn)
        # trigger functions name the table's views: its own, and those of tables with foreign keys to or from it
        levels = chain(conn, branch.id)
        snap = Snapshot(conn, levels, only=[info.id])
        layout.refresh_writes(conn, branch, levels, [info.id, *layout.related_tables(snap, info)], snap)
        return _result("ALTER TABLE")
    if RETYPE.search(rest) is not None:  # a type change: versioned steps (retype.py)
        if top_level_commas(toks[i:]):
            _one_action_at_a_time(session, text, toks, i)
            return _result("ALTER TABLE")
        if not retype.is_retype(rest):
            raise errors.SyntaxError("syntax error in ALTER COLUMN ... TYPE")
        retype.retype(session, version, info, rest, lsn)
        return _result("ALTER TABLE")
    if branch.id == info.root_branch:
        _alter_root(session, version, info, rest, toks, i, lsn)
        if "RENAME" in rest.upper():  # a renamed key column: the keys that reference it name it
            _resync_referencing(session, info, lsn)
    else:
        from heliosdb.branching.alter_branch import alter_inherited

        alter_inherited(session, version, info, text, toks, i, lsn)
    return _result("ALTER TABLE")


_REFERENCES = re.compile(r'\bREFERENCES\s+((?:"[^"]+"|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|[\w$]+))?)', re.IGNORECASE)


def _related(session: Session, info: TableInfo, rest: str) -> tuple[list[TableInfo], list[TableInfo]]:
    """The tables DDL of `info` reaches by foreign keys: those with keys to it, and those it has keys
    to now or that `rest` makes."""
    conn = session.conn
    snap = Snapshot(conn, chain(conn, session.branch.id), only=[info.id])
    children, parents = foreign_keys.related_by_side(snap, info)
    return ([snap.info[v.table_id] for v in children],
            [snap.info[v.table_id] for v in parents] + _referenced(session, rest))


def _referenced(session: Session, text: str) -> list[TableInfo]:
    """The branch's tables that REFERENCES clauses of `text` name."""
    out = []
    for m in _REFERENCES.finditer(text):
        name = read_name(tokenize(m.group(1)), 0)[0]
        hit = _find(session, name.name) if _own(session, name) else None
        if hit is not None:
            out.append(hit[1])
    return out


def _guard_views(session: Session, version: TableVersion, toks: list[Any], i: int) -> None:
    """DROP COLUMN / ALTER COLUMN ... TYPE of a column a materialized view reads: PostgreSQL's refusal (or CASCADE);
    RENAME of the table or such a column: refused (the view's query names them)."""
    from heliosdb.mv.ddl import guard_table_change

    if is_word(toks[i] if i < len(toks) else None, "RENAME"):
        _, j = skip_words(toks, i + 1, "COLUMN")
        if is_word(toks[j] if j < len(toks) else None, "TO"):  # the table itself
            guard_table_change(session, version.table_id, version.name, None, cascade=False, action="rename")
        elif j < len(toks) and not is_word(toks[j], "CONSTRAINT"):
            col, _ = read_name(toks, j)
            guard_table_change(session, version.table_id, version.name, col.name, cascade=False, action="rename")
        return
    if not is_word(toks[i] if i < len(toks) else None, "DROP", "ALTER"):
        return
    action = toks[i].text.upper()
    _, j = skip_words(toks, i + 1, "COLUMN")
    if action == "DROP":
        _, j = skip_words(toks, j, "IF", "EXISTS")
    if j >= len(toks) or is_word(toks[j], "CONSTRAINT"):
        return
    col, k = read_name(toks, j)
    if action == "DROP":
        cascade = any(is_word(t, "CASCADE") for t in toks[k:k + 1])
        guard_table_change(session, version.table_id, version.name, col.name, cascade=cascade)
    elif any(is_word(t, "TYPE") for t in toks[k:k + 3]):
        guard_table_change(session, version.table_id, version.name, col.name, cascade=False, action="alter type")


def _attnums(conn: psycopg.Connection[Any], info: TableInfo) -> dict[int, str]:
    rel = quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name)
    return dict(
        conn.execute(
            "SELECT attnum, attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            (rel,),
        ).fetchall()
    )


def _alter_root(
    session: Session, version: TableVersion, info: TableInfo, rest: str, toks: list[Any], i: int, lsn: int
) -> None:
    """ALTER TABLE on the table's root branch: natively on the root relation, then resync."""
    conn = session.conn
    words = [t.text.upper() for t in toks[i : i + 4]]
    if words and words[0] == "DROP" and (len(words) < 2 or words[1] not in ("CONSTRAINT",)):
        j = i + 1
        _, j = skip_words(toks, j, "COLUMN")
        col_if_exists, j = skip_words(toks, j, "IF", "EXISTS")
        col, j = read_name(toks, j)
        cascade = is_word(toks[j] if j < len(toks) else None, "CASCADE")
        if j < len(toks) and toks[j].text == ",":
            raise errors.NotSupportedError("ALTER TABLE with DROP COLUMN and other actions is not supported",
                                           hint="Run each action as its own ALTER TABLE.")
        _hide_root_column(session, version, info, col.name, col_if_exists, cascade, lsn)
        return
    before = _attnums(conn, info)
    by_phys = {p: c for c, p in conn.execute(
        "SELECT col_id, phys_name FROM heliosdb._columns WHERE table_id = %s", (info.id,)).fetchall()}
    col_of_attnum = {n: by_phys[name] for n, name in before.items() if name in by_phys}
    target = quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name)
    named = _inherited_key_named(version, toks, i)
    if named is not None:  # not PostgreSQL's constraint: only the schema version has it
        action, key = named
        if action == "VALIDATE":
            valid = inherited_keys.validate(session, info, version, key)
            if valid is not None:  # recorded as valid: a merge carries it so
                _resync_root(session, version, info, lsn, add_keys=[valid], drop_keys={key})
        else:
            _resync_root(session, version, info, lsn, drop_keys={key})
        return
    conn.execute(rewrite_references(session, "ALTER TABLE " + target + " " + rest))  # type: ignore[arg-type]
    added = inherited_keys.adopt(conn, info)
    after = _attnums(conn, info)
    renamed = False
    for attnum, phys in after.items():
        if phys.startswith("_hdb_"):
            continue
        col = col_of_attnum.get(attnum)
        typ = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = %s",
            (target, attnum),
        ).fetchone()[0]  # type: ignore[index]
        if col is None:
            col, moved = _adopt_or_add(conn, info, phys, typ)
            renamed = renamed or moved
        elif before[attnum] != phys:
            for rel in (info.br, info.hist):
                conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(I(*rel), I(before[attnum]), I(phys)))
            conn.execute("UPDATE heliosdb._columns SET phys_name = %s WHERE table_id = %s AND col_id = %s",
                         (phys, info.id, col))
            renamed = True
    _resync_root(session, version, info, lsn, add_keys=added)
    if renamed:
        layout.refresh_below_root(conn, info)


def _inherited_key_named(version: TableVersion, toks: list[Any], i: int) -> tuple[str, str] | None:
    """`ALTER TABLE ... DROP | VALIDATE CONSTRAINT name` of an inherited key (inherited_keys): the action and
    the key's name."""
    action = toks[i].text.upper() if i < len(toks) else ""
    if action not in ("DROP", "VALIDATE") or not is_word(toks[i + 1] if i + 1 < len(toks) else None, "CONSTRAINT"):
        return None
    _, j = skip_words(toks, i + 2, "IF", "EXISTS")
    name, j = read_name(toks, j)
    _, j = skip_words(toks, j, "RESTRICT")
    _, j = skip_words(toks, j, "CASCADE")
    if j < len(toks) and toks[j].text != ";":
        return None  # with other actions: PostgreSQL's (a stand-in key is no constraint of its)
    hit = next((c for c in version.constraints if c.name == name.name and inherited_keys.is_inherited(c)), None)
    return (action, hit.name) if hit is not None else None


def _adopt_or_add(conn: psycopg.Connection[Any], info: TableInfo, phys: str, typ: str) -> tuple[int, bool]:
    """A column new on the root relation: the same column another branch added (name and type), or a new one;
    and whether another branch's column was renamed for it.

    __br and __hist are shared by every branch; a different column that another branch added under the
    same name is renamed there first (views refer to columns by position, so they are unaffected).
    """
    row = conn.execute(
        "SELECT col_id, type FROM heliosdb._columns WHERE table_id = %s AND phys_name = %s", (info.id, phys)
    ).fetchone()
    if row is not None and row[1] == typ:
        return int(row[0]), False
    if row is not None:
        moved = f"{phys}__c{row[0]}"
        for rel in (info.br, info.hist):
            conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(I(*rel), I(phys), I(moved)))
        conn.execute("UPDATE heliosdb._columns SET phys_name = %s WHERE table_id = %s AND col_id = %s",
                     (moved, info.id, row[0]))
    col = _register_column(conn, info.id, phys, typ)
    for rel in (info.br, info.hist):
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(I(*rel), I(phys), sql.SQL(typ)))
    return col, row is not None


def _resync_root(session: Session, old: TableVersion, info: TableInfo, lsn: int, *,
                 add_keys: list[dict[str, Any]] | None = None, drop_keys: set[str] | None = None,
                 views: bool = True) -> None:
    """The root relation changed: a new schema version from it, the branch's views and triggers again.

    add_keys / drop_keys: keys to tables the branch inherited, made or dropped by this statement
    (not PostgreSQL's constraints: the schema version keeps them, see inherited_keys).
    views=False: the statement left the columns as they were (CREATE INDEX), so the view stays.
    """
    conn, branch = session.conn, session.branch
    names = {p: c for c, p in conn.execute(
        "SELECT col_id, phys_name FROM heliosdb._columns WHERE table_id = %s", (info.id,)).fetchall()}
    cols, cons = layout.introspect(conn, info, names)
    usings = {c.col: c.using for c in old.columns}
    for c in cols:  # PostgreSQL's catalogs do not know what a type change converted with: the version does
        c.using = usings.get(c.col)
    kept = [c for c in old.constraints if inherited_keys.is_inherited(c) and c.name not in (drop_keys or set())]
    was = {c.col: c.name for c in old.columns}
    renamed = {was[c.col]: c.name for c in cols if c.col in was and was[c.col] != c.name}
    present = {c.name for c in cols}
    for con in kept:  # PostgreSQL drops a key with its column and renames its columns
        keys = [renamed.get(c, c) for c in con.cols]
        if all(c in present for c in keys):
            cons.append({"name": con.name, "kind": "f", "cols": keys, "expr": con.expr})
    cons += add_keys or []
    # the columns keep the order the table shows (a type change puts its new column where the old one was)
    order = {c.col: k for k, c in enumerate(old.columns)}
    cols.sort(key=lambda c: order.get(c.col, len(order)))
    version = TableVersion(branch.id, info.id, old.name, lsn, cols, [Constraint(**x) for x in cons])
    had = {(c.kind, tuple(c.cols)) for c in old.constraints}
    for con in version.constraints:
        if con.kind in ("p", "u") and (con.kind, tuple(con.cols)) not in had and all(c in names for c in con.cols):
            layout.mirror_index(conn, info, con.cols)
    old_names = {c.col: c.name for c in old.columns}
    for c in cols:
        if c.col in old_names and old_names[c.col] != c.name:
            conn.execute(sql.SQL("ALTER VIEW {} RENAME COLUMN {} TO {}").format(
                I(branch.user_schema, old.name), I(old_names[c.col]), I(c.name)))
    layout.install_root_triggers(conn, info)
    save_version(conn, version, lsn)
    if views:
        layout.build_views(conn, branch, chain(conn, branch.id), info, version, replace=True)
    if kept or add_keys or drop_keys:
        inherited_keys.after_ddl(session, info, version, old)


def _hide_root_column(
    session: Session, version: TableVersion, info: TableInfo, col: str, if_exists: bool, cascade: bool, lsn: int
) -> None:
    """DROP COLUMN on the root keeps the data (history and other branches need it) but hides it."""
    conn = session.conn
    column = version.column(col)
    if column is None:
        if if_exists:
            session.notices.append(f'NOTICE:  column "{col}" of relation "{version.name}" does not exist, skipping')
            return
        raise errors.UndefinedColumn(f'column "{col}" of relation "{version.name}" does not exist')
    if len(version.columns) == 1:
        pass  # PostgreSQL allows zero-column tables; so do we
    with layout.keeping_comments(conn, session.branch.user_schema, version.name):
        conn.execute(sql.SQL("DROP VIEW {}{}").format(
            I(session.branch.user_schema, version.name), sql.SQL(" CASCADE" if cascade else "")))
        _hide_column(session, version, info, column, col, lsn)


def _hide_column(session: Session, version: TableVersion, info: TableInfo, column: Any, col: str, lsn: int) -> None:
    """The storage side of _hide_root_column: the column's keys and indexes dropped, the column renamed away,
    the schema read back (which makes the user's view again)."""
    conn = session.conn
    target = (info.phys_schema, info.phys_name)
    rel = quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name)
    for (conname,) in conn.execute(
        """SELECT conname FROM pg_constraint c JOIN pg_attribute a
               ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
           WHERE c.conrelid = %s::regclass AND a.attname = %s""", (rel, col)).fetchall():
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(I(*target), I(conname)))
    for (idx,) in conn.execute(  # as PostgreSQL's DROP COLUMN: every index that depends on the column
        """SELECT DISTINCT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid
           WHERE i.indrelid = %s::regclass AND a.attname = %s""", (rel, col)).fetchall():
        conn.execute(sql.SQL("DROP INDEX {}").format(I(info.phys_schema, idx)))
    hidden = f"_hdb_dropped_{column.col}"
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL, ALTER COLUMN {} DROP DEFAULT").format(
        I(*target), I(col), I(col)))
    for rel_name in (info.cur, info.br, info.hist):
        conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(I(*rel_name), I(col), I(hidden)))
    conn.execute("UPDATE heliosdb._columns SET phys_name = %s WHERE table_id = %s AND col_id = %s",
                 (hidden, info.id, column.col))
    _resync_root(session, version, info, lsn)
    layout.refresh_below_root(conn, info)


# -- indexes ---------------------------------------------------------------------------------------
def _create_index(session: Session, text: str) -> Result:
    toks = tokenize(text)
    j = next((k for k, t in enumerate(toks) if is_word(t, "ON")), None)
    if j is None:
        return _passthrough(session, text)
    _, k = skip_words(toks, j + 1, "ONLY")
    name, _ = read_name(toks, k)
    if not _own(session, name):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    unique = is_word(toks[1], "UNIQUE")
    with conn.transaction():
        hit = _find(session, name.name)
        if hit is None:
            if _other_relation(session, name):
                return _passthrough(session, text)
            raise _undefined(name.name)
        version, info = hit
        if branch.id == info.root_branch:
            # PostgreSQL's own CREATE INDEX: readers go on while it builds, and the views stay as they are
            lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info], root_mode="SHARE")
            conn.execute(replace(text, name, quote_ident(info.phys_schema) + "." + quote_ident(info.phys_name)))  # type: ignore[arg-type]
            _resync_root(session, version, info, lsn, views=False)  # indexes are schema: later branches see it
            return _result("CREATE INDEX")
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info])
        from heliosdb.branching.alter_branch import index_on_branch

        index_on_branch(session, version, info, toks, text, name, unique, lsn)
    return _result("CREATE INDEX")


def _drop_index(session: Session, text: str) -> Result:
    toks = tokenize(text)
    _, i = skip_words(toks, 2, "CONCURRENTLY")
    if_exists, i = skip_words(toks, i, "IF", "EXISTS")
    name, i = read_name(toks, i)
    if not _own(session, name):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    with conn.transaction():
        schemas, row = _index_named(session, name.name)
        if row is not None and branch.id == schemas[row[0]][1].root_branch:  # the table's own: PostgreSQL's
            version, info = schemas[row[0]]
            lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info])
            conn.execute(sql.SQL("DROP INDEX {}").format(I(row[0], row[1])))
            _resync_root(session, version, info, lsn)
            return _result("DROP INDEX")
        # On a branch that inherited the table the index is the branch's schema: the root relation's
        # physical indexes serve every branch and stay; the branch's mirror over its own rows goes.
        owner = next(((v, i, c) for v, i in schemas.values() for c in v.constraints if c.name == name.name), None)
        if owner is None or not owner[2].is_index:
            if owner is not None:
                raise errors.lookup("2BP01")(
                    f'cannot drop index {name.name} because constraint {name.name} on table {owner[0].name} '
                    "requires it", hint=f"You can drop constraint {name.name} on table {owner[0].name} instead.",
                    sqlstate="2BP01")
            if if_exists:
                session.notices.append(f'NOTICE:  index "{name.name}" does not exist, skipping')
                return _result("DROP INDEX")
            raise errors.UndefinedObject(f'index "{name.name}" does not exist')
        version, info, con = owner
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info])
        version.constraints = [c for c in version.constraints if c.name != name.name]
        version.branch_id = branch.id
        save_version(conn, version, lsn)
        if row is not None and row[1] == layout.mirror_name(name.name, branch.id):
            conn.execute(sql.SQL("DROP INDEX {}").format(I(row[0], row[1])))
        if con.kind != "i":  # a uniqueness check of the branch's write trigger
            layout.build_views(conn, branch, chain(conn, branch.id), info, version, replace=True)
    return _result("DROP INDEX")


def _index_named(session: Session, name: str) -> tuple[dict[str, tuple[TableVersion, TableInfo]], Any]:
    """The branch's tables by storage schema, and the index of that name among them: (schema, index
    name) of the table's own index, or of one this branch made (`<name>__b<branch>`), or None."""
    conn, branch = session.conn, session.branch
    infos = {tid: (v, table_info(conn, tid)) for tid, v in visible_tables(conn, chain(conn, branch.id)).items()}
    schemas = {info.phys_schema: (v, info) for v, info in infos.values()}
    row = conn.execute(
        "SELECT schemaname, indexname FROM pg_indexes WHERE indexname = ANY(%s) AND schemaname = ANY(%s)",
        ([name, layout.mirror_name(name, branch.id)], list(schemas)),
    ).fetchone()
    return schemas, row


def _alter_index(session: Session, text: str) -> Result:
    """ALTER INDEX name RENAME TO new, for an index of a table of the branch (in its storage schema, or a
    unique index made on a branch that inherited the table: its write trigger's check)."""
    toks = tokenize(text)
    if_exists, i = skip_words(toks, 2, "IF", "EXISTS")
    name, i = read_name(toks, i)
    if not _own(session, name) or [t.text.upper() for t in toks[i : i + 2]] != ["RENAME", "TO"]:
        return _passthrough(session, text)
    new, _ = read_name(toks, i + 2)
    conn, branch = session.conn, session.branch
    with conn.transaction():
        schemas, row = _index_named(session, name.name)
        if row is not None and branch.id == schemas[row[0]][1].root_branch:  # the table's own: PostgreSQL's
            version, info = schemas[row[0]]
            lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info])
            conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(I(row[0], row[1]), I(new.name)))
            _resync_root(session, version, info, lsn)  # a constraint's index: its name too
            return _result("ALTER INDEX")
        owner = next(((v, i) for v, i in schemas.values()
                      if any(c.name == name.name and c.kind in ("p", "u", "x", "i") for c in v.constraints)), None)
        if owner is None:
            if if_exists:
                session.notices.append(f'NOTICE:  relation "{name.name}" does not exist, skipping')
                return _result("ALTER INDEX")
            if row is not None:  # the root relation's index, made after this branch's fork: not the branch's
                raise errors.UndefinedTable(f'relation "{name.name}" does not exist')
            return _passthrough(session, text)  # not a HeliosDB table's: PostgreSQL's own answer
        version, info = owner
        from heliosdb.branching.alter_branch import relation_names

        if new.name in relation_names(session):
            raise errors.lookup("42P07")(f'relation "{new.name}" already exists', sqlstate="42P07")
        lsn = ddl_locks.lock_for_ddl(conn, branch.id, [info])
        for con in version.constraints:
            if con.name == name.name:
                con.name = new.name
        version.branch_id = branch.id
        save_version(conn, version, lsn)
        if row is not None and row[1] == layout.mirror_name(name.name, branch.id):  # over the branch's rows
            conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                I(row[0], row[1]), I(layout.mirror_name(new.name, branch.id))))
        layout.build_views(conn, branch, chain(conn, branch.id), info, version, replace=True)
    return _result("ALTER INDEX")


# -- TRUNCATE, COPY, VACUUM/ANALYZE -----------------------------------------------------------------
def _truncate(session: Session, text: str) -> Result:
    toks = tokenize(text)
    _, i = skip_words(toks, 1, "TABLE")
    _, i = skip_words(toks, i, "ONLY")
    names, i = read_names(toks, i)
    tail = text[toks[i].start :] if i < len(toks) else ""
    if not all(_own(session, n) for n in names):
        return _passthrough(session, text)
    conn, branch = session.conn, session.branch
    if all(_find(session, n.name) is None and _other_relation(session, n) for n in names):
        return _passthrough(session, text)
    with conn.transaction():
        found = []
        for n in names:
            hit = _find(session, n.name)
            if hit is None:
                raise _undefined(n.name)
            found.append(hit[0])
        snap = Snapshot(conn, chain(conn, branch.id))
        found = _truncated_with(session, snap, found, cascade=_CASCADE.search(tail) is not None)
        roots = [snap.info[v.table_id] for v in found if snap.info[v.table_id].root_branch == branch.id]
        if roots:  # in one statement: PostgreSQL accepts tables that reference each other truncated together
            ddl_locks.lock_for_ddl(conn, branch.id, roots, root_mode="ACCESS EXCLUSIVE")
            conn.execute(sql.SQL("TRUNCATE {} ").format(sql.SQL(", ").join(I(*i.cur) for i in roots))  # type: ignore[operator]
                         + sql.SQL(_CASCADE.sub("", tail)))
        inherited = [v for v in found if snap.info[v.table_id].root_branch != branch.id]
        if inherited and re.search(r"\bRESTART\s+IDENTITY\b", tail, re.IGNORECASE):
            raise errors.NotSupportedError(
                f'TRUNCATE ... RESTART IDENTITY is not supported on a branch that inherited table "{inherited[0].name}"',
                detail="Its sequences are shared by every branch: restarting them would repeat values elsewhere.",
                hint="Use TRUNCATE without RESTART IDENTITY.")
        if inherited:
            conn.execute("SELECT set_config('heliosdb.truncating', 'on', true)")
            for version in inherited:
                conn.execute(sql.SQL("DELETE FROM {}").format(I(branch.user_schema, version.name)))
            conn.execute("SELECT set_config('heliosdb.truncating', '', true)")
    return _result("TRUNCATE TABLE")


_CASCADE = re.compile(r"\bCASCADE\b", re.IGNORECASE)


def _truncated_with(session: Session, snap: Snapshot, tables: list[TableVersion], *,
                    cascade: bool) -> list[TableVersion]:
    """The tables TRUNCATE empties: the named ones and, with CASCADE, every table referencing one of them.

    Without CASCADE a table outside the list that references one is PostgreSQL's 0A000.
    """
    out = {v.table_id: v for v in tables}
    todo = list(tables)
    while todo:
        for fk in foreign_keys.incoming(snap, todo.pop()):
            if fk.child.table_id in out:
                continue
            if not cascade:
                raise errors.NotSupportedError(
                    "cannot truncate a table referenced in a foreign key constraint",
                    detail=f'Table "{fk.child.name}" references "{fk.parent.name}".',
                    hint=f'Truncate table "{fk.child.name}" at the same time, or use TRUNCATE ... CASCADE.')
            session.notices.append(f'NOTICE:  truncate cascades to table "{fk.child.name}"')
            out[fk.child.table_id] = fk.child
            todo.append(fk.child)
    return list(out.values())


def copy_statement(session: Session, text: str) -> str:
    """COPY naming a branch table, rewritten to what PostgreSQL accepts on our layout."""
    toks = tokenize(text)
    if len(toks) < 2 or toks[1].text == "(":
        return text
    name, i = read_name(toks, 1)
    if not _own(session, name):
        return text
    hit = None
    if session.as_of is not None:  # a temporal context runs only COPY TO (Session.copy): the table then
        if name.name not in session.as_of_views:
            raise _undefined(name.name)
        view = "pg_temp." + quote_ident(name.name)
    else:
        hit = _find(session, name.name)
        if hit is None:
            if _other_relation(session, name):
                return text
            raise _undefined(name.name)
        view = quote_ident(session.branch.user_schema) + "." + quote_ident(hit[0].name)
    cols = ""
    if i < len(toks) and toks[i].text == "(":
        j = matching_paren(toks, i)
        cols = text[toks[i].start : toks[j].end + 1]
        i = j + 1
    direction = toks[i].text.upper() if i < len(toks) else ""
    tail = text[toks[i].start :] if i < len(toks) else ""
    cols = _copy_columns(session, name.name, hit, view, cols)
    if direction == "TO" or hit is None:
        select = cols[1:-1] if cols else "*"
        return f"COPY (SELECT {select} FROM {view}) {tail}"
    version, info = hit
    if session.branch.id == info.root_branch:
        return f"COPY {quote_ident(info.phys_schema)}.{quote_ident(info.phys_name)} {cols} {tail}"
    return f"COPY {view} {cols} {tail}"


def _copy_columns(session: Session, name: str, hit: tuple[TableVersion, TableInfo] | None, view: str,
                  cols: str) -> str:
    """COPY's column list, as PostgreSQL takes it: without one, every column but the stored generated ones;
    one that names a generated column is 42P10."""
    version = hit[0] if hit is not None else (_find(session, name) or (None,))[0]
    generated = {c.name for c in version.columns if c.generated is not None} if version is not None else set()
    if cols:
        toks = tokenize(cols[1:-1])
        for k in [-1, *top_level_commas(toks)]:
            column = read_name(toks, k + 1)[0].name
            if column in generated:
                raise errors.lookup("42P10")(f'column "{column}" is a generated column', sqlstate="42P10",
                                             detail="Generated columns cannot be used in COPY.")
        return cols
    if hit is not None:
        names = [c.name for c in hit[0].columns if c.name not in generated]
    else:  # the point's columns (a temporal context's view)
        names = [r[0] for r in session.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (view,)).fetchall() if r[0] not in generated]
    return "(" + ", ".join(quote_ident(c) for c in names) + ")"


def _copy(session: Session, text: str) -> Result:
    return _passthrough(session, copy_statement(session, text))


def _maintenance(session: Session, text: str) -> Result:
    """VACUUM / ANALYZE / REINDEX / CLUSTER t: run on the relations that hold the branch's rows."""
    first = len(text) - len(text.lstrip())
    word = text[first:].split(None, 1)[0]
    # sqlglot reads VACUUM's arguments as one string: tokenize them as if after a SELECT of the same length
    toks = tokenize(text[:first] + "SELECT".ljust(len(word)) + text[first + len(word):])[1:]
    conn, branch = session.conn, session.branch
    tables = {v.name: (v, tid) for tid, v in visible_tables(conn, chain(conn, branch.id)).items()}
    out, pos, depth = [], 0, 0
    named: list[int] = []  # the tables named; none: the statement is about all of them
    for k, t in enumerate(toks):
        depth += t.text == "("
        depth -= t.text == ")"
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        prev = toks[k - 1] if k > 0 else None
        if depth or t.token_type.name not in ("VAR", "IDENTIFIER") or (nxt is not None and nxt.text == "."):
            continue
        start = t.start
        if prev is not None and prev.text == ".":  # schema.t: the branch's own schema names its tables too
            schema = toks[k - 2] if k > 1 else None
            if schema is None or _ident(schema) != branch.user_schema:
                continue
            start = schema.start
        name = _ident(t)
        if name in tables:
            info = table_info(conn, tables[name][1])
            if word.upper() == "CLUSTER" and info.root_branch != branch.id:
                raise errors.NotSupportedError(
                    f'CLUSTER of table "{name}" is not supported on a branch that inherited it',
                    detail="Its rows are stored with those of the branch it was created on and of other branches.",
                    hint="CLUSTER it on the branch that created it; REINDEX, VACUUM and ANALYZE work here.")
            rel = info.cur if info.root_branch == branch.id else info.br
            named.append(info.id)
            out.append(text[pos:start] + quote_ident(rel[0]) + "." + quote_ident(rel[1]))
            pos = t.end + 1
    out.append(text[pos:])
    result = _passthrough(session, "".join(out))
    if word.upper() == "VACUUM" and branch.parent_id is not None and (named or not _names_a_relation(toks)):
        problems: list[str] = []
        images.compact(conn, branch, named or None, problems=problems)  # it compacts (branching.images)
        session.notices.extend(f"NOTICE:  {p}" for p in problems)
    return result


def _ident(tok: Any) -> str:
    return tok.text if tok.token_type.name == "IDENTIFIER" else tok.text.lower()


_VACUUM_WORDS = {"full", "freeze", "verbose", "analyze", "analyse"}


def _names_a_relation(toks: list[Any]) -> bool:
    """Whether VACUUM's arguments (tokens after the word) name a relation, not only options."""
    depth = 0
    for t in toks:
        depth += t.text == "("
        depth -= t.text == ")"
        if not depth and t.text not in "()," and t.text.lower() not in _VACUUM_WORDS:
            return True
    return False


class ProbedColumn(NamedTuple):
    column: Column
    constraints: list[Constraint]
    volatile_default: bool  # PostgreSQL would evaluate the default once per existing row


# PostgreSQL keeps a non-volatile default of an added column as its "missing value" (atthasmissing)
# and rewrites the table for a volatile one: its own contain_volatile_functions decides, built-ins
# included. "IS NULL" keeps the test boolean, non-null and free of domain constraints.
_VOLATILE_PROBE = "ALTER TABLE pg_temp._hdb_probe ADD COLUMN _hdb_volatile boolean DEFAULT (({}) IS NULL)"
_HAS_MISSING = (
    "SELECT atthasmissing FROM pg_attribute "
    "WHERE attrelid = 'pg_temp._hdb_probe'::regclass AND attname = '_hdb_volatile'"
)


def column_from_probe(conn: psycopg.Connection[Any], coldef: str) -> ProbedColumn:
    """Let PostgreSQL parse a column definition: create it in a scratch table and read it back."""
    volatile = False
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMP TABLE _hdb_probe (" + coldef + ")")  # type: ignore[arg-type]
        info = TableInfo(0, 0, "pg_temp", "_hdb_probe")
        cols, cons = layout.introspect(conn, info, {})
        missing = None
        if cols and cols[0].default is not None:
            conn.execute(sql.SQL(_VOLATILE_PROBE).format(sql.SQL(cols[0].default)))
            flag = conn.execute(sql.SQL(_HAS_MISSING)).fetchone()
            volatile = flag is None or not flag[0]
        if cols and cols[0].default is not None and not volatile:
            row = conn.execute(
                sql.SQL("SELECT quote_nullable(({})::{})").format(sql.SQL(cols[0].default), sql.SQL(cols[0].type))
            ).fetchone()
            missing = row[0] if row else None
    col = cols[0]
    col.missing = None if missing in (None, "NULL") else missing
    return ProbedColumn(col, [Constraint(**c) for c in cons], volatile)


def _set_constraints(session: Session, text: str) -> Result:
    """SET CONSTRAINTS name, ... {DEFERRED | IMMEDIATE} naming HeliosDB tables' constraints.

    A table's constraints belong to its storage relation, in a schema of HeliosDB's that is on no
    search path: each name is qualified with it (keys to inherited tables are constraint triggers
    of that name there, see inherited_keys). A DEFERRABLE key that a branch inherited is checked
    through the session's queue (foreign_keys): its name stands for the queue's triggers, so it
    moves every queued check of the transaction. A name HeliosDB does not know goes to PostgreSQL
    as written (a temporary table's constraint, or its 42704).
    """
    toks = tokenize(text)
    i = 2
    if is_word(toks[i] if i < len(toks) else None, "ALL"):
        return _passthrough(session, text)
    names, i = read_names(toks, i)
    mode = toks[i].text.upper() if i < len(toks) else ""
    if mode not in ("DEFERRED", "IMMEDIATE") or i + 1 < len(toks) and toks[i + 1].text != ";":
        return _passthrough(session, text)  # PostgreSQL's syntax error
    conn, branch = session.conn, session.branch
    snap = Snapshot(conn, chain(conn, branch.id))
    targets: list[str] = []
    for name in names:
        hits = [(v, con) for v in snap.tables.values() if not v.dropped and (name.schema is None or _own(session, name))
                for con in v.constraints if con.name == name.name]
        if not hits:
            targets.append(text[name.start : name.end])
        for v, con in hits:
            info = snap.info[v.table_id]
            fk = next((k for k in foreign_keys.outgoing(snap, v) if k.con.name == con.name), None)
            if info.root_branch == branch.id:
                targets.append(quote_ident(info.phys_schema) + "." + quote_ident(con.name))
                if not (fk is not None and fk.deferrable and inherited_keys.is_inherited(con)):
                    continue  # PostgreSQL's own key: its triggers on both tables answer to its name
                # a key to an inherited table: its check is that trigger, the referenced side's the queue's
            elif fk is None or not fk.deferrable:
                raise errors.WrongObjectType(f'constraint "{con.name}" is not deferrable')
            conn.execute("SELECT heliosdb._fk_queue_ready()")  # the mode holds for checks queued later too
            targets += ["pg_temp._hdb_fk_immediate", "pg_temp._hdb_fk_deferred"]
    if targets:
        conn.execute(f"SET CONSTRAINTS {', '.join(dict.fromkeys(targets))} {mode}")  # type: ignore[arg-type]
    return _result("SET CONSTRAINTS")


_HANDLERS = {
    Kind.CREATE_TABLE: _create_table,
    Kind.DROP_TABLE: _drop_table,
    Kind.ALTER_TABLE: _alter_table,
    Kind.CREATE_INDEX: _create_index,
    Kind.DROP_INDEX: _drop_index,
    Kind.ALTER_INDEX: _alter_index,
    Kind.TRUNCATE: _truncate,
    Kind.COPY: _copy,
    Kind.MAINTENANCE: _maintenance,
    Kind.SET_CONSTRAINTS: _set_constraints,
}
