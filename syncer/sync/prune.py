"""Opt-in pruning: delete destination tags the source no longer selects, safely.

Registries delete manifests, not tags, so a manifest that anything kept can reach is
never deleted: a kept tag's manifest, the children of a kept index (at any depth), and
referrer tags (`sha256-<hex>...`) naming any of those, with what they reach in turn.
Protected tags keep their manifest too. A deletion removes every tag on its manifest, so
decisions are made per manifest and `prune_max` counts the tags removed; an empty source
listing prunes nothing. A dry run makes
the same decisions, so `would_prune` lists exactly what a real run would delete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from syncer.config.syncfile import ResolvedEntry
from syncer.errors import ManifestError, SyncerError
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import IMAGE_TYPES, INDEX_TYPES, ImageIndex, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.sync.outcome import Outcome
from syncer.sync.planner import Deletion, Plan, decide_deletions, plan_prune, referrer_tags
from syncer.sync.report import EntryReport, TagOutcome

log = structlog.get_logger("syncer.sync.prune")
Slot = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclass(frozen=True)
class Reachable:
    digests: frozenset[str]  # manifests that must survive
    tags: frozenset[str]  # referrer tags kept because they name one of those digests


async def reachable(
    client: Store,
    slot: Slot,
    repo: Reference,
    kept_tags: Iterable[str],
    listed: Iterable[str],
    known: Iterable[str] = (),
) -> Reachable:
    """Everything at the destination `repo` that the kept tags reach.

    One HEAD per kept tag; a manifest GET only for indexes (by the HEAD's or the
    parent's media type), never for images. `listed` is the destination's tag list,
    searched for referrer tags; `known` are digests kept without asking (this run's
    source digests).
    """
    given = {d for d in known if d}
    seen: set[str] = set()  # walked: their children are in it too
    start = set(kept_tags)
    extra: set[str] = set()
    todo = sorted(start)
    while todo:
        infos = await asyncio.gather(
            *(slot(partial(client.head_manifest, repo.with_tag(t))) for t in todo)
        )
        await _walk(client, slot, repo, [(i.digest, i.media_type) for i in infos if i], seen)
        # A signature of a kept digest is kept, and so is what it reaches.
        todo = [t for t in referrer_tags(listed, seen | given) if t not in start | extra]
        extra.update(todo)
    return Reachable(frozenset(seen | given), frozenset(extra))


async def _walk(
    client: Store, slot: Slot, repo: Reference, todo: list[tuple[str, str]], seen: set[str]
) -> None:
    """Add the digests in `todo`, and every manifest an index among them names, to `seen`."""
    while todo:
        fresh = {d: m for d, m in todo if d not in seen}
        seen.update(fresh)
        # Images name only blobs, which a manifest DELETE never removes.
        parents = [d for d, m in fresh.items() if m not in IMAGE_TYPES]
        fetched = await asyncio.gather(
            *(slot(partial(client.get_manifest, repo.with_digest(d))) for d in parents)
        )
        todo = [(c.digest, c.media_type) for f in fetched for c in _children(f)]


def _children(got: FetchedManifest) -> list[Any]:
    what = f"manifest {got.digest}"
    try:
        manifest = parse_manifest(got.data, got.media_type, what=what)
    except ManifestError:
        if got.media_type in INDEX_TYPES:
            raise  # an index we cannot read may name anything: prune nothing
        return []  # an artifact of another kind names no manifests we could delete
    return list(manifest.manifests) if isinstance(manifest, ImageIndex) else []


@dataclass(frozen=True)
class PruneJob:
    """One entry's prune: where, what the run selected, and where to report.

    `kept` is every selected tag of the entry (all shards' share); `dest_tags` the
    destination's listing; `slot` bounds concurrent requests like the run's copies."""

    store: Store
    slot: Slot
    entry: ResolvedEntry
    plan: Plan
    dest_tags: set[str]
    kept: set[str]
    report: EntryReport
    dry_run: bool


async def prune(job: PruneJob) -> None:
    """Delete (or, dry, list) destination tags the source no longer selects; the caller
    runs this in one process only (see `shard.prunes`)."""
    entry, plan, report, kept, dest_tags = job.entry, job.plan, job.report, job.kept, job.dest_tags
    if not kept and not plan.filtered:
        report.fail(None, "prune refused: the source listed no tags at all")
        return
    pp = plan_prune(dest_tags, kept, entry.prune_protect)
    for tag, why in pp.invalid:
        report.tags.append(TagOutcome(tag, Outcome.PRUNE_SKIPPED, reason=why))
    if not pp.candidates:
        return  # nothing to delete costs no request
    dst, store, slot = entry.destination, job.store, job.slot
    # Tags this run moved (or would move) count too: they are in no listing yet. A protected
    # tag keeps its manifest as surely as a kept one: a DELETE would take it along.
    present = (kept & dest_tags) | {i.dest_tag for i in plan.to_copy} | set(pp.protected)
    try:
        reach = await reachable(
            store, slot, dst, present, dest_tags, (i.source_digest or "" for i in plan.items)
        )
        candidates = [t for t in pp.candidates if t not in reach.tags]
        infos = await asyncio.gather(
            *(slot(partial(store.head_manifest, dst.with_tag(t))) for t in candidates)
        )
    except SyncerError as exc:
        report.fail(None, f"prune skipped: cannot tell what kept tags use: {exc}")
        return
    resolved = [(t, i.digest) for t, i in zip(candidates, infos, strict=True) if i is not None]
    decision = decide_deletions(resolved, reach.digests, entry.prune_max)
    why = "its manifest is used by a kept tag (as its manifest, index child or signature)"
    for tag, digest in decision.reachable:
        report.tags.append(
            TagOutcome(tag, Outcome.PRUNE_SKIPPED, destination_digest=digest, reason=why)
        )
    for deletion in decision.delete:
        await _delete(job, deletion)
    for tag, digest in decision.over_limit:
        reason = f"prune_max {entry.prune_max} reached"
        report.tags.append(
            TagOutcome(tag, Outcome.PRUNE_SKIPPED, destination_digest=digest, reason=reason)
        )


async def _delete(job: PruneJob, deletion: Deletion) -> None:
    report, digest = job.report, deletion.digest
    if job.dry_run:
        for tag in deletion.tags:
            report.tags.append(
                TagOutcome(
                    tag, Outcome.WOULD_PRUNE, destination_digest=digest, reason="not selected"
                )
            )
        return
    try:
        await job.slot(partial(job.store.delete_manifest, job.entry.destination, digest))
    except SyncerError as exc:
        # A deletion that did not happen is a failed tag: status partial, exit 1.
        error = f"prune failed: {exc}"
        for tag in deletion.tags:
            report.counters.tags_failed += 1
            report.fail(tag, error)
            report.tags.append(
                TagOutcome(tag, Outcome.FAILED, destination_digest=digest, reason=error)
            )
        log.error("prune failed", tags=list(deletion.tags), digest=digest, error=str(exc))
        return
    for tag in deletion.tags:
        report.counters.tags_pruned += 1
        report.tags.append(TagOutcome(tag, Outcome.PRUNED, destination_digest=digest))
    log.info("manifest pruned", tags=list(deletion.tags), digest=digest)
