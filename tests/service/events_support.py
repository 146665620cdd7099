"""A `syncer schedule` with `events:` configured, a source registry whose notifications
point at it, and small helpers to post and wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from syncer.service.scheduler import Scheduler
from syncer.sync.runner import RunOptions
from tests.support.images import fetch_manifest_digest
from tests.support.registry import RegistryFactory, RunningRegistry, free_port
from tests.support.syncer_setup import write_sync_yaml

TOKEN = "event-token-0123456789"
ENVELOPE = "application/vnd.docker.distribution.events.v1+json"


def notifications(port: int, token: str = TOKEN) -> dict[str, Any]:
    """distribution's `notifications:` stanza, posting to syncer's /events/registry."""
    return {
        "notifications": {
            "endpoints": [
                {
                    "name": "syncer",
                    "url": f"http://127.0.0.1:{port}/events/registry",
                    "headers": {"Authorization": [f"Bearer {token}"]},
                    "timeout": "2s",
                    "threshold": 3,
                    "backoff": "1s",
                }
            ]
        }
    }


def source_with_notifications(factory: RegistryFactory, port: int) -> RunningRegistry:
    return factory("anon", extra_config=notifications(port))


def events_yaml(
    tmp: Path,
    entries: list[dict[str, Any]],
    src: RunningRegistry,
    dst: RunningRegistry,
    *,
    settle: str = "300ms",
    queue: int = 1000,
    senders: dict[str, Any] | None = None,
) -> Path:
    path = write_sync_yaml(tmp / "sync.yaml", entries, src, dst, defaults={"interval": "1h"})
    doc = yaml.safe_load(path.read_text())
    doc["events"] = {
        "settle": settle,
        "queue": queue,
        "senders": senders
        or {"registry": {"kind": "distribution", "registry": src.host, "secret": "${EV_TOKEN}"}},
    }
    path.write_text(json.dumps(doc))
    return path


@contextlib.asynccontextmanager
async def running(cfg: Path, port: int) -> AsyncIterator[Scheduler]:
    sched = Scheduler(cfg, RunOptions())
    task = asyncio.create_task(sched.run(metrics_port=port, metrics_host="127.0.0.1"))
    try:
        await wait_until(lambda: sched.metrics_port is not None, 10)
        yield sched
    finally:
        sched.stop()
        assert await asyncio.wait_for(task, 30) == 0


async def wait_until(check: Callable[[], object], timeout: float) -> float:
    """Seconds it took until `check()` was true; AssertionError after `timeout`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.02)
    return loop.time() - start


async def mirrored(dst: RunningRegistry, repo: str, tag: str) -> str | None:
    return await asyncio.to_thread(fetch_manifest_digest, dst.url, repo, tag)


async def post(
    port: int, path: str, body: bytes | Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        return await c.post(f"http://127.0.0.1:{port}{path}", content=data, headers=headers)


def envelope(repository: str, *tags: str, digest: str = "sha256:" + "0" * 64) -> dict[str, Any]:
    """A distribution envelope of manifest pushes, as tests/data/events holds a real one."""
    return {
        "events": [
            {
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": repository,
                    "tag": tag,
                },
            }
            for tag in tags
        ]
    }


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": ENVELOPE}


__all__ = ["free_port"]
