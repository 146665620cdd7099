"""`syncer bundle` and the trip: registry -> layout -> tar -> `oci-archive:` -> registry, full
and delta bundles, against real registries and real tars on disk."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.store.atomic import file_mode
from syncer.sync.report import RunReport
from syncer.sync.runner import Runner
from tests.store.test_layout_sync import _seed as seed  # the same three images
from tests.support.fleet import app_image
from tests.support.images import (
    Image,
    Index,
    fetch_manifest_digest,
    make_image,
    push,
    random_layer,
)
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import export_to_layout, write_sync_yaml

CHUNK = 1024 * 1024
TAR_OVERHEAD_PER_MEMBER = 3 * 512  # a PAX header, the ustar header, up to a block of padding
TAR_END = 20 * 512  # end-of-archive blocks, padded to tarfile's record size


def all_blobs(items: list[Image | Index]) -> dict[str, int]:
    """Every config and layer (not manifests), by digest, with its size."""
    return {b.digest: b.size for item in items for b in item.blobs()}


def manifests_of(item: Image | Index) -> dict[str, bytes]:
    out = {item.digest: item.manifest}
    for child in getattr(item, "children", ()):
        out[child.digest] = child.manifest
    return out


def bundle(
    capsys: pytest.CaptureFixture[str], layout: Path, out: Path, *since: Path
) -> dict[str, Any]:
    args = ["bundle", str(layout), "-o", str(out), "--output", "json"]
    for s in since:
        args += ["--since", str(s)]
    capsys.readouterr()  # the export's log lines
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result: dict[str, Any] = json.loads(captured.out)
    return result


async def import_archive(
    source: str, dst: RunningRegistry, tmp_path: Path, name: str = "import"
) -> RunReport:
    entry = {"source": source, "destination": f"{dst.host}/far"}
    cfg = write_sync_yaml(tmp_path / f"{name}.yaml", [entry], dst)
    return await Runner(load_config(cfg)).run()


def members(tar_path: Path) -> dict[str, int]:
    with tarfile.open(tar_path) as tar:
        return {m.name: m.size for m in tar.getmembers()}


def blob_members(tar_path: Path) -> set[str]:
    return {"sha256:" + n.rsplit("/", 1)[1] for n in members(tar_path) if n.startswith("blobs/")}


async def test_a_full_bundle_carries_a_layout_into_another_registry(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    images = seed(src)
    layout, tar = tmp_path / "layout", tmp_path / "usb" / "full.tar"
    tar.parent.mkdir()
    await export_to_layout(src, layout, tmp_path)

    result = bundle(capsys, layout, tar)
    blobs = all_blobs(list(images.values()))
    manifests: dict[str, bytes] = {}
    for item in images.values():
        manifests.update(manifests_of(item))
    assert result["blobs"] == len(blobs) and result["blob_bytes"] == sum(blobs.values())
    assert result["manifests"] == len(manifests) and result["left_out"] == 0
    assert result["tar_bytes"] == tar.stat().st_size
    # The tar's top level is itself a layout: the layout's own files, plus our note.
    names = members(tar)
    assert set(names) == {
        "oci-layout",
        "syncer-bundle.json",
        "index.json",
        *(f"blobs/sha256/{d.removeprefix('sha256:')}" for d in [*blobs, *manifests]),
    }
    with tarfile.open(tar) as t:
        index = t.extractfile("index.json")
        note = t.extractfile("syncer-bundle.json")
        assert index is not None and note is not None
        assert index.read() == (layout / "index.json").read_bytes()
        assert json.loads(note.read()) == {"syncerBundleVersion": 2, "since": [], "requires": {}}
    assert sorted(p.name for p in tar.parent.iterdir()) == ["full.tar"], "no temp file left"
    again_tar = tmp_path / "again.tar"
    bundle(capsys, layout, again_tar)
    assert again_tar.read_bytes() == tar.read_bytes(), "the same layout packs to the same bytes"

    report = await import_archive(f"oci-archive:{tar}", dst, tmp_path)
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 3
    assert report.totals.bytes_copied == sum(blobs.values())
    for (repo, tag), item in images.items():
        assert fetch_manifest_digest(dst.url, f"far/{repo}", tag) == item.digest
    assert sorted(p.name for p in tar.parent.iterdir()) == ["full.tar"], "nothing extracted"

    # The archive is a source like any other: a second run is up to date, nothing copied.
    again = await import_archive(f"oci-archive:{tar}", dst, tmp_path)
    assert again.totals.tags_up_to_date == 3 and again.totals.bytes_copied == 0


async def test_a_delta_carries_only_new_blobs_and_imports_onto_the_earlier_import(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, far, empty = (registry_factory("anon") for _ in range(3))
    images = seed(src)
    layout = tmp_path / "layout"
    full, delta = tmp_path / "full.tar", tmp_path / "delta.tar"
    await export_to_layout(src, layout, tmp_path)
    bundle(capsys, layout, full)
    assert (await import_archive(f"oci-archive:{full}", far, tmp_path)).status == "ok"

    # Next month: one tag moves to an image with a new 1 MiB layer over the same base, and a
    # new repository appears whose blobs are all new.
    base = app_image(0, 1, fmt="oci")
    big, diff_id = random_layer(1024 * 1024, seed=7)
    moved = make_image([*((b, "") for b in base.layers[:2]), (big, diff_id)], fmt="oci")
    fresh = make_image([random_layer(64 * 1024, seed=8)], fmt="oci")
    push(src.seed_url, "library/alpine", moved, "3.20")
    push(src.seed_url, "team/new", fresh, "1")
    await export_to_layout(src, layout, tmp_path)

    result = bundle(capsys, layout, delta, full)
    new_blobs = {b.digest: b.size for b in (moved.config, big, *fresh.blobs())}
    new_bytes = sum(new_blobs.values())
    old_blobs = all_blobs([images["library/alpine", "3.19"], moved, images["team/app", "1.0"]])
    requires = {d for d in old_blobs if d not in new_blobs}
    alpine = {d for d in all_blobs([images["library/alpine", "3.19"], moved]) if d in requires}
    assert result["blobs"] == len(new_blobs) and result["blob_bytes"] == new_bytes
    assert result["left_out"] == len(requires)
    manifests: dict[str, bytes] = {moved.digest: moved.manifest, fresh.digest: fresh.manifest}
    for key in (("library/alpine", "3.19"), ("team/app", "1.0")):
        manifests.update(manifests_of(images[key]))
    # Only the new blobs, and every manifest the index reaches (nothing of the old 3.20).
    assert blob_members(delta) == set(new_blobs) | set(manifests)
    with tarfile.open(delta) as t:
        note = t.extractfile("syncer-bundle.json")
        assert note is not None
        assert json.loads(note.read()) == {
            "syncerBundleVersion": 2,
            "since": ["full.tar"],
            "requires": {  # per repository: a registry serves a blob only where it is
                "library/alpine": sorted(alpine),
                "team/app": sorted(all_blobs([images["team/app", "1.0"]])),
            },
        }
    names = members(delta)
    overhead = sum(len(m) for m in manifests.values()) + names["index.json"]
    overhead += names["syncer-bundle.json"] + names["oci-layout"]
    overhead += len(names) * TAR_OVERHEAD_PER_MEMBER + TAR_END
    size = delta.stat().st_size
    assert size <= 1.1 * new_bytes + overhead, (size, new_bytes, overhead)
    print(f"delta bundle: {size} bytes for {new_bytes} new blob bytes ({size / new_bytes:.3f}x)")

    # Onto the registry that has the earlier import: only the new blobs cross.
    report = await import_archive(f"oci-archive:{delta}", far, tmp_path, "delta")
    assert report.status == "ok", report.entries
    assert report.totals.bytes_copied == new_bytes
    assert report.totals.tags_copied == 2 and report.totals.tags_up_to_date == 2
    assert fetch_manifest_digest(far.url, "far/library/alpine", "3.20") == moved.digest
    assert fetch_manifest_digest(far.url, "far/team/new", "1") == fresh.digest

    # Onto an empty registry: the tags that need left-out blobs fail, naming a digest and the
    # fix, and none of them exists there; the tag whose blobs are all in the delta is copied.
    entry = {"source": f"oci-archive:{delta}", "destination": f"{empty.host}/far"}
    cfg = write_sync_yaml(tmp_path / "empty.yaml", [entry], empty)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "partial"
    assert report.totals.tags_copied == 1 and report.totals.tags_failed == 3
    errors = [e["error"] for r in report.entries for e in r.errors]
    assert len(errors) == 3, errors  # alpine 3.19, alpine 3.20, team/app 1.0
    for error in errors:
        assert "import the earlier bundle first" in error and "(a delta since full.tar)" in error
        assert any(f"blob {d} is not in {delta}" in error for d in requires), error
    for repo, tag in (("library/alpine", "3.19"), ("library/alpine", "3.20"), ("team/app", "1.0")):
        assert fetch_manifest_digest(empty.url, f"far/{repo}", tag) is None
    assert fetch_manifest_digest(empty.url, "far/team/new", "1") == fresh.digest
    # The same from the command line: exit 1, the fix printed.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncer", "sync", "-c", str(cfg), "-q", stderr=PIPE, stdout=PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert b"import the earlier bundle first" in out + err


async def test_a_delta_since_a_delta_counts_what_the_earlier_delta_expected(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = registry_factory("anon")
    images = seed(src)
    layout = tmp_path / "layout"
    await export_to_layout(src, layout, tmp_path)
    first, second, third = (tmp_path / f"{n}.tar" for n in ("first", "second", "third"))
    bundle(capsys, layout, first)
    bundle(capsys, layout, second, first)  # nothing new: every blob left out
    result = bundle(capsys, layout, third, second)  # only the second: its `requires` count
    assert result["blobs"] == 0 and result["blob_bytes"] == 0
    assert result["left_out"] == len(all_blobs(list(images.values())))


async def test_a_delta_carries_a_shared_blob_to_a_new_repository(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry serves a blob only in the repositories that hold it: a blob the earlier
    bundle carried for `app` is still needed in the delta for a new repository `other`."""
    src, far = registry_factory("anon"), registry_factory("anon")
    base, own = random_layer(96 * 1024, seed=21), random_layer(32 * 1024, seed=22)
    app = make_image([base, own], fmt="oci")
    push(src.seed_url, "app", app, "2.0")
    layout, full, delta = tmp_path / "layout", tmp_path / "full.tar", tmp_path / "delta.tar"
    await export_to_layout(src, layout, tmp_path)
    bundle(capsys, layout, full)
    assert (await import_archive(f"oci-archive:{full}", far, tmp_path)).status == "ok"

    other = make_image([base, random_layer(16 * 1024, seed=23)], fmt="oci")
    push(src.seed_url, "other", other, "x")
    await export_to_layout(src, layout, tmp_path)
    result = bundle(capsys, layout, delta, full)
    shared = base[0].digest
    carried = {b.digest for b in other.blobs()}
    assert shared in carried
    assert blob_members(delta) == carried | {app.digest, other.digest}, "app's blobs left out"
    assert sum(1 for n in members(delta) if n.endswith(shared.removeprefix("sha256:"))) == 1
    app_only = sorted(b.digest for b in app.blobs() if b.digest != shared)
    assert result["blobs"] == len(carried) and result["left_out"] == len(app_only) == 2
    with tarfile.open(delta) as t:
        note = t.extractfile("syncer-bundle.json")
        assert note is not None
        requires = json.loads(note.read())["requires"]
    assert requires == {"app": app_only}
    print(f"delta bundle with a new repository: {delta.stat().st_size} bytes")

    report = await import_archive(f"oci-archive:{delta}", far, tmp_path, "delta")
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 1 and report.totals.tags_up_to_date == 1
    assert report.totals.bytes_copied == sum(b.size for b in other.blobs())
    assert fetch_manifest_digest(far.url, "far/other", "x") == other.digest


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    file_mode.cache_clear()
    try:
        yield
    finally:
        os.umask(old)
        file_mode.cache_clear()


@pytest.mark.usefixtures("umask_022")
async def test_bundles_and_layout_files_are_readable_as_the_umask_allows(
    anon_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Carried to other people: 0644 under umask 022, as `cp` or `tar` would write them,
    not mkstemp's 0600."""
    image = make_image([random_layer(8 * 1024, seed=31)], fmt="oci")
    push(anon_registry.seed_url, "app", image, "1")
    layout, tar = tmp_path / "layout", tmp_path / "b.tar"
    await export_to_layout(anon_registry, layout, tmp_path)
    bundle(capsys, layout, tar)
    files = [tar, layout / "index.json", layout / "oci-layout"]
    files += [layout / "blobs" / "sha256" / b.digest.removeprefix("sha256:") for b in image.blobs()]
    assert {str(p): stat.S_IMODE(p.stat().st_mode) for p in files} == {str(p): 0o644 for p in files}
