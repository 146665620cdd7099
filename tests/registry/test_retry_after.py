"""`Retry-After` parsing (syncer/registry/ratelimit.py)."""

from __future__ import annotations

import httpx
import pytest

from syncer.errors import RateLimited
from syncer.registry.ratelimit import parse_retry_after
from syncer.registry.transport.responses import error_from_response

NOW = 1445412470.0  # Wed, 21 Oct 2015 07:27:50 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("12", 12.0), (" 7 ", 7.0), ("86400", 86400.0), ("007", 7.0)],
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
        ("Wed, 21 Oct 2015 08:27:50 GMT", 3600.0),
        ("Wed, 21 Oct 2015 07:27:50 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # already past: go now, never negative
        ("Wed, 21 Oct 2015 09:28:00 +0200", 10.0),
    ],
)
def test_http_date(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_http_date_counts_from_the_clock_by_default() -> None:
    waited = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert waited is not None and waited > 365 * 24 * 3600


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "5s", "0x10", "Wed"])
def test_garbage_means_no_advice(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_a_non_ascii_digit_is_garbage_too() -> None:
    assert parse_retry_after("\u00b2", now=NOW) is None


def test_a_429_with_a_hostile_retry_after_is_still_rate_limited() -> None:
    resp = httpx.Response(
        429,
        headers=[(b"retry-after", b"\xb2")],
        request=httpx.Request("GET", "https://reg.test/v2/a/manifests/1"),
    )
    err = error_from_response(resp, b"", "reg.test")
    assert isinstance(err, RateLimited) and err.retry_after is None
