"""Seed a test registry by writing files into its storage instead of pushing over HTTP.

Seeding over HTTP cost the suite ~10.5k requests of its own (23.4k -> 12.9k registry
requests per suite without them), ~3 ms of CPU each across registry and client. A registry
started by tests/support/registry.py keeps everything in distribution 2.8's filesystem
layout and has no blob descriptor cache, so files written there are served at once, exactly
as if that process had accepted the push.

Only what the registry would certainly accept is written: a blob whose bytes match its
digest, a manifest of a known type whose every blob (or child manifest) is already in the
repository, under a valid name and tag. Anything else returns False and the caller pushes
over HTTP, so the registry itself still refuses what it refuses. Only a live process serving
exactly `base_config` (open, plain filesystem: a seed process, or an anonymous registry
without extra config) is written into; a proxy, auth, TLS or validation config is not.

Every file is written to a temporary name in its own directory and renamed into place, and
data before links, so a registry reading concurrently never sees half a file or a link to
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from tests.support import registry

IMAGE_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    }
)
INDEX_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    }
)
# Layers a registry does not hold (2.8 checks their URLs against its config instead).
_FOREIGN = ("foreign", "nondistributable")
# distribution's reference grammar: path components and tags.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")


def seeder_for(base_url: str) -> StorageSeeder | None:
    """A seeder writing into the storage behind `base_url`, or None: push over HTTP."""
    url = base_url.rstrip("/")
    # registry._LIVE: the processes this test process started and has not stopped.
    for proc in list(registry._LIVE):
        if proc.url != url or not proc.alive():
            continue
        fs = proc.config.get("storage", {}).get("filesystem", {})
        root = Path(fs.get("rootdirectory", ""))
        if root.is_absolute() and proc.config == registry.base_config(proc.port, root):
            return StorageSeeder(root)
    return None


def _hex(digest: str) -> str | None:
    m = _DIGEST.fullmatch(digest)
    return m[1] if m else None


def valid_repo(repo: str) -> bool:
    return len(repo) <= 255 and all(_COMPONENT.fullmatch(c) for c in repo.split("/"))


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader sees the old file, no file, or all of `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class StorageSeeder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / "docker" / "registry" / "v2"

    def _data(self, hex_: str) -> Path:
        return self.v2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"

    def _repo(self, repo: str) -> Path:
        return self.v2 / "repositories" / repo

    def _link(self, path: Path, hex_: str) -> bool:
        """Make `path` link to the blob; False when it already did."""
        want = f"sha256:{hex_}".encode()
        try:
            if path.read_bytes() == want:
                return False
        except FileNotFoundError:
            pass
        _write(path, want)
        return True

    def _store(self, data: bytes, hex_: str) -> None:
        target = self._data(hex_)
        # Content-addressed: bytes already there are these bytes (2.8 skips the move too).
        if not target.exists():
            _write(target, data)

    def _linked(self, link: Path, hex_: str, size: Any) -> bool:
        """`link` names this blob and the registry holds exactly `size` bytes of it."""
        try:
            if link.read_bytes() != f"sha256:{hex_}".encode():
                return False
            return isinstance(size, int) and self._data(hex_).stat().st_size == size
        except FileNotFoundError:
            return False

    def put_blob(self, repo: str, data: bytes, digest: str) -> bool:
        hex_ = _hex(digest)
        if hex_ is None or not valid_repo(repo) or hashlib.sha256(data).hexdigest() != hex_:
            return False
        self._store(data, hex_)
        if self._link(self._layer(repo, hex_), hex_):
            # An HTTP upload leaves this (empty) directory behind: same tree either way.
            (self._repo(repo) / "_uploads").mkdir(exist_ok=True)
        return True

    def _layer(self, repo: str, hex_: str) -> Path:
        return self._repo(repo) / "_layers" / "sha256" / hex_ / "link"

    def _revision(self, repo: str, hex_: str) -> Path:
        return self._repo(repo) / "_manifests" / "revisions" / "sha256" / hex_ / "link"

    def _references_present(self, repo: str, doc: dict[str, Any], media_type: str) -> bool:
        if media_type in IMAGE_TYPES:
            if "manifests" in doc or not isinstance(doc.get("layers"), list):
                return False
            refs, linked_at = [doc.get("config"), *doc["layers"]], self._layer
            if not doc["layers"]:
                return False
        else:
            if "config" in doc or "layers" in doc or not isinstance(doc.get("manifests"), list):
                return False
            refs, linked_at = doc["manifests"], self._revision
        for ref in refs:
            if not isinstance(ref, dict) or "urls" in ref:
                return False
            kind = ref.get("mediaType")
            if not isinstance(kind, str) or any(f in kind for f in _FOREIGN):
                return False
            if media_type in INDEX_TYPES and kind not in IMAGE_TYPES | INDEX_TYPES:
                return False
            hex_ = _hex(ref.get("digest", "")) if isinstance(ref.get("digest"), str) else None
            if hex_ is None or not self._linked(linked_at(repo, hex_), hex_, ref.get("size")):
                return False
        return True

    def put_manifest(self, repo: str, manifest: bytes, media_type: str, ref: str) -> bool:
        hex_ = hashlib.sha256(manifest).hexdigest()
        by_digest = ref.startswith("sha256:")
        if by_digest and ref != f"sha256:{hex_}":
            return False
        if not valid_repo(repo) or not (by_digest or _TAG.fullmatch(ref)):
            return False
        if media_type not in IMAGE_TYPES | INDEX_TYPES:
            return False
        try:
            doc = json.loads(manifest)
        except ValueError:
            return False
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            return False
        if doc.get("mediaType") != media_type:
            return False
        if not self._references_present(repo, doc, media_type):
            return False
        # The order a reader can live with: bytes, then the revision, then the tag.
        self._store(manifest, hex_)
        self._link(self._revision(repo, hex_), hex_)
        if not by_digest:
            tag = self._repo(repo) / "_manifests" / "tags" / ref
            self._link(tag / "index" / "sha256" / hex_ / "link", hex_)
            self._link(tag / "current" / "link", hex_)
        return True
