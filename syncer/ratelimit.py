"""Pull-rate budgets (Docker Hub's `ratelimit-remaining`) and `Retry-After`.

Docker Hub counts manifest GETs, not HEADs. We keep the last figure each
registry reported and, when `ratelimit.min_remaining` is set, refuse to spend a
GET that would take the budget below it: the work is deferred to a later run
instead of being cut off halfway by a 429.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from syncer.errors import Deferred


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
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass
class PullBudget:
    min_remaining: int = 0
    limit: int | None = None
    remaining: int | None = None
    source: str | None = None
    # GETs sent since the registry last told us its remaining budget.
    unreported: int = 0
    exhausted: str | None = None

    def update(self, headers: httpx.Headers) -> None:
        rem = _first_int(headers.get("ratelimit-remaining"))
        if rem is None:
            return
        self.remaining = rem
        self.limit = _first_int(headers.get("ratelimit-limit"))
        self.source = headers.get("docker-ratelimit-source")
        self.unreported = 0

    def exhaust(self, reason: str) -> None:
        self.exhausted = self.exhausted or reason

    def spend(self, registry: str) -> None:
        """Account for one counted pull, or raise Deferred when the budget is too low."""
        if self.exhausted is not None:
            raise Deferred(self.exhausted)
        if self.remaining is not None and self.min_remaining > 0:
            left = self.remaining - self.unreported
            if left - 1 < self.min_remaining:
                self.exhaust(
                    f"{registry}: pull budget has {left} left of {self.limit}, and "
                    f"ratelimit.min_remaining is {self.min_remaining}; deferring the rest"
                )
                raise Deferred(self.exhausted or "")
        self.unreported += 1
