"""Physical layout of a versioned table and the views each branch reads it through.

For a table (id N) created on branch R, schema hdb_tN holds:
    "<name>"        R's current rows: the user's columns with their native
                    constraints, plus _hdb_rowid (row identity, stable across
                    branches) and _hdb_lsn (LSN of the version).
    "<name>__br"    current rows and tombstones of every other branch that wrote.
    "<name>__hist"  closed versions of every branch, valid in [_hdb_begin, _hdb_end).

On R, the user's object is a simple (auto-updatable) view over "<name>", so
reads and writes run at native speed. On any other branch B, schema hdb_bB
holds an internal view with the rows B sees (its own, then each ancestor's as
of the fork point, minus rows written below) and the user's view over it, with
an INSTEAD OF trigger that writes versions into "<name>__br" and "<name>__hist".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.branching import exclusions, foreign_keys, images, inherited_keys
from heliosdb.catalog.model import (
    Branch,
    Column,
    Constraint,
    Level,
    Snapshot,
    TableInfo,
    TableVersion,
    chain,
    get_branch_by_id,
)
from heliosdb.sql.lsn import MAX_LSN
from heliosdb.sql.names import quote_ident, quote_literal

I = sql.Identifier  # noqa: E741 - short alias used throughout SQL building
L = sql.Literal

# Types without a usable equality operator: not used to find a row by value.
_NO_EQUALITY = {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"}


def q(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


# -- introspection of the root relation -----------------------------------------
def introspect(conn: psycopg.Connection[Any], info: TableInfo, names: dict[str, int]) -> tuple[
    list[Column], list[dict[str, Any]]
]:
    """Columns and constraints of the root relation, from PostgreSQL's catalogs."""
    rel = f"{quote_ident(info.phys_schema)}.{quote_ident(info.phys_name)}"
    cols: list[Column] = []
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), a.attidentity,
                  pg_get_serial_sequence(%s, a.attname), a.attgenerated
           FROM pg_attribute a
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (rel, rel),
    ).fetchall()
    for name, typ, notnull, default, identity, seq, generated in rows:
        if name.startswith("_hdb_"):
            continue
        if identity and seq:
            default = f"nextval({quote_literal(seq)}::regclass)"
        if generated == "s":  # pg_attrdef holds the generation expression, not a default
            cols.append(Column(name=name, col=names.get(name, 0), type=typ, notnull=notnull, generated=default))
            continue
        cols.append(Column(name=name, col=names.get(name, 0), type=typ, notnull=notnull, default=default,
                           identity=identity or ""))
    cons = []
    for name, kind, keys, expr, valid, plain in conn.execute(
        """SELECT c.conname, c.contype,
                  ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                  pg_get_expr(c.conbin, c.conrelid, true), c.convalidated, pg_get_expr(c.conbin, c.conrelid)
           FROM pg_constraint c WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u', 'c')
           ORDER BY c.oid""",
        (rel,),
    ).fetchall():
        cons.append({"name": name, "kind": kind, "cols": list(keys), "expr": expr, "valid": valid})
        if plain is not None:
            cons[-1]["plain"] = plain
    # foreign keys: expr holds the referenced table's name (as HeliosDB knows it) and columns
    for name, keys, ref_schema, ref_name, ref_keys, on_delete, on_update, match, deferrable, deferred, valid in (
        conn.execute(
        """SELECT c.conname,
                  ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
                  t.phys_schema, t.phys_name,
                  ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
                  c.confdeltype, c.confupdtype, c.confmatchtype, c.condeferrable, c.condeferred, c.convalidated
           FROM pg_constraint c
           JOIN pg_class r ON r.oid = c.confrelid
           JOIN heliosdb._tables t ON t.phys_schema = r.relnamespace::regnamespace::text AND t.phys_name = r.relname
           WHERE c.conrelid = %s::regclass AND c.contype = 'f' ORDER BY c.oid""",
        (rel,),
    ).fetchall()):
        cons.append({"name": name, "kind": "f", "cols": list(keys),
                     "expr": json.dumps({"table": ref_name, "schema": ref_schema, "cols": list(ref_keys),
                                         "on_delete": on_delete, "on_update": on_update, "match": match,
                                         "deferrable": deferrable, "deferred": deferred, "valid": valid})})
    cons += index_records(conn, rel)
    return cols, cons


def mirror_name(index: str, branch_id: int) -> str:
    """The name of a branch's index over its rows of a table (`<index>__b<branch>`), within PostgreSQL's 63
    bytes: a long index name is cut and told apart by a hash, so two never share a truncated name."""
    name = f"{index}__b{branch_id}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(index.encode()).hexdigest()[:8]
    return f"{index.encode()[:40].decode(errors='ignore')}_{digest}__b{branch_id}"


def free_name(base: str, taken: set[str]) -> str:
    """PostgreSQL's choice of an unused name: the base, else base1, base2, ... (the base cut to fit 63 bytes)."""
    name, n = base, 0
    while name in taken:
        n += 1
        suffix = str(n)
        name = base.encode()[: 63 - len(suffix)].decode(errors="ignore") + suffix
    return name


def index_records(conn: psycopg.Connection[Any], rel: str) -> list[dict[str, Any]]:
    """A relation's indexes that no constraint owns, as schema records: unique ones on columns ('u', kept
    by branches' write triggers), unique ones on expressions or with a predicate ('x', the same), the others
    ('i'); each with its definition as PostgreSQL prints it after USING, its key options and operator
    classes. Indexes over HeliosDB's own columns are left out."""
    out: list[dict[str, Any]] = []
    for name, unique, special, cols, keys, where, using, options, opclasses in conn.execute(
        """SELECT ic.relname, i.indisunique, i.indexprs IS NOT NULL OR i.indpred IS NOT NULL,
                  ARRAY(SELECT coalesce(a.attname, '') FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                        WHERE k.o <= i.indnkeyatts ORDER BY k.o),
                  ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k),
                  pg_get_expr(i.indpred, i.indrelid, true),
                  substring(pg_get_indexdef(i.indexrelid, 0, true) FROM ' USING (.*)$'),
                  (i.indoption::int2[])[0:i.indnkeyatts - 1],
                  ARRAY(SELECT CASE WHEN o.opcdefault THEN '' ELSE o.opcname::text END
                        FROM unnest(i.indclass::oid[]) WITH ORDINALITY k(c, n) JOIN pg_opclass o ON o.oid = k.c
                        ORDER BY k.n)
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass
             -- conrelid first: pg_constraint has no index on conindid (a scan of all of it per index)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = i.indrelid
                             AND c.conindid = i.indexrelid)
             AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid
                             AND a.attnum = ANY(i.indkey::int2[]) AND a.attname LIKE '\\_hdb\\_%%')
           ORDER BY ic.relname""",
        (rel,),
    ).fetchall():
        shape = {"using": using, "options": list(options), "opclasses": list(opclasses)}
        if unique and not special:
            out.append({"name": name, "kind": "u", "cols": list(cols), "expr": None, "index": True, **shape})
        elif unique:
            out.append({"name": name, "kind": "x", "cols": [], "expr": None, "keys": list(keys), "where": where,
                        **shape})
        else:
            out.append({"name": name, "kind": "i", "cols": list(cols), "expr": None, "keys": list(keys),
                        "where": where, **shape})
    return out


def user_columns(conn: psycopg.Connection[Any], rel: tuple[str, str]) -> list[str]:
    """Physical user columns of a relation (no _hdb_ bookkeeping columns), in order."""
    return [
        r[0]
        for r in conn.execute(
            """SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0
               AND NOT attisdropped AND attname NOT LIKE '\\_hdb\\_%%' ORDER BY attnum""",
            (f"{quote_ident(rel[0])}.{quote_ident(rel[1])}",),
        ).fetchall()
    ]


