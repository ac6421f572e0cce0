"""SCRAM-SHA-256 (RFC 5802 / RFC 7677) on the server side, as PostgreSQL does it.

The verifier is PostgreSQL's own (pg_authid.rolpassword when
password_encryption = scram-sha-256):

    SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>

Channel binding is not offered (no TLS). For a role that does not exist or has
no SCRAM verifier a mock exchange runs to the end and then fails, so a client
cannot tell which user names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
_NONCE_BYTES = 18
_MOCK_SECRET = os.urandom(32)


class AuthFailed(Exception):
    """The exchange failed: wrong password, unknown role, or a malformed message."""

    def __init__(self, message: str = "", protocol: bool = False) -> None:
        super().__init__(message)
        self.protocol = protocol  # a malformed message (08P01) rather than a wrong password (28P01)


@dataclass(frozen=True)
class Verifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def parse_verifier(text: str | None) -> Verifier | None:
    """PostgreSQL's SCRAM verifier, or None (no password, an md5 hash, garbage)."""
    if not text or not text.startswith(MECHANISM + "$"):
        return None
    try:
        _mech, iter_salt, keys = text.split("$")
        iterations, salt = iter_salt.split(":")
        stored, server = keys.split(":")
        return Verifier(int(iterations), base64.b64decode(salt, validate=True),
                        base64.b64decode(stored, validate=True), base64.b64decode(server, validate=True))
    except (ValueError, TypeError):
        return None


def make_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """A verifier for `password` (tests and tools; PostgreSQL makes its own)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"{MECHANISM}${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def _mock_verifier(user: str) -> Verifier:
    digest = hmac.new(_MOCK_SECRET, user.encode(), "sha256").digest()
    return Verifier(4096, digest[:16], b"\0" * 32, b"\0" * 32)


def _attrs(msg: str) -> list[tuple[str, str]]:
    out = []
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthFailed("malformed SCRAM message", protocol=True)
        out.append((part[0], part[2:]))
    return out


class ScramExchange:
    """One server-side exchange: first() answers the client-first message, final() the client-final."""

    def __init__(self, user: str, verifier: Verifier | None) -> None:
        self.user = user
        self.mock = verifier is None
        self.verifier = verifier or _mock_verifier(user)
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._gs2 = ""

    def first(self, data: bytes) -> bytes:
        try:
            msg = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFailed("malformed SCRAM message", protocol=True) from None
        parts = msg.split(",", 2)
        if len(parts) != 3:
            raise AuthFailed("malformed SCRAM message", protocol=True)
        cbind, authzid, bare = parts
        if cbind.startswith("p="):
            raise AuthFailed("channel binding is not supported by this server", protocol=True)
        if cbind not in ("n", "y") or (authzid and not authzid.startswith("a=")):
            raise AuthFailed("malformed SCRAM message", protocol=True)
        if authzid:
            raise AuthFailed("client uses authorization identity, which is not supported", protocol=True)
        attrs = _attrs(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise AuthFailed("malformed SCRAM message", protocol=True)
        if any(k == "m" for k, _ in attrs):
            raise AuthFailed("SCRAM extensions are not supported", protocol=True)
        client_nonce = attrs[1][1]
        if not all(0x21 <= ord(c) <= 0x7E and c != "," for c in client_nonce):
            raise AuthFailed("malformed SCRAM message", protocol=True)
        self._gs2 = f"{cbind},{authzid},"
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(os.urandom(_NONCE_BYTES)).decode()
        salt = base64.b64encode(self.verifier.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self.verifier.iterations}"
        return self._server_first.encode()

    def final(self, data: bytes) -> bytes:
        """Check the client's proof; the server-final message, or AuthFailed."""
        try:
            msg = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFailed("malformed SCRAM message", protocol=True) from None
        attrs = _attrs(msg)
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise AuthFailed("malformed SCRAM message", protocol=True)
        try:
            cbind = base64.b64decode(attrs[0][1], validate=True).decode()
            proof = base64.b64decode(attrs[-1][1], validate=True)
        except (ValueError, UnicodeDecodeError):
            raise AuthFailed("malformed SCRAM message", protocol=True) from None
        if cbind != self._gs2:
            raise AuthFailed("SCRAM channel binding check failed", protocol=True)
        if attrs[1][1] != self._nonce:
            raise AuthFailed("SCRAM nonce mismatch", protocol=True)
        without_proof = msg[: msg.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        v = self.verifier
        signature = hmac.new(v.stored_key, auth_message, "sha256").digest()
        if len(proof) != len(signature) or self.mock:
            raise AuthFailed("password authentication failed")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), v.stored_key):
            raise AuthFailed("password authentication failed")
        server_signature = hmac.new(v.server_key, auth_message, "sha256").digest()
        return b"v=" + base64.b64encode(server_signature)
