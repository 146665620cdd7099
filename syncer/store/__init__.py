"""Where images live: the `Store` interface and its implementations.

`RegistryClient` (from `syncer.registry`) is the registry store as it stands; `OciLayout`
is an OCI image layout directory; `ociarchive.OciArchive` is a layout inside one tar, read in
place (what `bundle.pack` writes for the trip across an air gap). Imports `syncer.errors`
and `syncer.registry` only.
"""

from syncer.store.base import BlobBytes, Store
from syncer.store.ocilayout import OciLayout
from syncer.store.references import parse_reference
from syncer.store.router import Stores

__all__ = ["BlobBytes", "OciLayout", "Store", "Stores", "parse_reference"]
