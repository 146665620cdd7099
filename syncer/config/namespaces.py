"""Which globs a registry's listing API can expand (`catalog:` in `registries:`)."""

from __future__ import annotations

from collections.abc import Callable

from syncer.config.entry import EntryConfig
from syncer.config.patterns import split_glob
from syncer.errors import InvalidReference
from syncer.registry.namespaces import catalog_api
from syncer.registry.options import GHCR, GHCR_UNSUPPORTED, CatalogApi, RegistryConfig
from syncer.store.references import is_whole_layout

_DEFAULT = RegistryConfig()


def glob_problem(
    entry: EntryConfig, registries: Callable[[str], RegistryConfig | None]
) -> str | None:
    """Why `entry`'s glob source cannot be listed, or None. Docker Hub, Quay and Harbor list
    one namespace at a time, so the glob must name it: `docker.io/bitnami/*`. GHCR cannot be
    listed at all (unless its entry names a `catalog:`, e.g. a test standing in for it)."""
    if not entry.is_glob or is_whole_layout(entry.source):
        return None
    try:
        registry, prefix, _ = split_glob(entry.source)
    except InvalidReference:
        return None  # the source's own validator reports it
    config = registries(registry) or _DEFAULT
    if registry == GHCR and config.catalog is None:
        return f"source {entry.source!r}: {GHCR_UNSUPPORTED}; name the repositories one per entry"
    api = catalog_api(registry, config)
    if api is CatalogApi.DISTRIBUTION or prefix:
        return None
    return (
        f"source {entry.source!r}: {registry} (catalog: {api.value}) lists repositories one "
        f"namespace at a time and has no _catalog; name the namespace before the glob, "
        f"e.g. {registry}/bitnami/*"
    )
