"""Interop with Debian's skopeo: it reads the layouts syncer writes, and syncer reads the
layouts skopeo writes. Digests are asserted at a real registry on both trips."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.store.ocilayout import REF_NAME
from syncer.sync.runner import Runner
from tests.commands.oneoff_support import run_json, settings_for
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
    does not find such a tag at all. Documented in docs/air-gap.md."""
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


def test_a_bare_ref_name_skopeo_wrote_is_skipped_not_fatal(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`skopeo copy docker://.../tool:2 oci:L:2` writes ref.name `2` (the spec's own examples
    are bare names too). syncer cannot address it as REPOSITORY:TAG: it skips that entry with
    one warning naming it, and everything else in the layout works, writes included, which
    keep the entry as skopeo wrote it."""
    src = registry_factory("anon")
    app, tool, more = (app_image(i, 0, fmt="oci") for i in range(3))
    push(src.seed_url, "app", app, "1")
    push(src.seed_url, "tool", tool, "2")
    push(src.seed_url, "more", more, "3")
    layout = tmp_path / "L"
    asyncio.run(export_to_layout(src, layout, tmp_path, "app"))
    skopeo("copy", "--src-tls-verify=false", f"docker://{src.host}/tool:2", f"oci:{layout}:2")
    [bare] = [e for e in _entries(layout) if e["annotations"][REF_NAME] == "2"]
    assert bare["digest"] == tool.digest
    cfg = str(settings_for(tmp_path, src))
    capsys.readouterr()

    rows = run_json(capsys, "tags", f"oci:{layout}:app", "-c", cfg)
    assert [(r["tag"], r["digest"]) for r in rows] == [("1", app.digest)]
    assert run_json(capsys, "catalog", f"oci:{layout}", "-c", cfg) == [{"repository": "app"}]

    # The warning: one line for the whole command, naming the entry; once per process.
    shutil.copytree(layout, tmp_path / "fresh")
    assert main(["tags", f"oci:{tmp_path / 'fresh'}:app", "-c", cfg]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "index.json entries skipped: their ref.name is not REPOSITORY:TAG" in warnings[0]
    assert f"layout={tmp_path / 'fresh'}" in warnings[0] and "ref_names=['2']" in warnings[0]
    assert main(["catalog", f"oci:{tmp_path / 'fresh'}", "-c", cfg]) == 0
    assert "warning" not in capsys.readouterr().err

    # Copy from the layout, and into it: the bare entry survives the write untouched.
    dst = f"{src.host}/far/app:1"
    assert main(["copy", "-q", "-c", cfg, f"oci:{layout}:app:1", dst]) == 0
    assert fetch_manifest_digest(src.url, "far/app", "1") == app.digest
    assert main(["copy", "-q", "-c", cfg, f"{src.host}/more:3", f"oci:{layout}:app:3"]) == 0
    capsys.readouterr()
    entries = _entries(layout)
    assert [e["annotations"][REF_NAME] for e in entries] == ["app:1", "2", "app:3"]
    assert entries[1] == bare
    rows = run_json(capsys, "tags", f"oci:{layout}:app", "-c", cfg)
    assert [(r["tag"], r["digest"]) for r in rows] == [("1", app.digest), ("3", more.digest)]

    # A bundle carries the whole layout, the bare entry and its blobs too: skopeo reads it.
    bundle = tmp_path / "b.tar"
    assert main(["bundle", "-q", str(layout), "-o", str(bundle)]) == 0, capsys.readouterr().err
    assert "3 manifests" in capsys.readouterr().out
    skopeo("copy", f"oci-archive:{bundle}:2", f"oci:{tmp_path / 'out'}:tool:2")
    [entry] = _entries(tmp_path / "out")
    assert entry["digest"] == tool.digest


def _entries(layout: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((layout / "index.json").read_text())["manifests"]
    return entries
