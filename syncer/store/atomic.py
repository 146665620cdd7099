"""Files that are only ever absent, old or complete: write aside, fsync, rename.

One helper for every file syncer writes in place of another: a layout's blobs and
`index.json`, and a bundle's tar.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside `path`: fsync'd and renamed over it on success, removed on failure,
    so `path` is only ever absent, old or complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    with replacing(path) as f:
        f.write(data)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
