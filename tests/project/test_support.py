"""Proof that the real-registry test infrastructure (tests/support) behaves as documented."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import ssl
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support import images
from tests.support.http import http_client
from tests.support.images import Image, Index
from tests.support.registry import LoggedRequest, RegistryFactory, RunningRegistry

REPO = "team/app"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with http_client(timeout=10.0) as c:
        yield c


def small_image(fmt: images.Format = "docker", n: int = 0, arch: str = "amd64") -> Image:
    layer = images.make_layer({"etc/hello.txt": f"hello {n} {arch}\n".encode()})
    return images.make_image([layer], fmt=fmt, arch=arch, labels={"n": str(n)})


def challenge(resp: httpx.Response) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', resp.headers["WWW-Authenticate"]))


# --- images -----------------------------------------------------------------------------


def test_builders_are_deterministic_and_diff_id_is_uncompressed_tar() -> None:
    blob, diff_id = images.make_layer({"a/b/c.txt": b"x", "z": b"y"})
    again, _ = images.make_layer({"z": b"y", "a/b/c.txt": b"x"})
    assert blob == again
    raw = gzip.decompress(blob.data)
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["a", "a/b", "a/b/c.txt", "z"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    big, _ = images.random_layer(200_000, seed=7)
    assert big == images.random_layer(200_000, seed=7)[0]
    assert big != images.random_layer(200_000, seed=8)[0]
    assert 200_000 < big.size < 210_000  # incompressible
    assert small_image("oci").digest == small_image("oci").digest


def test_same_layer_is_retyped_per_format() -> None:
    layer = images.make_layer({"f": b"1"}, media_type=images.DOCKER_LAYER)
    oci = images.make_image([layer], fmt="oci", arch="arm64", variant="v8")
    assert oci.layers[0].media_type == images.OCI_LAYER
    assert oci.layers[0].digest == layer[0].digest
    assert oci.platform == ("linux", "arm64", "v8")
    index = images.make_index([oci], fmt="oci")
    assert b'"variant": "v8"' in index.manifest


# --- anonymous registry, request log -------------------------------------------------------


def test_anon_push_then_head_returns_same_digest(anon_registry: RunningRegistry) -> None:
    assert anon_registry.seed_url == anon_registry.url
    assert anon_registry.host == anon_registry.url.removeprefix("http://")
    img = small_image()
    images.push(anon_registry.url, REPO, img, "v1")
    assert images.fetch_manifest_digest(anon_registry.url, REPO, "v1") == img.digest
    assert images.fetch_manifest_digest(anon_registry.url, REPO, "nope") is None


def _roundtrip_items() -> dict[str, Image | Index]:
    return {
        "oci-image": small_image("oci"),
        "docker-image": small_image("docker"),
        "oci-index": images.make_index(
            [small_image("oci", 1, "amd64"), small_image("oci", 1, "arm64")], fmt="oci"
        ),
        "docker-list": images.make_index(
            [small_image("docker", 2, "amd64"), small_image("docker", 2, "arm64")],
            fmt="docker",
        ),
    }


@pytest.mark.parametrize("kind", sorted(_roundtrip_items()))
def test_every_format_pushes_and_pulls_back_identically(
    anon_registry: RunningRegistry, client: httpx.Client, kind: str
) -> None:
    item = _roundtrip_items()[kind]
    url = anon_registry.url
    images.push(url, REPO, item, "t")
    body, ctype = images.fetch_manifest(url, REPO, "t")
    assert (body, ctype) == (item.manifest, item.media_type)
    assert images.fetch_manifest_digest(url, REPO, item.digest) == item.digest
    for child in item.children if isinstance(item, Index) else ():
        assert images.fetch_manifest(url, REPO, child.digest) == (child.manifest, child.media_type)
    for blob in item.blobs():
        got = client.get(f"{url}/v2/{REPO}/blobs/{blob.digest}")
        assert got.status_code == 200
        assert images.sha256_digest(got.content) == blob.digest


def test_push_by_digest_without_tag(anon_registry: RunningRegistry, client: httpx.Client) -> None:
    img = small_image("oci", 5)
    images.push(anon_registry.url, REPO, img, None)
    assert images.fetch_manifest_digest(anon_registry.url, REPO, img.digest) == img.digest
    # 2.8 quirk: a repository holding only untagged manifests answers tags/list with
    # 404 NAME_UNKNOWN, while the catalog does list it.
    tags = client.get(f"{anon_registry.url}/v2/{REPO}/tags/list")
    assert tags.status_code == 404 and "NAME_UNKNOWN" in tags.text
    catalog = client.get(f"{anon_registry.url}/v2/_catalog")
    assert catalog.json() == {"repositories": [REPO]}


def test_requests_since_counts_exactly(anon_registry: RunningRegistry) -> None:
    img = small_image()
    images.push(anon_registry.url, REPO, img, "v1", via_http=True)
    # Readiness/flush probes never show up; the push did.
    assert all("_support_probe" not in r.path for r in anon_registry.requests())
    assert ("PUT", f"/v2/{REPO}/manifests/v1", 201) in [
        (r.method, r.path, r.status) for r in anon_registry.requests()
    ]
    mark = anon_registry.mark()
    assert anon_registry.requests_since(mark) == []
    images.fetch_manifest_digest(anon_registry.url, REPO, "v1")
    assert anon_registry.requests_since(mark) == [
        LoggedRequest("HEAD", f"/v2/{REPO}/manifests/v1", 200)
    ]
    with http_client() as c:
        c.get(f"{anon_registry.url}/v2/{REPO}/tags/list?n=1&last=a")
        c.get(f"{anon_registry.url}/v2/other/manifests/x")
    assert anon_registry.requests_since(mark)[1:] == [
        LoggedRequest("GET", f"/v2/{REPO}/tags/list?n=1&last=a", 200),
        LoggedRequest("GET", "/v2/other/manifests/x", 404),
    ]


def test_request_log_is_complete_right_after_a_large_download(
    anon_registry: RunningRegistry, client: httpx.Client
) -> None:
    layer = images.random_layer(3_000_000, seed=1)
    images.push(anon_registry.url, REPO, images.make_image([layer], fmt="oci"), "big")
    for _ in range(3):
        mark = anon_registry.mark()
        client.get(f"{anon_registry.url}/v2/{REPO}/blobs/{layer[0].digest}")
        assert anon_registry.requests_since(mark) == [
            LoggedRequest("GET", f"/v2/{REPO}/blobs/{layer[0].digest}", 200)
        ]


def test_two_registries_can_share_storage(registry_factory: RegistryFactory) -> None:
    first = registry_factory("anon")
    img = small_image()
    images.push(first.url, REPO, img, "v1", via_http=True)
    second = registry_factory("basic", storage=first.root)
    assert second.root == first.root
    assert images.fetch_manifest_digest(second.seed_url, REPO, "v1") == img.digest
    assert first.requests() != [] and second.requests() == []


# --- basic auth ---------------------------------------------------------------------------


def test_basic_rejects_anonymous_and_accepts_user(
    basic_registry: RunningRegistry, client: httpx.Client
) -> None:
    reg = basic_registry
    assert reg.seed_url != reg.url and reg.username == "tester" and reg.password
    anon = client.get(f"{reg.url}/v2/")
    assert anon.status_code == 401
    assert anon.headers["WWW-Authenticate"].startswith("Basic ")
    assert challenge(anon)["realm"] == "basic-realm"
    bad = client.get(f"{reg.url}/v2/", auth=(reg.username, "wrong"))
    assert bad.status_code == 401
    assert client.get(f"{reg.url}/v2/", auth=(reg.username, reg.password)).status_code == 200
    # Data pushed through the open seed process is visible behind auth.
    img = small_image()
    images.push(reg.seed_url, REPO, img, "v1")
    with http_client(auth=(reg.username, reg.password)) as authed:
        assert images.fetch_manifest_digest(reg.url, REPO, "v1", client=authed) == img.digest
    # ...and the seed's traffic is not in the main process's log.
    assert [(r.method, r.status) for r in reg.requests()] == [
        ("GET", 401),
        ("GET", 401),
        ("GET", 200),
        ("HEAD", 200),
    ]


# --- token auth ---------------------------------------------------------------------------


def _token(reg: RunningRegistry, scope: str, auth: tuple[str, str] | None) -> httpx.Response:
    assert reg.token_server is not None
    with http_client() as c:
        return c.get(
            reg.token_server.realm,
            params={"service": "test-registry", "scope": scope},
            auth=auth,
        )


def test_token_challenge_and_authorised_push(token_registry: RunningRegistry) -> None:
    reg = token_registry
    assert reg.token_server is not None and reg.username and reg.password
    with http_client() as c:
        resp = c.get(f"{reg.url}/v2/")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert challenge(resp) == {"realm": reg.token_server.realm, "service": "test-registry"}

    scope = f"repository:{REPO}:pull,push"
    answer = _token(reg, scope, (reg.username, reg.password))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256" and len(header["x5c"]) == 1
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["aud"] == "test-registry" and claims["iss"] == "test-issuer"
    assert claims["access"] == [{"type": "repository", "name": REPO, "actions": ["pull", "push"]}]

    img = small_image()
    headers = {"Authorization": f"Bearer {body['token']}"}
    with http_client(headers=headers) as authed:
        images.push(reg.url, REPO, img, "v1", client=authed)
        assert images.fetch_manifest_digest(reg.url, REPO, "v1", client=authed) == img.digest
    assert reg.token_server.requests == [((scope,), reg.username)]


def test_anonymous_token_pulls_but_cannot_push(token_registry: RunningRegistry) -> None:
    reg = token_registry
    img = small_image()
    images.push(reg.seed_url, REPO, img, "v1")
    answer = _token(reg, f"repository:{REPO}:pull,push", None)
    assert answer.status_code == 200
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    assert claims["access"][0]["actions"] == ["pull"]
    headers = {"Authorization": f"Bearer {answer.json()['token']}"}
    with http_client(headers=headers) as anon:
        assert images.fetch_manifest_digest(reg.url, REPO, "v1", client=anon) == img.digest
        denied = anon.post(f"{reg.url}/v2/{REPO}/blobs/uploads/")
    assert denied.status_code == 401
    assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]


def test_token_server_failure_modes(registry_factory: RegistryFactory) -> None:
    reg = registry_factory("token", deny={(REPO, "push")}, seed=False)
    assert reg.token_server is not None and reg.username and reg.password
    assert reg.seed_url == reg.url  # seed=False: no open process
    assert _token(reg, "repository:x:pull", (reg.username, "wrong")).status_code == 401
    reg.token_server.fail_next = 2
    creds = (reg.username, reg.password)
    assert [_token(reg, "repository:x:pull", creds).status_code for _ in range(3)] == [
        500,
        500,
        200,
    ]
    denied = _token(reg, f"repository:{REPO}:pull,push", creds).json()["token"]
    assert jwt.decode(denied, options={"verify_signature": False})["access"][0]["actions"] == [
        "pull"
    ]
    assert reg.token_server.token_count() == 5
    assert [user for _, user in reg.token_server.requests] == [reg.username] * 5


def test_expired_jwt_is_rejected_by_registry(token_registry: RunningRegistry) -> None:
    reg = token_registry
    assert reg.token_server is not None and reg.username and reg.password
    reg.token_server.jwt_ttl = -120  # beyond 2.8's 60 s exp leeway
    answer = _token(reg, f"repository:{REPO}:pull", (reg.username, reg.password)).json()
    assert answer["expires_in"] == 300  # the advertised lifetime still looks fine
    with http_client() as c:
        resp = c.get(
            f"{reg.url}/v2/{REPO}/tags/list",
            headers={"Authorization": f"Bearer {answer['token']}"},
        )
    assert resp.status_code == 401


# --- TLS ----------------------------------------------------------------------------------


def test_tls_needs_the_test_ca(tls_registry: RunningRegistry) -> None:
    reg = tls_registry
    assert reg.url.startswith("https://127.0.0.1:") and reg.ca_file is not None
    assert reg.seed_url.startswith("http://")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{reg.url}/v2/")
    ctx = ssl.create_default_context(cafile=str(reg.ca_file))
    with http_client(verify=ctx) as c:
        assert c.get(f"{reg.url}/v2/").status_code == 200
        assert c.get(f"https://localhost:{reg.url.rsplit(':', 1)[1]}/v2/").status_code == 200
        img = small_image()
        images.push(reg.url, REPO, img, "v1", client=c)
        assert images.fetch_manifest_digest(reg.url, REPO, "v1", client=c) == img.digest
    assert [r.method for r in reg.requests()][:1] == ["GET"]


# --- lifecycle ----------------------------------------------------------------------------


def test_stop_ends_the_processes(registry_factory: RegistryFactory) -> None:
    reg = registry_factory("token")
    procs = [reg.process.proc, reg.seed.proc if reg.seed else None]
    reg.stop()
    assert all(p is not None and p.poll() is not None for p in procs)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{reg.url}/v2/")
    reg.stop()  # idempotent; the fixture calls it again at teardown


def test_start_failure_reports_registry_output(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    bad = {"http": {"tls": {"certificate": str(tmp_path / "missing.pem"), "key": "x"}}}
    with pytest.raises(RuntimeError, match=r"exited early(.|\n)*missing\.pem"):
        registry_factory("anon", extra_config=bad)
    with pytest.raises(ValueError, match="unknown registry variant"):
        registry_factory("ftp")


def test_the_schedule_names_tests_that_exist() -> None:
    """Every file and test that tests/support/xdist_schedule.py names is still there: a stale
    name would silently stop keeping a file on one worker, or a long test first."""
    from tests.support.xdist_schedule import LONG, ONE_WORKER, ONE_WORKER_TESTS

    root = Path(__file__).resolve().parents[2]
    names = [*ONE_WORKER, *ONE_WORKER_TESTS, *(n for n in LONG if not n.startswith("group:"))]
    missing = []
    for name in names:
        path, _, test = name.partition("::")
        source = (root / path).read_text() if (root / path).is_file() else ""
        defined = not test or re.search(rf"^(async )?def {re.escape(test)}", source, re.M)
        if not source or not defined:
            missing.append(name)
    assert missing == []
    groups = {f"group:{g}" for g in ONE_WORKER_TESTS.values()}
    assert {n for n in LONG if n.startswith("group:")} <= groups
