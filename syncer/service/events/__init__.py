"""Push events into `syncer schedule`: one parser per sender kind, authentication, and the hub
that turns events into syncs of exactly the entries they name."""

from syncer.service.events.endpoint import EventEndpoint
from syncer.service.events.hub import EventHub
from syncer.service.events.metrics import EventMetrics
from syncer.service.events.model import Action, BadEvent, Event

__all__ = ["Action", "BadEvent", "Event", "EventEndpoint", "EventHub", "EventMetrics"]
