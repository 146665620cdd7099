"""Writing tars that readers trust: fixed member metadata, blobs hashed on the way in.

Shared by `syncer bundle` (an oci-archive) and the `docker-archive:` writer: the same
image content always packs to the same bytes, and a blob whose bytes do not match its
digest fails the pack, naming it, before the tar is renamed into place.
"""

from __future__ import annotations

import io
import tarfile
from typing import BinaryIO, Protocol

from syncer.errors import DigestMismatch, SizeMismatch
from syncer.registry.digests import hasher_for
from syncer.registry.oci import Descriptor

COPY_BUFFER = 512 * 1024  # bytes tarfile moves per read: bounds memory whatever the blob


class PackProgress(Protocol):
    """Bytes packed so far; the command shows a bar on a terminal, nothing elsewhere."""

    def start(self, total_bytes: int) -> None: ...
    def advance(self, n: int) -> None: ...


class Verifying(io.RawIOBase):
    """A blob file read by tarfile, hashed and counted on the way through."""

    def __init__(self, f: BinaryIO, desc: Descriptor, what: str, progress: PackProgress):
        self._f, self._desc, self._what, self._progress = f, desc, what, progress
        self._hasher = hasher_for(desc.digest, what)
        self._total = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hasher.update(data)
        self._total += len(data)
        self._progress.advance(len(data))
        return data

    def check(self) -> None:
        if self._total != self._desc.size:
            raise SizeMismatch(self._what, self._desc.size, self._total)
        actual = f"{self._desc.digest.partition(':')[0]}:{self._hasher.hexdigest()}"
        if actual != self._desc.digest:
            raise DigestMismatch(self._what, self._desc.digest, actual)


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """Fixed owner, mode and time: the same layout always packs to the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
