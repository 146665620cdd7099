"""Registry host normalisation, loopback detection, and tag/digest/repository validation."""

from __future__ import annotations

import pytest

from syncer.errors import InvalidReference
from syncer.registry.reference import (
    is_loopback,
    normalize_registry,
    validate_digest,
    validate_repository,
    validate_tag,
)
from tests.registry.reference_support import SHA256, SHA512


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("Docker.IO", "docker.io"),
        ("INDEX.DOCKER.IO", "docker.io"),
        ("ghcr.io", "ghcr.io"),
        ("GHCR.io", "ghcr.io"),
        ("LocalHost:5000", "localhost:5000"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("docker.io:443", "docker.io:443"),
    ],
)
def test_normalize_registry(host: str, expected: str) -> None:
    assert normalize_registry(host) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.5.5.5:80", True),
        ("127.255.255.254:5000", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("localhost:5000", True),
        ("::1", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("0:0:0:0:0:0:0:1", True),
        ("[::ffff:127.0.0.1]:80", True),
        ("10.0.0.1", False),
        ("10.0.0.1:5000", False),
        ("example.com", False),
        ("example.com:443", False),
        ("0.0.0.0", False),
        ("128.0.0.1", False),
        ("[::2]:5000", False),
        ("::", False),
        ("", False),
        # Lookalikes that would actually connect elsewhere.
        ("localhost.example.com", False),
        ("127.0.0.1.example.com", False),
        ("localhost:80@evil.example", False),
        ("user:pw@127.0.0.1:5000", False),
        ("127.0.0.1@evil.example", False),
        ("localhost:", False),
        ("localhost:http", False),
        ("[::1", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize("tag", ["latest", "3.19", "_", "A", "v1.0.0-rc.1_b", "t" * 128])
def test_validate_tag_accepts(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a/b", "a:b", "a@b", "a b", "t" * 129, "é"])
def test_validate_tag_rejects(tag: str) -> None:
    with pytest.raises(InvalidReference) as info:
        validate_tag(tag)
    assert "tag" in info.value.reason
    assert info.value.text == tag


@pytest.mark.parametrize(
    "digest",
    [
        SHA256,
        SHA512,
        "sha384:" + "A" * 32,  # unknown to us: only the OCI grammar applies
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ],
)
def test_validate_digest_accepts(digest: str) -> None:
    assert validate_digest(digest) == digest


@pytest.mark.parametrize(
    ("digest", "fragment"),
    [
        ("", "must be sha256:<64 lowercase hex>"),
        ("sha256:", "must be sha256:<64 lowercase hex>"),
        ("sha256:" + "A" * 64, "must be sha256:<64 lowercase hex>"),
        ("sha512:" + "a" * 64, "must be sha512:<128 lowercase hex>"),
        ("sha384:" + "a" * 31, "'sha384:"),
        ("Sha384:" + "a" * 32, "'Sha384:"),
        ("sha384-:" + "a" * 32, "'sha384-:"),
        ("a" * 64, "(algorithm:hex)"),
        (":" + "a" * 64, "(algorithm:hex)"),
    ],
)
def test_validate_digest_rejects(digest: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        validate_digest(digest)
    assert fragment in info.value.reason


@pytest.mark.parametrize("repository", ["a", "library/alpine", "a/b/c", "a-b", "a__b", "a.b"])
def test_validate_repository_accepts(repository: str) -> None:
    assert validate_repository(repository) == repository


@pytest.mark.parametrize(
    ("repository", "fragment"),
    [
        ("", "missing"),
        ("Foo", "'Foo' must be lowercase"),
        ("a/", "empty path component"),
        ("a_", "'a_'"),
    ],
)
def test_validate_repository_rejects(repository: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        validate_repository(repository)
    assert fragment in info.value.reason
