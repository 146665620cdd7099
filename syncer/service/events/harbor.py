"""Harbor webhooks (default payload format): PUSH_ARTIFACT and DELETE_ARTIFACT."""

from __future__ import annotations

from typing import Any

from syncer.service.events.model import Action, Event, field, tag_or_none

__all__ = ["parse"]

_ACTIONS = {"PUSH_ARTIFACT": Action.PUSH, "DELETE_ARTIFACT": Action.DELETE}


def parse(doc: Any) -> list[Event]:
    action = _ACTIONS.get(field(doc, "type"))
    if action is None:
        return []  # pulls, scans, quota, replication: nothing to mirror
    repository = field(doc, "event_data", "repository", "repo_full_name")
    resources = field(doc, "event_data", "resources", kind=list)
    out: list[Event] = []
    for i, resource in enumerate(resources):
        where = f"event_data.resources[{i}]"
        tag = tag_or_none(field(resource, "tag", required=False, at=where), f"{where}.tag")
        digest = field(resource, "digest", required=False, at=where)
        if tag is None and action is Action.PUSH:
            continue  # pushed by digest: no tag moved
        out.append(Event(repository, tag, action, digest))
    return out
