"""An OCI image layout directory as a `Store`: many repositories over one blobs/ folder.

A tag is an `index.json` entry whose `org.opencontainers.image.ref.name` annotation is
`REPOSITORY:TAG`. Writes are crash-safe: a blob goes to a temporary file inside the
layout, is verified while it streams, fsync'd and renamed into `blobs/<alg>/<hex>`;
`index.json` is replaced atomically, and only names manifests whose bytes are already
in place. So a kill -9 at any moment leaves every ref pointing at complete content.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from syncer.errors import (
    ConfigError,
    InvalidReference,
    ManifestError,
    NotFound,
    ResponseTooLarge,
)
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.digests import (
    algorithm_problem,
    digest_of,
    verified,
    verify_digest,
)
from syncer.registry.oci import MAX_MANIFEST_BYTES, OCI_INDEX, Descriptor, manifest_media_type
from syncer.registry.ratelimit import PullBudget, Reservation
from syncer.registry.reference import Reference, validate_repository, validate_tag
from syncer.store import lock
from syncer.store.base import BlobBytes

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
MAX_INDEX_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024


@contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside `path`: fsync'd and renamed over it on success, removed on failure,
    so `path` is only ever absent, old or complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_write(path: Path, data: bytes) -> None:
    with _replacing(path) as f:
        f.write(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _only_ours(path: Path) -> bool:
    """Empty but for what a writer killed before its first file left (lock, temp files)."""
    return all(p.name == lock.LOCK_NAME or p.name.startswith(".tmp-") for p in path.iterdir())


def _remove_partial_writes(layout: Path) -> None:
    for tmp in [*layout.glob(".tmp-*"), *layout.glob("blobs/*/.tmp-*")]:
        tmp.unlink(missing_ok=True)


def split_ref_name(name: str, layout: Path) -> tuple[str, str]:
    """`REPOSITORY:TAG` from an annotation, validated like a registry reference (no
    `../`, no absolute paths: the names end up in other stores' paths and URLs)."""
    repo, colon, tag = name.rpartition(":")
    try:
        if not colon or "/" in tag:
            raise InvalidReference(name, "expected REPOSITORY:TAG")
        return validate_repository(repo), validate_tag(tag)
    except InvalidReference as exc:
        raise ManifestError(f"{layout}/index.json: ref.name {name!r} is invalid: {exc}") from None


class OciLayout:
    """A layout at `path`; `writable` creates it when missing and takes the writer lock."""

    def __init__(self, path: Path, *, writable: bool = False, missing_ok: bool = False) -> None:
        """`missing_ok` (read-only): a missing layout reads as empty, as a dry run's
        destination that the real run would create."""
        self.path = path
        self._writable = writable
        self._lock: Path | None = None
        self._budget = PullBudget(str(path))  # reports nothing: a layout has no quota
        self._index: dict[str, Any] | None = None
        if not (path / LAYOUT_FILE).is_file():
            if path.exists() and (not path.is_dir() or not _only_ours(path)):
                raise ConfigError(
                    f"{path}: exists but is not an OCI image layout (no {LAYOUT_FILE} file); "
                    "name an empty or missing directory, or an existing layout"
                )
            if not writable and not missing_ok:
                raise ConfigError(f"{path}: no OCI image layout here ({LAYOUT_FILE} missing)")
            if not writable:
                self._index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
                return
        if writable:
            path.mkdir(parents=True, exist_ok=True)
            self._lock = lock.acquire(path)
            _remove_partial_writes(path)  # ours now: what a killed writer left half-done
            if not (path / LAYOUT_FILE).is_file():
                _atomic_write(path / LAYOUT_FILE, json.dumps(LAYOUT_VERSION).encode())
            if not (path / "index.json").is_file():
                self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        self._check_version()

    def _check_version(self) -> None:
        try:
            version = json.loads((self.path / LAYOUT_FILE).read_bytes())["imageLayoutVersion"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.path}/{LAYOUT_FILE}: not a valid oci-layout file") from None
        if not str(version).startswith("1."):
            raise ConfigError(f"{self.path}: image layout version {version} is not supported")

    async def aclose(self) -> None:
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None

    # -- index.json ------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        if self._index is None:
            path = self.path / "index.json"
            if path.stat().st_size > MAX_INDEX_BYTES:
                raise ResponseTooLarge(str(path), MAX_INDEX_BYTES)
            try:
                data = json.loads(path.read_bytes())
            except ValueError:
                raise ManifestError(f"{path}: not JSON") from None
            if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
                raise ManifestError(f"{path}: not an image index")
            self._index = data
        return self._index

    def _write_index(self, index: dict[str, Any]) -> None:
        data = json.dumps(index, indent=2).encode()
        if len(data) > MAX_INDEX_BYTES:
            raise ResponseTooLarge(str(self.path / "index.json"), MAX_INDEX_BYTES)
        _atomic_write(self.path / "index.json", data)
        self._index = index

    def _tags(self) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self._read_index().get("manifests") or []:
            name = ((entry or {}).get("annotations") or {}).get(REF_NAME)
            if isinstance(name, str):
                out[split_ref_name(name, self.path)] = entry
        return out

    # -- budgets ---------------------------------------------------------------

    def reserve(self, ref: Reference, pulls: int) -> Reservation:
        return self._budget.reserve(pulls)

    def ratelimits(self) -> dict[str, dict[str, Any]]:
        return {}

    # -- listing ---------------------------------------------------------------

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        return sorted(t for r, t in self._tags() if r == repo.repository)

    async def catalog(self, registry_ref: Reference, *, page_size: int = 1000) -> list[str]:
        return sorted({r for r, _t in self._tags()})

    # -- manifests -------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        if (problem := algorithm_problem(digest)) is not None:
            raise ManifestError(f"{digest}: {problem}")
        algo, _, hexpart = digest.partition(":")
        if not hexpart.isalnum():
            raise ManifestError(f"{digest}: not a digest")
        return self.path / "blobs" / algo / hexpart

    def _resolve(self, ref: Reference) -> str | None:
        if ref.digest:
            return ref.digest if self._blob_path(ref.digest).is_file() else None
        entry = self._tags().get((ref.repository, ref.tag or ""))
        return str(entry["digest"]) if entry and "digest" in entry else None

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        digest = self._resolve(ref)
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
        digest = self._resolve(ref)
        if digest is None:
            raise NotFound(f"manifest {ref.repository}:{ref.identifier} not in {self.path}")
        path = self._blob_path(digest)
        if path.stat().st_size > limit:
            raise ResponseTooLarge(f"manifest {digest} in {self.path}", limit)
        data = path.read_bytes()
        verify_digest(f"manifest {digest} in {self.path}", data, digest)
        entry = self._tags().get((ref.repository, ref.tag or "")) or {}
        return FetchedManifest(data, manifest_media_type(data, entry.get("mediaType", "")), digest)

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        if len(data) > MAX_MANIFEST_BYTES:
            raise ResponseTooLarge(f"manifest for {repo.repository}", MAX_MANIFEST_BYTES)
        digest = ident if ":" in ident else digest_of(data)
        verify_digest(f"manifest for {repo.repository}", data, digest)
        path = self._blob_path(digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, data)
        if ":" not in ident:  # a tag: the index moves only now that the bytes are in place
            name = f"{repo.repository}:{ident}"
            index = dict(self._read_index())
            kept = [
                e
                for e in index.get("manifests") or []
                if (e.get("annotations") or {}).get(REF_NAME) != name
            ]
            kept.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(data),
                    "annotations": {REF_NAME: name},
                }
            )
            index["manifests"] = kept
            self._write_index(index)
        return digest

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        """Drop `repo`'s tags that name `digest`; blobs stay (other repositories share them)."""
        index = dict(self._read_index())
        prefix = f"{repo.repository}:"
        index["manifests"] = [
            e
            for e in index.get("manifests") or []
            if not (
                e.get("digest") == digest
                and str((e.get("annotations") or {}).get(REF_NAME, "")).startswith(prefix)
            )
        ]
        self._write_index(index)

    async def referrers(self, repo: Reference, digest: str) -> list[Descriptor] | None:
        return None  # a layout has no referrers API: callers use the tag schema

    # -- blobs -----------------------------------------------------------------

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        return self._blob_path(digest).is_file()  # blobs/ is shared by every repository

    async def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        """Stream a blob, withholding the last chunk until size and digest check out."""
        what = f"blob {desc.digest} in {self.path}"
        path = self._blob_path(desc.digest)
        if not path.is_file():
            raise NotFound(f"{what}: missing")
        async for chunk in verified(what, desc.digest, desc.size, _chunks(path)):
            yield chunk

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> None:
        what = f"blob {desc.digest} for {self.path}"
        final = self._blob_path(desc.digest)
        if final.is_file():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        with _replacing(final) as f:
            async for chunk in verified(what, desc.digest, desc.size, open_bytes()):
                f.write(chunk)
