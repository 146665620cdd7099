"""Copy manifests and blobs from a source repository to a destination repository.

Order is the safety property: blobs first, then child manifests by digest, and
the tag last. A registry refuses a manifest whose blobs or children are missing,
and we never ask it to, so a run that dies anywhere leaves no tag pointing at
incomplete content.

`BlobLedger` makes each blob cross the wire at most once per run: the first
request for a digest on a destination registry transfers it, and every other
repository on that registry mounts it from there.

A copy is asked for with one `CopyJob` value and reports one way: everything it does
is recorded in the job's `EntryReport` as it happens, so a copy that fails halfway
still accounts for the bytes it moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

import structlog

from syncer.errors import RegistryError, TransportError
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import Descriptor, ImageIndex, ImageManifest, parse_manifest
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.sync.progress import Progress
from syncer.sync.report import EntryReport

log = structlog.get_logger("syncer.sync.copier")
T = TypeVar("T")


@dataclass
class _BlobState:
    repos: set[str] = field(default_factory=set)  # destination repos known to hold it
    # The one transfer of this digest to this registry; resolves to the repo it landed in.
    transfer: asyncio.Future[str] | None = None
    # Per destination repo: the coroutine currently placing the blob there.
    placing: dict[str, asyncio.Future[str]] = field(default_factory=dict)


class BlobLedger:
    """What this run knows about blobs on each destination registry."""

    def __init__(self) -> None:
        self._blobs: dict[tuple[str, str], _BlobState] = {}

    def state(self, registry: str, digest: str) -> _BlobState:
        return self._blobs.setdefault((registry, digest), _BlobState())


@dataclass(frozen=True)
class CopyJob:
    """One copy: `top` (already fetched from `src`), to publish at `dst` as `dest_ident`,
    accounted for in `report`.

    `pulls` is the copy's reservation of source GETs; an index's missing children are
    added to it before any child GET (Deferred, nothing pushed, when they do not fit).
    Without one the copy takes its own and releases it at the end. `children` are child
    manifests already fetched (to judge a referrers index), used instead of a second GET."""

    src: Reference
    dst: Reference
    top: FetchedManifest
    dest_ident: str
    report: EntryReport
    pulls: Reservation | None = None
    children: Mapping[str, FetchedManifest] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    """A job in progress: repository references and the reservation it draws on."""

    src: Reference
    dst: Reference
    report: EntryReport
    pulls: Reservation
    children: Mapping[str, FetchedManifest]


class Copier:
    def __init__(
        self,
        client: Store,
        ledger: BlobLedger | None = None,
        *,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger or BlobLedger()
        self.progress = progress or Progress()

    async def copy(self, job: CopyJob) -> None:
        """Make everything `job.top` references exist at the destination, then publish it."""
        pulls = job.pulls or self.client.reserve(job.src, 0)
        run = _Run(job.src.repo(), job.dst.repo(), job.report, pulls, job.children)
        try:
            await self._content(run, job.top)
        finally:
            if job.pulls is None:
                run.pulls.release()
        await self.client.put_manifest(run.dst, job.dest_ident, job.top.data, job.top.media_type)
        job.report.counters.manifests_copied += 1

    async def _content(self, job: _Run, fetched: FetchedManifest) -> None:
        """Make everything `fetched` references exist at `dst` (not the manifest itself)."""
        manifest = parse_manifest(
            fetched.data, fetched.media_type, what=f"manifest {fetched.digest}"
        )
        if isinstance(manifest, ImageIndex):
            # HEADs are free: learn which children are missing, then reserve their GETs.
            found = await _gather(
                self.client.head_manifest(job.dst.with_digest(d.digest)) for d in manifest.manifests
            )
            missing = [d for d, f in zip(manifest.manifests, found, strict=True) if f is None]
            job.pulls.cover(len([d for d in missing if d.digest not in job.children]))
            await _gather(self._child(job, d) for d in missing)
        elif isinstance(manifest, ImageManifest):
            await _gather(self._blob(job, d) for d in manifest.blobs())

    async def _child(self, job: _Run, desc: Descriptor) -> None:
        child = job.children.get(desc.digest) or await self.client.get_manifest(
            job.src.with_digest(desc.digest), pulls=job.pulls
        )
        await self._content(job, child)
        await self.client.put_manifest(job.dst, desc.digest, child.data, child.media_type)
        job.report.counters.manifests_copied += 1

    async def _blob(self, job: _Run, desc: Descriptor) -> None:
        if desc.is_foreign:
            # Non-distributable layers stay where their `urls` point; registries accept that.
            job.report.skipped_foreign_layers.append(desc.digest)
            return
        dst = job.dst
        state = self.ledger.state(dst.registry, desc.digest)
        if dst.repository in state.repos:
            return
        placing = state.placing.get(dst.repository)
        if placing is not None and not placing.done():
            try:
                await asyncio.shield(placing)
                return
            except Exception:
                pass  # that attempt failed; make our own
        # Claimed before the first await, so concurrent tags of this repo wait for us.
        future = state.placing[dst.repository] = _new_claim()
        try:
            await self._place(job, desc, state)
        except BaseException as exc:
            _settle(future, exc)
            raise
        state.repos.add(dst.repository)
        future.set_result(dst.repository)

    async def _place(self, job: _Run, desc: Descriptor, state: _BlobState) -> None:
        """Mount from a repo that has it (or is about to), else stream it across unless the
        destination repo holds it (the upload's first request finds that out)."""
        src, dst, counters = job.src, job.dst, job.report.counters
        for _ in range(3):
            pending = state.transfer
            if pending is None or pending.done():
                break
            try:
                holder: str | None = await asyncio.shield(pending)
            except Exception:
                holder = None  # that transfer failed; we may transfer ourselves
            if holder is not None and await self._mount(job, desc, holder):
                return
        holders = sorted(r for r in state.repos if r != dst.repository)
        if src.registry == dst.registry and src.repository != dst.repository:
            holders.append(src.repository)
        for holder in holders:
            if await self._mount(job, desc, holder):
                return
        transfer = state.transfer = _new_claim()
        try:
            sent = await self.client.upload_blob(
                dst,
                desc,
                lambda: self.progress.track(
                    desc.digest, desc.size, self.client.read_blob(src, desc)
                ),
            )
            if sent:
                counters.blobs_copied += 1
                counters.bytes_copied += desc.size
                log.debug("blob copied", digest=desc.digest, size=desc.size, to=dst.name)
            else:
                counters.blobs_existing += 1
        except BaseException as exc:
            _settle(transfer, exc)
            raise
        state.repos.add(dst.repository)
        transfer.set_result(dst.repository)

    async def _mount(self, job: _Run, desc: Descriptor, from_repo: str) -> bool:
        dst = job.dst
        if from_repo == dst.repository:
            return False
        try:
            mounted = await self.client.mount_blob(dst, desc.digest, dst.with_repository(from_repo))
        except (RegistryError, TransportError) as exc:
            log.debug("mount failed", digest=desc.digest, error=str(exc))
            return False
        if mounted:
            job.report.counters.blobs_mounted += 1
            self.ledger.state(dst.registry, desc.digest).repos.add(dst.repository)
        return mounted


def _new_claim() -> asyncio.Future[str]:
    return asyncio.get_running_loop().create_future()


def _settle(future: asyncio.Future[str], exc: BaseException) -> None:
    """Fail a claim so its waiters move on; cancellation is passed on as cancellation."""
    if future.done():
        return
    if isinstance(exc, Exception):
        future.set_exception(exc)
        future.exception()  # retrieved: nobody may be waiting any more
    else:
        future.cancel()


async def _gather(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run all; if any fails, let the others finish (no half-cancelled uploads), then raise."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return cast(list[T], results)
