"""`heliosdb serve`: the PostgreSQL wire protocol endpoint.

The asyncio main loop accepts connections and handles signals; every client
connection runs in a thread of its own with one HeliosDB session (the session
is synchronous). One managed instance is held for the server's lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from heliosdb import errors
from heliosdb.server.catalog_fills import CatalogFills
from heliosdb.server.connection import ClientConnection
from heliosdb.server.protocol import Fatal
from heliosdb.storage.instance import Instance

log = logging.getLogger("heliosdb.server")


@dataclass(frozen=True)
class Role:
    can_login: bool
    verifier: str | None
    expired: bool


class Server:
    """Shared state of one endpoint: storage, authentication policy, live connections."""

    def __init__(self, storage: str, auth: str = "trust", max_connections: int = 200,
                 max_message: int = 256 * 1024 * 1024, auth_timeout: float = 60.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.storage = storage
        self.tls = tls  # accept SSLRequest with this context; None: decline (the client goes on in the clear)
        self.auth = auth
        self.max_connections = max_connections
        self.max_message = max_message
        self.auth_timeout = auth_timeout
        self.stopping = False
        self.connections: dict[int, ClientConnection] = {}  # by connection number
        self.by_pid: dict[int, ClientConnection] = {}  # by BackendKeyData pid
        self.threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._admin_lock = threading.Lock()
        self._admin: psycopg.Connection[Any] | None = None
        self._ids = itertools.count(1)
        self.schedulers: dict[str, Any] = {}  # database -> its materialized-view scheduler
        self.catalog_fills = CatalogFills()  # the cache of clients' catalog rows, filled before their queries

    def ensure_scheduler(self, database: str, session: Any) -> None:
        """One refresh scheduler per database this endpoint serves, from its first session on."""
        with self._lock:
            if database in self.schedulers or self.stopping:
                return
            from heliosdb.mv.scheduler import Scheduler

            sched = Scheduler(session.new_connection)
            self.schedulers[database] = sched
        sched.start()

    def stop_scheduler(self, database: str) -> None:
        """Stop one database's scheduler (its connection would keep DROP DATABASE from running);
        the next session on a database of that name starts a new one."""
        with self._lock:
            sched = self.schedulers.pop(database, None)
        if sched is not None:
            sched.stop()

    def stop_schedulers(self) -> None:
        with self._lock:
            scheds, self.schedulers = list(self.schedulers.values()), {}
        for s in scheds:
            s.stop()

    # -- connections --------------------------------------------------------------------------------
    def new_id(self) -> int:
        return next(self._ids)

    def register(self, conn: ClientConnection) -> bool:
        with self._lock:
            if len(self.connections) >= self.max_connections:
                return False
            self.connections[conn.conn_id] = conn
            return True

    def set_key(self, conn: ClientConnection) -> None:
        """The connection's BackendKeyData pid (its storage backend's pid) for CancelRequests."""
        with self._lock:
            self.by_pid[conn.pid] = conn

    def unregister(self, conn: ClientConnection) -> None:
        with self._lock:
            if self.connections.get(conn.conn_id) is conn:
                del self.connections[conn.conn_id]
            if self.by_pid.get(conn.pid) is conn:
                del self.by_pid[conn.pid]

    def cancel(self, pid: int, secret: int) -> None:
        """A CancelRequest: cancel what that connection's session is running (nothing else)."""
        with self._lock:
            conn = self.by_pid.get(pid)
        if conn is None or not secrets.compare_digest(conn.secret.to_bytes(4, "big"),
                                                      (secret & 0xFFFFFFFF).to_bytes(4, "big")):
            log.info("cancel request for unknown pid %d ignored", pid)
            return
        session = conn.session
        if session is not None:
            try:
                session.cancel()
                log.info("cancel request for pid %d", pid)
            except Exception as exc:
                log.info("cancel request for pid %d failed: %s", pid, exc)

    def start(self, sock: socket.socket, addr: Any) -> None:
        conn = ClientConnection(self, sock, addr)
        t = threading.Thread(target=self._run, args=(conn,), name=f"heliosdb-conn-{conn.conn_id}", daemon=True)
        with self._lock:
            self.threads.add(t)
        t.start()

    def _run(self, conn: ClientConnection) -> None:
        try:
            conn.run()
        finally:
            with self._lock:
                self.threads.discard(threading.current_thread())

    # -- storage look-ups (before a session exists) --------------------------------------------------------
    def _admin_query(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._admin_lock:
            for attempt in range(2):
                try:
                    if self._admin is None or self._admin.closed or self._admin.broken:
                        self._admin = psycopg.connect(self.storage, autocommit=True)
                    return self._admin.execute(query, params).fetchone()  # type: ignore[arg-type]
                except psycopg.OperationalError:
                    self._admin = None
                    if attempt:
                        raise Fatal("08006", "the storage server is not available") from None
                except psycopg.Error as exc:
                    err = errors.from_psycopg(exc)
                    raise Fatal(err.sqlstate or "XX000", err.message) from None
        return None

    def lookup_role(self, user: str) -> Role | None:
        try:
            row = self._admin_query(
                "SELECT rolcanlogin, rolpassword, coalesce(rolvaliduntil < now(), false) "
                "FROM pg_authid WHERE rolname = %s", (user,))
        except Fatal as exc:
            if exc.sqlstate != "42501":
                raise
            row = self._admin_query("SELECT rolcanlogin, NULL, false FROM pg_roles WHERE rolname = %s", (user,))
        return None if row is None else Role(bool(row[0]), row[1], bool(row[2]))

    def check_database(self, name: str) -> None:
        row = self._admin_query("SELECT datallowconn, datistemplate FROM pg_database WHERE datname = %s", (name,))
        if row is None:
            raise Fatal("3D000", f'database "{name}" does not exist')
        if not row[0] or row[1]:
            raise Fatal("55000", f'database "{name}" is not currently accepting connections')

    # -- shutdown ----------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float) -> None:
        """Stop every connection: idle ones now, running statements after they finish (or `timeout`)."""
        self.stopping = True
        self.stop_schedulers()
        self.catalog_fills.close()
        deadline = time.monotonic() + timeout
        cancelled = False
        while True:
            with self._lock:
                conns = list(self.connections.values())
                threads = list(self.threads)
            if not threads:
                break
            now = time.monotonic()
            for c in conns:
                if c.waiting:
                    c.wake()
            if now > deadline and not cancelled:
                cancelled = True
                for c in conns:
                    if c.busy and c.session is not None:
                        log.info("connection %s pid=%d: cancelling its statement for shutdown", c.peer, c.pid)
                        try:
                            c.session.cancel()
                        except Exception:
                            pass
            if now > deadline + 5:
                for c in conns:
                    c.kill()
                for t in threads:
                    t.join(timeout=1)
                break
            time.sleep(0.05)
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None


def _listen(host: str, port: int) -> socket.socket:
    if host in ("*", ""):
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=512)
        host = "0.0.0.0"
    return socket.create_server((host, port), backlog=512)


