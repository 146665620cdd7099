"""RegistryClient against real docker-registry processes (anon, basic, token, TLS)."""

from __future__ import annotations

import re
import ssl

import pytest
from pydantic import SecretStr

from syncer.errors import AuthenticationError, PermissionDenied, RegistryError, TransportError
from syncer.registry.client import RegistryClient
from syncer.registry.credentials import Credential
from syncer.registry.oci import Descriptor
from syncer.registry.reference import Reference
from tests.support.images import Image, Index, make_image, make_index, make_layer, push
from tests.support.registry import LoggedRequest, RunningRegistry
from tests.support.registry import RegistryFactory as Factory
from tests.support.syncer_setup import make_client


def image(seed: int, fmt: str = "docker", arch: str = "amd64") -> Image:
    base = make_layer({"etc/os-release": b"ID=test\n"})
    app = make_layer({f"app/{seed}.txt": f"app {seed}\n".encode() * 50})
    return make_image([base, app], fmt=fmt, arch=arch)  # type: ignore[arg-type]


def multiarch(seed: int, fmt: str) -> Index:
    children = [image(seed, fmt, "amd64"), image(seed, fmt, "arm64")]
    return make_index(children, fmt=fmt)  # type: ignore[arg-type]


def ref(reg: RunningRegistry, repo: str, tag: str | None = None) -> Reference:
    return Reference.parse(f"{reg.host}/{repo}" + (f":{tag}" if tag else ""))


def count(reqs: list[LoggedRequest], method: str, fragment: str = "") -> int:
    return sum(1 for r in reqs if r.method == method and fragment in r.path)


@pytest.mark.parametrize(
    "item",
    [image(1, "docker"), image(2, "oci"), multiarch(3, "docker"), multiarch(4, "oci")],
    ids=["docker", "oci", "docker-list", "oci-index"],
)
async def test_manifest_roundtrip_preserves_bytes(
    anon_registry: RunningRegistry, item: Image | Index
) -> None:
    push(anon_registry.seed_url, "src/app", item, "v1")
    async with make_client(anon_registry) as client:
        info = await client.head_manifest(ref(anon_registry, "src/app", "v1"))
        assert info is not None
        assert info.digest == item.digest
        assert info.media_type == item.media_type
        got = await client.get_manifest(ref(anon_registry, "src/app", "v1"))
        assert got.data == item.manifest
        assert got.digest == item.digest
        assert got.media_type == item.media_type
        # PUT the same bytes elsewhere: digest preserved byte for byte.
        dst = ref(anon_registry, "dst/app")
        if isinstance(item, Index):
            for child in item.children:
                push(anon_registry.seed_url, "dst/app", child, None)
        else:
            for blob in item.blobs():
                assert await client.mount_blob(dst, blob.digest, ref(anon_registry, "src/app"))
        assert await client.put_manifest(dst, "copy", got.data, got.media_type) == item.digest
        assert await client.head_manifest(ref(anon_registry, "dst/app", "missing")) is None


async def upload_twice(
    reg: RunningRegistry, client: RegistryClient, src: Reference, dst: Reference, desc: Descriptor
) -> tuple[list[LoggedRequest], list[LoggedRequest]]:
    """Upload `desc` from `src` to `dst` twice: the requests of each (the first sends it,
    the second finds it held)."""
    logs = []
    for expect_sent in (True, False):
        mark = reg.mark()
        assert (
            await client.upload_blob(dst, desc, lambda: client.read_blob(src, desc)) is expect_sent
        )
        logs.append(reg.requests_since(mark))
    assert await client.blob_exists(dst, desc.digest)
    return logs[0], logs[1]


