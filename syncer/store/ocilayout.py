"""An OCI image layout directory as a `Store`: many repositories over one blobs/ folder.

A tag is an `index.json` entry whose `org.opencontainers.image.ref.name` annotation is
`REPOSITORY:TAG`. Writes are crash-safe: a blob goes to a temporary file inside the
layout, is verified while it streams, fsync'd and renamed into `blobs/<alg>/<hex>`;
`index.json` is replaced atomically, and only names manifests whose bytes are already
in place. So a kill -9 at any moment leaves every ref pointing at complete content.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, NotFound, ResponseTooLarge
from syncer.registry.digests import digest_of, verified, verify_digest
from syncer.registry.oci import MAX_MANIFEST_BYTES, OCI_INDEX, Descriptor
from syncer.registry.reference import Reference
from syncer.store import lock
from syncer.store.atomic import TEMP_PREFIX, atomic_write, replacing
from syncer.store.base import BlobBytes
from syncer.store.layoutread import (
    CHUNK,
    LAYOUT_FILE,
    MAX_INDEX_BYTES,
    REF_NAME,
    LayoutReader,
    blob_name,
)

__all__ = ["LAYOUT_FILE", "LAYOUT_VERSION", "REF_NAME", "OciLayout"]

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _only_ours(path: Path) -> bool:
    """Empty but for what a writer killed before its first file left (lock, temp files)."""
    return all(p.name == lock.LOCK_NAME or p.name.startswith(TEMP_PREFIX) for p in path.iterdir())


def _remove_partial_writes(layout: Path) -> None:
    for tmp in [*layout.glob(f"{TEMP_PREFIX}*"), *layout.glob(f"blobs/*/{TEMP_PREFIX}*")]:
        tmp.unlink(missing_ok=True)


class OciLayout(LayoutReader):
    """A layout at `path`; `writable` creates it when missing and takes the writer lock."""

    def __init__(self, path: Path, *, writable: bool = False, missing_ok: bool = False) -> None:
        """`missing_ok` (read-only): a missing layout reads as empty, as a dry run's
        destination that the real run would create."""
        super().__init__(path)
        self.path = path
        self._writable = writable
        self._lock: Path | None = None
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
                atomic_write(path / LAYOUT_FILE, json.dumps(LAYOUT_VERSION).encode())
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

    # -- the reader's primitives: files in the directory ----------------------

    def index_bytes(self) -> bytes:
        path = self.path / "index.json"
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ResponseTooLarge(str(path), MAX_INDEX_BYTES)
        return path.read_bytes()

    def blob_path(self, digest: str) -> Path:
        return self.path / blob_name(digest)

    def _blob_size(self, digest: str) -> int | None:
        path = self.blob_path(digest)
        return path.stat().st_size if path.is_file() else None

    def _blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        return _chunks(self.blob_path(digest))

    # -- writes ----------------------------------------------------------------

    def _write_index(self, index: dict[str, Any]) -> None:
        data = json.dumps(index, indent=2).encode()
        if len(data) > MAX_INDEX_BYTES:
            raise ResponseTooLarge(str(self.path / "index.json"), MAX_INDEX_BYTES)
        atomic_write(self.path / "index.json", data)
        self._index = index

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        if len(data) > MAX_MANIFEST_BYTES:
            raise ResponseTooLarge(f"manifest for {repo.repository}", MAX_MANIFEST_BYTES)
        digest = ident if ":" in ident else digest_of(data)
        verify_digest(f"manifest for {repo.repository}", data, digest)
        path = self.blob_path(digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
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
        """Drop `repo`'s tags that name `digest`; blobs stay (other repositories share them).
        NotFound when `repo` has none, as a registry answers for a manifest it does not hold."""
        index = dict(self._read_index())
        entries = index.get("manifests") or []
        kept = [
            e
            for e in entries
            if not (
                e.get("digest") == digest
                and str((e.get("annotations") or {}).get(REF_NAME, "")).rpartition(":")[0]
                == repo.repository
            )
        ]
        if len(kept) == len(entries):
            raise NotFound(
                f"manifest {repo.repository}@{digest} not in {self.where}: no tag names it"
            )
        index["manifests"] = kept
        self._write_index(index)

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> None:
        what = f"blob {desc.digest} for {self.path}"
        final = self.blob_path(desc.digest)
        if final.is_file():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        with replacing(final) as f:
            async for chunk in verified(what, desc.digest, desc.size, open_bytes()):
                f.write(chunk)
