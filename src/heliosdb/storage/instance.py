"""The managed local PostgreSQL instance of a HeliosDB data directory.

Layout of DATA_DIR:
    pgdata/         the PostgreSQL cluster (owned by the service user)
    run/            its Unix socket (no TCP port), unless the path is too long
    leases/         one locked file per process using the instance
    instance.lock   serializes start, stop and lease changes
    keeper.lock     held by the keeper process while it owns the postmaster
    postgres.log    the server log

Lifetime: the first process that needs the instance starts a small keeper
process, which runs the postmaster as its child. Every user holds a lease (a
file it keeps flock'ed). When no live lease remains (the last user exited or
was killed: the kernel drops its locks), the keeper stops PostgreSQL and exits.
So concurrent commands share one instance and no postgres process outlives
the processes that used it.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from heliosdb.errors import OperationalError
from heliosdb.storage.binaries import binary

PORT = 5432
DEFAULT_DATABASE = "heliosdb"
SUPERUSER = "postgres"
_SOCKET_NAME_LEN = len(f"/.s.PGSQL.{PORT}")
_MAX_SOCKET_PATH = 100

SERVER_SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "300",
    "max_prepared_transactions": "64",
    "log_min_messages": "warning",
    "log_statement": "none",
}


def shared_buffers_mb(total_bytes: int) -> int:
    """A quarter of the machine's memory, between 256 MB and 4 GB (PostgreSQL's own sizing advice).

    With 256 MB a table over 64 MB is scanned through a small ring buffer, copying every page
    from the OS cache on each scan: measured 4%-5% slower scans of 1,000,000 rows
    (docs/benchmarks.md, "Measured in session 7").
    """
    return max(256, min(4096, total_bytes // 4 // (1 << 20)))


def server_settings() -> dict[str, str]:
    import psutil

    return {**SERVER_SETTINGS, "shared_buffers": f"{shared_buffers_mb(psutil.virtual_memory().total)}MB"}


def default_data_dir() -> Path:
    env = os.environ.get("HELIOSDB_DATA")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/heliosdb")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "heliosdb"


def _service_user() -> pwd.struct_passwd | None:
    """None when we are not root; else the unprivileged user PostgreSQL runs as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "heliosdb"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "heliosdb"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("heliosdb")


def _grant_traverse(path: Path, uid: int) -> None:
    """Let the service user reach `path`: PostgreSQL must open its data directory."""
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        os.chmod(parent, st.st_mode | stat.S_IXOTH)


class _Flock:
    def __init__(self, path: Path, exclusive: bool = True, blocking: bool = True) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(self.fd, flags)
        except BlockingIOError:
            os.close(self.fd)
            raise

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> _Flock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """True when some process holds a flock on `path`."""
    try:
        lock = _Flock(path, blocking=False)
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False
    lock.release()
    return False


