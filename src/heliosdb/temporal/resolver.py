"""One resolver for every temporal point: NOW, LSN, TIMESTAMP, SCN, TRANSACTION -> an LSN.

A point is resolved in a branch's history: its own commits and its ancestors'
up to their fork points. The result is the canonical (branch, LSN).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from heliosdb import errors
from heliosdb.catalog.cache import KEY_COLUMNS, CatalogCache
from heliosdb.catalog.model import Branch, ancestry, chain, read_at
from heliosdb.sql.lsn import format_lsn, parse_lsn
from heliosdb.sql.temporal import typed_value


def _history_filter(levels: list[Any]) -> tuple[sql.Composable, list[Any]]:
    """A WHERE clause selecting the commits in a branch's history (ancestors up to fork points)."""
    parts, params = [], []
    for lv in levels:
        parts.append(sql.SQL("(branch_id = %s AND lsn <= %s)"))
        params += [lv.branch_id, lv.upto]
    return sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")"), params


def head_lsn(conn: psycopg.Connection[Any], branch: Branch) -> int:
    """The branch's head: its last commit, or this transaction's LSN once it wrote there."""
    row = conn.execute(
        "SELECT coalesce(heliosdb.held_lsn(%s), head_lsn) FROM heliosdb._branches WHERE id = %s",
        (branch.id, branch.id),
    ).fetchone()
    if row is None:
        raise errors.UndefinedBranch(f'branch "{branch.name}" does not exist')
    return int(row[0])


def check_retained(conn: psycopg.Connection[Any], branch: Branch, lsn: int) -> None:
    """Refuse points older than the history the garbage collector kept ("snapshot too old").

    Ancestors are read at fork points, which the collector keeps; they only
    matter where the requested point itself reaches them (model.read_at).
    """
    retained_check(*_horizons(conn, branch), branch, lsn)


def retained_lsn(conn: psycopg.Connection[Any], branch: Branch) -> int:
    """The oldest LSN whose reads of `branch` are all inside the retained history (oldest_retained)."""
    return oldest_retained(*_horizons(conn, branch))


def _horizons(conn: psycopg.Connection[Any], branch: Branch) -> tuple[list[tuple[int, int | None]], dict[int, int]]:
    """The branch's ancestry and the garbage collector's horizon of each step."""
    steps = ancestry(conn, branch.id)
    rows = dict(conn.execute(
        "SELECT id, gc_lsn FROM heliosdb._branches WHERE id = ANY(%s)", ([bid for bid, _ in steps],)
    ).fetchall())
    return steps, {int(b): int(g) for b, g in rows.items()}


_MAX_BIGINT = 2**63 - 1


def parse_scn(value: str) -> int:
    """An SCN as written: an integer in PostgreSQL's bigint range."""
    try:
        scn = int(typed_value(value.strip()).strip().strip("'"))
    except ValueError:
        raise errors.InvalidTemporalPoint(f'invalid SCN "{value}"', hint="An SCN is an integer.") from None
    if not -_MAX_BIGINT - 1 <= scn <= _MAX_BIGINT:  # PostgreSQL would look for a numeric overload
        raise errors.InvalidTemporalPoint(f"SCN {scn} is out of range",
                                          hint=f"An SCN is an integer up to {_MAX_BIGINT}.")
    return scn


