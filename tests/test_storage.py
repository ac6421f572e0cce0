"""The managed PostgreSQL instance of a data directory: first use, lifetime, sharing, stale state.

These tests use a data directory of their own (not the session's instance):
one initdb for the module, then every command starts and stops PostgreSQL on
it. They only look at what a user can see: command exit codes and output,
files, and processes.

The directory is made with tempfile.mkdtemp (mode 0700, like pytest's
/tmp/pytest-of-<user>) rather than under tmp_path: every pytest session that
starts resets /tmp/pytest-of-<user> to 0700, which takes back the o+x the
instance manager grants on the parents of the data directory, so a concurrent
pytest run would make PostgreSQL fail to start ("could not access directory
... Permission denied") at random.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

HELIOSDB = [sys.executable, "-m", "heliosdb.cli"]


def heliosdb(
    data_dir: Path | None,
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    cmd = [*HELIOSDB, *(["-D", str(data_dir)] if data_dir else []), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


def postgres_processes(data_dir: Path, pids: Iterable[int] = ()) -> list[str]:
    """Live processes that belong to the instance: any whose command line names the data directory, and `pids`."""
    wanted = set(pids)
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(p.info["cmdline"] or [])
            if p.info["pid"] in wanted or str(data_dir) in cmdline:
                found.append(f"{p.info['pid']}: {cmdline}")
        except psutil.Error:
            continue
    return found


def wait_gone(data_dir: Path, pids: Iterable[int] = (), timeout: float = 10.0) -> float:
    """Seconds until no instance process is left (fails after `timeout`)."""
    pids = list(pids)
    start = time.monotonic()
    while postgres_processes(data_dir, pids):
        if time.monotonic() - start > timeout:
            pytest.fail(f"processes left behind after {timeout}s: {postgres_processes(data_dir, pids)}")
        time.sleep(0.05)
    return time.monotonic() - start


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


@dataclass
class Fresh:
    data_dir: Path
    had_cluster_before: bool
    first: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def fresh() -> Iterator[Fresh]:
    """A data directory under a private (0700, root's) parent, brought to life by one `heliosdb -c` command."""
    base = Path(tempfile.mkdtemp(prefix="helios-storage-"))
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    data_dir = base / "data"
    before = (data_dir / "pgdata" / "PG_VERSION").exists()
    first = heliosdb(
        data_dir,
        "-A",
        "-t",
        "-c",
        "SELECT current_database(), current_user, current_setting('data_directory')",
    )
    yield Fresh(data_dir, before, first)
    wait_gone(data_dir, timeout=30)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def data_dir(fresh: Fresh) -> Path:
    """The module's data directory, with no instance running when the test starts."""
    assert fresh.first.returncode == 0, fresh.first.stderr
    wait_gone(fresh.data_dir)
    return fresh.data_dir


@pytest.fixture
def holders() -> Iterable[list[subprocess.Popen[str]]]:
    """Processes a test started to hold the instance; killed at the end if still there."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def start_holder(data_dir: Path, holders: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """A process that acquires the instance, says 'ready' and sleeps."""
    code = (
        "import sys, time\n"
        "from heliosdb.storage.instance import Instance\n"
        "Instance(sys.argv[1]).acquire()\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    holders.append(p)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line == "ready\n", p.stderr.read() if p.stderr else ""
    return p


# --- first use ------------------------------------------------------------------------------------------


def test_first_use_runs_initdb_and_creates_database_heliosdb(fresh: Fresh) -> None:
    assert not fresh.had_cluster_before
    assert fresh.first.returncode == 0, fresh.first.stderr
    assert fresh.first.stdout == f"heliosdb|postgres|{fresh.data_dir / 'pgdata'}\n"
    assert (fresh.data_dir / "pgdata" / "PG_VERSION").is_file()
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: the cluster belongs to the service user ...
        assert psutil.Process().username() == "root"
        assert (fresh.data_dir / "pgdata").owner() != "root"
        # ... who was let through the private (0700) parent directory.
        assert fresh.data_dir.parent.stat().st_mode & stat.S_IXOTH
        for parent in fresh.data_dir.parents:
            assert parent.stat().st_mode & stat.S_IXOTH or parent.owner() != "root", parent


def test_data_survives_restarts_and_initdb_runs_once(data_dir: Path) -> None:
    version = (data_dir / "pgdata" / "PG_VERSION").stat()
    r = heliosdb(
        data_dir, "-c", "CREATE TABLE survives (v text)", "-c", "INSERT INTO survives VALUES ('kept')"
    )
    assert r.returncode == 0, r.stderr
    wait_gone(data_dir)
    r = heliosdb(
        data_dir,
        "-A",
        "-t",
        "-c",
        "SELECT v FROM survives",
        "-c",
        "SELECT count(*) FROM pg_database WHERE datname = 'heliosdb'",
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "kept\n1\n", "")
    assert (data_dir / "pgdata" / "PG_VERSION").stat().st_mtime_ns == version.st_mtime_ns


def test_data_dir_from_environment(data_dir: Path) -> None:
    env = dict(os.environ, HELIOSDB_DATA=str(data_dir))
    r = heliosdb(None, "-A", "-t", "-c", "SELECT current_setting('data_directory')", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{data_dir / 'pgdata'}\n", "")


# --- lifetime -------------------------------------------------------------------------------------------------


def test_command_leaves_no_postgres_process_behind(data_dir: Path) -> None:
    r = heliosdb(
        data_dir, "-A", "-t",
        "-c", "SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)",
        "-c", "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    postmaster, backends = r.stdout.splitlines()
    pids = [int(postmaster), *map(int, backends.split())]
    assert len(pids) >= 4  # postmaster, our backend, checkpointer, walwriter, ...
    # Right after the command exits: no postgres process is left (the keeper may take a moment to exit).
    assert not [p for p in postgres_processes(data_dir, pids) if "heliosdb.storage.keeper" not in p]
    wait_gone(data_dir, pids, timeout=5)
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_concurrent_commands_share_one_instance(data_dir: Path) -> None:
    r = heliosdb(data_dir, "-c", "CREATE TABLE conc (who text, i int, server_started timestamptz)")
    assert r.returncode == 0, r.stderr
    wait_gone(data_dir)

    def script(me: str, other: str, n: int, pause: float) -> str:
        row = f"INSERT INTO conc VALUES ('{me}', %d, pg_postmaster_start_time());\n"
        # Insert one row, wait until the other command has inserted one too (so the two surely overlap), go on.
        return (
            row % 0 + "DO $$ BEGIN FOR k IN 1..1200 LOOP "
            f"IF EXISTS (SELECT 1 FROM conc WHERE who = '{other}') THEN RETURN; END IF; PERFORM pg_sleep(0.05); "
            f"END LOOP; RAISE EXCEPTION 'command {other} never ran while {me} did'; END $$;\n"
            + "".join(row % i + f"SELECT pg_sleep({pause});\n" for i in range(1, n))
        )

    cmd = [*HELIOSDB, "-D", str(data_dir), "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    procs = {}
    # B keeps working well after A has exited: A's exit must not stop the server under B.
    for me, other, pause in (("A", "B", 0), ("B", "A", 0.03)):
        p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert p.stdin is not None
        p.stdin.write(script(me, other, 30, pause))  # small: fits the pipe
        p.stdin.close()
        procs[me] = p
    for p in procs.values():
        p.wait(timeout=180)
    for me, p in procs.items():
        assert p.stderr is not None
        assert (me, p.returncode, p.stderr.read()) == (me, 0, "")
    wait_gone(data_dir)

    r = heliosdb(
        data_dir,
        "-A",
        "-t",
        "-c",
        "SELECT count(*), count(DISTINCT who), count(DISTINCT server_started), "
        "count(DISTINCT (who, i)) FROM conc",
    )
    assert (r.returncode, r.stdout) == (0, "60|2|1|60\n"), r.stderr  # one server served both commands


def test_killed_user_lets_the_keeper_stop_postgres(
    data_dir: Path, holders: list[subprocess.Popen[str]]
) -> None:
    holder = start_holder(data_dir, holders)
    pm = postmaster_pid(data_dir)
    keeper = int((data_dir / "keeper.pid").read_text())
    children = [c.pid for c in psutil.Process(pm).children()]
    assert psutil.pid_exists(pm) and psutil.pid_exists(keeper)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    took = wait_gone(data_dir, [pm, keeper, *children], timeout=10)
    assert took < 5, f"postgres outlived its last user by {took:.1f}s"
    r = heliosdb(data_dir, "-A", "-t", "-c", "SELECT 'back'")
    assert (r.returncode, r.stdout, r.stderr) == (0, "back\n", "")
    wait_gone(data_dir)


def test_stale_postmaster_pid_file_is_recovered(data_dir: Path, holders: list[subprocess.Popen[str]]) -> None:
    holder = start_holder(data_dir, holders)
    pm = postmaster_pid(data_dir)
    keeper = int((data_dir / "keeper.pid").read_text())
    children = [c.pid for c in psutil.Process(pm).children()]
    for pid in (keeper, pm, holder.pid):  # a crash: nobody shuts anything down
        os.kill(pid, signal.SIGKILL)
    holder.wait(timeout=10)
    wait_gone(data_dir, [pm, keeper, *children], timeout=10)  # the backends notice their postmaster died
    assert (data_dir / "pgdata" / "postmaster.pid").exists()
    assert postmaster_pid(data_dir) == pm

    r = heliosdb(data_dir, "-A", "-t", "-c", "SELECT count(*) FROM pg_database WHERE datname = 'heliosdb'")
    assert (r.returncode, r.stdout, r.stderr) == (0, "1\n", "")
    wait_gone(data_dir)


def test_orphaned_postmaster_is_stopped_and_replaced(
    data_dir: Path, holders: list[subprocess.Popen[str]]
) -> None:
    holder = start_holder(data_dir, holders)
    pm = postmaster_pid(data_dir)
    keeper = int((data_dir / "keeper.pid").read_text())
    os.kill(keeper, signal.SIGKILL)  # the keeper dies; its postmaster keeps running
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    time.sleep(0.5)
    assert psutil.pid_exists(pm)

    r = heliosdb(data_dir, "-A", "-t", "-c", "SELECT 'recovered'")
    assert (r.returncode, r.stdout, r.stderr) == (0, "recovered\n", "")
    wait_gone(data_dir, [pm])


def test_stale_pid_file_naming_an_unrelated_process_does_not_kill_it(data_dir: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = data_dir / "pgdata" / "postmaster.pid"
        # What a crash leaves behind, after the pid was reused by an unrelated process (e.g. after a reboot).
        pidfile.write_text(
            f"{bystander.pid}\n{data_dir / 'pgdata'}\n1700000000\n5432\n{data_dir / 'run'}\n\n"
            "  5432001    131072\nready   \n"
        )
        r = heliosdb(data_dir, "-A", "-t", "-c", "SELECT 1")
        time.sleep(0.2)
        assert bystander.poll() is None, f"the unrelated process got killed (exit {bystander.returncode})"
        assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr  # the stale file names no postmaster: start
    finally:
        if bystander.poll() is None:
            bystander.kill()
        bystander.wait()
        wait_gone(data_dir)


def test_managed_instance_sizes_shared_buffers_to_the_machine(admin) -> None:
    from heliosdb.storage.instance import shared_buffers_mb

    pages = admin.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]
    assert pages * 8192 == shared_buffers_mb(psutil.virtual_memory().total) << 20
    assert shared_buffers_mb(1 << 30) == 256 and shared_buffers_mb(64 << 30) == 4096  # the bounds