# -- physical relations -----------------------------------------------------------
def create_side_relations(conn: psycopg.Connection[Any], info: TableInfo, cols: list[Column]) -> None:
    """The __br and __hist relations beside a freshly created root relation."""
    col_defs = [sql.SQL("{} {}").format(I(c.name), sql.SQL(c.type)) for c in cols]
    conn.execute(
        sql.SQL(
            "CREATE TABLE {br} (_hdb_branch integer NOT NULL, {cols}{sep} _hdb_rowid bigint NOT NULL, "
            "_hdb_lsn bigint NOT NULL, _hdb_del boolean NOT NULL DEFAULT false, "
            "PRIMARY KEY (_hdb_branch, _hdb_rowid))"
        ).format(br=q(*info.br), cols=sql.SQL(", ").join(col_defs), sep=sql.SQL("," if col_defs else ""))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {h} (_hdb_branch integer NOT NULL, {cols}{sep} _hdb_rowid bigint NOT NULL, "
            "_hdb_begin bigint NOT NULL, _hdb_end bigint NOT NULL, _hdb_del boolean NOT NULL DEFAULT false)"
        ).format(h=q(*info.hist), cols=sql.SQL(", ").join(col_defs), sep=sql.SQL("," if col_defs else ""))
    )
    conn.execute(
        sql.SQL("CREATE INDEX ON {h} (_hdb_branch, _hdb_rowid, _hdb_end)").format(h=q(*info.hist))
    )
    # reads as of a point find the versions a branch closed after it through this one
    conn.execute(sql.SQL("CREATE INDEX ON {h} (_hdb_branch, _hdb_end)").format(h=q(*info.hist)))
    # merges and incremental views find a branch's changes since an LSN through these
    conn.execute(sql.SQL("CREATE INDEX ON {br} (_hdb_branch, _hdb_lsn)").format(br=q(*info.br)))
    # a deep branch's view asks, per candidate row, whether any of many ancestors wrote its row id
    conn.execute(sql.SQL("CREATE INDEX ON {br} (_hdb_rowid)").format(br=q(*info.br)))
    # Analyzed while empty, the planner sizes them by their actual pages instead of assuming 10 pages
    # each (never-analyzed tables): small branch tables no longer look big enough for JIT and parallel plans.
    conn.execute(sql.SQL("ANALYZE {}, {}").format(q(*info.br), q(*info.hist)))


def mirror_index(conn: psycopg.Connection[Any], info: TableInfo, cols: list[str]) -> None:
    """Index the branch rows and history on columns the root relation indexes (key lookups on branches).

    On __br the branch comes last: the primary key (_hdb_branch, _hdb_rowid) is then the only
    index a condition on the branch alone can use. A branch that starts writing has no rows in
    __br's statistics, so every index led by _hdb_branch looked equally cheap for "this branch,
    this row id" and the planner took the last one created (the key mirror), reading all of the
    branch's rows per written row.
    """
    if not cols:
        return
    keys = sql.SQL(", ").join(I(c) for c in cols)
    conn.execute(sql.SQL("CREATE INDEX ON {} ({}, _hdb_branch)").format(q(*info.br), keys))
    conn.execute(sql.SQL("CREATE INDEX ON {} (_hdb_branch, {})").format(q(*info.hist), keys))


# The root relation's columns (not HeliosDB's), and whether each one's type is a domain that is NOT NULL
# (itself or a domain it is made from)
_ROOT_COLUMNS = """
SELECT a.attname, EXISTS (
    WITH RECURSIVE d(oid, base, nn) AS (
        SELECT t.oid, t.typbasetype, t.typnotnull FROM pg_type t WHERE t.oid = a.atttypid AND t.typtype = 'd'
      UNION ALL
        SELECT t.oid, t.typbasetype, t.typnotnull FROM pg_type t JOIN d ON t.oid = d.base WHERE t.typtype = 'd')
    SELECT FROM d WHERE d.nn)
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attname NOT IN ('_hdb_rowid', '_hdb_lsn') ORDER BY a.attnum"""


def install_root_triggers(conn: psycopg.Connection[Any], info: TableInfo) -> None:
    """(Re)create the triggers that version the root relation's rows."""
    rel = q(*info.cur)
    schema = info.phys_schema
    rows = conn.execute(_ROOT_COLUMNS, (f"{quote_ident(info.phys_schema)}.{quote_ident(info.phys_name)}",)).fetchall()
    phys = [r[0] for r in rows]
    # an insert marker's columns are NULL, which a NOT NULL domain refuses: those carry the row's value
    marked = [r[0] for r in rows if r[1]]
    cols = sql.SQL("").join(sql.SQL("{}, ").format(I(c)) for c in phys)
    old_cols = sql.SQL("").join(sql.SQL("o.{}, ").format(I(c)) for c in phys)
    b = L(info.root_branch)
    hist = q(*info.hist)
    stamp = q(schema, "_hdb_stamp")
    archive = q(schema, "_hdb_archive")
    truncate = q(schema, "_hdb_truncate")
    mark = q(schema, "_hdb_mark")
    conn.execute(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {stamp}() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    NEW._hdb_lsn := heliosdb.txn_lsn({b});
    RETURN NEW;
END $f$"""
        ).format(stamp=stamp, b=b)
    )
    conn.execute(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {archive}() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE _hdb_l bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM _hdb_old) THEN RETURN NULL; END IF;
    _hdb_l := heliosdb.txn_lsn({b});
    INSERT INTO {hist} (_hdb_branch, {cols}_hdb_rowid, _hdb_begin, _hdb_end)
    SELECT {b}, {old_cols}o._hdb_rowid, o._hdb_lsn, _hdb_l FROM _hdb_old o WHERE o._hdb_lsn <> _hdb_l;
    RETURN NULL;
END $f$"""
        ).format(archive=archive, b=b, hist=hist, cols=cols, old_cols=old_cols)
    )
    conn.execute(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {truncate}() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE _hdb_l bigint := heliosdb.txn_lsn({b});
BEGIN
    INSERT INTO {hist} (_hdb_branch, {cols}_hdb_rowid, _hdb_begin, _hdb_end)
    SELECT {b}, {old_cols}o._hdb_rowid, o._hdb_lsn, _hdb_l FROM {rel} o WHERE o._hdb_lsn <> _hdb_l;
    RETURN NULL;
END $f$"""
        ).format(truncate=truncate, b=b, hist=hist, cols=cols, old_cols=old_cols, rel=rel)
    )
    # An insert leaves a zero-length marker version [l, l) in history, so that every
    # change of the root relation since an LSN is found through __hist's _hdb_end index.
    conn.execute(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {mark}() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE _hdb_l bigint := heliosdb.held_lsn({b});
BEGIN
    IF _hdb_l IS NULL THEN RETURN NULL; END IF;
    INSERT INTO {hist} (_hdb_branch, {mcols}_hdb_rowid, _hdb_begin, _hdb_end, _hdb_del)
    SELECT {b}, {new_cols}n._hdb_rowid, _hdb_l, _hdb_l, true FROM _hdb_new n;
    RETURN NULL;
END $f$"""
        ).format(mark=mark, b=b, hist=hist, mcols=sql.SQL("").join(sql.SQL("{}, ").format(I(c)) for c in marked),
                 new_cols=sql.SQL("").join(sql.SQL("n.{}, ").format(I(c)) for c in marked))
    )
    exists = conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = '_hdb_stamp'",
        (f"{quote_ident(info.phys_schema)}.{quote_ident(info.phys_name)}",),
    ).fetchone()
    if exists:
        return
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER _hdb_stamp BEFORE INSERT OR UPDATE ON {rel} FOR EACH ROW EXECUTE FUNCTION {f}()"
        ).format(rel=rel, f=stamp)
    )
    for event in ("UPDATE", "DELETE"):
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {name} AFTER {event} ON {rel} REFERENCING OLD TABLE AS _hdb_old "
                "FOR EACH STATEMENT EXECUTE FUNCTION {f}()"
            ).format(name=I(f"_hdb_archive_{event.lower()}"), event=sql.SQL(event), rel=rel, f=archive)
        )
    conn.execute(
        sql.SQL("CREATE TRIGGER _hdb_truncate BEFORE TRUNCATE ON {rel} FOR EACH STATEMENT EXECUTE FUNCTION {f}()")
        .format(rel=rel, f=truncate)
    )
    conn.execute(
        sql.SQL("CREATE TRIGGER _hdb_mark AFTER INSERT ON {rel} REFERENCING NEW TABLE AS _hdb_new "
                "FOR EACH STATEMENT EXECUTE FUNCTION {f}()").format(rel=rel, f=mark)
    )
    # the branch's write lock before the statement locks any row (catalog/write_lock.sql)
    conn.execute(
        sql.SQL("CREATE TRIGGER _hdb_lock BEFORE INSERT OR UPDATE OR DELETE ON {rel} "
                "FOR EACH STATEMENT EXECUTE FUNCTION heliosdb._write_lock({b})").format(rel=rel, b=sql.Literal(str(info.root_branch)))
    )


