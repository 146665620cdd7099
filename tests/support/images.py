"""Build real, deterministic test images in code and push them to a registry.

Everything is byte-for-byte reproducible: tar entries have mtime 0 / uid 0 and a fixed
order, gzip headers carry mtime 0 and no file name, and JSON is serialized one fixed way.
So the same call always yields the same digests (random_layer is seeded).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin

import httpx

from tests.support.http import http_client
from tests.support.storage_seed import seeder_for

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Without the OCI types 2.8 refuses to serve OCI manifests at all (MANIFEST_UNKNOWN).
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
EPOCH = "1970-01-01T00:00:00Z"

Format = Literal["docker", "oci"]
_TYPES: dict[str, tuple[str, str, str, str]] = {
    # fmt: (manifest, index, config, gzip layer)
    "docker": (DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER),
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Blob:
        return cls(data, media_type, sha256_digest(data), len(data))

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


def make_layer(
    files: dict[str, bytes], *, media_type: str = OCI_LAYER, compresslevel: int = 6
) -> tuple[Blob, str]:
    """A real gzipped tar of `files` (path -> content); parent directories are added.
    Returns (blob, diff_id) where diff_id is the sha256 of the uncompressed tar."""
    entries: dict[str, bytes | None] = {}
    for raw_path, content in files.items():
        path = raw_path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), None)  # None marks a directory
        entries[path] = content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            body = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if body is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    raw = buf.getvalue()
    compressed = gzip.compress(raw, compresslevel=compresslevel, mtime=0)
    return Blob.of(compressed, media_type), sha256_digest(raw)


def random_layer(
    size: int, seed: int, *, media_type: str = OCI_LAYER, path: str | None = None
) -> tuple[Blob, str]:
    """A layer holding one file of `size` seeded pseudo-random bytes, so the compressed blob
    is about `size` bytes too (useful to make transfers measurably large)."""
    data = random.Random(seed).randbytes(size)
    # Level 1: random data doesn't compress anyway, and level 9 would only cost time.
    return make_layer(
        {path or f"data/random-{seed}.bin": data}, media_type=media_type, compresslevel=1
    )


@dataclass(frozen=True)
class Image:
    manifest: bytes
    media_type: str
    digest: str
    config: Blob
    layers: tuple[Blob, ...]
    platform: tuple[str, str, str | None]  # (os, architecture, variant)

    @property
    def size(self) -> int:
        return len(self.manifest)

    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class Index:
    manifest: bytes
    media_type: str
    digest: str
    children: tuple[Image, ...]

    @property
    def size(self) -> int:
        return len(self.manifest)

    def blobs(self) -> tuple[Blob, ...]:
        seen: dict[str, Blob] = {}
        for child in self.children:
            for b in child.blobs():
                seen.setdefault(b.digest, b)
        return tuple(seen.values())


def make_image(
    layers: list[tuple[Blob, str]],
    *,
    fmt: Format,
    os: str = "linux",
    arch: str = "amd64",
    variant: str | None = None,
    labels: dict[str, str] | None = None,
) -> Image:
    """A schema-2 image. Plain gzip layers are re-typed to `fmt`'s layer media type (same
    bytes, same digest), so one layer can be shared by docker and OCI images; any other
    layer type (foreign, zstd, ...) is kept as given."""
    manifest_type, _, config_type, layer_type = _TYPES[fmt]
    blobs = tuple(
        dataclasses.replace(b, media_type=layer_type)
        if b.media_type in (DOCKER_LAYER, OCI_LAYER)
        else b
        for b, _ in layers
    )
    config: dict[str, Any] = {"architecture": arch, "os": os}
    if variant:
        config["variant"] = variant
    config["created"] = EPOCH
    config["config"] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"]}
    if labels:
        config["config"]["Labels"] = dict(sorted(labels.items()))
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]}
    config["history"] = [
        {"created": EPOCH, "created_by": f"syncer-tests layer {i}"} for i in range(len(layers))
    ]
    config_blob = Blob.of(_json(config), config_type)
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in blobs],
        }
    )
    return Image(
        manifest=manifest,
        media_type=manifest_type,
        digest=sha256_digest(manifest),
        config=config_blob,
        layers=blobs,
        platform=(os, arch, variant),
    )


def make_index(children: list[Image], *, fmt: Format) -> Index:
    """A docker manifest list or OCI index over `children`, with their platforms."""
    entries = []
    for child in children:
        os_, arch, variant = child.platform
        platform = {"architecture": arch, "os": os_}
        if variant:
            platform["variant"] = variant
        entries.append(
            {
                "mediaType": child.media_type,
                "size": child.size,
                "digest": child.digest,
                "platform": platform,
            }
        )
    media_type = _TYPES[fmt][1]
    manifest = _json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    return Index(manifest, media_type, sha256_digest(manifest), tuple(children))


# --- pushing ---------------------------------------------------------------------------


def _check(resp: httpx.Response, expected: int, what: str) -> None:
    if resp.status_code != expected:
        raise RuntimeError(
            f"{what}: {resp.request.method} {resp.request.url} -> {resp.status_code} "
            f"(expected {expected}): {resp.text[:500]}"
        )


# (base URL, repository, digest) of blobs one caller knows are there: it put them there.
Pushed = set[tuple[str, str, str]]


def push_blob(
    client: httpx.Client,
    base_url: str,
    repo: str,
    blob: Blob,
    pushed: Pushed | None = None,
    *,
    via_http: bool = False,
) -> None:
    """Upload `blob` unless the registry has it; with `pushed`, unless `pushed` says so.
    Into the storage of a plain registry of ours unless `via_http` (storage_seed.py)."""
    key = (base_url, repo, blob.digest)
    if pushed is not None and key in pushed:
        return
    direct = None if via_http else seeder_for(base_url)
    if direct is not None and direct.put_blob(repo, blob.data, blob.digest):
        if pushed is not None:
            pushed.add(key)
        return
    head = client.head(f"{base_url}/v2/{repo}/blobs/{blob.digest}")
    if head.status_code == 200:
        if pushed is not None:
            pushed.add(key)
        return
    start = client.post(f"{base_url}/v2/{repo}/blobs/uploads/")
    _check(start, 202, f"start upload of {blob.digest}")
    # Location may be absolute or relative, and its query carries the upload `_state`:
    # append `digest` to it (httpx's `params=` would *replace* that query, not extend it).
    location = httpx.URL(urljoin(f"{base_url}/", start.headers["Location"]))
    done = client.put(
        location.copy_add_param("digest", blob.digest),
        content=blob.data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(done, 201, f"finish upload of {blob.digest}")
    if pushed is not None:
        pushed.add(key)


def push_manifest(
    client: httpx.Client,
    base_url: str,
    repo: str,
    manifest: bytes,
    media_type: str,
    ref: str,
    *,
    via_http: bool = False,
) -> None:
    """PUT the manifest; written into storage instead when the registry would surely take
    it (its blobs or children already there, see storage_seed.py), unless `via_http`."""
    direct = None if via_http else seeder_for(base_url)
    if direct is not None and direct.put_manifest(repo, manifest, media_type, ref):
        return
    resp = client.put(
        f"{base_url}/v2/{repo}/manifests/{ref}",
        content=manifest,
        headers={"Content-Type": media_type},
    )
    _check(resp, 201, f"put manifest {repo}:{ref}")
    got = resp.headers.get("Docker-Content-Digest")
    if got != sha256_digest(manifest):
        raise RuntimeError(f"registry stored {repo}:{ref} as {got}, not {sha256_digest(manifest)}")


def _push_image(
    client: httpx.Client,
    base_url: str,
    repo: str,
    image: Image,
    ref: str,
    pushed: Pushed,
    via_http: bool,
) -> None:
    for blob in image.blobs():
        push_blob(client, base_url, repo, blob, pushed, via_http=via_http)
    push_manifest(client, base_url, repo, image.manifest, image.media_type, ref, via_http=via_http)


def push(
    base_url: str,
    repo: str,
    item: Image | Index,
    tag: str | None,
    *,
    client: httpx.Client | None = None,
    pushed: Pushed | None = None,
    via_http: bool = False,
) -> None:
    """Push `item` to an open registry (normally `RunningRegistry.seed_url`). Children of an
    index go up by digest first, since 2.8 rejects an index whose children are missing.
    Pass `client` to push through auth or a custom CA. A blob is asked for (HEAD) once per
    call, once per `pushed` when given: a caller pushing many items that share base layers,
    with nothing deleting blobs in between, passes one set (`Fleet.push`).

    A plain registry of ours (a seed process, an anonymous registry without extra config)
    gets the files written into its storage instead, no request made (storage_seed.py);
    `via_http=True` pushes over HTTP regardless, for a test that counts those requests."""
    own = client is None
    c = client or http_client(timeout=60.0)
    known: Pushed = set() if pushed is None else pushed
    try:
        base = base_url.rstrip("/")
        if isinstance(item, Index):
            for child in item.children:
                _push_image(c, base, repo, child, child.digest, known, via_http)
            ref = tag or item.digest
            push_manifest(c, base, repo, item.manifest, item.media_type, ref, via_http=via_http)
        else:
            _push_image(c, base, repo, item, tag or item.digest, known, via_http)
    finally:
        if own:
            c.close()


def fetch_manifest_digest(
    base_url: str, repo: str, ref: str, *, client: httpx.Client | None = None
) -> str | None:
    """HEAD the manifest with every media type accepted; None when the registry says 404."""
    own = client is None
    c = client or http_client(timeout=30.0)
    try:
        resp = c.head(
            f"{base_url.rstrip('/')}/v2/{repo}/manifests/{ref}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if resp.status_code == 404:
            return None
        _check(resp, 200, f"head manifest {repo}:{ref}")
        return resp.headers["Docker-Content-Digest"]
    finally:
        if own:
            c.close()


def fetch_manifest(
    base_url: str, repo: str, ref: str, *, client: httpx.Client | None = None
) -> tuple[bytes, str]:
    """GET the manifest: (exact bytes, Content-Type)."""
    own = client is None
    c = client or http_client(timeout=30.0)
    try:
        resp = c.get(
            f"{base_url.rstrip('/')}/v2/{repo}/manifests/{ref}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        _check(resp, 200, f"get manifest {repo}:{ref}")
        return resp.content, resp.headers["Content-Type"]
    finally:
        if own:
            c.close()
