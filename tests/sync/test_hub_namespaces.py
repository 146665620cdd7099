"""`docker.io/bitnami/*` end to end: a fake of Docker Hub's documented listing API
(tests/support/listing_apis.py) lists the namespace, a real docker-registry stands in for
registry-1.docker.io (`registries.docker.io.endpoint`), and the run copies what the glob and
`repositories:` select, listing each namespace once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.listing_apis import ListingApi, Namespace
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import FAST_RETRY, write_sync_yaml

SECRET = "dckr_pat_not-a-real-one"
# What Docker Hub lists; `gone` is deleted between the listing and the copy (the registry
# never had it), `legacy` is denied by the entry.
LISTED = {"bitnami": ["redis", "nginx", "legacy", "gone"], "acme": ["tool"]}
SEEDED = {"bitnami/redis": ["7"], "bitnami/nginx": ["1", "2"], "bitnami/legacy": ["1"]}
SEEDED["acme/tool"] = ["1"]


@pytest.fixture
async def hub() -> AsyncIterator[ListingApi]:
    namespaces = {ns: Namespace(names) for ns, names in LISTED.items()}
    api = await ListingApi("dockerhub", namespaces, users={"mirror": SECRET}).start()
    yield api
    await api.stop()


async def test_docker_hub_namespace_glob_end_to_end(
    registry_factory: RegistryFactory, hub: ListingApi, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    digests = {}
    for n, (repo, tags) in enumerate(SEEDED.items()):
        for t, tag in enumerate(tags):
            push(src.seed_url, repo, app_image(n, t), tag)
            digests[repo, tag] = app_image(n, t).digest
    mark = src.mark()
    docker_io = {
        "endpoint": src.url,  # registry-1.docker.io, here
        "tls": "disabled",
        "catalog_endpoint": hub.url,  # hub.docker.com, here
        "credentials": {"username": "mirror", "password": SECRET},
        "retry": FAST_RETRY.model_dump(),
    }
    entries = [
        {
            "source": "docker.io/bitnami/*",
            "destination": f"{dst.host}/mirror/bitnami",
            "repositories": {"deny": ["bitnami/legacy"]},
        },
        {  # the same namespace again: served from the run's listing
            "source": "docker.io/bitnami/*",
            "destination": f"{dst.host}/second/{{repo}}",
            "repositories": {"allow": ["bitnami/n.*"]},
        },
        {"source": "docker.io/acme/*", "destination": f"{dst.host}/acme"},
    ]
    cfg = write_sync_yaml(tmp_path / "s.yaml", entries, dst, registries={"docker.io": docker_io})
    with capture_logs() as logs:
        report = await Runner(load_config(cfg)).run()

    by_dest = {e.destination.removeprefix(f"{dst.host}/"): e for e in report.entries}
    assert sorted(by_dest) == [
        "acme/tool",
        "mirror/bitnami/gone",
        "mirror/bitnami/nginx",
        "mirror/bitnami/redis",
        "second/nginx",
    ]
    # The repository that vanished fails alone; every other one is copied.
    assert report.status == "partial"
    gone = by_dest.pop("mirror/bitnami/gone")
    assert gone.source == "docker.io/bitnami/gone"
    assert len(gone.errors) == 1 and "bitnami/gone" in gone.errors[0]["error"]
    assert "404" in gone.errors[0]["error"] or "NAME_UNKNOWN" in gone.errors[0]["error"]
    assert {d: e.errors for d, e in by_dest.items()} == {d: [] for d in by_dest}
    assert report.totals.tags_copied == 6  # redis 1, nginx 2, second/nginx 2, acme/tool 1
    for dest, repo in [
        ("mirror/bitnami/redis", "bitnami/redis"),
        ("mirror/bitnami/nginx", "bitnami/nginx"),
        ("second/nginx", "bitnami/nginx"),
        ("acme/tool", "acme/tool"),
    ]:
        for tag in SEEDED[repo]:
            assert fetch_manifest_digest(dst.url, dest, tag) == digests[repo, tag], (dest, tag)
    assert fetch_manifest_digest(dst.url, "mirror/bitnami/legacy", "1") is None

    # One login and one listing per namespace for the whole run, all at the Hub API.
    assert [s.method for s in hub.seen if s.method == "POST"] == ["POST"]
    assert len(hub.listings("bitnami")) == 1 and len(hub.listings("acme")) == 1
    assert len(hub.seen) == 3
    # The registry was never asked for a catalog; the vanished repository cost one 404.
    served = src.requests_since(mark)
    assert not [r for r in served if "_catalog" in r.path]
    assert [(r.path.split("?")[0], r.status) for r in served if "bitnami/gone" in r.path] == [
        ("/v2/bitnami/gone/tags/list", 404)
    ]
    assert SECRET not in repr(logs) and not any(t in repr(logs) for t in hub.tokens)
