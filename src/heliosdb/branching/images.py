"""Branch images: a branch's rows of a table it inherited, kept as a plain table for reads.

A branch reads an inherited table through a view that puts its own rows together with the root's rows as
of the fork, minus those it rewrote (`layout.state_sql`): per row of the root an LSN filter and an
anti-join probe, 2.4x-2.9x the aggregate of a plain table. VACUUM on the branch copies what that view
returns into a plain table in the branch's schema, with the table's keys and its btree and hash indexes
on plain columns (its image), as an LSM store compacts its deltas. The view then reads the image as long
as it is current: two index probes, run once per statement as an InitPlan; otherwise, in the same
statement, the combined rows as before. Every write of a branch's rows (INSERT, UPDATE, DELETE,
tombstones, merges into the branch) leaves its `__br` row at the writer's LSN, which is above the
image's, so a stale image is never read. A later VACUUM (or the upkeep thread of long-lived processes)
brings the image up to date from the rows the branch wrote since, without copying the table again. DDL
of the table on the branch drops the image. docs/architecture.md, "Branch images", has the measurements.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from heliosdb.catalog.model import Snapshot, TableInfo, TableVersion, chain, table_info
from heliosdb.storage.periodic import Periodic

if TYPE_CHECKING:
    from heliosdb.catalog.model import Branch, Level

I = sql.Identifier  # noqa: E741
L = sql.Literal


def relation(branch: Branch, table_id: int) -> sql.Identifier:
    """The image of a table on a branch: in the branch's schema, named by table id (renames keep it)."""
    return I(branch.phys_schema, f"_hdb_img{table_id}")


def signature(version: TableVersion) -> str:
    """What the image's columns depend on: names and types, in order."""
    return json.dumps([[c.name, c.type] for c in version.columns])


def gate(branch_id: int, info: TableInfo, gen: int) -> sql.Composable:
    """True when the branch's image of the table holds what the branch sees now: this snapshot has the
    image the view names (`gen`: a snapshot older than the image sees an older one, or none, and the
    image's rows not at all), and the branch wrote no row of the table at a later LSN (the own
    transaction's writes too). The newest LSN is one backward step of __br's (_hdb_branch, _hdb_lsn)
    index (a NOT EXISTS with the image's LSN as a parameter was planned as a scan of the branch's rows).
    Never inside a branch's write trigger (`heliosdb.writing`, set by the trigger function)."""
    return sql.SQL(
        "coalesce((SELECT coalesce((SELECT max(w._hdb_lsn) FROM {br} w WHERE w._hdb_branch = {b}), 0) <= i.lsn "
        "FROM heliosdb._images i WHERE i.branch_id = {b} AND i.table_id = {t} AND i.gen = {g} "
        "AND current_setting('heliosdb.writing', true) IS DISTINCT FROM 'on'), false)"
    ).format(br=I(*info.br), b=L(branch_id), t=L(info.id), g=L(gen))


def view_sql(branch: Branch, info: TableInfo, version: TableVersion, state: sql.Composable,
             gen: int) -> sql.Composable:
    """The branch's internal view with its image: the image's rows or the combined ones, by the gate.

    The gate sits above a qual-free UNION ALL, so PostgreSQL flattens both arms into plain scans and
    pushes it down as a one-time filter on each; as one sublink at the top it is one InitPlan, whose
    value the leader passes to parallel workers (a sublink inside each arm would make the plan serial).
    """
    cols = [I(c.name) for c in version.columns]
    m = sql.SQL(", ").join([sql.SQL("m._hdb_rowid"), *(sql.SQL("m.{}").format(c) for c in cols)])
    f = sql.SQL(", ").join([sql.SQL("f._hdb_rowid"), *(sql.SQL("f.{}").format(c) for c in cols)])
    u = sql.SQL(", ").join([sql.SQL("u._hdb_rowid"), *(sql.SQL("u.{}").format(c) for c in cols)])
    return sql.SQL(
        "SELECT {u} FROM (SELECT true AS _hdb_img, {m} FROM {img} m "
        "UNION ALL SELECT false, {f} FROM ({state}) f) u WHERE u._hdb_img = {gate}"
    ).format(u=u, m=m, f=f, img=relation(branch, info.id), state=state, gate=gate(branch.id, info, gen))


