"""Each reference to its store: registries to the one `RegistryClient`, `oci:` to a layout,
`oci-archive:` to a read-only layout inside a tar, `docker-archive:` to a `docker save` tar
(read in place as a source, staged and packed as a destination).

The engine holds one `Stores` and calls it like any store; this is the one place that
tells the kinds apart, by the reference's registry. It is also where a layout's OSErrors
become a `DiskError` naming the path, and where a layout whose disk is full or read-only
stops being written to for the rest of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, DiskError
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.oci import MAX_MANIFEST_BYTES, Descriptor
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store.base import BlobBytes, Store
from syncer.store.diskerror import disk_error
from syncer.store.ocilayout import OciLayout
from syncer.store.references import is_archive, is_docker_archive, is_layout, layout_path

# The tar stores are imported when a reference names one: a registry-to-registry run never
# loads tarfile and the packing code.


def _open_source(ref: Reference) -> Store:
    path = Path(layout_path(ref))
    if is_docker_archive(ref.registry):
        from syncer.store.dockerread import DockerArchive

        return DockerArchive(path)
    if is_archive(ref.registry):
        from syncer.store.ociarchive import OciArchive

        return OciArchive(path)
    return OciLayout(path)


def _open_destination(ref: Reference, *, create: bool) -> Store:
    path = Path(layout_path(ref))
    if is_docker_archive(ref.registry):
        from syncer.store.dockerwrite import DockerArchiveWriter

        return DockerArchiveWriter(path, writable=create)
    return OciLayout(path, writable=create, missing_ok=True)


class Stores:
    """A `Store` over every registry and layout one run touches."""

    def __init__(self, registries: Store, *, owns_registries: bool = True) -> None:
        self._registries = registries
        self._owns_registries = owns_registries
        self._layouts: dict[str, Store] = {}
        self._unwritable: dict[str, DiskError] = {}  # layout -> the disk-wide failure

    def open_layouts(
        self, sources: Iterable[Reference], destinations: Iterable[Reference], *, create: bool
    ) -> None:
        """Open every layout up front, so a PATH that is not a layout, or one another writer
        holds, is a configuration error before anything is copied. Destinations are created
        and locked unless `create` is false (a dry run only reads them)."""
        for ref in destinations:
            if is_archive(ref.registry):
                raise ConfigError(
                    f"{ref.registry}: an oci-archive is read-only, not a destination; write "
                    "to an oci: layout, then pack it with `syncer bundle LAYOUT -o FILE.tar`"
                )
            if is_layout(ref.registry) and ref.registry not in self._layouts:
                with self._disk(ref):
                    self._layouts[ref.registry] = _open_destination(ref, create=create)
        for ref in sources:
            if is_layout(ref.registry) and ref.registry not in self._layouts:
                with self._disk(ref):
                    self._layouts[ref.registry] = _open_source(ref)

    @contextmanager
    def _disk(self, ref: Reference) -> Iterator[None]:
        """A layout's OSError as a DiskError naming the path."""
        try:
            yield
        except OSError as exc:
            if not is_layout(ref.registry):
                raise
            raise disk_error(exc, Path(layout_path(ref))) from exc

    @contextmanager
    def _writing(self, ref: Reference) -> Iterator[None]:
        """A write to `ref`'s store; once a layout's disk is full or read-only, none more
        is tried there (the next would fail the same way, after reading its source)."""
        self.check_writable(ref)
        try:
            with self._disk(ref):
                yield
        except DiskError as exc:
            mine = is_layout(ref.registry) and Path(exc.path).is_relative_to(layout_path(ref))
            if exc.disk_wide and mine:  # not a source layout's read error
                self._unwritable.setdefault(ref.registry, exc)
            raise

    def check_writable(self, ref: Reference) -> None:
        """DiskError when an earlier write to `ref`'s layout found its disk full or
        read-only: the runner asks before it reads anything for a copy there."""
        if (first := self._unwritable.get(ref.registry)) is not None:
            raise DiskError(
                first.path,
                OSError(first.errno, first.cause),
                prefix="not tried, as a write failed: ",
            )

    def _for(self, ref: Reference) -> Store:
        if not is_layout(ref.registry):
            return self._registries
        layout = self._layouts.get(ref.registry)
        if layout is None:
            with self._disk(ref):
                layout = self._layouts[ref.registry] = _open_source(ref)
        return layout

    async def aclose(self) -> None:
        for layout in self._layouts.values():
            await layout.aclose()
        self._layouts.clear()
        if self._owns_registries:
            await self._registries.aclose()

    def reserve(self, ref: Reference, pulls: int) -> Reservation:
        return self._for(ref).reserve(ref, pulls)

    def ratelimits(self) -> dict[str, dict[str, Any]]:
        return self._registries.ratelimits()

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        with self._disk(repo):
            return await self._for(repo).list_tags(repo, page_size=page_size)

    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]:
        with self._disk(registry_ref):
            store = self._for(registry_ref)
            return await store.catalog(registry_ref, page_size=page_size, namespace=namespace)

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        with self._disk(ref):
            return await self._for(ref).head_manifest(ref)

    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        with self._disk(ref):
            return await self._for(ref).get_manifest(ref, pulls=pulls, limit=limit)

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        with self._writing(repo):
            return await self._for(repo).put_manifest(repo, ident, data, media_type)

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        with self._writing(repo):
            await self._for(repo).delete_manifest(repo, digest)

    async def referrers(
        self, repo: Reference, digest: str, *, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        with self._disk(repo):
            return await self._for(repo).referrers(repo, digest, artifact_type=artifact_type)

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        with self._disk(repo):
            return await self._for(repo).blob_exists(repo, digest)

    def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        if not is_layout(repo.registry):
            return self._registries.read_blob(repo, desc)
        return self._read_layout_blob(repo, desc)

    async def _read_layout_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        with self._disk(repo):
            async for chunk in self._for(repo).read_blob(repo, desc):
                yield chunk

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        if repo.registry != from_repo.registry:
            return False  # a mount never crosses stores
        with self._disk(repo):
            return await self._for(repo).mount_blob(repo, digest, from_repo)

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        with self._writing(repo):
            return await self._for(repo).upload_blob(repo, desc, open_bytes)