# -- views ----------------------------------------------------------------------
def levels_to_root(levels: list[Level], info: TableInfo) -> list[Level]:
    out = []
    for lv in levels:
        out.append(lv)
        if lv.branch_id == info.root_branch:
            return out
    raise AssertionError(f"table {info.id} root branch {info.root_branch} is not an ancestor")


def select_list(
    version: TableVersion, present: set[int], names: dict[int, str], alias: str
) -> sql.Composable:
    items: list[sql.Composable] = [sql.SQL("{}._hdb_rowid").format(I(alias))]
    for c in version.columns:
        if c.col in present:
            items.append(sql.SQL("{}.{} AS {}").format(I(alias), I(names[c.col]), I(c.name)))
        else:
            value = sql.SQL(c.missing) if c.missing is not None else sql.SQL("NULL")
            items.append(sql.SQL("CAST({} AS {}) AS {}").format(value, sql.SQL(c.type), I(c.name)))
    return sql.SQL(", ").join(items)


def state_sql(snap: Snapshot, levels: list[Level], info: TableInfo, version: TableVersion,
              guard: sql.Composable | None = None) -> sql.Composable:
    """SELECT of the rows the first level sees, with _hdb_rowid first.

    Flat in the depth of the ancestry (three arms, whatever the depth):
      - the top level's own rows, when it is not the root and is read at its head;
      - the other non-root levels' versions valid at each level's cutoff, from one
        join of __br/__hist to a VALUES list (branch, level, cutoff), keeping a
        version only when no level nearer the top has one for its row id;
      - the root's rows as of its cutoff, minus every row id some non-root level has.
    Tombstones take part in the "nearer the top" tests and are dropped at the end.

    guard: a boolean scalar subquery to evaluate before any row is read; only where the table's
    root is the first level, seen at a past point (see `root_guardable`). It goes into the
    history arm, as an InitPlan (a plan node with an InitPlan cannot run in parallel workers:
    the statement stays serial).
    """
    names = snap.names[info.id]
    levels = levels_to_root(levels, info)
    presence = _presence(snap, levels, info, version)
    root = len(levels) - 1
    arms: list[sql.Composable] = []
    over = list(range(root))  # the levels that override the root's rows
    mids = over
    if over and levels[0].upto == MAX_LSN:
        # the head of the top level: every row it wrote is current, no cutoff and no history
        arms.append(sql.SQL("SELECT {cols} FROM {br} r WHERE r._hdb_branch = {b} AND NOT r._hdb_del").format(
            cols=select_list(version, presence[0], names, "r"), br=q(*info.br), b=L(levels[0].branch_id)))
        mids = over[1:]
    if mids:
        near_idx = [i for i in over if i < max(mids)]
        nearer = (sql.SQL(" AND ") + _not_written(levels, near_idx, info, "y", "r._hdb_rowid", nearer_than="r._lvl")
                  if near_idx else sql.SQL(""))
        arms.append(sql.SQL("SELECT {cols} FROM ({m}) r WHERE NOT r._hdb_del{n}").format(
            cols=sql.SQL(", ").join([sql.SQL("r._hdb_rowid"), *(sql.SQL("r.{}").format(I(c.name)) for c in version.columns)]),
            m=_mid_versions(levels, mids, info, version, presence, names), n=nearer))
    rl = levels[root]
    cols = select_list(version, presence[root], names, "r")
    if rl.upto == MAX_LSN:
        root_rows: sql.Composable = sql.SQL("SELECT {cols} FROM {t} r").format(cols=cols, t=q(*info.cur))
    else:
        # The LSN filter sits above a qual-free UNION ALL: PostgreSQL then flattens the arms into
        # plain scans (an arm with its own WHERE stays a subquery that projects every column per row)
        # and pushes the filter down: the root arm keeps only `_hdb_lsn <= point`, the history arm its
        # index conditions. The history arm comes first: a guard there (an InitPlan, run when the
        # arm starts) runs before any row of the root arm is read, and costs the big arm nothing.
        root_out = sql.SQL(", ").join(
            [sql.SQL("u._hdb_rowid"), *(sql.SQL("u.{}").format(I(c.name)) for c in version.columns)]
        )
        gate = sql.SQL("") if guard is None or over else sql.SQL(" WHERE {}").format(guard)
        root_rows = sql.SQL(
            "SELECT {outer} FROM (SELECT {cols}, r._hdb_begin AS _hdb_lo, r._hdb_end AS _hdb_hi, "
            "r._hdb_branch AS _hdb_b, r._hdb_del AS _hdb_d FROM {h} r{gate} "
            "UNION ALL SELECT {cols}, r._hdb_lsn, {max}::bigint, {root}::integer, false FROM {t} r) u "
            "WHERE u._hdb_b = {b} AND u._hdb_lo <= {u} AND u._hdb_hi > {u} AND NOT u._hdb_d"
        ).format(outer=root_out, cols=cols, max=L(MAX_LSN), root=L(info.root_branch), t=q(*info.cur),
                 h=q(*info.hist), gate=gate, b=L(rl.branch_id), u=L(rl.upto))
    if not over:
        return root_rows
    outer = sql.SQL(", ").join([sql.SQL("s._hdb_rowid"), *(sql.SQL("s.{}").format(I(c.name)) for c in version.columns)])
    arms.append(sql.SQL("SELECT {oc} FROM ({rows}) s WHERE {w}").format(
        oc=outer, rows=root_rows, w=_not_written(levels, over, info, "w", "s._hdb_rowid")))
    return sql.SQL(" UNION ALL ").join(arms)


def root_guardable(levels: list[Level], info: TableInfo) -> bool:
    """Whether state_sql can carry a guard: the first level is the table's root, at a past point."""
    return levels[0].branch_id == info.root_branch and levels[0].upto != MAX_LSN


def _presence(snap: Snapshot, levels: list[Level], info: TableInfo, version: TableVersion) -> list[set[int]]:
    """Per level: the column ids the table has there (as that level sees it at its cutoff).

    One pass from the root up: a level without a schema version of its own sees its parent's.
    """
    out: list[set[int]] = [set() for _ in levels]
    seen: set[int] = set()
    for i in range(len(levels) - 1, -1, -1):
        own, v = snap.own_version(levels[i], info.id)
        if own:
            seen = {c.col for c in v.columns} if v is not None else set()  # None: dropped at that level
        out[i] = seen
    out[0] = {c.col for c in version.columns}
    return out


