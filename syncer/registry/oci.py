"""Wire types: media types, descriptors, manifests and indexes.

Manifests are always kept as the exact bytes the source served; these models are
only a parsed *view* used to find children and blobs. Unknown fields are kept
(`extra="allow"`) so nothing is lost, but we never re-serialise them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncer.errors import ManifestError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable."
# Every layer type a container runtime unpacks as a filesystem: OCI's (tar, +gzip, +zstd,
# non-distributable) and Docker's (rootfs diff, foreign).
FILESYSTEM_LAYER_PREFIXES = (
    "application/vnd.oci.image.layer.",
    "application/vnd.docker.image.rootfs.",
)

INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

# Sent on every manifest request: a registry only serves OCI content to clients
# that say they accept it.
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
        "application/vnd.oci.artifact.manifest.v1+json",
    ]
)

# Manifests are small; a "manifest" larger than this is hostile or broken.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def is_filesystem_layer(media_type: str) -> bool:
    """A layer a runtime would unpack: what makes a manifest a runnable image. Any other
    type with a `tar` part counts too (`application/x-tar`, `...tar+gzip`)."""
    return media_type.startswith(FILESYSTEM_LAYER_PREFIXES) or "tar" in re.split(
        r"[./+;=-]", media_type
    )


class Platform(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    os: str = ""
    architecture: str = ""
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


class Descriptor(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    media_type: str = Field(default="", alias="mediaType")
    digest: str
    size: int = Field(ge=0)
    urls: list[str] | None = None
    platform: Platform | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    @property
    def is_foreign(self) -> bool:
        """Layers that must not be pushed anywhere but their origin."""
        return bool(self.urls) and (
            self.media_type == DOCKER_FOREIGN_LAYER
            or self.media_type.startswith(OCI_NONDISTRIBUTABLE_PREFIX)
        )


class ImageManifest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    config: Descriptor
    layers: list[Descriptor] = []
    subject: Descriptor | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    def blobs(self) -> list[Descriptor]:
        return [self.config, *self.layers]


class ImageIndex(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    manifests: list[Descriptor]
    subject: Descriptor | None = None


Manifest = ImageManifest | ImageIndex


def manifest_media_type(data: bytes, content_type: str) -> str:
    """The type a manifest is pushed as: its own `mediaType` field when it has one, else the
    server's Content-Type when that names a manifest type, else what its shape says.

    The Content-Type is only the server's word (a proxy or a registry may answer a generic
    `application/json`), and a destination picks its parser by the type we send:
    distribution reads `application/json` as Docker schema 1 and refuses the manifest.
    """
    try:
        raw: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return content_type  # not JSON: parse_manifest will say so
    if not isinstance(raw, dict):
        return content_type
    declared = raw.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if content_type in INDEX_TYPES | IMAGE_TYPES | SCHEMA1_TYPES:
        return content_type
    # OCI makes `mediaType` optional; the shape still tells an index from an image.
    return OCI_INDEX if "manifests" in raw else OCI_MANIFEST if "config" in raw else content_type


def parse_manifest(data: bytes, media_type: str, *, what: str = "manifest") -> Manifest:
    """Parse a manifest for its references. Raises ManifestError on anything malformed."""
    if media_type in SCHEMA1_TYPES:
        raise ManifestError(f"{what}: Docker schema 1 manifests are obsolete and not supported")
    try:
        raw: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{what}: expected a JSON object")
    declared = raw.get("mediaType")
    kind = media_type if media_type in INDEX_TYPES | IMAGE_TYPES else declared
    if kind not in INDEX_TYPES | IMAGE_TYPES:
        kind = OCI_INDEX if "manifests" in raw else OCI_MANIFEST if "config" in raw else None
    if kind is None:
        raise ManifestError(f"{what}: unsupported media type {media_type!r}")
    try:
        if kind in INDEX_TYPES:
            return ImageIndex.model_validate(raw)
        return ImageManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{what}: malformed ({loc}: {first['msg']})") from None
