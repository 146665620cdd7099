"""The bandwidth bucket's arithmetic and its pull-based stream, on a fake clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from syncer.registry.bandwidth import (
    MIN_BURST,
    Bandwidth,
    BandwidthConfig,
    TokenBucket,
    parse_rate,
)

MiB = 1024 * 1024


def test_rates_parse_in_bytes_per_second() -> None:
    assert parse_rate("50MiB/s") == 50 * MiB
    assert parse_rate("400Mbit/s") == 50_000_000
    assert parse_rate("10MB/s") == 10_000_000
    assert parse_rate("unlimited") is None
    with pytest.raises(ValueError, match=re.escape("'50 MBps' is not a rate; write e.g. 50MiB/s")):
        parse_rate("50 MBps")


def test_config_shorthand_and_window() -> None:
    assert BandwidthConfig.model_validate("20MiB/s").rate == 20 * MiB
    cfg = BandwidthConfig.model_validate(
        {"rate": "10MiB/s", "between": "08:00-18:00", "else": "unlimited"}
    )
    utc = ZoneInfo("UTC")
    assert cfg.rate_at(datetime(2026, 1, 1, 9, 0, tzinfo=utc)) == 10 * MiB
    assert cfg.rate_at(datetime(2026, 1, 1, 18, 0, tzinfo=utc)) is None
    night = BandwidthConfig.model_validate({"rate": "1MiB/s", "between": "22:00-06:00"})
    assert night.rate_at(datetime(2026, 1, 1, 23, 0, tzinfo=utc)) == MiB
    assert night.rate_at(datetime(2026, 1, 1, 7, 0, tzinfo=utc)) is None
    with pytest.raises(ValidationError, match="is not a time window"):
        BandwidthConfig.model_validate({"rate": "1MiB/s", "between": "8-18"})


def test_bucket_allows_a_burst_then_holds_the_rate() -> None:
    bucket = TokenBucket(rate=MiB, now=0.0)
    assert bucket.burst == MIN_BURST
    assert bucket.reserve(MIN_BURST, 0.0) == 0.0  # the burst goes at once
    assert bucket.reserve(MiB, 0.0) == pytest.approx(1.0)  # then one second per MiB
    assert bucket.reserve(MiB, 0.0) == pytest.approx(2.0)  # reservations queue up
    bucket.refund(MiB)
    assert bucket.reserve(0, 1.0) == 0.0  # refilled at the rate, capped at the burst


def test_stream_waits_before_reading_and_holds_one_chunk() -> None:
    now = [0.0]

    async def fake_sleep(s: float) -> None:
        now[0] += s

    limits = Bandwidth(clock=lambda: now[0], sleep=fake_sleep)
    limits.configure(BandwidthConfig.model_validate("1MiB/s"), ZoneInfo("UTC"))
    pulled = received = 0
    chunk = 256 * 1024

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(16):  # 4 MiB
            assert pulled - received == 0  # nothing read ahead while earlier bytes wait
            pulled += 1
            yield b"x" * chunk

    async def consume() -> int:
        nonlocal received
        total = 0
        async for c in limits.throttle("download", ("r.example", None), source()):
            received += 1
            total += len(c)
        return total

    assert asyncio.run(consume()) == 16 * chunk
    # 4 MiB at 1 MiB/s, less the burst and the last chunk (charged without a wait after it)
    assert now[0] >= (4 * MiB - MIN_BURST - chunk) / MiB
    assert now[0] <= 4.0
    report = limits.report(limits.usage().__class__({}, {}), now[0])
    assert report["process"]["download"]["bytes"] == 16 * chunk
