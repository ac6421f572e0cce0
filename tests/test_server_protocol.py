"""`heliosdb serve` at the protocol level: startup, messages, errors, auth, cancel, fuzzing, shutdown."""

from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from heliosdb.server import auth, codec
from heliosdb.server.autoparam import parameterize
from heliosdb.server.params import placeholders, quote_literal
from heliosdb.server.protocol import quick_plain_command, quick_plain_select
from heliosdb.slt import corpus_dir
from heliosdb.slt.parser import Query, Statement, active_records, parse_file
from tests import test_server_support as support
from tests.test_server_support import (
    RawClient,
    ServerProcess,
    cstr,
    data_rows,
    errors_in,
    fields,
    scram_login,
)

server = support.server
scram_server = support.scram_server


# -- I/O-free pieces ------------------------------------------------------------------------------------------
def test_codec_round_trip() -> None:
    f = codec.Framer(max_message=100)
    f.feed(codec.message(b"Q", b"SELECT 1\0") + b"P\0\0")
    assert f.next() == (b"Q", b"SELECT 1\0")
    assert f.next() is None
    assert f.peek_kinds() == []
    f.feed(b"\0\x08ab\0\0")
    assert f.next() == (b"P", b"ab\0\0")
    f.feed(b"Q" + struct.pack("!i", 1_000))
    with pytest.raises(codec.ProtocolError):
        f.next()
    bind = codec.decode_bind(b"p\0s\0" + struct.pack("!hh", 1, 1) + struct.pack("!hi", 2, 1) + b"7"
                             + struct.pack("!i", -1) + struct.pack("!hh", 1, 0))
    assert (bind.portal, bind.statement, bind.params, bind.result_formats) == ("p", "s", [b"7", None], [0])
    with pytest.raises(codec.ProtocolError):
        codec.decode_bind(b"p\0s\0" + struct.pack("!hh", 1, 7) + struct.pack("!h", 0) + struct.pack("!h", 0))
    row = codec.data_row([b"1", None])
    assert row == b"D" + struct.pack("!ihi", 4 + 2 + 4 + 1 + 4, 2, 1) + b"1" + b"\xff\xff\xff\xff"


def test_placeholders_skip_quotes_comments_and_dollar_quotes() -> None:
    q = "SELECT $1, '$2', \"$3\", $$ $4 $$, E'\\' $5', a$6, -- $7\n /* $8 /* $9 */ */ $10::int"
    assert [n for _s, _e, n in placeholders(q)] == [1, 10]
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("a\\b") == "E'a\\\\b'"


def test_quick_relay_takes_only_what_the_full_check_would_relay() -> None:
    q = lambda text: quick_plain_select(text.encode("utf-8") + b"\0")  # noqa: E731
    assert q("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;")
    assert q("select\n1") and q("SELECT 1;  ")
    for refused in ("select 1; select 2", "SELECT 'a;b'", "SELECT * FROM t AS OF LSN 1",
                    "SELECT * FROM t FOR SYSTEM_TIME ALL", "SELECT * FROM t AT(OFFSET => -5)",
                    "SELECT * FROM t VERSIONS BETWEEN SCN MINVALUE AND MAXVALUE", "SELECT * INTO x FROM t",
                    "SELECT set_config('search_path', 'x', false)", "SELECT 1 -- note", "/* c */ SELECT 1",
                    " SELECT 1", "SELECTX", "SELECT 'é'", "WITH a AS (SELECT 1) SELECT * FROM a",
                    "SELECT c.relkind FROM pg_class c"):
        assert not q(refused), refused
    assert not quick_plain_select(b"SELECT 1\0\0")  # not one C string: the full path reports it


def test_quick_commands_are_plain_transaction_commands_and_writes() -> None:
    q = lambda text: quick_plain_command(text.encode("utf-8") + b"\0")  # noqa: E731
    for taken in ("BEGIN;", "begin", "COMMIT", "END;", "rollback ;", "START  TRANSACTION",
                  "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 7;",
                  "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 7, 5, CURRENT_TIMESTAMP);",
                  "DELETE FROM t WHERE id = 1"):
        assert q(taken), taken
    for refused in ("BEGIN ISOLATION LEVEL SERIALIZABLE", "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'",
                    "UPDATE t SET v = 1; DELETE FROM t", "INSERT INTO t SELECT * FROM t AS OF LSN 1",
                    "DELETE FROM t -- all", "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
                    "UPDATE t SET v = 'é'", "INSERT INTO t VALUES (set_config('a.b', '1', false))"):
        assert not q(refused), refused


def test_parameterize_replaces_only_numbers_after_comparisons() -> None:
    int4, int8 = struct.pack("!I", 23), struct.pack("!I", 20)
    assert parameterize(b"SELECT v FROM t WHERE id = 60123;") == (b"SELECT v FROM t WHERE id = $1   ;", [b"60123"], int4)
    text, values, types = parameterize(b"UPDATE t SET v = v + 40 WHERE id >= 3000000000 AND w<>12")
    assert text == b"UPDATE t SET v = v + 40 WHERE id >= $1         AND w<>$2"  # same length: positions hold
    assert (values, types) == ([b"3000000000", b"12"], int8 + int4)
    # inside quotes, after + or - (a unary minus is folded into the constant), positional numbers,
    # type modifiers, non-integers, one digit: left alone
    text, values, _ = parameterize(b"SELECT 'a = 12', \"b=33\" FROM t WHERE x = 1.5 AND y = 12e3 AND z = 7 "
                                   b"AND w = -10 AND v = x - 12 AND u = 99 ORDER BY 12")
    assert values == [b"99"] and text.endswith(b"u = $1 ORDER BY 12")
    assert parameterize(b"SELECT x::varchar(20) FROM t GROUP BY 1 ORDER BY -10") is None
    # existing parameters, dollar quotes, escape strings, an unterminated quote: the text is left as it is
    assert parameterize(b"SELECT $1 WHERE x = 12") is None
    assert parameterize(b"SELECT $$a$$ WHERE x = 12") is None
    assert parameterize(b"SELECT E'\\'' WHERE x = 12") is None
    assert parameterize(b"SELECT 'a WHERE x = 12") is None
    assert parameterize(b"SELECT 1 WHERE x = 1234567890123456789") is None  # 19 digits: not an int8 for sure


