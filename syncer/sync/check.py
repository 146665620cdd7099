"""The check phase of a run: both ends' digests for an entry's tags, then its plan.

Requests per entry when nothing changed: one (paged) tag listing on each side, then one
manifest HEAD per selected tag on each side. A tag absent from the destination listing
needs no destination HEAD; an immutable tag the destination lists needs none at all.
Never a manifest GET, except to compare a `platforms:` subset with its source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from syncer.config.filters import select_tags
from syncer.config.patterns import destination_tags
from syncer.config.syncfile import ResolvedEntry
from syncer.errors import NotFound
from syncer.registry.oci import INDEX_TYPES
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.sync.outcome import Outcome
from syncer.sync.planner import Plan, make_plan, needs_dest_head, referrer_tags, split_immutable
from syncer.sync.platforms import holds_filtered_copy
from syncer.sync.referrers import merged_from
from syncer.sync.shard import Shard, entry_key, owns_tag

T = TypeVar("T")


class Slot(Protocol):
    """The run's concurrency limit, shared with its copies (`Runner._slot`)."""

    def __call__(self, work: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


@dataclass
class Checker:
    client: Store
    slot: Slot
    shard: Shard | None = None  # only the tags this shard owns are checked
    # Source digests the HEADs showed to be indexes (the runner reserves their copies).
    indexes: set[str] = field(default_factory=set)

    def owns(self, entry: ResolvedEntry, tag: str) -> bool:
        shard = self.shard
        if shard is None:
            return True
        key = entry_key(entry.source.repo().name, entry.destination.repo().name)
        return owns_tag(shard, key, tag)

    async def check(self, entry: ResolvedEntry) -> tuple[Plan, set[str] | None, set[str]]:
        """Gather digests at both ends and plan; HEADs only, never a manifest GET.

        Also returns, for pruning, the destination's tag list (when fetched) and the
        destination names of every selected tag.
        """
        src, dst = entry.source, entry.destination
        filtered: dict[str, str] = {}
        dest_tag: dict[str, str] = {}
        immutable: list[str] = []
        invalid: dict[str, str] = {}
        listed: list[str] | None = None
        keep: set[str] = set()
        if src.tag is None and src.digest is None:
            listed = await self.client.list_tags(src)
            selected, filtered = select_tags(listed, entry.tags)
            names, invalid = destination_tags(entry.tag_template, selected)
            # Pruning must know every selected tag, not only this shard's share.
            keep = set(names.values())
            selected = [t for t in names if self.owns(entry, t)]
            invalid = {t: why for t, why in invalid.items() if self.owns(entry, t)}
            need_dest = selected or entry.prune
            dest_tags: set[str] | None = await self._dest_tags(dst) if need_dest else set()
            dest_tag = {t: names[t] for t in selected}
            present = {t for t in selected if dest_tag[t] in (dest_tags or set())}
            # Immutable tags the destination already lists cost no request at all.
            selected, immutable = split_immutable(selected, present, entry.tags.immutable_patterns)
        else:
            key = src.tag or dst.tag or ""
            selected = [key] if self.owns(entry, key) else []
            dest_tag[key] = dst.tag or key
            dest_tags = None

        pinned = selected[0] if src.digest is not None and selected else None

        async def src_digest(tag: str) -> str | None:
            if tag == pinned:
                return src.digest
            info = await self.slot(lambda: self.client.head_manifest(src.with_tag(tag)))
            if info is None:
                return None
            if info.media_type in INDEX_TYPES:
                self.indexes.add(info.digest)
            return info.digest

        async def dst_digest(tag: str) -> str | None:
            target = dest_tag.get(tag, tag)
            if not needs_dest_head(target, dest_tags):
                return None
            info = await self.slot(lambda: self.client.head_manifest(dst.with_tag(target)))
            return info.digest if info else None

        src_digests = await asyncio.gather(*(src_digest(t) for t in selected))
        if entry.referrers:
            # Signatures, SBOMs, attestations: tags named after the digests just seen.
            if listed is None:
                listed = await self.client.list_tags(src)
            taken = set(selected) | set(immutable)
            extra = [t for t in referrer_tags(listed, src_digests) if t not in taken]
            dest_tag.update({t: t for t in extra})
            for t in extra:
                filtered.pop(t, None)  # selected after all, as a referrer of a selected tag
            src_digests += await asyncio.gather(*(src_digest(t) for t in extra))
            selected = selected + extra
        dst_digests = await asyncio.gather(*(dst_digest(t) for t in selected))
        if entry.platforms != "all":
            dst_digests = await self._filtered_copies(entry, src_digests, dst_digests)
        dst_digests = await asyncio.gather(
            *(
                merged_from(self.client, dst, dest_tag.get(t, t), d, s)  # host slots bound it
                for t, s, d in zip(selected, src_digests, dst_digests, strict=True)
            )
        )
        destination = {dest_tag.get(t, t): d for t, d in zip(selected, dst_digests, strict=True)}
        plan = make_plan(
            dict(zip(selected, src_digests, strict=True)),
            destination,
            filtered=filtered,
            dest_tag=dest_tag,
            immutable=immutable,
            invalid=invalid,
        )
        return (
            plan,
            dest_tags,
            keep | {i.dest_tag for i in plan.items if i.action is not Outcome.FILTERED},
        )

    async def _filtered_copies(
        self, entry: ResolvedEntry, src: list[str | None], dst: list[str | None]
    ) -> list[str | None]:
        """With a platform filter the destination digest differs by design: a destination
        that holds our filtered copy of the same source counts as equal to the source."""
        platforms = entry.platforms
        assert platforms != "all"

        async def one(s: str | None, d: str | None) -> str | None:
            if s is None or d is None or s == d:
                return d
            same = await self.slot(
                partial(holds_filtered_copy, self.client, entry.destination, d, s, platforms)
            )
            return s if same else d

        return list(await asyncio.gather(*(one(s, d) for s, d in zip(src, dst, strict=True))))

    async def _dest_tags(self, dst: Reference) -> set[str]:
        try:
            return set(await self.client.list_tags(dst))
        except NotFound:
            return set()  # a repository that does not exist yet has no tags
