"""Fixtures and helpers for the `heliosdb serve` tests: server processes and a raw protocol client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m heliosdb.cli serve` as a subprocess."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.socket_dir = args[args.index("-k") + 1] if "-k" in args else None
        self.log_path = Path(data_dir) / f"serve-{self.port}.log"
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "heliosdb.cli", "serve", "-D", str(data_dir), "--port", str(self.port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + 60
        while "listening on" not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + self.log_text())
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text()

    def dsn(self, dbname: str, user: str = "postgres", **kw: str) -> str:
        extra = " ".join(f"{k}='{v}'" for k, v in kw.items())
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname} {extra}".strip()

    def connect(self, dbname: str, **kw: object) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=kw.pop("user", "postgres"), dbname=dbname,
                               **kw)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(helios_data_dir: Path) -> Iterator[ServerProcess]:
    """One endpoint (trust on loopback) for the whole test session."""
    srv = ServerProcess(helios_data_dir, "-k", str(helios_data_dir))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def scram_server(helios_data_dir: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(helios_data_dir, "--auth", "scram-sha-256")
    yield srv
    srv.stop()


# -- a raw protocol client ------------------------------------------------------------------------------
class RawClient:
    """Speaks the protocol byte by byte (for what drivers never send)."""

    def __init__(self, port: int, timeout: float = 20) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def startup_packet(self, **params: str) -> bytes:
        body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
        return struct.pack("!ii", len(body) + 8, 196608) + body

    def startup(self, **params: str) -> list[tuple[bytes, bytes]]:
        params.setdefault("user", "postgres")
        self.send_raw(self.startup_packet(**params))
        return self.until_ready()

    def read(self) -> tuple[bytes, bytes] | None:
        """The next message, or None at end of stream."""
        while True:
            if len(self.buf) >= 5:
                kind = self.buf[:1]
                (n,) = struct.unpack("!i", self.buf[1:5])
                if len(self.buf) >= n + 1:
                    payload = self.buf[5 : n + 1]
                    self.buf = self.buf[n + 1 :]
                    return kind, payload
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.buf += data

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        out = []
        while True:
            m = self.read()
            if m is None:
                return out
            out.append(m)
            if m[0] == b"Z":
                return out

    def query(self, sql: str) -> list[tuple[bytes, bytes]]:
        self.send(b"Q", sql.encode() + b"\0")
        return self.until_ready()


def fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by code letter."""
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode()
    return out


def errors_in(msgs: list[tuple[bytes, bytes]]) -> list[dict[str, str]]:
    return [fields(p) for k, p in msgs if k == b"E"]


def data_rows(msgs: list[tuple[bytes, bytes]]) -> list[list[str | None]]:
    rows = []
    for k, p in msgs:
        if k != b"D":
            continue
        (n,) = struct.unpack("!h", p[:2])
        pos, row = 2, []
        for _ in range(n):
            (ln,) = struct.unpack("!i", p[pos : pos + 4])
            pos += 4
            if ln < 0:
                row.append(None)
            else:
                row.append(p[pos : pos + ln].decode())
                pos += ln
        rows.append(row)
    return rows


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def scram_login(client: RawClient, user: str, password: str, database: str) -> list[tuple[bytes, bytes]]:
    """A SCRAM-SHA-256 login by hand; the messages after the exchange."""
    client.send_raw(client.startup_packet(user=user, database=database))
    kind, payload = client.read() or (b"", b"")
    assert kind == b"R" and struct.unpack("!i", payload[:4])[0] == 10, (kind, payload)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    client.send(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first)
    kind, payload = client.read() or (b"", b"")
    assert kind == b"R" and struct.unpack("!i", payload[:4])[0] == 11
    server_first = payload[4:].decode()
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    client.send(b"p", f"{without_proof},p={proof}".encode())
    return client.until_ready()
