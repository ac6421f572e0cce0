"""Completion: the pure "text before cursor -> what fits" function, the matchers, and a catalog load."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from heliosdb.session import Session
from heliosdb.shell import executor  # noqa: F401 - registers every meta command
from heliosdb.shell.completer import HeliosCompleter, Metadata, load
from heliosdb.shell.completion import Kind, TableRef, suggest


def kinds(before: str, after: str = "") -> list[Kind]:
    return [s.kind for s in suggest(before, after).suggestions]


def words(before: str) -> tuple[str, ...]:
    return suggest(before).suggestions[0].words


@pytest.mark.parametrize(("before", "expected"), [
    ("SELECT * FROM ", [Kind.TABLE, Kind.SCHEMA]),
    ("select * from acc", [Kind.TABLE, Kind.SCHEMA]),
    ("SELECT * FROM a JOIN ", [Kind.TABLE, Kind.SCHEMA]),
    ("SELECT * FROM a, ", [Kind.TABLE, Kind.SCHEMA]),
    ("INSERT INTO ", [Kind.TABLE, Kind.SCHEMA]),
    ("UPDATE ", [Kind.TABLE, Kind.SCHEMA]),
    ("DELETE FROM ", [Kind.TABLE, Kind.SCHEMA]),
    ("FLASHBACK TABLE ", [Kind.TABLE, Kind.SCHEMA]),
    ("USE BRANCH ", [Kind.BRANCH]),
    ("USE BRANCH fe", [Kind.BRANCH]),
    ("DROP DATABASE BRANCH ", [Kind.BRANCH]),
    ("DROP DATABASE BRANCH IF EXISTS ", [Kind.BRANCH]),
    ("ALTER DATABASE BRANCH ", [Kind.BRANCH]),
    ("CREATE DATABASE BRANCH b2 FROM ", [Kind.BRANCH]),
    ("SELECT * FROM t AS OF BRANCH ", [Kind.BRANCH]),
    ("MERGE DATABASE BRANCH ", [Kind.BRANCH]),
    ("MERGE DATABASE BRANCH fix INTO ", [Kind.BRANCH]),
    ("SELECT * FROM t AS OF LSN ", [Kind.LSN]),
    ("SET AS OF LSN 0/", [Kind.LSN]),
    ("SELECT * FROM t AS OF BRANCH x AT LSN ", [Kind.LSN]),
    ("REFRESH MATERIALIZED VIEW ", [Kind.MVIEW, Kind.KEYWORD]),
    ("DROP VIEW ", [Kind.VIEW]),
    ("\\", [Kind.META]),
    ("\\bra", [Kind.META]),
    ("\\use ", [Kind.BRANCH]),
    ("\\branch info ", [Kind.BRANCH]),
    ("\\branch diff main ", [Kind.BRANCH]),
    ("\\branch diff main fix ", [Kind.TABLE]),
    ("\\dmv refresh ", [Kind.MVIEW]),
    ("\\dmv ", [Kind.KEYWORD, Kind.MVIEW]),
    ("\\d ", [Kind.TABLE]),
    ("\\i ", [Kind.FILE]),
    ("\\h ", [Kind.HELP]),
    ("\\unset ", [Kind.VARIABLE]),
    ("SELECT 'an open str", []),
    ("SELECT 1 -- a comment ", []),
    ("SELECT /* open ", []),
])
def test_suggestion_kinds(before: str, expected: list[Kind]) -> None:
    assert kinds(before) == expected


def test_as_of_keywords() -> None:
    for before in ("SELECT * FROM t AS OF ", "SET AS OF ", "select * from t as of "):
        assert set(words(before)) >= {"TIMESTAMP", "LSN", "SCN", "TRANSACTION", "NOW"}
    assert set(words("SELECT * FROM t AS OF ")) == {"TIMESTAMP", "LSN", "SCN", "TRANSACTION", "BRANCH",
                                                    "SYSTEM_TIME", "NOW"}
    assert words("FLASHBACK TABLE t TO ") == ("LSN", "SCN", "TIMESTAMP", "TRANSACTION")


def test_columns_of_the_statement_tables() -> None:
    ctx = suggest("SELECT ", " FROM accounts a JOIN notes ON true")
    col = ctx.suggestions[0]
    assert col.kind is Kind.COLUMN and col.tables == (TableRef(None, "accounts", "a"), TableRef(None, "notes", None))
    for before in ("SELECT * FROM accounts WHERE ", "SELECT * FROM accounts WHERE x = 1 AND ",
                   "SELECT * FROM accounts ORDER BY ", "SELECT * FROM accounts a JOIN b ON a.id = ",
                   "SELECT * FROM accounts GROUP BY "):
        assert suggest(before).suggestions[0].kind is Kind.COLUMN, before
    qualified = suggest("SELECT a.", " FROM accounts a, notes n")
    assert qualified.suggestions == (qualified.suggestions[0],)
    assert qualified.suggestions[0].tables == (TableRef(None, "accounts", "a"),)
    assert suggest("INSERT INTO accounts (").suggestions[0].tables == (TableRef(None, "accounts", None),)
    timed = suggest("SELECT ", " FROM accounts AS OF LSN 0/2 x")
    assert timed.suggestions[0].tables == (TableRef(None, "accounts", "x"),)


@pytest.mark.parametrize("clause", [
    "AS OF NOW", "AS OF TIMESTAMP now() - interval '1 hour'", "AS OF TIMESTAMP '2026-01-01'::timestamptz",
    "AS OF TIMESTAMP '2026-01-01 10:00'::timestamp with time zone AT TIME ZONE 'UTC'", "AS OF LSN 0/1A3F",
    "AS OF LSN '0/1A3F'", "AS OF SCN 41 + 1", "AS OF TRANSACTION 4711", "AS OF SYSTEM_TIME now()",
    "AS OF BRANCH fix", "AS OF BRANCH \"feature-x\" AT TIMESTAMP now() - interval '1 day'",
    "AS OF BRANCH fix AT SCN 3", "FOR SYSTEM_TIME AS OF now()", "AT(TIMESTAMP => now() - interval '5 minutes')",
    "BEFORE (OFFSET => -60)", "AT(LSN => '0/1A3F')", "VERSION AS OF 0/1A3F", "TIMESTAMP AS OF now()",
    "AS OF TIMESTAMP CASE WHEN true THEN now() END", "AS OF TIMESTAMP (SELECT max(at) FROM x)",
])
def test_columns_after_a_time_travel_alias(completer: HeliosCompleter, clause: str) -> None:
    for alias in ("a", "AS a"):
        stmt = f"SELECT * FROM accounts {clause} {alias} WHERE a."
        assert completer.complete(stmt) == ["id", "owner", "balance"], stmt
        assert completer.complete("SELECT a.", f" FROM accounts {clause} {alias} JOIN notes n ON true") == \
            ["id", "owner", "balance"], stmt


@pytest.mark.parametrize("clause", [
    "VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE", "VERSIONS BETWEEN TIMESTAMP now() - interval '1 hour' AND now()",
    "VERSIONS BETWEEN LSN 0/10 AND 0/20", "FOR SYSTEM_TIME ALL", "FOR SYSTEM_TIME FROM now() - interval '1 day' TO now()",
    "FOR SYSTEM_TIME BETWEEN '2026-01-01' AND '2026-02-01'", "FOR SYSTEM_TIME CONTAINED IN (now() - interval '1 day', now())",
])
def test_version_pseudo_columns_after_a_range_alias(completer: HeliosCompleter, clause: str) -> None:
    got = completer.complete(f"SELECT * FROM accounts {clause} v WHERE v.")
    assert got == ["id", "owner", "balance", "versions_startscn", "versions_endscn", "versions_starttime",
                   "versions_endtime", "versions_startlsn", "versions_endlsn", "versions_xid", "versions_operation"]
    assert completer.complete("SELECT v.versions_op", f" FROM accounts {clause} v") == ["versions_operation"]
    assert "versions_xid" not in completer.complete("SELECT a.", " FROM accounts AS OF LSN 0/2 a")


def test_word_and_statement_boundaries() -> None:
    assert suggest("SELECT 1; SELECT * FROM acc").word == "acc"
    assert suggest("SELECT * FROM heliosdb.com").word == "com"
    assert suggest("SELECT * FROM heliosdb.").suggestions[0].schema == "heliosdb"
    assert suggest("SELECT * FROM \"My").word == '"My'
    assert kinds("SELECT 1;\nUSE BRANCH ") == [Kind.BRANCH]
    assert suggest("").suggestions[0].words[0] == "SELECT"
    assert suggest("SELECT * FROM acc\n").word == ""  # a new line starts a new word
    assert kinds("SELECT * FROM acc\n") == [Kind.KEYWORD]


def test_no_menu_while_typing_on_a_new_line(completer: HeliosCompleter) -> None:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    def texts(text: str, typing: bool) -> list[str]:
        event = CompleteEvent(text_inserted=typing, completion_requested=not typing)
        return [c.text for c in completer.get_completions(Document(text), event)]

    assert texts("SELECT * FROM acc\n", typing=True) == []  # Enter started a line: no menu pops up
    assert texts("SELECT * FROM acc\n", typing=False)[:1] == ["WHERE"]  # Tab there still completes
    assert texts("SELECT * FROM\n", typing=False)[:1] == ["accounts"]
    assert texts("SELECT * FROM\nno", typing=True) == ["notes"]


# -- matchers over a catalog snapshot -------------------------------------------------------------------
@pytest.fixture
def completer() -> HeliosCompleter:
    c = HeliosCompleter(variables={"who": "ann"})
    c.metadata = Metadata(
        relations={"accounts": ("id", "owner", "balance"), "notes": ("id", "body"), "Mixed Case": ("x",),
                   "rich": ("id", "owner", "balance")},
        kinds={"accounts": "table", "notes": "table", "Mixed Case": "table", "rich": "view"},
        qualified={"heliosdb": {"commits": ("lsn", "scn"), "branches": ("name",)}},
        schema_functions={"heliosdb": ("current_lsn", "current_scn")},
        functions=("count", "current_date", "now"),
        branches=("main", "fix", "feature-x"),
        lsns=(("0/7", "fix, 2026-01-01 10:00:00"), ("0/6", "fix"), ("0/10", "main")),
    )
    return c


def test_candidates(completer: HeliosCompleter) -> None:
    c = completer.complete
    assert c("SELECT * FROM ") == ["accounts", '"Mixed Case"', "notes", "rich", "heliosdb."]
    assert c("SELECT * FROM no") == ["notes"]
    assert c("SELECT * FROM heliosdb.") == ["branches", "commits", "current_lsn", "current_scn"]
    assert c("SELECT ", " FROM accounts")[:3] == ["id", "owner", "balance"]
    assert c("SELECT n.", " FROM accounts a JOIN notes n ON true") == ["id", "body"]
    assert c("SELECT * FROM accounts WHERE ba")[0] == "balance"
    assert c("USE BRANCH ") == ["main", "fix", '"feature-x"']
    assert c("USE BRANCH f") == ["fix", '"feature-x"']
    assert c('USE BRANCH "fe') == ['"feature-x"']
    assert c("SELECT * FROM t AS OF LSN ") == ["0/7", "0/6", "0/10"]
    assert c("SELECT * FROM t AS OF LSN 0/1") == ["0/10"]
    assert c("select * from t as of ti") == ["timestamp"]
    assert c("\\bra") == ["\\branch", "\\branches"]
    assert c("\\branch ") == ["diff", "info", "tree"]
    assert c("\\use f") == ["fix", '"feature-x"']
    assert c("\\x ") == ["on", "off", "auto"]
    assert c("\\unset w") == ["who"]
    assert "USE BRANCH" in c("\\h use")
    assert c("DROP VIEW ") == ["rich"]
    assert c("SELECT cou") == ["count"]
    assert c("sel") == ["select"]


def test_completion_p95_with_a_thousand_tables_of_twenty_columns() -> None:
    rels = {f"table_{i:04d}": tuple(f"col_{i}_{j}" for j in range(20)) for i in range(1000)}
    c = HeliosCompleter()
    c.metadata = Metadata(relations=rels, kinds={n: "table" for n in rels}, functions=tuple(f"fn_{i}" for i in range(3000)),
                          branches=tuple(f"b{i}" for i in range(200)))
    inputs = ["SELECT * FROM ", "SELECT * FROM table_05", "SELECT ", "SELECT * FROM table_0001 t WHERE t.",
              "SELECT col_1 FROM table_0001 JOIN table_0002 ON ", "USE BRANCH b1", "sel", "SELECT * FROM t AS OF "]
    times = []
    for _ in range(20):
        for text in inputs:
            before, _, after = text.partition("|")
            start = time.perf_counter()
            list(c.candidates(suggest(before, after)))
            times.append(time.perf_counter() - start)
    p95 = statistics.quantiles(times, n=20)[18]
    assert p95 < 0.050, f"completion p95 {p95 * 1000:.1f} ms"


# -- loading from a real catalog ------------------------------------------------------------------------
@pytest.fixture
def session(helios_data_dir: object, dbname: str) -> Iterator[Session]:
    s = Session(data_dir=helios_data_dir, database=dbname)  # type: ignore[arg-type]
    yield s
    s.close()


def test_load_reads_the_current_branch(session: Session) -> None:
    for stmt in ("CREATE TABLE accounts (id int PRIMARY KEY, owner text)", "CREATE VIEW rich AS SELECT * FROM accounts",
                 "INSERT INTO accounts VALUES (1, 'a')", "CREATE DATABASE BRANCH fix", "USE BRANCH fix",
                 "CREATE TABLE notes (id int, body text)"):
        session.execute(stmt)
    conn = session.new_connection()
    try:
        md = load(conn, session.branch.id, session.branch.user_schema)
        assert md.relations["accounts"] == ("id", "owner") and md.kinds["accounts"] == "table"
        assert md.kinds["notes"] == "table" and md.kinds["rich"] == "view"
        assert set(md.branches) == {"main", "fix"}
        assert md.lsns and all("/" in lsn for lsn, _ in md.lsns)
        assert "commits" in md.qualified["heliosdb"] and "current_lsn" in md.schema_functions["heliosdb"]
        assert "count" in md.functions and md.nodes == 1
        main = session.query("SELECT id, user_schema FROM heliosdb._branches WHERE name = 'main'")[0]
        assert "notes" not in load(conn, *main).relations
    finally:
        conn.close()


def test_refresher_swaps_the_snapshot_in_the_background(session: Session) -> None:
    from heliosdb.shell.completer import Refresher

    session.execute("CREATE TABLE first_table (a int)")
    comp = HeliosCompleter()
    seen: list[Metadata] = []
    r = Refresher(comp, session.new_connection, lambda: (session.branch.id, session.branch.user_schema), seen.append)
    try:
        r.refresh()
        r.wait()
        assert "first_table" in comp.metadata.relations and len(seen) == 1
        before = comp.metadata
        session.execute("INSERT INTO first_table VALUES (1)")
        session.execute("CREATE TABLE second_table (b int)")
        r.refresh(False)  # after a write: only the LSNs are reloaded
        r.wait()
        assert comp.metadata.relations is before.relations and comp.metadata.lsns != before.lsns
        assert comp.complete("SELECT * FROM sec") == []
        r.refresh()  # after DDL: every name
        r.wait()
        assert comp.complete("SELECT * FROM sec") == ["second_table"]
        assert r.error is None
    finally:
        r.close()
