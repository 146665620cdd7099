"""Digests are verified under the algorithm they name (MockTransport: distribution 2.8
stores every manifest under sha256 and refuses a PUT by any other digest)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from syncer.errors import DigestMismatch, ManifestError
from syncer.registry.client import RegistryClient
from syncer.registry.oci import OCI_MANIFEST, Descriptor
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference

REPO = Reference.parse("reg.test/team/app")
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "a/b", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    }
).encode()
SHA256 = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(MANIFEST).hexdigest()


def serving(body: bytes, seen: list[str]) -> RegistryClient:
    """A registry that answers every manifest GET with `body` and its sha256 header, as
    registries do (their canonical digest), whatever digest the client asked for."""

    def handle(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        seen.append(req.url.path)
        headers = {
            "Content-Type": OCI_MANIFEST,
            "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        }
        return httpx.Response(200, content=body, headers=headers)

    return RegistryClient(
        lambda _r: RegistryConfig(),
        credentials=lambda r, c: None,
        http_transport=httpx.MockTransport(handle),
    )


async def test_manifest_pinned_by_sha512_is_verified_with_sha512() -> None:
    seen: list[str] = []
    async with serving(MANIFEST, seen) as client:
        got = await client.get_manifest(REPO.with_digest(SHA512))
    assert got.digest == SHA512
    assert hashlib.sha512(got.data).hexdigest() == SHA512.partition(":")[2]
    assert seen == [f"/v2/team/app/manifests/{SHA512}"]


async def test_sha512_mismatch_names_the_sha512_of_what_came() -> None:
    tampered = MANIFEST.replace(b'"layers"', b'"Layers"')
    async with serving(tampered, []) as client:
        with pytest.raises(DigestMismatch) as info:
            await client.get_manifest(REPO.with_digest(SHA512))
    assert info.value.expected == SHA512
    assert info.value.actual == "sha512:" + hashlib.sha512(tampered).hexdigest()


async def test_blob_digest_in_a_weak_algorithm_is_refused_not_trusted() -> None:
    """md5 is in hashlib, but a digest a forger can match proves nothing: refused before
    any byte is fetched."""
    seen: list[str] = []
    data = b"hello"
    desc = Descriptor(digest="md5:" + hashlib.md5(data).hexdigest(), size=len(data))
    async with serving(data, seen) as client:
        with pytest.raises(ManifestError, match="digest algorithm 'md5' is not supported"):
            async for _ in client.read_blob(REPO, desc):
                pass
    assert seen == []
