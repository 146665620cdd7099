"""`syncer bundle`: pack an OCI image layout into one tar for the trip across an air gap.

The tar's top level is itself a layout (`oci-layout`, `blobs/<alg>/<hex>`, `index.json`,
the layout's own bytes), plus `syncer-bundle.json` (see `ociarchive.BundleInfo`). Only what
`index.json` reaches is packed: every manifest, always (they are small and the index and the
up-to-date checks need them), and every config and layer, except, with `--since`, those the
earlier bundles held or expected the target to hold in the same repository (a registry serves
a blob only in the repositories that hold it): those are listed per repository as `requires`.

Safety: each blob is streamed into the tar in bounded chunks, its digest and size checked
on the way (a corrupt blob fails the bundle, naming its digest); the tar is written to a
temporary name beside the output, fsync'd, and renamed only when complete.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from syncer.errors import ConfigError, ManifestError, SizeMismatch
from syncer.registry.digests import verify_digest
from syncer.registry.oci import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    Manifest,
    manifest_media_type,
    parse_manifest,
)
from syncer.store.atomic import replacing
from syncer.store.diskerror import on_disk
from syncer.store.layoutread import LAYOUT_FILE, REF_NAME, addressable, blob_name, parse_index
from syncer.store.ociarchive import BUNDLE_FILE, BundleInfo, OciArchive
from syncer.store.ocilayout import OciLayout
from syncer.store.tarpack import COPY_BUFFER, Verifying, add_bytes, tar_info
from syncer.store.tarpack import PackProgress as PackProgress  # the command names it here


class Silent:
    """No progress shown (off a terminal, `-q`, and in library use)."""

    def start(self, total_bytes: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class BundleJob:
    layout: Path
    out: Path
    since: tuple[Path, ...] = ()
    progress: PackProgress = field(default_factory=Silent)


@dataclass
class BundleResult:
    manifests: int = 0
    blobs: int = 0  # configs and layers packed
    blob_bytes: int = 0
    left_out: int = 0  # held by the earlier bundles: listed in `requires`
    tar_bytes: int = 0


@dataclass
class _Plan:
    manifests: list[Descriptor] = field(default_factory=list)
    blobs: list[Descriptor] = field(default_factory=list)
    requires: dict[str, frozenset[str]] = field(default_factory=dict)


def _check_paths(job: BundleJob) -> None:
    if not job.out.parent.is_dir():
        raise ConfigError(
            f"-o {job.out}: the folder {job.out.parent} does not exist; create it, "
            "or name a file in an existing folder"
        )
    if job.out.is_dir():
        raise ConfigError(f"-o {job.out}: is a directory; name a file such as {job.out}/bundle.tar")
    if job.out.resolve().is_relative_to(job.layout.resolve()):
        raise ConfigError(
            f"-o {job.out}: is inside the layout {job.layout}; write the bundle beside it"
        )
    if job.out.resolve() in {p.resolve() for p in job.since}:
        raise ConfigError(f"-o {job.out}: is also given to --since; name a new file")


def _entries(index: bytes, where: object) -> list[tuple[str | None, Descriptor]]:
    """index.json's entries, each with the repository its ref.name names (None: no name,
    or one syncer cannot address, such as skopeo's bare `2`: packed all the same, so the
    bundle carries the whole layout)."""
    out: list[tuple[str | None, Descriptor]] = []
    for entry in parse_index(index, where).get("manifests") or []:
        try:
            desc = Descriptor.model_validate(entry)
        except ValidationError:
            raise ManifestError(
                f"{where}/index.json: an entry is not a descriptor (digest, size, mediaType)"
            ) from None
        name = (desc.annotations or {}).get(REF_NAME)
        key = addressable(name) if name else None
        out.append((key[0] if key else None, desc))
    return out


def _walk(
    entries: list[tuple[str | None, Descriptor]], read: Callable[[Descriptor], bytes | None]
) -> tuple[list[Descriptor], dict[str | None, list[Descriptor]]]:
    """Every manifest `entries` reach (once, in index order), and the configs and layers each
    repository reaches through its own entries and their children; `read` gives a manifest's
    bytes (None: not here, skipped)."""
    manifests: list[Descriptor] = []
    parsed: dict[str, Manifest | None] = {}

    def manifest(desc: Descriptor) -> Manifest | None:
        if desc.digest not in parsed:
            data = read(desc)
            parsed[desc.digest] = None
            if data is not None:
                manifests.append(desc)
                media_type = manifest_media_type(data, desc.media_type)
                parsed[desc.digest] = parse_manifest(
                    data, media_type, what=f"manifest {desc.digest}"
                )
        return parsed[desc.digest]

    todo = [desc for _repo, desc in entries]
    while todo:  # breadth first over every entry: the order the tar has always had
        if isinstance(found := manifest(todo.pop(0)), ImageIndex):
            todo.extend(found.manifests)
    blobs: dict[str | None, list[Descriptor]] = {}
    for repo, entry in entries:
        mine = blobs.setdefault(repo, [])
        seen, stack = {d.digest for d in mine}, [entry]
        while stack:
            found = parsed.get(stack.pop(0).digest)
            if isinstance(found, ImageIndex):
                stack.extend(found.manifests)
            elif found is not None:
                fresh = [b for b in found.blobs() if b.digest not in seen]
                seen.update(b.digest for b in fresh)
                mine.extend(fresh)
    return manifests, blobs


def held_by(bundles: tuple[Path, ...]) -> tuple[dict[str | None, set[str]], list[str]]:
    """The blob digests the target holds, per repository, once it imported these earlier
    bundles: those each bundle reached from that repository's tags and carried or required
    (a registry serves a blob only in the repositories that hold it). Also the bundles'
    names. ConfigError naming the file when one is not a bundle."""
    held: dict[str | None, set[str]] = {}
    for path in bundles:
        earlier = OciArchive(path)
        there = earlier.blob_digests() | earlier.bundle.required()
        _manifests, reached = _walk(_entries(earlier.index_bytes(), path), earlier.manifest_bytes)
        for repo, blobs in reached.items():
            held.setdefault(repo, set()).update(b.digest for b in blobs if b.digest in there)
    return held, [p.name for p in bundles]


def _manifest(layout: OciLayout, desc: Descriptor) -> bytes:
    what = f"manifest {desc.digest} in {layout.path}"
    path = layout.blob_path(desc.digest)
    if not path.is_file():
        raise ManifestError(f"{what}: missing; the layout is incomplete")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
    data = path.read_bytes()
    verify_digest(what, data, desc.digest)
    return data


def _plan(layout: OciLayout, index: bytes, held: dict[str | None, set[str]]) -> _Plan:
    """Every manifest index.json reaches, and each config and layer once, except those the
    target holds in every repository that needs them (listed per repository in `requires`)."""
    manifests, reached = _walk(_entries(index, layout.path), lambda d: _manifest(layout, d))
    plan = _Plan(manifests=manifests)
    packed: set[str] = set()
    wanted: dict[str, set[str]] = {}
    for repo, blobs in reached.items():
        for blob in blobs:
            if blob.is_foreign and not layout.blob_path(blob.digest).is_file():
                continue  # non-distributable layers stay where their urls point
            if repo is not None and blob.digest in held.get(repo, ()):
                wanted.setdefault(repo, set()).add(blob.digest)
            elif blob.digest not in packed:  # a new repository's too: it holds nothing yet
                packed.add(blob.digest)
                plan.blobs.append(blob)
    for repo, digests in wanted.items():
        if left := digests - packed:
            plan.requires[repo] = frozenset(left)
    return plan


def _add_blob(tar: tarfile.TarFile, layout: OciLayout, desc: Descriptor, job: BundleJob) -> None:
    what = f"blob {desc.digest} in {layout.path}"
    path = layout.blob_path(desc.digest)
    if not path.is_file():
        raise ManifestError(f"{what}: missing; the layout is incomplete")
    size = path.stat().st_size
    if size != desc.size:
        raise SizeMismatch(what, desc.size, size)
    with path.open("rb") as f:
        reader = Verifying(f, desc, what, job.progress)
        tar.addfile(tar_info(blob_name(desc.digest), size), reader)
        reader.check()


def pack(job: BundleJob) -> BundleResult:
    """Write the bundle `job` describes; nothing at `job.out` unless it completes. A file
    that cannot be read or written is a DiskError naming it."""
    with on_disk(job.layout):
        return _pack(job)


def _pack(job: BundleJob) -> BundleResult:
    _check_paths(job)
    layout = OciLayout(job.layout)  # read only: no lock; a writer never removes blobs
    held, since = held_by(job.since)
    index = layout.index_bytes()
    plan = _plan(layout, index, held)
    result = BundleResult(
        manifests=len(plan.manifests),
        blobs=len(plan.blobs),
        blob_bytes=sum(d.size for d in plan.blobs),
        left_out=len(set().union(*plan.requires.values())),
    )
    job.progress.start(result.blob_bytes + sum(d.size for d in plan.manifests))
    info = BundleInfo(since=since, requires=plan.requires)
    with replacing(job.out) as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # not in typeshed
            add_bytes(tar, LAYOUT_FILE, layout.layout_file_bytes())
            add_bytes(tar, BUNDLE_FILE, info.to_json())
            for desc in plan.manifests:
                add_bytes(tar, blob_name(desc.digest), _manifest(layout, desc))
                job.progress.advance(desc.size)
            for desc in plan.blobs:
                _add_blob(tar, layout, desc, job)
            add_bytes(tar, "index.json", index)  # last, as a layout writes it
        result.tar_bytes = f.tell()
    return result
