"""The runner's side of `verify:`: which tags need a signature, what a rejection does,
and the signature that travels with each copied tag.

A tag is verified when it is about to be copied, before any of its content is read;
an up-to-date tag was verified when it was copied and costs nothing more, unless the
policy says `recheck: true`. Referrer tags (`sha256-<hex>[.sig|.att|...]`) follow
the verdict on their subject digest, and are copied only when what they hold is an
artifact about that digest (`Verifier.referrer`): a runnable image pushed under a
referrer-shaped name is rejected like an unsigned tag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from functools import cached_property, partial
from typing import TYPE_CHECKING, TypeVar

import structlog

from syncer.config.syncfile import ResolvedEntry
from syncer.errors import ContentError, NotFound, Rejected, SyncerError
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import ImageIndex, ImageManifest, parse_manifest
from syncer.registry.ratelimit import Reservation
from syncer.store import Store
from syncer.sync.copier import Copier, CopyJob
from syncer.sync.outcome import Outcome
from syncer.sync.planner import REFERRER_TAG, TagPlan
from syncer.sync.referrers import Publisher
from syncer.sync.report import EntryReport, TagOutcome
from syncer.verify.artifacts import BUNDLE, SIGNATURE, ArtifactKind, artifact_flaw
from syncer.verify.cosign import signature_tag
from syncer.verify.places import Places

if TYPE_CHECKING:
    from syncer.verify.verifier import Signed, Verifier

log = structlog.get_logger("syncer.verify")
T = TypeVar("T")
Slot = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


class SignatureGate:
    def __init__(self, client: Store, copier: Copier) -> None:
        self.client = client
        self.copier = copier
        self.places = Places(client)
        self.publisher = Publisher(client, self.places)

    @cached_property
    def verifier(self) -> Verifier:
        # Built when a tag under `verify:` is first judged: a run without one never loads
        # the verifier or its bundle parsing (where sigstore comes in).
        from syncer.verify.verifier import Verifier

        return Verifier(self.client, self.places)

    async def check(self, entry: ResolvedEntry, item: TagPlan) -> Signed | None:
        """The accepted signature of the item's source digest, or None when the entry has
        no policy. Raises Rejected.

        A referrer tag (`sha256-<hex>.sig`, `.att`, ...) passes when its subject does: what
        is attached to an unsigned or forged image is not mirrored either."""
        if entry.verify is None or not item.source_digest:
            return None
        referrer = REFERRER_TAG.fullmatch(item.tag)
        if referrer is None:
            return await self.verifier.verify(entry.source, item.source_digest, entry.verify)
        subject = f"sha256:{referrer.group(1)}"
        try:
            await self.verifier.verify(entry.source, subject, entry.verify)
        except Rejected as exc:
            raise Rejected(exc.reason, f"its subject {subject}: {exc.detail}") from None
        return None

    async def admit(
        self,
        entry: ResolvedEntry,
        item: TagPlan,
        fetched: FetchedManifest,
        pulls: Reservation | None = None,
    ) -> Mapping[str, FetchedManifest]:
        """For a referrer tag under a policy, judge `fetched` (its manifest, the one fetched
        to copy it) after `check` passed its subject. Raises Rejected; returns the child
        manifests it fetched, for the copy to reuse."""
        referrer = REFERRER_TAG.fullmatch(item.tag)
        if entry.verify is None or referrer is None:
            return {}
        subject = f"sha256:{referrer.group(1)}"
        return await self.verifier.referrer(entry.source, item.tag, subject, fetched, pulls=pulls)

    async def admit_listed(
        self, entry: ResolvedEntry, subject: str, fetched: FetchedManifest, report: EntryReport
    ) -> Mapping[str, FetchedManifest] | None:
        """The same for an artifact the referrers API lists for the verified `subject`;
        None when it is rejected, which is reported under its digest."""
        if entry.verify is None:
            return {}
        try:
            return await self.verifier.referrer(
                entry.source, fetched.digest, subject, fetched, listed=True
            )
        except Rejected as exc:
            ident = fetched.digest
            self.reject(entry, TagPlan(ident, ident, Outcome.COPY, ident), exc, report)
            return None

    async def carry(
        self,
        entry: ResolvedEntry,
        signed: Signed | None,
        report: EntryReport,
        top: FetchedManifest | None = None,
    ) -> None:
        """Copy the verified signature and attestations: a legacy one to its tag
        (`sha256-<hex>.sig`, `.att`), a bundle by digest, then listed for its subject
        (`Publisher`). Done before the tag itself, so a mirrored tag always has its
        signature next to it. `top`: what is about to be pushed; a `platforms:` subset
        index brings its children's signatures along (`_carry_children`)."""
        if top is not None and entry.platforms != "all":
            await self._carry_children(entry, top, report)
        if signed is None:
            return
        src, dst = entry.source, entry.destination
        listed = []
        for proof in signed.proofs:
            ident = proof.tag or proof.manifest.digest
            await self.copier.copy(CopyJob(src, dst, proof.manifest, ident, report))
            if proof.descriptor is not None:
                listed.append(proof.descriptor)
        await self.publisher.publish(dst, signed.subject, listed)

    async def _carry_children(
        self, entry: ResolvedEntry, top: FetchedManifest, report: EntryReport
    ) -> None:
        """The source's signatures of each child of a subset index (bundles, `.sig`), as
        they are: the children are copied byte for byte, so these still verify them. Each
        is carried when it is an artifact about its child, not verified (the subset's own
        verdict came from the source index's signature)."""
        manifest = parse_manifest(top.data, top.media_type, what=f"manifest {top.digest}")
        if not isinstance(manifest, ImageIndex):
            return
        src, dst = entry.source.repo(), entry.destination.repo()
        for child in manifest.manifests:
            listing = await self.places.bundles(src, child.digest)
            listed = []
            for desc in listing.bundles:
                fetched = await self.client.get_manifest(src.with_digest(desc.digest))
                if _flaw(fetched, BUNDLE, child.digest, need_subject=True) is None:
                    await self.copier.copy(CopyJob(src, dst, fetched, desc.digest, report))
                    listed.append(desc)
            await self.publisher.publish(dst, child.digest, listed)
            tag = signature_tag(child.digest)
            try:
                fetched = await self.client.get_manifest(src.with_tag(tag))
            except NotFound:
                continue
            if _flaw(fetched, SIGNATURE, child.digest, need_subject=False) is None:
                await self.copier.copy(CopyJob(src, dst, fetched, tag, report))

    def merging(
        self, entry: ResolvedEntry, item: TagPlan, fetched: FetchedManifest
    ) -> AbstractAsyncContextManager[FetchedManifest]:
        """The manifest to push for `item`: for the `sha256-<hex>` index, the source's merged
        with the destination's (held until pushed); any other manifest as it is."""
        return self.publisher.merging(entry.destination, item.dest_tag, fetched)

    def reject(
        self, entry: ResolvedEntry, item: TagPlan, exc: Rejected, report: EntryReport
    ) -> None:
        assert entry.verify is not None
        report.counters.tags_rejected += 1
        report.tags.append(
            TagOutcome(item.tag, Outcome.REJECTED, item.source_digest, item.dest_digest, str(exc))
        )
        if entry.verify.on_failure == "fail":
            report.fail(None, f"{item.tag} rejected ({exc}) and verify.on_failure is fail")
        log.warning("tag rejected", tag=item.tag, digest=item.source_digest, reason=str(exc))

    async def recheck(
        self, entry: ResolvedEntry, items: Iterable[TagPlan], report: EntryReport, slot: Slot[None]
    ) -> None:
        """`recheck: true`: verify up-to-date tags as well, and bring their signature
        manifest up to date at the destination (a re-signed image gets the new one)."""
        if entry.verify is None or not entry.verify.recheck:
            return
        await asyncio.gather(*(slot(partial(self._recheck, entry, i, report)) for i in items))

    async def _recheck(self, entry: ResolvedEntry, item: TagPlan, report: EntryReport) -> None:
        c = report.counters
        try:
            signed = await self.check(entry, item)
            if signed is None:
                if item.source_digest and REFERRER_TAG.fullmatch(item.tag):
                    # Its content is judged again too: a mirror may predate that judgement.
                    source = entry.source.with_digest(item.source_digest)
                    await self.admit(entry, item, await self.client.get_manifest(source))
                return
            dst = entry.destination
            for proof in signed.proofs:
                ref = (
                    dst.with_tag(proof.tag) if proof.tag else dst.with_digest(proof.manifest.digest)
                )
                there = await self.client.head_manifest(ref)
                if there is None or there.digest != proof.manifest.digest:
                    await self.carry(entry, signed, report)
                    break
        except (Rejected, SyncerError) as exc:
            # The tag stays at the destination: syncer removes tags only when pruning.
            report.tags[:] = [t for t in report.tags if t.tag != item.tag]
            c.tags_up_to_date -= 1
            if isinstance(exc, Rejected):
                self.reject(entry, item, exc, report)
                return
            c.tags_failed += 1
            report.fail(item.tag, str(exc))
            report.tags.append(
                TagOutcome(item.tag, Outcome.FAILED, item.source_digest, item.dest_digest, str(exc))
            )


def _flaw(
    fetched: FetchedManifest, kind: ArtifactKind, subject: str, *, need_subject: bool
) -> str | None:
    try:
        manifest = parse_manifest(fetched.data, fetched.media_type)
    except ContentError as exc:
        return str(exc)
    if not isinstance(manifest, ImageManifest):
        return "an index"
    return artifact_flaw(manifest, kind, subject, need_subject=need_subject)
