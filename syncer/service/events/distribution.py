"""distribution (`registry:2`) notifications: the events envelope its endpoints POST."""

from __future__ import annotations

from typing import Any

from syncer.service.events.model import Action, Event, field, tag_or_none

__all__ = ["MEDIA_TYPE", "parse"]

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
# A blob push comes before the manifest that names it, with the generic type; only
# manifests move tags.
_BLOB_TYPES = ("application/octet-stream",)


def parse(doc: Any) -> list[Event]:
    events = field(doc, "events", kind=list)
    out: list[Event] = []
    for i, event in enumerate(events):
        where = f"events[{i}]"
        action = field(event, "action", at=where)
        if action == "delete":
            repository = field(event, "target", "repository", at=where)
            tag = tag_or_none(
                field(event, "target", "tag", required=False, at=where), f"{where}.target.tag"
            )
            out.append(Event(repository, tag, Action.DELETE))
            continue
        if action != "push":
            continue  # pull, mount: nothing changed
        media_type = field(event, "target", "mediaType", required=False, at=where)
        url = field(event, "target", "url", required=False, at=where) or ""
        if media_type in _BLOB_TYPES or "/blobs/" in url:
            continue
        tag = tag_or_none(
            field(event, "target", "tag", required=False, at=where), f"{where}.target.tag"
        )
        if tag is None:
            continue  # a manifest put by digest (an index's child) moves no tag
        repository = field(event, "target", "repository", at=where)
        digest = field(event, "target", "digest", required=False, at=where)
        out.append(Event(repository, tag, Action.PUSH, digest))
    return out
