"""Registry authentication: challenges, Basic, and Bearer tokens with a cache.

The transport asks `Authenticator.header(scopes)` before each request and calls
`Authenticator.challenged(...)` when a registry answers 401. Tokens are cached per
scope set until shortly before they expire; a token for `pull,push` serves a
later `pull` request on the same repository.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from syncer.errors import (
    AuthenticationError,
    ResponseTooLarge,
    TransportError,
    redact_url,
)
from syncer.registry.credentials import Credential
from syncer.registry.options import TlsMode
from syncer.registry.origin import check_credentials_channel
from syncer.registry.transport.bodies import read_capped
from syncer.registry.transport.responses import network_failure

# Token servers answer a few hundred bytes; anything huge is broken or hostile.
MAX_TOKEN_RESPONSE = 1024 * 1024
# Docker's default when a token server omits expires_in.
DEFAULT_TOKEN_TTL = 60.0
# Refresh a little early so a token does not expire in flight.
EXPIRY_SLACK = 10.0

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic" | "bearer" | other
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse `Bearer realm="...",service="...",scope="..."` (and Basic) challenges."""
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end() :]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end() :]
        challenges.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return challenges


def repository_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _covers(have: frozenset[str], want: frozenset[str]) -> bool:
    """Does a token granted for `have` also serve `want`? (push implies the pull we asked with)."""
    held: dict[str, set[str]] = {}
    for scope in have:
        kind_name, _, actions = scope.rpartition(":")
        held.setdefault(kind_name, set()).update(actions.split(","))
    for scope in want:
        kind_name, _, actions = scope.rpartition(":")
        if not set(actions.split(",")) <= held.get(kind_name, set()):
            return False
    return True


@dataclass
class _Token:
    value: str
    scopes: frozenset[str]
    expires: float


class Authenticator:
    """Authentication state for one registry (one credential)."""

    def __init__(
        self,
        registry: str,
        credential: Credential | None,
        *,
        secure: bool,
        tls: TlsMode,
        http: httpx.AsyncClient,
    ) -> None:
        self.registry = registry
        self._credential = credential
        self._secure = secure
        self._tls = tls
        self._http = http
        self._challenge: Challenge | None = None
        self._tokens: list[_Token] = []
        self._lock = asyncio.Lock()
        self._fixed: str | None = None  # a bearer token obtained outside the challenge flow

    def _check_channel(self, url: str) -> None:
        check_credentials_channel(self.registry, url, self._tls)

    def basic_from_the_start(self, url: str) -> None:
        """Send Basic credentials from the first request to `url` on, unasked: a Docker
        index answers anonymous searches and never challenges (docker does the same)."""
        if self._credential is not None:
            self._check_channel(url)
            self._challenge = Challenge("basic")

    def bearer_from_the_start(self, url: str, token: str) -> None:
        """Send `Bearer token` to the registry's own origin from now on: an API that issues
        its token at a login endpoint (Docker Hub's) and never challenges."""
        self._check_channel(url)
        self._fixed = token

    async def header(self, scopes: frozenset[str]) -> str | None:
        """The Authorization value to send, or None (not yet challenged / anonymous basic)."""
        if self._fixed is not None:
            return f"Bearer {self._fixed}"
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return self._basic_header()
        if ch.scheme == "bearer":
            token = await self._token(scopes)
            return f"Bearer {token}"
        return None

    def _basic_header(self) -> str | None:
        cred = self._credential
        if cred is None or cred.username is None or cred.password is None:
            return None
        raw = f"{cred.username}:{cred.password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def challenged(self, response: httpx.Response, scopes: frozenset[str]) -> bool:
        """Record a 401's challenge; True if a retry with (new) auth can succeed."""
        header = response.headers.get("www-authenticate", "")
        usable = [c for c in parse_www_authenticate(header) if c.scheme in ("basic", "bearer")]
        if not usable:
            return False
        new = next((c for c in usable if c.scheme == "bearer"), usable[0])
        previous = self._challenge
        self._challenge = new
        if new.scheme == "basic":
            if self._credential is None:
                return False
            self._check_channel(str(response.request.url))
            # Retrying Basic with the same credentials that were just rejected is pointless.
            return previous is None or previous.scheme != "basic"
        # A 401 while holding a token means it was revoked or under-scoped: drop it.
        self._tokens = [t for t in self._tokens if not _covers(t.scopes, scopes)]
        return True

    async def _token(self, scopes: frozenset[str]) -> str:
        async with self._lock:
            now = time.monotonic()
            self._tokens = [t for t in self._tokens if t.expires > now]
            for tok in self._tokens:
                if _covers(tok.scopes, scopes):
                    return tok.value
            tok = await self._fetch_token(scopes)
            self._tokens.append(tok)
            return tok.value

    async def _fetch_token(self, scopes: frozenset[str]) -> _Token:
        assert self._challenge is not None
        realm = self._challenge.realm
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthenticationError(f"registry {self.registry} sent an invalid token realm")
        if self._secure and parts.scheme != "https":
            raise AuthenticationError(
                f"registry {self.registry} uses HTTPS but its token realm "
                f"{redact_url(realm)} is plain HTTP; refusing"
            )
        service = self._challenge.params.get("service")
        cred = self._credential
        headers: dict[str, str] = {}
        params: list[tuple[str, str | int | float | bool | None]] = (
            [("service", service)] if service else []
        )
        params += [("scope", s) for s in sorted(scopes)]
        try:
            if cred is not None and cred.identity_token is not None:
                self._check_channel(realm)
                form = dict(params)
                form.update(
                    grant_type="refresh_token",
                    refresh_token=cred.identity_token.get_secret_value(),
                    client_id="syncer",
                    scope=" ".join(sorted(scopes)),
                )
                req = self._http.build_request("POST", realm, data=form)
            else:
                basic = self._basic_header()
                if basic is not None:
                    self._check_channel(realm)
                    headers["Authorization"] = basic
                req = self._http.build_request("GET", realm, params=params, headers=headers)
            resp = await self._http.send(req, stream=True)
            try:
                body = await read_capped(resp, MAX_TOKEN_RESPONSE)
            except ResponseTooLarge:
                raise AuthenticationError("token response too large", url=realm) from None
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            raise TransportError(
                f"token server {redact_url(realm)} for {self.registry} failed: "
                + network_failure(exc, realm)
            ) from None
        if resp.status_code != 200:
            hint = "check the credentials" if resp.status_code in (401, 403) else "try again later"
            raise AuthenticationError(
                f"token server refused ({hint})", status=resp.status_code, method="GET", url=realm
            )
        return _parse_token(body, scopes, realm)


def _parse_token(body: bytes, scopes: frozenset[str], realm: str) -> _Token:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AuthenticationError("token server answered something that is not JSON", url=realm)
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthenticationError("token server answered without a token", url=realm)
    ttl = data.get("expires_in")
    ttl_s = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else DEFAULT_TOKEN_TTL
    return _Token(value, scopes, time.monotonic() + max(ttl_s - EXPIRY_SLACK, ttl_s / 2))
