"""Decide, without any I/O, what a sync entry must do with each tag.

The runner gathers facts (tag lists, digests from HEAD requests); the planner
turns them into a `Plan`. Keeping this pure is what lets the decision logic be
tested exhaustively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syncer.errors import InvalidReference
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import ImageManifest, parse_manifest
from syncer.registry.reference import validate_tag
from syncer.sync.outcome import Outcome

IMMUTABLE_REASON = "immutable tag present at destination"


@dataclass(frozen=True)
class TagPlan:
    tag: str
    dest_tag: str
    action: Outcome
    source_digest: str | None = None
    dest_digest: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    items: tuple[TagPlan, ...] = field(default_factory=tuple)

    def by_action(self, action: Outcome) -> list[TagPlan]:
        return [i for i in self.items if i.action is action]

    @property
    def to_copy(self) -> list[TagPlan]:
        return self.by_action(Outcome.COPY)

    @property
    def up_to_date(self) -> list[TagPlan]:
        return self.by_action(Outcome.UP_TO_DATE)

    @property
    def filtered(self) -> list[TagPlan]:
        return self.by_action(Outcome.FILTERED)

    @property
    def immutable(self) -> list[TagPlan]:
        """Up-to-date items decided from the destination listing alone (no HEAD)."""
        return [i for i in self.up_to_date if i.reason == IMMUTABLE_REASON]


def split_immutable(
    selected: Iterable[str], dest_tags: set[str] | None, immutable: Iterable[re.Pattern[str]]
) -> tuple[list[str], list[str]]:
    """Split selected tags into (to_check, skipped_immutable).

    A tag matching an `immutable` pattern (whole tag) that the destination listing
    already contains is never checked again: zero requests for it. Without a
    listing (`dest_tags` None) nothing is known to be present, so nothing is skipped.
    Tags keep their names at the destination (repository entries).
    """
    patterns = tuple(immutable)
    to_check: list[str] = []
    skipped: list[str] = []
    for tag in selected:
        present = dest_tags is not None and tag in dest_tags
        if present and any(p.fullmatch(tag) for p in patterns):
            skipped.append(tag)
        else:
            to_check.append(tag)
    return to_check, skipped


def needs_dest_head(tag: str, dest_tags: set[str] | None) -> bool:
    """A tag absent from the destination's listing is known missing: no HEAD needed."""
    return dest_tags is None or tag in dest_tags


def make_plan(
    source: Mapping[str, str | None],
    destination: Mapping[str, str | None],
    *,
    filtered: Mapping[str, str] | None = None,
    dest_tag: Mapping[str, str] | None = None,
    immutable: Iterable[str] = (),
    invalid: Mapping[str, str] | None = None,
) -> Plan:
    """Compare digests per selected tag.

    `source` maps each selected source tag to its digest (None: it vanished
    between listing and HEAD). `destination` maps destination tag names to their
    digest (None or absent: not there). `dest_tag` renames tags at the destination.
    `immutable` tags (from `split_immutable`) are up to date without digests.
    `invalid` maps tags that cannot be copied (from `expand.destination_tags`) to why.
    """
    frozen = set(immutable)
    if frozen & set(source):
        raise ValueError(f"tags both checked and immutable: {sorted(frozen & set(source))}")
    items: list[TagPlan] = []
    for tag in sorted(frozen | set(source)):
        target = (dest_tag or {}).get(tag, tag)
        if tag in frozen:
            items.append(TagPlan(tag, target, Outcome.UP_TO_DATE, reason=IMMUTABLE_REASON))
            continue
        src = source[tag]
        dst = destination.get(target)
        if src is None:
            items.append(
                TagPlan(tag, target, Outcome.MISSING, None, dst, "not found at the source")
            )
        elif dst == src:
            items.append(TagPlan(tag, target, Outcome.UP_TO_DATE, src, dst))
        else:
            why = "absent at the destination" if dst is None else f"destination has {dst}"
            items.append(TagPlan(tag, target, Outcome.COPY, src, dst, why))
    for tag, why in sorted((invalid or {}).items()):
        items.append(TagPlan(tag, tag, Outcome.INVALID, reason=why))
    for tag, why in sorted((filtered or {}).items()):
        items.append(TagPlan(tag, tag, Outcome.FILTERED, reason=why))
    return Plan(tuple(items))


