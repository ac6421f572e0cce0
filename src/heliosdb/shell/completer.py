"""Completion candidates: one matcher per suggestion kind over a catalog snapshot, refreshed in the background.

The snapshot (Metadata) is immutable; the refresher builds a new one on its
own connection (never the session's, which may be inside a user transaction)
and swaps it in with one assignment, so a completion in flight always sees a
consistent catalog.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from pygments.lexers._postgres_builtins import DATATYPES, KEYWORDS

from heliosdb.shell import sqlhelp
from heliosdb.shell.commands import REGISTRY, Registry
from heliosdb.shell.completion import HELIOS_WORDS, Context, Kind, Suggestion, suggest

ALL_KEYWORDS = tuple(sorted(set(KEYWORDS) | set(HELIOS_WORDS) | set(DATATYPES)))
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
# PostgreSQL's reserved words (and those reserved for type/function names): these need quotes as names.
_RESERVED = set("""all analyse analyze and any array as asc asymmetric both case cast check collate column constraint
create current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral leading
limit localtime localtimestamp not null offset on only or order placing primary references returning select
session_user some symmetric table then to trailing true union unique user using variadic when where window with
authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull join left like
natural notnull outer overlaps right similar tablesample verbose""".split())


# What a range read (VERSIONS BETWEEN, FOR SYSTEM_TIME ranges) adds to a table's columns
VERSIONS_PSEUDO = ["versions_startscn", "versions_endscn", "versions_starttime", "versions_endtime",
                   "versions_startlsn", "versions_endlsn", "versions_xid", "versions_operation"]


@dataclass(frozen=True)
class Metadata:
    """Names the completer offers, as of one catalog read."""

    relations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # current branch: name -> columns
    kinds: dict[str, str] = field(default_factory=dict)  # name -> table | view | materialized view
    qualified: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # schema -> name -> columns
    schema_functions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    functions: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    lsns: tuple[tuple[str, str], ...] = ()  # (lsn, "branch, time")
    nodes: int = 1


def quote(name: str) -> str:
    if _PLAIN.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


# -- loading ---------------------------------------------------------------------------------------
_RELS = """
SELECT n.nspname, c.relname, c.relkind,
       coalesce(array_agg(a.attname ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND (n.nspname = %s OR n.nspname = 'heliosdb'
       OR (n.nspname !~ '^(pg_|hdb_|br_)' AND n.nspname NOT IN ('information_schema', 'public')))
  AND c.relname !~ '^_'
GROUP BY n.nspname, c.relname, c.relkind
"""
_FUNCS = """
SELECT DISTINCT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE (n.nspname IN ('pg_catalog', 'heliosdb') OR n.nspname !~ '^(pg_|hdb_|information_schema)')
  AND p.proname !~ '^_' AND p.prokind IN ('f', 'a', 'w')
"""
_KIND = {"r": "table", "v": "view", "m": "materialized view", "f": "foreign table", "p": "table"}


def load(conn: Any, branch_id: int, schema: str) -> Metadata:
    """Read a catalog snapshot for a branch (on a connection of its own)."""
    from heliosdb.shell.meta_describe import VISIBLE_TABLES

    rels: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, str] = {}
    qualified: dict[str, dict[str, tuple[str, ...]]] = {}
    for nsp, name, kind, cols in conn.execute(_RELS, (schema,)).fetchall():
        cols = tuple(c for c in cols if not c.startswith("_hdb_"))
        if nsp == schema:
            rels[name] = cols
            kinds[name] = _KIND[kind]
        qualified.setdefault(nsp, {})[name] = cols
    tables = {r[1] for r in conn.execute(VISIBLE_TABLES, {"branch": branch_id}).fetchall()}
    for name in rels:
        if name in tables:
            kinds[name] = "table"
    for (name,) in conn.execute(
            "SELECT m.name FROM heliosdb._mv_state s JOIN heliosdb._mviews m ON m.id = s.mv_id WHERE s.branch_id = %s",
            (branch_id,)).fetchall():
        if name in rels:
            kinds[name] = "materialized view"
    funcs: dict[str, set[str]] = {}
    for nsp, name in conn.execute(_FUNCS).fetchall():
        funcs.setdefault(nsp, set()).add(name)
    plain = set(funcs.get("pg_catalog", set())) | set(funcs.get(schema, set()))
    branches = tuple(r[0] for r in conn.execute("SELECT name FROM heliosdb.branches ORDER BY id").fetchall())
    nodes = int(conn.execute("SELECT count(*) FROM heliosdb.nodes").fetchone()[0])
    return Metadata(rels, kinds, qualified, {k: tuple(sorted(v)) for k, v in funcs.items()}, tuple(sorted(plain)),
                    branches, load_lsns(conn), nodes)


def load_lsns(conn: Any) -> tuple[tuple[str, str], ...]:
    """The LSNs of the last 50 commits, newest first, with branch and time."""
    return tuple((str(lsn), f"{branch}, {at:%Y-%m-%d %H:%M:%S}") for lsn, branch, at in conn.execute(
        "SELECT lsn::text, branch, committed_at FROM heliosdb.commits ORDER BY scn DESC LIMIT 50").fetchall())


# -- matching --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    text: str  # inserted
    meta: str  # shown beside it
    display: str | None = None


def _key(word: str) -> str:
    return word[1:].replace('""', '"').lower() if word.startswith('"') else word.lower()


def match(word: str, names: Iterable[str], meta: str, *, transform: Callable[[str], str] = quote,
          contains: bool = True) -> list[Candidate]:
    """Names starting with the word (case-insensitive), then (contains) names containing it."""
    w = _key(word)
    if not w:
        return [Candidate(transform(n), meta) for n in names]
    first, second = [], []
    for n in names:
        low = n.lower()
        if low.startswith(w):
            first.append(Candidate(transform(n), meta))
        elif contains and w in low:
            second.append(Candidate(transform(n), meta))
    return first + second


class HeliosCompleter(Completer):
    def __init__(self, registry: Registry = REGISTRY, variables: dict[str, str] | None = None) -> None:
        self.metadata = Metadata()
        self.registry = registry
        self.variables = variables if variables is not None else {}

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        if complete_event.text_inserted and not document.current_line_before_cursor.strip():
            return  # the menu that opens while typing stays shut after Enter (or indentation) on a new line
        ctx = suggest(document.text_before_cursor, document.text_after_cursor, self.registry)
        for c in self.candidates(ctx):
            yield Completion(c.text, start_position=-len(ctx.word), display=c.display, display_meta=c.meta)

    def complete(self, before: str, after: str = "") -> list[str]:
        """Candidate texts for a buffer (tests and benchmarks)."""
        return [c.text for c in self.candidates(suggest(before, after, self.registry))]

    def candidates(self, ctx: Context) -> list[Candidate]:
        md = self.metadata
        out: list[Candidate] = []
        seen: set[str] = set()
        for s in ctx.suggestions:
            for c in self._kind(s, ctx.word, md):
                if c.text not in seen:
                    seen.add(c.text)
                    out.append(c)
        # prefix matches first across kinds, in the order the kinds came
        w = _key(ctx.word)
        if w:
            out.sort(key=lambda c: not _key(c.text).startswith(w))
        return out

    def _kind(self, s: Suggestion, word: str, md: Metadata) -> list[Candidate]:
        k = s.kind
        if k is Kind.KEYWORD:
            words = s.words or ALL_KEYWORDS
            return match(word, words, "keyword", transform=str.lower if word[:1].islower() else str, contains=False)
        if k is Kind.TABLE:
            if s.schema is not None:
                rels = md.qualified.get(s.schema, {})
                return match(word, sorted(rels, key=str.lower), "relation")
            return [Candidate(c.text, md.kinds.get(c.text.strip('"'), "table"))
                    for c in match(word, sorted(md.relations, key=str.lower), "table")]
        if k in (Kind.VIEW, Kind.MVIEW):
            names = sorted((n for n, kind in md.kinds.items() if kind == k.value), key=str.lower)
            return match(word, names, k.value)
        if k is Kind.COLUMN:
            cols: list[str] = []
            for t in s.tables:
                rel = md.qualified.get(t.schema, {}).get(t.name) if t.schema else md.relations.get(t.name)
                cols += list(rel or ())
                if t.versions:
                    cols += VERSIONS_PSEUDO
            if not s.tables:
                return []
            return match(word, list(dict.fromkeys(cols)), "column")
        if k is Kind.FUNCTION:
            if s.schema is not None:
                return match(word, md.schema_functions.get(s.schema, ()), "function")
            return match(word, md.functions, "function") if word else []
        if k is Kind.SCHEMA:
            return match(word, sorted(md.qualified), "schema", transform=lambda n: quote(n) + ".")
        if k is Kind.BRANCH:
            return match(word, md.branches, "branch")
        if k is Kind.LSN:
            w = word.upper()
            return [Candidate(lsn, meta) for lsn, meta in md.lsns if lsn.startswith(w)]
        if k is Kind.META:
            reg = self.registry
            return [Candidate(n, reg.commands[n].description if n in reg.commands
                              else f"{n} {'|'.join(reg.subcommands(n))}")
                    for n in reg.first_words() if n.startswith(word)]
        if k is Kind.HELP:
            return match(word, sqlhelp.topic_names(), "help", transform=str)
        if k is Kind.VARIABLE:
            return match(word, sorted(self.variables), "variable", transform=str)
        if k is Kind.FILE:
            return _files(word)
        return []


def _files(word: str) -> list[Candidate]:
    path = os.path.expanduser(word)
    folder, prefix = os.path.split(path)
    try:
        entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for e in entries:
        if e.name.startswith(prefix) and (prefix.startswith(".") or not e.name.startswith(".")):
            shown = os.path.join(os.path.dirname(word), e.name) + ("/" if e.is_dir() else "")
            out.append(Candidate(shown, "directory" if e.is_dir() else "file"))
    return out


class Refresher:
    """Reloads the completer's metadata on a thread of its own; at most one load runs at a time.

    A full reload (after DDL, branch switches, transaction ends) reads every name; a light one
    (after writes) only the recent LSNs. Requests arriving while a load runs are merged into one."""

    DEBOUNCE = 0.05  # seconds: a burst of statements (a script) causes one load, not one each

    def __init__(self, completer: HeliosCompleter, connect: Callable[[], Any], branch: Callable[[], tuple[int, str]],
                 on_done: Callable[[Metadata], None] | None = None) -> None:
        self.completer = completer
        self._connect = connect
        self._branch = branch
        self._on_done = on_done
        self._lock = threading.Lock()
        self._pending = False
        self._full = False
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self.error: str | None = None

    def refresh(self, full: bool = True) -> None:
        with self._lock:
            self._pending = True
            self._full = self._full or full
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="heliosdb-completion", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.DEBOUNCE)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                full = self._full or not self.completer.metadata.branches
                self._pending = self._full = False
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                if full:
                    md = load(self._conn, *self._branch())
                else:
                    md = replace(self.completer.metadata, lsns=load_lsns(self._conn))
                self.completer.metadata = md  # one assignment: atomic for readers
                self.error = None
                if self._on_done is not None:
                    self._on_done(md)
            except Exception as exc:  # noqa: BLE001 - completion must never break the shell
                self.error = str(exc)
                self._conn = None

    def wait(self, timeout: float = 10.0) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def close(self) -> None:
        self.wait(2.0)
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
