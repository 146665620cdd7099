"""Read-only commands: `syncer tags`, `syncer catalog`, `syncer inspect`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from syncer.config.registryfile import registry_settings
from syncer.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, SyncerError
from syncer.registry.client import RegistryClient
from syncer.registry.oci import INDEX_TYPES, ImageIndex, parse_manifest
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference
from syncer.store import Store, Stores, parse_reference
from syncer.store.references import is_layout, split_layout

RegistryLookup = Callable[[str], RegistryConfig]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tags", help="list a repository's tags with digests")
    p.add_argument(
        "repository",
        help="e.g. 127.0.0.1:5000/mirror/alpine or oci:/media/usb/bundle:mirror/alpine",
    )
    p.add_argument("--no-digests", action="store_true", help="only list tag names (one request)")
    _common(p, _tags)
    p = sub.add_parser("catalog", help="list a registry's repositories (_catalog)")
    p.add_argument("registry", help="e.g. 127.0.0.1:5000 or oci:/media/usb/bundle")
    p.add_argument("--filter", help="only repositories matching REGEX")
    _common(p, _catalog)
    p = sub.add_parser("inspect", help="show a manifest or index summary")
    p.add_argument(
        "reference", help="e.g. docker.io/library/alpine:3.20 or oci:/media/usb/bundle:alpine:3.20"
    )
    _common(p, _inspect)


def _common(p: argparse.ArgumentParser, func: Callable[..., Awaitable[Any]]) -> None:
    p.add_argument(
        "-c",
        "--config",
        help="sync.yaml whose `registries:` entry for the contacted registry applies, read "
        "strictly (default: $SYNCER_CONFIG or ./sync.yaml, where a problem is only a warning)",
    )
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.set_defaults(func=lambda args: _run(args, func))


def registry_lookup(config: str | None) -> RegistryLookup:
    """The contacted registry's settings from sync.yaml (`-c FILE` strictly, else
    `$SYNCER_CONFIG` or `./sync.yaml` leniently); the rest of the file is not needed."""
    return registry_settings(config)


def _run(args: argparse.Namespace, func: Callable[..., Awaitable[Any]]) -> int:
    try:
        lookup = registry_lookup(args.config)
        data = asyncio.run(_with_client(lookup, func, args))
    except (ConfigError, ValueError) as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SyncerError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        _print_table(data)
    return EXIT_OK


async def _with_client(
    lookup: RegistryLookup, func: Callable[..., Awaitable[Any]], args: argparse.Namespace
) -> Any:
    stores = Stores(RegistryClient(lookup))  # registries and `oci:` layouts alike
    try:
        return await func(stores, args)
    finally:
        await stores.aclose()


async def _tags(client: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    repo = parse_reference(args.repository).repo()
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
        registry_ref = Reference.parse(f"{args.registry}/x")
    pattern = re.compile(args.filter) if args.filter else None
    repos = await client.catalog(registry_ref)
    return [{"repository": r} for r in repos if pattern is None or pattern.search(r)]


async def _inspect(client: Store, args: argparse.Namespace) -> list[dict[str, Any]]:
    ref = parse_reference(args.reference)
    if ref.identifier is None:
        ref = ref.with_tag("latest")
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


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    table = [[k.upper() for k in keys]]
    for r in rows:
        table.append([_cell(r.get(k)) for k in keys])
    widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