def test_scram_exchange_against_a_postgres_verifier() -> None:
    verifier = auth.parse_verifier(auth.make_verifier("pw", salt=b"0123456789abcdef"))
    assert verifier is not None and verifier.iterations == 4096
    for password, ok in (("pw", True), ("nope", False)):
        ex = auth.ScramExchange("u", verifier)
        server_first = ex.first(b"n,,n=,r=abc").decode()
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        import base64
        import hashlib
        import hmac

        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), 4096)
        ck = hmac.new(salted, b"Client Key", "sha256").digest()
        final = f"c=biws,r={attrs['r']}"
        sig = hmac.new(hashlib.sha256(ck).digest(), f"n=,r=abc,{server_first},{final}".encode(), "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig, strict=True))).decode()
        if ok:
            assert ex.final(f"{final},p={proof}".encode()).startswith(b"v=")
        else:
            with pytest.raises(auth.AuthFailed):
                ex.final(f"{final},p={proof}".encode())
    assert auth.parse_verifier("md5abcdef") is None


# -- startup ---------------------------------------------------------------------------------------------------
def test_ssl_and_gssenc_requests_are_declined(server: ServerProcess, dbname: str) -> None:
    c = RawClient(server.port)
    c.send_raw(struct.pack("!ii", 8, codec.SSL_REQUEST))
    assert c.sock.recv(1) == b"N"
    c.send_raw(struct.pack("!ii", 8, codec.GSSENC_REQUEST))
    assert c.sock.recv(1) == b"N"
    msgs = c.startup(database=dbname, application_name="raw")
    kinds = [k for k, _ in msgs]
    assert kinds[0] == b"R" and b"K" in kinds and msgs[-1] == (b"Z", b"I")
    status = dict(tuple(p.rstrip(b"\0").decode().split("\0", 1)) for k, p in msgs if k == b"S")
    for name in ("server_version", "client_encoding", "DateStyle", "integer_datetimes",
                 "standard_conforming_strings", "TimeZone", "application_name"):
        assert name in status
    assert status["application_name"] == "raw" and status["heliosdb.branch"] == "main"
    c.close()


PSQL = shutil.which("psql") or "/usr/bin/psql"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_when_a_certificate_is_configured(helios_data_dir: Path, dbname: str, tmp_path: Path,
                                              server: ServerProcess) -> None:
    cert, key = _self_signed(tmp_path)
    srv = ServerProcess(helios_data_dir, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with srv.connect(dbname, sslmode="verify-full", sslrootcert=str(cert), autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT heliosdb.current_branch(), 1 + 1").fetchone() == ("main", 2)
            conn.execute("CREATE TABLE tls_t (id int)")
            with conn.cursor() as cur, cur.copy("COPY tls_t FROM STDIN") as cp:
                for i in range(1000):
                    cp.write_row((i,))
            assert conn.execute("SELECT count(*) FROM tls_t").fetchone() == (1000,)
        with srv.connect(dbname, sslmode="disable") as plain:  # TLS is offered, not imposed
            assert not plain.pgconn.ssl_in_use and plain.execute("SELECT 1").fetchone() == (1,)
        env = dict(os.environ, PSQLRC="/dev/null", PGSSLMODE="require")
        out = subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(srv.port), "-U", "postgres",
                              "-d", dbname, "-c", "\\conninfo"], env=env, capture_output=True, text=True, timeout=60)
        assert "SSL connection" in out.stdout, out.stdout + out.stderr
    finally:
        srv.stop()
    # without a certificate the endpoint declines: a client that requires TLS gets the standard error
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        server.connect(dbname, sslmode="require")


def test_startup_errors_are_fatal(server: ServerProcess, dbname: str) -> None:
    cases = [
        ({"database": "no_such_db"}, "3D000"),
        ({"database": dbname, "user": "no_such_role"}, "28000"),
        ({"database": dbname, "options": "-c heliosdb.branch=nope"}, "HD001"),
        ({"database": dbname, "options": "-c no_such_setting=1"}, "42704"),
        ({"database": dbname, "options": "-x"}, "42601"),
    ]
    for params, code in cases:
        c = RawClient(server.port)
        msgs = c.startup(**params)
        err = errors_in(msgs)
        assert err and err[0]["C"] == code and err[0]["S"] == "FATAL", (params, msgs)
        assert c.read() is None
        c.close()


# -- simple and extended query -------------------------------------------------------------------------------
def test_simple_query_statuses_and_implicit_transaction(server: ServerProcess, dbname: str) -> None:
    c = RawClient(server.port)
    c.startup(database=dbname)
    msgs = c.query("CREATE TABLE t (id int PRIMARY KEY); SELECT 1 AS a; SELECT 2 AS b")
    assert [k for k, _ in msgs] == [b"C", b"T", b"D", b"C", b"T", b"D", b"C", b"Z"]
    assert msgs[-1] == (b"Z", b"I")
    # one Query is one transaction: the failing statement takes the insert with it
    msgs = c.query("INSERT INTO t VALUES (1); SELECT 1/0; INSERT INTO t VALUES (2)")
    assert errors_in(msgs)[0]["C"] == "22012" and msgs[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT count(*) FROM t")) == [["0"]]
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    assert c.query("INSERT INTO t VALUES (1)")[-1] == (b"Z", b"T")
    msgs = c.query("INSERT INTO t VALUES (1)")
    err = errors_in(msgs)[0]
    assert (err["C"], err["S"], err["V"]) == ("23505", "ERROR", "ERROR") and "already exists" in err["D"]
    assert msgs[-1] == (b"Z", b"E")
    assert errors_in(c.query("SELECT 1"))[0]["C"] == "25P02"
    assert c.query("ROLLBACK")[-1] == (b"Z", b"I")
    assert [k for k, _ in c.query("")] == [b"I", b"Z"]
    assert [k for k, _ in c.query(" -- only a comment")] == [b"I", b"Z"]
    # error position counts from the start of the Query text
    err = errors_in(c.query("SELECT 1; SELECT nope FROM t"))[0]
    assert err["C"] == "42703" and err["P"] == "18"
    c.close()


def test_text_not_in_the_client_encoding_fails_the_statement_not_the_session(server: ServerProcess,
                                                                              dbname: str) -> None:
    c = RawClient(server.port)
    # asyncpg sends client_encoding 'utf-8' with its quotes; PostgreSQL ignores all but letters and digits
    c.startup(database=dbname, client_encoding="'utf-8'")
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    c.send(b"Q", b"SELECT '\xe9' AS x\0")
    msgs = c.until_ready()
    err = errors_in(msgs)[0]
    assert (err["S"], err["C"]) == ("ERROR", "22021") and "0xe9 0x27 0x20" in err["M"]
    assert msgs[-1] == (b"Z", b"E")  # the transaction failed, the connection lives on
    assert c.query("ROLLBACK")[-1] == (b"Z", b"I")
    c.send(b"P", b"\0SELECT '\xff'\0\0\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert errors_in(msgs)[0]["C"] == "22021" and msgs[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT 1 AS still_here")) == [["1"]]
    c.close()


def test_notice_and_heliosdb_errors(server: ServerProcess, dbname: str) -> None:
    c = RawClient(server.port)
    c.startup(database=dbname)
    msgs = c.query("DO $$BEGIN RAISE NOTICE 'hello' USING DETAIL = 'dd', HINT = 'hh'; END$$")
    notice = [fields(p) for k, p in msgs if k == b"N"][0]
    assert (notice["S"], notice["C"], notice["M"], notice["D"], notice["H"]) == ("NOTICE", "00000", "hello", "dd", "hh")
    err = errors_in(c.query("USE BRANCH nope"))[0]
    assert err["C"] == "HD001"
    msgs = c.query("CREATE DATABASE BRANCH dev; USE BRANCH dev; SHOW BRANCHES")
    assert [p.rstrip(b"\0") for k, p in msgs if k == b"C"] == [b"CREATE DATABASE BRANCH", b"USE BRANCH", b"SELECT 2"]
    assert [r[0] for r in data_rows(msgs)] == ["main", "dev"]
    status = [p for k, p in msgs if k == b"S"]
    assert b"heliosdb.branch\0dev\0" in status
    c.close()


def _parse(c: RawClient, name: str, sql: str, types: list[int] = ()) -> None:  # type: ignore[assignment]
    c.send(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(types)) + b"".join(struct.pack("!I", t) for t in types))


def _bind_body(portal: str, stmt: str, params: list[bytes | None], rformats: list[int] = ()) -> bytes:  # type: ignore[assignment]
    body = cstr(portal) + cstr(stmt) + struct.pack("!h", 0) + struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    return body + struct.pack("!h", len(rformats)) + b"".join(struct.pack("!h", f) for f in rformats)


def _bind(c: RawClient, portal: str, stmt: str, params: list[bytes | None], rformats: list[int] = ()) -> None:  # type: ignore[assignment]
    c.send(b"B", _bind_body(portal, stmt, params, rformats))


def _client(server: ServerProcess, dbname: str, *setup: str) -> RawClient:
    """A started raw client that ran `setup` (simple queries)."""
    c = RawClient(server.port)
    c.startup(database=dbname)
    for stmt in setup:
        c.query(stmt)
    return c


