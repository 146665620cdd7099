"""Copying only some platforms: what to push instead of the source index, and how to
recognise, on later runs, that the destination already holds that filtered copy."""

from __future__ import annotations

from collections.abc import Sequence

from syncer.client import FetchedManifest, RegistryClient
from syncer.errors import ManifestError
from syncer.models import INDEX_TYPES, ImageManifest, parse_manifest
from syncer.platforms import filter_index, image_matches, is_filtered_copy_of
from syncer.reference import Reference

# An image config is a few KiB; refuse to hold anything much larger in memory.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


async def holds_filtered_copy(
    client: RegistryClient,
    dst: Reference,
    dst_digest: str,
    src_digest: str,
    platforms: Sequence[str],
) -> bool:
    """Is the destination tag our filtered copy of this very source index?

    A destination GET (never counted by Docker Hub), and only when digests differ.
    """
    got = await client.get_manifest(dst.with_digest(dst_digest))
    if got.media_type not in INDEX_TYPES:
        return False
    return is_filtered_copy_of(got.data, src_digest, platforms)


async def select_platforms(
    client: RegistryClient, src: Reference, top: FetchedManifest, platforms: Sequence[str]
) -> tuple[FetchedManifest | None, str]:
    """The manifest to publish (a filtered index, or the image itself), or None and why not."""
    if top.media_type in INDEX_TYPES:
        f = filter_index(top.data, top.media_type, top.digest, platforms)
        if f is None:
            return top, ""
        return FetchedManifest(f.data, f.media_type, f.digest), ""
    manifest = parse_manifest(top.data, top.media_type)
    if not isinstance(manifest, ImageManifest):
        return top, ""
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise ManifestError(f"image config of {src} is {manifest.config.size} bytes; too large")
    config = b"".join([c async for c in client.read_blob(src.repo(), manifest.config)])
    ok, reason = image_matches(config, platforms)
    return (top, "") if ok else (None, reason)
