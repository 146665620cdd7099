"""Read-only commands: `syncer tags`, `syncer catalog`, `syncer inspect`."""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from syncer.commands import summary
from syncer.commands._common import argument, store_command, user_input
from syncer.registry.oci import INDEX_TYPES, ImageIndex, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Store, parse_reference
from syncer.store.references import is_layout, split_layout


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tags", help=summary("tags"))
    p.add_argument(
        "repository",
        help="e.g. 127.0.0.1:5000/mirror/alpine or oci:/media/usb/bundle:mirror/alpine",
    )
    p.add_argument("--no-digests", action="store_true", help="only list tag names (one request)")
    store_command(p, _tags)
    p = sub.add_parser("catalog", help=summary("catalog"))
    p.add_argument("registry", help="e.g. 127.0.0.1:5000 or oci:/media/usb/bundle")
    p.add_argument("--filter", help="only repositories matching REGEX")
    store_command(p, _catalog)
    p = sub.add_parser("inspect", help=summary("inspect"))
    p.add_argument(
        "reference", help="e.g. docker.io/library/alpine:3.20 or oci:/media/usb/bundle:alpine:3.20"
    )
    store_command(p, _inspect)


async def _tags(client: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    repo = user_input(parse_reference, args.repository).repo()
    tags = sorted(await client.list_tags(repo))
    if args.no_digests:
        return [{"tag": t} for t in tags]

    async def one(tag: str) -> dict[str, Any]:
        ref = repo.with_tag(tag)
        info = await client.head_manifest(ref)
        row: dict[str, Any] = {"tag": tag, "digest": info.digest if info else None}
        row["media_type"] = info.media_type if info else None
        # Only an index names platforms; a GET per plain image would spend pull quota.
        row["platforms"] = (
            await _platforms(client, ref) if info and info.media_type in INDEX_TYPES else []
        )
        return row

    return list(await asyncio.gather(*(one(t) for t in tags)))


async def _platforms(client: Store, ref: Reference) -> list[str]:
    got = await client.get_manifest(ref)
    manifest = parse_manifest(got.data, got.media_type)
    if isinstance(manifest, ImageIndex):
        return [str(d.platform) for d in manifest.manifests if d.platform]
    return []


async def _catalog(client: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    if is_layout(args.registry):
        registry_ref = Reference(split_layout(args.registry)[0], "x")
    else:
        registry_ref = user_input(Reference.parse, f"{args.registry}/x")
    pattern = user_input(_regex, args.filter) if args.filter else None
    repos = await client.catalog(registry_ref)
    return [{"repository": r} for r in repos if pattern is None or pattern.search(r)]


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"--filter: invalid regex: {exc}") from None


async def _inspect(client: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    ref = argument(args.reference)
    got = await client.get_manifest(ref)
    manifest = parse_manifest(got.data, got.media_type)
    head = {
        "reference": str(ref),
        "digest": got.digest,
        "media_type": got.media_type,
        "size": len(got.data),
    }
    if isinstance(manifest, ImageIndex):
        return [head] + [
            {
                "platform": str(d.platform or "-"),
                "digest": d.digest,
                "media_type": d.media_type,
                "size": d.size,
            }
            for d in manifest.manifests
        ]
    return [head] + [
        {"blob": d.media_type, "digest": d.digest, "size": d.size} for d in manifest.blobs()
    ]
