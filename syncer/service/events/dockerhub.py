"""Docker Hub repository webhooks: one push (`push_data.tag`) of `repository.repo_name`."""

from __future__ import annotations

from typing import Any

from syncer.service.events.model import Event, field, tag_or_none

__all__ = ["parse"]


def parse(doc: Any) -> list[Event]:
    repository = field(doc, "repository", "repo_name")
    field(doc, "push_data", kind=dict)
    tag = tag_or_none(field(doc, "push_data", "tag", required=False), "push_data.tag")
    return [Event(repository, tag)]  # no tag: the whole repository is checked