class Instance:
    """A HeliosDB data directory and the PostgreSQL server that serves it."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.data_dir = self.data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.leases = self.data_dir / "leases"
        self.lock_path = self.data_dir / "instance.lock"
        self.keeper_lock = self.data_dir / "keeper.lock"
        self.log_path = self.data_dir / "postgres.log"
        self.socket_dir = self._socket_dir()
        self._lease: _Flock | None = None
        self._lease_path: Path | None = None

    def _socket_dir(self) -> Path:
        local = self.data_dir / "run"
        if len(str(local)) + _SOCKET_NAME_LEN <= _MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"heliosdb-{digest}"

    # -- public -------------------------------------------------------------
    def conninfo(self, database: str = DEFAULT_DATABASE) -> dict[str, object]:
        return {"host": str(self.socket_dir), "port": PORT, "user": SUPERUSER, "dbname": database}

    def acquire(self) -> None:
        """Make sure the server runs and hold a lease on it until release()."""
        if self._lease is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.leases.mkdir(exist_ok=True)
        with _Flock(self.lock_path):
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if not is_locked(self.keeper_lock):
                self._recover_stale()
                try:
                    self._start_keeper()
                except OperationalError:
                    # after a crash, old backends can hold the shared memory for a moment: try once more
                    time.sleep(1.5)
                    self._recover_stale()
                    self._start_keeper()
            fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", dir=self.leases)
            os.close(fd)
            self._lease_path = Path(name)
            self._lease = _Flock(self._lease_path)
        atexit.register(self.release)

    def release(self) -> None:
        """Drop our lease; when it was the last one, wait until PostgreSQL stopped."""
        if self._lease is None:
            return
        lease, self._lease = self._lease, None
        with _Flock(self.lock_path):
            lease.release()
            if self._lease_path:
                self._lease_path.unlink(missing_ok=True)
            last = not any(is_locked(p) for p in self.leases.iterdir())
            keeper_pid = self._keeper_pid()
        if last and keeper_pid:
            try:
                os.kill(keeper_pid, signal.SIGUSR1)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and is_locked(self.keeper_lock):
                time.sleep(0.02)

    def running(self) -> bool:
        return is_locked(self.keeper_lock)

    # -- internals ----------------------------------------------------------
    def _keeper_pid(self) -> int | None:
        try:
            return int((self.data_dir / "keeper.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _run_as_service(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        user = _service_user()
        extra: dict[str, object] = {}
        if user is not None:
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        return subprocess.run(args, capture_output=True, text=True, cwd="/", **extra, **kw)  # type: ignore[call-overload]

    def _prepare_dirs(self) -> None:
        user = _service_user()
        for d in (self.pgdata, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            if user is not None:
                os.chown(d, user.pw_uid, user.pw_gid)
        if user is not None:
            _grant_traverse(self.pgdata, user.pw_uid)
            _grant_traverse(self.socket_dir, user.pw_uid)
            if self.log_path.exists():
                os.chown(self.log_path, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        self._prepare_dirs()
        out = self._run_as_service(
            [binary("initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            timeout=300,
        )
        if out.returncode != 0:
            raise OperationalError(
                "initdb failed: " + (out.stderr.strip().splitlines() or ["unknown error"])[-1],
                detail=out.stderr[-2000:],
                sqlstate="58000",
            )
        conf = self.pgdata / "postgresql.auto.conf"
        with open(conf, "a") as fh:
            for key, value in server_settings().items():
                fh.write(f"{key} = {value}\n")
        # A fresh cluster gets the default HeliosDB database on first start.
        (self.data_dir / "needs-default-db").touch()

    def _recover_stale(self) -> None:
        """No keeper holds the instance: clear what a killed one left behind."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and _alive(pid) and _is_postmaster_of(pid, self.pgdata):
            # An orphaned postmaster (its keeper was killed): stop it cleanly.
            out = self._run_as_service(
                [binary("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60"], timeout=90
            )
            if out.returncode != 0 and _alive(pid):
                os.kill(pid, signal.SIGQUIT)
                time.sleep(0.5)
        pidfile.unlink(missing_ok=True)

    def _start_keeper(self) -> None:
        self._prepare_dirs()
        ready = self.data_dir / "keeper.ready"
        ready.unlink(missing_ok=True)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(
            [sys.executable, "-m", "heliosdb.storage.keeper", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ready.exists():
                break
            if proc.poll() is not None:
                raise OperationalError(
                    "the managed PostgreSQL server did not start",
                    detail=_tail(self.log_path),
                    hint=f"See {self.log_path}.",
                    sqlstate="58000",
                )
            time.sleep(0.01)
        else:
            raise OperationalError("timed out starting the managed PostgreSQL server", sqlstate="58000")
        if (self.data_dir / "needs-default-db").exists():
            self._create_default_database()
            (self.data_dir / "needs-default-db").unlink()

    def _create_default_database(self) -> None:
        import psycopg

        with psycopg.connect(**self.conninfo("postgres"), autocommit=True) as conn:  # type: ignore[arg-type]
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DEFAULT_DATABASE}"')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is a postgres server of this data directory (pids get reused after a crash)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - gone, or not ours to inspect: not our postmaster
        return False
    return bool(cmd) and os.path.basename(cmd[0]).startswith("postgres") and str(pgdata) in " ".join(cmd)


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
