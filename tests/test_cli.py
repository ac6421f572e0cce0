"""The `heliosdb` command, run as a subprocess: -c/-f, output formats, exit codes, errors, COPY, psql parity."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import heliosdb
from heliosdb.storage.instance import Instance

Run = Callable[..., subprocess.CompletedProcess[str]]
_names = itertools.count()


@pytest.fixture(scope="module")
def cli_db(helios_instance: Instance) -> Iterator[str]:
    """One database for the module's commands (tests use table and branch names of their own)."""
    name = f"cli_{os.getpid()}"
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        yield name
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def helios(helios_data_dir: Path, cli_db: str) -> Run:
    """Run `heliosdb -D <session data dir> -d <module db> ARGS...` and return the finished process."""

    def run(*args: str, stdin: str | None = None, db: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", db or cli_db, *args]
        return subprocess.run(
            cmd, input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120
        )

    return run


@pytest.fixture
def name() -> Callable[[str], str]:
    n = next(_names)
    return lambda base: f"{base}_{n}"


@pytest.fixture
def db(helios_data_dir: Path, cli_db: str) -> Iterator[heliosdb.Connection]:
    """An in-process connection to the module database, to set up and to check what commands did."""
    c = heliosdb.connect(data_dir=helios_data_dir, database=cli_db)
    c.autocommit = True
    yield c
    c.close()


def scalar(c: heliosdb.Connection, sql: str) -> object:
    row = c.execute(sql).fetchone()
    assert row is not None
    return row[0]


# --- sessions, -c and -f -----------------------------------------------------------------------


def test_several_c_options_share_one_session(helios: Run, name: Callable[[str], str]) -> None:
    t, b = name("t"), name("b")
    r = helios(
        "-c", f"CREATE TABLE {t} (id int)",
        "-c", f"CREATE DATABASE BRANCH {b}",
        "-c", f"USE BRANCH {b}",
        "-c", f"INSERT INTO {t} VALUES (1), (2)",
        "-c", "SET application_name = 'cli-test'",
        "-c", f"SELECT current_setting('heliosdb.branch') AS current_branch_name, "
              f"current_setting('application_name') AS app, "
              f"(SELECT count(*) FROM {t}) AS n",
        "-c", "USE BRANCH main",
        "-c", f"SELECT count(*) AS main_rows FROM {t}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == (
        "CREATE TABLE\n"
        "CREATE DATABASE BRANCH\n"
        "USE BRANCH\n"
        "INSERT 0 2\n"
        "SET\n"
        " current_branch_name |   app    | n \n"
        "---------------------+----------+---\n"
        f" {b:<19} | cli-test | 2\n"
        "(1 row)\n"
        "\n"
        "USE BRANCH\n"
        " main_rows \n"
        "-----------\n"
        "         0\n"
        "(1 row)\n"
        "\n"
    )


def test_branch_option_and_a_new_session_starts_on_main(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    b = name("b")
    db.execute(f"CREATE DATABASE BRANCH {b}")
    r = helios("-b", b, "-A", "-t", "-c", "SELECT current_setting('heliosdb.branch')")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{b}\n", "")
    r = helios("-A", "-t", "-c", "SELECT current_setting('heliosdb.branch')")
    assert (r.returncode, r.stdout) == (0, "main\n")


def test_file_and_stdin_scripts_in_command_line_order(
    helios: Run, tmp_path: Path, name: Callable[[str], str]
) -> None:
    t = name("t")
    script = tmp_path / "script.sql"
    script.write_text(
        f"-- a comment line\n"
        f"CREATE TABLE {t} (id int, body text);\n"
        f"INSERT INTO {t} VALUES\n  (1, 'semi;colon'),\n  (2, $$dollar ' quote;$$);\n"
        f"/* block\n   comment; */\n"
        f"DO $body$\nBEGIN\n  INSERT INTO {t} VALUES (3, 'from do');\nEND\n$body$;\n"
        f"SELECT count(*) AS n FROM {t}"  # the last statement has no semicolon
    )
    r = helios(
        "-q",
        "-c",
        "SELECT 'first' AS step",
        "-f",
        str(script),
        "-f",
        "-",
        "-c",
        "SELECT 'last' AS step",
        stdin=f"SELECT body FROM {t} WHERE id = 2;\n",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        " step  \n-------\n first\n(1 row)\n\n"
        " n \n---\n 3\n(1 row)\n\n"
        "      body       \n-----------------\n dollar ' quote;\n(1 row)\n\n"
        " step \n------\n last\n(1 row)\n\n"
    )


def test_csv_output(helios: Run) -> None:
    r = helios(
        "--csv",
        "-c",
        "SELECT 1 AS id, 'a,b' AS \"x y\", NULL::text AS n, 'say \"hi\"' AS q "
        "UNION ALL SELECT 2, 'plain', 'v', ''",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'id,x y,n,q\n1,"a,b",,"say ""hi"""\n2,plain,v,\n'  # as psql: '' and NULL alike


def test_csv_tuples_only_has_no_header(helios: Run) -> None:
    r = helios("--csv", "-t", "-c", "SELECT 1 AS a, 2 AS b")
    assert (r.returncode, r.stdout) == (0, "1,2\n")


def test_tuples_only_has_no_header_or_footer(helios: Run) -> None:
    r = helios(
        "-t",
        "-c",
        "SELECT g AS n, 'row' || g AS l FROM generate_series(9, 10) g",
        "-c",
        "CREATE TEMP TABLE quiet_tag (a int)",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["  9 | row9", " 10 | row10"]
    assert " n " not in r.stdout and " l" not in r.stdout
    assert "row)" not in r.stdout and "rows)" not in r.stdout and "---" not in r.stdout


def test_unaligned_output(helios: Run) -> None:
    r = helios("-A", "-c", "SELECT 1 AS a, 'x' AS b, NULL AS c")
    assert (r.returncode, r.stdout) == (0, "a|b|c\n1|x|\n(1 row)\n")


# --- exit codes and errors -----------------------------------------------------------------------


def test_failing_c_exits_1_and_the_other_c_still_run(helios: Run) -> None:
    r = helios(
        "-c", "SELECT 'before' AS s", "-c", "SELECT * FROM no_such_table_cli", "-c", "SELECT 'after' AS s"
    )
    assert r.returncode == 1
    assert "before" in r.stdout and "after" in r.stdout
    assert r.stderr.startswith("ERROR:  ")
    assert r.stderr == 'ERROR:  42P01: relation "no_such_table_cli" does not exist\n'


def test_on_error_stop_stops_the_c_list(helios: Run) -> None:
    r = helios("-v", "ON_ERROR_STOP=1", "-c", "SELECT 1/0", "-c", "SELECT 'after' AS s")
    assert r.returncode == 1
    assert "after" not in r.stdout
    assert r.stderr == "ERROR:  22012: division by zero\n"


def test_c_string_is_one_implicit_transaction(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    t = name("t")
    r = helios(
        "-c", f"CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1); SELECT 1/0; SELECT 'after' AS s"
    )
    assert r.returncode == 1
    assert r.stderr == "ERROR:  22012: division by zero\n"
    assert "after" not in r.stdout
    with pytest.raises(heliosdb.ProgrammingError):
        db.execute(f"SELECT * FROM {t}")


def test_set_on_error_stop_inside_a_script(helios: Run) -> None:
    r = helios("-f", "-", stdin="\\set ON_ERROR_STOP on\nSELECT 1/0;\nSELECT 'after' AS s;\n")
    assert r.returncode == 3
    assert "after" not in r.stdout


def test_error_detail_and_hint_lines(helios: Run, name: Callable[[str], str]) -> None:
    t = name("t")
    r = helios(
        "-c",
        f"CREATE TABLE {t} (id int PRIMARY KEY)",
        "-c",
        f"INSERT INTO {t} VALUES (1)",
        "-c",
        f"INSERT INTO {t} VALUES (1)",
        "-c",
        "USE BRANCH no_such_branch_cli",
    )
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert err[0].startswith("ERROR:  23505: duplicate key value violates unique constraint")
    assert err[1] == "DETAIL:  Key (id)=(1) already exists."
    assert err[2] == 'ERROR:  HD001: branch "no_such_branch_cli" does not exist'
    assert err[3].startswith("HINT:  ")
    assert all(line.split(":")[0] in ("ERROR", "DETAIL", "HINT") for line in err)


def test_script_with_on_error_stop_exits_3_and_runs_nothing_after(
    helios: Run, db: heliosdb.Connection, tmp_path: Path, name: Callable[[str], str]
) -> None:
    t = name("t")
    script = tmp_path / "stop.sql"
    script.write_text(
        f"CREATE TABLE {t} (id int);\n"
        f"INSERT INTO {t} VALUES (1);\n"
        f"INSERT INTO {t} VALUES ('not a number');\n"
        f"INSERT INTO {t} VALUES (3);\n"
        f"SELECT 'unreachable' AS s;\n"
    )
    r = helios("-v", "ON_ERROR_STOP=1", "-f", str(script), "-c", "SELECT 'after script' AS s")
    assert r.returncode == 3
    assert r.stdout == "CREATE TABLE\nINSERT 0 1\n"
    assert r.stderr.startswith("ERROR:  22P02: invalid input syntax for type integer")
    assert db.execute(f"SELECT id FROM {t} ORDER BY id").fetchall() == [(1,)]


def test_script_without_on_error_stop_goes_on_and_exits_0(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    t = name("t")
    script = f"CREATE TABLE {t} (id int);\nINSERT INTO {t} VALUES ('x');\nINSERT INTO {t} VALUES (2);\n"
    r = helios("-f", "-", stdin=script)
    assert r.returncode == 0  # as psql: a script's errors alone do not fail it
    assert r.stderr.startswith("ERROR:  22P02: ")
    assert db.execute(f"SELECT id FROM {t}").fetchall() == [(2,)]


def test_cannot_connect_exits_2(helios: Run) -> None:
    r = helios("-c", "SELECT 1", db="no_such_database_cli")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("heliosdb: error: ")
    assert 'database "no_such_database_cli" does not exist' in r.stderr


def test_missing_script_file(helios: Run, tmp_path: Path) -> None:
    r = helios("-f", str(tmp_path / "absent.sql"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("heliosdb: error: ")
    assert "absent.sql" in r.stderr and "No such file or directory" in r.stderr


def test_temporary_table_can_be_dropped(helios: Run) -> None:
    r = helios(
        "-c",
        "CREATE TEMP TABLE tmp_cli (a int)",
        "-c",
        "INSERT INTO tmp_cli VALUES (1)",
        "-c",
        "DROP TABLE tmp_cli",
    )
    assert r.stderr == ""
    assert (r.returncode, r.stdout) == (0, "CREATE TABLE\nINSERT 0 1\nDROP TABLE\n")


# --- COPY ------------------------------------------------------------------------------------------------


def test_copy_from_stdin_in_a_script_and_copy_to_stdout(
    helios: Run, db: heliosdb.Connection, tmp_path: Path, name: Callable[[str], str]
) -> None:
    t = name("t")
    script = tmp_path / "copy.sql"
    script.write_text(
        f"CREATE TABLE {t} (id int, name text);\n"
        f"COPY {t} FROM STDIN;\n"
        "1\tone\n"
        "2\tSELECT 'not a statement';\n"
        "3\t\\N\n"
        "\\.\n"
        f"COPY {t} (id, name) FROM STDIN WITH (FORMAT csv);\n"
        '4,"four, with comma"\n'
        "\\.\n"
        f"SELECT count(*) AS n FROM {t};\n"
        f"COPY (SELECT id, name FROM {t} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);\n"
        f"COPY {t} TO STDOUT;\n"
    )
    r = helios("-f", str(script))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    rows = "1\tone\n2\tSELECT 'not a statement';\n3\t\\N\n4\tfour, with comma\n"
    assert r.stdout == (
        "CREATE TABLE\nCOPY 3\nCOPY 1\n"
        " n \n---\n 4\n(1 row)\n\n"
        "id,name\n1,one\n2,SELECT 'not a statement';\n3,\n4,\"four, with comma\"\n" + rows
    )
    assert db.execute(f"SELECT id, name FROM {t} ORDER BY id").fetchall() == [
        (1, "one"),
        (2, "SELECT 'not a statement';"),
        (3, None),
        (4, "four, with comma"),
    ]


def test_copy_from_stdin_through_stdin_script(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    t = name("t")
    db.execute(f"CREATE TABLE {t} (id int)")
    r = helios("-f", "-", stdin=f"COPY {t} FROM STDIN;\n10\n20\n\\.\nSELECT sum(id) AS s FROM {t};\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "COPY 2\n s  \n----\n 30\n(1 row)\n\n"


def test_copy_bad_data_is_an_error_and_loads_nothing(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    t = name("t")
    db.execute(f"CREATE TABLE {t} (id int)")
    r = helios("-f", "-", stdin=f"COPY {t} FROM STDIN;\n1\nnope\n\\.\nSELECT 'next' AS s;\n")
    assert r.stderr.startswith("ERROR:  22P02: ")
    assert "next" in r.stdout  # the script goes on after the data
    assert scalar(db, f"SELECT count(*) FROM {t}") == 0


# --- byte parity with psql ---------------------------------------------------------------------------------

SAME_QUERIES = [
    "SELECT 1 AS a, 'x' AS b",
    "SELECT * FROM (VALUES (1, 'a'), (22, NULL), (-3, 'longer text')) v(id, name)",
    "SELECT 1 AS one WHERE false",
    "SELECT NULL::int AS n, 3.50::numeric AS x, true AS b, false AS f, 1.5::float8 AS d, 0.1::float4 AS r, "
    "100000000000::bigint AS big, -1::smallint AS s",
    "SELECT '2020-01-02'::date AS d, '2020-01-02 03:04:05+00'::timestamptz AS ts, "
    "'2020-01-02 03:04:05'::timestamp AS t, '13:45:30'::time AS tm, interval '1 day 2 hours' AS iv",
    "SELECT '{\"a\": 1}'::jsonb AS j, 'é ü'::text AS u, '\\x0102'::bytea AS by, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS uu, '192.168.0.1/24'::inet AS ip, 'a'::char(3) AS c",
    'SELECT 1 AS "Mixed Case", 2 AS "x"',
    "CREATE TEMP TABLE parity (a int); INSERT INTO parity VALUES (1), (2); UPDATE parity SET a = a + 1; "
    "DELETE FROM parity WHERE a = 3; SELECT * FROM parity",
    "CREATE TEMP TABLE ret (a int); INSERT INTO ret VALUES (1), (2) RETURNING a; "
    "UPDATE ret SET a = a + 1 WHERE a = 2 RETURNING a; DELETE FROM ret RETURNING a",
]
SAME_FLAGS = {"aligned": [], "unaligned": ["-A"], "csv": ["--csv"], "qAt": ["-q", "-A", "-t"]}

# One query each, for the cases where printing values from Python objects or psql's layout rules are easy to miss.
SINGLE_CASES = {
    "arrays": ([], "SELECT '{1,2}'::int[] AS arr, ARRAY['a b', 'c'] AS txt, '{}'::text[] AS e"),
    "csv-arrays": (["--csv"], "SELECT '{1,2}'::int[] AS arr"),
    "records": ([], "SELECT ROW(1, 'a') AS r"),
    "intervals": ([], "SELECT interval '1 month' AS m, interval '-1 day -02:00' AS neg"),
    "float-nan-infinity": (
        [],
        "SELECT 'NaN'::float8 AS a, 'Infinity'::float8 AS b, '-Infinity'::float4 AS c",
    ),
    "fractional-seconds-and-timetz": (
        [],
        "SELECT '2020-01-02 03:04:05.12+00'::timestamptz AS ts, '12:00:00+02'::timetz AS tt",
    ),
    "multi-line-values": ([], "SELECT 'a' || chr(10) || 'bc' AS multi, 1 AS k"),
    "tuples-only-trailing-blank-line": (["-t"], "SELECT 1 AS a, 'x' AS b"),
    "tuples-only-column-widths": (["-t"], "SELECT NULL::int AS nnnn, 'x' AS yyyyyy"),
    "tuples-only-command-tags": (["-t"], "CREATE TEMP TABLE tags_cli (a int)"),
    "tuples-only-returning": (["-t"], "CREATE TEMP TABLE ret_t (a int); INSERT INTO ret_t VALUES (1) RETURNING a"),
    "infinite-dates": ([], "SELECT 'infinity'::date AS d, '-infinity'::timestamp AS t"),
    "tabs": ([], "SELECT E'a\\tb' AS t, 1 AS k"),
    "control-characters": ([], "SELECT E'a\\rb' AS cr, E'x\\x01y' AS ctl"),
    "wide-characters": ([], "SELECT 'ä€😀' AS wide, '日本' AS cjk"),
    "unaligned-control-characters": (["-A"], "SELECT E'a\\tb' AS t, E'x\\x01y' AS ctl, '日本' AS cjk"),
    "no-columns": ([], "SELECT"),
    "no-columns-rows": ([], "SELECT FROM generate_series(1, 2)"),
    "no-columns-tuples-only": (["-t"], "SELECT FROM generate_series(1, 2)"),
    "no-columns-unaligned": (["-A"], "SELECT FROM generate_series(1, 2)"),
    "no-columns-csv": (["--csv"], "SELECT FROM generate_series(1, 2)"),
}
# Byte differences from psql 15 (bugs), kept visible with a strict xfail.
KNOWN_DIFFERENCES: dict[str, str] = {}

Outputs = dict[str, tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]]


@pytest.fixture(scope="module")
def parity(helios_instance: Instance, helios_data_dir: Path, cli_db: str) -> Outputs:
    """Every parity case run by heliosdb and by psql, all at once (the commands are independent)."""
    exe = shutil.which("psql")
    if exe is None:
        pytest.skip("psql is not installed")
    cases: dict[str, list[str]] = {
        key: [*flags, *itertools.chain.from_iterable(("-c", q) for q in SAME_QUERIES)]
        for key, flags in SAME_FLAGS.items()
    }
    cases.update({key: [*flags, "-c", query] for key, (flags, query) in SINGLE_CASES.items()})
    helios_cmd = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", cli_db]
    psql_cmd = [
        exe,
        "-X",
        "-h",
        str(helios_instance.socket_dir),
        "-p",
        "5432",
        "-U",
        "postgres",
        "-d",
        cli_db,
    ]
    procs = {
        (key, who): subprocess.Popen(
            [*cmd, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for key, args in cases.items()
        for who, cmd in (("helios", helios_cmd), ("psql", psql_cmd))
    }
    done: dict[tuple[str, str], subprocess.CompletedProcess[str]] = {}
    for (key, who), proc in procs.items():
        out, err = proc.communicate(timeout=180)
        done[key, who] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return {key: (done[key, "helios"], done[key, "psql"]) for key in cases}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[key]))
        if key in KNOWN_DIFFERENCES
        else key
        for key in [*SAME_FLAGS, *SINGLE_CASES]
    ],
)
def test_output_matches_psql(parity: Outputs, key: str) -> None:
    mine, theirs = parity[key]
    assert theirs.returncode == 0, theirs.stderr
    assert (mine.returncode, mine.stdout, mine.stderr) == (0, theirs.stdout, theirs.stderr)


# --- variables and meta commands in -c and -f, as psql ---------------------------------------------------


def test_file_scripts_interpolate_variables_and_c_does_not(helios: Run, tmp_path: Path) -> None:
    script = tmp_path / "v.sql"
    script.write_text("\\set x 42\nselect :x as v, :'x' as lit;\n")
    r = helios("-f", str(script))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == " v  | lit \n----+-----\n 42 | 42\n(1 row)\n\n"
    r = helios("-v", "x=7", "-f", "-", stdin="select :x as v;\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, " v \n---\n 7\n(1 row)\n\n", "")
    r = helios("-v", "x=7", "-c", "select :x as v")  # psql sends -c SQL as written
    assert r.returncode == 1
    assert r.stderr.startswith('ERROR:  42601: syntax error at or near ":"')


def test_c_and_f_run_meta_commands(helios: Run, tmp_path: Path, name: Callable[[str], str]) -> None:
    t = name("t")
    r = helios("-c", f"CREATE TABLE {t} (id int)", "-c", "\\dt", "-c", "\\pset format unaligned",
               "-c", "select 1 as a, 2 as b")
    assert (r.returncode, r.stderr) == (0, "")
    assert f"\n {t} " in r.stdout
    assert r.stdout.endswith("Output format is unaligned.\na|b\n1|2\n(1 row)\n")
    script = tmp_path / "m.sql"
    script.write_text("\\pset format csv\nselect 1 as a;\n\\nosuch\nselect 2 as b;\n")
    r = helios("-f", str(script))
    assert r.returncode == 0
    assert r.stdout == "Output format is csv.\na\n1\nb\n2\n"
    assert r.stderr == "invalid command \\nosuch; try \\? for help\n"
    r = helios("-v", "ON_ERROR_STOP=1", "-f", str(script))
    assert (r.returncode, r.stdout) == (3, "Output format is csv.\na\n1\n")
    r = helios("-c", "\\nosuch")
    assert (r.returncode, r.stderr) == (1, "invalid command \\nosuch; try \\? for help\n")


def test_describe_shows_foreign_keys_both_ways(helios: Run, name: Callable[[str], str]) -> None:
    parent, child = name("parent"), name("child")
    r = helios("-c", f"CREATE TABLE {parent} (id int PRIMARY KEY)",
               "-c", f'CREATE TABLE {child} (id int, "Pid" int REFERENCES {parent}(id) ON DELETE CASCADE)')
    assert r.returncode == 0, r.stderr
    fk = f'FOREIGN KEY ("Pid") REFERENCES {parent}(id) ON DELETE CASCADE'  # as pg_get_constraintdef
    r = helios("-c", f"\\d {child}")
    assert f'\nForeign-key constraints:\n    "{child}_Pid_fkey" {fk}\nHeliosDB table' in r.stdout
    r = helios("-c", f"\\d {parent}")
    assert f'\nReferenced by:\n    TABLE "{child}" CONSTRAINT "{child}_Pid_fkey" {fk}\nHeliosDB table' in r.stdout


def test_a_listing_that_matches_nothing_is_not_a_failure(helios: Run) -> None:
    r = helios("-c", "\\dt no_such_tbl*")  # as psql: a note on standard error, exit status 0
    assert (r.returncode, r.stdout, r.stderr) == (0, "", 'Did not find any tables named "no_such_tbl*".\n')
    r = helios("-v", "ON_ERROR_STOP=1", "-f", "-", stdin="\\dm\n\\di nope*\nSELECT 1 AS reached;\n")
    assert (r.returncode, r.stdout) == (0, " reached \n---------\n       1\n(1 row)\n\n")
    assert r.stderr == "Did not find any materialized views.\nDid not find any indexes named \"nope*\".\n"
    r = helios("-c", "\\d no_such_tbl")  # describing a missing relation fails, as in psql
    assert (r.returncode, r.stderr) == (1, 'Did not find any relation named "no_such_tbl".\n')


def test_copy_from_stdin_in_c_reads_standard_input(
    helios: Run, db: heliosdb.Connection, name: Callable[[str], str]
) -> None:
    t = name("t")
    db.execute(f"CREATE TABLE {t} (a int, b text)")
    r = helios("-c", f"COPY {t} FROM STDIN", stdin="1\tx\n2\ty\n\\.\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "COPY 2\n", "")
    assert db.execute(f"SELECT a, b FROM {t} ORDER BY a").fetchall() == [(1, "x"), (2, "y")]


def test_expanded_and_null_display_apply_to_script_results(helios: Run) -> None:
    script = "\n".join([
        "\\x", "select 1 as a, 2 as bbbbbbbbbbbbbbbbbbbbbb;",
        "select 'x' as a, E'l1\\nline2' as b union all select 'yyyyyyyyy', null;",
        "select 1 as a where false;", "\\x off", "\\pset null (nil)", "select null as n;",
        "\\pset format unaligned", "\\x on", "select 1 as a, null as b union all select 100, 2000;", "",
    ])
    r = helios(stdin=script)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (  # psql 15's output for the same script
        "Expanded display is on.\n"
        "-[ RECORD 1 ]----------+--\na                      | 1\nbbbbbbbbbbbbbbbbbbbbbb | 2\n\n"
        "-[ RECORD 1 ]\na | x\nb | l1       +\n  | line2\n-[ RECORD 2 ]\na | yyyyyyyyy\nb | \n\n"
        "(0 rows)\n\n"
        "Expanded display is off.\nNull display is \"(nil)\".\n   n   \n-------\n (nil)\n(1 row)\n\n"
        "Output format is unaligned.\nExpanded display is on.\na|1\nb|(nil)\n\na|100\nb|2000\n"
    )


def test_csv_prints_the_null_string(helios: Run) -> None:
    r = helios(stdin="\\pset null (nil)\n\\pset format csv\nSELECT 1 AS a, NULL AS b;\n")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == 'Null display is "(nil)".\nOutput format is csv.\na,b\n1,(nil)\n'  # psql 15's output


def test_json_format_keeps_value_types(helios: Run) -> None:
    r = helios("-c", "\\pset format json",
               "-c", "SELECT 1 AS a, 2.50::numeric AS n, true AS b, NULL AS c, '{\"k\":1}'::jsonb AS j, "
                     "ARRAY[1,2] AS arr, 'x' AS t")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("Output format is json.\n")
    assert r.stdout.split("\n", 1)[1].replace(" ", "").replace("\n", "") == (
        '[{"a":1,"n":2.50,"b":true,"c":null,"j":{"k":1},"arr":[1,2],"t":"x"}]')


def test_json_format_is_valid_json_with_every_column(helios: Run) -> None:
    r = helios(stdin="\\pset format json\nSELECT 1 AS a, 2 AS a, 'NaN'::float8 AS f, '-Infinity'::float8 AS g;\n")
    assert (r.returncode, r.stderr) == (0, "")
    doc = r.stdout.split("\n", 1)[1]
    assert json.loads(doc, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) == [
        {"a": 1, "a_2": 2, "f": "NaN", "g": "-Infinity"}]


def test_variables_are_not_replaced_inside_dollar_quotes(helios: Run) -> None:
    r = helios("-A", "-t", stdin="\\set n 5\nSELECT $$ :n $$, :n, $f$ :n $$ :n $f$, :n;\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, " :n |5| :n $$ :n |5\n", "")


def test_variables_are_not_replaced_in_quoted_text_or_comments(helios: Run) -> None:
    script = ("\\set v 7\nSELECT E'it\\'s :v' AS s, ':v' AS t, 'a''b :v' AS u, 1 AS \"x:v\", /* :v */ :v AS w,"
              " $$ :v $$ AS d, e'\\\\' AS bs, :'v' AS q -- :v\n;\n")
    r = helios(stdin=script)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (  # psql 15's output for the same script
        "    s    | t  |   u    | x:v | w |  d   | bs | q \n"
        "---------+----+--------+-----+---+------+----+---\n"
        " it's :v | :v | a'b :v |   1 | 7 |  :v  | \\  | 7\n(1 row)\n\n")


def test_quit_in_piped_input_is_sql_not_the_end(helios: Run) -> None:
    r = helios("-A", "-t", stdin="select 1;\nquit\nselect 2;\nselect 3;\n")  # as psql: "quit select 2" fails
    assert (r.returncode, r.stdout) == (0, "1\n3\n")
    assert r.stderr.startswith('ERROR:  42601: syntax error at or near "quit"')


def test_meta_command_arguments_interpolate_and_pset_null_shows(helios: Run) -> None:
    r = helios("-v", "x=42", stdin="\\echo hello :x\n\\set y :x!\n\\echo :y\n\\pset null (nil)\n\\pset null\n")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == 'hello 42\n42!\nNull display is "(nil)".\nNull display is "(nil)".\n'


def test_meta_command_arguments_take_variable_values_as_they_are(helios: Run) -> None:
    script = ("\\set name 'O''Brien'\n\\echo :name\n\\echo :'name'\n\\echo :\"name\"\n\\set v 'a  b'\n"
              "\\echo :v\n\\set w :name!\n\\echo :w\n")
    r = helios(stdin=script)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "O'Brien\n'O''Brien'\n\"O'Brien\"\na  b\nO'Brien!\n"  # psql 15's output


@pytest.mark.parametrize("how", ["-c", "piped"])
def test_ctrl_c_cancels_the_running_statement_and_stops(
    helios_instance: Instance, helios_data_dir: Path, cli_db: str, how: str
) -> None:
    cmd = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", cli_db]
    tag = f"ctrl_c_test_{how.strip('-')}"
    if how == "-c":
        cmd += ["-c", f"select pg_sleep(30) as {tag}", "-c", "select 2"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if how == "piped" else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if how == "piped":  # as -f -: the same cancel, message and exit status
        assert p.stdin is not None
        p.stdin.write(f"select pg_sleep(30) as {tag};\nselect 2;\n")
        p.stdin.flush()
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while not admin.execute("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                                f"'%pg_sleep(30) as {tag}%' AND pid <> pg_backend_pid()").fetchone():
            assert time.monotonic() < deadline and p.poll() is None, "the statement never started"
            time.sleep(0.05)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert (p.returncode, out) == (1, "")  # as psql: the cancelled statement's error, nothing run after it
    assert err == "Cancel request sent\nERROR:  57014: canceling statement due to user request\n"


def test_a_storage_url_names_the_database(helios_instance: Instance, cli_db: str) -> None:
    """--storage postgresql://.../db opens db (not heliosdb) unless -d says otherwise; so does connect()."""
    info = helios_instance.conninfo(cli_db)
    url = f"postgresql://{info['user']}@/{cli_db}?host={info['host']}&port={info['port']}"
    out = subprocess.run([sys.executable, "-m", "heliosdb.cli", "--storage", url, "-At", "-c",
                          "SELECT current_database()"], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout.strip()) == (0, cli_db), out.stderr
    with heliosdb.connect(storage=url) as c:
        assert scalar(c, "SELECT current_database()") == cli_db
