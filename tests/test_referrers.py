"""Referrers by the tag schema (distribution 2.8 has no referrers API): sigs, SBOMs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from syncer.config import load_config
from syncer.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import (
    OCI_MANIFEST,
    Blob,
    fetch_manifest_digest,
    push,
    push_blob,
    push_manifest,
)
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

COSIGN = "application/vnd.dev.cosign.simplesigning.v1+json"
SPDX = "application/spdx+json"


def artifact(reg: RunningRegistry, repo: str, tag: str, config_type: str, body: bytes) -> str:
    config = Blob.of(b"{}", config_type)
    layer = Blob.of(body, "application/octet-stream")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }
    ).encode()
    with httpx.Client(trust_env=False) as c:
        push_blob(c, reg.seed_url, repo, config)
        push_blob(c, reg.seed_url, repo, layer)
        push_manifest(c, reg.seed_url, repo, manifest, OCI_MANIFEST, tag)
    return Blob.of(manifest, OCI_MANIFEST).digest


async def test_referrer_tags_follow_their_subject_with_type_filter(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image, other = app_image(0, 0), app_image(1, 1)
    push(src.seed_url, "app", image, "v1")
    push(src.seed_url, "app", other, "v2")
    hexd, other_hex = image.digest[7:], other.digest[7:]
    sig = artifact(src, "app", f"sha256-{hexd}.sig", COSIGN, b"signature")
    artifact(src, "app", f"sha256-{hexd}.sbom", SPDX, b"sbom")
    artifact(src, "app", f"sha256-{other_hex}.sig", COSIGN, b"other signature")
    entry = {
        "source": f"{src.host}/app",
        "destination": f"{dst.host}/m/app",
        "tags": {"allow": ["v1"]},
        "referrers": True,
        "referrers_filter": {"artifact_types": [COSIGN]},
    }
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    report = await Runner(load_config(cfg)).run()
    tags = report.entries[0].tags
    assert len({t.tag for t in tags}) == len(tags) == 5  # each tag has exactly one outcome
    actions = {t.tag: (t.action, t.reason) for t in tags}
    assert actions["v1"][0] == "copied"
    assert actions[f"sha256-{hexd}.sig"][0] == "copied"
    assert actions[f"sha256-{hexd}.sbom"] == (
        "filtered",
        f"artifact type {SPDX} not in referrers_filter.artifact_types",
    )
    assert actions[f"sha256-{other_hex}.sig"][0] == "filtered"  # its subject v2 is filtered
    assert fetch_manifest_digest(dst.url, "m/app", f"sha256-{hexd}.sig") == sig
    assert fetch_manifest_digest(dst.url, "m/app", f"sha256-{hexd}.sbom") is None
    assert report.status == "ok"
