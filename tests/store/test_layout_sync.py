"""sync.yaml entries with `oci:` layouts at either end, against real registries and real
layouts on disk: digests preserved, request counts, re-exports, and each bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import Image, Index, fetch_manifest_digest, make_index, push
from tests.support.layout_lock import holder_text, lock_held
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import export_to_layout, write_sync_yaml

REF_NAME = "org.opencontainers.image.ref.name"


def _seed(reg: RunningRegistry) -> dict[tuple[str, str], Image | Index]:
    """Docker v2 and OCI images and a multi-arch OCI index, in two repositories."""
    images: dict[tuple[str, str], Image | Index] = {
        ("library/alpine", "3.19"): app_image(0, 0),
        ("library/alpine", "3.20"): app_image(0, 1, fmt="oci"),
        ("team/app", "1.0"): make_index(
            [app_image(1, 0, fmt="oci"), app_image(1, 0, fmt="oci", arch="arm64")], fmt="oci"
        ),
    }
    for (repo, tag), item in images.items():
        push(reg.seed_url, repo, item, tag)
    return images


def _refs(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]}


def _blob_files(layout: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in (layout / "blobs").rglob("*") if p.is_file()}


def _entries(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return list(entries)


async def test_export_to_a_layout_keeps_digests_and_a_rerun_writes_nothing(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    images = _seed(src)
    layout = tmp_path / "bundle"
    entries = _entries(
        {"source": f"{src.host}/library/alpine", "destination": f"oci:{layout}"},
        {"source": f"{src.host}/team/app", "destination": f"oci:{layout}:mirror/{{repo}}"},
    )
    cfg = write_sync_yaml(tmp_path / "s.yaml", entries, src)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 3
    assert _refs(layout) == {
        "library/alpine:3.19": images["library/alpine", "3.19"].digest,
        "library/alpine:3.20": images["library/alpine", "3.20"].digest,
        "mirror/app:1.0": images["team/app", "1.0"].digest,
    }
    # Byte for byte: each manifest's file is the source's bytes, Docker v2 included.
    for item in images.values():
        path = layout / "blobs" / "sha256" / item.digest.removeprefix("sha256:")
        assert path.read_bytes() == item.manifest
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert holder_text(layout) == "", "released"

    before = _blob_files(layout)
    index_before = (layout / "index.json").read_bytes()
    mark = src.mark()
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok"
    assert report.totals.tags_up_to_date == 3 and report.totals.tags_copied == 0
    assert _blob_files(layout) == before, "a re-export writes no blob"
    assert (layout / "index.json").read_bytes() == index_before
    # At the source: one tag listing and one HEAD per tag, nothing else.
    got = sorted((r.method, r.path.split("?")[0]) for r in src.requests_since(mark))
    got = [g for g in got if g[1] != "/v2/"]
    assert got == sorted(
        [
            ("GET", "/v2/library/alpine/tags/list"),
            ("HEAD", "/v2/library/alpine/manifests/3.19"),
            ("HEAD", "/v2/library/alpine/manifests/3.20"),
            ("GET", "/v2/team/app/tags/list"),
            ("HEAD", "/v2/team/app/manifests/1.0"),
        ]
    )


async def test_import_a_whole_layout_into_a_registry(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    images = _seed(src)
    layout = tmp_path / "bundle"
    await export_to_layout(src, layout, tmp_path)
    entry = {
        "source": f"oci:{layout}",
        "destination": f"{dst.host}/far",
        "repositories": {"deny": ["team/.*"]},
    }
    cfg = write_sync_yaml(tmp_path / "i.yaml", [entry], dst)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.entries
    assert [e.destination for e in report.entries] == [f"{dst.host}/far/library/alpine"]
    for tag in ("3.19", "3.20"):
        want = images["library/alpine", tag].digest
        assert fetch_manifest_digest(dst.url, "far/library/alpine", tag) == want
    assert fetch_manifest_digest(dst.url, "far/team/app", "1.0") is None

    # One tag, named in the reference, into a renamed repository.
    one = {"source": f"oci:{layout}:team/app:1.0", "destination": f"{dst.host}/x/app"}
    cfg = write_sync_yaml(tmp_path / "o.yaml", [one], dst)
    assert (await Runner(load_config(cfg)).run()).status == "ok"
    assert fetch_manifest_digest(dst.url, "x/app", "1.0") == images["team/app", "1.0"].digest


async def test_a_corrupt_blob_fails_its_tag_and_is_never_pushed(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "1")
    layout = tmp_path / "bundle"
    await export_to_layout(src, layout, tmp_path, "library/alpine")
    layer = image.layers[-1]
    path = layout / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")
    path.write_bytes(b"\0" + path.read_bytes()[1:])

    entry = {"source": f"oci:{layout}:library/alpine", "destination": f"{dst.host}/m"}
    report = await Runner(load_config(write_sync_yaml(tmp_path / "i.yaml", [entry], dst))).run()
    assert report.status == "failed"
    [error] = report.entries[0].errors
    assert layer.digest in error["error"]
    assert fetch_manifest_digest(dst.url, "m", "1") is None
    assert not any(r.method == "PUT" and layer.digest in r.path for r in dst.requests()), (
        "the corrupt blob's upload was never completed"
    )


def _write(tmp_path: Path, entry: dict[str, Any]) -> Path:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(json.dumps({"version": 1, "sync": [entry]}))
    return cfg


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("oci::alpine", "reg.example/x", "oci: needs a directory"),
        ("oci:/l:../etc", "reg.example/x", "invalid reference 'oci:/l:../etc'"),
        ("oci:/l:Alpine", "reg.example/x", "invalid reference 'oci:/l:Alpine'"),
        ("oci:/l:a@sha256:12", "reg.example/x", "invalid reference"),
        ("reg.example/a", "oci:/l:a@sha256:" + "0" * 64, "cannot be a digest"),
        ("oci:/l", "reg.example/x:1", "names a tag"),
    ],
)
def test_bad_layout_references_are_config_errors(
    tmp_path: Path, source: str, destination: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {"source": source, "destination": destination}))


def test_a_directory_that_is_not_a_layout_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"meow")
    cfg = _write(tmp_path, {"source": "127.0.0.1:9/a", "destination": f"oci:{target}"})
    assert main(["sync", "-c", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{target}: exists but is not an OCI image layout" in err
    assert sorted(p.name for p in target.iterdir()) == ["cat.jpg"]


def test_dry_run_creates_nothing_and_prune_and_platforms_apply(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    images = _seed(src)
    layout = tmp_path / "bundle"
    entry = {
        "source": f"{src.host}/team/app",
        "destination": f"oci:{layout}",
        "platforms": ["linux/arm64"],
        "prune": True,
    }
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src)
    assert main(["check", "-c", str(cfg), "-q"]) == 1
    assert not layout.exists(), "a dry run does not create the layout"
    report = asyncio.run(Runner(load_config(cfg)).run())
    assert report.status == "ok"
    digest = _refs(layout)["team/app:1.0"]
    assert digest != images["team/app", "1.0"].digest  # the filtered index
    filtered = json.loads(
        (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text()
    )
    assert [m["platform"]["architecture"] for m in filtered["manifests"]] == ["arm64"]
    assert main(["check", "-c", str(cfg), "-q"]) == 0  # the filtered copy counts as up to date

    # A tag the source no longer has is pruned from index.json; the blobs stay.
    other = {"source": f"{src.host}/library/alpine", "destination": f"oci:{layout}:team/app"}
    cfg2 = write_sync_yaml(tmp_path / "p.yaml", [{**other, "prune": True}], src)
    report = asyncio.run(Runner(load_config(cfg2)).run())
    assert report.status == "ok"
    assert sorted(_refs(layout)) == ["team/app:3.19", "team/app:3.20"]
    assert (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()


def test_a_second_writer_is_exit_2(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = registry_factory("anon")
    layout = tmp_path / "bundle"
    layout.mkdir()
    with lock_held(layout) as holder:
        entry = {"source": f"{src.host}/library/alpine", "destination": f"oci:{layout}"}
        cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src)
        assert main(["sync", "-c", str(cfg), "-q"]) == 2
        assert (
            f"{layout}: another syncer is writing this layout (pid {holder.pid} on "
            in capsys.readouterr().err
        )
        missing = {"source": f"oci:{tmp_path}/nothing", "destination": f"{src.host}/x"}
        cfg = write_sync_yaml(tmp_path / "m.yaml", [missing], src)
        assert main(["sync", "-c", str(cfg), "-q"]) == 2
        assert "no OCI image layout here" in capsys.readouterr().err
