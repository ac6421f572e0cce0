"""The real shell in a pseudo-terminal (pexpect): prompts, multi-line input, completion, Ctrl-C, Ctrl-D,
history, and that piped input and -c/-f keep their psql-compatible output and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import psycopg
import pytest

from heliosdb.session import Session
from heliosdb.storage.instance import Instance

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
Spawn = Callable[..., pexpect.spawn]


@pytest.fixture(scope="module")
def pty_db(helios_instance: Instance) -> Iterator[str]:
    name = f"shell_pty_{os.getpid()}"
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        s = Session(data_dir=helios_instance.data_dir, database=name)
        try:
            for _ in s.run("""CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int);
                              INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', NULL);
                              CREATE DATABASE BRANCH fix;"""):
                pass
        finally:
            s.close()
        yield name
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def spawn(helios_data_dir: Path, pty_db: str, tmp_path: Path) -> Iterator[Spawn]:
    children: list[pexpect.spawn] = []

    def start(*args: str, history: Path | None = None) -> pexpect.spawn:
        env = dict(os.environ, NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
                   HELIOSDB_HISTORY=str(history or tmp_path / "history"))
        child = pexpect.spawn(sys.executable, ["-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", pty_db, *args],
                              env=env, encoding="utf-8", timeout=30, dimensions=(50, 160))
        child.logfile_read = open(tmp_path / f"pty-{len(children)}.log", "w")  # noqa: SIM115 - read on failure
        children.append(child)
        return child

    yield start
    for c in children:
        if c.isalive():
            c.terminate(force=True)


def prompt(db: str, inner: str = "main", mark: str = "=") -> str:
    return re.escape(f"{db}[{inner}]") + re.escape(mark) + ">"


def screen(child: pexpect.spawn) -> str:
    return ANSI.sub("", child.before or "")


def test_prompt_states_and_multi_line_input(spawn: Spawn, pty_db: str) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    c.send("SELECT 1 +\r")
    c.expect(prompt(pty_db, mark="-"))  # continuation line
    c.send("41 AS answer;\r")
    c.expect("│     42 │")
    c.expect(prompt(pty_db))
    c.send("BEGIN;\r")
    c.expect(prompt(pty_db, mark="*="))
    c.send("SELECT 1/0;\r")
    c.expect("ERROR:  22012: division by zero")
    c.expect(prompt(pty_db, mark="!="))
    c.send("ROLLBACK;\r")
    c.expect(prompt(pty_db))
    c.send("SET AS OF LSN 0/1;\r")
    c.expect(prompt(pty_db, "main@LSN:0/1"))
    c.send("SET AS OF NOW;\r")
    c.expect(prompt(pty_db))
    c.send("\\use fix\r")
    c.expect('You are now on branch "fix"')
    c.expect(prompt(pty_db, "fix"))
    c.send("SELECT $$a;\r")
    c.expect(prompt(pty_db, "fix", "-"))  # a ; inside dollar quotes does not end the statement
    c.send("b$$ AS s, 'x;\r")
    c.expect(prompt(pty_db, "fix", "-"))  # nor inside a string
    c.send("y' AS t;\r")
    c.expect("│ a; │ x; │")
    c.expect(prompt(pty_db, "fix"))
    c.send("\\q\r")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_a_long_line_wraps_without_continuation_prompts(spawn: Spawn, pty_db: str) -> None:
    c = spawn()  # 160 columns: the line below takes three screen rows
    c.expect(prompt(pty_db))
    c.send("SELECT length('" + "wrap " * 80 + "') AS n;\r")
    c.expect(r"│ 400 │")
    assert not re.search(prompt(pty_db, mark="-"), screen(c))  # only a real newline gets the -> prompt
    c.send("SELECT 1 +\r")
    c.expect(prompt(pty_db, mark="-"))
    c.send("1 AS two;\r")
    c.expect(r"│   2 │")
    c.send("\\q\r")
    c.expect(pexpect.EOF)


def test_results_meta_commands_and_errors(spawn: Spawn, pty_db: str) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    c.send("SELECT * FROM accounts ORDER BY id;\r")
    c.expect(r"│  2 │ bob   │  <null> │")
    c.expect(r"\(2 rows\)")
    c.send("\\dt\r")
    c.expect('List of tables on branch "main"')
    c.expect(r"│ accounts │ table │ main")
    c.send("\\branch tree\r")
    c.expect(r"└── fix  \(fork 0/")
    c.send("\\nope\r")
    c.expect(r"invalid command \\nope; try \\\? for help")
    c.send("SELECT nope FROM accounts;\r")
    c.expect('ERROR:  42703: column "nope" does not exist')
    c.expect(r"LINE 1: SELECT nope FROM accounts")
    c.expect(r"\n {15}\^")
    c.send("\\timing on\r")
    c.expect("Timing is on.")
    c.send("SELECT 1;\r")
    c.expect(r"Time: \d+\.\d{3} ms")
    c.send("\\q\r")
    c.expect(pexpect.EOF)


def test_ctrl_c_cancels_the_running_statement_and_keeps_the_shell(spawn: Spawn, pty_db: str) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    c.send("SELECT pg_sleep(30);\r")
    c.expect(r"running \d+\.\d s \(Ctrl-C cancels\)")  # a long statement shows its progress
    started = time.monotonic()
    c.sendintr()
    c.expect("ERROR:  57014: canceling statement due to user request", timeout=10)
    assert time.monotonic() - started < 5
    c.expect(prompt(pty_db))
    c.send("SELECT 6 * 7 AS x;\r")
    c.expect("│ 42 │")
    c.send("SELECT 1 +\r")  # Ctrl-C at the prompt clears the buffer
    c.expect(prompt(pty_db, mark="-"))
    c.sendintr()
    c.expect(prompt(pty_db))
    c.send("\\q\r")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_ctrl_d_exits_and_warns_inside_a_transaction(spawn: Spawn, pty_db: str) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    c.send("BEGIN;\r")
    c.expect(prompt(pty_db, mark="*="))
    c.sendcontrol("d")
    c.expect("WARNING:  a transaction is open; quitting rolls it back")
    c.expect(prompt(pty_db, mark="*="))
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_completion_in_the_terminal(spawn: Spawn, pty_db: str, tmp_path: Path) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    time.sleep(1.5)  # the catalog loads in the background
    c.send("SELECT owner FROM acc")
    time.sleep(0.5)
    c.send("\t")  # -> accounts
    time.sleep(0.5)
    c.send(" WHERE bal")
    time.sleep(0.5)
    c.send("\t")  # -> balance (a column of the statement's table)
    time.sleep(0.5)
    c.send(" = 100;\r")
    c.expect(r"│ ann   │")  # the query ran, so both names were completed
    c.expect(prompt(pty_db))
    c.send("\\use fi")
    time.sleep(0.5)
    c.send("\t")  # -> fix
    time.sleep(0.5)
    c.send("\r")  # closes the completion menu if one is open
    time.sleep(0.3)
    c.send("\r")
    c.expect('You are now on branch "fix"')
    c.send("\\q\r")
    c.expect(pexpect.EOF)
    history = (tmp_path / "history").read_text()
    assert "SELECT owner FROM accounts WHERE balance = 100;" in history


def test_piped_input_prints_what_psql_prints(helios_data_dir: Path, pty_db: str) -> None:
    base = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", pty_db]
    script = "SELECT id, owner FROM accounts ORDER BY id;\n\\echo done\nSELECT 1/0;\nSELECT 2 AS two;\n"
    piped = subprocess.run(base, input=script, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    assert piped.stdout == (" id | owner \n----+-------\n  1 | ann\n  2 | bob\n(2 rows)\n\n"
                            "done\n two \n-----\n   2\n(1 row)\n\n")
    assert piped.stderr == "ERROR:  22012: division by zero\n"
    sql_only = "SELECT id, owner FROM accounts ORDER BY id;\nSELECT 2 AS two;\n"
    via_f = subprocess.run([*base, "-f", "-"], input=sql_only, capture_output=True, text=True, timeout=60)
    via_pipe = subprocess.run(base, input=sql_only, capture_output=True, text=True, timeout=60)
    assert via_pipe.stdout == via_f.stdout
    stopped = subprocess.run([*base, "-v", "ON_ERROR_STOP=1"], input="SELECT 1/0;\nSELECT 1;\n",
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 3 and stopped.stdout == ""


def test_exit_codes_of_c_and_f_are_unchanged(helios_data_dir: Path, pty_db: str, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", pty_db]
    assert subprocess.run([*base, "-c", "SELECT 1"], capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*base, "-c", "SELECT 1/0"], capture_output=True, timeout=60).returncode == 1
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1/0;\nSELECT 1;\n")
    assert subprocess.run([*base, "-f", str(script)], capture_output=True, timeout=60).returncode == 0
    done = subprocess.run([*base, "-v", "ON_ERROR_STOP=1", "-f", str(script)], capture_output=True, timeout=60)
    assert done.returncode == 3


def test_a_lost_connection_is_reset_on_the_same_branch(spawn: Spawn, pty_db: str) -> None:
    c = spawn()
    c.expect(prompt(pty_db))
    c.send("\\use fix\r")
    c.expect(prompt(pty_db, "fix"))
    c.send("SET AS OF LSN 0/1;\r")
    c.expect(prompt(pty_db, "fix@LSN:0/1"))
    c.send("SELECT pg_terminate_backend(pg_backend_pid());\r")
    c.expect("server closed the connection unexpectedly")
    c.expect("The connection to the server was lost. Attempting reset: Succeeded.")
    c.expect(r"The temporal context \(AS OF LSN 0/1\) is gone")
    c.expect(prompt(pty_db, "fix"))  # no open transaction, no AS OF
    c.send("SELECT 6 * 7 AS x;\r")
    c.expect("│ 42 │")
    c.send("\\dt\r")
    c.expect(r"List of tables on branch \"fix\"")
    c.send("BEGIN;\r")
    c.expect(prompt(pty_db, "fix", "*="))
    c.send("SELECT pg_terminate_backend(pg_backend_pid());\r")
    c.expect("Attempting reset: Succeeded.")
    c.expect(prompt(pty_db, "fix"))
    c.send("\\q\r")  # the transaction went with the connection: no warning, \q quits
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_a_lost_connection_stops_piped_input_and_scripts(helios_data_dir: Path, pty_db: str) -> None:
    base = [sys.executable, "-m", "heliosdb.cli", "-D", str(helios_data_dir), "-d", pty_db]
    script = "SELECT pg_terminate_backend(pg_backend_pid());\nSELECT 1 AS after;\n"
    for args in ([], ["-f", "-"], ["-c", "SELECT pg_terminate_backend(pg_backend_pid())", "-c", "SELECT 1 AS after"]):
        done = subprocess.run([*base, *args], input=script, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, args
        assert done.stdout == ""
        assert done.stderr.endswith("connection to server was lost\n")


def test_an_unusable_history_file_falls_back_to_memory(spawn: Spawn, pty_db: str, tmp_path: Path) -> None:
    c = spawn(history=tmp_path)  # a directory
    c.expect(f"heliosdb: warning: cannot use history file {re.escape(str(tmp_path))}: Is a directory")
    c.expect(prompt(pty_db))
    c.send("SELECT 6 * 7 AS x;\r")
    c.expect("│ 42 │")
    c.expect(prompt(pty_db))
    c.send("\x1b[A")  # Up: the statement is in the in-memory history
    c.expect("SELECT 6 \\* 7 AS x;")
    c.send("\r")
    c.expect("│ 42 │")
    c.expect(prompt(pty_db))
    c.send("\\q\r")
    c.expect(pexpect.EOF)
    log = (tmp_path / "pty-0.log").read_text()
    assert "Traceback" not in log and "Unhandled exception" not in log
    assert log.count("cannot use history file") == 1


def test_ctrl_c_stops_an_included_script(spawn: Spawn, pty_db: str, tmp_path: Path) -> None:
    script, quick = tmp_path / "slow.sql", tmp_path / "quick.sql"
    script.write_text("SELECT pg_sleep(30);\nSELECT 'after cancel' AS x;\nSELECT pg_sleep(30);\n")
    quick.write_text("SELECT 'quick' AS y;\n")
    c = spawn()
    c.expect(prompt(pty_db))
    c.send(f"\\i {script}\r")
    c.expect(r"running \d+\.\d s \(Ctrl-C cancels\)")
    started = time.monotonic()
    c.sendintr()
    c.expect("ERROR:  57014: canceling statement due to user request", timeout=10)
    c.expect(prompt(pty_db))
    assert time.monotonic() - started < 5  # as psql: the rest of the script does not run
    assert "after cancel" not in screen(c)
    c.send(f"\\i {quick}\r")  # the next script runs whole
    c.expect("│ quick │")
    c.expect(prompt(pty_db))
    c.send("\\q\r")
    c.expect(pexpect.EOF)
    log = (tmp_path / "pty-0.log").read_text()
    assert "after cancel" not in log
