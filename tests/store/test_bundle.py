"""`syncer bundle` and the trip: registry -> layout -> tar -> `oci-archive:` -> registry, full
and delta bundles, against real registries and real tars on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.registry.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Descriptor
from syncer.registry.reference import Reference
from syncer.store import bundle as bundle_module
from syncer.store.bundle import BundleJob, pack
from syncer.store.ociarchive import OciArchive
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
from tests.support.syncer_setup import write_sync_yaml

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


async def export(src: RunningRegistry, layout: Path, tmp_path: Path) -> None:
    cfg = write_sync_yaml(
        tmp_path / "export.yaml", [{"source": f"{src.host}/*", "destination": f"oci:{layout}"}], src
    )
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.entries


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
    await export(src, layout, tmp_path)

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
        assert json.loads(note.read()) == {"syncerBundleVersion": 1, "since": [], "requires": []}
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
    await export(src, layout, tmp_path)
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
    await export(src, layout, tmp_path)

    result = bundle(capsys, layout, delta, full)
    new_blobs = {b.digest: b.size for b in (moved.config, big, *fresh.blobs())}
    new_bytes = sum(new_blobs.values())
    old_blobs = all_blobs([images["library/alpine", "3.19"], moved, images["team/app", "1.0"]])
    requires = {d for d in old_blobs if d not in new_blobs}
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
            "syncerBundleVersion": 1,
            "since": ["full.tar"],
            "requires": sorted(requires),
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
    await export(src, layout, tmp_path)
    first, second, third = (tmp_path / f"{n}.tar" for n in ("first", "second", "third"))
    bundle(capsys, layout, first)
    bundle(capsys, layout, second, first)  # nothing new: every blob left out
    result = bundle(capsys, layout, third, second)  # only the second: its `requires` count
    assert result["blobs"] == 0 and result["blob_bytes"] == 0
    assert result["left_out"] == len(all_blobs(list(images.values())))


def big_layout(path: Path, size: int) -> str:
    """A layout with one image whose layer is `size` bytes, written in 1 MiB chunks; returns
    the layer's digest."""
    layer_tmp = path / "layer.tmp"
    path.mkdir()
    digest = hashlib.sha256()
    with layer_tmp.open("wb") as f:
        for _ in range(size // CHUNK):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            f.write(chunk)
    layer = f"sha256:{digest.hexdigest()}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_tmp.rename(blobs / digest.hexdigest())
    config_digest = hashlib.sha256(config).hexdigest()
    (blobs / config_digest).write_bytes(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": f"sha256:{config_digest}",
                "size": len(config),
            },
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": size}],
        }
    ).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest).write_bytes(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": f"sha256:{manifest_digest}",
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "big/app:1"},
    }
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layer


def test_memory_stays_bounded_while_packing_a_64_mib_blob(tmp_path: Path) -> None:
    size = 64 * CHUNK
    layer = big_layout(tmp_path / "layout", size)
    out = tmp_path / "big.tar"
    tracemalloc.start()
    try:
        result = pack(BundleJob(tmp_path / "layout", out))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.blob_bytes > size and out.stat().st_size > size
    assert blob_members(out) >= {layer}
    print(f"packing a 64 MiB blob: tracemalloc peak {peak / CHUNK:.2f} MiB")
    assert peak < 4 * CHUNK, peak

    # Reading it back from the tar, as an import does: seeks and bounded chunks.
    archive = OciArchive(out)
    repo = Reference(f"oci-archive:{out}", "big/app")
    read = 0
    tracemalloc.start()
    try:

        async def drain() -> None:
            nonlocal read
            async for chunk in archive.read_blob(repo, Descriptor(digest=layer, size=size)):
                read += len(chunk)

        asyncio.run(drain())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == size
    print(f"reading it from the oci-archive: tracemalloc peak {peak / CHUNK:.2f} MiB")
    assert peak < 4 * CHUNK, peak


