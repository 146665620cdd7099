"""Transport behaviour that needs a real registry behind the fault proxy: copies within one
registry that may not mount, a CDN that answers 401, and a blob PUT answered 500."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.config.syncfile import load_config
from syncer.errors import NotFound
from syncer.registry.oci import Descriptor
from syncer.registry.reference import Reference
from syncer.sync.runner import Runner
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import Fleet, assert_no_broken_tags
from tests.support.http import http_client
from tests.support.images import make_image, random_layer, sha256_digest
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import make_client, write_sync_yaml


@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_copy_within_one_registry_without_mounts_finishes(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    max_concurrency: int,
) -> None:
    """Each blob is a PUT to the registry whose body is a GET from the same registry: the
    PUT must not hold the host's only slots while its body waits for one."""
    reg = registry_factory("anon")
    fleet = Fleet()
    base = random_layer(300_000, seed=1)
    fleet.repos["app"] = {
        f"v{i}": make_image([base, random_layer(200_000, seed=10 + i)], fmt="oci") for i in range(3)
    }
    fleet.push(reg.seed_url)
    proxy = fault_proxy_factory(reg, strip_mount=True)
    via = behind(reg, proxy)
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml",
        [{"source": f"{via.host}/app", "destination": f"{via.host}/m/app"}],
        via,
        registries={via.host: {"max_concurrency": max_concurrency}},
    )
    report = await asyncio.wait_for(Runner(load_config(cfg)).run(), 60)
    assert report.status == "ok", report.to_json()
    blobs = {b.digest for _, _, item in fleet.items() for b in item.blobs()}
    assert report.totals.blobs_copied == len(blobs)
    assert report.totals.bytes_copied == fleet.blob_bytes()
    assert proxy.counts["mount-stripped"] >= 1
    assert assert_no_broken_tags(fleet, reg.url, "m/") == fleet.tag_count


class _Realm(ThreadingHTTPServer):
    """A token realm a CDN might name: records every request, hands out a token."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append(dict(self.headers))
                body = json.dumps({"token": "from-the-cdn"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server_port}/token"


@pytest.fixture
def realm() -> Iterator[_Realm]:
    server = _Realm()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_a_cdn_401_is_retried_from_the_registry_never_adopted(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, realm: _Realm
) -> None:
    reg = registry_factory("basic")
    layer, _ = random_layer(300_000, seed=5)
    with http_client() as c:
        start = c.post(f"{reg.seed_url}/v2/app/blobs/uploads/")
        loc = httpx.URL(reg.seed_url).join(start.headers["Location"])
        c.put(loc.copy_add_param("digest", layer.digest), content=layer.data).raise_for_status()
    proxy = fault_proxy_factory(reg, cdn=True)
    cdn = proxy.redirect_blobs_to
    assert cdn is not None
    cdn.challenge = f'Bearer realm="{realm.url}",service="cdn"'
    cdn.challenge_next = 1
    desc = Descriptor(media_type=layer.media_type, digest=layer.digest, size=layer.size)
    async with make_client(behind(reg, proxy)) as client:
        ref = Reference.parse(f"{proxy.host}/app")
        got = b"".join([chunk async for chunk in client.read_blob(ref, desc)])
        got_again = b"".join([chunk async for chunk in client.read_blob(ref, desc)])
    assert sha256_digest(got) == sha256_digest(got_again) == layer.digest
    assert realm.seen == []  # the registry's password never went to the CDN's realm
    assert cdn.counts["challenged"] == 1 and cdn.served == 2
    assert proxy.counts["redirected"] == 3  # the refused redirect, a fresh one, the 2nd read
    assert cdn.auth_rejections == 0


async def test_a_500_on_the_blob_put_restarts_the_blob(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory
) -> None:
    reg = registry_factory("anon")
    layer, _ = random_layer(500_000, seed=7)
    proxy = fault_proxy_factory(reg, error_burst=(500, 1), error_paths=r"/blobs/uploads/.+")
    opened = 0

    def source() -> AsyncIterator[bytes]:
        nonlocal opened
        opened += 1

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, layer.size, 64 * 1024):
                yield layer.data[i : i + 64 * 1024]

        return chunks()

    desc = Descriptor(media_type=layer.media_type, digest=layer.digest, size=layer.size)
    async with make_client(behind(reg, proxy)) as client:
        await client.upload_blob(Reference.parse(f"{proxy.host}/app"), desc, source)
    assert proxy.counts["burst"] == 1
    assert proxy.counts["POST upload"] == 2 and opened == 2
    with http_client() as c:
        stored = c.get(f"{reg.url}/v2/app/blobs/{layer.digest}")
    assert stored.status_code == 200 and sha256_digest(stored.content) == layer.digest


async def test_a_head_of_a_blob_larger_than_any_read_cap_is_not_refused(
    registry_factory: RegistryFactory,
) -> None:
    reg = registry_factory("anon")
    layer, _ = random_layer(5 * 1024 * 1024, seed=3)
    with http_client() as c:
        start = c.post(f"{reg.seed_url}/v2/app/blobs/uploads/")
        loc = httpx.URL(reg.seed_url).join(start.headers["Location"])
        c.put(loc.copy_add_param("digest", layer.digest), content=layer.data).raise_for_status()
    async with make_client(reg) as client:
        ref = Reference.parse(f"{reg.host}/app")
        assert await client.blob_exists(ref, layer.digest)
        assert not await client.blob_exists(ref, "sha256:" + "0" * 64)


async def test_a_registry_refusing_the_same_repository_mount_gets_a_head_and_a_plain_post(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory
) -> None:
    reg = registry_factory("anon")
    held, _ = random_layer(100_000, seed=21)
    new, _ = random_layer(100_000, seed=22)
    with http_client() as c:  # `held` is in the repository already, untagged
        start = c.post(f"{reg.seed_url}/v2/app/blobs/uploads/")
        loc = httpx.URL(reg.seed_url).join(start.headers["Location"])
        c.put(loc.copy_add_param("digest", held.digest), content=held.data).raise_for_status()
    proxy = fault_proxy_factory(reg, error_burst=(400, 2), error_paths=r"^POST .*[?&]mount=")
    repo = Reference.parse(f"{proxy.host}/app")

    def source(data: bytes) -> Any:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return chunks

    async with make_client(behind(reg, proxy)) as client:
        with pytest.raises(NotFound):
            await client.list_tags(repo)  # tagless: the upload asks with its POST
        proxy.requests.clear()
        assert not await client.upload_blob(repo, _desc(held), source(held.data))
        assert await client.upload_blob(repo, _desc(new), source(new.data))
    assert proxy.counts["burst"] == 2
    assert [(m, s) for m, _, s in proxy.requests] == [
        *[("POST", 400), ("HEAD", 200)],  # held: refused, then the HEAD finds it
        *[("POST", 400), ("HEAD", 404), ("POST", 202), ("PUT", 201)],  # new: a plain upload
    ]
    with http_client() as c:
        stored = c.get(f"{reg.url}/v2/app/blobs/{new.digest}")
    assert stored.status_code == 200 and sha256_digest(stored.content) == new.digest


def _desc(blob: Any) -> Descriptor:
    return Descriptor(media_type=blob.media_type, digest=blob.digest, size=blob.size)
