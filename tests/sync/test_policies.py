"""Tag policies against real registries: semver, latest, always, immutable."""

from __future__ import annotations

from pathlib import Path

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml


async def test_semver_latest_always_and_immutable(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    tags = ["1.0", "1.2", "1.3", "v1.4.0", "1.5", "2.0-rc1", "latest", "nightly"]
    for i, tag in enumerate(tags):
        push(src.seed_url, "team/app", app_image(0, i), tag)
    entry = {
        "source": f"{src.host}/team/app",
        "destination": f"{dst.host}/m/app",
        "tags": {
            "semver": ">=1.2 <2",
            "latest": 2,
            "always": ["latest"],
            "immutable": [r"v?1\..*"],
        },
    }
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)

    report = await Runner(load_config(cfg)).run()
    e = report.entries[0]
    copied = sorted(t.tag for t in e.tags if t.action == "copied")
    assert copied == ["1.5", "latest", "v1.4.0"]
    reasons = {t.tag: t.reason for t in e.tags if t.action == "filtered"}
    assert "tags.latest: 2" in reasons["1.3"]
    assert "outside tags.semver" in reasons["1.0"]
    assert reasons["nightly"] and reasons["2.0-rc1"]
    for i, tag in enumerate(tags):
        want = app_image(0, i).digest if tag in copied else None
        assert fetch_manifest_digest(dst.url, "m/app", tag) == want

    # Re-run: the immutable 1.x tags cost nothing; only `latest` is HEADed on each side.
    s0, d0 = src.mark(), dst.mark()
    report = await Runner(load_config(cfg)).run()
    assert report.totals.tags_up_to_date == 3
    heads_src = [r for r in src.requests_since(s0) if r.method == "HEAD"]
    heads_dst = [r for r in dst.requests_since(d0) if r.method == "HEAD"]
    assert [r.path.rsplit("/", 1)[-1] for r in heads_src] == ["latest"]
    assert [r.path.rsplit("/", 1)[-1] for r in heads_dst] == ["latest"]
    immutable = [t for t in report.entries[0].tags if "immutable" in t.reason]
    assert sorted(t.tag for t in immutable) == ["1.5", "v1.4.0"]


async def test_digest_pin_with_destination_tag(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    old, new = app_image(0, 0), app_image(0, 1)
    push(src.seed_url, "app", old, "stable")
    push(src.seed_url, "app", new, "stable")  # the tag moved on; the pin stays on `old`
    entry = {"source": f"{src.host}/app@{old.digest}", "destination": f"{dst.host}/m/app:pinned"}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    report = await Runner(load_config(cfg)).run()
    assert report.totals.tags_copied == 1
    assert fetch_manifest_digest(dst.url, "m/app", "pinned") == old.digest
    s0 = src.mark()
    report = await Runner(load_config(cfg)).run()
    assert report.totals.tags_up_to_date == 1
    # The pin needs no source request at all; the destination costs one HEAD.
    assert src.requests_since(s0) == []