async def test_blob_stream_upload_and_request_counts(anon_registry: RunningRegistry) -> None:
    img = image(5)
    push(anon_registry.seed_url, "src/app", img, "v1")
    push(anon_registry.seed_url, "other/app", image(6), "old")  # a repository with tags
    layer = img.layers[1]
    desc = Descriptor(mediaType=layer.media_type, digest=layer.digest, size=layer.size)
    src, dst = ref(anon_registry, "src/app"), ref(anon_registry, "other/app")
    async with make_client(anon_registry) as client:
        chunks = [c async for c in client.read_blob(src, desc)]
        assert b"".join(chunks) == layer.data
        assert await client.list_tags(dst) == ["old"]
        sent, again = await upload_twice(anon_registry, client, src, dst, desc)
    # Into a repository with tags: HEAD (404), POST, GET source blob, PUT; nothing else.
    assert count(sent, "HEAD", f"/other/app/blobs/{layer.digest}") == 1
    assert count(sent, "POST", "/other/app/blobs/uploads/") == 1
    assert count(sent, "PUT", "digest=") == 1
    assert count(sent, "GET", f"/src/app/blobs/{layer.digest}") == 1
    assert len(sent) == 4
    # Held already: the HEAD answers 200, and nothing is read or sent.
    assert [(r.method, r.status) for r in again] == [("HEAD", 200)]


async def test_a_tagless_repository_is_asked_by_the_uploads_own_post(
    anon_registry: RunningRegistry,
) -> None:
    img = image(7)
    push(anon_registry.seed_url, "src/app", img, "v1")
    layer = img.layers[1]
    desc = Descriptor(mediaType=layer.media_type, digest=layer.digest, size=layer.size)
    src, dst = ref(anon_registry, "src/app"), ref(anon_registry, "new/app")
    async with make_client(anon_registry) as client:
        with pytest.raises(RegistryError):
            await client.list_tags(dst)  # 404: the repository does not exist yet
        # Asked again, as a run resumed after dying before its first tag: a 201, no bytes.
        sent, again = await upload_twice(anon_registry, client, src, dst, desc)
    mount = f"/new/app/blobs/uploads/?mount={layer.digest}&from=new/app"  # as the log has it
    assert [(r.method, r.status) for r in sent] == [("POST", 202), ("GET", 200), ("PUT", 201)]
    assert sent[0].path.endswith(mount)
    assert [(r.method, r.status) for r in again] == [("POST", 201)]
    assert again[0].path.endswith(mount)


async def test_mount_refused_is_false_and_cancels_upload(anon_registry: RunningRegistry) -> None:
    async with make_client(anon_registry) as client:
        missing = "sha256:" + "0" * 64
        ok = await client.mount_blob(ref(anon_registry, "a/b"), missing, ref(anon_registry, "c/d"))
    assert ok is False
    reqs = anon_registry.requests()
    assert count(reqs, "POST", "mount=") == 1
    assert count(reqs, "DELETE", "/a/b/blobs/uploads/") == 1


async def test_catalog_follows_pagination(anon_registry: RunningRegistry) -> None:
    img = image(6)
    repos = ["paged/a", "paged/b", "paged/c"]
    for repo in repos:
        push(anon_registry.seed_url, repo, img, "v1")
    async with make_client(anon_registry) as client:
        mark = anon_registry.mark()
        catalog = await client.catalog(ref(anon_registry, "x"), page_size=1)
        tags = await client.list_tags(ref(anon_registry, "paged/a"), page_size=1)
    assert catalog == repos
    assert tags == ["v1"]
    # distribution 2.8 pages _catalog with Link headers (it ignores `n` on tags/list).
    assert count(anon_registry.requests_since(mark), "GET", "/v2/_catalog") >= 3


async def test_basic_auth(basic_registry: RunningRegistry) -> None:
    img = image(7)
    push(basic_registry.seed_url, "team/app", img, "v1")
    async with make_client(basic_registry) as client:
        info = await client.head_manifest(ref(basic_registry, "team/app", "v1"))
        assert info is not None and info.digest == img.digest
    async with make_client(basic_registry, creds=False) as client:
        with pytest.raises(AuthenticationError) as err:
            await client.list_tags(ref(basic_registry, "team/app"))
        assert f"syncer login {basic_registry.host}" in str(err.value)
    wrong = make_client(basic_registry)
    bad = Credential(username="tester", password=SecretStr("wrong"))
    wrong._credentials = lambda r, c: bad
    async with wrong as client:
        with pytest.raises(AuthenticationError) as err:
            await client.list_tags(ref(basic_registry, "team/app"))
    assert basic_registry.password is not None
    assert basic_registry.password not in str(err.value)


