"""One writer per layout: a lock file holding the writer's pid.

A lock left behind by a process that died (kill -9, power loss) is taken over: its pid
no longer runs. A live pid means a second writer, which gets a clear error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from syncer.errors import ConfigError

LOCK_NAME = ".syncer.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def acquire(layout: Path) -> Path:
    """Create the lock file or raise ConfigError naming the live writer."""
    path = layout / LOCK_NAME
    for _ in range(3):
        # Written aside, then linked into place: the lock appears with its pid in it, so a
        # rival never reads an empty lock (and takes it for a dead writer's).
        fd, tmp = tempfile.mkstemp(dir=layout, prefix=".tmp-lock-")
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise ConfigError(
                    f"{layout}: another syncer (pid {pid}) is writing this layout; "
                    f"wait for it, or remove {path} if that process is not syncer"
                ) from None
            path.unlink(missing_ok=True)  # stale: its writer is gone
            continue
        finally:
            os.unlink(tmp)
        return path
    raise ConfigError(f"{layout}: could not take the lock {path}")


def release(lock: Path) -> None:
    lock.unlink(missing_ok=True)
