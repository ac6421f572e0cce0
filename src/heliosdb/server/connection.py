"""One client connection: startup, authentication, then the message loop, in its own thread.

The socket is used in blocking mode by this thread only, so a slow client (or
a slow statement) holds up nobody else. Output is buffered and flushed before
every read that could block.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import select
import socket
import ssl
import time
from typing import TYPE_CHECKING

import psycopg

from heliosdb import errors
from heliosdb.server import auth, catalog_compat, codec
from heliosdb.server.extended import ExtendedProtocol
from heliosdb.server.protocol import ClientGone, Fatal, error, is_utf8
from heliosdb.server.relay import frame
from heliosdb.session import Session
from heliosdb.sql.split import strip_comments
from heliosdb.storage.instance import DEFAULT_DATABASE

if TYPE_CHECKING:
    from heliosdb.server.main import Server

log = logging.getLogger("heliosdb.server")

_EXTENDED = (b"P", b"B", b"D", b"E", b"C", b"H")
_DROP_DATABASE = re.compile(r'\s*DROP\s+DATABASE\s+(?:IF\s+EXISTS\s+)?("(?:[^"]|"")+"|[A-Za-z_][\w$]*)', re.IGNORECASE)
# CREATE DATABASE ... TEMPLATE [=] name (group 1): the copy needs the template database to itself
_TEMPLATE = re.compile(r'(?s)\s*CREATE\s+DATABASE\s.*?\bTEMPLATE\s*=?\s*("(?:[^"]|"")+"|[A-Za-z_][\w$]*)', re.IGNORECASE)
_NOT_SETTINGS = {"user", "database", "options", "replication"}


def parse_options(text: str) -> dict[str, str]:
    """The `options` startup parameter: -c name=value / --name=value (backslash escapes a space)."""
    words: list[str] = []
    cur, esc, started = [], False, False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc, started = True, True
        elif ch.isspace():
            if started:
                words.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        words.append("".join(cur))
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-c" and i + 1 < len(words):
            setting, i = words[i + 1], i + 2
        elif w.startswith("-c") and len(w) > 2:
            setting, i = w[2:], i + 1
        elif w.startswith("--") and "=" in w:
            setting, i = w[2:], i + 1
        else:
            raise Fatal("42601", f"invalid command-line argument for server process: {w}")
        name, eq, value = setting.partition("=")
        if not eq or not name:
            raise Fatal("42601", f"invalid command-line argument for server process: {setting}")
        out[name.replace("-", "_")] = value
    return out


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """The settings of a startup packet, by lower-case name (PostgreSQL's are case-insensitive): its
    `options`, then its other parameters. search_path is left out: the branch owns it."""
    settings = {k.lower(): v for k, v in parse_options(params.get("options", "")).items()}
    settings.update({k.lower(): v for k, v in params.items() if k not in _NOT_SETTINGS and not k.startswith("_pq_.")})
    settings.pop("search_path", None)
    for name in settings:
        if name.startswith("heliosdb.") and name != "heliosdb.branch":
            raise Fatal("55P02", f'parameter "{name}" cannot be changed: HeliosDB sets it')
    return settings


class ClientConnection(ExtendedProtocol):
    def __init__(self, server: Server, sock: socket.socket, addr: object) -> None:
        super().__init__()
        self.server = server
        self.sock = sock
        self.addr = addr
        self.framer = codec.Framer(server.max_message)
        self._out: list[bytes] = []
        self._out_size = 0
        self.conn_id = server.new_id()
        self.pid = 0  # BackendKeyData: the pid of the session's storage backend (pg_backend_pid())
        self.secret = secrets.randbits(31)
        self.waiting = False
        self.at_rfq = True
        self.user = ""
        self.database = ""
        self.started = time.monotonic()
        self.outcome = "closed"
        self.tls = False  # the client switched to TLS (SSLRequest accepted)

    def local_command(self, stmt: str) -> str | None:
        text = strip_comments(stmt)
        m = _DROP_DATABASE.match(text) or _TEMPLATE.match(text)
        if m and m.group(1).upper() != "BRANCH":
            # the endpoint's own view scheduler must not be the "other session using the database"
            name = m.group(1)
            name = name[1:-1].replace('""', '"') if name[0] == '"' else name.lower()
            self.server.stop_scheduler(name)
            self.server.catalog_fills.close(name)
        return super().local_command(stmt)

    # -- transport -------------------------------------------------------------------------------------
    @property
    def peer(self) -> str:
        if isinstance(self.addr, tuple) and len(self.addr) >= 2:
            return f"{self.addr[0]}:{self.addr[1]}"
        return str(self.addr or "local")

    @property
    def loopback(self) -> bool:
        if not isinstance(self.addr, tuple):
            return True  # a Unix socket
        try:
            ip = ipaddress.ip_address(str(self.addr[0]).split("%")[0])
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))

    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= 65536:
            self.flush()

    def flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone(f"send failed: {exc}") from None

    def _recv(self) -> bytes:
        self.flush()
        self.waiting = True
        try:
            if self.server.stopping and not self.busy and self.at_rfq:
                return b""
            if self.listening and self.session is not None:
                self._wait_listening()
            return self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ClientGone(f"receive failed: {exc}") from None
        finally:
            self.waiting = False

    def _wait_listening(self) -> None:
        """Idle after LISTEN: pass notifications on as they come, until the client sends something."""
        assert self.session is not None
        pg = self.session.conn.pgconn
        me = self.sock.fileno()
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return  # decrypted bytes already wait in the TLS layer: poll() would not see them
        poller = select.poll()
        poller.register(me, select.POLLIN)
        poller.register(pg.socket, select.POLLIN)
        while not any(fd == me for fd, _ in poller.poll()):
            try:
                pg.consume_input()
            except psycopg.OperationalError:
                raise Fatal("08006", "the connection to the storage server was lost") from None
            self.drain_notifies()
            self.flush()

    def next_message(self) -> tuple[bytes, bytes] | None:
        while True:
            m = self.framer.next()
            if m is not None:
                return m
            data = self._recv()
            if not data:
                return None
            self.framer.feed(data)

    def peek_kinds(self) -> list[bytes]:
        return self.framer.peek_kinds()

    def peek_messages(self, n: int) -> list[tuple[bytes, bytes]]:
        return self.framer.peek(n)

    def drop_messages(self, n: int) -> None:
        self.framer.drop(n)

    def wake(self) -> None:
        """Interrupt a blocking read (shutdown): the thread sees end of input."""
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def kill(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _fatal(self, sqlstate: str, message: str, told: bool = False) -> None:
        """The FATAL ErrorResponse before closing (told: the client has PostgreSQL's own: only flushed)."""
        try:
            if not told:
                self.send(codec.error_response("FATAL", sqlstate, message))
            self.flush()
        except ClientGone:
            pass

    # -- lifetime ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        registered = False
        try:
            self.sock.settimeout(self.server.auth_timeout)
            if not self._startup():
                return
            registered = True
            self.sock.settimeout(None)
            self._loop()
        except ClientGone as exc:
            self.outcome = f"client disconnected ({exc})" if str(exc) else "client disconnected"
        except Fatal as exc:
            self.outcome = f"FATAL {exc.sqlstate}: {exc.message}"
            self._fatal(exc.sqlstate, exc.message, exc.told)
        except codec.ProtocolError as exc:
            self.outcome = f"protocol error {exc.sqlstate}: {exc.message}"
            self._fatal(exc.sqlstate, exc.message)
        except TimeoutError:
            self.outcome = "timeout during startup"
            self._fatal("08006", "timeout expired during startup")
        except Exception as exc:
            log.exception("connection %s: unexpected error", self.peer)
            self.outcome = f"internal error: {exc}"
            self._fatal("XX000", f"internal error: {exc}")
        finally:
            self._cleanup(registered)

    def _cleanup(self, registered: bool) -> None:
        if self.session is not None:
            try:
                self.storage_for_psycopg()
            except Exception:  # a broken storage connection: closing it is all that is left
                pass
            try:
                self.session.close()  # an open transaction is rolled back with the storage connection
            except Exception:
                log.exception("connection %s: closing its session", self.peer)
        try:
            self.sock.close()
        except OSError:
            pass
        self.server.unregister(self)
        if registered or self.user:
            branch = self.reported.get("heliosdb.branch", "-")
            log.info("connection %s pid=%d user=%s database=%s branch=%s: %d statements in %.1fs; %s",
                     self.peer, self.pid, self.user or "-", self.database or "-", branch, self.statements_run,
                     time.monotonic() - self.started, self.outcome)

    def _loop(self) -> None:
        while True:
            if self.server.stopping and self.at_rfq:
                raise Fatal("57P01", "terminating connection due to administrator command")
            msg = self.next_message()
            if msg is None:
                if self.server.stopping:
                    raise Fatal("57P01", "terminating connection due to administrator command")
                self.outcome = "client disconnected"
                return
            kind, payload = msg
            if kind == b"X":
                self.outcome = "terminated by client"
                return
            self.at_rfq = False
            self._dispatch(kind, payload)

    def _dispatch(self, kind: bytes, payload: bytes) -> None:
        if self.skipping and kind != b"S":
            return
        try:
            if self.relay_quick(payload) if kind == b"Q" else kind in b"PB" and self.relay_batch(kind, payload):
                self.at_rfq = True
                return
            self.storage_for_psycopg()
            self.session_runs += 1
            self.collect_storage_garbage()
            if kind == b"Q":
                text = codec.decode_query(payload)
                compat = catalog_compat.rewrite(text)
                if compat is not text:
                    text, payload = compat, compat.encode("utf-8") + b"\0"
                    self.server.catalog_fills.fill(self.session)
                if not self.relay_simple(text, payload):
                    self.simple_query(text)
                self.at_rfq = True
            elif kind == b"P":
                self.parse(payload)
            elif kind == b"B":
                self.bind(payload)
            elif kind == b"D":
                self.describe(payload)
            elif kind == b"E":
                self.execute_portal(payload)
            elif kind == b"C":
                self.close(payload)
            elif kind == b"S":
                self.sync()
                self.at_rfq = True
            elif kind == b"H":
                self.flush()
            elif kind in (b"d", b"c", b"f"):
                pass  # the rest of a COPY that failed: ignored, as PostgreSQL does
            elif kind == b"F":
                raise error("0A000", "the function call protocol message is not supported",
                            hint="Call the function with SELECT.")
            else:
                raise Fatal("08P01", f"invalid frontend message type {kind[0]}")
        except errors.Error as exc:
            self._failed(kind, exc)
        except codec.BadText as exc:  # the statement fails, the session goes on (as in PostgreSQL)
            if kind == b"Q" and self._can_relay(idle_only=False) and self._relay(frame(b"Q", payload)):
                self.at_rfq = True  # PostgreSQL said it itself, and failed the transaction it is in
            else:
                self._failed(kind, error(exc.sqlstate, exc.message))

    def _failed(self, kind: bytes, exc: errors.Error) -> None:
        self.send_error(exc)
        if kind in _EXTENDED:
            self.skipping = True
            self.batch_failed = True
        else:
            self.ready()
            self.at_rfq = True

    # -- startup and authentication ---------------------------------------------------------------------------
    def _read_startup(self) -> bytes:
        buf = self.framer.buf
        while True:
            n = codec.startup_length(bytes(buf[:4]))
            if n is not None and len(buf) >= n:
                packet = bytes(buf[:n])
                del buf[:n]
                return packet
            data = self._recv()
            if not data:
                raise ClientGone("during startup")
            buf += data

    def _start_tls(self) -> None:
        """Accept the SSLRequest and run the TLS handshake; everything after it is encrypted."""
        if self.framer.buf:  # bytes after SSLRequest before the handshake: a client trying to inject them
            raise codec.ProtocolError("received unencrypted data after SSL request")
        self.sock.sendall(b"S")
        assert self.server.tls is not None
        try:
            self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise ClientGone(f"TLS handshake failed: {exc}") from None
        self.tls = True

    def _startup(self) -> bool:
        """Startup packet, authentication, the session; False for a cancel request."""
        st = codec.parse_startup(self._read_startup())
        for _ in range(2):
            if st.code not in (codec.SSL_REQUEST, codec.GSSENC_REQUEST):
                break
            if st.code == codec.SSL_REQUEST and self.server.tls is not None and not self.tls:
                self._start_tls()
            else:
                self.sock.sendall(b"N")  # no TLS (not configured) / no GSSAPI: the client goes on in the clear
            st = codec.parse_startup(self._read_startup())
        if st.code == codec.CANCEL_REQUEST:
            self.server.cancel(st.pid, st.secret)
            return False
        if st.code in (codec.SSL_REQUEST, codec.GSSENC_REQUEST):
            raise codec.ProtocolError("too many encryption requests")
        params = st.params
        unknown = [k for k in params if k.startswith("_pq_.")]
        if st.code & 0xFFFF or unknown:
            self.send(codec.negotiate_protocol_version(0, unknown))
        self.user = params.get("user", "")
        if not self.user:
            raise Fatal("28000", "no PostgreSQL user name specified in startup packet")
        self.database = params.get("database") or DEFAULT_DATABASE
        settings = startup_settings(params)
        if params.get("replication", "false").lower() not in ("false", "off", "0", "no"):
            raise Fatal("0A000", "replication connections are not supported")
        encoding = settings.pop("client_encoding", "UTF8")
        if not is_utf8(encoding):
            raise Fatal("0A000", f'client_encoding "{encoding}" is not supported: use UTF8')
        if not self.server.register(self):
            raise Fatal("53300", "sorry, too many clients already")
        self._authenticate()
        branch = settings.pop("heliosdb.branch", None) or "main"
        self.server.check_database(self.database)
        try:
            session = Session(storage=self.server.storage, database=self.database, branch=branch)
        except errors.Error as exc:
            raise Fatal(exc.sqlstate or "XX000", exc.message) from None
        except psycopg.Error as exc:
            err = errors.from_psycopg(exc)
            raise Fatal(err.sqlstate or "XX000", err.message) from None
        self.attach(session)
        self.server.ensure_scheduler(self.database, session)
        self.send(codec.auth_ok())
        for name, value in settings.items():
            try:
                session.conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            except Exception as exc:
                err = errors.from_psycopg(exc)
                raise Fatal(err.sqlstate or "22023", err.message) from None
        self.emit_parameter_status()
        self.pid = session.conn.pgconn.backend_pid
        self.server.set_key(self)
        self.send(codec.backend_key_data(self.pid, self.secret))
        self.ready()
        return True

    def _authenticate(self) -> None:
        role = self.server.lookup_role(self.user)
        if self.server.auth == "trust" and self.loopback:
            if role is None:
                raise Fatal("28000", f'role "{self.user}" does not exist')
        else:
            self._scram(role.verifier if role is not None and not role.expired else None)
        assert role is not None
        if not role.can_login:
            raise Fatal("28000", f'role "{self.user}" is not permitted to log in')

    def _auth_message(self) -> bytes:
        msg = self.next_message()
        if msg is None:
            raise ClientGone("during authentication")
        kind, payload = msg
        if kind != b"p":
            raise Fatal("08P01", f"expected SASL response, got message type {kind[0]}")
        return payload

    def _scram(self, verifier_text: str | None) -> None:
        self.send(codec.auth_sasl([auth.MECHANISM]))
        mech, data = codec.decode_sasl_initial(self._auth_message())
        if mech != auth.MECHANISM:
            raise Fatal("08P01", "client selected an invalid SASL authentication mechanism")
        exchange = auth.ScramExchange(self.user, auth.parse_verifier(verifier_text))
        try:
            self.send(codec.auth_sasl_continue(exchange.first(data)))
            final = exchange.final(self._auth_message())
        except auth.AuthFailed as exc:
            if exc.protocol:
                raise Fatal("08P01", str(exc)) from None
            raise Fatal("28P01", f'password authentication failed for user "{self.user}"') from None
        self.send(codec.auth_sasl_final(final))
