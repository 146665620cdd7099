"""The request value the session's steps share: built once, never changed, sent as is
(httpx.MockTransport: pure logic, no network)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from syncer.errors import NotFound
from syncer.registry.options import RegistryConfig, RetryConfig
from syncer.registry.transport.request import RegistryRequest, ReplayableBody
from syncer.registry.transport.session import RegistrySession

FAST = RegistryConfig(retry=RetryConfig(attempts=3, backoff_s=0.0, max_backoff_s=0.0))


async def _stream() -> AsyncIterator[bytes]:
    yield b"x"


class _Again(ReplayableBody):
    def __aiter__(self) -> AsyncIterator[bytes]:
        return _stream()


async def test_request_resolves_the_path_merges_params_and_keeps_the_callers_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        headers["Accept"] = "changed while it is sent"
        return httpx.Response(206)

    headers = {"Accept": "a"}
    mock = httpx.MockTransport(handler)
    t = RegistrySession("reg.test", "https://reg.test/", FAST, None, http_transport=mock)
    resp = await t.request(
        "GET", "/v2/r/tags/list?n=10", headers=headers, params={"last": "b"}, ok=(200, 206)
    )
    assert resp.status_code == 206
    assert [(str(s.url), s.headers["accept"]) for s in seen] == [
        ("https://reg.test/v2/r/tags/list?n=10&last=b", "a")
    ]
    await t.aclose()


def test_a_request_is_frozen_and_named_without_its_query() -> None:
    req = RegistryRequest("GET", "https://reg.test/v2/r/tags/list?n=10&last=b")
    assert (req.ok, req.retry, req.scopes) == ((200,), True, frozenset())
    assert req.what == "GET https://reg.test/v2/r/tags/list?<redacted>"  # queries may sign
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.method = "PUT"  # type: ignore[misc]


def test_the_what_of_a_request_never_carries_credentials() -> None:
    req = RegistryRequest("GET", "https://bob:pw@cdn.test/blob?X-Amz-Signature=secret")
    assert "pw" not in req.what and "secret" not in req.what


@pytest.mark.parametrize(
    ("content", "retry", "replayable", "restartable"),
    [
        (None, True, True, True),
        (b"manifest", True, True, True),
        (_Again(), True, True, True),
        (_stream(), True, False, False),  # a one-shot stream is sent once at most
        (b"chunk", False, True, False),  # retry=False: the caller resumes instead
    ],
)
def test_which_requests_may_be_sent_again(
    content: object, retry: bool, replayable: bool, restartable: bool
) -> None:
    req = RegistryRequest("PUT", "https://reg.test/x", content=content, retry=retry)  # type: ignore[arg-type]
    assert (req.replayable, req.restartable) == (replayable, restartable)


async def test_one_request_value_serves_every_try() -> None:
    seen: list[httpx.Request] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(503 if len(seen) < 3 else 404)

    t = RegistrySession(
        "reg.test", "https://reg.test", FAST, None, http_transport=httpx.MockTransport(handler)
    )
    req = RegistryRequest("HEAD", t.url("/v2/r/manifests/latest"), headers={"Accept": "m"})
    with pytest.raises(NotFound):
        async with t.send(req):
            pass
    assert [(s.method, str(s.url), s.headers["accept"]) for s in seen] == [
        ("HEAD", "https://reg.test/v2/r/manifests/latest", "m")
    ] * 3
    assert dict(req.headers) == {"Accept": "m"}  # no step wrote into it
    await t.aclose()
