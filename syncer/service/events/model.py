"""What a sender's payload says, in one shape for every kind: a repository, maybe a tag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncer.errors import InvalidReference
from syncer.registry.reference import validate_tag

__all__ = ["Action", "BadEvent", "Event", "field", "tag_or_none"]


class Action(StrEnum):
    PUSH = "push"
    DELETE = "delete"


@dataclass(frozen=True)
class Event:
    """A hint that `repository` (and `tag`, when known) changed; never trusted for content."""

    repository: str
    tag: str | None
    action: Action = Action.PUSH
    digest: str | None = None  # what the sender says; only logged, never used


class BadEvent(ValueError):
    """The body is not of the shape this sender kind sends (answered with 400)."""


def field(doc: Any, *path: str, kind: type = str, required: bool = True, at: str = "") -> Any:
    """`doc[path[0]][path[1]]...`, checked to be a `kind`; BadEvent names the path (below
    `at`, e.g. `events[3]`)."""

    def name(parts: tuple[str, ...]) -> str:
        return ".".join((at, *parts) if at else parts) or "body"

    node = doc
    for i, key in enumerate(path):
        if not isinstance(node, Mapping):
            raise BadEvent(f"{name(path[:i])} is not an object")
        if key not in node or node[key] is None:
            if required:
                raise BadEvent(f"{name(path[: i + 1])} is missing")
            return None
        node = node[key]
    if not isinstance(node, kind) or (kind is str and not node):
        expected = "non-empty string" if kind is str else kind.__name__
        raise BadEvent(f"{name(path)} is not a {expected}")
    return node


def tag_or_none(value: Any, where: str) -> str | None:
    """A tag as senders write it; a digest in the tag field (Harbor's push by digest) is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{where} is not a string")
    if value.startswith("sha256:"):
        return None
    try:
        return validate_tag(value)
    except InvalidReference as exc:
        raise BadEvent(f"{where}: {exc.reason}") from None
