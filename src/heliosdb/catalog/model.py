"""Catalog records: branches and table schema versions, and how to read them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from heliosdb.errors import UndefinedBranch

MAX_LSN = 2**63 - 1  # "no end": the valid_to of a current schema version, the upto of a branch's head


@dataclass(frozen=True)
class Branch:
    id: int
    name: str
    parent_id: int | None
    fork_lsn: int | None
    head_lsn: int
    read_only: bool
    user_schema: str
    options: dict[str, Any]
    storage_node: str
    compute_endpoint: str
    built: bool = True  # whether its schemas and views exist yet (built on first use)

    @property
    def phys_schema(self) -> str:
        """Where this branch's internal views and write functions live."""
        return f"hdb_b{self.id}"

    @property
    def search_path(self) -> str:
        """The branch's schema, then the types every branch shares (TYPES_SCHEMA)."""
        return '"' + self.user_schema.replace('"', '""') + '", ' + TYPES_SCHEMA


# The user's types (CREATE TYPE, CREATE DOMAIN) live here, on every branch's search path: a
# table a branch inherited and one it created can then use the very same type (a copy per
# branch would be a different type to PostgreSQL's operators). Like sequences, types are shared.
TYPES_SCHEMA = "heliosdb_types"

_BRANCH_COLS = (
    "id, name, parent_id, fork_lsn, head_lsn, read_only, user_schema, options, storage_node, compute_endpoint, built"
)


def get_branch(conn: psycopg.Connection[Any], name: str, *, missing_ok: bool = False) -> Branch | None:
    row = conn.execute(
        f"SELECT {_BRANCH_COLS} FROM heliosdb._branches WHERE name = %s AND state <> 'dropped'", (name,)
    ).fetchone()
    if row is None:
        if missing_ok:
            return None
        raise UndefinedBranch(
            f'branch "{name}" does not exist', hint="SHOW BRANCHES lists the branches of this database."
        )
    return Branch(*row)


def get_branch_by_id(conn: psycopg.Connection[Any], bid: int) -> Branch:
    row = conn.execute(f"SELECT {_BRANCH_COLS} FROM heliosdb._branches WHERE id = %s", (bid,)).fetchone()
    if row is None:
        raise UndefinedBranch(f"branch {bid} does not exist")
    return Branch(*row)


@dataclass(frozen=True)
class Level:
    """One step of a branch's ancestry: rows of `branch` as of `upto`."""

    branch_id: int
    upto: int


def ancestry(conn: psycopg.Connection[Any], branch_id: int) -> list[tuple[int, int | None]]:
    """(branch id, fork LSN) of the branch and each ancestor, nearest first."""
    return [(int(b), f) for b, f in conn.execute(
        """WITH RECURSIVE up AS (
               SELECT id, parent_id, fork_lsn, 0 AS n FROM heliosdb._branches WHERE id = %s
               UNION ALL
               SELECT b.id, b.parent_id, b.fork_lsn, up.n + 1
               FROM heliosdb._branches b JOIN up ON b.id = up.parent_id)
           SELECT id, fork_lsn FROM up ORDER BY n""",
        (branch_id,),
    ).fetchall()]


def levels_of(steps: list[tuple[int, int | None]], upto: int = MAX_LSN) -> list[Level]:
    """Each step seen at `upto`, cut at the fork points on the way up."""
    levels: list[Level] = []
    for bid, fork in steps:
        levels.append(Level(bid, upto))
        if fork is not None:
            upto = min(upto, fork)
    return levels


def read_at(steps: list[tuple[int, int | None]], lsn: int) -> list[int]:
    """The branches whose own history a read of the first one at `lsn` needs at `lsn` itself: the branch,
    and each ancestor while `lsn` is before the fork below it. From a fork point up, ancestors are read at
    the fork, which the garbage collector keeps for the child."""
    out = []
    for bid, fork in steps:
        out.append(bid)
        if fork is None or fork <= lsn:
            break
    return out


def chain(conn: psycopg.Connection[Any], branch_id: int, upto: int = MAX_LSN) -> list[Level]:
    """The branch and its ancestors, each with the LSN it is seen at."""
    return levels_of(ancestry(conn, branch_id), upto)


@dataclass
class Column:
    name: str
    col: int  # stable column id within the table
    type: str
    notnull: bool = False
    default: str | None = None
    missing: str | None = None  # value for rows written before the column existed (SQL literal)
    generated: str | None = None  # GENERATED ALWAYS AS (expr) STORED: the expression
    identity: str = ""  # pg_attribute.attidentity: 'a' (ALWAYS), 'd' (BY DEFAULT) or ''
    using: str | None = None  # the USING of the type change that made the column (a merge replays it)


