"""A registry's HTTP answer turned into syncer's errors (see errors.py).

Registries explain failures in a JSON body (`{"errors": [{"code", "message"}]}`); the
status picks the exception class, the body's codes travel with it.
"""

from __future__ import annotations

import json
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
