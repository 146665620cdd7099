"""Opt-in pruning: delete destination tags the source no longer selects, safely.

Registries delete manifests, not tags, so a manifest that a kept tag also names is
never deleted; the count per run is capped; an empty source listing prunes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog

from syncer.client import RegistryClient
from syncer.config import ResolvedEntry
from syncer.errors import SyncerError
from syncer.planner import Action, Plan, plan_prune
from syncer.report import EntryReport, TagOutcome

log = structlog.get_logger("syncer.prune")
Slot = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def prune(
    client: RegistryClient,
    slot: Slot,
    entry: ResolvedEntry,
    plan: Plan,
    dest_tags: set[str],
    kept: set[str],
    report: EntryReport,
    *,
    dry_run: bool,
    owns: Callable[[ResolvedEntry, str], bool],
) -> None:
    """Delete destination tags the source no longer selects; safe by construction."""
    if not kept and not plan.filtered:
        report.fail(None, "prune refused: the source listed no tags at all")
        return
    # Every shard sees the whole selection; each deletes only the tags it owns.
    owned = {t for t in dest_tags if owns(entry, t)}
    pp = plan_prune(owned, kept, entry.prune_protect, entry.prune_max)
    for tag in pp.over_limit:
        reason = f"prune_max {entry.prune_max} reached"
        report.tags.append(TagOutcome(tag, "prune_skipped", reason=reason))
    if dry_run:
        report.tags.extend(TagOutcome(t, "would_prune", reason="not selected") for t in pp.delete)
        return
    dst = entry.destination
    # A registry deletes manifests, not tags: never delete a digest a kept tag uses.
    kept_digests = {i.source_digest for i in plan.items if i.action is not Action.FILTERED}
    for tag in sorted(kept & dest_tags):
        info = await slot(partial(client.head_manifest, dst.with_tag(tag)))
        if info is not None:
            kept_digests.add(info.digest)
    for tag in pp.delete:
        try:
            info = await slot(partial(client.head_manifest, dst.with_tag(tag)))
            if info is None:
                continue  # gone already (it shared a deleted manifest)
            if info.digest in kept_digests:
                reason = "its manifest is also tagged with a kept tag"
                report.tags.append(TagOutcome(tag, "prune_skipped", reason=reason))
                continue
            await slot(partial(client.delete_manifest, dst, info.digest))
        except SyncerError as exc:
            report.fail(tag, f"prune failed: {exc}")
            continue
        report.counters.tags_pruned += 1
        report.tags.append(TagOutcome(tag, "pruned", destination_digest=info.digest))
        log.info("tag pruned", tag=tag, digest=info.digest)
