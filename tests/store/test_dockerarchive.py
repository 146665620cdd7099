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


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _broken(path: Path, layer_path: str, *extra: tarfile.TarInfo | tuple[str, bytes]) -> None:
    image = app_image(0, 0)
    config = image.config.digest[7:] + ".json"
    entry = {"Config": config, "RepoTags": ["app:1"], "Layers": [layer_path]}
    _tar(
        path, [(config, image.config.data), *extra, ("manifest.json", json.dumps([entry]).encode())]
    )


@pytest.mark.parametrize(
    ("layer_path", "extra", "problem"),
    [
        ("gone/layer.tar", [], "names 'gone/layer.tar', which is not in the archive"),
        ("../../etc/passwd", [], "names '../../etc/passwd', which leads outside the archive"),
        (
            "/etc/passwd",
            [],
            "names '/etc/passwd', an absolute path; an archive's paths are relative",
        ),
        (
            "l/layer.tar",
            [_special("l/layer.tar", tarfile.SYMTYPE, "../../../etc/passwd")],
            "names 'l/layer.tar', which leads outside the archive",
        ),
        (
            "d",
            [_special("d", tarfile.DIRTYPE)],
            "names 'd', which is a directory, not a regular file",
        ),
        ("p", [_special("p", tarfile.FIFOTYPE)], "names 'p', which is a FIFO, not a regular file"),
    ],
)
def test_a_bad_archive_is_refused_naming_the_file_and_the_member(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    layer_path: str,
    extra: list[tarfile.TarInfo],
    problem: str,
) -> None:
    dst = registry_factory("anon")
    archive = tmp_path / "bad.tar"
    _broken(archive, layer_path, *extra)
    cfg = settings_for(tmp_path, dst)
    mark = dst.mark()
    capsys.readouterr()
    assert copy(cfg, f"docker-archive:{archive}:app:1", f"{dst.host}/x") == 2
    err = capsys.readouterr().err
    assert f"syncer: error: {archive}: manifest.json Layers {problem}" in err, err
    assert dst.requests_since(mark) == []


def test_not_a_docker_archive_and_a_config_that_is_not_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "none.yaml"
    cfg.write_text("version: 1\n")
    empty = tmp_path / "empty.tar"
    _tar(empty, [("hello.txt", b"hi")])
    wrong = tmp_path / "wrong.tar"
    image = app_image(0, 0)
    entry = {"Config": "0" * 64 + ".json", "RepoTags": ["app:1"], "Layers": []}
    _tar(
        wrong,
        [("0" * 64 + ".json", image.config.data), ("manifest.json", json.dumps([entry]).encode())],
    )
    notar = tmp_path / "notar.tar"
    notar.write_bytes(b"\x1f\x8b" + b"x" * 600)
    capsys.readouterr()
    for archive, message in [
        (empty, f"{empty}: a tar, but no manifest.json or index.json in it"),
        (
            wrong,
            f"{wrong}: member {'0' * 64}.json: digest mismatch, expected sha256:{'0' * 64}, "
            f"got {image.config.digest}",
        ),
        (notar, f"{notar}: not an uncompressed tar"),
    ]:
        assert copy(cfg, f"docker-archive:{archive}:app:1", "127.0.0.1:9/x") == 2
        err = capsys.readouterr().err
        assert f"syncer: error: {message}" in err, err


def test_a_corrupt_layer_fails_its_copy_naming_the_member(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "app", image, "1")
    cfg = settings_for(tmp_path, src, dst)
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    assert copy(cfg, f"{src.host}/app:1", f"docker-archive:{good}") == 0
    layer = "blobs/sha256/" + image.layers[0].digest[7:]
    files = members(good)
    files[layer] = bytes(len(files[layer]))  # same size, other bytes
    _tar(bad, list(files.items()))
    capsys.readouterr()
    assert copy(cfg, f"docker-archive:{bad}:app:1", f"{dst.host}/x") == 1
    err = capsys.readouterr().err
    assert f"blob {image.layers[0].digest} (member {layer}) in {bad}: digest mismatch" in err, err
    assert fetch_manifest_digest(dst.url, "x", "1") is None


def test_a_docker_25_entry_without_a_name_takes_manifest_json_repo_tags(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Docker 25+ may leave index.json's entry with a bare ref.name (`1`): the name is then
    manifest.json's RepoTags, matched by config; the manifest is served as stored."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "app", image, "1")
    cfg = settings_for(tmp_path, src, dst)
    good, bare = tmp_path / "good.tar", tmp_path / "bare.tar"
    assert copy(cfg, f"{src.host}/app:1", f"docker-archive:{good}") == 0
    files = members(good)
    index = json.loads(files["index.json"])
    index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    files["index.json"] = json.dumps(index).encode()
    [entry] = json.loads(files["manifest.json"])
    entry["RepoTags"] = ["registry.example:5000/team/tool:2"]
    files["manifest.json"] = json.dumps([entry]).encode()
    _tar(bare, list(files.items()))
    assert copy(cfg, f"docker-archive:{bare}:team/tool:2", f"{dst.host}/tool") == 0
    assert fetch_manifest_digest(dst.url, "tool", "2") == image.digest


def test_sync_writes_and_reads_whole_archives(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """`sync:` entries: a glob into one archive (each repository keeps its path), and the
    whole archive back out to a registry, every digest kept."""
    import asyncio

    from syncer.config.syncfile import load_config
    from syncer.sync.runner import Runner
    from tests.support.syncer_setup import write_sync_yaml

    src, dst = registry_factory("anon"), registry_factory("anon")
    images = {"team/a": app_image(0, 0), "team/b": app_image(1, 0)}
    for repo, image in images.items():
        push(src.seed_url, repo, image, "1")
    archive = tmp_path / "team.tar"
    out = [{"source": f"{src.host}/team/*", "destination": f"docker-archive:{archive}"}]
    report = asyncio.run(Runner(load_config(write_sync_yaml(tmp_path / "o.yaml", out, src))).run())
    assert report.status == "ok", report.entries
    assert report.totals.tags_copied == 2
    back = [{"source": f"docker-archive:{archive}", "destination": f"{dst.host}/far"}]
    report = asyncio.run(Runner(load_config(write_sync_yaml(tmp_path / "b.yaml", back, dst))).run())
    assert report.status == "ok", report.entries
    for repo, image in images.items():
        assert fetch_manifest_digest(dst.url, f"far/{repo}", "1") == image.digest
