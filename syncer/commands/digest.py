"""`syncer digest REF`: a manifest's digest from one HEAD, as `crane digest` does.

A HEAD is not a pull on Docker Hub, so this spends no pull quota. With --platform the
index itself must be read (one GET, which Docker Hub counts) to find the child for that
platform; an image that is not an index is its own answer.
"""

from __future__ import annotations

import argparse
from typing import Any

from syncer.commands import summary
from syncer.commands._common import argument, store_command, user_input
from syncer.errors import NotFound
from syncer.registry.oci import ImageIndex, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Stores
from syncer.sync.platforms import spec_matches


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "digest",
        help=summary("digest"),
        description="Print REF's digest from one manifest HEAD. --platform reads the "
        "index (one GET, which Docker Hub counts as a pull) and prints that child's digest.",
    )
    p.add_argument("reference", metavar="REF", help="e.g. docker.io/library/alpine:3.20")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the digest of this platform's image in an index (costs one manifest GET)",
    )
    store_command(p, _digest)


async def _digest(stores: Stores, args: argparse.Namespace) -> list[dict[str, Any]]:
    ref = argument(args.reference)  # bad input: exit 2, no request
    if args.platform:
        user_input(_platform, args.platform)  # malformed: exit 2 before any request
        return [await _child(stores, ref, args.platform)]
    info = await stores.head_manifest(ref)
    if info is None:
        raise NotFound(f"{ref}: not found")
    return [{"reference": str(ref), "digest": info.digest, "media_type": info.media_type}]


def _platform(spec: str) -> bool:
    try:
        return spec_matches(spec, "linux", "amd64", None)
    except ValueError as exc:
        raise ValueError(f"--platform: {exc}") from None


async def _child(stores: Stores, ref: Reference, platform: str) -> dict[str, Any]:
    try:
        got = await stores.get_manifest(ref)
    except NotFound as exc:
        raise NotFound(f"{ref}: not found", status=exc.status, errors=exc.errors) from None
    manifest = parse_manifest(got.data, got.media_type)
    if not isinstance(manifest, ImageIndex):
        return {"reference": str(ref), "digest": got.digest, "media_type": got.media_type}
    for d in manifest.manifests:
        p = d.platform
        if p and spec_matches(platform, p.os, p.architecture, p.variant):
            return {
                "reference": str(ref),
                "platform": str(p),
                "digest": d.digest,
                "media_type": d.media_type,
            }
    have = ", ".join(str(d.platform) for d in manifest.manifests if d.platform) or "none"
    raise NotFound(f"{ref}: no {platform} image in the index (it has {have})")
