"""`oci-archive:FILE.tar`: a layout packed in one tar, read in place as a source.

The tar's member headers are read once (tarfile seeks over the data) and each member's
data offset kept; a blob is then read by seeking into the file, in bounded chunks and
verified like a layout's. Nothing is extracted. A delta bundle (`syncer bundle --since`)
leaves blobs out and lists them in `syncer-bundle.json`; asking for one of those raises
`NotInBundle`, which tells the person to import the earlier bundle first. The copier asks
the destination first, so a target that holds them never needs them from here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, ManifestError, NotInBundle, ResponseTooLarge
from syncer.registry.digests import verify_digest
from syncer.registry.oci import MAX_MANIFEST_BYTES, Descriptor
from syncer.store.layoutread import (
    LAYOUT_FILE,
    MAX_INDEX_BYTES,
    LayoutReader,
    blob_name,
)
from syncer.store.tarmembers import TarMembers

BUNDLE_FILE = "syncer-bundle.json"
BUNDLE_VERSION = 2  # 1 listed `requires` as one list of digests, for every repository
_FIX = "name a tar that `syncer bundle` wrote (an OCI image layout at the tar's top level)"


@dataclass(frozen=True)
class BundleInfo:
    """What `syncer-bundle.json` says: the earlier bundles this one is a delta since, and
    per repository the blob digests it expects the target to hold there already (left out
    of this tar). A version 1 file's single list reads as repository ""."""

    since: list[str] = field(default_factory=list)
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def required(self) -> set[str]:
        """Every blob left out, whatever the repository."""
        return set().union(*self.requires.values())

    def to_json(self) -> bytes:
        body = {
            "syncerBundleVersion": BUNDLE_VERSION,
            "since": self.since,
            "requires": {repo: sorted(d) for repo, d in sorted(self.requires.items())},
        }
        return json.dumps(body, indent=2).encode() + b"\n"


class OciArchive(LayoutReader):
    """A read-only layout inside the tar file at `path`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path
        if path.is_dir():
            raise ConfigError(
                f"{path}: is a directory, not a tar; {_FIX}, or write oci:{path} for a layout"
            )
        self._tar = TarMembers(path, _FIX)
        self._members = self._tar.files  # name -> (data offset, size)
        if LAYOUT_FILE not in self._members or "index.json" not in self._members:
            raise ConfigError(f"{path}: a tar, but no {LAYOUT_FILE} and index.json in it; {_FIX}")
        try:
            version = json.loads(self._small(LAYOUT_FILE, 4096))["imageLayoutVersion"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}: its {LAYOUT_FILE} member is not valid; {_FIX}") from None
        if not str(version).startswith("1."):
            raise ConfigError(f"{path}: image layout version {version} is not supported")
        self.bundle = self._bundle_info()

    def _small(self, name: str, limit: int) -> bytes:
        try:
            return self._tar.small(name, limit)
        except ResponseTooLarge:
            raise ManifestError(f"{self.path}: {name} is larger than {limit} bytes") from None

    def _bundle_info(self) -> BundleInfo:
        if BUNDLE_FILE not in self._members:
            return BundleInfo()  # a full bundle, or another tool's oci-archive
        try:
            raw: dict[str, Any] = json.loads(self._small(BUNDLE_FILE, MAX_INDEX_BYTES))
            requires = raw.get("requires") or {}
            if isinstance(requires, list):  # version 1
                requires = {"": requires}
            return BundleInfo(
                since=[str(s) for s in raw.get("since") or []],
                requires={str(r): frozenset(str(d) for d in ds) for r, ds in requires.items()},
            )
        except (ValueError, TypeError, AttributeError):
            raise ConfigError(f"{self.path}: its {BUNDLE_FILE} is not valid; {_FIX}") from None

    def blob_digests(self) -> set[str]:
        """Every blob this tar holds, by digest."""
        out = set()
        for name in self._members:
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "blobs":
                out.add(f"{parts[1]}:{parts[2]}")
        return out

    def manifest_bytes(self, desc: Descriptor) -> bytes | None:
        """A manifest's verified bytes; None when the tar lacks it."""
        if blob_name(desc.digest) not in self._members:
            return None
        data = self._small(blob_name(desc.digest), MAX_MANIFEST_BYTES)
        verify_digest(f"manifest {desc.digest} in {self.path}", data, desc.digest)
        return data

    async def aclose(self) -> None:
        return None

    # -- the reader's primitives: members of the tar --------------------------

    def index_bytes(self) -> bytes:
        return self._small("index.json", MAX_INDEX_BYTES)

    def _blob_size(self, digest: str) -> int | None:
        found = self._members.get(blob_name(digest))
        return found[1] if found else None

    def _blob_chunks(self, digest: str) -> AsyncIterator[bytes]:
        return self._tar.chunks(blob_name(digest))

    def _missing_blob(self, digest: str) -> Exception:
        if digest in self.bundle.required():
            return NotInBundle(digest, str(self.path), self.bundle.since)
        return super()._missing_blob(digest)

    # -- writes: never ---------------------------------------------------------

    def _read_only(self) -> ConfigError:
        return ConfigError(
            f"oci-archive:{self.path} is read-only; write to an oci: layout, "
            "then pack it with `syncer bundle`"
        )