def test_a_named_statement_whose_result_ddl_changed_is_refused_as_postgresql_does(server: ServerProcess,
                                                                                  dbname: str) -> None:
    """A prepared SELECT * after ADD COLUMN: 0A000 'cached plan must not change result type' with PostgreSQL's
    routine field (asyncpg prepares the statement again on exactly that); a new Parse reads the new column."""
    c = _client(server, dbname, "CREATE TABLE r (id int PRIMARY KEY, v text)", "INSERT INTO r VALUES (1, 'a')")
    _parse(c, "s", "SELECT * FROM r WHERE id = $1")
    c.send(b"D", b"S" + cstr("s"))
    c.send(b"S")
    assert [k for k, _ in c.until_ready()] == [b"1", b"t", b"T", b"Z"]
    other = _client(server, dbname, "ALTER TABLE r ADD COLUMN w int DEFAULT 5")
    other.close()
    _bind(c, "", "s", [b"1"])
    c.send(b"E", b"\0" + struct.pack("!i", 0))
    c.send(b"S")
    msgs = c.until_ready()
    (err,) = errors_in(msgs)
    assert (err["C"], err["M"], err["R"]) == ("0A000", "cached plan must not change result type",
                                              "RevalidateCachedQuery")
    _parse(c, "s2", "SELECT * FROM r WHERE id = $1")
    _bind(c, "", "s2", [b"1"])
    c.send(b"E", b"\0" + struct.pack("!i", 0))
    c.send(b"S")
    assert data_rows(c.until_ready()) == [["1", "a", "5"]]
    c.close()


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_a_named_write_whose_result_ddl_changed_is_refused_without_running(server: ServerProcess, dbname: str,
                                                                           branch: str) -> None:
    """INSERT ... RETURNING * prepared, then ADD COLUMN in another session: PostgreSQL's 0A000, and the row is
    not inserted (the write does not run); a new Parse returns the new column."""
    setup = ["CREATE TABLE r (id int PRIMARY KEY, v text)"]
    if branch == "dev":
        setup += ["CREATE DATABASE BRANCH dev", "USE BRANCH dev"]
    c = _client(server, dbname, *setup)
    _parse(c, "ins", "INSERT INTO r VALUES ($1, 'a') RETURNING *")
    c.send(b"D", b"S" + cstr("ins"))
    c.send(b"S")
    assert [k for k, _ in c.until_ready()] == [b"1", b"t", b"T", b"Z"]
    other = _client(server, dbname, *setup[1 + (branch == "dev"):], "ALTER TABLE r ADD COLUMN w int DEFAULT 5")
    other.close()
    _bind(c, "", "ins", [b"1"])
    c.send(b"E", b"\0" + struct.pack("!i", 0))
    c.send(b"S")
    msgs = c.until_ready()
    (err,) = errors_in(msgs)
    assert (err["C"], err["M"], err["R"]) == ("0A000", "cached plan must not change result type",
                                              "RevalidateCachedQuery")
    assert data_rows(c.query("SELECT count(*) FROM r")) == [["0"]]
    _parse(c, "ins2", "INSERT INTO r VALUES ($1, 'a') RETURNING *")
    _bind(c, "", "ins2", [b"1"])
    c.send(b"E", b"\0" + struct.pack("!i", 0))
    c.send(b"S")
    assert data_rows(c.until_ready()) == [["1", "a", "5"]]
    c.close()


def _row_description(payload: bytes) -> list[tuple[str, int, int]]:
    """(name, type OID, format) of each column of a RowDescription."""
    (n,), pos, out = struct.unpack("!h", payload[:2]), 2, []
    for _ in range(n):
        end = payload.index(b"\0", pos)
        _table, _col, oid, _size, _mod, fmt = struct.unpack("!IhIhih", payload[end + 1 : end + 19])
        out.append((payload[pos:end].decode(), oid, fmt))
        pos = end + 19
    return out


