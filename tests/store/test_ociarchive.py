"""`oci-archive:FILE.tar[:REPOSITORY[:TAG|@DIGEST]]` read in place: sync.yaml sources of each
form, `syncer tags`/`catalog`/`inspect`, corrupt and foreign tars, a delta into a layout, and
skopeo reading a bundle syncer wrote."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError, NotInBundle
from syncer.registry.client import RegistryClient
from syncer.registry.oci import Descriptor
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference
from syncer.store import Stores
from syncer.store.ociarchive import OciArchive
from syncer.sync.runner import Runner
from tests.store.test_bundle import bundle
from tests.store.test_layout_sync import _seed as seed
from tests.support.fleet import app_image
from tests.support.images import Image, Index, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import export_to_layout, write_sync_yaml

SKOPEO = shutil.which("skopeo")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main([*args, "--output", "json"]) == 0
    data: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return data


@pytest.fixture
def bundled(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[tuple[str, str], Image | Index]]:
    """A full bundle of `seed`'s images, the layout it came from removed."""
    src = registry_factory("anon")
    images = seed(src)
    layout, tar = tmp_path / "layout", tmp_path / "b.tar"
    asyncio.run(export_to_layout(src, layout, tmp_path))
    bundle(capsys, layout, tar)
    shutil.rmtree(layout)
    return tar, images


def test_tags_catalog_and_inspect_read_an_archive(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tar, images = bundled
    empty = str(tmp_path / "none.yaml")
    Path(empty).write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")
    assert _json(capsys, "catalog", f"oci-archive:{tar}", "-c", empty) == [
        {"repository": "library/alpine"},
        {"repository": "team/app"},
    ]
    rows = _json(capsys, "tags", f"oci-archive:{tar}:library/alpine", "-c", empty)
    assert [(r["tag"], r["digest"]) for r in rows] == [
        ("3.19", images["library/alpine", "3.19"].digest),
        ("3.20", images["library/alpine", "3.20"].digest),
    ]
    rows = _json(capsys, "tags", f"oci-archive:{tar}:team/app", "-c", empty)
    assert rows[0]["platforms"] == ["linux/amd64", "linux/arm64"]
    image = images["library/alpine", "3.19"]
    rows = _json(capsys, "inspect", f"oci-archive:{tar}:library/alpine:3.19", "-c", empty)
    assert rows[0]["digest"] == image.digest
    assert rows[0]["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [r["digest"] for r in rows[1:]] == [b.digest for b in image.blobs()]
    index = images["team/app", "1.0"]
    rows = _json(capsys, "inspect", f"oci-archive:{tar}:team/app@{index.digest}", "-c", empty)
    assert rows[0]["digest"] == index.digest and len(rows) == 3


async def test_each_source_form_in_sync_yaml(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]],
    registry_factory: RegistryFactory,
    tmp_path: Path,
) -> None:
    tar, images = bundled
    dst = registry_factory("anon")
    entries: list[dict[str, Any]] = [
        # every repository, with the catalog filters
        {
            "source": f"oci-archive:{tar}",
            "destination": f"{dst.host}/all",
            "repositories": {"deny": ["team/.*"]},
        },
        # one repository, renamed
        {"source": f"oci-archive:{tar}:team/app", "destination": f"{dst.host}/one/app"},
        # one tag
        {"source": f"oci-archive:{tar}:library/alpine:3.20", "destination": f"{dst.host}/tag/a"},
    ]
    report = await Runner(load_config(write_sync_yaml(tmp_path / "i.yaml", entries, dst))).run()
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 4
    alpine = images["library/alpine", "3.19"].digest, images["library/alpine", "3.20"].digest
    assert fetch_manifest_digest(dst.url, "all/library/alpine", "3.19") == alpine[0]
    assert fetch_manifest_digest(dst.url, "all/library/alpine", "3.20") == alpine[1]
    assert fetch_manifest_digest(dst.url, "all/team/app", "1.0") is None
    assert fetch_manifest_digest(dst.url, "one/app", "1.0") == images["team/app", "1.0"].digest
    assert fetch_manifest_digest(dst.url, "tag/a", "3.20") == alpine[1]
    assert fetch_manifest_digest(dst.url, "tag/a", "3.19") is None


