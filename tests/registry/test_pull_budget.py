"""The pull-budget policy (syncer/registry/ratelimit.py) as the transport and client use it.

Pure logic: httpx.MockTransport answers, and counts what reached "the registry".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import httpx
import pytest

from syncer.errors import Deferred, RateLimited, RegistryError
from syncer.registry.client import RegistryClient
from syncer.registry.options import RateLimitConfig, RegistryConfig, RetryConfig
from syncer.registry.ratelimit import LOST_GRACE_S, Budgets, PullBudget
from syncer.registry.reference import Reference

Handler = Callable[[httpx.Request], httpx.Response]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % OCI_INDEX.encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


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

    left = 5  # someone else on this IP spends the rest before our GET

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal left
        if req.method == "HEAD":
            return httpx.Response(200, headers={**_rate(left), "docker-content-digest": "sha256:x"})
        left = 0
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
    # The free HEAD that asks for the first figure meets both 429s and is retried; its
    # answer reports no budget, so the GET goes out once, and no HEAD again.
    assert got.data == MANIFEST
    assert seen == [*["HEAD /v2/library/app/manifests/1"] * 3, "GET /v2/library/app/manifests/1"]
    await client.get_manifest(REF)
    assert seen[4:] == ["GET /v2/library/app/manifests/1"]
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
    budget.update(httpx.Headers(_rate(5)), budget.sending(counted=True))
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
    head = budget.sending(counted=False)  # a HEAD sent before any GET...
    budget.update(httpx.Headers(_rate(6)))
    sent = []
    for _ in range(3):
        budget.reserve(1).take()
        sent.append(budget.sending(counted=True))
    budget.update(httpx.Headers(_rate(3)), sent[2])  # the registry's last answer...
    with pytest.raises(Deferred):
        budget.reserve(1)  # ...read while two GETs are unsettled: 3 - 2 leaves none
    budget.update(httpx.Headers(_rate(4)), sent[1])  # older answers, read later
    budget.update(httpx.Headers(_rate(6)), head)  # ...answered before any GET, read late
    assert budget.remaining == 3
    with pytest.raises(Deferred):
        budget.reserve(1)  # one GET still unsettled
    budget.update(httpx.Headers(_rate(5)), sent[0])
    budget.reserve(1)  # 3 left, 2 kept: room for one
    with pytest.raises(Deferred):
        budget.reserve(1)


def test_a_figure_rises_only_from_an_answer_that_counts_every_get_sent() -> None:
    """A process-wide budget must see the window refill, and never from a stale answer."""
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=2))
    budget.update(httpx.Headers(_rate(6)), budget.sending(counted=False))
    budget.reserve(1).take()
    get = budget.sending(counted=True)
    head = budget.sending(counted=False)  # left while the GET was in flight
    budget.update(httpx.Headers(_rate(5)), get)
    budget.update(httpx.Headers(_rate(100, 100)), head)
    assert budget.remaining == 5  # it may not have counted the GET
    before = budget.sending(counted=False)
    budget.reserve(1).take()
    late = budget.sending(counted=True)  # a GET left before that HEAD was answered
    budget.update(httpx.Headers(_rate(100, 100)), before)
    assert budget.remaining == 5
    budget.update(httpx.Headers(_rate(4)), late)
    fresh = budget.sending(counted=False)  # nothing in flight: its answer counts everything
    budget.update(httpx.Headers(_rate(100, 100)), fresh)
    assert (budget.remaining, budget.limit) == (100, 100)
    budget.reserve(98).release()


def test_a_lost_get_keeps_the_figure_from_rising_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("syncer.registry.ratelimit.time.monotonic", lambda: now[0])
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=2))
    budget.update(httpx.Headers(_rate(6)))
    budget.reserve(1).take()
    budget.lost(budget.sending(counted=True))  # timed out: the registry may count it later
    budget.update(httpx.Headers(_rate(6)), budget.sending(counted=False))
    assert budget.remaining == 6
    with pytest.raises(Deferred):
        budget.reserve(4)  # 6 - 1 unsettled leaves 5, 2 kept
    now[0] += LOST_GRACE_S
    budget.update(httpx.Headers(_rate(6)), budget.sending(counted=False))
    budget.reserve(4)  # the registry never counted it: all 6 are there


def test_exhausted_lapses_when_the_window_refills_or_the_wait_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("syncer.registry.ratelimit.time.monotonic", lambda: now[0])
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=0))
    budget.reserve(1).take()
    spent = budget.sending(counted=True)
    budget.update(httpx.Headers({**_rate(0), "Retry-After": "2"}), spent)
    assert budget.after_429(httpx.Headers({"Retry-After": "2"}), ["TOOMANYREQUESTS"], 0) is None
    with pytest.raises(Deferred, match="ratelimit-remaining 0"):
        budget.reserve(1)
    budget.update(httpx.Headers(_rate(0)), budget.sending(counted=False))
    with pytest.raises(Deferred):
        budget.reserve(1)  # the next run's HEAD still sees 0
    budget.update(httpx.Headers(_rate(6)), budget.sending(counted=False))
    budget.reserve(6).release()  # refilled: admitted again
    assert budget.report() is not None and budget.report()["deferred"] is None  # type: ignore[index]

    # A registry without figures that asks for an hour: deferred for that hour.
    other = PullBudget("other.test", RateLimitConfig(max_wait_s=60))
    assert other.after_429(httpx.Headers({"Retry-After": "3600"}), [], 0) is None
    with pytest.raises(Deferred, match="Retry-After 3600s"):
        other.reserve(1)
    now[0] += 3600
    other.reserve(1)


def test_pulls_reserved_before_the_first_figure_are_checked_at_send() -> None:
    budget = PullBudget("hub.test", RateLimitConfig(min_remaining=2))
    copies = [budget.reserve(1) for _ in range(4)]  # no figure yet: admitted blind
    budget.update(httpx.Headers(_rate(4)), budget.sending(counted=False))
    for r in copies:
        r.take()
    budget.sending(counted=True)
    budget.sending(counted=True)
    for _ in range(2):
        with pytest.raises(Deferred, match="min_remaining is 2"):
            budget.sending(counted=True)
    assert budget.reserved_unused == 2


async def test_two_clients_share_the_process_budget_and_learn_it_with_one_head() -> None:
    """Like two schedule groups: two clients, one `Budgets`. Three GETs at once to a budget
    nobody knows yet: one free HEAD first, then only what fits above the reserve."""
    left = 4
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal left
        if req.url.path == "/v2/":
            return httpx.Response(200)
        seen.append(req.method)
        if req.method == "GET":
            left -= 1
        headers = {**_rate(left), "content-type": OCI_INDEX, "docker-content-digest": DIGEST}
        return httpx.Response(
            200, content=MANIFEST if req.method == "GET" else b"", headers=headers
        )

    budgets = Budgets()
    config = RegistryConfig(ratelimit=RateLimitConfig(min_remaining=2))
    one, two = (
        RegistryClient(
            lambda _r: config,
            credentials=lambda _r, _c: None,
            http_transport=httpx.MockTransport(handler),
            budgets=budgets,
        )
        for _ in range(2)
    )
    got = await asyncio.gather(
        one.get_manifest(REF),
        two.get_manifest(REF),
        one.get_manifest(REF),
        return_exceptions=True,
    )
    assert seen == ["HEAD", "GET", "GET"]
    assert sum(isinstance(g, Deferred) for g in got) == 1
    assert left == 2
    assert one.ratelimits() == two.ratelimits()
    await one.aclose()
    await two.aclose()
