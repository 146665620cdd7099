"""Live progress for people at a terminal; nothing at all for CI and Kubernetes.

The runner and copier report events to a `Progress`; the default does nothing,
so the engine never depends on whether anyone is watching.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

# Blobs at least this large get a bar of their own.
LARGE_BLOB = 32 * 1024 * 1024


class Progress:
    """Silent progress: the interface, and what runs off a terminal."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def entries(self, total: int) -> None: ...

    def entry_done(self) -> None: ...

    def tags_checked(self, n: int) -> None: ...

    def tags_to_copy(self, n: int) -> None: ...

    def tag_done(self) -> None: ...

    def capped(self, caps: dict[str, str]) -> None:
        """The bandwidth caps in force (scope -> cap), named beside the bytes' speed."""

    def blob_started(self, digest: str, size: int) -> object:
        return None

    def blob_bytes(self, handle: object, n: int) -> None: ...

    def blob_done(self, handle: object) -> None: ...

    async def track(
        self, digest: str, size: int, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        handle = self.blob_started(digest, size)
        try:
            async for chunk in chunks:
                self.blob_bytes(handle, len(chunk))
                yield chunk
        finally:
            self.blob_done(handle)


class RichProgress(Progress):
    """Bars on stderr: entries, tags, bytes with throughput, and one per large blob."""

    def __init__(self) -> None:
        # Imported here: runs off a terminal (CI, Kubernetes) never pay for rich.
        from rich.console import Console, RenderableType
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            ProgressColumn,
            Task,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars

        class Only(ProgressColumn):
            """Show `column` only for byte tasks (or only for count tasks)."""

            def __init__(self, column: ProgressColumn, *, for_bytes: bool) -> None:
                super().__init__()
                self.column, self.for_bytes = column, for_bytes

            def render(self, task: Task) -> RenderableType:
                if bool(task.fields.get("bytes")) != self.for_bytes:
                    return ""
                return self.column.render(task)

        self._bars = Bars(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            Only(MofNCompleteColumn(), for_bytes=False),
            Only(DownloadColumn(), for_bytes=True),
            Only(TransferSpeedColumn(), for_bytes=True),
            console=Console(stderr=True),
            transient=False,
        )
        self._entries = self._bars.add_task("entries", total=0)
        self._tags = self._bars.add_task("tags", total=0)
        self._bytes = self._bars.add_task("bytes", total=None, bytes=True)

    def __enter__(self) -> Progress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def entries(self, total: int) -> None:
        self._bars.update(self._entries, total=total)

    def entry_done(self) -> None:
        self._bars.advance(self._entries)

    def tags_checked(self, n: int) -> None:
        self._grow(self._tags, n)

    def tags_to_copy(self, n: int) -> None:
        pass  # copied tags are a subset of the checked ones

    def tag_done(self) -> None:
        self._bars.advance(self._tags)

    def capped(self, caps: dict[str, str]) -> None:
        # The bytes bar's speed column is the effective rate; the cap is named beside it.
        named = ", ".join(c if s == "*" else f"{s} {c}" for s, c in sorted(caps.items()))
        self._bars.update(self._bytes, description=f"bytes (cap {named})")

    def blob_started(self, digest: str, size: int) -> object:
        if size >= LARGE_BLOB:
            return self._bars.add_task(digest[7:19], total=size, bytes=True)
        return None

    def blob_bytes(self, handle: object, n: int) -> None:
        self._bars.advance(self._bytes, n)
        if handle is not None:
            self._bars.advance(handle, n)  # type: ignore[arg-type]

    def blob_done(self, handle: object) -> None:
        if handle is not None:
            self._bars.remove_task(handle)  # type: ignore[arg-type]

    def _grow(self, task: Any, n: int) -> None:
        current = self._bars.tasks[task].total or 0
        self._bars.update(task, total=current + n)


def for_terminal(quiet: bool = False) -> Progress:
    """Bars only when a person is watching stderr."""
    if quiet or not sys.stderr.isatty():
        return Progress()
    return RichProgress()
