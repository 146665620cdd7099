"""A minimal Docker token-auth server (the `auth.token` realm) for tests.

Runs a threaded `http.server` on a free loopback port in a daemon thread and answers
`GET /token?service=...&scope=...` with an RS256 JWT that docker-registry 2.8 accepts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class TokenRequest(NamedTuple):
    """One request the server answered (any status). `username` is the Basic user presented,
    or None for an anonymous request."""

    scopes: tuple[str, ...]
    username: str | None


class TokenServer:
    """Issues tokens for `users` (name -> password).

    - anonymous callers get `pull` on repositories only (nothing on `registry:catalog:*`);
    - an authenticated user gets exactly what was asked for;
    - a wrong password or unknown user gets 401;
    - `deny` holds `(repository_name, action)` pairs never granted to anyone (to provoke
      "insufficient scope" at the registry);
    - `ttl` (seconds, mutable) sets `expires_in` and the JWT `exp`. docker-registry 2.8 allows
      60 s of clock leeway on `exp`, so a short ttl alone never gets a token rejected; set
      `jwt_ttl` (mutable, e.g. -120) to put a different, already-expired `exp` in the JWT
      while `expires_in` still claims `ttl`;
    - `fail_next` (mutable) makes the next N requests answer 500.
    """

    def __init__(
        self,
        users: dict[str, str],
        signing_key: rsa.RSAPrivateKey,
        cert: x509.Certificate,
        service: str,
        issuer: str,
        *,
        deny: Iterable[tuple[str, str]] = (),
        ttl: int = 300,
    ) -> None:
        self.users = dict(users)
        self.signing_key = signing_key
        self.cert = cert
        self.service = service
        self.issuer = issuer
        self.deny: set[tuple[str, str]] = set(deny)
        self.ttl = ttl
        self.jwt_ttl: int | None = None
        self.fail_next = 0
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick shutdown() at teardown
            name=f"token-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # --- test helpers -------------------------------------------------------------------

    def token_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def issue(self, subject: str, access: list[dict[str, Any]], ttl: int | None = None) -> str:
        """Mint a token directly (e.g. to hand-craft an expired or narrow token in a test)."""
        now = int(time.time())
        if ttl is None:
            ttl = self.ttl if self.jwt_ttl is None else self.jwt_ttl
        claims = {
            "iss": self.issuer,
            "aud": self.service,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"x5c": [self._x5c]})

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) -----------------------------------

    def _grant(self, scope: str, username: str | None) -> dict[str, Any] | None:
        # "repository:team/app:pull,push" -> type, name, actions. Names never contain ':'.
        try:
            rtype, rest = scope.split(":", 1)
            name, actions_s = rest.rsplit(":", 1)
        except ValueError:
            return None
        wanted = [a for a in actions_s.split(",") if a]
        if username is None:
            wanted = [a for a in wanted if rtype == "repository" and a == "pull"]
        granted = [a for a in wanted if (name, a) not in self.deny]
        return {"type": rtype, "name": name, "actions": granted}

    def _answer(self, query: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        params = parse_qs(query)
        scopes = tuple(s for v in params.get("scope", []) for s in v.split(" ") if s)
        username, password = _parse_basic(authorization)
        with self._lock:
            self.requests.append(TokenRequest(scopes, username))
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}
        if username is not None and self.users.get(username) != password:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        if params.get("service", [self.service])[0] != self.service:
            return 400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]}
        access = [g for g in (self._grant(s, username) for s in scopes) if g is not None]
        token = self.issue(username or "", access)
        issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {
            "token": token,
            "access_token": token,
            "expires_in": self.ttl,
            "issued_at": issued,
        }


def _parse_basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", None  # malformed credentials count as a failed login, not anonymous
    user, _, pw = raw.partition(":")
    return user, pw


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real token service

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND", "message": parts.path}]})
                return
            status, body = server._answer(parts.query, self.headers.get("Authorization"))
            self._send(status, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="token-server"')
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; `server.requests` is the record

    return Handler
