"""Referrers by the tag schema (distribution 2.8 has no referrers API): sigs, SBOMs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.http import http_client
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    fetch_manifest_digest,
    push,
    push_blob,
    push_manifest,
)
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import make_client, write_sync_yaml

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
    with http_client() as c:
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


class ReferrersAPI(httpx.AsyncBaseTransport):
    """Adds the OCI 1.1 referrers API (which distribution 2.8 lacks) in front of a real one."""

    def __init__(self, index: dict[str, list[dict[str, object]]]) -> None:
        self.index = index
        self.real = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/referrers/" in request.url.path:
            self.calls += 1
            digest = request.url.path.rsplit("/", 1)[-1]
            body = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": self.index.get(digest, []),
            }
            return httpx.Response(200, json=body, headers={"Content-Type": OCI_INDEX})
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_referrers_api_copies_untagged_artifacts_after_their_subject(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "app", image, "v1")
    sig = artifact(src, "app", "unused-tag", COSIGN, b"api signature")
    sbom = artifact(src, "app", "unused-tag-2", SPDX, b"api sbom")
    api = ReferrersAPI(
        {
            image.digest: [
                {"mediaType": OCI_MANIFEST, "digest": sig, "size": 1, "artifactType": COSIGN},
                {"mediaType": OCI_MANIFEST, "digest": sbom, "size": 1, "artifactType": SPDX},
            ]
        }
    )
    entry = {
        "source": f"{src.host}/app:v1",
        "destination": f"{dst.host}/m/app",
        "referrers": True,
        "referrers_filter": {"artifact_types": [COSIGN]},
    }
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    async with make_client(src, dst, http_transport=api) as client:
        report = await Runner(load_config(cfg), client=client).run()
    assert report.status == "ok", report.to_json()
    assert api.calls == 2  # the source's listing; the destination's API probe, once per run
    assert fetch_manifest_digest(dst.url, "m/app", "v1") == image.digest
    assert fetch_manifest_digest(dst.url, "m/app", sig) == sig
    assert fetch_manifest_digest(dst.url, "m/app", sbom) is None
    copied = [t for t in report.entries[0].tags if t.reason.startswith("referrer of")]
    assert [t.tag for t in copied] == [sig]
