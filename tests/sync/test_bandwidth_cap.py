"""A bandwidth cap against real registries: concurrent blob streams share one bucket, so the
run's achieved rate stays at the cap (plus one burst), and the waiting shows in the report
and in `syncer_bandwidth_limited_seconds_total`; without a cap nothing waits.

Time is asserted one way only: a loaded machine can only make a run slower, which never
breaks `bytes <= cap x 1.1 x duration + burst`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from syncer.config.syncfile import load_config
from syncer.registry.bandwidth import MIN_BURST
from syncer.service.metrics import Metrics
from syncer.sync.report import RunReport
from syncer.sync.runner import Runner, RunOptions
from tests.support.images import fetch_manifest_digest, make_image, push, random_layer
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

MiB = 1024 * 1024
CAP = 2 * MiB
IMAGES = {  # four repositories of one ~1.5 MiB random layer each: ~6 MiB of blobs
    f"cap/app{i}": make_image([random_layer(3 * MiB // 2, seed=290 + i)], fmt="oci")
    for i in range(4)
}
BLOB_BYTES = sum(b.size for image in IMAGES.values() for b in image.blobs())


def _limited_seconds(report: RunReport) -> dict[tuple[str, str], float]:
    metrics = Metrics()
    metrics.observe(report)
    return {
        (s.labels["scope"], s.labels["direction"]): s.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for s in family.samples
        if s.name == "syncer_bandwidth_limited_seconds_total"
    }


def _setup(registry_factory: RegistryFactory) -> tuple[RunningRegistry, RunningRegistry]:
    src, dst = registry_factory("anon"), registry_factory("anon")
    for repo, image in IMAGES.items():
        push(src.seed_url, repo, image, "latest")
    return src, dst


def _sync(
    tmp: Path,
    src: RunningRegistry,
    dst: RunningRegistry,
    *,
    defaults: dict[str, object] | None = None,
    registries: dict[str, dict[str, object]] | None = None,
) -> RunReport:
    entries = [
        {"source": f"{src.host}/{repo}", "destination": f"{dst.host}/mirror/{repo}"}
        for repo in IMAGES
    ]
    cfg = write_sync_yaml(
        tmp / "sync.yaml", entries, src, dst, defaults=defaults, registries=registries
    )
    report = asyncio.run(Runner(load_config(cfg), RunOptions(concurrency=4)).run())
    assert report.status == "ok", report.entries
    assert report.totals.bytes_copied == BLOB_BYTES
    for repo, image in IMAGES.items():
        assert fetch_manifest_digest(dst.url, f"mirror/{repo}", "latest") == image.digest
    return report


def test_a_process_cap_holds_every_stream_together(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = _setup(registry_factory)
    report = _sync(
        tmp_path,
        src,
        dst,
        defaults={"bandwidth": "2MiB/s"},
        registries={dst.host: {"bandwidth": "64MiB/s"}},  # not binding: counts, never waits
    )
    process, host = report.bandwidth["process"], report.bandwidth[dst.host]
    assert process["cap"] == "2 MiB/s" and host["cap"] == "64 MiB/s"
    # Every blob byte was counted once per direction, by each cap covering its stream.
    assert process["download"]["bytes"] == BLOB_BYTES
    assert process["upload"]["bytes"] == BLOB_BYTES
    assert host["upload"]["bytes"] == BLOB_BYTES
    assert host["download"]["bytes"] == 0  # nothing was read from the destination
    # Four streams at once, one bucket: the run's rate is the cap's, not four times it.
    achieved = BLOB_BYTES / report.duration_s
    assert achieved <= CAP * 1.1 + MIN_BURST / report.duration_s
    assert process["download"]["bytes_per_s"] == round(achieved)  # the report's effective rate
    waited = _limited_seconds(report)
    assert waited[("process", "download")] > 1.0  # ~6 MiB at 2 MiB/s, less one burst
    assert (dst.host, "upload") not in waited


def test_a_host_cap_alone_paces_that_host(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """A cap on the source host (downloads) also paces the uploads fed from it, since
    streams are pulled: nothing is read from the source ahead of the cap."""
    src, dst = _setup(registry_factory)
    report = _sync(tmp_path, src, dst, registries={src.host: {"bandwidth": "16Mbit/s"}})
    assert set(report.bandwidth) == {src.host}  # no process cap: no process scope
    assert report.bandwidth[src.host]["download"]["bytes"] == BLOB_BYTES
    achieved = BLOB_BYTES / report.duration_s
    assert achieved <= 2_000_000 * 1.1 + MIN_BURST / report.duration_s  # 16 Mbit/s = 2 MB/s
    assert _limited_seconds(report)[(src.host, "download")] > 1.0


def test_without_a_cap_nothing_is_counted_or_waited_for(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = _setup(registry_factory)
    report = _sync(tmp_path, src, dst)
    assert report.bandwidth == {}
    assert report.to_json()["bandwidth"] == {}
    assert _limited_seconds(report) == {}
