"""`syncer tag REF NEWTAG...`: more tags on a manifest, inside its repository.

As `docker tag` plus `docker push` or `crane tag`: one manifest GET, a HEAD per new tag
(to know what it holds now) and one PUT of the same bytes per tag that changes. The blobs
are already in the repository, so no blob is read or written. A tag that holds another
digest is moved only with --force; without it nothing at all is written.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from syncer.commands import summary
from syncer.commands._common import argument, open_for_writing, store_command, user_input
from syncer.errors import NeedsForce, NotFound
from syncer.registry.reference import validate_tag
from syncer.store import Stores


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tag",
        help=summary("tag"),
        description="Tag REF's manifest as NEWTAG in the same repository: one manifest GET, "
        "one HEAD and at most one PUT per new tag, no blob requests.",
    )
    p.add_argument("reference", metavar="REF", help="e.g. registry.example.com/app:1.2.3")
    p.add_argument("new_tags", metavar="NEWTAG", nargs="+", help="e.g. stable")
    p.add_argument("--force", action="store_true", help="move a tag that holds another digest now")
    store_command(p, _tag)


async def _tag(stores: Stores, args: argparse.Namespace) -> list[dict[str, Any]]:
    ref = argument(args.reference)  # bad input: exit 2, no request
    new_tags = list(dict.fromkeys(user_input(validate_tag, t) for t in args.new_tags))
    open_for_writing(stores, ref)
    try:
        got = await stores.get_manifest(ref)
    except NotFound as exc:
        raise NotFound(f"{ref}: not found", status=exc.status, errors=exc.errors) from None
    repo = ref.repo()
    now = await asyncio.gather(*(stores.head_manifest(repo.with_tag(t)) for t in new_tags))
    held = {t: i.digest for t, i in zip(new_tags, now, strict=True) if i is not None}
    taken = {t: d for t, d in held.items() if d != got.digest}
    if taken and not args.force:
        listed = ", ".join(f"{repo}:{t} holds {d}" for t, d in sorted(taken.items()))
        raise NeedsForce(
            f"not tagged: {listed}, not {got.digest}; use --force to move "
            f"{'it' if len(taken) == 1 else 'them'} (nothing was written)"
        )
    rows: list[dict[str, Any]] = []
    for t in new_tags:  # one after another: a failure leaves a clear, short list done
        if held.get(t) == got.digest:
            action = "up_to_date"
        else:
            await stores.put_manifest(repo, t, got.data, got.media_type)
            action = "moved" if t in taken else "tagged"
        rows.append(
            {"tag": f"{repo}:{t}", "digest": got.digest, "action": action, "was": held.get(t)}
        )
    return rows