def forget(conn: psycopg.Connection[Any], branch_id: int, table_id: int) -> bool:
    """Take the image out of the catalog (the view is then made without it); True when there was one."""
    row = conn.execute("DELETE FROM heliosdb._images WHERE branch_id = %s AND table_id = %s RETURNING 1",
                       (branch_id, table_id)).fetchone()
    return row is not None


def drop(conn: psycopg.Connection[Any], branch: Branch, table_id: int) -> None:
    """Drop the image's relation (after the view no longer names it)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(relation(branch, table_id)))


def worth_one(conn: psycopg.Connection[Any], info: TableInfo, levels: list[Level]) -> bool:
    """Whether the branch's view of the table has rows to hide: the branch, or an ancestor below the root
    before the branch's line forked from it, wrote the table, or the root changed it after the fork.
    Otherwise the view reads nearly as a plain table does, and an image would only cost space."""
    for lv in levels:
        if lv.branch_id == info.root_branch:
            # every change of the root relation leaves a history row ending at its LSN (inserts: a marker)
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {h} WHERE _hdb_branch = %s AND _hdb_end > %s)").format(
                h=I(*info.hist))
            row = conn.execute(q, (lv.branch_id, lv.upto)).fetchone()
            return bool(row and row[0])
        q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {br} WHERE _hdb_branch = %s AND _hdb_lsn <= %s) OR EXISTS "
                    "(SELECT 1 FROM {h} WHERE _hdb_branch = %s AND _hdb_begin <= %s)").format(
            br=I(*info.br), h=I(*info.hist))
        row = conn.execute(q, (lv.branch_id, lv.upto, lv.branch_id, lv.upto)).fetchone()
        if row and row[0]:
            return True
    return False


def _fatal(conn: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """Failures that end a VACUUM as they would end PostgreSQL's: the statement was cancelled or timed
    out, the server is shutting down, the connection went. Others leave one table without its image."""
    return (isinstance(exc, (psycopg.errors.QueryCanceled, psycopg.errors.AdminShutdown))
            or exc.sqlstate is None or conn.broken)


def compact(conn: psycopg.Connection[Any], branch: Branch, table_ids: list[int] | None = None, *,
            problems: list[str] | None = None) -> int:
    """Build or bring up to date the branch's images of the inherited tables given (all when None).

    Each table apart (as VACUUM of several tables), in two transactions. The first, REPEATABLE READ,
    copies or refreshes the image and records the LSN it is exact at, from one snapshot; it holds no
    lock anyone else waits for (two processes on one image: the second leaves it). The second, short,
    puts a new image into the branch's view (`_install`). A table that fails keeps its previous state
    and `problems` gets a line for it. Returns how many images were built, refreshed or installed.
    """
    candidates = table_ids if table_ids is not None else sorted(Snapshot(conn, chain(conn, branch.id)).tables)
    done = 0
    for tid in candidates:
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                changed = _copy(conn, branch, tid)
            installed = _install(conn, branch, tid)
            if changed:
                # all-visible pages: a scan of the image skips the per-row visibility checks a plain
                # table's scan skips (VACUUM cannot run inside the transactions above)
                conn.execute(sql.SQL("VACUUM {}{}").format(
                    sql.SQL("(ANALYZE) " if changed == _BUILT else ""), relation(branch, tid)))
            done += bool(changed or installed)
        except psycopg.Error as exc:
            if _fatal(conn, exc):
                raise
            if problems is None:
                continue
            if isinstance(exc, psycopg.errors.LockNotAvailable):
                problems.append(f"the image of table {_name(conn, branch, tid)} is not in use yet: a transaction "
                                "that read the table is still open (VACUUM again when it ends)")
            else:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                problems.append(f"the image of table {_name(conn, branch, tid)} was not made: {first}")
    return done


def _name(conn: psycopg.Connection[Any], branch: Branch, tid: int) -> str:
    version = Snapshot(conn, chain(conn, branch.id)).tables.get(tid)
    return f'"{version.name}"' if version is not None else str(tid)


_BUILT, _REFRESHED = 2, 1
_IMAGE_LOCK = 0x4849  # advisory lock class: (class, hash of branch and table) while an image is made


def _copy(conn: psycopg.Connection[Any], branch: Branch, tid: int) -> int:
    """Build (_BUILT) or refresh (_REFRESHED) the image as of this transaction's snapshot; 0: nothing to do.

    A new image is recorded but not yet in the view (`installed` false); a refresh of it is the same
    as of one in the view. Catalog reads are of this snapshot too, so what it is made for is what it holds.
    """
    from heliosdb.branching import layout

    got = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                       (_IMAGE_LOCK, f"{branch.id}/{tid}")).fetchone()
    if not got or not got[0]:
        return 0  # another process is making it
    levels = chain(conn, branch.id)
    snap = Snapshot(conn, levels)
    version = snap.tables.get(tid)
    if version is None or version.dropped:
        return 0
    info = table_info(conn, tid)
    if info.root_branch == branch.id:
        return 0  # its rows are a plain table already
    img = relation(branch, info.id)
    br, b = I(*info.br), L(branch.id)
    # The relations it reads, then the image's catalog row, each within 200 ms or not at all: DDL takes
    # the relations first and the row last (images.forget), so waiting here could close a cycle.
    conn.execute("SET LOCAL lock_timeout = '200ms'")
    conn.execute(sql.SQL("LOCK TABLE {}, {}, {} IN ACCESS SHARE MODE").format(I(*info.cur), br, I(*info.hist)))
    row = conn.execute("SELECT lsn, columns, indexes FROM heliosdb._images WHERE branch_id = %s AND table_id = %s "
                       "FOR UPDATE", (branch.id, info.id)).fetchone()
    head_row = conn.execute(
        sql.SQL("SELECT coalesce(max(_hdb_lsn), 0) FROM {br} WHERE _hdb_branch = {b}").format(br=br, b=b)).fetchone()
    head = int(head_row[0]) if head_row else 0
    state = layout.state_sql(snap, levels, info, version)
    indexes = _index_definitions(conn, version)
    if row is not None and row[1] == signature(version):
        lsn = int(row[0])
        synced = _sync_indexes(conn, branch, info.id, indexes, json.loads(row[2]))
        if head <= lsn:
            return _REFRESHED if synced else 0
        changed = sql.SQL("SELECT _hdb_rowid FROM {br} WHERE _hdb_branch = {b} AND _hdb_lsn > {lsn}").format(
            br=br, b=b, lsn=L(lsn))
        conn.execute(sql.SQL("DELETE FROM {img} WHERE _hdb_rowid IN ({changed})").format(img=img, changed=changed))
        conn.execute(sql.SQL("INSERT INTO {img} SELECT * FROM ({state}) s WHERE s._hdb_rowid IN ({changed})").format(
            img=img, state=state, changed=changed))
        conn.execute("UPDATE heliosdb._images SET lsn = %s, refreshed_at = now() WHERE branch_id = %s "
                     "AND table_id = %s", (head, branch.id, info.id))
        return _REFRESHED
    if row is not None or not worth_one(conn, info, levels):
        return 0  # one made for another shape of the table: _install takes it away
    conn.execute(sql.SQL("CREATE TABLE {img} AS {state}").format(img=img, state=state))
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {img} (_hdb_rowid)").format(img=img))
    conn.execute("INSERT INTO heliosdb._images (branch_id, table_id, lsn, columns) VALUES (%s, %s, %s, %s)",
                 (branch.id, info.id, head, signature(version)))
    _sync_indexes(conn, branch, info.id, indexes, [])
    return _BUILT


def _install(conn: psycopg.Connection[Any], branch: Branch, tid: int) -> bool:
    """Put a new image into the branch's view, in a short transaction of the current catalog.

    It first takes the branch's catalog row FOR SHARE, which every DDL on the branch holds FOR UPDATE
    (heliosdb.txn_lsn) until it commits: the schema read next is then the branch's latest, and an image
    made for another shape (DDL since the copy) is dropped instead. Replacing the view waits for
    transactions that read the table and makes new readers queue behind it: it gives up after 200 ms
    (an open transaction holds it off; the image stays recorded, the next VACUUM or upkeep round catches
    it up and tries again), as PostgreSQL's VACUUM never blocks readers. Returns whether it installed.
    """
    from heliosdb.branching import layout

    with conn.transaction():
        row = conn.execute("SELECT gen, columns, installed FROM heliosdb._images WHERE branch_id = %s "
                           "AND table_id = %s", (branch.id, tid)).fetchone()
        if row is None or row[2]:
            return False
        conn.execute("SET LOCAL lock_timeout = '200ms'")
        conn.execute("SELECT 1 FROM heliosdb._branches WHERE id = %s FOR SHARE", (branch.id,))
        levels = chain(conn, branch.id)
        snap = Snapshot(conn, levels)
        version = snap.tables.get(tid)
        row = conn.execute("SELECT gen, columns FROM heliosdb._images WHERE branch_id = %s AND table_id = %s "
                           "AND NOT installed FOR UPDATE", (branch.id, tid)).fetchone()
        if row is None:
            return False  # DDL took it away meanwhile
        if version is None or version.dropped or row[1] != signature(version):
            forget(conn, branch.id, tid)
            drop(conn, branch, tid)
            return False
        info = table_info(conn, tid)
        conn.execute(layout.internal_view_sql(snap, branch, levels, info, version, image_gen=int(row[0])))
        conn.execute("UPDATE heliosdb._images SET installed = true WHERE branch_id = %s AND table_id = %s",
                     (branch.id, tid))
        # write triggers made before images existed read branch views without heliosdb.writing
        stale = [t for t in [tid, *layout.related_tables(snap, info)] if not _writes_aside(conn, branch, snap, t)]
        if stale:
            layout.refresh_writes(conn, branch, levels, stale, snap)
    return True


def _writes_aside(conn: psycopg.Connection[Any], branch: Branch, snap: Snapshot, tid: int) -> bool:
    """Whether the table's write trigger on the branch keeps its reads off images (or it has none)."""
    version = snap.tables.get(tid)
    if version is None:
        return True
    fn = sql.Identifier(branch.phys_schema, version.name + "__w").as_string(conn)
    row = conn.execute("SELECT 'heliosdb.writing=on' = ANY (coalesce(proconfig, '{}')) FROM pg_proc "
                       "WHERE oid = to_regproc(%s)", (fn,)).fetchone()
    return row is None or bool(row[0])


