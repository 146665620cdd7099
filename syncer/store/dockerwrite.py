"""`docker-archive:FILE.tar` as a destination: staged in a layout, packed when the run ends.

Blobs and manifests go to an `OciLayout` in a temporary folder beside FILE (verified while
they stream, as any layout's). When the store closes after a run that wrote something,
one tar is packed from it, in the format both old and new `docker load` read, as Docker
25+ writes it: an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/`), plus
`manifest.json` (Config and Layers paths into `blobs/sha256/`) and `repositories`. The
manifests, configs and layers keep their bytes, so their digests are the source's.

An existing FILE is added to: its images stay unless a tag of this run replaces them, and
what it holds already counts as present (an up-to-date tag writes nothing, and a run
that writes nothing leaves FILE as it was). The tar is written aside and renamed
(`atomic.replacing`), so FILE is only ever the old archive or the whole new one.

`docker load` takes one platform per image: a tag whose manifest is an index must name
exactly one platform image (`--platform`, or an index of one), else its put fails with
`PlatformRequired`, before anything of it reaches FILE.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from syncer.errors import ConfigError, ManifestError, PlatformRequired
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.oci import (
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    ImageManifest,
    manifest_media_type,
    parse_manifest,
)
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store.atomic import TEMP_PREFIX, replacing
from syncer.store.base import BlobBytes
from syncer.store.diskerror import on_disk
from syncer.store.dockerread import CONTAINERD_NAME, DockerArchive
from syncer.store.layoutread import LAYOUT_FILE, REF_NAME, LayoutReader, blob_name
from syncer.store.ocilayout import LAYOUT_VERSION, OciLayout
from syncer.store.tarpack import COPY_BUFFER, Verifying, add_bytes, tar_info

__all__ = ["DockerArchiveWriter"]

_ATTESTATION = "vnd.docker.reference.type"


def _images(index: ImageIndex) -> list[Descriptor]:
    """An index's platform images, attestations (BuildKit's unknown/unknown) left out."""
    return [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os != "unknown"
        and _ATTESTATION not in (d.annotations or {})
    ]


def one_platform(data: bytes, media_type: str, name: str) -> str | None:
    """The digest of the one image an index stands for (None: `data` is an image already);
    PlatformRequired when it holds more or none."""
    if manifest_media_type(data, media_type) not in INDEX_TYPES:
        return None
    index = parse_manifest(data, manifest_media_type(data, media_type), what=name)
    assert isinstance(index, ImageIndex)
    images = _images(index)
    if len(images) != 1:
        raise PlatformRequired(name, [str(d.platform) for d in images])
    return images[0].digest


@dataclass(frozen=True)
class _Image:
    """One image manifest to pack, and the names it goes by."""

    digest: str
    data: bytes
    media_type: str
    names: tuple[tuple[str, str], ...]


class DockerArchiveWriter:
    """A `Store` over the archive at `path`: reads what it holds and what this run staged."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        self.path = path
        self.where = f"docker-archive:{path}"
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory; name a file such as {path}/images.tar")
        if not path.parent.is_dir():
            raise ConfigError(
                f"{path}: the folder {path.parent} does not exist; create it, "
                "or name a file in an existing folder"
            )
        self._old: DockerArchive | None = DockerArchive(path) if path.exists() else None
        self._empty = LayoutReader(self.where)
        self._empty._index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        self._stage: OciLayout | None = None
        self._stage_dir: Path | None = None
        self._dirty = False
        if writable:
            self._stage_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=TEMP_PREFIX))
            self._stage = OciLayout(self._stage_dir, writable=True)

    def _readers(self) -> Iterator[LayoutReader]:
        if self._stage is not None:
            yield self._stage
        if self._old is not None:
            yield self._old

    def _writer(self) -> OciLayout:
        if self._stage is None:
            raise ConfigError(f"{self.where}: opened read-only (a dry run); nothing is written")
        return self._stage

    # -- budgets and listing -------------------------------------------------

    def reserve(self, ref: Reference, pulls: int) -> Reservation:
        return self._empty.reserve(ref, pulls)

    def ratelimits(self) -> dict[str, dict[str, Any]]:
        return {}

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        tags: set[str] = set()
        for reader in self._readers():
            tags.update(await reader.list_tags(repo, page_size=page_size))
        return sorted(tags)

    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]:
        repos: set[str] = set()
        for reader in self._readers():
            repos.update(
                await reader.catalog(registry_ref, page_size=page_size, namespace=namespace)
            )
        return sorted(repos)

    # -- manifests: this run's first, then the archive's ---------------------

    async def _holder(self, ref: Reference) -> LayoutReader:
        for reader in self._readers():
            if await reader.head_manifest(ref) is not None:
                return reader
        return self._empty

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        return await (await self._holder(ref)).head_manifest(ref)

    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        return await (await self._holder(ref)).get_manifest(ref, pulls=pulls, limit=limit)

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        name = f"{self.where}:{repo.repository}:{ident}"
        if ":" not in ident:  # a tag: refused now if `docker load` could not take it
            one_platform(data, media_type, name)
        parsed = parse_manifest(data, manifest_media_type(data, media_type), what=name)
        if isinstance(parsed, ImageManifest):  # `docker load` needs every layer in the tar
            for desc in parsed.blobs():
                if not await self.blob_exists(repo, desc.digest):
                    why = "a foreign layer, left at its urls" if desc.is_foreign else "missing"
                    raise ManifestError(
                        f"{name}: blob {desc.digest} is {why}; a docker archive must hold "
                        "every layer"
                    )
        digest = await self._writer().put_manifest(repo, ident, data, media_type)
        self._dirty = self._dirty or ":" not in ident
        return digest

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        raise ConfigError(
            f"{self.where}: removing an image from a docker archive is not supported; "
            "write a new archive without it"
        )

    async def referrers(
        self, repo: Reference, digest: str, *, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        return None

    # -- blobs -----------------------------------------------------------------

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        for reader in self._readers():
            if await reader.blob_exists(repo, digest):
                return True
        return False

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        return await self.blob_exists(repo, digest)

    async def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        reader: LayoutReader = self._empty
        for candidate in self._readers():
            if await candidate.blob_exists(repo, desc.digest):
                reader = candidate
                break
        async for chunk in reader.read_blob(repo, desc):
            yield chunk

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        if self._old is not None and await self._old.blob_exists(repo, desc.digest):
            return False  # packed from the old archive
        return await self._writer().upload_blob(repo, desc, open_bytes)

    # -- packing -----------------------------------------------------------------

    async def aclose(self) -> None:
        try:
            if self._dirty:
                images = await self._plan()
                with on_disk(self.path):
                    self._pack(images)
        finally:
            if self._stage is not None:
                await self._stage.aclose()
                self._stage = None
            if self._stage_dir is not None:
                shutil.rmtree(self._stage_dir, ignore_errors=True)
                self._stage_dir = None

    async def _plan(self) -> list[_Image]:
        """Every image the new archive holds, by manifest digest, with its names: this
        run's tags, and the old archive's that no tag of this run replaced."""
        images: dict[str, _Image] = {}
        seen: set[tuple[str, str]] = set()
        for reader in self._readers():
            for repo_name in await reader.catalog(Reference(self.where, "x")):
                repo = Reference(self.where, repo_name)
                for tag in await reader.list_tags(repo):
                    if (repo_name, tag) in seen:
                        continue
                    seen.add((repo_name, tag))
                    got = await reader.get_manifest(repo.with_tag(tag))
                    name = f"{self.where}:{repo_name}:{tag}"
                    if (child := one_platform(got.data, got.media_type, name)) is not None:
                        got = await reader.get_manifest(repo.with_digest(child))
                    held = images.get(got.digest)
                    names = (*(held.names if held else ()), (repo_name, tag))
                    images[got.digest] = _Image(got.digest, got.data, got.media_type, names)
        return list(images.values())

    @contextlib.contextmanager
    def _open_blob(self, desc: Descriptor) -> Iterator[BinaryIO]:
        """`desc`'s stored bytes, from the stage or the old archive, positioned to read."""
        if self._stage is not None and self._stage.blob_path(desc.digest).is_file():
            with self._stage.blob_path(desc.digest).open("rb") as f:
                yield f
            return
        source = self._old.blob_source(desc.digest) if self._old is not None else None
        if source is None:
            raise ManifestError(f"blob {desc.digest} for {self.where}: missing; nothing to pack")
        with self.path.open("rb") as f:
            f.seek(source[1])
            yield f

    def _pack(self, images: list[_Image]) -> None:
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        entries: list[dict[str, Any]] = []
        packed: set[str] = set()
        with (
            replacing(self.path) as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # not in typeshed
            add_bytes(tar, LAYOUT_FILE, json.dumps(LAYOUT_VERSION).encode())
            for image in images:
                parsed = parse_manifest(image.data, image.media_type, what=image.digest)
                if not isinstance(parsed, ImageManifest):
                    raise ManifestError(f"{self.where}: {image.digest} is not an image")
                if image.digest not in packed:
                    add_bytes(tar, blob_name(image.digest), image.data)
                    packed.add(image.digest)
                for desc in parsed.blobs():
                    if desc.digest not in packed:
                        self._add_blob(tar, desc)
                        packed.add(desc.digest)
                tags = [f"{r}:{t}" for r, t in image.names]
                manifest_json.append(
                    {
                        "Config": blob_name(parsed.config.digest),
                        "RepoTags": tags,
                        "Layers": [blob_name(d.digest) for d in parsed.layers],
                    }
                )
                top = parsed.layers[-1].digest.partition(":")[2] if parsed.layers else ""
                for repo, tag in image.names:
                    repositories.setdefault(repo, {})[tag] = top
                    entries.append(_index_entry(image, repo, tag))
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            add_bytes(tar, "index.json", json.dumps(index).encode())
            add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode())
            add_bytes(tar, "repositories", json.dumps(repositories).encode())
        self._old = DockerArchive(self.path)  # what FILE holds now

    def _add_blob(self, tar: tarfile.TarFile, desc: Descriptor) -> None:
        what = f"blob {desc.digest} for {self.where}"
        with self._open_blob(desc) as f:
            reader = Verifying(f, desc, what, _NoProgress())
            tar.addfile(tar_info(blob_name(desc.digest), desc.size), reader)
            reader.check()


def _index_entry(image: _Image, repo: str, tag: str) -> dict[str, Any]:
    """As Docker 25+ names an image in index.json: the full name, and the tag as ref.name."""
    full = repo if "/" in repo else f"library/{repo}"
    return {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": len(image.data),
        "annotations": {CONTAINERD_NAME: f"docker.io/{full}:{tag}", REF_NAME: tag},
    }


class _NoProgress:
    def start(self, total_bytes: int) -> None: ...
    def advance(self, n: int) -> None: ...
