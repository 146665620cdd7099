"""One tar file's members, read in place: headers once, data by seeking, in bounded chunks.

Shared by `oci-archive:` and `docker-archive:`. Only regular files are members a reader may
open; a name is taken as the tar gives it less a leading `./`. A path that another file in
the archive names (docker's `manifest.json`) is resolved by `resolve`, which refuses what
would leave the archive (absolute, `..`), follows links only to regular members inside it,
and names the archive and the member in every refusal.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from syncer.errors import ConfigError, ManifestError, ResponseTooLarge

CHUNK = 1024 * 1024
_MAX_LINK_HOPS = 8


def member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "a directory"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "not a regular file"


class TarMembers:
    """The members of the uncompressed tar at `path`; `fix` ends a not-a-tar error."""

    def __init__(self, path: Path, fix: str) -> None:
        self.path = path
        self.files: dict[str, tuple[int, int]] = {}  # name -> (data offset, size)
        self._links: dict[str, tuple[str, bool]] = {}  # name -> (target, is a hard link)
        self._others: dict[str, str] = {}  # name -> what it is (directory, FIFO, ...)
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a tar; {fix}")
        if not path.is_file():
            raise ConfigError(f"{path}: no such file; {fix}")
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:  # headers only: tarfile seeks over each member's data
                    name = member_name(member.name).rstrip("/")
                    if member.isfile():
                        self.files[name] = (member.offset_data, member.size)
                    elif member.issym() or member.islnk():
                        self._links[name] = (member.linkname, member.islnk())
                    else:
                        self._others[name] = _kind(member)
        except (tarfile.TarError, OSError) as exc:
            raise ConfigError(f"{path}: not an uncompressed tar ({exc}); {fix}") from None

    def small(self, name: str, limit: int) -> bytes:
        """A member's bytes, whole: ResponseTooLarge past `limit`."""
        offset, size = self.files[name]
        if size > limit:
            raise ResponseTooLarge(f"{self.path}: member {name}", limit)
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(size)

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        offset, left = self.files[name]
        with self.path.open("rb") as f:
            f.seek(offset)
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    return  # a truncated tar: the verifier names the size mismatch
                left -= len(chunk)
                yield chunk

    def resolve(self, name: str, named_by: str) -> str:
        """The regular member that `name` (a path `named_by` gives) is, through links inside
        the archive; ManifestError naming the archive and the path otherwise."""
        where = f"{self.path}: {named_by} names {name!r}"
        current = name
        for _hop in range(_MAX_LINK_HOPS):
            if current.startswith("/") or "\\" in current:
                raise ManifestError(f"{where}, an absolute path; an archive's paths are relative")
            norm = posixpath.normpath(member_name(current))
            if norm == ".." or norm.startswith("../"):
                raise ManifestError(f"{where}, which leads outside the archive")
            if norm in self.files:
                return norm
            if norm in self._others:
                raise ManifestError(f"{where}, which is {self._others[norm]}, not a regular file")
            if norm not in self._links:
                raise ManifestError(f"{where}, which is not in the archive")
            target, hard = self._links[norm]
            # A symlink's target is relative to its own folder; a hard link's to the top.
            current = target if hard else posixpath.join(posixpath.dirname(norm), target)
        raise ManifestError(f"{where}: more than {_MAX_LINK_HOPS} links deep")
