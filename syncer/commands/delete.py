"""`syncer delete REF`: delete a tag's manifest, by digest, as `crane delete` does.

Registries delete manifests, not tags: every tag on the digest goes with it. So the
command first finds those tags (one listing, one HEAD per tag) and refuses unless
--force when REF is not the only one; it also refuses when an index another tag holds
names the digest, since that index would break. Costs: 1 HEAD, 1 tag listing, 1 HEAD
per other tag, a GET per index among them, and 1 DELETE (none with --dry-run).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from syncer.commands import summary
from syncer.commands._common import argument, open_for_writing, store_command
from syncer.errors import NeedsForce, NotFound
from syncer.registry.oci import IMAGE_TYPES
from syncer.store import Stores
from syncer.store.references import is_archive
from syncer.sync.prune import reachable

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "delete",
        help=summary("delete"),
        description="Delete REF's manifest by digest. Refuses when other tags share the "
        "digest unless --force (then they are deleted too), and when an index another "
        "tag holds names it.",
    )
    p.add_argument("reference", metavar="REF", help="e.g. registry.example.com/app:1.0-rc1")
    p.add_argument("--force", action="store_true", help="also delete tags sharing the digest")
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted only")
    store_command(p, _delete)


async def _unlimited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()  # no concurrency limit beyond asyncio.gather's own


async def _delete(stores: Stores, args: argparse.Namespace) -> list[dict[str, Any]]:
    ref = argument(args.reference)  # bad input: exit 2, no request
    if not args.dry_run or is_archive(ref.registry):  # read-only: refused even to a dry run
        open_for_writing(stores, ref)
    info = await stores.head_manifest(ref)
    if info is None:
        raise NotFound(f"{ref}: not found; nothing was deleted")
    repo, digest = ref.repo(), info.digest
    others = [t for t in await stores.list_tags(repo) if t != ref.tag]
    heads = await asyncio.gather(*(stores.head_manifest(repo.with_tag(t)) for t in others))
    held = {t: i for t, i in zip(others, heads, strict=True) if i is not None}
    sharing = sorted(t for t, i in held.items() if i.digest == digest)
    parents = sorted(
        t for t, i in held.items() if i.digest != digest and i.media_type not in IMAGE_TYPES
    )
    if parents:
        used = await reachable(stores, _unlimited, repo, parents, [])
        if digest in used.digests:
            raise NeedsForce(
                f"not deleted: {digest} is a child of an index that another tag of {repo} "
                f"holds (one of {', '.join(parents)}); deleting it would break that index"
            )
    if sharing and not args.force:
        raise NeedsForce(
            f"not deleted: {digest} is also tagged {', '.join(sharing)} in {repo}, and a "
            "registry deletes the manifest with every tag on it; use --force to delete "
            "them all (nothing was deleted)"
        )
    tags = ([ref.tag] if ref.tag else []) + sharing
    if not args.dry_run:
        await stores.delete_manifest(repo, digest)  # 405: UnsupportedError, as in prune
    action = "would_delete" if args.dry_run else "deleted"
    return [{"tag": f"{repo}:{t}", "digest": digest, "action": action} for t in tags] or [
        {"tag": None, "digest": f"{repo}@{digest}", "action": action}
    ]
