"""A registry's HTTP answer turned into syncer's errors (see errors.py).

Registries explain failures in a JSON body (`{"errors": [{"code", "message"}]}`); the
status picks the exception class, the body's codes travel with it.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

import httpx

from syncer.errors import (
    AuthenticationError,
    ErrorDetail,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
    UnsupportedError,
)
from syncer.registry.ratelimit import parse_retry_after

MAX_ERROR_BODY = 64 * 1024

# Failures before the registry got the request: it was never reached at all.
_CONNECTING = (httpx.ConnectError, httpx.ConnectTimeout)
# What resolvers and sockets say, for errors that arrive as text only (aiohttp's, a test's).
_NAME_RESOLUTION = (
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "no address associated with hostname",
    "name resolution",
    "getaddrinfo failed",
)


def network_failure(exc: httpx.HTTPError, url: str) -> str:
    """A network fault in words a user can act on, naming the host and the cause:
    `cannot reach HOST: name resolution failed`, not `ConnectError`.

    This is the one place transport exceptions become text. Only the host is named (a
    URL may carry a signed query; the host never carries credentials)."""
    try:
        target = exc.request.url
    except RuntimeError:  # an exception raised without its request
        target = httpx.URL(url)
    host = target.host + (f":{target.port}" if target.port else "")
    verb = "cannot reach" if isinstance(exc, _CONNECTING) else "connection to"
    cause = _cause(exc)
    return f"{verb} {host}: {cause}" if verb == "cannot reach" else f"{verb} {host} failed: {cause}"


def _cause(exc: httpx.HTTPError) -> str:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain and len(chain) < 8:
        chain.append(link)
        link = link.__cause__ or link.__context__
    text = " ".join(str(e) for e in chain).lower()
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            # aiohttp's subclass keeps the reason on the error it wraps.
            inner = getattr(e, "certificate_error", e)
            why = getattr(inner, "verify_message", None)
            return "TLS handshake failed: certificate verify failed" + (f": {why}" if why else "")
        if isinstance(e, ssl.SSLError):
            return f"TLS handshake failed: {(e.reason or str(e)).lower().replace('_', ' ')}"
    if "certificate verify failed" in text:
        return "TLS handshake failed: certificate verify failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
        words in text for words in _NAME_RESOLUTION
    ):
        return "name resolution failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "connection refused"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "connection reset" in text:
        return "connection reset"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection unexpectedly"
    if "ssl" in text or "tls" in text:
        return "TLS handshake failed"
    return f"network error ({type(exc).__name__})"


def attempts_note(attempts: int, seconds: float) -> str:
    """`(5 attempts over 6 s)`: how hard syncer tried before giving up."""
    shown = f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
    return f"({attempts} attempt{'s' if attempts != 1 else ''} over {shown} s)"


def error_from_response(resp: httpx.Response, body: bytes, registry: str) -> RegistryError:
    details: list[ErrorDetail] = []
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        for e in data["errors"]:
            if isinstance(e, dict):
                details.append(ErrorDetail(str(e.get("code", "")), str(e.get("message", ""))[:200]))
    status = resp.status_code
    kw: dict[str, Any] = dict(
        status=status, method=resp.request.method, url=str(resp.request.url), errors=tuple(details)
    )
    if status == 401:
        return AuthenticationError(
            f"unauthorized at {registry}: run `syncer login {registry}` or set "
            f"registries.{registry}.credentials",
            **kw,
        )
    if status == 403:
        return PermissionDenied(f"access denied by {registry}", **kw)
    if status == 404:
        return NotFound(f"not found at {registry}", **kw)
    if status == 405:
        return UnsupportedError(f"operation not supported by {registry}", **kw)
    if status == 429:
        return RateLimited(
            f"rate limited by {registry}",
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
            **kw,
        )
    ctype = resp.headers.get("content-type", "")
    hint = " (the server answered HTML: is the endpoint a registry?)" if "html" in ctype else ""
    return RegistryError(f"unexpected answer from {registry}{hint}", **kw)


async def read_error_body(resp: httpx.Response) -> bytes:
    """Read at most MAX_ERROR_BODY of an error body, then close."""
    data = b""
    try:
        async for chunk in resp.aiter_bytes():
            data += chunk
            if len(data) >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    finally:
        await resp.aclose()
    return data
