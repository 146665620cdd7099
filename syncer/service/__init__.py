"""Runs syncs on a schedule and shows how they went: metrics, the status page, logs.

May import everything below it (`sync`, `config`, `registry`); only commands import it.
Its names load on first use (PEP 562): every command imports `syncer.service.logs`, and
a one-shot `syncer sync` must not pay for aiohttp's server, apscheduler and the event
endpoint that only `syncer schedule` runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncer.service.http import StatusServer
    from syncer.service.metrics import Metrics
    from syncer.service.scheduler import Scheduler
    from syncer.service.status import StatusBoard

__all__ = ["Metrics", "Scheduler", "StatusBoard", "StatusServer"]

_HOME = {
    "Metrics": "syncer.service.metrics",
    "Scheduler": "syncer.service.scheduler",
    "StatusBoard": "syncer.service.status",
    "StatusServer": "syncer.service.http",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
