"""What one push event asks for: the entries whose source covers a repository, and the
narrowest run that checks one tag of them (two HEADs, then the copy) under the entry's rules.

Nothing here trusts the event for content: it only chooses what a run looks at.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from syncer.config.patterns import glob_matches, render_tag
from syncer.config.syncfile import ResolvedEntry
from syncer.errors import InvalidReference
from syncer.sync.catalog import concrete_entry

__all__ = ["Check", "check_for_tag", "covers", "pin_tag"]


class Check(Enum):
    TAG = "tag"  # only this tag: its source and destination HEADs
    WHOLE = "whole"  # the entry's whole repository, as a scheduled run checks it
    NONE = "none"  # the entry's rules never copy this tag: no request at all


def covers(entry: ResolvedEntry, registry: str, repo: str) -> ResolvedEntry | None:
    """The concrete entry of `entry` for `registry/repo` when its source covers that
    repository (globs and `repositories:` included), without listing any catalog."""
    src = entry.source
    if src.registry != registry:
        return None
    prefix = ""
    if entry.glob is not None:
        prefix, pattern = entry.glob
        if not (glob_matches(pattern, repo) and entry.repositories.matches(repo)):
            return None
    elif src.repository != repo:
        return None
    if entry.glob is None and entry.dest_template is None:
        return entry
    try:
        return concrete_entry(entry, repo, prefix)
    except InvalidReference:
        return None  # a scheduled run reports the name; an event cannot fix it


def check_for_tag(entry: ResolvedEntry, tag: str) -> Check:
    """How a push of `tag` into `entry`'s (concrete) source is checked."""
    if entry.source.tag is not None or entry.source.digest is not None:
        return Check.TAG if entry.source.tag == tag else Check.NONE
    if entry.tags.latest is not None:
        return Check.WHOLE  # "the N highest" is judged over the whole listing
    if any(p.fullmatch(tag) for p in entry.tags.immutable_patterns):
        return Check.WHOLE  # kept only if the destination's listing lacks it
    if entry.tags.reason(tag) is not None:
        return Check.NONE
    return Check.TAG


def pin_tag(entry: ResolvedEntry, tag: str) -> ResolvedEntry:
    """`entry` narrowed to `tag` (check_for_tag said TAG): a one-tag entry that never prunes.
    Raises InvalidReference when `tag_template` gives no valid tag."""
    if entry.source.tag is not None:
        return entry
    return dataclasses.replace(
        entry,
        source=entry.source.with_tag(tag),
        destination=entry.destination.with_tag(render_tag(entry.tag_template, tag)),
        prune=False,
    )
