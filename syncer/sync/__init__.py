"""Plans and performs a sync run: check both ends, plan, copy what is missing, prune, report.

May import `syncer.config`, `syncer.verify` and `syncer.registry`; never the service layer.
"""

from syncer.sync.copier import BlobLedger, Copier, CopyJob
from syncer.sync.outcome import Outcome
from syncer.sync.planner import Plan, TagPlan, make_plan
from syncer.sync.report import Counters, EntryReport, RunReport, TagOutcome
from syncer.sync.runner import Runner, RunOptions

__all__ = [
    "BlobLedger",
    "Copier",
    "CopyJob",
    "Counters",
    "EntryReport",
    "Outcome",
    "Plan",
    "RunOptions",
    "RunReport",
    "Runner",
    "TagOutcome",
    "TagPlan",
    "make_plan",
]
