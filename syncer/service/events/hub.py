"""From events to syncs: match entries, queue checks, and run each entry's batch under its lock.

A batch runs after its settle window, behind any run of the same entry (scheduled or not:
`EntryLocks`), as one `Runner` run over the checks it holds. What is copied is read from the
source exactly as a scheduled run reads it; the event only chose what to look at.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from syncer.config.events import EventsConfig, SenderConfig
from syncer.config.syncfile import LoadedConfig, ResolvedEntry
from syncer.errors import InvalidReference
from syncer.service.events.metrics import EventMetrics
from syncer.service.events.model import Action, Event
from syncer.service.events.queue import Batch, EventQueue, Item
from syncer.service.locks import EntryKey, EntryLocks
from syncer.store.references import repository_reference
from syncer.sync.report import EntryReport, RunReport
from syncer.sync.runner import Runner, RunOptions
from syncer.sync.targets import Check, check_for_tag, covers, pin_tag

__all__ = ["EventHub", "Sender"]

log = structlog.get_logger("syncer.service.events")
UNCOVERED_LOG_S = 60.0
# Reports of event runs go here: counters for the metrics, a line for the status page.
Observer = Callable[[EntryKey, Batch, RunReport], None]


@dataclasses.dataclass(frozen=True)
class Sender:
    name: str
    config: SenderConfig
    secret: bytes = dataclasses.field(repr=False)


def entry_key(entry: ResolvedEntry) -> EntryKey:
    return (str(entry.source), str(entry.destination))


class EventHub:
    def __init__(
        self, options: RunOptions, locks: EntryLocks, metrics: EventMetrics, observe: Observer
    ) -> None:
        self.options = options
        self.locks = locks
        self.metrics = metrics
        self._observe = observe
        self.loaded: LoadedConfig | None = None
        self.senders: dict[str, Sender] = {}
        self.queue = EventQueue(EventsConfig().queue, EventsConfig().settle_s)
        self._workers: dict[EntryKey, asyncio.Task[None]] = {}
        self._uncovered: set[str] = set()
        self._uncovered_logged = -UNCOVERED_LOG_S
        self.runs_finished = 0

    def install(self, loaded: LoadedConfig) -> None:
        """Senders and entries of a (re)loaded config; raises ConfigError for a secret file
        that cannot be read, before anything is replaced. Queued checks stay queued."""
        events = loaded.config.events or EventsConfig()
        senders = {
            name: Sender(name, cfg, cfg.read_secret()) for name, cfg in events.senders.items()
        }
        self.loaded, self.senders = loaded, senders
        self.queue.capacity, self.queue.settle_s = events.queue, events.settle_s
        self.metrics.capacity.set(events.queue)

    # -- matching ---------------------------------------------------------------------------

    def items_for(self, sender: Sender, event: Event) -> list[Item]:
        """The checks `event` asks for; none when no entry covers it or copies its tag."""
        if self.loaded is None:
            return []
        registry = sender.config.host
        try:  # Docker Hub's `alpine` is `library/alpine`, as in sync.yaml sources
            repo = repository_reference(registry, event.repository).repository
        except InvalidReference:
            return []
        note = f"{sender.name}: {event.action} {repo}" + (f":{event.tag}" if event.tag else "")
        out: list[Item] = []
        for entry in self.loaded.entries:
            concrete = covers(entry, repository_reference(registry, repo).registry, repo)
            if concrete is None:
                continue
            if event.action is Action.DELETE:
                # Prune is judged by a run over the source's own listing: only a tag the
                # source no longer lists is ever removed.
                check = Check.WHOLE if concrete.prune else Check.NONE
            elif event.tag is None:
                check = Check.WHOLE
            else:
                check = check_for_tag(concrete, event.tag)
            if check is Check.NONE:
                continue
            tag = event.tag if check is Check.TAG else None
            out.append(Item(entry_key(entry), concrete, tag, sender.name, note))
        return out

    def uncovered(self, sender: Sender, event: Event) -> None:
        """Logged once a minute at most, whatever a sender posts."""
        self._uncovered.add(f"{sender.config.host}/{event.repository}")
        now = time.monotonic()
        if now - self._uncovered_logged >= UNCOVERED_LOG_S:
            names = sorted(self._uncovered)
            log.info(
                "events about repositories no entry mirrors",
                repositories=names[:10],
                count=len(names),
            )
            self._uncovered.clear()
            self._uncovered_logged = now

    # -- dispatch ---------------------------------------------------------------------------

    def enqueue(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        """Queue `items` (all or none: raises QueueFull) and make sure each entry has a worker."""
        loop = asyncio.get_running_loop()
        fresh, coalesced = self.queue.add(items, loop.time())
        self.metrics.depth.set(self.queue.depth)
        for item in fresh:
            if item.key not in self._workers:
                self._workers[item.key] = asyncio.create_task(self._worker(item.key))
        return fresh, coalesced

    async def _worker(self, key: EntryKey) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (ready := self.queue.ready_at(key)) is not None:
                if (delay := ready - loop.time()) > 0:
                    await asyncio.sleep(delay)
                    continue
                # Behind a scheduled run of this entry, never beside it.
                async with self.locks.hold([key]):
                    batch = self.queue.take(key)
                    self.metrics.depth.set(self.queue.depth)
                    if batch is not None:
                        await self._run(batch)
        finally:
            self._workers.pop(key, None)

    async def _run(self, batch: Batch) -> None:
        assert self.loaded is not None
        whole = {s for (s, tag) in batch.items if tag is None}
        entries: list[ResolvedEntry] = []
        for (source, tag), (item, _) in sorted(batch.items.items(), key=lambda kv: str(kv[0])):
            if tag is None:
                entries.append(item.concrete)
            elif source not in whole:
                try:
                    entries.append(pin_tag(item.concrete, tag))
                except InvalidReference as exc:
                    log.warning("event tag not mirrored", tag=tag, error=exc.reason)
        started = datetime.now(UTC)
        try:
            loaded = dataclasses.replace(self.loaded, entries=entries)
            report = await Runner(loaded, self.options).run()
        except Exception as exc:  # an event run must never take the endpoint down
            log.error("event run crashed", error=f"{type(exc).__name__}: {exc}")
            report = RunReport(started=started.isoformat(timespec="seconds"))
            report.errors.append(f"{type(exc).__name__}: {exc}")
        now = asyncio.get_running_loop().time()
        for _item, first in batch.items.values():
            self.metrics.latency.observe(max(0.0, now - first))
        self.runs_finished += 1
        t = report.totals
        log.info(
            "event run finished",
            entry=f"{batch.key[0]} -> {batch.key[1]}",
            checks=len(batch.items),
            copied=t.tags_copied,
            up_to_date=t.tags_up_to_date,
            failed=t.tags_failed,
        )
        self._observe(batch.key, batch, report)

    async def drain(self, grace_s: float) -> None:
        """At shutdown: queued checks are dropped (the schedule catches up), runs get `grace_s`."""
        tasks = list(self._workers.values())
        self.queue.clear()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def repo_rows(report: RunReport) -> list[EntryReport]:
    """Event runs check `repo:tag` entries; their rows, merged per repository, carry the
    labels a scheduled run of the same entry uses (no series per tag)."""
    merged: dict[tuple[str, str], EntryReport] = {}
    for row in report.entries:
        src, dst = _untagged(row.source), _untagged(row.destination)
        into = merged.setdefault((src, dst), EntryReport(src, dst))
        into.counters.add(row.counters)
        into.errors.extend(row.errors)
        into.tags.extend(row.tags)
    return list(merged.values())


def _untagged(ref: str) -> str:
    head, sep, tail = ref.rpartition(":")
    return head if sep and "/" not in tail else ref
