"""Prometheus metrics from run reports: served by `schedule`, pushed or written by `sync`.

Metrics are derived from the same `RunReport` that `--report` writes, so the two
can never disagree.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import push_to_gateway

from syncer.report import RunReport

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
        self.last_success = Gauge(
            "syncer_last_success_timestamp_seconds",
            "When an entry last finished with nothing failed or deferred",
            ENTRY,
            registry=r,
        )
        self.ratelimit = Gauge(
            "syncer_ratelimit_remaining",
            "Pull budget the registry last reported (ratelimit-remaining)",
            ["registry"],
            registry=r,
        )

    def observe(self, report: RunReport) -> None:
        now = time.time()
        for entry in report.entries:
            labels = (entry.source, entry.destination)
            for name, _ in _COUNTED:
                value = getattr(entry.counters, name)
                child = self.counters[name].labels(*labels)
                if value:
                    child.inc(value)
            c = entry.counters
            if not (entry.errors or c.tags_failed or c.tags_deferred):
                self.last_success.labels(*labels).set(now)
        for registry, state in report.ratelimit.items():
            if state.get("remaining") is not None:
                self.ratelimit.labels(registry).set(state["remaining"])
        self.runs.labels(report.status).inc()
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
