"""The Grafana dashboard and the alert rules against what syncer really exports, and the
rules run through promtool's own checker and unit tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncer.config.syncfile import load_config
from syncer.service.metrics import OUTCOMES, Metrics
from syncer.sync.report import Counters, EntryReport, RunReport
from tests.support import promql, tools

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "syncer-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "syncer-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "syncer-rules.test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "overlays" / "monitoring" / "prometheusrule.yaml"

# Labels Prometheus itself adds to every scraped (or pushed) series.
TARGET_LABELS = {"job", "instance"}
# Queried before syncer exports them, so panels show them once they exist: name -> labels.
# Remove an entry once syncer exports the metric (then it is checked like any other).
PLANNED: dict[str, set[str]] = {}
ALERTS = {
    "SyncerMirrorStale",
    "SyncerRunsFailing",
    "SyncerTagsFailing",
    "SyncerRateLimitReserveLow",
    "SyncerDeferredTagsPersisting",
    "SyncerJobMissing",
    "SyncerEventsRejected",
    "SyncerEventQueueFull",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every sample name syncer's own registry exposes, with its label names, after one run
    that touched every entry counter and every registry gauge."""
    cfg = tmp_path_factory.mktemp("cfg") / "sync.yaml"
    cfg.write_text(
        "version: 1\n"
        "defaults: {schedule: '*/30 * * * *'}\n"
        "registries:\n  docker.io: {ratelimit: {min_remaining: 20}}\n"
        "sync:\n  - {source: docker.io/library/alpine, destination: reg.example/alpine}\n",
        encoding="utf-8",
    )
    entry = EntryReport("docker.io/library/alpine", "reg.example/alpine")
    for counter in fields(Counters):
        setattr(entry.counters, counter.name, 1)
    ok = EntryReport("docker.io/library/alpine", "reg.example/alpine-ok")  # a success too
    ok.counters.tags_copied = 1
    capped = {"cap": "20 MiB/s", "download": {"bytes": 1, "limited_s": 0.5, "bytes_per_s": 1}}
    report = RunReport(
        started="now",
        entries=[entry, ok],
        ratelimit={"docker.io": {"remaining": 7}},
        bandwidth={"process": capped},
    )
    metrics = Metrics()
    metrics.observe(report, load_config(cfg, env={}))
    events = metrics.events  # one child of each labelled event series
    for counter in (events.received, events.accepted, events.coalesced, events.ignored):
        counter.labels("registry").inc()
    events.rejected.labels("registry", "unauthenticated").inc()
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(where, expr, legend) of every PromQL query in the dashboard."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dash["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r}", target["expr"], target.get("legendFormat", "")
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            # label_values(METRIC, LABEL): the metric is a PromQL selector, LABEL a label of it.
            inner = var["query"]["query"].removeprefix("label_values(").removesuffix(")")
            metric, label = (x.strip() for x in inner.split(","))
            yield f"variable ${var['name']}", metric, "{{" + label + "}}"


def rule_queries() -> Iterator[tuple[str, str, str]]:
    for rule in rules():
        if "alert" in rule:
            text = " ".join(rule.get("annotations", {}).values())
            yield f"alert {rule['alert']}", rule["expr"], text


def check_query(where: str, expr: str, printed: str, exported: dict[str, set[str]]) -> None:
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    query = promql.parse(expr)
    metrics = dict(query.metrics)
    for name in [n for n in metrics if n in recorded]:  # a recording rule: what it reads
        del metrics[name]
        for inner, labels in promql.parse(recorded[name]).metrics.items():
            metrics.setdefault(inner, set()).update(labels)
    assert metrics, f"{where}: no metric in {expr!r}"
    used = query.grouping | promql.template_labels(printed)
    for name, matched in metrics.items():
        has = exported.get(name, PLANNED.get(name))
        assert has is not None, f"{where}: syncer exports no {name} (in {expr!r})"
        missing = (matched | used) - has - TARGET_LABELS
        assert not missing, f"{where}: {name} has no label(s) {sorted(missing)} (in {expr!r})"


def test_exported_fixture_sees_every_family(exported: dict[str, set[str]]) -> None:
    # Otherwise a labelled metric with no child yet would look like one syncer lacks.
    for family in Metrics().registry.collect():
        assert any(n.startswith(family.name) for n in exported), family.name
    assert exported["syncer_last_run_tags"] == {"source", "destination", "outcome"}
    assert {"syncer_tags_copied_total", "syncer_schedule_period_seconds"} <= exported.keys()


def test_planned_metrics_are_the_only_ones_not_exported(exported: dict[str, set[str]]) -> None:
    queried = {
        n
        for _, expr, _ in [*dashboard_queries(), *rule_queries()]
        for n in promql.parse(expr).metrics
    }
    assert set(PLANNED) <= queried, "a planned metric no query uses: drop it from PLANNED"
    assert "rejected" in OUTCOMES
    assert "syncer_tags_rejected_total" not in PLANNED  # exported now: checked like the rest


@pytest.mark.parametrize("where,expr,printed", list(dashboard_queries()), ids=lambda x: str(x)[:60])
def test_dashboard_query_uses_exported_metrics_and_labels(
    where: str, expr: str, printed: str, exported: dict[str, set[str]]
) -> None:
    check_query(where, expr, printed, exported)


@pytest.mark.parametrize("where,expr,printed", list(rule_queries()), ids=lambda x: str(x)[:60])
def test_alert_uses_exported_metrics_and_labels(
    where: str, expr: str, printed: str, exported: dict[str, set[str]]
) -> None:
    check_query(where, expr, printed, exported)


