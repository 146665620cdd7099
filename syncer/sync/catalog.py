"""Turn glob and template entries into one concrete entry per repository."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from syncer.config.patterns import glob_matches, render_destination
from syncer.config.syncfile import ResolvedEntry
from syncer.errors import (
    AuthenticationError,
    InvalidReference,
    NotFound,
    PermissionDenied,
    RegistryError,
)
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.store.references import parse_reference, repository_reference


@dataclass(frozen=True)
class Expansion:
    entries: list[ResolvedEntry]
    # Sources that cannot be mirrored, with why: the catalog could not be listed, or a name
    # it lists is not a valid repository (here or at the destination). Each is one failed
    # entry of the report; the other repositories proceed.
    failed: dict[str, str] = field(default_factory=dict)


async def expand_entry(client: Store, entry: ResolvedEntry) -> Expansion:
    """One concrete entry per repository: globs list the catalog, templates render."""
    if entry.glob is None and entry.dest_template is None:
        return Expansion([entry])
    src = entry.source
    if entry.glob is not None:
        prefix, pattern = entry.glob
        # The namespace is the glob's first fixed component: what Docker Hub, Quay and
        # Harbor list (a distribution registry's `_catalog` is filtered by it).
        namespace = prefix.split("/")[0] or None
        try:
            listed = await client.catalog(Reference(src.registry, "catalog"), namespace=namespace)
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
    out = Expansion([])
    for repo in sorted(repos):
        try:
            out.entries.append(concrete_entry(entry, repo, prefix))
        except InvalidReference as e:
            out.failed[Reference(src.registry, repo).name] = f"not mirrored: {e}"
    return out


def concrete_entry(entry: ResolvedEntry, repo: str, prefix: str = "") -> ResolvedEntry:
    """`entry` for source repository `repo` (raises InvalidReference when a name is invalid)."""
    src = entry.source
    template = entry.dest_template or str(entry.destination)
    rendered = render_destination(template, repo, prefix, glob=entry.glob is not None)
    source = repository_reference(src.registry, repo)
    dst = parse_reference(rendered)
    return dataclasses.replace(
        entry,
        source=dataclasses.replace(source, tag=src.tag, digest=src.digest),
        destination=dst.with_tag(src.tag) if src.tag else dst,
        glob=None,
        dest_template=None,
    )
