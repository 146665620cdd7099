"""Referrers at the destination: listed by its referrers API where it has one (a manifest
pushed with `subject` is listed by the registry itself), otherwise in the referrers tag
schema's index at `sha256-<hex>`, which is merged, never overwritten: what the
destination's index already lists stays listed, so two runs that each carry one referrer
leave both (as cosign and oras do when they add one).

Merges of one index are serialised within the run (a signature carried before its tag and
the `sha256-<hex>` tag itself, copied with `referrers: true`, may meet there).

A merged index carries the source index's digest (`io.syncer.source.digest`, as a filtered
index does), so the next run sees it as up to date instead of merging and pushing it again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from syncer.config.syncfile import ResolvedEntry
from syncer.errors import ContentError, NotFound
from syncer.registry.client import FetchedManifest
from syncer.registry.digests import digest_of
from syncer.registry.oci import OCI_INDEX, Descriptor, ImageIndex, ImageManifest, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.sync.planner import REFERRER_TAG
from syncer.sync.platforms import SOURCE_DIGEST_ANNOTATION, expected_source_digest
from syncer.verify.places import Places, schema_tag


class Publisher:
    def __init__(self, client: Store, places: Places) -> None:
        self.client = client
        self.places = places
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def publish(self, dst: Reference, subject: str, listed: Sequence[Descriptor]) -> None:
        """Make `listed` (referrers of `subject`, already pushed by digest) findable at
        `dst`: nothing more where the registry has the API, else merged into its index."""
        if not listed or await self.places.has_api(dst, subject):
            return
        tag = schema_tag(subject)
        async with self._lock(dst, subject):
            there, annotations = await self._index(dst, tag)
            have = {m.get("digest") for m in there}
            new = [_as_json(d) for d in listed if d.digest not in have]
            if new:
                data = _index_bytes([*there, *new], annotations)
                await self.client.put_manifest(dst.repo(), tag, data, OCI_INDEX)

    @asynccontextmanager
    async def merging(
        self, dst: Reference, tag: str, fetched: FetchedManifest
    ) -> AsyncIterator[FetchedManifest]:
        """For a copy of the source's `sha256-<hex>` index to `dst:tag`: the index to push,
        with what the destination's lists and the source's does not appended. Held until
        the caller has pushed it."""
        match = REFERRER_TAG.fullmatch(tag)
        if match is None or tag != schema_tag(f"sha256:{match.group(1)}"):
            yield fetched
            return
        try:
            source = parse_manifest(fetched.data, fetched.media_type, what=tag)
        except ContentError:
            source = None
        if not isinstance(source, ImageIndex):
            yield fetched
            return
        async with self._lock(dst, f"sha256:{match.group(1)}"):
            there, _ = await self._index(dst, tag)
            own = {d.digest for d in source.manifests}
            extra = [m for m in there if m.get("digest") not in own]
            if not extra:
                yield fetched
                return
            raw = json.loads(fetched.data)
            raw["manifests"] = [*raw["manifests"], *extra]
            raw["annotations"] = {
                **(raw.get("annotations") or {}),
                SOURCE_DIGEST_ANNOTATION: fetched.digest,
            }
            data = json.dumps(raw, separators=(",", ":")).encode()
            yield FetchedManifest(data, OCI_INDEX, digest_of(data))

    def _lock(self, dst: Reference, subject: str) -> asyncio.Lock:
        return self._locks.setdefault((dst.repo().name, subject), asyncio.Lock())

    async def _index(self, dst: Reference, tag: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The descriptors the destination's `tag` lists, as JSON, and its annotations; none
        when it is absent or is no index (an index is pushed over it)."""
        try:
            got = await self.client.get_manifest(dst.repo().with_tag(tag))
        except NotFound:
            return [], {}
        try:
            raw = json.loads(got.data)
            parsed = parse_manifest(got.data, got.media_type, what=tag)
        except (ContentError, ValueError):
            return [], {}
        if not isinstance(parsed, ImageIndex):
            return [], {}
        annotations = raw.get("annotations")
        return (
            [m for m in raw.get("manifests", []) if isinstance(m, dict)],
            annotations if isinstance(annotations, dict) else {},
        )


async def merged_from(
    client: Store, dst: Reference, tag: str, dst_digest: str | None, src_digest: str | None
) -> str | None:
    """The digest to plan with for the destination's `tag`: the source's, where it holds
    our merge of this very source index; else `dst_digest`. A destination GET, made
    only for a `sha256-<hex>` tag whose digests differ."""
    if dst_digest is None or src_digest is None or dst_digest == src_digest:
        return dst_digest
    if not REFERRER_TAG.fullmatch(tag):
        return dst_digest
    try:
        got = await client.get_manifest(dst.repo().with_digest(dst_digest))
    except NotFound:
        return dst_digest
    return src_digest if expected_source_digest(got.data) == src_digest else dst_digest


def unwanted_referrer(entry: ResolvedEntry, tag: str, fetched: FetchedManifest) -> str | None:
    """Why a referrer tag is not copied (`referrers_filter.artifact_types`), or None."""
    if not entry.referrer_types or not REFERRER_TAG.fullmatch(tag):
        return None
    manifest = parse_manifest(fetched.data, fetched.media_type)
    kind = getattr(manifest, "artifact_type", None)
    if kind is None and isinstance(manifest, ImageManifest):
        kind = manifest.config.media_type
    if kind in entry.referrer_types:
        return None
    return f"artifact type {kind} not in referrers_filter.artifact_types"


def _as_json(desc: Descriptor) -> dict[str, Any]:
    return desc.model_dump(by_alias=True, exclude_none=True)


def _index_bytes(manifests: list[dict[str, Any]], annotations: dict[str, Any]) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, separators=(",", ":")).encode()
