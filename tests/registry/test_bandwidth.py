"""The bandwidth bucket's arithmetic and its pull-based streams, on a fake clock (no sleeps),
and the `bandwidth:` keys' errors as sync.yaml shows them."""

from __future__ import annotations

import asyncio
import heapq
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.registry.bandwidth import (
    MIN_BURST,
    Bandwidth,
    BandwidthConfig,
    Stream,
    TokenBucket,
    Usage,
    parse_rate,
)

MiB = 1024 * 1024
CHUNK = 256 * 1024
UTC = ZoneInfo("UTC")
NONE = Usage({}, {})


class FakeClock:
    """Simulated time: `sleep` parks the caller until `run` moves the clock to its wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, id(fut), fut))
        await fut

    def run(self, *coros: Awaitable[Any]) -> list[Any]:
        async def main() -> list[Any]:
            tasks = [asyncio.ensure_future(c) for c in coros]
            while not all(t.done() for t in tasks):
                for _ in range(50):  # every task runs until it sleeps (sources never block)
                    await asyncio.sleep(0)
                if self._sleepers:
                    at, _, fut = heapq.heappop(self._sleepers)
                    self.now = max(self.now, at)
                    fut.set_result(None)
            return [t.result() for t in tasks]

        return asyncio.run(main())


def limits_on(clock: FakeClock, process: str | None = None, **hosts: str) -> Bandwidth:
    limits = Bandwidth(clock=clock, sleep=clock.sleep)
    caps = {h: BandwidthConfig.model_validate(c) for h, c in hosts.items()}
    limits.configure(BandwidthConfig.model_validate(process) if process else None, UTC, caps)
    return limits


async def source(n: int, probe: list[int] | None = None) -> AsyncIterator[bytes]:
    for _ in range(n):
        if probe is not None:
            probe[0] += 1
        yield b"x" * CHUNK


async def drain(limits: Bandwidth, stream: Stream, chunks: AsyncIterator[bytes]) -> int:
    return sum([len(c) async for c in limits.throttle(stream, chunks)])


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
    assert cfg.rate_at(datetime(2026, 1, 1, 9, 0, tzinfo=UTC)) == 10 * MiB
    assert cfg.rate_at(datetime(2026, 1, 1, 18, 0, tzinfo=UTC)) is None
    night = BandwidthConfig.model_validate({"rate": "1MiB/s", "between": "22:00-06:00"})
    assert night.rate_at(datetime(2026, 1, 1, 23, 0, tzinfo=UTC)) == MiB
    assert night.rate_at(datetime(2026, 1, 1, 7, 0, tzinfo=UTC)) is None
    # The window is read in the zone it is given: 09:00 UTC is 10:00 in Berlin (winter).
    evening = BandwidthConfig.model_validate({"rate": "1MiB/s", "between": "10:00-11:00"})
    berlin = datetime(2026, 1, 1, 9, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    assert evening.rate_at(berlin) == MiB
    assert evening.rate_at(datetime(2026, 1, 1, 9, 30, tzinfo=UTC)) is None
    with pytest.raises(ValidationError, match="is not a time window"):
        BandwidthConfig.model_validate({"rate": "1MiB/s", "between": "8-18"})


def test_bad_keys_name_the_line_and_show_a_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "sync.yaml"
    cfg.write_text(
        "version: 1\n"
        "defaults:\n"
        "  bandwidth: 50MBps\n"
        "registries:\n"
        "  a.example:\n"
        "    bandwidth: 50\n"
        "  b.example:\n"
        '    bandwidth: {rate: 10MiB/s, between: "08:00-24:30"}\n'
        "  c.example:\n"
        "    bandwidth: {rate: 10MiB/s, else: 1MiB/s}\n"
        "sync: [{source: a.example/x, destination: b.example/x}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    text = str(err.value)
    fix = "write e.g. 50MiB/s, 400Mbit/s or unlimited"
    assert f"sync.yaml:3: defaults.bandwidth.rate: '50MBps' is not a rate; {fix}" in text
    assert (
        f'sync.yaml:6: registries["a.example"].bandwidth.rate: 50 is not a rate: '
        f"it has no unit; {fix}" in text
    )
    assert (
        'sync.yaml:8: registries["b.example"].bandwidth.between: '
        "'08:00-24:30' ends after 24:00; write e.g. \"22:00-24:00\"" in text
    )
    assert 'sync.yaml:10: registries["c.example"].bandwidth.else: `else` is the rate' in text


def test_bucket_allows_a_burst_then_holds_the_rate() -> None:
    bucket = TokenBucket(rate=MiB, now=0.0)
    assert bucket.burst == MIN_BURST
    assert bucket.reserve(MIN_BURST, 0.0) == 0.0  # the burst goes at once
    assert bucket.reserve(MiB, 0.0) == pytest.approx(1.0)  # then one second per MiB
    assert bucket.reserve(MiB, 0.0) == pytest.approx(2.0)  # reservations queue up
    bucket.refund(MiB)
    assert bucket.reserve(0, 1.0) == 0.0  # refilled at the rate, capped at the burst
    assert bucket.reserve(0, 100.0) == 0.0
    assert bucket.tokens == MIN_BURST  # an idle hour saves no more than the burst


def test_stream_waits_before_reading_and_holds_one_chunk() -> None:
    clock = FakeClock()
    limits = limits_on(clock, "1MiB/s")
    pulled, received = [0], 0

    async def consume() -> int:
        nonlocal received
        total = 0
        async for c in limits.throttle(Stream("download", "r.example", None), source(16, pulled)):
            assert pulled[0] - received == 1  # only the chunk being handed on was read
            received += 1
            total += len(c)
        return total

    assert clock.run(consume()) == [16 * CHUNK]
    # 4 MiB at 1 MiB/s, less the burst that went at once
    assert clock.now == pytest.approx((4 * MiB - MIN_BURST) / MiB, abs=0.3)
    report = limits.report(NONE, clock.now)
    assert report["process"]["download"]["bytes"] == 16 * CHUNK
    assert report["process"]["download"]["limited_s"] == pytest.approx(clock.now, abs=0.3)


def test_concurrent_streams_share_one_bucket() -> None:
    """Four streams at once under 1 MiB/s take four times as long as one: the cap is the
    process's, not each worker's (Harbor's per-worker limit multiplies)."""
    clock = FakeClock()
    limits = limits_on(clock, "1MiB/s")
    blob = Stream("download", "r.example", None, 8 * CHUNK)
    streams = [drain(limits, blob, source(8)) for _ in range(4)]
    assert clock.run(*streams) == [8 * CHUNK] * 4
    moved = 4 * 8 * CHUNK  # 8 MiB
    assert moved / clock.now <= MiB * 1.01 + MIN_BURST / clock.now
    assert clock.now == pytest.approx((moved - MIN_BURST) / MiB, abs=0.3)


def test_a_stream_under_a_host_and_the_process_cap_takes_from_both() -> None:
    clock = FakeClock()
    limits = limits_on(clock, "4MiB/s", **{"slow.example": "1MiB/s"})
    slow = drain(limits, Stream("download", "slow.example", None, 2 * MiB), source(8))
    fast = drain(limits, Stream("download", "fast.example", None, 12 * MiB), source(48))
    clock.run(slow, fast)
    report = limits.report(NONE, clock.now)
    assert report["slow.example"]["download"]["bytes"] == 2 * MiB
    assert report["process"]["download"]["bytes"] == 14 * MiB  # both streams drew on it
    # The process cap holds the sum: 14 MiB at 4 MiB/s, less its burst (1 MiB).
    assert clock.now == pytest.approx(13 / 4, abs=0.3)


def test_a_host_cap_read_from_the_stream_applies_without_configure() -> None:
    """Ad-hoc commands (`syncer copy`) never configure the run's caps: a stream's own host
    cap holds all the same."""
    clock = FakeClock()
    limits = Bandwidth(clock=clock, sleep=clock.sleep)
    cap = BandwidthConfig.model_validate("1MiB/s")
    clock.run(drain(limits, Stream("upload", "h.example", cap), source(8)))
    assert clock.now == pytest.approx((2 * MiB - MIN_BURST) / MiB, abs=0.3)


def test_uploads_and_downloads_have_a_bucket_each() -> None:
    """A registry-to-registry copy under `1MiB/s` moves 1 MiB/s, not half of it."""
    clock = FakeClock()
    limits = limits_on(clock, "1MiB/s")
    down = drain(limits, Stream("download", "a.example", None, 2 * MiB), source(8))
    up = drain(limits, Stream("upload", "b.example", None, 2 * MiB), source(8))
    clock.run(down, up)
    assert clock.now == pytest.approx((2 * MiB - MIN_BURST) / MiB, abs=0.3)


def test_an_uncapped_stream_never_sleeps_and_no_scope_appears() -> None:
    clock = FakeClock()
    limits = limits_on(clock, None)
    assert clock.run(drain(limits, Stream("download", "a.example", None), source(8))) == [2 * MiB]
    assert clock.sleeps == 0
    assert limits.report(NONE, 1.0) == {}


def test_a_known_size_reads_the_end_without_a_wait() -> None:
    """The stream's last reservation would wait for bytes that never come: with the size
    known it is never made."""
    clock = FakeClock()
    limits = limits_on(clock, "1MiB/s")
    size = 2 * MiB + 1000
    chunks = [b"x" * CHUNK] * 8 + [b"x" * 1000]

    async def src() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    clock.run(drain(limits, Stream("download", "a.example", None, size), src()))
    assert clock.now == pytest.approx((size - MIN_BURST) / MiB, abs=0.01)
    limited = limits.report(NONE, clock.now)["process"]["download"]["limited_s"]
    assert limited == pytest.approx(clock.now, abs=0.01)


def test_a_cancelled_wait_gives_its_tokens_back() -> None:
    clock = FakeClock()
    limits = limits_on(clock, "1MiB/s")

    async def cancelled() -> None:
        task = asyncio.ensure_future(
            drain(limits, Stream("download", "a.example", None), source(100))
        )
        for _ in range(50):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(cancelled())
    # The burst (2 chunks) was read; the third chunk's reservation was given back.
    bucket = limits._scopes[("*", "download")].bucket
    assert bucket is not None and bucket.tokens == pytest.approx(MIN_BURST - 2 * CHUNK)
