"""Transport behaviour under injected faults (httpx.MockTransport, no network)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr

from syncer.errors import (
    AuthenticationError,
    InsecureCredentials,
    NotFound,
    RateLimited,
    TransportError,
)
from syncer.registry.credentials import Credential
from syncer.registry.options import RegistryConfig, RetryConfig
from syncer.registry.ratelimit import parse_retry_after
from syncer.registry.transport.auth import parse_www_authenticate
from syncer.registry.transport.request import ReplayableBody
from syncer.registry.transport.session import RegistrySession

FAST = RegistryConfig(retry=RetryConfig(attempts=4, backoff_s=0.0, max_backoff_s=0.0))
CRED = Credential(username="alice", password=SecretStr("s3cret-pw"))

Handler = Callable[[httpx.Request], httpx.Response]


def make(
    handler: Handler,
    *,
    base: str = "https://reg.test",
    config: RegistryConfig = FAST,
    cred: Credential | None = None,
) -> tuple[RegistrySession, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    t = RegistrySession("reg.test", base, config, cred, http_transport=httpx.MockTransport(record))
    return t, seen


def test_parse_challenges() -> None:
    ch = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert len(ch) == 1 and ch[0].scheme == "bearer"
    assert ch[0].params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }
    assert parse_www_authenticate('Basic realm="r"')[0].params == {"realm": "r"}


@pytest.mark.parametrize(
    "target",
    [
        "https://cdn.test/blob?sig=abc",  # another host: a CDN with a signed URL
        "https://reg.test:8443/storage/a",  # another port of the same host: another origin
    ],
)
async def test_redirect_leaving_the_registry_drops_authorization(target: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if str(req.url) == target:
            return httpx.Response(200, content=b"data")
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return httpx.Response(307, headers={"Location": target})

    t, seen = make(handler, cred=CRED)
    resp = await t.request("GET", "/v2/r/blobs/sha256:x", scopes=frozenset())
    assert resp.content == b"data"
    registry_get, redirected_get = seen[-2], seen[-1]
    assert registry_get.url.host == "reg.test" and registry_get.url.scheme == "https"
    assert registry_get.headers["authorization"].startswith("Basic ")
    assert redirected_get.url == target
    assert "authorization" not in redirected_get.headers
    await t.aclose()


async def test_redirect_on_same_host_keeps_authorization() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        if req.url.path == "/v2/r/blobs/a":
            return httpx.Response(307, headers={"Location": "/storage/a"})
        return httpx.Response(200, content=b"ok")

    t, seen = make(handler, cred=CRED)
    await t.request("GET", "/v2/r/blobs/a")
    assert seen[-1].url.path == "/storage/a"
    assert seen[-1].headers["authorization"].startswith("Basic ")
    await t.aclose()


async def test_retries_5xx_then_succeeds() -> None:
    answers = iter([503, 502, 200])

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(next(answers), content=b"x")

    t, seen = make(handler)
    resp = await t.request("GET", "/v2/r/tags/list")
    assert resp.status_code == 200
    assert [r.url.path for r in seen].count("/v2/r/tags/list") == 3
    await t.aclose()


async def test_connection_errors_retry_then_give_up_cleanly() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=req)

    t, seen = make(handler)
    with pytest.raises(
        TransportError, match=r"^cannot reach reg\.test: connection refused \(4 attempts over "
    ):
        await t.request("GET", "/v2/r/tags/list")
    assert len(seen) == FAST.retry.attempts
    await t.aclose()


@pytest.mark.parametrize("status", [400, 403, 404, 405])
async def test_client_errors_are_not_retried(status: int) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(
            status, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "nope"}]}
        )

    t, seen = make(handler)
    with pytest.raises(Exception) as info:
        await t.request("GET", "/v2/r/manifests/x")
    assert "MANIFEST_UNKNOWN" in str(info.value)
    assert len(seen) == 1
    if status == 404:
        assert isinstance(info.value, NotFound)
    await t.aclose()


async def test_retry_after_short_is_honoured_long_is_deferred() -> None:
    calls = {"n": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        calls["n"] += 1
        if req.url.path == "/v2/short" and calls["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if req.url.path == "/v2/long":
            return httpx.Response(
                429,
                headers={"Retry-After": "3600"},
                json={"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]},
            )
        return httpx.Response(200)

    t, _ = make(handler)
    assert (await t.request("GET", "/v2/short")).status_code == 200
    with pytest.raises(RateLimited) as info:
        await t.request("GET", "/v2/long")
    assert info.value.retry_after == 3600
    assert "TOOMANYREQUESTS" in str(info.value)
    await t.aclose()


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


async def test_ratelimit_headers_are_recorded() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
        )

    t, _ = make(handler)
    await t.request("HEAD", "/v2/r/manifests/x")
    assert (t.ratelimit.limit, t.ratelimit.remaining) == (100, 76)
    await t.aclose()


def _token_registry(tokens: list[str]) -> Handler:
    """A registry whose realm issues numbered tokens; it rejects token-1 (revoked)."""

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "auth.test":
            tokens.append(req.url.params.get("scope", ""))
            return httpx.Response(200, json={"token": f"token-{len(tokens)}", "expires_in": 300})
        auth = req.headers.get("authorization", "")
        if auth in ("", "Bearer token-1"):
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="svc"'
                },
            )
        return httpx.Response(200, json={"auth": auth})

    return handler


async def test_bearer_token_is_refreshed_once_after_401() -> None:
    scopes: list[str] = []
    t, seen = make(_token_registry(scopes))
    scope = frozenset({"repository:r:pull"})
    resp = await t.request("GET", "/v2/r/tags/list", scopes=scope)
    assert json.loads(resp.content) == {"auth": "Bearer token-2"}
    assert scopes == ["repository:r:pull", "repository:r:pull"]
    # Cached: a second request fetches no new token.
    await t.request("GET", "/v2/r/tags/list", scopes=scope)
    assert len(scopes) == 2
    assert sum(1 for r in seen if r.url.host == "auth.test") == 2
    await t.aclose()


async def test_push_token_serves_later_pull() -> None:
    scopes: list[str] = []
    t, _ = make(_token_registry(scopes))
    await t.request("GET", "/v2/r/x", scopes=frozenset({"repository:r:pull"}))  # token-1 then 2
    await t.request("GET", "/v2/r/x", scopes=frozenset({"repository:r:pull,push"}))
    n = len(scopes)
    await t.request("GET", "/v2/r/x", scopes=frozenset({"repository:r:pull"}))
    assert len(scopes) == n
    assert "repository:r:pull,push" in scopes
    await t.aclose()


async def test_persistent_401_raises_authentication_error() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    t, _ = make(handler, cred=CRED)
    with pytest.raises(AuthenticationError) as info:
        await t.request("GET", "/v2/r/tags/list")
    assert "s3cret-pw" not in str(info.value)
    assert "syncer login reg.test" in str(info.value)
    await t.aclose()


async def test_credentials_refused_over_plain_http() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    t, seen = make(handler, base="http://reg.test", cred=CRED)
    with pytest.raises(InsecureCredentials, match="tls: disabled"):
        await t.request("GET", "/v2/r/tags/list")
    assert all("authorization" not in r.headers for r in seen)
    await t.aclose()


async def test_credentials_allowed_over_http_when_configured() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return httpx.Response(200)

    config = FAST.model_copy(update={"tls": "disabled"})
    t, seen = make(handler, base="http://reg.test", cred=CRED, config=config)
    await t.request("GET", "/v2/r/tags/list")
    sent = seen[-1].headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(sent) == b"alice:s3cret-pw"
    await t.aclose()


async def test_plain_http_realm_refused_for_https_registry() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token"'}
        )

    t, seen = make(handler, cred=CRED)
    with pytest.raises(AuthenticationError, match="plain HTTP"):
        await t.request("GET", "/v2/r/tags/list", scopes=frozenset({"repository:r:pull"}))
    assert not any(r.url.host == "auth.test" for r in seen)
    await t.aclose()


async def test_oversized_token_response_is_rejected() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "auth.test":
            return httpx.Response(200, content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token"'}
        )

    t, _ = make(handler)
    with pytest.raises(AuthenticationError, match="too large"):
        await t.request("GET", "/v2/r/tags/list", scopes=frozenset({"repository:r:pull"}))
    await t.aclose()


async def test_token_server_cookies_are_not_replayed() -> None:
    scopes: list[str] = []
    registry = _token_registry(scopes)

    def handler(req: httpx.Request) -> httpx.Response:
        resp = registry(req)
        if req.url.host == "auth.test":
            resp.headers["Set-Cookie"] = "sid=tracking; Domain=auth.test; Path=/"
        return resp

    t, seen = make(handler)
    await t.request("GET", "/v2/r/tags/list", scopes=frozenset({"repository:r:pull"}))
    token_requests = [r for r in seen if r.url.host == "auth.test"]
    assert len(token_requests) == 2  # token-1 was refused, token-2 fetched
    assert all("cookie" not in r.headers for r in token_requests)
    await t.aclose()


class Replayable(ReplayableBody):
    """A body each iteration of which starts over, as upload.py's PATCH bodies do."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.passes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.passes += 1
        for i in range(0, len(self.data), 4):
            yield self.data[i : i + 4]