def test_the_drift_check_catches_a_renamed_metric_and_a_wrong_label(
    exported: dict[str, set[str]],
) -> None:
    with pytest.raises(AssertionError, match="exports no syncer_tag_copied_total"):
        check_query("t", "rate(syncer_tag_copied_total[5m])", "", exported)
    with pytest.raises(AssertionError, match=r"no label\(s\) \['repository'\]"):
        check_query("t", "sum by (repository) (syncer_tags_copied_total)", "", exported)
    with pytest.raises(AssertionError, match=r"no label\(s\) \['registry'\]"):
        check_query("t", "syncer_runs_total", "{{registry}}", exported)


def test_dashboard_is_grafana_10_with_a_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["schemaVersion"] >= 38  # Grafana 10.0
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    exprs = " ".join(expr for _, expr, _ in dashboard_queries())
    for needed in (
        "syncer_last_success_timestamp_seconds",
        "syncer_runs_total",
        *(f"syncer_tags_{o}_total" for o in ("copied", "up_to_date", "failed", "deferred")),
        "syncer_tags_rejected_total",
        "syncer_bytes_copied_total",
        "syncer_run_duration_seconds",
        "syncer_ratelimit_remaining",
        "syncer_ratelimit_reserve",
    ):
        assert needed in exprs, needed


def write_as_rules(queries: list[str], path: Path) -> Path:
    """Dashboard queries as recording rules, so promtool's parser checks their syntax."""
    doc = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"q:{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_dashboard_queries_parse_in_promtool(tmp_path: Path) -> None:
    grafana = {"$__rate_interval": "5m", "$__range": "1d", "$job": ".*"}
    queries = []
    for _, expr, _ in dashboard_queries():
        for var, value in grafana.items():
            expr = expr.replace(var, value)
        queries.append(expr)
    proc = promtool("check", "rules", write_as_rules(queries, tmp_path / "dash.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(queries)} rules found" in proc.stdout
    broken = write_as_rules(["sum by (source (syncer_runs_total)"], tmp_path / "bad.yaml")
    assert promtool("check", "rules", broken).returncode != 0


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout
    assert {r["alert"] for r in rules() if "alert" in r} == ALERTS


def test_promtool_unit_tests_pass() -> None:
    proc = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_unit_tests_show_every_alert_quiet_firing_and_resolved() -> None:
    """Each alert: not firing, then firing, then resolved again, in that order."""
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    seen: dict[str, list[bool]] = {}
    for test in doc["tests"]:
        for check in sorted(test["alert_rule_test"], key=lambda c: duration_s(c["eval_time"])):
            seen.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
    assert set(seen) == ALERTS
    for alert, firing in seen.items():
        assert firing[:1] == [False] and True in firing and firing[-1] is False, alert
        for expected in (c for t in doc["tests"] for c in t["alert_rule_test"]):
            for a in expected["exp_alerts"]:
                assert {"summary", "description", "runbook"} <= a["exp_annotations"].keys()


def duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(text[:-1]) * units[text[-1]]


def test_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    # The unit tests must be able to fail: a stale threshold of 5 periods instead of 3
    # and a deferral window of 1h instead of 12h are both caught.
    text = RULES.read_text(encoding="utf-8")
    broken = text.replace(
        "3 * syncer_schedule_period_seconds", "5 * syncer_schedule_period_seconds"
    )
    broken = broken.replace("for: 12h", "for: 1h")
    assert broken.count("5 * syncer_schedule") == 1 and "for: 1h\n" in broken
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    (tmp_path / RULE_TESTS.name).write_text(
        RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8"
    )
    proc = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "alertname: SyncerMirrorStale" in out
    assert "alertname: SyncerDeferredTagsPersisting" in out


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-prometheusrule"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))


def test_metric_values_the_alerts_rely_on(exported: dict[str, set[str]], tmp_path: Path) -> None:
    cfg = tmp_path / "sync.yaml"
    cfg.write_text(
        "version: 1\ndefaults: {schedule: '17 */6 * * *'}\n"
        "registries:\n  docker.io: {ratelimit: {min_remaining: 20}}\n"
        "sync:\n  - {source: docker.io/library/alpine, destination: reg.example/alpine}\n",
        encoding="utf-8",
    )
    entry = EntryReport("docker.io/library/alpine", "reg.example/alpine")
    entry.counters.tags_copied, entry.counters.tags_deferred = 2, 3
    metrics = Metrics()
    metrics.observe(RunReport(started="now", entries=[entry]), load_config(cfg, env={}))
    text = metrics.text().decode()
    dst, src = 'destination="reg.example/alpine"', 'source="docker.io/library/alpine"'
    labels = f"{dst},{src}"  # the exposition sorts labels by name
    assert f"syncer_schedule_period_seconds{{{labels}}} 21600.0" in text
    assert 'syncer_ratelimit_reserve{registry="docker.io"} 20.0' in text
    assert f'syncer_last_run_tags{{{dst},outcome="deferred",{src}}} 3.0' in text
    assert f'syncer_last_run_tags{{{dst},outcome="failed",{src}}} 0.0' in text
    assert 'syncer_last_run_status{status="partial"} 1.0' in text
    assert 'syncer_last_run_status{status="ok"} 0.0' in text
    assert "syncer_last_success_timestamp_seconds{" not in text  # deferred tags: no success