def test_an_archive_is_never_a_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "s.yaml"
    entry = {"source": "127.0.0.1:9/a", "destination": f"oci-archive:{tmp_path}/b.tar"}
    cfg.write_text(json.dumps({"version": 1, "sync": [entry]}))
    assert main(["sync", "-c", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert "an oci-archive is read-only" in err and "syncer bundle" in err
    assert not (tmp_path / "b.tar").exists()
    # The router refuses it too, whoever asks.
    stores = Stores(RegistryClient(lambda _r: RegistryConfig()))
    with pytest.raises(ConfigError, match="read-only, not a destination"):
        stores.open_layouts([], [Reference(f"oci-archive:{tmp_path}/b.tar", "a")], create=True)
    asyncio.run(stores.aclose())


def test_one_off_commands_read_an_archive_and_never_write_it(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]],
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tar, images = bundled
    dst = registry_factory("anon")
    cfg = write_sync_yaml(tmp_path / "c.yaml", [], dst)
    ref = f"oci-archive:{tar}:library/alpine:3.20"
    assert main(["copy", ref, f"{dst.host}/one/alpine", "-q", "-c", str(cfg)]) == 0
    digest = images["library/alpine", "3.20"].digest
    assert fetch_manifest_digest(dst.url, "one/alpine", "3.20") == digest
    before = tar.read_bytes()
    for args in (["tag", ref, "stable"], ["delete", "--force", ref], ["delete", "--dry-run", ref]):
        capsys.readouterr()
        assert main([*args, "-c", str(cfg)]) == 2, args
        assert "an oci-archive is read-only" in capsys.readouterr().err
    assert tar.read_bytes() == before


def test_what_is_not_an_archive_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    gz = tmp_path / "b.tar.gz"
    gz.write_bytes(gzip.compress(b"\0" * 1024))
    no_layout = tmp_path / "plain.tar"
    empty = str(tmp_path / "none.yaml")
    Path(empty).write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")
    with tarfile.open(no_layout, "w") as t:
        t.add(text, arcname="notes.txt")
    for path, message in [
        (tmp_path / "gone.tar", "no such file"),
        (tmp_path, "is a directory, not a tar"),
        (text, "not an uncompressed tar"),
        (gz, "not an uncompressed tar"),
        (no_layout, "a tar, but no oci-layout and index.json in it"),
    ]:
        assert main(["catalog", f"oci-archive:{path}", "-c", empty]) == 2
        err = capsys.readouterr().err
        assert f"{path}: {message}" in err, err
    assert main(["tags", "oci-archive::library/alpine", "-c", empty]) == 2
    assert "oci-archive: needs a tar file" in capsys.readouterr().err
    assert main(["copy", "--all-tags", "oci-archive:F.tar", "b.io/b", "-c", empty]) == 2
    err = capsys.readouterr().err
    assert "name a repository after the tar file, e.g. oci-archive:F.tar:REPO" in err, err


async def test_a_corrupt_blob_in_the_tar_fails_its_tag_and_is_never_pushed(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "1")
    layout, tar = tmp_path / "layout", tmp_path / "b.tar"
    await export_to_layout(src, layout, tmp_path)
    bundle(capsys, layout, tar)
    layer = image.layers[-1]
    with tarfile.open(tar) as t:
        offset = t.getmember(f"blobs/sha256/{layer.digest.removeprefix('sha256:')}").offset_data
    with tar.open("r+b") as f:
        f.seek(offset + 10)
        byte = f.read(1)
        f.seek(offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))

    entry = {"source": f"oci-archive:{tar}", "destination": f"{dst.host}/m"}
    report = await Runner(load_config(write_sync_yaml(tmp_path / "i.yaml", [entry], dst))).run()
    assert report.status == "failed"
    [error] = report.entries[0].errors
    assert f"blob {layer.digest} in {tar}: digest mismatch" in error["error"]
    assert fetch_manifest_digest(dst.url, "m/library/alpine", "1") is None


