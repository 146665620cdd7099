"""Docker Hub's pull budget against a real registry behind a Hub-like front (the fault proxy
reports `ratelimit-remaining` on manifest HEADs and GETs and answers 429 TOOMANYREQUESTS with
`Retry-After: 2` once the budget is gone)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.service.scheduler import Scheduler
from syncer.sync.runner import RunOptions
from tests.support.fault_proxy import FaultProxy, FaultProxyFactory, behind
from tests.support.fleet import Fleet, app_image, assert_no_broken_tags, make_fleet
from tests.support.http import http_client
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
    with http_client() as c:
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


def _single_images(repos: int, tags: int) -> Fleet:
    """Single-platform images only: each copy costs exactly one counted GET."""
    return Fleet(
        {f"hub/app{r}": {f"1.{t}": app_image(r, t) for t in range(tags)} for r in range(repos)}
    )


def _hub(fault_proxy_factory: FaultProxyFactory, src: RunningRegistry, budget: int) -> FaultProxy:
    return fault_proxy_factory(src, ratelimit=budget, manifest_latency=(0.3, 0.5))


# Budget 20 and reserve 20: no room at all. Before the fix nothing was known until the
# first GET answered, and every pinned copy (no HEAD first) sent its GET: 10 went out.
@pytest.mark.parametrize(("budget", "room"), [(20, 0), (25, 5)])
def test_pinned_digests_learn_the_figure_before_any_get(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    budget: int,
    room: int,
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = _single_images(10, 1)
    fleet.push(src.seed_url)
    proxy = _hub(fault_proxy_factory, src, budget)
    hub = behind(src, proxy)
    entries = [
        {"source": f"{hub.host}/{repo}@{item.digest}", "destination": f"{dst.host}/m/{repo}:{tag}"}
        for repo, tag, item in fleet.items()
    ]
    regs = {hub.host: {"ratelimit": {"min_remaining": 20}}}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, hub, dst, registries=regs)
    report_path = tmp_path / "r.json"
    code = main(["sync", "-c", str(cfg), "-q", "--report", str(report_path)])

    report = json.loads(report_path.read_text())
    totals = report["totals"]
    assert proxy.counts["GET manifest"] == room
    assert proxy.ratelimit == budget - room == 20
    assert proxy.counts["429"] == 0
    assert (totals["tags_copied"], totals["tags_deferred"], totals["tags_failed"]) == (
        room,
        10 - room,
        0,
    )
    assert code == 1
    assert _complete_tags(fleet, dst) == room
    assert report["ratelimit"][proxy.host]["remaining"] == 20
    assert "min_remaining is 20" in report["ratelimit"][proxy.host]["deferred"]


def two_groups(tmp: Path, fleet: Fleet, hub: RunningRegistry, dst: RunningRegistry) -> Path:
    """Each repository its own schedule group (`interval: 1h`, `interval: 2h`), reserve 20."""
    entries = [
        {"source": f"{hub.host}/{repo}", "destination": f"{dst.host}/m/{repo}", "interval": every}
        for repo, every in zip(fleet.repos, ("1h", "2h"), strict=True)
    ]
    regs = {hub.host: {"ratelimit": {"min_remaining": 20}}}
    return write_sync_yaml(tmp / "sync.yaml", entries, hub, dst, registries=regs)


def test_one_shot_sync_keeps_the_reserve_across_schedule_groups(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """`syncer sync` runs both groups' entries at once and stops at 20 of 30."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = _single_images(2, 8)  # 16 tags, 16 GETs wanted, room for 10
    fleet.push(src.seed_url)
    proxy = _hub(fault_proxy_factory, src, 30)
    cfg = two_groups(tmp_path, fleet, behind(src, proxy), dst)
    report_path = tmp_path / "r.json"
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(report_path)]) == 1
    totals = json.loads(report_path.read_text())["totals"]
    assert proxy.counts["GET manifest"] == 10
    assert proxy.ratelimit == 20
    assert (totals["tags_copied"], totals["tags_deferred"]) == (10, 6)
    assert _complete_tags(fleet, dst) == 10


def _status_sum(sched: Scheduler, column: str) -> int:
    """`column` summed over the status page's rows: each entry's last run."""
    return sum(int(row[column]) for row in json.loads(sched.status.to_json())["entries"])


async def _scheduled_runs(sched: Scheduler, runs: int) -> None:
    for _ in range(600):
        if sched.runs_finished >= runs:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sched.runs_finished} scheduled runs finished, not {runs}")


async def test_schedule_groups_running_at_once_share_one_budget(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """Two groups start together (`--run-now`) and share the one budget: 10 GETs, 20 left.
    Before the fix each group had its own and each spent 8 of its 10: 16 GETs, 14 left.
    Then the window resets (the front reports 30 again): the next runs see it and copy."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = _single_images(2, 8)
    fleet.push(src.seed_url)
    proxy = _hub(fault_proxy_factory, src, 30)
    cfg = two_groups(tmp_path, fleet, behind(src, proxy), dst)
    sched = Scheduler(cfg, RunOptions(), run_now=True, grace_s=5)
    task = asyncio.create_task(sched.run())
    try:
        await _scheduled_runs(sched, 2)
        assert proxy.counts["GET manifest"] == 10
        assert proxy.ratelimit == 20
        assert proxy.counts["429"] == 0
        assert _complete_tags(fleet, dst) == 10
        assert _status_sum(sched, "tags_deferred") == 6

        proxy.ratelimit = 30  # the window has passed
        proxy.reset_counts()
        for job in sched._aps.get_jobs():
            job.modify(next_run_time=datetime.now(UTC))
        await _scheduled_runs(sched, 4)
        assert proxy.counts["GET manifest"] == 6  # the 6 deferred tags, within the new room
        assert proxy.ratelimit == 24
        assert _complete_tags(fleet, dst) == fleet.tag_count
        assert _status_sum(sched, "tags_deferred") == 0
    finally:
        sched.stop()
        assert await task == 0