def test_a_failure_mid_write_leaves_no_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_layout(tmp_path / "layout", 8 * CHUNK)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "old.tar").write_bytes(b"yesterday's bundle, kept")
    calls = 0
    real_read = bundle_module._Verifying.read

    def failing_read(self: Any, n: int = -1) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device")
        return real_read(self, n)

    monkeypatch.setattr(bundle_module._Verifying, "read", failing_read)
    with pytest.raises(OSError, match="No space left"):
        pack(BundleJob(tmp_path / "layout", usb / "old.tar"))
    assert calls == 5
    assert sorted(p.name for p in usb.iterdir()) == ["old.tar"], "no temp file left behind"
    assert (usb / "old.tar").read_bytes() == b"yesterday's bundle, kept"


SLOW_BUNDLE = """
import sys, time
from syncer.store import bundle
real = bundle._Verifying.read
def slow(self, n=-1):
    time.sleep(0.05)
    return real(self, n)
bundle._Verifying.read = slow
from syncer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_mid_write_leaves_no_bundle(tmp_path: Path) -> None:
    big_layout(tmp_path / "layout", 16 * CHUNK)
    usb = tmp_path / "usb"
    usb.mkdir()
    out = usb / "b.tar"
    args = ["bundle", str(tmp_path / "layout"), "-o", str(out), "-q"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUNDLE, *args])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the temp tar holds a few MiB
            temps = [p for p in usb.iterdir() if p.name.startswith(".tmp-")]
            if temps and temps[0].stat().st_size > 2 * CHUNK:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the bundle never started writing")
        proc.kill()
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed bundle leaves no OUT.tar"
    # The next run finishes the job (the dead writer's temp file is only clutter).
    assert main(args) == 0
    assert blob_members(out)


def test_a_corrupt_blob_in_the_layout_fails_the_bundle_naming_it(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "1")
    layout = tmp_path / "layout"
    asyncio.run(export(src, layout, tmp_path))
    layer = image.layers[-1]
    path = layout / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    capsys.readouterr()
    out = tmp_path / "usb.tar"
    assert main(["bundle", str(layout), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"blob {layer.digest} in {layout}: digest mismatch" in err, err
    assert "no bundle written" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]

    # An index.json entry that is not a descriptor is named, not a crash.
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"size": 1}]}')
    assert main(["bundle", str(layout), "-o", str(out)]) == 1
    assert f"{layout}/index.json: an entry is not a descriptor" in capsys.readouterr().err
    assert not out.exists()


def test_bad_inputs_are_exit_2_naming_the_path_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big_layout(tmp_path / "layout", CHUNK)
    layout = str(tmp_path / "layout")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"meow")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a tar")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as t:
        t.add(notes, arcname="notes.txt")
    out = str(tmp_path / "b.tar")
    cases = [
        ([str(photos), "-o", out], f"{photos}: exists but is not an OCI image layout"),
        ([str(tmp_path / "nope"), "-o", out], f"{tmp_path / 'nope'}: no OCI image layout here"),
        ([layout, "-o", str(tmp_path / "no" / "b.tar")], f"the folder {tmp_path / 'no'} does"),
        ([layout, "-o", str(photos)], "is a directory; name a file"),
        ([layout, "-o", out, "--since", str(notes)], f"{notes}: not an uncompressed tar"),
        ([layout, "-o", out, "--since", str(plain)], f"{plain}: a tar, but no oci-layout"),
        ([layout, "-o", out, "--since", str(tmp_path / "gone.tar")], "gone.tar: no such file"),
        ([layout, "-o", out, "--since", out], "is also given to --since"),
        ([layout, "-o", f"{layout}/b.tar"], "is inside the layout"),
    ]
    for args, message in cases:
        assert main(["bundle", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    assert not Path(out).exists()
    with pytest.raises(SystemExit) as exited:  # argparse: -o is required
        main(["bundle", layout])
    assert exited.value.code == 2
    assert "-o/--out" in capsys.readouterr().err
