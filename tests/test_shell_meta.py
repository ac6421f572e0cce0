"""Meta commands against a real database, rendered as the interactive shell shows them (golden files).

Volatile values (times, transaction ids, LSNs, paths) are normalised before
rendering, so the files show the real layout. Regenerate with
HELIOSDB_UPDATE_GOLDEN=1 after an intended change, and read the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from heliosdb.session import Session
from heliosdb.shell.executor import Shell
from heliosdb.storage.binaries import binary
from heliosdb.storage.instance import Instance
from tests.shell_support import check_golden, make_shell, normalise_text, take

SETUP = """
CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance int CHECK (balance >= 0));
INSERT INTO accounts (owner, balance) VALUES ('ann', 100), ('bob', 50), ('cy', NULL);
CREATE INDEX acc_owner ON accounts (owner);
CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 60;
CREATE DATABASE BRANCH fix;
USE BRANCH fix;
UPDATE accounts SET balance = balance + 10 WHERE owner = 'ann';
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES (1, 'hello'), (2, repeat('long text ', 500));
CREATE INDEX acc_bal ON accounts (balance);
CREATE DATABASE BRANCH "feature-x" OPTIONS (read_only = true);
USE BRANCH main;
"""


@pytest.fixture(scope="module")
def meta_db(helios_instance: Instance) -> Iterator[str]:
    name = f"shell_meta_{os.getpid()}"
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        s = Session(data_dir=helios_instance.data_dir, database=name)
        try:
            for _ in s.run(SETUP):
                pass
        finally:
            s.close()
        yield name
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def shell(helios_instance: Instance, meta_db: str) -> Iterator[tuple[Shell, object, object]]:
    s = Session(data_dir=helios_instance.data_dir, database=meta_db)
    try:
        yield make_shell(s)
    finally:
        s.close()


GOLDEN_COMMANDS = {
    "help": "\\?",
    "help_sql_list": "\\h",
    "help_use_branch": "\\h use branch",
    "help_create_branch": "\\h CREATE DATABASE BRANCH",
    "d": "\\d",
    "dt": "\\dt",
    "dv": "\\dv",
    "dm": "\\dm",
    "di": "\\di",
    "dn": "\\dn",
    "du": "\\du postgres",
    "d_accounts": "\\d accounts",
    "d_view": "\\d rich",
    "d_catalog_view": "\\d heliosdb.nodes",
    "d_missing": "\\d nope",
    "branches": "\\branches",
    "branches_pattern": "\\branches f*",
    "branch_info": "\\branch info fix",
    "branch_info_current": "\\branch info",
    "branch_tree": "\\branch tree",
    "timeline": "\\timeline",
    "timeline_2": "\\timeline 2",
    "snapshots": "\\snapshots",
    "snapshots_notes": "\\snapshots notes",
    "retention": "\\retention",
    "lsn": "\\lsn",
    "scn": "\\scn",
    "nodes": "\\nodes",
    "shards": "\\shards accounts",
    "shards_missing": "\\shards nope",
    "replication": "\\replication",
    "compression": "\\compression",
    "compression_table": "\\compression accounts",
    "pset": "\\pset",
    "echo": "\\echo hello   'big world'",
    "err_unknown": "\\foo",
    "err_subcommand": "\\branch",
    "err_extra_arg": "\\branch info fix main",
    "err_choice": "\\x maybe",
    "err_number": "\\timeline many",
    "err_missing_arg": "\\use",
}


@pytest.mark.parametrize("name", sorted(GOLDEN_COMMANDS))
def test_meta_golden(shell: tuple[Shell, object, object], name: str) -> None:
    sh, out, err = shell
    sh.run_meta(GOLDEN_COMMANDS[name])
    text = take(out) + "".join(f"[stderr] {line}\n" for line in take(err).splitlines())
    check_golden(name, normalise_text(text))


def test_meta_on_a_child_branch(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\use fix")
    assert take(out) == 'You are now on branch "fix".\n'
    parts = []
    for cmd in ("\\dt", "\\di", "\\d accounts", "\\d notes", "\\branches", "\\lsn", "\\compression notes"):
        sh.run_meta(cmd)
        parts.append(f"{cmd}\n{take(out)}{take(err)}")
    check_golden("on_branch_fix", normalise_text("\n".join(parts)))


def test_use_unknown_branch_is_an_error(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\use nowhere")
    assert take(err).startswith('ERROR:  HD001: branch "nowhere" does not exist\nHINT:')
    assert sh.session.branch.name == "main"


def test_not_built_yet_say_so(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    try:
        from heliosdb.merge import diff  # type: ignore[attr-defined]

        have_diff = hasattr(diff, "summarize") and hasattr(diff, "diff_rows")
    except ImportError:
        have_diff = False
    sh.run_meta("\\branch diff main fix")
    if have_diff:
        assert "Differences from main to fix" in take(out)
    else:
        assert take(err) == "branch diff is not available yet\n"


def test_dmv_shows_real_views(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.session.execute("CREATE MATERIALIZED VIEW by_owner AS SELECT owner, sum(balance) AS total, count(*) "
                       "FROM accounts GROUP BY owner WITH (priority = high)")
    sh.session.execute("CREATE MATERIALIZED VIEW big AS SELECT owner FROM by_owner WHERE total > 60")
    try:
        sh.session.execute("UPDATE accounts SET balance = balance + 1 WHERE owner = 'bob'")
        sh.run_meta("\\dmv")
        listing = take(out)
        assert "by_owner" in listing and "big" in listing and "high" in listing and "STALE" in listing
        sh.run_meta("\\dmv by_owner")
        one = take(out)
        assert "SELECT owner, sum(balance)" in one and "incrementally (grouping and aggregates)" in one
        assert "1 of ~" in one  # one pending change, counted
        sh.run_meta("\\dmv staleness")
        assert "by_owner" in take(out)
        sh.run_meta("\\dmv deps big")
        deps = take(out)
        assert "by_owner" in deps and "accounts" in deps and "reads" in deps
        sh.run_meta("\\dmv refresh by_owner")
        refreshed = take(out) + take(err)
        assert "REFRESH MATERIALIZED VIEW" in refreshed and "refresh of \"by_owner\"" in refreshed
        sh.run_meta("\\dmv by_owner")
        assert "FRESH" in take(out)
        sh.run_meta("\\dmv nosuch")
        assert 'Did not find any materialized view named "nosuch"' in take(err)
        sh.run_meta("\\pset format unaligned")
        take(out)
        sh.run_meta("\\dm")  # the branch each was created on, as \\dt shows for tables
        assert "big|materialized view|main" in take(out).splitlines()
        sh.run_meta("\\pset format aligned")
        take(out)
    finally:
        sh.session.execute("DROP MATERIALIZED VIEW big, by_owner")


def test_materialized_views_are_listed_and_described_as_such(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.session.execute("CREATE MATERIALIZED VIEW per_owner AS SELECT owner, sum(balance) AS total FROM accounts "
                       "GROUP BY owner")
    try:
        sh.run_meta("\\d per_owner")
        described = take(out)
        assert described.startswith('Materialized view "per_owner"\n')
        assert described.endswith("View definition:\n  SELECT owner, sum(balance) AS total FROM accounts "
                                  "GROUP BY owner;\n")  # the user's query, not the view over its storage
        sh.run_meta("\\pset format unaligned")
        take(out)
        sh.run_meta("\\d per*")
        assert "\nper_owner|materialized view|main\n" in take(out)
        sh.run_meta("\\dm")
        assert "\nper_owner|materialized view|main\n" in take(out)
        sh.run_meta("\\dv per*")
        assert take(err) == 'Did not find any views named "per*".\n'
    finally:
        sh.session.execute("DROP MATERIALIZED VIEW per_owner")


def test_settings_commands(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    st = sh.ctx.settings
    sh.run_meta("\\x")
    assert st.expanded == "on" and take(out) == "Expanded display is on.\n"
    sh.run_meta("\\x auto")
    assert st.expanded == "auto"
    sh.run_meta("\\x off")
    sh.run_meta("\\timing on")
    assert st.timing
    sh.run_meta("\\pset format csv")
    assert st.format == "csv"
    take(out)
    sh.run_sql("SELECT 1 AS a, 'x' AS b")
    text = take(out)
    assert text.startswith("a,b\n1,x\nTime: ") and text.endswith(" ms\n")
    sh.run_meta("\\pset format json")
    sh.run_meta("\\timing off")
    take(out)
    sh.run_sql("SELECT 1.50::numeric AS n, NULL::int AS z, ARRAY[1,2] AS arr, '{\"k\": 1}'::jsonb AS j")
    assert take(out) == '[\n  {\n    "n": 1.50,\n    "z": null,\n    "arr": [\n      1,\n      2\n    ],\n' \
                        '    "j": {\n      "k": 1\n    }\n  }\n]\n'
    sh.run_meta("\\pset format unaligned")
    take(out)
    sh.run_sql("SELECT 1 AS a, 2 AS b")
    assert take(out) == "a|b\n1|2\n(1 row)\n"
    sh.run_meta("\\pset format wrapped")
    assert "allowed formats are aligned, csv, json, unaligned" in take(err)
    sh.run_meta("\\pset null (nil)")
    sh.run_meta("\\pset format aligned")
    take(out)
    sh.run_sql("SELECT NULL AS x")
    assert "│ (nil) │" in take(out)


def psql_and_heliosdb(instance: Instance, database: str, args: list[str], stdin: str = "") -> tuple[str, str]:
    """(psql's output, heliosdb's output) of one command line: standard output and error, as one text."""
    psql = [binary("psql"), "-X", "-h", str(instance.socket_dir), "-p", "5432", "-U", "postgres", "-d", database]
    helios = [sys.executable, "-m", "heliosdb.cli", "-D", str(instance.data_dir), "-d", database]
    outs = [subprocess.run([*cmd, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120).stdout for cmd in (psql, helios)]
    return outs[0], outs[1]


def test_rows_only_expanded_output_as_psql(helios_instance: Instance, meta_db: str, tmp_path: Path) -> None:
    script = """\\x on
