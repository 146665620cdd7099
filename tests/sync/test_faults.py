"""Fault injection: a proxy in front of a real registry drops, fails, limits and corrupts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import Fleet, assert_no_broken_tags, wait_for_requests
from tests.support.http import http_client
from tests.support.images import (
    fetch_manifest_digest,
    make_image,
    make_index,
    make_layer,
    push,
    random_layer,
)
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
RACY = "MANIFEST_BLOB_UNKNOWN"


def big_fleet(repos: int = 2, tags: int = 3, size: int = 3 * MiB) -> Fleet:
    """Incompressible layers larger than a read chunk, so broken downloads really resume."""
    base = random_layer(size, seed=1)
    fleet = Fleet()
    for r in range(repos):
        fleet.repos[f"big/app{r}"] = {}
        for t in range(tags):
            app = random_layer(size // 2, seed=100 * r + t)
            child = make_image([base, app], fmt="oci")
            item = (
                make_index([child, make_image([base, app], fmt="oci", arch="arm64")], fmt="oci")
                if t == 2
                else child
            )
            fleet.repos[f"big/app{r}"][f"v{t}"] = item
    return fleet


def config_for(
    tmp: Path, fleet: Fleet, src: RunningRegistry, dst: RunningRegistry, **extra: object
) -> Path:
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    regs = {src.host: extra} if extra else None
    return write_sync_yaml(tmp / "sync.yaml", entries, src, dst, registries=regs)


async def test_sync_survives_drops_and_5xx_bursts(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = big_fleet()
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, drop_blob_every=2, error_burst=(503, 2))
    cfg = config_for(tmp_path, fleet, behind(src, proxy), dst)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.to_json()
    assert proxy.counts["dropped"] >= 2
    assert proxy.counts["burst"] == 2
    assert any(status == 206 for _, _, status in proxy.requests)  # resumed with Range
    assert report.totals.bytes_copied == fleet.blob_bytes()
    assert assert_no_broken_tags(fleet, dst.url, "m/") == fleet.tag_count


async def test_flipped_byte_fails_only_that_tag(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    base = make_layer({"etc/os": b"base\n"})
    good = make_image([base, make_layer({"a": b"good"})], fmt="docker")
    bad_layer = random_layer(200_000, seed=9)
    bad = make_image([base, bad_layer], fmt="docker")
    push(src.seed_url, "app", good, "good")
    push(src.seed_url, "app", bad, "bad")
    proxy = fault_proxy_factory(src, flip_byte_in={bad_layer[0].digest})
    cfg = config_for(tmp_path, Fleet({"app": {}}), behind(src, proxy), dst)
    report = await Runner(load_config(cfg)).run()
    outcome = {t.tag: t for t in report.entries[0].tags}
    assert outcome["good"].action == "copied"
    assert outcome["bad"].action == "failed" and "digest mismatch" in outcome["bad"].reason
    assert proxy.counts["flipped"] >= 1
    with http_client() as c:
        assert c.head(f"{dst.url}/v2/m/app/blobs/{bad_layer[0].digest}").status_code == 404
        assert c.head(f"{dst.url}/v2/m/app/manifests/bad").status_code == 404


def test_rate_budget_defers_then_a_later_run_finishes(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = big_fleet(repos=2, tags=3, size=64 * 1024)
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, ratelimit=100)
    proxy.ratelimit = 6  # budget of manifest GETs left at the "Hub"
    cfg = config_for(tmp_path, fleet, behind(src, proxy), dst, ratelimit={"min_remaining": 2})
    report_path = tmp_path / "r.json"
    code = main(["sync", "-c", str(cfg), "--concurrency", "1", "--report", str(report_path), "-q"])
    assert code == 1
    report = __import__("json").loads(report_path.read_text())
    t = report["totals"]
    assert t["tags_deferred"] > 0 and t["tags_copied"] > 0 and t["tags_failed"] == 0
    assert report["ratelimit"][proxy.host]["remaining"] >= 2
    assert proxy.counts["ratelimited"] == 0  # we stopped before the registry had to say no
    assert assert_no_broken_tags(fleet, dst.url, "m/") == t["tags_copied"]

    proxy.ratelimit = 100
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert assert_no_broken_tags(fleet, dst.url, "m/") == fleet.tag_count
    # Up to date now: a re-run spends no counted GET at all, only HEADs.
    proxy.reset_counts()
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert proxy.counts["GET manifest"] == 0
    assert proxy.counts["HEAD manifest"] == fleet.tag_count


async def test_429_short_wait_is_honoured_long_one_defers(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = big_fleet(repos=1, tags=2, size=64 * 1024)
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, too_many=(1, "1"))
    cfg = config_for(tmp_path, fleet, behind(src, proxy), dst)
    started = time.monotonic()
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok" and time.monotonic() - started >= 1.0
    assert proxy.counts["too_many"] == 1

    dst2 = registry_factory("anon")
    proxy.too_many = (50, "3600")
    cfg = config_for(tmp_path, fleet, behind(src, proxy), dst2)
    started = time.monotonic()
    report = await Runner(load_config(cfg)).run()
    assert time.monotonic() - started < 30
    assert report.totals.tags_deferred == 2 and report.status == "failed"
    assert "Retry-After 3600s" in report.ratelimit[proxy.host]["deferred"]


async def test_cdn_redirect_gets_no_authorization(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("basic"), registry_factory("anon")
    fleet = big_fleet(repos=1, tags=2, size=256 * 1024)
    fleet.push(src.seed_url)
    proxy = fault_proxy_factory(src, cdn=True)
    cfg = config_for(tmp_path, fleet, behind(src, proxy), dst)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.to_json()
    cdn = proxy.redirect_blobs_to
    assert cdn is not None and cdn.served >= 3
    assert cdn.auth_rejections == 0
    assert proxy.counts["redirected"] >= 3
    assert assert_no_broken_tags(fleet, dst.url, "m/") == fleet.tag_count


def test_kill_9_mid_copy_then_rerun_completes(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = big_fleet(repos=2, tags=2, size=24 * MiB)
    fleet.push(src.seed_url)
    cfg = config_for(tmp_path, fleet, src, dst)
    text = cfg.read_text().replace(
        "tls: disabled",
        "tls: disabled\n    chunk_upload_threshold: 1048576\n    chunk_size: 1048576",
    )
    cfg.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncer.cli", "sync", "-c", str(cfg), "-q"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_requests(dst, "PATCH", "/blobs/uploads/", count=8, timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert assert_no_broken_tags(fleet, dst.url, "m/") < fleet.tag_count
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert assert_no_broken_tags(fleet, dst.url, "m/") == fleet.tag_count


async def test_manifest_put_refused_for_a_blob_just_pushed_is_tried_again(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """distribution rewrites link files in place, so a concurrent writer (another tag of the
    run, another shard) can make a blob read as missing for an instant: the PUT is repeated."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = make_image([make_layer({"a": b"a"})], fmt="oci")
    push(src.seed_url, "app", image, "1.0")
    proxy = fault_proxy_factory(
        dst, error_burst=(400, 1), error_paths=r"^PUT .*/manifests/", error_code=RACY
    )
    cfg = config_for(tmp_path, Fleet({"app": {}}), src, behind(dst, proxy))
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.to_json()
    assert proxy.counts["burst"] == 1
    puts = [(m, p, s) for m, p, s in proxy.requests if m == "PUT" and "/manifests/" in p]
    assert [s for _, _, s in puts] == [400, 201], puts
    assert report.totals.tags_copied == 1 and report.totals.manifests_copied == 1
    assert fetch_manifest_digest(dst.url, "m/app", "1.0") == image.digest


async def test_manifest_put_refused_for_another_reason_is_not_repeated(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", make_image([make_layer({"a": b"a"})], fmt="oci"), "1.0")
    proxy = fault_proxy_factory(
        dst, error_burst=(400, 5), error_paths=r"^PUT .*/manifests/", error_code="MANIFEST_INVALID"
    )
    cfg = config_for(tmp_path, Fleet({"app": {}}), src, behind(dst, proxy))
    report = await Runner(load_config(cfg)).run()
    (tag,) = report.entries[0].tags
    assert tag.action == "failed" and "MANIFEST_INVALID" in tag.reason, tag
    assert proxy.counts["burst"] == 1