@dataclass
class Constraint:
    """A constraint or index of a table version. Indexes are here as they are schema: a branch sees those
    of its ancestors as of its fork (the root relation's physical indexes are shared by every branch)."""

    name: str
    # 'p' primary key, 'u' unique, 'c' check, 'f' foreign key, 'x' unique index on expressions or partial,
    # 'i' an index that is not unique
    kind: str
    cols: list[str] = field(default_factory=list)  # 'i': "" for a key that is an expression
    expr: str | None = None
    keys: list[str] = field(default_factory=list)  # 'x', 'i': the key expressions ('x': the root relation's names)
    where: str | None = None  # 'x', 'i': the index's predicate
    index: bool = False  # 'u': made by CREATE UNIQUE INDEX, not a constraint (so not in pg_constraint)
    using: str | None = None  # an index's definition as PostgreSQL prints it after USING ("btree (v DESC)")
    options: list[int] = field(default_factory=list)  # an index's pg_index.indoption, per key (1 DESC, 2 NULLS FIRST)
    opclasses: list[str] = field(default_factory=list)  # an index's operator class per key ("": the default)
    valid: bool = True  # 'c': false while NOT VALID ('f' keeps it in expr)
    plain: str | None = None  # 'c': the expression as pg_get_constraintdef(oid) prints it (expr: pretty, as psql)

    @property
    def is_index(self) -> bool:
        """An index rather than a constraint (DROP INDEX, not DROP CONSTRAINT, removes it)."""
        return self.kind in ("i", "x") or (self.kind == "u" and self.index)


@dataclass
class TableVersion:
    branch_id: int
    table_id: int
    name: str
    valid_from: int
    columns: list[Column]
    constraints: list[Constraint]
    dropped: bool = False

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def columns_json(self) -> str:
        return json.dumps([asdict(c) for c in self.columns])

    def constraints_json(self) -> str:
        return json.dumps([asdict(c) for c in self.constraints])

    @property
    def key_columns(self) -> list[str]:
        pk = next((c for c in self.constraints if c.kind == "p"), None)
        return list(pk.cols) if pk else []


@dataclass(frozen=True)
class TableInfo:
    id: int
    root_branch: int
    phys_schema: str
    phys_name: str

    @property
    def cur(self) -> tuple[str, str]:
        return (self.phys_schema, self.phys_name)

    @property
    def br(self) -> tuple[str, str]:
        return (self.phys_schema, self.phys_name + "__br")

    @property
    def hist(self) -> tuple[str, str]:
        return (self.phys_schema, self.phys_name + "__hist")


def _version(row: list[Any]) -> TableVersion:
    if isinstance(row[5], str):  # the columns and constraints are decoded once, when first needed
        row[5], row[6] = json.loads(row[5]), json.loads(row[6])
    bid, tid, name, valid_from, dropped, cols, cons = row[:7]
    return TableVersion(
        bid,
        tid,
        name,
        valid_from,
        [Column(**c) for c in cols],
        [Constraint(**c) for c in cons],
        dropped,
    )


def _load_versions(conn: psycopg.Connection[Any], branch_ids: list[int], named: str | None = None,
                   levels: list[Level] | None = None) -> dict[int, list[list[Any]]]:
    """Schema versions on these branches, by branch; `named`: only of tables that bear that name
    on one of them (a version of the same table elsewhere may rename or drop it, so all of theirs).
    `levels`: only the versions valid where each level sees its branch (the others would be decoded
    for nothing: a DDL statement cost grew with every version the database ever had)."""
    query = """SELECT v.branch_id, v.table_id, v.name, v.valid_from, v.dropped, v.columns::text,
                      v.constraints::text, v.valid_to
               FROM heliosdb._table_versions v WHERE v.branch_id = ANY(%s)"""
    params: tuple[Any, ...] = (branch_ids,)
    if levels is not None:
        query = query.replace("WHERE v.branch_id = ANY(%s)", """JOIN unnest(%s::int[], %s::bigint[]) AS l(b, upto)
                     ON v.branch_id = l.b AND v.valid_from <= l.upto
                    AND (l.upto < v.valid_to OR v.valid_to = %s) WHERE true""")
        params = ([lv.branch_id for lv in levels], [lv.upto for lv in levels], MAX_LSN)
    if named is not None:
        query += " AND v.table_id IN (SELECT table_id FROM heliosdb._table_versions WHERE branch_id = ANY(%s) AND name = %s)"
        params = (*params, branch_ids, named)
    by_branch: dict[int, list[list[Any]]] = {}
    for r in conn.execute(query, params).fetchall():  # type: ignore[arg-type]
        by_branch.setdefault(r[0], []).append(list(r))
    return by_branch


