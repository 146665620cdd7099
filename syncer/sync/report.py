"""Counters and the JSON report of a run (`--report`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError
from syncer.store.atomic import replacing
from syncer.sync.outcome import PENDING, Outcome


def check_report_path(path: Path) -> None:
    """ConfigError (exit 2, before any request) when the report could not be written
    there: a run must not copy for an hour and then fail to say what it did."""
    fix = "give a file path whose parent folder exists and is writable"
    if path.is_dir():
        raise ConfigError(f"--report {path}: is a directory; {fix}, e.g. {path / 'report.json'}")
    if not path.parent.is_dir():
        raise ConfigError(
            f"--report {path}: folder {path.parent} does not exist; create it or {fix}"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--report {path}: folder {path.parent} is not writable; {fix}")


@dataclass
class Counters:
    tags_checked: int = 0
    tags_up_to_date: int = 0
    tags_copied: int = 0
    tags_filtered: int = 0
    tags_failed: int = 0
    tags_deferred: int = 0
    tags_rejected: int = 0  # refused by `verify:`; not a failure unless on_failure: fail
    tags_pruned: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_existing: int = 0
    bytes_copied: int = 0

    def add(self, other: Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class TagOutcome:
    tag: str
    action: Outcome  # one of the report outcomes (see outcome.py)
    source_digest: str | None = None
    destination_digest: str | None = None
    reason: str = ""
    # A copy made with a `platforms:` filter: its top-level index is syncer's subset of
    # this source digest, which no one signed (its children are the source's, and signed).
    subset_of: str | None = None


@dataclass
class EntryReport:
    source: str
    destination: str
    counters: Counters = field(default_factory=Counters)
    errors: list[dict[str, str]] = field(default_factory=list)
    tags: list[TagOutcome] = field(default_factory=list)
    skipped_foreign_layers: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ok (nothing failed or deferred), partial (some tags done) or failed."""
        c = self.counters
        if not (self.errors or c.tags_failed or c.tags_deferred):
            return "ok"
        return "partial" if c.tags_copied + c.tags_up_to_date else "failed"

    def fail(self, tag: str | None, error: str) -> None:
        self.errors.append({"tag": tag or "", "error": error})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "destination": self.destination}
        out.update(asdict(self.counters))
        out["errors"] = self.errors
        out["tags"] = [asdict(t) for t in self.tags]
        if self.skipped_foreign_layers:
            out["skipped_foreign_layers"] = self.skipped_foreign_layers
        return out


@dataclass
class RunReport:
    started: str
    duration_s: float = 0.0
    entries: list[EntryReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures not tied to one entry
    ratelimit: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per capped scope ("process" or a host): the cap, and per direction the bytes, the
    # seconds spent waiting for the bucket and the effective rate (limits.py).
    bandwidth: dict[str, dict[str, Any]] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def totals(self) -> Counters:
        total = Counters()
        for e in self.entries:
            total.add(e.counters)
        return total

    @property
    def status(self) -> str:
        t = self.totals
        failed = (
            t.tags_failed
            + t.tags_deferred
            + sum(1 for e in self.entries for err in e.errors if not err["tag"])
            + len(self.errors)
        )
        if not failed:
            return "ok"
        done = t.tags_copied + t.tags_up_to_date
        return "partial" if done else "failed"

    @property
    def pending(self) -> int:
        """Changes a dry run found: copies and deletions a real run would make."""
        return sum(1 for e in self.entries for t in e.tags if t.action in PENDING)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "dry_run": self.dry_run,
            "totals": asdict(self.totals),
            "ratelimit": self.ratelimit,
            "bandwidth": self.bandwidth,
            "errors": self.errors,
            "entries": [e.to_json() for e in self.entries],
        }

    def write(self, path: Path) -> None:
        """Atomically, so a reader never sees half a report (`check_report_path` first)."""
        with replacing(path) as fh:
            fh.write(json.dumps(self.to_json(), indent=2).encode() + b"\n")