def _values(levels: list[Level], idx: list[int]) -> sql.Composable:
    # Integers only, formatted directly: composing hundreds of Literals per view was the main cost of
    # building a deep branch's views.
    return sql.SQL(", ".join(f"({int(levels[i].branch_id)}, {int(i)}, {int(levels[i].upto)}::bigint)" for i in idx))


def _not_written(levels: list[Level], idx: list[int], info: TableInfo, alias: str, rowid: str,
                 nearer_than: str | None = None) -> sql.Composable:
    """Condition: row id `rowid` has no version (tombstones count) at levels idx valid at their cutoffs.

    With nearer_than, only levels nearer the top than that level number count. One NOT EXISTS per
    relation: PostgreSQL turns each into an anti-join (a NOT EXISTS over a UNION stays a per-row subplan).
    """
    rid = sql.SQL(rowid)
    a = I(alias)
    bounded = [i for i in idx if levels[i].upto != MAX_LSN]
    if len(idx) == 1 and nearer_than is None:
        lv = levels[idx[0]]
        b, u = L(lv.branch_id), L(lv.upto)
        if lv.upto == MAX_LSN:
            return sql.SQL(
                "NOT EXISTS (SELECT 1 FROM {br} {a} WHERE {a}._hdb_branch = {b} AND {a}._hdb_rowid = {rid})"
            ).format(br=q(*info.br), a=a, b=b, rid=rid)
        return sql.SQL(
            "NOT EXISTS (SELECT 1 FROM {br} {a} WHERE {a}._hdb_branch = {b} AND {a}._hdb_rowid = {rid} "
            "AND {a}._hdb_lsn <= {u}) AND NOT EXISTS (SELECT 1 FROM {h} {a} WHERE {a}._hdb_branch = {b} "
            "AND {a}._hdb_rowid = {rid} AND {a}._hdb_begin <= {u} AND {a}._hdb_end > {u})"
        ).format(br=q(*info.br), h=q(*info.hist), a=a, b=b, u=u, rid=rid)
    near = sql.SQL(" AND v._lvl < {}").format(sql.SQL(nearer_than)) if nearer_than else sql.SQL("")
    out = sql.SQL(
        "NOT EXISTS (SELECT 1 FROM {br} {a} JOIN (VALUES {vals}) v(_b, _lvl, _u) ON {a}._hdb_branch = v._b "
        "AND {a}._hdb_lsn <= v._u WHERE {a}._hdb_rowid = {rid}{near})"
    ).format(br=q(*info.br), a=a, vals=_values(levels, idx), rid=rid, near=near)
    if bounded:
        out = out + sql.SQL(
            " AND NOT EXISTS (SELECT 1 FROM {h} {a} JOIN (VALUES {vals}) v(_b, _lvl, _u) ON {a}._hdb_branch = v._b "
            "AND {a}._hdb_begin <= v._u AND {a}._hdb_end > v._u WHERE {a}._hdb_rowid = {rid}{near})"
        ).format(h=q(*info.hist), a=a, vals=_values(levels, bounded), rid=rid, near=near)
    return out


def _mid_versions(levels: list[Level], idx: list[int], info: TableInfo, version: TableVersion,
                  presence: list[set[int]], names: dict[int, str]) -> sql.Composable:
    """Every version (tombstones too) valid at the cutoff of levels idx, with its level number as _lvl."""
    items: list[sql.Composable] = [sql.SQL("x._hdb_rowid, v._lvl, x._hdb_del")]
    for c in version.columns:
        have = [i for i in idx if c.col in presence[i]]
        missing = sql.SQL("CAST({} AS {})").format(
            sql.SQL(c.missing) if c.missing is not None else sql.SQL("NULL"), sql.SQL(c.type))
        if len(have) == len(idx):
            value: sql.Composable = sql.SQL("x.{}").format(I(names[c.col]))
        elif not have:
            value = missing
        else:
            value = sql.SQL("CASE WHEN v._lvl = ANY({}::int[]) THEN x.{} ELSE {} END").format(
                L(have), I(names[c.col]), missing)
        items.append(sql.SQL("{} AS {}").format(value, I(c.name)))
    cols = sql.SQL(", ").join(items)
    bounded = [i for i in idx if levels[i].upto != MAX_LSN]
    out = sql.SQL(
        "SELECT {cols} FROM {br} x JOIN (VALUES {vals}) v(_b, _lvl, _u) ON x._hdb_branch = v._b AND x._hdb_lsn <= v._u"
    ).format(cols=cols, br=q(*info.br), vals=_values(levels, idx))
    if bounded:
        out = out + sql.SQL(
            " UNION ALL SELECT {cols} FROM {h} x JOIN (VALUES {vals}) v(_b, _lvl, _u) ON x._hdb_branch = v._b "
            "AND x._hdb_begin <= v._u AND x._hdb_end > v._u"
        ).format(cols=cols, h=q(*info.hist), vals=_values(levels, bounded))
    return out


def build_views(
    conn: psycopg.Connection[Any], branch: Branch, levels: list[Level], info: TableInfo, version: TableVersion,
    *, replace: bool = False, snap: Snapshot | None = None,
) -> None:
    """Create the branch's user view (and, off the root, internal view and trigger).

    With replace, views are replaced in place when PostgreSQL allows it (so the
    user's own views over them survive); otherwise they are dropped (RESTRICT)
    and created again.
    """
    snap = snap or Snapshot(conn, levels, only=[info.id])
    if not replace:
        conn.execute(_batch(view_statements(snap, branch, levels, info, version, or_replace=False,
                                            excluding=_excluding(conn, branch, info))))
        return
    # the table's shape changed: a branch image of it goes (the next VACUUM makes it again)
    imaged = info.root_branch != branch.id and images.forget(conn, branch.id, info.id)
    _replace_views(conn, branch, levels, info, version, snap)
    if imaged:
        images.drop(conn, branch, info.id)


def _excluding(conn: psycopg.Connection[Any], branch: Branch, info: TableInfo) -> list[exclusions.Exclusion]:
    """The exclusion constraints a branch's write trigger of the table checks (none on its root branch)."""
    return [] if info.root_branch == branch.id else exclusions.read(conn, [info]).get(info.id, [])


def _replace_views(conn: psycopg.Connection[Any], branch: Branch, levels: list[Level], info: TableInfo,
                   version: TableVersion, snap: Snapshot) -> None:
    if info.root_branch != branch.id:  # a table rooted here has native keys only, to tables rooted here
        # tables with a foreign key to or from this one name it in their write triggers: those related
        # now, and those related before this DDL (a dropped key or column must leave their triggers)
        row = conn.execute("SELECT heliosdb.held_lsn(%s)", (branch.id,)).fetchone()  # this DDL's LSN
        before = Snapshot(conn, chain(conn, branch.id, int(row[0]) - 1), only=[info.id]) if row and row[0] else snap
        related = set(related_tables(snap, info)) | set(related_tables(before, info))
        refresh_writes(conn, branch, levels, sorted(related), snap)
    excluding = _excluding(conn, branch, info)
    try:
        with conn.transaction():
            conn.execute(_batch(view_statements(snap, branch, levels, info, version, or_replace=True,
                                                excluding=excluding)))
        return
    except psycopg.Error:
        pass
    with keeping_comments(conn, branch.user_schema, version.name):
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(q(branch.user_schema, version.name)))
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(q(branch.phys_schema, version.name)))
        conn.execute(_batch(view_statements(snap, branch, levels, info, version, or_replace=False,
                                            excluding=excluding)))


def put_comments(conn: psycopg.Connection[Any], schema: str, rows: list[tuple[str, str | None, str]]) -> None:
    """COMMENT ON VIEW / COLUMN for (view, column or None, text) rows, in `schema`."""
    for rel, column, text in rows:
        target = sql.SQL("VIEW {}").format(I(schema, rel)) if column is None else sql.SQL("COLUMN {}").format(
            I(schema, rel, column))
        conn.execute(sql.SQL("COMMENT ON {} IS {}").format(target, sql.Literal(text)))


