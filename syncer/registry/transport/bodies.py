"""Response bodies read into memory: always under a cap, enforced while streaming."""

from __future__ import annotations

import httpx

from syncer.errors import ResponseTooLarge, redact_url

# A response read whole (a tag list page, a referrers index, an upload answer) unless
# the caller names another cap: manifests have their own (models.MAX_MANIFEST_BYTES).
DEFAULT_MAX_BODY = 4 * 1024 * 1024


async def read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    """The whole body, or ResponseTooLarge as soon as more than `max_bytes` arrived."""
    if resp.request.method == "HEAD":
        return b""  # Content-Length is the size of what a GET would send (a blob, say)
    declared = resp.headers.get("content-length", "")
    what = f"{resp.request.method} {redact_url(str(resp.request.url))}"
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(what, max_bytes)
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(what, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