def resolve_point(conn: psycopg.Connection[Any], parent: Branch, kind: str, value: str | None, *,
                  future_ok: bool = False, before_ok: bool = False) -> int:
    """The LSN on `parent` that the point (kind, value as written) names.

    A point in the future (a timestamp after the current time, an SCN after the latest one
    assigned) is an error like an LSN after the head: its state is not known yet, and a read
    at it would change with the next commit. future_ok (range bounds) reads it as the head.
    A point before the branch's history is an error too; before_ok (lower range bounds) reads
    it as -1, before every commit.
    """
    head = head_lsn(conn, parent)
    if kind == "NOW":
        return int(head)
    levels = chain(conn, parent.id, head)
    where, params = _history_filter(levels)
    oldest = parent.fork_lsn or 0
    value = value or ""
    if kind == "LSN":
        lsn = parse_lsn(value.strip().strip("'"))
        if lsn > head:
            raise errors.InvalidTemporalPoint(
                f'LSN {value} is after the head of branch "{parent.name}"',
                hint=f"The head of {parent.name} is {format_lsn(head)}.",
            )
        first = conn.execute(sql.SQL("SELECT min(lsn) FROM heliosdb._commits WHERE {}").format(where), params).fetchone()
        if first and first[0] is not None and lsn < first[0]:
            raise errors.InvalidTemporalPoint(
                f'LSN {value} is before the first commit of branch "{parent.name}"',
                hint=f"The oldest point of {parent.name} is LSN {format_lsn(int(first[0]))}.",
            )
        return lsn
    if kind == "TIMESTAMP":
        ts = eval_timestamp(conn, value)
        row = conn.execute("SELECT heliosdb._lsn_at(%s, %s), %s > clock_timestamp(), clock_timestamp()",
                           (parent.id, ts, ts)).fetchone()
        assert row is not None
        if row[1] and not future_ok:
            # the clock, not the last commit: a time between the last commit and now is a known state
            last = conn.execute("SELECT committed_at FROM heliosdb._commits WHERE lsn = %s", (row[0],)).fetchone()
            raise errors.InvalidTemporalPoint(
                f"timestamp {ts} is in the future",
                hint=f"The newest point is the current time, {row[2]}"
                     + (f' (the last commit of "{parent.name}" is at {last[0]}).' if last else "."),
            )
        if row[0] is not None:
            return int(row[0])
        created = conn.execute("SELECT created_at FROM heliosdb._branches WHERE id = %s", (parent.id,)).fetchone()
        if created and ts >= created[0]:
            return oldest
        if before_ok:
            return -1
        first = conn.execute(
            sql.SQL("SELECT min(committed_at) FROM heliosdb._commits WHERE {}").format(where), params
        ).fetchone()
        raise errors.InvalidTemporalPoint(
            f'timestamp {ts} is before the history of branch "{parent.name}"',
            hint=f"The oldest point of {parent.name} is {first[0] if first and first[0] else created[0] if created else 'its creation'}.",
        )
    if kind == "SCN":
        scn = parse_scn(value)
        # the latest SCN handed out, not the latest visible: _lsn_at_scn waits for its commit
        row = conn.execute("SELECT heliosdb._lsn_at_scn(%s, %s::bigint), heliosdb._last_scn()",
                           (parent.id, scn)).fetchone()
        assert row is not None
        latest = int(row[1] or 0)
        if scn > latest and not future_ok:
            # SCNs are global: one not assigned yet names a state nobody knows
            raise errors.InvalidTemporalPoint(f"SCN {scn} is in the future",
                                              hint=f"The newest point is SCN {latest}.")
        if row[0] is not None:
            return int(row[0])
        first = conn.execute(sql.SQL("SELECT c.lsn, c.scn FROM heliosdb._commits c WHERE {} ORDER BY c.lsn LIMIT 1")
                             .format(where), params).fetchone()
        if first is None:
            return oldest  # no commit yet: the empty state
        if before_ok:
            return -1
        raise errors.InvalidTemporalPoint(  # as LSN 0 is
            f'SCN {scn} is before the first commit of branch "{parent.name}"',
            hint=f"The oldest point of {parent.name} is SCN {first[1]} (LSN {format_lsn(int(first[0]))}).",
        )
    # TRANSACTION
    try:
        txid = int(typed_value(value.strip()).strip().strip("'"))
    except ValueError:
        raise errors.InvalidTemporalPoint(f'invalid transaction id "{value}"') from None
    row = conn.execute(
        sql.SQL("SELECT max(lsn) FROM heliosdb._commits WHERE {} AND txid = %s::text::xid8").format(where),
        [*params, txid],
    ).fetchone()
    if row and row[0] is not None:
        return int(row[0])
    status = None
    try:
        with conn.transaction():
            status = conn.execute("SELECT pg_xact_status(%s::text::xid8)", (txid,)).fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        status = None
    why = {
        "in progress": "is still running",
        "aborted": "was rolled back",
        "committed": f'committed no change on branch "{parent.name}"',
    }.get(status or "", "is unknown")
    raise errors.InvalidTemporalPoint(f"transaction {txid} {why}")


