"""The pull-budget policy (syncer/registry/ratelimit.py) as the transport and client use it.

Pure logic: httpx.MockTransport answers, and counts what reached "the registry".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from syncer.errors import Deferred, RateLimited, RegistryError
from syncer.registry.client import RegistryClient
from syncer.registry.options import RateLimitConfig, RegistryConfig, RetryConfig
from syncer.registry.ratelimit import PullBudget
from syncer.registry.reference import Reference

Handler = Callable[[httpx.Request], httpx.Response]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % OCI_INDEX.encode()


def _rate(remaining: int, limit: int = 6) -> dict[str, str]:
    return {"ratelimit-limit": f"{limit};w=21600", "ratelimit-remaining": f"{remaining};w=21600"}


def _client(handler: Handler, min_remaining: int = 2) -> tuple[RegistryClient, list[str]]:
    seen: list[str] = []

    def record(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        seen.append(f"{req.method} {req.url.path}")
        return handler(req)

    config = RegistryConfig(
        ratelimit=RateLimitConfig(min_remaining=min_remaining),
        retry=RetryConfig(attempts=5, backoff_s=0.0, max_backoff_s=0.0),
    )
    client = RegistryClient(
        lambda _r: config,
        credentials=lambda _r, _c: None,
        http_transport=httpx.MockTransport(record),
    )
    return client, seen


REF = Reference.parse("hub.test/library/app:1")


async def test_remaining_zero_with_a_short_retry_after_is_final() -> None:
    """The 429 reports remaining 0 (a six-hour window): its Retry-After: 2 is not a
    promise of room in two seconds. One request, no retry, nothing more sent after."""

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "HEAD":
            return httpx.Response(200, headers={**_rate(5), "docker-content-digest": "sha256:x"})
        return httpx.Response(429, headers={**_rate(0), "Retry-After": "2"})

    client, seen = _client(handler, min_remaining=0)
    await client.head_manifest(REF)
    started = time.monotonic()
    with pytest.raises(RateLimited):
        await client.get_manifest(REF)
    assert time.monotonic() - started < 1.5
    assert seen == ["HEAD /v2/library/app/manifests/1", "GET /v2/library/app/manifests/1"]
    with pytest.raises(Deferred):
        await client.get_manifest(REF.with_tag("2"))
    assert len(seen) == 2  # no further counted request
    await client.head_manifest(REF)  # HEADs stay free
    state = client.ratelimits()["hub.test"]
    assert (state["limit"], state["remaining"]) == (6, 0)
    assert "ratelimit-remaining 0" in state["deferred"]
    await client.aclose()


async def test_429_from_a_registry_without_a_budget_is_retried_as_before() -> None:
    answers = iter([httpx.Response(429), httpx.Response(429, headers={"Retry-After": "0"})])

    def handler(req: httpx.Request) -> httpx.Response:
        return next(answers, None) or httpx.Response(
            200, content=MANIFEST, headers={"content-type": OCI_INDEX}
        )

    client, seen = _client(handler)
    got = await client.get_manifest(REF)
    assert got.data == MANIFEST and len(seen) == 3
    assert client.ratelimits() == {}  # no budget reported, nothing deferred
    await client.aclose()


async def test_a_retry_needs_room_of_its_own() -> None:
    """Budget 3, reserve 2: the GET fits; repeating it after a 503 would spend the reserve."""

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "HEAD":
            return httpx.Response(200, headers={**_rate(3), "docker-content-digest": "sha256:x"})
        return httpx.Response(503, headers=_rate(2))

    client, seen = _client(handler)
    await client.head_manifest(REF)
    with pytest.raises((Deferred, RegistryError)):
        await client.get_manifest(REF)
    assert seen.count("GET /v2/library/app/manifests/1") == 1
    await client.aclose()


def test_reservations_are_taken_whole_and_released() -> None:
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=2))
    budget.update(httpx.Headers(_rate(6)))
    first = budget.reserve(2)
    second = budget.reserve(2)
    with pytest.raises(Deferred) as refused:
        budget.reserve(1)  # 6 - 4 reserved would leave 1, under min_remaining 2
    assert "min_remaining is 2" in str(refused.value)
    first.take()
    budget.sending(first=True)
    budget.update(httpx.Headers(_rate(5)), counted=True)
    first.release()  # one of its two was never needed
    assert budget.reserved_unused == 1
    budget.reserve(1).release()  # room again: 5 left, 2 reserved, 2 kept, 1 free
    with pytest.raises(Deferred):
        second.cover(4)  # growing a reservation is checked like a new one: 2 more, 1 free
    assert budget.report() == {
        "limit": 6,
        "remaining": 5,
        "reserved_unused": 2,
        "deferred": budget.deferred,
    }


def test_an_answer_read_late_does_not_raise_the_figure() -> None:
    """Answers arrive out of order: a HEAD answered before our GETs may be read after them."""
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=2))
    budget.update(httpx.Headers(_rate(6)))
    for _ in range(3):
        budget.reserve(1).take()
        budget.sending(first=True)
    budget.update(httpx.Headers(_rate(3)), counted=True)  # the registry's last answer...
    with pytest.raises(Deferred):
        budget.reserve(1)  # ...read while two GETs are unsettled: 3 - 2 leaves none
    budget.update(httpx.Headers(_rate(4)), counted=True)  # older answers, read later
    budget.update(httpx.Headers(_rate(6)))  # a HEAD answered before any GET
    assert budget.remaining == 3
    with pytest.raises(Deferred):
        budget.reserve(1)  # one GET still unsettled
    budget.update(httpx.Headers(_rate(5)), counted=True)
    budget.reserve(1)  # 3 left, 2 kept: room for one
    with pytest.raises(Deferred):
        budget.reserve(1)
