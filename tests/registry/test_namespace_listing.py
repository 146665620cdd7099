"""Listing one namespace through Docker Hub's, Quay's and Harbor's APIs (`catalog:`), against
fakes of each documented API on loopback (tests/support/listing_apis.py): every page, once
per namespace per client, credentials only where and how each API takes them, the
transport's retries and nobody else's, and errors that name the registry and the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncer.errors import InsecureCredentials, RateLimited, RegistryError, SyncerError
from syncer.registry.client import RegistryClient
from syncer.registry.namespaces import NamespaceJob
from syncer.registry.options import CatalogApi, RegistryConfig
from syncer.registry.reference import Reference
from tests.support.listing_apis import ListingApi, Namespace
from tests.support.syncer_setup import FAST_RETRY

HUB = "docker.io"
SECRET = "dckr_pat_not-a-real-one"
NAMES = [f"app{i:03d}" for i in range(250)]  # three pages of 100

StartApi = Callable[..., Awaitable[ListingApi]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    started: list[ListingApi] = []

    async def start(kind: str, namespaces: dict[str, Namespace], **kw: Any) -> ListingApi:
        api = await ListingApi(kind, namespaces, **kw).start()
        started.append(api)
        return api

    yield start
    for api in started:
        await api.stop()


def client_for(registry: str, **settings: Any) -> RegistryClient:
    config = RegistryConfig.model_validate({"retry": FAST_RETRY.model_dump(), **settings})
    return RegistryClient(lambda r: config if r == registry else RegistryConfig())


def catalog_of(registry: str) -> Reference:
    return Reference(registry, "catalog")


def hub_page(ns: str, page: int) -> str:
    base = f"/v2/namespaces/{ns}/repositories?"
    return base + ("page_size=100" if page == 1 else f"page={page}&page_size=100")


async def test_hub_pages_are_followed_and_listed_once_per_namespace(start_api: StartApi) -> None:
    hub = await start_api("dockerhub", {"bitnami": Namespace(NAMES), "other": Namespace(["x"])})
    async with client_for(HUB, catalog_endpoint=hub.url) as client:
        first = await client.catalog(catalog_of(HUB), namespace="bitnami")
        again = await client.catalog(catalog_of(HUB), namespace="bitnami")
        other = await client.catalog(catalog_of(HUB), namespace="other")
    assert first == again == [f"bitnami/{n}" for n in NAMES]
    assert other == ["other/x"]
    # Page by page through the absolute `next` URLs, and not again for the second call.
    pages = [hub_page("bitnami", p) for p in (1, 2, 3)]
    assert [s.path_qs for s in hub.listings("bitnami")] == pages
    assert [s.path_qs for s in hub.listings("other")] == [hub_page("other", 1)]
    assert len(hub.seen) == 4  # no login: anonymous, and nothing sent Authorization
    assert {s.authorization for s in hub.seen} == {None}


async def test_hub_credentials_buy_one_token_and_private_repositories(
    start_api: StartApi,
) -> None:
    namespaces = {"acme": Namespace(["pub"], ["priv"]), "beta": Namespace(["b"])}
    hub = await start_api("dockerhub", namespaces, users={"alice": SECRET})
    hub.failures = [503]  # the first listing try fails: a retry is logged
    creds = {"username": "alice", "password": SECRET}
    with capture_logs() as logs:
        async with client_for(HUB, catalog_endpoint=hub.url, credentials=creds) as client:
            repos = await client.catalog(catalog_of(HUB), namespace="acme")
            beta = await client.catalog(catalog_of(HUB), namespace="beta")
    assert repos == ["acme/pub", "acme/priv"] and beta == ["beta/b"]
    (token,) = hub.tokens
    assert [(s.method, s.path_qs, s.authorization) for s in hub.seen] == [
        ("POST", "/v2/auth/token", None),  # the secret travels in this body only, once
        ("GET", hub_page("acme", 1), f"Bearer {token}"),  # 503
        ("GET", hub_page("acme", 1), f"Bearer {token}"),
        ("GET", hub_page("beta", 1), f"Bearer {token}"),
    ]
    assert [e["event"] for e in logs] == ["retrying"]
    assert SECRET not in repr(logs) and token not in repr(logs)


async def test_refused_hub_credentials_name_the_registry_and_the_fix(
    start_api: StartApi,
) -> None:
    hub = await start_api("dockerhub", {"acme": Namespace(["pub"])}, users={"alice": SECRET})
    creds = {"username": "alice", "password": "not-it"}
    async with client_for(HUB, catalog_endpoint=hub.url, credentials=creds) as client:
        with pytest.raises(RegistryError) as err:
            await client.catalog(catalog_of(HUB), namespace="acme")
        with pytest.raises(RegistryError, match=r"namespace 'beta' .* credentials were refused"):
            await client.catalog(catalog_of(HUB), namespace="beta")
    assert err.value.status == 401
    assert err.value.detail == (
        f"cannot list namespace 'acme' of docker.io through the Docker Hub API at {hub.url}: "
        "the credentials were refused; check registries.docker.io.credentials (or the docker "
        "login for docker.io): a username with a password or access token"
    )
    assert "not-it" not in str(err.value)
    assert [s.method for s in hub.seen] == ["POST"]  # a refused login is not repeated


async def test_unknown_hub_namespace_is_a_clear_error(start_api: StartApi) -> None:
    hub = await start_api("dockerhub", {})
    async with client_for(HUB, catalog_endpoint=hub.url) as client:
        with pytest.raises(RegistryError) as err:
            await client.catalog(catalog_of(HUB), namespace="nosuch")
    assert err.value.detail.endswith(
        ": no such namespace (or it is private); check the spelling of the source glob"
    )


async def test_5xx_is_retried_by_the_transport_and_by_nobody_else(start_api: StartApi) -> None:
    hub = await start_api("dockerhub", {"acme": Namespace(NAMES)}, failures=[503, 502])
    async with client_for(HUB, catalog_endpoint=hub.url) as client:
        assert len(await client.catalog(catalog_of(HUB), namespace="acme")) == 250
    pages = [hub_page("acme", p) for p in (1, 1, 1, 2, 3)]  # two failed tries of page 1
    assert [s.path_qs for s in hub.listings("acme")] == pages

    down = await start_api("dockerhub", {"acme": Namespace(NAMES)}, fail_status=500)
    async with client_for(HUB, catalog_endpoint=down.url) as client:
        for _glob in range(2):  # a second glob on the namespace gets the same failure
            with pytest.raises(RegistryError) as err:
                await client.catalog(catalog_of(HUB), namespace="acme")
    assert len(down.listings("acme")) == FAST_RETRY.attempts
    assert err.value.status == 500
    assert err.value.detail.startswith(
        f"cannot list namespace 'acme' of docker.io through the Docker Hub API at {down.url}: "
    )


async def test_a_next_url_on_another_host_gets_no_token(start_api: StartApi) -> None:
    hub = await start_api("dockerhub", {"acme": Namespace(NAMES)}, users={"alice": SECRET})
    hub.next_host = hub.url.replace("127.0.0.1", "localhost")  # another origin, same server
    creds = {"username": "alice", "password": SECRET}
    async with client_for(HUB, catalog_endpoint=hub.url, credentials=creds) as client:
        assert len(await client.catalog(catalog_of(HUB), namespace="acme")) == 250
    first, *rest = hub.listings("acme")
    assert first.host.startswith("127.0.0.1:") and first.authorization is not None
    assert [(s.host.split(":")[0], s.authorization) for s in rest] == [("localhost", None)] * 2


async def test_hub_credentials_need_tls_unless_the_registry_is_insecure(
    loopback_only: list[str],
) -> None:
    creds = {"username": "alice", "password": SECRET}
    plain = "http://hub.example.test"
    async with client_for(HUB, catalog_endpoint=plain, credentials=creds) as client:
        with pytest.raises(InsecureCredentials) as err:
            await client.catalog(catalog_of(HUB), namespace="acme")
    assert str(err.value) == (
        f"refusing to send credentials over plain HTTP to {plain}, which is not loopback; use "
        "HTTPS, or accept the risk with registries.docker.io.tls: disabled (plain HTTP) or "
        "insecure in sync.yaml"
    )
    assert loopback_only == []  # refused before any request
    # Marked insecure, the same policy lets the login go (the test's network refuses it).
    settings = {"catalog_endpoint": plain, "credentials": creds, "tls": "insecure"}
    async with client_for(HUB, **settings) as client:
        with pytest.raises(SyncerError) as failed:
            await client.catalog(catalog_of(HUB), namespace="acme")
    assert not isinstance(failed.value, InsecureCredentials)
    assert loopback_only == [f"{plain}/v2/auth/token"] * FAST_RETRY.attempts


async def test_quay_pages_by_next_page_and_is_asked_anonymously(start_api: StartApi) -> None:
    quay = await start_api("quay", {"org": Namespace([f"r{i}" for i in range(7)])})
    host = quay.url.removeprefix("http://")
    creds = {"username": "org+robot", "password": SECRET}  # a robot: the registry's, not the API's
    async with client_for(host, catalog="quay", credentials=creds) as client:
        repos = await client.catalog(catalog_of(host), namespace="org")
    assert repos == [f"org/r{i}" for i in range(7)]
    first = "/api/v1/repository?namespace=org&public=true"
    assert [s.path_qs for s in quay.listings("org")] == [
        first,
        *(f"{first}&next_page={n}" for n in (2, 4, 6)),
    ]
    assert {s.authorization for s in quay.seen} == {None}


async def test_harbor_pages_by_link_with_basic_credentials(start_api: StartApi) -> None:
    harbor = await start_api(
        "harbor", {"proj": Namespace(NAMES[:10], NAMES[10:])}, users={"admin": SECRET}
    )
    host = harbor.url.removeprefix("http://")
    creds = {"username": "admin", "password": SECRET}
    async with client_for(host, catalog="harbor", credentials=creds) as client:
        repos = await client.catalog(catalog_of(host), namespace="proj")
    assert repos == [f"proj/{n}" for n in NAMES]  # Harbor's names carry the project once
    base = "/api/v2.0/projects/proj/repositories"
    assert [s.path_qs for s in harbor.listings("proj")] == [
        f"{base}?page={p}&page_size=100" for p in (1, 2, 3)
    ]
    assert {(s.authorization or "").split()[0] for s in harbor.seen} == {"Basic"}


async def test_private_harbor_project_without_credentials_says_what_to_set(
    start_api: StartApi,
) -> None:
    harbor = await start_api("harbor", {"proj": Namespace([], ["secret-app"])})
    host = harbor.url.removeprefix("http://")
    async with client_for(host, catalog="harbor") as client:
        with pytest.raises(RegistryError) as err:
            await client.catalog(catalog_of(host), namespace="proj")
    assert err.value.status == 401
    assert err.value.detail == (
        f"cannot list namespace 'proj' of {host} through the Harbor API at {harbor.url}: it is "
        f"not public; set registries.{host}.credentials to an account that may read it"
    )
    assert len(harbor.listings("proj")) == 1


async def test_hub_api_429_is_a_rate_limit_error_after_the_transports_tries(
    start_api: StartApi,
) -> None:
    hub = await start_api("dockerhub", {"acme": Namespace(["a"])}, fail_status=429)
    async with client_for(HUB, catalog_endpoint=hub.url) as client:
        with pytest.raises(RateLimited) as err:
            await client.catalog(catalog_of(HUB), namespace="acme")
    assert err.value.detail == (
        f"cannot list namespace 'acme' of docker.io through the Docker Hub API at {hub.url}: "
        "rate limited; retry later"
    )
    assert len(hub.listings("acme")) == FAST_RETRY.attempts


def test_hub_api_gets_verified_tls_whatever_the_stand_in_registry_is_given(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder\n")
    cache = RegistryConfig(endpoint="https://cache.internal", tls="insecure", ca_file=ca)
    job = NamespaceJob.of(HUB, "acme", cache, "https://cache.internal", None)
    assert (job.api, job.base_url) == (CatalogApi.DOCKERHUB, "https://hub.docker.com")
    assert (job.config.tls, job.config.ca_file, job.config.client_cert) == ("enabled", None, None)
    # A listing API the user names keeps the registry's settings (their own mirror of it).
    named = cache.model_copy(update={"catalog_endpoint": "https://hub-mirror.internal"})
    job = NamespaceJob.of(HUB, "acme", named, "https://cache.internal", None)
    assert (job.base_url, job.config.tls, job.config.ca_file) == (
        named.catalog_endpoint,
        "insecure",
        ca,
    )
