"""Each reference to its store: registries to the one `RegistryClient`, `oci:` to a layout,
`oci-archive:` to a read-only layout inside a tar.

The engine holds one `Stores` and calls it like any store; this is the one place that
tells the kinds apart, by the reference's registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.oci import MAX_MANIFEST_BYTES, Descriptor
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store.base import BlobBytes, Store
from syncer.store.ociarchive import OciArchive
from syncer.store.ocilayout import OciLayout
from syncer.store.references import is_archive, is_layout, layout_path


def _open_source(ref: Reference) -> Store:
    path = Path(layout_path(ref))
    return OciArchive(path) if is_archive(ref.registry) else OciLayout(path)


class Stores:
    """A `Store` over every registry and layout one run touches."""

    def __init__(self, registries: Store, *, owns_registries: bool = True) -> None:
        self._registries = registries
        self._owns_registries = owns_registries
        self._layouts: dict[str, Store] = {}

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
                self._layouts[ref.registry] = OciLayout(
                    Path(layout_path(ref)), writable=create, missing_ok=True
                )
        for ref in sources:
            if is_layout(ref.registry) and ref.registry not in self._layouts:
                self._layouts[ref.registry] = _open_source(ref)

    def _for(self, ref: Reference) -> Store:
        if not is_layout(ref.registry):
            return self._registries
        layout = self._layouts.get(ref.registry)
        if layout is None:
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
        return await self._for(repo).list_tags(repo, page_size=page_size)

    async def catalog(self, registry_ref: Reference, *, page_size: int = 1000) -> list[str]:
        return await self._for(registry_ref).catalog(registry_ref, page_size=page_size)

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        return await self._for(ref).head_manifest(ref)

    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        return await self._for(ref).get_manifest(ref, pulls=pulls, limit=limit)

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        return await self._for(repo).put_manifest(repo, ident, data, media_type)

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        await self._for(repo).delete_manifest(repo, digest)

    async def referrers(self, repo: Reference, digest: str) -> list[Descriptor] | None:
        return await self._for(repo).referrers(repo, digest)

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        return await self._for(repo).blob_exists(repo, digest)

    def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        return self._for(repo).read_blob(repo, desc)

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        if repo.registry != from_repo.registry:
            return False  # a mount never crosses stores
        return await self._for(repo).mount_blob(repo, digest, from_repo)

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> None:
        await self._for(repo).upload_blob(repo, desc, open_bytes)