def _sync_indexes(conn: psycopg.Connection[Any], branch: Branch, table_id: int, want: list[str],
                  have: list[list[str]]) -> bool:
    """Give the image the indexes the table has on the branch now (CREATE/DROP INDEX since it was made).

    want: index definitions (`_index_definitions`); have: the (name, definition) pairs recorded in
    heliosdb._images. CREATE INDEX lets the image's readers be; DROP INDEX would make them wait (the
    view's readers hold the image even when the gate skips it), so an index no longer wanted goes only
    if its lock comes within the transaction's lock_timeout, else at a later round. Returns whether
    any changed.
    """
    kept = [h for h in have if h[1] in want]
    changed = False
    for name, definition in have:
        if definition in want:
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(I(branch.phys_schema, name)))
            changed = True
        except psycopg.errors.LockNotAvailable:
            kept.append([name, definition])
    for definition in want:
        if any(h[1] == definition for h in kept):
            continue
        name = f"_hdb_img{table_id}_{hashlib.sha1(definition.encode()).hexdigest()[:10]}"
        unique, rest = definition.split(" ", 1)
        conn.execute(sql.SQL("CREATE {u}INDEX {name} ON {img} {rest}").format(
            u=sql.SQL("UNIQUE " if unique == "unique" else ""), name=I(name), img=relation(branch, table_id),
            rest=sql.SQL(rest)))  # type: ignore[arg-type] - composed from identifiers in _index_definitions
        kept.append([name, definition])
        changed = True
    if changed:
        conn.execute("UPDATE heliosdb._images SET indexes = %s WHERE branch_id = %s AND table_id = %s",
                     (json.dumps(kept), branch.id, table_id))
    return changed


