"""Pull-rate budgets (Docker Hub's `ratelimit-remaining`) and what a 429 means.

Docker Hub counts manifest GETs, not HEADs. One `PullBudget` per registry serves the whole
process (`Budgets`): every run `syncer sync` makes, every schedule group `syncer schedule`
runs, at once or not, reserves from the same one. A copy reserves all its counted GETs
before it starts (the top manifest, then an index's missing children before any child GET),
so copies running at once never spend `ratelimit.min_remaining` between them.

The figure only falls, except when an answer is known to have counted every GET we sent
(see `PullBudget`), which is how a budget that lives for weeks sees its window refill. A
budget reported spent (429 TOOMANYREQUESTS, or remaining 0) stops all counted requests to
that registry until a figure like that shows more room, or the wait it announced is over.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from syncer.errors import Deferred
from syncer.registry.bandwidth import Bandwidth
from syncer.registry.options import RateLimitConfig

# Docker Hub's window (`ratelimit-remaining: 76;w=21600`) when an answer names none.
DEFAULT_WINDOW_S = 21600.0
# A counted GET that ended without an answer (a timeout, a broken connection) may still be
# counted by the registry later: for this long no figure may raise the budget.
LOST_GRACE_S = 300.0
_WINDOW = re.compile(r"(?:^|;)\s*w\s*=\s*(\d+)")


def _first_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split(";", 1)[0].strip())
    except ValueError:
        return None


def _window(headers: httpx.Headers) -> float:
    m = _WINDOW.search(headers.get("ratelimit-remaining") or headers.get("ratelimit-limit") or "")
    return float(m[1]) if m else DEFAULT_WINDOW_S


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


@dataclass(frozen=True)
class Sent:
    """One send as the budget saw it go: whether it counts, and whether its answer may
    raise the figure (nothing counted was in flight when it left, `seq` counted sends)."""

    counted: bool
    seq: int
    fresh: bool


@dataclass
class PullBudget:
    """One registry's pull budget for the process: what it reported, what we promised away.

    Pulls left once every GET already sent is counted: at least the figure kept minus the
    counted GETs whose own answer has not reported one (still in flight, failed, or answered
    without a figure). A copy is admitted only while `left - reserved - cost >=
    min_remaining`. Everything runs on one event loop and no method awaits, so each
    check-and-take is atomic across copies, runs and schedule groups.

    The figure kept is the lowest reported, since answers arrive out of order (a HEAD
    answered before our last GET may be read after it). A higher figure replaces it only
    from the answer to a request that left while no counted GET was in flight (nor lost
    within LOST_GRACE_S) and before any other counted GET left: the registry had counted
    every GET we ever sent when it answered, so the figure is the truth, window refill
    included. Until the first figure is known, a registry with a reserve is asked with a
    free HEAD first (`wants_figure`, done by the session).
    """

    registry: str
    config: RateLimitConfig = field(default_factory=RateLimitConfig)
    limit: int | None = None
    remaining: int | None = None  # the figure kept (see above)
    source: str | None = None
    exhausted: str | None = None  # why no counted request goes to this registry now
    deferred: str | None = None  # why the last copy that did not fit was deferred
    reserved_unused: int = 0  # reserved for copies, then released without being spent
    probed: bool = False  # a HEAD sent to learn the figure was answered without one
    learning: asyncio.Future[None] | None = None  # that HEAD, while it is out
    _exhausted_until: float = 0.0  # time.monotonic() when `exhausted` lapses
    _exhausted_at: int | None = None  # the figure kept when the budget ran out
    _reserved: int = 0  # reserved and not yet sent (tickets included)
    _tickets: int = 0  # taken from a reservation by a GET that is about to be sent
    # Of `_reserved`, pulls reserved before any figure was known (and of `_tickets`, their
    # tickets): each is checked when its GET is sent, against the pulls promised with a figure.
    _blind: int = 0
    _blind_tickets: int = 0
    _unsettled: int = 0  # counted GETs sent whose own answer reported no figure (yet)
    _in_flight: int = 0  # counted GETs sent and not answered (nor failed) yet
    _seq: int = 0  # counted GETs sent so far
    _lost_until: float = 0.0  # time.monotonic() until which a lost GET may still count

    def wants_figure(self) -> bool:
        """Whether a counted request must wait for a free HEAD to learn the figure first."""
        return self.remaining is None and self.config.min_remaining > 0 and not self.probed

    def update(self, headers: httpx.Headers, sent: Sent | None = None) -> None:
        """Record an answer's figures; `sent`: its request (None: an answer of unknown age)."""
        counted = sent is not None and sent.counted
        if counted:
            self._in_flight -= 1
        rem = _first_int(headers.get("ratelimit-remaining"))
        if rem is None:
            return
        if counted:
            self._unsettled -= 1
        if sent is not None and sent.fresh and sent.seq == self._seq:
            # Every counted GET we sent was answered before this request left, and none left
            # since: the figure counts them all (none is in flight), and any refill too.
            self.remaining, self._unsettled = rem, self._in_flight
            if self._exhausted_at is not None and rem > self._exhausted_at:
                self.exhausted = self._exhausted_at = None  # the window refilled
        elif self.remaining is None or rem < self.remaining:
            self.remaining = rem
        self.limit = _first_int(headers.get("ratelimit-limit"))
        self.source = headers.get("docker-ratelimit-source")
        if rem <= 0:
            self.exhaust(
                f"{self.registry} reported ratelimit-remaining 0 (of {self.limit})",
                _window(headers),
            )

    def lost(self, sent: Sent) -> None:
        """`sent` ended without an answer: the registry may count it, and may do so late."""
        if sent.counted:
            self._in_flight -= 1
            self._lost_until = time.monotonic() + LOST_GRACE_S

    def exhaust(self, reason: str, for_s: float = DEFAULT_WINDOW_S) -> None:
        """No counted request for `for_s` seconds, or until a fresh figure shows more room."""
        if self._spent() is None:
            self.exhausted = reason
            self._exhausted_at = self.remaining
            self._exhausted_until = time.monotonic() + for_s

    def _spent(self) -> str | None:
        if self.exhausted is not None and time.monotonic() >= self._exhausted_until:
            self.exhausted = self._exhausted_at = None
        return self.exhausted

    def reserve(self, pulls: int) -> Reservation:
        """Reserve a copy's counted GETs up front, or raise Deferred when they do not fit."""
        r = Reservation(self)
        r.cover(pulls)
        return r

    def _admit(self, pulls: int, *, blind: bool = False) -> bool:
        """Raise Deferred unless `pulls` fit; False: admitted blind (no figure known).
        `blind`: the check at send of a pull reserved blind, which other blind pulls,
        each checked in turn, do not take room from."""
        if (spent := self._spent()) is not None:
            raise Deferred(spent)
        if self.remaining is None:
            return False  # the registry reports no budget (yet): checked again at send
        left = self.remaining - self._unsettled - self._reserved + (self._blind if blind else 0)
        if pulls > left - self.config.min_remaining:
            self.deferred = (
                f"{self.registry}: pull budget has {left} left of "
                f"{self.limit} after reservations, this copy needs {pulls} more, and "
                f"ratelimit.min_remaining is {self.config.min_remaining}; deferred to a later run"
            )
            raise Deferred(self.deferred)
        return True

    def sending(self, *, counted: bool, first: bool = True) -> Sent:
        """The transport is about to send; a counted retry needs room of its own, and so
        does a ticket reserved blind (before the first figure was known)."""
        fresh = self._in_flight == 0 and time.monotonic() >= self._lost_until
        if not counted:
            return Sent(False, self._seq, fresh)
        ticket = first and self._tickets > 0
        blind = ticket and self._blind_tickets > 0
        if ticket:
            self._tickets -= 1
            self._reserved -= 1
        if blind:
            self._blind_tickets -= 1
            self._blind -= 1
        try:
            if (spent := self._spent()) is not None:
                raise Deferred(spent)
            if not ticket or blind:
                self._admit(1, blind=blind)
        except Deferred:
            self.reserved_unused += ticket
            raise
        self._unsettled += 1
        self._in_flight += 1
        self._seq += 1
        return Sent(True, self._seq, fresh)

    def after_429(
        self, headers: httpx.Headers, codes: Collection[str], backoff: float
    ) -> float | None:
        """Seconds to wait before retrying a 429, or None: do not retry, the budget is spent.

        Call after `update(headers)`. Where the registry keeps a pull budget, TOOMANYREQUESTS
        or a reported 0 means the budget's window (hours) must pass: a short Retry-After
        does not change that. Elsewhere a Retry-After up to `max_wait_s` is waited out.
        """
        if self._spent() is not None:
            return None
        if self.remaining is not None and "TOOMANYREQUESTS" in codes:
            self.exhaust(
                f"{self.registry} answered 429 TOOMANYREQUESTS: its pull budget is spent",
                _window(headers),
            )
            return None
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None:
            return backoff
        if retry_after > self.config.max_wait_s:
            self.exhaust(
                f"{self.registry} answered 429 with Retry-After {retry_after:.0f}s "
                f"(over ratelimit.max_wait_s={self.config.max_wait_s:.0f})",
                retry_after,
            )
            return None
        return retry_after

    def report(self) -> dict[str, Any] | None:
        """The run report's view; None for a registry that never reported nor deferred."""
        spent = self._spent()
        if self.remaining is None and spent is None and self.deferred is None:
            return None
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reserved_unused": self.reserved_unused,
            "deferred": spent or self.deferred,
        }


