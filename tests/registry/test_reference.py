"""Reference parsing, canonical form, Docker Hub normalisation and the Reference API."""

from __future__ import annotations

import dataclasses

import pytest

from syncer.errors import InvalidReference, SyncerError
from syncer.registry.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API_HOST,
    DOCKER_HUB_CONFIG_KEY,
    Reference,
)
from tests.registry.reference_support import SHA256, SHA512


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        # Docker Hub: aliases folded, single components under library/.
        ("alpine", "docker.io", "library/alpine", None, None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("user/app", "docker.io", "user/app", None, None),
        ("user/app:v1", "docker.io", "user/app", "v1", None),
        ("docker.io/alpine", "docker.io", "library/alpine", None, None),
        ("index.docker.io/alpine", "docker.io", "library/alpine", None, None),
        ("registry-1.docker.io/library/alpine", "docker.io", "library/alpine", None, None),
        ("DOCKER.IO/alpine", "docker.io", "library/alpine", None, None),
        ("docker.io/library/alpine:latest", "docker.io", "library/alpine", "latest", None),
        ("docker.io/user/app", "docker.io", "user/app", None, None),
        ("library/alpine", "docker.io", "library/alpine", None, None),
        ("a/b/c", "docker.io", "a/b/c", None, None),
        ("docker.io/a/b/c", "docker.io", "a/b/c", None, None),
        # No host-like first component and no '/': a bare name, even "localhost".
        ("localhost", "docker.io", "library/localhost", None, None),
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        # Other registries: no library/ prefix, host kept as written but lowercased.
        ("ghcr.io/owner/app:1.0", "ghcr.io", "owner/app", "1.0", None),
        ("quay.io/alpine", "quay.io", "alpine", None, None),
        ("Example.COM/team/app", "example.com", "team/app", None, None),
        ("127.0.0.1:5000/ubuntu", "127.0.0.1:5000", "ubuntu", None, None),
        ("127.0.0.1:5000/ubuntu:latest", "127.0.0.1:5000", "ubuntu", "latest", None),
        ("127.0.0.1:5000/mirror/alpine:3.19", "127.0.0.1:5000", "mirror/alpine", "3.19", None),
        ("reg.example:443/a/b/c:t", "reg.example:443", "a/b/c", "t", None),
        ("localhost/foo", "localhost", "foo", None, None),
        ("localhost:5000/foo", "localhost:5000", "foo", None, None),
        ("LOCALHOST:5000/foo", "localhost:5000", "foo", None, None),
        ("localhost:5000/foo:bar", "localhost:5000", "foo", "bar", None),
        ("my-registry:5000/x", "my-registry:5000", "x", None, None),
        ("docker.io:443/alpine", "docker.io:443", "alpine", None, None),
        # IPv6.
        ("[::1]:5000/foo", "[::1]:5000", "foo", None, None),
        ("[::1]/foo:tag", "[::1]", "foo", "tag", None),
        ("[2001:db8::1]:443/ns/app:v2", "[2001:db8::1]:443", "ns/app", "v2", None),
        ("[2001:DB8::1]/app", "[2001:db8::1]", "app", None, None),
        # Digests, with and without a tag.
        (f"alpine@{SHA256}", "docker.io", "library/alpine", None, SHA256),
        (f"alpine:3.19@{SHA256}", "docker.io", "library/alpine", "3.19", SHA256),
        (f"127.0.0.1:5000/ubuntu@{SHA256}", "127.0.0.1:5000", "ubuntu", None, SHA256),
        (f"localhost:5000/a:b@{SHA512}", "localhost:5000", "a", "b", SHA512),
        (f"[::1]:5000/foo:t@{SHA256}", "[::1]:5000", "foo", "t", SHA256),
        # Separators allowed inside components.
        ("x/a.b_c__d-e--f/g", "docker.io", "x/a.b_c__d-e--f/g", None, None),
        ("x/0/9", "docker.io", "x/0/9", None, None),
        # Any '.' or ':' in the first component makes it a host, as in Docker.
        ("my.team/app", "my.team", "app", None, None),
        ("foo_bar/app", "docker.io", "foo_bar/app", None, None),
        ("alpine:_", "docker.io", "library/alpine", "_", None),
        ("alpine:Tag.With-Mixed_Case", "docker.io", "library/alpine", "Tag.With-Mixed_Case", None),
        ("alpine:" + "t" * 128, "docker.io", "library/alpine", "t" * 128, None),
    ],
)
def test_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert ref == Reference(registry, repository, tag, digest)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty reference"),
        ("   ", "empty reference"),
        ("\t", "empty reference"),
        (" alpine", "whitespace"),
        ("alpine ", "whitespace"),
        ("alp ine", "whitespace"),
        ("alpine:3 .19", "whitespace"),
        ("alpine\n", "whitespace"),
        # Empty components.
        ("a//b", "empty path component"),
        ("docker.io//alpine", "empty path component"),
        ("user/app/", "empty path component"),
        ("/alpine", "empty path component"),
        ("ghcr.io/", "repository name is missing after registry 'ghcr.io'"),
        ("localhost:5000/", "repository name is missing after registry 'localhost:5000'"),
        (":tag", "repository name is missing"),
        (f"@{SHA256}", "repository name is missing"),
        # Trailing separators.
        ("alpine:", "nothing after ':'"),
        ("localhost:5000/foo:", "nothing after ':'"),
        ("alpine@", "nothing after '@'"),
        ("alpine:3.19@", "nothing after '@'"),
        # Repository components.
        ("Alpine", "'Alpine' must be lowercase"),
        ("user/Foo", "'Foo' must be lowercase"),
        ("ghcr.io/Owner/app", "'Owner' must be lowercase"),
        ("127.0.0.1:5000/UBUNTU:latest", "'UBUNTU' must be lowercase"),
        ("user/-app", "'-app'"),
        ("user/app-", "'app-'"),
        ("user/a..b", "'a..b'"),
        ("user/a___b", "'a___b'"),
        ("user/a._b", "'a._b'"),
        ("user/.app", "'.app'"),
        ("user/ap!p", "'ap!p'"),
        ("user/app:a:b", "'app:a'"),
        ("user/Ap!p", "'Ap!p' must be lowercase letters and digits"),
        # Tags.
        ("alpine:-x", "tag '-x' must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        ("alpine:.x", "tag '.x'"),
        ("alpine:a+b", "tag 'a+b'"),
        ("alpine:" + "t" * 129, "is 129 characters; at most 128 allowed"),
        # Digests.
        ("alpine@sha256:abc", "digest 'sha256:abc' must be sha256:<64 lowercase hex>"),
        ("alpine@sha256:" + "A" * 64, "must be sha256:<64 lowercase hex>"),
        ("alpine@sha256:" + "a" * 63, "must be sha256:<64 lowercase hex>"),
        ("alpine@sha256:" + "a" * 65, "must be sha256:<64 lowercase hex>"),
        ("alpine@sha256:" + "g" * 64, "must be sha256:<64 lowercase hex>"),
        ("alpine@sha512:" + "a" * 64, "must be sha512:<128 lowercase hex>"),
        ("alpine@" + "a" * 64, "digest 'aaaa"),
        ("alpine@SHA256:" + "a" * 64, "'SHA256:"),
        ("alpine@md5:short", "'md5:short'"),
        ("alpine@" + SHA256 + "@" + SHA256, "digest 'sha256:"),
        ("alpine@sha256:" + "a" * 64 + ":x", "must be sha256:<64 lowercase hex>"),
        # Registry hosts.
        ("-bad.example/app", "registry host '-bad.example'"),
        ("bad_host.example/app", "registry host 'bad_host.example'"),
        ("localhost:/app", "registry host 'localhost:'"),
        ("localhost:port/app", "registry host 'localhost:port'"),
        ("host.example:5000:1/app", "registry host 'host.example:5000:1'"),
        ("::1/app", "registry host '::1'"),
        ("[::1/app", "registry host '[::1'"),
        ("[zz::1]:5000/app", "'[zz::1]:5000'"),
        ("[1::2::3]/app", "'[1::2::3]' is not a valid IPv6 address"),
        ("localhost:0/app", "port in 'localhost:0' must be 1-65535"),
        ("localhost:65536/app", "port in 'localhost:65536' must be 1-65535"),
        # Length: the full canonical name counts, like distribution does.
        ("ghcr.io/" + "a" * 248, "is 256 characters; at most 255 allowed"),
        ("a/" + "b" * 244, "is 256 characters; at most 255 allowed"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    assert fragment in info.value.reason
    assert info.value.text == text
    assert text in str(info.value) or repr(text) in str(info.value)


def test_invalid_reference_is_a_value_error_and_syncer_error() -> None:
    with pytest.raises(ValueError):
        Reference.parse("Bad")
    with pytest.raises(SyncerError):
        Reference.parse("Bad")


@pytest.mark.parametrize(
    "text",
    [
        "ghcr.io/" + "a" * 247,  # exactly 255
        "a/" + "b" * 243,  # docker.io/a/... exactly 255
    ],
)
def test_name_length_limit_is_inclusive(text: str) -> None:
    assert len(Reference.parse(text).name) == 255


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        (f"alpine:3.19@{SHA256}", f"docker.io/library/alpine:3.19@{SHA256}"),
        (f"alpine@{SHA256}", f"docker.io/library/alpine@{SHA256}"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
        ("127.0.0.1:5000/ubuntu:latest", "127.0.0.1:5000/ubuntu:latest"),
        ("LocalHost:5000/foo", "localhost:5000/foo"),
        ("[::1]:5000/foo:t", "[::1]:5000/foo:t"),
        (f"ghcr.io/a/b/c:v@{SHA512}", f"ghcr.io/a/b/c:v@{SHA512}"),
    ],
)
def test_str_is_canonical_and_round_trips(text: str, canonical: str) -> None:
    ref = Reference.parse(text)
    assert str(ref) == canonical
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(canonical) == ref


@pytest.mark.parametrize(
    ("text", "name", "identifier"),
    [
        ("alpine", "docker.io/library/alpine", None),
        ("alpine:3.19", "docker.io/library/alpine", "3.19"),
        (f"alpine@{SHA256}", "docker.io/library/alpine", SHA256),
        (f"alpine:3.19@{SHA256}", "docker.io/library/alpine", SHA256),
        ("localhost:5000/a/b:c", "localhost:5000/a/b", "c"),
    ],
)
def test_name_and_identifier(text: str, name: str, identifier: str | None) -> None:
    ref = Reference.parse(text)
    assert ref.name == name
    assert ref.identifier == identifier


@pytest.mark.parametrize(
    ("text", "api_host", "is_hub"),
    [
        ("alpine", DOCKER_HUB_API_HOST, True),
        ("docker.io/user/app", "registry-1.docker.io", True),
        ("registry-1.docker.io/library/alpine", "registry-1.docker.io", True),
        ("ghcr.io/a/b", "ghcr.io", False),
        ("127.0.0.1:5000/ubuntu", "127.0.0.1:5000", False),
        ("[::1]:5000/foo", "[::1]:5000", False),
        ("docker.io:443/alpine", "docker.io:443", False),
    ],
)
def test_api_host_and_is_docker_hub(text: str, api_host: str, is_hub: bool) -> None:
    ref = Reference.parse(text)
    assert ref.api_host == api_host
    assert ref.is_docker_hub is is_hub


def test_constants() -> None:
    assert DOCKER_HUB == "docker.io"
    assert DOCKER_HUB_API_HOST == "registry-1.docker.io"
    assert DOCKER_HUB_CONFIG_KEY == "https://index.docker.io/v1/"


def test_no_default_tag_is_invented() -> None:
    ref = Reference.parse("alpine")
    assert ref.tag is None
    assert ref.digest is None
    assert ref.identifier is None


def test_with_tag_validates_and_clears_digest() -> None:
    ref = Reference.parse(f"alpine:3.19@{SHA256}")
    moved = ref.with_tag("3.20")
    assert moved == Reference("docker.io", "library/alpine", "3.20", None)
    assert ref.digest == SHA256  # the original is untouched
    with pytest.raises(InvalidReference, match="tag '-bad'"):
        ref.with_tag("-bad")


def test_with_digest_validates_and_keeps_tag() -> None:
    ref = Reference.parse("alpine:3.19")
    pinned = ref.with_digest(SHA256)
    assert pinned == Reference("docker.io", "library/alpine", "3.19", SHA256)
    assert pinned.identifier == SHA256
    with pytest.raises(InvalidReference, match="sha256:<64 lowercase hex>"):
        ref.with_digest("sha256:nope")


def test_repo_clears_tag_and_digest() -> None:
    ref = Reference.parse(f"ghcr.io/a/b:c@{SHA256}")
    assert ref.repo() == Reference("ghcr.io", "a/b")
    assert str(ref.repo()) == "ghcr.io/a/b"


def test_with_repository() -> None:
    ref = Reference.parse("127.0.0.1:5000/ubuntu:latest")
    assert ref.with_repository("mirror/ubuntu") == Reference(
        "127.0.0.1:5000", "mirror/ubuntu", "latest"
    )
    # Not on Hub: a single component stays as written.
    assert ref.with_repository("alpine").repository == "alpine"
    # On Hub the canonical form is kept, so parse(str(r)) == r still holds.
    hub = Reference.parse("user/app:v1").with_repository("alpine")
    assert hub.repository == "library/alpine"
    assert Reference.parse(str(hub)) == hub


@pytest.mark.parametrize(
    ("repository", "fragment"),
    [
        ("", "repository name is missing"),
        ("Mirror/x", "'Mirror' must be lowercase"),
        ("a//b", "empty path component"),
        ("a/b/", "empty path component"),
        ("a/b:c", "'b:c'"),
    ],
)
def test_with_repository_rejects(repository: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse("ghcr.io/a/b").with_repository(repository)
    assert fragment in info.value.reason


def test_hashable_and_usable_as_dict_key() -> None:
    a = Reference.parse("alpine:3.19")
    b = Reference.parse("index.docker.io/library/alpine:3.19")
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert len({a, b, a.repo(), b.repo()}) == 2
    assert a != a.with_tag("3.20")


def test_frozen() -> None:
    ref = Reference.parse("alpine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]


def test_repr_is_readable() -> None:
    assert repr(Reference.parse("alpine:3.19")) == "Reference('docker.io/library/alpine:3.19')"
    assert "ghcr.io/a/b" in repr([Reference.parse("ghcr.io/a/b")])
