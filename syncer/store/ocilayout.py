"""An OCI image layout directory as a `Store`: many repositories over one blobs/ folder.

A tag is an `index.json` entry whose `org.opencontainers.image.ref.name` annotation is
`REPOSITORY:TAG`. Writes are crash-safe: a blob goes to a temporary file inside the
layout, is verified while it streams, fsync'd and renamed into `blobs/<alg>/<hex>`;
`index.json` is replaced atomically, and only names manifests whose bytes are already
in place. So a kill -9 at any moment leaves every ref pointing at complete content.

One writer at a time (`lock`), and each write re-reads `index.json` and changes only its
own entry. Every read of the layout's files is bounded and refuses what is not a regular
file (a FIFO would hang it, `/dev/zero` fill memory).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, ManifestError, NotFound, ResponseTooLarge
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
MAX_LAYOUT_FILE_BYTES = 64 * 1024  # `{"imageLayoutVersion": "1.0.0"}` and room to spare


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}


def _not_regular(path: Path, mode: int) -> ManifestError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return ManifestError(
        f"{path}: is {kind}, not a regular file; a layout's files must be regular files "
        "(or symlinks to them): put the layout's real file there"
    )


def _open_regular(path: Path) -> int:
    """An fd on `path`, a regular file (through symlinks): a FIFO would block the read,
    /dev/zero never end it. Checked before opening (a device is never opened) and again
    on the fd (the name may have changed in between); O_NONBLOCK, so that even then
    the open itself cannot hang."""
    if not stat.S_ISREG(mode := os.stat(path).st_mode):
        raise _not_regular(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return fd


def read_bounded(path: Path, cap: int) -> bytes:
    """A layout's metadata file, whole: ManifestError when it is not a regular file or
    cannot be read, ResponseTooLarge past `cap` bytes (at most cap + 1 are ever read,
    whatever `st_size` claims)."""
    try:
        with os.fdopen(_open_regular(path), "rb") as f:
            # In pieces: read(cap + 1) would allocate all cap bytes up front.
            parts: list[bytes] = []
            left = cap + 1
            while left > 0 and (part := f.read(min(CHUNK, left))):
                parts.append(part)
                left -= len(part)
            data = b"".join(parts)
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing; the layout is incomplete") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > cap:
        raise ResponseTooLarge(str(path), cap)
    return data


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    """A blob's bytes, no more than its size when opened plus one (enough for `verified`
    to see it changed): a file that grows while it is read never fills memory."""
    with os.fdopen(_open_regular(path), "rb") as f:
        left = os.fstat(f.fileno()).st_size + 1
        while left > 0 and (chunk := f.read(min(CHUNK, left))):
            left -= len(chunk)
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
        destination that the real run would create. Only `writable` takes the lock:
        reading a layout a writer holds works (a writer never removes a blob)."""
        super().__init__(path)
        self.path = path
        self._writable = writable
        self._lock: lock.WriterLock | None = None
        # lexists: an oci-layout that is a FIFO or a dangling symlink is a broken layout
        # (said by _check_version), not a missing one to create over.
        if not os.path.lexists(path / LAYOUT_FILE):
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
            try:
                self._prepare()
            except BaseException:
                lock.release(self._lock)
                self._lock = None
                raise
            return
        self._check_version()

    def _prepare(self) -> None:
        """Under the lock: clear what a killed writer left half-done, create what is missing."""
        if self._lock is not None and self._lock.users == 1:
            _remove_partial_writes(self.path)  # not while another run in this process writes
        if not os.path.lexists(self.path / LAYOUT_FILE):
            atomic_write(self.path / LAYOUT_FILE, json.dumps(LAYOUT_VERSION).encode())
        self._check_version()
        if not os.path.lexists(self.path / "index.json"):
            self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def _check_version(self) -> None:
        where = f"{self.path}/{LAYOUT_FILE}"
        try:
            data = read_bounded(self.path / LAYOUT_FILE, MAX_LAYOUT_FILE_BYTES)
        except (ManifestError, ResponseTooLarge) as exc:
            raise ConfigError(str(exc)) from None
        try:
            version = json.loads(data)["imageLayoutVersion"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{where}: not a valid oci-layout file") from None
        if not str(version).startswith("1."):
            raise ConfigError(f"{self.path}: image layout version {version} is not supported")

    def layout_file_bytes(self) -> bytes:
        """The `oci-layout` file's bytes, read as boundedly as index.json."""
        return read_bounded(self.path / LAYOUT_FILE, MAX_LAYOUT_FILE_BYTES)

    async def aclose(self) -> None:
        if self._lock is not None:
            lock.release(self._lock)
            self._lock = None

    # -- the reader's primitives: files in the directory ----------------------

    def index_bytes(self) -> bytes:
        return read_bounded(self.path / "index.json", MAX_INDEX_BYTES)

    def blob_path(self, digest: str) -> Path:
        return self.path / blob_name(digest)

    def _blob_size(self, digest: str) -> int | None:
        """None when absent; a FIFO or device there is an error, not a missing blob."""
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        return st.st_size

    def _blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        return _chunks(self.blob_path(digest))

    # -- writes ----------------------------------------------------------------

    def _write_index(self, index: dict[str, Any]) -> None:
        data = json.dumps(index, indent=2).encode()
        if len(data) > MAX_INDEX_BYTES:
            raise ResponseTooLarge(str(self.path / "index.json"), MAX_INDEX_BYTES)
        atomic_write(self.path / "index.json", data)
        self._index = index  # a new object: the reader's reach cache starts over

    def _current_index(self) -> dict[str, Any]:
        """index.json as it is on disk now, never as it was when this run last looked:
        each write applies only its own change to it, so even a writer the lock did not
        keep out (an NFS mount without locking) loses no other writer's entries."""
        self._index = None
        return dict(self._read_index())

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
            index = self._current_index()
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
        index = self._current_index()
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

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        what = f"blob {desc.digest} for {self.path}"
        final = self.blob_path(desc.digest)
        if final.is_file():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        with replacing(final) as f:
            async for chunk in verified(what, desc.digest, desc.size, open_bytes()):
                f.write(chunk)
        return True
