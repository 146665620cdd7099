"""Events in: bursts coalesce, runs of one entry never overlap, the queue is bounded, bodies
are checked, deletes prune only what the source no longer has, and every sender kind works."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.service.logs import configure
from tests.service.events_support import (
    TOKEN,
    bearer,
    envelope,
    events_yaml,
    free_port,
    mirrored,
    post,
    running,
    wait_until,
)
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RegistryFactory, RunningRegistry

DATA = Path(__file__).resolve().parents[1] / "data" / "events"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EV_TOKEN", TOKEN)


def one_entry(src: RunningRegistry, dst: RunningRegistry, **extra: Any) -> list[dict[str, Any]]:
    return [{"source": f"{src.host}/team/app", "destination": f"{dst.host}/team/app", **extra}]


async def push_tags(
    src: RunningRegistry, tags: list[str], repo: str = "team/app"
) -> dict[str, str]:
    digests = {}
    for i, tag in enumerate(tags):
        image = app_image(hash(repo) % 7, i)
        await asyncio.to_thread(push, src.url, repo, image, tag)
        digests[tag] = image.digest
    return digests


async def test_a_burst_of_events_is_one_sync_with_its_tags_batched(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    tags = [f"v{i}" for i in range(10)]
    digests = await push_tags(src, tags)
    cfg = events_yaml(tmp_path, one_entry(src, dst), src, dst, settle="200ms")
    async with running(cfg, port) as sched:
        mark = src.mark()
        # Held as a running entry would: however slowly the posts go on a loaded machine,
        # they all wait in one batch behind it.
        key = (f"{src.host}/team/app", f"{dst.host}/team/app")
        held = sched.locks.hold([key])
        await held.__aenter__()
        answers = [
            await post(port, "/events/registry", envelope("team/app", t), bearer()) for t in tags
        ]
        again = await post(port, "/events/registry", envelope("team/app", *tags[:3]), bearer())
        await held.__aexit__(None, None, None)
        await wait_until(lambda: sched.events.runs_finished >= 1, 20)
        await asyncio.sleep(0.3)
        text = sched.metrics.text().decode()
    assert [a.status_code for a in answers] == [202] * 10
    assert again.json() == {"events": 3, "queued": 0, "coalesced": 3}
    assert sched.events.runs_finished == 1
    for tag, digest in digests.items():
        assert await mirrored(dst, "team/app", tag) == digest
    heads = [r.path for r in src.requests_since(mark) if r.method == "HEAD"]
    assert sorted(heads) == sorted(f"/v2/team/app/manifests/{t}" for t in tags)  # one each
    assert not [r for r in src.requests_since(mark) if "tags/list" in r.path]
    assert 'syncer_events_accepted_total{sender="registry"} 10.0' in text
    assert 'syncer_events_coalesced_total{sender="registry"} 3.0' in text
    assert "syncer_event_to_mirrored_seconds_count 10.0" in text
    labels = f'destination="{dst.host}/team/app",source="{src.host}/team/app"'
    copied = "syncer_tags_copied_total{" + labels + "}"
    assert f"{copied} 10.0" in text


async def test_events_for_a_running_entry_wait_behind_it_never_beside(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    digests = await push_tags(src, ["v1"])
    cfg = events_yaml(tmp_path, one_entry(src, dst), src, dst, settle="100ms")
    async with running(cfg, port) as sched:
        key = (f"{src.host}/team/app", f"{dst.host}/team/app")
        release = asyncio.Event()

        async def scheduled_run() -> None:  # what a scheduled group holds while it runs
            async with sched.locks.hold([key]):
                await release.wait()

        holder = asyncio.create_task(scheduled_run())
        await asyncio.sleep(0)
        assert (
            await post(port, "/events/registry", envelope("team/app", "v1"), bearer())
        ).status_code == 202
        await asyncio.sleep(0.6)  # the settle window passed long ago
        waited = sched.events.runs_finished, await mirrored(dst, "team/app", "v1")
        release.set()
        await holder
        await wait_until(lambda: sched.events.runs_finished >= 1, 20)
    assert waited == (0, None)
    assert await mirrored(dst, "team/app", "v1") == digests["v1"]


async def test_a_full_queue_answers_503_with_retry_after_and_queues_nothing(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = events_yaml(tmp_path, one_entry(src, dst), src, dst, settle="10s", queue=2)
    async with running(cfg, port) as sched:
        first = await post(port, "/events/registry", envelope("team/app", "a"), bearer())
        full = await post(port, "/events/registry", envelope("team/app", "b", "c"), bearer())
        same = await post(port, "/events/registry", envelope("team/app", "a"), bearer())
        depth = sched.events.queue.depth
        text = sched.metrics.text().decode()
    assert (first.status_code, full.status_code, same.status_code) == (202, 503, 202)
    assert full.headers["Retry-After"] == "60"
    assert depth == 1  # all or nothing: b and c took no slot; a again coalesced
    assert 'syncer_events_rejected_total{reason="queue_full",sender="registry"} 1.0' in text
    assert "syncer_event_queue_capacity 2.0" in text


async def test_bodies_are_capped_and_checked_and_uncovered_repositories_cost_nothing(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    entries = one_entry(src, dst, tags={"deny": ["skip-.*"]})
    cfg = events_yaml(tmp_path, entries, src, dst, settle="100ms")
    # The info line below is looked for: logging as `syncer schedule` sets it up, whatever
    # level or stream an earlier test in this process left configured.
    configure("json", "info")
    async with running(cfg, port) as sched:
        mark = src.mark()
        huge = b'{"events": [' + b" " * (1024 * 1024) + b"]}"
        answers = {
            "huge": await post(port, "/events/registry", huge, bearer()),
            "not json": await post(port, "/events/registry", b"{", bearer()),
            "shape": await post(port, "/events/registry", {"events": "x"}, bearer()),
            "unknown sender": await post(
                port, "/events/nobody", envelope("team/app", "v1"), bearer()
            ),
            "path secret on a token sender": await post(port, f"/events/registry/{TOKEN}", b"{}"),
        }
        covered_not = [
            await post(port, "/events/registry", envelope("elsewhere/app", "v1"), bearer())
            for _ in range(3)
        ]
        denied = await post(port, "/events/registry", envelope("team/app", "skip-me"), bearer())
        await asyncio.sleep(0.4)
        runs = sched.events.runs_finished
    statuses = {k: a.status_code for k, a in answers.items()}
    assert statuses == {
        "huge": 400,
        "not json": 400,
        "shape": 400,
        "unknown sender": 404,
        "path secret on a token sender": 404,
    }
    assert answers["huge"].text == "body over 1048576 bytes\n"
    assert answers["shape"].text == "not a distribution event: events is not a list\n"
    assert [a.status_code for a in covered_not] == [202] * 3
    assert covered_not[0].json() == {"events": 1, "queued": 0, "coalesced": 0}
    assert denied.json()["queued"] == 0  # tags.deny: the entry never copies it
    assert runs == 0 and src.requests_since(mark) == []
    out = "".join(capsys.readouterr())
    assert out.count("events about repositories no entry mirrors") == 1  # once a minute
    assert TOKEN not in out


async def test_deletes_prune_only_where_prune_is_set_and_only_what_the_source_lost(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    await push_tags(src, ["keep", "gone"])
    await push_tags(src, ["keep", "gone"], repo="team/noprune")
    for repo in ("team/app", "team/noprune"):
        for tag in ("keep", "gone"):
            await asyncio.to_thread(
                push, dst.url, repo, app_image(5, 0 if tag == "keep" else 1), tag
            )
    entries = [
        *one_entry(src, dst, prune=True),
        {"source": f"{src.host}/team/noprune", "destination": f"{dst.host}/team/noprune"},
    ]
    cfg = events_yaml(tmp_path, entries, src, dst, settle="100ms")
    async with httpx.AsyncClient(trust_env=False) as c:
        for repo in ("team/app", "team/noprune"):
            head = await c.head(
                f"{src.url}/v2/{repo}/manifests/gone",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
            await c.delete(f"{src.url}/v2/{repo}/manifests/{head.headers['Docker-Content-Digest']}")
    async with running(cfg, port) as sched:
        deletes = {
            "events": [
                {"action": "delete", "target": {"repository": r, "tag": t}}
                for r in ("team/app", "team/noprune")
                for t in ("keep", "gone")
            ]
        }
        answer = await post(port, "/events/registry", deletes, bearer())
        await wait_until(lambda: sched.events.runs_finished >= 1, 20)
    assert answer.json() == {"events": 4, "queued": 1, "coalesced": 1}
    assert await mirrored(dst, "team/app", "gone") is None  # the source confirmed it is gone
    assert await mirrored(dst, "team/app", "keep") is not None  # the source still has it
    assert await mirrored(dst, "team/noprune", "gone") is not None  # prune: false


def _sender_cases(src: RunningRegistry) -> dict[str, Any]:
    return {
        "gh": {"kind": "ghcr", "registry": src.host, "secret": "${EV_TOKEN}"},
        "hub": {"kind": "dockerhub", "registry": src.host, "secret_file": "SECRET_FILE"},
        "harbor": {"kind": "harbor", "registry": src.host, "secret": "${EV_TOKEN}"},
        "quay": {"kind": "quay", "registry": src.host, "secret": "${EV_TOKEN}"},
    }


async def test_each_sender_kind_mirrors_through_its_own_authentication(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    port = free_port()
    src, dst = registry_factory("anon"), registry_factory("anon")
    repos = ["octo-org/hello-world", "svendowideit/testhook", "library/alpine", "dgangaia/test"]
    tags = ["1.2.0", "latest", "latest", "latest"]
    digests = {}
    for i, (repo, tag) in enumerate(zip(repos, tags, strict=True)):
        image = app_image(i, 7)
        await asyncio.to_thread(push, src.url, repo, image, tag)
        digests[repo] = image.digest
    secret_file = tmp_path / "hub-secret"
    secret_file.write_text(TOKEN + "\n")
    senders = _sender_cases(src)
    senders["hub"]["secret_file"] = str(secret_file)
    entries = [{"source": f"{src.host}/{r}", "destination": f"{dst.host}/{r}"} for r in repos]
    cfg = events_yaml(tmp_path, entries, src, dst, settle="100ms", senders=senders)
    gh = (DATA / "ghcr-package-published.json").read_bytes()
    signature = "sha256=" + hmac.new(TOKEN.encode(), gh, hashlib.sha256).hexdigest()
    hub = (DATA / "dockerhub-push.json").read_bytes()
    harbor = (DATA / "harbor-push-artifact.json").read_bytes()
    quay = (DATA / "quay-repository-push.json").read_bytes()
    async with running(cfg, port) as sched:
        mark = src.mark()
        refused = [
            await post(port, "/events/gh", gh, {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
            await post(port, "/events/gh", gh + b" ", {"X-Hub-Signature-256": signature}),
            await post(port, "/events/hub/not-the-secret", hub),
            await post(port, "/events/harbor", harbor, {"Authorization": "Bearer nope"}),
            await post(port, "/events/quay/nope", quay),
        ]
        await asyncio.sleep(0.3)
        quiet = src.requests_since(mark)
        accepted = [
            await post(port, "/events/gh", gh, {"X-Hub-Signature-256": signature}),
            await post(port, f"/events/hub/{TOKEN}", hub),
            await post(port, "/events/harbor", harbor, {"Authorization": f"Bearer {TOKEN}"}),
            await post(port, f"/events/quay/{TOKEN}", quay),
        ]
        await wait_until(lambda: sched.events.runs_finished >= 4, 20)
    assert [a.status_code for a in refused] == [401] * 5 and quiet == []
    assert [a.json()["queued"] for a in accepted] == [1, 1, 1, 1]
    for repo, tag in zip(repos, tags, strict=True):
        assert await mirrored(dst, repo, tag) == digests[repo], repo


def test_sender_config_needs_a_secret_and_names_its_registry(tmp_path: Path) -> None:
    from syncer.config.syncfile import load_config
    from syncer.errors import ConfigError

    cfg = tmp_path / "sync.yaml"
    cfg.write_text(
        json.dumps(
            {
                "version": 1,
                "sync": [{"source": "reg.example/a", "destination": "mirror.example/a"}],
                "events": {
                    "senders": {
                        "Bad Name": {"kind": "ghcr", "secret": "x"},
                        "open": {"kind": "dockerhub"},
                        "reg": {"kind": "distribution", "secret": "x"},
                    }
                },
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    text = str(err.value)
    assert "2 problems" in text
    assert "events.senders.open.secret: needs exactly one of" in text
    assert "events.senders.reg.registry: a distribution sender needs the registry host" in text
    doc = json.loads(cfg.read_text())
    doc["events"]["senders"] = {"Bad Name": {"kind": "ghcr", "secret": "x"}}
    cfg.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r'events\.senders\["Bad Name"\]: is not a path segment'):
        load_config(cfg, env={})


async def test_a_scheduled_run_waits_for_an_event_run_of_the_same_entry(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    from syncer.service.scheduler import Scheduler
    from syncer.sync.runner import RunOptions

    src, dst = registry_factory("anon"), registry_factory("anon")
    await push_tags(src, ["v1"])
    cfg = events_yaml(tmp_path, one_entry(src, dst), src, dst)
    sched = Scheduler(cfg, RunOptions(), run_now=True)
    key = (f"{src.host}/team/app", f"{dst.host}/team/app")
    release = asyncio.Event()

    async def event_run() -> None:  # what the hub holds while an event run goes
        async with sched.locks.hold([key]):
            await release.wait()

    holder = asyncio.create_task(event_run())
    await asyncio.sleep(0)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(0.8)
    waited = sched.runs_finished, await mirrored(dst, "team/app", "v1")
    release.set()
    await holder
    await wait_until(lambda: sched.runs_finished >= 1, 20)
    sched.stop()
    assert await task == 0
    assert waited == (0, None)
    assert await mirrored(dst, "team/app", "v1") is not None