@contextlib.contextmanager
def keeping_comments(conn: psycopg.Connection[Any], schema: str, name: str) -> Iterator[None]:
    """A user's view dropped and made again (DROP COLUMN, a type change) keeps COMMENT ON TABLE and the
    comments of the columns it still has, as PostgreSQL's table does."""
    rel = sql.Identifier(schema, name).as_string(conn)
    rows = conn.execute(
        """SELECT a.attname, d.description FROM pg_description d
           LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
           WHERE d.classoid = 'pg_class'::regclass AND d.objoid = to_regclass(%s)
             AND (d.objsubid = 0 OR a.attname IS NOT NULL)""", (rel,)).fetchall()
    yield
    if not rows:
        return
    now = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (rel,)).fetchall()}
    put_comments(conn, schema, [(name, column, text) for column, text in rows if column is None or column in now])


def related_tables(snap: Snapshot, info: TableInfo) -> list[int]:
    """The tables whose write triggers name `info`'s table (foreign keys either way)."""
    return [v.table_id for v in foreign_keys.related(snap, info)]


def refresh_below_root(conn: psycopg.Connection[Any], info: TableInfo) -> None:
    """Regenerate the write triggers of the table, and of tables related to it, on every built branch below
    its root: they name its storage columns, which DDL on the root just renamed (the views name them by
    position and stay right)."""
    rows = conn.execute(
        "SELECT id FROM heliosdb._branches WHERE built AND state <> 'dropped' AND id <> %s ORDER BY id",
        (info.root_branch,)).fetchall()
    for (bid,) in rows:
        levels = chain(conn, bid)
        if all(lv.branch_id != info.root_branch for lv in levels):
            continue
        snap = Snapshot(conn, levels, only=[info.id])
        version = snap.tables.get(info.id)
        if version is None or version.dropped:
            continue
        refresh_writes(conn, get_branch_by_id(conn, bid), levels, [info.id, *related_tables(snap, info)], snap)


def refresh_writes(conn: psycopg.Connection[Any], branch: Branch, levels: list[Level], table_ids: list[int],
                   snap: Snapshot | None = None) -> None:
    """Regenerate the write trigger functions of these tables on the branch (after DDL of a related table)."""
    snap = snap or Snapshot(conn, levels, only=table_ids)
    for tid in table_ids:
        version, info = snap.tables.get(tid), snap.info.get(tid)
        if version is None or version.dropped or info is None:
            continue
        if info.root_branch == branch.id:  # the root relations' foreign keys are PostgreSQL's own,
            if any(inherited_keys.is_inherited(c) for c in version.constraints):  # but for inherited tables
                inherited_keys.install(conn, branch, info, version, snap)
            continue
        conn.execute(write_function_sql(
            q(branch.phys_schema, version.name + "__w"), branch, info, version, q(branch.phys_schema, version.name),
            snap.names[tid], snap.br_columns[tid], inherited=_inherited_by_key(snap, levels, info, version), snap=snap,
            excluding=_excluding(conn, branch, info)))


def _batch(stmts: list[sql.Composable]) -> sql.Composable:
    """Several statements in one round trip (simple query protocol: no parameters)."""
    return sql.SQL(";\n").join(stmts)


def view_statements(
    snap: Snapshot, branch: Branch, levels: list[Level], info: TableInfo, version: TableVersion,
    *, or_replace: bool, excluding: list[exclusions.Exclusion],
) -> list[sql.Composable]:
    """The statements that create a branch's views of one table; `excluding`: the exclusion constraints of
    its root relation (exclusions.read), which the write trigger of a branch that inherited it checks."""
    create = sql.SQL("CREATE OR REPLACE VIEW" if or_replace else "CREATE VIEW")
    user_view = q(branch.user_schema, version.name)
    cols = sql.SQL(", ").join(I(c.name) for c in version.columns)
    names = snap.names[info.id]
    if branch.id == info.root_branch:
        select = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(I(names[c.col]), I(c.name)) for c in version.columns
        )
        out = [sql.SQL("{c} {v} AS SELECT {s} FROM {t}").format(c=create, v=user_view, s=select, t=q(*info.cur))]
        # An INSERT through the view takes the table's defaults by itself, but UPDATE ... SET c = DEFAULT
        # takes the view's: without one it writes NULL. Identity columns keep theirs (a view default would
        # be an explicit value, refused by GENERATED ALWAYS); BY DEFAULT ones take it (SET id = DEFAULT).
        for c in version.columns:
            if c.default and c.identity != "a":
                out.append(sql.SQL("ALTER VIEW {v} ALTER COLUMN {c} SET DEFAULT {d}").format(
                    v=user_view, c=I(c.name), d=sql.SQL(c.default)))
            elif or_replace:
                out.append(sql.SQL("ALTER VIEW {v} ALTER COLUMN {c} DROP DEFAULT").format(v=user_view, c=I(c.name)))
        return out
    internal = q(branch.phys_schema, version.name)
    out: list[sql.Composable] = [
        internal_view_sql(snap, branch, levels, info, version, or_replace=or_replace),
        sql.SQL("{c} {v} AS SELECT {cols} FROM {i}").format(c=create, v=user_view, cols=cols, i=internal),
    ]
    for c in version.columns:
        if c.default or or_replace:
            # GENERATED ALWAYS: no view default, so the write trigger tells a given value from none
            given = c.default and c.identity != "a"
            default = sql.SQL("SET DEFAULT {}").format(sql.SQL(c.default)) if given else sql.SQL("DROP DEFAULT")
            out.append(sql.SQL("ALTER VIEW {v} ALTER COLUMN {c} {d}").format(v=user_view, c=I(c.name), d=default))
    fn = q(branch.phys_schema, version.name + "__w")
    out.append(write_function_sql(fn, branch, info, version, internal, names, snap.br_columns[info.id],
                                  inherited=_inherited_by_key(snap, levels, info, version), snap=snap,
                                  excluding=excluding))
    if or_replace:
        out.append(sql.SQL("DROP TRIGGER IF EXISTS _hdb_write ON {}").format(user_view))
    out.append(
        sql.SQL(
            "CREATE TRIGGER _hdb_write INSTEAD OF INSERT OR UPDATE OR DELETE ON {v} "
            "FOR EACH ROW EXECUTE FUNCTION {f}()"
        ).format(v=user_view, f=fn)
    )
    return out


def internal_view_sql(snap: Snapshot, branch: Branch, levels: list[Level], info: TableInfo, version: TableVersion,
                      *, image_gen: int | None = None, or_replace: bool = True) -> sql.Composable:
    """CREATE VIEW of what a branch sees of a table it inherited; with image_gen, reading that image when
    it is current (`branching.images`)."""
    state = state_sql(snap, levels, info, version)
    if image_gen is not None:
        state = images.view_sql(branch, info, version, state, image_gen)
    create = sql.SQL("CREATE OR REPLACE VIEW" if or_replace else "CREATE VIEW")
    return sql.SQL("{c} {v} AS {s}").format(c=create, v=q(branch.phys_schema, version.name), s=state)


def drop_views(conn: psycopg.Connection[Any], branch: Branch, name: str, cascade: bool = False,
               table_id: int | None = None) -> None:
    mode = sql.SQL(" CASCADE" if cascade else "")
    try:
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}{}").format(q(branch.user_schema, name), mode))
    except psycopg.errors.DependentObjectsStillExist as exc:  # the user dropped a table, not a view
        diag = exc.diag
        raise errors.DependentObjectsStillExist(
            f"cannot drop table {name} because other objects depend on it",
            detail=(diag.message_detail or "").replace(f"depends on view {name}", f"depends on table {name}"),
            hint=diag.message_hint) from None
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(q(branch.phys_schema, name)))
    if table_id is not None and images.forget(conn, branch.id, table_id):
        images.drop(conn, branch, table_id)
    conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(q(branch.phys_schema, name + "__w")))