async def test_token_auth_push_and_cache(token_registry: RunningRegistry) -> None:
    img = image(8)
    push(token_registry.seed_url, "team/app", img, "v1")
    server = token_registry.token_server
    assert server is not None
    desc_of = {b.digest: b for b in img.blobs()}
    src, dst = ref(token_registry, "team/app"), ref(token_registry, "mirror/app")
    async with make_client(token_registry) as client:
        for _ in range(3):
            info = await client.head_manifest(src.with_tag("v1"))
            assert info is not None and info.digest == img.digest
        after_pulls = server.token_count()
        # Three HEADs, one pull token.
        assert after_pulls == 1
        for digest in desc_of:
            assert await client.mount_blob(dst, digest, src)
        got = await client.get_manifest(src.with_tag("v1"))
        await client.put_manifest(dst, "v1", got.data, got.media_type)
        assert server.token_count() == after_pulls + 1  # one pull,push token for both repos
    async with make_client(token_registry, creds=False) as anon:
        assert (await anon.head_manifest(src.with_tag("v1"))) is not None  # anonymous pull
        with pytest.raises((AuthenticationError, PermissionDenied)):
            await anon.put_manifest(dst, "v2", got.data, got.media_type)


async def test_tls_with_ca_without_ca_and_insecure(
    tls_registry: RunningRegistry, registry_factory: Factory
) -> None:
    img = image(9)
    push(tls_registry.seed_url, "secure/app", img, "v1")
    target = ref(tls_registry, "secure/app", "v1")
    async with make_client(tls_registry) as client:
        info = await client.head_manifest(target)
        assert info is not None and info.digest == img.digest
    async with make_client(tls_registry, ca_file=None) as client:
        with pytest.raises(TransportError) as caught:
            await client.head_manifest(target)
        # The cause is named, and the tries (FAST_RETRY: 3) are counted.
        assert re.fullmatch(
            rf"cannot reach {re.escape(tls_registry.host)}: TLS handshake failed: certificate "
            r"verify failed: unable to get local issuer certificate \(3 attempts over [\d.]+ s\)",
            str(caught.value),
        ), caught.value
    async with make_client(tls_registry, ca_file=None, tls="insecure") as client:
        info = await client.head_manifest(target)
        assert info is not None and info.digest == img.digest


async def test_system_trust_is_ours_not_aiohttps_default(
    tls_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry without TLS settings is verified with tls.system_ssl_context. aiohttp's
    import-time default contexts trust nothing here (see syncer/__main__.py), so were they
    used, this would fail: it passes only because our context is the one in use."""
    import aiohttp.connector

    assert aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"] == 0
    img = image(10)
    push(tls_registry.seed_url, "secure/sys", img, "v1")
    assert tls_registry.ca_file is not None
    system_like = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    monkeypatch.setattr(
        "syncer.registry.transport.aiohttp_transport.system_ssl_context", lambda: system_like
    )
    async with make_client(tls_registry, ca_file=None) as client:
        info = await client.head_manifest(ref(tls_registry, "secure/sys", "v1"))
    assert info is not None and info.digest == img.digest


async def test_errors_carry_registry_codes(anon_registry: RunningRegistry) -> None:
    async with make_client(anon_registry) as client:
        with pytest.raises(RegistryError) as err:
            await client.get_manifest(ref(anon_registry, "nope/app", "v1"))
    assert "MANIFEST_UNKNOWN" in err.value.codes or "NAME_UNKNOWN" in err.value.codes
    assert err.value.status == 404
