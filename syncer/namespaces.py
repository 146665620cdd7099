"""Turn glob and template entries into one concrete entry per repository."""

from __future__ import annotations

import dataclasses

from syncer.client import RegistryClient
from syncer.config import ResolvedEntry
from syncer.errors import AuthenticationError, NotFound, PermissionDenied, RegistryError
from syncer.expand import glob_matches, render_destination
from syncer.reference import Reference


async def expand_entry(client: RegistryClient, entry: ResolvedEntry) -> list[ResolvedEntry]:
    """One concrete entry per repository: globs list the catalog, templates render."""
    if entry.glob is None and entry.dest_template is None:
        return [entry]
    src = entry.source
    if entry.glob is not None:
        prefix, pattern = entry.glob
        try:
            listed = await client.catalog(Reference(src.registry, "catalog"))
        except (AuthenticationError, PermissionDenied, NotFound) as exc:
            raise RegistryError(
                f"{src.registry} does not let us list its repositories (_catalog): "
                f"{exc.detail}; name the repositories one per entry instead",
                status=exc.status,
            ) from None
        repos = [r for r in listed if glob_matches(pattern, r)]
        repos = [r for r in repos if entry.repositories.matches(r)]
    else:
        prefix, repos = "", [src.repository]
    template = entry.dest_template or str(entry.destination)
    out = []
    for repo in sorted(repos):
        rendered = render_destination(template, repo, prefix, glob=entry.glob is not None)
        dst = Reference.parse(rendered)
        out.append(
            dataclasses.replace(
                entry,
                source=Reference(src.registry, repo, src.tag, src.digest),
                destination=dst.with_tag(src.tag) if src.tag else dst,
                glob=None,
                dest_template=None,
            )
        )
    return out
