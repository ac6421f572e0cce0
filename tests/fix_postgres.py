"""Pytest plugin: one managed PostgreSQL instance per test session, a fresh database per test."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import heliosdb
from heliosdb.storage.instance import Instance

_counter = itertools.count()


@pytest.fixture(scope="session")
def helios_instance() -> Iterator[Instance]:
    """The session's managed instance (kept running by our lease until the session ends)."""
    base = os.environ.get("HELIOSDB_TEST_DIR")
    data_dir = Path(base) if base else Path(tempfile.mkdtemp(prefix="helios-test-"))
    os.chmod(data_dir, 0o755)
    if not base:
        # A temporary cluster is ~100 MB. Removed at exit, after every Instance of the process
        # (heliosdb.connect makes its own) dropped its lease: handlers registered later run first.
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    inst = Instance(data_dir)
    inst.acquire()
    yield inst
    inst.release()


@pytest.fixture(scope="session")
def helios_data_dir(helios_instance: Instance) -> Path:
    return helios_instance.data_dir


@pytest.fixture
def admin(helios_instance: Instance) -> Iterator[psycopg.Connection]:
    """A plain psycopg connection to the instance's `postgres` database (autocommit)."""
    with psycopg.connect(**helios_instance.conninfo("postgres"), autocommit=True) as conn:  # type: ignore[arg-type]
        yield conn


@pytest.fixture
def dbname(helios_instance: Instance, admin: psycopg.Connection) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(helios_data_dir: Path, dbname: str) -> Iterator[heliosdb.Connection]:
    """A HeliosDB connection on main of a fresh database, in autocommit mode."""
    c = heliosdb.connect(data_dir=helios_data_dir, database=dbname)
    c.autocommit = True
    yield c
    c.close()


@pytest.fixture
def connect(helios_data_dir: Path, dbname: str) -> Iterator[object]:
    """A factory for more connections to the same fresh database."""
    opened: list[heliosdb.Connection] = []

    def make(branch: str = "main", autocommit: bool = True) -> heliosdb.Connection:
        c = heliosdb.connect(data_dir=helios_data_dir, database=dbname, branch=branch)
        c.autocommit = autocommit
        opened.append(c)
        return c

    yield make
    for c in opened:
        if not c.closed:
            c.close()


@pytest.fixture
def plain(helios_instance: Instance, admin: psycopg.Connection, dbname: str) -> Iterator[psycopg.Connection]:
    """A plain PostgreSQL database beside the test's HeliosDB one (autocommit): the reference."""
    name = f"{dbname}_plain"
    admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(**helios_instance.conninfo(name), autocommit=True) as conn:  # type: ignore[arg-type]
        yield conn
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