@dataclass(frozen=True)
class PrunePlan:
    candidates: tuple[str, ...]  # no longer selected and not protected: up for deletion
    protected: tuple[str, ...]  # no longer selected, but prune_protect keeps them
    invalid: tuple[tuple[str, str], ...] = ()  # (tag, why): listed, but not addressable


def plan_prune(dest_tags: Iterable[str], keep: Iterable[str], protect: Iterable[str]) -> PrunePlan:
    """Destination tags no longer selected at the source, split by `prune_protect`."""
    kept = set(keep)
    patterns = [re.compile(p) for p in protect]
    candidates: list[str] = []
    protected: list[str] = []
    invalid: list[tuple[str, str]] = []
    for tag in sorted(set(dest_tags) - kept):
        try:
            validate_tag(tag)
        except InvalidReference as e:
            invalid.append((tag, f"invalid tag: {e.reason}"))  # its own problem, never fatal
            continue
        (protected if any(p.fullmatch(tag) for p in patterns) else candidates).append(tag)
    return PrunePlan(tuple(candidates), tuple(protected), tuple(invalid))


@dataclass(frozen=True)
class Deletion:
    digest: str
    tags: tuple[str, ...]  # every candidate on that manifest: one DELETE removes them all


@dataclass(frozen=True)
class PruneDecision:
    delete: tuple[Deletion, ...]
    reachable: tuple[tuple[str, str], ...]  # (tag, digest): a kept tag reaches the manifest
    over_limit: tuple[tuple[str, str], ...]  # (tag, digest): prune_max was reached


def decide_deletions(
    resolved: Iterable[tuple[str, str]], reachable: Iterable[str], limit: int
) -> PruneDecision:
    """Group candidate tags by manifest and apply the safety rules to whole manifests.

    Registries delete by digest, so a deletion removes every tag on the manifest: a manifest
    is deleted only when no kept or protected tag reaches it (`reachable`), and only when all
    its tags fit in what is left of `limit` (tags removed per run, taken in tag order).
    """
    keep = set(reachable)
    groups: dict[str, list[str]] = {}
    for tag, digest in sorted(resolved):
        groups.setdefault(digest, []).append(tag)
    delete: list[Deletion] = []
    kept: list[tuple[str, str]] = []
    over: list[tuple[str, str]] = []
    left = limit
    for digest, tags in groups.items():
        if digest in keep:
            kept.extend((t, digest) for t in tags)
        elif len(tags) > left:
            left = 0  # later, smaller groups wait too: deletions stay in tag order
            over.extend((t, digest) for t in tags)
        else:
            left -= len(tags)
            delete.append(Deletion(digest, tuple(tags)))
    return PruneDecision(tuple(delete), tuple(kept), tuple(over))


# The OCI tag schema for referrers on registries without the referrers API
# (`sha256-<hex>`), plus cosign's `.sig`, `.att`, `.sbom` suffixes.
REFERRER_TAG = re.compile(r"sha256-([0-9a-f]{64})(?:\.[a-z]+)?")


def referrer_tags(listed: Iterable[str], digests: Iterable[str | None]) -> list[str]:
    """Tags in `listed` that attach artifacts to any of `digests`."""
    wanted = {d.removeprefix("sha256:") for d in digests if d and d.startswith("sha256:")}
    out = []
    for tag in listed:
        m = REFERRER_TAG.fullmatch(tag)
        if m and m.group(1) in wanted:
            out.append(tag)
    return sorted(out)


def unwanted_referrer(types: tuple[str, ...], tag: str, fetched: FetchedManifest) -> str | None:
    """Why a referrer tag is not copied (not one of `referrers_filter.artifact_types`,
    given as `types`; empty: every type), or None."""
    if not types or not REFERRER_TAG.fullmatch(tag):
        return None
    manifest = parse_manifest(fetched.data, fetched.media_type)
    kind = getattr(manifest, "artifact_type", None)
    if kind is None and isinstance(manifest, ImageManifest):
        kind = manifest.config.media_type
    if kind in types:
        return None
    return f"artifact type {kind} not in referrers_filter.artifact_types"
