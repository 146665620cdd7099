"""Files that are only ever absent, old or complete: write aside, fsync, rename.

One helper for every file syncer writes in place of another: a layout's blobs and
`index.json`, and a bundle's tar.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside `path`: fsync'd and renamed over it on success, removed on failure,
    so `path` is only ever absent, old or complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
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
