"""Runs syncs on a schedule and shows how they went: metrics, the status page, logs.

May import everything below it (`sync`, `config`, `registry`); only commands import it.
"""

from syncer.service.http import StatusServer
from syncer.service.metrics import Metrics
from syncer.service.scheduler import Scheduler
from syncer.service.status import StatusBoard

__all__ = ["Metrics", "Scheduler", "StatusBoard", "StatusServer"]
