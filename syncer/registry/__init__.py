"""Talks to registries: references, OCI wire types, HTTP with auth, retries and limits.

Imports only `syncer.errors` from the rest of syncer: everything above builds on it.
"""

from syncer.registry.client import FetchedManifest, ManifestInfo, RegistryClient
from syncer.registry.oci import Descriptor, ImageIndex, ImageManifest, parse_manifest
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference
from syncer.registry.transport import RegistryRequest, RegistrySession

__all__ = [
    "Descriptor",
    "FetchedManifest",
    "ImageIndex",
    "ImageManifest",
    "ManifestInfo",
    "Reference",
    "RegistryClient",
    "RegistryConfig",
    "RegistryRequest",
    "RegistrySession",
    "parse_manifest",
]
