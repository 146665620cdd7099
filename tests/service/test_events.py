"""Mirror on push, end to end: a real docker-registry's notifications drive syncer schedule."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.service.events_support import (
    TOKEN,
    bearer,
    envelope,
    events_yaml,
    free_port,
    mirrored,
    post,
    running,
    source_with_notifications,
    wait_until,
)
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RegistryFactory


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EV_TOKEN", TOKEN)


async def test_a_push_is_mirrored_within_seconds_while_the_schedule_says_an_hour(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src = source_with_notifications(registry_factory, port)
    dst = registry_factory("anon")
    # Pushed through a second process on the same storage, which sends no events
    # (distribution would retry an undelivered event once syncer listens).
    quiet = registry_factory("anon", storage=src.root)
    await asyncio.to_thread(push, quiet.url, "other/app", app_image(9, 0), "v1")
    entries = [
        {"source": f"{src.host}/team/*", "destination": f"{dst.host}/mirror"},
        {"source": f"{src.host}/other/app", "destination": f"{dst.host}/other/app"},
    ]
    cfg = events_yaml(tmp_path, entries, src, dst)
    async with running(cfg, port) as sched:
        mark = src.mark()
        image = app_image(1, 0)
        await asyncio.to_thread(push, src.url, "team/app", image, "v1")
        took = await wait_until(lambda: sched.events.runs_finished >= 1, 20)
        assert await mirrored(dst, "mirror/app", "v1") == image.digest
        rows = json.loads(sched.status.to_json())["entries"]
        seen = [(r.method, r.path.split("?")[0]) for r in src.requests_since(mark)]
    assert took < 10, took  # settle 0.3 s plus one copy; the schedule would wait an hour
    assert sched.runs_finished == 0  # no scheduled run happened
    # The event named team/app:v1: one HEAD of that tag, then the copy. No catalog, no tag
    # listing, nothing about other/app.
    syncer_side = [s for s in seen if s[0] in ("GET", "HEAD")]
    assert ("HEAD", "/v2/team/app/manifests/v1") in syncer_side
    assert not [p for _, p in syncer_side if "_catalog" in p or "tags/list" in p or "other" in p]
    assert sum(1 for m, p in syncer_side if m == "HEAD" and "/manifests/" in p) == 1
    assert await mirrored(dst, "other/app", "v1") is None
    (row,) = [r for r in rows if r["last_event"]]  # the glob entry's row, before any run
    assert row["source"] == f"{src.host}/team/*" and row["status"] == "pending"
    assert row["last_event"].endswith(" registry: push team/app:v1")
    assert row["event_result"] == "ok: 1 copied, 0 up to date, 0 failed, 0 pruned"


async def test_a_forged_event_without_authentication_gets_401_and_causes_no_request(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    await asyncio.to_thread(push, src.url, "team/app", app_image(1, 0), "v1")
    entries = [{"source": f"{src.host}/team/app", "destination": f"{dst.host}/team/app"}]
    cfg = events_yaml(tmp_path, entries, src, dst, settle="100ms")
    async with running(cfg, port) as sched:
        mark, dst_mark = src.mark(), dst.mark()
        body = envelope("team/app", "v1")
        answers = [
            await post(port, "/events/registry", body),
            await post(port, "/events/registry", body, bearer("wrong-token")),
            await post(port, "/events/registry", body, {"Authorization": TOKEN}),
        ]
        await asyncio.sleep(0.5)  # past the settle window: nothing may have been queued
        depth = sched.events.queue.depth
        metrics = (await post(port, "/metrics", b"")).status_code
        text = sched.metrics.text().decode()
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert answers[0].text == "unauthenticated\n"
    assert depth == 0 and sched.events.runs_finished == 0
    assert src.requests_since(mark) == [] and dst.requests_since(dst_mark) == []
    assert 'syncer_events_rejected_total{reason="unauthenticated",sender="registry"} 3.0' in text
    assert 'syncer_events_received_total{sender="registry"} 3.0' in text
    assert metrics == 405  # /metrics is GET only
    assert TOKEN not in text


async def test_an_event_whose_digest_lies_mirrors_the_sources_real_digest(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    real, claimed = app_image(1, 0), app_image(2, 0)
    await asyncio.to_thread(push, src.url, "team/app", real, "v1")
    await asyncio.to_thread(push, src.url, "team/decoy", claimed, "v1")
    entries = [{"source": f"{src.host}/team/app", "destination": f"{dst.host}/team/app"}]
    cfg = events_yaml(tmp_path, entries, src, dst, settle="100ms")
    async with running(cfg, port) as sched:
        answer = await post(
            port, "/events/registry", envelope("team/app", "v1", digest=claimed.digest), bearer()
        )
        await wait_until(lambda: sched.events.runs_finished >= 1, 20)
    assert answer.status_code == 202
    assert answer.json() == {"events": 1, "queued": 1, "coalesced": 0}
    assert await mirrored(dst, "team/app", "v1") == real.digest != claimed.digest
