"""The keeper: owns the postmaster of one data directory while anyone holds a lease.

Run as ``python -m heliosdb.storage.keeper DATA_DIR`` by Instance.acquire().
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from heliosdb.storage.binaries import binary
from heliosdb.storage.instance import PORT, SUPERUSER, Instance, _Flock, _service_user, is_locked

_CHECK_EVERY = 0.5


def _wait_ready(inst: Instance, proc: subprocess.Popen[bytes]) -> bool:
    import psycopg

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if (inst.socket_dir / f".s.PGSQL.{PORT}").exists():
            try:
                psycopg.connect(**inst.conninfo("postgres"), connect_timeout=2).close()  # type: ignore[arg-type]
                return True
            except psycopg.OperationalError:
                pass
        time.sleep(0.01)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            proc.wait()


def main(data_dir: str) -> int:
    inst = Instance(data_dir)
    try:
        keeper = _Flock(inst.keeper_lock, blocking=False)
    except BlockingIOError:
        return 0  # another keeper already serves this directory
    (inst.data_dir / "keeper.pid").write_text(str(os.getpid()))
    user = _service_user()
    extra: dict[str, object] = {}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    log = open(inst.log_path, "ab")
    if user is not None:
        os.chown(inst.log_path, user.pw_uid, user.pw_gid)
    proc = subprocess.Popen(
        [binary("postgres"), "-D", str(inst.pgdata), "-k", str(inst.socket_dir), "-p", str(PORT)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd="/",
        **extra,  # type: ignore[arg-type]
    )
    if not _wait_ready(inst, proc):
        _stop(proc)
        return 1
    (inst.data_dir / "keeper.ready").write_text(str(os.getpid()))

    wake = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        wake["now"] = True
        if signum in (signal.SIGTERM, signal.SIGINT):
            wake["stop"] = True

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    idle_checks = 0
    while True:
        for _ in range(int(_CHECK_EVERY / 0.02)):
            if wake["now"] or proc.poll() is not None:
                break
            time.sleep(0.02)
        wake["now"] = False
        if proc.poll() is not None:
            break
        with _Flock(inst.lock_path):
            alive = [p for p in inst.leases.iterdir() if is_locked(p)]
            for p in inst.leases.iterdir():
                if p not in alive:
                    p.unlink(missing_ok=True)
            idle_checks = 0 if alive else idle_checks + 1
            if wake.get("stop") or not alive:
                _stop(proc)
                (inst.data_dir / "keeper.ready").unlink(missing_ok=True)
                keeper.release()
                break
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

__all__ = ["main", "SUPERUSER"]
