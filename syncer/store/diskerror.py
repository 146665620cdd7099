"""OSErrors from a layout's or bundle's files, as one `DiskError` that names the path.

The store's callers (the router, `bundle.pack`) translate here, so a full disk or a
read-only mount is one error line, never a traceback; `atomic.replacing` names the file
it was writing itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncer.errors import DiskError
from syncer.store.atomic import TEMP_PREFIX
from syncer.store.lock import LOCK_NAME


def disk_error(exc: OSError, where: Path) -> DiskError:
    """`exc` naming its file, or `where` when it names none; syncer's own temp and lock
    files are named by their folder (the user's layout, not a name they never chose)."""
    name = exc.filename
    if not isinstance(name, str | Path):
        return DiskError(where, exc)
    path = Path(name)
    if path.name.startswith(TEMP_PREFIX) or path.name == LOCK_NAME:
        path = path.parent
    return DiskError(path, exc)


@contextmanager
def on_disk(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise disk_error(exc, where) from exc