@pytest.mark.parametrize("branch", ["main", "dev"])
def test_describe_of_a_portal_does_not_run_it(server: ServerProcess, dbname: str, branch: str) -> None:
    """Parse, Bind, Describe portal, Sync without Execute: the portal's columns (in its result formats), and the
    write does not happen; Executed later in the same transaction, it runs once."""
    setup = ["CREATE TABLE w (id int PRIMARY KEY, v text)"]
    if branch == "dev":
        setup += ["CREATE DATABASE BRANCH dev", "USE BRANCH dev"]
    c = _client(server, dbname, *setup)
    _parse(c, "", "INSERT INTO w VALUES ($1, 'x') RETURNING id, v")
    _bind(c, "", "", [b"1"], [1, 0])
    c.send(b"D", b"P\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"2", b"T", b"Z"]
    assert _row_description(msgs[2][1]) == [("id", 23, 1), ("v", 25, 0)]
    assert data_rows(c.query("SELECT count(*) FROM w")) == [["0"]]
    # a named portal in a transaction: described (Flush), then executed once
    c.query("BEGIN")
    _parse(c, "", "INSERT INTO w VALUES ($1, 'y') RETURNING v")
    _bind(c, "p", "", [b"2"])
    c.send(b"D", b"P" + cstr("p"))
    c.send(b"H")
    assert [k for k, _ in (c.read(), c.read(), c.read())] == [b"1", b"2", b"T"]
    c.send(b"E", cstr("p") + struct.pack("!i", 0))
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"D", b"C", b"Z"] and data_rows(msgs) == [["y"]]
    c.query("COMMIT")
    assert data_rows(c.query("SELECT id, v FROM w")) == [["2", "y"]]
    # Describe of a read portal: its columns, nothing run (a function with an effect is not called)
    c.query("CREATE SEQUENCE w_seq")
    _parse(c, "", "SELECT nextval('w_seq') AS n")
    _bind(c, "", "", [])
    c.send(b"D", b"P\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert _row_description(msgs[2][1]) == [("n", 20, 0)]
    assert data_rows(c.query("SELECT nextval('w_seq')")) == [["1"]]
    c.close()


def test_extended_protocol(server: ServerProcess, dbname: str) -> None:
    c = RawClient(server.port)
    c.startup(database=dbname)
    _parse(c, "s1", "SELECT g, $1::text AS label FROM generate_series(1, $2) g")
    c.send(b"D", b"S" + cstr("s1"))
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"t", b"T", b"Z"]
    ptypes = struct.unpack("!hII", msgs[1][1])
    assert ptypes == (2, 25, 23)
    _bind(c, "p1", "s1", [b"x", b"5"])
    c.send(b"E", cstr("p1") + struct.pack("!i", 2))
    c.send(b"E", cstr("p1") + struct.pack("!i", 2))
    c.send(b"E", cstr("p1") + struct.pack("!i", 2))
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"2", b"D", b"D", b"s", b"D", b"D", b"s", b"D", b"C", b"Z"]
    assert data_rows(msgs)[0] == ["1", "x"] and msgs[-2][1] == b"SELECT 1\0"
    # binary results, a NULL parameter, Close, a statement that no longer exists
    _bind(c, "", "s1", [None, b"1"], [1])
    c.send(b"D", b"P\0")
    c.send(b"E", b"\0" + struct.pack("!i", 0))
    c.send(b"C", b"S" + cstr("s1"))
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"2", b"T", b"D", b"C", b"3", b"Z"]
    row = msgs[2][1]
    assert row == struct.pack("!hi", 2, 4) + struct.pack("!i", 1) + struct.pack("!i", -1)
    _bind(c, "", "s1", [b"a", b"1"])
    c.send(b"E", b"\0\0\0\0\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert errors_in(msgs)[0]["C"] == "26000" and msgs[-1] == (b"Z", b"I")
    # an error skips everything up to Sync; wrong parameter count
    _parse(c, "", "SELECT $1::int")
    _bind(c, "", "", [])
    c.send(b"E", b"\0\0\0\0\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"E", b"Z"] and errors_in(msgs)[0]["C"] == "08P01"
    # several statements before one Sync share one transaction
    c.query("CREATE TABLE t (id int PRIMARY KEY)")
    _parse(c, "ins", "INSERT INTO t VALUES ($1)")
    for v in (b"1", b"2", b"1"):
        _bind(c, "", "ins", [v])
        c.send(b"E", b"\0\0\0\0\0")
    c.send(b"S")
    msgs = c.until_ready()
    assert errors_in(msgs)[0]["C"] == "23505" and msgs[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT count(*) FROM t")) == [["0"]]
    # SQL DEALLOCATE reaches protocol-level statements (older libpq clients close them that way)
    assert c.query("DEALLOCATE ins")[0] == (b"C", b"DEALLOCATE\0")
    assert errors_in(c.query("DEALLOCATE ins"))[0]["C"] == "26000"
    c.close()


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _batch(sql: str, params: list[bytes], describe: bool = True, rformats: list[int] = ()) -> bytes:  # type: ignore[assignment]
    """Parse, Bind, [Describe,] Execute, Sync in the unnamed statement and portal, sent at once (as drivers do)."""
    parse = _message(b"P", cstr("") + cstr(sql) + struct.pack("!h", 0))
    return parse + _run_unnamed(_bind_body("", "", params, rformats), describe)  # type: ignore[arg-type]


def _run_unnamed(bind: bytes, describe: bool = True) -> bytes:
    """Bind, [Describe,] Execute, Sync of the unnamed portal."""
    return (_message(b"B", bind) + (_message(b"D", b"P\0") if describe else b"")
            + _message(b"E", b"\0" + struct.pack("!i", 0)) + _message(b"S", b""))


def test_extended_batches_of_plain_reads_are_relayed(server: ServerProcess, dbname: str) -> None:
    c = RawClient(server.port)
    c.startup(database=dbname)
    c.send_raw(_batch("SELECT $1::int + 1 AS n", [b"41"]))
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"2", b"T", b"D", b"C", b"Z"] and data_rows(msgs) == [["42"]]
    # the unnamed statement stays usable without a new Parse
    _bind(c, "", "", [b"1"])
    c.send(b"E", b"\0\0\0\0\0")
    c.send(b"S")
    assert data_rows(c.until_ready()) == [["2"]]
    # PostgreSQL's own error, as it is (its routine field too), and the session goes on
    c.send_raw(_batch("SELECT 1 / $1::int", [b"0"]))
    msgs = c.until_ready()
    err = errors_in(msgs)[0]
    assert (err["C"], msgs[-1]) == ("22012", (b"Z", b"I")) and err.get("R") == "int4div"
    # binary results, no Describe
    c.send_raw(_batch("SELECT $1::int * 2", [b"21"], describe=False, rformats=[1]))
    msgs = c.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"2", b"D", b"C", b"Z"]
    assert msgs[2][1] == struct.pack("!hi", 1, 4) + struct.pack("!i", 42)
    # inside a transaction the session runs it: same rows, the transaction's status
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    c.send_raw(_batch("SELECT $1::int + 1 AS n", [b"41"]))
    msgs = c.until_ready()
    assert data_rows(msgs) == [["42"]] and msgs[-1] == (b"Z", b"T")
    assert c.query("ROLLBACK")[-1] == (b"Z", b"I")
    c.close()


def _prepare_and_run(c: RawClient) -> tuple[Callable[[str, str], list[tuple[bytes, bytes]]],
                                             Callable[[str, list[bytes]], list[tuple[bytes, bytes]]]]:
    """libpq's PQprepare (Parse, Sync) and a run of a prepared statement in the unnamed portal."""

    def prepare(name: str, sql: str) -> list[tuple[bytes, bytes]]:
        c.send_raw(_message(b"P", cstr(name) + cstr(sql) + struct.pack("!h", 0)) + _message(b"S", b""))
        return c.until_ready()

    def run_prepared(name: str, params: list[bytes]) -> list[tuple[bytes, bytes]]:
        c.send_raw(_run_unnamed(_bind_body("", name, params)))  # type: ignore[arg-type]
        return c.until_ready()

    return prepare, run_prepared


def test_named_statements_of_plain_reads_live_on_the_storage_connection(server: ServerProcess, dbname: str) -> None:
    c = _client(server, dbname, "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items SELECT generate_series(1, 3)",
                "CREATE DATABASE BRANCH dev")

    prepare, run_prepared = _prepare_and_run(c)

    assert [k for k, _ in prepare("s1", "SELECT $1::int * 10")] == [b"1", b"Z"]
    assert [k for k, _ in prepare("cnt", "SELECT count(*) FROM items")] == [b"1", b"Z"]
    assert data_rows(run_prepared("s1", [b"4"])) == [["40"]]
    assert errors_in(prepare("s1", "SELECT 1"))[0]["C"] == "42P05"
    err = errors_in(run_prepared("s1", [b"4", b"5"]))[0]  # the client's name in the message, not ours
    assert err["C"] == "08P01" and '"s1"' in err["M"]
    # a plan follows the branch: the statement on the storage connection is planned again
    c.query("DELETE FROM items WHERE id = 1")
    assert data_rows(run_prepared("cnt", [])) == [["2"]]
    c.query("USE BRANCH dev")
    assert data_rows(run_prepared("cnt", [])) == [["3"]]
    c.query("USE BRANCH main")
    # in a transaction, and AS OF, the session runs the statement from its text
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    msgs = run_prepared("s1", [b"5"])
    assert data_rows(msgs) == [["50"]] and msgs[-1] == (b"Z", b"T")
    c.query("COMMIT")
    c.query("SET AS OF LSN 1")
    assert data_rows(run_prepared("cnt", [])) == [["0"]]
    c.query("SET AS OF NOW")  # drops views; psycopg closes its own statements only (storage/statements.py)
    storage = "SELECT count(*) FROM pg_prepared_statements WHERE starts_with(name, '_hdb_s')"
    assert data_rows(c.query(storage)) == [["2"]]
    assert data_rows(run_prepared("s1", [b"6"])) == [["60"]]
    assert data_rows(run_prepared("cnt", [])) == [["2"]]
    assert data_rows(c.query(storage)) == [["2"]]
    # Close removes it on both sides (the storage side at the next moment outside a transaction)
    c.send_raw(_message(b"C", b"S" + cstr("s1")) + _message(b"S", b""))
    assert [k for k, _ in c.until_ready()] == [b"3", b"Z"]
    assert data_rows(c.query(storage)) == [["1"]]
    assert errors_in(run_prepared("s1", [b"1"]))[0]["C"] == "26000"
    assert [k for k, _ in prepare("s1", "SELECT $1::int + 1")] == [b"1", b"Z"]
    assert data_rows(run_prepared("s1", [b"1"])) == [["2"]]
    c.query("DISCARD ALL")
    assert errors_in(run_prepared("cnt", []))[0]["C"] == "26000"
    assert data_rows(c.query(storage)) == [["0"]]
    c.close()


def test_extended_batches_in_transactions_and_writes_on_main_are_relayed(server: ServerProcess, dbname: str) -> None:
    c = _client(server, dbname, "CREATE TABLE t (id int PRIMARY KEY, v int)",
                "INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g", "CREATE DATABASE BRANCH dev")

    prepare, run_prepared = _prepare_and_run(c)

    # a Parse that fails leaves no statement behind: the name can be used again
    assert errors_in(prepare("q", "SELECT nosuch FROM t"))[0]["C"] == "42703"
    assert [k for k, _ in prepare("q", "SELECT v FROM t WHERE id = $1")] == [b"1", b"Z"]
    # pgbench -M prepared: BEGIN, writes and END prepared inside the transaction, as they come
    assert [k for k, _ in prepare("b", "BEGIN")] == [b"1", b"Z"]
    assert run_prepared("b", [])[-1] == (b"Z", b"T")
    assert [k for k, _ in prepare("upd", "UPDATE t SET v = v + $2 WHERE id = $1")] == [b"1", b"Z"]
    msgs = run_prepared("upd", [b"1", b"10"])
    assert (b"C", b"UPDATE 1\0") in msgs and msgs[-1] == (b"Z", b"T")
    assert data_rows(run_prepared("q", [b"1"])) == [["10"]]
    # a named portal of the session's survives the relayed batches of its transaction
    c.send_raw(_message(b"P", cstr("all") + cstr("SELECT id FROM t ORDER BY id") + struct.pack("!h", 0))
               + _message(b"B", _bind_body("p1", "all", [])) + _message(b"E", cstr("p1") + struct.pack("!i", 2))
               + _message(b"S", b""))
    assert data_rows(c.until_ready()) == [["1"], ["2"]]
    c.send_raw(_batch("UPDATE t SET v = v + $1 WHERE id = 2", [b"5"]))  # unnamed, relayed
    assert c.until_ready()[-1] == (b"Z", b"T")
    c.send_raw(_message(b"E", cstr("p1") + struct.pack("!i", 0)) + _message(b"S", b""))
    assert data_rows(c.until_ready()) == [["3"], ["4"], ["5"]]
    c.send_raw(_batch("COMMIT", []))
    assert c.until_ready()[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT v FROM t WHERE id <= 2 ORDER BY id")) == [["10"], ["5"]]
    # an error inside a transaction fails it, and ROLLBACK undoes its writes
    c.send_raw(_batch("BEGIN", []))
    assert c.until_ready()[-1] == (b"Z", b"T")
    run_prepared("upd", [b"3", b"7"])
    msgs = run_prepared("upd", [b"3", b"x"])
    err = errors_in(msgs)[0]  # PostgreSQL's own error (its routine field): relayed in the transaction
    assert (err["C"], msgs[-1]) == ("22P02", (b"Z", b"E")) and err.get("R", "").startswith("pg_strtoint32")
    assert errors_in(run_prepared("q", [b"3"]))[0]["C"] == "25P02"
    c.send_raw(_batch("ROLLBACK", []))
    assert c.until_ready()[-1] == (b"Z", b"I")
    assert data_rows(run_prepared("q", [b"3"])) == [["0"]]
    # a relayed COMMIT ends the transaction's portals, as PostgreSQL's own COMMIT does
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    c.send_raw(_message(b"B", _bind_body("p2", "all", [])) + _message(b"E", cstr("p2") + struct.pack("!i", 1))
               + _message(b"S", b""))
    assert data_rows(c.until_ready()) == [["1"]]
    assert c.query("COMMIT")[-1] == (b"Z", b"I")
    c.send_raw(_message(b"E", cstr("p2") + struct.pack("!i", 0)) + _message(b"S", b""))
    assert errors_in(c.until_ready())[0]["C"] == "34000"
    # on a branch the same statement writes the branch (the session runs it: writes there do not pass through)
    c.query("USE BRANCH dev")
    assert errors_in(run_prepared("upd", [b"4", b"40"])) == []
    assert data_rows(c.query("SELECT v FROM t WHERE id = 4")) == [["40"]]
    c.query("USE BRANCH main")
    assert data_rows(c.query("SELECT v FROM t WHERE id = 4")) == [["0"]]
    c.close()


# -- malformed input -------------------------------------------------------------------------------------------
def _fatal_and_closed(c: RawClient) -> dict[str, str]:
    err: dict[str, str] = {}
    while (m := c.read()) is not None:
        if m[0] == b"E":
            err = fields(m[1])
    c.close()
    return err


def test_malformed_messages_get_an_error_and_a_closed_connection(server: ServerProcess, dbname: str) -> None:
    bad_startups = [
        struct.pack("!i", 0x7FFFFFFF),                       # absurd startup length
        struct.pack("!ii", 8, 0x00020000),                   # protocol 2
        struct.pack("!ii", 12, 196608) + b"user",            # no terminator
        struct.pack("!ii", 16, codec.CANCEL_REQUEST) + b"\0" * 4,  # short cancel request
    ]
    for data in bad_startups:
        c = RawClient(server.port)
        c.send_raw(data)
        c.sock.shutdown(1) if data.startswith(struct.pack("!ii", 16, codec.CANCEL_REQUEST)) else None
        _fatal_and_closed(c)
    bad_messages = [
        b"Q" + struct.pack("!i", 0x7FFFFFF0),                # oversized
        b"Q" + struct.pack("!i", 2),                         # length below 4
        b"Z" + struct.pack("!i", 4),                         # not a frontend message
        b"B" + struct.pack("!i", 8) + b"\0\0\xff\xff",       # truncated Bind
        b"P" + struct.pack("!i", 9) + b"\0x\0\xff\xff",      # negative parameter type count
        b"D" + struct.pack("!i", 7) + b"X\0\0",              # bad Describe target
        b"p" + struct.pack("!i", 5) + b"x",                  # password message after startup
    ]  # (text that is not UTF-8 fails its statement only: see test_text_not_in_the_client_encoding...)
    for data in bad_messages:
        c = RawClient(server.port)
        c.startup(database=dbname)
        c.send_raw(data)
        err = _fatal_and_closed(c)
        assert err.get("S") == "FATAL", data
    # a message cut short by the client going away
    c = RawClient(server.port)
    c.startup(database=dbname)
    c.send_raw(b"Q" + struct.pack("!i", 100) + b"SELECT")
    c.close()
    with server.connect(dbname) as conn:
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_fuzz_random_and_truncated_messages(server: ServerProcess, dbname: str) -> None:
    rng = random.Random(1234)
    kinds = b"QPBDECSHXdcfFpZ?\0"
    for i in range(int(os.environ.get("HELIOSDB_FUZZ_ROUNDS", "120"))):
        c = RawClient(server.port, timeout=10)
        try:
            if i % 4 == 0:
                c.send_raw(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
            else:
                c.startup(database=dbname)
                for _ in range(rng.randint(1, 4)):
                    payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
                    n = len(payload) + 4 if rng.random() < 0.8 else rng.randint(-5, (1 << 31) - 1)
                    msg = bytes([kinds[rng.randrange(len(kinds))]]) + struct.pack("!i", n) + payload
                    c.send_raw(msg[: rng.randint(1, len(msg))] if rng.random() < 0.3 else msg)
            c.sock.shutdown(1)
            while c.read() is not None:
                pass
        except OSError:
            pass
        c.close()
    assert server.alive()
    with server.connect(dbname) as conn:
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
    assert "Traceback" not in server.log_text()


# -- authentication, cancel, vanished clients ------------------------------------------------------------------
def test_scram_authentication(scram_server: ServerProcess, dbname: str, admin: psycopg.Connection) -> None:
    admin.execute("DROP ROLE IF EXISTS helios_alice")
    admin.execute("CREATE ROLE helios_alice LOGIN PASSWORD 'correct horse'")
    try:
        with scram_server.connect(dbname, user="helios_alice", password="correct horse") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        for user, password in (("helios_alice", "wrong"), ("no_such_user", "x")):
            c = RawClient(scram_server.port)
            msgs = scram_login(c, user, password, dbname)
            err = errors_in(msgs)
            assert err and err[0]["C"] == "28P01" and err[0]["S"] == "FATAL"
            c.close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            scram_server.connect(dbname, user="helios_alice", password="wrong")
        # nothing is reachable before authentication
        c = RawClient(scram_server.port)
        c.send_raw(c.startup_packet(user="helios_alice", database=dbname))
        assert c.read() is not None  # AuthenticationSASL
        c.send(b"Q", b"SELECT 1\0")
        assert _fatal_and_closed(c).get("C") == "08P01"
    finally:
        admin.execute("DROP ROLE helios_alice")


def test_cancel_only_cancels_that_session(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as a, server.connect(dbname, autocommit=True) as b:
        done: list[float] = []

        def other() -> None:
            t = time.monotonic()
            b.execute("SELECT pg_sleep(1.0)")
            done.append(time.monotonic() - t)

        th = threading.Thread(target=other)
        th.start()
        threading.Timer(0.3, a.cancel_safe).start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            a.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - t0 < 10
        th.join()
        assert done and done[0] >= 0.9
        assert a.execute("SELECT 1").fetchone() == (1,)


def test_client_that_vanishes_mid_transaction_is_rolled_back(server: ServerProcess, dbname: str,
                                                              admin: psycopg.Connection) -> None:
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute("CREATE TABLE v (id int)")
    c = RawClient(server.port)
    c.startup(database=dbname, application_name="vanisher")
    c.query("BEGIN")
    c.query("INSERT INTO v VALUES (1)")
    c.sock.close()
    deadline = time.monotonic() + 10
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state LIKE 'idle in%%'",
                        (dbname,)).fetchone() != (0,):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with server.connect(dbname) as conn:
        assert conn.execute("SELECT count(*) FROM v").fetchone() == (0,)


def test_listen_notify_backend_pid_and_relayed_errors(server: ServerProcess, dbname: str) -> None:
    with server.connect(dbname, autocommit=True) as a, server.connect(dbname, autocommit=True) as b:
        assert a.execute("SELECT pg_backend_pid()").fetchone() == (a.info.backend_pid,)
        a.execute("LISTEN chan")
        threading.Timer(0.2, lambda: b.execute("NOTIFY chan, 'idle'")).start()
        got = next(a.notifies(timeout=10))
        assert (got.channel, got.payload, got.pid) == ("chan", "idle", b.info.backend_pid)
        b.execute("NOTIFY chan, 'queued'")
        assert a.execute("SELECT 1").fetchone() == (1,)
        assert next(a.notifies(timeout=5)).payload == "queued"
        with pytest.raises(psycopg.errors.DivisionByZero) as exc:
            b.execute("SELECT 1/0")  # a plain read: relayed to PostgreSQL as it is
        assert exc.value.diag.message_primary == "division by zero"
        assert b.execute("SELECT count(*) FROM generate_series(1, 50000)").fetchone() == (50000,)
        assert len(b.execute("SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g").fetchall()) == 20000


def test_relayed_and_session_statements_take_turns_on_one_storage_connection(server: ServerProcess,
                                                                             dbname: str) -> None:
    # Relayed reads put the storage socket in blocking mode; every other statement must find it
    # back in libpq's non-blocking mode, also with results larger than libpq's buffer.
    c = _client(server, dbname, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    big = "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g"
    for _ in range(2):
        assert len(data_rows(c.query(big))) == 20000  # relayed (quick path)
        assert c.query("BEGIN")[-1] == (b"Z", b"T")
        assert len(data_rows(c.query(big))) == 20000  # in a transaction: through the session
        # one 100 kB row: libpq reads again while its buffer has room (a blocking socket would hang)
        assert data_rows(c.query("SELECT length(repeat('z', 100000) || g) FROM generate_series(1, 3) g")) \
            == [["100001"], ["100001"], ["100001"]]
        assert data_rows(c.query("SELECT repeat('z', 100000) AS z"))[0][0] == "z" * 100000
        c.query("INSERT INTO t SELECT g, repeat('y', 50) FROM generate_series(1, 3000) g")
        assert c.query("COMMIT")[-1] == (b"Z", b"I")
        assert data_rows(c.query("SELECT count(*) FROM t")) == [["3000"]]  # relayed
        rows = data_rows(c.query("SELECT id FROM t AS OF NOW ORDER BY id"))  # rewritten: the session
        assert len(rows) == 3000 and rows[0] == ["1"]
        assert data_rows(c.query("SELECT 'é' AS e")) == [["é"]]  # the full check, then relayed
        c.query("DELETE FROM t")
    c.close()


def test_relayed_transactions_on_main_keep_the_session_in_step(server: ServerProcess, dbname: str) -> None:
    c = _client(server, dbname, "CREATE TABLE t (id int PRIMARY KEY, v int)", "CREATE DATABASE BRANCH dev")
    # relayed: BEGIN, writes, reads, an error, ROLLBACK; the status PostgreSQL reports goes through
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    assert c.query("INSERT INTO t VALUES (1, 10)")[-1] == (b"Z", b"T")
    assert data_rows(c.query("SELECT v FROM t")) == [["10"]]
    msgs = c.query("INSERT INTO t VALUES (1, 11)")
    assert errors_in(msgs)[0]["C"] == "23505" and msgs[-1] == (b"Z", b"E")
    assert errors_in(c.query("SELECT 1"))[0]["C"] == "25P02"
    assert c.query("ROLLBACK")[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT count(*) FROM t")) == [["0"]]
    # several statements in one Query (the session runs them) inside a relayed BEGIN: they join the
    # transaction instead of opening and committing one of their own
    c.query("BEGIN")
    c.query("INSERT INTO t VALUES (5, 50)")
    assert c.query("INSERT INTO t VALUES (6, 60); INSERT INTO t VALUES (7, 70)")[-1] == (b"Z", b"T")
    assert c.query("ROLLBACK")[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT count(*) FROM t")) == [["0"]]
    # a statement the session runs after a relayed BEGIN knows it is in a transaction
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    c.query("INSERT INTO t VALUES (2, 20)")
    msgs = c.query("USE BRANCH dev FOR TRANSACTION")
    assert not errors_in(msgs) and msgs[-1] == (b"Z", b"T")
    assert data_rows(c.query("SELECT count(*) FROM t")) == [["0"]]  # dev forked before the insert
    assert c.query("COMMIT")[-1] == (b"Z", b"I")
    assert data_rows(c.query("SELECT id, v FROM t")) == [["2", "20"]]
    # each committed write has its LSN, in order
    c.query("UPDATE t SET v = 21 WHERE id = 2")
    rows = data_rows(c.query("SELECT v FROM t VERSIONS BETWEEN LSN MINVALUE AND MAXVALUE ORDER BY versions_startlsn"))
    assert rows == [["20"], ["21"]]
    c.close()


def test_repeated_queries_run_as_prepared_statements_with_a_querys_answers(server: ServerProcess,
                                                                           dbname: str) -> None:
    c = _client(server, dbname, "CREATE TABLE t (id int PRIMARY KEY, v int, big bigint)",
                "INSERT INTO t SELECT g, g * 10, g::bigint * 1000000000 FROM generate_series(1, 300) g",
                "CREATE DATABASE BRANCH dev")
    made = "SELECT count(*) FROM pg_prepared_statements WHERE starts_with(name, '_hdb_a')"

    def kinds(msgs: list[tuple[bytes, bytes]]) -> bytes:
        return b"".join(k for k, _ in msgs)

    for i in range(10, 16):  # the first is a Query, the next ones run the statement made from it
        msgs = c.query(f"SELECT v FROM t WHERE id = {i}")
        assert kinds(msgs) == b"TDCZ" and data_rows(msgs) == [[str(i * 10)]], (i, msgs)
    assert data_rows(c.query(made)) == [["1"]]
    # a parameter has the literal's type: int4 here, as the first run (a relayed Query) reports it
    descriptions = {c.query("SELECT id + 100, id - 3000000000 FROM t WHERE id = 10")[0] for _ in range(3)}
    assert len(descriptions) == 1
    for i in (11, 12):
        msgs = c.query(f"SELECT id FROM t WHERE big = {i * 1000000000}")  # an int8 literal
        assert kinds(msgs) == b"TDCZ" and data_rows(msgs) == [[str(i)]]
    for i in (20, 21, 22):  # writes on main: no NoData or BindComplete reaches the client
        msgs = c.query(f"UPDATE t SET v = v + 1000 WHERE id = {i}")
        assert kinds(msgs) == b"CZ" and msgs[0][1] == b"UPDATE 1\0"
    assert data_rows(c.query("SELECT v FROM t WHERE id >= 20 AND id <= 23 ORDER BY id")) == [
        ["1200"], ["1210"], ["1220"], ["230"]]
    # an error points where it does in the client's text, first as a Query, then from the statement
    sql = "SELECT v FROM t WHERE id = 12345 AND nosuch"
    first, second = (errors_in(c.query(sql))[0] for _ in range(2))
    assert first["C"] == second["C"] == "42703" and first["P"] == second["P"] == str(sql.index("nosuch") + 1)
    # the plan follows the branch
    c.query("USE BRANCH dev")
    c.query("UPDATE t SET v = -1 WHERE id = 13")
    assert data_rows(c.query("SELECT v FROM t WHERE id = 13")) == [["-1"]]
    c.query("USE BRANCH main")
    assert data_rows(c.query("SELECT v FROM t WHERE id = 13")) == [["130"]]
    # a DROP makes psycopg close its own statements, not these (storage/statements.py)
    c.query("CREATE TABLE other (x int)")
    c.query("DROP TABLE other")
    assert data_rows(c.query(made)) == [["4"]]
    assert data_rows(c.query("SELECT v FROM t WHERE id = 14")) == [["140"]]
    # what PostgreSQL refuses as a statement runs as the client's Query: its own answer
    for _ in range(3):
        assert errors_in(c.query("SELECT 1 WHERE 1 = 10[1]"))[0]["M"] == 'syntax error at or near "["'
    other = _client(server, dbname)
    for i in range(10, 13):
        assert data_rows(c.query(f"SELECT * FROM t WHERE id = {i}")) == [[str(i), str(i * 10), str(i * 10 ** 9)]]
    other.query("ALTER TABLE t ADD COLUMN w int DEFAULT 7")  # the made statement's result type is gone
    assert data_rows(c.query("SELECT * FROM t WHERE id = 13")) == [["13", "130", str(13 * 10 ** 9), "7"]]
    assert data_rows(c.query("SELECT * FROM t WHERE id = 14")) == [["14", "140", str(14 * 10 ** 9), "7"]]
    other.close()
    c.query("CREATE TABLE u (a int, b int)")
    c.query("CREATE UNIQUE INDEX ON u (a) WHERE b > 10")
    for i in range(10):  # a generic plan cannot prove b > $2 implies b > 10: PostgreSQL refuses it
        msgs = c.query(f"INSERT INTO u VALUES ({i}, 20) ON CONFLICT (a) WHERE b > 10 DO NOTHING")
        assert msgs[0] == (b"C", b"INSERT 0 1\0"), msgs
    # a Query without its terminating NUL is malformed, also when its text is known
    c.send_raw(b"Q" + struct.pack("!i", 4 + len(b"SELECT v FROM t WHERE id = 10X")) + b"SELECT v FROM t WHERE id = 10X")
    assert errors_in(c.until_ready())[0]["C"] == "08P01"
    c = _client(server, dbname)
    # in a transaction the Query runs as it is: a statement PostgreSQL refused there (DDL elsewhere
    # changed its result type) would fail the client's transaction
    for i in (15, 16):
        assert len(data_rows(c.query(f"SELECT * FROM t WHERE id = {i}"))[0]) == 4
    assert data_rows(c.query(made)) == [["1"]]
    assert c.query("BEGIN")[-1] == (b"Z", b"T")
    other = _client(server, dbname)
    other.query("ALTER TABLE t ADD COLUMN x int DEFAULT 8")
    other.close()
    msgs = c.query("SELECT * FROM t WHERE id = 17")
    assert data_rows(msgs) == [["17", "170", str(17 * 10 ** 9), "7", "8"]] and msgs[-1] == (b"Z", b"T")
    assert c.query("COMMIT")[0] == (b"C", b"COMMIT\0")
    # at most 256 statements per connection: the oldest are closed
    for i in range(300):
        for _ in range(2):
            sql = f"SELECT id FROM t WHERE id = {i + 1000} - 999 + 0 * {100 + i}"  # 300 texts
            assert data_rows(c.query(sql)) == [[str(i + 1)]]
    assert data_rows(c.query(made)) == [["256"]]
    c.close()


@pytest.mark.skipif(not (corpus_dir() / "select4.test").is_file(), reason="no sqllogictest corpus")
def test_sqllogictest_queries_answer_the_same_from_their_prepared_statements(server: ServerProcess,
                                                                            dbname: str) -> None:
    """select4's queries that get parameters: the answers from the statement made from the text (the
    second and third run) are the Query's own (the first run, relayed as it is), errors included."""
    c = _client(server, dbname)
    checked = 0
    for rec in active_records(parse_file(corpus_dir() / "select4.test"), "postgresql"):
        if isinstance(rec, Statement):
            c.query(rec.sql)
        elif isinstance(rec, Query) and checked < 300:
            payload = rec.sql.encode() + b"\0"
            if parameterize(payload[:-1]) is None or not quick_plain_select(payload):
                continue
            checked += 1
            # Without ORDER BY the row order is the plan's: the prepared statement's generic plan may
            # join in another order, so rows compare as a multiset unless the record says nosort.
            first, second, third = (_answer(c.query(rec.sql), ordered=rec.sort == "nosort") for _ in range(3))
            assert first == second == third, rec.sql
    assert checked == 300
    c.close()


def _answer(messages: list[tuple[bytes, bytes]], *, ordered: bool) -> list[tuple[bytes, object]]:
    """The messages of one Query, errors by their fields; data rows sorted unless `ordered`."""
    answer: list[tuple[bytes, object]] = [(k, fields(p) if k == b"E" else p) for k, p in messages]
    if ordered:
        return answer
    return [m for m in answer if m[0] != b"D"] + sorted(m for m in answer if m[0] == b"D")


def test_a_client_that_does_not_read_blocks_nobody(server: ServerProcess, dbname: str) -> None:
    slow = RawClient(server.port)
    slow.startup(database=dbname)
    slow.send(b"Q", b"SELECT repeat('x', 1000) FROM generate_series(1, 200000)\0")  # ~200 MB, never read
    time.sleep(0.5)
    t0 = time.monotonic()
    with server.connect(dbname) as conn:
        for _ in range(20):
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert time.monotonic() - t0 < 10
    slow.close()


# -- shutdown -----------------------------------------------------------------------------------------------------
def test_sigterm_with_clients_connected(helios_data_dir: Path, dbname: str) -> None:
    srv = ServerProcess(helios_data_dir, "--shutdown-timeout", "5")
    try:
        idle = srv.connect(dbname, autocommit=True)
        in_tx = srv.connect(dbname)
        in_tx.execute("SELECT 1")
        busy = srv.connect(dbname, autocommit=True)
        result: list[object] = []

        def run() -> None:
            result.append(busy.execute("SELECT pg_sleep(1.0), 'finished'").fetchone())

        th = threading.Thread(target=run)
        th.start()
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        th.join(15)
        assert result and result[0][1] == "finished"  # type: ignore[index]
        assert srv.proc.wait(30) == 0
        for conn in (idle, in_tx, busy):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
            conn.close()
        log = srv.log_text()
        assert log.count(" connection 127.0.0.1:") == 3 and "stopped" in log
    finally:
        srv.stop()


_TYPED = ("CREATE TABLE typed (id int PRIMARY KEY, iv interval, tz timestamptz, ts timestamp, d date, t time, "
          "ttz timetz, f8 float8, f4 float4, tza timestamptz[])")
_TYPED_ROW = ("(1, '1 year 2 mons 3 days -04:05:06.5', '2024-01-02 03:04:05.25+00', '2024-01-02 03:04:05', "
              "'2024-01-02', '03:04:05.123456', '03:04:05-05:53:28', 0.1::float8 + 0.2::float8, '3.4028235e+38', "
              "'{2024-01-02 03:04:05+00,infinity}')")
_NOT_ISO = ("SET intervalstyle = iso_8601", "SET datestyle = 'Postgres, DMY'", "SET timezone = 'Asia/Kolkata'",
            "SET extra_float_digits = 0")
_TYPED_COLS = "iv, tz, ts, d, t, ttz, f8, f4, tza"


def _binary_row(conn: psycopg.Connection, sql: str) -> list[bytes | None]:
    res = conn.pgconn.exec_params(sql.encode(), [], result_format=1)
    assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.get_error_message()
    return [res.get_value(0, c) for c in range(res.nfields)]


def test_binary_results_of_statements_heliosdb_runs_are_postgresqls(server: ServerProcess, dbname: str,
                                                                    helios_instance: object) -> None:
    """Values HeliosDB turns into binary itself (AS OF, writes on a branch with RETURNING) are what PostgreSQL
    sends, whatever the client's DateStyle, IntervalStyle, TimeZone and extra_float_digits."""
    with server.connect(dbname, autocommit=True) as c:
        c.execute(_TYPED)
        c.execute(f"INSERT INTO typed VALUES {_TYPED_ROW}")
        c.execute("CREATE DATABASE BRANCH dev")
    with psycopg.connect(**helios_instance.conninfo(dbname), autocommit=True) as pg:  # type: ignore[attr-defined]
        for stmt in _NOT_ISO:
            pg.execute(stmt)
        want = _binary_row(pg, f"SELECT {_TYPED_COLS} FROM typed")
        want_text = pg.execute("SELECT tz::text, f8::text FROM typed").fetchone()
    assert want[0] == struct.pack("!qii", -14706500000, 3, 14)
    with server.connect(dbname, autocommit=True, options="-c heliosdb.branch=dev") as c:
        for stmt in _NOT_ISO:
            c.execute(stmt)
        assert _binary_row(c, f"SELECT {_TYPED_COLS} FROM typed") == want
        assert _binary_row(c, f"SELECT {_TYPED_COLS} FROM typed AS OF NOW") == want
        assert _binary_row(c, f"INSERT INTO typed VALUES {_TYPED_ROW.replace('(1,', '(2,')} "
                              f"RETURNING {_TYPED_COLS}") == want
        assert _binary_row(c, f"INSERT INTO typed VALUES {_TYPED_ROW} ON CONFLICT (id) DO UPDATE SET d = "
                              f"excluded.d RETURNING {_TYPED_COLS}") == want
        c.execute("BEGIN")
        assert _binary_row(c, f"SELECT {_TYPED_COLS} FROM typed AS OF NOW WHERE id = 2") == want
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT nope FROM typed AS OF NOW", binary=True)
        c.execute("ROLLBACK")
        # the client's settings hold after each
        assert c.execute("SELECT current_setting('extra_float_digits'), current_setting('IntervalStyle'), "
                         "current_setting('DateStyle')").fetchone() == ("0", "iso_8601", "Postgres, DMY")
    # one column in binary, one in text: the text one in the client's settings
    c2 = _client(server, dbname, *_NOT_ISO)
    _parse(c2, "", "SELECT f8, tz, f8 FROM typed AS OF NOW")
    _bind(c2, "", "", [], [1, 0, 0])
    c2.send(b"E", b"\0\0\0\0\0")
    c2.send(b"S")
    msgs = c2.until_ready()
    row = next(p for k, p in msgs if k == b"D")
    assert row[6:14] == want[6]
    assert data_rows([(b"D", struct.pack("!h", 2) + row[14:])]) == [[want_text[0], want_text[1]]]
    c2.close()


def test_prepare_reports_postgresqls_errors_at_parse(server: ServerProcess, dbname: str) -> None:
    """libpq's PQprepare (Parse, Sync) of a statement PostgreSQL refuses fails, and fails the transaction."""
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int)")
        c.execute("CREATE DATABASE BRANCH dev")
        pg = c.pgconn
        for name, sql, state in ((b"s1", b"selec 1", "42601"), (b"s2", b"SELECT nosuchcol FROM pg_class", "42703"),
                                 (b"", b"SELECT 1 +", "42601"), (b"s3", b"SELECT nope FROM t AS OF NOW", "42703")):
            res = pg.prepare(name, sql)
            assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR, sql
            assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == state.encode(), sql
        assert pg.describe_prepared(b"s1").status == psycopg.pq.ExecStatus.FATAL_ERROR  # never made
        assert pg.prepare(b"ok", b"SELECT id FROM t WHERE id = $1").status == psycopg.pq.ExecStatus.COMMAND_OK
        c.execute("USE BRANCH dev")
        assert pg.prepare(b"w", b"INSERT INTO t VALUES ($1)").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert pg.exec_prepared(b"w", [b"1"]).status == psycopg.pq.ExecStatus.COMMAND_OK
        pg.exec_(b"BEGIN")
        assert pg.prepare(b"s4", b"selec 1").status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert pg.transaction_status == psycopg.pq.TransactionStatus.INERROR
        pg.exec_(b"ROLLBACK")
        assert c.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_client_encodings_other_than_utf8_are_refused_however_set(server: ServerProcess, dbname: str) -> None:
    with pytest.raises(psycopg.OperationalError, match='client_encoding "LATIN1" is not supported'):
        server.connect(dbname, options="-c client_encoding=LATIN1")
    with server.connect(dbname, autocommit=True, options="-c CLIENT_ENCODING=utf-8") as c:
        c.execute("CREATE TABLE t (v text)")
        for stmt in ("SET client_encoding = 'LATIN1'", "SET SESSION client_encoding TO latin1", "SET NAMES 'WIN1252'",
                     "SELECT set_config('client_encoding', 'LATIN1', false)"):
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                c.execute(stmt)
        for stmt in ("SET client_encoding = 'UTF8'", "SET NAMES DEFAULT", "RESET client_encoding"):
            c.execute(stmt)
        assert c.info.parameter_status("client_encoding") == "UTF8"
        c.execute("INSERT INTO t VALUES (%s)", ("é",))
        assert c.execute("SELECT v, 'ü' FROM t AS OF NOW").fetchone() == ("é", "ü")


def test_storage_session_ended_by_postgresql_gives_its_error(server: ServerProcess, dbname: str,
                                                            admin: psycopg.Connection) -> None:
    """PostgreSQL ending the storage session (pg_terminate_backend, idle_in_transaction_session_timeout)
    reaches the client as PostgreSQL's own FATAL, relayed or through the session."""
    with server.connect(dbname, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int)")
    for sql in ("SELECT 1", "SELECT id FROM t AS OF NOW"):
        c = server.connect(dbname, autocommit=True)
        admin.execute("SELECT pg_terminate_backend(%s)", (c.info.backend_pid,))
        time.sleep(0.3)
        with pytest.raises(psycopg.Error) as exc:
            c.execute(sql)
        assert exc.value.sqlstate == "57P01", (sql, str(exc.value))
        c.close()
    for sql in ("SELECT 1", "SELECT id FROM t AS OF NOW"):
        c = server.connect(dbname)
        c.execute("SET idle_in_transaction_session_timeout = '200ms'")
        c.execute("SELECT 1")
        time.sleep(0.8)
        with pytest.raises(psycopg.Error) as exc:
            c.execute(sql)
        assert exc.value.sqlstate == "25P03", (sql, str(exc.value))
        c.close()
