"""Files that are only ever absent, old or complete: write aside, fsync, rename.

One helper for every file syncer writes in place of another: a layout's blobs and
`index.json`, and a bundle's tar.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from syncer.errors import DiskError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

TEMP_PREFIX = ".tmp-"


@functools.cache
def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the umask. mkstemp's 0o600 would
    leave bundles and layouts unreadable to the people they are carried for. The umask is
    read once, from /proc where it is there (no window in which another thread sees 0)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class _Target(io.FileIO):
    """The temp file's raw writes: a failed one names the file it stands in for."""

    def __init__(self, fd: int, path: Path) -> None:
        super().__init__(fd, "wb")
        self.path = path

    def write(self, b: ReadableBuffer, /) -> int:
        try:  # not `disk_errors`: this runs once per buffer, as cheap as it can be
            return super().write(b)
        except OSError as exc:
            raise DiskError(self.path, exc) from exc


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """An OSError as a DiskError naming `path` (the file meant, never a temp name)."""
    try:
        yield
    except OSError as exc:
        raise DiskError(path, exc) from exc


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside `path`: fsync'd and renamed over it on success, removed on failure,
    so `path` is only ever absent, old or complete. Its own failures (disk full, read-only)
    are a DiskError naming `path`; the caller's own exceptions pass through as they are."""
    with disk_errors(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    raw: _Target | None = None
    try:
        raw = _Target(fd, path)
        f = io.BufferedWriter(raw)
        with disk_errors(path):
            os.fchmod(fd, file_mode())
        yield f
        with disk_errors(path):
            f.flush()
            os.fsync(fd)
            raw.close()
            os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # unflushed: what is still buffered goes with the file
            if raw is None:
                os.close(fd)
            else:
                raw.close()
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with disk_errors(path.parent):
        fsync_dir(path.parent)  # `path` is complete already: nothing to remove


def atomic_write(path: Path, data: bytes) -> None:
    with replacing(path) as f:
        f.write(data)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
