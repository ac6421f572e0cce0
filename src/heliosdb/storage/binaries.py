"""Find the PostgreSQL server binaries on this machine (or the pgserver wheel's)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from heliosdb.errors import OperationalError

_NEEDED = ("initdb", "postgres", "pg_ctl")


def _complete(bindir: Path) -> bool:
    return all((bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in _NEEDED)


def _candidates() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("HELIOSDB_PG_BINDIR")
    if env:
        found.append(Path(env))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        found.append(Path(os.path.realpath(pg_ctl)).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                found.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian/Ubuntu keep servers per major version; prefer the newest.
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    found.extend(Path(p) for p in versions)
    found.extend(Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True))
    try:  # the pgserver wheel bundles a PostgreSQL build
        import pgserver  # type: ignore[import-not-found]

        found.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    return found


@lru_cache(maxsize=1)
def find_bindir() -> Path:
    """The first directory holding initdb, postgres and pg_ctl."""
    for cand in _candidates():
        if _complete(cand):
            return cand
    raise OperationalError(
        "PostgreSQL server binaries not found",
        hint="Install PostgreSQL (>= 15), put its bin directory on PATH, set HELIOSDB_PG_BINDIR, "
        "or pip install pgserver.",
        sqlstate="58P01",
    )


def binary(name: str) -> str:
    return str(find_bindir() / name)
