"""Pull-rate budgets (Docker Hub's `ratelimit-remaining`) and what a 429 means.

Docker Hub counts manifest GETs, not HEADs. A copy reserves all its counted GETs
before it starts (the top manifest, then an index's missing children before any
child GET), so copies running at once never spend `ratelimit.min_remaining`
between them. A budget reported spent (429 TOOMANYREQUESTS, or remaining 0)
stops all counted requests to that registry for the run: the rest is deferred.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from syncer.errors import Deferred
from syncer.registry.options import RateLimitConfig


def _first_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split(";", 1)[0].strip())
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait: `Retry-After` is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    # isdigit() alone accepts "²" and other non-ASCII digits, which float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def counts(method: str, url: str) -> bool:
    """Whether a request spends pull budget: Docker Hub counts manifest GETs, not HEADs."""
    return method == "GET" and "/manifests/" in url


@dataclass
class PullBudget:
    """One registry's pull budget for one run: what it reported, and what we promised away.

    Pulls left once every GET already sent is counted: at least the lowest figure reported
    minus the counted GETs whose own answer has not reported one (still in flight, failed,
    or answered without a figure). A counted GET's own answer counts it, and a lower figure
    comes later, so the lowest figure includes every GET whose answer reported. A copy is
    admitted only while `left - reserved - cost >= min_remaining`. Everything runs on one
    event loop and no method awaits, so each check-and-take is atomic across copies.
    """

    registry: str
    config: RateLimitConfig = field(default_factory=RateLimitConfig)
    limit: int | None = None
    # The lowest figure reported in this run. Answers arrive out of order (a HEAD answered
    # before our last GET may be read after it), and within a run the budget only falls,
    # so the lowest figure is the one the registry reported last.
    remaining: int | None = None
    source: str | None = None
    exhausted: str | None = None  # why no counted request goes to this registry any more
    deferred: str | None = None  # why the last copy that did not fit was deferred
    reserved_unused: int = 0  # reserved for copies, then released without being spent
    _reserved: int = 0  # reserved and not yet sent (tickets included)
    _tickets: int = 0  # taken from a reservation by a GET that is about to be sent
    _unsettled: int = 0  # counted GETs sent whose own answer reported no figure (yet)

    def update(self, headers: httpx.Headers, *, counted: bool = False) -> None:
        """Record an answer's figures; `counted`: the answer to a counted GET."""
        rem = _first_int(headers.get("ratelimit-remaining"))
        if rem is None:
            return
        if counted:
            self._unsettled -= 1
        self.remaining = rem if self.remaining is None else min(self.remaining, rem)
        self.limit = _first_int(headers.get("ratelimit-limit"))
        self.source = headers.get("docker-ratelimit-source")
        if rem <= 0:
            self.exhaust(f"{self.registry} reported ratelimit-remaining 0 (of {self.limit})")

    def exhaust(self, reason: str) -> None:
        self.exhausted = self.exhausted or reason

    def reserve(self, pulls: int) -> Reservation:
        """Reserve a copy's counted GETs up front, or raise Deferred when they do not fit."""
        r = Reservation(self)
        r.cover(pulls)
        return r

    def _admit(self, pulls: int) -> None:
        if self.exhausted is not None:
            raise Deferred(self.exhausted)
        if self.remaining is None:
            return  # the registry reports no budget (yet): nothing to keep
        left = self.remaining - self._unsettled - self._reserved
        if pulls > left - self.config.min_remaining:
            self.deferred = (
                f"{self.registry}: pull budget has {left} left of "
                f"{self.limit} after reservations, this copy needs {pulls} more, and "
                f"ratelimit.min_remaining is {self.config.min_remaining}; deferred to a later run"
            )
            raise Deferred(self.deferred)

    def sending(self, *, first: bool) -> None:
        """The transport is about to send a counted request; a retry needs room of its own."""
        ticket = first and self._tickets > 0
        if ticket:
            self._tickets -= 1
            self._reserved -= 1
        if self.exhausted is not None:
            self.reserved_unused += ticket
            raise Deferred(self.exhausted)
        if not ticket:
            self._admit(1)
        self._unsettled += 1

    def after_429(
        self, headers: httpx.Headers, codes: Collection[str], backoff: float
    ) -> float | None:
        """Seconds to wait before retrying a 429, or None: do not retry, the budget is spent.

        Call after `update(headers)`. Where the registry keeps a pull budget, TOOMANYREQUESTS
        or a reported 0 means the budget's window (hours) must pass: a short Retry-After
        does not change that. Elsewhere a Retry-After up to `max_wait_s` is waited out.
        """
        if self.exhausted is not None:
            return None
        if self.remaining is not None and "TOOMANYREQUESTS" in codes:
            self.exhaust(f"{self.registry} answered 429 TOOMANYREQUESTS: its pull budget is spent")
            return None
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None:
            return backoff
        if retry_after > self.config.max_wait_s:
            self.exhaust(
                f"{self.registry} answered 429 with Retry-After {retry_after:.0f}s "
                f"(over ratelimit.max_wait_s={self.config.max_wait_s:.0f})"
            )
            return None
        return retry_after

    def report(self) -> dict[str, Any] | None:
        """The run report's view; None for a registry that never reported nor deferred."""
        if self.remaining is None and self.exhausted is None and self.deferred is None:
            return None
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reserved_unused": self.reserved_unused,
            "deferred": self.exhausted or self.deferred,
        }


@dataclass
class Reservation:
    """Counted GETs reserved for one copy. `take` one per GET; `release` what is left."""

    budget: PullBudget
    held: int = 0

    def cover(self, pulls: int) -> None:
        """Hold at least `pulls` GETs, reserving the difference; Deferred if it does not fit."""
        extra = pulls - self.held
        if extra > 0:
            self.budget._admit(extra)
            self.budget._reserved += extra
            self.held += extra

    def take(self) -> None:
        self.cover(1)
        self.held -= 1
        self.budget._tickets += 1

    def release(self) -> None:
        self.budget._reserved -= self.held
        self.budget.reserved_unused += self.held
        self.held = 0
