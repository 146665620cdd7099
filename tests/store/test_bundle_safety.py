"""`syncer bundle` when things go wrong: memory with a large blob, a failure or kill -9
mid-write, a corrupt layout, and each bad input's exit 2."""

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
from typing import Any

import pytest

from syncer.cli import main
from syncer.errors import DiskError
from syncer.registry.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Descriptor
from syncer.registry.reference import Reference
from syncer.store import bundle as bundle_module
from syncer.store.bundle import BundleJob, pack
from syncer.store.ociarchive import OciArchive
from tests.store.test_bundle import blob_members
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import export_to_layout

CHUNK = 1024 * 1024


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
    # A few chunks in flight, whatever the blob's size: one read, one hashed on the worker
    # thread (registry/digests.py), one passed on and held back as the last. Not 64.
    assert peak < 8 * CHUNK, peak


def test_a_failure_mid_write_leaves_no_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_layout(tmp_path / "layout", 8 * CHUNK)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "old.tar").write_bytes(b"yesterday's bundle, kept")
    calls = 0
    real_read = bundle_module.Verifying.read

    def failing_read(self: Any, n: int = -1) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device")
        return real_read(self, n)

    monkeypatch.setattr(bundle_module.Verifying, "read", failing_read)
    with pytest.raises(DiskError, match="No space left"):
        pack(BundleJob(tmp_path / "layout", usb / "old.tar"))
    assert calls == 5
    assert sorted(p.name for p in usb.iterdir()) == ["old.tar"], "no temp file left behind"
    assert (usb / "old.tar").read_bytes() == b"yesterday's bundle, kept"


SLOW_BUNDLE = """
import sys, time
from syncer.store import bundle
real = bundle.Verifying.read
def slow(self, n=-1):
    time.sleep(0.05)
    return real(self, n)
bundle.Verifying.read = slow
from syncer.cli import main
from syncer.errors import DiskError
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
    asyncio.run(export_to_layout(src, layout, tmp_path))
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