def eval_timestamp(conn: psycopg.Connection[Any], expr: str) -> Any:
    text = timestamp_sql(expr)
    try:
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT ({})::timestamptz").format(sql.SQL(text))).fetchone()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise errors.InvalidTemporalPoint(
            f'invalid timestamp "{expr}": {errors.from_psycopg(exc).message}'
        ) from None
    if row is None or row[0] is None:  # a NULL point names no state
        raise errors.InvalidTemporalPoint(f'invalid timestamp "{expr}": the point is NULL')
    return row[0]




# -- one round trip for NOW and LSN points (the cached ancestry is immutable) ------------------
_FACTS = """SELECT (SELECT coalesce(heliosdb.held_lsn(b.id), b.head_lsn) FROM heliosdb._branches b WHERE b.id = %s),
       (SELECT min(lsn) FROM heliosdb._commits WHERE {history}),
       (SELECT array_agg(ARRAY[id::bigint, gc_lsn]) FROM heliosdb._branches WHERE id = ANY(%s)),
       {key}"""


def resolve_now_or_lsn(
    conn: psycopg.Connection[Any], cache: CatalogCache, branch: Branch, kind: str, value: str | None,
    *, before: bool = False,
) -> int:
    """resolve_point + check_retained for NOW and LSN points in one round trip, which also checks the cache."""
    levels = cache.chain(conn, branch.id)
    if not levels:
        raise errors.UndefinedBranch(f'branch "{branch.name}" does not exist')
    lsn = parse_lsn(value.strip().strip("'")) if kind == "LSN" and value is not None else None
    where, params = _history_filter(levels)
    query = sql.SQL(_FACTS).format(history=where, key=sql.SQL(KEY_COLUMNS))
    row = conn.execute(query, [branch.id, *params, [lv.branch_id for lv in levels]]).fetchone()
    assert row is not None
    head, first, gcs, gen, mark = row
    cache.check((int(gen), str(mark)))
    if head is None:
        raise errors.UndefinedBranch(f'branch "{branch.name}" does not exist')
    head = int(head)
    if lsn is None:
        lsn = head
    else:
        if lsn > head:
            raise errors.InvalidTemporalPoint(
                f'LSN {value} is after the head of branch "{branch.name}"',
                hint=f"The head of {branch.name} is {format_lsn(head)}.",
            )
        if first is not None and lsn < first:
            raise errors.InvalidTemporalPoint(
                f'LSN {value} is before the first commit of branch "{branch.name}"',
                hint=f"The oldest point of {branch.name} is LSN {format_lsn(int(first))}.",
            )
        if before:
            lsn -= 1
    gc = {int(b): int(g) for b, g in gcs or []}
    retained_check(cache.steps(conn, branch.id), gc, branch, lsn)
    return lsn


def retained_check(steps: list[tuple[int, int | None]], gc: dict[int, int], branch: Branch, lsn: int) -> None:
    """check_retained on gc horizons already read."""
    if any(lsn < gc.get(bid, 0) for bid in read_at(steps, lsn)):
        raise errors.SnapshotTooOld(
            f'snapshot too old: LSN {format_lsn(lsn)} is older than the retained history of branch "{branch.name}"',
            hint=f"The oldest available point is LSN {format_lsn(oldest_retained(steps, gc))}.",
        )


def oldest_retained(steps: list[tuple[int, int | None]], gc: dict[int, int]) -> int:
    """The oldest LSN from which every read of the first step passes retained_check.

    Below a fork, a read needs the parent's history at the point itself; from the fork on, the
    parent is read at the fork, which the collector keeps. So the answer is the nearest fork the
    horizons met so far are below, or those horizons. The catalog's heliosdb._retained_lsn is the
    same walk (heliosdb.retention).
    """
    best, horizon = _MAX_BIGINT, 0
    for bid, fork in steps:
        horizon = max(horizon, gc.get(bid, 0))
        if fork is None or fork <= horizon:
            break
        best = min(best, fork)
    return min(best, horizon)


