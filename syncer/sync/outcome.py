"""What happens to a tag: one vocabulary for the plan, the run report, the metrics and the
printed plan.

The values are the strings `--report` JSON and the `syncer_last_run_tags{outcome=...}`
labels carry; changing one breaks readers of both (tests/sync/test_outcome.py holds them).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    # Decided by the planner, before any copy (TagPlan.action).
    COPY = "copy"  # the destination lacks it or differs; a dry run reports it as PLANNED
    UP_TO_DATE = "up_to_date"  # also a report outcome
    FILTERED = "filtered"  # also a report outcome
    MISSING = "missing"  # selected, but the source no longer has it; reported as FAILED
    INVALID = "invalid"  # its name (or destination name) is no valid tag; reported as FAILED

    # Reported per tag after the run (TagOutcome.action).
    COPIED = "copied"
    FAILED = "failed"
    DEFERRED = "deferred"  # the pull budget had no room; a later run copies it
    REJECTED = "rejected"  # `verify:` found no valid signature
    PRUNED = "pruned"
    PRUNE_SKIPPED = "prune_skipped"  # a prune safety rule kept it; the reason says which

    # Reported by a dry run: what a real run would do.
    PLANNED = "planned"
    WOULD_PRUNE = "would_prune"


# Dry-run outcomes that a real run would act on: what `check` calls out of sync.
PENDING = frozenset({Outcome.PLANNED, Outcome.WOULD_PRUNE})
