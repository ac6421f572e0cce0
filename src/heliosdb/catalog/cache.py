"""A session's cache of the catalog reads time travel needs, keyed by the catalog generation.

Other sessions and processes may change the catalog at any time, so nothing is
served from here without a check against the generation (heliosdb._catalog_gen,
bumped at the commit of every catalog change, see generation.sql) and this
transaction's own change mark: either read in the same round trip as other
work (`key_sql`), or checked inside the statement that uses the cached result
(the guard of heliosdb.temporal.rewrite).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import psycopg

from heliosdb.catalog.model import (
    MAX_LSN,
    Branch,
    Level,
    Parts,
    Snapshot,
    ancestry,
    get_branch,
    levels_of,
    load_parts,
)

Key = tuple[int, str]  # (catalog generation, this transaction's change mark)

# The two columns that make a Key: fold into any catalog query of the same round trip.
KEY_COLUMNS = (
    "(SELECT gen FROM heliosdb._catalog_gen), coalesce(current_setting('heliosdb.catalog_mark', true), '')"
)

_MAX_REWRITES = 256  # statement texts whose AS OF rewrite is kept


class CatalogCache:
    """Catalog reads for the key they were read at; everything is dropped when the key moves."""

    def __init__(self) -> None:
        self.key: Key | None = None
        # a branch's ancestry: parent and fork point never change for a branch id (ids are not reused)
        self._chains: dict[int, list[tuple[int, int | None]]] = {}
        self._clear()

    def _clear(self) -> None:
        self._parts: dict[tuple[int, ...], Parts] = {}
        self._branches: dict[str, Branch] = {}
        self.rewrites: OrderedDict[Any, Any] = OrderedDict()

    def check(self, key: Key) -> None:
        """The catalog as of `key` is the truth from now on: forget anything read at another key."""
        if key != self.key:
            self._clear()
            self.key = key

    def read_key(self, conn: psycopg.Connection[Any]) -> Key:
        row = conn.execute("SELECT " + KEY_COLUMNS).fetchone()  # type: ignore[arg-type] - a constant
        assert row is not None
        return (int(row[0]), str(row[1]))

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        """One round trip: validate the cache against the catalog now."""
        self.check(self.read_key(conn))

    # -- reads (valid for self.key: callers refresh or check first) -------------------------
    def chain(self, conn: psycopg.Connection[Any], branch_id: int, upto: int = MAX_LSN) -> list[Level]:
        """The branch and its ancestors, each with the LSN it is seen at (model.chain, cached)."""
        return levels_of(self.steps(conn, branch_id), upto)

    def steps(self, conn: psycopg.Connection[Any], branch_id: int) -> list[tuple[int, int | None]]:
        """(branch id, fork LSN) of the branch and its ancestors (model.ancestry, cached)."""
        steps = self._chains.get(branch_id)
        if steps is None:
            steps = ancestry(conn, branch_id)
            if steps:
                self._chains[branch_id] = steps
        return steps

    def snapshot(self, conn: psycopg.Connection[Any], levels: list[Level]) -> Snapshot:
        ids = tuple(lv.branch_id for lv in levels)
        parts = self._parts.get(ids)
        if parts is None:
            parts = self._parts[ids] = load_parts(conn, list(ids))
        return Snapshot(None, levels, parts)

    def branch(self, conn: psycopg.Connection[Any], name: str) -> Branch:
        b = self._branches.get(name)
        if b is None:
            b = get_branch(conn, name)
            assert b is not None
            self._branches[name] = b
        return b

    def remember(self, key: Any, value: Any) -> None:
        self.rewrites[key] = value
        if len(self.rewrites) > _MAX_REWRITES:
            self.rewrites.popitem(last=False)