def _resolve(by_branch: dict[int, list[list[Any]]], levels: list[Level]) -> dict[int, TableVersion]:
    seen: set[int] = set()
    result: dict[int, TableVersion] = {}
    for lv in levels:
        for r in by_branch.get(lv.branch_id, []):
            valid_from, valid_to = r[3], r[7]
            if valid_from <= lv.upto and (lv.upto < valid_to or valid_to == MAX_LSN) and r[1] not in seen:
                seen.add(r[1])
                v = _version(r)
                if not v.dropped:
                    result[r[1]] = v
    return result


def visible_tables(conn: psycopg.Connection[Any], levels: list[Level]) -> dict[int, TableVersion]:
    """Tables (by id) as the first level sees them: own versions override ancestors'."""
    if not levels:
        return {}
    return _resolve(_load_versions(conn, [lv.branch_id for lv in levels], levels=levels), levels)


@dataclass
class Parts:
    """Catalog rows behind a Snapshot: schema versions of some branches and their tables' details."""

    by_branch: dict[int, list[list[Any]]]
    info: dict[int, TableInfo]
    names: dict[int, dict[int, str]]  # table id -> column id -> physical column name
    br_columns: dict[int, list[str]]  # table id -> user columns of its __br relation, in order
    # table id -> whether PostgreSQL gives a scan of its root relation two or more parallel
    # workers (relpages >= 3 x min_parallel_table_scan_size): a plan hint, not catalog truth
    parallel: dict[int, bool] = field(default_factory=dict)


