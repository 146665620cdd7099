"""One writer per layout: an exclusive `flock` on `.syncer.lock`, held by the kernel.

The lock belongs to the open file, so it goes when its process goes, however it goes
(kill -9, OOM, a pod deleted): there is no stale lock to recognise, and nothing compares
pids, which repeat across hosts and PID namespaces (every container's entrypoint is pid 1).
The file is never unlinked: a rival that unlinked it and created another would lock a
different inode and win beside the holder. The holder writes its pid, host and start time
into the file for the refused writer's message; that text is information, never evidence.

A process holds one lock per layout directory, however many times it opens it (the same
folder spelled two ways in one sync.yaml); the lock goes with the last release.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from syncer.errors import ConfigError, DiskError
from syncer.store.atomic import file_mode

LOCK_NAME = ".syncer.lock"
_INFO_BYTES = 512


@dataclass
class WriterLock:
    path: Path
    fd: int
    key: tuple[int, int]  # the layout directory's (st_dev, st_ino)
    users: int = 1


_held: dict[tuple[int, int], WriterLock] = {}


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, _INFO_BYTES, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "its pid not written yet"


def _open(layout: Path, path: Path) -> int:
    try:
        # Read-write: NFS emulates flock with a whole-file write lock, which needs it.
        # O_NOFOLLOW: the holder writes into this file, never through a planted symlink.
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, file_mode()
        )
    except OSError as exc:
        # A read-only mount or a folder it may not write: the disk, not the command (exit 1).
        raise DiskError(layout, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path}: not a regular file; remove it (syncer recreates it)")
    return fd


def acquire(layout: Path) -> WriterLock:
    """Lock `layout` for writing, or raise ConfigError naming the holder. Never waits: a
    second writer is refused at once, before it has read or written anything."""
    st = os.stat(layout)
    key = (st.st_dev, st.st_ino)
    if (mine := _held.get(key)) is not None:
        mine.users += 1
        return mine
    path = layout / LOCK_NAME
    fd = _open(layout, path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ConfigError(
            f"{layout}: another syncer is writing this layout ({holder}, as {path} says); "
            "wait for it to finish and run again, or stop it; its lock goes when its "
            "process ends, so there is no file to remove"
        ) from None
    except OSError as exc:
        os.close(fd)
        hint = " (an NFS server without a lock service?)" if exc.errno == errno.ENOLCK else ""
        raise ConfigError(
            f"{layout}: cannot lock {path}: {exc.strerror}{hint}; syncer does not write a "
            "layout it cannot lock: put it on a file system that supports flock"
        ) from None
    since = datetime.now(UTC).isoformat(timespec="seconds")
    info = f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode()
    with contextlib.suppress(OSError):  # information only: the kernel's lock is what holds
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
    held = _held[key] = WriterLock(path, fd, key)
    return held


def release(lock: WriterLock) -> None:
    lock.users -= 1
    if lock.users > 0 or _held.get(lock.key) is not lock:
        return
    del _held[lock.key]
    with contextlib.suppress(OSError):
        os.ftruncate(lock.fd, 0)  # while still locked: a free lock reads empty
    os.close(lock.fd)  # drops the flock
