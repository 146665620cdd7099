"""`docker-archive:FILE[:REPO:TAG]` as a source and a destination: what syncer writes, what
it reads (classic and Docker 25+ archives), the multi-arch rule, and bad archives.

Real registries at both ends; digests asserted at the far one."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from tests.commands.oneoff_support import settings_for
from tests.support.fleet import app_image
from tests.support.images import (
    Image,
    fetch_manifest,
    fetch_manifest_digest,
    make_index,
    push,
)
from tests.support.registry import RegistryFactory, RunningRegistry

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }


def copy(cfg: Path, *args: str) -> int:
    return main(["copy", "-q", "-c", str(cfg), *args])


def _seeded(reg: RunningRegistry, tmp_path: Path, image: Image, repo: str = "library/app0") -> Path:
    push(reg.seed_url, repo, image, "1.0.0")
    return settings_for(tmp_path, reg)


def test_registry_to_archive_to_registry_keeps_every_digest(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """A Docker v2 image goes out to an archive and back: the manifest, config and layers
    keep their digests, because the archive holds them as they were (index.json and
    blobs/), and manifest.json points into blobs/ for `docker load`."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "library/app0", image, "1.0.0")
    cfg = settings_for(tmp_path, src, dst)
    archive = tmp_path / "app.tar"

    assert copy(cfg, f"{src.host}/library/app0:1.0.0", f"docker-archive:{archive}") == 0
    files = members(archive)
    blobs = {n for n in files if n.startswith("blobs/sha256/")}
    wanted = {image.digest, image.config.digest, *(b.digest for b in image.layers)}
    assert blobs == {"blobs/sha256/" + d.partition(":")[2] for d in wanted}
    for name in blobs:  # every blob is its digest's bytes
        assert "sha256:" + hashlib.sha256(files[name]).hexdigest() == "sha256:" + name[13:]
    [entry] = json.loads(files["manifest.json"])
    assert entry == {
        "Config": "blobs/sha256/" + image.config.digest[7:],
        "RepoTags": ["library/app0:1.0.0"],
        "Layers": ["blobs/sha256/" + b.digest[7:] for b in image.layers],
    }
    assert json.loads(files["repositories"]) == {
        "library/app0": {"1.0.0": image.layers[-1].digest[7:]}
    }
    [idx] = json.loads(files["index.json"])["manifests"]
    assert (idx["digest"], idx["mediaType"], idx["size"]) == (image.digest, DOCKER_V2, image.size)
    assert idx["annotations"] == {
        "io.containerd.image.name": "docker.io/library/app0:1.0.0",
        "org.opencontainers.image.ref.name": "1.0.0",
    }
    assert files["oci-layout"] == b'{"imageLayoutVersion": "1.0.0"}'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # stage removed

    assert copy(cfg, f"docker-archive:{archive}:library/app0:1.0.0", f"{dst.host}/back/app0") == 0
    assert fetch_manifest_digest(dst.url, "back/app0", "1.0.0") == image.digest
    # `app0` is docker's short spelling of `library/app0`.
    assert copy(cfg, f"docker-archive:{archive}:app0:1.0.0", f"{dst.host}/short/app0") == 0
    assert fetch_manifest_digest(dst.url, "short/app0", "1.0.0") == image.digest


def test_an_archive_is_added_to_and_an_up_to_date_copy_leaves_it_alone(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    one, two = app_image(0, 0), app_image(1, 0)
    push(src.seed_url, "library/app0", one, "1")
    push(src.seed_url, "library/app1", two, "2")
    cfg = settings_for(tmp_path, src)
    archive = tmp_path / "a.tar"
    assert copy(cfg, f"{src.host}/library/app0:1", f"docker-archive:{archive}") == 0
    first = archive.stat()
    assert copy(cfg, f"{src.host}/library/app0:1", f"docker-archive:{archive}") == 0
    again = archive.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not rewritten

    assert copy(cfg, f"{src.host}/library/app1:2", f"docker-archive:{archive}:mirror/two:2") == 0
    tags = [e["RepoTags"] for e in json.loads(members(archive)["manifest.json"])]
    assert sorted(tags) == [["library/app0:1"], ["mirror/two:2"]]


def test_multi_arch_needs_a_platform(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    amd, arm = app_image(2, 0), app_image(2, 0, arch="arm64")
    index = make_index([amd, arm], fmt="docker")
    push(src.seed_url, "team/app", index, "1.0")
    cfg = settings_for(tmp_path, src, dst)
    archive = tmp_path / "multi.tar"
    capsys.readouterr()

    assert copy(cfg, f"{src.host}/team/app:1.0", f"docker-archive:{archive}") == 2
    err = capsys.readouterr().err
    assert (
        f"docker-archive:{archive}:team/app:1.0: the source is an index of 2 platforms "
        "(linux/amd64, linux/arm64), but a docker archive holds one platform per image; "
        "choose one with --platform OS/ARCH (in sync.yaml: platforms: [OS/ARCH])"
    ) in err, err
    assert not archive.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]

    assert (
        copy(
            cfg,
            "--platform",
            "linux/arm64",
            f"{src.host}/team/app:1.0",
            f"docker-archive:{archive}",
        )
        == 0
    )
    [entry] = json.loads(members(archive)["manifest.json"])
    assert entry["Config"] == "blobs/sha256/" + arm.config.digest[7:]
    [idx] = json.loads(members(archive)["index.json"])["manifests"]
    assert idx["digest"] == arm.digest  # the platform's own manifest, not the index
    assert copy(cfg, f"docker-archive:{archive}:team/app:1.0", f"{dst.host}/team/app") == 0
    assert fetch_manifest_digest(dst.url, "team/app", "1.0") == arm.digest


def _classic(path: Path, image: Image, tags: list[str], *, layout: str = "id") -> None:
    """A classic `docker save` archive (before Docker 25): `<hex>.json` config, layers
    uncompressed as `<id>/layer.tar`, manifest.json and repositories, no index.json."""
    import gzip

    layers = [gzip.decompress(b.data) for b in image.layers]
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        config_name = image.config.digest[7:] + ".json"
        add(config_name, image.config.data)
        paths = []
        for n, raw in enumerate(layers):
            paths.append(f"{n:064x}/layer.tar")
            add(paths[-1], raw)
        add(
            "manifest.json",
            json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": paths}]).encode(),
        )
        add("repositories", b"{}")


def test_a_classic_archive_is_read_as_a_self_consistent_docker_v2_image(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Its layers are stored uncompressed: the manifest syncer presents names them by their
    own digests (the config's diff_ids), so the config digest survives, and each layer
    arrives at the registry as exactly the bytes the archive held."""
    dst = registry_factory("anon")
    image = app_image(0, 0)
    archive = tmp_path / "classic.tar"
    _classic(archive, image, ["alpine:3.20"])
    cfg = settings_for(tmp_path, dst)
    assert copy(cfg, f"docker-archive:{archive}:alpine:3.20", f"{dst.host}/mirror/alpine") == 0
    data = fetch_manifest(dst.url, "mirror/alpine", "3.20")
    manifest: dict[str, Any] = json.loads(data[0] if isinstance(data, tuple) else data)
    assert manifest["mediaType"] == DOCKER_V2
    assert manifest["config"]["digest"] == image.config.digest
    diff_ids = json.loads(image.config.data)["rootfs"]["diff_ids"]
    assert [layer["digest"] for layer in manifest["layers"]] == diff_ids
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar"
    }
