"""The repositories of one namespace, where a registry has no `_catalog`.

Each registry product lists a namespace through its own HTTP API (docs/docker-hub.md,
"Namespaces without `_catalog`"); `catalog:` in the registry's `registries:` entry says which one:

- dockerhub: `GET /v2/namespaces/<ns>/repositories?page_size=100` on hub.docker.com, paged
  by the absolute `next` URL of each answer (`{count, next, previous, results: [{name}]}`).
  Anonymous for public repositories; with credentials, a JWT from `POST /v2/auth/token`
  (`{identifier, secret}` -> `{access_token}`, valid 10 minutes), made once per run
  (`ListingApis`) and sent as `Bearer`.
- quay: `GET /api/v1/repository?namespace=<ns>&public=true`, paged by `next_page`
  (`{repositories: [{namespace, name}], next_page}`); anonymous.
- harbor: `GET /api/v2.0/projects/<p>/repositories?page=N&page_size=100`, a JSON array whose
  names carry the project prefix, paged by `Link: rel="next"`; Basic credentials.

All requests go through a `RegistrySession` on the API's base URL, so TLS, retries,
Retry-After and the credential rules are the registry's: credentials only on the API's own
origin (a `next` URL on another host gets none) and only where `check_credentials_channel`
allows them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from syncer.errors import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
)
from syncer.registry.credentials import Credential
from syncer.registry.options import CatalogApi, RegistryConfig, TlsMode
from syncer.registry.origin import check_credentials_channel
from syncer.registry.pagination import next_link
from syncer.registry.reference import DOCKER_HUB
from syncer.registry.transport.session import RegistrySession

DOCKER_HUB_API = "https://hub.docker.com"
PAGE_SIZE = 100  # the most Docker Hub and Harbor give per page
MAX_PAGES = 10_000
MAX_PAGE_BYTES = 16 * 1024 * 1024
_NAMES = {
    CatalogApi.DOCKERHUB: "the Docker Hub API",
    CatalogApi.QUAY: "the Quay API",
    CatalogApi.HARBOR: "the Harbor API",
}


def catalog_api(registry: str, config: RegistryConfig) -> CatalogApi:
    """The listing API `registry` speaks: its `catalog:`, else dockerhub on docker.io."""
    if config.catalog is not None:
        return config.catalog
    return CatalogApi.DOCKERHUB if registry == DOCKER_HUB else CatalogApi.DISTRIBUTION


def api_base(api: CatalogApi, registry_base: str, config: RegistryConfig) -> str:
    """The listing API's base URL: `catalog_endpoint`, else hub.docker.com for Docker Hub,
    else the registry's own URL (Quay and Harbor serve their API beside the registry)."""
    if config.catalog_endpoint:
        return config.catalog_endpoint
    return DOCKER_HUB_API if api is CatalogApi.DOCKERHUB else registry_base


def api_config(api: CatalogApi, config: RegistryConfig) -> RegistryConfig:
    """The settings for the listing API's host. hub.docker.com is not the registry's host:
    like a redirect target, it gets verified TLS with the system CAs, whatever `tls:
    insecure`, `ca_file` or client certificate a stand-in for docker.io (a pull-through
    cache) is configured with."""
    if api is not CatalogApi.DOCKERHUB or config.catalog_endpoint:
        return config
    own_host_only = {"tls": TlsMode.ENABLED, "ca_file": None, "client_cert": None}
    return config.model_copy(update={**own_host_only, "client_key": None})


@dataclass(frozen=True)
class NamespaceJob:
    """One namespace to list, and how to reach the API that lists it."""

    registry: str
    namespace: str
    api: CatalogApi
    base_url: str
    config: RegistryConfig
    credential: Credential | None

    @classmethod
    def of(
        cls,
        registry: str,
        namespace: str,
        config: RegistryConfig,
        registry_base: str,
        credential: Credential | None,
    ) -> NamespaceJob:
        """The job for `namespace` of `registry` (reached at `registry_base`, configured by
        `config`): its `catalog:` API, that API's base URL and settings."""
        api = catalog_api(registry, config)
        base = api_base(api, registry_base, config)
        return cls(registry, namespace, api, base, api_config(api, config), credential)

    @property
    def where(self) -> str:
        return f"{_NAMES[self.api]} at {self.base_url}"

    @property
    def login(self) -> tuple[str, str] | None:
        """The username and secret these APIs take (an identity token alone is none)."""
        cred = self.credential
        if cred is None or cred.username is None or cred.password is None:
            return None
        return cred.username, cred.password.get_secret_value()


@dataclass
class _Api:
    session: RegistrySession
    login: RegistryError | bool = False  # done, or how it failed