def _index_definitions(conn: psycopg.Connection[Any], version: TableVersion) -> list[str]:
    """The table's keys and its indexes on plain columns, as "unique|plain USING method (keys)" over the
    image (whose columns have the table's names). Indexes on expressions or with a predicate are left
    out: their text names the root relation's columns, and reads that would use them scan the image."""
    names = {c.name for c in version.columns}
    out: list[str] = []
    for con in version.constraints:
        if not con.cols or not all(con.cols) or not set(con.cols) <= names or any(con.opclasses):
            continue  # an operator class is named in the root relation's terms (and may need an extension)
        if con.kind in ("p", "u"):
            keys = sql.SQL(", ").join(I(c) for c in con.cols)
            out.append("unique " + sql.SQL("USING btree ({})").format(keys).as_string(conn))
        elif con.kind == "i" and not con.where:
            method = (con.using or "btree").split(" ", 1)[0]
            if method not in ("btree", "hash"):
                continue  # gin, gist, brin, ...: their operator classes are not the column type's default
            items = []
            for k, c in enumerate(con.cols):
                opt = con.options[k] if k < len(con.options) else 0  # pg_index.indoption: 1 DESC, 2 NULLS FIRST
                order = " DESC" if opt & 1 else ""
                nulls = " NULLS FIRST" if opt & 2 and not opt & 1 else " NULLS LAST" if opt & 1 and not opt & 2 else ""
                items.append(sql.SQL("{}" + order + nulls).format(I(c)))
            out.append("plain " + sql.SQL("USING {} ({})").format(I(method), sql.SQL(", ").join(items)).as_string(conn))
    return out


