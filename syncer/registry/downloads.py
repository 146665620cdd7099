"""Blob downloads that survive broken connections: resumed with `Range`, or restarted with
the part already delivered skipped, so the caller sees each byte exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx
import structlog

from syncer.errors import TransportError, redact_url
from syncer.registry.transport.responses import network_failure
from syncer.registry.transport.session import RegistrySession

log = structlog.get_logger("syncer.registry.transport")


async def download(
    t: RegistrySession,
    path: str,
    *,
    scopes: frozenset[str],
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """Stream a body, resuming with `Range` after a broken connection.

    Where the server ignores Range the body restarts and the part already
    delivered is skipped, so the caller sees each byte exactly once.
    """
    delivered = 0
    breaks = 0
    while True:
        hdrs = dict(headers or {})
        if delivered:
            hdrs["Range"] = f"bytes={delivered}-"
        async with t.stream("GET", path, scopes=scopes, headers=hdrs, ok=(200, 206)) as resp:
            skip = delivered if resp.status_code == 200 else 0
            try:
                async for chunk in resp.aiter_raw():
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    delivered += len(chunk)
                    yield chunk
                return
            except httpx.TransportError as exc:
                breaks += 1
                if breaks >= t.config.retry.attempts:
                    raise TransportError(
                        f"GET {redact_url(t.url(path))}: connection broke {breaks} times "
                        f"({network_failure(exc, t.url(path))})"
                    ) from None
                log.warning(
                    "download broke, resuming",
                    registry=t.registry,
                    url=redact_url(t.url(path)),
                    offset=delivered,
                    attempt=breaks,
                )
        await asyncio.sleep(t.backoff(breaks))
