"""`syncer schedule`: run entries on their cron/interval schedules, forever.

Entries sharing a schedule run together as one job, so blobs they share still
cross the wire once. A job still running at its next fire time is skipped
(never two at once). SIGTERM/SIGINT stop scheduling and give running copies a
grace period, then cancel them: cancellation is safe because a tag is only
moved after its content is complete. SIGHUP re-reads sync.yaml; a bad new
config is rejected and the old one keeps running. All groups share one pull budget per
registry (`Budgets`), so groups running at once never spend a reserve between them.
Push events (`events:` in sync.yaml, `POST /events/<sender>`) run single entries in between
(syncer/service/events); `EntryLocks` keeps any entry to one run at a time, whoever started it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CONTENT_TYPE_LATEST

from syncer.config.schedules import When
from syncer.config.syncfile import LoadedConfig, ResolvedEntry, load_config
from syncer.errors import ConfigError
from syncer.registry.ratelimit import Budgets
from syncer.service.events import EventEndpoint, EventHub
from syncer.service.events.hub import entry_key, repo_rows
from syncer.service.events.queue import Batch
from syncer.service.http import Page, StatusServer
from syncer.service.locks import EntryKey, EntryLocks
from syncer.service.metrics import Metrics
from syncer.service.status import GroupRun, StatusBoard
from syncer.sync.report import RunReport
from syncer.sync.runner import Runner, RunOptions

log = structlog.get_logger("syncer.service.scheduler")


def group_entries(loaded: LoadedConfig) -> dict[When, list[ResolvedEntry]]:
    """Entries by schedule. Raises ConfigError when an entry has none (schedule needs one)."""
    groups: dict[When, list[ResolvedEntry]] = {}
    missing = [e for e in loaded.entries if e.when is None]
    if missing:
        where = ", ".join(f"sync[{e.index}]" for e in missing)
        raise ConfigError(
            f'{where}: no schedule; add `schedule: "*/30 * * * *"` or `interval: 30m` '
            "under `defaults:` or the entry",
            file=str(loaded.path),
        )
    for e in loaded.entries:
        assert e.when is not None
        groups.setdefault(e.when, []).append(e)
    return groups


class Scheduler:
    def __init__(
        self,
        config_path: Path,
        options: RunOptions,
        *,
        run_now: bool = False,
        grace_s: float = 30.0,
        metrics: Metrics | None = None,
        load: Callable[[Path], LoadedConfig] = load_config,
    ) -> None:
        self.config_path = config_path
        # One pull budget per registry for the whole process, whatever the groups.
        if options.budgets is None:
            options = dataclasses.replace(options, budgets=Budgets())
        self.options = options
        self.run_now = run_now
        self.grace_s = grace_s
        self.metrics = metrics or Metrics()
        self._load = load
        self._aps = AsyncIOScheduler(timezone="UTC")
        self._groups: dict[str, LoadedConfig] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self.runs_finished = 0
        self.skipped = 0
        self.metrics_port: int | None = None
        self.status = StatusBoard(self._next_run)
        self.locks = EntryLocks()
        self.events = EventHub(self.options, self.locks, self.metrics.events, self._event_ran)

    def install(self, loaded: LoadedConfig) -> None:
        """Replace every job with the schedules of `loaded` (validated first)."""
        groups = group_entries(loaded)
        self.events.install(loaded)
        self._aps.remove_all_jobs()
        self._groups.clear()
        jobs = []
        for n, (when, entries) in enumerate(sorted(groups.items(), key=lambda g: g[0].label())):
            job_id = f"group-{n}"
            self._groups[job_id] = dataclasses.replace(loaded, entries=entries)
            self._aps.add_job(
                self._run_group,
                when.trigger(),
                args=[job_id],
                id=job_id,
                name=when.label(),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            log.info("scheduled", schedule=when.label(), entries=len(entries))
            jobs.append(
                (job_id, when.label(), [(str(e.source), str(e.destination)) for e in entries])
            )
        self.status.plan(jobs)

    def _next_run(self, job_id: str) -> datetime | None:
        job = self._aps.get_job(job_id) if job_id else None
        # Before the scheduler starts, a job has no next_run_time attribute at all.
        when: datetime | None = getattr(job, "next_run_time", None)
        return when

    async def _run_group(self, job_id: str) -> None:
        loaded = self._groups.get(job_id)
        task = asyncio.current_task()
        if loaded is None or task is None or self._stop.is_set():
            return  # a run due as the stop came in is not started
        self._running.add(task)
        job = self._aps.get_job(job_id)
        schedule = job.name if job else ""
        try:
            async with self.locks.hold(entry_key(e) for e in loaded.entries):
                report = await Runner(loaded, self.options).run()
            self.metrics.observe(report, loaded)
            self.status.record(
                GroupRun(
                    group=job_id,
                    schedule=schedule,
                    patterns=tuple(str(e.source) for e in loaded.entries if e.glob),
                    entries=tuple(report.entries),
                    finished=datetime.now(UTC),
                )
            )
            t = report.totals
            log.info(
                "scheduled run finished",
                status=report.status,
                copied=t.tags_copied,
                up_to_date=t.tags_up_to_date,
                failed=t.tags_failed,
                deferred=t.tags_deferred,
                duration_s=round(report.duration_s, 2),
            )
        except Exception as exc:  # a run must never take the scheduler down
            error = f"{type(exc).__name__}: {exc}"
            log.error("scheduled run crashed", error=error)
            self.status.crashed(job_id, error, datetime.now(UTC))
        except asyncio.CancelledError:
            # Only `_drain` cancels a run, once the grace period is over, and it waits for
            # the task itself. Raised on, the cancellation would reach apscheduler, which
            # logs it as a failed job, with a raw traceback, into the JSON log.
            log.warning("scheduled run cancelled", group=job_id)
        finally:
            self.runs_finished += 1
            self._running.discard(task)

    def _event_ran(self, key: EntryKey, batch: Batch, report: RunReport) -> None:
        rows = repo_rows(report)
        self.metrics.count(rows)
        self.status.event(key, batch.notes, report, rows)

    def _skipped(self, event: JobEvent) -> None:
        self.skipped += 1
        log.warning("run skipped: the previous run is still going", job=event.job_id)

    def reload(self) -> bool:
        try:
            self.install(self._load(self.config_path))
        except ConfigError as exc:
            log.error("config reload rejected; keeping the previous config", error=str(exc))
            return False
        log.info("config reloaded", path=str(self.config_path))
        return True

    def stop(self) -> None:
        self._stop.set()

    def healthy(self) -> bool:
        return bool(self._aps.running) and not self._stop.is_set()

    async def run(self, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
        self.install(self._load(self.config_path))  # ConfigError here: exit 2 from the CLI
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._aps.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        server = StatusServer(self.pages(), self.healthy)
        EventEndpoint(self.events).add_routes(server.app)
        if metrics_port is not None:
            self.metrics_port = await server.start(metrics_host, metrics_port)
            log.info(
                "serving /metrics, /healthz and the status page",
                host=metrics_host,
                port=self.metrics_port,
                max_connections=server.limits.max_connections,
            )
        elif self.events.senders:
            log.warning("events: senders are configured but nothing listens; add --metrics-port")
        self._aps.start()
        if self.run_now:
            # Fire every job once now; each then continues on its own schedule.
            for job in self._aps.get_jobs():
                job.modify(next_run_time=datetime.now(UTC))
        try:
            await self._stop.wait()
            log.info("stopping: no new runs; waiting for running copies", grace_s=self.grace_s)
            # Paused, not shut down: apscheduler's shutdown cancels running jobs at once,
            # and the grace period is ours to give.
            self._aps.pause()
            await asyncio.gather(self._drain(), self.events.drain(self.grace_s))
            self._aps.shutdown(wait=False)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await server.stop()
        return 0

    def pages(self) -> dict[str, Page]:
        html, js = "text/html; charset=utf-8", "application/json"
        return {
            "/": lambda: (html, self.status.to_html()),
            "/status.json": lambda: (js, self.status.to_json()),
            "/metrics": lambda: (CONTENT_TYPE_LATEST, self.metrics.text()),
        }

    async def _drain(self) -> None:
        running = set(self._running)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=self.grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("grace period over: cancelled running copies", runs=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