def load_parts(
    conn: psycopg.Connection[Any], branch_ids: list[int], table_ids: list[int] | None = None,
    by_branch: dict[int, list[list[Any]]] | None = None,
) -> Parts:
    """Read the schema versions of `branch_ids` and the details of `table_ids` (default: all their tables)."""
    if by_branch is None:
        by_branch = _load_versions(conn, branch_ids)
    if table_ids is None:
        table_ids = sorted({r[1] for rows in by_branch.values() for r in rows})
    ids = table_ids
    info: dict[int, TableInfo] = {
        r[0]: TableInfo(*r)
        for r in conn.execute(
            "SELECT id, root_branch, phys_schema, phys_name FROM heliosdb._tables WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    }
    names: dict[int, dict[int, str]] = {tid: {} for tid in ids}
    for tid, col, phys in conn.execute(
        "SELECT table_id, col_id, phys_name FROM heliosdb._columns WHERE table_id = ANY(%s)", (ids,)
    ).fetchall():
        names[tid][col] = phys
    br_columns: dict[int, list[str]] = {tid: [] for tid in ids}
    rels = [f'"{i.phys_schema}"."{i.phys_name}__br"' for i in info.values()]
    by_rel = {f'"{i.phys_schema}"."{i.phys_name}__br"': tid for tid, i in info.items()}
    for rel, att in conn.execute(
        """SELECT r.rel, a.attname FROM unnest(%s::text[]) AS r(rel)
           JOIN pg_attribute a ON a.attrelid = to_regclass(r.rel)
           WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT LIKE '\\_hdb\\_%%'
           ORDER BY r.rel, a.attnum""",
        (rels,),
    ).fetchall():
        br_columns[by_rel[rel]].append(att)
    parallel = {
        int(tid): bool(big) for tid, big in conn.execute(
            """SELECT t.id, c.relpages::bigint * current_setting('block_size')::bigint
                        >= 3 * pg_size_bytes(current_setting('min_parallel_table_scan_size'))
               FROM heliosdb._tables t JOIN pg_class c ON c.oid = to_regclass(format('%%I.%%I', t.phys_schema, t.phys_name))
               WHERE t.id = ANY(%s)""",
            (ids,),
        ).fetchall()
    }
    return Parts(by_branch, info, names, br_columns, parallel)


class _OnDemand(dict):  # type: ignore[type-arg]
    """A Snapshot's detail by table id, read from the catalog the first time a table is asked for."""

    def __init__(self, data: dict[int, Any], fetch: Callable[[int], None]) -> None:
        super().__init__(data)
        self._fetch = fetch

    def __missing__(self, tid: int) -> Any:
        self._fetch(tid)
        return dict.__getitem__(self, tid)  # a table the catalog does not have: KeyError, as before

    def get(self, tid: int, default: Any = None) -> Any:
        if not dict.__contains__(self, tid):
            self._fetch(tid)
        return dict.get(self, tid, default)


class Snapshot:
    """The catalog rows that generating a branch's views needs, read in four queries (or given, cached).

    Read from the catalog, it holds the schema versions valid at `levels` only: `visible` and
    `own_version` answer for those levels (or a suffix of them), not for other points.
    only: the tables the caller works on; the details (relations, column names) of the others
    are read when first asked for. A DDL statement on one table read those of every table the
    branch sees: 200 tables made each CREATE or ALTER TABLE cost ~100 ms more.
    """

    def __init__(self, conn: psycopg.Connection[Any] | None, levels: list[Level], parts: Parts | None = None,
                 *, only: list[int] | None = None) -> None:
        self.levels = levels
        if parts is None:
            assert conn is not None
            by_branch = _load_versions(conn, [lv.branch_id for lv in levels], levels=levels)
            wanted = list(_resolve(by_branch, levels)) if only is None else only
            parts = load_parts(conn, [], wanted, by_branch)
            if only is not None:
                self._conn, self._fetched = conn, set(only)
                parts.info, parts.names, parts.br_columns, parts.parallel = (
                    _OnDemand(d, self._fetch) for d in (parts.info, parts.names, parts.br_columns, parts.parallel))
        self._by_branch = parts.by_branch
        self.tables = self.visible(levels)
        self.info = parts.info
        self.names = parts.names
        self.br_columns = parts.br_columns
        self.parallel = parts.parallel

    def _fetch(self, tid: int) -> None:
        if tid in self._fetched:
            return
        self._fetched.add(tid)
        more = load_parts(self._conn, [], [tid], self._by_branch)
        for mine, got in ((self.info, more.info), (self.names, more.names), (self.br_columns, more.br_columns),
                          (self.parallel, more.parallel)):
            dict.update(mine, got)

    def visible(self, levels: list[Level]) -> dict[int, TableVersion]:
        return _resolve(self._by_branch, levels)

    def own_version(self, level: Level, table_id: int) -> tuple[bool, TableVersion | None]:
        """Whether the level's branch has its own schema version of the table at its cutoff, and which
        (None when that version drops the table)."""
        for r in self._by_branch.get(level.branch_id, []):
            valid_from, valid_to = r[3], r[7]
            if r[1] == table_id and valid_from <= level.upto and (level.upto < valid_to or valid_to == MAX_LSN):
                v = _version(r)
                return True, None if v.dropped else v
        return False, None


def find_table(conn: psycopg.Connection[Any], levels: list[Level], name: str) -> TableVersion | None:
    """The table called `name` as the first level sees it (None: there is none).

    Only the versions of tables bearing the name are read: on a deep branch, reading every
    table's versions made each DDL statement cost O(depth x versions).
    """
    if not levels:
        return None
    by_branch = _load_versions(conn, [lv.branch_id for lv in levels], named=name, levels=levels)
    return next((v for v in _resolve(by_branch, levels).values() if v.name == name), None)


def table_info(conn: psycopg.Connection[Any], table_id: int) -> TableInfo:
    row = conn.execute(
        "SELECT id, root_branch, phys_schema, phys_name FROM heliosdb._tables WHERE id = %s", (table_id,)
    ).fetchone()
    assert row is not None, f"table {table_id} missing from catalog"
    return TableInfo(*row)


def phys_names(conn: psycopg.Connection[Any], table_id: int) -> dict[int, str]:
    return dict(
        conn.execute("SELECT col_id, phys_name FROM heliosdb._columns WHERE table_id = %s", (table_id,)).fetchall()
    )


def save_version(conn: psycopg.Connection[Any], v: TableVersion, lsn: int) -> None:
    """Close the branch's current version of the table and open `v` at `lsn`."""
    conn.execute(
        """UPDATE heliosdb._table_versions SET valid_to = %s
           WHERE branch_id = %s AND table_id = %s AND valid_to = %s""",
        (lsn, v.branch_id, v.table_id, MAX_LSN),
    )
    conn.execute(
        """INSERT INTO heliosdb._table_versions
               (branch_id, table_id, name, valid_from, dropped, columns, constraints)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (branch_id, table_id, valid_from) DO UPDATE
           SET name = EXCLUDED.name, dropped = EXCLUDED.dropped, columns = EXCLUDED.columns,
               constraints = EXCLUDED.constraints, valid_to = %s""",
        (v.branch_id, v.table_id, v.name, lsn, v.dropped, v.columns_json(), v.constraints_json(), MAX_LSN),
    )