# -- TIMESTAMP, SCN and TRANSACTION points: one round trip when they resolve --------------------
_TS_SQL: dict[str, str] = {}  # timestamp expression as written -> checked SQL text


def timestamp_sql(expr: str) -> str:
    """The expression as PostgreSQL SQL, after checking it is one scalar expression (remembered)."""
    text = _TS_SQL.get(expr)
    if text is None:
        import sqlglot
        from sqlglot import exp

        try:
            node = sqlglot.parse_one(expr, read="postgres")
        except sqlglot.errors.ParseError:
            node = None
        if node is None or not isinstance(node, exp.Expression) or isinstance(node, exp.Query | exp.Command):
            raise errors.InvalidTemporalPoint(f'invalid timestamp "{expr}"')
        text = node.sql(dialect="postgres")
        if len(_TS_SQL) >= 256:
            _TS_SQL.clear()
        _TS_SQL[expr] = text
    return text


_POINT = """SELECT {point}, {future},
       (SELECT array_agg(ARRAY[id::bigint, gc_lsn]) FROM heliosdb._branches WHERE id = ANY(%s)),
       {key}
FROM (SELECT {arg} AS a) p"""


def resolve_other(
    conn: psycopg.Connection[Any], cache: CatalogCache, branch: Branch, kind: str, value: str,
) -> int | None:
    """TIMESTAMP / SCN / TRANSACTION points that name a commit: the LSN, with its retained history
    checked, in one round trip that also checks the cache.

    None when the point needs the general resolver (before the history, in the future, unknown
    transaction, a bad value): it gives the exact answer or error.
    """
    levels = cache.chain(conn, branch.id)
    if not levels:
        return None
    params: list[Any]
    if kind == "TIMESTAMP":
        try:
            expr = timestamp_sql(value)
        except errors.InvalidTemporalPoint:
            return None
        arg: sql.Composable = sql.SQL("({})::timestamptz").format(
            sql.SQL(expr))  # type: ignore[arg-type]  # checked to be one expression
        point: sql.Composable = sql.SQL("heliosdb._lsn_at(%s, p.a)")
        future: sql.Composable = sql.SQL("p.a > clock_timestamp()")
        params = [branch.id]
    elif kind == "SCN":
        try:
            arg = sql.SQL("{}::bigint").format(sql.Literal(parse_scn(value)))
        except errors.InvalidTemporalPoint:
            return None
        point = sql.SQL("heliosdb._lsn_at_scn(%s, p.a)")
        future = sql.SQL("p.a > heliosdb._last_scn()")
        params = [branch.id]
    elif kind == "TRANSACTION":
        try:
            txid = int(typed_value(value.strip()).strip().strip("'"))
        except ValueError:
            return None
        where, hist = _history_filter(levels)
        point = sql.SQL("(SELECT max(lsn) FROM heliosdb._commits WHERE {} AND txid = %s::text::xid8)").format(where)
        arg, future = sql.SQL("NULL"), sql.SQL("false")
        params = [*hist, txid]
    else:
        return None
    query = sql.SQL(_POINT).format(point=point, future=future, key=sql.SQL(KEY_COLUMNS), arg=arg)
    params.append([lv.branch_id for lv in levels])
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            row = conn.execute(query, params).fetchone()
        else:
            with conn.transaction():  # a bad timestamp must not fail the user's transaction
                row = conn.execute(query, params).fetchone()
    except psycopg.Error:
        return None  # the general resolver reports it
    assert row is not None
    lsn, in_future, gcs, gen, mark = row
    if lsn is None or in_future:
        return None
    cache.check((int(gen), str(mark)))
    lsn = int(lsn)
    gc = {int(b): int(g) for b, g in gcs or []}
    retained_check(cache.steps(conn, branch.id), gc, branch, lsn)
    return lsn
