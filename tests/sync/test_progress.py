"""Progress: bars on a terminal, silence elsewhere; bytes counted exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from syncer.sync.progress import LARGE_BLOB, Progress, RichProgress, for_terminal


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def test_off_a_terminal_there_are_no_bars() -> None:
    # pytest captures stderr, so it is not a terminal here.
    assert type(for_terminal()) is Progress
    assert type(for_terminal(quiet=True)) is Progress


async def test_rich_progress_counts_bytes_and_large_blob_bars() -> None:
    p = RichProgress()
    with p:
        p.entries(1)
        p.tags_checked(2)
        seen = [c async for c in p.track("sha256:" + "a" * 64, LARGE_BLOB, chunks(4, 1000))]
        assert len(seen) == 4
        p.tag_done()
        p.tag_done()
        p.entry_done()
        tasks = {t.description.strip(): t for t in p._bars.tasks}
    assert tasks["bytes"].completed == 4000
    assert tasks["tags"].completed == 2 and tasks["tags"].total == 2
    assert tasks["entries"].completed == 1
    assert len(tasks) == 3  # the large blob's own bar is removed when it is done


async def test_track_passes_errors_through() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a"
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async for _ in Progress().track("sha256:x", 2, broken()):
            pass