# INSERT ... ON CONFLICT DO NOTHING without a conflict target: every unique index and exclusion constraint
# is an arbiter, a conflict with any skips the row
ANY_CONFLICT_SKIPS = ("IF _hdb_oc->>'action' = 'nothing' AND _hdb_oc->'keys' IS NULL AND _hdb_oc->'constraint' IS NULL "
                      "THEN RETURN NULL; END IF;")


def _expression_unique(con: Constraint, version: TableVersion, names: dict[int, str],
                       internal: sql.Identifier) -> list[sql.Composable]:
    """The check of a unique index on expressions or with a predicate, over what the branch sees.

    Its expressions name the root relation's columns: each is put to the branch's row (NEW) and to
    the view's rows (s) under the branch's names; an index on a column the branch dropped is gone.
    """
    logical = {names[c.col]: c.name for c in version.columns}

    def on(text: str, alias: str) -> str | None:
        return exclusions.on_row(text, alias, logical)

    keys_s, keys_new = [on(k, "s") for k in con.keys], [on(k, "NEW") for k in con.keys]
    where_s, where_new = (on(con.where, "s"), on(con.where, "NEW")) if con.where else ("TRUE", "TRUE")
    if None in keys_s or None in keys_new or where_s is None or where_new is None:
        return []
    match = " AND ".join(f"({a}) = ({b})" for a, b in zip(keys_s, keys_new, strict=True))
    present = " AND ".join(f"({b}) IS NOT NULL" for b in keys_new)
    shown = " || ', ' || ".join(f"coalesce(({b})::text, 'null')" for b in keys_new)
    return [sql.SQL(
        "IF {present} AND ({wn}) AND EXISTS (SELECT 1 FROM {iv} s WHERE {m} AND ({ws}) "
        "AND (_hdb_rid IS NULL OR s._hdb_rowid <> _hdb_rid)) THEN\n"
        "  " + ANY_CONFLICT_SKIPS + "\n"
        "  RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = {msg}, "
        "DETAIL = 'Key (' || {keys} || ')=(' || {kt} || ') already exists.', CONSTRAINT = {cn}; END IF;"
    ).format(present=sql.SQL(present), wn=sql.SQL(where_new), iv=internal, m=sql.SQL(match), ws=sql.SQL(where_s),
             msg=L(f'duplicate key value violates unique constraint "{con.name}"'),
             keys=L(", ".join(con.keys)), kt=sql.SQL(shown), cn=L(con.name))]


def _row_text(version: TableVersion) -> sql.Composable:
    """NEW as PostgreSQL shows a failing row: "(1, null, abc)", each value cut at 64 characters."""
    vals = [sql.SQL("coalesce(CASE WHEN length(NEW.{c}::text) > 64 THEN left(NEW.{c}::text, 64) || '...' "
                    "ELSE NEW.{c}::text END, 'null')").format(c=I(c.name)) for c in version.columns]
    return sql.SQL("'(' || {} || ')'").format(sql.SQL(" || ', ' || ").join(vals) if vals else sql.SQL("''"))


def _new_row(version: TableVersion) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("NEW.{} AS {}").format(I(c.name), I(c.name)) for c in version.columns)


def _inherited_by_key(snap: Snapshot, levels: list[Level], info: TableInfo,
                      version: TableVersion) -> sql.Composable | None:
    """The rows the branch inherits (its parent's state at the fork), for finding a row by its key.

    None when the table has no key, or a key column some ancestor does not have (its rows would
    show the physical column, not the value the branch sees): the trigger then searches its view.
    """
    pk = version.key_columns
    lv = levels_to_root(levels, info)
    if not pk or len(lv) < 2:
        return None
    by_name = {c.name: c.col for c in version.columns}
    presence = _presence(snap, lv, info, version)
    if any(by_name[c] not in presence[i] for c in pk for i in range(1, len(lv))):
        return None
    # only the key: columns the branch added since the fork do not exist at the parent's level
    keys = dataclasses.replace(version, columns=[c for c in version.columns if c.name in pk])
    return state_sql(snap, lv[1:], info, keys)


def _row_lookup(b: sql.Composable, info: TableInfo, version: TableVersion, internal: sql.Identifier,
                names: dict[int, str], find: sql.Composable, inherited: sql.Composable | None) -> sql.Composable:
    """PL/pgSQL that sets _hdb_rid to the row id of the row OLD is (NULL: none).

    Row by row, as index probes with plain values: the branch's own current row by key, else each
    inherited row with that key that the branch has not written (by row id). `_hdb_branch + 0`
    keeps indexes led by the branch out of the plan (see mirror_index). Searching the branch's
    view instead plans an anti-join once, while the branch has written nothing, and then reads
    all of the branch's rows per written row (10,000 rows of a branch: 21 s).
    """
    if inherited is None:
        return sql.SQL("SELECT s._hdb_rowid INTO _hdb_rid FROM {iv} s WHERE {find} LIMIT 1;").format(
            iv=internal, find=find)
    by_name = {c.name: c.col for c in version.columns}
    own = sql.SQL(" AND ").join(
        sql.SQL("r.{p} = OLD.{c}").format(p=I(names[by_name[c]]), c=I(c)) for c in version.key_columns)
    return sql.SQL(
        "SELECT r._hdb_rowid INTO _hdb_rid FROM {br} r WHERE {own} AND r._hdb_branch + 0 = {b} "
        "AND NOT r._hdb_del LIMIT 1;\n"
        "        IF _hdb_rid IS NULL THEN\n"
        "            FOR _hdb_c IN SELECT s._hdb_rowid FROM ({inh}) s WHERE {find} LOOP\n"
        "                IF NOT EXISTS (SELECT 1 FROM {br} w WHERE w._hdb_rowid = _hdb_c AND w._hdb_branch + 0 = {b}) "
        "THEN\n"
        "                    _hdb_rid := _hdb_c;\n"
        "                    EXIT;\n"
        "                END IF;\n"
        "            END LOOP;\n"
        "        END IF;"
    ).format(br=q(*info.br), own=own, b=b, inh=inherited, find=find)


