"""Interop with Debian's skopeo: it reads the layouts syncer writes, and syncer reads the
layouts skopeo writes. Digests are asserted at a real registry on both trips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, make_index, push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import export_to_layout, write_sync_yaml

SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(
    SKOPEO is None, reason="skopeo not installed: run scripts/setup (installs Debian's skopeo)"
)


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    return subprocess.run(
        [SKOPEO, "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


async def test_skopeo_reads_a_layout_syncer_wrote(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    index = make_index(
        [app_image(1, 0, fmt="oci"), app_image(1, 0, fmt="oci", arch="arm64")], fmt="oci"
    )
    push(src.seed_url, "library/alpine", image, "3.20")
    push(src.seed_url, "team/app", index, "1.0")
    layout = tmp_path / "bundle"
    await export_to_layout(src, layout, tmp_path)

    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:library/alpine:3.20",
        f"docker://{dst.host}/by-skopeo/alpine:3.20",
    )
    assert fetch_manifest_digest(dst.url, "by-skopeo/alpine", "3.20") == image.digest
    skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{layout}:team/app:1.0",
        f"docker://{dst.host}/by-skopeo/app:1.0",
    )
    assert fetch_manifest_digest(dst.url, "by-skopeo/app", "1.0") == index.digest


async def test_syncer_reads_a_layout_skopeo_wrote(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "3.20")
    layout = tmp_path / "by-skopeo"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{src.host}/library/alpine:3.20",
        f"oci:{layout}:library/alpine:3.20",
    )
    index = json.loads((layout / "index.json").read_text())
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]] == [
        "library/alpine:3.20"
    ]
    entry = {"source": f"oci:{layout}", "destination": f"{dst.host}/far"}
    report = await Runner(load_config(write_sync_yaml(tmp_path / "i.yaml", [entry], dst))).run()
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 1
    # An OCI image keeps its digest through skopeo's layout and syncer's import.
    assert fetch_manifest_digest(dst.url, "far/library/alpine", "3.20") == image.digest


async def test_what_skopeo_cannot_read_docker_v2_inside_a_layout(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """syncer keeps a Docker v2 manifest byte for byte (its digest, and the signatures
    over it, survive); skopeo 1.9 skips index.json entries that are not OCI-typed, so it
    does not find such a tag at all. Documented in README."""
    src = registry_factory("anon")
    image = app_image(0, 0)  # Docker v2
    push(src.seed_url, "library/alpine", image, "3.19")
    layout = tmp_path / "bundle"
    await export_to_layout(src, layout, tmp_path, "library/alpine")
    out = skopeo(
        "copy", f"oci:{layout}:library/alpine:3.19", f"dir:{tmp_path / 'out'}", check=False
    )
    assert out.returncode != 0
    assert 'no descriptor found for reference \\"library/alpine:3.19\\"' in out.stderr, out.stderr
    # The same layout's OCI-typed neighbours stay readable: the entry is there, typed Docker.
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert entry["digest"] == image.digest