# -- background upkeep ------------------------------------------------------------------------------
QUIET_SECONDS = 2.0  # a table the branch wrote this recently is left alone: a load may be under way
MIN_ROWS = 10_000  # tables below this size (the root relation's) read fast enough through the view
EVERY_SECONDS = 5.0
WATCH_SECONDS = 0.2  # how often a running round looks for sessions waiting on it


class Upkeep(Periodic):
    """The branch images' upkeep of a long-lived process (started and stopped with the view scheduler):
    a round every few seconds, on a connection of its own, so that copying a big table never delays a
    view's refresh. Like PostgreSQL's autovacuum it steps aside: a copy that another session's lock
    request waits for is cancelled (the next round tries again), and so is one under way at stop()."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], every: float = EVERY_SECONDS) -> None:
        super().__init__("heliosdb-branch-images", connect, every)
        self._busy = threading.Event()

    def round(self, conn: psycopg.Connection[Any]) -> None:
        self._busy.set()
        try:
            upkeep(conn)
        finally:
            self._busy.clear()

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch, name="heliosdb-branch-images-watch", daemon=True)
        watcher.start()
        super().run()
        watcher.join(timeout=5)

    def _watch(self) -> None:
        """While a round runs: cancel it when a lock request of another backend waits for it."""
        watch: psycopg.Connection[Any] | None = None
        try:
            while not self._stop_event.wait(WATCH_SECONDS):
                conn = self._conn
                if not self._busy.is_set() or conn is None or conn.closed:
                    continue
                if watch is None or watch.closed:
                    watch = self._connect()
                row = watch.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                                    "WHERE %s = ANY (pg_blocking_pids(pid)))", (conn.info.backend_pid,)).fetchone()
                if row and row[0] and self._busy.is_set():
                    conn.cancel()
        except psycopg.Error:
            pass  # no watching without a connection: rounds still run, and stop() still cancels
        finally:
            if watch is not None and not watch.closed:
                watch.close()

    def stop(self) -> None:
        conn = self._conn
        if self._busy.is_set() and conn is not None and not conn.closed:
            conn.cancel()  # a copy of a big table would hold the process's exit for its whole length
        super().stop()


def upkeep(conn: psycopg.Connection[Any], *, quiet: float = QUIET_SECONDS, min_rows: int = MIN_ROWS) -> int:
    """One round of the background upkeep: images the branches' writes made stale are brought up to
    date, and a branch that wrote a table of at least `min_rows` rows gets an image of it, once it has
    not written it for `quiet` seconds. Returns how many images were built, refreshed or installed.
    `conn` is in autocommit."""
    from heliosdb.catalog.model import get_branch_by_id

    done = 0
    for branch_id, table_ids in _due(conn, quiet, min_rows).items():
        # a table another process is compacting, or that fails, is left for a later round
        done += compact(conn, get_branch_by_id(conn, branch_id), table_ids)
    return done


def _due(conn: psycopg.Connection[Any], quiet: float, min_rows: int) -> dict[int, list[int]]:
    """branch id -> the tables whose image to build, refresh or install now.

    A branch's image of a table is due when the branch or one of its ancestors below the table's root
    wrote the table (otherwise the view has nothing to hide), and it has none, or one not in its view
    yet, or wrote the table after it, but not within the last `quiet` seconds.
    """
    tables = conn.execute(
        # rows of the root relation: never analyzed (-1), guessed from its size at 100 bytes a row
        """SELECT t.id, t.phys_schema, t.phys_name, t.root_branch,
                  CASE WHEN c.reltuples >= 0 THEN c.reltuples ELSE pg_relation_size(c.oid) / 100 END
           FROM heliosdb._tables t
           JOIN pg_class c ON c.relname = t.phys_name
                          AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = t.phys_schema)""",
    ).fetchall()
    imaged = {(b, t): (lsn, installed) for b, t, lsn, installed in conn.execute(
        "SELECT branch_id, table_id, lsn, installed FROM heliosdb._images")}
    # branches used at least once: the others have no schema to put an image in yet
    chains = {r[0]: [lv.branch_id for lv in chain(conn, r[0])]
              for r in conn.execute("SELECT id FROM heliosdb._branches WHERE state = 'active' AND built")}
    out: dict[int, list[int]] = {}
    for tid, schema, name, root, reltuples in tables:
        if reltuples < min_rows and not any(t == tid for _b, t in imaged):
            continue
        br = I(schema, name + "__br")
        # the branches that wrote the table and their newest LSN: one index probe each (a skip scan)
        heads = dict(conn.execute(sql.SQL(
            """WITH RECURSIVE b(id) AS (SELECT min(_hdb_branch) FROM {br}
                   UNION ALL SELECT (SELECT min(_hdb_branch) FROM {br} WHERE _hdb_branch > b.id) FROM b
                   WHERE b.id IS NOT NULL)
               SELECT b.id, (SELECT max(_hdb_lsn) FROM {br} WHERE _hdb_branch = b.id) FROM b
               WHERE b.id IS NOT NULL""").format(br=br)).fetchall())
        for bid, ancestry in chains.items():
            if bid == root or root not in ancestry:
                continue
            if not any(b in heads for b in ancestry[: ancestry.index(root)]):
                continue
            own = heads.get(bid, 0)
            lsn, installed = imaged.get((bid, tid), (-1, False))
            if (installed and own <= lsn) or (own and _written_within(conn, own, quiet)):
                continue
            out.setdefault(bid, []).append(tid)
    return out


def _written_within(conn: psycopg.Connection[Any], lsn: int, seconds: float) -> bool:
    row = conn.execute("SELECT clock_timestamp() - committed_at < make_interval(secs => %s) "
                       "FROM heliosdb._commits WHERE lsn = %s", (seconds, lsn)).fetchone()
    return bool(row and row[0])
