"""docker-archive interop with the real clients on these machines: Debian's skopeo 1.9 and
podman 4.3 (its image storage works here; running containers does not). Each trip ends
at a real registry or in podman's storage, and digests are compared there.

Skipped, with the reason, where a tool is missing. No docker daemon runs here, so
`docker load` itself is not exercised: the format is the one Docker 25+ writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from tests.commands.oneoff_support import settings_for
from tests.support.fleet import app_image
from tests.support.images import Image, fetch_manifest, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

SKOPEO, PODMAN = shutil.which("skopeo"), shutil.which("podman")
needs_skopeo = pytest.mark.skipif(
    SKOPEO is None, reason="skopeo not installed: run scripts/setup (installs Debian's skopeo)"
)
needs_podman = pytest.mark.skipif(
    PODMAN is None,
    reason="podman not installed: apt-get install --no-install-recommends podman uidmap",
)


def skopeo(*args: str) -> str:
    assert SKOPEO is not None
    proc = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def podman(tmp_path: Path) -> Any:
    """podman on a storage of this test's own; rlimits off, as this sandbox needs."""
    conf = tmp_path / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    storage = tmp_path / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path / "graph"}"\n'
        f'runroot = "{tmp_path / "run"}"\n'
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    env |= {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    def run(*args: str) -> str:
        assert PODMAN is not None
        proc = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    yield run
    shutil.rmtree(tmp_path / "graph", ignore_errors=True)  # vfs: plain files, no mounts


def _manifest(url: str, repo: str, tag: str) -> dict[str, Any]:
    data, _type = fetch_manifest(url, repo, tag)
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def _diff_ids(image: Image) -> list[str]:
    return list(json.loads(image.config.data)["rootfs"]["diff_ids"])


def _to_archive(cfg: Path, source: str, archive: Path) -> None:
    assert main(["copy", "-q", "-c", str(cfg), source, f"docker-archive:{archive}"]) == 0


def _from_archive(cfg: Path, archive: Path, name: str, destination: str) -> None:
    assert (
        main(["copy", "-q", "-c", str(cfg), f"docker-archive:{archive}:{name}", destination]) == 0
    )


def _as_stored(image: Image) -> dict[str, Any]:
    """The manifest syncer presents for `image` read from a classic archive whose layers
    are stored uncompressed (skopeo's and podman's): layers are the config's diff_ids."""
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": image.config.descriptor() | {"mediaType": DOCKER_CONFIG},
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                "size": 10240,
                "digest": d,
            }
            for d in _diff_ids(image)
        ],
    }


@needs_skopeo
def test_skopeo_reads_what_syncer_writes(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    """skopeo's docker-archive reader takes manifest.json and decompresses the layers: it
    sees the config and the diff_ids syncer stored, and a push re-compresses, so at the
    far registry the config digest survives and the layer and manifest digests do not."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "library/app0", image, "1.0.0")
    cfg = settings_for(tmp_path, src, dst)
    archive = tmp_path / "by-syncer.tar"
    _to_archive(cfg, f"{src.host}/library/app0:1.0.0", archive)

    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}:library/app0:1.0.0"))
    assert raw["config"]["digest"] == image.config.digest
    assert [layer["digest"] for layer in raw["layers"]] == _diff_ids(image)
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"docker-archive:{archive}:library/app0:1.0.0",
        f"docker://{dst.host}/by-skopeo/app0:1.0.0",
    )
    got = _manifest(dst.url, "by-skopeo/app0", "1.0.0")
    assert got["config"]["digest"] == image.config.digest
    assert len(got["layers"]) == len(image.layers)
    assert fetch_manifest_digest(dst.url, "by-skopeo/app0", "1.0.0") != image.digest


@needs_skopeo
def test_syncer_reads_what_skopeo_writes(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    """skopeo writes a classic archive (`<hex>.tar` layers, uncompressed, and legacy
    `<id>/layer.tar` symlinks to them); syncer presents it as a Docker v2 image whose
    config digest is the source's and whose layers are the diff_ids."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "library/app0", image, "1.0.0")
    cfg = settings_for(tmp_path, src, dst)
    archive = tmp_path / "by-skopeo.tar"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{src.host}/library/app0:1.0.0",
        f"docker-archive:{archive}:mirror/app0:1.0.0",
    )
    _from_archive(cfg, archive, "mirror/app0:1.0.0", f"{dst.host}/back/app0")
    assert _manifest(dst.url, "back/app0", "1.0.0") == _as_stored(image)


@needs_podman
def test_podman_loads_what_syncer_writes(
    registry_factory: RegistryFactory, tmp_path: Path, podman: Any
) -> None:
    """podman load takes the archive as is: image ID the config digest, the source's
    manifest digest, the diff_ids, and the name syncer wrote."""
    src = registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "library/app0", image, "1.0.0")
    cfg = settings_for(tmp_path, src)
    archive = tmp_path / "by-syncer.tar"
    _to_archive(cfg, f"{src.host}/library/app0:1.0.0", archive)
    assert "Loaded image: docker.io/library/app0:1.0.0" in podman("load", "-i", str(archive))
    [info] = json.loads(podman("image", "inspect", "docker.io/library/app0:1.0.0"))
    assert "sha256:" + info["Id"] == image.config.digest
    assert info["Digest"] == image.digest
    assert info["RootFS"]["Layers"] == _diff_ids(image)


@needs_podman
def test_syncer_reads_what_podman_saves(
    registry_factory: RegistryFactory, tmp_path: Path, podman: Any
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "library/app0", image, "1.0.0")
    cfg = settings_for(tmp_path, src, dst)
    name = f"{src.host}/library/app0:1.0.0"
    podman("pull", "--tls-verify=false", name)
    archive = tmp_path / "by-podman.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), name)
    # podman's RepoTags keep the registry host; syncer's name leaves it out.
    _from_archive(cfg, archive, "library/app0:1.0.0", f"{dst.host}/back/app0")
    assert _manifest(dst.url, "back/app0", "1.0.0") == _as_stored(image)
