"""Answers that are odd but not wrong: a generic Content-Type, an answer lost in transit."""

from __future__ import annotations

import json
from pathlib import Path

from syncer.cli import main
from syncer.registry.oci import DOCKER_MANIFEST_LIST, OCI_MANIFEST
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import app_image
from tests.support.http import http_client
from tests.support.images import (
    fetch_manifest,
    fetch_manifest_digest,
    make_image,
    make_index,
    make_layer,
    push,
    push_blob,
    push_manifest,
    sha256_digest,
)
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml


def test_generic_source_content_type_is_not_passed_on(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """A source answering `application/json` for manifests: the destination gets each
    manifest's own type (or, without a mediaType field, the type its shape shows)."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    index = make_index([app_image(0, 0), app_image(0, 0, arch="arm64")], fmt="docker")
    push(src.seed_url, "app", index, "multi")
    # An OCI manifest without the (optional) mediaType field.
    image = make_image([make_layer({"bare": b"no media type"})], fmt="oci")
    bare = json.loads(image.manifest)
    del bare["mediaType"]
    bare_bytes = json.dumps(bare).encode()
    with http_client() as c:
        for blob in image.blobs():
            push_blob(c, src.seed_url, "app", blob)
        push_manifest(c, src.seed_url, "app", bare_bytes, OCI_MANIFEST, "bare")
    proxy = fault_proxy_factory(src, manifest_content_type="application/json")
    via = behind(src, proxy)
    entry = {"source": f"{via.host}/app", "destination": f"{dst.host}/m/app"}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [entry], via, dst)

    assert main(["sync", "-c", str(cfg), "-q"]) == 0

    assert fetch_manifest_digest(dst.url, "m/app", "multi") == index.digest
    assert fetch_manifest_digest(dst.url, "m/app", "bare") == sha256_digest(bare_bytes)
    assert fetch_manifest(dst.url, "m/app", "multi")[1] == DOCKER_MANIFEST_LIST
    assert fetch_manifest(dst.url, "m/app", "bare") == (bare_bytes, OCI_MANIFEST)
    _, child_type = fetch_manifest(dst.url, "m/app", app_image(0, 0).digest)
    assert child_type == app_image(0, 0).media_type
    assert proxy.counts["GET manifest"] == 4  # each manifest fetched once: 2 tops, 2 children


def test_lost_answers_to_a_final_put_or_delete_are_not_failures(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    """The registry did the work, the answer never came: the retry finds it done."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "v1")
    push(dst.seed_url, "m/app", app_image(1, 0), "stale")
    proxy = fault_proxy_factory(dst)
    via = behind(dst, proxy)
    entry = {"source": f"{src.host}/app", "destination": f"{via.host}/m/app", "prune": True}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [entry], src, via)
    report_path = tmp_path / "report.json"

    proxy.lose_response_to = {"PUT manifest", "DELETE manifest"}
    assert main(["sync", "-c", str(cfg), "--report", str(report_path), "-q"]) == 0

    (e,) = json.loads(report_path.read_text())["entries"]
    assert (e["tags_copied"], e["tags_pruned"], e["errors"]) == (1, 1, [])
    assert proxy.counts["response-lost"] == 2
    assert proxy.counts["PUT manifest"] == 2  # sent again after the lost answer
    assert proxy.counts["DELETE manifest"] == 2  # the second one found nothing to delete
    assert fetch_manifest_digest(dst.url, "m/app", "v1") == app_image(0, 0).digest
    assert fetch_manifest_digest(dst.url, "m/app", "stale") is None
