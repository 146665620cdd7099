"""Never two runs of one entry at once: scheduled groups and event runs take the same locks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

__all__ = ["EntryKey", "EntryLocks"]

# (source, destination) as sync.yaml writes them: the same key the status board uses.
EntryKey = tuple[str, str]


class EntryLocks:
    def __init__(self) -> None:
        self._locks: dict[EntryKey, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[EntryKey]) -> AsyncIterator[None]:
        """Wait for every entry in `keys`, then hold them all. Taken in sorted order, so two
        holders of overlapping sets can never wait for each other."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                lock = self._locks.setdefault(key, asyncio.Lock())
                await stack.enter_async_context(lock)
            yield

    def busy(self, key: EntryKey) -> bool:
        lock = self._locks.get(key)
        return lock is not None and lock.locked()
