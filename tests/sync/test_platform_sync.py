"""`platforms: [...]` against real registries: filtered indexes, digests, no-op detection."""

from __future__ import annotations

import json
from pathlib import Path

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image, tag_item
from tests.support.images import Index, fetch_manifest, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml


async def test_only_selected_platforms_are_copied(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    multi = tag_item(0, 2)  # amd64 + arm64 index
    assert isinstance(multi, Index)
    amd64, arm64 = multi.children
    push(src.seed_url, "app", multi, "multi")
    push(src.seed_url, "app", app_image(1, 0, arch="arm64"), "arm-only")
    push(src.seed_url, "app", app_image(1, 1), "amd-only")
    entry = {
        "source": f"{src.host}/app",
        "destination": f"{dst.host}/m/app",
        "platforms": ["linux/amd64"],
    }
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    report = await Runner(load_config(cfg)).run()
    outcomes = {t.tag: t for t in report.entries[0].tags}
    assert outcomes["multi"].action == "copied"
    assert outcomes["amd-only"].action == "copied"
    assert outcomes["arm-only"].action == "filtered"
    assert "linux/arm64" in outcomes["arm-only"].reason
    pushed = outcomes["multi"].destination_digest
    assert pushed and pushed != multi.digest
    assert outcomes["multi"].source_digest == multi.digest
    data, _ = fetch_manifest(dst.url, "m/app", "multi")
    index = json.loads(data)
    assert [m["digest"] for m in index["manifests"]] == [amd64.digest]
    assert index["annotations"]["io.syncer.source.digest"] == multi.digest
    assert fetch_manifest_digest(dst.url, "m/app", "multi") == pushed
    assert fetch_manifest_digest(dst.url, "m/app", arm64.digest) is None
    assert fetch_manifest_digest(dst.url, "m/app", "arm-only") is None

    # Next run: the filtered copy is recognised; no source manifest GET for it.
    s0 = src.mark()
    report = await Runner(load_config(cfg)).run()
    outcomes = {t.tag: t for t in report.entries[0].tags}
    assert outcomes["multi"].action == "up_to_date"
    assert outcomes["amd-only"].action == "up_to_date"
    gets = [r.path for r in src.requests_since(s0) if r.method == "GET" and "/manifests/" in r.path]
    assert not any(p.endswith(multi.digest) or p.endswith("/multi") for p in gets)

    # A rebuilt source index is copied again.
    rebuilt = tag_item(0, 2, gen=1)
    push(src.seed_url, "app", rebuilt, "multi")
    report = await Runner(load_config(cfg)).run()
    outcomes = {t.tag: t for t in report.entries[0].tags}
    assert outcomes["multi"].action == "copied"
    assert outcomes["multi"].source_digest == rebuilt.digest
