"""Prometheus metrics from run reports: served by `schedule`, pushed or written by `sync`.

Metrics are derived from the same `RunReport` that `--report` writes, so the two
can never disagree. The dashboard (deploy/grafana) and the alert rules (deploy/prometheus)
query these names; tests/test_monitoring.py fails when they drift apart.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import push_to_gateway

from syncer.config.schedules import When
from syncer.service.events.metrics import EventMetrics
from syncer.sync.outcome import Outcome
from syncer.sync.report import EntryReport, RunReport

if TYPE_CHECKING:
    from syncer.config.syncfile import LoadedConfig

ENTRY = ("source", "destination")
_COUNTED = (
    ("tags_checked", "Tags whose digests were compared"),
    ("tags_up_to_date", "Tags already identical at the destination"),
    ("tags_copied", "Tags copied"),
    ("tags_failed", "Tags that failed"),
    ("tags_deferred", "Tags deferred to a later run (rate-limit budget)"),
    ("tags_rejected", "Tags not copied because no cosign signature verified"),
    ("blobs_copied", "Blobs transferred"),
    ("blobs_mounted", "Blobs mounted from another repository"),
    ("bytes_copied", "Blob bytes transferred"),
)
# Tag outcomes of the last run, as gauges: a CronJob's textfile or Pushgateway series start
# from zero every run, so increase() over the counters sees nothing there; a gauge of "what
# the last run did" reads the same whether the process lives for one run or for months.
# Each is an `outcome` label value and names its counter, `tags_<outcome>`.
OUTCOMES = (
    Outcome.UP_TO_DATE,
    Outcome.COPIED,
    Outcome.FAILED,
    Outcome.DEFERRED,
    Outcome.REJECTED,
)
STATUSES = ("ok", "partial", "failed")
# Enough fire times to see the longest gap of a weekly or weekdays-only cron.
_PERIOD_SAMPLES = 64


def period_s(when: When) -> float:
    """The longest gap between two runs on `when`: how long an entry may go without one."""
    if when.interval_s is not None:
        return when.interval_s
    trigger = when.trigger()
    fire = trigger.get_next_fire_time(None, datetime.now(UTC))
    longest = 0.0
    for _ in range(_PERIOD_SAMPLES):
        if fire is None:
            break
        after = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if after is not None:
            longest = max(longest, (after - fire).total_seconds())
        fire = after
    return longest


def schedules_of(loaded: LoadedConfig) -> tuple[dict[str, When], When | None]:
    """Each entry's schedule by source, and the one every entry shares (if they do).

    A report names the repositories a `team/*` entry expanded to, not the pattern: those
    rows get the shared schedule, which `syncer schedule` always has (one group, one When).
    """
    by_source = {str(e.source): e.when for e in loaded.entries if e.when is not None}
    distinct = {e.when for e in loaded.entries}
    shared = next(iter(distinct)) if len(distinct) == 1 else None
    return by_source, shared


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.counters = {
            name: Counter(f"syncer_{name}", doc, ENTRY, registry=r) for name, doc in _COUNTED
        }
        self.runs = Counter("syncer_runs", "Sync runs by final status", ["status"], registry=r)
        self.duration = Gauge("syncer_run_duration_seconds", "Duration of the last run", registry=r)
        self.last_run = Gauge(
            "syncer_last_run_timestamp_seconds", "When the last run ended", registry=r
        )
        self.last_status = Gauge(
            "syncer_last_run_status",
            "1 for the final status of the last run (ok, partial, failed), 0 for the others",
            ["status"],
            registry=r,
        )
        self.last_tags = Gauge(
            "syncer_last_run_tags",
            "Tags of an entry by outcome in its last run",
            [*ENTRY, "outcome"],
            registry=r,
        )
        self.last_success = Gauge(
            "syncer_last_success_timestamp_seconds",
            "When an entry last finished with nothing failed or deferred",
            ENTRY,
            registry=r,
        )
        self.period = Gauge(
            "syncer_schedule_period_seconds",
            "Longest gap between two scheduled runs of an entry (from sync.yaml)",
            ENTRY,
            registry=r,
        )
        self.ratelimit = Gauge(
            "syncer_ratelimit_remaining",
            "Pull budget the registry last reported (ratelimit-remaining)",
            ["registry"],
            registry=r,
        )
        self.limited = Counter(
            "syncer_bandwidth_limited_seconds",
            "Seconds blob streams waited for a bandwidth cap's bucket, by the cap that held them",
            ["scope", "direction"],
            registry=r,
        )
        self.reserve = Gauge(
            "syncer_ratelimit_reserve",
            "Pull budget syncer keeps unspent (ratelimit.min_remaining)",
            ["registry"],
            registry=r,
        )
        self.events = EventMetrics(r)

    def count(self, entries: list[EntryReport]) -> None:
        """Add what `entries` did to the counters (event runs: no "last run" gauges, which
        say how the entry's whole scheduled run went)."""
        for entry in entries:
            labels = (entry.source, entry.destination)
            for name, _ in _COUNTED:
                value = getattr(entry.counters, name)
                child = self.counters[name].labels(*labels)
                if value:
                    child.inc(value)

    def observe(self, report: RunReport, loaded: LoadedConfig | None = None) -> None:
        now = time.time()
        by_source, shared = schedules_of(loaded) if loaded else ({}, None)
        self.count(report.entries)
        for entry in report.entries:
            labels = (entry.source, entry.destination)
            c = entry.counters
            for outcome in OUTCOMES:
                count = getattr(c, f"tags_{outcome.value}")
                self.last_tags.labels(*labels, outcome.value).set(count)
            if entry.status == "ok":
                self.last_success.labels(*labels).set(now)
            when = by_source.get(entry.source, shared)
            if when is not None:
                self.period.labels(*labels).set(period_s(when))
        for registry, state in report.ratelimit.items():
            if state.get("remaining") is not None:
                self.ratelimit.labels(registry).set(state["remaining"])
        if loaded is not None:
            for host, settings in loaded.config.registries.items():
                self.reserve.labels(host).set(settings.ratelimit.min_remaining)
        for scope, cap in report.bandwidth.items():
            for direction in ("download", "upload"):
                waited = cap.get(direction, {}).get("limited_s", 0.0)
                if waited > 0:
                    self.limited.labels(scope, direction).inc(waited)
        self.runs.labels(report.status).inc()
        for status in STATUSES:
            self.last_status.labels(status).set(1 if status == report.status else 0)
        self.duration.set(report.duration_s)
        self.last_run.set(now)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """For node_exporter's textfile collector: atomic, so it never reads half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.text())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def push(self, gateway: str, job: str = "syncer") -> None:
        push_to_gateway(gateway, job=job, registry=self.registry, timeout=30)
