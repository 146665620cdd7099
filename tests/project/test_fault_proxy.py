"""Proof that the fault-injection proxy (tests/support/fault_proxy.py) behaves as documented:
plain httpx through a FaultProxy in front of a real anonymous docker-registry."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import pytest

from tests.support import images
from tests.support.fault_proxy import FaultProxy, FaultProxyFactory, behind, fault_proxy
from tests.support.http import http_client
from tests.support.registry import RegistryFactory, RunningRegistry

REPO = "team/app"
LAYER_SIZE = 600_000  # big enough to take several reads, so "half the body" is meaningful


@dataclass
class Setup:
    registry: RunningRegistry
    proxy: FaultProxy
    image: images.Image

    @property
    def layer(self) -> images.Blob:
        return self.image.layers[0]

    def blob_url(self, digest: str | None = None, base: str | None = None) -> str:
        return f"{base or self.proxy.url}/v2/{REPO}/blobs/{digest or self.layer.digest}"

    def manifest_url(self, ref: str = "v1") -> str:
        return f"{self.proxy.url}/v2/{REPO}/manifests/{ref}"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with http_client(timeout=10.0) as c:
        yield c


@pytest.fixture
def setup(registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory) -> Setup:
    reg = registry_factory("anon")
    image = images.make_image([images.random_layer(LAYER_SIZE, seed=1)], fmt="oci")
    images.push(reg.url, REPO, image, "v1")
    return Setup(reg, fault_proxy_factory(reg), image)


def errors(resp: httpx.Response) -> list[str]:
    return [e["code"] for e in json.loads(resp.content)["errors"]]


def get_manifest(c: httpx.Client, s: Setup, method: str = "GET") -> httpx.Response:
    return c.request(method, s.manifest_url(), headers={"Accept": images.MANIFEST_ACCEPT})


# --- transparent pass-through ----------------------------------------------------------


def test_push_and_pull_through_the_proxy(setup: Setup, client: httpx.Client) -> None:
    s, other = setup, images.make_image([images.random_layer(300_000, seed=2)], fmt="docker")
    mark = s.registry.mark()
    start = client.post(f"{s.proxy.url}/v2/{REPO}/blobs/uploads/")
    assert start.status_code == 202
    # The registry names its own host:port in Location; the proxy must put its own there.
    location = start.headers["Location"]
    assert location.startswith(f"{s.proxy.url}/v2/{REPO}/blobs/uploads/"), location
    assert s.registry.host not in location
    # A streamed (chunked) PATCH, then the closing PUT, both through the proxy.
    data = other.layers[0].data
    chunks = (data[i : i + 50_000] for i in range(0, len(data), 50_000))
    patch = client.patch(location, content=chunks)
    assert patch.status_code == 202, patch.text
    done = client.put(
        httpx.URL(urljoin(s.proxy.url, patch.headers["Location"])).copy_add_param(
            "digest", other.layers[0].digest
        )
    )
    assert done.status_code == 201, done.text
    images.push(s.proxy.url, REPO, other, "v2", client=client)  # the rest: config + manifest

    assert s.proxy.counts["POST upload"] == 2
    assert s.proxy.counts["PATCH upload"] == 1
    assert s.proxy.counts["PUT upload"] == 2
    assert s.proxy.counts["PUT manifest"] == 1
    # What reached the registry came through the proxy (same requests, same statuses).
    upstream = [
        (r.method, r.status) for r in s.registry.requests_since(mark) if "/uploads/" in r.path
    ]
    assert upstream == [("POST", 202), ("PATCH", 202), ("PUT", 201), ("POST", 202), ("PUT", 201)]

    for item, ref in ((s.image, "v1"), (other, "v2")):
        got, media_type = images.fetch_manifest(s.proxy.url, REPO, ref, client=client)
        assert (got, media_type) == (item.manifest, item.media_type)
        for blob in item.blobs():
            assert client.get(s.blob_url(blob.digest)).content == blob.data
    assert s.proxy.counts["GET blob"] == 4
    assert ("GET", f"/v2/{REPO}/manifests/v2", 200) in s.proxy.requests


def test_keep_alive_concurrency_and_reset(setup: Setup, client: httpx.Client) -> None:
    s = setup
    for _ in range(5):
        assert client.get(f"{s.proxy.url}/v2/").status_code == 200
    assert s.proxy.connections == 1  # one kept-alive connection for five requests
    assert s.proxy.counts["GET /v2/"] == 5
    # A second client is answered while the first holds a blob body half-read.
    with client.stream("GET", s.blob_url()) as slow:
        body = slow.iter_raw(1024)
        first = next(body)
        with http_client(timeout=5.0) as other:
            assert get_manifest(other, s).status_code == 200
        rest = b"".join(body)
    assert first + rest == s.layer.data
    s.proxy.reset_counts()
    assert not s.proxy.counts and not s.proxy.requests and s.proxy.connections == 0


def test_stop_leaves_no_thread_behind(setup: Setup) -> None:
    before = set(threading.enumerate())
    with fault_proxy(setup.registry, cdn=True) as proxy:
        idle = http_client(timeout=5.0)
        assert idle.get(f"{proxy.url}/v2/").status_code == 200  # stays open (keep-alive)
        assert len(set(threading.enumerate()) - before) >= 3  # 2 servers + 1 handler
    assert set(threading.enumerate()) - before == set()
    idle.close()


def test_authorization_reaches_the_registry(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, client: httpx.Client
) -> None:
    reg = registry_factory("basic")
    proxy = fault_proxy_factory(reg)
    denied = client.get(f"{proxy.url}/v2/")
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"].startswith("Basic ")
    assert reg.username and reg.password
    assert client.get(f"{proxy.url}/v2/", auth=(reg.username, reg.password)).status_code == 200
    assert [status for _, _, status in proxy.requests] == [401, 200]


def test_behind_points_syncer_helpers_at_the_proxy(setup: Setup) -> None:
    seen = behind(setup.registry, setup.proxy)
    assert (seen.host, seen.url) == (setup.proxy.host, setup.proxy.url)
    assert seen.requests() == setup.registry.requests()  # still the real registry's log


# --- faults --------------------------------------------------------------------------------


def test_drop_blob_every_cuts_the_body_in_the_middle(setup: Setup, client: httpx.Client) -> None:
    s = setup
    s.proxy.drop_blob_every = 2
    assert client.get(s.blob_url()).content == s.layer.data  # 1st: whole
    got = bytearray()
    with pytest.raises(httpx.TransportError), client.stream("GET", s.blob_url()) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_raw():
            got += chunk
    assert bytes(got) == s.layer.data[: s.layer.size // 2]  # 2nd: cut after half
    assert client.get(s.blob_url()).content == s.layer.data  # 3rd: whole, new connection
    assert client.head(s.blob_url()).status_code == 200  # HEADs don't count
    assert s.proxy.counts["dropped"] == 1
    assert s.proxy.counts["GET blob"] == 3


def test_range_is_honoured_or_stripped(setup: Setup, client: httpx.Client) -> None:
    s = setup
    resp = client.get(s.blob_url(), headers={"Range": "bytes=1000-"})
    assert resp.status_code == 206
    assert resp.content == s.layer.data[1000:]
    s.proxy.honour_range = False
    resp = client.get(s.blob_url(), headers={"Range": "bytes=1000-"})
    assert resp.status_code == 200
    assert resp.content == s.layer.data
    assert s.proxy.counts["range-stripped"] == 1


def test_error_burst_hits_exactly_n_requests(setup: Setup, client: httpx.Client) -> None:
    s = setup
    mark = s.registry.mark()
    s.proxy.error_burst = (503, 3)
    for _ in range(3):
        resp = get_manifest(client, s)
        assert resp.status_code == 503
        assert errors(resp) == ["UNAVAILABLE"]
    assert get_manifest(client, s).status_code == 200
    assert s.proxy.error_burst is None
    assert s.proxy.counts["burst"] == 3
    assert [r.status for r in s.registry.requests_since(mark)] == [200]  # never forwarded
    # Only matching paths get (and use up) the burst.
    s.proxy.error_burst, s.proxy.error_paths = (500, 1), r"/blobs/"
    assert get_manifest(client, s).status_code == 200
    assert client.get(s.blob_url()).status_code == 500
    assert client.get(s.blob_url()).status_code == 200


def test_too_many_requests_with_retry_after(setup: Setup, client: httpx.Client) -> None:
    s = setup
    s.proxy.too_many = (2, "7")
    assert get_manifest(client, s, "HEAD").status_code == 200  # HEADs and blobs unaffected
    assert client.get(s.blob_url()).status_code == 200
    for _ in range(2):
        resp = get_manifest(client, s)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "7"
        assert errors(resp) == ["TOOMANYREQUESTS"]
    assert get_manifest(client, s).status_code == 200
    assert s.proxy.counts["429"] == 2


def test_ratelimit_budget_like_docker_hub(setup: Setup, client: httpx.Client) -> None:
    s = setup
    s.proxy.ratelimit = 2

    def remaining(method: str, status: int) -> str:
        resp = get_manifest(client, s, method)
        assert resp.status_code == status
        assert resp.headers["ratelimit-limit"] == "2;w=21600"
        return resp.headers["ratelimit-remaining"]

    assert remaining("HEAD", 200) == "2;w=21600"
    assert remaining("GET", 200) == "1;w=21600"
    assert remaining("HEAD", 200) == "1;w=21600"  # HEADs are free
    assert remaining("GET", 200) == "0;w=21600"
    assert remaining("GET", 429) == "0;w=21600"
    refused = get_manifest(client, s, "GET")
    assert refused.headers["retry-after"] == "2"  # short, although the window is 6 hours
    assert "TOOMANYREQUESTS" in refused.text
    assert remaining("HEAD", 200) == "0;w=21600"  # still answered when exhausted
    assert "ratelimit-remaining" not in client.get(s.blob_url()).headers
    assert s.proxy.ratelimit == 0
    assert (s.proxy.counts["429"], s.proxy.counts["ratelimited"]) == (2, 2)


def test_redirect_to_cdn_without_credentials(setup: Setup, client: httpx.Client) -> None:
    s = setup
    cdn = s.proxy.start_cdn()
    assert cdn.url.startswith("http://127.0.0.2:")
    auth = {"Authorization": "Bearer secret-token"}
    resp = client.get(s.blob_url(), headers=auth)
    assert resp.status_code == 307
    target = httpx.URL(resp.headers["Location"])
    assert (target.host, target.port) == ("127.0.0.2", int(cdn.host.split(":")[1]))
    assert {"sig", "expires"} <= set(target.params.keys())
    assert s.proxy.counts["redirected"] == 1

    assert client.get(target).content == s.layer.data
    ranged = client.get(target, headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, s.layer.data[10:20])
    leaked = client.get(target, headers=auth)
    assert leaked.status_code == 403
    assert "Authorization" in leaked.text
    forged = client.get(target.copy_set_param("sig", "0" * 64))
    assert forged.status_code == 403
    assert (cdn.served, cdn.auth_rejections) == (2, 1)
    # Following the redirect the httpx way drops Authorization on the host change.
    assert client.get(s.blob_url(), headers=auth, follow_redirects=True).content == s.layer.data
    assert client.head(s.blob_url()).status_code == 200  # only GETs are redirected


def test_flipped_byte_keeps_length_changes_digest(setup: Setup, client: httpx.Client) -> None:
    s = setup
    s.proxy.flip_byte_in.add(s.layer.digest)
    body = client.get(s.blob_url()).content
    assert len(body) == s.layer.size
    assert "sha256:" + hashlib.sha256(body).hexdigest() != s.layer.digest
    assert sum(a != b for a, b in zip(body, s.layer.data, strict=True)) == 1
    # Same blob offset when resuming with Range, so a resumed download is corrupt too.
    half = s.layer.size // 2
    tail = client.get(s.blob_url(), headers={"Range": f"bytes={half}-"}).content
    assert tail == body[half:]
    assert client.get(s.blob_url(s.image.config.digest)).content == s.image.config.data
    assert s.proxy.counts["flipped"] == 2
