"""`docker-archive:FILE.tar`: what `docker save` writes, read in place as a layout.

Two formats, told apart by their members:
- Docker 25+ (and what syncer writes): an OCI layout (`index.json`, `blobs/`) plus the
  classic `manifest.json`. `index.json` is preferred: its manifests are served as stored,
  so their digests are the source's. An entry's name is its `io.containerd.image.name`
  annotation, else a `REPOSITORY:TAG` ref.name, else the `RepoTags` of the manifest.json
  entry with the same config.
- Classic (`docker save` before 25, skopeo, podman): `manifest.json` only. Each entry is
  presented as a Docker v2 schema2 manifest over its config and layers as stored, so every
  descriptor matches its blob: layers are mostly uncompressed tars there, whose digest is
  the config's diff_id; a compressed one is hashed once when the archive is opened. The
  manifest's bytes are syncer's (the archive has none), so its digest is not a registry's.

A name is a `RepoTags` entry without its registry host, as syncer spells a repository
(`alpine:3.20` is `library/alpine:3.20`; `alpine` is accepted for it). Paths that
manifest.json names go through `TarMembers.resolve`; a problem found on opening is a
ConfigError naming the file and the member, a blob that does not match its digest fails
its copy naming both.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from syncer.errors import (
    ConfigError,
    ContentError,
    DigestMismatch,
    InvalidReference,
    ManifestError,
)
from syncer.registry.client import FetchedManifest, ManifestInfo
from syncer.registry.digests import digest_of
from syncer.registry.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    ImageManifest,
    manifest_media_type,
    parse_manifest,
)
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store.layoutread import REF_NAME, LayoutReader, addressable, blob_name
from syncer.store.tarmembers import TarMembers

__all__ = ["CONTAINERD_NAME", "DOCKER_LAYER_TAR", "DockerArchive", "repo_tag"]

CONTAINERD_NAME = "io.containerd.image.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"  # uncompressed
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_METADATA_BYTES = 64 * 1024 * 1024
_FIX = "name a tar that `docker save`, `podman save` or syncer wrote"
_BLOB_PATH = re.compile(r"blobs/sha256/([0-9a-f]{64})")


def repo_tag(name: str) -> tuple[str, str] | None:
    """`(REPOSITORY, TAG)` of a RepoTags entry (`[host/]path:tag`), the host left out;
    None when it is no valid tagged reference."""
    try:
        ref = Reference.parse(name)
    except InvalidReference:
        return None
    return (ref.repository, ref.tag) if ref.tag and not ref.digest else None


def _layer_type(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return DOCKER_LAYER
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return DOCKER_LAYER_ZSTD
    return DOCKER_LAYER_TAR


class DockerArchive(LayoutReader):
    """A read-only view of the docker archive at `path`, as a layout of its images."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path
        self._tar = TarMembers(path, _FIX)
        self._blob_member: dict[str, str] = {}  # digest -> member (classic configs, layers)
        self._synth: dict[str, bytes] = {}  # digest -> a manifest syncer made (classic)
        self._entries: list[dict[str, Any]] = []  # index.json entries, ref.name REPO:TAG
        try:
            self._open()
        except (ContentError, ValueError) as exc:  # a broken archive: the input is wrong
            raise ConfigError(f"{exc}; {_FIX}") from None

    def _open(self) -> None:
        files = self._tar.files
        if "index.json" not in files and "manifest.json" not in files:
            raise ConfigError(f"{self.path}: a tar, but no manifest.json or index.json in it")
        listed = self._manifest_json() if "manifest.json" in files else []
        if "index.json" in files:
            self._from_index(listed)
        else:
            for item in listed:
                self._from_classic(item)

    def _manifest_json(self) -> list[dict[str, Any]]:
        where = f"{self.path}: member manifest.json"
        try:
            raw = json.loads(self._tar.small("manifest.json", MAX_METADATA_BYTES))
        except ValueError:
            raise ManifestError(f"{where}: not JSON") from None
        if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
            raise ManifestError(f"{where}: not a list of {{Config, RepoTags, Layers}}")
        for n, item in enumerate(raw):
            if not isinstance(item.get("Config"), str) or not isinstance(item.get("Layers"), list):
                raise ManifestError(f"{where}: entry {n} lacks Config or Layers")
        return raw

    def _names(self, item: dict[str, Any]) -> list[tuple[str, str]]:
        tags = item.get("RepoTags") or []
        return [key for t in tags if isinstance(t, str) and (key := repo_tag(t))]

    def _add(self, media_type: str, digest: str, size: int, names: list[tuple[str, str]]) -> None:
        for repo, tag in names:
            self._entries.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": size,
                    "annotations": {REF_NAME: f"{repo}:{tag}"},
                }
            )

    # -- Docker 25+: the OCI layout inside --------------------------------------

    def _from_index(self, listed: list[dict[str, Any]]) -> None:
        where = f"{self.path}: member index.json"
        try:
            index = json.loads(self._tar.small("index.json", MAX_METADATA_BYTES))
            manifests = index["manifests"]
            assert isinstance(manifests, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ManifestError(f"{where}: not an image index") from None
        by_config = {
            m[1]: self._names(item)
            for item in listed
            if (m := _BLOB_PATH.fullmatch(str(item["Config"]).removeprefix("./")))
        }
        for entry in manifests:
            desc = Descriptor.model_validate(entry)
            annotations = desc.annotations or {}
            full, ref_name = annotations.get(CONTAINERD_NAME), annotations.get(REF_NAME)
            key = repo_tag(full) if full else None
            key = key or (addressable(ref_name) if ref_name else None)
            names = [key] if key else by_config.get(self._config_hex(desc), [])
            self._add(desc.media_type, desc.digest, desc.size, names)

    def _config_hex(self, desc: Descriptor) -> str:
        size = self._blob_size(desc.digest)
        if size is None or size > MAX_MANIFEST_BYTES:
            return ""
        data = self._tar.small(blob_name(desc.digest), MAX_MANIFEST_BYTES)
        try:
            manifest = parse_manifest(data, manifest_media_type(data, desc.media_type))
        except ManifestError:
            return ""
        if not isinstance(manifest, ImageManifest):
            return ""
        return manifest.config.digest.partition(":")[2]

    # -- classic: a manifest made from manifest.json ----------------------------

    def _from_classic(self, item: dict[str, Any]) -> None:
        config_member = self._tar.resolve(item["Config"], "manifest.json Config")
        config = self._tar.small(config_member, MAX_CONFIG_BYTES)
        config_digest = digest_of(config)
        named = _BLOB_PATH.fullmatch(config_member) or re.fullmatch(
            r"([0-9a-f]{64})\.json", config_member
        )
        if named and f"sha256:{named[1]}" != config_digest:
            raise DigestMismatch(
                f"{self.path}: member {config_member}", f"sha256:{named[1]}", config_digest
            )
        self._blob_member[config_digest] = config_member
        try:
            diff_ids = list(json.loads(config)["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise ManifestError(
                f"{self.path}: member {config_member}: not an image config (no rootfs.diff_ids)"
            ) from None
        layers = []
        for n, path in enumerate(item["Layers"]):
            member = self._tar.resolve(str(path), "manifest.json Layers")
            size = self._tar.files[member][1]
            media_type = _layer_type(self._head(member))
            if named_layer := _BLOB_PATH.fullmatch(member):
                digest = f"sha256:{named_layer[1]}"
            elif media_type == DOCKER_LAYER_TAR and n < len(diff_ids):
                digest = str(diff_ids[n])  # an uncompressed layer is its diff_id
            else:
                digest = self._hash(member)
            self._blob_member[digest] = member
            layers.append({"mediaType": media_type, "size": size, "digest": digest})
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
            "layers": layers,
        }
        data = json.dumps(manifest, indent=3).encode()
        self._synth[digest_of(data)] = data
        self._add(DOCKER_MANIFEST, digest_of(data), len(data), self._names(item))

    def _head(self, member: str) -> bytes:
        offset, size = self._tar.files[member]
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(min(size, 8))

    def _hash(self, member: str) -> str:
        offset, left = self._tar.files[member]
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            f.seek(offset)
            while left > 0 and (chunk := f.read(min(1024 * 1024, left))):
                h.update(chunk)
                left -= len(chunk)
        return f"sha256:{h.hexdigest()}"

    # -- the reader's primitives ----------------------------------------------

    def index_bytes(self) -> bytes:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self._entries}
        return json.dumps(index).encode()

    def _member(self, digest: str) -> str | None:
        found = self._blob_member.get(digest)
        if found is None and blob_name(digest) in self._tar.files:
            found = blob_name(digest)
        return found

    def _blob_size(self, digest: str) -> int | None:
        if digest in self._synth:
            return len(self._synth[digest])
        member = self._member(digest)
        return None if member is None else self._tar.files[member][1]

    async def _blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        if digest in self._synth:
            yield self._synth[digest]
            return
        member = self._member(digest)
        assert member is not None, digest  # asked only after _blob_size found it
        async for chunk in self._tar.chunks(member):
            yield chunk

    def blob_source(self, digest: str) -> tuple[str, int, int] | None:
        """Where `digest`'s bytes lie: (member, offset, size); None for a made manifest
        or an absent blob (the writer copies a kept image from here)."""
        member = self._member(digest)
        if member is None:
            return None
        offset, size = self._tar.files[member]
        return member, offset, size

    def _blob_what(self, digest: str) -> str:
        """Naming the member: a corrupt layer is found by its path in the archive."""
        return f"blob {digest} (member {self._member(digest)}) in {self.path}"

    # -- `alpine` for `library/alpine`, as docker says it -----------------------

    def _canonical(self, ref: Reference) -> Reference:
        if "/" in ref.repository or any(r == ref.repository for r, _t in self._tags()):
            return ref
        return ref.with_repository(f"library/{ref.repository}")

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        return await super().list_tags(self._canonical(repo), page_size=page_size)

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        return await super().head_manifest(self._canonical(ref))

    async def get_manifest(
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        return await super().get_manifest(self._canonical(ref), pulls=pulls, limit=limit)

    async def aclose(self) -> None:
        return None

    # -- writes: `DockerArchiveWriter`, when the archive is a destination ------

    def _read_only(self) -> ConfigError:
        return ConfigError(f"docker-archive:{self.path} is opened as a source, read-only")