async def test_a_delta_into_a_layout_needs_the_earlier_bundle_there(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = registry_factory("anon")
    seed(src)
    layout, full, delta = tmp_path / "layout", tmp_path / "full.tar", tmp_path / "delta.tar"
    await export_to_layout(src, layout, tmp_path)
    bundle(capsys, layout, full)
    push(src.seed_url, "library/alpine", app_image(0, 1, gen=1, fmt="oci"), "3.20")
    await export_to_layout(src, layout, tmp_path)
    bundle(capsys, layout, delta, full)

    archive = OciArchive(delta)
    assert archive.bundle.since == ["full.tar"] and archive.bundle.requires
    missing = sorted(archive.bundle.required())[0]
    repo = Reference(f"oci-archive:{delta}", "library/alpine")
    with pytest.raises(NotInBundle, match="import the earlier bundle first"):
        async for _ in archive.read_blob(repo, Descriptor(digest=missing, size=1)):
            pass

    async def import_into(far: Path, source: Path) -> str:
        entry = {"source": f"oci-archive:{source}", "destination": f"oci:{far}"}
        cfg = write_sync_yaml(tmp_path / "i.yaml", [entry], src)
        return (await Runner(load_config(cfg)).run()).status

    assert await import_into(tmp_path / "empty-far", delta) == "failed"
    index = json.loads((tmp_path / "empty-far" / "index.json").read_text())
    assert index["manifests"] == [], "no tag points at incomplete content"
    assert await import_into(tmp_path / "far", full) == "ok"
    assert await import_into(tmp_path / "far", delta) == "ok"


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed: run scripts/setup")
def test_skopeo_reads_a_bundle_syncer_wrote(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]],
    registry_factory: RegistryFactory,
    tmp_path: Path,
) -> None:
    """skopeo 1.9 reads `oci-archive:FILE:REPO:TAG` for OCI-typed tags. It needs the ref when
    the tar holds more than one image, and, as with layouts, it skips Docker v2 entries."""
    tar, images = bundled
    dst: RunningRegistry = registry_factory("anon")

    def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
        assert SKOPEO is not None
        cmd = [SKOPEO, "--insecure-policy", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    done = skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci-archive:{tar}:team/app:1.0",
        f"docker://{dst.host}/by-skopeo/app:1.0",
    )
    assert done.returncode == 0, done.stderr
    assert (
        fetch_manifest_digest(dst.url, "by-skopeo/app", "1.0") == images["team/app", "1.0"].digest
    )
    raw = skopeo("inspect", "--raw", f"oci-archive:{tar}:library/alpine:3.20")
    assert raw.returncode == 0 and raw.stdout.encode() == images["library/alpine", "3.20"].manifest
    whole = skopeo("inspect", "--raw", f"oci-archive:{tar}")
    assert "more than one image in oci, choose an image" in whole.stderr
    docker_v2 = skopeo("inspect", "--raw", f"oci-archive:{tar}:library/alpine:3.19")
    assert 'no descriptor found for reference \\"library/alpine:3.19\\"' in docker_v2.stderr


def test_any_tar_of_a_layout_reads_dot_slash_names_included(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tar, images = bundled
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tar) as t:
        t.extractall(unpacked, filter="data")
    by_gnu_tar = tmp_path / "gnu.tar"
    subprocess.run(["tar", "-C", str(unpacked), "-cf", str(by_gnu_tar), "."], check=True)
    with tarfile.open(by_gnu_tar) as t:
        assert "./index.json" in t.getnames()
    empty = str(tmp_path / "none.yaml")
    Path(empty).write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")
    rows = _json(capsys, "tags", f"oci-archive:{by_gnu_tar}:library/alpine", "-c", empty)
    assert [r["digest"] for r in rows] == [
        images["library/alpine", "3.19"].digest,
        images["library/alpine", "3.20"].digest,
    ]


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed: run scripts/setup")
async def test_syncer_reads_an_oci_archive_skopeo_wrote(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    assert SKOPEO is not None
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "3.20")
    tar = tmp_path / "by-skopeo.tar"
    subprocess.run(
        [
            SKOPEO,
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            f"docker://{src.host}/library/alpine:3.20",
            f"oci-archive:{tar}:library/alpine:3.20",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    entry = {"source": f"oci-archive:{tar}", "destination": f"{dst.host}/far"}
    report = await Runner(load_config(write_sync_yaml(tmp_path / "i.yaml", [entry], dst))).run()
    assert report.status == "ok", report.entries
    assert fetch_manifest_digest(dst.url, "far/library/alpine", "3.20") == image.digest


async def test_a_version_1_note_with_one_requires_list_still_reads(
    bundled: tuple[Path, dict[tuple[str, str], Image | Index]], tmp_path: Path
) -> None:
    """Bundles written before `requires` went per repository: one list for all of them."""
    tar, images = bundled
    left_out = images["library/alpine", "3.20"].blobs()[-1].digest
    old = tmp_path / "v1.tar"
    note = {"syncerBundleVersion": 1, "since": ["earlier.tar"], "requires": [left_out]}
    with tarfile.open(tar) as src, tarfile.open(old, "w") as dst:
        for member in src.getmembers():
            if member.name.endswith(left_out.removeprefix("sha256:")):
                continue
            data = src.extractfile(member)
            if member.name == "syncer-bundle.json":
                raw = json.dumps(note).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    archive = OciArchive(old)
    assert archive.bundle.since == ["earlier.tar"] and archive.bundle.required() == {left_out}
    repo = Reference(f"oci-archive:{old}", "library/alpine")
    with pytest.raises(NotInBundle, match=r"a delta since earlier\.tar"):
        async for _ in archive.read_blob(repo, Descriptor(digest=left_out, size=1)):
            pass