class ListingApis:
    """The listing APIs a client (a run) talks to, one session per registry for its life:
    Docker Hub's login is made once, not once per namespace, and a refused one is not
    repeated."""

    def __init__(self, http_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http_transport = http_transport  # replaces the network, for tests
        self._apis: dict[str, _Api] = {}

    async def aclose(self) -> None:
        for api in self._apis.values():
            await api.session.aclose()
        self._apis.clear()

    async def list(self, job: NamespaceJob) -> list[str]:
        """Full repository paths (`ns/name`) in `job.namespace`, every page.

        RegistryError (with the registry, namespace and fix) when the API refuses;
        InsecureCredentials before any request when credentials would travel in clear text."""
        api = self._apis.get(job.registry)
        if api is None:
            # Only Harbor takes the registry's credentials as they are (Basic); Docker Hub
            # gets them once, at its login endpoint, and a token afterwards.
            basic = job.credential if job.api is CatalogApi.HARBOR and job.login else None
            session = RegistrySession(
                job.registry, job.base_url, job.config, basic, http_transport=self._http_transport
            )
            api = self._apis[job.registry] = _Api(session)
        try:
            if isinstance(api.login, RegistryError):
                raise api.login
            if not api.login:
                try:
                    await _authenticate(api.session, job)
                except RegistryError as exc:
                    api.login = exc
                    raise
                api.login = True
            return [r async for r in _repositories(api.session, job)]
        except RegistryError as exc:
            raise _explained(exc, job) from None


async def _authenticate(session: RegistrySession, job: NamespaceJob) -> None:
    if job.login is None:
        return  # anonymous: public repositories only
    if job.api is CatalogApi.HARBOR:
        session.auth.basic_from_the_start(job.base_url)
    elif job.api is CatalogApi.DOCKERHUB:
        check_credentials_channel(job.registry, job.base_url, job.config.tls)
        body = {"identifier": job.login[0], "secret": job.login[1]}
        resp = await session.request(
            "POST",
            "/v2/auth/token",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        token = _object(resp, job).get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{job.where} answered the login without an access_token")
        session.auth.bearer_from_the_start(job.base_url, token)


async def _repositories(session: RegistrySession, job: NamespaceJob) -> AsyncIterator[str]:
    ns = quote(job.namespace, safe="")
    url: str | None
    if job.api is CatalogApi.DOCKERHUB:
        url = f"/v2/namespaces/{ns}/repositories?page_size={PAGE_SIZE}"
    elif job.api is CatalogApi.QUAY:
        url = f"/api/v1/repository?namespace={ns}&public=true"
    else:
        url = f"/api/v2.0/projects/{ns}/repositories?page=1&page_size={PAGE_SIZE}"
    seen: set[str] = set()
    while url is not None:
        if url in seen or len(seen) >= MAX_PAGES:
            raise RegistryError(f"{job.where}: the listing's pages loop ({url!r} again)")
        seen.add(url)
        resp = await session.request("GET", url, max_bytes=MAX_PAGE_BYTES)
        names, url = _page(resp, job)
        for name in names:
            yield name


def _page(resp: httpx.Response, job: NamespaceJob) -> tuple[list[str], str | None]:
    """The page's repository paths, and the next page's URL (None on the last)."""
    if job.api is CatalogApi.HARBOR:
        data = _json(resp, job)
        if not isinstance(data, list):
            raise _malformed(job, "expected a JSON array of repositories")
        names = [_field(item, "name", job) for item in data]
        # Harbor names carry the project: `library/hello-world`.
        return names, next_link(resp.headers.get("link")) if names else None
    page = _object(resp, job)
    if job.api is CatalogApi.DOCKERHUB:
        items, nxt = page.get("results"), page.get("next")
        if not isinstance(items, list) or not isinstance(nxt, str | None):
            raise _malformed(job, "expected {count, next, results: [...]}")
        return [f"{job.namespace}/{_field(i, 'name', job)}" for i in items], nxt or None
    items, token = page.get("repositories"), page.get("next_page")
    if not isinstance(items, list) or not isinstance(token, str | None):
        raise _malformed(job, "expected {repositories: [...], next_page}")
    names = [f"{_field(i, 'namespace', job)}/{_field(i, 'name', job)}" for i in items]
    if not token:
        return names, None
    params = {"namespace": job.namespace, "public": "true", "next_page": token}
    return names, str(httpx.URL("/api/v1/repository", params=params))


def _json(resp: httpx.Response, job: NamespaceJob) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise _malformed(job, "the answer is not JSON") from None


def _object(resp: httpx.Response, job: NamespaceJob) -> dict[str, Any]:
    data = _json(resp, job)
    if not isinstance(data, dict):
        raise _malformed(job, "expected a JSON object")
    return data


def _field(item: Any, key: str, job: NamespaceJob) -> str:
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, str) or not value:
        raise _malformed(job, f"a repository without a {key!r}")
    return value


def _malformed(job: NamespaceJob, why: str) -> RegistryError:
    return RegistryError(f"{job.where} sent a malformed listing of {job.namespace!r}: {why}")


def _explained(exc: RegistryError, job: NamespaceJob) -> RegistryError:
    """The session's error, told as a listing problem with its fix (RateLimited stays
    RateLimited, for its Retry-After)."""
    what = f"cannot list namespace {job.namespace!r} of {job.registry} through {job.where}"
    kw: dict[str, Any] = {"status": exc.status, "method": exc.method, "url": exc.url}
    key = f"registries.{job.registry}"
    if isinstance(exc, AuthenticationError | PermissionDenied):
        if job.api is CatalogApi.QUAY:
            fix = (
                "Quay's API is asked anonymously (it takes OAuth application tokens, not "
                "registry credentials), so only public repositories can be listed; name "
                "private ones one per entry"
            )
        elif job.login is not None:
            fix = (
                f"the credentials were refused; check {key}.credentials (or the docker "
                f"login for {job.registry}): a username with a password or access token"
            )
        else:
            fix = f"it is not public; set {key}.credentials to an account that may read it"
    elif isinstance(exc, NotFound):
        fix = "no such namespace (or it is private); check the spelling of the source glob"
    elif isinstance(exc, RateLimited):
        wait = exc.retry_after
        fix = f"rate limited; retry after {wait:.0f}s" if wait else "rate limited; retry later"
        return RateLimited(f"{what}: {fix}", retry_after=wait, **kw)
    else:
        fix = exc.detail
    # A plain RegistryError: the `_catalog` advice callers give for 401/403/404 is not this.
    return RegistryError(f"{what}: {fix}", **kw)