def _listen_unix(directory: str, port: int) -> socket.socket:
    path = os.path.join(directory, f".s.PGSQL.{port}")
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            probe.close()
            raise OSError(f"another server is listening on {path}")
        except ConnectionRefusedError:
            os.unlink(path)  # a stale socket file
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    os.chmod(path, 0o777)
    sock.listen(512)
    return sock


async def _serve(server: Server, host: str, port: int, shutdown_timeout: float, socket_dir: str | None) -> None:
    loop = asyncio.get_running_loop()
    listeners = [_listen(host, port)]
    if socket_dir:
        listeners.append(_listen_unix(socket_dir, port))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mode = "trust on loopback, scram-sha-256 otherwise" if server.auth == "trust" else "scram-sha-256"
    for lsock in listeners:
        lsock.setblocking(False)
        name = lsock.getsockname()
        where = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else name
        log.info("listening on %s (auth: %s)", where, mode)

    async def accept(lsock: socket.socket) -> None:
        while True:
            try:
                sock, addr = await loop.sock_accept(lsock)
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(True)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server.start(sock, addr)

    tasks = [asyncio.create_task(accept(lsock)) for lsock in listeners]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for lsock in listeners:
        name = lsock.getsockname()
        lsock.close()
        if isinstance(name, str) and name:
            with contextlib.suppress(OSError):
                os.unlink(name)
    with server._lock:
        n = len(server.connections)
    log.info("shutting down: %d connection(s)", n)
    await loop.run_in_executor(None, server.shutdown, shutdown_timeout)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heliosdb serve",
                                description="Serve HeliosDB over the PostgreSQL wire protocol (v3).")
    p.add_argument("-D", "--data-dir", help="data directory (default: $HELIOSDB_DATA or a per-user directory)")
    p.add_argument("--storage", help="use an existing PostgreSQL server (postgresql://...) instead of a managed one")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; * for all)")
    p.add_argument("--port", type=int, default=5433, help="TCP port (default 5433)")
    p.add_argument("-k", "--socket-dir", help="also listen on a Unix socket in this directory (psql -h DIR)")
    p.add_argument("--auth", choices=("trust", "scram-sha-256"), default="trust",
                   help="trust: loopback clients need no password (others always use SCRAM-SHA-256)")
    p.add_argument("--max-connections", type=int, default=200, help="client connections at most (default 200)")
    p.add_argument("--tls-cert", help="PEM certificate (chain): accept TLS (SSLRequest) with it")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert (default: in the certificate file)")
    p.add_argument("--shutdown-timeout", type=float, default=10.0,
                   help="seconds running statements get to finish on SIGTERM/SIGINT (default 10)")
    return p


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.tls_cert:
        if args.tls_key:
            raise errors.lookup("22023")("--tls-key needs --tls-cert", sqlstate="22023")
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise errors.lookup("F0000")(f"cannot load the TLS certificate {args.tls_cert}: {exc}",
                                     sqlstate="F0000") from None
    return ctx


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s heliosdb[%(process)d] %(message)s")
    instance: Instance | None = None
    try:
        if args.storage:
            storage = args.storage
        else:
            instance = Instance(args.data_dir)
            instance.acquire()
            storage = make_conninfo(**instance.conninfo("postgres"))  # type: ignore[arg-type]
        server = Server(storage, auth=args.auth, max_connections=args.max_connections, tls=_tls_context(args))
        asyncio.run(_serve(server, args.host, args.port, args.shutdown_timeout, args.socket_dir))
    except errors.Error as exc:
        sys.stderr.write(f"heliosdb serve: error: {exc.message}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"heliosdb serve: error: {exc}\n")
        return 2
    finally:
        if instance is not None:
            instance.release()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
