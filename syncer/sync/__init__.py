"""Plans and performs a sync run: check both ends, plan, copy what is missing, prune, report.

May import `syncer.config`, `syncer.verify` and `syncer.registry`; never the service layer.
"""

from syncer.sync.copier import BlobLedger, Copier
from syncer.sync.planner import Action, Plan, TagPlan, make_plan
from syncer.sync.report import Counters, EntryReport, RunReport, TagOutcome
from syncer.sync.runner import Runner, RunOptions

__all__ = [
    "Action",
    "BlobLedger",
    "Copier",
    "Counters",
    "EntryReport",
    "Plan",
    "RunOptions",
    "RunReport",
    "Runner",
    "TagOutcome",
    "TagPlan",
    "make_plan",
]
