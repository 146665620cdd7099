"""Decide, without any I/O, what a sync entry must do with each tag.

The runner gathers facts (tag lists, digests from HEAD requests); the planner
turns them into a `Plan`. Keeping this pure is what lets the decision logic be
tested exhaustively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class TagSelector(Protocol):
    def reason(self, tag: str) -> str | None:
        """Why `tag` is filtered out, or None when it is selected."""


class Action(StrEnum):
    COPY = "copy"
    UP_TO_DATE = "up_to_date"
    FILTERED = "filtered"
    MISSING = "missing"  # selected, but the source no longer has it


@dataclass(frozen=True)
class TagPlan:
    tag: str
    dest_tag: str
    action: Action
    source_digest: str | None = None
    dest_digest: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    items: tuple[TagPlan, ...] = field(default_factory=tuple)

    def by_action(self, action: Action) -> list[TagPlan]:
        return [i for i in self.items if i.action is action]

    @property
    def to_copy(self) -> list[TagPlan]:
        return self.by_action(Action.COPY)

    @property
    def up_to_date(self) -> list[TagPlan]:
        return self.by_action(Action.UP_TO_DATE)

    @property
    def filtered(self) -> list[TagPlan]:
        return self.by_action(Action.FILTERED)


def select_tags(tags: Iterable[str], selector: TagSelector) -> tuple[list[str], dict[str, str]]:
    """Split source tags into selected ones (sorted, unique) and filtered ones with reasons."""
    selected: list[str] = []
    filtered: dict[str, str] = {}
    for tag in sorted(set(tags)):
        why = selector.reason(tag)
        if why is None:
            selected.append(tag)
        else:
            filtered[tag] = why
    return selected, filtered


def needs_dest_head(tag: str, dest_tags: set[str] | None) -> bool:
    """A tag absent from the destination's listing is known missing: no HEAD needed."""
    return dest_tags is None or tag in dest_tags


def make_plan(
    source: Mapping[str, str | None],
    destination: Mapping[str, str | None],
    *,
    filtered: Mapping[str, str] | None = None,
    dest_tag: Mapping[str, str] | None = None,
) -> Plan:
    """Compare digests per selected tag.

    `source` maps each selected source tag to its digest (None: it vanished
    between listing and HEAD). `destination` maps destination tag names to their
    digest (None or absent: not there). `dest_tag` renames tags at the destination.
    """
    items: list[TagPlan] = []
    for tag in sorted(source):
        target = (dest_tag or {}).get(tag, tag)
        src = source[tag]
        dst = destination.get(target)
        if src is None:
            items.append(TagPlan(tag, target, Action.MISSING, None, dst, "not found at the source"))
        elif dst == src:
            items.append(TagPlan(tag, target, Action.UP_TO_DATE, src, dst))
        else:
            why = "absent at the destination" if dst is None else f"destination has {dst}"
            items.append(TagPlan(tag, target, Action.COPY, src, dst, why))
    for tag, why in sorted((filtered or {}).items()):
        items.append(TagPlan(tag, tag, Action.FILTERED, reason=why))
    return Plan(tuple(items))
