"""`POST /events/<sender>[/<secret>]`: authenticate, read, parse, queue; answer at once.

Order matters for cost: the sender's secret is checked before the body is read (a signature,
after reading at most MAX_BODY bytes), so a request without it costs no parsing, no queue slot
and no request to any registry. Secrets and secret paths are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from syncer.config.events import MAX_BODY, SenderKind
from syncer.service.events import distribution, dockerhub, ghcr, harbor, quay
from syncer.service.events.auth import PATH_SECRET_KINDS, authentic, needs_body
from syncer.service.events.hub import EventHub
from syncer.service.events.model import BadEvent, Event
from syncer.service.events.queue import QueueFull

__all__ = ["PARSERS", "RETRY_AFTER_S", "EventEndpoint"]

log = structlog.get_logger("syncer.service.events")
PARSERS: dict[SenderKind, Callable[[Any], list[Event]]] = {
    SenderKind.DISTRIBUTION: distribution.parse,
    SenderKind.HARBOR: harbor.parse,
    SenderKind.DOCKERHUB: dockerhub.parse,
    SenderKind.GHCR: ghcr.parse,
    SenderKind.QUAY: quay.parse,
}
RETRY_AFTER_S = 60


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


class EventEndpoint:
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/events/{sender}", self.handle)
        app.router.add_post("/events/{sender}/{secret}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        sender = self.hub.senders.get(request.match_info["sender"])
        path_secret = request.match_info.get("secret")
        if sender is None or (path_secret is not None) != (sender.config.kind in PATH_SECRET_KINDS):
            return _text(404, "no such event sender")
        kind, m = sender.config.kind, self.hub.metrics
        m.received.labels(sender.name).inc()

        def reject(status: int, reason: str, text: str, **headers: str) -> web.Response:
            m.rejected.labels(sender.name, reason).inc()
            return _text(status, text, **headers)

        early = not needs_body(kind)
        if early and not authentic(kind, sender.secret, request.headers, path_secret):
            return reject(401, "unauthenticated", "unauthenticated")
        if (request.content_length or 0) > MAX_BODY:
            return reject(400, "malformed", f"body over {MAX_BODY} bytes")
        body = await _read_capped(request)
        if body is None:
            return reject(400, "malformed", f"body over {MAX_BODY} bytes")
        if needs_body(kind) and not authentic(kind, sender.secret, request.headers, None, body):
            return reject(401, "unauthenticated", "unauthenticated")
        try:
            events = PARSERS[kind](json.loads(body))
        except (ValueError, BadEvent) as exc:  # json.JSONDecodeError is a ValueError
            why = str(exc) if isinstance(exc, BadEvent) else "not JSON"
            return reject(400, "malformed", f"not a {kind} event: {why}")
        items = []
        for event in events:
            found = self.hub.items_for(sender, event)
            if not found:
                m.ignored.labels(sender.name).inc()
                self.hub.uncovered(sender, event)
            items.extend(found)
        try:
            fresh, coalesced = self.hub.enqueue(items)
        except QueueFull:
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            return reject(503, "queue_full", "event queue full", **retry)
        m.accepted.labels(sender.name).inc(len(fresh))
        m.coalesced.labels(sender.name).inc(len(coalesced))
        doc = {"events": len(events), "queued": len(fresh), "coalesced": len(coalesced)}
        return web.json_response(doc, status=202)


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (chunked bodies carry no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
