"""GitHub Packages webhooks for ghcr.io: `package` and `registry_package` events."""

from __future__ import annotations

from typing import Any

from syncer.service.events.model import Event, field, tag_or_none

__all__ = ["parse"]

_ACTIONS = ("published", "updated")


def parse(doc: Any) -> list[Event]:
    key = "package" if isinstance(doc, dict) and "package" in doc else "registry_package"
    action = field(doc, "action")
    package_type = field(doc, key, "package_type")
    if action not in _ACTIONS or package_type.lower() != "container":
        return []  # npm, maven ... or a deletion GitHub sends without a tag
    name = field(doc, key, "name")
    owner = field(doc, key, "namespace", required=False) or field(doc, key, "owner", "login")
    meta = (key, "package_version", "container_metadata", "tag")
    tag = tag_or_none(field(doc, *meta, "name", required=False), ".".join((*meta, "name")))
    digest = field(doc, *meta, "digest", required=False)
    # ghcr.io names are lower case whatever the GitHub owner's spelling.
    return [Event(f"{owner}/{name}".lower(), tag, digest=digest)]
