"""One vocabulary for what happens to a tag: the plan, the report, the metrics and the printed
plan all use `Outcome`, and its values are the strings readers of `--report` already parse."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from syncer.service.metrics import OUTCOMES
from syncer.sync.outcome import PENDING, Outcome
from syncer.sync.report import EntryReport, RunReport, TagOutcome

PACKAGE = Path(__file__).resolve().parents[2] / "syncer"

PLAN_VALUES = {"copy", "up_to_date", "filtered", "missing", "invalid"}
REPORT_VALUES = {
    "copied",
    "up_to_date",
    "filtered",
    "failed",
    "deferred",
    "rejected",
    "pruned",
    "prune_skipped",
    "planned",
    "would_prune",
}
# Where a tag's outcome is made: the class, or a helper, and which argument carries it.
MAKERS = {"TagOutcome": 1, "TagPlan": 2, "_outcome": 1}


def test_the_values_are_the_ones_reports_always_carried() -> None:
    assert {o.value for o in Outcome} == PLAN_VALUES | REPORT_VALUES
    assert {o.value for o in PENDING} == {"planned", "would_prune"}


def test_metrics_label_values_are_unchanged() -> None:
    assert [o.value for o in OUTCOMES] == ["up_to_date", "copied", "failed", "deferred", "rejected"]


def _emitted() -> list[tuple[str, ast.expr]]:
    """Every outcome argument a tag outcome or plan item is made with, in syncer's source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            at = MAKERS.get(node.func.id)
            if at is None:
                continue
            named = [k.value for k in node.keywords if k.arg == "action"]
            arg = named[0] if named else node.args[at] if len(node.args) > at else None
            assert arg is not None, f"{path}:{node.lineno}: {node.func.id} without an outcome"
            found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", arg))
    return found


def test_every_outcome_syncer_emits_is_a_member_of_the_enum() -> None:
    emitted = _emitted()
    assert len(emitted) >= 15  # the scan sees runner, prune, signatures and the planner
    members = set(Outcome.__members__)
    for where, arg in emitted:
        if isinstance(arg, ast.Name) and arg.id == "action":
            continue  # the helper's own parameter, passed through
        assert isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name), where
        assert arg.value.id == "Outcome" and arg.attr in members, where


def test_the_json_report_carries_plain_strings() -> None:
    entry = EntryReport("src/r", "dst/r")
    entry.tags = [TagOutcome(f"t{i}", o) for i, o in enumerate(Outcome)]
    report = RunReport(started="now", entries=[entry], dry_run=True)
    text = json.dumps(report.to_json())
    tags = json.loads(text)["entries"][0]["tags"]
    assert [t["action"] for t in tags] == [o.value for o in Outcome]
    assert '"action": "would_prune"' in text
    assert report.pending == 2
