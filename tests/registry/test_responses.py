"""A registry's error answer turned into syncer's exception tree (transport/responses.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from syncer.errors import (
    AuthenticationError,
    ErrorDetail,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
    UnsupportedError,
)
from syncer.registry.transport.responses import MAX_ERROR_BODY, error_from_response, read_error_body

URL = "https://reg.test/v2/team/app/manifests/1.0"


def answer(status: int, body: bytes = b"", **headers: str) -> RegistryError:
    resp = httpx.Response(status, headers=headers, request=httpx.Request("GET", URL))
    return error_from_response(resp, body, "reg.test")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (405, UnsupportedError),
        (429, RateLimited),
        (400, RegistryError),
        (409, RegistryError),
        (500, RegistryError),
        (503, RegistryError),
    ],
)
def test_the_status_picks_the_class(status: int, cls: type[RegistryError]) -> None:
    err = answer(status)
    assert type(err) is cls
    assert (err.status, err.method, err.url) == (status, "GET", URL)
    assert str(err).startswith(f"GET {URL} -> {status}: ")


def test_unauthorized_names_the_fix() -> None:
    err = answer(401)
    assert "run `syncer login reg.test` or set registries.reg.test.credentials" in str(err)


def test_the_registry_error_codes_travel_with_it() -> None:
    body = json.dumps(
        {
            "errors": [
                {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}},
                {"code": "NAME_UNKNOWN", "message": "x" * 500},
                "not an object",
            ]
        }
    ).encode()
    err = answer(404, body, **{"content-type": "application/json"})
    assert err.codes == ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    assert err.errors[0] == ErrorDetail("MANIFEST_UNKNOWN", "manifest unknown")
    assert err.errors[1].message == "x" * 200  # a registry's essay is cut short
    assert str(err).endswith(f"[MANIFEST_UNKNOWN: manifest unknown; NAME_UNKNOWN: {'x' * 200}]")


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>oops</html>", b"[1, 2]", b'{"errors": "DENIED"}', b'{"errors": [1]}', b"\xff"],
)
def test_a_body_that_is_not_the_error_format_is_ignored(body: bytes) -> None:
    err = answer(403, body)
    assert type(err) is PermissionDenied
    assert err.errors == ()
    assert str(err) == f"GET {URL} -> 403: access denied by reg.test"


def test_missing_fields_of_an_error_become_empty_strings() -> None:
    err = answer(400, b'{"errors": [{}]}')
    assert err.errors == (ErrorDetail("", ""),)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "30"}, 30.0), ({"retry-after": "soon"}, None), ({}, None)],
)
def test_rate_limited_carries_retry_after(headers: dict[str, str], expected: float | None) -> None:
    err = answer(429, b"", **headers)
    assert isinstance(err, RateLimited)
    assert err.retry_after == expected


def test_an_html_answer_hints_at_a_wrong_endpoint() -> None:
    html = answer(502, b"<html>bad gateway</html>", **{"content-type": "text/html; charset=utf-8"})
    assert str(html) == (
        f"GET {URL} -> 502: unexpected answer from reg.test "
        "(the server answered HTML: is the endpoint a registry?)"
    )
    plain = answer(502, b"{}", **{"content-type": "application/json"})
    assert str(plain) == f"GET {URL} -> 502: unexpected answer from reg.test"


def test_the_url_in_an_error_is_redacted() -> None:
    signed = "https://user:pw@cdn.test/blob?X-Amz-Signature=s3cret&token=t0ken"
    resp = httpx.Response(500, request=httpx.Request("GET", signed))
    err = error_from_response(resp, b"", "reg.test")
    assert err.url == "https://cdn.test/blob?<redacted>"
    for secret in ("s3cret", "t0ken", "user", "pw@"):
        assert secret not in str(err)


class Chunks(httpx.AsyncByteStream):
    """A response body served in fixed chunks, counting how many were pulled."""

    def __init__(self, size: int, count: int, *, broken_after: int | None = None) -> None:
        self.size, self.count, self.broken_after = size, count, broken_after
        self.pulled = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.count):
            if i == self.broken_after:
                raise httpx.ReadError("connection reset")
            self.pulled += 1
            yield bytes([65 + i % 26]) * self.size

    async def aclose(self) -> None:
        self.closed = True


async def test_an_error_body_is_read_up_to_the_cap_then_closed() -> None:
    body = Chunks(16 * 1024, 100)  # 1.6 MB offered
    resp = httpx.Response(500, stream=body, request=httpx.Request("GET", URL))
    data = await read_error_body(resp)
    assert len(data) == MAX_ERROR_BODY == 64 * 1024
    assert body.pulled == 4  # and not one chunk more
    assert body.closed


async def test_an_error_body_that_breaks_gives_what_arrived() -> None:
    body = Chunks(1000, 10, broken_after=3)
    resp = httpx.Response(500, stream=body, request=httpx.Request("GET", URL))
    data = await read_error_body(resp)
    assert data == b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    assert body.closed
