"""Docker Hub's pull budget against a real registry behind a Hub-like front (the fault proxy
reports `ratelimit-remaining` on manifest HEADs and GETs and answers 429 TOOMANYREQUESTS with
`Retry-After: 2` once the budget is gone)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from syncer.cli import main
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import Fleet, assert_no_broken_tags, make_fleet
from tests.support.images import Index
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


def _config(tmp: Path, fleet: Fleet, src: RunningRegistry, dst: RunningRegistry) -> Path:
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    regs = {src.host: {"ratelimit": {"min_remaining": 2}}}
    return write_sync_yaml(tmp / "sync.yaml", entries, src, dst, registries=regs)


def _complete_tags(fleet: Fleet, dst: RunningRegistry) -> int:
    """Tags present at the destination, each checked complete: blobs and child manifests."""
    present = assert_no_broken_tags(fleet, dst.url, "m/")
    with httpx.Client(trust_env=False) as c:
        for repo, tag, item in fleet.items():
            if not isinstance(item, Index):
                continue
            if c.head(f"{dst.url}/v2/m/{repo}/manifests/{tag}").status_code != 200:
                continue
            for child in item.children:
                url = f"{dst.url}/v2/m/{repo}/manifests/{child.digest}"
                assert c.head(url).status_code == 200, (repo, tag, child.digest)
    return present


def _gauge(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


# 64: every copy starts at once. 16 (the default) and 3: copies start as others finish,
# between answers that arrive out of order; before reservations 16 spent the whole budget
# and provoked 30 answers of 429.
@pytest.mark.parametrize("concurrency", [64, 16, 3])
def test_reserve_is_kept_and_the_rest_deferred(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    concurrency: int,
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(4, 8, prefix="hub")  # 32 tags, 8 of them multi-arch indexes
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, ratelimit=6)
    cfg = _config(tmp_path, fleet, behind(src, proxy), dst)
    report_path, metrics_path = tmp_path / "r.json", tmp_path / "m.prom"
    args = ["sync", "-c", str(cfg), "--concurrency", str(concurrency), "-q"]
    code = main([*args, "--report", str(report_path), "--metrics-file", str(metrics_path)])

    report = json.loads(report_path.read_text())
    totals, budget = report["totals"], report["ratelimit"][proxy.host]
    print(
        f"429s provoked: {proxy.counts['429']}, pulls left: {proxy.ratelimit}, "
        f"deferred: {totals['tags_deferred']}, copied: {totals['tags_copied']}, "
        f"manifest GETs: {proxy.counts['GET manifest']}"
    )
    assert proxy.counts["429"] == 0
    assert proxy.ratelimit is not None and proxy.ratelimit >= 2
    assert code == 1
    assert totals["tags_failed"] == 0 and totals["tags_copied"] >= 1
    assert totals["tags_copied"] + totals["tags_deferred"] == fleet.tag_count
    deferred = [t for e in report["entries"] for t in e["tags"] if t["action"] == "deferred"]
    assert len(deferred) == totals["tags_deferred"] and all(t["reason"] for t in deferred)
    assert _complete_tags(fleet, dst) == totals["tags_copied"]
    assert (budget["limit"], budget["remaining"]) == (6, proxy.ratelimit)
    assert budget["reserved_unused"] >= 0
    # The metric ends at the figure the registry last reported.
    assert _gauge(metrics_path.read_text(), "syncer_ratelimit_remaining") == proxy.ratelimit

    proxy.ratelimit = 100  # a fresh budget
    assert main(args) == 0
    assert proxy.counts["429"] == 0
    assert _complete_tags(fleet, dst) == fleet.tag_count


def test_an_exhausted_429_is_not_retried(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """A registry that reports a pull budget answers 429 TOOMANYREQUESTS (someone else on
    this IP spent it, say) with a short Retry-After: final, not a transient error."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(1, 2, prefix="hub")  # tag 1.0 and 1.1, single images
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, ratelimit=50)
    cfg = _config(tmp_path, fleet, behind(src, proxy), dst)
    # The check phase sees 50 left; the first GET meets an empty budget.
    proxy.too_many = (10, "2")
    started = time.monotonic()
    report_path = tmp_path / "r.json"
    code = main(["sync", "-c", str(cfg), "--concurrency", "1", "-q", "--report", str(report_path)])
    assert code == 1
    assert proxy.counts["429"] == 1  # one answer, no retry, and no GET for the other tag
    assert proxy.counts["GET manifest"] == 1
    assert time.monotonic() - started < 2  # no Retry-After slept through
    report = json.loads(report_path.read_text())
    assert report["totals"]["tags_deferred"] == 2
    assert "TOOMANYREQUESTS" in report["ratelimit"][proxy.host]["deferred"]
    assert _complete_tags(fleet, dst) == 0