\\t on
SELECT * FROM (VALUES (1, 'a'), (22, 'bb')) v(id, name);
SELECT 1 AS a WHERE false;
SELECT 5 AS x;
\\t
\\t
\\pset format unaligned
SELECT * FROM (VALUES (1, 'a'), (22, 'bb')) v(id, name);
SELECT 1 AS a WHERE false;
\\pset tuples_only off
SELECT 5 AS x;
"""
    path = tmp_path / "script.sql"
    path.write_text(script)
    theirs, mine = psql_and_heliosdb(helios_instance, meta_db, ["-f", str(path)])
    assert "RECORD" not in theirs.split("Output format")[0] and "name | bb" in theirs
    assert mine == theirs


def test_column_names_with_newlines_as_psql(helios_instance: Instance, meta_db: str, tmp_path: Path) -> None:
    queries = [
        """SELECT 1 AS "a\nbc", 'x' AS "long\n z", 22 AS n""",  # `+` after each line but a name's last
        "SELECT 'a\nb' AS \"x\nyy\"",  # the last column: a multi-line value is padded before its `+`
        """SELECT 1 AS "a\nb", 'x' AS "c\nd\ne", 'p\nq\nr\ns' AS v""",
        'SELECT 1 AS "tab\there\n日本"',
    ]
    script = "".join(f"{q};\n" for q in queries) + "\\x on\n" + "".join(f"{q};\n" for q in queries)
    path = tmp_path / "script.sql"
    path.write_text(script)
    theirs, mine = psql_and_heliosdb(helios_instance, meta_db, ["-f", str(path)])
    assert " a +| long+| n  \n bc |   z  |    \n" in theirs and "a   +| 1\nbc   |\n" in theirs
    assert mine == theirs


def test_errors_show_their_context_as_psql(helios_instance: Instance, meta_db: str) -> None:
    sql = [
        "DO $$ BEGIN RAISE EXCEPTION 'oops %', 42 USING DETAIL = 'the detail', HINT = 'the hint'; END $$",
        "DO $$ BEGIN PERFORM 1 / 0; END $$",  # nested: two lines of context
        "CREATE TEMP TABLE ctx_copy (a int PRIMARY KEY)",
        "COPY ctx_copy FROM STDIN",  # a data error: the line and column
    ]
    theirs, mine = psql_and_heliosdb(helios_instance, meta_db, [a for q in sql for a in ("-c", q)],
                                     stdin="1\nzz\n\\.\n")
    assert 'CONTEXT:  COPY ctx_copy, line 2, column a: "zz"' in theirs
    assert "CONTEXT:  SQL statement" in theirs
    assert re.sub(r"(?m)^ERROR:  [0-9A-Z]{5}: ", "ERROR:  ", mine) == theirs  # the shell adds the SQLSTATE


def test_verbosity(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    raise_it = "DO $$ BEGIN RAISE EXCEPTION 'oops' USING DETAIL = 'd', HINT = 'h'; END $$"
    sh.run_sql(raise_it)
    assert take(err) == ("ERROR:  P0001: oops\nDETAIL:  d\nHINT:  h\n"
                         "CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE\n")
    sh.run_meta("\\set VERBOSITY terse")
    sh.run_sql(raise_it)
    assert take(err) == "ERROR:  P0001: oops\n"
    sh.run_meta("\\set VERBOSITY sqlstate")
    sh.run_sql(raise_it)
    assert take(err) == "ERROR:  P0001\n"
    sh.run_meta("\\set VERBOSITY verbose")
    sh.run_sql("INSERT INTO accounts (owner) VALUES (NULL)")
    text = take(err)
    assert text.startswith('ERROR:  23502: null value in column "owner" of relation "accounts" violates not-null')
    assert "\nCOLUMN NAME:  owner\n" in text
    sh.run_meta("\\unset VERBOSITY")


def test_rows_only_expanded_in_the_shell(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\x on")
    sh.run_meta("\\t on")
    take(out)
    sh.run_sql("SELECT 1 AS id, 'a' AS name")
    assert take(out) == "┌──────┬───┐\n│ id   │ 1 │\n│ name │ a │\n└──────┴───┘\n"


def test_snapshots_of_an_unknown_table_is_an_error(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\snapshots no_such_table")
    assert take(out) == ""
    assert take(err) == ('ERROR:  42P01: table "no_such_table" does not exist\n'
                         "HINT:  \\snapshots takes a table that exists, or existed, on some branch.\n")
    assert sh.failed
    sh.failed = False
    sh.run_meta('\\snapshots "NOTES"')  # quoted: case kept, so no such table either
    assert "42P01" in take(err)
    sh.run_meta("\\snapshots NOTES")  # notes exists on fix only: its commits are listed from main too
    assert take(err) == "" and "(1 row)" in take(out)


def test_timing_of_a_statement_over_a_second(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\timing on")
    take(out)
    sh.run_sql("SELECT pg_sleep(1.05)")
    assert re.search(r"\nTime: 1\d{3}\.\d{3} ms \(00:01\.\d{3}\)\n$", take(out))
    sh.run_sql("SELECT 1")
    assert re.search(r"\nTime: \d{1,3}\.\d{3} ms\n$", take(out))


def test_variables_and_echo(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\set who ann")
    sh.run_meta("\\set col owner")
    sh.run_meta("\\pset format unaligned")
    take(out)
    sh.run_sql("SELECT :\"col\", ':who' AS literal FROM accounts WHERE owner = :'who'")
    assert take(out) == "owner|literal\nann|:who\n(1 row)\n"
    sh.run_meta("\\set")
    assert "who = 'ann'" in take(out)
    sh.run_meta("\\unset who")
    assert "who" not in sh.ctx.variables
    sh.run_sql("SELECT 1::int AS one")  # casts are not variables
    assert take(out) == "one\n1\n(1 row)\n"


def test_output_redirect_and_include(shell: tuple[Shell, object, object], tmp_path: object) -> None:
    sh, out, err = shell
    target = os.path.join(str(tmp_path), "out.txt")
    script = os.path.join(str(tmp_path), "script.sql")
    with open(script, "w") as f:
        f.write("\\pset format unaligned\nSELECT 41 + 1 AS answer;\n\\echo done\n")
    sh.run_meta(f"\\o {target}")
    sh.run_meta(f"\\i {script}")
    sh.run_meta("\\o")
    assert take(out) == "Output format is unaligned.\ndone\n"  # messages stay on the terminal
    with open(target) as f:
        assert f.read() == "answer\n42\n(1 row)\n"
    sh.run_meta(f"\\o {target}")
    sh.run_meta("\\timing on")
    sh.run_meta("\\lsn on")
    sh.run_sql("SELECT 7 AS seven")
    sh.run_meta("\\o")
    lines = take(out).splitlines()  # as psql: timing and LSN lines on the terminal, results in the file
    assert lines[:2] == ["Timing is on.", "LSN display is on."] and len(lines) == 4
    assert lines[2].startswith("Time: ") and lines[3].startswith("LSN: ")
    with open(target) as f:
        assert f.read() == "seven\n7\n(1 row)\n"
    sh.run_meta("\\i /nonexistent/file.sql")
    assert take(err) == "/nonexistent/file.sql: No such file or directory\n"


def test_edit_runs_a_complete_statement(shell: tuple[Shell, object, object], tmp_path: object,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sh, out, err = shell
    editor = os.path.join(str(tmp_path), "ed.sh")
    with open(editor, "w") as f:
        f.write('#!/bin/sh\nprintf "SELECT 7 AS seven;\\n" > "$1"\n')
    os.chmod(editor, 0o755)
    monkeypatch.setenv("EDITOR", editor)
    monkeypatch.delenv("VISUAL", raising=False)
    sh.run_meta("\\pset format unaligned")
    take(out)
    sh.run_meta("\\e")
    assert take(out) == "seven\n7\n(1 row)\n"
    with open(editor, "w") as f:
        f.write('#!/bin/sh\nprintf "SELECT 8\\n" > "$1"\n')
    sh.run_meta("\\e")
    assert sh.prefill == "SELECT 8"


def test_lsn_echo(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\use fix")
    sh.run_meta("\\lsn on")
    take(out)
    sh.run_sql("SELECT 1")
    text = take(out)
    assert text.splitlines()[-1].startswith("LSN: ") and "(committed)" not in text
    sh.run_sql("INSERT INTO notes VALUES (3, 'x')")
    lines = take(out).splitlines()
    assert lines[0] == "INSERT 0 1" and lines[1].startswith("LSN: ") and lines[1].endswith("(committed)")
    sh.run_sql("DELETE FROM notes WHERE id = 3")
    for key, end, note in ((93, "COMMIT", " (committed)"), (94, "ROLLBACK", "")):  # a transaction's commit
        sh.run_sql("BEGIN")
        sh.run_sql(f"INSERT INTO notes VALUES ({key}, 'y')")
        assert take(out).splitlines()[-1].endswith("(this transaction)")
        sh.run_sql(end)
        last = take(out).splitlines()[-1]
        assert last.startswith("LSN: ") and (last.endswith(note) if note else "(" not in last), (end, last)
    sh.run_sql("DELETE FROM notes WHERE id = 93")
    sh.run_meta("\\lsn off")
    take(out)
    sh.run_sql("SELECT 1")
    assert "LSN" not in take(out)


def test_schema_qualified_names_and_patterns(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\d public.accounts")  # the branch's own schema: as the bare names
    assert take(out).startswith('Table "accounts" on branch "main"\n')
    sh.run_meta("\\pset format unaligned")
    take(out)
    sh.run_meta("\\dt public.acc*")
    assert "\naccounts|table|main\n(1 row)\n" in take(out)
    sh.run_meta("\\dv heliosdb.commits")
    assert "\nheliosdb.commits|view|\n(1 row)\n" in take(out)
    sh.run_meta("\\use fix")
    take(out)
    sh.run_meta("\\dt br_fix.*")
    assert "\naccounts|table|main\nnotes|table|fix\n(2 rows)\n" in take(out)
    assert take(err) == ""


def test_returning_prints_the_rows_then_the_command_tag(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\use fix")
    take(out)
    assert sh.run_sql("INSERT INTO notes VALUES (4, 'r') RETURNING id")
    assert take(out).endswith("│  4 │\n└────┘\n(1 row)\nINSERT 0 1\n")  # as psql: rows, then the tag
    sh.run_meta("\\pset format unaligned")
    take(out)
    assert sh.run_sql("DELETE FROM notes WHERE id = 4 RETURNING id")
    assert take(out) == "id\n4\n(1 row)\nDELETE 1\n"


def test_errors_show_sqlstate_hint_and_caret(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    assert not sh.run_sql("SELECT *\nFROM accounts\nWHERE nope = 1")
    assert take(err) == ('ERROR:  42703: column "nope" does not exist\n'
                         "LINE 3: WHERE nope = 1\n"
                         "              ^\n")
    assert not sh.run_sql("USE BRANCH nowhere")
    assert take(err) == ('ERROR:  HD001: branch "nowhere" does not exist\n'
                         "HINT:  SHOW BRANCHES lists the branches of this database.\n")


def test_prompt_follows_the_session(shell: tuple[Shell, object, object]) -> None:
    from heliosdb.shell.prompt import state_of, text

    sh, out, err = shell
    s = sh.session
    db = s.database
    assert text(state_of(s)) == f"{db}[main]=> "
    assert text(state_of(s), continuation=True) == f"{db}[main]-> "
    assert text(state_of(s, multi_node=True)) == f"{db}[main]@node-1=> "
    sh.run_sql("BEGIN")
    assert text(state_of(s)) == f"{db}[main]*=> "
    sh.run_sql("SELECT 1/0")
    assert text(state_of(s)) == f"{db}[main]!=> "
    sh.run_sql("ROLLBACK")
    sh.run_sql("SET AS OF LSN 0/2")
    assert text(state_of(s)) == f"{db}[main@LSN:0/2]=> "
    sh.run_sql("SET AS OF NOW")
    sh.run_meta("\\use fix")
    assert text(state_of(s)) == f"{db}[fix]=> "


def test_help_on_a_two_word_command(shell: tuple[Shell, object, object]) -> None:
    sh, out, err = shell
    sh.run_meta("\\? branch  info")
    assert take(err) == ""
    text = take(out)
    assert text.startswith("\\branch info [branch]\n    ") and "\\branch tree" not in text
