"""Reading an OCI image layout, wherever its files are: a directory, or a tar of one.

`LayoutReader` answers the read half of `Store` (tags, manifests, blobs, all verified)
over three primitives its subclasses supply: the raw `index.json`, a blob's stored size,
and a blob's bytes in chunks. `OciLayout` reads files in a directory; `OciArchive`
seeks into one tar file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import structlog

from syncer.errors import (
    ConfigError,
    InvalidReference,
    ManifestError,
    NotFound,
    ResponseTooLarge,
    SyncerError,
)
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.digests import algorithm_problem, verified, verify_digest
from syncer.registry.oci import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    manifest_media_type,
    parse_manifest,
)
from syncer.registry.ratelimit import PullBudget, Reservation
from syncer.registry.reference import Reference, validate_repository, validate_tag
from syncer.store.base import BlobBytes

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
MAX_INDEX_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024

log = structlog.get_logger("syncer.store.layout")


def blob_name(digest: str) -> str:
    """`blobs/<alg>/<hex>`, refusing what is not a digest (no path tricks through it)."""
    if (problem := algorithm_problem(digest)) is not None:
        raise ManifestError(f"{digest}: {problem}")
    algo, _, hexpart = digest.partition(":")
    if not hexpart.isalnum():
        raise ManifestError(f"{digest}: not a digest")
    return f"blobs/{algo}/{hexpart}"


def split_ref_name(name: str, where: object) -> tuple[str, str]:
    """`REPOSITORY:TAG` from an annotation, validated like a registry reference (no
    `../`, no absolute paths: the names end up in other stores' paths and URLs)."""
    repo, colon, tag = name.rpartition(":")
    try:
        if not colon or "/" in tag:
            raise InvalidReference(name, "expected REPOSITORY:TAG")
        return validate_repository(repo), validate_tag(tag)
    except InvalidReference as exc:
        raise ManifestError(f"{where}/index.json: ref.name {name!r} is invalid: {exc}") from None


def addressable(name: str) -> tuple[str, str] | None:
    """`(REPOSITORY, TAG)` for a ref.name syncer can address, None for any other: a bare
    name (`2`, `v1.0`: skopeo's `oci:PATH:2`, the spec's own examples), or one that is
    no valid reference (never a path, whatever it says)."""
    try:
        return split_ref_name(name, "")
    except ManifestError:
        return None


_warned: set[tuple[str, tuple[str, ...]]] = set()


def warn_unaddressable(where: object, names: list[str]) -> None:
    """One warning per layout and set of names per process (a schedule reads a layout
    every run): the entries are kept, just not syncer's to address."""
    key = (str(where), tuple(sorted(set(names))))
    if key in _warned:
        return
    _warned.add(key)
    log.warning(
        "index.json entries skipped: their ref.name is not REPOSITORY:TAG",
        layout=str(where),
        ref_names=list(key[1]),
    )


def parse_index(data: bytes, where: object) -> dict[str, Any]:
    """A layout's `index.json`, capped and checked to be an image index."""
    if len(data) > MAX_INDEX_BYTES:
        raise ResponseTooLarge(f"{where}/index.json", MAX_INDEX_BYTES)
    try:
        index = json.loads(data)
    except ValueError:
        raise ManifestError(f"{where}/index.json: not JSON") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise ManifestError(f"{where}/index.json: not an image index")
    return index


class LayoutReader:
    """The read half of `Store` over a layout's index and blobs; `where` names it in errors."""

    def __init__(self, where: object) -> None:
        self.where = where
        self._budget = PullBudget(str(where))  # reports nothing: a layout has no quota
        self._index: dict[str, Any] | None = None
        self._reach_of: dict[str, Any] | None = None  # the index `_reach` was walked from
        self._reach: dict[str, set[str]] = {}
        self._tags_of: dict[str, Any] | None = None  # the index `_tag_map` was read from
        self._tag_map: dict[tuple[str, str], dict[str, Any]] = {}
        self._child_digests: dict[str, list[str]] = {}

    # -- primitives ------------------------------------------------------------

    def index_bytes(self) -> bytes:
        raise NotImplementedError

    def _blob_size(self, digest: str) -> int | None:
        """The stored size of `digest`'s blob, None when it is not here."""
        raise NotImplementedError

    def _blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def _missing_blob(self, digest: str) -> Exception:
        return NotFound(f"blob {digest} in {self.where}: missing")

    # -- index.json ------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        if self._index is None:
            self._index = parse_index(self.index_bytes(), self.where)
        return self._index

    def _tags(self) -> dict[tuple[str, str], dict[str, Any]]:
        """`(REPOSITORY, TAG)` -> entry. Entries whose ref.name syncer cannot address are
        left out (one warning names them); writes keep them in index.json untouched."""
        index = self._read_index()
        if self._tags_of is index:
            return self._tag_map
        out: dict[tuple[str, str], dict[str, Any]] = {}
        foreign: list[str] = []
        for entry in index.get("manifests") or []:
            annotations = entry.get("annotations") if isinstance(entry, dict) else None
            name = (annotations or {}).get(REF_NAME) if isinstance(annotations, dict) else None
            if isinstance(name, str):
                if (key := addressable(name)) is None:
                    foreign.append(name)
                else:
                    out[key] = entry
        if foreign:
            warn_unaddressable(self.where, foreign)
        self._tags_of, self._tag_map = index, out
        return out

    # -- budgets ---------------------------------------------------------------

    def reserve(self, ref: Reference, pulls: int) -> Reservation:
        return self._budget.reserve(pulls)

    def ratelimits(self) -> dict[str, dict[str, Any]]:
        return {}

    # -- listing ---------------------------------------------------------------

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        return sorted(t for r, t in self._tags() if r == repo.repository)

    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]:
        repos = sorted({r for r, _t in self._tags()})
        return [r for r in repos if namespace is None or r.startswith(namespace + "/")]

    # -- manifests -------------------------------------------------------------

    async def _reached(self, repository: str) -> set[str]:
        """The manifests `repository`'s index.json entries reach: each entry's digest and,
        through image indexes, their children at any depth (those present and parseable)."""
        index = self._read_index()
        if self._reach_of is not index:  # index.json moved: recompute
            self._reach_of, self._reach = index, {}
        if repository in self._reach:
            return self._reach[repository]
        todo = [str(e["digest"]) for (r, _t), e in self._tags().items() if r == repository]
        reached: set[str] = set()
        while todo:
            digest = todo.pop()
            if digest in reached or self._blob_size(digest) is None:
                continue
            reached.add(digest)
            todo.extend(await self._children(digest))
        self._reach[repository] = reached
        return reached

    async def _children(self, digest: str) -> list[str]:
        """An image index's children (none for anything else); kept, since a digest's bytes
        never change, so each manifest is read once whatever index.json does."""
        if digest not in self._child_digests:
            children: list[str] = []
            if (self._blob_size(digest) or 0) <= MAX_MANIFEST_BYTES:
                data = b"".join([c async for c in self._blob_chunks(digest)])
                try:
                    manifest = parse_manifest(data, manifest_media_type(data, ""), what=digest)
                    if isinstance(manifest, ImageIndex):
                        children = [d.digest for d in manifest.manifests]
                except SyncerError:
                    pass  # not a manifest we can read: nothing to reach through it
            self._child_digests[digest] = children
        return self._child_digests[digest]

    async def _resolve(self, ref: Reference) -> str | None:
        """A tag's digest, or a digest `ref.repository` reaches (blobs/ is shared by every
        repository, but a registry answers a digest only in a repository that holds it)."""
        if ref.digest:
            return ref.digest if ref.digest in await self._reached(ref.repository) else None
        entry = self._tags().get((ref.repository, ref.tag or ""))
        return str(entry["digest"]) if entry and "digest" in entry else None

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        digest = await self._resolve(ref)
        if digest is None:
            return None
        got = await self.get_manifest(ref.with_digest(digest))
        return ManifestInfo(got.digest, got.media_type, len(got.data))

    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        digest = await self._resolve(ref)
        if digest is None:
            raise NotFound(f"manifest {ref.repository}:{ref.identifier} not in {self.where}")
        what = f"manifest {digest} in {self.where}"
        size = self._blob_size(digest) or 0
        if size > limit:
            raise ResponseTooLarge(what, limit)
        data = b"".join([c async for c in self._blob_chunks(digest)])
        verify_digest(what, data, digest)
        entry = self._tags().get((ref.repository, ref.tag or "")) or {}
        return FetchedManifest(data, manifest_media_type(data, entry.get("mediaType", "")), digest)

    async def referrers(
        self, repo: Reference, digest: str, *, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        return None  # a layout has no referrers API: callers use the tag schema

    # -- blobs -----------------------------------------------------------------

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        return self._blob_size(digest) is not None

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        return self._blob_size(digest) is not None  # blobs/ is shared by every repository

    def _blob_what(self, digest: str) -> str:
        """How errors about this blob name it."""
        return f"blob {digest} in {self.where}"

    async def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        """Stream a blob, withholding the last chunk until size and digest check out."""
        if self._blob_size(desc.digest) is None:
            raise self._missing_blob(desc.digest)
        what = self._blob_what(desc.digest)
        async for chunk in verified(what, desc.digest, desc.size, self._blob_chunks(desc.digest)):
            yield chunk

    # -- writes: refused here; the writable layout (OciLayout) overrides them ----

    def _read_only(self) -> ConfigError:
        """The error a write to this store raises, naming the fix."""
        return ConfigError(f"{self.where} is read-only")

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        raise self._read_only()

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        raise self._read_only()

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        raise self._read_only()