async def test_a_401_mid_upload_resends_a_replayable_body_whole() -> None:
    scopes: list[str] = []
    bodies: list[bytes] = []
    registry = _token_registry(scopes)

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "reg.test":
            bodies.append(req.content)
        return registry(req)

    # No auth (challenge), token-1 (refused), token-2 (accepted): three full sends.
    t, _ = make(handler)
    body = Replayable(b"0123456789")
    resp = await t.request(
        "PATCH", "/v2/r/blobs/uploads/u", scopes=frozenset({"repository:r:push"}), content=body
    )
    assert json.loads(resp.content) == {"auth": "Bearer token-2"}
    assert body.passes == 3 and bodies == [b"0123456789"] * 3
    await t.aclose()


async def test_a_401_mid_upload_of_a_one_shot_body_fails_fast() -> None:
    """A generator body cannot be sent twice: the transport says so at once (the upload
    restarts from its source) instead of sending nothing and waiting for a timeout."""
    scopes: list[str] = []
    t, seen = make(_token_registry(scopes))

    async def one_shot() -> AsyncIterator[bytes]:
        yield b"0123456789"

    with pytest.raises(TransportError, match="authenticate again"):
        await t.request(
            "PUT",
            "/v2/r/blobs/uploads/u",
            scopes=frozenset({"repository:r:push"}),
            content=one_shot(),
        )
    assert len(seen) == 1  # the 401; not a second, empty send
    await t.aclose()
