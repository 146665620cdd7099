"""The OCI layout store on real directories: layout on disk, safety rules, bad inputs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncer.errors import ConfigError, DigestMismatch, ResponseTooLarge, SizeMismatch
from syncer.registry import Descriptor, Reference, RegistryClient
from syncer.store import BlobBytes, OciLayout, Store
from syncer.store.ocilayout import REF_NAME
from tests.support.images import Blob, make_image, make_layer
from tests.support.layout_lock import holder_text, lock_held

REPO = Reference.parse("example.test/mirror/alpine")


def _bytes(data: bytes) -> BlobBytes:
    async def open_() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    return open_


def _desc(blob: Blob) -> Descriptor:
    return Descriptor(mediaType=blob.media_type, digest=blob.digest, size=blob.size)


async def _write_image(layout: OciLayout, tag: str) -> tuple[str, list[Blob]]:
    image = make_image([make_layer({"a.txt": b"hello"})], fmt="oci")
    for blob in image.blobs():
        await layout.upload_blob(REPO, _desc(blob), _bytes(blob.data))
    digest = await layout.put_manifest(REPO, tag, image.manifest, image.media_type)
    assert digest == image.digest
    return digest, list(image.blobs())


def test_both_stores_satisfy_the_interface(tmp_path: Path) -> None:
    stores: list[Store] = [RegistryClient(), OciLayout(tmp_path / "l", writable=True)]
    assert len(stores) == 2


async def test_writes_a_layout_other_tools_read(tmp_path: Path) -> None:
    path = tmp_path / "layout"
    layout = OciLayout(path, writable=True)
    digest, blobs = await _write_image(layout, "3.20")
    await layout.aclose()

    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((path / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"][REF_NAME] == "mirror/alpine:3.20"
    for blob in blobs:
        assert (path / "blobs" / "sha256" / blob.digest[7:]).read_bytes() == blob.data
    assert holder_text(path) == "", "released: the lock file stays, empty"
    assert not list(path.rglob(".tmp-*"))

    reader = OciLayout(path)
    assert await reader.catalog(REPO) == ["mirror/alpine"]
    assert await reader.list_tags(REPO) == ["3.20"]
    info = await reader.head_manifest(REPO.with_tag("3.20"))
    assert info is not None and info.digest == digest
    assert await reader.head_manifest(REPO.with_tag("missing")) is None
    got = b"".join([c async for c in reader.read_blob(REPO, _desc(blobs[1]))])
    assert got == blobs[1].data


async def test_retagging_replaces_the_entry(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l", writable=True)
    await _write_image(layout, "1")
    await _write_image(layout, "1")
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    assert len(index["manifests"]) == 1
    await layout.delete_manifest(REPO, index["manifests"][0]["digest"])
    assert await layout.list_tags(REPO) == []
    await layout.aclose()


def test_an_existing_directory_that_is_not_a_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an OCI image layout"):
        OciLayout(tmp_path / "x", writable=True)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="no OCI image layout here"):
        OciLayout(tmp_path / "missing")


def test_a_second_writer_is_refused_and_a_dead_writers_lock_goes_with_it(tmp_path: Path) -> None:
    asyncio.run(OciLayout(tmp_path / "l", writable=True).aclose())
    with lock_held(tmp_path / "l") as holder:
        with pytest.raises(ConfigError) as err:
            OciLayout(tmp_path / "l", writable=True)
        host = socket.gethostname()
        assert (
            f"{tmp_path / 'l'}: another syncer is writing this layout "
            f"(pid {holder.pid} on {host} since " in str(err.value)
        )
        assert "wait for it to finish and run again, or stop it" in str(err.value)
        # Reading needs no lock: a writer never removes a blob.
        assert asyncio.run(OciLayout(tmp_path / "l").catalog(REPO)) == []
        holder.kill()  # as kill -9: no release, the kernel drops the lock with the process
        holder.wait()
        layout = OciLayout(tmp_path / "l", writable=True)
    assert holder_text(tmp_path / "l").startswith(f"pid {os.getpid()} on {host} since ")
    asyncio.run(layout.aclose())
    assert holder_text(tmp_path / "l") == "", "a free lock reads empty"


def test_one_process_opening_a_layout_twice_holds_one_lock(tmp_path: Path) -> None:
    first = OciLayout(tmp_path / "l", writable=True)
    in_flight = tmp_path / "l" / ".tmp-upload"  # the first one's blob, half written
    in_flight.write_bytes(b"partial")
    # The same folder, as two schedule groups running at once in one `syncer schedule`.
    second = OciLayout(tmp_path / "l" / ".." / "l", writable=True)
    assert in_flight.read_bytes() == b"partial", "not removed under the first one's feet"
    asyncio.run(first.aclose())
    assert holder_text(tmp_path / "l") != "", "still held for the second"
    asyncio.run(second.aclose())
    assert holder_text(tmp_path / "l") == ""
    with lock_held(tmp_path / "l"):
        pass  # free for another process now


async def test_a_corrupt_blob_fails_naming_its_digest(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l", writable=True)
    _digest, blobs = await _write_image(layout, "1")
    layer = blobs[1]
    path = tmp_path / "l" / "blobs" / "sha256" / layer.digest[7:]
    path.write_bytes(bytes([layer.data[0] ^ 1]) + layer.data[1:])
    with pytest.raises(DigestMismatch, match=layer.digest):
        async for _ in layout.read_blob(REPO, _desc(layer)):
            pass
    await layout.aclose()


async def test_an_upload_that_does_not_match_leaves_nothing(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l", writable=True)
    blob = Blob.of(b"x" * 100, "application/octet-stream")
    with pytest.raises(DigestMismatch, match=blob.digest):
        await layout.upload_blob(REPO, _desc(blob), _bytes(b"y" * 100))
    with pytest.raises(SizeMismatch):
        await layout.upload_blob(REPO, _desc(blob), _bytes(b"x" * 101))
    assert not await layout.blob_exists(REPO, blob.digest)
    assert not list((tmp_path / "l").rglob(".tmp-*"))
    await layout.aclose()


async def test_oversized_manifests_and_bad_names_are_refused(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l", writable=True)
    with pytest.raises(ResponseTooLarge):
        await layout.put_manifest(REPO, "big", b"{" + b" " * (4 * 1024 * 1024) + b"}", "x")
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"digest": "sha256:" + "0" * 64, "size": 1, "annotations": {REF_NAME: "../../etc:x"}}
        ],
    }
    (tmp_path / "l" / "index.json").write_text(json.dumps(index))
    # Never a path: a name that is no valid REPOSITORY:TAG is skipped, with one warning.
    reader = OciLayout(tmp_path / "l")
    with capture_logs() as logs:
        assert await reader.catalog(REPO) == []
        assert await reader.list_tags(Reference("oci:x", "etc")) == []
        assert await reader.head_manifest(Reference("oci:x", "../../etc", "x")) is None
    assert logs == [
        {
            "event": "index.json entries skipped: their ref.name is not REPOSITORY:TAG",
            "layout": str(tmp_path / "l"),
            "ref_names": ["../../etc:x"],
            "log_level": "warning",
        }
    ]
    await layout.aclose()


async def test_oversized_metadata_files_are_refused(tmp_path: Path) -> None:
    await OciLayout(tmp_path / "l", writable=True).aclose()
    with (tmp_path / "l" / "index.json").open("r+b") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: one byte over the cap
    with pytest.raises(ResponseTooLarge, match=f"{tmp_path}/l/index.json"):
        await OciLayout(tmp_path / "l").catalog(REPO)
    (tmp_path / "l" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}' + " " * 65536)
    with pytest.raises(ConfigError, match=f"{tmp_path}/l/oci-layout"):
        OciLayout(tmp_path / "l")
