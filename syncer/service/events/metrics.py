"""Prometheus series of the event endpoint, registered beside the run metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "EventMetrics"]

# Seconds from an event's arrival to the end of the sync that checked its tag.
LATENCY_BUCKETS = (0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900)


class EventMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.received = Counter(
            "syncer_events_received", "Event requests posted, by sender", ["sender"], registry=r
        )
        self.rejected = Counter(
            "syncer_events_rejected",
            "Event requests refused (unauthenticated, malformed, queue_full), by sender",
            ["sender", "reason"],
            registry=r,
        )
        self.accepted = Counter(
            "syncer_events_accepted",
            "Checks (an entry's tag or repository) that events queued, by sender",
            ["sender"],
            registry=r,
        )
        self.coalesced = Counter(
            "syncer_events_coalesced",
            "Checks events asked for that were already queued, by sender",
            ["sender"],
            registry=r,
        )
        self.ignored = Counter(
            "syncer_events_ignored",
            "Events no entry covers or whose tag no entry copies, by sender",
            ["sender"],
            registry=r,
        )
        self.latency = Histogram(
            "syncer_event_to_mirrored_seconds",
            "From an event's arrival to the end of the sync that checked it",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.depth = Gauge(
            "syncer_event_queue_depth",
            "Checks waiting for their sync (tags or repositories)",
            registry=r,
        )
        self.capacity = Gauge(
            "syncer_event_queue_capacity", "The queue's bound (events.queue)", registry=r
        )
