"""Bandwidth caps: one token bucket per scope and direction, shared by every blob stream.

A scope is the whole process (`defaults.bandwidth`) or one registry host
(`registries.<host>.bandwidth`). Downloads and uploads have a bucket each: links are
full duplex, and a registry-to-registry copy moves every byte twice (in, then out), so
one shared bucket would halve the copy rate a user asked for.

Streams are pulled, never pushed: a stream reserves tokens for its next chunk and
sleeps *before* it reads that chunk from its source, so a throttled stream holds at
most the one chunk it is handing on, and backpressure reaches the socket below.
Manifests and HEADs never pass through here: only blob bodies do.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncer.errors import rule

Direction = Literal["download", "upload"]
DIRECTIONS: tuple[Direction, ...] = ("download", "upload")
PROCESS = "*"  # the scope of `defaults.bandwidth`

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGT]?)(i?)(B|bit)/s")
_POWER = {"": 0, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4}
_RATE_FIX = "write e.g. 50MiB/s, 400Mbit/s or unlimited"
_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)")
# The bucket's depth: this many seconds of the rate, at least this many bytes, so a
# stream starting after a pause may go at once, yet no run overshoots by much.
BURST_S = 0.25
MIN_BURST = 512 * 1024
# Reserved for a stream's first chunk (the download chunk size; corrected once it is read).
FIRST_GUESS = 256 * 1024


def parse_rate(text: str) -> float | None:
    """`50MiB/s`, `400Mbit/s`, `10MB/s` -> bytes per second; `unlimited` -> None."""
    value = text.strip()
    if value.lower() == "unlimited":
        return None
    m = _RATE.fullmatch(value)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a rate; {_RATE_FIX}")
    number, prefix, binary, unit = m.groups()
    base = 1024 if binary else 1000
    rate: float = float(number) * float(base) ** _POWER[prefix]
    return rate / 8 if unit == "bit" else rate


def _no_unit(v: Any) -> float:
    # A bare number has no unit (50 bytes/s? 50 MiB/s?): ask rather than guess.
    raise ValueError(f"{v!r} is not a rate: it has no unit; {_RATE_FIX}")


def _minutes(text: str) -> tuple[int, int]:
    m = _WINDOW.fullmatch(text.strip())
    if m is None:
        raise ValueError(f'{text!r} is not a time window; write e.g. "08:00-18:00"')
    a, b = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
    if b > 24 * 60:
        raise ValueError(f'{text!r} ends after 24:00; write e.g. "22:00-24:00"')
    if a == b:
        raise ValueError(f'{text!r} is an empty time window; write e.g. "08:00-18:00"')
    return a, b


class BandwidthConfig(BaseModel):
    """`bandwidth: 50MiB/s`, or `{rate: 10MiB/s, between: "08:00-18:00", else: unlimited}`.

    Rates are bytes per second; None means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rate: float | None
    between: str | None = None
    otherwise: float | None = Field(default=None, alias="else")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str | int | float):
            return {"rate": data}
        if isinstance(data, dict) and "else" in data and "between" not in data:
            raise rule(
                "`else` is the rate outside a window, so it needs `between`; write e.g. "
                '{rate: 10MiB/s, between: "08:00-18:00", else: unlimited}',
                at="else",
            )
        return data

    @field_validator("rate", "otherwise", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> Any:
        if v is None:
            return v  # unlimited, as Python says it (YAML says `unlimited`)
        try:
            return parse_rate(v) if isinstance(v, str) else _no_unit(v)
        except ValueError as exc:
            raise rule(str(exc)) from None

    @field_validator("between")
    @classmethod
    def _between(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                _minutes(v)
            except ValueError as exc:
                raise rule(str(exc)) from None
        return v

    def rate_at(self, now: datetime) -> float | None:
        """The cap in force at `now` (a zone-aware time in the schedule's zone)."""
        if self.between is None:
            return self.rate
        start, end = _minutes(self.between)
        minute = now.hour * 60 + now.minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        return self.rate if inside else self.otherwise

    def label(self) -> str:
        def one(rate: float | None) -> str:
            return "unlimited" if rate is None else f"{rate / 2**20:.4g} MiB/s"

        if self.between is None:
            return one(self.rate)
        return f"{one(self.rate)} {self.between}, else {one(self.otherwise)}"


class TokenBucket:
    """A reservation bucket: `reserve(n)` takes n tokens (the level may go below zero)
    and says how long to wait until they exist. Pure arithmetic on the given clock."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(rate * BURST_S, MIN_BURST)
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def set_rate(self, rate: float, now: float) -> None:
        """A new cap (a time window opened or closed): debt is kept, the depth follows."""
        self._refill(now)
        self.rate = rate
        self.burst = max(rate * BURST_S, MIN_BURST)
        self.tokens = min(self.tokens, self.burst)

    def reserve(self, n: float, now: float) -> float:
        """Take `n` tokens; the seconds until they are there (0: go now)."""
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def refund(self, n: float) -> None:
        """Give back a reservation that was not used (or the part of it not used)."""
        self.tokens = min(self.burst, self.tokens + n)


_UNLIMITED = BandwidthConfig(rate=None)


@dataclass(frozen=True)
class Stream:
    """One blob stream as the caps see it: its direction, its host and the host's
    `bandwidth:` (None: no cap of its own), and the blob's size when known, from which
    its first and last reservations are sized."""

    direction: Direction
    host: str
    cap: BandwidthConfig | None
    size: int | None = None


@dataclass
class _Scope:
    """One bucket's state and what it did, for the report and the metrics."""

    config: BandwidthConfig
    zone: ZoneInfo
    bucket: TokenBucket | None = None
    bytes: int = 0
    limited_s: float = 0.0

    def rate(self) -> float | None:
        return self.config.rate_at(datetime.now(self.zone))


@dataclass(frozen=True)
class Usage:
    """What the buckets had done at one moment, to report a run as a difference."""

    bytes: dict[tuple[str, Direction], int]
    limited_s: dict[tuple[str, Direction], float]


@dataclass
class Bandwidth:
    """The process's bandwidth buckets, owned by its `Budgets` (ratelimit.py) and so shared
    by every client, run and schedule group that shares those, and every stream of them.

    `configure` (again at each run, so a reloaded sync.yaml applies) sets the caps;
    `throttle` wraps a blob stream in the buckets of its host and of the process."""

    clock: Callable[[], float] = time.monotonic
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    sleep: Callable[[float], Any] = asyncio.sleep
    _scopes: dict[tuple[str, Direction], _Scope] = field(default_factory=dict)

    def configure(
        self,
        process: BandwidthConfig | None,
        zone: ZoneInfo,
        hosts: Mapping[str, BandwidthConfig | None] | None = None,
    ) -> None:
        """The process's cap (`defaults.bandwidth`), the hosts' caps known up front (each
        stream also brings its host's, so a command that never calls this still obeys
        them) and the schedule's time zone, in which every `between` window is read."""
        self.zone = zone
        for direction in DIRECTIONS:
            self._scope(PROCESS, direction, process)
            for host, config in (hosts or {}).items():
                self._scope(host, direction, config)

    def _scope(
        self, scope: str, direction: Direction, config: BandwidthConfig | None
    ) -> _Scope | None:
        """The bucket of `scope`, under its latest settings (a reload may change them)."""
        current = self._scopes.get((scope, direction))
        if config is None and current is not None:
            config = _UNLIMITED  # keep the figures of a cap just removed
        if config is None:
            return None
        if current is None:
            current = self._scopes[(scope, direction)] = _Scope(config, self.zone)
        current.config, current.zone = config, self.zone
        return current

    def caps(self) -> dict[str, str]:
        """The configured caps by scope, as the progress bar and the report name them."""
        return {s: c.config.label() for (s, d), c in self._scopes.items() if d == "download"}

    def usage(self) -> Usage:
        return Usage(
            {k: s.bytes for k, s in self._scopes.items()},
            {k: s.limited_s for k, s in self._scopes.items()},
        )

    def report(self, since: Usage, duration_s: float) -> dict[str, dict[str, Any]]:
        """Per scope and direction since `since`: the cap, bytes, seconds spent waiting,
        and the effective rate (bytes over the run's duration)."""
        out: dict[str, dict[str, Any]] = {}
        for (scope, direction), s in sorted(self._scopes.items()):
            moved = s.bytes - since.bytes.get((scope, direction), 0)
            waited = s.limited_s - since.limited_s.get((scope, direction), 0.0)
            name = "process" if scope == PROCESS else scope
            out.setdefault(name, {"cap": s.config.label()})[direction] = {
                "bytes": moved,
                "limited_s": round(waited, 3),
                "bytes_per_s": round(moved / duration_s) if duration_s > 0 else 0,
            }
        return out

    async def throttle(self, stream: Stream, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, no faster than the caps of `stream.host` and of the process allow.

        Tokens for the next chunk are reserved and waited for before that chunk is read,
        so nothing is ever held here beyond the chunk being handed on."""
        d = stream.direction
        found = (self._scopes.get((PROCESS, d)), self._scope(stream.host, d, stream.cap))
        scopes = [s for s in found if s is not None]
        if not scopes:
            async for chunk in chunks:
                yield chunk
            return
        left = stream.size
        guess = FIRST_GUESS if left is None else min(FIRST_GUESS, left)
        try:
            while True:
                # Nothing left to come (the size is known): read the end without waiting.
                held = await self._reserve(scopes, guess) if guess else []
                try:
                    chunk = await anext(chunks)
                except BaseException as exc:
                    for bucket in held:
                        bucket.refund(guess)
                    if isinstance(exc, StopAsyncIteration):
                        return
                    raise
                for bucket in held:
                    bucket.refund(guess - len(chunk))  # a negative refund charges the excess
                for s in scopes:
                    s.bytes += len(chunk)
                if left is None:
                    guess = len(chunk) or guess
                else:
                    left -= len(chunk)
                    guess = min(len(chunk), max(left, 0))
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _reserve(self, scopes: list[_Scope], n: int) -> list[TokenBucket]:
        """Reserve `n` tokens in every capped bucket and wait for the slowest of them."""
        now = self.clock()
        held: list[TokenBucket] = []
        wait, slowest = 0.0, None
        for s in scopes:
            rate = s.rate()
            if rate is None:
                continue
            if s.bucket is None:
                s.bucket = TokenBucket(rate, now)
            elif s.bucket.rate != rate:
                s.bucket.set_rate(rate, now)
            delay = s.bucket.reserve(n, now)
            held.append(s.bucket)
            if delay > wait:
                wait, slowest = delay, s
        if slowest is not None:
            try:
                await self.sleep(wait)
            except BaseException:
                for bucket in held:
                    bucket.refund(n)
                raise
            slowest.limited_s += wait
        return held
