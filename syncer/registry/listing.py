"""Listings for a client: a repository's tags and a registry's repositories, every page.

A registry's repositories come from `_catalog` (distribution) or, for a namespace, from
the registry's own listing API (namespaces.py); each listing is made once per client
(per run), and so is a failure, so a second glob on it does not wait through the
retries again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from syncer.errors import ManifestError, RegistryError, SyncerError
from syncer.registry.credentials import Credential
from syncer.registry.namespaces import (
    MAX_PAGE_BYTES,
    MAX_PAGES,
    ListingApis,
    NamespaceJob,
    catalog_api,
)
from syncer.registry.options import CatalogApi, RegistryConfig
from syncer.registry.origin import endpoint_url
from syncer.registry.pagination import next_link
from syncer.registry.reference import Reference
from syncer.registry.transport.auth import repository_scope
from syncer.registry.transport.session import RegistrySession

RegistryConfigLookup = Callable[[str], RegistryConfig]
CredentialLookup = Callable[[str, RegistryConfig], Credential | None]
SessionLookup = Callable[[Reference], RegistrySession]

# One page of tags or repositories. Some registries ignore `n` and answer everything at
# once (and GCR adds a map of manifests), so more room than a manifest gets.
MAX_LISTING_BYTES = MAX_PAGE_BYTES


class Listings:
    def __init__(
        self,
        session: SessionLookup,
        configs: RegistryConfigLookup,
        credentials: CredentialLookup,
        apis: ListingApis,
    ) -> None:
        self._session = session
        self._configs = configs
        self._credentials = credentials
        self._apis = apis
        self._made: dict[tuple[str, str | None], list[str] | SyncerError] = {}

    async def aclose(self) -> None:
        await self._apis.aclose()

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        path = f"/v2/{repo.repository}/tags/list?n={page_size}"
        scopes = frozenset({repository_scope(repo.repository, "pull")})
        tags: list[str] = []
        async for page in self._pages(repo, path, scopes):
            got = page.get("tags") or []
            if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
                raise ManifestError(f"{repo.name}: tag list is malformed")
            tags.extend(got)
        return tags

    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]:
        """The registry's repositories; with `namespace`, only those below it, listed through
        the registry's `catalog:` API (Docker Hub, Quay, Harbor) where it has no `_catalog`."""
        config = self._configs(registry_ref.registry)
        api = catalog_api(registry_ref.registry, config)
        key = (registry_ref.registry, None if api is CatalogApi.DISTRIBUTION else namespace)
        if key not in self._made:
            try:
                if key[1] is None:
                    got = await self._distribution_catalog(registry_ref, page_size)
                else:
                    got = await self._namespace(registry_ref, key[1], config)
            except SyncerError as exc:
                self._made[key] = exc
                raise
            self._made[key] = got
        repos = self._made[key]
        if isinstance(repos, SyncerError):
            raise repos
        if namespace is None:
            return list(repos)
        return [r for r in repos if r.startswith(namespace + "/")]

    async def _namespace(
        self, registry_ref: Reference, namespace: str, config: RegistryConfig
    ) -> list[str]:
        base = endpoint_url(registry_ref.registry, registry_ref.api_host, config)
        credential = self._credentials(registry_ref.registry, config)
        job = NamespaceJob.of(registry_ref.registry, namespace, config, base, credential)
        return await self._apis.list(job)

    async def _distribution_catalog(self, registry_ref: Reference, page_size: int) -> list[str]:
        scopes = frozenset({"registry:catalog:*"})
        repos: list[str] = []
        async for page in self._pages(registry_ref, f"/v2/_catalog?n={page_size}", scopes):
            got = page.get("repositories") or []
            if not isinstance(got, list):
                raise ManifestError(f"{registry_ref.registry}: catalog is malformed")
            repos.extend(str(r) for r in got)
        return repos

    async def _pages(
        self, ref: Reference, path: str, scopes: frozenset[str]
    ) -> AsyncIterator[dict[str, object]]:
        t = self._session(ref)
        seen: set[str] = set()
        next_path: str | None = path
        while next_path is not None:
            if next_path in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(
                    f"{ref.registry}: pagination loops (page {next_path!r} repeated)"
                )
            seen.add(next_path)
            resp = await t.request("GET", next_path, scopes=scopes, max_bytes=MAX_LISTING_BYTES)
            try:
                data = resp.json()
            except ValueError:
                raise RegistryError(
                    f"{ref.registry}: listing is not JSON", url=str(resp.request.url)
                ) from None
            if not isinstance(data, dict):
                raise RegistryError(f"{ref.registry}: listing is not a JSON object")
            yield data
            next_path = next_link(resp.headers.get("link"))
