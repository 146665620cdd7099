"""Pruning against real registries: what is reachable from kept tags is never deleted;
a refused deletion is a failure; `check` counts pending deletions as work."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner, RunOptions
from syncer.sync.shard import Shard, entry_key, owns_tag
from tests.support.fleet import app_image, tag_item
from tests.support.images import Index, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


def multi_arch() -> Index:
    item = tag_item(0, 2)  # amd64 + arm64
    assert isinstance(item, Index)
    return item


def seeded_mirror(
    registry_factory: RegistryFactory, tmp_path: Path, **dst_opts: Any
) -> tuple[RunningRegistry, RunningRegistry, dict[str, Any], Index]:
    """`1.0` (multi-arch) and `1.0-amd64` (one of its children), mirrored in full."""
    src, dst = registry_factory("anon"), registry_factory("anon", **dst_opts)
    index = multi_arch()
    push(src.seed_url, "app", index, "1.0")
    push(src.seed_url, "app", index.children[0], "1.0-amd64")
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app"}
    report = asyncio_run(
        Runner(load_config(write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)))
    )
    assert report.totals.tags_copied == 2
    return src, dst, entry, index


def asyncio_run(runner: Runner) -> Any:
    return asyncio.run(runner.run())


def outcomes(report: Any) -> dict[str, str]:
    return {t.tag: t.action for e in report.entries for t in e.tags}


def deletes(reg: RunningRegistry, mark: int) -> list[str]:
    return [r.path for r in reg.requests_since(mark) if r.method == "DELETE"]


def test_prune_keeps_the_children_of_a_kept_index(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, entry, index = seeded_mirror(registry_factory, tmp_path)
    amd64 = index.children[0]
    push(dst.seed_url, "m/app", app_image(7, 7), "stale")  # a genuinely unreachable tag
    pruning = {**entry, "tags": {"allow": [r"1\.0"]}, "prune": True}
    cfg = write_sync_yaml(tmp_path / "p.yaml", [pruning], src, dst)

    dry = asyncio_run(Runner(load_config(cfg), RunOptions(dry_run=True)))
    assert outcomes(dry)["1.0-amd64"] == "prune_skipped"
    assert outcomes(dry)["stale"] == "would_prune"

    mark = dst.mark()
    report = asyncio_run(Runner(load_config(cfg)))
    acts = outcomes(report)
    assert acts["1.0-amd64"] == "prune_skipped", report.to_json()
    assert acts["stale"] == "pruned"
    assert report.status == "ok"
    # The index's child is still there: 1.0 stays pullable on every platform.
    assert fetch_manifest_digest(dst.url, "m/app", amd64.digest) == amd64.digest
    assert fetch_manifest_digest(dst.url, "m/app", "1.0") == index.digest
    assert deletes(dst, mark) == [f"/v2/m/app/manifests/{app_image(7, 7).digest}"]
    # Reading the kept index's children cost one destination GET, of the index only.
    gets = [
        r.path for r in dst.requests_since(mark) if r.method == "GET" and "/manifests/" in r.path
    ]
    assert gets == [f"/v2/m/app/manifests/{index.digest}"]


def test_prune_keeps_referrer_tags_of_kept_digests(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, entry, index = seeded_mirror(registry_factory, tmp_path)
    arm64 = index.children[1]
    sig_of_index = "sha256-" + index.digest.removeprefix("sha256:") + ".sig"
    sig_of_child = "sha256-" + arm64.digest.removeprefix("sha256:") + ".att"
    orphan = app_image(5, 5)
    sig_of_orphan = "sha256-" + orphan.digest.removeprefix("sha256:") + ".sig"
    push(dst.seed_url, "m/app", app_image(8, 1), sig_of_index)
    push(dst.seed_url, "m/app", app_image(8, 2), sig_of_child)
    push(dst.seed_url, "m/app", app_image(8, 3), sig_of_orphan)
    # Protection by pattern switched off: only reachability keeps referrer tags.
    pruning = {**entry, "tags": {"allow": [r"1\.0"]}, "prune": True, "prune_protect": []}
    cfg = write_sync_yaml(tmp_path / "p.yaml", [pruning], src, dst)
    mark = dst.mark()
    report = asyncio_run(Runner(load_config(cfg)))
    acts = outcomes(report)
    assert sig_of_index not in acts and sig_of_child not in acts, acts  # kept, like 1.0
    assert acts[sig_of_orphan] == "pruned"
    assert acts["1.0-amd64"] == "prune_skipped"
    assert fetch_manifest_digest(dst.url, "m/app", sig_of_index) == app_image(8, 1).digest
    assert fetch_manifest_digest(dst.url, "m/app", sig_of_child) == app_image(8, 2).digest
    assert fetch_manifest_digest(dst.url, "m/app", sig_of_orphan) is None
    assert deletes(dst, mark) == [f"/v2/m/app/manifests/{app_image(8, 3).digest}"]


def test_only_shard_zero_prunes_and_it_keeps_what_any_shard_keeps(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, entry, index = seeded_mirror(registry_factory, tmp_path)
    key = entry_key("app", "m/app")
    # Stale tags owned by each of two shards, so a per-shard prune would delete some in 1/2.
    stale = [f"old-{i}" for i in range(6)]
    for i, tag in enumerate(stale):
        push(dst.seed_url, "m/app", app_image(6, i), tag)
    assert any(owns_tag(Shard(1, 2), key, t) for t in [*stale, "1.0-amd64"])
    pruning = {**entry, "tags": {"allow": [r"1\.0"]}, "prune": True}
    cfg = write_sync_yaml(tmp_path / "p.yaml", [pruning], src, dst)

    mark = dst.mark()
    other = asyncio_run(Runner(load_config(cfg), RunOptions(shard=Shard(1, 2))))
    assert deletes(dst, mark) == []
    assert not any(a in ("pruned", "would_prune") for a in outcomes(other).values())

    first = asyncio_run(Runner(load_config(cfg), RunOptions(shard=Shard(0, 2))))
    acts = outcomes(first)
    assert sorted(t for t, a in acts.items() if a == "pruned") == stale
    assert acts["1.0-amd64"] == "prune_skipped"
    assert len(deletes(dst, mark)) == len(stale)
    assert fetch_manifest_digest(dst.url, "m/app", index.children[0].digest) is not None


def test_refused_prune_is_a_failure_exit_1(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    dst = registry_factory("anon", extra_config={"storage": {"delete": {"enabled": False}}})
    push(src.seed_url, "app", app_image(0, 0), "1")
    push(dst.seed_url, "m/app", app_image(5, 5), "old")
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app", "prune": True}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    out = tmp_path / "report.json"
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["status"] == "partial"
    assert doc["totals"]["tags_failed"] == 1 and doc["totals"]["tags_copied"] == 1
    assert doc["totals"]["tags_pruned"] == 0
    tags = {t["tag"]: t for t in doc["entries"][0]["tags"]}
    assert tags["old"]["action"] == "failed" and "prune failed" in tags["old"]["reason"]
    assert fetch_manifest_digest(dst.url, "m/app", "old") == app_image(5, 5).digest


def test_check_exits_1_while_a_deletion_is_pending(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "1")
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app", "prune": True}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    # An alias of a kept manifest is never deleted, so it is not pending work either.
    push(dst.seed_url, "m/app", app_image(0, 0), "alias-of-1")
    assert main(["check", "-c", str(cfg), "-q"]) == 0
    push(dst.seed_url, "m/app", app_image(5, 5), "gone")
    mark = dst.mark()
    assert main(["check", "-c", str(cfg), "-q"]) == 1
    assert deletes(dst, mark) == []
    assert "would_prune" in capsys.readouterr().out
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert main(["check", "-c", str(cfg), "-q"]) == 0


def test_a_protected_tag_keeps_the_manifest_a_stale_tag_shares(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Registries delete by digest: deleting stale `old` would take `keep-prod` with it."""
    src, dst, entry, _ = seeded_mirror(registry_factory, tmp_path)
    shared, alone = app_image(8, 8), app_image(9, 9)
    for tag in ("keep-prod", "old"):
        push(dst.seed_url, "m/app", shared, tag)
    push(dst.seed_url, "m/app", alone, "stale-a")
    push(dst.seed_url, "m/app", alone, "stale-b")
    pruning = {
        **entry,
        "tags": {"allow": [r"1\.0.*"]},
        "prune": True,
        "prune_protect": ["keep-.*"],
    }
    cfg = write_sync_yaml(tmp_path / "p.yaml", [pruning], src, dst)
    mark = dst.mark()
    report = asyncio_run(Runner(load_config(cfg)))
    acts = outcomes(report)
    assert acts["old"] == "prune_skipped"
    # One DELETE removed two tags: both are reported, and the count says 2.
    assert acts["stale-a"] == acts["stale-b"] == "pruned"
    assert report.totals.tags_pruned == 2
    assert deletes(dst, mark) == [f"/v2/m/app/manifests/{alone.digest}"]
    assert fetch_manifest_digest(dst.url, "m/app", "keep-prod") == shared.digest
