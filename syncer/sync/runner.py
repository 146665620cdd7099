"""Run a sync: for each entry gather facts and plan (check.py), then copy what the plan
says, verify what `verify:` asks for, and prune.

GETs happen only for tags that must be copied (the check phase uses HEADs and listings).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from structlog.contextvars import bound_contextvars

from syncer.config.syncfile import LoadedConfig, ResolvedEntry
from syncer.errors import (
    Deferred,
    RateLimited,
    Rejected,
    SyncerError,
)
from syncer.registry.client import RegistryClient
from syncer.registry.ratelimit import Budgets, Reservation
from syncer.store import Store, Stores
from syncer.sync.catalog import Expansion, expand_entry
from syncer.sync.check import Checker
from syncer.sync.copier import BlobLedger, Copier, CopyJob
from syncer.sync.limits import RunBandwidth
from syncer.sync.outcome import Outcome
from syncer.sync.planner import TagPlan
from syncer.sync.platforms import select_platforms
from syncer.sync.progress import Progress
from syncer.sync.prune import PruneJob, prune
from syncer.sync.referrers import unwanted_referrer
from syncer.sync.report import EntryReport, RunReport, TagOutcome
from syncer.sync.shard import Shard, prunes
from syncer.sync.signatures import SignatureGate

log = structlog.get_logger("syncer.sync.runner")
T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    only: re.Pattern[str] | None = None
    concurrency: int = 16
    shard: Shard | None = None  # this process handles only the tags this shard owns
    # The process's pull budgets, one per registry, shared by every run it makes (all
    # schedule groups); None: this run keeps its own.
    budgets: Budgets | None = field(default=None, compare=False)


def error_line(exc: BaseException) -> str:
    """One line for the report; our own errors already read well."""
    if isinstance(exc, SyncerError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


class Runner:
    def __init__(
        self,
        loaded: LoadedConfig,
        options: RunOptions | None = None,
        *,
        client: RegistryClient | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.loaded = loaded
        self.progress = progress or Progress()
        self.options = options or RunOptions()
        # Every store the run touches behind one: registries and `oci:` layouts alike.
        registries = client or RegistryClient(
            loaded.config.registry_config, budgets=self.options.budgets
        )
        self.stores = Stores(registries, owns_registries=client is None)
        self.bandwidth = RunBandwidth(registries.bandwidth, loaded, self.progress)
        self.client: Store = self.stores
        self.copier = Copier(self.client, BlobLedger(), progress=self.progress)
        self.gate = SignatureGate(self.client, self.copier)
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._deferred_logged: set[str] = set()
        self.checker = Checker(self.client, self._slot, self.options.shard)
        # Source digests the check phase's HEADs showed to be indexes: a copy of one
        # reserves two GETs up front (the index, at least one child), not one.
        self._indexes = self.checker.indexes

    def selected_entries(self) -> list[ResolvedEntry]:
        only = self.options.only
        if only is None:
            return list(self.loaded.entries)
        return [
            e
            for e in self.loaded.entries
            if only.search(str(e.source)) or only.search(str(e.destination))
        ]

    async def run(self) -> RunReport:
        started = time.monotonic()
        report = RunReport(
            started=datetime.now(UTC).isoformat(timespec="seconds"), dry_run=self.options.dry_run
        )
        selected = self.selected_entries()
        self.bandwidth.start()
        try:
            self.stores.open_layouts(  # in the try: those opened before a failure are closed
                (e.source for e in selected),
                (e.destination for e in selected),
                create=not self.options.dry_run,
            )
            entries: list[ResolvedEntry] = []
            for entry in selected:
                try:
                    expansion = await expand_entry(self.client, entry)
                except Exception as exc:
                    expansion = Expansion([], {str(entry.source): error_line(exc)})
                entries.extend(expansion.entries)
                for source, why in expansion.failed.items():
                    failed = EntryReport(source, str(entry.destination))
                    failed.fail(None, why)
                    report.entries.append(failed)
                    log.error("entry failed", entry=source, error=why)
            pairs = [(e, EntryReport(str(e.source), str(e.destination))) for e in entries]
            report.entries.extend(r for _, r in pairs)
            self.progress.entries(len(pairs))
            await asyncio.gather(*(self._entry(e, r) for e, r in pairs))
        finally:
            report.duration_s = time.monotonic() - started
            report.ratelimit = self.client.ratelimits()
            report.bandwidth = self.bandwidth.report(report.duration_s)
            await self.stores.aclose()
        return report

    async def _slot(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self._slots:
            return await work()

    async def _entry(self, entry: ResolvedEntry, report: EntryReport) -> None:
        with bound_contextvars(entry=f"{entry.source} -> {entry.destination}"):
            try:
                plan, dest_tags, keep = await self.checker.check(entry)
            except Exception as exc:
                report.fail(None, error_line(exc))
                log.error("entry failed", error=error_line(exc))
                return
            c = report.counters
            c.tags_filtered += len(plan.filtered)
            c.tags_checked += len(plan.items) - len(plan.filtered)
            for item in plan.items:
                if item.action is Outcome.UP_TO_DATE:
                    c.tags_up_to_date += 1
                    report.tags.append(self._marked(entry, _outcome(item, Outcome.UP_TO_DATE)))
                elif item.action is Outcome.FILTERED:
                    report.tags.append(_outcome(item, Outcome.FILTERED))
                elif item.action in (Outcome.MISSING, Outcome.INVALID):
                    c.tags_failed += 1
                    why = f"{entry.source.repo()}:{item.tag} not found at source"
                    report.fail(item.tag, item.reason if item.action is Outcome.INVALID else why)
                    report.tags.append(_outcome(item, Outcome.FAILED))
            self.progress.tags_checked(c.tags_checked)
            for _ in range(c.tags_checked - len(plan.to_copy)):
                self.progress.tag_done()
            if self.options.dry_run:
                report.tags.extend(_outcome(i, Outcome.PLANNED) for i in plan.to_copy)
            else:
                await asyncio.gather(
                    self.gate.recheck(entry, plan.up_to_date, report, self._slot),
                    *(self._copy_tag(entry, i, report) for i in plan.to_copy),
                )
            if entry.prune and dest_tags is not None and prunes(self.options.shard):
                dry = self.options.dry_run
                await prune(
                    PruneJob(self.client, self._slot, entry, plan, dest_tags, keep, report, dry)
                )
            self.progress.entry_done()

    async def _copy_referrers(self, entry: ResolvedEntry, digest: str, report: EntryReport) -> None:
        """Artifacts the referrers API lists for `digest`, copied untagged after their subject.
        Registries without the API (distribution 2.8, Docker Hub) use the tag schema instead."""
        src, dst = entry.source.repo(), entry.destination.repo()
        listed = await self.client.referrers(src, digest)
        for desc in listed or []:
            kind = desc.artifact_type or ""
            if entry.referrer_types and kind not in entry.referrer_types:
                continue
            if await self.client.head_manifest(dst.with_digest(desc.digest)) is not None:
                continue
            fetched = await self.client.get_manifest(src.with_digest(desc.digest))
            children = await self.gate.admit_listed(entry, digest, fetched, report)
            if children is None:
                continue  # rejected, and reported so
            await self.copier.copy(CopyJob(src, dst, fetched, desc.digest, report, None, children))
            await self.gate.publisher.publish(dst, digest, [desc])  # where dst lacks the API
            report.tags.append(
                TagOutcome(
                    desc.digest, Outcome.COPIED, desc.digest, desc.digest, f"referrer of {digest}"
                )
            )

    def _marked(self, entry: ResolvedEntry, t: TagOutcome) -> TagOutcome:
        """A source index under a `platforms:` filter is mirrored as syncer's subset."""
        if entry.platforms != "all" and t.source_digest in self._indexes:
            t.subset_of = t.source_digest
        return t

    async def _copy_tag(self, entry: ResolvedEntry, item: TagPlan, report: EntryReport) -> None:
        src, dst = entry.source, entry.destination
        digest = item.source_digest
        assert digest is not None  # COPY items always carry the source digest
        pushed = digest
        with bound_contextvars(tag=item.tag):
            try:

                async def work() -> str | None:
                    self.stores.check_writable(dst)  # a full disk: no GET for nothing
                    # The copy's whole counted cost, reserved before its first GET.
                    pulls = self.client.reserve(src, 2 if digest in self._indexes else 1)
                    try:
                        return await copy(pulls)
                    finally:
                        pulls.release()

                async def copy(pulls: Reservation) -> str | None:
                    nonlocal pushed
                    signed = await self.gate.check(entry, item)  # raises Rejected
                    fetched = await self.client.get_manifest(src.with_digest(digest), pulls=pulls)
                    skip = unwanted_referrer(entry, item.tag, fetched)
                    if skip is not None:
                        return skip
                    # Judged on this very fetch: a referrer tag costs no second GET.
                    children = await self.gate.admit(entry, item, fetched, pulls)  # raises Rejected
                    if entry.platforms != "all":
                        chosen, why = await select_platforms(
                            self.client, src, fetched, entry.platforms
                        )
                        if chosen is None:
                            return why
                        fetched = chosen
                    pushed = fetched.digest
                    await self.gate.carry(entry, signed, report, top=fetched)
                    async with self.gate.merging(entry, item, fetched) as top:
                        job = CopyJob(src, dst, top, item.dest_tag, report, pulls, children)
                        await self.copier.copy(job)
                    if entry.referrers:
                        await self._copy_referrers(entry, digest, report)
                    return None

                skipped = await self._slot(work)
            except Rejected as exc:
                self.gate.reject(entry, item, exc, report)
                return
            except (Deferred, RateLimited) as exc:
                report.counters.tags_deferred += 1
                report.tags.append(_outcome(item, Outcome.DEFERRED, error_line(exc)))
                if src.registry not in self._deferred_logged:
                    self._deferred_logged.add(src.registry)
                    log.warning("deferring copies from registry", reason=error_line(exc))
                return
            except Exception as exc:
                report.counters.tags_failed += 1
                report.fail(item.tag, error_line(exc))
                report.tags.append(_outcome(item, Outcome.FAILED, error_line(exc)))
                log.error("tag failed", error=error_line(exc))
                return
            finally:
                self.progress.tag_done()
            if skipped is not None:
                report.counters.tags_checked -= 1
                report.counters.tags_filtered += 1
                report.tags.append(_outcome(item, Outcome.FILTERED, skipped))
                return
            report.counters.tags_copied += 1
            report.tags.append(
                self._marked(entry, _outcome(item, Outcome.COPIED, dest_digest=pushed))
            )
            log.info("tag copied", digest=item.source_digest, to=f"{dst.repo()}:{item.dest_tag}")


def _outcome(
    item: TagPlan, action: Outcome, reason: str | None = None, *, dest_digest: str | None = None
) -> TagOutcome:
    return TagOutcome(
        tag=item.tag,
        action=action,
        source_digest=item.source_digest,
        destination_digest=dest_digest or item.dest_digest,
        reason=reason if reason is not None else item.reason,
    )
