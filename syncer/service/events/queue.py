"""Coalescing: events for one entry within the settle window become one sync, tags batched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from syncer.config.syncfile import ResolvedEntry
from syncer.service.locks import EntryKey

__all__ = ["Batch", "EventQueue", "Item", "QueueFull"]


@dataclass(frozen=True)
class Item:
    """One check an event asks for: an entry's concrete repository, and a tag or all of it."""

    key: EntryKey  # the sync.yaml entry, for its lock and its status row
    concrete: ResolvedEntry  # that entry for the event's repository
    tag: str | None  # None: the whole repository (Check.WHOLE)
    sender: str
    note: str  # what the event said, for the status page


@dataclass
class Batch:
    """What one sync of an entry will check."""

    key: EntryKey
    ready_at: float  # loop time when the settle window closes
    # (concrete source, tag or None) -> (item, loop time of the first event asking for it)
    items: dict[tuple[str, str | None], tuple[Item, float]] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        return [item.note for item, _ in self.items.values()]


class QueueFull(Exception):
    pass


class EventQueue:
    def __init__(self, capacity: int, settle_s: float) -> None:
        self.capacity = capacity
        self.settle_s = settle_s
        self._batches: dict[EntryKey, Batch] = {}

    @property
    def depth(self) -> int:
        return sum(len(b.items) for b in self._batches.values())

    def add(self, items: Iterable[Item], now: float) -> tuple[list[Item], list[Item]]:
        """Queue every item or none (QueueFull). Returns (new, coalesced) items."""
        items = list(items)
        fresh: dict[tuple[EntryKey, str, str | None], Item] = {}
        coalesced: list[Item] = []
        for item in items:
            k = (item.key, str(item.concrete.source), item.tag)
            batch = self._batches.get(item.key)
            if (batch and k[1:] in batch.items) or k in fresh:
                coalesced.append(item)
            else:
                fresh[k] = item
        if self.depth + len(fresh) > self.capacity:
            raise QueueFull
        for (key, source, tag), item in fresh.items():
            batch = self._batches.setdefault(key, Batch(key, now + self.settle_s))
            batch.items[(source, tag)] = (item, now)
        return list(fresh.values()), coalesced

    def ready_at(self, key: EntryKey) -> float | None:
        batch = self._batches.get(key)
        return batch.ready_at if batch else None

    def take(self, key: EntryKey) -> Batch | None:
        """The entry's batch, out of the queue: events from now on start the next one."""
        return self._batches.pop(key, None)

    def clear(self) -> None:
        self._batches.clear()
