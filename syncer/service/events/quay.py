"""Quay repository notifications, "Repository Push": `repository` and its `updated_tags`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncer.service.events.model import BadEvent, Event, field, tag_or_none

__all__ = ["parse"]


def parse(doc: Any) -> list[Event]:
    repository = field(doc, "repository")
    updated = doc.get("updated_tags") if isinstance(doc, Mapping) else None
    if updated is None:
        return [Event(repository, None)]
    # The documented payload lists tag names; older Quay sent {tag: image id}.
    if isinstance(updated, Mapping):
        names = list(updated)
    elif isinstance(updated, list):
        names = updated
    else:
        raise BadEvent("updated_tags is not a list")
    tags = [tag_or_none(t, f"updated_tags[{i}]") for i, t in enumerate(names)]
    return [Event(repository, t) for t in tags if t is not None] or [Event(repository, None)]