def write_function_sql(
    fn: sql.Identifier, branch: Branch, info: TableInfo, version: TableVersion, internal: sql.Identifier,
    names: dict[int, str], br_columns: list[str], *, inherited: sql.Composable | None = None,
    snap: Snapshot | None = None, excluding: list[exclusions.Exclusion] | None = None,
) -> sql.Composable:
    """The INSTEAD OF trigger function of a branch view: PostgreSQL's checks, then versioned writes."""
    b = L(branch.id)
    table = version.name
    # the error fields PostgreSQL sets for a table's constraint violations (ORMs map errors by them)
    where = sql.SQL("TABLE = {}, SCHEMA = {}").format(L(table), L(branch.user_schema))
    fk_checks: list[sql.Composable] = []
    fk_queued: list[sql.Composable] = []  # after NEW is written: DEFERRABLE keys' checks, queued
    fk_refuse: list[sql.Composable] = []  # before OLD is written over: RESTRICT
    fk_after: dict[str, list[sql.Composable]] = {"DELETE": [], "UPDATE": []}  # after: the actions, NO ACTION
    if snap is not None:
        fk_checks = foreign_keys.check_sql(snap, branch, foreign_keys.outgoing(snap, version), where)
        fk_queued = foreign_keys.queued_checks(snap, branch, foreign_keys.outgoing(snap, version))
        referencing = foreign_keys.incoming(snap, version)
        # TRUNCATE on a branch deletes the rows of every table it names at once (tables.py checked
        # the keys between them first): no row-by-row action then
        truncating = sql.SQL("current_setting('heliosdb.truncating', true) IS DISTINCT FROM 'on'")
        for op in ("DELETE", "UPDATE"):
            when = sql.SQL("TG_OP = {}").format(L(op)) + (sql.SQL(" AND ") + truncating if op == "DELETE" else sql.SQL(""))
            refuse = foreign_keys.action_sql(branch, referencing, op, refuse=True)
            if refuse:
                fk_refuse.append(sql.SQL("IF {} THEN\n            {}\n        END IF;").format(
                    when, sql.SQL("\n            ").join(refuse)))
            after = foreign_keys.action_sql(branch, referencing, op, refuse=False)
            if after and op == "DELETE":
                after = [sql.SQL("IF {} THEN {} END IF;").format(truncating, sql.SQL(" ").join(after))]
            fk_after[op] = after
    checks: list[sql.Composable] = []
    for c in version.columns:  # INSERT ... OVERRIDING USER VALUE: an identity column takes its next value
        if c.identity and c.default:  # (the session tells, see session._write_settings)
            checks.append(sql.SQL(
                "IF TG_OP = 'INSERT' AND current_setting('heliosdb.overriding_user', true) = 'on' "
                "AND pg_trigger_depth() = 1 THEN NEW.{c} := {v}; END IF;"
            ).format(c=I(c.name), v=sql.SQL("NULL" if c.identity == "a" else c.default)))  # 'a': below
    for c in version.columns:  # GENERATED ALWAYS AS IDENTITY: only the sequence writes it (PostgreSQL's 428C9)
        if c.identity == "a" and c.default:
            checks.append(sql.SQL(
                "IF TG_OP = 'INSERT' AND NEW.{c} IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = '428C9', "
                "MESSAGE = {mi}, DETAIL = {d}, HINT = 'Use OVERRIDING SYSTEM VALUE to override.'; END IF;\n        "
                "IF TG_OP = 'UPDATE' AND NEW.{c} IS DISTINCT FROM OLD.{c} THEN RAISE EXCEPTION USING "
                "ERRCODE = '428C9', MESSAGE = {mu}, DETAIL = {d}; END IF;\n        "
                "IF TG_OP = 'INSERT' THEN NEW.{c} := {default}; END IF;"
            ).format(c=I(c.name), default=sql.SQL(c.default), d=L(f'Column "{c.name}" is an identity column defined as GENERATED ALWAYS.'),
                     mi=L(f'cannot insert a non-DEFAULT value into column "{c.name}"'),
                     mu=L(f'column "{c.name}" can only be updated to DEFAULT')))
    for c in version.columns:  # stored generated columns: a given value is refused (428C9), as PostgreSQL does;
        if c.generated:  # no view default, so NULL is DEFAULT (or not given, in an UPDATE: OLD's value)
            checks.append(sql.SQL(
                "IF TG_OP = 'INSERT' AND NEW.{c} IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = '428C9', "
                "MESSAGE = {mi}, DETAIL = {d}; END IF;\n        "
                "IF TG_OP = 'UPDATE' AND NEW.{c} IS DISTINCT FROM OLD.{c} AND NEW.{c} IS NOT NULL THEN "
                "RAISE EXCEPTION USING ERRCODE = '428C9', MESSAGE = {mu}, DETAIL = {d}; END IF;"
            ).format(c=I(c.name), d=L(f'Column "{c.name}" is a generated column.'),
                     mi=L(f'cannot insert a non-DEFAULT value into column "{c.name}"'),
                     mu=L(f'column "{c.name}" can only be updated to DEFAULT')))
    for c in version.columns:  # then computed from the row, as PostgreSQL does
        if c.generated:
            checks.append(sql.SQL("NEW.{c} := (SELECT ({e})::{t} FROM (SELECT {row}) _r);").format(
                c=I(c.name), e=sql.SQL(c.generated), t=sql.SQL(c.type), row=_new_row(version)))
    for c in version.columns:
        if c.notnull:
            checks.append(
                sql.SQL(
                    "IF NEW.{c} IS NULL THEN RAISE EXCEPTION USING ERRCODE = '23502', MESSAGE = {m}, "
                    "DETAIL = 'Failing row contains ' || {rt} || '.', {where}, COLUMN = {cn}; END IF;"
                ).format(c=I(c.name), m=L(f'null value in column "{c.name}" of relation "{table}" violates not-null constraint'),
                         where=where, cn=L(c.name), rt=_row_text(version))
            )
    for con in version.constraints:
        if con.kind == "c" and con.expr:
            checks.append(
                sql.SQL(
                    "IF (SELECT ({e}) FROM (SELECT {row}) _r) IS FALSE THEN RAISE EXCEPTION USING "
                    "ERRCODE = '23514', MESSAGE = {m}, DETAIL = 'Failing row contains ' || {rt} || '.', "
                    "{where}, CONSTRAINT = {cn}; END IF;"
                ).format(
                    e=sql.SQL(con.expr), row=_new_row(version), where=where, cn=L(con.name), rt=_row_text(version),
                    m=L(f'new row for relation "{table}" violates check constraint "{con.name}"'),
                )
            )
    uniques: list[sql.Composable] = []
    arbiters: list[sql.Composable] = []
    for con in version.constraints:
        if con.kind in ("p", "u") and con.cols:
            match = sql.SQL(" AND ").join(sql.SQL("s.{c} = NEW.{c}").format(c=I(c)) for c in con.cols)
            notnull = sql.SQL(" AND ").join(sql.SQL("NEW.{} IS NOT NULL").format(I(c)) for c in con.cols)
            key_text = sql.SQL(" || ', ' || ").join(sql.SQL("coalesce(NEW.{}::text, 'null')").format(I(c)) for c in con.cols)
            match_text = " || ' AND ' || ".join(
                f"quote_ident(_hdb_oc->>'alias') || '.' || {quote_literal(quote_ident(c))} || ' = excluded.' || {quote_literal(quote_ident(c))}"
                for c in con.cols
            )
            # ON CONFLICT: the statement's arbiter constraints are checked first (all of them, before
            # any other unique constraint), as PostgreSQL's speculative insertion does
            arbiter = sql.SQL(
                "(_hdb_oc IS NOT NULL AND coalesce(_hdb_oc->'keys' IS NULL AND _hdb_oc->'constraint' IS NULL "
                "OR _hdb_oc->'keys' = {keys}::jsonb OR _hdb_oc->>'constraint' = {cn}, false))").format(keys=L(json.dumps(con.cols)), cn=L(con.name))
            arbiters.append(
                sql.SQL(
                    "IF {arb} AND {nn} THEN\n"
                    "  _hdb_hit := NULL;\n"
                    "  SELECT s._hdb_rowid INTO _hdb_hit FROM {iv} s WHERE {m} AND (_hdb_rid IS NULL OR s._hdb_rowid <> _hdb_rid) "
                    "LIMIT 1;\n"
                    "  IF _hdb_hit IS NOT NULL THEN\n"
                    "    IF _hdb_oc->>'action' = 'nothing' THEN RETURN NULL; END IF;\n"
                    # a row this statement inserted or updated already: PostgreSQL's 21000
                    "    INSERT INTO pg_temp._hdb_oc_rows VALUES (_hdb_hit) ON CONFLICT DO NOTHING;\n"
                    "    GET DIAGNOSTICS _hdb_n = ROW_COUNT;\n"
                    "    IF _hdb_n = 0 THEN RAISE EXCEPTION USING ERRCODE = '21000', "
                    "MESSAGE = 'ON CONFLICT DO UPDATE command cannot affect row a second time', "
                    "HINT = 'Ensure that no rows proposed for insertion within the same command have duplicate "
                    "constrained values.'; END IF;\n"
                    "    EXECUTE format('UPDATE %s AS %I SET %s FROM (SELECT ($1).*) AS excluded WHERE %s AND (%s) "
                    "RETURNING %I.*', {uv}, _hdb_oc->>'alias', _hdb_oc->>'set', {mt}, coalesce(_hdb_oc->>'where', 'true'), "
                    "_hdb_oc->>'alias') INTO NEW USING NEW;\n"
                    "    GET DIAGNOSTICS _hdb_n = ROW_COUNT;\n"
                    "    IF _hdb_n = 0 THEN RETURN NULL; END IF;\n"
                    "    RETURN NEW;\n"
                    "  END IF;\n"
                    "END IF;"
                ).format(arb=arbiter, nn=notnull, iv=internal, m=match, mt=sql.SQL(match_text),
                         uv=L(f"{quote_ident(branch.user_schema)}.{quote_ident(version.name)}"))
            )
            uniques.append(
                sql.SQL(
                    "IF NOT {arb} AND {nn} AND EXISTS (SELECT 1 FROM {iv} s WHERE {m} "
                    "AND (_hdb_rid IS NULL OR s._hdb_rowid <> _hdb_rid)) THEN "
                    "RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = {msg}, "
                    "DETAIL = 'Key (' || {cols} || ')=(' || {kt} || ') already exists.', "
                    "CONSTRAINT = {cn}, {where}; END IF;"
                ).format(
                    arb=arbiter, nn=notnull, iv=internal, m=match, where=where,
                    msg=L(f'duplicate key value violates unique constraint "{con.name}"'),
                    cols=L(", ".join(con.cols)), kt=key_text, cn=L(con.name),
                )
            )
    for con in version.constraints:
        if con.kind == "x" and con.keys:
            uniques.extend(_expression_unique(con, version, names, internal))
    for excl in excluding or []:
        if (check := exclusions.check_sql(excl, version, names, internal, where,
                                                 sql.SQL(ANY_CONFLICT_SKIPS))) is not None:
            uniques.append(check)
    pk = version.key_columns
    if pk:
        find = sql.SQL(" AND ").join(sql.SQL("s.{c} = OLD.{c}").format(c=I(c)) for c in pk)
    else:
        usable = [c for c in version.columns if c.type.split("(")[0].split("[")[0] not in _NO_EQUALITY]
        find = sql.SQL(" AND ").join(
            [sql.SQL("s.{c} IS NOT DISTINCT FROM OLD.{c}").format(c=I(c.name)) for c in usable] or [sql.SQL("true")]
        )
    all_cols = [c for c in version.columns]
    phys_cols = sql.SQL("").join(sql.SQL("{}, ").format(I(names[c.col])) for c in all_cols)
    new_vals = sql.SQL("").join(sql.SQL("NEW.{}, ").format(I(c.name)) for c in all_cols)
    old_vals = sql.SQL("").join(sql.SQL("OLD.{}, ").format(I(c.name)) for c in all_cols)
    set_cols = sql.SQL("").join(sql.SQL("{c} = EXCLUDED.{c}, ").format(c=I(names[c.col])) for c in all_cols)
    # The lookups below are planned once per session (generic plans), typically while the branch's
    # __br is still empty: the planner then scans, hashes or materializes the branch's rows, which
    # every later row of a large statement re-reads (quadratic: a 8,000-row UPDATE took 7.4 s,
    # 926 us/row and growing; 10,000 rows of a 1,000,000-row table 21 s). Without sequential scans,
    # hash, merge and materialize, the only plans left probe indexes, whatever __br's size
    # (50,000 rows: 3.3 s, 66 us/row). A scan left in a plan (a branch image without the index a
    # lookup needs) then costs 1e10, and the statement was compiled by JIT on every row (140 ms):
    # no JIT, no parallel plans here. Nor do its reads use a branch image (heliosdb.writing, see
    # images.gate), which may lack that index.
    return sql.SQL(
        """CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_material = off SET enable_hashjoin = off SET enable_mergejoin = off
SET jit = off SET max_parallel_workers_per_gather = 0 SET heliosdb.writing = on AS $f$
DECLARE
    _hdb_l bigint := heliosdb.txn_lsn({b});
    _hdb_rid bigint;
    _hdb_c bigint;
    _hdb_oc jsonb;
    _hdb_hit bigint;
    _hdb_n bigint;
    _hdb_x text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {lookup}
        IF _hdb_rid IS NULL THEN RETURN NULL; END IF;
        -- UPDATE ... FROM runs this once per joined row: PostgreSQL updates a row once (by its first match)
        IF TG_OP = 'UPDATE' AND current_setting('heliosdb.update_once', true) = 'on' AND pg_trigger_depth() = 1 THEN
            INSERT INTO pg_temp._hdb_oc_rows VALUES (_hdb_rid) ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS _hdb_n = ROW_COUNT;
            IF _hdb_n = 0 THEN RETURN NULL; END IF;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {checks}
        IF TG_OP = 'INSERT' THEN
            _hdb_oc := nullif(current_setting('heliosdb.on_conflict', true), '')::jsonb;
        END IF;
        {arbiters}
        {uniques}
        {fk_checks}
    END IF;
    IF TG_OP = 'INSERT' THEN
        _hdb_rid := nextval('heliosdb.rowid_seq');
        IF _hdb_oc->>'action' = 'update' THEN  -- a later row of the statement must not update this one
            INSERT INTO pg_temp._hdb_oc_rows VALUES (_hdb_rid);
        END IF;
    ELSE
        {fk_refuse}
    END IF;
    INSERT INTO {hist} (_hdb_branch, {arch_cols}_hdb_rowid, _hdb_begin, _hdb_end, _hdb_del)
    SELECT _hdb_branch, {arch_cols}_hdb_rowid, _hdb_lsn, _hdb_l, _hdb_del FROM {br}
    WHERE _hdb_rowid = _hdb_rid AND _hdb_branch + 0 = {b} AND _hdb_lsn <> _hdb_l;
    IF TG_OP = 'DELETE' THEN
        -- the tombstone carries the row's values: NULL there would break a NOT NULL domain column
        INSERT INTO {br} (_hdb_branch, {phys_cols}_hdb_rowid, _hdb_lsn, _hdb_del)
        VALUES ({b}, {old_vals}_hdb_rid, _hdb_l, true)
        ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET _hdb_lsn = _hdb_l, _hdb_del = true;
        {fk_after_delete}
        RETURN OLD;
    END IF;
    INSERT INTO {br} (_hdb_branch, {phys_cols}_hdb_rowid, _hdb_lsn, _hdb_del)
    VALUES ({b}, {new_vals}_hdb_rid, _hdb_l, false)
    ON CONFLICT (_hdb_branch, _hdb_rowid) DO UPDATE SET {set_cols}_hdb_lsn = _hdb_l, _hdb_del = false;
    {fk_queued}
    {fk_after_update}
    RETURN NEW;
END $f$"""
    ).format(
        fn=fn, b=b, lookup=_row_lookup(b, info, version, internal, names, find, inherited),
        checks=sql.SQL("\n        ").join(checks), uniques=sql.SQL("\n        ").join(uniques),
        arbiters=sql.SQL("\n        ").join(arbiters),
        fk_checks=sql.SQL("\n        ").join(fk_checks), fk_refuse=sql.SQL("\n        ").join(fk_refuse),
        fk_queued=sql.SQL("\n    ").join(fk_queued),
        fk_after_delete=sql.SQL("\n        ").join(fk_after["DELETE"]),
        # an INSERT never has referencing rows: only an UPDATE that changed the key (see action_sql)
        fk_after_update=sql.SQL("\n    ").join(fk_after["UPDATE"]),
        br=q(*info.br), hist=q(*info.hist),
        arch_cols=sql.SQL("").join(sql.SQL("{}, ").format(I(c)) for c in br_columns),
        phys_cols=phys_cols, new_vals=new_vals, old_vals=old_vals, set_cols=set_cols,
    )
