"""Hostile or broken answers become per-tag errors; the other tags still sync.

A real registry serves the good content; an httpx transport in front of it swaps in
bad answers for chosen manifests (fault injection, as real registries won't store them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import make_client, write_sync_yaml

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def bad_answers(good: bytes) -> dict[str, tuple[bytes, str, str | None]]:
    """tag -> (body, content type, Docker-Content-Digest to claim or None for the true one)."""
    manifest = json.loads(good)
    huge = dict(manifest)
    huge["layers"] = [dict(manifest["layers"][0], size=-5)]
    return {
        "not-json": (b"{this is not json", "application/vnd.oci.image.manifest.v1+json", None),
        "html": (b"<html><body>login</body></html>", "text/html", None),
        "schema1": (b'{"schemaVersion": 1, "fsLayers": []}', SCHEMA1, None),
        "wrong-digest": (good, manifest["mediaType"], "sha256:" + "0" * 64),
        "bad-size": (json.dumps(huge).encode(), manifest["mediaType"], None),
    }


class Swapping(httpx.AsyncBaseTransport):
    def __init__(self, answers: dict[str, tuple[bytes, str, str | None]]) -> None:
        self.answers = answers
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tag = request.url.path.rsplit("/", 1)[-1]
        if "/manifests/" in request.url.path and tag in self.answers:
            body, ctype, claimed = self.answers[tag]
            digest = claimed or "sha256:" + hashlib.sha256(body).hexdigest()
            headers = {"Content-Type": ctype, "Docker-Content-Digest": digest}
            return httpx.Response(
                200, content=b"" if request.method == "HEAD" else body, headers=headers
            )
        if "/manifests/sha256:" in request.url.path:
            # GET by the digest a HEAD claimed: serve the same bad body.
            for body, ctype, claimed in self.answers.values():
                if request.url.path.endswith(
                    claimed or "sha256:" + hashlib.sha256(body).hexdigest()
                ):
                    return httpx.Response(200, content=body, headers={"Content-Type": ctype})
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_bad_manifests_fail_their_tag_only(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    good = app_image(0, 0)
    answers = bad_answers(good.manifest)
    for tag in ["good", *answers]:
        push(src.seed_url, "app", good, tag)
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app"}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    client = make_client(src, dst, http_transport=Swapping(answers))
    async with client:
        report = await Runner(load_config(cfg), client=client).run()
    outcome = {t.tag: t for t in report.entries[0].tags}
    assert outcome["good"].action == "copied"
    assert fetch_manifest_digest(dst.url, "m/app", "good") == good.digest
    expected = {
        "not-json": "not valid JSON",
        "html": "answered HTML",
        "schema1": "schema 1",
        "wrong-digest": "digest mismatch",
        "bad-size": "malformed",
    }
    for tag, words in expected.items():
        assert outcome[tag].action == "failed", tag
        assert words in outcome[tag].reason, (tag, outcome[tag].reason)
        assert "Traceback" not in outcome[tag].reason
        assert fetch_manifest_digest(dst.url, "m/app", tag) is None
    assert report.totals.tags_failed == len(expected)
    assert report.status == "partial"
