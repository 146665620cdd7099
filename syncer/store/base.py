"""The interface the engine needs from wherever images live: a registry or a layout.

The planner, copier, runner, prune and catalog speak to a `Store`; `RegistryClient`
satisfies it as it stands (so request counts are the client's own) and
`OciLayout` is the second implementation. Nothing above branches on the kind of
store: where the kinds differ (mounting, pull budgets) the store answers for itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.oci import MAX_MANIFEST_BYTES, Descriptor
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.registry.upload import BlobBytes as BlobBytes  # the one definition, re-exported


class Store(Protocol):
    """One place that holds repositories of tagged manifests over shared blobs."""

    # -- budgets: a registry counts manifest GETs, a layout counts nothing --
    def reserve(self, ref: Reference, pulls: int) -> Reservation: ...
    def ratelimits(self) -> dict[str, dict[str, Any]]: ...

    # -- listing --
    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]: ...
    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]: ...

    # -- manifests, always the exact bytes --
    async def head_manifest(self, ref: Reference) -> ManifestInfo | None: ...
    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest: ...
    async def put_manifest(
        self, repo: Reference, ident: str, data: bytes, media_type: str
    ) -> str: ...
    async def delete_manifest(self, repo: Reference, digest: str) -> None: ...
    async def referrers(
        self, repo: Reference, digest: str, *, artifact_type: str | None = None
    ) -> list[Descriptor] | None: ...

    # -- blobs --
    async def blob_exists(self, repo: Reference, digest: str) -> bool: ...
    def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]: ...
    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        """True when `digest` became available in `repo` without moving its bytes (a
        registry's cross-repo mount; a layout's shared blobs/ folder)."""
        ...

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        """Make `desc` exist in `repo`: True when its bytes were sent, False when the store
        held it already (so a copy needs no separate "is it there?" request)."""
        ...

    async def aclose(self) -> None: ...