class Budgets:
    """The process's pull budgets, one per registry, shared by every client it makes, and
    its bandwidth caps' buckets (`bandwidth`), shared the same way."""

    def __init__(self) -> None:
        self._budgets: dict[str, PullBudget] = {}
        self.bandwidth = Bandwidth()

    def get(self, registry: str, config: RateLimitConfig) -> PullBudget:
        """`registry`'s budget, under its latest `ratelimit` settings (a reload may change them)."""
        budget = self._budgets.get(registry)
        if budget is None:
            budget = self._budgets[registry] = PullBudget(registry, config)
        budget.config = config
        return budget


@dataclass
class Reservation:
    """Counted GETs reserved for one copy. `take` one per GET; `release` what is left."""

    budget: PullBudget
    held: int = 0
    blind: int = 0  # of `held`, reserved while no figure was known

    def cover(self, pulls: int) -> None:
        """Hold at least `pulls` GETs, reserving the difference; Deferred if it does not fit."""
        extra = pulls - self.held
        if extra > 0:
            checked = self.budget._admit(extra)
            self.budget._reserved += extra
            self.held += extra
            if not checked:
                self.blind += extra
                self.budget._blind += extra

    def take(self) -> None:
        self.cover(1)
        self.held -= 1
        self.budget._tickets += 1
        if self.blind > 0:
            self.blind -= 1
            self.budget._blind_tickets += 1

    def release(self) -> None:
        self.budget._reserved -= self.held
        self.budget._blind -= self.blind
        self.budget.reserved_unused += self.held
        self.held = self.blind = 0
