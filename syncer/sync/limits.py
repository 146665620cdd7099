"""A run's part in the process's bandwidth caps: it sets them from its sync.yaml as it
starts (so a reloaded file applies), shows them on the progress bar, and reports what
they did while it ran: bytes, seconds spent waiting, and the effective rate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncer.config.schedules import zone
from syncer.config.syncfile import LoadedConfig
from syncer.registry.bandwidth import Bandwidth, Usage
from syncer.sync.progress import Progress


@dataclass
class RunBandwidth:
    limits: Bandwidth
    loaded: LoadedConfig
    progress: Progress
    _since: Usage = field(default_factory=lambda: Usage({}, {}))

    def start(self) -> None:
        config = self.loaded.config
        # Windows (`between`) are read in the schedule's zone: the file's `defaults.timezone`,
        # as the buckets serve every entry and schedule group at once.
        hosts = {host: r.bandwidth for host, r in config.registries.items() if r.bandwidth}
        self.limits.configure(
            config.defaults.bandwidth, zone(config.defaults.timezone or "UTC"), hosts
        )
        self._since = self.limits.usage()
        caps = self.limits.caps()
        if caps:
            self.progress.capped(caps)

    def report(self, duration_s: float) -> dict[str, dict[str, Any]]:
        """The run report's `bandwidth` section (empty when nothing is capped)."""
        return self.limits.report(self._since, duration_s)
